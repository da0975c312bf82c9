"""Issue 8: Keras-exact regularizers/constraints, fit-equivalent optax steps, TBPTT, sharding."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import keras
import numpy as np
import optax
import pytest
import tensorflow as tf
from flax import nnx

import jrnn
from jrnn import training
from tests.helpers import assert_close, cell_weights, count_traces, randomize
from tests.keras_twins import make_pair, random_inputs

B, T, F, U = 3, 6, 3, 4


def _keras_regs():
    return {
        "kernel_regularizer": keras.regularizers.L1L2(l1=0.01, l2=0.02),
        "recurrent_regularizer": "l2",
        "bias_regularizer": keras.regularizers.L1(0.05),
        "activity_regularizer": keras.regularizers.L2(0.03),
    }


def _jrnn_regs():
    return {
        "kernel_regularizer": {"class_name": "L1L2", "config": {"l1": 0.01, "l2": 0.02}},
        "recurrent_regularizer": "l2",
        "bias_regularizer": jrnn.regularizers.L1(0.05),
        "activity_regularizer": jrnn.regularizers.L2(0.03),
    }


@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple"])
def test_regularization_loss_equals_keras_losses(kind, return_state):
    jcls = {"lstm": jrnn.LSTM, "gru": jrnn.GRU, "simple": jrnn.SimpleRNN}[kind]
    kcls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple": keras.layers.SimpleRNN}
    layer = jcls(U, F, return_state=return_state, rngs=nnx.Rngs(0), **_jrnn_regs())
    randomize(layer, 1)
    klayer = kcls[kind](U, return_state=return_state, **_keras_regs())
    klayer.build((B, T, F))
    klayer.set_weights(cell_weights(layer.cell))
    x = random_inputs(B, T, F)
    outputs = layer(x)
    klayer(tf.constant(x))
    expected = float(sum(klayer.losses))
    if kind == "simple":
        # Keras 3.15.1's SimpleRNN accepts `activity_regularizer` but never passes it on to
        # the base layer, so its losses omit it; jrnn applies it as documented (Keras'
        # formula: penalty of each output divided by its batch size).
        expected += sum(
            float(keras.regularizers.L2(0.03)(tf.constant(np.asarray(o)))) / B
            for o in jax.tree_util.tree_leaves(outputs)
        )
    assert abs(float(jrnn.regularization_loss(layer)) - expected) <= 1e-5 * max(1, expected)


def test_orthogonal_regularizer_and_serialization():
    for mode in ("rows", "columns"):
        w = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
        ours = jrnn.regularizers.OrthogonalRegularizer(0.3, mode)(w)
        theirs = keras.regularizers.OrthogonalRegularizer(0.3, mode)(tf.constant(w))
        assert_close(ours, np.asarray(theirs))
    for name in ("l1", "l2", "l1l2", "orthogonal_regularizer", "L1L2"):
        config = keras.regularizers.serialize(keras.regularizers.get(name))
        assert (
            jrnn.regularizers.get(config).get_config() == keras.regularizers.get(name).get_config()
        )
    with pytest.raises(ValueError, match=r"Unknown regularizer 'l3'"):
        jrnn.LSTM(U, F, kernel_regularizer="l3", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"non-negative float"):
        jrnn.regularizers.L2(-1.0)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("MaxNorm", {"max_value": 0.5, "axis": 0}),
        ("MinMaxNorm", {"min_value": 0.2, "max_value": 0.6, "rate": 0.7, "axis": 1}),
        ("NonNeg", {}),
        ("UnitNorm", {"axis": 0}),
    ],
)
def test_constraints_equal_keras(name, kwargs):
    w = np.random.default_rng(3).standard_normal((4, 12)).astype(np.float32)
    ours = getattr(jrnn.constraints, name)(**kwargs)(jnp.asarray(w))
    theirs = getattr(keras.constraints, name)(**kwargs)(tf.constant(w))
    assert_close(ours, np.asarray(theirs))
    config = keras.constraints.serialize(getattr(keras.constraints, name)(**kwargs))
    assert (
        jrnn.constraints.get(config).get_config()
        == getattr(jrnn.constraints, name)(**kwargs).get_config()
    )


def test_apply_constraints_and_optax_form_agree():
    def make():
        layer = jrnn.LSTM(
            U,
            F,
            kernel_constraint="non_neg",
            recurrent_constraint=jrnn.constraints.MaxNorm(0.3),
            bias_constraint="unit_norm",
            rngs=nnx.Rngs(0),
        )
        randomize(layer, 2)
        return layer

    a, b = make(), make()
    x = jnp.asarray(random_inputs(B, T, F))

    def loss(m):
        return jnp.mean(m(x) ** 2)

    opt_a = nnx.Optimizer(a, optax.sgd(0.5), wrt=nnx.Param)
    opt_a.update(a, nnx.grad(loss)(a))
    jrnn.apply_constraints(a)
    opt_b = nnx.Optimizer(b, optax.chain(optax.sgd(0.5), training.constraints(b)), wrt=nnx.Param)
    opt_b.update(b, nnx.grad(loss)(b))
    for u, v in zip(cell_weights(a.cell), cell_weights(b.cell)):
        assert_close(u, v)
    assert float(jnp.min(a.cell.kernel[...])) >= 0.0
    norms = jnp.linalg.norm(a.cell.recurrent_kernel[...], axis=0)
    assert float(jnp.max(norms)) <= 0.3 + 1e-5


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optax_steps_equal_keras_fit(optimizer):
    """A few `fit` steps (same loss, data order, hyper-parameters; dropout off) give the
    same weights in Keras 3 and in jrnn + optax."""
    x = random_inputs(8, T, F, seed=4)
    y = np.random.default_rng(5).standard_normal((8, U)).astype(np.float32)
    regs = {"kernel_regularizer": "l2", "recurrent_constraint": "max_norm"}
    layer = jrnn.LSTM(U, F, rngs=nnx.Rngs(0), **regs)
    randomize(layer, 6)
    kmodel = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(U, **regs)])
    kmodel.layers[0].set_weights(cell_weights(layer.cell))
    if optimizer == "sgd":
        kopt, tx = keras.optimizers.SGD(0.1, momentum=0.9), optax.sgd(0.1, momentum=0.9)
    else:
        kopt, tx = keras.optimizers.Adam(0.01), training.keras_adam(0.01)
    kmodel.compile(optimizer=kopt, loss="mse")
    kmodel.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    opt = nnx.Optimizer(layer, tx, wrt=nnx.Param)
    step = training.make_train_step("mse")
    for _ in range(2):
        for start in (0, 4):
            step(layer, opt, jnp.asarray(x[start : start + 4]), jnp.asarray(y[start : start + 4]))
    for ours, theirs in zip(cell_weights(layer.cell), kmodel.layers[0].get_weights()):
        assert_close(ours, theirs, what=f"{optimizer} weights")


def test_truncated_bptt_carries_states_and_cuts_gradients():
    x = jnp.asarray(random_inputs(2, 12, F, seed=7))
    y = jnp.asarray(np.random.default_rng(8).standard_normal((2, 12, U)), jnp.float32)
    layer = jrnn.GRU(U, F, stateful=True, return_sequences=True, rngs=nnx.Rngs(0))
    reference = jrnn.GRU(U, F, return_sequences=True, return_state=True, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(layer, optax.sgd(0.0), wrt=nnx.Param)  # lr 0: states only
    losses = training.truncated_bptt(layer, opt, x, y, chunk_length=4)
    assert len(losses) == 3
    h = None
    for k, start in enumerate(range(0, 12, 4)):
        out, h = reference(x[:, start : start + 4], initial_state=h)
        expected = float(jnp.mean(jnp.mean((out - y[:, start : start + 4]) ** 2, -1)))
        assert abs(losses[k] - expected) < 1e-5
    with pytest.raises(ValueError, match=r"stateful=True"):
        training.truncated_bptt(reference, opt, x, y, chunk_length=4)


def test_truncated_bptt_compiles_once_across_calls(monkeypatch):
    """A call per epoch reuses one jitted step (a fresh step per call compiled anew:
    ~440 ms and ~60 more memory maps a call for a small LSTM)."""
    traces = count_traces(monkeypatch)
    x = jnp.asarray(random_inputs(2, 8, F, seed=3))
    y = jnp.zeros((2, 8, U), jnp.float32)
    layer = jrnn.LSTM(U, F, stateful=True, return_sequences=True, rngs=nnx.Rngs(1))
    opt = nnx.Optimizer(layer, optax.sgd(0.1), wrt=nnx.Param)
    first = training.truncated_bptt(layer, opt, x, y, chunk_length=4)
    count = len(traces)
    for _ in range(3):
        again = training.truncated_bptt(layer, opt, x, y, chunk_length=4)
    assert len(traces) == count and again[0] < first[0]  # no new trace; still training


_SHARDING_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    import jrnn
    assert len(jax.devices()) == 8
    x = jnp.asarray(np.random.default_rng(0).standard_normal((16, 7, 3)), jnp.float32)
    layer = jrnn.LSTM(8, 3, return_sequences=True, rngs=nnx.Rngs(0))
    single = np.asarray(layer(x))
    xs, mesh = jrnn.training.data_parallel(layer, x)
    out = nnx.jit(lambda m, x: m(x))(layer, xs)
    # model parallel: shard the gate dimension of every kernel over a "model" axis
    mesh2 = jax.make_mesh((2, 4), ("batch", "model"))
    P = jax.sharding.PartitionSpec
    state = nnx.state(layer)
    def place(path, v):
        name = str(path[-2].key) if len(path) > 1 else ""
        spec = P(None, "model") if v.ndim == 2 else P("model") if v.ndim == 1 else P()
        return jax.device_put(v, jax.sharding.NamedSharding(mesh2, spec))
    nnx.update(layer, jax.tree_util.tree_map_with_path(place, state))
    x2 = jax.device_put(x, jax.sharding.NamedSharding(mesh2, P("batch")))
    out2 = nnx.jit(lambda m, x: m(x))(layer, x2)
    # shard_map (its default check_vma) over a scan, and an eager call on a batch sharded
    # over a mesh with Auto axes (not visible in the traced types): the scan, batch kept
    auto = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
    scan = jrnn.LSTM(8, 3, return_sequences=True, native=False, rngs=nnx.Rngs(0))
    g, st = nnx.split(scan)
    smap = jax.jit(jax.shard_map(lambda st, x: nnx.merge(g, st)(x), mesh=auto,
                                 in_specs=(P(), P("batch")), out_specs=P("batch")))
    fresh = jrnn.LSTM(8, 3, return_sequences=True, rngs=nnx.Rngs(0))
    eager = fresh(jax.device_put(x, jax.sharding.NamedSharding(auto, P("batch"))))
    # a stateful layer (replicated states) and calls under jax.set_mesh (zero states
    # created on the mesh, replicated): the states take the batch sharding of the steps
    mask = np.ones((16, 7), bool)
    mask[3, 4:] = False
    def stateful_pair(make):
        ref, dp = make(), make()
        want = [np.asarray(ref(x, mask=mask)) for _ in range(2)]
        xd, _ = jrnn.training.data_parallel(dp, x)
        md = jax.device_put(mask, xd.sharding)
        return want, dp, xd, md
    errs = []
    for make in (
        lambda: jrnn.LSTM(8, 3, stateful=True, return_sequences=True, rngs=nnx.Rngs(0)),
        lambda: jrnn.Bidirectional(jrnn.GRU(8, 3, stateful=True, return_sequences=True,
                                            rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1)),
    ):
        want, dp, xd, md = stateful_pair(make)
        errs += [np.max(np.abs(np.asarray(dp(xd, mask=md)) - want[0])),
                 np.max(np.abs(np.asarray(nnx.jit(lambda m, a, k: m(a, mask=k))(dp, xd, md))
                               - want[1]))]
    with jax.set_mesh(mesh):
        for make in (
            lambda: jrnn.GRU(8, 3, return_sequences=True, rngs=nnx.Rngs(0)),
            lambda: jrnn.Bidirectional(jrnn.LSTM(8, 3, return_sequences=True,
                                                 rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1)),
        ):
            ref, dp = make(), make()
            want = np.asarray(ref(x, mask=mask))
            xd, _ = jrnn.training.data_parallel(dp, x, mesh)
            md = jax.device_put(mask, xd.sharding)
            errs += [np.max(np.abs(np.asarray(dp(xd, mask=md)) - want)),
                     np.max(np.abs(np.asarray(nnx.jit(lambda m, a, k: m(a, mask=k))(dp, xd, md))
                                   - want))]
    print(json.dumps({
        "stateful_and_set_mesh_errs": [float(e) for e in errs],
        "smap_err": float(np.max(np.abs(np.asarray(smap(st, x)) - single))),
        "eager_auto_spec": [str(s) for s in eager.sharding.spec],
        "eager_auto_err": float(np.max(np.abs(np.asarray(eager) - single))),
        "dp_err": float(np.max(np.abs(np.asarray(out) - single))),
        "mp_err": float(np.max(np.abs(np.asarray(out2) - single))),
        "dp_spec": [str(s) for s in out.sharding.spec],
        "dp_devices": len(out.sharding.device_set),
        "kernel_spec": [str(s) for s in layer.cell.kernel[...].sharding.spec],
    }))
    """
)


def test_sharded_results_equal_single_device():
    """Data and model parallel, shard_map, Auto-axes meshes; a stateful layer after
    data_parallel and calls under jax.set_mesh (both failed on the scan's carry types:
    replicated states against the steps' batch-sharded ones)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDING_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(__file__)),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["dp_err"] <= 1e-5 and result["mp_err"] <= 1e-5
    assert max(result["stateful_and_set_mesh_errs"]) <= 1e-5
    assert result["smap_err"] <= 1e-5 and result["eager_auto_err"] <= 1e-5
    assert result["eager_auto_spec"][:1] == ["batch"]
    assert result["dp_spec"][0] == "batch" and result["dp_devices"] == 8
    assert result["kernel_spec"] == ["None", "model"]


def test_float16_training_with_loss_scale():
    """mixed_float16 training: the scaled step equals the unscaled float32-param step, and a
    step whose scaled gradients overflow is skipped (weights unchanged)."""
    x = jnp.asarray(random_inputs(4, T, F, seed=9))
    y = jnp.asarray(np.random.default_rng(10).standard_normal((4, U)), jnp.float32)

    def run(loss_scale, lr=0.1):
        layer = jrnn.GRU(U, F, dtype="mixed_float16", rngs=nnx.Rngs(0))
        randomize(layer, 11)
        assert layer.cell.kernel[...].dtype == jnp.float32
        opt = nnx.Optimizer(layer, optax.sgd(lr), wrt=nnx.Param)
        step = training.make_train_step("mse", loss_scale=loss_scale)
        step(layer, opt, x, y)
        return cell_weights(layer.cell)

    for a, e in zip(run(2.0**10), run(None)):
        assert_close(a, e, dtype="float16")
    before = run(None, lr=0.0)
    for a, e in zip(run(1e30), before):  # scaled loss overflows float32 -> step skipped
        np.testing.assert_array_equal(a, e)


_F16_MAX = float(np.finfo(np.float16).max)


def _scaled_weight_gradients(layer, x, scale):
    """The weight gradients of ``sum(layer(x)) * scale``, the loss rounded to float16 as a
    scaled mixed_float16 loss is, unscaled."""

    def loss(m):
        y = m(x)
        y = y[0] if isinstance(y, (list, tuple)) else y
        return (y.astype(jnp.float32).sum() * scale).astype(jnp.float16).astype(jnp.float32)

    grads = nnx.grad(loss)(layer)
    return [np.asarray(g) / scale for g in jax.tree_util.tree_leaves(nnx.state(grads, nnx.Param))]


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple"])
def test_mixed_float16_weight_gradients_accumulate_in_float32_as_keras(kind):
    """Keras 3 reads its float32 variables in every step, so their gradients sum over the
    steps in float32. jrnn's hoisted projection sums the kernel and bias gradients over
    all batch rows and steps at once: in float16 that overflowed at a loss scale ~40x
    below Keras' (LSTM: 2**5.5 against 2**10.8). The sums now run in float32."""
    batch, time, features, units = 32, 50, 16, 32
    x = random_inputs(batch, time, features, seed=21)
    layer, klayer = make_pair(
        {"kind": kind, "units": units},
        features,
        batch=batch,
        time=time,
        seed=3,
        dtype="mixed_float16",
        return_sequences=True,
    )
    xt = tf.constant(x)

    def keras_gradients(scale):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(klayer(xt), tf.float32)) * scale
            loss = tf.cast(tf.cast(loss, tf.float16), tf.float32)
        return [g.numpy() / scale for g in tape.gradient(loss, klayer.trainable_weights)]

    # A scale at which the largest weight gradient, summed over batch and time, is 1.25 times
    # float16's largest number: the per-step sums Keras adds in float32 are not.
    scale = 1.25 * _F16_MAX / max(float(np.abs(g).max()) for g in keras_gradients(1.0))
    expected = keras_gradients(scale)
    actual = _scaled_weight_gradients(layer, jnp.asarray(x), scale)
    by_shape = {a.shape: a for a in actual}
    for e in expected:
        assert np.isfinite(e).all()
        a = by_shape[e.shape]
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, e, atol=2e-2 * np.abs(e).max())


def _mixed_and_float32(make):
    mixed, wide = make("mixed_float16"), make("float32")
    nnx.update(wide, nnx.state(mixed, nnx.Param))
    return mixed, wide


@pytest.mark.parametrize(
    "make",
    [
        lambda d: jrnn.IndRNN(
            24, 8, recurrent_clip_min=None, recurrent_clip_max=None, dtype=d, rngs=nnx.Rngs(1)
        ),
        lambda d: jrnn.CuDNNLSTM(24, 8, return_sequences=True, dtype=d, rngs=nnx.Rngs(1)),
        lambda d: jrnn.CuDNNGRU(24, 8, return_sequences=True, dtype=d, rngs=nnx.Rngs(1)),
        lambda d: jrnn.GRU(24, 8, reset_after=False, remat=True, dtype=d, rngs=nnx.Rngs(1)),
        lambda d: jrnn.LSTM(
            24, 8, go_backwards=True, hoist_input_projection=False, dtype=d, rngs=nnx.Rngs(1)
        ),
        lambda d: jrnn.RNN(
            [
                jrnn.LSTMCell(24, 8, dtype=d, rngs=nnx.Rngs(1)),
                jrnn.GRUCell(16, 24, dtype=d, rngs=nnx.Rngs(2)),
            ],
            return_sequences=True,
        ),
        lambda d: jrnn.ConvLSTM1D(
            6, 3, in_channels=8, padding="same", return_sequences=True, dtype=d, rngs=nnx.Rngs(1)
        ),
    ],
    ids=["IndRNN", "CuDNNLSTM", "CuDNNGRU", "GRU-remat", "LSTM-unhoisted", "stack", "ConvLSTM1D"],
)
def test_every_recurrent_layer_sums_mixed_weight_gradients_in_float32(make):
    """A loss scale at which a float16 sum of the weights' gradients over batch and time
    overflows: each mixed_float16 layer's gradients stay finite and equal the float32
    layer's to float16's rounding."""
    mixed, wide = _mixed_and_float32(make)
    shape = (32, 40, 10, 8) if isinstance(mixed.cell, jrnn.ConvLSTMCell) else (32, 40, 8)
    x = jnp.asarray(np.random.default_rng(5).uniform(-1, 1, shape), jnp.float32)
    expected = _scaled_weight_gradients(wide, x, 1.0)
    scale = 2 * _F16_MAX / max(float(np.abs(e).max()) for e in expected)
    for a, e in zip(_scaled_weight_gradients(mixed, x, scale), expected):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, e, atol=2e-2 * np.abs(e).max())


def test_mixed_precision_layers_take_forward_mode_derivatives():
    """The float32-gradient projection is a custom JVP: forward mode (jax.jvp, jacfwd)
    runs, and equals reverse mode."""
    layer = jrnn.LSTM(4, 3, dtype="mixed_bfloat16", native=False, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 5, 3)), jnp.float32)
    graph, params, rest = nnx.split(layer, nnx.Param, ...)

    def f(p):
        return nnx.merge(graph, p, rest)(x).astype(jnp.float32).sum()

    reverse = jax.grad(f)(params)
    tangent = jax.tree_util.tree_map(jnp.ones_like, params)
    _, forward = jax.jvp(f, (params,), (tangent,))
    total = sum(float(g.sum()) for g in jax.tree_util.tree_leaves(reverse))
    np.testing.assert_allclose(float(forward), total, rtol=2e-2)


def _imported(kmodel):
    import importers

    return importers.load(kmodel)


def _fit_both(kmodel, loss, x, y, steps=3, sample_weight=None, **step_options):
    """Keras `train_on_batch` against jrnn's step on the imported twin (SGD)."""
    model = _imported(kmodel)
    kmodel.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    step = training.make_train_step(loss, **step_options)
    for _ in range(steps):
        expected = kmodel.train_on_batch(x, y, sample_weight=sample_weight)
        expected = float(expected[0] if isinstance(expected, list) else expected)  # [total, ...]
        got = float(step(model, optimizer, x, y, sample_weight))
        assert got == pytest.approx(expected, rel=1e-5)
    for got, want in zip(model.keras_weights(), kmodel.get_weights(), strict=True):
        np.testing.assert_allclose(np.asarray(got[...]), want, atol=1e-5)


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy", "sparse_categorical_crossentropy"])
def test_targets_take_the_outputs_rank_as_keras(loss):
    """Keras matches `y`'s rank to the output's by a trailing axis of size 1; jrnn
    broadcast `(B,)` against `(B, 1)` into a `(B, B)` loss without a word."""
    rng = np.random.default_rng(0)
    width = 3 if loss.startswith("sparse") else 1
    head = "softmax" if width > 1 else "sigmoid"
    kmodel = keras.Sequential(
        [keras.Input((T, F)), keras.layers.LSTM(U), keras.layers.Dense(width, activation=head)]
    )
    x = random_inputs(B, T, F)
    y = rng.integers(0, width if width > 1 else 2, (B,)).astype(np.float32)
    if loss.startswith("sparse"):
        y = y.astype(np.int32)[:, None]  # labels (B, 1)
    _fit_both(kmodel, loss, x, y)
    step = training.make_train_step(loss)
    model = _imported(kmodel)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    with pytest.raises(ValueError, match=r"does not match the model output's shape|one label"):
        step(model, optimizer, x, np.zeros((B, 2, 2), np.float32))


def test_only_imported_models_mask_the_loss():
    """A bare jrnn.TimeDistributed(keras2=True) has call_with_mask too; make_train_step
    took it for an imported Keras model and masked its loss by the module's mask (1.914
    against the plain mean's 1.340)."""

    class Frames(nnx.Module):  # a per-frame module that computes a mask
        def __init__(self):
            self.dense, self.masking = jrnn.Dense(3, 3, rngs=nnx.Rngs(0)), jrnn.Masking(0.0)

        def __call__(self, x, training=False):
            return self.dense(self.masking(x))

        def compute_mask(self, x, mask=None):
            return self.masking.compute_mask(x, mask)

    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    x[0, :3] = 0.0
    td = jrnn.TimeDistributed(Frames(), keras2=True)
    optimizer = nnx.Optimizer(td, optax.sgd(0.0), wrt=nnx.Param)
    loss = training.make_train_step("mse")(td, optimizer, x, np.zeros((2, 5, 3), np.float32))
    np.testing.assert_allclose(float(loss), float(jnp.mean(td(x) ** 2)), rtol=1e-6)


def test_the_output_mask_weights_the_loss_as_keras():
    kmodel = keras.Sequential(
        [
            keras.Input((T,), dtype="int32"),
            keras.layers.Embedding(9, F, mask_zero=True),
            keras.layers.LSTM(U, return_sequences=True),
            keras.layers.Dense(2),
        ]
    )
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 9, (B, T)).astype(np.int32)
    ids[0, 3:] = 0
    ids[2, 2:] = 0
    _fit_both(kmodel, "mse", ids, rng.standard_normal((B, T, 2)).astype(np.float32))


def test_several_outputs_sum_their_losses():
    inp = keras.Input((T, F))
    h = keras.layers.LSTM(U, return_sequences=True)(inp)
    kmodel = keras.Model(inp, [keras.layers.Dense(2)(h), keras.layers.LSTM(1)(h)])
    rng = np.random.default_rng(2)
    y = [rng.standard_normal((B, T, 2)).astype(np.float32), rng.standard_normal((B, 1))]
    _fit_both(kmodel, "mse", random_inputs(B, T, F), y)


def _without_loss_scale(state):
    return {k: v for k, v in state.items() if k not in ("dynamic_scale", "step_counter")}


@pytest.mark.parametrize("dynamic", [True, False])
def test_a_skipped_loss_scale_step_leaves_weights_and_optimizer_alone(dynamic):
    """A non-finite step zeroed the gradients but still ran the optimizer: Adam's moments
    moved the weights. Keras' LossScaleOptimizer leaves both untouched (and halves its
    scale; a fixed scale stays)."""
    layer = jrnn.LSTM(U, F, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(layer, training.keras_adam(0.01), wrt=nnx.Param)
    step = training.make_train_step("mse", loss_scale=128.0, dynamic=dynamic)
    x, y = random_inputs(B, T, F), np.zeros((B, U), np.float32)
    step(layer, optimizer, x, y)
    before = jax.tree.map(np.asarray, nnx.state(layer)), nnx.state(optimizer)
    before = before[0], jax.tree.map(np.asarray, _without_loss_scale(before[1]))
    step(layer, optimizer, x, np.full((B, U), np.inf, np.float32))
    after = nnx.state(layer), _without_loss_scale(nnx.state(optimizer))
    assert jax.tree.structure(after) == jax.tree.structure(before)
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before)):
        np.testing.assert_array_equal(a, b)
    if dynamic:
        assert float(optimizer.dynamic_scale[...]) == 64.0
        assert int(optimizer.step_counter[...]) == 0
    else:  # a fixed scale: no state on the optimizer
        assert not hasattr(optimizer, "dynamic_scale")


def _keras_loss_scale_twins(growth_steps):
    """A mixed_float16 LSTM -> BatchNormalization -> Dense(float32) Keras model (Keras'
    random initialisers, recurrent kernel ~N(0, 0.5)) whose scaled gradients overflow
    float16 at Keras' initial scale 2**15 for targets of 380 (from 2**8.83 on at first),
    compiled with Keras 3's LossScaleOptimizer(SGD), and its jrnn import with the matching
    step. The overflow happens where both compute alike (the gradient reaching the
    BatchNormalization): measured by bisection, the smallest non-finite scale of each step
    agrees to 14 bits of its log2, so both skip the same steps. (Without it, jrnn's LSTM
    bias gradient, a float16 sum over batch and time where Keras sums the steps in
    float32, overflowed at a 4.7x smaller scale in an LSTM(16) -> Dense model.)"""
    import importers

    keras.utils.set_random_seed(7)
    inputs = keras.Input((T + 1, F))
    h = keras.layers.LSTM(
        U + 1,
        dtype="mixed_float16",
        recurrent_initializer=keras.initializers.RandomNormal(stddev=0.5),
        name="lstm",
    )(inputs)
    h = keras.layers.BatchNormalization(dtype="mixed_float16", name="bn")(h)
    kmodel = keras.Model(inputs, keras.layers.Dense(1, dtype="float32", name="head")(h))
    model = importers.load(kmodel)
    kopt = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(1e-3), initial_scale=2.0**15, dynamic_growth_steps=growth_steps
    )
    kmodel.compile(optimizer=kopt, loss="mse")
    optimizer = nnx.Optimizer(model, optax.sgd(1e-3), wrt=nnx.Param)
    step = training.make_train_step("mse", loss_scale=2.0**15, dynamic_growth_steps=growth_steps)
    return kmodel, kopt, model, optimizer, step


def test_dynamic_loss_scale_equals_keras_loss_scale_optimizer():
    """make_train_step(loss_scale=2**15) kept its scale: a mixed_float16 model whose
    scaled gradients overflowed at 2**15 skipped every step without a word (the LSTM
    kernel never moved). Now each step equals Keras 3's LossScaleOptimizer: loss, scale,
    counter and every weight, through the halvings (16384 ... 256 on steps 0-6), a
    growth after `dynamic_growth_steps` finite steps (512 on step 8) and the skips after
    it (256, 128). On a skipped step both leave the weights but advance
    BatchNormalization's moving statistics (the forward pass updates them)."""
    kmodel, kopt, model, optimizer, step = _keras_loss_scale_twins(growth_steps=2)
    x = random_inputs(4, T + 1, F, seed=21)
    y = np.full((4, 1), 380.0, np.float32)
    kernel = np.asarray(kmodel.layers[1].cell.kernel).copy()
    scales, counters = [], []
    for i in range(12):
        expected = float(kmodel.train_on_batch(x, y))
        got = float(step(model, optimizer, x, y))
        assert got == pytest.approx(expected, rel=1e-4), i
        scales.append(float(kopt.dynamic_scale))
        counters.append(int(kopt.step_counter))
        assert float(optimizer.dynamic_scale[...]) == scales[-1], i
        assert int(optimizer.step_counter[...]) == counters[-1], i
        for got_w, want in zip(model.keras_weights(), kmodel.get_weights(), strict=True):
            assert_close(got_w[...], want, dtype="float16", what=f"step {i}")
        if i == 0:  # skipped: kernel kept, moving statistics advanced (in both)
            np.testing.assert_array_equal(np.asarray(kmodel.layers[1].cell.kernel), kernel)
            moving_mean = np.asarray(kmodel.layers[2].moving_mean)
            assert np.abs(moving_mean).max() > 1e-3
            np.testing.assert_allclose(
                np.asarray(model.layers["bn"].moving_mean[...]),
                moving_mean,
                atol=1e-5,
            )
    # the schedule this test is about: halvings from 2**15, growths, and skips after them
    assert scales[:5] == [2.0**14, 2.0**13, 2.0**12, 2.0**11, 2.0**10]
    changes = [b / a for a, b in itertools.pairwise(scales)]
    assert 2.0 in changes and 0.5 in changes[changes.index(2.0) :], scales
    assert np.abs(np.asarray(kmodel.layers[1].cell.kernel) - kernel).max() > 1e-3


def test_dynamic_loss_scale_persists_across_calls_of_one_compiled_step(monkeypatch):
    """The scale and the counter are nnx.OptState on the optimizer: the jitted step reads
    and updates them, compiles once, and a fresh optimizer starts again from
    `loss_scale`."""
    traces = count_traces(monkeypatch)
    layer = jrnn.GRU(U, F, dtype="mixed_float16", rngs=nnx.Rngs(0))
    randomize(layer, 3)
    optimizer = nnx.Optimizer(layer, optax.sgd(0.01), wrt=nnx.Param)
    step = training.make_train_step("mse", loss_scale=16.0, dynamic_growth_steps=3)
    x, y = random_inputs(B, T, F, seed=4), np.zeros((B, U), np.float32)
    expected = [(16.0, 1), (16.0, 2), (32.0, 0), (32.0, 1), (32.0, 2), (64.0, 0)]
    for scale, counter in expected:
        step(layer, optimizer, x, y)
        assert float(optimizer.dynamic_scale[...]) == scale
        assert int(optimizer.step_counter[...]) == counter
    assert isinstance(optimizer.dynamic_scale, nnx.OptState)
    assert optimizer.dynamic_scale[...].dtype == jnp.float32
    assert "dynamic_scale" in nnx.state(optimizer, nnx.OptState)
    weights = [np.asarray(w) for w in cell_weights(layer.cell)]
    step(layer, optimizer, x, np.full((B, U), np.nan, np.float32))  # skipped
    assert float(optimizer.dynamic_scale[...]) == 32.0
    assert int(optimizer.step_counter[...]) == 0
    for got, want in zip(cell_weights(layer.cell), weights):
        np.testing.assert_array_equal(got, want)
    step(layer, optimizer, x, y)
    assert int(optimizer.step_counter[...]) == 1
    assert traces.count(True) == 1  # one trace for the 8 calls: the scale is JAX state
    fresh = nnx.Optimizer(layer, optax.sgd(0.01), wrt=nnx.Param)
    step(layer, fresh, x, y)
    assert float(fresh.dynamic_scale[...]) == 16.0 and int(fresh.step_counter[...]) == 1
    assert float(optimizer.dynamic_scale[...]) == 32.0


def test_dynamic_loss_scale_default_is_keras_initial_scale():
    layer = jrnn.LSTM(U, F, dtype="mixed_float16", rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(layer, optax.sgd(0.01), wrt=nnx.Param)
    step = training.make_train_step("mse", loss_scale="dynamic")
    step(layer, optimizer, random_inputs(B, T, F), np.zeros((B, U), np.float32))
    assert float(optimizer.dynamic_scale[...]) == float(
        keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()).initial_scale
    )
    assert training.make_train_step.__kwdefaults__["dynamic_growth_steps"] == (
        keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()).dynamic_growth_steps
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"loss_scale": True}, r"`loss_scale` must be None .* received True"),
        ({"loss_scale": 0.0}, r"a number > 0 .* received 0.0"),
        ({"loss_scale": float("inf")}, r"finite and not zero in float32 .* received inf"),
        ({"loss_scale": 1e39}, r"finite and not zero in float32 .* received 1e\+39"),
        ({"loss_scale": 1e-50}, r"finite and not zero in float32 .* received 1e-50"),
        ({"loss_scale": 10**400}, r"`loss_scale` must be None .* received 1000"),
        ({"loss_scale": 8.0, "dynamic_growth_steps": 2**31}, r"at most 2\*\*31 - 1 .* 2147483648"),
        ({"loss_scale": "static"}, r"'dynamic' .* received 'static'"),
        ({"loss_scale": "dynamic", "dynamic": False}, r"pass a number as the fixed scale"),
        ({"dynamic": False}, r"dynamic=False needs the fixed `loss_scale`"),
        ({"loss_scale": 8.0, "dynamic": 1}, r"`dynamic` must be True or False"),
        ({"loss_scale": 8.0, "dynamic_growth_steps": 0}, r"`dynamic_growth_steps` must be"),
    ],
)
def test_loss_scale_arguments_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        training.make_train_step("mse", **options)


def _frozen_twin(nested):
    """LSTM -> BatchNormalization -> Dense, the first two frozen (in a frozen sub-model
    with ``nested``), with a max-norm constraint the frozen LSTM's kernel breaks."""
    keras.utils.set_random_seed(4)
    lstm = keras.layers.LSTM(
        6, return_sequences=True, kernel_constraint=keras.constraints.MaxNorm(0.1), name="f_lstm"
    )
    bn = keras.layers.BatchNormalization(name="f_bn")
    inputs = keras.Input((T, F), name="f_in")
    if nested:
        sub = keras.Sequential([keras.Input((T, F)), lstm, bn], name="f_sub")
        hidden = sub(inputs)
        sub.trainable = False
    else:
        hidden = bn(lstm(inputs))
        lstm.trainable = bn.trainable = False
    outputs = keras.layers.Dense(2, name="f_dense")(hidden)
    return keras.Model(inputs, outputs, name="f_model")


@pytest.mark.parametrize("nested", [False, True], ids=["layers", "sub-model"])
def test_frozen_layers_train_as_keras_fit(nested):
    """Keras' `trainable = False`: the imported model's frozen LSTM is neither updated nor
    constrained, and its frozen BatchNormalization normalises with the moving statistics
    in training. jrnn trained them (the kernel moved 0.32 in one step, loss 4.17 against
    Keras' 2.39)."""
    x = random_inputs(B, T, F, seed=12)
    y = np.random.default_rng(13).standard_normal((B, T, 2)).astype(np.float32)
    kmodel = _frozen_twin(nested)
    _fit_both(kmodel, "mse", x, y, steps=3)
    model = _imported(kmodel)
    assert len(training.frozen_modules(model)) == (3 if nested else 2)  # Keras propagates


@pytest.mark.parametrize("scale", [None, "dynamic"])
def test_frozen_parameters_keep_their_values_whatever_the_optimizer(scale):
    """The optimizer holds the frozen parameters (``wrt=nnx.Param``): they get zero
    gradients and keep their values under weight decay; ``wrt=trainable(model)`` holds
    none of them; ``nnx.ModelAndOptimizer`` steps too."""
    model = _imported(_frozen_twin(False))
    frozen_before = jax.tree.map(np.asarray, nnx.state(model.get_layer("f_lstm"), nnx.Param))
    x = random_inputs(B, T, F, seed=12)
    y = np.zeros((B, T, 2), np.float32)
    step = training.make_train_step("mse", loss_scale=scale)
    decayed = optax.chain(optax.add_decayed_weights(0.5), optax.sgd(0.1, momentum=0.9))
    held = nnx.Optimizer(model, decayed, wrt=nnx.Param)
    trained = nnx.Optimizer(model, decayed, wrt=training.trainable(model))
    both = nnx.ModelAndOptimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    for optimizer in (held, trained, both):
        step(model, optimizer, x, y)
    after = jax.tree.map(np.asarray, nnx.state(model.get_layer("f_lstm"), nnx.Param))
    jax.tree.map(np.testing.assert_array_equal, after, frozen_before)
    opt_leaves = len(jax.tree.leaves(nnx.state(trained.opt_state)))
    assert opt_leaves < len(jax.tree.leaves(nnx.state(held.opt_state)))
    dense = model.get_layer("f_dense").kernel[...]
    assert not np.array_equal(
        np.asarray(dense),
        np.asarray(_imported(_frozen_twin(False)).get_layer("f_dense").kernel[...]),
    )


class _Holder(nnx.Module):
    def __init__(self, sub):
        self.sub = sub

    def __call__(self, x):
        return self.sub(x)


class _SharedUnder(nnx.Module):
    """One Linear used by two holders, and a head of its own."""

    def __init__(self):
        shared = nnx.Linear(F, 3, rngs=nnx.Rngs(0))
        self.a, self.b = _Holder(shared), _Holder(shared)
        self.head = nnx.Linear(3, 2, rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.head(self.a(x) + self.b(x))


@pytest.mark.parametrize("frozen", [False, np.False_, 0], ids=["False", "np.False_", "0"])
def test_freezing_reaches_shared_layers_and_takes_any_false(frozen):
    """Keras' setter freezes the layer objects beneath (a layer shared with a trainable
    parent too) and reads the value as a bool: the shared Linear, frozen through ``b``,
    moved (it was matched by ``a``'s path), and ``np.False_`` / ``0`` froze nothing."""
    model = _SharedUnder()
    model.b.trainable = frozen
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    shared = np.asarray(model.a.sub.kernel[...])
    head = np.asarray(model.head.kernel[...])
    x = random_inputs(B, T, F)[:, 0]
    training.make_train_step("mse")(model, optimizer, x, np.ones((B, 2), np.float32))
    np.testing.assert_array_equal(np.asarray(model.a.sub.kernel[...]), shared)
    assert not np.array_equal(np.asarray(model.head.kernel[...]), head)


def test_apply_constraints_only_projects_what_wrt_matches():
    """Keras constrains the variables its optimizer updates: an optimizer whose ``wrt``
    leaves a layer out leaves that layer's constraint alone too."""
    model = _imported(_frozen_twin(False))
    kernel = model.get_layer("f_lstm").cell.kernel
    before = np.asarray(kernel[...])
    training.apply_constraints(model, wrt=training.trainable(model))
    np.testing.assert_array_equal(np.asarray(kernel[...]), before)
    training.apply_constraints(model)
    assert np.linalg.norm(np.asarray(kernel[...]), axis=0).max() <= 0.1 + 1e-6


def test_a_dynamic_step_creates_its_state_for_a_restore():
    """``step.init(optimizer)``: a fresh optimizer gets the loss-scale state, so a saved
    optimizer state (scale, counter) restores into it with Flax's pure-dict helpers."""
    step = training.make_train_step("mse", loss_scale=2.0**15, dynamic_growth_steps=2)

    def make():
        layer = jrnn.LSTM(U, F, dtype="mixed_float16", rngs=nnx.Rngs(0))
        return layer, nnx.Optimizer(layer, training.keras_adam(1e-2), wrt=nnx.Param)

    x = random_inputs(4, T, F)
    layer, optimizer = make()
    step(layer, optimizer, x, np.full((4, U), np.inf, np.float32))  # skipped: scale halves
    step(layer, optimizer, x, np.zeros((4, U), np.float32))
    saved = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(optimizer)))
    _, fresh = make()
    step.init(fresh)
    target = nnx.state(fresh)
    nnx.replace_by_pure_dict(target, saved)
    nnx.update(fresh, target)
    assert float(fresh.dynamic_scale[...]) == 2.0**14 and int(fresh.step_counter[...]) == 1


def test_a_fixed_loss_scale_stays():
    """dynamic=False (tf.keras' fixed scale): the scale never changes, so a step whose
    scaled gradients overflow is skipped every time."""
    layer = jrnn.LSTM(U, F, dtype="mixed_float16", rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(layer, optax.sgd(0.01), wrt=nnx.Param)
    step = training.make_train_step("mse", loss_scale=2.0**15, dynamic=False)
    x, y = random_inputs(B, T, F), np.full((B, U), 300.0, np.float32)
    weights = [np.asarray(w) for w in cell_weights(layer.cell)]
    for _ in range(3):
        step(layer, optimizer, x, y)
    for got, want in zip(cell_weights(layer.cell), weights):
        np.testing.assert_array_equal(got, want)
    dynamic = training.make_train_step("mse", loss_scale=2.0**15)
    for _ in range(12):
        dynamic(layer, optimizer, x, y)
    assert float(optimizer.dynamic_scale[...]) < 2.0**15
    assert any(
        np.abs(np.asarray(got) - want).max() > 0
        for got, want in zip(cell_weights(layer.cell), weights)
    )


def test_keras_weights_keep_keras_order_through_jit():
    kmodel = keras.Sequential(
        [keras.Input((T, F)), keras.layers.LSTM(U, name="zz"), keras.layers.Dense(2, name="aa")]
    )
    model = _imported(kmodel)
    nnx.jit(lambda m, x: m(x))(model, random_inputs(B, T, F))  # an nnx.Dict comes back sorted
    assert model.layer_names == ("zz", "aa")
    shapes = [tuple(v[...].shape) for v in model.keras_weights()]
    assert shapes == [w.shape for w in kmodel.get_weights()]


def test_truncated_bptt_y_has_time():
    layer = jrnn.LSTM(8, F, stateful=True, rngs=nnx.Rngs(0))  # output (B, 8): no time axis
    optimizer = nnx.Optimizer(layer, optax.sgd(0.01), wrt=nnx.Param)
    x, y = random_inputs(2, 8, F), np.zeros((2, 8), np.float32)  # width 8 == 8 steps
    with pytest.raises(ValueError, match=r"does not match the model output's shape \(2, 8\)"):
        training.truncated_bptt(layer, optimizer, x, y, chunk_length=4)  # guessed: split
    losses = training.truncated_bptt(layer, optimizer, x, y, chunk_length=4, y_has_time=False)
    assert len(losses) == 2


def test_regularizers_and_constraints_of_the_layers_around_rnns_equal_keras(tmp_path):
    """Dense, Conv1D, Embedding, BatchNormalization and LayerNormalization regularizers
    (and a Dense constraint) were dropped on import: the training loss lacked them."""
    import importers

    L, reg = keras.layers, keras.regularizers
    kmodel = keras.Sequential(
        [
            keras.Input((T,), dtype="int32"),
            L.Embedding(9, F, embeddings_regularizer=reg.L2(0.01)),
            L.Conv1D(4, 2, padding="same", kernel_regularizer=reg.L1(0.01)),
            L.LayerNormalization(gamma_regularizer=reg.L2(0.02)),
            L.LSTM(U, return_sequences=True),
            L.BatchNormalization(gamma_regularizer=reg.L1(0.03)),
            L.Dense(
                2,
                kernel_regularizer=reg.L1L2(0.01, 0.02),
                activity_regularizer=reg.L2(0.05),
                kernel_constraint=keras.constraints.MaxNorm(0.2),
            ),
        ]
    )
    ids = np.random.default_rng(3).integers(0, 9, (B, T)).astype(np.int32)
    model = importers.load(kmodel)
    kmodel(ids)
    model(ids)
    expected = float(sum(kmodel.losses))
    assert float(training.regularization_loss(model)) == pytest.approx(expected, rel=1e-5)
    # Two steps: the L1 penalty's gradient at a zero bias is 0, as TensorFlow's (JAX's
    # abs has gradient 1 there; the second step's loss differed by 3.6e-4).
    _fit_both(kmodel, "mse", ids, np.zeros((B, T, 2), np.float32), steps=2)
    # and back: the jrnn layers' regularizers and constraint are written to the Keras file
    importers.save_keras(model, tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    again(ids)
    model(ids)
    expected = float(training.regularization_loss(model))
    assert float(sum(again.losses)) == pytest.approx(expected, rel=1e-5)
    dense = jrnn.Dense(2, 3, kernel_regularizer="l2", kernel_constraint="non_neg", rngs=nnx.Rngs(0))
    importers.save_keras(
        importers.keras_sequential([dense], input_shape=(3,)), tmp_path / "d.keras"
    )
    (kdense,) = keras.saving.load_model(tmp_path / "d.keras").layers
    assert isinstance(kdense.kernel_regularizer, keras.regularizers.L2)
    assert isinstance(kdense.kernel_constraint, keras.constraints.NonNeg)


def _masked_tagger(rng):
    """A Keras tagger (Embedding with mask_zero -> LSTM -> Dense(2) per step) and ids
    whose second row is padded after step 4."""
    tagger = keras.Sequential(
        [
            keras.Input((T,), dtype="int32"),
            keras.layers.Embedding(9, F, mask_zero=True),
            keras.layers.LSTM(U, return_sequences=True),
            keras.layers.Dense(2),
        ]
    )
    ids = rng.integers(1, 9, (B, T)).astype(np.int32)
    ids[1, 4:] = 0
    return tagger, ids


def test_sample_weights_as_keras():
    rng = np.random.default_rng(4)
    kmodel = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(U), keras.layers.Dense(1)])
    x, y = random_inputs(B, T, F), rng.standard_normal((B, 1)).astype(np.float32)
    _fit_both(kmodel, "mse", x, y, sample_weight=np.array([1.0, 0.0, 2.5], np.float32))
    tagger, ids = _masked_tagger(rng)  # per-step weights on top of the output mask
    weights = rng.uniform(0, 2, (B, T)).astype(np.float32)
    targets = rng.standard_normal((B, T, 2)).astype(np.float32)
    _fit_both(tagger, "mse", ids, targets, sample_weight=weights)


def test_per_sample_weights_weigh_every_step_of_a_sequence_loss():
    """A `(B,)` weight on a sequence output weighs every step of its sample (tf.keras;
    Keras 3 broadcasts it against the time axis). With an output mask jrnn raised a raw
    broadcasting error; without one it refused the weights."""
    rng = np.random.default_rng(5)
    tagger, ids = _masked_tagger(rng)
    targets = rng.standard_normal((B, T, 2)).astype(np.float32)
    per_sample = np.array([1.0, 0.0, 2.5], np.float32)
    per_step = np.repeat(per_sample[:, None], T, axis=1)  # (B, 1) broadcasts as well
    for x in (ids, np.where(ids == 0, 1, ids)):  # with and without masked steps
        losses = []
        for weights in (per_sample, per_step, per_sample[:, None]):
            model = _imported(tagger)
            optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
            step = training.make_train_step("mse")
            losses.append([float(step(model, optimizer, x, targets, weights)) for _ in range(2)])
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)
        np.testing.assert_allclose(losses[2], losses[1], rtol=1e-6)
    model = _imported(tagger)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    with pytest.raises(ValueError, match=r"`sample_weight` of shape \(2,\) does not match"):
        training.make_train_step("mse")(model, optimizer, ids, targets, per_sample[:2])


@pytest.mark.parametrize(
    "options",
    [
        {"amsgrad": True},
        {"weight_decay": 0.1},
        {"clipnorm": 0.05},
        {"clipvalue": 0.01},
        {"global_clipnorm": 0.05, "amsgrad": True, "weight_decay": 0.05},
    ],
)
def test_keras_adam_options_equal_keras(options):
    rng = np.random.default_rng(7)
    kmodel = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(U), keras.layers.Dense(2)])
    x, y = random_inputs(B, T, F), rng.standard_normal((B, 2)).astype(np.float32)
    model = _imported(kmodel)
    kmodel.compile(optimizer=keras.optimizers.Adam(0.01, **options), loss="mse")
    optimizer = nnx.Optimizer(model, training.keras_adam(0.01, **options), wrt=nnx.Param)
    step = training.make_train_step("mse")
    for _ in range(4):
        expected = float(kmodel.train_on_batch(x, y))
        assert float(step(model, optimizer, x, y)) == pytest.approx(expected, rel=1e-5)
    for got, want in zip(model.keras_weights(), kmodel.get_weights(), strict=True):
        np.testing.assert_allclose(np.asarray(got[...]), want, atol=2e-6)


def test_class_weights_as_keras():
    """`class_weight_to_sample_weight` gives Keras' sample weights (its own
    `class_weight_to_sample_weights`), and a step with them equals `train_on_batch`
    with `class_weight`."""
    from keras.src.trainers.data_adapters.data_adapter_utils import (
        class_weight_to_sample_weights,
    )

    rng = np.random.default_rng(5)
    weights = {0: 0.5, 2: 3.0, 5: 9.0}  # class 1 and 6 absent: 1.0
    cases = [
        np.array([0, 1, 2, 6], np.int32),
        np.array([[0], [2], [2], [1]], np.int64),
        np.array([0.2, 1.6, 2.4, 5.0], np.float32),  # rounded
        np.eye(6, dtype=np.float32)[[2, 0, 5, 1]],  # one-hot
        rng.uniform(size=(4, 6)).astype(np.float32),  # probabilities
    ]
    for y in cases:
        got = training.class_weight_to_sample_weight(y, weights)
        np.testing.assert_array_equal(got, class_weight_to_sample_weights(y, weights))
    ids = np.array([[0, 2, 1], [5, 5, 0]], np.int32)  # per step: Keras has no such case
    per_step = np.array([[0.5, 3.0, 1.0], [9.0, 9.0, 0.5]], np.float32)
    np.testing.assert_array_equal(
        training.class_weight_to_sample_weight(ids, weights, one_hot=False), per_step
    )
    np.testing.assert_array_equal(
        training.class_weight_to_sample_weight(np.eye(6, dtype=np.float32)[ids], weights),
        per_step,
    )
    np.testing.assert_array_equal(  # integer one-hot per step
        training.class_weight_to_sample_weight(np.eye(6, dtype=np.int32)[ids], weights),
        per_step,
    )
    with pytest.raises(ValueError, match="one_hot=True"):
        training.class_weight_to_sample_weight(ids, weights)  # ids or one-hot rows?
    with pytest.raises(ValueError, match="class ids"):
        training.class_weight_to_sample_weight(ids[0], {"a": 1.0})
    with pytest.raises(ValueError, match="shape"):
        training.class_weight_to_sample_weight(np.zeros((1, 2, 3, 4)), weights)

    kmodel = keras.Sequential(
        [keras.Input((T, F)), keras.layers.LSTM(U), keras.layers.Dense(3, activation="softmax")]
    )
    x, y = random_inputs(B, T, F), np.array([2, 0, 1], np.int32)
    model = _imported(kmodel)
    kmodel.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    step = training.make_train_step("sparse_categorical_crossentropy")
    class_weight = {0: 0.25, 2: 4.0}
    for _ in range(2):
        expected = float(kmodel.train_on_batch(x, y, class_weight=class_weight))
        sample_weight = training.class_weight_to_sample_weight(y, class_weight)
        assert float(step(model, optimizer, x, y, sample_weight)) == pytest.approx(
            expected, rel=1e-5
        )


def test_truncated_bptt_chunk_length_is_a_positive_integer():
    model = jrnn.LSTM(3, 2, stateful=True, return_sequences=True, rngs=nnx.Rngs(0))
    x = np.zeros((2, 4, 2), np.float32)
    for bad in (True, 2.5, 0):
        with pytest.raises(ValueError, match="`chunk_length` must be a positive integer"):
            jrnn.training.truncated_bptt(
                model,
                nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param),
                x,
                x[..., :1],
                chunk_length=bad,
            )
