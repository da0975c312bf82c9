"""Run the benchmark grid: ``python -m bench [--profile quick|typical|full] ...``.

For every case (layer, shape, mode, dtype) every implementation runs in its own
subprocess; rounds alternate implementations (A B C, A B C, ...) and the reported time
is the median over rounds of each worker's median. Also measured once per run: the
machine's GEMM roofline (NumPy float32 matmul GFLOP/s), against which each time is
expressed as a percentage (the FLOPs of the recurrent + input matmuls only).

``--device gpu`` times the cases on the GPU (JAX's default backend there, PyTorch on
CUDA, TensorFlow where it sees a GPU; an implementation that would run on the CPU
reports itself unsupported), with a JAX float32 GEMM on the GPU as the roofline and the
peak GPU memory each framework allocated. ``--device cpu`` (default) hides any GPU from
the workers (``JAX_PLATFORMS=cpu``, ``CUDA_VISIBLE_DEVICES=``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHAPES = {
    # name: (batch, time, features, units)
    "streaming": (1, 1000, 64, 256),
    "typical": (64, 100, 128, 256),
    "throughput": (256, 50, 256, 512),
    "long": (8, 10000, 32, 128),
    # ConvLSTM2D only: (batch, time, channels, filters) on 16x16 frames, 3x3 kernels.
    "video": (8, 10, 8, 32),
}
VIDEO_SPATIAL, VIDEO_KERNEL = 16, 3
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1, "bilstm": 8, "conv_lstm2d": 4}
IMPLS = ("jrnn", "keras-jax", "keras-tf", "torch", "flax")
# extra jrnn configurations selectable with --impls (name -> worker impl and flags)
VARIANTS = {
    "jrnn-hoisted": ("jrnn", ["--hoist", "true"]),
    "jrnn-per-step": ("jrnn", ["--hoist", "false"]),
    "jrnn-remat": ("jrnn", ["--remat"]),
    "jrnn-scan": ("jrnn", ["--native", "false"]),  # the XLA scan (no native CPU kernel)
}
PROFILES = {
    "quick": {
        "layers": ["lstm"],
        "shapes": ["typical"],
        "modes": ["forward", "train"],
        "dtypes": ["float32"],
    },
    "typical": {
        "layers": ["lstm", "gru", "simple_rnn", "bilstm"],
        "shapes": ["typical"],
        "modes": ["forward", "train"],
        "dtypes": ["float32"],
    },
    "full": {
        "layers": ["lstm", "gru", "simple_rnn", "bilstm", "conv_lstm2d"],
        "shapes": list(SHAPES),  # conv_lstm2d runs on "video" only, the others not on it
        "modes": ["forward", "train"],
        "dtypes": ["float32", "bfloat16"],
    },
}
RESULTS = Path(__file__).resolve().parent / "results"
# --malloc retain: glibc settings under which freed memory is reused instead of returned
# to the kernel (one arena, no mmap for large blocks, no trimming). XLA:CPU allocates each
# call's temporaries afresh (one block of ~70-85 MB for an LSTM/GRU training step at the
# typical shape); by default glibc maps it anew from the kernel on every call and the page
# faults (~20k per call) cost as much as the arithmetic. Applied to every implementation.
MALLOC_RETAIN = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
    "MALLOC_TRIM_THRESHOLD_": str(1 << 32),
}


def gemm_roofline_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Measured float32 GEMM throughput of this machine (NumPy), GFLOP/s."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


# The CPU GEMM reference, measured in a worker-like process (see cpu_gemm_reference).
_GEMM_PROBE = r"""
import json, sys, time
import numpy as np

sizes, repeats = json.loads(sys.argv[1]), int(sys.argv[2])
gemms = {"NumPy": lambda a: a @ a}
try:
    import jax, jax.numpy as jnp

    matmul = jax.jit(jnp.matmul)
    gemms["XLA:CPU"] = lambda a: matmul(a, a).block_until_ready()
except ImportError:
    pass
best = (0.0, "")
for n in sizes:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    for name, gemm in gemms.items():
        x = a if name == "NumPy" else jnp.asarray(a)
        gemm(x)
        for _ in range(repeats):
            start = time.perf_counter()
            gemm(x)
            gflops = 2 * n**3 / (time.perf_counter() - start) / 1e9
            best = max(best, (gflops, f"{name} {n}x{n}"))
print(json.dumps({"gflops": best[0], "gemm": best[1]}))
"""


def cpu_gemm_reference(
    sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 3, env_extra: dict | None = None
) -> dict:
    """The best float32 GEMM throughput measured on the CPU: ``{"gflops", "gemm"}`` (which
    GEMM reached it). NumPy's BLAS and XLA:CPU's (JAX, as the JAX workers use) at every
    size, best of ``repeats``, in a process with the workers' environment (GPU hidden).
    One NumPy size alone (:func:`gemm_roofline_gflops`) can sit below what XLA's GEMM
    reaches, and a busy machine lowers any one measurement: callers measure it more than
    once, between their timed runs, and keep the best."""
    env = dict(os.environ, **(env_extra or {}), JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", _GEMM_PROBE, json.dumps(list(sizes)), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if proc.returncode != 0:  # no worker-like process: NumPy in this one
        return {"gflops": gemm_roofline_gflops(), "gemm": "NumPy 1024x1024"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gpu_gemm_roofline_gflops(n: int = 8192, repeats: int = 10) -> float:
    """Measured float32 GEMM throughput of JAX's default (GPU) device at JAX's default
    precision (TF32 on GPUs that have it), GFLOP/s."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    matmul(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def case_flops(layer: str, shape: tuple[int, int, int, int], mode: str) -> float:
    batch, steps, features, units = shape
    flops = 2 * batch * steps * (features + units) * GATES[layer] * units
    if layer == "conv_lstm2d":  # every pixel, every kernel tap
        flops *= VIDEO_SPATIAL**2 * VIDEO_KERNEL**2
    return flops * (3 if mode == "train" else 1)


def run_worker(
    impl: str,
    layer: str,
    shape,
    mode: str,
    dtype: str,
    iters: int,
    extra: list[str],
    env_extra: dict[str, str] | None = None,
    device: str = "cpu",
) -> dict:
    batch, steps, features, units = shape
    worker_impl, flags = VARIANTS.get(impl, (impl, []))
    extra = [*flags, *extra]
    cmd = [
        sys.executable,
        "-m",
        "bench.worker",
        "--impl",
        worker_impl,
        "--layer",
        layer,
        "--batch",
        str(batch),
        "--time",
        str(steps),
        "--features",
        str(features),
        "--units",
        str(units),
        "--mode",
        mode,
        "--dtype",
        dtype,
        "--iters",
        str(iters),
        "--device",
        device,
        *extra,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env_extra or {}))
    if device == "cpu":
        env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=1800,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"impl": impl, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return {**json.loads(lines[-1]), "impl": impl}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    p.add_argument("--layers", help="comma list, overrides the profile")
    p.add_argument("--shapes", help=f"comma list of {sorted(SHAPES)}, overrides the profile")
    p.add_argument("--modes", help="comma list of forward,train")
    p.add_argument("--dtypes", help="comma list of float32,bfloat16")
    p.add_argument("--impls", default=",".join(IMPLS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", default=str(RESULTS / "latest"))
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument(
        "--malloc",
        choices=("default", "retain"),
        default="default",
        help="retain: glibc keeps freed memory for reuse (MALLOC_ARENA_MAX=1, no mmap or "
        "trimming for large blocks) in every worker, see MALLOC_RETAIN",
    )
    a = p.parse_args(argv)
    env_extra = MALLOC_RETAIN if a.malloc == "retain" else None
    prof = dict(PROFILES[a.profile])
    for key in ("layers", "shapes", "modes", "dtypes"):
        if getattr(a, key):
            prof[key] = getattr(a, key).split(",")
    impls = a.impls.split(",")
    if a.device == "gpu":
        # This process and every worker share the GPU: none may take JAX's default 75%.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        roofline = gpu_gemm_roofline_gflops()
        machine = f"GEMM roofline: {roofline:.1f} GFLOP/s (JAX float32 on {_gpu_name()})."
    else:
        roofline = gemm_roofline_gflops()
        from jrnn import native

        machine = (
            f"GEMM roofline: {roofline:.1f} GFLOP/s (NumPy float32), {os.cpu_count()} cores; "
            f"jrnn's native kernels: {native.isa() or native.unavailable_reason()}"
            f"{' (bfloat16 on AMX)' if native.amx() else ''}."
        )
    print(machine)
    rows = []
    for layer in prof["layers"]:
        for shape_name in prof["shapes"]:
            if (layer == "conv_lstm2d") != (shape_name == "video"):
                continue  # ConvLSTM2D's grid point is the video shape, and only it
            shape = SHAPES[shape_name]
            for mode in prof["modes"]:
                for dtype in prof["dtypes"]:
                    per_impl: dict[str, list[dict]] = {i: [] for i in impls}
                    for r in range(a.rounds):
                        # Each round starts one implementation later, so no one always
                        # runs first (after another framework's process, or a quiet spell).
                        for impl in impls[r % len(impls) :] + impls[: r % len(impls)]:
                            iters = max(2, a.iters // 5) if shape_name == "long" else a.iters
                            per_impl[impl].append(
                                run_worker(
                                    impl, layer, shape, mode, dtype, iters, [], env_extra, a.device
                                )
                            )
                    row = {
                        "layer": layer,
                        "shape": shape_name,
                        "dims": shape,
                        "mode": mode,
                        "dtype": dtype,
                        "results": {},
                    }
                    for impl, runs in per_impl.items():
                        ok = [r for r in runs if "median_ms" in r]
                        if not ok:
                            row["results"][impl] = {
                                "note": runs[0].get("unsupported") or runs[0].get("error", "failed")
                            }
                            continue
                        ms = statistics.median(r["median_ms"] for r in ok)
                        row["results"][impl] = {
                            "ms": ms,
                            "first_call_s": statistics.median(r["first_call_s"] for r in ok),
                            "peak_mb": max(r["peak_rss_growth_mb"] for r in ok),
                            **(
                                {"peak_device_mb": max(r["peak_device_mb"] or 0 for r in ok)}
                                if a.device == "gpu"
                                else {}
                            ),
                            "roofline_pct": 100
                            * case_flops(layer, shape, mode)
                            / (ms / 1e3)
                            / (roofline * 1e9),
                        }
                    rows.append(row)
                    print(format_row(row), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps({"roofline_gflops": roofline, "device": a.device, "rows": rows}, indent=1)
    )
    note = (
        "Every worker ran with glibc's malloc retaining freed memory (`--malloc retain`: "
        + ", ".join(f"{k}={v}" for k, v in MALLOC_RETAIN.items())
        + ")."
        if env_extra
        else ""
    )
    out.with_suffix(".md").write_text(markdown(rows, machine, impls, note))
    try:
        chart(rows, impls, out.with_suffix(".png"), machine)
    except ImportError:
        pass
    print(f"wrote {out.with_suffix('.md')}")
    return 0


def format_row(row: dict) -> str:
    parts = []
    for impl, r in row["results"].items():
        parts.append(f"{impl} {r['ms']:.1f}ms" if "ms" in r else f"{impl} n/a")
    return f"{row['layer']:<11} {row['shape']:<10} {row['mode']:<7} {row['dtype']:<8} " + ", ".join(
        parts
    )


def _gpu_name() -> str:
    import jax

    return jax.devices()[0].device_kind


def markdown(rows: list[dict], machine: str, impls: list[str], note: str = "") -> str:
    head = [
        "layer",
        "shape (B,T,in,units)",
        "mode",
        "dtype",
        *[f"{i} ms" for i in impls],
        "jrnn vs fastest peer",
        "jrnn vs JAX peers",
        "jrnn % roofline",
        "jrnn first call s",
    ]
    lines = [
        machine + (f" {note}" if note else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in rows:
        res = row["results"]
        cells = [row["layer"], str(tuple(row["dims"])), row["mode"], row["dtype"]]
        cells += [f"{res[i]['ms']:.1f}" if "ms" in res.get(i, {}) else "n/a" for i in impls]
        peers = [res[i]["ms"] for i in impls if not i.startswith("jrnn") and "ms" in res.get(i, {})]
        jr = res.get("jrnn", {})
        jax_peers = [res[i]["ms"] for i in ("keras-jax", "flax") if "ms" in res.get(i, {})]
        for group in (peers, jax_peers):
            cells.append(f"{min(group) / jr['ms']:.2f}x" if "ms" in jr and group else "n/a")
        cells.append(f"{jr['roofline_pct']:.0f}%" if "ms" in jr else "n/a")
        cells.append(f"{jr['first_call_s']:.2f}" if "ms" in jr else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "`jrnn vs fastest peer` > 1 means jrnn is faster; `jrnn vs JAX peers` compares "
        "with the faster of keras-jax and flax. Medians over rounds of "
        "per-process medians; implementations alternate within each round."
    )
    return "\n".join(lines) + "\n"


def chart(rows: list[dict], impls: list[str], path: Path, machine: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{r['layer']}\n{r['shape']} {r['mode']}\n{r['dtype']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 4.5))
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        vals = [r["results"].get(impl, {}).get("ms", np.nan) for r in rows]
        ax.bar(np.arange(len(rows)) + k * width, vals, width, label=impl)
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2)
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("median time per call (ms, lower is better)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"jrnn vs peers. {machine}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
