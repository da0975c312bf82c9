"""see-rnn style figures of jrnn layers (matplotlib, imported lazily, on its chosen backend).

Every function returns the ``matplotlib.figure.Figure`` and saves a PNG when given
``savepath=``. Data come from :mod:`jrnn.inspect`.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrnn import _checks
from jrnn import inspect as inspect_lib


def _plt():
    # The user's backend stays; without a display matplotlib itself picks Agg.
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, savepath: str | None, dpi: int = 100):
    fig.tight_layout()
    if savepath:
        fig.savefig(savepath, dpi=dpi)
    return fig


def _plottable(data: Any) -> np.ndarray:
    """``data`` as a NumPy array matplotlib can draw: floats other than float32/float64
    (bfloat16, float16) as float32 — matplotlib cannot reduce or bin ``ml_dtypes`` arrays.
    Every plot takes its data through here."""
    data = np.asarray(data)
    if jnp.issubdtype(data.dtype, jnp.floating) and data.dtype not in (np.float32, np.float64):
        return data.astype(np.float32)
    return data


def _plottable_tree(tree: Any) -> Any:
    """:func:`_plottable` on every array of nested dicts and lists, keeping the dicts'
    order (gate order; ``jax.tree.map`` would sort the labels)."""
    if isinstance(tree, dict):
        return {key: _plottable_tree(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_plottable_tree(value) for value in tree]
    return _plottable(tree)


def _directions(layer: Any, concat_gates: bool) -> list[tuple[str, dict]]:
    """One ``(title, weights)`` block per direction and cell, arrays as :func:`_plottable`."""

    def blocks(weights: Any, title: str) -> list[tuple[str, dict]]:
        if isinstance(weights, list):  # stacked cells
            return [(f"{title} CELL {k}".strip(), w) for k, w in enumerate(weights)]
        return [(title, weights)]

    weights = _plottable_tree(inspect_lib.get_rnn_weights(layer, concat_gates))
    if isinstance(weights, dict) and set(weights) == {"forward", "backward"}:
        return blocks(weights["forward"], "FORWARD LAYER") + blocks(
            weights["backward"], "BACKWARD LAYER"
        )
    return blocks(weights, "")


def _check_call_keywords(model: Any, call_kwargs: dict, function: str) -> None:
    """Extra keywords of the weight plots go to the model's call: refuse any it does not
    take (a misspelt plot argument), naming the function's own and the call's."""
    import inspect as py_inspect

    call = getattr(type(model), "call_with_mask", None) or type(model).__call__
    params = py_inspect.signature(call).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(k for k in call_kwargs if k not in params)
    if unknown:
        own = [p for p in py_inspect.signature(_PLOTS[function]).parameters if p != "call_kwargs"]
        raise TypeError(
            f"{function}: unknown keyword argument(s) {unknown}; it takes {own} and the "
            f"keywords of {type(model).__name__}'s call "
            f"{[p for p in params if p not in ('self', 'inputs', 'x')]}."
        )


def _drawn_layer(
    layer: Any,
    mode: str,
    data: Any,
    x: Any,
    y: Any,
    model: Any,
    loss: Any,
    call_kwargs: dict,
    function: str,
) -> Any:
    """The layer whose weights a weight plot draws: ``layer`` itself (``mode="weights"``),
    a copy holding the loss' gradients w.r.t. its weights (``mode="grads"``), or a copy
    holding ``data`` (an ``nnx.State`` shaped like the layer's, or with ``model``, the
    model's parameters): see-rnn's ``mode`` and ``data``."""
    if mode not in ("weights", "grads"):
        raise ValueError(f"{function}: `mode` must be 'weights' or 'grads'; received {mode!r}.")
    if model is None and not isinstance(layer, nnx.Module):
        raise TypeError(
            f"{function}: `layer` must be a jrnn recurrent layer or cell (or, with `model=`, "
            f"a name or index of one of its layers); received {layer!r}."
        )
    target = layer if model is None else model
    _check_call_keywords(target, call_kwargs, function)
    inspect_lib._chosen_layer(function, layer, model, recurrent=True)
    if data is not None and not isinstance(data, nnx.State):  # get_rnn_weights' form
        if model is not None:
            layer = inspect_lib.sub_layer(model, layer)
        return inspect_lib.with_rnn_weights(layer, data)
    if data is not None:
        return inspect_lib._with_values(target, data, layer, f"{function}: `data`")
    if mode == "grads":
        if x is None:
            raise ValueError(
                f"{function}: mode='grads' needs the inputs `x` (and `y` for the default mean "
                "squared error; without it, the sum of squares of the output is the loss)."
            )
        inspect_lib._inputs_are_arrays(function, x, y)
        return inspect_lib.layer_gradients(layer, x, y, loss=loss, model=model, **call_kwargs)
    if call_kwargs or x is not None or y is not None or loss is not None:
        raise ValueError(
            f"{function}: `x`, `y`, `loss` and call arguments are for mode='grads'; received "
            "them with mode='weights'."
        )
    return layer if model is None else inspect_lib.sub_layer(model, layer)


def _color_range(norm: Any, auto: tuple, function: str) -> tuple:
    """``(vmin, vmax)`` for ``norm``: ``"auto"`` (the caller's ``auto`` range), None (each
    image its own) or a ``(vmin, vmax)`` pair."""
    if isinstance(norm, str) and norm == "auto":
        return auto
    if norm is None:
        return None, None
    if isinstance(norm, (tuple, list)) and len(norm) == 2:
        return tuple(norm)
    raise ValueError(f"{function}: `norm` must be 'auto', None or (vmin, vmax); received {norm!r}.")


def _features(
    data: Any,
    function: str,
    shapes: str,
    ranks: tuple[int, ...] = (2, 3),
    hint: str = "reshape ConvLSTM outputs to (samples, timesteps, channels) first",
) -> np.ndarray:
    """``data`` as a plottable array (:func:`_plottable`) of one of ``ranks``, else a
    ValueError naming ``function``, the ``shapes`` expected and the shape received."""
    data = _plottable(data)
    if data.ndim not in ranks:
        raise ValueError(
            f"{function}: `data` must be {shapes}; received shape {data.shape} ({hint})."
        )
    return data


def rnn_histogram(
    layer: Any,
    *,
    mode: str = "weights",
    x: Any = None,
    y: Any = None,
    model: Any = None,
    loss: Any = None,
    data: Any = None,
    bins: int = 150,
    equate_axes: int = 1,
    savepath: str | None = None,
    w: float = 1.0,
    h: float = 1.0,
    **call_kwargs: Any,
):
    """Histograms per gate (rows) of the kernel and recurrent kernel (columns), plus a bias
    row; one column block per direction/cell. NaN/Inf are annotated in red and zeroed.

    ``mode="grads"`` draws the gradients of the loss w.r.t. those weights instead (see-rnn's
    ``mode``): of ``loss(layer(x), y)``, or with ``model=``, of ``loss(model(x), y)`` with
    ``layer`` one of its sub-layers (the module, a name or an index); ``loss`` and ``y`` as
    :func:`jrnn.inspect.get_gradients`, extra keywords go to the call. ``data=`` draws
    given values: an ``nnx.State`` shaped like the layer's parameters (e.g. saved during
    training; with ``model=``, like the model's), or arrays in the form
    :func:`jrnn.inspect.get_rnn_weights` returns, or a flat list in Keras'
    ``get_weights()`` order (see-rnn's prefetched ``data``; see
    :func:`jrnn.inspect.with_rnn_weights`). Histograms are densities, as see-rnn's. The
    gate blocks are :func:`jrnn.inspect.get_rnn_weights`' with ``concat_gates=False``
    (CuDNN layers' in Keras' applied layout); the default loss covers every output of the
    layer or model (both of a Bidirectional with ``merge_mode=None``).
    ``equate_axes``: 0 each subplot its own ranges; 1 (see-rnn's default) one symmetric
    x-range ``±max|w|`` and one y-range for the kernel and recurrent subplots of each
    direction/cell block; 2 the same over all blocks. The bias row keeps its own.
    """
    if equate_axes not in (0, 1, 2):  # True and False are 1 and 0, as in see-rnn
        raise ValueError(
            f"rnn_histogram: `equate_axes` must be 0, 1 or 2; received {equate_axes!r}."
        )
    layer = _drawn_layer(layer, mode, data, x, y, model, loss, call_kwargs, "rnn_histogram")
    plt = _plt()
    blocks = _directions(layer, concat_gates=False)
    rows = max(len(weights["kernel"]) for _, weights in blocks) + 1
    cols = 2 * len(blocks)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols * w, 2.2 * rows * h), squeeze=False)
    for ax in axes[:-1].ravel():
        ax.axis("off")
    # The values of each subplot, then one set of bin edges per group of subplots that
    # share an x-range: bins of each subplot's own range would be invisibly thin on the
    # shared axis wherever one gate's values span far less than another's (gradients).
    panels = {}
    for b, (title, weights) in enumerate(blocks):
        for r, label in enumerate(weights["kernel"]):
            for c, name in enumerate(("kernel", "recurrent_kernel")):
                values = np.asarray(weights[name][label]).ravel()
                kind = "KERNEL" if c == 0 else "RECURRENT"
                panels[(r, 2 * b + c)] = (values, f"{title} {kind} {label}".strip(), b)
    zeroed = {k: np.nan_to_num(v, nan=0, posinf=0, neginf=0) for k, (v, _, _) in panels.items()}
    groups: dict[Any, list] = {}
    for key, (_, _, b) in panels.items():
        groups.setdefault({0: key, 1: b, 2: 0}[int(equate_axes)], []).append(key)
    for keys in groups.values():
        shown = np.concatenate([zeroed[k] for k in keys])  # NaN/Inf zeroed, as see-rnn
        lo, hi = (float(shown.min()), float(shown.max())) if shown.size else (-1.0, 1.0)
        if equate_axes:  # see-rnn: a symmetric x-range and one y-range per group
            lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        for key in keys:
            values, subtitle, _ = panels[key]
            ax = axes[key]
            ax.axis("on")
            nan = inspect_lib.detect_nans(values)
            ax.hist(zeroed[key], bins=edges, density=True)  # as see-rnn
            ax.set_xlim(lo, hi)
            ax.set_title(subtitle, fontsize=8)
            if nan:
                ax.annotate(nan, (0.05, 0.85), xycoords="axes fraction", color="red")
        if equate_axes:
            top = max(axes[key].get_ylim()[1] for key in keys)
            for key in keys:
                axes[key].set_ylim(0, top)
    for b, (title, weights) in enumerate(blocks):
        bias_ax = axes[-1, 2 * b]
        axes[-1, 2 * b + 1].axis("off")
        if "bias" in weights:
            flat = np.concatenate(
                [
                    np.ravel(
                        np.asarray(
                            v if not isinstance(v, dict) else np.concatenate(list(v.values()))
                        )
                    )
                    for v in weights["bias"].values()
                ]
            )
            bias_ax.hist(
                np.nan_to_num(flat, nan=0, posinf=0, neginf=0), bins=bins, color="tab:orange"
            )
            bias_ax.set_title(f"{title} BIAS".strip(), fontsize=8)
            nan = inspect_lib.detect_nans(flat)
            if nan:
                bias_ax.annotate(nan, (0.05, 0.85), xycoords="axes fraction", color="red")
        else:
            bias_ax.axis("off")
    if mode == "grads" and data is None:
        fig.suptitle("weight gradients", fontsize=10)
    return _finish(fig, savepath)


def rnn_heatmap(
    layer: Any,
    *,
    mode: str = "weights",
    x: Any = None,
    y: Any = None,
    model: Any = None,
    loss: Any = None,
    data: Any = None,
    cmap: str = "bwr",
    norm: Any = "auto",
    absolute_value: bool = False,
    normalize: bool = False,
    show_bias: bool = True,
    gate_sep_width: float = 1.0,
    savepath: str | None = None,
    **call_kwargs: Any,
):
    """Kernel and recurrent kernel (and bias) as images with gate separator lines and gate
    labels (each cell of a stack its own); ``norm="auto"`` is a symmetric colour range
    ``±max|w|`` over the kernels of all directions; 1-D recurrent kernels (IndRNN) are
    drawn as a narrow column. Rows are the inputs (``"Channel units"``) or the units
    (``"Hidden units"``), columns the units of each gate: the gate blocks of
    :func:`jrnn.inspect.get_rnn_weights` with ``concat_gates=False`` side by side, so
    CuDNN layers are drawn in Keras' applied layout (``[i, j]``: input ``i`` to unit
    ``j``), not their stored cuDNN blocks.

    ``mode="grads"``, ``x``, ``y``, ``model``, ``loss``, ``data`` and extra call keywords
    as :func:`rnn_histogram`: the weights' gradients, a sub-layer of a model, given values.
    """
    layer = _drawn_layer(layer, mode, data, x, y, model, loss, call_kwargs, "rnn_heatmap")
    plt = _plt()
    # Per gate, then side by side: each block's own labels, CuDNN in the applied layout.
    blocks = [(title, _joined_gates(weights)) for title, weights in _directions(layer, False)]
    mats = []
    for _, (weights, _) in blocks:
        for name in ("kernel", "recurrent_kernel"):
            m = weights[name]
            m = m.reshape(-1, m.shape[-1]) if m.ndim > 2 else (m[:, None] if m.ndim == 1 else m)
            mats.append(np.abs(m) if absolute_value else m)
    if normalize:
        mats = [(m - m.min()) / (np.ptp(m) or 1.0) for m in mats]
    vmax = max(float(np.nanmax(np.abs(m))) for m in mats) or 1.0
    vmin, vmax = _color_range(
        norm, (0.0 if (absolute_value or normalize) else -vmax, vmax), "rnn_heatmap"
    )
    n_rows = 3 if show_bias else 2
    fig, axes = plt.subplots(
        n_rows, len(blocks), figsize=(5 * len(blocks), 3 * n_rows), squeeze=False
    )
    k = 0
    for b, (title, (weights, labels)) in enumerate(blocks):
        for r, name in enumerate(("kernel", "recurrent_kernel")):
            ax = axes[r, b]
            m = mats[k]
            k += 1
            image = ax.imshow(
                m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
            )
            width = m.shape[1]
            if len(labels) > 1 and width % len(labels) == 0:
                step = width // len(labels)
                for g in range(1, len(labels)):
                    ax.axvline(g * step - 0.5, color="black", linewidth=gate_sep_width)
                ax.set_xticks([step * (g + 0.5) - 0.5 for g in range(len(labels))])
                ax.set_xticklabels(labels, fontsize=8)
            if width == 1:  # 1-D recurrent kernel (IndRNN): a narrow strip
                ax.set_box_aspect(None)
                ax.set_aspect(0.25 * m.shape[0] / max(m.shape[0], 1), adjustable="box")
                ax.set_xticks([0])
                ax.set_xticklabels(["diag"], fontsize=8)
            ax.set_ylabel("Channel units" if name == "kernel" else "Hidden units")
            ax.set_title(f"{title} {name.upper()}".strip(), fontsize=9)
            fig.colorbar(image, ax=ax)
        if show_bias:
            ax = axes[2, b]
            bias = weights.get("bias")
            if bias is None:
                ax.axis("off")
                continue
            bias = np.atleast_2d(bias)
            bias = np.abs(bias) if absolute_value else bias
            if norm == "auto" and not (absolute_value or normalize):
                bmax = float(np.nanmax(np.abs(bias))) or 1.0
                bmin = -bmax
            else:
                bmin, bmax = (None, None) if norm == "auto" else (vmin, vmax)
            image = ax.imshow(
                bias, cmap=cmap, vmin=bmin, vmax=bmax, aspect="auto", interpolation="nearest"
            )
            if len(labels) > 1 and bias.shape[1] % len(labels) == 0:
                step = bias.shape[1] // len(labels)
                for g in range(1, len(labels)):
                    ax.axvline(g * step - 0.5, color="black", linewidth=gate_sep_width)
                ax.set_xticks([step * (g + 0.5) - 0.5 for g in range(len(labels))])
                ax.set_xticklabels(labels, fontsize=8)
            ax.set_yticks(range(bias.shape[0]))
            ax.set_yticklabels(
                ["input", "recurrent"][: bias.shape[0]] if bias.shape[0] == 2 else [""]
            )
            ax.set_title(f"{title} BIAS".strip(), fontsize=9)
            fig.colorbar(image, ax=ax)
    if mode == "grads" and data is None:
        fig.suptitle("weight gradients", fontsize=10)
    return _finish(fig, savepath)


def _joined_gates(weights: dict) -> tuple[dict, tuple[str, ...]]:
    """One cell's per-gate weights (``get_rnn_weights(..., concat_gates=False)``) with the
    gate blocks side by side again, and its gate labels. Two-part biases give two rows
    (input, recurrent)."""
    labels = tuple(weights["kernel"])
    joined = {
        name: np.concatenate([weights[name][g] for g in labels], axis=-1)
        for name in ("kernel", "recurrent_kernel")
    }
    if "bias" in weights:
        parts = [weights["bias"][g] for g in labels]
        if isinstance(parts[0], dict):  # input and recurrent biases
            parts = [np.stack([p["input"], p["recurrent"]]) for p in parts]
        joined["bias"] = np.concatenate(parts, axis=-1)
    return joined, labels


def _share(share_xy: Any, function: str) -> tuple:
    """see-rnn's ``share_xy``: one value or a ``(sharex, sharey)`` pair, each a bool (or 0/1)
    or matplotlib's ``"row"``/``"col"``/``"all"``/``"none"``."""
    pair = tuple(share_xy) if isinstance(share_xy, (tuple, list)) else (share_xy, share_xy)
    valid = (True, False, "row", "col", "all", "none")
    if len(pair) != 2 or not all(v in valid and not isinstance(v, float) for v in pair):
        raise ValueError(
            f"{function}: `share_xy` must be a bool, 'row', 'col', 'all', 'none' or a pair of "
            f"these for (x, y); received {share_xy!r}."
        )
    return tuple(bool(v) if isinstance(v, int) else v for v in pair)


def _grid(n_rows: Any, n: int, function: str) -> tuple[int, int]:
    if n_rows is None:
        n_rows = int(np.ceil(np.sqrt(n)))
    if not isinstance(n_rows, int) or isinstance(n_rows, bool) or n_rows < 1:
        raise ValueError(f"{function}: `n_rows` must be a positive int; received {n_rows!r}.")
    n_rows = min(n_rows, n)
    return n_rows, int(np.ceil(n / n_rows))


def _panels(
    n: int, n_rows: Any, size: tuple[float, float], share_xy: Any, function: str
) -> tuple[Any, list]:
    """A figure of ``n`` panels, ``n_rows`` rows (None: about square; "vertical": one
    column), each ``size`` inches, axes shared as ``share_xy``; the grid's spare axes are
    hidden. Returns ``(figure, the n axes in order)``."""
    plt = _plt()
    n_rows, n_cols = (n, 1) if n_rows == "vertical" else _grid(n_rows, n, function)
    sharex, sharey = _share(share_xy, function)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(size[0] * n_cols, size[1] * n_rows + 0.6),
        squeeze=False,
        sharex=sharex,
        sharey=sharey,
    )
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, list(axes.ravel()[:n])


def _max_timesteps(max_timesteps: Any, function: str) -> slice:
    if max_timesteps is None:
        return slice(None)
    if not isinstance(max_timesteps, int) or isinstance(max_timesteps, bool) or max_timesteps < 1:
        raise ValueError(
            f"{function}: `max_timesteps` must be a positive int or None; received "
            f"{max_timesteps!r}."
        )
    return slice(max_timesteps)


def features_1D(
    data: Any,
    *,
    n_rows: int | None = None,
    max_timesteps: int | None = None,
    subplot_samples: bool = False,
    share_xy: Any = (True, True),
    title: str = "outputs",
    savepath: str | None = None,
):
    """``(samples, timesteps, channels)``: one subplot per channel, one curve per sample
    (``subplot_samples=True``: one subplot per sample, one curve per channel);
    ``(timesteps, channels)`` (one sample): one plot, one curve per channel, as see-rnn.
    ``max_timesteps`` keeps the first steps; ``share_xy`` as ``plt.subplots``' sharex/sharey.
    """
    plt = _plt()
    data = _features(data, "features_1D", "(samples, timesteps, channels) or (timesteps, channels)")
    data = data[..., _max_timesteps(max_timesteps, "features_1D"), :]
    _share(share_xy, "features_1D")  # checked for 2-D data too
    subplot_samples = _checks.boolean(subplot_samples, "subplot_samples", "features_1D")
    if data.ndim == 2:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(data, linewidth=1)
        ax.axhline(0, color="gray", linewidth=0.5)
        ax.set_xlabel("timestep")
        ax.set_title(title, fontsize=9)
        return _finish(fig, savepath)
    if subplot_samples:  # (channels, timesteps, samples): a subplot per sample
        data, label = np.transpose(data, (2, 1, 0)), "sample"
    else:
        label = "ch"
    fig, axes = _panels(data.shape[-1], n_rows, (3, 2), share_xy, "features_1D")
    for k, ax in enumerate(axes):
        ax.plot(data[:, :, k].T, linewidth=1)
        ax.axhline(0, color="gray", linewidth=0.5)
        ax.set_title(f"{title} {label} {k}", fontsize=8)
    return _finish(fig, savepath)


def features_0D(data: Any, *, title: str = "outputs", savepath: str | None = None):
    """``(samples, channels)``: an aligned scatter per sample (return_sequences=False)."""
    plt = _plt()
    data = _features(
        data,
        "features_0D",
        "(samples, channels)",
        ranks=(2,),
        hint="a return_sequences output: take its last step data[:, -1], or use "
        "features_1D/features_2D",
    )
    fig, ax = plt.subplots(figsize=(6, 3))
    for sample in data:
        ax.plot(np.arange(data.shape[1]), sample, "o", markersize=3)
    ax.axhline(0, color="gray", linewidth=0.5)
    ax.set_xlabel("channel")
    ax.set_title(title)
    return _finish(fig, savepath)


def features_2D(
    data: Any,
    *,
    n_rows: int | None = None,
    cmap: str = "bwr",
    norm: Any = "auto",
    reflect_half: bool = False,
    timesteps_xaxis: bool = True,
    max_timesteps: int | None = None,
    share_xy: Any = (True, True),
    title: str = "outputs",
    savepath: str | None = None,
):
    """``(samples, timesteps, channels)``: one heatmap per sample, in an ``n_rows`` grid;
    ``(timesteps, channels)``: one heatmap. ``norm``: ``"auto"`` (±max|data|), None (each
    image its own range) or ``(vmin, vmax)``.

    ``timesteps_xaxis``: timesteps along x (channels down), jrnn's default; False draws
    see-rnn's default orientation (timesteps down). ``reflect_half`` reverses the second
    half of the channels in time, to line a Bidirectional layer's backward half up with its
    forward half (see-rnn flips axis 0, which is the samples of 3-D data; jrnn flips the
    timesteps its documentation names). ``max_timesteps`` keeps the first steps.
    """
    data = _features(data, "features_2D", "(samples, timesteps, channels) or (timesteps, channels)")
    if data.ndim == 2:
        data = data[None]
    data = data[:, _max_timesteps(max_timesteps, "features_2D")]
    if _checks.boolean(reflect_half, "reflect_half", "features_2D"):
        half = data.shape[-1] // 2
        data = np.concatenate([data[..., :half], np.flip(data[..., half:], axis=1)], axis=-1)
    timesteps_xaxis = _checks.boolean(timesteps_xaxis, "timesteps_xaxis", "features_2D")
    n = data.shape[0]
    vmax = float(np.nanmax(np.abs(data))) or 1.0
    vmin, vmax = _color_range(norm, (-vmax, vmax), "features_2D")
    fig, axes = _panels(n, n_rows if n > 1 else 1, (3.5, 3), share_xy, "features_2D")
    for s, ax in enumerate(axes):
        image = ax.imshow(
            data[s].T if timesteps_xaxis else data[s],
            cmap=cmap,
            aspect="auto",
            interpolation="nearest",
            vmin=vmin,
            vmax=vmax,
        )
        ax.set_xlabel("timestep" if timesteps_xaxis else "channel")
        ax.set_ylabel("channel" if timesteps_xaxis else "timestep")
        ax.set_title(f"{title} sample {s}", fontsize=9)
        fig.colorbar(image, ax=ax)
    return _finish(fig, savepath)


def hist_clipped(
    data: Any,
    peaks_to_clip: int = 1,
    *,
    ax: Any = None,
    annotate: bool = True,
    bins: int = 100,
    **hist_kwargs: Any,
):
    """A histogram of ``data`` (flattened) whose y-range stops at its ``peaks_to_clip + 1``-th
    highest bin, so that a few towering bins (zeros, saturated units) do not flatten the
    rest; the clipped peaks are annotated ``(left edge, count)`` in red (see-rnn's
    ``hist_clipped``). ``peaks_to_clip=0`` is a plain histogram. Draws on ``ax`` (a new
    figure without it); NaN and Inf are annotated and left out. Returns the figure."""
    plt = _plt()
    if not isinstance(peaks_to_clip, int) or isinstance(peaks_to_clip, bool) or peaks_to_clip < 0:
        raise ValueError(
            f"hist_clipped: `peaks_to_clip` must be an int >= 0; received {peaks_to_clip!r}."
        )
    values = np.asarray(data)
    if not _checks.is_real(values.dtype):
        raise TypeError(f"hist_clipped: `data` must be numeric; received dtype {values.dtype}.")
    values = _plottable(values).ravel()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    nan = inspect_lib.detect_nans(values) if values.size else None
    counts, edges, _ = ax.hist(values[np.isfinite(values)], bins=bins, **hist_kwargs)
    if nan:
        ax.annotate(nan, (0.05, 0.85), xycoords="axes fraction", color="red")
    if 0 < peaks_to_clip < len(counts):
        order = np.argsort(counts, kind="stable")[::-1]
        ax.set_ylim(0, counts[order[peaks_to_clip]] * 1.05 or 1.0)
        if annotate:
            text = "\n".join(f"({edges[i]:.2f}, {int(counts[i])})" for i in order[:peaks_to_clip])
            ax.annotate(
                text,
                (0.97, 0.9),
                xycoords="axes fraction",
                color="r",
                weight="bold",
                ha="right",
                va="top",
            )
    return ax.figure


def features_hist(
    data: Any,
    *,
    n_rows: Any = "vertical",
    bins: int = 100,
    xlims: Any = None,
    center_zero: bool = False,
    share_xy: Any = ("col", True),
    peaks_to_clip: int = 0,
    annotations: Any = "auto",
    title: str | None = None,
    savepath: str | None = None,
):
    """One histogram per entry of ``data`` (an array ``(n, ...)``, each ``data[k]``
    flattened, or a list of arrays), in a grid of ``n_rows`` rows (``"vertical"``: one
    column; None: about square), as see-rnn's ``features_hist``: e.g. the outputs of several
    layers, or one layer's output per sample. ``xlims`` fixes the x-range,
    ``center_zero`` makes it symmetric (and wins over ``xlims``); ``peaks_to_clip`` as
    :func:`hist_clipped`; ``annotations``: ``"auto"`` (the index), a list of labels or None.
    """
    entries = list(data) if isinstance(data, (list, tuple)) else None
    if entries is None:
        array = np.asarray(data)
        if array.ndim < 1 or array.shape[0] == 0:
            raise ValueError(
                f"features_hist: `data` must be an array (n, ...) or a list of arrays; "
                f"received shape {array.shape}."
            )
        entries = list(array)
    if not entries:
        raise ValueError("features_hist: `data` must hold at least one array; received [].")
    labels = _annotations(annotations, len(entries), "features_hist")
    fig, axes = _panels(len(entries), n_rows, (4, 1.6), share_xy, "features_hist")
    for k, ax in enumerate(axes):
        hist_clipped(entries[k], peaks_to_clip, ax=ax, bins=bins)
        _hist_axis(ax, xlims, center_zero, "features_hist")
        if labels[k] is not None:
            ax.annotate(labels[k], (0.02, 0.7), xycoords="axes fraction", color="g")
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, savepath)


def features_hist_v2(
    data: Any,
    *,
    colnames: Any = None,
    bins: int = 100,
    xlims: Any = None,
    ylim: float | None = None,
    center_zero: bool = False,
    share_xy: Any = ("col", True),
    peaks_to_clip: int = 0,
    side_annot: str | None = None,
    title: str | None = None,
    savepath: str | None = None,
):
    """Several histograms per grid cell: ``data[row][col]`` is a list of arrays (or an
    array whose entries are), each drawn as one histogram in that cell, as see-rnn's
    ``features_hist_v2``: e.g. rows = layers, columns = epochs, one histogram per gate.
    ``colnames`` titles the columns, ``side_annot`` labels the rows (``f"{side_annot}{row}"``),
    ``ylim`` caps every y-range; the rest as :func:`features_hist`."""
    plt = _plt()
    if not isinstance(data, (list, tuple, np.ndarray)) or len(data) == 0:
        raise ValueError(
            "features_hist_v2: `data` must be a non-empty nested list data[row][col] of "
            f"arrays; received {type(data).__name__}."
        )
    n_rows = len(data)
    n_cols = len(data[0])
    if any(len(row) != n_cols for row in data) or n_cols == 0:
        raise ValueError(
            "features_hist_v2: every row of `data` must hold the same, non-zero number of "
            f"cells; received row lengths {[len(row) for row in data]}."
        )
    if colnames is not None and len(colnames) != n_cols:
        raise ValueError(
            f"features_hist_v2: `colnames` must name the {n_cols} columns; received "
            f"{len(colnames)} names."
        )
    sharex, sharey = _share(share_xy, "features_hist_v2")
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(3.5 * n_cols, 1.8 * n_rows + 0.6),
        squeeze=False,
        sharex=sharex,
        sharey=sharey,
    )
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            for sub in data[r][c]:
                hist_clipped(sub, peaks_to_clip, ax=ax, bins=bins, alpha=0.6)
            _hist_axis(ax, xlims, center_zero, "features_hist_v2")
            if ylim is not None:
                ax.set_ylim(0, ylim)
            if r == 0 and colnames is not None:
                ax.set_title(str(colnames[c]), fontsize=9)
            if side_annot is not None and c == n_cols - 1:
                ax.annotate(f"{side_annot}{r}", (1.02, 0.5), xycoords="axes fraction")
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, savepath)


def _annotations(annotations: Any, n: int, function: str) -> list:
    if annotations is None:
        return [None] * n
    if isinstance(annotations, str) and annotations == "auto":
        return [str(k) for k in range(n)]
    if isinstance(annotations, (list, tuple)):
        return [str(a) for a in annotations][:n] + [None] * max(0, n - len(annotations))
    raise ValueError(
        f"{function}: `annotations` must be 'auto', a list of labels or None; received "
        f"{annotations!r}."
    )


def _hist_axis(ax, xlims: Any, center_zero: bool, function: str) -> None:
    if _checks.boolean(center_zero, "center_zero", function):
        edge = max(np.abs(ax.get_xlim()))
        ax.set_xlim(-edge, edge)
    elif xlims is not None:
        if not (isinstance(xlims, (tuple, list)) and len(xlims) == 2):
            raise ValueError(f"{function}: `xlims` must be (xmin, xmax); received {xlims!r}.")
        ax.set_xlim(*xlims)


def gradient_flow(norms: dict[str, Any], *, savepath: str | None = None):
    """Gradient norm per timestep per layer (log scale): ``norms[name] = (batch, time)``
    from :func:`jrnn.inspect.gradients_over_time`; the batch mean is drawn."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, value in norms.items():
        value = _plottable(value)
        ax.plot(value.mean(axis=0), label=name)
    ax.set_yscale("log")
    ax.set_xlabel("timestep")
    ax.set_ylabel("|d loss / d x_t|")
    ax.set_title("Gradient flow over time")
    ax.legend()
    return _finish(fig, savepath)


def gate_heatmap(
    activations: dict[str, Any], gate: str = "f", *, sample: int = 0, savepath: str | None = None
):
    """One gate's activation over time per unit (e.g. forget-gate saturation), from
    :func:`jrnn.inspect.get_activations` of one layer (``acts["forward"]`` of a
    Bidirectional, ``acts[k]`` of a stack's cell). ``gate``: a key of ``activations``
    (``"f"``) or its see-rnn label (``"FORGET"``). Values in [0, 1] (the sigmoid gates)
    are drawn on 0..1; others (states, candidates) on a symmetric ±max range."""
    plt = _plt()
    if not isinstance(activations, dict) or set(activations) == {"forward", "backward"}:
        raise ValueError(
            "gate_heatmap: `activations` must be one layer's dict of get_activations (pick "
            "acts['forward'] / acts['backward'] of a Bidirectional, acts[k] of a stack's "
            f"cell); received {type(activations).__name__}"
            + (" with keys forward/backward." if isinstance(activations, dict) else ".")
        )
    labels = {
        label: key
        for keys, names in inspect_lib.GATE_LABELS.items()
        for key, label in zip(keys, names)
    }
    key = gate if gate in activations else labels.get(gate)
    if key not in activations:
        raise ValueError(
            f"gate_heatmap: `gate` must be one of {sorted(activations)} (or its see-rnn "
            f"label); received {gate!r}."
        )
    values = _plottable(activations[key])[sample]
    values = values.reshape(values.shape[0], -1)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if values.min() >= 0 and values.max() <= 1:
        cmap, vmin, vmax = "viridis", 0.0, 1.0
    else:
        vmax = float(np.nanmax(np.abs(values))) or 1.0
        cmap, vmin = "bwr", -vmax
    image = ax.imshow(
        values.T, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest"
    )
    ax.set_xlabel("timestep")
    ax.set_ylabel("unit")
    ax.set_title(f"gate '{key}' activation, sample {sample}")
    fig.colorbar(image, ax=ax)
    return _finish(fig, savepath)


_PLOTS = {"rnn_histogram": rnn_histogram, "rnn_heatmap": rnn_heatmap}

__all__ = [
    "features_0D",
    "features_1D",
    "features_2D",
    "features_hist",
    "features_hist_v2",
    "gate_heatmap",
    "gradient_flow",
    "hist_clipped",
    "rnn_heatmap",
    "rnn_histogram",
]
