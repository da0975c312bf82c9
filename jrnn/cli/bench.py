"""``jrnn bench``: time jrnn against every installed peer on this machine.

The timing itself is the repository's benchmark runner (:mod:`bench`, at the root of the
source tree next to the ``jrnn`` package): each implementation runs in its own process
(``python -m bench.worker``), rounds alternate implementations, and the median of the
per-process medians is reported. This subcommand picks a small shape so that it finishes
in about a minute, and skips peers that are not installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import statistics
import sys
from pathlib import Path

from jrnn.cli._common import UI, CLIError, positive

LAYERS = ("lstm", "gru", "simple_rnn", "bilstm", "conv_lstm2d")
# implementation -> modules it needs
PEERS = {
    "jrnn": ("jax", "flax"),
    "keras-jax": ("keras", "jax"),
    "keras-tf": ("keras", "tensorflow"),
    "torch": ("torch",),
    "flax": ("flax", "optax"),
}


def add_parser(sub, common) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "bench",
        parents=[common],
        help="time jrnn against the installed peers (Keras JAX/TF, PyTorch, Flax)",
        description=(
            "Time one layer in jrnn and in every installed peer (Keras 3 on JAX and on "
            "TensorFlow, PyTorch, Flax), each in its own process, with the repository's "
            "bench runner. The default shape is small (about a minute); `python -m bench "
            "--profile full` runs the whole grid."
        ),
    )
    p.add_argument("--layer", choices=LAYERS, default="lstm", help="the layer timed (default lstm)")
    p.add_argument("--batch", type=int, default=16, help="inputs' batch (default 16)")
    p.add_argument("--time", type=int, default=50, help="inputs' steps (default 50)")
    p.add_argument(
        "--features", type=int, default=32, help="inputs' features per step (default 32)"
    )
    p.add_argument("--units", type=int, default=64, help="the layer's units (default 64)")
    p.add_argument(
        "--mode",
        choices=("forward", "train", "both"),
        default="forward",
        help="time the forward call, a training step (forward + gradients), or both "
        "(default forward)",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="parameters' and inputs' dtype (default float32)",
    )
    p.add_argument(
        "--impls",
        metavar="LIST",
        help=f"comma list of {','.join(PEERS)} (default: every installed one)",
    )
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds (default 1)")
    p.add_argument("--iters", type=int, default=10, help="timed calls per process (default 10)")
    p.set_defaults(func=run)


def find_runner():
    """The repository's ``bench`` runner module (``bench.__main__``), or ``None``.

    Looked up first in the source tree the imported ``jrnn`` comes from (an editable or
    in-place install), then on ``sys.path``; it is not part of the installed package.
    """
    import jrnn

    root = Path(jrnn.__file__).resolve().parent.parent
    if (root / "bench" / "worker.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        runner = importlib.import_module("bench.__main__")
    except ImportError:
        return None
    return runner if hasattr(runner, "run_worker") else None


def installed(impl: str) -> bool:
    """Whether the modules ``impl`` needs can be imported (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in PEERS[impl])


def parse_impls(text: str | None) -> list[str]:
    """The implementations ``--impls`` names (every installed one when not given); an
    empty list, an empty name or an unknown one is refused, not read as "all"."""
    if text is None:
        return [i for i in PEERS if installed(i)]
    impls = [i.strip() for i in text.split(",")]
    if not any(impls):
        raise CLIError(
            f"--impls: expected a comma list of {','.join(PEERS)}; received an empty "
            "string (leave --impls out for every installed one)"
        )
    unknown = [i for i in impls if i not in PEERS]
    if unknown:
        raise CLIError(f"--impls: unknown {unknown}; choose from {list(PEERS)}")
    return impls


def run(args: argparse.Namespace, ui: UI) -> int:
    """Time and print the comparison."""
    runner = find_runner()
    if runner is None:
        raise CLIError(
            "bench: the benchmark runner (bench/) ships with jrnn's source tree, not with the "
            "installed package; run `jrnn bench` from a clone (pip install -e .)"
        )
    impls = parse_impls(args.impls)
    positive(args, "batch", "time", "features", "units", "rounds", "iters")
    shape = (args.batch, args.time, args.features, args.units)
    modes = ["forward", "train"] if args.mode == "both" else [args.mode]
    runs: dict = {(m, i): [] for m in modes for i in impls}
    # The GEMM reference (bench's cpu_gemm_reference), measured before each round and
    # after the last, between the timed runs: the best of them stands for the machine.
    references = []
    steps = len(modes) * args.rounds * (len(impls) + 1) + 1
    with ui.progress(steps, "bench") as bar:
        for mode in modes:
            for r in range(args.rounds):
                bar.step("measuring the GEMM reference")
                references.append(runner.cpu_gemm_reference())
                for impl in impls:
                    bar.step(f"{args.layer} {mode}: {impl} (round {r + 1}/{args.rounds})")
                    runs[(mode, impl)].append(
                        runner.run_worker(impl, args.layer, shape, mode, args.dtype, args.iters, [])
                    )
        bar.step("measuring the GEMM reference")
        references.append(runner.cpu_gemm_reference())
    reference = max(references, key=lambda ref: ref["gflops"])
    roofline = reference["gflops"]
    rows = []
    for mode in modes:
        for impl in impls:
            ok = [r for r in runs[(mode, impl)] if "median_ms" in r]
            row = {"mode": mode, "impl": impl}
            if ok:
                ms = statistics.median(r["median_ms"] for r in ok)
                flops = runner.case_flops(args.layer, shape, mode)
                row.update(
                    ms=ms,
                    first_call_s=statistics.median(r["first_call_s"] for r in ok),
                    roofline_pct=100 * flops / (ms / 1e3) / (roofline * 1e9),
                )
                row["above_reference"] = row["roofline_pct"] > 100
            else:
                first = runs[(mode, impl)][0]
                row["note"] = str(first.get("unsupported") or first.get("error", "failed"))
            rows.append(row)
    ui.say(
        f"{args.layer} {args.dtype}, (batch, time, features, units) = {shape}; "
        f"{os.cpu_count()} CPU cores, GEMM reference {roofline:.0f} GFLOP/s (best of "
        f"{len(references)} measurements, {reference['gemm']}); median of {args.rounds} "
        f"round(s) x {args.iters} calls, one process each"
    )
    table = [("mode", "implementation", "ms/call", "first call s", "jrnn speed-up", "% of GEMM")]
    for row in rows:
        jr = next(r for r in rows if r["mode"] == row["mode"] and r["impl"] == impls[0])
        if "ms" in row:
            ratio = f"{row['ms'] / jr['ms']:.2f}x" if "ms" in jr and impls[0] == "jrnn" else "-"
            table.append(
                (
                    row["mode"],
                    row["impl"],
                    f"{row['ms']:.2f}",
                    f"{row['first_call_s']:.2f}",
                    ratio,
                    f"{row['roofline_pct']:.1f}%" + " (!)" * row["above_reference"],
                )
            )
        else:
            table.append((row["mode"], row["impl"], "n/a", "", "", row["note"][:60]))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        ui.say("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    ui.say("  jrnn speed-up = peer time / jrnn time (> 1: jrnn is faster)")
    ui.say(
        "  % of GEMM = the layer's matmul FLOP/s as a share of the GEMM reference (a ceiling "
        "when the reference reaches the machine's peak)"
    )
    if any(r.get("above_reference") for r in rows):
        ui.say(
            f"  (!) faster than the measured GEMM reference ({roofline:.0f} GFLOP/s): the "
            "reference fell short of this machine's peak (busy cores?), so these % are no "
            "bound; rerun on a quiet machine"
        )
    ui.emit(
        {
            "command": "bench",
            "layer": args.layer,
            "dtype": args.dtype,
            "shape": {"batch": shape[0], "time": shape[1], "features": shape[2], "units": shape[3]},
            "roofline_gflops": roofline,
            "roofline_gemm": reference["gemm"],
            "roofline_measurements": [ref["gflops"] for ref in references],
            "cpu_count": os.cpu_count(),
            "results": rows,
        }
    )
    return 0 if any("ms" in r for r in rows) else 1
