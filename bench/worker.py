"""Time ONE implementation of one benchmark case, in its own process; print one JSON line.

Run by :mod:`bench.__main__` (never imported by it: each implementation gets a fresh
interpreter so that TensorFlow, PyTorch and JAX do not share threads or memory).

    python -m bench.worker --impl jrnn --layer lstm --batch 64 --time 100 --features 128 \
        --units 256 --mode forward --dtype float32 --iters 10

Implementations: jrnn, keras-jax, keras-tf, torch, flax. Modes: ``forward`` (inference)
and ``train`` (forward + backward + SGD update). Reports the median step time after
warm-up, the first call (trace + compile) time, and the peak resident memory growth
(with ``--device gpu`` also the peak GPU memory the framework allocated). ``--device``
says where the case must run: an implementation that would run elsewhere (JAX on its
CPU backend, TensorFlow without a GPU) reports itself unsupported instead of timing it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import sys
import time

LAYERS = ("lstm", "gru", "simple_rnn", "bilstm", "conv_lstm2d")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn, iters: int) -> tuple[float, float]:
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    fn()  # second warm-up
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return first, statistics.median(samples)


def _check_jax_device(a) -> None:
    import jax

    if jax.default_backend() != a.device:
        raise SystemExit(f"JAX runs on {jax.default_backend()} here, not {a.device}")


def _peak_device_mb(impl: str) -> float | None:
    """Peak GPU memory the implementation's framework allocated, MB (GPU runs only)."""
    if impl == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    if impl == "keras-tf":
        import tensorflow as tf

        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def _data(a):
    import numpy as np

    rng = np.random.default_rng(0)
    if a.layer == "conv_lstm2d":
        shape = (a.batch, a.time, a.spatial, a.spatial, a.features)
    else:
        shape = (a.batch, a.time, a.features)
    return rng.standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------------ jrnn / flax
def jax_step(model, x, mode: str):
    """A zero-argument callable running one ``mode`` step ("forward", or "train": forward,
    backward and an SGD update) of the nnx ``model`` on ``x``, waiting for the result.

    Both modes are one ``jax.jit`` of a pure function of the model's arrays, as
    Keras-on-JAX is timed (``stateless_call``): ``nnx.jit``'s per-call graph traversal
    costs ~0.3 ms more, which is noise on CPU and 5-10% of a GPU step."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    if mode == "forward":
        graph, state = nnx.split(model)
        forward = jax.jit(lambda state, x: nnx.merge(graph, state)(x))
        return lambda: jax.block_until_ready(forward(state, x))
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    sgd = optax.sgd(1e-3)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, rest, x):
        model = nnx.merge(graph, params, rest)  # inside the jit: graph work at trace time

        def loss_fn(model):
            return jnp.mean(jnp.square(model(x).astype(jnp.float32)))

        loss, grads = nnx.value_and_grad(loss_fn)(model)  # w.r.t. the nnx.Params
        updates, opt_state = sgd.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        return new_params, opt_state, nnx.state(model, nnx.Not(nnx.Param)), loss

    carried = [params, sgd.init(params), rest]

    def run():
        *state, loss = train_step(*carried, x)
        carried[:] = state  # the next step's parameters, optimizer state and the rest
        return jax.block_until_ready(loss)

    return run


def _jax_common(a, build):
    import jax.numpy as jnp

    _check_jax_device(a)
    return jax_step(build(), jnp.asarray(_data(a), a.dtype), a.mode)


def build_jrnn(a):
    from flax import nnx

    import jrnn

    rngs = nnx.Rngs(0)
    kw = {"return_sequences": True, "dtype": a.dtype, "rngs": rngs}
    if a.remat:
        kw["remat"] = True
    if a.hoist != "auto":
        kw["hoist_input_projection"] = a.hoist == "true"
    if a.native != "auto":
        kw["native"] = a.native == "true"
    cls = {"lstm": jrnn.LSTM, "gru": jrnn.GRU, "simple_rnn": jrnn.SimpleRNN}

    def build():
        if a.layer in cls:
            return cls[a.layer](a.units, a.features, **kw)
        if a.layer == "bilstm":
            # The wrapper's own dtype too: Keras' (and jrnn's) Bidirectional casts the
            # merged output to its policy's compute dtype, float32 by default; the Keras
            # workers set the policy globally, so their wrapper computes in a.dtype.
            return jrnn.Bidirectional(
                jrnn.LSTM(a.units, a.features, **kw), dtype=a.dtype, rngs=rngs
            )
        if a.layer == "conv_lstm2d":
            return jrnn.ConvLSTM2D(
                a.units,
                (3, 3),
                in_channels=a.features,
                spatial_shape=(a.spatial, a.spatial),
                padding="same",
                return_sequences=True,
                dtype=a.dtype,  # bfloat16 runs the scan: the native ConvLSTM is float32 only
                rngs=rngs,
                **({"native": kw["native"]} if "native" in kw else {}),
            )
        raise SystemExit(f"jrnn: unknown layer {a.layer}")

    return _jax_common(a, build)


def build_flax(a):
    from flax import nnx

    rngs = nnx.Rngs(0)
    cells = {
        "lstm": lambda: nnx.OptimizedLSTMCell(a.features, a.units, dtype=a.dtype, rngs=rngs),
        "gru": lambda: nnx.GRUCell(a.features, a.units, dtype=a.dtype, rngs=rngs),
        "simple_rnn": lambda: nnx.SimpleCell(a.features, a.units, dtype=a.dtype, rngs=rngs),
    }

    # On a GPU a rolled loop pays a launch per step: Flax gets the 16 steps per iteration
    # that jrnn's scan takes there by default (jrnn.RNN._gpu_unroll).
    unroll = 16 if a.device == "gpu" else 1

    def build():
        if a.layer in cells:
            return nnx.RNN(cells[a.layer](), unroll=unroll)
        if a.layer == "bilstm":
            fwd = nnx.RNN(cells["lstm"](), unroll=unroll)
            bwd = nnx.RNN(cells["lstm"](), unroll=unroll)
            return nnx.Bidirectional(fwd, bwd)
        raise SystemExit(f"flax has no {a.layer}")

    return _jax_common(a, build)


# ------------------------------------------------------------------------ Keras
def _keras_layer(a, keras):
    kw = {"return_sequences": True}
    if a.layer == "lstm":
        return keras.layers.LSTM(a.units, **kw)
    if a.layer == "gru":
        return keras.layers.GRU(a.units, **kw)
    if a.layer == "simple_rnn":
        return keras.layers.SimpleRNN(a.units, **kw)
    if a.layer == "bilstm":
        return keras.layers.Bidirectional(keras.layers.LSTM(a.units, **kw))
    if a.layer == "conv_lstm2d":
        return keras.layers.ConvLSTM2D(a.units, (3, 3), padding="same", **kw)
    raise SystemExit(f"keras: unknown layer {a.layer}")


def build_keras_jax(a):
    os.environ["KERAS_BACKEND"] = "jax"
    import jax
    import jax.numpy as jnp
    import keras

    _check_jax_device(a)
    if a.dtype != "float32":
        keras.config.set_dtype_policy(f"mixed_{a.dtype}")
    x_np = _data(a)
    model = keras.Sequential(
        [keras.Input(x_np.shape[1:], batch_size=a.batch), _keras_layer(a, keras)]
    )
    x = jnp.asarray(x_np)
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    if a.mode == "forward":

        @jax.jit
        def fwd(tv, ntv, x):
            y, _ = model.stateless_call(tv, ntv, x)
            return y

        return lambda: jax.block_until_ready(fwd(tv, ntv, x))

    @jax.jit
    def train(tv, ntv, x):
        def loss_fn(tv):
            y, _ = model.stateless_call(tv, ntv, x, training=True)
            return jnp.mean(jnp.square(y.astype(jnp.float32)))

        loss, grads = jax.value_and_grad(loss_fn)(tv)
        return [w - 1e-3 * g for w, g in zip(tv, grads)], loss

    state = {"tv": tv}

    def run():
        state["tv"], loss = train(state["tv"], ntv, x)
        jax.block_until_ready(loss)

    return run


def build_keras_tf(a):
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    if a.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        raise SystemExit("TensorFlow sees no GPU here")
    if a.dtype != "float32":
        keras.config.set_dtype_policy(f"mixed_{a.dtype}")
    x_np = _data(a)
    model = keras.Sequential(
        [keras.Input(x_np.shape[1:], batch_size=a.batch), _keras_layer(a, keras)]
    )
    x = tf.constant(x_np)
    if a.mode == "forward":
        fwd = tf.function(lambda x: model(x, training=False))
        return lambda: fwd(x).numpy()
    opt = keras.optimizers.SGD(1e-3)

    @tf.function
    def train(x):
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss = tf.reduce_mean(tf.square(tf.cast(y, tf.float32)))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda: train(x).numpy()


# ------------------------------------------------------------------------ PyTorch
def build_torch(a):
    import torch

    # The CPUs this process may run on, as XLA and TensorFlow size their pools (cpu_count
    # ignores affinity and cgroup CPU sets).
    torch.set_num_threads(
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    if a.device == "gpu" and not torch.cuda.is_available():
        raise SystemExit("PyTorch sees no CUDA GPU here")
    device = "cuda" if a.device == "gpu" else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
    x = torch.from_numpy(_data(a)).to(device=device, dtype=dtype)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}
    if a.layer in cls:
        model = cls[a.layer](a.features, a.units, batch_first=True)
    elif a.layer == "bilstm":
        model = torch.nn.LSTM(a.features, a.units, batch_first=True, bidirectional=True)
    else:
        raise SystemExit(f"torch has no {a.layer}")
    model = model.to(device=device, dtype=dtype)
    if a.mode == "forward":

        def fwd():
            with torch.no_grad():
                model(x)
            sync()

        return fwd
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def train():
        opt.zero_grad()
        y, _ = model(x)
        loss = y.float().square().mean()
        loss.backward()
        opt.step()
        sync()

    return train


BUILDERS = {
    "jrnn": build_jrnn,
    "flax": build_flax,
    "keras-jax": build_keras_jax,
    "keras-tf": build_keras_tf,
    "torch": build_torch,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--impl", choices=sorted(BUILDERS), required=True)
    p.add_argument("--layer", choices=LAYERS, default="lstm")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--time", type=int, default=100)
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--spatial", type=int, default=16)
    p.add_argument("--mode", choices=("forward", "train"), default="forward")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--remat", action="store_true")
    p.add_argument(
        "--hoist",
        choices=("auto", "true", "false"),
        default="auto",
        help="jrnn only: input projection schedule",
    )
    p.add_argument(
        "--native",
        choices=("auto", "true", "false"),
        default="auto",
        help="jrnn only: the native CPU kernels (RNN(native=...))",
    )
    a = p.parse_args(argv)
    try:
        fn = BUILDERS[a.impl](a)
        base = _rss_mb()  # after imports and model/data creation
        first, median = _time(fn, a.iters)
    except SystemExit as unsupported:
        print(json.dumps({"impl": a.impl, "unsupported": str(unsupported)}))
        return 0
    result = {
        "impl": a.impl,
        "median_ms": median * 1e3,
        "first_call_s": first,
        "peak_rss_growth_mb": _rss_mb() - base,
    }
    if a.device == "gpu":
        result["peak_device_mb"] = _peak_device_mb(a.impl)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
