"""First-call time (trace + compile + run) of a two-layer stacked LSTM, forward and training.

``python -m bench.compile_time`` prints it for two stacked ``LSTM`` layers and for the same
stack as one ``RNN([LSTMCell, LSTMCell])`` (both on the native CPU kernels where they apply),
and for that stack on the XLA scan (``native=False``).
Units 256, batch 64, T 100, 128 input features. Each model is timed in a process of its
own with JAX's persistent compilation cache off, so every figure includes the process's
one-time setup (the first trace, the backend) and nothing compiled before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jrnn


class _TwoLayers(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.first = jrnn.LSTM(256, 128, return_sequences=True, rngs=rngs)
        self.second = jrnn.LSTM(256, 256, rngs=rngs)

    def __call__(self, x):
        return self.second(self.first(x))


def _first_calls(model, x) -> tuple[float, float]:
    start = time.perf_counter()
    jax.block_until_ready(nnx.jit(lambda m, x: m(x))(model, x))
    forward = time.perf_counter() - start
    optimizer = nnx.Optimizer(model, optax.sgd(1e-3), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    start = time.perf_counter()
    jax.block_until_ready(train_step(model, optimizer, x))
    return forward, time.perf_counter() - start


def _stack(native):
    cells = [jrnn.LSTMCell(256, 128, rngs=nnx.Rngs(0)), jrnn.LSTMCell(256, 256, rngs=nnx.Rngs(1))]
    return jrnn.RNN(cells, native=native)


MODELS = {
    "two LSTM layers": lambda: _TwoLayers(nnx.Rngs(0)),
    "RNN([LSTMCell, LSTMCell])": lambda: _stack(native=None),
    "RNN([LSTMCell, LSTMCell], native=False)": lambda: _stack(native=False),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:  # one model, in this (fresh) process
        jax.config.update("jax_enable_compilation_cache", False)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((64, 100, 128)), jnp.float32)
        forward, train = _first_calls(MODELS[argv[0]](), x)
        print(f"{argv[0]}: first forward call {forward:.2f} s, first training step {train:.2f} s")
        return 0
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    for name in MODELS:
        done = subprocess.run([sys.executable, "-m", "bench.compile_time", name], env=env)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
