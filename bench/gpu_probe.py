"""Where jrnn's GPU time goes: every GPU path of its LSTM, Bidirectional LSTM and GRU in
one process, so that the paths' ratios are free of cross-process noise.

    python -m bench.gpu_probe --out probe.jsonl      (a CUDA machine; bench/gpu_check.sh)

At the benchmark's typical, throughput and streaming shapes, forward and train (the
bench's :func:`bench.worker.jax_step`), it times: the LSTM on cuDNN (``native=True``),
cuDNN with its weights packed once outside the step (what the packing costs), and the
XLA scan (``native=False``) unrolled 1, 4 and 16 steps per loop iteration (16 is jrnn's
default on GPU); the same
for Bidirectional(LSTM) (one bidirectional cuDNN call); the GRU's scan (JAX has no cuDNN
GRU). Prints one line per case and appends it, as JSON, to ``--out``;
``--report probe.jsonl`` turns such a file into a Markdown table (no GPU needed).
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jrnn
from bench.__main__ import SHAPES
from bench.worker import _time, jax_step
from jrnn.native import cudnn


class _PrepackedLSTM(nnx.Module):
    """cuDNN's LSTM on a flat parameter vector that is a parameter itself (packed once)."""

    def __init__(self, layer: jrnn.LSTM):
        cell = layer.cell
        self.units = cell.units
        self.flat = nnx.Param(
            cudnn.pack_weights(
                cell.kernel[...][None], cell.bias[...][None], cell.recurrent_kernel[...][None]
            )
        )

    def __call__(self, x):
        h0 = jnp.zeros((1, x.shape[0], self.units), x.dtype)
        return cudnn._cudnn(x, h0, h0, self.flat[...], False)[0]


def _cases(features: int, units: int):
    rngs = nnx.Rngs(0)

    def lstm(**kw):
        return jrnn.LSTM(units, features, return_sequences=True, rngs=rngs, **kw)

    yield "lstm", "cudnn", lambda: lstm(native=True)
    yield "lstm", "cudnn-prepacked", lambda: _PrepackedLSTM(lstm())
    for unroll in (1, 4, 16):
        yield "lstm", f"scan-unroll{unroll}", lambda u=unroll: lstm(native=False, unroll=u)
    yield "bilstm", "cudnn", lambda: jrnn.Bidirectional(lstm(native=True), rngs=rngs)
    for unroll in (1, 4, 16):
        yield (
            "bilstm",
            f"scan-unroll{unroll}",
            lambda u=unroll: jrnn.Bidirectional(lstm(native=False, unroll=u), rngs=rngs),
        )
    for unroll in (1, 4, 16):
        yield (
            "gru",
            f"scan-unroll{unroll}",
            lambda u=unroll: jrnn.GRU(units, features, return_sequences=True, unroll=u, rngs=rngs),
        )


PATHS = ("cudnn", "cudnn-prepacked", "scan-unroll1", "scan-unroll4", "scan-unroll16")
DEFAULT = "scan-unroll16"  # jrnn's default on GPU (unroll=False there)


def markdown(rows: list[dict]) -> str:
    """The probe's rows as a Markdown table: one line per shape, layer and mode."""
    cells: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        cells.setdefault((row["shape"], row["layer"], row["mode"]), {})[row["path"]] = row

    def ms(case: dict, path: str) -> str:
        return f"{case[path]['ms']:.2f}" if "ms" in case.get(path, {}) else "-"

    head = ["shape", "layer", "mode", *(f"{p} ms" for p in PATHS)]
    head += ["default vs cuDNN", "first call s (scan 1/4/16)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (shape, layer, mode), case in cells.items():
        best = case.get(DEFAULT, {}).get("ms")
        base = case.get("cudnn", {}).get("ms")
        ratio = f"{base / best:.2f}x" if best and base else "-"
        first = "/".join(
            f"{case[f'scan-unroll{u}']['first_call_s']:.1f}"
            if "first_call_s" in case.get(f"scan-unroll{u}", {})
            else "-"
            for u in (1, 4, 16)
        )
        values = [ms(case, p) for p in PATHS]
        lines.append("| " + " | ".join([shape, layer, mode, *values, ratio, first]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shapes", default="typical,throughput,streaming")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--out", default="probe.jsonl")
    p.add_argument("--report", help="print a Markdown table of this probe.jsonl and exit")
    a = p.parse_args(argv)
    if a.report:
        with open(a.report) as f:
            print(markdown([json.loads(line) for line in f if line.strip()]), end="")
        return 0
    if not cudnn.on_gpu():
        raise SystemExit(f"needs a CUDA GPU; JAX's default backend is {jax.default_backend()}")
    print(jax.devices()[0].device_kind, "jax", jax.__version__, flush=True)
    for shape_name in a.shapes.split(","):
        batch, steps, features, units = SHAPES[shape_name]
        x = jnp.asarray(
            np.random.default_rng(0).standard_normal((batch, steps, features)), jnp.float32
        )
        for layer, path, make in _cases(features, units):
            for mode in ("forward", "train"):
                try:
                    first, median = _time(jax_step(make(), x, mode), a.iters)
                    row = {"ms": round(1e3 * median, 3), "first_call_s": round(first, 2)}
                except Exception as e:  # a path that cannot run is a result too
                    row = {"error": f"{type(e).__name__}: {e}"[:200]}
                row = {"shape": shape_name, "layer": layer, "path": path, "mode": mode, **row}
                print(json.dumps(row), flush=True)
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
