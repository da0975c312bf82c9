"""The machine's float32 FMA peak, and how close jrnn's native CPU kernels run to it.

    python -m bench.fma_peak            (needs a C compiler: cc, gcc or clang)

Builds ``bench/fma_peak.c`` (independent FMA chains per thread: AVX-512 where the CPU has
it, else AVX2) into a temporary folder, takes the best of five runs on one thread and on
every core, then, where the native kernels run (their AVX-512 or AVX2 build, as
``jrnn.native.isa()`` picks; ``JRNN_NATIVE_ISA=avx2`` for the other), times jrnn's LSTM and GRU
forwards (float32) at the benchmark's typical and throughput shapes in this process and
prints their GEMM FLOP rate against that peak. This is the
ceiling behind the performance targets that the README reports as missed: a forward at
the peak cannot be 1.5x faster than a peer that already runs at 2/3 of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("fma_peak.c")


def fma_peak_gflops(
    threads: tuple[int, ...], seconds: float = 0.5, runs: int = 5
) -> tuple[list[float], str]:
    """Best of ``runs`` runs of independent FMA chains on each count of ``threads``, from
    one build: ``([GFLOP/s per thread count], instruction set)``."""
    cc = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if cc is None:
        raise SystemExit("fma_peak: no C compiler (cc, gcc or clang) on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "fma_peak"
        subprocess.run([cc, "-O3", "-pthread", str(SOURCE), "-o", str(exe)], check=True)
        probe = subprocess.run([str(exe), "1", "1000000"], capture_output=True, text=True)
        if probe.returncode:
            raise SystemExit(f"fma_peak: {probe.stderr.strip()}")
        per_second = 1e6 / float(probe.stdout.split()[1])
        iterations = str(max(1, int(per_second * seconds)))
        peaks = []
        for n in threads:
            runs_out = (
                subprocess.run(
                    [str(exe), str(n), iterations], capture_output=True, text=True, check=True
                ).stdout
                for _ in range(runs)
            )
            peaks.append(max(float(out.split()[0]) for out in runs_out))
    return peaks, probe.stdout.split()[2]


def kernel_gflops(layer: str, shape: tuple[int, int, int, int], iters: int = 20) -> float:
    """GEMM FLOP rate of jrnn's ``layer`` forward (native kernel) at ``shape``."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    import jrnn
    from bench.__main__ import case_flops
    from bench.worker import _time, jax_step

    features, units = shape[2:]
    cls = {"lstm": jrnn.LSTM, "gru": jrnn.GRU}[layer]
    model = cls(units, features, return_sequences=True, native=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal(shape[:3]), jnp.float32)
    _, median = _time(jax_step(model, x, "forward"), iters)
    return case_flops(layer, shape, "forward") / median / 1e9


def main(argv=None) -> int:
    from bench.__main__ import SHAPES

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--no-kernels", action="store_true", help="only the FMA peak")
    p.add_argument("--seconds", type=float, default=0.5, help="length of each FMA run")
    a = p.parse_args(argv)
    from jrnn import native

    cores = os.cpu_count() or 1
    (one, every), isa = fma_peak_gflops((1, cores), a.seconds)
    print(f"FMA peak ({isa}): {one:.0f} GFLOP/s on 1 thread, {every:.0f} on {cores} threads")
    why = native.unavailable_reason()
    if a.no_kernels or why:
        if why:
            print(f"jrnn's native kernels do not run here: {why}")
        return 0
    for layer in ("lstm", "gru"):
        for shape_name in ("typical", "throughput"):
            rate = kernel_gflops(layer, SHAPES[shape_name])
            print(
                f"jrnn {layer} {shape_name} forward ({native.isa()} build): {rate:.0f} GFLOP/s, "
                f"{100 * rate / every:.0f}% of the {cores}-thread FMA peak"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
