"""``jrnn convert MODEL -o OUT``: a Keras file as a jrnn checkpoint directory."""

from __future__ import annotations

import argparse
import os
import time

from jrnn.cli._common import (
    UI,
    CLIError,
    call_arg,
    flat_arrays,
    layer_names,
    load_model,
    one_line,
    output_dir,
    random_inputs,
)


def add_parser(sub, common) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "convert",
        parents=[common],
        help="write a Keras .keras/.h5 model as a jrnn checkpoint directory",
        description=(
            "Load MODEL with importers.load (no TensorFlow) and write a jrnn checkpoint "
            "directory, loadable with jrnn.load(OUT). The checkpoint is reloaded and run "
            "on seeded random inputs to check that it reproduces the converted model."
        ),
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a .keras archive, a legacy .h5 model, or a jrnn checkpoint directory (written "
        "again to OUT)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="checkpoint directory (created if missing; a symbolic link to a directory "
        "writes into its target)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write over OUT's checkpoint files if OUT is a jrnn checkpoint (nothing else "
        "in it is touched)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the reload check")
    p.set_defaults(func=run)


def _check_output(out: str, overwrite: bool) -> None:
    """Raise unless the checkpoint may be written to ``out``: a new path under a writable
    directory, an empty directory, or (``overwrite``) a checkpoint, whose two files alone
    are replaced (the rest of the directory, which may hold the model itself, is never
    touched). A symbolic link to a directory stands for its target, as in ``cp``; the
    messages name ``-o``."""
    output_dir(out, "-o")  # empty, a file, a broken link, not writable
    if not os.path.exists(out) or not os.listdir(out):
        return
    is_checkpoint = os.path.isfile(os.path.join(out, "jrnn_checkpoint.json"))
    target = f" (a link to {os.path.realpath(out)})" if os.path.islink(out) else ""
    if is_checkpoint and overwrite:
        return
    if is_checkpoint:
        raise CLIError(f"-o {out}{target}: a jrnn checkpoint is already there; pass --overwrite")
    raise CLIError(
        f"-o {out}{target}: a directory that is not empty and holds no jrnn checkpoint; "
        "choose another -o (--overwrite replaces a checkpoint's files only)"
    )


def run(args: argparse.Namespace, ui: UI) -> int:
    """Convert, save, reload and compare."""
    import numpy as np

    import importers

    _check_output(args.output, args.overwrite)
    start = time.perf_counter()
    with ui.progress(3 if args.no_verify else 4, "loading") as bar:
        bar.step(f"loading {os.path.basename(args.model)}")
        model = load_model(args.model)
        try:
            from importers.checkpoint import save_checkpoint
        except ImportError as err:
            raise CLIError(
                f"{args.model}: importers.checkpoint is not available in this jrnn ({err}); "
                "update jrnn"
            ) from err
        bar.step("writing checkpoint")
        try:
            save_checkpoint(model, args.output)
        except OSError as err:
            where = err.filename or args.output
            raise CLIError(
                f"-o {args.output}: cannot write {where} ({err.strerror or one_line(err)}); "
                "choose another -o"
            ) from err
        result = {
            "command": "convert",
            "model": args.model,
            "output": args.output,
            "layers": layer_names(model),
        }
        if not args.no_verify:
            bar.step("reloading")
            back = importers.load(args.output)
            bar.step("comparing outputs")
            xs = random_inputs(model)
            a = flat_arrays(model(call_arg(xs)))
            b = flat_arrays(back(call_arg(xs)))
            diff = max(
                (float(np.max(np.abs(u.astype(np.float64) - v))) for u, v in zip(a, b)),
                default=0.0,
            )
            if len(a) != len(b) or diff > 0:
                raise CLIError(
                    f"{args.output}: the reloaded checkpoint differs from the converted model "
                    f"(max abs difference {diff:.3g}); report this bug with the model file"
                )
            result["verified"] = True
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.output) for f in fs)
    result.update(seconds=round(time.perf_counter() - start, 3), bytes=size)
    count = len(result["layers"])
    ui.say(
        f"wrote {args.output} ({size / 1024:.0f} KiB, {count} layer{'s' * (count != 1)}) "
        f"from {args.model}"
    )
    if result.get("verified"):
        ui.say("  reloaded with jrnn.load: outputs identical on seeded random inputs")
    ui.say(f"  load it without TensorFlow: jrnn.load({args.output!r})")
    ui.emit(result)
    return 0
