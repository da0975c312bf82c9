"""First-call time (trace + compile + run) of a two-layer stacked LSTM, forward and training.

``python -m bench.compile_time`` prints it for two stacked ``LSTM`` layers and for the same
stack as one ``RNN([LSTMCell, LSTMCell])`` (both on the native CPU kernels where they apply),
and for that stack on the XLA scan (``native=False``).
Units 256, batch 64, T 100, 128 input features; each in a fresh compilation cache.
"""

from __future__ import annotations

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


def main() -> int:
    x = jnp.asarray(np.random.default_rng(0).standard_normal((64, 100, 128)), jnp.float32)
    models = {
        "two LSTM layers": lambda: _TwoLayers(nnx.Rngs(0)),
        "RNN([LSTMCell, LSTMCell])": lambda: _stack(native=None),
        "RNN([LSTMCell, LSTMCell], native=False)": lambda: _stack(native=False),
    }
    for name, make in models.items():
        forward, train = _first_calls(make(), x)
        print(f"{name}: first forward call {forward:.2f} s, first training step {train:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
