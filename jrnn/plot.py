"""see-rnn style figures of jrnn layers (matplotlib, imported lazily; Agg without a display).

Every function returns the ``matplotlib.figure.Figure`` and saves a PNG when given
``savepath=``. Data come from :mod:`jrnn.inspect`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jrnn import inspect as inspect_lib


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, savepath: str | None, dpi: int = 100):
    fig.tight_layout()
    if savepath:
        fig.savefig(savepath, dpi=dpi)
    return fig


def _directions(layer: Any, concat_gates: bool) -> list[tuple[str, dict]]:
    """One ``(title, weights)`` block per direction and cell."""

    def blocks(weights: Any, title: str) -> list[tuple[str, dict]]:
        if isinstance(weights, list):  # stacked cells
            return [(f"{title} CELL {k}".strip(), w) for k, w in enumerate(weights)]
        return [(title, weights)]

    weights = inspect_lib.get_rnn_weights(layer, concat_gates=concat_gates)
    if isinstance(weights, dict) and set(weights) == {"forward", "backward"}:
        return blocks(weights["forward"], "FORWARD LAYER") + blocks(
            weights["backward"], "BACKWARD LAYER"
        )
    return blocks(weights, "")


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


def _features(data: Any, function: str, shapes: str) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise ValueError(
            f"{function}: `data` must be {shapes}; received shape {data.shape} (reshape "
            "ConvLSTM outputs to (samples, timesteps, channels) first)."
        )
    return data


def rnn_histogram(
    layer: Any,
    *,
    bins: int = 150,
    equate_axes: bool = True,
    savepath: str | None = None,
    w: float = 1.0,
    h: float = 1.0,
):
    """Histograms per gate (rows) of the kernel and recurrent kernel (columns), plus a bias
    row; one column block per direction/cell. NaN/Inf are annotated in red and zeroed."""
    plt = _plt()
    blocks = _directions(layer, concat_gates=False)
    rows = max(len(weights["kernel"]) for _, weights in blocks) + 1
    cols = 2 * len(blocks)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols * w, 2.2 * rows * h), squeeze=False)
    for ax in axes[:-1].ravel():
        ax.axis("off")
    for b, (title, weights) in enumerate(blocks):
        for r, label in enumerate(weights["kernel"]):
            for c, name in enumerate(("kernel", "recurrent_kernel")):
                ax = axes[r, 2 * b + c]
                ax.axis("on")
                data = np.asarray(weights[name][label]).ravel()
                nan = inspect_lib.detect_nans(data)
                ax.hist(np.nan_to_num(data, nan=0, posinf=0, neginf=0), bins=bins)
                ax.set_title(
                    f"{title} {'KERNEL' if c == 0 else 'RECURRENT'} {label}".strip(), fontsize=8
                )
                if nan:
                    ax.annotate(nan, (0.05, 0.85), xycoords="axes fraction", color="red")
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
    if equate_axes:
        hist_axes = [ax for ax in axes[:-1].ravel() if ax.axison]
        lo = min(ax.get_xlim()[0] for ax in hist_axes)
        hi = max(ax.get_xlim()[1] for ax in hist_axes)
        for ax in hist_axes:
            ax.set_xlim(lo, hi)
    return _finish(fig, savepath)


def rnn_heatmap(
    layer: Any,
    *,
    cmap: str = "bwr",
    norm: Any = "auto",
    absolute_value: bool = False,
    normalize: bool = False,
    show_bias: bool = True,
    gate_sep_width: float = 1.0,
    savepath: str | None = None,
):
    """Kernel and recurrent kernel (and bias) as images with gate separator lines and gate
    labels; ``norm="auto"`` is a symmetric colour range ``±max|w|`` over the kernels of all
    directions; 1-D recurrent kernels (IndRNN) are drawn as a narrow column."""
    plt = _plt()
    blocks = _directions(layer, concat_gates=True)
    first_cell = layer
    while hasattr(first_cell, "forward_layer"):
        first_cell = first_cell.forward_layer
    cell = getattr(first_cell, "cell", first_cell)
    if hasattr(cell, "cells"):
        cell = cell.cells[0]
    labels = inspect_lib.gate_labels(cell)
    mats = []
    for _, weights in blocks:
        for name in ("kernel", "recurrent_kernel"):
            m = np.asarray(weights[name])
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
    for b, (title, weights) in enumerate(blocks):
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
            bias = np.atleast_2d(np.asarray(bias))
            width = mats[k - 2].shape[1]  # the kernel's gate blocks
            if bias.shape == (1, 2 * width):  # CuDNN: input biases, then recurrent biases
                bias = bias.reshape(2, width)
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
    return _finish(fig, savepath)


def features_1D(
    data: Any, *, n_rows: int | None = None, title: str = "outputs", savepath: str | None = None
):
    """``(samples, timesteps, channels)``: one subplot per channel, one curve per sample;
    ``(timesteps, channels)`` (one sample): one plot, one curve per channel, as see-rnn."""
    plt = _plt()
    data = _features(data, "features_1D", "(samples, timesteps, channels) or (timesteps, channels)")
    if data.ndim == 2:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(data, linewidth=1)
        ax.axhline(0, color="gray", linewidth=0.5)
        ax.set_xlabel("timestep")
        ax.set_title(title, fontsize=9)
        return _finish(fig, savepath)
    channels = data.shape[-1]
    n_rows = n_rows or int(np.ceil(np.sqrt(channels)))
    n_cols = int(np.ceil(channels / n_rows))
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3 * n_cols, 2 * n_rows), squeeze=False, sharex=True, sharey=True
    )
    for ch in range(n_rows * n_cols):
        ax = axes.ravel()[ch]
        if ch >= channels:
            ax.axis("off")
            continue
        ax.plot(data[:, :, ch].T, linewidth=1)
        ax.axhline(0, color="gray", linewidth=0.5)
        ax.set_title(f"{title} ch {ch}", fontsize=8)
    return _finish(fig, savepath)


def features_0D(data: Any, *, title: str = "outputs", savepath: str | None = None):
    """``(samples, channels)``: an aligned scatter per sample (return_sequences=False)."""
    plt = _plt()
    data = np.asarray(data)
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
    cmap: str = "bwr",
    norm: Any = "auto",
    title: str = "outputs",
    savepath: str | None = None,
):
    """``(samples, timesteps, channels)``: one heatmap (channels × timesteps) per sample;
    ``(timesteps, channels)``: one heatmap. ``norm``: ``"auto"`` (±max|data|), None (each
    image its own range) or ``(vmin, vmax)``."""
    plt = _plt()
    data = _features(data, "features_2D", "(samples, timesteps, channels) or (timesteps, channels)")
    if data.ndim == 2:
        data = data[None]
    n = data.shape[0]
    vmax = float(np.nanmax(np.abs(data))) or 1.0
    vmin, vmax = _color_range(norm, (-vmax, vmax), "features_2D")
    fig, axes = plt.subplots(1, n, figsize=(3.5 * n, 3), squeeze=False)
    for s in range(n):
        ax = axes[0, s]
        image = ax.imshow(
            data[s].T,
            cmap=cmap,
            aspect="auto",
            interpolation="nearest",
            vmin=vmin,
            vmax=vmax,
        )
        ax.set_xlabel("timestep")
        ax.set_ylabel("channel")
        ax.set_title(f"{title} sample {s}", fontsize=9)
        fig.colorbar(image, ax=ax)
    return _finish(fig, savepath)


def gradient_flow(norms: dict[str, Any], *, savepath: str | None = None):
    """Gradient norm per timestep per layer (log scale): ``norms[name] = (batch, time)``
    from :func:`jrnn.inspect.gradients_over_time`; the batch mean is drawn."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, value in norms.items():
        value = np.asarray(value)
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
    values = np.asarray(activations[key])[sample]
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


__all__ = [
    "features_0D",
    "features_1D",
    "features_2D",
    "gate_heatmap",
    "gradient_flow",
    "rnn_heatmap",
    "rnn_histogram",
]
