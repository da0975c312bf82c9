"""``jrnn check MODEL``: run Keras and jrnn on the same inputs, layer by layer.

The only subcommand that imports Keras (lazily, here). Keras' intermediate outputs come
from one sub-model ``keras.Model(model.inputs, [layer.output, ...])``; jrnn's from
:func:`jrnn.inspect.get_outputs` in one forward pass. The relative error of a layer is its
max abs error divided by the largest magnitude of Keras' output of that layer.
"""

from __future__ import annotations

import argparse
import math
import os

from jrnn.cli._common import (
    UI,
    CLIError,
    call_arg,
    existing_path,
    flat_arrays,
    layer_names,
    load_model,
    model_inputs,
    non_negative,
    one_line,
    positive,
)


def add_parser(sub, common) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "check",
        parents=[common],
        help="compare jrnn with Keras on the same inputs, layer by layer (needs Keras)",
        description=(
            "Run the Keras model (Keras imported here only) and its jrnn import on the "
            "same inputs and print, per layer, the max absolute and relative error. Exit "
            "status 1 when an error exceeds --atol, 0 when all are within it."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="a .keras archive or a legacy .h5 model")
    p.add_argument(
        "--inputs",
        metavar="FILE.npz|FILE.npy",
        help="inputs: one array per model input by name, 'inputs', or arr_0... in order "
        "(default: seeded random)",
    )
    p.add_argument(
        "--atol",
        type=float,
        help="max abs error (default: by the model's narrowest compute dtype, as the test "
        "suite's: float32 1e-5, float16 1e-2, bfloat16 6e-2)",
    )
    p.add_argument(
        "--batch",
        type=int,
        help="random inputs' batch (default 4, or the batch a stateful model fixes)",
    )
    p.add_argument(
        "--time",
        type=int,
        help="random inputs' steps where the model leaves them open (default 10)",
    )
    p.add_argument("--seed", type=int, help="random inputs' seed (default 0)")
    p.set_defaults(func=run)


def _import_keras(path: str, keras_major: int):
    """``(load_model, Model, name)`` of the Keras that wrote the file: tf_keras for
    Keras 1/2 files (``.h5``, or tf.keras' own ``.keras``) when installed, else Keras 3."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if keras_major < 3:
        try:
            import tf_keras

            return (
                lambda p: tf_keras.models.load_model(p, compile=False),
                tf_keras.Model,
                f"tf_keras {tf_keras.__version__}",
            )
        except ImportError:
            pass
    try:
        import keras
    except ImportError as err:
        raise CLIError(
            f"{path}: check runs the model in Keras, which is not installed ({err}); "
            "pip install 'jrnn[keras]'"
        ) from err
    return (
        lambda p: keras.saving.load_model(p, compile=False, safe_mode=True),
        keras.Model,
        f"Keras {keras.__version__} ({keras.backend.backend()} backend)",
    )


def _reset_keras_states(kmodel) -> None:
    """Zero the states of the model's stateful layers (each Keras call advances them)."""
    if hasattr(kmodel, "reset_states"):  # tf_keras
        kmodel.reset_states()
        return
    layers = getattr(kmodel, "_flatten_layers", None)
    for layer in layers(include_self=False, recursive=True) if layers else kmodel.layers:
        if getattr(layer, "stateful", False) and hasattr(layer, "reset_states"):
            layer.reset_states()


def _keras_outputs(kmodel, model_cls, names: list[str], xs: list):
    """``{name: [arrays]}`` of the named top-level layers, the model's outputs, and why
    layers were skipped (a shared layer has no single output). Both runs start from the
    same (zero) states: the sub-model shares the model's layers, so a stateful layer's
    states would otherwise carry the first run into the second."""
    import numpy as np

    outputs, kept, skipped = [], [], {}
    for name in names:
        try:
            out = kmodel.get_layer(name).output
        except (AttributeError, ValueError, RuntimeError) as err:
            skipped[name] = f"no single Keras output ({one_line(err)[:60]})"
            continue
        outputs.append(out)
        kept.append(name)
    values = []
    if outputs:
        sub = model_cls(inputs=kmodel.inputs, outputs=outputs)
        values = sub(call_arg(xs), training=False)
        values = values if len(outputs) > 1 else [values]
    per_layer = {n: [np.asarray(a) for a in _flat_keras(v)] for n, v in zip(kept, values)}
    _reset_keras_states(kmodel)
    final = [np.asarray(a) for a in _flat_keras(kmodel(call_arg(xs), training=False))]
    return per_layer, final, skipped


def _flat_keras(value) -> list:
    """Every tensor in a (nested) Keras output, in order."""
    if isinstance(value, dict):
        return [a for k in value for a in _flat_keras(value[k])]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _flat_keras(v)]
    if hasattr(value, "detach"):  # Keras' torch backend
        value = value.detach().cpu()
    if hasattr(value, "numpy"):
        return [value.numpy()]
    return [value]


def _errors(ours: list, theirs: list) -> tuple[float, float]:
    import numpy as np

    if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
        shapes = ([a.shape for a in ours], [b.shape for b in theirs])
        raise ValueError(f"output shapes differ: jrnn {shapes[0]}, Keras {shapes[1]}")
    abs_err, scale = 0.0, 0.0
    for a, b in zip(ours, theirs):
        a, b = a.astype(np.float64), b.astype(np.float64)
        abs_err = max(abs_err, float(np.max(np.abs(a - b), initial=0.0)))
        scale = max(scale, float(np.max(np.abs(b), initial=0.0)))
        if np.isnan(a).any() != np.isnan(b).any():
            abs_err = math.nan
    return abs_err, abs_err / scale if scale else abs_err


def run(args: argparse.Namespace, ui: UI) -> int:
    """Compare and print the table."""
    import importers
    from jrnn.inspect import get_outputs

    positive(args, "batch", "time")
    non_negative(args, "seed")
    if args.atol is not None and not args.atol >= 0:
        raise CLIError(f"--atol: expected a number >= 0; received {args.atol}")
    existing_path(args.model)
    if os.path.isdir(args.model):
        raise CLIError(
            f"{args.model}: a directory; check runs the Keras model, pass its .keras/.h5 file"
        )
    with ui.progress(5, "loading") as bar:
        bar.step("loading the model in jrnn")
        model = load_model(args.model)
        kf = importers.read_keras_file(args.model)
        major = int(str(kf.keras_version or "3").split(".")[0] or 3)
        xs = model_inputs(args, model, default_time=10)
        names = layer_names(model)
        if args.atol is None:
            args.atol = _default_atol(model)
        with ui.native_quiet():
            bar.step("importing Keras")
            keras_load, model_cls, keras_name = _import_keras(args.model, major)
            bar.step("loading the model in Keras")
            try:
                kmodel = keras_load(args.model)
            except Exception as err:
                raise CLIError(
                    f"{args.model}: {keras_name} cannot load it ({type(err).__name__}: "
                    f"{one_line(err)[:200]}); check needs a model Keras itself loads"
                ) from err
            bar.step("running Keras")
            per_layer, final, skipped = _keras_outputs(kmodel, model_cls, names, xs)
        bar.step("running jrnn")
        # get_outputs leaves the model's states as they were: both jrnn runs start from
        # the loaded (zero) states, as both Keras runs do.
        ours = get_outputs(model, call_arg(xs), [f"layers/{n}" for n in per_layer])
        if hasattr(model, "reset_states"):
            model.reset_states()
        our_final = flat_arrays(model(call_arg(xs)))
    rows = []
    for name in names:
        cls = type(model.layers[name]).__name__
        if name in skipped:
            rows.append({"layer": name, "class": cls, "skipped": skipped[name]})
            continue
        abs_err, rel_err = _errors(flat_arrays(ours[f"layers/{name}"]), per_layer[name])
        rows.append(
            {"layer": name, "class": cls, "max_abs_error": abs_err, "max_rel_error": rel_err}
        )
    abs_err, rel_err = _errors(our_final, final)
    rows.append(
        {"layer": "(outputs)", "class": "", "max_abs_error": abs_err, "max_rel_error": rel_err}
    )
    for row in rows:
        if "max_abs_error" in row:
            row["ok"] = bool(row["max_abs_error"] <= args.atol)
    ok = all(row.get("ok", True) for row in rows)
    shapes = [tuple(x.shape) for x in xs]
    ui.say(
        f"{args.model}: jrnn vs {keras_name} on inputs {', '.join(map(str, shapes))} "
        f"({'from ' + args.inputs if args.inputs else f'random, seed {args.seed or 0}'})"
    )
    table = [("layer", "class", "max abs error", "max rel error", "")]
    for row in rows:
        if "skipped" in row:
            table.append((row["layer"], row["class"], "-", "-", "skipped: " + row["skipped"]))
        else:
            table.append(
                (
                    row["layer"],
                    row["class"],
                    f"{row['max_abs_error']:.2e}",
                    f"{row['max_rel_error']:.2e}",
                    "ok" if row["ok"] else f"FAIL (> {args.atol:g})",
                )
            )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        ui.say("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    worst = max((r["max_abs_error"] for r in rows if "max_abs_error" in r), default=0.0)
    ui.say(
        f"{'OK' if ok else 'FAILED'}: max abs error {worst:.2e} "
        f"{'<=' if ok else '>'} atol {args.atol:g}"
    )
    ui.emit(
        {
            "command": "check",
            "model": args.model,
            "keras": keras_name,
            "inputs": args.inputs or "random",
            "input_shapes": shapes,
            "atol": args.atol,
            "layers": rows,
            "max_abs_error": worst,
            "ok": ok,
        }
    )
    return 0 if ok else 1


#: The test suite's tolerances (README, "Tolerances") by compute dtype.
_ATOL = {"float32": 1e-5, "float64": 1e-5, "float16": 1e-2, "bfloat16": 6e-2}


def _default_atol(model) -> float:
    """The tolerance of the narrowest compute dtype among the model's layers (a
    ``mixed_bfloat16`` model rounds to bfloat16 where Keras may round elsewhere)."""
    import numpy as np
    from flax import nnx

    found = {
        np.dtype(node.compute_dtype).name
        for _, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Module) and getattr(node, "compute_dtype", None) is not None
    }
    return max((_ATOL.get(name, 1e-5) for name in found), default=1e-5)
