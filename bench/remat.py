"""Long-sequence training with and without ``remat``: XLA temp memory and step time.

``python -m bench.remat [--batch 8 --time 10000 --features 32 --units 128]`` prints, for
jrnn LSTM training steps (forward + backward), the compiled program's temporary memory
(``memory_analysis().temp_size_in_bytes``) and the median step time, and their ratios,
for two losses: over every output (``return_sequences=True``: the output sequence and
its cotangent are live in both runs) and over the last output (sequence classification).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jrnn


def measure(remat, sequences, batch, steps, features, units, iters=7):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, steps, features)), jnp.float32)
    layer = jrnn.LSTM(units, features, return_sequences=sequences, remat=remat, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(params, x):
        return jnp.mean(nnx.merge(graphdef, params, rest)(x) ** 2)

    compiled = jax.jit(jax.grad(loss)).lower(params, x).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes
    jax.block_until_ready(compiled(params, x))
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        samples.append(time.perf_counter() - start)
    return temp, statistics.median(samples)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--time", type=int, default=10000)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--units", type=int, default=128)
    a = p.parse_args(argv)
    shape = (a.batch, a.time, a.features, a.units)
    for sequences, loss in ((True, "every output"), (False, "the last output")):
        plain = measure(False, sequences, *shape)
        rematted = measure(True, sequences, *shape)
        print(
            f"LSTM training step {shape}, loss over {loss}: temp memory "
            f"{plain[0] / 2**20:.1f} MiB -> {rematted[0] / 2**20:.1f} MiB "
            f"({rematted[0] / plain[0]:.2f}x), time {plain[1] * 1e3:.0f} ms -> "
            f"{rematted[1] * 1e3:.0f} ms ({rematted[1] / plain[1]:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
