"""Short calls: the native kernels against the XLA scan, and the rule ``native=None`` follows.

``python -m bench.short_calls [--out PATH] [--quick]`` times jrnn's LSTM, GRU and
SimpleRNN layers (``features = units``) with ``native=True`` and ``native=False``,
alternating, for float32 and bfloat16, forward and training step
(``bench.worker.jax_step``), at units 64, 256 and 1024, batch 1 and 16, and time 1, 2, 4,
..., 64 (504 points; ``--quick``: units 256, batch 1, float32, 42 points; ``--cells``,
``--dtypes``, ``--modes``, ``--units``, ``--batches`` and ``--times`` set a grid of one's
own). It prints ``scan ms / kernel ms`` per point, then how much slower than the faster
path of each point three rules are: the kernel always, the scan always, and
:data:`jrnn.rnn.SHORT_CALL_ROWS` (the kernel from 2 steps and that many rows of batch ×
time), as the geometric mean and the largest of the per-point ratios and the sum of the
chosen times over the sum of the best. ``--out`` writes every point as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time

import jax.numpy as jnp
import numpy as np
from flax import nnx

import jrnn
import jrnn.rnn
from bench.worker import jax_step


def _median_ms(fn, calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(1e3 * (time.perf_counter() - start))
    return statistics.median(samples)


def measure(cell: str, dtype: str, mode: str, units: int, batch: int, steps: int) -> dict:
    """The kernel's and the scan's times (ms: the smallest of 3 alternating medians of 5
    calls) for one point."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, steps, units)), dtype)
    runs = {}
    for native in (True, False):
        layer = getattr(jrnn, cell)(
            units, units, return_sequences=True, native=native, dtype=dtype, rngs=nnx.Rngs(0)
        )
        step = jax_step(layer, x, mode)
        step()
        step()
        runs[native] = step
    times = {native: [] for native in runs}
    for _ in range(3):
        for native, step in runs.items():
            times[native].append(_median_ms(step, 5))
    return dict(
        cell=cell, dtype=dtype, mode=mode, units=units, batch=batch, time=steps,
        kernel_ms=min(times[True]), scan_ms=min(times[False]),
    )  # fmt: skip


def rule_kernel(point: dict) -> bool:
    """Whether ``native=None`` runs ``point`` on the kernel (``jrnn.rnn._short_call``)."""
    least = jrnn.rnn.SHORT_CALL_ROWS[jnp.dtype(point["dtype"])]
    return point["time"] >= jrnn.rnn.SHORT_CALL_STEPS and point["batch"] * point["time"] >= least


def score(points: list[dict], kernel) -> tuple[float, float, float]:
    """(geometric mean, largest) of chosen time / best time per point, and the sum of the
    chosen times over the sum of the best, where ``kernel(point)`` says which is chosen."""
    ratios, chosen, best = [], 0.0, 0.0
    for p in points:
        t = p["kernel_ms"] if kernel(p) else p["scan_ms"]
        b = min(p["kernel_ms"], p["scan_ms"])
        ratios.append(t / b)
        chosen += t
        best += b
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
    return geo, max(ratios), chosen / best


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", help="write every point as JSON here")
    p.add_argument("--quick", action="store_true", help="units 256, batch 1, float32 only")
    p.add_argument("--cells", default="LSTM,GRU,SimpleRNN")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--modes", default="forward,train")
    p.add_argument("--units", type=_ints, default=[64, 256, 1024])
    p.add_argument("--batches", type=_ints, default=[1, 16])
    p.add_argument("--times", type=_ints, default=[1, 2, 4, 8, 16, 32, 64])
    a = p.parse_args(argv)
    if a.quick:
        a.dtypes, a.units, a.batches = "float32", [256], [1]
    points = []
    for dtype, mode, cell, h, b in itertools.product(
        a.dtypes.split(","), a.modes.split(","), a.cells.split(","), a.units, a.batches
    ):
        row = [measure(cell, dtype, mode, h, b, t) for t in a.times]
        points += row
        cells = " ".join(f"{r['time']}:{r['scan_ms'] / r['kernel_ms']:.2f}" for r in row)
        print(f"{dtype} {mode:7s} {cell:9s} units {h:4d} batch {b:2d}, scan/kernel: {cells}")
    for name, kernel in (
        ("kernel always", lambda p: True),
        ("scan always", lambda p: False),
        ("native=None (SHORT_CALL_ROWS)", rule_kernel),
    ):
        geo, worst, total = score(points, kernel)
        print(
            f"{name}: {geo:.3f}x the faster path (geometric mean), {worst:.2f}x at worst, "
            f"total time {total:.3f}x the best"
        )
    if a.out:
        with open(a.out, "w") as f:
            json.dump(points, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
