"""``jrnn inspect MODEL``: the recurrent layers' summary and, with ``--plots``, see-rnn
style figures of each (weights, gate activations, gradient flow, outputs)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os

from jrnn.cli._common import (
    UI,
    CLIError,
    call_arg,
    check_sizes,
    layer_names,
    load_model,
    model_inputs,
    non_negative,
    output_dir,
    positive,
)

# The gate shown by gate_heatmap, by activation keys (see jrnn.inspect.get_activations).
_GATES = ("f", "z", "h")


def add_parser(sub, common) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "inspect",
        parents=[common],
        help="summarise a model's recurrent layers; --plots writes see-rnn style PNGs",
        description=(
            "Print jrnn.inspect.summary of MODEL (a .keras/.h5 file or a jrnn checkpoint). "
            "With --plots DIR, write for each recurrent layer (or --layer) the weight "
            "histograms and heatmaps, a gate-activation heatmap, the outputs over time, and "
            "one gradient-flow figure, on seeded random inputs (or --inputs)."
        ),
    )
    p.add_argument("model", metavar="MODEL", help=".keras, .h5 or a jrnn checkpoint directory")
    p.add_argument("--layer", metavar="NAME", help="only this layer (its Keras name)")
    p.add_argument("--plots", metavar="DIR", help="write PNG figures into DIR (created if missing)")
    p.add_argument(
        "--inputs",
        metavar="FILE.npz|FILE.npy",
        help="the --plots figures' inputs: one array per model input by name, 'inputs', or "
        "arr_0... in order (default: seeded random)",
    )
    p.add_argument(
        "--batch",
        type=int,
        help="--plots' random inputs' batch (default 4, or the batch a stateful model fixes)",
    )
    p.add_argument(
        "--time",
        type=int,
        help="--plots' random inputs' steps where the model leaves them open (default 20)",
    )
    p.add_argument("--seed", type=int, help="--plots' random inputs' seed (default 0)")
    p.set_defaults(func=run)


def recurrent_layers(model, only: str | None = None) -> dict:
    """``{path: module}`` of the recurrent layers (RNN, Bidirectional) that no other
    recurrent layer contains; ``only`` selects one by Keras name or path."""
    from flax import nnx

    import jrnn

    found = {}
    for path, module in nnx.iter_graph(model):
        if isinstance(module, (jrnn.RNN, jrnn.Bidirectional)):
            found["/".join(map(str, path))] = module
    top = {
        p: m for p, m in found.items() if not any(p != q and p.startswith(q + "/") for q in found)
    }
    if only is None:
        return dict(sorted(top.items()))
    for path, module in found.items():
        if only in (path, getattr(module, "name", None), path.rsplit("/", 1)[-1]):
            return {path: module}
    raise CLIError(
        f"{only}: no recurrent layer of that name; recurrent layers: "
        f"{[p.rsplit('/', 1)[-1] for p in top]}; pass one of them to --layer"
    )


@contextlib.contextmanager
def _capture_inputs(modules: dict, store: dict):
    """Record each module's call input ``x`` and ``mask`` (last call) into ``store``."""
    swapped = []
    try:
        for path, module in modules.items():
            cls = type(module)

            @functools.wraps(cls.__call__)
            def __call__(self, x, *args, _path=path, _cls=cls, **kwargs):
                store[_path] = (x, kwargs.get("mask"))
                return _cls.__call__(self, x, *args, **kwargs)

            object.__setattr__(
                module, "__class__", type(cls.__name__, (cls,), {"__call__": __call__})
            )
            swapped.append((module, cls))
        yield store
    finally:
        for module, cls in swapped:
            object.__setattr__(module, "__class__", cls)


def _safe(path: str) -> str:
    return path.replace("/", "_").replace(os.sep, "_")


def _plots(model, layers: dict, xs: list, out_dir: str, ui: UI) -> list[str]:
    import numpy as np

    try:
        import matplotlib
    except ImportError as err:
        raise CLIError(
            f"--plots: matplotlib is not installed ({err}); pip install 'jrnn[plot]'"
        ) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jrnn import inspect as ji
    from jrnn import plot

    os.makedirs(out_dir, exist_ok=True)
    inputs: dict = {}
    with _capture_inputs(layers, inputs):
        model(call_arg(xs))
    written = []
    norms = {}
    with ui.progress(len(layers) * 5 + 1, "plots") as bar:
        for path, layer in layers.items():
            name = path.rsplit("/", 1)[-1]
            x, mask = inputs[path]
            base = os.path.join(out_dir, _safe(name))

            def save(kind, make, *fargs, _name=name, _base=base, **fkw):
                bar.step(f"{_name}: {kind}")
                fig = make(*fargs, savepath=f"{_base}_{kind}.png", **fkw)
                plt.close(fig)
                written.append(f"{_base}_{kind}.png")

            save("rnn_histogram", plot.rnn_histogram, layer)
            save("rnn_heatmap", plot.rnn_heatmap, layer)
            acts = ji.get_activations(layer, x, mask=mask)
            acts = acts.get("forward", acts) if isinstance(acts, dict) else acts
            acts = acts[0] if isinstance(acts, (list, tuple)) else acts  # stacked cells
            gate = next(g for g in _GATES if g in acts)
            save("gate_heatmap", plot.gate_heatmap, acts, gate)
            y = layer(x, mask=mask)
            y = np.asarray(y[0] if isinstance(y, (list, tuple)) else y)
            if y.ndim == 3:
                save("features_1D", plot.features_1D, y[:, :, :16], title=f"{name} outputs")
            elif y.ndim == 2:
                save("features_0D", plot.features_0D, y, title=f"{name} outputs")
            else:
                bar.step(f"{name}: outputs")
            bar.step(f"{name}: gradients")
            norms[name] = ji.gradients_over_time(layer, x, mask=mask)
        bar.step("gradient flow")
        path = os.path.join(out_dir, "gradient_flow.png")
        plt.close(plot.gradient_flow(norms, savepath=path))
        written.append(path)
    return written


def run(args: argparse.Namespace, ui: UI) -> int:
    """Print the summary; write the figures."""
    from jrnn.inspect import summary

    positive(args, "batch", "time")
    non_negative(args, "seed")
    if args.plots is not None:
        output_dir(args.plots, "--plots")  # before the work, not after it
    with ui.progress(None, "loading") as bar:
        bar.step("loading the model")
        model = load_model(args.model)
    layers = recurrent_layers(model, args.layer)
    check_sizes(model, batch=args.batch, time=args.time)  # as check refuses them
    if args.plots is None:
        options = ("inputs", "batch", "time", "seed")
        given = [f"--{n}" for n in options if getattr(args, n) is not None]
        if given:
            raise CLIError(
                f"{given[0]}: chooses the inputs of the --plots figures, and the summary "
                f"needs none; add --plots DIR or leave {given[0]} out"
            )
    if args.plots and not layers:
        raise CLIError(f"{args.model}: no recurrent layer to plot; --plots needs one")
    xs = model_inputs(args, model, default_time=20) if args.plots else None
    text = summary(model)
    if args.layer:
        lines = text.splitlines()
        (path,) = layers
        text = "\n".join(
            [lines[0]]
            + [ln for ln in lines[1:] if ln.split()[0] == path or ln.startswith(path + "/")]
        )
    pairs = any("/forward_layer " in line for line in text.splitlines())
    note = " (a Bidirectional's rows: the pair, then each direction)" if pairs else ""
    ui.say(f"{args.model}: {len(model.layers)} layers, {len(layers)} recurrent{note}")
    ui.say(text)
    result = {
        "command": "inspect",
        "model": args.model,
        "layers": layer_names(model),
        "recurrent_layers": [p.rsplit("/", 1)[-1] for p in layers],
        "summary": text,
    }
    if args.plots:
        written = _plots(model, layers, xs, args.plots, ui)
        ui.say(f"wrote {len(written)} figures in {args.plots}:")
        for path in written:
            ui.say(f"  {os.path.basename(path)}")
        result["plots"] = written
    ui.emit(result)
    return 0
