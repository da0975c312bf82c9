"""see-rnn style introspection of jrnn recurrent layers: weights per gate, per-step gate
activations, gradients over time, weight norms, NaN detection, a summary table.

Pure JAX/NumPy (no plotting here). Gate names follow see-rnn: LSTM (and ConvLSTM,
CuDNNLSTM) ``INPUT, FORGET, CELL, OUTPUT``; GRU (and CuDNNGRU) ``UPDATE, RESET, NEW``;
SimpleRNN and IndRNN one ungated block ``""``.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrnn import _checks
from jrnn.cells.base import RNNCellBase
from jrnn.cells.cudnn import _CuDNNCell, cudnn_kernel_to_keras, cudnn_recurrent_to_keras
from jrnn.cells.stacked import StackedRNNCells
from jrnn.layers import core
from jrnn.layers.attention import Attention
from jrnn.layers.wrappers import Bidirectional, TimeDistributed
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
    if isinstance(cell, _CuDNNCell):  # cuDNN's stored blocks -> the matrices applied to x, h
        weights["kernel"] = np.asarray(cudnn_kernel_to_keras(weights["kernel"], cell.gates))
        weights["recurrent_kernel"] = np.asarray(
            cudnn_recurrent_to_keras(weights["recurrent_kernel"], cell.gates)
        )
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

    Returns ``{"kernel", "recurrent_kernel", "bias"}`` (bias absent without ``use_bias``),
    the stored parameters as they are (Keras' ``get_weights()``; what
    :func:`with_rnn_weights` takes back). With ``concat_gates=False`` each entry is a dict
    by gate label: ``kernel[gate]`` of shape ``(in, units)`` (ConvLSTM ``(*kernel_size,
    in, filters)``) and ``recurrent_kernel[gate]`` of shape ``(units, units)``, whose
    ``[i, j]`` is the weight from input (or unit) ``i`` to unit ``j`` of that gate, the
    matrix applied to ``x_t`` (``h_{t-1}``). For CuDNNLSTM/CuDNNGRU, which store each
    gate's cuDNN matrix row-major, the per-gate blocks are converted to that layout as
    the cell's ``keras_equivalent_weights()`` converts them (the concatenated arrays stay
    in the stored cuDNN layout); gradients from :func:`gate_gradients` are converted the
    same way, so they are the gradients w.r.t. these applied matrices. Two-part biases
    (GRU ``reset_after``, CuDNN layers) give ``bias[gate] = {"input": ..., "recurrent":
    ...}``. Stacked cells give a list (one entry per cell); Bidirectional gives
    ``{"forward": ..., "backward": ...}``.
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


def with_rnn_weights(layer: Any, weights: Any) -> Any:
    """A copy of ``layer`` holding ``weights``, given in the form :func:`get_rnn_weights`
    returns them with ``concat_gates=True`` (see-rnn's prefetched ``data``): arrays that
    need not come from jrnn (a Keras model's ``get_weights()``, gradients computed
    elsewhere). Every array's shape is checked; ``layer`` is untouched.

    ``weights`` may also be a flat list of arrays in Keras' ``get_weights()`` order (as
    see-rnn's ``get_rnn_weights`` returns them): ``[kernel, recurrent_kernel, bias]`` per
    cell (no bias without ``use_bias``), a stack's cells in turn, a Bidirectional layer's
    forward arrays then its backward ones."""
    twin = nnx.clone(layer)
    if isinstance(weights, (list, tuple)) and not any(
        isinstance(w, (dict, list, tuple)) for w in weights
    ):
        names = _flat_names(twin)
        if len(weights) != len(names):
            raise ValueError(
                f"`weights` as a flat list must hold {len(names)} arrays in Keras' "
                f"get_weights() order ({', '.join(names)}); received {len(weights)}."
            )
        weights = _nest_flat(twin, list(weights))
    _assign_rnn(twin, weights, "weights")
    return twin


def _flat_names(layer: Any, prefix: str = "") -> list[str]:
    """The labels of a layer's recurrent weights in Keras' ``get_weights()`` order."""
    if isinstance(layer, Bidirectional):
        return _flat_names(layer.forward_layer, "forward ") + _flat_names(
            layer.backward_layer, "backward "
        )
    cell = layer.cell if isinstance(layer, RNN) else layer
    if isinstance(cell, StackedRNNCells):
        return [n for k, c in enumerate(cell.cells) for n in _flat_names(c, f"{prefix}cell {k} ")]
    return [prefix + name for name in _rnn_weight_names(cell)]


def _nest_flat(layer: Any, arrays: list) -> Any:
    """Keras' flat ``get_weights()`` order (``arrays``, consumed from the front, its
    length checked by the caller) as get_rnn_weights' nested form."""
    if isinstance(layer, Bidirectional):
        forward = _nest_flat(layer.forward_layer, arrays)
        return {"forward": forward, "backward": _nest_flat(layer.backward_layer, arrays)}
    cell = layer.cell if isinstance(layer, RNN) else layer
    if isinstance(cell, StackedRNNCells):
        return [_nest_flat(c, arrays) for c in cell.cells]
    return {name: arrays.pop(0) for name in _rnn_weight_names(cell)}


def _rnn_weight_names(cell: Any) -> list[str]:
    return ["kernel", "recurrent_kernel"] + (
        ["bias"] if getattr(cell, "bias", None) is not None else []
    )


def _assign_rnn(layer: Any, weights: Any, where: str) -> None:
    if isinstance(layer, Bidirectional):
        if not (isinstance(weights, dict) and set(weights) == {"forward", "backward"}):
            raise ValueError(
                f"`{where}` must be {{'forward': ..., 'backward': ...}} for a "
                f"Bidirectional layer; received {type(weights).__name__}."
            )
        _assign_rnn(layer.forward_layer, weights["forward"], f"{where}['forward']")
        _assign_rnn(layer.backward_layer, weights["backward"], f"{where}['backward']")
        return
    cell = layer.cell if isinstance(layer, RNN) else layer
    if isinstance(cell, StackedRNNCells):
        if not isinstance(weights, (list, tuple)) or len(weights) != len(cell.cells):
            raise ValueError(
                f"`{where}` must be a list of {len(cell.cells)} per-cell dicts "
                f"for a stack of cells; received {type(weights).__name__}."
            )
        for k, (c, w) in enumerate(zip(cell.cells, weights)):
            _assign_rnn(c, w, f"{where}[{k}]")
        return
    names = _rnn_weight_names(cell)
    if not isinstance(weights, dict) or sorted(weights) != sorted(names):
        got = sorted(weights) if isinstance(weights, dict) else type(weights).__name__
        raise ValueError(
            f"`{where}` must be a dict with {names} (get_rnn_weights' form, "
            f"gates concatenated); received {got}."
        )
    for name in names:
        param, value = getattr(cell, name), np.asarray(weights[name])
        if value.shape != tuple(param.shape):
            raise ValueError(
                f"`{where}['{name}']` must have shape {tuple(param.shape)}; received {value.shape}."
            )
        param[...] = jnp.asarray(value, param[...].dtype)


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
    with _unchanged(layer):
        acts = layer.run(x, mask=mask, initial_state=initial_state, record=True).activations
    if layer.go_backwards:
        acts = jax.tree_util.tree_map(lambda a: jnp.flip(a, 1), acts)
    return acts


def gradients_over_time(layer: Any, x: Any, *, loss=None, mask: Any = None) -> jax.Array:
    """``(batch, time)`` norms of d loss / d x_t: how much each timestep's input still
    moves the loss — the vanishing/exploding-gradient picture over time.

    ``loss(output) -> scalar`` defaults to the sum of squares of the layer's output (e.g.
    the last output of a ``return_sequences=False`` layer). It is applied to each output
    and summed, as Keras applies a loss: both outputs of a Bidirectional with
    ``merge_mode=None``; the states ``return_state`` adds are no outputs (see
    :func:`get_gradients`).
    """
    _inputs_are_arrays("gradients_over_time", x)
    if loss is not None and not callable(loss):
        raise TypeError(
            f"gradients_over_time: `loss` must be a function of the outputs (or None for the "
            f"sum of squares); received {loss!r}."
        )
    kwargs = {} if mask is None else {"mask": mask}  # models without a `mask` argument too
    g = _gradient("inputs", layer, jnp.asarray(x), None, loss or _sum_of_squares, kwargs)
    return jnp.sqrt(jnp.sum(jnp.square(g).reshape(*g.shape[:2], -1), axis=-1))


def get_gradients(
    model: nnx.Module, x: Any, y: Any = None, *, loss=None, wrt: Any = "weights", **call_kwargs: Any
) -> Any:
    """Gradients of a loss w.r.t. the model's weights (``wrt="weights"``; an ``nnx.State``
    shaped like the parameters), w.r.t. its output (``wrt="outputs"``), or w.r.t. the
    outputs of chosen sub-layers (``wrt=["enc", ...]``, ``wrt="enc"``, an index or ``"*"``,
    chosen as :func:`get_outputs` chooses them; ``"*"`` leaves out layers whose outputs are
    not floating point; ``{selector: gradient}`` shaped like each output, e.g.
    ``(batch, time, units)`` per timestep for ``return_sequences`` layers: a zero
    perturbation is added to each output and differentiated).

    ``loss(y_pred, y)`` defaults to the mean squared error when ``y`` is given, else the sum
    of squares of the output. A model with several outputs gets the loss of each, summed,
    as Keras does (``y`` is then a list of one target per output): a Bidirectional with
    ``merge_mode=None`` has two, ``(y, y_rev)``; a module that returns a tuple, list or
    dict, each array in it. The states a jrnn layer's ``return_state`` adds are left out
    (also at the end of an ``nnx.Sequential`` or inside ``TimeDistributed``).
    ``wrt="outputs"`` gives one gradient per output: an array, or a tuple of them.
    Per gate: pass the weights' gradient state through
    :func:`get_rnn_weights` after ``nnx.update`` on a copy, or use
    :func:`gate_gradients`.

    Called outside a transformation, the gradient runs as one program compiled once per
    model structure, shapes, ``wrt``, ``loss`` (pass the same function to reuse it) and
    non-array ``call_kwargs``, as eager layer calls do.
    """
    _inputs_are_arrays("get_gradients", x, y)
    if loss is None:
        loss = _mean_squared_error if y is not None else _sum_of_squares
    if isinstance(wrt, str) and wrt == "weights":
        return _gradient("weights", model, x, y, loss, call_kwargs)
    if isinstance(wrt, str) and wrt == "outputs":
        with _unchanged(model):
            outs = _loss_outputs(model, model(x, **call_kwargs))
        grads = jax.grad(lambda o: _summed_loss(loss, o, y))(outs)
        return grads[0] if len(grads) == 1 else grads
    try:
        names = tuple(_selectors(wrt, "get_gradients", "wrt"))
    except TypeError:
        raise ValueError(
            "get_gradients: `wrt` must be 'weights', 'outputs', a layer name, an index into "
            f"the model's layers, '*' or a list of these; received {wrt!r}."
        ) from None
    found = _find(model, list(names))
    shapes = _outputs(model, x, found, names, "get_gradients", call_kwargs)
    real = {
        key: all(jnp.issubdtype(jnp.result_type(v), jnp.inexact) for v in jax.tree.leaves(out))
        for key, out in shapes.items()
    }
    wrong = [key for key in names if key in real and not real[key]]
    if wrong:
        raise ValueError(
            f"get_gradients: the outputs of {wrong} are not floating point (a mask, indices); "
            "no gradient flows to them. Choose other layers (`wrt='*'` leaves them out)."
        )
    # "*" expanded to the layers with float outputs: the hooks perturb exactly these. A
    # tuple, not a dict: names may mix ints and strings, which a pytree cannot sort.
    names = tuple(key for key in shapes if real[key])
    zeros = tuple(jax.tree_util.tree_map(jnp.zeros_like, shapes[key]) for key in names)
    where = tuple((key, _path_of(model, found[key])) for key in names)  # static, hashable
    grads = _gradient("outputs_of", model, zeros, y, loss, call_kwargs, names=where, x=x)
    return dict(zip(names, grads))


def _inputs_are_arrays(function: str, x: Any, y: Any = None) -> None:
    """Refuse a string, None or object for ``x`` (``y``) before it reaches a jit program,
    naming the function called (see-rnn's order ``get_gradients(model, _id, x)`` puts a
    layer name where jrnn takes ``x``)."""
    if x is None:
        raise ValueError(
            f"{function}: `x` must be an array (or a list of arrays) of the model's inputs; "
            "received None."
        )
    _checks.arrays(function, x=x, y=y)


def _loss_outputs(module: Any, out: Any) -> tuple:
    """The outputs of ``module``'s call (``out``) that a loss applies to, in order: the
    states a jrnn layer's ``return_state`` adds are left out. A recurrent layer gives its
    output; a Bidirectional its merged output, with ``merge_mode=None`` its two;
    ``TimeDistributed`` and ``nnx.Sequential`` as the layer they wrap or end with; an
    imported Keras model every floating array it returns (Keras applies a loss to each
    model output); any other module the first of a tuple it returns (the rest may be a
    mask, lengths or states)."""
    if isinstance(module, nnx.Sequential) and len(module.layers):
        return _loss_outputs(module.layers[-1], out)
    if isinstance(module, TimeDistributed):
        return _loss_outputs(module.layer, out)
    several = isinstance(out, (tuple, list))
    if isinstance(module, Bidirectional):
        return tuple(out[: 2 if module.merge_mode is None else 1]) if several else (out,)
    if isinstance(module, RNN):
        return (out[0],) if several else (out,)
    if getattr(type(module), "is_imported_keras_model", False):  # Keras' outputs
        leaves = jax.tree_util.tree_leaves(out)
        return tuple(a for a in leaves if jnp.issubdtype(jnp.result_type(a), jnp.floating))
    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    return (out,)


def _summed_loss(loss: Any, outputs: tuple, y: Any, *, with_target: bool = True) -> Any:
    """``loss`` of each output (with its target), summed, as Keras sums a model's losses.
    One output is given ``y`` as it is; several need one target each (or ``y=None``)."""
    if len(outputs) == 1:
        return loss(outputs[0], y) if with_target else loss(outputs[0])
    if y is None:
        targets: list = [None] * len(outputs)
    else:
        targets = jax.tree_util.tree_leaves(y) if isinstance(y, (tuple, list, dict)) else [y]
        if len(targets) != len(outputs):
            raise ValueError(
                f"get_gradients: the model returns {len(outputs)} outputs (shapes "
                f"{[tuple(jnp.shape(o)) for o in outputs]}), so `y` must be a list of "
                f"{len(outputs)} targets, one per output (the loss of each is summed, as "
                f"Keras does); received {len(targets)} array(s)."
            )
    if not with_target:
        return sum(loss(o) for o in outputs)
    return sum(loss(o, t) for o, t in zip(outputs, targets))


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
    with _unchanged(model):
        return (_CACHED_GRADIENT if cacheable else _gradient_program)(*args, **options)


@contextlib.contextmanager
def _unchanged(model: nnx.Module):
    """Leave ``model`` as it was: an inspection runs the model, which advances stateful
    layers' states, RNG streams (dropout) and activity penalties; they are put back after
    the block (a stateful layer whose states the block created gets zero states)."""
    before = jax.tree_util.tree_map(lambda v: v, nnx.state(model))  # values, not Variables
    fresh = [
        m
        for _, m in nnx.iter_graph(model)
        if isinstance(m, RNN) and m.stateful and m.states is None
    ]
    try:
        yield
    finally:
        nnx.update(model, before)
        for m in fresh:
            if m.states is not None:
                m.reset_state()


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
        return nnx.grad(lambda m, x: _summed_loss(loss, _loss_outputs(m, m(x, **kwargs)), y))(
            model, target
        )
    if mode == "inputs":
        return nnx.grad(
            lambda m, x: _summed_loss(loss, _loss_outputs(m, m(x, **kwargs)), y, with_target=False),
            argnums=1,
        )(model, target)

    def perturbed(m, eps):  # eps: one perturbation per (key, path) of `names`, in order
        modules = dict(nnx.iter_graph(m))
        keys = [key for key, _ in names]

        def add(key, out):
            return jax.tree_util.tree_map(jnp.add, out, eps[keys.index(key)])

        with _hooked({key: modules[path] for key, path in names}, add):
            return _summed_loss(loss, _loss_outputs(m, m(x, **kwargs)), y)

    return nnx.grad(perturbed, argnums=1)(model, target)


_CACHED_GRADIENT = nnx.jit(_gradient_program, static_argnames=("mode", "loss", "static", "names"))


def gradient_norms_over_time(
    model: nnx.Module, x: Any, layer: str, y: Any = None, *, loss=None, **call_kwargs: Any
) -> jax.Array:
    """``(batch, time)`` L2 norms over units of d loss / d h_t, where ``h_t`` is the
    per-timestep output of the named ``return_sequences`` sub-layer ``layer`` (see
    :func:`get_gradients` with ``wrt=[layer]``): vanishing/exploding gradient diagnosis.
    A layer with several outputs (a Bidirectional with ``merge_mode=None``) gives the
    norm over the units of all of them; ``return_state``'s states are left out.

    The layer's output must have a time axis (axis 1). An output of rank < 3 has none; a
    higher-rank one is refused where it is known to have none (:func:`_time_axis`): a
    recurrent layer (or Bidirectional) with ``return_sequences=False`` (a ConvLSTM's
    ``(batch, rows, cols, filters)``), a 2-D/3-D spatial layer (its axis 1 is a spatial
    axis), a ``channels_first`` layer (axis 1 holds channels), a global pooling, and a
    layer that keeps its input's axes (Dense, activations, dropout and noise,
    normalization, merges, 1-D convolution/pooling/padding/cropping/upsampling) fed only
    by such outputs, as far as the model's structure shows it (an imported Keras model's
    graph, an ``nnx.Sequential``; in another module only the layer itself is judged).
    Where it cannot be known (an Input fed to a Dense, a Reshape or Permute, a custom
    layer) axis 1 is taken as time, as see-rnn does."""
    _inputs_are_arrays("gradient_norms_over_time", x, y)
    g = get_gradients(model, x, y, loss=loss, wrt=[layer], **call_kwargs)[layer]
    chosen = sub_layer(model, layer)
    outputs = _loss_outputs(chosen, g)
    shapes = [tuple(o.shape) for o in outputs]
    reason = _time_axis(model, chosen)
    if isinstance(reason, str):
        raise ValueError(
            f"gradient_norms_over_time: layer {layer!r} ({type(chosen).__name__}) must return "
            f"sequences, expected output(s) of shape (batch, time, ...); its output of shape "
            f"{shapes[0] if len(shapes) == 1 else shapes} has no time axis: {reason}."
        )
    short = [s for s in shapes if len(s) < 3]
    if short or len({s[:2] for s in shapes}) != 1:
        raise ValueError(
            f"gradient_norms_over_time: layer {layer!r} must return sequences, expected "
            f"output(s) of shape (batch, time, ...); received shape(s) {shapes}."
        )
    squares = sum(jnp.sum(jnp.square(o).reshape(*o.shape[:2], -1), axis=-1) for o in outputs)
    return jnp.sqrt(squares)


# Layers whose output keeps the axes of their (first) input: axis 1 is time if it was.
_KEEPS_AXES = (
    core.Dense, core.Embedding, core.Masking, core.Activation, core.LeakyReLU, core.ReLU,
    core.ELU, core.Softmax, core.PReLU, core.Identity, core._Noise,
    core.ActivityRegularization, core._Merge, core.BatchNormalization,
    core.LayerNormalization, Attention,
)  # fmt: skip


def _time_axis(model: nnx.Module, chosen: nnx.Module) -> Any:
    """Whether the output of ``chosen`` (a sub-layer of ``model``, or ``model``) has a
    time axis: ``True``; ``None`` where it cannot be known; else a sentence saying why
    it has none. Every call of ``chosen`` in ``model``'s structure is judged (a shared
    layer has none if one of its calls has none); a module found in no structure that
    :func:`_trace_time` follows is judged alone, its input unknown."""
    found: dict[int, list] = {}
    _trace_time(model, [None], found)
    statuses = found.get(id(chosen)) or [_layer_time(chosen, [None], 0)]
    reasons = [s for s in statuses if isinstance(s, str)]
    if reasons:
        return reasons[0]
    return True if statuses and all(s is True for s in statuses) else None


def _trace_time(module: Any, inputs: list, found: dict) -> Any:
    """Follow ``module``'s structure (an imported Keras model's call plan, an
    ``nnx.Sequential``'s layers) with its inputs' time-axis statuses ``inputs`` (see
    :func:`_time_axis`), recording each module's output status in ``found`` (by
    ``id``). Returns a function of the output index giving that output's status."""
    if getattr(type(module), "is_imported_keras_model", False) and hasattr(module, "_plan"):
        known = dict(zip(module._inputs, inputs))
        nodes: dict = {}

        def status(ref: tuple) -> Any:
            if ref in known:
                return known[ref]
            node = nodes.get(tuple(ref[:2]))
            return None if node is None else node(ref[2])

        for name, idx, refs, _, _ in module._plan:
            nodes[(name, idx)] = _trace_time(module.layers[name], [status(r) for r in refs], found)
        outputs = module._outputs

        def of_output(t: int) -> Any:
            return status(outputs[t]) if t < len(outputs) else None

        found.setdefault(id(module), []).append(of_output(0))
        return of_output
    if isinstance(module, nnx.Sequential):
        of_output = lambda t: inputs[t] if t < len(inputs) else None
        for layer in module.layers:
            of_output = _trace_time(layer, [of_output(0)], found)
        found.setdefault(id(module), []).append(of_output(0))
        return of_output

    def of_output(t: int) -> Any:
        return _layer_time(module, inputs, t)

    found.setdefault(id(module), []).append(of_output(0))
    return of_output


def _layer_time(module: Any, inputs: list, t: int) -> Any:
    """The time-axis status (see :func:`_time_axis`) of output ``t`` of one layer called
    on inputs of statuses ``inputs``."""
    name = type(module).__name__
    if isinstance(module, (RNN, Bidirectional)):
        outputs = 2 if isinstance(module, Bidirectional) and module.merge_mode is None else 1
        if t >= outputs:
            return f"the states a {name} returns (return_state=True) have none"
        if not module.return_sequences:
            return f"{name} returns its last step only (return_sequences=False)"
        return True
    if isinstance(module, (TimeDistributed, core.RepeatVector)):
        return True  # (batch, time, ...) by construction
    if isinstance(module, core._GlobalPool):
        return f"{name} reduces its spatial axes away"
    if isinstance(module, (core._Spatial, core._Conv)):
        if module.rank > 1:
            return f"{name} works on {module.rank}-D frames: its axis 1 is a spatial axis"
        if module.data_format == "channels_first":
            return f"{name} is channels_first: its axis 1 holds channels"
    elif not isinstance(module, _KEEPS_AXES):
        return None  # Reshape, Permute, Flatten, a custom layer, ...: cannot be known
    reasons = [s for s in inputs if isinstance(s, str)]
    if reasons:
        return reasons[0] if reasons[0].startswith(_KEPT) else _KEPT + reasons[0]
    return True if inputs and all(s is True for s in inputs) else None


_KEPT = "it keeps the axes of an output that has no time axis: "


def gate_gradients(
    layer: Any, x: Any, y: Any = None, *, loss=None, model: Any = None, **call_kwargs: Any
) -> Any:
    """Weight gradients of a recurrent layer split per gate (same structure as
    :func:`get_rnn_weights` with ``concat_gates=False``).

    Without ``model``, the loss is of ``layer(x)``; with it, of ``model(x)``, and ``layer``
    is one of its sub-layers (the module, or a name or index as :func:`get_outputs` takes
    them): see-rnn's ``get_gradients(model, _id, ..., mode="weights")`` per gate. The
    default loss covers every output (both of a Bidirectional with ``merge_mode=None``),
    as :func:`get_gradients`. CuDNN layers' gate blocks are the gradients w.r.t. the
    matrices applied to ``x`` and ``h`` (Keras' layout), as :func:`get_rnn_weights` gives
    their weights. ``layer`` (a recurrent layer, cell or Bidirectional) and ``x`` are
    checked before any gradient is computed."""
    _chosen_layer("gate_gradients", layer, model, recurrent=True)
    _inputs_are_arrays("gate_gradients", x, y)
    twin = layer_gradients(layer, x, y, loss=loss, model=model, **call_kwargs)
    return get_rnn_weights(twin, concat_gates=False)


def layer_gradients(
    layer: Any, x: Any, y: Any = None, *, loss=None, model: Any = None, **call_kwargs: Any
) -> nnx.Module:
    """A copy of ``layer`` whose weights hold the gradients of the loss w.r.t. them, to read
    through :func:`get_rnn_weights` or plot (``jrnn.plot.rnn_histogram(...,
    mode="grads")``). ``model``, ``loss`` and ``call_kwargs`` as :func:`gate_gradients`;
    ``layer`` and ``x`` are checked before any gradient is computed."""
    _chosen_layer("layer_gradients", layer, model)
    _inputs_are_arrays("layer_gradients", x, y)
    if model is None:
        model = layer
    grads = get_gradients(model, x, y, loss=loss, wrt="weights", **call_kwargs)
    return with_values(model, grads, layer)


_RECURRENT = (RNN, Bidirectional, RNNCellBase, StackedRNNCells)


def _chosen_layer(function: str, layer: Any, model: Any, *, recurrent: bool = False) -> Any:
    """The module ``layer`` chooses (itself, or with ``model`` one of its sub-layers: the
    module, a name or an index), checked before any work, errors naming ``function``;
    ``recurrent``: it must be what :func:`get_rnn_weights` splits per gate."""
    if model is None:
        if not isinstance(layer, nnx.Module):
            raise TypeError(
                f"{function}: `layer` must be an nnx.Module without `model`; received "
                f"{layer!r:.60} (pass `model=` to choose a sub-layer by name or index)."
            )
        module = layer
    elif not isinstance(model, nnx.Module):
        raise TypeError(
            f"{function}: `model` must be an nnx.Module; received {type(model).__name__}."
        )
    else:
        module = dict(nnx.iter_graph(model))[_path_of(model, layer, function)]
    if recurrent and not isinstance(module, _RECURRENT):
        hint = (
            " (pass the recurrent layer it wraps, `.layer`, with `model=` the TimeDistributed"
            " or the model holding it)"
            if isinstance(module, TimeDistributed)
            else ""
        )
        raise TypeError(
            f"{function}: `layer` must be a jrnn recurrent layer, cell or Bidirectional "
            f"(whose weights split per gate); received {type(module).__name__}{hint}."
        )
    return module


def with_values(model: nnx.Module, state: Any, layer: Any = None) -> nnx.Module:
    """A copy of ``model`` (or of its sub-layer ``layer``: the module, a name or an index)
    with ``state`` (an ``nnx.State`` shaped like the model's parameters, e.g. gradients or
    weights saved during training) in place of its values; ``model`` is untouched."""
    return _with_values(model, state, layer, "with_values: `state`")


def _with_values(model: nnx.Module, state: Any, layer: Any, argument: str) -> nnx.Module:
    """:func:`with_values`, its errors naming ``argument`` (the caller's)."""

    def shapes(tree):
        leaves = jax.tree_util.tree_leaves_with_path(tree)
        return {jax.tree_util.keystr(path): np.shape(v) for path, v in leaves}

    have, given = shapes(nnx.state(model)), shapes(state)
    wrong = {k: v for k, v in given.items() if have.get(k) != v}
    if not isinstance(state, nnx.State) or not given or wrong:
        raise ValueError(
            f"{argument} must be an nnx.State shaped like (a part of) the state of "
            f"{type(model).__name__}, such as nnx.state(model, nnx.Param) or get_gradients' "
            f"result; received {type(state).__name__}"
            + "".join(
                f"; {k}: {v}, expected {have.get(k, 'no such entry')}" for k, v in wrong.items()
            )
            + "."
        )
    twin = nnx.clone(model)
    nnx.update(twin, state)
    if layer is None or layer is model:
        return twin
    return dict(nnx.iter_graph(twin))[_path_of(model, layer, "with_values")]


def sub_layer(model: nnx.Module, layer: Any) -> nnx.Module:
    """The sub-layer of ``model`` that ``layer`` chooses: the module itself (checked to be
    inside ``model``), or a name or index as :func:`get_outputs` takes them."""
    if layer is None or layer is model:
        return model
    return dict(nnx.iter_graph(model))[_path_of(model, layer)]


def _path_of(model: nnx.Module, layer: Any, function: str = "sub_layer") -> tuple:
    if not isinstance(layer, nnx.Module):
        selectors = _selectors(layer, function, "layer")
        chosen = _find(model, selectors)
        if len(selectors) != 1 or len(chosen) != 1:
            raise ValueError(
                f"{function}: `layer` must choose one layer of the model; {layer!r} chose "
                f"{list(chosen)}."
            )
        layer = next(iter(chosen.values()))
    for path, module in nnx.iter_graph(model):
        if module is layer:
            return path
    raise ValueError(
        f"{function}: `layer` ({type(layer).__name__}) is not a sub-layer of `model` "
        f"({type(model).__name__})."
    )


def get_outputs(model: nnx.Module, x: Any, layers: Any, **call_kwargs: Any) -> dict[Any, Any]:
    """Outputs of chosen sub-layers in ONE forward pass of ``model(x, **call_kwargs)``.

    ``layers`` (see-rnn's ``_id``): a name, an index, ``"*"`` or a list of these. A name is
    a layer's ``name`` or its attribute path in the model (``"encoder/lstm"``), else the one
    layer whose name contains it (``"lstm"`` finds ``"lstm_1"`` if no other layer's name
    holds ``"lstm"``; two such layers raise, naming both); an index counts in
    :func:`layers_of` (an imported Keras model's layers in Keras' order); ``"*"`` is every
    layer of that list. Returns ``{selector: output}``
    (``"*"`` gives one entry per layer, under its name). The sub-layers' classes are swapped
    for recording subclasses during the call and restored afterwards.
    """
    _inputs_are_arrays("get_outputs", x)  # first: see-rnn's order puts `_id` here
    selectors = _selectors(layers, "get_outputs", "layers")
    return _outputs(model, x, _find(model, selectors), selectors, "get_outputs", call_kwargs)


def _outputs(model, x, found: dict, selectors: list, function: str, call_kwargs: dict) -> dict:
    """The outputs of the ``found`` layers in one call of ``model``, which is left as it
    was. A chosen layer that did not run, or ran more than once (a shared layer: which of
    its outputs?, as Keras' ``layer.output`` asks), raises; ``"*"`` keeps the layers that
    ran once."""
    captured: dict[Any, list] = {}

    def record(key, out):
        captured.setdefault(key, []).append(out)
        return out

    with _unchanged(model), _hooked(found, record):
        model(x, **call_kwargs)
    chosen = [key for key in selectors if key != "*"]
    unused = [key for key in chosen if key not in captured]
    if unused:
        raise ValueError(
            f"{function}: the layers {unused} did not run in `model(x)`; no output to return."
        )
    shared = [key for key in chosen if len(captured[key]) > 1]
    if shared:
        raise ValueError(
            f"{function}: the layers {shared} ran {[len(captured[k]) for k in shared]} times "
            "in `model(x)` (shared layers), so they have no one output; choose the layers "
            "that consume their outputs, or call the shared layer on its own."
        )
    return {key: captured[key][0] for key in found if len(captured.get(key, ())) == 1}


def layers_of(model: nnx.Module) -> list[tuple[str, nnx.Module]]:
    """The model's layers in order, as ``(label, module)``: ``model.layers`` where it has
    them (an imported Keras model's, in Keras' order, which is Keras' ``model.layers``
    without its ``InputLayer``s and Keras 3 operation nodes; ``nnx.Sequential``'s), else its
    sub-modules in assignment order (kept through NNX transforms, which give a module's
    attributes back sorted by name), the entries of an ``nnx.List``/``nnx.Dict`` (or list,
    tuple, dict) attribute one by one. A label is the layer's ``name``, else its attribute
    path (``"blocks/0"``); two layers of one name are labelled by their paths. This is the
    list an integer selects from and ``"*"`` stands for."""
    if not isinstance(model, nnx.Module):
        raise TypeError(f"expected an nnx.Module model; received {type(model).__name__}.")
    layers = getattr(model, "layers", None)
    order = getattr(model, "layer_names", None)  # an imported model's Keras order
    if isinstance(layers, Mapping) and order is not None:
        items = [(f"layers/{name}", layers[name]) for name in order]
    elif isinstance(layers, (Mapping, list, tuple, nnx.List)):
        items = list(_entries("layers", layers))
    else:
        items = [
            entry
            for key, value in _assigned(model)
            if not key.startswith("_")
            for entry in _entries(key, value)
        ]
    items = [
        (path, m)
        for path, m in items
        if isinstance(m, nnx.Module) and not getattr(m, "keras_operation", False)
    ]
    names = [getattr(m, "name", None) for _, m in items]
    return [
        (name if name and names.count(name) == 1 else path, m)
        for name, (path, m) in zip(names, items)
    ]


def _assigned(module: Any) -> list[tuple[str, Any]]:
    """A module's attributes in the order they were assigned. NNX transforms (``nnx.jit``,
    ``nnx.grad``, ...) set them back sorted by name; Flax records the assignment order in
    ``_pytree__nodes``, which they leave alone (where it is missing: ``vars`` order)."""
    items = vars(module)
    order = {key: k for k, key in enumerate(getattr(module, "_pytree__nodes", None) or ())}
    return sorted(items.items(), key=lambda kv: order.get(kv[0], len(order)))


def _entries(path: str, value: Any):
    """``(path, value)``, or one entry per element of a container of modules."""
    if isinstance(value, nnx.Dict):
        for key, item in _assigned(value):
            if not key.startswith("_"):
                yield f"{path}/{key}", item
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield f"{path}/{key}", item
    elif isinstance(value, (list, tuple, nnx.List)):
        for key, item in enumerate(value):
            yield f"{path}/{key}", item
    else:
        yield path, value


def _selectors(layers: Any, function: str, argument: str) -> list:
    """``layers`` as a list of selectors: names (str) and indices (int), ``"*"`` kept."""
    selectors = [layers] if isinstance(layers, (str, numbers.Integral)) else layers
    if (
        isinstance(selectors, (list, tuple))
        and selectors
        and all(
            isinstance(n, (str, numbers.Integral)) and not isinstance(n, (bool, np.bool_))
            for n in selectors
        )
    ):
        return [n if isinstance(n, str) else int(n) for n in selectors]
    raise TypeError(
        f"{function}: `{argument}` must be a layer name, an index into the model's layers, "
        f"'*' (every layer) or a list of these; received {layers!r}."
    )


def _find(model: nnx.Module, selectors: list) -> dict[Any, nnx.Module]:
    """The sub-modules chosen by ``selectors``, keyed by the selector (``"*"`` expands to
    every layer's label). A name is, in this order: the label of one of the model's
    layers (:func:`layers_of`), an attribute path in the model (``"encoder/lstm"``), the
    ``name`` of one sub-module at any depth, else part of the label of one of the model's
    layers (see-rnn's substring rule) or of one sub-module. A name two modules answer to at
    the first step that matches raises, naming them. An int indexes :func:`layers_of`."""
    top = layers_of(model)
    named = [(getattr(m, "name", None) or key, key, m) for key, m in _named(model)]
    by_path = [(key, m) for _, key, m in named]

    def one(pool, selector, how):
        hits = {id(m): (label, m) for label, m in pool if how(label)}
        if len(hits) > 1:
            raise ValueError(
                f"layer name {selector!r} is ambiguous: it matches "
                f"{sorted(label for label, _ in hits.values())}; pass an attribute path or "
                "an index instead."
            )
        return next(iter(hits.values()))[1] if hits else None

    found: dict[Any, nnx.Module] = {}
    missing = []
    for selector in selectors:
        if isinstance(selector, int):
            if not -len(top) <= selector < len(top):
                raise IndexError(
                    f"layer index {selector} out of range: the model has {len(top)} layers "
                    f"{[label for label, _ in top]}."
                )
            found[selector] = top[selector][1]
            continue
        if selector == "*":
            found.update(top)
            continue
        module = (
            one([(getattr(m, "name", None) or label, m) for label, m in top], selector,
                selector.__eq__)
            or one(by_path, selector, selector.__eq__)
            or one([(label, m) for label, _, m in named], selector, selector.__eq__)
            or one(top, selector, lambda label, s=selector: s in label)
            or one([(label, m) for label, _, m in named], selector,
                   lambda label, s=selector: bool(label) and s in label)
        )  # fmt: skip
        if module is None:
            missing.append(selector)
        else:
            found[selector] = module
    if missing:
        available = [label or "(model)" for label, _, _ in named]
        raise ValueError(f"no layer named {missing} in the model; available: {available}.")
    return found


def _named(model: nnx.Module):
    for path, module in nnx.iter_graph(model):
        if isinstance(module, nnx.Module):
            yield "/".join(map(str, path)), module


@contextlib.contextmanager
def _hooked(found: dict, hook):
    """Swap the ``found`` sub-layers' classes (``{key: module}``, from :func:`_find`) for
    subclasses whose call returns ``hook(key, output)`` (for each key that chose the layer,
    in order); restored on exit, also on exceptions. The call is ``__call__``, or
    ``call_with_mask`` for a nested imported model (which its parent calls that way). The
    original class is back during the original call, so that a cached eager call (keyed on
    the layer's class among others) sees the layer it cached, not a new subclass per use."""
    chosen: dict[int, tuple[nnx.Module, list]] = {}
    for key, module in found.items():
        chosen.setdefault(id(module), (module, []))[1].append(key)
    swapped = []
    try:
        for module, keys in chosen.values():
            cls = type(module)
            method = "call_with_mask" if hasattr(cls, "call_with_mask") else "__call__"
            original = getattr(cls, method)

            @functools.wraps(original)  # keeps the signature (e.g. a `mask` parameter)
            def call(self, *args, _keys=tuple(keys), _cls=cls, _original=original, **kwargs):
                hooked = type(self)
                object.__setattr__(self, "__class__", _cls)
                try:
                    output = _original(self, *args, **kwargs)
                finally:
                    object.__setattr__(self, "__class__", hooked)
                if _original.__name__ == "call_with_mask":  # (outputs, masks)
                    outs, masks = output
                    for key in _keys:
                        outs = hook(key, outs)
                    return outs, masks
                for key in _keys:
                    output = hook(key, output)
                return output

            hooked_cls = type(cls.__name__, (cls,), {method: call, "jrnn_inspect_hook": True})
            object.__setattr__(module, "__class__", hooked_cls)
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


def weights_norm(
    layer: Any,
    *,
    axis: int = -1,
    stat_fns=(np.max, np.mean),
    norm_fn=(np.sqrt, np.square),
    omit_names: Any = None,
    into: dict | None = None,
) -> dict[str, list]:
    """see-rnn's per-unit weight norms: for each weight ``w``, ``outer(sum(inner(w)))``
    over every axis but ``axis`` with ``norm_fn=(outer, inner)`` (default the L2 norm; one
    callable ``f`` gives ``sum(f(w))``, e.g. ``np.abs`` for L1), then each statistic of
    ``stat_fns`` over those norms. Returns ``{weight path: [one value per statistic]}``.

    ``omit_names``: a substring or list of substrings; weights whose path contains one are
    skipped (``"bias"``). ``into`` (see-rnn's ``_dict``): ``{}``, or the dict an earlier
    call with ``into`` returned, to append to, to track the norms over training:
    ``into[path][k]`` is then the list of the ``k``-th statistic over the calls; it is
    returned.
    """
    if not isinstance(layer, nnx.Module):
        raise TypeError(
            f"weights_norm: `layer` must be an nnx.Module; received {type(layer).__name__}."
        )
    if callable(norm_fn):
        outer, inner = (lambda v: v), norm_fn
    elif isinstance(norm_fn, (tuple, list)) and len(norm_fn) == 2 and all(map(callable, norm_fn)):
        outer, inner = norm_fn
    else:
        raise TypeError(
            "weights_norm: `norm_fn` must be a callable or an (outer, inner) pair of callables; "
            f"received {norm_fn!r}."
        )
    omit = _omit(omit_names, "weights_norm")
    if into is not None and not isinstance(into, dict):
        raise TypeError(
            f"weights_norm: `into` must be a dict from an earlier call; received "
            f"{type(into).__name__}."
        )
    out = {}
    for path, param in nnx.iter_graph(layer):
        name = "/".join(map(str, path))
        if isinstance(param, nnx.Param) and not any(o in name for o in omit):
            w = np.asarray(param[...])
            if not -w.ndim <= axis < w.ndim:
                raise ValueError(
                    f"weights_norm: `axis` {axis} is out of range for {name!r} of shape {w.shape}."
                )
            axes = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
            norms = outer(np.sum(inner(w), axis=axes)) if axes else outer(inner(w))
            out[name] = [float(fn(norms)) for fn in stat_fns]
    if into is None:
        return out
    for name, values in out.items():
        series = into.setdefault(name, [[] for _ in values])
        if not (isinstance(series, list) and all(isinstance(v, list) for v in series)):
            raise ValueError(
                f"weights_norm: `into[{name!r}]` must be a list of lists (one per statistic); "
                f"received {series!r}. Start with `into={{}}` and pass the result back."
            )
        if len(series) != len(values):
            raise ValueError(
                f"weights_norm: `into[{name!r}]` holds {len(series)} statistics; this call "
                f"computes {len(values)} (`stat_fns` must not change between calls)."
            )
        for k, value in enumerate(values):
            series[k].append(value)
    return into


def get_weights(model: nnx.Module, layers: Any = "*", *, omit_names: Any = None) -> dict:
    """see-rnn's ``get_weights``: ``{"<selector>/<weight path>": array}`` of the chosen
    layers (names, indices or ``"*"``, as :func:`get_outputs` takes them; ``"*"`` keys by
    each layer's name), skipping weights whose key contains one of ``omit_names``."""
    selectors = _selectors(layers, "get_weights", "layers")
    omit = _omit(omit_names, "get_weights")
    out = {}
    for key, module in _find(model, selectors).items():
        for path, param in nnx.iter_graph(module):
            name = "/".join(map(str, (key, *path)))
            if isinstance(param, nnx.Param) and not any(o in name for o in omit):
                out[name] = np.asarray(param[...])
    return out


def _omit(omit_names: Any, function: str) -> list[str]:
    """see-rnn's ``omit_names``: None, a substring or a list of substrings."""
    omit = [omit_names] if isinstance(omit_names, str) else omit_names
    if omit is None:
        return []
    if not isinstance(omit, (list, tuple)) or not all(isinstance(o, str) for o in omit):
        raise TypeError(
            f"{function}: `omit_names` must be a string or a list of strings; received "
            f"{omit_names!r}."
        )
    return list(omit)


def get_weight_penalties(model: nnx.Module) -> dict[str, Any]:
    """see-rnn's ``get_weight_penalties``: ``{weight path: (l1, l2)}`` for every weight
    with a ``kernel_regularizer``, ``recurrent_regularizer`` or ``bias_regularizer`` (and
    the other Keras ``*_regularizer`` arguments; both directions of a Bidirectional). A
    regularizer without l1/l2 factors (``OrthogonalRegularizer``) is given itself."""
    from jrnn.training import _governed_params  # training imports optax: import lazily

    out = {}
    for path, _, rule in _governed_params(model, "regularizer"):
        factors = (getattr(rule, "l1", 0.0), getattr(rule, "l2", 0.0))
        plain = hasattr(rule, "l1") or hasattr(rule, "l2")
        out["/".join(path)] = tuple(float(f) for f in factors) if plain else rule
    return out


def weight_loss(model: nnx.Module) -> float:
    """see-rnn's ``weight_loss``: the sum of the weight penalties (``l1 * sum|w| + l2 *
    sum(w**2)`` per regularized weight, any regularizer's own penalty otherwise), without
    the activity penalties that :func:`jrnn.training.regularization_loss` adds."""
    from jrnn.training import _governed_params

    return float(sum(rule(param[...]) for _, param, rule in _governed_params(model, "regularizer")))


def _in_model_order(model: nnx.Module) -> list[tuple[tuple, nnx.Module]]:
    """``(path, module)`` of every sub-module, each module's layers in :func:`layers_of`
    order (an imported model's Keras order, attribute order otherwise); the graph's own
    order sorts by name."""
    paths: dict[int, tuple] = {}
    for path, module in nnx.iter_graph(model):
        if isinstance(module, nnx.Module):
            paths.setdefault(id(module), path)
    ordered: dict[int, tuple] = {}

    def visit(module: nnx.Module) -> None:
        if id(module) in ordered or id(module) not in paths:
            return
        ordered[id(module)] = (paths[id(module)], module)
        for _, child in layers_of(module):
            visit(child)

    visit(model)
    for path, module in nnx.iter_graph(model):  # modules no layer list reaches
        if isinstance(module, nnx.Module):
            ordered.setdefault(id(module), (path, module))
    return list(ordered.values())


def summary(model: nnx.Module) -> str:
    """A table of every recurrent layer: path, class, units, gates, parameter shapes,
    parameter count and NaN report."""
    rows = [("layer", "class", "units", "gates", "parameters", "count", "NaN")]
    for path, module in _in_model_order(model):
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
    "get_weight_penalties",
    "get_weights",
    "gradient_norms_over_time",
    "gradients_over_time",
    "layer_gradients",
    "layers_of",
    "sub_layer",
    "summary",
    "weight_loss",
    "weights_norm",
    "with_rnn_weights",
    "with_values",
]
