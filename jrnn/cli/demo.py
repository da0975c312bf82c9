"""``jrnn demo``: the whole porting job on the bundled example model.

``jrnn/data/example.keras`` is a small Keras 3 model (Embedding(mask_zero) ->
Bidirectional(LSTM) -> GRU -> Dense) trained on a toy task, and
``jrnn/data/example_reference.npz`` holds inputs and Keras' outputs on them; both are
written by ``scripts/make_example_model.py``. The demo loads the ``.keras`` file with
:mod:`importers` (no TensorFlow), runs it under ``nnx.jit``, compares with Keras' stored
outputs, writes a jrnn checkpoint to a temporary directory and reloads it, and times it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import statistics
import sys
import tempfile
import time

from jrnn.cli._common import UI, CLIError, layer_names

TOLERANCE = 1e-5


def add_parser(sub, common) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="port the bundled Keras example: load, jit, compare, checkpoint, time",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--repeat", type=int, default=20, help="timed calls (default 20)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ui: UI) -> int:
    """Run the demo and print its report."""
    import jax
    import numpy as np
    from flax import nnx

    import importers
    import jrnn

    if args.repeat < 1:
        raise CLIError(f"--repeat: expected a positive integer; received {args.repeat}")
    data = importlib.resources.files("jrnn") / "data"
    with contextlib.ExitStack() as stack:
        keras_file = str(stack.enter_context(importlib.resources.as_file(data / "example.keras")))
        ref_file = stack.enter_context(importlib.resources.as_file(data / "example_reference.npz"))
        with np.load(ref_file, allow_pickle=False) as ref:
            x, expected = ref["inputs"], ref["outputs"]
        with ui.progress(5, "demo") as bar:
            bar.step("loading example.keras with importers")
            start = time.perf_counter()
            model = importers.load(keras_file)
            load_s = time.perf_counter() - start
            start = time.perf_counter()  # again: without JAX's start-up and first compiles
            importers.load(keras_file)
            reload_s = time.perf_counter() - start

            bar.step("compiling with nnx.jit")
            apply = nnx.jit(lambda m, x: m(x))
            start = time.perf_counter()
            y = np.asarray(jax.block_until_ready(apply(model, x)))
            compile_s = time.perf_counter() - start
            error = float(np.max(np.abs(y - expected)))

            bar.step("timing")
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                jax.block_until_ready(apply(model, x))
                times.append(time.perf_counter() - start)
            run_ms = statistics.median(times) * 1e3

            bar.step("checkpoint round trip")
            checkpoint = _round_trip(model, apply, x, y, stack)

            bar.step("done")
    params = sum(
        int(np.prod(p.shape)) for _, p in nnx.iter_graph(model) if isinstance(p, nnx.Param)
    )
    tf_loaded = sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules)
    ok = error <= TOLERANCE and checkpoint.get("ok", True)
    names = layer_names(model)
    layers = " -> ".join(f"{n} ({type(model.layers[n]).__name__})" for n in names)
    ui.say(f"jrnn {jrnn.__version__} demo on {jax.default_backend()}: the bundled Keras example")
    ui.say(f"  model     example.keras: {layers}; {params} parameters")
    ui.say(
        f"  load      {load_s:.2f} s with importers, the first in this process (JAX's "
        f"start-up and first compiles), {reload_s:.2f} s again (TensorFlow imported: "
        f"{', '.join(tf_loaded) or 'no'})"
    )
    ui.say(
        f"  parity    {x.shape[0]} padded token sequences of {x.shape[1]} steps: "
        f"max |jrnn - Keras| = {error:.2e} (tolerance {TOLERANCE:g})"
    )
    ui.say(
        f"  speed     first call (trace + XLA compile) {compile_s:.2f} s, then "
        f"{run_ms:.3f} ms per call (median of {args.repeat})"
    )
    if "error" in checkpoint:
        ui.say(f"  checkpoint  not written: {checkpoint['error']}")
    else:
        ui.say(
            f"  checkpoint  {checkpoint['kib']:.0f} KiB written and reloaded with jrnn.load: "
            f"max difference {checkpoint['max_diff']:.1e}"
        )
    ui.say(
        f"{'OK' if ok else 'FAILED'}: port your own model with `jrnn convert MODEL.keras -o OUT`"
        " and `jrnn check MODEL.keras`"
    )
    ui.emit(
        {
            "command": "demo",
            "backend": jax.default_backend(),
            "layers": {n: type(model.layers[n]).__name__ for n in names},
            "parameters": params,
            "load_s": load_s,
            "reload_s": reload_s,
            "max_abs_error": error,
            "tolerance": TOLERANCE,
            "compile_s": compile_s,
            "run_ms": run_ms,
            "checkpoint": checkpoint,
            "tensorflow_imported": bool(tf_loaded),
            "ok": ok,
        }
    )
    return 0 if ok else 1


def _round_trip(model, apply, x, y, stack: contextlib.ExitStack) -> dict:
    import os

    import numpy as np

    import jrnn

    try:
        from importers.checkpoint import save_checkpoint
    except ImportError as err:
        return {"error": f"importers.checkpoint is not available ({err})", "ok": False}
    out = os.path.join(stack.enter_context(tempfile.TemporaryDirectory()), "example")
    save_checkpoint(model, out)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    back = jrnn.load(out)
    diff = float(np.max(np.abs(np.asarray(apply(back, x)) - y)))
    return {"kib": size / 1024, "max_diff": diff, "ok": diff == 0.0}
