"""see-rnn style introspection of jrnn recurrent layers: weights per gate, per-step gate
activations, gradients over time, weight norms, NaN detection, a summary table.

Pure JAX/NumPy (no plotting here). Gate names follow see-rnn: LSTM (and ConvLSTM,
CuDNNLSTM) ``INPUT, FORGET, CELL, OUTPUT``; GRU (and CuDNNGRU) ``UPDATE, RESET, NEW``;
SimpleRNN and IndRNN one ungated block ``""``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrnn import _checks
from jrnn.cells.base import RNNCellBase
from jrnn.cells.cudnn import _CuDNNCell
from jrnn.cells.stacked import StackedRNNCells
from jrnn.layers.wrappers import Bidirectional
from jrnn.rnn import RNN, at_top_trace, creates_variables_in_call

GATE_LABELS = {
    ("i", "f", "c", "o"): ("INPUT", "FORGET", "CELL", "OUTPUT"),
    ("z", "r", "h"): ("UPDATE", "RESET", "NEW"),
    (): ("",),
}


def gate_labels(cell: RNNCellBase) -> tuple[str, ...]:
    """see-rnn's gate labels of a cell (``("",)`` for ungated cells)."""
    return GATE_LABELS[tuple(cell.gate_names)]


def _split(array: np.ndarray, labels: tuple[str, ...]) -> dict[str, np.ndarray]:
    if len(labels) == 1:
        return {labels[0]: array}
    return dict(zip(labels, np.split(array, len(labels), axis=-1)))


def _cell_weights(cell: RNNCellBase, concat_gates: bool) -> dict[str, Any]:
    weights = {
        "kernel": np.asarray(cell.kernel[...]),
        "recurrent_kernel": np.asarray(cell.recurrent_kernel[...]),
    }
    bias = getattr(cell, "bias", None)
    if bias is not None:
        weights["bias"] = np.asarray(bias[...])
    if concat_gates:
        return weights
    labels = gate_labels(cell)
    out = {name: _split(w, labels) for name, w in weights.items() if name != "bias"}
    if "bias" in weights:
        b = weights["bias"]
        if b.ndim == 2 or isinstance(cell, _CuDNNCell):  # input and recurrent biases
            rows = b if b.ndim == 2 else np.stack(np.split(b, 2))
            out["bias"] = {
                label: {"input": i, "recurrent": r}
                for label, i, r in zip(
                    labels, np.split(rows[0], len(labels)), np.split(rows[1], len(labels))
                )
            }
        else:
            out["bias"] = _split(b, labels)
    return out


def get_rnn_weights(layer: Any, concat_gates: bool = True) -> Any:
    """Kernel, recurrent kernel and bias of a recurrent layer or cell, as NumPy arrays.

    Returns ``{"kernel", "recurrent_kernel", "bias"}`` (bias absent without ``use_bias``).
    With ``concat_gates=False`` each entry is a dict by gate label (e.g. ``kernel["FORGET"]``
    of shape ``(in, units)``); two-part biases (GRU ``reset_after``, CuDNN layers) give
    ``bias[gate] = {"input": ..., "recurrent": ...}``. Stacked cells give a list (one entry
    per cell); Bidirectional gives ``{"forward": ..., "backward": ...}``.
    """
    concat_gates = _checks.boolean(concat_gates, "concat_gates", "get_rnn_weights")
    if isinstance(layer, Bidirectional):
        return {
            "forward": get_rnn_weights(layer.forward_layer, concat_gates),
            "backward": get_rnn_weights(layer.backward_layer, concat_gates),
        }
    cell = layer.cell if isinstance(layer, RNN) else layer
    if isinstance(cell, StackedRNNCells):
        return [_cell_weights(c, concat_gates) for c in cell.cells]
    if not isinstance(cell, RNNCellBase):
        raise TypeError(
            f"get_rnn_weights: expected a jrnn recurrent layer, cell or Bidirectional; received "
            f"{type(layer).__name__}."
        )
    return _cell_weights(cell, concat_gates)


def get_activations(layer: Any, x: Any, *, mask: Any = None, initial_state: Any = None) -> Any:
    """Per-timestep internal values from the layer's own scan (no second implementation).

    LSTM/ConvLSTM: ``i, f, c_tilde, o, c, h``; GRU: ``z, r, h_tilde, h``; SimpleRNN/IndRNN:
    ``h``; each ``(batch, time, *state_shape)`` in INPUT time order (reversed back for
    ``go_backwards``). Stacked cells give a tuple per cell; Bidirectional gives
    ``{"forward": ..., "backward": ...}``. Values are computed at masked steps too (the
    carried state is what the mask keeps).
    """
    if isinstance(layer, Bidirectional):
        if initial_state is not None:
            raise ValueError(
                "get_activations: `initial_state` for a Bidirectional layer is not supported; "
                "expected None (call it on `layer.forward_layer` / `layer.backward_layer`); "
                "received a value."
            )
        return {
            "forward": get_activations(layer.forward_layer, x, mask=mask),
            "backward": get_activations(layer.backward_layer, x, mask=mask),
        }
    if not isinstance(layer, RNN):
        raise TypeError(
            f"get_activations: expected a jrnn recurrent layer; received {type(layer).__name__}."
        )
    acts = layer.run(x, mask=mask, initial_state=initial_state, record=True).activations
    if layer.go_backwards:
        acts = jax.tree_util.tree_map(lambda a: jnp.flip(a, 1), acts)
    return acts


def gradients_over_time(layer: Any, x: Any, *, loss=None, mask: Any = None) -> jax.Array:
    """``(batch, time)`` norms of d loss / d x_t: how much each timestep's input still
    moves the loss — the vanishing/exploding-gradient picture over time.

    ``loss(outputs) -> scalar`` defaults to the sum of squares of the layer's (first)
    output, e.g. the last output of a ``return_sequences=False`` layer.
    """
    kwargs = {} if mask is None else {"mask": mask}  # models without a `mask` argument too
    g = _gradient("inputs", layer, jnp.asarray(x), None, loss or _sum_of_squares, kwargs)
    return jnp.sqrt(jnp.sum(jnp.square(g).reshape(*g.shape[:2], -1), axis=-1))


def get_gradients(
    model: nnx.Module, x: Any, y: Any = None, *, loss=None, wrt: Any = "weights", **call_kwargs: Any
) -> Any:
    """Gradients of a loss w.r.t. the model's weights (``wrt="weights"``; an ``nnx.State``
    shaped like the parameters), w.r.t. its output (``wrt="outputs"``), or w.r.t. the
    outputs of named sub-layers (``wrt=["enc", ...]`` or ``wrt="enc"``; ``{name:
    gradient}`` shaped like each output, e.g. ``(batch, time, units)`` per timestep for
    ``return_sequences`` layers: a zero perturbation is added to each output and
    differentiated).

    ``loss(y_pred, y)`` defaults to the mean squared error when ``y`` is given, else the sum
    of squares of the output. Per gate: pass the weights' gradient state through
    :func:`get_rnn_weights` after ``nnx.update`` on a copy, or use
    :func:`gate_gradients`.

    Called outside a transformation, the gradient runs as one program compiled once per
    model structure, shapes, ``wrt``, ``loss`` (pass the same function to reuse it) and
    non-array ``call_kwargs``, as eager layer calls do.
    """
    if loss is None:
        loss = _mean_squared_error if y is not None else _sum_of_squares
    if wrt == "weights":
        return _gradient("weights", model, x, y, loss, call_kwargs)
    if wrt == "outputs":
        out = _first(model(x, **call_kwargs))
        return jax.grad(lambda o: loss(o, y))(out)
    if isinstance(wrt, str):  # one layer's name, as get_outputs takes it
        wrt = [wrt]
    if isinstance(wrt, (list, tuple)) and all(isinstance(n, str) for n in wrt):
        names = tuple(wrt)
        shapes = get_outputs(model, x, list(names), **call_kwargs)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, shapes)
        return _gradient("outputs_of", model, zeros, y, loss, call_kwargs, names=names, x=x)
    raise ValueError(
        "get_gradients: `wrt` must be 'weights', 'outputs', a layer name or a list of layer "
        f"names; received {wrt!r}."
    )


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


def _sum_of_squares(prediction: Any, target: Any = None) -> jax.Array:
    """The default loss without ``y`` (``gradients_over_time`` calls it on the output alone)."""
    del target
    return jnp.sum(jnp.square(prediction))


def _mean_squared_error(prediction: Any, target: Any) -> jax.Array:
    if jnp.shape(prediction) != jnp.shape(target):  # no silent broadcasting ((B,1) - (B,))
        raise ValueError(
            f"get_gradients: `y` must have the model output's shape {jnp.shape(prediction)} "
            f"for the default mean squared error; received shape {jnp.shape(target)}."
        )
    return jnp.mean(jnp.square(prediction - target))


def _gradient(
    mode: str,
    model: nnx.Module,
    target: Any,
    y: Any,
    loss: Any,
    call_kwargs: dict[str, Any],
    *,
    names: tuple[str, ...] = (),
    x: Any = None,
) -> Any:
    """The gradient of ``loss`` w.r.t. the model's weights (``mode="weights"``, ``target``
    is the input), its input (``"inputs"``, loss of the output alone) or the zero
    perturbations ``target`` of the outputs of the sub-layers ``names`` (``"outputs_of"``,
    input ``x``). Outside any transformation this runs as one cached ``nnx.jit`` program
    (an eager ``jax.grad`` traced the model's scans anew at every call and XLA compiled
    each: ~350 ms and ~60 more memory maps a call for a small LSTM, until the process
    ran out of maps). Array leaves of ``call_kwargs`` are arguments; the rest, with
    ``loss`` and ``names``, is the cache key; an unhashable one, or a model that creates
    variables in its call, runs uncached."""
    arrays = {k: v for k, v in call_kwargs.items() if _all_arrays(v)}
    static = tuple(sorted((k, v) for k, v in call_kwargs.items() if k not in arrays))
    args = (model, target, x, y, arrays)
    options = {"mode": mode, "loss": loss, "static": static, "names": names}
    try:
        cacheable = hash((loss, static)) is not None and _eager(model)
    except TypeError:  # an unhashable loss or call argument
        cacheable = False
    return (_CACHED_GRADIENT if cacheable else _gradient_program)(*args, **options)


def _all_arrays(value: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(value)
    return bool(leaves) and all(isinstance(v, (jax.Array, np.ndarray)) for v in leaves)


def _eager(model: nnx.Module) -> bool:
    """At JAX's top-level trace, with no sub-layer that creates variables in its call."""
    if not at_top_trace():
        return False
    return not any(creates_variables_in_call(m) for _, m in nnx.iter_graph(model))


def _gradient_program(model, target, x, y, arrays, *, mode, loss, static, names):
    kwargs = {**arrays, **dict(static)}
    if mode == "weights":
        return nnx.grad(lambda m, x: loss(_first(m(x, **kwargs)), y))(model, target)
    if mode == "inputs":  # the layer's states and RNG streams do not advance (as before)
        before = jax.tree_util.tree_map(lambda v: v, nnx.state(model))  # values, not Variables
        grads = nnx.grad(lambda m, x: loss(_first(m(x, **kwargs))), argnums=1)(model, target)
        nnx.update(model, before)
        return grads

    def perturbed(m, eps):
        def add(name, out):
            return jax.tree_util.tree_map(jnp.add, out, eps[name])

        with _hooked(m, list(names), add):
            return loss(_first(m(x, **kwargs)), y)

    return nnx.grad(perturbed, argnums=1)(model, target)


_CACHED_GRADIENT = nnx.jit(_gradient_program, static_argnames=("mode", "loss", "static", "names"))


def gradient_norms_over_time(
    model: nnx.Module, x: Any, layer: str, y: Any = None, *, loss=None, **call_kwargs: Any
) -> jax.Array:
    """``(batch, time)`` L2 norms over units of d loss / d h_t, where ``h_t`` is the
    per-timestep output of the named ``return_sequences`` sub-layer ``layer`` (see
    :func:`get_gradients` with ``wrt=[layer]``): vanishing/exploding gradient diagnosis."""
    g = get_gradients(model, x, y, loss=loss, wrt=[layer], **call_kwargs)[layer]
    g = g[0] if isinstance(g, tuple) else g
    if g.ndim < 3:
        raise ValueError(
            f"gradient_norms_over_time: layer {layer!r} must return sequences, expected an "
            f"output of shape (batch, time, ...); received shape {tuple(g.shape)}."
        )
    return jnp.sqrt(jnp.sum(jnp.square(g).reshape(*g.shape[:2], -1), axis=-1))


def gate_gradients(layer: Any, x: Any, y: Any = None, *, loss=None, **call_kwargs: Any) -> Any:
    """Weight gradients of a recurrent layer split per gate (same structure as
    :func:`get_rnn_weights` with ``concat_gates=False``)."""
    grads = get_gradients(layer, x, y, loss=loss, wrt="weights", **call_kwargs)
    twin = nnx.clone(layer)
    nnx.update(twin, grads)
    return get_rnn_weights(twin, concat_gates=False)


def get_outputs(model: nnx.Module, x: Any, layers: Any, **call_kwargs: Any) -> dict[str, Any]:
    """Outputs of chosen sub-layers in ONE forward pass of ``model(x, **call_kwargs)``.

    ``layers``: a name or a list of names; a name is a layer's ``name`` or its attribute
    path in the model (``"encoder/lstm"``). Returns ``{name: output}``. The sub-layers'
    classes are swapped for recording subclasses during the call and restored afterwards.
    """
    names = [layers] if isinstance(layers, str) else layers
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(
            "get_outputs: `layers` must be a layer name or a list of names (a layer's `name` "
            f"or its attribute path); received {layers!r}."
        )
    names = list(names)
    captured: dict[str, Any] = {}

    def record(name, out):
        captured[name] = out
        return out

    with _hooked(model, names, record):
        model(x, **call_kwargs)
    return captured


def _find(model: nnx.Module, names: list[str]) -> dict[str, nnx.Module]:
    """The sub-modules named ``names`` (a ``name`` or an attribute path)."""
    found: dict[str, nnx.Module] = {}
    available = []
    for path, module in nnx.iter_graph(model):
        if not isinstance(module, nnx.Module):
            continue
        key = "/".join(map(str, path))
        label = getattr(module, "name", None)
        available.append(label or key or "(model)")
        for name in names:
            if name in (key, label):
                found.setdefault(name, module)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"no layer named {missing} in the model; available: {available}.")
    return found


@contextlib.contextmanager
def _hooked(model: nnx.Module, names: list[str], hook):
    """Swap the named sub-layers' classes for subclasses whose ``__call__`` returns
    ``hook(name, output)``; restored on exit, also on exceptions. The original class is
    back during the original ``__call__``, so that a cached eager call (keyed on the
    layer's class among others) sees the layer it cached, not a new subclass per use."""
    found = _find(model, names)
    swapped = []
    try:
        for name, module in found.items():
            cls = type(module)

            @functools.wraps(cls.__call__)  # keeps the signature (e.g. a `mask` parameter)
            def __call__(self, *args, _name=name, _cls=cls, **kwargs):
                hooked = type(self)
                object.__setattr__(self, "__class__", _cls)
                try:
                    output = _cls.__call__(self, *args, **kwargs)
                finally:
                    object.__setattr__(self, "__class__", hooked)
                return hook(_name, output)

            object.__setattr__(
                module, "__class__", type(cls.__name__, (cls,), {"__call__": __call__})
            )
            swapped.append((module, cls))
        yield
    finally:
        for module, cls in swapped:
            object.__setattr__(module, "__class__", cls)


def detect_nans(data: Any, include_inf: bool = True) -> str | None:
    """see-rnn's text: ``None`` or e.g. ``"12.5% NaN, 3 Inf"`` (counts below 0.1%)."""
    a = np.asarray(data)
    if not _checks.is_real(a.dtype):
        raise TypeError(f"detect_nans: `data` must be numeric; received dtype {a.dtype}.")
    parts = []
    checks = [("NaN", np.isnan(a))] + ([("Inf", np.isinf(a))] if include_inf else [])
    for label, found in checks:
        n = int(found.sum())
        if n:
            share = 100.0 * n / a.size
            parts.append(f"{share:.3g}% {label}" if share >= 0.1 else f"{n} {label}")
    return ", ".join(parts) or None


def weights_norm(layer: Any, *, axis: int = -1, stat_fns=(np.max, np.mean)) -> dict[str, list]:
    """see-rnn's per-unit weight norms: for each weight, the L2 norm over every axis but
    ``axis`` (one norm per output column), then each statistic in ``stat_fns``."""
    if not isinstance(layer, nnx.Module):
        raise TypeError(
            f"weights_norm: `layer` must be an nnx.Module; received {type(layer).__name__}."
        )
    out = {}
    for path, param in nnx.iter_graph(layer):
        if isinstance(param, nnx.Param):
            w = np.asarray(param[...])
            axes = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
            norms = np.sqrt(np.sum(np.square(w), axis=axes)) if axes else np.abs(w)
            out["/".join(map(str, path))] = [float(fn(norms)) for fn in stat_fns]
    return out


def summary(model: nnx.Module) -> str:
    """A table of every recurrent layer: path, class, units, gates, parameter shapes,
    parameter count and NaN report."""
    rows = [("layer", "class", "units", "gates", "parameters", "count", "NaN")]
    for path, module in nnx.iter_graph(model):
        if not isinstance(module, (RNN, Bidirectional)):
            continue
        params = [(p, v) for p, v in nnx.iter_graph(module) if isinstance(v, nnx.Param)]
        shapes = ", ".join(f"{'/'.join(map(str, p))}{tuple(v.shape)}" for p, v in params)
        count = sum(int(np.prod(v.shape)) for _, v in params)
        nan = "; ".join(filter(None, (detect_nans(v[...]) for _, v in params))) or "-"
        cell = module.forward_layer.cell if isinstance(module, Bidirectional) else module.cell
        gates = "/".join(gate_labels(cell)) if not isinstance(cell, StackedRNNCells) else "stack"
        rows.append(
            (
                "/".join(map(str, path)) or "(model)",
                type(module).__name__,
                str(module.units),
                gates or "-",
                shapes,
                str(count),
                nan,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


__all__ = [
    "GATE_LABELS",
    "detect_nans",
    "gate_gradients",
    "gate_labels",
    "get_activations",
    "get_gradients",
    "get_outputs",
    "get_rnn_weights",
    "gradient_norms_over_time",
    "gradients_over_time",
    "summary",
    "weights_norm",
]
