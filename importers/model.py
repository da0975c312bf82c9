"""Rebuild a whole Keras model (Sequential or Functional config) as a jrnn ``nnx.Module``.

Entry point: :func:`load`. Sources: a live ``keras.Model`` (Keras 3 or tf_keras; Keras is
imported only when such an object is given), a ``.keras`` archive or a legacy full-model
``.h5`` (read by :func:`importers._files.read_keras_file` with h5py, json and zipfile
only), or a jrnn checkpoint directory (:mod:`importers.checkpoint`).

How a model is rebuilt:

* The config's layers are converted in config order (Keras stores them topologically)
  by :data:`importers.convert.CONVERTERS`; ``custom_layers={"ClassName": factory}``
  supplies modules for classes jrnn does not convert (``factory(config, arrays)``).
* Shapes flow through the graph while it is built: the ``InputLayer`` shapes (unknown
  sizes taken as 1) are propagated with :func:`flax.nnx.eval_shape`, so converters
  that need an input shape (ConvLSTM's spatial shape) get it.
* Calls follow the node list (``inbound_nodes``) of each layer, so shared layers,
  several inputs/outputs, ``initial_state=`` tensors and nested models work; masks
  propagate as in Keras 3 (see :func:`_apply`).
* Keras 1/2 files and tf_keras models are read with Keras 2 semantics:
  ``hard_sigmoid`` is ``clip(0.2x + 0.5)`` (jrnn's ``keras2_hard_sigmoid``) and GRU
  configs without ``reset_after`` use Keras 2's default ``False``. Each layer's dtype
  policy (``mixed_float16``, ``mixed_bfloat16``) is carried over.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from importers import legacy
from importers._convert_core import MERGE_CLASSES, with_policy
from importers._ops import TF_OP_CLASSES, KerasOp, TFOpLambda, constant, is_op
from importers.convert import CONVERTERS, SOURCE, keras_kwargs, record_trainable
from importers.errors import ExtraWeightsError, KerasFileError, UnsupportedLayerError
from jrnn._checks import shape_str
from jrnn._config import _freeze, _thaw
from jrnn.rnn import NOT_CACHED, cached_call, eager_arguments

_MODEL_CLASSES = ("Sequential", "Functional", "Model")
_UNKNOWN_DIM = 1  # stands for a None size while shapes are propagated


# -- weight sources -------------------------------------------------------------------------


class _Weights:
    """Arrays by Keras layer name; ``child(name)`` for a nested model's layers;
    ``wrapped(name, model)`` for the layers of the model ``model`` that the layer ``name``
    wraps (``TimeDistributed(model)``), by default ``child(name).child(model)``."""

    def __init__(
        self,
        arrays: Callable[[str], list],
        child: Callable[[str], _Weights],
        wrapped: Callable[[str, str], _Weights] | None = None,
    ):
        self.arrays, self.child = arrays, child
        self.wrapped = wrapped or (lambda name, model: child(name).child(model))


def _from_callable(fn: Callable[[str], list], prefix: str = "") -> _Weights:
    """Nested layers are asked for as ``"outer/inner"``."""
    return _Weights(lambda n: list(fn(prefix + n)), lambda n: _from_callable(fn, f"{prefix}{n}/"))


def _from_live(model: Any) -> _Weights:
    return _Weights(
        lambda n: _live_arrays(model.get_layer(n)),
        lambda n: _from_live(model.get_layer(n)),
        lambda n, _: _from_live(model.get_layer(n).layer),
    )


def _live_arrays(layer: Any) -> list:
    """A live layer's weights as its file holds them: a LoRA-enabled Keras 3 layer saves
    its kernel with the low-rank update merged in (``save_own_variables``), not the four
    arrays ``get_weights()`` lists."""
    if getattr(layer, "lora_enabled", False):
        store: dict[str, Any] = {}
        layer.save_own_variables(store)
        return [np.asarray(store[k]) for k in sorted(store, key=int)]
    if type(layer).__name__ == "Bidirectional":
        return _live_arrays(layer.forward_layer) + _live_arrays(layer.backward_layer)
    inner = getattr(layer, "layer", None)  # TimeDistributed and other one-layer wrappers
    if inner is not None and layer.weights and len(layer.weights) == len(inner.weights):
        return _live_arrays(inner)
    return [np.asarray(w) for w in layer.get_weights()]


def owned_weights(weight_names: list, path: tuple, claimed: set) -> list[int]:
    """Indices of the legacy ``.h5`` weights of a nested model's group that belong to the
    layer at ``path`` (the nested models' names from the group's down, then the layer's)
    and are not ``claimed`` yet; they are added to ``claimed``. Keras 2 names a weight by
    the scopes it was created in: the layer's own name first when the layer was built
    before the model (``il/lstm_cell/kernel:0``, however deep the nesting), or the models'
    names down to the layer when it was built in their call (``mid/inner/il/kernel:0``):
    a name that starts with a tail of ``path`` and goes on below it."""
    scopes = ["/".join(path[k:]) + "/" for k in range(len(path))]  # names may hold "/"
    found = []
    for index, weight in enumerate(weight_names):
        if index not in claimed and any(str(weight).startswith(scope) for scope in scopes):
            found.append(index)
    claimed.update(found)
    return found


def _legacy_nested(
    weight_names: list, arrays: list, scopes: tuple, claimed: set, groups: list | None
) -> _Weights:
    """A legacy ``.h5`` nested model (one group holding the weights of all its layers and
    of the models nested in it) as :class:`_Weights`: each layer's arrays picked by their
    names (:func:`owned_weights`), in the file's order. ``groups`` collects (group,
    weight names, claimed) for the check that every array found its layer."""
    if groups is not None:
        groups.append((scopes[0], weight_names, claimed))

    def take(layer: str) -> list:
        mine = owned_weights(weight_names, (*scopes, layer), claimed)
        return NamedArrays([arrays[k] for k in mine], [weight_names[k] for k in mine])

    def child(model: str) -> _Weights:
        return _legacy_nested(weight_names, arrays, (*scopes, model), claimed, None)

    return _Weights(take, child)


class NamedArrays(list):
    """A layer's arrays, with the names the file gives them (``weight_names``), which
    conversion errors quote."""

    def __init__(self, arrays: Any, weight_names: Any):
        super().__init__(arrays)
        names = [str(n) for n in weight_names]
        self.weight_names = names if len(names) == len(self) else None


def _from_layer_weights(layers: Mapping[str, Any], groups: list | None = None) -> _Weights:
    def arrays(name: str) -> list:
        if name not in layers:
            return []
        return NamedArrays(layers[name].arrays, layers[name].weight_names)

    def child(name: str) -> _Weights:
        lw = layers.get(name)
        if lw is None:
            return _from_layer_weights({})
        if lw.children:
            return _from_layer_weights(lw.children, groups)
        return _legacy_nested(list(lw.weight_names), list(lw.arrays), (name,), set(), groups)

    def wrapped(name: str, model: str) -> _Weights:
        lw = layers.get(name)
        if lw is None:
            return _from_layer_weights({})
        if lw.children:  # Keras 3 tree: the wrapped model sits in the group `layer`
            inner = lw.children.get("layer")
            return _from_layer_weights(inner.children if inner is not None else {}, groups)
        return _legacy_nested(list(lw.weight_names), list(lw.arrays), (name, model), set(), groups)

    return _Weights(arrays, child, wrapped)


# -- the model --------------------------------------------------------------------------------


_RNN_CALL = ("initial_state", "mask", "training")
#: The parameters after the inputs of Keras 3 layers' ``call``, in order: a call's further
#: positional arguments (``lstm(x, [h, c])``, ``attention([q, v], [q_mask, v_mask])``).
_CALL_POSITIONALS = {
    **{cls: _RNN_CALL for cls in ("SimpleRNN", "GRU", "LSTM", "RNN", "IndRNN", "CuDNNLSTM",
                                  "CuDNNGRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
                                  "Bidirectional")},
    **dict.fromkeys(("Attention", "AdditiveAttention"),
                    ("mask", "training", "return_attention_scores", "use_causal_mask")),
    **dict.fromkeys(("BatchNormalization", "TimeDistributed", *_MODEL_CLASSES),
                    ("training", "mask")),
    **dict.fromkeys(("GlobalAveragePooling1D", "GlobalAvgPool1D", "Softmax"), ("mask",)),
    **dict.fromkeys(("Dense", "Dropout", "SpatialDropout1D", "GaussianNoise",
                     "GaussianDropout"), ("training",)),
}  # fmt: skip


def _refs(
    node: Any, op: bool = False, entry: dict | None = None
) -> tuple[list[tuple[str, int, int]], bool, dict]:
    """Inbound tensors of one node (Keras 2 or 3 format), list-valued call?, call kwargs.

    A layer's call kwargs are kept except ``training`` and None values (tensor ones, e.g.
    ``mask``/``initial_state``, are resolved when called); positional arguments after the
    inputs become the kwargs they are in the Keras layer's ``call`` (``entry``: the layer's
    config entry); an operation's (``op``) whole ``args`` go in ``kwargs["__op_args__"]``,
    as any of them may be a tensor.
    """
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        args = node.get("args", [])
        kwargs = {
            k: v for k, v in node.get("kwargs", {}).items() if k != "training" and v is not None
        }
        if op:
            return [], False, {_OP_ARGS: args, **kwargs}
        if len(args) > 1:
            kwargs = _positional_kwargs(entry or {}, args[1:], kwargs)
        first = args[0] if args else None
        is_list = isinstance(first, list)
        items = first if is_list else [first]
        return [_history(t) for t in items], is_list, kwargs
    refs = [(r[0], r[1], r[2]) for r in node]  # Keras 2: [["name", node, tensor, kwargs]]
    call_kwargs = node[0][3] if node and len(node[0]) > 3 and node[0][3] else {}
    kwargs = {
        k: _keras2_tensor(v) for k, v in call_kwargs.items() if k != "training" and v is not None
    }
    return refs, len(refs) > 1, kwargs


def _positional_kwargs(entry: dict, extra: list, kwargs: dict) -> dict:
    """``kwargs`` with a Keras 3 call's positional arguments after the inputs added under
    their parameter names (None and ``training`` left out, as for keywords)."""
    cls, name = entry.get("class_name"), str(_entry_name(entry)) if entry else "?"
    names = _CALL_POSITIONALS.get(cls, ())
    if len(extra) > len(names):  # refused once the layer is converted (if it can be)
        return {**kwargs, _UNPLACED: len(extra)}
    out = dict(kwargs)
    for key, value in zip(names, extra):
        if value is None or key == "training":
            continue
        if key in out:
            raise KerasFileError(
                f"layer {name!r} ({cls}): a call passes {key!r} both by position and by "
                "keyword; the config is damaged."
            )
        out[key] = value
    return out


def _tf_op_call(node: list) -> dict:
    """A tf.keras ``TFOpLambda`` node: ``["layer", node, tensor, kwargs]`` when its first
    argument is one tensor, a list of such refs when it is a list (``tf.concat``); the other
    arguments are the kwargs. As an operation call: ``{"__op_args__": [first], **kwargs}``."""
    single = bool(node) and isinstance(node[0], str)
    refs = [node] if single else list(node)
    call_kwargs = refs[0][3] if refs and len(refs[0]) > 3 and refs[0][3] else {}
    # A constant first argument (`2 * h`, `1.0 - h`) is ["_CONSTANT_VALUE", -1, value, kwargs].
    tensors = [_keras2_tensor(list(r[:3])) for r in refs]
    kwargs = {k: _keras2_tensor(v) for k, v in call_kwargs.items() if v is not None}
    return {_OP_ARGS: [tensors[0] if single else tensors], **kwargs}


def _keras2_tensor(v: Any) -> Any:
    """A Keras 2 call kwarg; its tensors (``["layer", node, tensor]``) as Keras 3 references,
    its constants (``["_CONSTANT_VALUE", -1, value]``) as their values."""
    if isinstance(v, list) and len(v) == 3 and v[0] == "_CONSTANT_VALUE" and v[1] == -1:
        return v[2]
    if (
        isinstance(v, list)
        and len(v) == 3
        and isinstance(v[0], str)
        and all(isinstance(i, int) for i in v[1:])
    ):
        return {"class_name": "__keras_tensor__", "config": {"keras_history": v}}
    if isinstance(v, list):
        return [_keras2_tensor(x) for x in v]
    return v


def _history(t: Any) -> tuple[str, int, int]:
    if not (isinstance(t, dict) and "keras_history" in t.get("config", {})):
        raise KerasFileError(f"a layer input is not a Keras tensor reference: {t!r}")
    return tuple(t["config"]["keras_history"])


_OP_ARGS = "__op_args__"
_UNPLACED = "__unplaced_positional_arguments__"  # how many a call passed that jrnn cannot place
_UNKNOWN = object()  # a tensor whose shape is not known while the model is built


def _resolve(v: Any, tensors: dict, strict: bool = True) -> Any:
    """A call argument with its Keras tensor references replaced by their values (and Keras'
    JSON constants decoded); with ``strict=False`` an unknown reference gives ``_UNKNOWN``."""
    if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
        ref = _history(v)
        return tensors[ref][0] if strict else tensors.get(ref, (_UNKNOWN, None))[0]
    if isinstance(v, (list, tuple)):
        return [_resolve(x, tensors, strict) for x in v]
    return constant(v)


def _has_input_layer(entry: dict) -> bool:
    """A nested model config whose layers start from an InputLayer (Keras 2 rule)."""
    if entry["class_name"] not in _MODEL_CLASSES:
        return False
    layers = entry["config"].get("layers") or []
    return bool(layers) and layers[0].get("class_name") == "InputLayer"


def _entry_name(entry: dict) -> str:
    return entry.get("name") or entry["config"]["name"]


def _batch_shape(entry: dict) -> tuple | None:
    cfg = entry["config"]
    shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
    return tuple(shape) if shape is not None else None


def _input_dtype(entry: dict) -> Any:
    dtype = entry["config"].get("dtype", "float32")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name", "float32")
    if dtype in ("mixed_float16", "mixed_bfloat16"):
        dtype = "float32"
    return jnp.dtype(dtype)


def _vague(shape: Any) -> bool:
    """A batch shape with an unknown size past the batch and time axes."""
    return shape is not None and any(d is None for d in list(shape)[2:])


def _has_conv_lstm(entry: dict) -> bool:
    """A ConvLSTM layer, or a wrapper around one (it needs its frames' size)."""
    if entry.get("class_name") in ("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"):
        return True
    inner = entry.get("config", {}).get("layer")
    return isinstance(inner, dict) and _has_conv_lstm(inner)


def _spec(shape: tuple | None, dtype: Any):
    if shape is None:
        return None
    return jax.ShapeDtypeStruct(tuple(_UNKNOWN_DIM if d is None else int(d) for d in shape), dtype)


def _wraps_model(entry: dict) -> bool:
    inner = entry.get("config", {}).get("layer")
    return isinstance(inner, dict) and inner.get("class_name") in _MODEL_CLASSES


def _time_distributed_model(entry, weights: _Weights, custom_layers, keras_major, in_shape):
    """``TimeDistributed(model)``: the wrapped Keras model rebuilt as an
    :class:`ImportedModel` (its weights are the wrapper's, by the model's layers) and
    wrapped in :class:`jrnn.TimeDistributed`, which gives it each timestep's mask, as
    Keras passes ``mask[:, t]`` to a model's ``call``."""
    import jrnn

    name, inner = _entry_name(entry), entry["config"]["layer"]
    model = ImportedModel(
        inner, weights.wrapped(name, _entry_name(inner)), custom_layers, keras_major
    )

    def wrap(config, arrays, in_shape):
        kw = keras_kwargs(jrnn.TimeDistributed, config, drop=("layer", "dtype"))
        return jrnn.TimeDistributed(model, **kw)

    try:
        return with_policy(wrap)(entry["config"], [], in_shape)
    except ValueError as err:  # a stateful layer in the model
        raise UnsupportedLayerError(
            "TimeDistributed", name, detail=f"its model cannot be distributed: {err}"
        ) from err


class ImportedModel(nnx.Module):
    """A Keras model rebuilt in jrnn: call it as the Keras model; ``layers[name]`` by name.

    ``model(x)`` (one input) or ``model([x1, x2])``; ``training=True`` applies dropout
    and batch statistics as Keras does. Returns one array or a list, as Keras.
    """

    #: Marks a Keras model for jrnn's training and inspection, which take its outputs (and
    #: their masks, :meth:`call_with_mask`) as Keras' fit and see-rnn do.
    is_imported_keras_model = True

    def __init__(
        self,
        config: dict,
        weights: Callable[[str], list] | _Weights,
        custom_layers: dict | None = None,
        keras_major: int = 3,
    ):
        if not isinstance(weights, _Weights):
            weights = _from_callable(weights)
        if custom_layers is not None and (
            not isinstance(custom_layers, dict)
            or not all(isinstance(k, str) and callable(v) for k, v in custom_layers.items())
        ):
            raise TypeError(
                "load: `custom_layers` must be a dict {class name: factory(config, arrays)}; "
                f"received {type(custom_layers).__name__} {custom_layers!r:.80}."
            )
        custom_layers = dict(custom_layers or {})
        config = _with_layer_dict(config)
        if keras_major < 3:
            config = _keras2_semantics(config)
        cfg = config.get("config", config)
        self.name = cfg.get("name")
        # The Keras model config this model was rebuilt from (hashable, read-only): what
        # `importers.save_keras` and checkpoints write back. `model_config` thaws it.
        self._keras_config = _freeze(config)
        self.keras_major = keras_major
        self._build(config, cfg, weights, custom_layers, keras_major)

    # Building ------------------------------------------------------------------------

    def _build(self, config, cfg, weights, custom_layers, keras_major):
        entries = cfg["layers"]
        is_sequential = config.get("class_name") == "Sequential" or "input_layers" not in cfg
        layers: dict[str, Any] = {}
        plan: list = []
        input_keys = None
        specs: dict = {}
        # Input dtypes the config records (InputLayers): Keras converts each input to its
        # Input's dtype before the first layer sees it (float64 or float16 data into a
        # float32 Input is rounded there).
        input_dtypes: dict = {}
        input_shapes: dict = {}  # their (batch, ...) shapes, None for an unknown size
        input_ranks: dict = {}  # the shapes Keras adjusts an input's rank to
        batch_sizes: set = set()  # the Inputs' fixed batch sizes (a stateful model has one)
        # Tensors whose shape stems from an input with an unknown (None) size past the time
        # axis: sizes that propagation filled with _UNKNOWN_DIM, which a ConvLSTM cannot use.
        vague: set = set()
        if is_sequential:
            first = entries[0] if entries else None
            shape = cfg.get("build_input_shape")
            dtype = jnp.dtype("float32")
            if first is not None and (first["class_name"] == "InputLayer" or _batch_shape(first)):
                shape = _batch_shape(first) or shape
                dtype = _input_dtype(first)
                if first["class_name"] == "InputLayer":
                    input_dtypes[("__input__", 0, 0)] = dtype
                if keras_major < 3:  # Keras 3's Sequential checks no input shape (it
                    input_shapes[("__input__", 0, 0)] = shape  # records its first call's)
            if shape is not None:  # but adjusts the rank to it, as every Keras model
                input_ranks[("__input__", 0, 0)] = shape
                batch_sizes.add((shape or [None])[0])
            specs[("__input__", 0, 0)] = (_spec(shape, dtype), None)
            if _vague(shape):
                vague.add(("__input__", 0, 0))
            prev = ("__input__", 0, 0)
            for entry in entries:
                if entry["class_name"] == "InputLayer":
                    continue
                name = _entry_name(entry)
                plan.append((name, 0, [prev], False, {}))
                prev = (name, 0, 0)
            inputs, outputs, single, tree = [("__input__", 0, 0)], [prev], True, None
        else:
            for entry in entries:
                if entry["class_name"] == "InputLayer":
                    specs[(_entry_name(entry), 0, 0)] = (
                        _spec(_batch_shape(entry), _input_dtype(entry)),
                        None,
                    )
                    input_dtypes[(_entry_name(entry), 0, 0)] = _input_dtype(entry)
                    input_shapes[(_entry_name(entry), 0, 0)] = _batch_shape(entry)
                    input_ranks[(_entry_name(entry), 0, 0)] = _batch_shape(entry)
                    batch_sizes.add((_batch_shape(entry) or [None])[0])
                    if _vague(_batch_shape(entry)):
                        vague.add((_entry_name(entry), 0, 0))
                    continue
                # Keras 2 numbers a nested model's nodes from 1: its node 0 is the call
                # made when it was built on its own Input (`_should_skip_first_node`).
                first = 1 if keras_major < 3 and _has_input_layer(entry) else 0
                for k, node in enumerate(entry.get("inbound_nodes", [])):
                    if entry["class_name"] in TF_OP_CLASSES:
                        refs, is_list, kwargs = [], False, _tf_op_call(node)
                    else:
                        refs, is_list, kwargs = _refs(node, op=is_op(entry), entry=entry)
                    plan.append((_entry_name(entry), first + k, refs, is_list, kwargs))
            norm = lambda r: [tuple(x) for x in (r if isinstance(r[0], list) else [r])]
            input_layers = cfg["input_layers"]
            if isinstance(input_layers, dict):  # Keras 3: keras.Model({"key": Input...}, ...)
                input_keys = tuple(input_layers)
                input_layers = list(input_layers.values())
            inputs = [(n, 0, 0) for n, _, _ in norm(input_layers)]
            outputs, tree = _output_refs(cfg["output_layers"])
            if keras_major >= 3:
                # Keras 3 numbers a nested Functional's calls from 1 in `output_layers` (its
                # node 0 is the build on its own Input), from 0 in the calls' histories.
                functional = {
                    _entry_name(e) for e in entries if e["class_name"] in ("Functional", "Model")
                }
                outputs = [(n, i - 1 if n in functional else i, t) for n, i, t in outputs]
            # Keras 3 writes one output as a bare ref; Keras 2 always writes a list of refs.
            single = isinstance(tree, int) or (keras_major < 3 and len(outputs) == 1)
            if single or tree == list(range(len(outputs))):
                tree = None  # one output, or a flat list of them
        by_name = {_entry_name(e): e for e in entries}
        for name, idx, refs, is_list, kwargs in plan:
            args = [specs.get(r, (None, None)) for r in refs]
            known = all(a[0] is not None for a in args)
            if name not in layers:
                in_shape = None
                if known and refs:
                    shapes = [tuple(a[0].shape[1:]) for a in args]
                    if any(r in vague for r in refs) and _has_conv_lstm(by_name[name]):
                        # Frames of a size the model leaves unknown: a ConvLSTM without
                        # `spatial_shape`, taking each call's frames (as tf.keras 2 does).
                        shapes = [(s[0], *(None for _ in s[1:])) for s in shapes]
                    in_shape = shapes if is_list else shapes[0]
                layers[name] = self._convert(
                    by_name[name], weights, custom_layers, keras_major, in_shape
                )
            _check_call_kwargs(layers[name], by_name[name], kwargs)  # every node of a shared layer
            if not known:
                continue
            outs = _propagate(layers[name], args, is_list, kwargs, specs)
            for t, o in enumerate(outs):
                specs[(name, idx, t)] = o
                if any(r in vague for r in refs):
                    vague.add((name, idx, t))
        fixed = [b for b in batch_sizes if isinstance(b, int)]
        if len(fixed) == 1:
            _give_batch_size(layers.values(), fixed[0])
        self.layers = nnx.Dict(layers)
        # Modules from `custom_layers` stand in for Keras layers (a Lambda, a Layer subclass)
        # that drop the mask unless they compute one or support masking, as Keras.
        self._mask_dropping = tuple(
            name
            for name, m in layers.items()
            if by_name[name]["class_name"] in custom_layers
            and (isinstance(m, ImportedModel) or not hasattr(m, "compute_mask"))
            and not getattr(m, "supports_masking", False)
        )
        # A model holding a `custom_layers` stand-in (here or in a nested model) runs its
        # eager calls op by op: the stand-in's Python runs at every call, as in Keras.
        self._holds_custom = any(
            by_name[name]["class_name"] in custom_layers
            or getattr(getattr(m, "layer", m), "_holds_custom", False)
            for name, m in layers.items()
        )
        # Keras' layer order: an nnx.Dict comes back from a transformation sorted by name.
        self._layer_names = tuple(layers)
        self._plan = tuple((n, i, tuple(r), il, _freeze(kw)) for n, i, r, il, kw in plan)
        self._inputs, self._outputs, self._single_output = tuple(inputs), tuple(outputs), single
        self._input_keys = input_keys  # the keys of a dict of inputs, else None
        self._input_dtypes = tuple(
            None if ref not in input_dtypes else input_dtypes[ref].name for ref in inputs
        )
        self._input_shapes = tuple(
            None if input_shapes.get(ref) is None
            else tuple(None if d is None else int(d) for d in input_shapes[ref])
            for ref in inputs
        )  # fmt: skip
        self._input_ranks = tuple(
            None if input_ranks.get(ref) is None else tuple(input_ranks[ref]) for ref in inputs
        )
        self._output_tree = None if tree is None else _freeze(tree)
        # Each node output's (shape, dtype, whether a Keras mask rides on it), as
        # propagated while building: what the exporter writes for a tensor argument. A
        # size of _UNKNOWN_DIM is written None (it stood for None or is 1; Keras' loader
        # takes the shape from the layer that made the tensor either way).
        self._tensor_specs = tuple(
            (ref, tuple(None if d == _UNKNOWN_DIM else d for d in spec.shape),
             spec.dtype.name, mask is not None)
            for ref, (spec, mask) in specs.items()
            if isinstance(spec, jax.ShapeDtypeStruct)
        )  # fmt: skip

    @staticmethod
    def _convert(entry, weights: _Weights, custom_layers, keras_major, in_shape):
        """The jrnn module of one layer entry, a frozen layer's ``trainable=False`` kept."""
        module = ImportedModel._module(entry, weights, custom_layers, keras_major, in_shape)
        return record_trainable(module, entry.get("config") or {})

    @staticmethod
    def _module(entry, weights: _Weights, custom_layers, keras_major, in_shape):
        cls, name = entry["class_name"], _entry_name(entry)
        if cls in custom_layers:
            return custom_layers[cls](entry["config"], weights.arrays(name))
        if is_op(entry):
            return KerasOp(cls, entry.get("config"), name=name)
        if cls in TF_OP_CLASSES:
            return TFOpLambda(str(entry["config"].get("function")), name=name)
        if cls in _MODEL_CLASSES:
            return ImportedModel(entry, weights.child(name), custom_layers, keras_major)
        if cls == "TimeDistributed" and _wraps_model(entry):
            return _time_distributed_model(entry, weights, custom_layers, keras_major, in_shape)
        if cls not in CONVERTERS:
            detail = f"jrnn cannot convert it exactly; pass custom_layers={{{cls!r}: factory}}"
            if cls == "Lambda":
                detail = (
                    "a Lambda layer holds Python code, which jrnn never executes; "
                    f"pass custom_layers={{{cls!r}: factory}}"
                )
            raise UnsupportedLayerError(
                cls, name, detail=detail + " (factory(config, arrays) -> jrnn module)."
            )
        try:
            return CONVERTERS[cls](entry["config"], weights.arrays(name), in_shape)
        except KerasFileError:
            raise
        except ValueError as err:
            if "64-bit mode" in str(err):  # a float64 model, not an unsupported layer
                raise ValueError(
                    f"layer {name!r} ({cls}) is float64 in the file: {err} (load the model "
                    "after enabling it)"
                ) from err
            raise UnsupportedLayerError(
                cls, name, detail=f"its config could not be converted: {err}"
            ) from err
        except (KeyError, TypeError) as err:
            reason = f"it has no {err} entry" if isinstance(err, KeyError) else str(err)
            raise UnsupportedLayerError(
                cls, name, detail=f"its config could not be converted: {reason}"
            ) from err

    @property
    def model_config(self) -> dict:
        """The Keras model config (``{"class_name", "config"}``) the model was rebuilt from."""
        return _thaw(self._keras_config)

    def reset_states(self) -> None:
        """Reset every stateful recurrent layer to zero states, as tf.keras'
        ``Model.reset_states()`` (Keras 3 resets layer by layer: ``layer.reset_state()``,
        which each jrnn layer has too). Layers not called yet have no states to reset."""
        for _, module in nnx.iter_graph(self):
            if (
                module is not self
                and getattr(module, "stateful", False)
                and getattr(module, "states", None) is not None
            ):
                module.reset_state()

    def get_layer(self, name: str) -> nnx.Module:
        """The jrnn module converted from the Keras layer ``name``."""
        if name not in self.layers:
            raise KeyError(
                f"{self.name}: no layer named {name!r}; layers: {list(self.layers.keys())}"
            )
        return self.layers[name]

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The converted layers' names in the Keras model's order (``layers`` is keyed by
        them; its own order is not kept through ``nnx.jit`` and other transformations)."""
        return self._layer_names

    def keras_weights(self) -> list:
        """Every variable in Keras ``model.get_weights()`` order (layers in config order)."""
        from importers.weights import keras_params

        return [v for name in self._layer_names for v in keras_params(self.layers[name])]

    # Calling -------------------------------------------------------------------------

    def __call__(self, inputs: Any, *, mask: Any = None, training: bool = False) -> Any:
        """The Keras model's outputs; ``mask``: the inputs' Keras masks (one per input, as
        ``inputs``), as Keras' ``Model.call`` takes them."""
        return self.call_with_mask(inputs, mask, training=training)[0]

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The outputs' Keras masks (Keras' ``Functional.compute_mask``)."""
        return self.call_with_mask(inputs, mask)[1]

    def call_with_mask(self, inputs: Any, mask: Any = None, *, training: bool = False):
        """``(outputs, output mask)``; used when this model is nested in another.

        Called outside any JAX transformation, the model runs as one compiled program per
        input shapes and dtypes (:func:`jrnn.rnn.cached_call`), as under ``nnx.jit``,
        unless it holds a layer of a ``custom_layers`` factory, creates variables in the
        call (an activity regularizer's penalty, a stateful layer's first call) or reads
        values in Python (then it runs op by op from that call on)."""
        static = (("training", training),)
        if not self._holds_custom and eager_arguments((inputs, mask), static):
            out = cached_call(
                self, "_call_with_mask", dict(static), check=True, inputs=inputs, mask=mask
            )
            if out is not NOT_CACHED:
                return out
        return self._call_with_mask(inputs, mask, training)

    def _call_with_mask(self, inputs: Any, mask: Any, training: Any):
        """:meth:`call_with_mask`'s work, traced or not."""
        names = [ref[0] for ref in self._inputs]
        if self._input_keys is None and isinstance(inputs, dict) and set(inputs) == set(names):
            inputs = [inputs[n] for n in names]  # by Input layer name, as tf.keras takes them
            if isinstance(mask, dict):
                mask = [mask.get(n) for n in names]
        if self._input_keys is not None and isinstance(inputs, dict):
            # Keras 3's keras.Model({"key": Input, ...}): a dict by those keys (or a list in
            # the config's key order, as input_specs lists them)
            if set(inputs) != set(self._input_keys):
                raise ValueError(
                    f"{self.name}: the Keras model takes a dict of inputs with the keys "
                    f"{list(self._input_keys)}; received {sorted(inputs)}."
                )
            inputs = [inputs[k] for k in self._input_keys]
            if isinstance(mask, dict):
                mask = [mask.get(k) for k in self._input_keys]
        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(xs) != len(self._inputs):
            raise ValueError(
                f"{self.name}: expected {len(self._inputs)} input(s); received {len(xs)}."
            )
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask] * len(xs)
        tensors: dict = {}
        for k, (ref, x, m, dtype) in enumerate(zip(self._inputs, xs, masks, self._input_dtypes)):
            if dtype is not None:  # int64 is int32 without x64, as JAX makes every array
                dtype = jax.dtypes.canonicalize_dtype(dtype)
            x = jnp.asarray(x) if dtype is None else jnp.asarray(x, dtype)
            x = self._adjust_rank(k, x)
            self._check_input_shape(k, x.shape)
            tensors[ref] = (x, m)
        for name, idx, refs, is_list, kwargs in self._plan:
            vals = [tensors[r][0] for r in refs]
            masks = [tensors[r][1] for r in refs]
            extra = {k: _resolve(v, tensors) for k, v in _thaw(kwargs).items()}
            outs = _run(self.layers[name], vals, masks, is_list, extra, training, self.keras_major)
            if name in self._mask_dropping:
                outs = [(value, None) for value, _ in outs]
            for t, o in enumerate(outs):
                tensors[(name, idx, t)] = o
        refs = self._outputs
        if self.model_config["class_name"] == "Sequential" and refs[0][0] != "__input__":
            # Keras' Sequential returns every output of its last layer (y, *states), in the
            # structure the layer returns them (a stack's states nested per cell).
            name, idx, _ = refs[0]
            if getattr(outs, "tree", None) is not None:
                values = [tensors[(name, idx, t)] for t in range(len(outs))]
                return (
                    _listed(jax.tree_util.tree_unflatten(outs.tree, [v for v, _ in values])),
                    _listed(jax.tree_util.tree_unflatten(outs.tree, [m for _, m in values])),
                )
        results = [tensors[r][0] for r in refs]
        out_masks = [tensors[r][1] for r in refs]
        if len(results) == 1 and self._single_output:
            return results[0], out_masks[0]
        if self._output_tree is not None:  # nested outputs, as the Keras model has them
            tree = _thaw(self._output_tree)
            return _nest(tree, results), _nest(tree, out_masks)
        return results, out_masks

    def _which(self, k: int) -> str:
        return f"input {k} ({self._inputs[k][0]!r})" if len(self._inputs) > 1 else "`inputs`"

    def _adjust_rank(self, k: int, x: jax.Array) -> jax.Array:
        """Keras' rule (``Functional._adjust_input_rank``): an input one axis longer than
        the model's Input, that axis of size 1, is squeezed; one axis shorter, where the
        Input's last size is 1, gets that axis (``(batch, time)`` for ``Input((time,
        1))``); any other rank is refused (Keras 3), or left to the layers (tf.keras'
        ``_conform_to_reference_input``: a Dense model takes ``(batch, 8)`` arrays through
        ``Input((None, 8))``)."""
        ref = self._input_ranks[k]
        if ref is None or x.ndim == len(ref):
            return x
        if x.ndim == len(ref) + 1 and x.shape[-1] == 1:
            return jnp.squeeze(x, -1)
        if x.ndim == len(ref) - 1 and ref[-1] == 1:
            return x[..., None]
        if self.keras_major < 3:  # tf.keras leaves other ranks to the layers' checks
            return x
        raise ValueError(
            f"{self.name}: {self._which(k)} must have rank {len(ref)}, as the Keras model's "
            f"Input {shape_str(ref)} (Keras also takes it with a last axis of size 1 added or "
            f"removed); received shape {tuple(x.shape)}."
        )

    def _check_input_shape(self, k: int, shape: tuple) -> None:
        """Keras' input spec: the sizes an Input fixes past the batch axis (``Input((7,
        3))``: 7 steps of 3 features) must be the array's (after :meth:`_adjust_rank`)."""
        fixed = self._input_shapes[k] if k < len(self._input_shapes) else None
        if fixed is None or len(fixed) != len(shape):
            return
        if any(want is not None and want != got for want, got in zip(fixed[1:], shape[1:])):
            raise ValueError(
                f"{self.name}: {self._which(k)} must have shape {fixed} (None: any size), as the "
                f"Keras model's Input; received shape {tuple(shape)}."
            )


def _listed(tree: Any, top: bool = True) -> Any:
    """Tuples as lists, at every level, a nested one-element list as its element: the
    outputs of a Keras Sequential (a stack of one GRU and one LSTM cell returns
    ``[y, h1, [h2, c2]]``)."""
    if isinstance(tree, (list, tuple)):
        if len(tree) == 1 and not top:
            return _listed(tree[0], top=False)
        return [_listed(v, top=False) for v in tree]
    return tree


def _output_refs(node: Any) -> tuple[list[tuple], Any]:
    """Keras' ``output_layers`` (a ref ``[name, node, tensor]``, or lists and dicts of them,
    nested as the model's outputs are) -> (the refs in order, the same structure holding
    each ref's index)."""
    refs: list[tuple] = []

    def walk(n):
        if isinstance(n, dict):
            return {k: walk(v) for k, v in n.items()}
        if isinstance(n, list) and n and isinstance(n[0], str):
            refs.append(tuple(n[:3]))
            return len(refs) - 1
        return [walk(child) for child in n]

    return refs, walk(node)


def _nest(tree: Any, values: list) -> Any:
    if isinstance(tree, dict):
        return {k: _nest(v, values) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_nest(v, values) for v in tree]
    return values[tree]


def _give_batch_size(modules: Any, batch: int) -> None:
    """Stateful recurrent layers take the model's fixed batch size, so that a call of
    another size is refused from the first (Keras: "Expected batch size: ...")."""
    import jrnn

    for module in modules:
        if isinstance(module, jrnn.Bidirectional):
            _give_batch_size([module.forward_layer, module.backward_layer], batch)
        elif isinstance(module, jrnn.TimeDistributed):
            _give_batch_size([module.layer], batch)
        elif isinstance(module, jrnn.RNN) and module.stateful and module.batch_size is None:
            module.batch_size = batch


def _keras2_stateful_start(layer: Any, initial_state: Any) -> Any:
    """Keras 2's rule for a stateful layer given ``initial_state`` (``RNN._process_inputs``):
    its recorded states win once any of them is non-zero, so ``initial_state`` only starts
    the first call after a reset; Keras 3 (and jrnn) always take ``initial_state``. A
    Bidirectional applies it per direction, as its two layers do in Keras 2."""
    import jrnn
    from jrnn.layers.wrappers import _state_count

    if isinstance(layer, jrnn.Bidirectional):
        given = jax.tree_util.tree_leaves(initial_state)
        n = _state_count(layer.forward_layer)
        return _keras2_stateful_start(layer.forward_layer, given[:n]) + _keras2_stateful_start(
            layer.backward_layer, given[n:]
        )
    if not isinstance(layer, jrnn.RNN) or not layer.stateful or layer.states is None:
        return initial_state
    recorded = jax.tree_util.tree_leaves(layer._state_values())
    given = jax.tree_util.tree_leaves(initial_state)
    if len(recorded) != len(given) or any(
        jnp.shape(r) != jnp.shape(g) for r, g in zip(recorded, given)
    ):
        return initial_state  # the layer's own checks name the mismatch
    started = jnp.any(jnp.stack([jnp.any(r != 0) for r in recorded]))
    return [jnp.where(started, r, jnp.asarray(g, r.dtype)) for r, g in zip(recorded, given)]


def _run(layer, vals, masks, is_list, extra, training, keras_major=3):
    """Apply one layer to resolved values and masks; one ``(value, mask)`` per output."""
    import jrnn

    if isinstance(layer, KerasOp):
        extra = dict(extra)
        out = layer(*extra.pop(_OP_ARGS), **extra)
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        return [(o, None) for o in outs]
    if isinstance(layer, (jrnn.RNN, jrnn.Bidirectional)) and is_list and len(vals) > 1:
        # Keras 2 records `rnn(x, initial_state=[h, c])` as one node with inputs [x, h, c].
        extra = {"initial_state": list(vals[1:]), **extra}
        vals, masks, is_list = vals[:1], masks[:1], False
    if keras_major < 3 and extra.get("initial_state") is not None:
        extra = {**extra, "initial_state": _keras2_stateful_start(layer, extra["initial_state"])}
    if not is_list:
        x, mask = vals[0], masks[0]
    elif (
        isinstance(layer, ImportedModel) or hasattr(layer, "compute_mask") or _takes(layer, "mask")
    ):
        x, mask = list(vals), list(masks)
    else:
        x, mask = list(vals), _merge_masks(masks, vals)
    call_mask = mask
    if "mask" in extra:  # the mask Keras 3 recorded for this call wins over the propagated one
        extra = dict(extra)
        mask = call_mask = extra.pop("mask")
    elif keras_major >= 3 and _tensor_arguments(extra):
        # Keras 3's Layer.__call__ fills in `mask` only for a call with one tensor argument:
        # `rnn(x, initial_state=[h])` runs unmasked there (the output mask still follows
        # x's); Keras 2 masks it.
        call_mask = None
    out, out_mask = _apply(
        layer, x, mask, training, extra, call_mask=call_mask, keras_major=keras_major
    )
    # Keras numbers a node's outputs flat: RNN([cells], return_state=True) gives y, then
    # every cell's states in turn (jrnn returns them nested per cell).
    outs = jax.tree_util.tree_leaves(out) if isinstance(out, (list, tuple)) else [out]
    out_masks = list(out_mask) if isinstance(out_mask, (list, tuple)) else [out_mask]
    if len(out_masks) != len(outs):
        out_masks = [out_masks[0]] + [None] * (len(outs) - 1)
    pairs = _Outputs(zip(outs, out_masks))
    pairs.tree = jax.tree_util.tree_structure(out) if isinstance(out, (list, tuple)) else None
    return pairs


class _Outputs(list):
    """A node's ``(value, mask)`` pairs, numbered flat as Keras numbers them, with
    ``tree``: the structure the layer returned them in (None for one array)."""

    tree: Any = None


def _check_call_kwargs(layer, entry: dict, kwargs: dict) -> None:
    """Refuse a recorded call argument (``use_causal_mask=True`` ...) the module does not take,
    rather than drop it and compute something else."""
    import inspect

    import jrnn

    if isinstance(layer, KerasOp):
        extra = dict(kwargs)
        layer.check_call(list(extra.pop(_OP_ARGS, [])), extra)
        return
    if _UNPLACED in kwargs:
        cls = entry["class_name"]
        raise UnsupportedLayerError(
            cls,
            _entry_name(entry),
            detail=f"a call passes it {kwargs[_UNPLACED]} positional argument(s) after its "
            f"inputs, where jrnn knows the {cls} call's parameters "
            f"{list(_CALL_POSITIONALS.get(cls, ()))} only; refusing to drop them",
        )
    if isinstance(layer, ImportedModel):
        return
    fn = layer.__call__
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    implicit = (
        {"mask", "initial_state"} if isinstance(layer, (jrnn.RNN, jrnn.Bidirectional)) else {"mask"}
    )
    for key, value in kwargs.items():
        if key not in params and key not in implicit:
            raise UnsupportedLayerError(
                entry["class_name"],
                _entry_name(entry),
                detail=f"its Keras call passes {key}={value!r}, which jrnn's "
                f"{type(layer).__name__} does not take",
            )


def _propagate(layer, args, is_list, kwargs, specs):
    """Output specs of one node from input specs (shape inference while building)."""
    vals = [a[0] for a in args]
    masks = [a[1] for a in args]
    extra = {k: _resolve(v, specs, strict=False) for k, v in kwargs.items()}
    leaves, tree = jax.tree_util.tree_flatten(extra)
    if any(v is _UNKNOWN for v in leaves):
        return []
    # Only array specs are traced; constants (slices, axes, Python scalars) stay static.
    dynamic = [isinstance(v, jax.ShapeDtypeStruct) for v in leaves]

    def run(layer, vals, masks, arrays):
        it = iter(arrays)
        full = [next(it) if d else v for v, d in zip(leaves, dynamic)]
        pairs = _run(layer, vals, masks, is_list, jax.tree_util.tree_unflatten(tree, full), False)
        return list(pairs)  # a plain list: a pytree eval_shape can trace

    try:
        return nnx.eval_shape(run, layer, vals, masks, [v for v, d in zip(leaves, dynamic) if d])
    except Exception:  # shape inference is best effort; the real call checks
        return []


# Layers whose Keras 2 rules differ from Keras 3's (masks; BatchNormalization's fused moving
# variance; UpSampling2D's float32 outputs): jrnn's `keras2=True` keeps them.
_KERAS2_MARKED = (
    "TimeDistributed",
    "Softmax",
    "Identity",
    *MERGE_CLASSES,
    "BatchNormalization",
    "UpSampling2D",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
)


def _keras2_semantics(obj: Any) -> Any:
    """Keras 1/2 ``hard_sigmoid`` is ``clip(0.2x + 0.5)``: jrnn's ``keras2_hard_sigmoid``;
    Keras 2's ``TimeDistributed`` is jrnn's ``keras2=True`` (one call over the reshaped
    timesteps, the inner layer's output mask), and so are its merges (the AND of the input
    masks; no merge reads them), BatchNormalization (the fused kernel's unbiased moving
    variance on 4-D/5-D inputs), the ConvLSTMs (whose ConvRNN base ignores
    ``zero_output_for_mask``: a masked step repeats the previous output) and UpSampling2D
    (whose interpolations, but nearest, return tf.image.resize's float32)."""
    if isinstance(obj, dict):
        out = {
            k: ("keras2_hard_sigmoid" if v == "hard_sigmoid" else _keras2_semantics(v))
            for k, v in obj.items()
        }
        if out.get("class_name") in _KERAS2_MARKED and isinstance(out.get("config"), dict):
            out["config"] = {**out["config"], "keras2": True}
        return out
    if isinstance(obj, list):
        return [_keras2_semantics(v) for v in obj]
    return obj


def _merge_masks(masks, vals):
    if all(m is None for m in masks):
        return None
    full = [m if m is not None else jnp.ones(v.shape[:2], bool) for m, v in zip(masks, vals)]
    out = full[0]
    for m in full[1:]:
        out = out & m
    return out


_SAME = object()  # `_apply`'s call_mask default: the mask itself


def _tensor_arguments(extra: dict) -> bool:
    """Whether a recorded call passes tensors besides its inputs (``initial_state=``, ...)."""
    return any(
        hasattr(leaf, "shape")
        for key, value in extra.items()
        if key not in ("mask", "training")
        for leaf in jax.tree_util.tree_leaves(value)
    )


def _apply(layer, x, mask, training, extra=None, *, call_mask=_SAME, keras_major=3):
    """Call one converted layer and return ``(outputs, output mask)``.

    The contract for converted modules: ``__call__(x)``, with ``training=`` and ``mask=``
    when its signature names them, as Keras passes them (for list inputs the mask is the
    list of input masks). The output mask is
    ``layer.compute_mask(x, mask)`` when the module defines it (Keras 3.15's rule for that
    class; a module with ``call_with_mask(x, mask=, ...) -> (y, output mask)`` gives both
    from one call), otherwise the input mask passes through unchanged (a ``custom_layers`` module
    without ``compute_mask`` drops it instead, unless ``supports_masking`` is True).
    Recurrent layers keep the mask only when they return sequences (as Keras); ``extra``
    holds tensor keyword arguments of the Keras call (``initial_state``). ``call_mask``,
    when given, is the mask the recurrent layer's call receives (Keras 3 gives none to a
    call with several tensor arguments) while its output mask still follows ``mask``.
    Floating inputs are cast to the layer's compute dtype, as Keras autocasts them, except
    for a Keras 3 layer that opts out (``autocast = False``: LayerNormalization takes a
    float32 input in float32 under a mixed policy, tf.keras' casts it).
    """
    import jrnn

    extra = extra or {}
    if call_mask is _SAME:
        call_mask = mask
    if isinstance(layer, ImportedModel):
        return layer.call_with_mask(x, mask, training=training)
    if isinstance(layer, (jrnn.RNN, jrnn.Bidirectional)):
        y = layer(x, mask=call_mask, training=training, **extra)
        out_mask = mask if layer.return_sequences else None
        # Keras' Bidirectional.compute_mask: merge_mode=None gives (y, y_rev) both the mask.
        outputs = 2 if isinstance(layer, jrnn.Bidirectional) and layer.merge_mode is None else 1
        if isinstance(y, (list, tuple)):
            return y, [out_mask] * outputs + [None] * (len(y) - outputs)
        return y, out_mask
    kwargs = {"training": training, **extra} if _takes(layer, "training") else dict(extra)
    if _takes(layer, "mask"):
        kwargs["mask"] = mask
    compute = getattr(layer, "compute_dtype", None)  # Keras' autocast to the layer's policy
    if compute is not None and (keras_major < 3 or getattr(layer, "autocast", True)):
        x = _cast_floats(x, compute)
    if hasattr(layer, "call_with_mask"):  # the output mask from the same call
        y, out_mask = layer.call_with_mask(x, **kwargs)
    else:
        y = layer(x, **kwargs)
        out_mask = layer.compute_mask(x, mask) if hasattr(layer, "compute_mask") else mask
    if compute is not None and not getattr(layer, "keeps_output_dtype", False):
        y = _cast_floats(y, compute)
    return y, out_mask


def _cast_floats(tree, dtype):
    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a,
        tree,
    )


def _takes(layer, argument: str) -> bool:
    """Whether ``layer.__call__`` names ``argument`` (Keras passes ``mask`` and ``training``
    only to calls that name them)."""
    import inspect

    try:
        return argument in inspect.signature(layer.__call__).parameters
    except (TypeError, ValueError):
        return False


# -- entry point ------------------------------------------------------------------------------


def load(source: Any, *, custom_layers: dict | None = None) -> ImportedModel:
    """Rebuild a Keras model in jrnn, without TensorFlow for files.

    Args:
      source: a live ``keras.Model`` (Keras 3 or tf_keras), a path to a ``.keras`` archive
        or a legacy full-model ``.h5``/``.hdf5`` (Keras 1, Keras 2, tf.keras, Keras 3's
        legacy writer), or a jrnn checkpoint directory written by
        :func:`importers.checkpoint.save_checkpoint`.
      custom_layers: ``{"KerasClassName": factory}``; ``factory(config, arrays)`` returns
        the jrnn module for a layer class jrnn does not convert (``Lambda``, custom
        classes), ``arrays`` being the layer's weights in ``get_weights()`` order.

    Returns:
      An :class:`ImportedModel`: ``model(x)`` / ``model([x1, x2], training=...)`` as the
      Keras model, ``model.layers[keras_name]`` the converted layers.

    Raises:
      UnsupportedLayerError: a layer class or config jrnn cannot convert exactly.
      KerasFileError: (and its subclasses) the file is corrupt, unsafe, or weights-only.
      FileNotFoundError: no such path.

    Example:
      >>> import importers  # doctest: +SKIP
      >>> model = importers.load("model.keras")  # doctest: +SKIP
      >>> y = model(x)  # doctest: +SKIP
    """
    custom_layers = custom_layers or {}
    if hasattr(source, "get_config") and hasattr(source, "get_layer"):
        config = {"class_name": type(source).__name__, "config": source.get_config()}
        if config["class_name"] not in ("Sequential",) and "input_layers" in config["config"]:
            config["class_name"] = "Functional"
        major = 2 if type(source).__module__.startswith(("tf_keras", "keras.src.engine")) else 3
        token = SOURCE.set(f"the live Keras model {getattr(source, 'name', '')!r}")
        try:
            return ImportedModel(config, _from_live(source), custom_layers, major)
        finally:
            SOURCE.reset(token)
    path = os.fspath(source)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, "jrnn_checkpoint.json")):
        from importers.checkpoint import load_checkpoint

        return load_checkpoint(path, custom_layers=custom_layers)
    from importers._files import read_keras_file

    kf = read_keras_file(path)
    if kf.model_config is None:
        raise KerasFileError(
            f"{path}: a weights-only file ({kf.format}) has no model config to rebuild; build "
            "the jrnn layers and use importers.load_weights(target, path), or load the "
            "model's .keras/.h5 file.",
            path=path,
        )
    major = _major(kf.keras_version)
    config = kf.model_config
    _no_top_level_weights(kf)
    asked: set[str] = set()
    nested: list = []
    base = _from_layer_weights(kf.layer_weights, nested)
    weights = _Weights(
        lambda n: asked.add(n) or base.arrays(n),
        lambda n: asked.add(n) or base.child(n),
        lambda n, m: asked.add(n) or base.wrapped(n, m),
    )
    if major == 1:
        config = legacy.keras1_model_config(config)
    config = _with_layer_dict(config)
    if major == 1 or kf.backend == "theano":
        weights = _converting(weights, config, kf.keras_version, kf.backend)
    token = SOURCE.set(path)
    try:
        model = ImportedModel(config, weights, custom_layers, major)
    finally:
        SOURCE.reset(token)
    unused = [n for n, lw in kf.layer_weights.items() if lw.arrays and n not in asked]
    for group, names, claimed in nested:
        unused += [f"{group}/{w}" for k, w in enumerate(names) if k not in claimed]
    if unused:
        raise ExtraWeightsError(
            f"{path}: the file holds weights of layers {unused[:10]} that the model config "
            "does not have (a nested model's by their weight names); refusing to drop them "
            "(Keras refuses such a file too: 'Layer count mismatch'). The file is damaged or "
            "its config was edited.",
            path=path,
            where=unused[0],
        )
    return model


def _no_top_level_weights(kf: Any) -> None:
    """Keras refuses a file whose model holds variables of its own outside every layer
    (Keras 3: "expected 0 variables"; tf.keras: "Weight count mismatch for top-level
    weights"), as jrnn models have none."""
    top = kf.top_level_weights
    if top is not None and top.arrays:
        raise ExtraWeightsError(
            f"{kf.path}: the file holds {len(top.arrays)} weights of the model itself, outside "
            f"every layer ({top.weight_names[:5]}); no Keras layer of the config owns them, "
            "and Keras refuses such a file too. Refusing to drop them.",
            path=kf.path,
            where=top.path or "/",
        )


def _with_layer_dict(config: dict) -> dict:
    """A Sequential config whose ``config`` is a bare list of layer entries (Keras 1, and
    multi-backend Keras up to 2.1.6) in the ``{"name", "layers"}`` form of Keras 2.2+."""
    if isinstance(config, dict) and isinstance(config.get("config"), list):
        return {**config, "config": {"name": "sequential", "layers": config["config"]}}
    return config


def _converting(base: _Weights, config: dict, version: str | None, backend: str | None):
    """Keras 1 / Theano arrays converted as Keras 2 converts them (:mod:`importers.legacy`)."""
    cfg = _with_layer_dict(config).get("config", config)
    entries = {_entry_name(e): e for e in cfg.get("layers", [])} if isinstance(cfg, dict) else {}

    def arrays(name: str) -> list:
        entry = entries.get(name)
        raw = base.arrays(name)
        return legacy.convert_weights(entry, raw, version, backend) if entry else raw

    def child(name: str) -> _Weights:
        return _converting(base.child(name), entries.get(name, {}), version, backend)

    def wrapped(name: str, model: str) -> _Weights:
        entry = entries.get(name, {}).get("config", {}).get("layer", {})
        return _converting(base.wrapped(name, model), entry, version, backend)

    return _Weights(arrays, child, wrapped)


def _major(version: str | None) -> int:
    if not version:
        return 3
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 3
