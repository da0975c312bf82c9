"""Write a jrnn model back to Keras 3: a ``.keras`` archive or a ``.weights.h5`` file.

:func:`save_keras` writes what ``keras.saving.load_model`` reads (no custom objects);
:func:`save_weights` writes what ``keras_model.load_weights`` reads. The weights are the
model's *current* jrnn values (:func:`importers.keras_params`), so a model imported with
:func:`importers.load`, fine-tuned in JAX and saved here goes back to Keras. So is each
layer's ``trainable``: the module's current ``trainable`` (a layer frozen or unfrozen
after import), a layer inside a frozen one written frozen, as Keras' setter freezes it.
A frozen layer's variables keep their place in the file: Keras 3 stores each layer's
variables in creation order (its trainable-at-creation list, then the others), whatever
``trainable`` is. Only h5py, json and zipfile are used: Keras is not imported.

Files written (as Keras 3.15 ``saving_lib`` writes them; see :mod:`importers._files`):

``.keras`` — a zip archive (members stored, not deflated) with, in this order:
    ``metadata.json`` ``{"keras_version": "3.15.1", "date_saved": "YYYY-mm-dd@HH:MM:SS",
    "saved_by": "jrnn <version>"}``; ``config.json`` the model's serialised config
    ``{"module", "class_name", "config", "registered_name", "build_config"}`` (no
    ``compile_config``: jrnn holds no Keras optimizer state, compile the loaded model
    again); ``model.weights.h5`` the weights tree below.

``.weights.h5`` — the weights tree alone. Every saved object is a group with a ``vars``
    group holding its variables as datasets ``0, 1, ...`` (``get_weights()`` order) and
    the attribute ``name`` (the object's Keras name); sub-objects are groups named after
    the attribute that holds them, lists are groups whose members are named by
    snake-case class name with ``_1, _2, ...`` per class:

    * root: ``vars`` (name = model name, empty) and ``layers/<snake>[_N]`` per layer of
      ``model.layers`` (Functional models list their ``InputLayer``s, which save empty
      ``vars``; Sequential models do not);
    * ``LSTM``/``GRU``/``SimpleRNN``/``ConvLSTM{1,2,3}D``: empty ``vars``, then
      ``cell/vars/0,1,2`` = kernel, recurrent_kernel, bias (cell names ``lstm_cell``,
      ``gru_cell``, ``simple_rnn_cell``, ``conv_lstm_cell``);
    * ``RNN(cell)``: ``cell/vars``; ``RNN([cells])``: ``cell/vars`` (name
      ``stacked_rnn_cells``, empty) and ``cell/cells/<snake>[_N]/vars``;
    * ``Bidirectional``: ``forward_layer/...`` and ``backward_layer/...`` (names
      ``forward_<layer>``, ``backward_<layer>``); ``TimeDistributed``: ``layer/...``;
    * nested models: their own ``vars`` and ``layers/...``;
    * any other layer: its variables in its own ``vars``.

Models imported from Keras 1/2 or tf_keras (``model.keras_major < 3``) have their config
converted to Keras 3's where the conversion is exact (``batch_input_shape`` to an
``InputLayer``'s ``batch_shape``, ``time_major=False``/``input_length`` dropped, GRU's
Keras 2 default ``reset_after=False`` written out, ``Model`` to ``Functional``, pooling
aliases to their class names, ``Policy`` dtypes to ``DTypePolicy``, a recurrent call's
``initial_state`` inputs to Keras 3's ``initial_state`` argument, the backward twin of a
``Bidirectional`` over a ``go_backwards=True`` layer written out); what Keras 3 cannot
represent raises :class:`~importers.errors.UnsupportedLayerError` naming the layer and
the reason (Keras 2's ``hard_sigmoid``, ``time_major=True``, IndRNN layers, classes Keras 3
does not have, a masked recurrent call with ``initial_state``, which Keras 3 runs
unmasked, a tf.keras ``Multiply``/``Maximum``/``Minimum`` in a masked model, which Keras 3
would mask, a tf.keras ``Softmax`` called with a mask or in a masked model, whose fully
masked rows Keras 3 zeros, a tf.keras ``Identity`` in a masked model, which drops the mask
Keras 3's passes on, a tf.keras ``UpSampling2D`` with ``gaussian`` or ``mitchellcubic``
interpolation, which Keras 3 refuses). tf.keras' ``LeakyReLU(alpha)`` is written as
``negative_slope``.
tf.keras' other merges are written as they are: their values are Keras 3's, and their
output mask, tf.keras' AND of the input masks, is Keras 3's OR wherever the
merged inputs carry the same mask (branches of one ``Embedding``), not where they differ.
``CuDNNLSTM``/``CuDNNGRU`` layers are written as the Keras 3 ``LSTM`` /
``GRU(reset_after=True)`` they equal, with Keras 2's own weight conversion
(``keras_equivalent_weights``): Keras 3 loads them with the same outputs.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import zipfile
from typing import Any

import h5py
import numpy as np

from importers._convert_core import MERGE_CLASSES, POOL_ALIASES
from importers._files import _snake_case_keras3, is_op
from importers._write import atomic_write
from importers.convert import IN_WRAPPER_POLICY, WEIGHTLESS_IN_WRAPPER, wider_float
from importers.errors import UnsupportedLayerError

__all__ = ["keras_config", "save_keras", "save_weights"]

KERAS_VERSION = "3.15.1"  # the Keras release whose file layout is written

_MODELS = ("Sequential", "Functional", "Model")
_RNN_CELL_NAMES = {
    "LSTM": "lstm_cell",
    "GRU": "gru_cell",
    "SimpleRNN": "simple_rnn_cell",
    "ConvLSTM1D": "conv_lstm_cell",
    "ConvLSTM2D": "conv_lstm_cell",
    "ConvLSTM3D": "conv_lstm_cell",
}
# Keras 3 built-in layer classes the exporter writes (with a jrnn converter). Layers
# without sub-objects keep every variable in their own `vars`.
_KERAS3_LAYERS = frozenset(
    {
        *_RNN_CELL_NAMES,
        "RNN",
        "Bidirectional",
        "TimeDistributed",
        "InputLayer",
        "Dense",
        "Embedding",
        "Masking",
        "Activation",
        "Dropout",
        "SpatialDropout1D",
        "GaussianNoise",
        "GaussianDropout",
        *MERGE_CLASSES,
        "Flatten",
        "Reshape",
        "Permute",
        "RepeatVector",
        *(
            f"{kind}{rank}D"
            for kind in ("ZeroPadding", "Cropping", "UpSampling")
            for rank in (1, 2, 3)
        ),
        "LeakyReLU",
        "ReLU",
        "ELU",
        "Softmax",
        "PReLU",
        "Identity",
        "ActivityRegularization",
        "Conv1D",
        "Conv2D",
        "Conv3D",
        *POOL_ALIASES.values(),
        "BatchNormalization",
        "LayerNormalization",
        "Attention",
        "AdditiveAttention",
    }
)
_CELLS = frozenset({"LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells"})
_ALIASES = POOL_ALIASES
_KERAS2_HARD_SIGMOID = ("keras2_hard_sigmoid", "hard_sigmoid")


# -- public API ----------------------------------------------------------------------------


def keras_config(model: Any) -> dict:
    """The Keras 3 ``config.json`` dict :func:`save_keras` writes for ``model``.

    Args:
        model: an :class:`importers.ImportedModel`.

    Returns:
        ``{"module", "class_name", "config", "registered_name", "build_config"}`` as Keras
        3's ``serialize_keras_object(model)``, without ``compile_config``.

    Raises:
        UnsupportedLayerError: a layer Keras 3 cannot represent exactly (see module doc).
    """
    _check_model(model)
    config = model.model_config
    if model.keras_major < 3:
        config = _Keras2(config).model(config, model)
    else:
        _check_keras3(config)
    return _top_level(_with_trainable(config, model))


def save_keras(model: Any, path: str | os.PathLike) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` archive that ``keras.saving.load_model`` reads.

    Args:
        model: an :class:`importers.ImportedModel`; its current parameter values are saved.
        path: the archive to write; must end in ``.keras`` (Keras refuses other names).
            An existing file is replaced atomically.

    Raises:
        ValueError: ``path`` does not end in ``.keras``.
        UnsupportedLayerError: a layer Keras 3 cannot represent exactly (see module doc).

    Example:
        >>> import os, tempfile, zipfile, numpy as np
        >>> from importers.model import ImportedModel
        >>> config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        ...     {"class_name": "InputLayer", "config": {"batch_shape": [None, 5, 3], "name": "x"}},
        ...     {"class_name": "GRU", "config": {"name": "gru", "units": 4, "reset_after": True}}]}}
        >>> arrays = [np.full((3, 12), 0.1, "f4"), np.zeros((4, 12), "f4"), np.zeros((2, 12), "f4")]
        >>> model = ImportedModel(config, lambda layer_name: arrays)  # or importers.load(...)
        >>> path = os.path.join(tempfile.mkdtemp(), "tuned.keras")
        >>> save_keras(model, path)  # then keras.saving.load_model(path)
        >>> zipfile.ZipFile(path).namelist()
        ['metadata.json', 'config.json', 'model.weights.h5']
    """
    path = os.fspath(path)
    if not path.endswith(".keras"):
        raise ValueError(
            f"save_keras: the path must end in '.keras' (Keras' load_model requires it); "
            f"received {path!r}."
        )
    import jrnn

    config = keras_config(model)
    metadata = {
        "keras_version": KERAS_VERSION,
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
        "saved_by": f"jrnn {jrnn.__version__}",
    }
    weights = _weights_bytes(config, model)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("metadata.json", json.dumps(metadata))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", weights)
    atomic_write(path, buffer.getvalue())


def save_weights(model: Any, path: str | os.PathLike) -> None:
    """Write ``model``'s current weights as a Keras 3 ``.weights.h5`` file.

    ``keras_model.load_weights(path)`` loads it into the Keras model the jrnn model was
    imported from (or any Keras 3 model with the same layers).

    Args:
        model: an :class:`importers.ImportedModel`.
        path: the file to write; must end in ``.weights.h5`` (Keras' ``load_weights``
            requires it). An existing file is replaced atomically.

    Raises:
        ValueError: ``path`` does not end in ``.weights.h5``.
        UnsupportedLayerError: a layer Keras 3 cannot represent exactly (see module doc).
    """
    path = os.fspath(path)
    if not path.endswith(".weights.h5"):
        raise ValueError(
            "save_weights: the path must end in '.weights.h5' (Keras' load_weights requires "
            f"it); received {path!r}."
        )
    atomic_write(path, _weights_bytes(keras_config(model), model))


# -- config --------------------------------------------------------------------------------


def _check_model(model: Any) -> None:
    from importers.model import ImportedModel

    if not isinstance(model, ImportedModel):
        raise TypeError(
            "expected an importers.ImportedModel (from importers.load or "
            f"importers.checkpoint.load_checkpoint); received {type(model).__name__}."
        )


def _name(entry: dict) -> str:
    return str(entry.get("name") or entry.get("config", {}).get("name"))


def _top_level(config: dict) -> dict:
    cls = config["class_name"]
    out = dict(config)
    out.pop("compile_config", None)
    if cls == "Functional":
        out.setdefault("module", "keras.src.models.functional")
        out.setdefault("registered_name", "Functional")
        out.setdefault("build_config", {"input_shape": None})
    else:
        out.setdefault("module", "keras")
        out.setdefault("registered_name", None)
        shape = _sequential_input_shape(out["config"])
        if shape is not None:
            out.setdefault("build_config", {"input_shape": shape})
    head = ("module", "class_name", "config", "registered_name")
    return {k: out[k] for k in head} | {k: v for k, v in out.items() if k not in head}


def _with_trainable(entry: dict, module: Any, frozen: bool = False) -> dict:
    """``entry`` with each layer's (and cell's) ``trainable`` as the jrnn module holds it
    now (``module.trainable``, which training reads and may have been set after import),
    not as the file it came from recorded it; a layer inside a frozen one is written
    frozen, as Keras' ``layer.trainable = False`` freezes its sub-layers (Keras' loader
    builds a wrapper's layers from their own configs, so their entries must say it).
    Entries without a module (InputLayers, ops) are left as they are."""
    if module is None or not isinstance(entry, dict) or "class_name" not in entry:
        return entry
    cls, cfg = entry["class_name"], dict(entry.get("config") or {})
    name = str(cfg.get("name") or cls)
    value = not frozen and getattr(module, "trainable", True) is not False
    if "trainable" in cfg or not value:
        cfg["trainable"] = value
    inner_frozen = not value
    if cls in _MODELS:
        layers = getattr(module, "layers", {})
        cfg["layers"] = [
            _with_trainable(sub, layers.get(_name(sub)), inner_frozen)
            for sub in cfg.get("layers") or []
        ]
    elif cls == "Bidirectional":
        fwd, bwd = module.forward_layer, module.backward_layer
        cfg["layer"] = _with_trainable(cfg["layer"], fwd, inner_frozen)
        if isinstance(cfg.get("backward_layer"), dict):
            cfg["backward_layer"] = _with_trainable(cfg["backward_layer"], bwd, inner_frozen)
        elif getattr(fwd, "trainable", True) is not getattr(bwd, "trainable", True):
            raise UnsupportedLayerError(
                cls,
                name,
                detail="one of its directions is frozen (trainable=False) and the other not; "
                "Keras 3 builds both from the one `layer` config, so they cannot differ",
            )
    elif cls == "TimeDistributed":
        cfg["layer"] = _with_trainable(cfg["layer"], module.layer, inner_frozen)
    elif cls == "RNN" and "cell" in cfg:
        cell = cfg["cell"]
        stacked = isinstance(cell, list) or (
            isinstance(cell, dict) and cell.get("class_name") == "StackedRNNCells"
        )
        if stacked:
            cells = module.cell.cells
            if isinstance(cell, list):
                cfg["cell"] = [_with_trainable(c, m, inner_frozen) for c, m in zip(cell, cells)]
            else:
                sub = dict(cell["config"])
                sub["cells"] = [
                    _with_trainable(c, m, inner_frozen) for c, m in zip(sub["cells"], cells)
                ]
                cfg["cell"] = _with_trainable({**cell, "config": sub}, module.cell, inner_frozen)
        else:
            cfg["cell"] = _with_trainable(cell, module.cell, inner_frozen)
    return {**entry, "config": cfg}


def _sequential_input_shape(cfg: dict) -> list | None:
    layers = cfg.get("layers") or []
    if layers and layers[0].get("class_name") == "InputLayer":
        return layers[0]["config"].get("batch_shape")
    return cfg.get("build_input_shape")


def _walk_entries(entry: dict):
    """Every layer/cell entry inside ``entry`` (itself included), depth first."""
    yield entry
    cfg = entry.get("config")
    if not isinstance(cfg, dict):
        return
    for key in ("layer", "backward_layer", "cell"):
        sub = cfg.get(key)
        if isinstance(sub, dict) and "class_name" in sub:
            yield from _walk_entries(sub)
        elif isinstance(sub, list):
            for s in sub:
                yield from _walk_entries(s)
    for key in ("layers", "cells"):
        for sub in cfg.get(key) or []:
            if isinstance(sub, dict):
                yield from _walk_entries(sub)


def _check_keras3(config: dict) -> None:
    for entry in _walk_entries(config):
        cls = entry.get("class_name")
        if cls in _MODELS or cls in _KERAS3_LAYERS or cls in _CELLS or is_op(entry):
            continue
        raise UnsupportedLayerError(
            cls,
            _name(entry),
            detail="Keras 3 has no built-in class of that name (a custom layer or one jrnn "
            "converts from Keras 2), so keras.saving.load_model could not rebuild it "
            "without custom objects; the exporter writes Keras 3 built-in layers only.",
        )


class _Keras2:
    """Converts a Keras 1/2 (tf_keras) model config into the Keras 3 config it equals."""

    def __init__(self, config: dict):
        self.root = _name(config)
        self.masked = _makes_masks(config)

    def model(self, entry: dict, module: Any) -> dict:
        cls = entry["class_name"]
        cfg = dict(entry["config"])
        out = {k: v for k, v in entry.items() if k != "config"}
        if cls == "Model":
            cls = "Functional"
        out["class_name"] = cls
        layers = [self.layer(e, module) for e in cfg.get("layers") or []]
        if cls != "Sequential":
            self._renumber(cfg, layers)
        if cls == "Sequential":
            first = (cfg.get("layers") or [{}])[0]
            shape = first.get("config", {}).get("batch_input_shape") or cfg.get("build_input_shape")
            if (not layers or layers[0]["class_name"] != "InputLayer") and shape is not None:
                dtype = first.get("config", {}).get("dtype", "float32")
                if not isinstance(dtype, str):
                    dtype = "float32"
                layers.insert(0, _input_layer(f"{_name(first)}_input", shape, dtype))
        cfg["layers"] = layers
        if cls == "Functional" and "module" in out:
            out["module"] = "keras.src.models.functional"
        out["config"] = cfg
        return out

    def _renumber(self, cfg: dict, layers: list) -> None:
        """Rewrite a functional graph's references in place for Keras 3: a nested model's
        calls numbered from 0 (Keras 2 numbers them from 1, its node 0 being the build on
        its own Input), and a ``Concatenate`` named as Keras 3 names the operations that
        compute its mask renamed (``<name>_merge``): where masks flow, Keras 3 creates
        those operations while loading, and two nodes of one name refuse to load."""
        from importers.model import _has_input_layer

        nested = {_name(e) for e in cfg.get("layers") or [] if _has_input_layer(e)}
        # ... but in `output_layers` Keras 3 numbers a nested Functional's calls from 1 too
        sequential = {_name(e) for e in layers if e["class_name"] == "Sequential"} & nested
        taken = {_name(e) for e in layers}
        renamed = {}
        if self.masked:
            for layer in layers:
                name = _name(layer)
                if layer["class_name"] == "Concatenate" and _MASK_OP_NAME.fullmatch(name):
                    new = f"{name}_merge"
                    while new in taken:
                        new += "_"
                    renamed[name] = new
                    taken.add(new)
                    layer["config"] = {**layer["config"], "name": new}
                    if "name" in layer:
                        layer["name"] = new

        def call_ref(name: str, node: int) -> tuple[str, int]:
            return renamed.get(name, name), node - 1 if name in nested else node

        def output_ref(name: str, node: int) -> tuple[str, int]:
            return renamed.get(name, name), node - 1 if name in sequential else node

        for layer in layers:
            if "inbound_nodes" in layer:
                layer["inbound_nodes"] = _map_refs(layer["inbound_nodes"], call_ref)
        for key, fn in (("input_layers", call_ref), ("output_layers", output_ref)):
            if key in cfg:
                cfg[key] = _map_refs(cfg[key], fn)

    def layer(self, entry: dict, model: Any = None) -> dict:
        """``entry`` as Keras 3 writes it; ``model``: the ImportedModel whose graph holds
        it (its tensor specs), None for nested layers and cells."""
        cls = _ALIASES.get(entry["class_name"], entry["class_name"])
        name = _name(entry)
        if cls in _MODELS:
            return self.model(entry, model.layers[name] if model is not None else None)
        if cls in _CUDNN_AS:
            entry = _cudnn_as_keras3(entry)
            cls = entry["class_name"]
        if cls not in _KERAS3_LAYERS and cls not in _CELLS:
            reason = {
                "IndRNN": "IndRNN is a Keras 2 custom layer (titu1994/Keras-IndRNN)",
            }.get(cls, "Keras 3 has no built-in class of that name")
            raise UnsupportedLayerError(
                cls,
                name,
                detail=f"{reason}, so it cannot be written to a Keras 3 file exactly.",
            )
        built = model.layers.get(name) if model is not None else None
        if built is not None and _frames_of_any_size(built):
            raise UnsupportedLayerError(
                cls,
                name,
                detail="its ConvLSTM takes frames of any size (the model leaves them None); "
                "Keras 3's ConvLSTM needs static frame sizes and refuses such a model at "
                "build, so the file could not be loaded. Give the Keras model fixed frame "
                "sizes in its Input.",
            )
        cfg = dict(entry["config"])
        for key, value in cfg.items():
            if key in ("activation", "recurrent_activation") and value in _KERAS2_HARD_SIGMOID:
                raise UnsupportedLayerError(
                    cls,
                    name,
                    detail=f"{key}='hard_sigmoid' is Keras 2's clip(0.2x + 0.5, 0, 1); Keras "
                    "3's hard_sigmoid is relu6(x + 3) / 6, a different function, and Keras 3 "
                    "has no built-in activation equal to Keras 2's, so the layer cannot be "
                    "written to a Keras 3 file exactly.",
                )
        if cfg.get("time_major", False):
            raise UnsupportedLayerError(
                cls, name, detail="time_major=True has no Keras 3 equivalent."
            )
        for key in ("time_major", "input_length", "input_shape"):
            cfg.pop(key, None)
        if cfg.pop("keras2", None) and self.masked and cls in _MASK_READING_MERGES:
            raise UnsupportedLayerError(
                cls,
                name,
                detail="tf.keras' merge ignores its inputs' masks where Keras 3's reads them "
                "(masked steps count as 1 in Multiply and do not compete in Maximum/Minimum), "
                "so in a masked model the Keras 3 layer would compute other values",
            )
        if cls == "TimeDistributed":
            reason = keras2_mask_difference(cfg.get("layer"), self.masked)
            if reason:
                raise UnsupportedLayerError(cls, name, detail=reason)
            wrapped = cfg.get("layer") or {}
            if wrapped.get("class_name") in IN_WRAPPER_POLICY:
                policy, reason = _keras3_wrapper_policy(
                    cfg.get("dtype"),
                    (wrapped.get("config") or {}).get("dtype"),
                    weightless=wrapped.get("class_name") in WEIGHTLESS_IN_WRAPPER,
                )
                if reason:
                    raise UnsupportedLayerError(cls, name, detail=reason)
                cfg["dtype"] = policy
        reason = _keras2_activation_layer(cls, cfg, entry, self.masked)
        if reason:
            raise UnsupportedLayerError(cls, name, detail=reason)
        if cls.startswith("SpatialDropout"):  # Keras 3's takes rate, seed, name, dtype only
            cfg = {k: v for k, v in cfg.items() if k in ("rate", "seed", "name", "dtype")}
        if cls != "Embedding":
            cfg.pop("input_dim", None)  # Keras 2's input-shape shorthand
        if cls == "InputLayer":
            if "batch_input_shape" in cfg:
                cfg["batch_shape"] = cfg.pop("batch_input_shape")
        else:
            cfg.pop("batch_input_shape", None)
        if cls in ("GRU", "GRUCell"):
            cfg.setdefault("reset_after", False)
        if isinstance(cfg.get("dtype"), dict):
            cfg["dtype"] = _policy(cfg["dtype"])
        wraps_model = cls == "TimeDistributed" and cfg["layer"].get("class_name") in _MODELS
        for key in ("layer", "backward_layer"):
            if isinstance(cfg.get(key), dict):
                cfg[key] = (
                    self.model(cfg[key], getattr(built, "layer", None))
                    if wraps_model
                    else self.layer(cfg[key])
                )
        if wraps_model:
            # Keras 2 lists a model's one input and one output ([[name, node, tensor]]);
            # Keras 3's TimeDistributed stacks what the model returns, so a list of one
            # must be the bare tensor, as Keras 3 writes a one-output model.
            inner = cfg["layer"]["config"]
            for refs in ("input_layers", "output_layers"):
                if isinstance(inner.get(refs), list) and len(inner[refs]) == 1:
                    inner[refs] = inner[refs][0]
        if cls == "Bidirectional" and cfg.get("backward_layer") is None:
            forward = cfg.get("layer")
            if isinstance(forward, dict) and forward["config"].get("go_backwards"):
                # Keras 2's twin of a go_backwards=True layer runs forwards; Keras 3 always
                # builds the twin with go_backwards=True and then refuses the pair, so the
                # twin is written out as Keras 2 built it.
                twin = _renamed(forward, "backward_")
                twin["config"]["go_backwards"] = False
                cfg["backward_layer"] = twin
        cell = cfg.get("cell")
        if isinstance(cell, list):
            cell = {"class_name": "StackedRNNCells", "config": {"cells": cell}}
        if isinstance(cell, dict):
            cfg["cell"] = self.layer(cell)
        if isinstance(cfg.get("cells"), list):
            cfg["cells"] = [self.layer(c) for c in cfg["cells"]]
        if cls in ("BatchNormalization", "LayerNormalization"):
            axis = cfg.get("axis")
            if isinstance(axis, list) and len(axis) == 1:
                cfg["axis"] = int(axis[0])
        out = {k: v for k, v in entry.items() if k not in ("config", "class_name")}
        if cfg.pop("causal", False):  # tf.keras <= 2.10: Keras 3 takes it as a call argument
            out["inbound_nodes"] = [
                [
                    [*ref[:3], {**(ref[3] if len(ref) > 3 else {}), "use_causal_mask": True}]
                    for ref in node
                ]
                for node in entry.get("inbound_nodes") or []
            ]
        if cls in _RNN_CELL_NAMES or cls in ("RNN", "Bidirectional"):
            nodes = out.get("inbound_nodes") or []
            out["inbound_nodes"] = [_initial_state_node(n, cls, name, model) for n in nodes]
            shape = (out.get("build_config") or {}).get("input_shape")
            if nodes != out["inbound_nodes"] and shape and isinstance(shape[0], list):
                out["build_config"] = {**out["build_config"], "input_shape": shape[0]}
        out["class_name"] = cls
        out.setdefault("module", "keras.layers")
        out.setdefault("registered_name", None)
        out["config"] = cfg
        return out


#: tf.keras' numeric arguments of the activation layers: floats in Keras 3's configs
#: (a live tf.keras layer holds NumPy scalars, from ``cast_to_floatx``).
_KERAS2_NUMBERS = {
    "LeakyReLU": ("alpha",),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "ELU": ("alpha",),
    "ActivityRegularization": ("l1", "l2"),
}


def _keras2_activation_layer(cls: str, cfg: dict, entry: dict, masked: bool) -> str | None:
    """Rewrite, in place, the config of a tf.keras activation, padding or regularisation
    layer as Keras 3's (LeakyReLU's ``alpha`` is ``negative_slope``, numbers as floats,
    ZeroPadding1D's ``data_format`` written out); the reason Keras 3 would compute another
    thing (or refuse it: UpSampling2D's gaussian and mitchellcubic), or None."""
    for key in _KERAS2_NUMBERS.get(cls, ()):
        if cfg.get(key) is not None:
            cfg[key] = float(np.asarray(cfg[key]).item())
    if cls == "LeakyReLU" and "alpha" in cfg:
        cfg["negative_slope"] = cfg.pop("alpha")
    if cls == "LeakyReLU" and float(cfg.get("negative_slope", 0.3)) < 0:
        return (
            f"its negative slope {cfg['negative_slope']} (tf.keras took it) is refused by "
            "Keras 3's LeakyReLU (negative_slope >= 0)"
        )
    if cls == "ZeroPadding1D":
        cfg.setdefault("data_format", "channels_last")
    if cls == "UpSampling2D":
        return keras3_interpolation_refusal(
            cfg.get("interpolation", "nearest"), keras2=True, dtype=cfg.get("dtype")
        )
    if cls == "Softmax":
        cfg.pop("robust_masking", None)
        if masked or _call_has(entry, "mask"):
            return (
                "tf.keras' Softmax adds -1e9 to the masked logits and keeps every output, so a "
                "fully masked row comes out uniform; Keras 3's zeros the masked outputs, so in "
                "a masked model the Keras 3 layer would compute other values"
            )
    if cls == "Identity" and masked:
        return (
            "tf.keras' Identity does not support masking (it drops the mask); Keras 3's "
            "passes the mask on, so in a masked model the Keras 3 layer would mask other layers"
        )
    return None


#: UpSampling2D interpolations tf.keras computes and Keras 3 refuses (its backends'
#: ``image.resize`` do not take them).
KERAS2_ONLY_INTERPOLATIONS = ("gaussian", "mitchellcubic")


def keras3_interpolation_refusal(
    interpolation: str, keras2: bool = False, dtype: Any = None
) -> str | None:
    """Why an UpSampling2D with ``interpolation`` cannot be written for Keras 3, or None;
    ``keras2``: tf.keras' layer (its interpolations return float32), ``dtype``: its dtype
    policy (a name or config)."""
    if interpolation in KERAS2_ONLY_INTERPOLATIONS:
        return (
            f"interpolation={interpolation!r} is tf.keras' (tf.image.resize's); Keras 3's "
            "UpSampling2D refuses it (it takes nearest, bilinear, bicubic, lanczos3, lanczos5 "
            "and, on TensorFlow, area), so the Keras 3 file could not be run"
        )
    if keras2 and interpolation != "nearest" and dtype is not None:
        from jrnn._dtypes import resolve_policy

        compute = resolve_policy(dtype).compute_dtype
        if compute.itemsize < 4:
            return (
                f"tf.keras' {interpolation} interpolation returns tf.image.resize's float32 "
                f"under its {compute.name} compute dtype, where Keras 3's rounds it to "
                f"{compute.name}: the Keras 3 layer would compute other values"
            )
    return None


def _call_has(entry: dict, key: str) -> bool:
    """Whether a Keras 2 layer entry's recorded calls pass the keyword argument ``key``."""
    for node in entry.get("inbound_nodes") or []:
        refs = node if isinstance(node, list) else []
        for ref in refs:
            if isinstance(ref, list) and len(ref) > 3 and isinstance(ref[3], dict):
                if ref[3].get(key) is not None:
                    return True
    return False


_RECURRENT_CLASSES = (
    "SimpleRNN", "GRU", "LSTM", "RNN", "Bidirectional", "CuDNNLSTM", "CuDNNGRU",
    "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
)  # fmt: skip


_MASK_READING_MERGES = ("Multiply", "Maximum", "Minimum")


def _keras3_wrapper_policy(
    wrapper: Any, layer: Any, *, weightless: bool = False
) -> tuple[str | None, str | None]:
    """``(policy, None)``: the policy of a Keras 3 ``TimeDistributed`` that computes a wrapped
    layer (of :data:`importers.convert.IN_WRAPPER_POLICY`) as tf.keras' wrapper of policy
    ``wrapper`` does: tf.keras casts the inputs to the wrapper's compute dtype, then runs the
    layer under its own policy; Keras 3's casts them to its own compute dtype and runs
    ``layer.call`` with the layer's variables read in that dtype (a mixed policy) or as
    they are (a plain one), a ``weightless`` layer (of
    :data:`importers.convert.WEIGHTLESS_IN_WRAPPER`) in that dtype. ``(None, reason)``
    where no Keras 3 policy does it."""
    from jrnn._dtypes import resolve_policy

    outer, inner = resolve_policy(wrapper), resolve_policy(layer)
    first = np.dtype(outer.compute_dtype)  # tf.keras rounds the inputs to this, then to:
    then = np.dtype(inner.compute_dtype)
    variables = np.dtype(inner.param_dtype)
    if first == then or first.itemsize > then.itemsize:  # the first rounding changes nothing
        return inner.name, None
    if weightless:  # tf.keras: `first`-rounded values in `then`; Keras 3 returns its inputs
        return None, (
            f"tf.keras rounds its inputs to the wrapper's {first.name}, then returns the "
            f"weightless wrapped layer's {then.name}; a Keras 3 TimeDistributed returns "
            "such a layer's outputs in its own compute dtype, so no Keras 3 policy computes "
            "that"
        )
    if then == variables and wider_float(first, variables) == then:
        return first.name, None  # plain: inputs rounded to `first`, maths in the variables'
    return None, (
        f"tf.keras rounds its inputs to the wrapper's {first.name}, then computes the "
        f"wrapped layer in {then.name}; no Keras 3 TimeDistributed policy computes that"
    )


def keras2_mask_difference(inner: Any, masked: bool) -> str | None:
    """Why a tf.keras ``TimeDistributed`` over the layer config ``inner`` masks other than
    Keras 3's would (tf.keras takes the inner layer's output mask, Keras 3 passes the input
    mask on), or None where both give the same; ``masked``: whether the model holds a
    mask source."""
    if not isinstance(inner, dict):
        return None
    cls, cfg = inner.get("class_name"), inner.get("config") or {}
    if masked and cls in _MODELS:
        return (
            f"tf.keras' TimeDistributed takes the output mask of the {cls} model it wraps "
            "(the mask its layers compute); Keras 3's passes its input mask on, so in a "
            "masked model the Keras 3 model could mask the layers after it differently"
        )
    makes = _is_mask_source(inner)
    wrapped = (cfg.get("layer") or {}).get("config", {})  # Bidirectional's layer
    sequences = cfg.get("return_sequences", wrapped.get("return_sequences", False))
    recurrent = cls in _RECURRENT_CLASSES
    drops = masked and recurrent and not sequences
    if makes or drops:
        return (
            f"tf.keras' TimeDistributed takes the output mask of its {cls} (which "
            f"{'makes a mask' if makes else 'reduces the mask over its steps'}); Keras 3's "
            "passes its input mask on, so the Keras 3 model would mask the layers after it "
            "differently"
        )
    return None


def _map_refs(tree: Any, fn) -> Any:
    """Every tensor reference ``[layer, node, tensor, ...]`` in ``tree`` with its layer name
    and node index replaced by ``fn(layer, node)``."""
    if isinstance(tree, dict):
        return {k: _map_refs(v, fn) for k, v in tree.items()}
    if not isinstance(tree, list):
        return tree
    if (
        len(tree) >= 3
        and isinstance(tree[0], str)
        and all(isinstance(v, int) and not isinstance(v, bool) for v in tree[1:3])
    ):
        return [*fn(tree[0], tree[1]), *tree[2:]]
    return [_map_refs(v, fn) for v in tree]


def _is_mask_source(entry: dict) -> bool:
    """Whether a layer config makes a Keras mask (``Masking``, ``Embedding(mask_zero=True)``)."""
    cls, cfg = entry.get("class_name"), entry.get("config")
    return isinstance(cfg, dict) and (
        cls == "Masking" or (cls == "Embedding" and bool(cfg.get("mask_zero")))
    )


def _makes_masks(tree: Any) -> bool:
    """Whether a config holds a mask source anywhere (nested models and wrappers too)."""
    if isinstance(tree, list):
        return any(_makes_masks(v) for v in tree)
    if not isinstance(tree, dict):
        return False
    return _is_mask_source(tree) or any(_makes_masks(v) for v in tree.values())


#: Names Keras 3 gives the operations of a merge layer's mask when it rebuilds a Keras 2
#: style graph while loading (Keras 3's own files record them as named nodes instead).
_MASK_OP_NAME = re.compile(r"concatenate(_\d+)?")


def _initial_state_node(node: Any, cls: str, name: str, model: Any) -> Any:
    """Keras 2 records ``rnn(x, initial_state=[h, c])`` as one node with inputs ``[x, h,
    c]``; Keras 3 would call the layer on that list. Written as Keras 3 writes the call:
    ``x`` as the argument and the states as ``initial_state``. Refused where a Keras mask
    rides on ``x``: Keras 3 runs such a call unmasked, Keras 2 masked."""
    if not isinstance(node, list) or len(node) < 2:
        return node
    specs = {ref: (shape, dtype, masked) for ref, shape, dtype, masked in model._tensor_specs}

    def tensor(ref):
        key = tuple(ref[:3])
        if key not in specs:
            raise UnsupportedLayerError(
                cls, name, detail="the shapes of its inputs could not be inferred"
            )
        shape, dtype, _ = specs[key]
        config = {"shape": list(shape), "dtype": dtype, "keras_history": list(key)}
        return {"class_name": "__keras_tensor__", "config": config}

    if specs.get(tuple(node[0][:3]), (None, None, False))[2]:
        raise UnsupportedLayerError(
            cls,
            name,
            detail="a Keras mask reaches this call with initial_state; Keras 2 masks it, "
            "Keras 3 runs a call with several tensor arguments unmasked, so the model "
            "cannot be written to a Keras 3 file exactly",
        )
    recorded = node[0][3] if len(node[0]) > 3 else {}
    # Keras 2 writes `initial_state=None, constants=None` there: the tensors are inputs.
    kwargs = {k: v for k, v in recorded.items() if v is not None}
    if set(kwargs) & {"initial_state", "constants"}:
        raise UnsupportedLayerError(
            cls,
            name,
            detail=f"its Keras 2 call passes {sorted(kwargs)}; Keras 3 has no "
            "constants, so the model cannot be written to a Keras 3 file exactly",
        )
    kwargs["initial_state"] = [tensor(ref) for ref in node[1:]]
    return {"args": [tensor(node[0])], "kwargs": kwargs}


_CUDNN_AS = {"CuDNNLSTM": "LSTM", "CuDNNGRU": "GRU"}
_CUDNN_KEPT = (
    "name",
    "trainable",
    "dtype",
    "units",
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "unit_forget_bias",
    "time_major",  # refused below when True, dropped when False
)


def _cudnn_as_keras3(entry: dict) -> dict:
    """A Keras 2 CuDNN layer entry as the Keras 3 layer it equals (Keras 2's own rule: tanh,
    sigmoid recurrent activation, biases; GRU with ``reset_after=True``)."""
    cls = _CUDNN_AS[entry["class_name"]]
    cfg = {k: v for k, v in entry["config"].items() if k in _CUDNN_KEPT}
    cfg.update(activation="tanh", recurrent_activation="sigmoid", use_bias=True)
    if cls == "GRU":
        cfg.pop("unit_forget_bias", None)
        cfg["reset_after"] = True
    return {**entry, "class_name": cls, "config": cfg}


def _policy(dtype: dict) -> Any:
    name = dtype.get("config", {}).get("name")
    if not isinstance(name, str):
        return dtype
    return {
        "module": "keras",
        "class_name": "DTypePolicy",
        "config": {"name": name},
        "registered_name": None,
    }


def _input_layer(name: str, shape: list, dtype: str) -> dict:
    return {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {
            "batch_shape": list(shape),
            "dtype": dtype,
            "sparse": False,
            "name": name,
        },
        "registered_name": None,
    }


# -- weights -------------------------------------------------------------------------------


def _weights_bytes(config: dict, model: Any) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        _Writer().model(f, config, model)
    return buffer.getvalue()


class _Writer:
    """Writes the Keras 3 weights tree of a (converted) config with jrnn module values."""

    def vars(self, group: h5py.Group, name: str, arrays: list) -> None:
        v = group.create_group("vars")
        v.attrs["name"] = name
        for i, array in enumerate(arrays):
            value = np.asarray(array)
            if value.dtype.name == "bfloat16":  # as Keras 3's H5IOStore: 2-byte opaque, tagged
                ds = v.create_dataset(str(i), data=value)
                ds.attrs["dtype"] = "bfloat16"
            else:
                v[str(i)] = value

    def model(self, group: h5py.Group, entry: dict, model: Any) -> None:
        cfg = entry["config"]
        self.vars(group, str(cfg.get("name")), [])
        layers = group.create_group("layers")
        counters: dict[str, int] = {}
        sequential = entry["class_name"] == "Sequential"
        for sub in cfg.get("layers") or []:
            cls = sub["class_name"]
            if (sequential and cls == "InputLayer") or is_op(sub):
                continue  # Sequential.layers leaves its InputLayer out; ops are not layers
            key = _unique(_snake_case_keras3(cls), counters)
            weightless = cls == "InputLayer" or (  # a Concatenate renamed by _renumber
                cls == "Concatenate" and _name(sub) not in model.layers
            )
            module = None if weightless else model.layers[_name(sub)]
            self.layer(layers.create_group(key), sub, module)

    def layer(self, group: h5py.Group, entry: dict, module: Any) -> None:
        from importers.weights import keras_params

        cls, cfg = entry["class_name"], entry["config"]
        name = _name(entry)
        if cls in _MODELS:
            self.model(group, entry, module)
        elif cls in _RNN_CELL_NAMES:
            self.vars(group, name, [])
            cell = module.cell
            values = (  # a CuDNN layer written as the LSTM/GRU it equals
                [np.asarray(w) for w in cell.keras_equivalent_weights()]
                if hasattr(cell, "keras_equivalent_weights")
                else _values(cell)
            )
            self.vars(group.create_group("cell"), _RNN_CELL_NAMES[cls], values)
        elif cls == "RNN":
            self.vars(group, name, [])
            self.cell(group.create_group("cell"), cfg["cell"], module.cell)
        elif cls == "Bidirectional":
            self.vars(group, name, [])
            fwd = cfg["layer"]
            bwd = cfg.get("backward_layer") or fwd
            self.layer(
                group.create_group("forward_layer"),
                _renamed(fwd, "forward_"),
                module.forward_layer,
            )
            self.layer(
                group.create_group("backward_layer"),
                _renamed(bwd, "backward_"),
                module.backward_layer,
            )
        elif cls == "TimeDistributed":
            self.vars(group, name, [])
            self.layer(group.create_group("layer"), cfg["layer"], module.layer)
        elif module is None:
            self.vars(group, name, [])
        else:
            self.vars(group, name, [np.asarray(p[...]) for p in keras_params(module)])

    def cell(self, group: h5py.Group, entry: Any, module: Any) -> None:
        if isinstance(entry, list):
            entry = {"class_name": "StackedRNNCells", "config": {"cells": entry}}
        if entry["class_name"] == "StackedRNNCells":
            self.vars(group, str(entry["config"].get("name", "stacked_rnn_cells")), [])
            cells = group.create_group("cells")
            counters: dict[str, int] = {}
            for sub, cell in zip(entry["config"]["cells"], module.cells, strict=True):
                key = _unique(_snake_case_keras3(sub["class_name"]), counters)
                self.cell(cells.create_group(key), sub, cell)
        else:
            self.vars(group, _name(entry), _values(module))


def _values(module: Any) -> list:
    from importers.weights import keras_params

    return [np.asarray(p[...]) for p in keras_params(module)]


def _renamed(entry: dict, prefix: str) -> dict:
    cfg = dict(entry["config"])
    name = str(cfg.get("name"))
    cfg["name"] = prefix + (name[len(prefix) :] if name.startswith(prefix) else name)
    return {**entry, "config": cfg}


def _unique(base: str, counters: dict[str, int]) -> str:
    """Keras' ``_get_unique_name``: ``base``, ``base_1``, ``base_2``, ..."""
    if base in counters:
        counters[base] += 1
        return f"{base}_{counters[base]}"
    counters[base] = 0
    return base


def _frames_of_any_size(layer: Any) -> bool:
    """A layer holding a ConvLSTM cell built without ``spatial_shape``."""
    from flax import nnx

    from jrnn.cells.conv_lstm import ConvLSTMCell

    return any(
        isinstance(m, ConvLSTMCell) and m.spatial_shape is None for _, m in nnx.iter_graph(layer)
    )
