"""Read Keras model and weight files without TensorFlow or Keras: h5py, json, zipfile, numpy.

:func:`read_keras_file` recognises the file by its content (zip magic or HDF5 signature,
not the extension) and returns a :class:`KerasFile` whose ``layer_weights`` hold every
layer's arrays in Keras' own order. Nothing from the file is executed (no pickle, no
Lambda bytecode); every size is bounded; any problem raises a
:class:`~importers.errors.KerasFileError` subclass naming the file, the exact
member/group/dataset, what was expected and found, and what to do. There are no partial
results.

File layouts read (verified against Keras 3.15.1 and tf_keras 2.21 files; sources:
``keras/src/saving/saving_lib.py``, ``keras/src/legacy/saving/legacy_h5_format.py``,
Keras 2.2.4 ``keras/engine/saving.py``):

``keras_v3`` — ``.keras`` zip archive (Keras 3, and tf_keras / Keras 2.13+):
    members ``metadata.json`` (``{"keras_version", "date_saved"}``), ``config.json``
    (``{"class_name", "config", ..., "compile_config"}``), ``model.weights.h5`` (or
    ``model.weights.npz``, refused: Keras writes it as pickled dicts), ``assets/``
    (ignored). The weights file has the tree below.

``weights_h5_v3`` — Keras 3 ``model.save_weights("x.weights.h5")``: the same tree, no
    config and no attributes on the root. Pass ``config=`` to order and name it fully.

    The tree. Every saved object (model, layer, cell, optimizer) is a group holding its
    own variables as datasets ``vars/0``, ``vars/1``, ... (numeric order: ``10`` comes
    after ``9``); in Keras 3 the ``vars`` group carries the attribute ``name`` = the
    object's name (layer name, cell name); tf_keras writes no names. Sub-objects sit in
    groups named after the Python attribute holding them: ``cell`` (RNN layers),
    ``forward_layer`` / ``backward_layer`` (Bidirectional; tf_keras also writes an empty
    ``layer``), ``layer`` (TimeDistributed). Lists are groups whose members are named
    by snake-case class name with ``_1``, ``_2``... per class, in list order: a
    model's ``layers/`` (``layers/lstm``, ``layers/gru``, ``layers/lstm_1`` — user
    names do not appear in paths), StackedRNNCells' ``cells/`` (``cells/lstm_cell``,
    ``cells/gru_cell``, ``cells/lstm_cell_1``), nested models' ``layers/``. The root
    holds ``vars`` (the model's own variables, name ``functional``/``sequential``),
    ``layers`` (Functional/Sequential; ``_layer_checkpoint_dependencies`` in Keras
    2.13), ``optimizer`` and, from tf_keras, ``metrics`` (both ignored here; when there
    is a ``layers`` list every other root group is ignored, for a subclassed model the
    root groups are its layers). Keras 3 Sequential models do not save their InputLayer;
    Functional ones do (empty).

    A layer's ``arrays`` are its own variables, then its sub-objects' arrays in the
    order Keras' ``layer.get_weights()`` uses (``Layer.weights``: own variables, then
    tracked sub-layers in creation order): ``cell``; ``forward_layer`` then
    ``backward_layer``; ``layer``; list members in list order; MultiHeadAttention's
    ``query_dense``, ``key_dense``, ``value_dense``, ``output_dense``. Another layer
    with several weighted sub-objects raises UnsupportedLayerError (the file does not
    record their order). LSTM/GRU/SimpleRNN:
    ``cell/vars/0,1,2`` = kernel, recurrent_kernel, bias. Bidirectional: forward's 3
    then backward's 3. ``RNN([cells])``: each cell's arrays in list order. Nested
    models: each layer in ``layers`` order. The list order comes from the config
    (matching members by their ``name`` attribute, or, in files without names, by
    recomputing Keras' snake-case paths); without a config it is only known when every
    member with weights has the same class (``lstm_cell``, ``lstm_cell_1``, ...), and a
    layer mixing classes raises, asking for ``config=``.

``h5_full`` — legacy HDF5 ``model.save("x.h5")`` (Keras 1, Keras 2, tf.keras, Keras 3's
    legacy writer): root attributes ``keras_version`` (absent in Keras 1 files: read as
    ``"1"``), ``backend``, ``model_config`` (JSON), ``training_config`` (JSON, if
    compiled); group ``model_weights`` with attributes ``layer_names``,
    ``keras_version``, ``backend``; one group per layer with attribute
    ``weight_names``; each weight at ``model_weights/<layer>/<weight name>`` (names
    contain ``/``, so nested groups: ``lstm/lstm/lstm_cell/kernel:0``). Long attribute
    lists are chunked as ``layer_names0``, ``layer_names1``... Keras 3's writer adds an
    empty ``top_level_model_weights`` group and an ``optimizer_weights`` group (ignored).

``h5_weights`` — legacy ``save_weights("x.h5")`` (Keras 1/2, tf.keras): the same layer
    groups at the root, root attributes ``layer_names``, ``backend``, ``keras_version``.

    Legacy arrays are read strictly in ``weight_names`` order, which is Keras'
    ``layer.trainable_weights + layer.non_trainable_weights`` at save time. That equals
    ``get_weights()`` for every layer whose non-trainable weights come last (all RNN,
    Dense, Conv, Embedding, BatchNormalization layers), but not for a nested model with
    a BatchNormalization before another layer with weights, nor for partly frozen
    composite layers. Legacy ``LayerWeights`` have no ``children``: the weight names
    carry the structure (``bidir/forward_lstm/lstm_cell/kernel:0``).
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from importers import _h5, _zip
from importers.errors import (
    CorruptFileError,
    KerasFileError,
    MissingWeightsError,
    UnsafeFileError,
    UnsupportedLayerError,
)

__all__ = ["KerasFile", "LayerWeights", "read_keras_file"]

DEFAULT_MAX_MEMBER_BYTES = 4 * 1024**3
DEFAULT_MAX_TOTAL_BYTES = 16 * 1024**3
MAX_JSON_DEPTH = 200

_CONFIG_JSON = "config.json"
_METADATA_JSON = "metadata.json"
_WEIGHTS_H5 = "model.weights.h5"
_WEIGHTS_NPZ = "model.weights.npz"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

# Keras `Layer.weights` order of the sub-objects a layer tracks (its `_layers`, in creation
# order), by the attribute name that is also the group name in the file: RNN `cell`;
# Bidirectional `forward_layer` then `backward_layer` (tf_keras' extra `layer` is never
# built); Wrapper/TimeDistributed `layer`; StackedRNNCells `cells`; models `layers`;
# MultiHeadAttention query, key, value, output (Keras 3 names, then tf_keras' private ones).
_CHILD_ORDER = (
    "cell",
    "forward_layer",
    "backward_layer",
    "layer",
    "cells",
    "layers",
    "query_dense",
    "key_dense",
    "value_dense",
    "output_dense",
    "_query_dense",
    "_key_dense",
    "_value_dense",
    "_output_dense",
)
_CHILD_RANK = {name: rank for rank, name in enumerate(_CHILD_ORDER)}
# Root groups that are not layers: the model's own `vars`, the optimizer, tf_keras' metrics.
_ROOT_SKIP = {"vars", "optimizer", "metrics", "compiled_metrics", "compiled_loss"}
_SUFFIX = re.compile(r"^(.*?)(?:_(\d+))?$")


def is_op(entry: dict) -> bool:
    """True for a Functional config entry that records a ``keras.ops`` call, not a layer
    (``"module": "keras.src.ops.numpy"`` ...): such entries have no weights."""
    return str(entry.get("module") or "").startswith(("keras.src.ops", "keras.ops"))


@dataclass(eq=False)
class LayerWeights:
    """The weights of one Keras layer (or cell, or nested model), in Keras' own order.

    Attributes:
        name: the Keras name (``"lstm_1"``, ``"bidir"``; for a ``.weights.h5`` file that
            records no names and no config: the group name, e.g. ``"lstm"``).
        arrays: the arrays in the order Keras' ``layer.get_weights()`` returns them (legacy
            ``.h5``: the file's ``weight_names`` order; see the module docstring).
        weight_names: one name per array: the legacy weight name
            (``"lstm_1/lstm_cell/kernel:0"``, ``"lstm_1_W_i"``) or the HDF5 path in
            Keras 3 files (``"layers/lstm/cell/vars/0"``).
        children: the structure, when the file records it (Keras 3 tree): sub-objects by
            attribute (``"cell"``, ``"forward_layer"``, ``"backward_layer"``, ``"layer"``)
            and list members by name (a stack's cells, a nested model's layers), in
            ``arrays`` order; ``arrays`` is the parent's own arrays followed by these.
        class_name: the Keras class name from the config, when known.
        config: the layer's entry from the model config (``{"class_name", "config", ...}``),
            when known.
        path: the HDF5 group the layer was read from.
        ordered: False only for :func:`importers.load_weights`' reads of a Keras 3
            ``.weights.h5`` without config, where a list of mixed-class members (stacked
            cells) is kept in group-name order; the loader then orders it from the jrnn
            modules. :func:`read_keras_file` raises instead, so it is always True there.
        named: False where ``name`` is only the group's name: a ``.weights.h5`` that
            records no layer names (tf.keras writes none; Keras 3 writes them), read without
            a config.
    """

    name: str
    arrays: list[np.ndarray]
    weight_names: list[str]
    children: dict[str, LayerWeights] = field(default_factory=dict)
    class_name: str | None = None
    config: dict | None = None
    path: str = ""
    ordered: bool = True
    named: bool = True


@dataclass(eq=False)
class KerasFile:
    """Everything :func:`read_keras_file` read from one Keras file.

    Attributes:
        path: the file.
        format: ``"keras_v3"`` (.keras zip), ``"weights_h5_v3"`` (Keras 3 .weights.h5),
            ``"h5_full"`` (legacy ``model.save("x.h5")``) or ``"h5_weights"`` (legacy
            ``save_weights("x.h5")``).
        keras_version: e.g. ``"3.15.1"``, ``"2.21.0"``, ``"2.2.4"``; ``"1"`` for legacy files
            without the attribute (Keras 1, as Keras itself reads them); None when the
            format does not record it (``.weights.h5``).
        backend: ``"tensorflow"``, ``"jax"``, ``"theano"``...; None when not recorded.
        model_config: the parsed model config (``config.json`` of a .keras file,
            ``model_config`` of a legacy .h5), ``{"class_name": ..., "config": ...}``; None
            for weights-only files.
        layer_weights: by Keras layer name, in model order (config / ``layer_names``; for a
            ``.weights.h5`` without ``config=``: file order). Layers without weights
            (InputLayer, Dropout) are present with no arrays. Nested models are one entry
            whose ``children`` are their layers.
        training_config: legacy ``training_config`` or the .keras ``compile_config``.
        dtype_policy: the model's dtype policy name (``"float32"``, ``"mixed_float16"``).
        metadata: ``metadata.json`` of a .keras file; string attributes of an .h5 root.
        top_level_weights: the model's own variables outside any layer (Keras 3 root
            ``vars``, legacy ``top_level_model_weights``), None when there are none.
    """

    path: str
    format: str
    keras_version: str | None
    backend: str | None
    model_config: dict | None
    layer_weights: dict[str, LayerWeights]
    training_config: dict | None = None
    dtype_policy: str | None = None
    metadata: dict = field(default_factory=dict)
    top_level_weights: LayerWeights | None = None


def read_keras_file(
    path: str | os.PathLike,
    *,
    config: dict | KerasFile | None = None,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> KerasFile:
    """Read a Keras model or weights file into NumPy arrays, safely and without Keras.

    Args:
        path: a ``.keras`` archive, a Keras 3 ``.weights.h5``, or a legacy ``.h5`` (full
            model or weights only, Keras 1/2/3, tf.keras). The format is recognised from
            the content.
        config: only for a Keras 3 ``.weights.h5``, which stores no config: the model
            config (``config.json`` as a dict, ``json.loads(model.to_json())``, or a
            :class:`KerasFile` read from the model's ``.keras``/``.h5``). It names and
            orders the layers and gives the order of mixed-class lists (stacked cells,
            nested models) that the file itself does not record.
        max_member_bytes: largest uncompressed archive member and largest array accepted.
        max_total_bytes: largest total of archive bytes read, and of array bytes read.

    Returns:
        The complete :class:`KerasFile`.

    Raises:
        CorruptFileError: truncated or malformed zip/HDF5/JSON, or not a Keras layout.
        UnsafeFileError: zip bombs, traversal, duplicates, pickle, links, oversized or
            non-numeric arrays, over-deep JSON.
        MissingWeightsError: a layer or weight announced by the file is absent.
        UnsupportedLayerError: a layer whose weight order the file does not determine.
        KerasFileError: anything else the reader cannot do (directories, sharded
            ``.weights.json``, a ``config=`` where none is used).
        FileNotFoundError: ``path`` does not exist.

    Example:
        >>> import os, tempfile, h5py, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "w.h5")
        >>> with h5py.File(path, "w") as f:  # a Keras-2-style save_weights("w.h5")
        ...     f.attrs["layer_names"] = [b"dense_1"]
        ...     f.attrs["keras_version"] = b"2.2.4"
        ...     f.attrs["backend"] = b"tensorflow"
        ...     g = f.create_group("dense_1")
        ...     g.attrs["weight_names"] = [b"dense_1/kernel:0", b"dense_1/bias:0"]
        ...     g["dense_1/kernel:0"] = np.ones((3, 2), "f4")
        ...     g["dense_1/bias:0"] = np.zeros(2, "f4")
        >>> kf = read_keras_file(path)
        >>> kf.format, kf.keras_version, [a.shape for a in kf.layer_weights["dense_1"].arrays]
        ('h5_weights', '2.2.4', [(3, 2), (2,)])
    """
    return _read(path, config, max_member_bytes, max_total_bytes, keep_unordered=False)


def _read(
    path,
    config,
    max_member_bytes: int,
    max_total_bytes: int,
    *,
    keep_unordered: bool,
    config_if_unnamed: bool = False,
) -> KerasFile:
    """:func:`read_keras_file`; ``keep_unordered`` marks unordered lists instead of raising;
    ``config_if_unnamed``: ``config`` names the layers of a Keras 3 ``.weights.h5`` only
    (the formats that record their own are read without it)."""
    label = os.fspath(path)
    if not isinstance(label, str):
        label = os.fsdecode(label)
    from jrnn._checks import positive_int

    limits = {
        name: positive_int(value, name, "read_keras_file")
        for name, value in (
            ("max_member_bytes", max_member_bytes),
            ("max_total_bytes", max_total_bytes),
        )
    }
    given_config = _given_config(config, label)
    if given_config is not None:
        _check_layer_entries(given_config, label, "config=")
    if os.path.isdir(label):
        raise _directory_error(label)
    with open(label, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        is_zip = head[:4] in _ZIP_MAGICS
        is_h5 = not is_zip and _h5.has_hdf5_signature(f, size)
    if is_zip:
        if not config_if_unnamed:
            _no_config_used(given_config, label, "a .keras archive carries its own config.json")
        return _read_archive(label, limits)
    if is_h5:
        return _read_hdf5(label, given_config, limits, keep_unordered, config_if_unnamed)
    if head.lstrip()[:1] in (b"{", b"["):
        raise KerasFileError(
            f"{label}: a JSON file, not a Keras model or weights file; if it is a sharded "
            "Keras 3 '.weights.json' index, jrnn cannot read sharded weights yet: save the "
            "weights unsharded (model.save_weights('x.weights.h5')).",
            path=label,
        )
    raise CorruptFileError(
        f"{label}: neither a zip archive (.keras) nor an HDF5 file (.h5): the file starts "
        f"with {head!r} (size {size} bytes). Expected a file written by Keras' model.save() "
        "or save_weights(); the file is damaged or of another kind.",
        path=label,
    )


# -- config and JSON ----------------------------------------------------------------------


def _given_config(config, label: str) -> dict | None:
    if config is None:
        return None
    if isinstance(config, KerasFile):
        if config.model_config is None:
            raise KerasFileError(
                f"{label}: config= is a KerasFile read from {config.path!r}, which has no "
                "model config (a weights-only file); pass the KerasFile of the model's "
                ".keras or full .h5 file, or its config dict.",
                path=label,
            )
        return config.model_config
    if isinstance(config, dict) and isinstance(config.get("class_name"), str):
        if isinstance(config.get("config"), dict | list):
            return config
    raise KerasFileError(
        f"{label}: config= must be a serialized Keras model config "
        "({'class_name': ..., 'config': {...}} as in config.json or json.loads(model.to_json())) "
        f"or a KerasFile; received {type(config).__name__} with keys "
        f"{list(config)[:8] if isinstance(config, dict) else '-'}.",
        path=label,
    )


def _no_config_used(config, label: str, why: str) -> None:
    if config is not None:
        raise KerasFileError(
            f"{label}: config= is only used for Keras 3 .weights.h5 files, which store no "
            f"config; {why}. Call read_keras_file without config=.",
            path=label,
        )


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


def _json_depth(data: bytes) -> int:
    """Maximum nesting of [ and { outside JSON strings, in bounded memory."""
    stripped = _JSON_STRING.sub(b'""', data)
    depth = deepest = 0
    for start in range(0, len(stripped), 1 << 20):
        chunk = np.frombuffer(stripped, np.uint8, min(1 << 20, len(stripped) - start), start)
        step = np.zeros(chunk.shape, np.int64)
        step[(chunk == ord("[")) | (chunk == ord("{"))] = 1
        step[(chunk == ord("]")) | (chunk == ord("}"))] = -1
        running = np.cumsum(step) + depth
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
    return deepest


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse_json(data: bytes | str, label: str, where: str) -> Any:
    """Parse JSON with a nesting limit and duplicate-key detection."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    depth = _json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise UnsafeFileError(
            f"{label}: {where}: the JSON is nested {depth} levels deep, over the limit of "
            f"{MAX_JSON_DEPTH} (Keras configs nest a few dozen levels at most); refusing "
            "to parse it.",
            path=label,
            where=where,
        )
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise CorruptFileError(
            f"{label}: {where}: the JSON repeats the key {e.args[0]!r} in one object, so "
            "its value is ambiguous; Keras never writes that. The file is damaged or forged.",
            path=label,
            where=where,
        ) from e
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CorruptFileError(
            f"{label}: {where}: not valid JSON ({type(e).__name__}: {e}); the file is "
            "truncated or damaged: save the model again.",
            path=label,
            where=where,
        ) from e


def _check_model_config(value: Any, label: str, where: str, allow_list: bool) -> dict:
    ok_config = isinstance(value, dict) and (
        isinstance(value.get("config"), dict)
        or (allow_list and isinstance(value.get("config"), list))
    )
    if not ok_config or not isinstance(value.get("class_name"), str):
        found = (
            f"an object with keys {sorted(value)[:8]}"
            if isinstance(value, dict)
            else f"a JSON {type(value).__name__}"
        )
        raise CorruptFileError(
            f"{label}: {where}: expected a model config, a JSON object with a string "
            f"'class_name' and an object 'config'; found {found}. The file is damaged or "
            "was not written by Keras.",
            path=label,
            where=where,
        )
    return value


def _check_layer_entries(model_config: Any, label: str, where: str) -> None:
    """Every layer entry of a (nested) model config is an object with a string
    ``class_name``, an object ``config`` and a string name, and names are unique per model.

    A config with layers of wrong types, or two layers of one name (whose weights would be
    ambiguous), is refused here so that no loader meets it.
    """
    stack = [(model_config, where)]
    while stack:
        config, at = stack.pop()
        layers = _cfg_layers(config)
        inner = config.get("config") if isinstance(config, dict) else None
        if layers is None:
            if isinstance(inner, dict) and "layers" in inner:
                raise CorruptFileError(
                    f"{label}: {at}: 'layers' must be a list of layer configs; found a JSON "
                    f"{type(inner['layers']).__name__}. The file is damaged or forged.",
                    path=label,
                    where=at,
                )
            continue
        seen: set[str] = set()
        for k, entry in enumerate(layers):
            entry_at = f"{at} layer {k}"
            ok = (
                isinstance(entry, dict)
                and isinstance(entry.get("class_name"), str)
                and isinstance(entry.get("config"), dict | list)
            )
            name = entry.get("name", _cfg_inner(entry).get("name")) if ok else None
            if not ok or not isinstance(name, str | None):
                raise CorruptFileError(
                    f"{label}: {entry_at}: expected a layer config, a JSON object with a "
                    "string 'class_name', an object 'config' and a string 'name'; found "
                    f"{json.dumps(entry)[:200]}. The file is damaged or forged.",
                    path=label,
                    where=entry_at,
                )
            name = _cfg_name(entry)
            if name is not None:
                if name in seen:
                    raise CorruptFileError(
                        f"{label}: {at}: two layers are named {name!r}; Keras layer names "
                        "are unique in a model, so which weights belong to which is "
                        "ambiguous. The file is damaged or forged.",
                        path=label,
                        where=entry_at,
                    )
                seen.add(name)
            if _cfg_layers(entry) is not None or "layers" in _cfg_inner(entry):
                stack.append((entry, f"{entry_at} ({name!r})"))


def _cfg_class(entry: Any) -> str | None:
    value = entry.get("class_name") if isinstance(entry, dict) else None
    return value if isinstance(value, str) else None


def _cfg_name(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    inner = entry.get("config")
    name = inner.get("name") if isinstance(inner, dict) else None
    if not isinstance(name, str):
        name = entry.get("name")
    return name if isinstance(name, str) else None


def _cfg_inner(entry: Any) -> dict:
    inner = entry.get("config") if isinstance(entry, dict) else None
    return inner if isinstance(inner, dict) else {}


def _cfg_layers(model_config: Any) -> list | None:
    """A model config's list of layer entries (dict configs, and Keras <=2.1 list configs)."""
    if not isinstance(model_config, dict):
        return None
    inner = model_config.get("config")
    if isinstance(inner, list):
        return inner
    layers = inner.get("layers") if isinstance(inner, dict) else None
    return layers if isinstance(layers, list) else None


def _child_config(entry: Any, attr: str) -> dict | None:
    inner = _cfg_inner(entry)
    if attr == "cell":
        found = inner.get("cell")
    elif attr in ("forward_layer", "layer"):
        found = inner.get("layer")
    elif attr == "backward_layer":
        found = inner.get("backward_layer") or inner.get("layer")
    else:
        found = None
    return found if isinstance(found, dict) else None


def _member_configs(entry: Any, attr: str) -> list | None:
    if attr == "layers":
        return _cfg_layers(entry)
    if attr == "cells":
        cells = _cfg_inner(entry).get("cells")
        return cells if isinstance(cells, list) else None
    return None


def _policy_name(model_config: dict | None) -> str | None:
    dtype = _cfg_inner(model_config).get("dtype")
    if isinstance(dtype, str):
        return dtype
    name = _cfg_inner(dtype).get("name") if isinstance(dtype, dict) else None
    return name if isinstance(name, str) else None


def _snake_case_keras3(name: str) -> str:
    """``keras.src.utils.naming.to_snake_case`` (Keras 3)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _snake_case_keras2(name: str) -> str:
    """``tf_keras.src.utils.generic_utils.to_snake_case`` (Keras 2.13+ / tf_keras)."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
    return name if not name.startswith("_") else "private" + name


def _suffix_key(key: str) -> tuple[str, int]:
    base, index = _SUFFIX.match(key).groups()
    return (base, int(index)) if index is not None else (key, 0)


def _directory_error(label: str) -> KerasFileError:
    if os.path.exists(os.path.join(label, "saved_model.pb")):
        return KerasFileError(
            f"{label}: a TensorFlow SavedModel directory; its variables are a TensorFlow "
            "checkpoint that needs TensorFlow to read. Load it with tf_keras and save it as "
            "'.h5' or '.keras', then read that file.",
            path=label,
        )
    return KerasFileError(
        f"{label}: a directory, neither a Keras file nor a jrnn checkpoint (it has no "
        "jrnn_checkpoint.json); pass the path of a .keras, .weights.h5 or .h5 file, or of a "
        "directory `jrnn convert` wrote.",
        path=label,
    )


# -- .keras archives ----------------------------------------------------------------------


def _read_archive(label: str, limits: dict) -> KerasFile:
    with _zip.SafeZip(label, label, **limits) as zf:
        names = zf.names()
        metadata: dict = {}
        if _METADATA_JSON in names:
            metadata = _parse_json(zf.read(_METADATA_JSON), label, _METADATA_JSON)
            if not isinstance(metadata, dict):
                raise CorruptFileError(
                    f"{label}: {_METADATA_JSON}: expected a JSON object such as "
                    '{"keras_version": "3.15.1", ...}; found a JSON '
                    f"{type(metadata).__name__}. The file is damaged or forged.",
                    path=label,
                    where=_METADATA_JSON,
                )
        version = metadata.get("keras_version")
        backend = metadata.get("backend")
        raw = zf.read_required(_CONFIG_JSON, CorruptFileError, " (the model config)")
        model_config = _check_model_config(
            _parse_json(raw, label, _CONFIG_JSON), label, _CONFIG_JSON, allow_list=False
        )
        _check_layer_entries(model_config, label, _CONFIG_JSON)
        if _WEIGHTS_H5 in names:
            data = zf.read(_WEIGHTS_H5)
        elif _WEIGHTS_NPZ in names:
            _refuse_npz(zf.read(_WEIGHTS_NPZ), f"{label}!{_WEIGHTS_NPZ}", label, limits)
        else:
            raise MissingWeightsError(
                f"{label}: the archive has neither {_WEIGHTS_H5!r} nor {_WEIGHTS_NPZ!r}; it "
                f"holds {sorted(names)[:20]}. A .keras file always stores its weights in "
                "one of them: the file is incomplete. Save the model again.",
                path=label,
                where=_WEIGHTS_H5,
            )
    inner = f"{label}!{_WEIGHTS_H5}"
    version = version if isinstance(version, str) else None
    with _h5.open_file(io.BytesIO(data), inner) as f:
        reader = _h5.H5Reader(inner, **limits)
        layers, top = _V3Tree(reader, version).read(f, model_config)
    return KerasFile(
        path=label,
        format="keras_v3",
        keras_version=version,
        backend=backend if isinstance(backend, str) else None,
        model_config=model_config,
        layer_weights=layers,
        training_config=_dict_or_none(model_config.get("compile_config")),
        dtype_policy=_policy_name(model_config),
        metadata=metadata,
        top_level_weights=top,
    )


def _dict_or_none(value: Any) -> dict | None:
    return value if isinstance(value, dict) else None


def _refuse_npz(data: bytes, inner: str, label: str, limits: dict) -> None:
    """Refuse Keras' ``model.weights.npz``: it needs pickle (checked with allow_pickle=False)."""
    with _zip.SafeZip(io.BytesIO(data), inner, **limits) as npz_zip:
        for name in sorted(npz_zip.names()):  # sizes and names checked before numpy reads
            npz_zip.read(name)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for key in npz.files:
                npz[key]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise UnsafeFileError(
                f"{inner}: the weights are stored as pickled Python objects (Keras 3's "
                "weights_format='npz' writes each layer's variables as a pickled dict); "
                "unpickling can execute code, so jrnn refuses it (np.load with "
                "allow_pickle=False fails). Re-save the model with the default "
                "weights_format='h5'.",
                path=label,
                where=_WEIGHTS_NPZ,
            ) from e
        raise CorruptFileError(
            f"{inner}: not a readable .npz file ({e}); the archive is damaged.",
            path=label,
            where=_WEIGHTS_NPZ,
        ) from e
    except (OSError, EOFError) as e:
        raise CorruptFileError(
            f"{inner}: not a readable .npz file ({type(e).__name__}: {e}); the archive is damaged.",
            path=label,
            where=_WEIGHTS_NPZ,
        ) from e
    raise CorruptFileError(
        f"{inner}: an .npz without pickled entries is not a layout Keras writes (Keras "
        "stores one pickled dict per object); re-save the model with weights_format='h5'.",
        path=label,
        where=_WEIGHTS_NPZ,
    )


# -- HDF5 files ---------------------------------------------------------------------------


def _read_hdf5(
    label: str,
    config: dict | None,
    limits: dict,
    keep_unordered: bool,
    config_if_unnamed: bool = False,
) -> KerasFile:
    with _h5.open_file(label, label) as f:
        reader = _h5.H5Reader(label, **limits)
        root_keys = reader.keys(f, "/")
        weights_only = (
            reader.attr(f, "layer_names", "/") is not None
            or reader.attr(f, "layer_names0", "/") is not None
        )
        if weights_only or "model_weights" in root_keys:
            fmt = "h5_weights" if weights_only else "h5_full"
            if not config_if_unnamed:
                _no_config_used(config, label, "legacy .h5 files list their layers themselves")
            return _read_legacy(reader, f, label, fmt)
        if {"layers", "vars", "_layer_checkpoint_dependencies"} & set(root_keys):
            tree = _V3Tree(reader, None)
            tree.keep_unordered = keep_unordered
            layers, top = tree.read(f, config)
            return KerasFile(
                path=label,
                format="weights_h5_v3",
                keras_version=None,
                backend=None,
                model_config=config,
                layer_weights=layers,
                dtype_policy=_policy_name(config),
                top_level_weights=top,
            )
        raise CorruptFileError(
            f"{label}: an HDF5 file, but not one Keras wrote: expected a root attribute "
            "'layer_names' (legacy save_weights), a group 'model_weights' (legacy "
            "model.save) or groups 'layers'/'vars' (Keras 3 .weights.h5); found groups "
            f"{sorted(root_keys)[:20]}.",
            path=label,
        )


def _read_legacy(reader: _h5.H5Reader, f: h5py.File, label: str, fmt: str) -> KerasFile:
    if fmt == "h5_full":
        group = reader.child(f, "model_weights", "model_weights")
        if not isinstance(group, h5py.Group):
            raise CorruptFileError(
                f"{label}: 'model_weights' is not a group; the legacy .h5 file is damaged.",
                path=label,
                where="model_weights",
            )
        gwhere = "model_weights"
    else:
        group, gwhere = f, ""
    layer_names = reader.text_list(group, "layer_names", gwhere or "/")
    if layer_names is None:
        raise CorruptFileError(
            f"{label}: {gwhere or '/'} has no attribute 'layer_names' (nor chunked "
            "'layer_names0', ...); a legacy Keras .h5 file always lists its layers there. The "
            "file is damaged or not a Keras file.",
            path=label,
            where=gwhere or "/",
        )
    _no_duplicates(layer_names, label, f"{gwhere or '/'} attribute 'layer_names'")
    version = reader.text(group, "keras_version", gwhere or "/")
    version = version or reader.text(f, "keras_version", "/") or "1"
    backend = reader.text(group, "backend", gwhere or "/") or reader.text(f, "backend", "/")
    model_config = training_config = None
    text = reader.text(f, "model_config", "/")
    if text is not None:
        model_config = _check_model_config(
            _parse_json(text, label, "attribute 'model_config'"),
            label,
            "attribute 'model_config'",
            allow_list=True,
        )
        _check_layer_entries(model_config, label, "attribute 'model_config'")
    text = reader.text(f, "training_config", "/")
    if text is not None:
        training_config = _parse_json(text, label, "attribute 'training_config'")
        if not isinstance(training_config, dict):
            raise CorruptFileError(
                f"{label}: attribute 'training_config': expected a JSON object, found a JSON "
                f"{type(training_config).__name__}; the file is damaged.",
                path=label,
                where="training_config",
            )
    entries = {_cfg_name(e): e for e in _cfg_layers(model_config) or [] if _cfg_name(e)}
    layers: dict[str, LayerWeights] = {}
    for name in layer_names:
        layers[name] = _legacy_layer(reader, group, gwhere, name, entries.get(name), label)
    top = None
    if "top_level_model_weights" in reader.keys(group, gwhere or "/"):
        top = _legacy_layer(reader, group, gwhere, "top_level_model_weights", None, label)
        top = top if top.arrays else None
    metadata = {}
    for key in ("keras_version", "backend"):
        value = reader.text(f, key, "/")
        if value is not None:
            metadata[key] = value
    return KerasFile(
        path=label,
        format=fmt,
        keras_version=version,
        backend=backend,
        model_config=model_config,
        layer_weights=layers,
        training_config=training_config,
        dtype_policy=_policy_name(model_config),
        metadata=metadata,
        top_level_weights=top,
    )


def _no_duplicates(names: list[str], label: str, where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CorruptFileError(
                f"{label}: {where} lists {name!r} twice; Keras writes unique names, so which "
                "entry is meant is ambiguous. The file is damaged or forged.",
                path=label,
                where=where,
            )
        seen.add(name)


def _legacy_layer(
    reader: _h5.H5Reader, group: h5py.Group, gwhere: str, name: str, entry, label: str
) -> LayerWeights:
    """One layer group of a legacy file: arrays strictly in its ``weight_names`` order."""
    where = f"{gwhere}/{name}" if gwhere else name
    layer_group = reader.resolve(group, name, gwhere)
    if layer_group is None:
        raise MissingWeightsError(
            f"{label}: layer {name!r} is listed in 'layer_names' but the file has no group "
            f"{where!r}; the file is incomplete. Save the weights again.",
            path=label,
            where=where,
        )
    if not isinstance(layer_group, h5py.Group):
        raise CorruptFileError(
            f"{label}: {where}: expected the group of layer {name!r}, found a dataset; the "
            "file is damaged.",
            path=label,
            where=where,
        )
    weight_names = reader.text_list(layer_group, "weight_names", where)
    if weight_names is None:
        if reader.keys(layer_group, where):
            raise CorruptFileError(
                f"{label}: {where}: the layer group holds {reader.keys(layer_group, where)[:8]} "
                "but no attribute 'weight_names' saying their order; the file is damaged.",
                path=label,
                where=where,
            )
        weight_names = []
    _no_duplicates(weight_names, label, f"{where} attribute 'weight_names'")
    arrays = []
    for weight_name in weight_names:
        at = f"{where}/{weight_name}"
        dataset = reader.resolve(layer_group, weight_name, where)
        if dataset is None:
            raise MissingWeightsError(
                f"{label}: layer {name!r} lists weight {weight_name!r} in 'weight_names' but "
                f"the file has no dataset {at!r}; the file is incomplete. Save the weights "
                "again.",
                path=label,
                where=at,
            )
        arrays.append(reader.array(dataset, at))
    return LayerWeights(
        name=name,
        arrays=arrays,
        weight_names=list(weight_names),
        class_name=_cfg_class(entry),
        config=entry,
        path=where,
    )


class _V3Tree:
    """Reads the Keras 3 / Keras 2.13+ weights tree (``layers/.../vars/<i>``)."""

    def __init__(self, reader: _h5.H5Reader, keras_version: str | None):
        self.reader = reader
        self.label = reader.label
        keras2 = keras_version is not None and keras_version.split(".")[0] in ("1", "2")
        self.snake = _snake_case_keras2 if keras2 else _snake_case_keras3
        self.visited: set[tuple[int, int]] = set()
        self.keep_unordered = False

    def read(
        self, f: h5py.File, model_config: dict | None
    ) -> tuple[dict[str, LayerWeights], LayerWeights | None]:
        reader = self.reader
        keys = reader.keys(f, "/")
        top = None
        if "vars" in keys:
            arrays, names, own_name = self.own_vars(f, "")
            if arrays:
                top = LayerWeights(
                    name=own_name or _cfg_name(model_config) or "model",
                    arrays=arrays,
                    weight_names=names,
                    class_name=_cfg_class(model_config),
                    path="vars",
                )
        members: list[LayerWeights] = []
        list_key = next(
            (k for k in ("layers", "_layer_checkpoint_dependencies") if k in keys), None
        )
        if list_key is not None:
            group = self.group(f, list_key, list_key)
            members, _ = self.container(
                group, list_key, _cfg_layers(model_config), _cfg_class(model_config), depth=1
            )
        else:  # a subclassed model: its layers sit under their attribute names
            for key in sorted(set(keys) - _ROOT_SKIP, key=_suffix_key):
                members.extend(self.build(self.group(f, key, key), key, key, None, depth=1)[0])
        layers: dict[str, LayerWeights] = {}
        for member in members:
            if member.name in layers:
                raise CorruptFileError(
                    f"{self.label}: two groups hold weights of a layer named {member.name!r} "
                    f"({layers[member.name].path!r} and {member.path!r}); Keras layer names are "
                    "unique in a model. The file is damaged or forged.",
                    path=self.label,
                    where=member.path,
                )
            layers[member.name] = member
        return layers, top

    # -- helpers ------------------------------------------------------------------------

    def group(self, parent: h5py.Group, key: str, where: str) -> h5py.Group:
        obj = self.reader.child(parent, key, where)
        if not isinstance(obj, h5py.Group):
            raise CorruptFileError(
                f"{self.label}: {where}: expected a group (a saved object or a list of them), "
                f"found a {type(obj).__name__}; Keras keeps arrays only in 'vars' groups. The "
                "file is damaged or not a Keras weights file.",
                path=self.label,
                where=where,
            )
        with _h5.converted(self.label, where, "identify the group"):
            ident = (obj.id.fileno, h5py.h5o.get_info(obj.id).addr)
        if ident in self.visited:
            raise UnsafeFileError(
                f"{self.label}: {where} is a second hard link to a group already read (a "
                "link cycle or shared subtree); Keras writes every object once. Refusing the "
                "file.",
                path=self.label,
                where=where,
            )
        self.visited.add(ident)
        return obj

    def has_vars(self, group: h5py.Group, where: str) -> bool:
        return "vars" in self.reader.keys(group, where)

    def peek_name(self, group: h5py.Group, where: str) -> str | None:
        if not self.has_vars(group, where):
            return None
        vars_group = self.reader.child(group, "vars", f"{where}/vars")
        if not isinstance(vars_group, h5py.Group):
            return None
        return self.reader.text(vars_group, "name", f"{where}/vars")

    def own_vars(self, group: h5py.Group, where: str) -> tuple[list, list[str], str | None]:
        """The ``vars/0..n-1`` arrays (numeric order), their paths, and the ``name`` attribute."""
        at = f"{where}/vars" if where else "vars"
        vars_group = self.group(group, "vars", at)
        keys = self.reader.keys(vars_group, at)
        expected = [str(i) for i in range(len(keys))]
        if sorted(keys) != sorted(expected):
            raise CorruptFileError(
                f"{self.label}: {at}: expected datasets named 0..{len(keys) - 1} (one per "
                f"variable, as Keras writes them), found {sorted(keys, key=_suffix_key)[:20]}; "
                "the file is damaged or not a Keras weights file.",
                path=self.label,
                where=at,
            )
        arrays, names = [], []
        for key in expected:
            path = f"{at}/{key}"
            arrays.append(self.reader.array(self.reader.child(vars_group, key, path), path))
            names.append(path)
        return arrays, names, self.reader.text(vars_group, "name", at)

    # -- objects and lists ---------------------------------------------------------------

    def node(
        self, group: h5py.Group, where: str, attr: str, entry: dict | None, depth: int
    ) -> LayerWeights:
        """One saved object (layer, cell, nested model) and everything below it."""
        self.check_depth(where, depth)
        arrays, names, own_name = self.own_vars(group, where)
        name = own_name or _cfg_name(entry) or attr
        parts: list[tuple[str, list[LayerWeights], bool]] = []
        for key in sorted(set(self.reader.keys(group, where)) - {"vars"}):
            at = f"{where}/{key}"
            sub = self.group(group, key, at)
            if self.has_vars(sub, at):
                child = self.node(sub, at, key, _child_config(entry, key), depth + 1)
                parts.append((key, [child], True))
            else:
                members, ordered = self.container(
                    sub, at, _member_configs(entry, key), _cfg_class(entry), depth + 1
                )
                parts.append((key, members, ordered))
        weighted = [p for p in parts if any(m.arrays for m in p[1])]
        if len(weighted) > 1 and any(p[0] not in _CHILD_RANK for p in weighted):
            raise UnsupportedLayerError(
                _cfg_class(entry),
                name,
                path=self.label,
                detail=(
                    f"its sub-objects {[p[0] for p in weighted]} at {where!r} all hold weights, "
                    "and Keras' get_weights() order among them (the order the layer created "
                    "them) is not recorded in the file; jrnn knows it only for the attributes "
                    f"{list(_CHILD_ORDER)}."
                ),
            )
        complete = all(ordered for _, _, ordered in weighted)
        for key, members, ordered in weighted:
            if not ordered and not self.keep_unordered:
                raise KerasFileError(
                    f"{self.label}: {where}/{key}: the list members "
                    f"{[m.path.rsplit('/', 1)[-1] for m in members]} of layer {name!r} have "
                    "different classes, and a weights file does not record their order (group "
                    "names are per-class counters). Pass config= (the model's config.json "
                    "dict, or read_keras_file of its .keras / .h5) to read_keras_file.",
                    path=self.label,
                    where=f"{where}/{key}",
                )
        parts.sort(key=lambda p: (_CHILD_RANK.get(p[0], len(_CHILD_RANK)), p[0]))
        children: dict[str, LayerWeights] = {}
        for key, members, _ in parts:
            for member in members:
                child_key = key if len(members) == 1 and member.path == f"{where}/{key}" else None
                child_key = child_key or member.name
                if child_key in children:
                    raise CorruptFileError(
                        f"{self.label}: {where}: two sub-objects would both be called "
                        f"{child_key!r} ({children[child_key].path!r}, {member.path!r}); the "
                        "file is damaged or forged.",
                        path=self.label,
                        where=member.path,
                    )
                children[child_key] = member
                arrays.extend(member.arrays)
                names.extend(member.weight_names)
        return LayerWeights(
            name=name,
            arrays=arrays,
            weight_names=names,
            children=children,
            class_name=_cfg_class(entry),
            config=entry,
            path=where,
            ordered=complete and all(m.ordered for _, ms, _ in weighted for m in ms),
            named=bool(own_name or _cfg_name(entry)),
        )

    def container(
        self,
        group: h5py.Group,
        where: str,
        configs: list | None,
        owner_class: str | None,
        depth: int,
    ) -> tuple[list[LayerWeights], bool]:
        """The members of a saved list, in list order; and whether that order is known."""
        self.check_depth(where, depth)
        keys = self.reader.keys(group, where)
        subs = {k: self.group(group, k, f"{where}/{k}") for k in keys}
        if configs is not None:
            plan = self.match(subs, where, configs, owner_class)
        else:
            plan = [(k, None) for k in sorted(keys, key=_suffix_key)]
        ordered = True
        members: list[LayerWeights] = []
        bases: set[str] = set()
        for key, entry in plan:
            built, built_ordered = self.build(subs[key], f"{where}/{key}", key, entry, depth + 1)
            members.extend(built)
            ordered = ordered and built_ordered
            if any(m.arrays for m in built):
                bases.add(_suffix_key(key)[0])
        if configs is None and len(bases) > 1:
            ordered = False
        used = {k for k, _ in plan}
        for key in sorted(set(keys) - used):
            at = f"{where}/{key}"
            extra = self.build(subs[key], at, key, None, depth + 1)[0]
            if any(m.arrays for m in extra):
                raise CorruptFileError(
                    f"{self.label}: {at} holds weights of {[m.name for m in extra]}, which the "
                    f"model config does not list under {where!r}; the weights do not belong to "
                    "this config. Pass the config of the model that saved the file.",
                    path=self.label,
                    where=at,
                )
        return members, ordered

    def build(
        self, group: h5py.Group, where: str, key: str, entry: dict | None, depth: int
    ) -> tuple[list[LayerWeights], bool]:
        """A group that is either one saved object (it has ``vars``) or a nested list."""
        if self.has_vars(group, where):
            return [self.node(group, where, key, entry, depth)], True
        return self.container(group, where, None, None, depth)

    def match(
        self, subs: dict[str, h5py.Group], where: str, configs: list, owner_class: str | None
    ) -> list[tuple[str, dict | None]]:
        """Pair each config entry with its group: by the ``vars`` name, else by Keras' path.

        Operations recorded in a Functional config (``keras.ops`` calls) are not layers and
        have no group.
        """
        configs = [e for e in configs if not (isinstance(e, dict) and is_op(e))]
        names = {k: self.peek_name(sub, f"{where}/{k}") for k, sub in subs.items()}
        plan: list[tuple[str, dict | None]] = []
        values = list(names.values())
        if subs and None not in values and len(set(values)) == len(values):
            by_name = {v: k for k, v in names.items()}
            for entry in configs:
                key = by_name.pop(_cfg_name(entry), None)
                if key is None:
                    self.missing(
                        entry,
                        where,
                        owner_class,
                        f"no group whose vars name is {_cfg_name(entry)!r}",
                    )
                    continue
                plan.append((key, entry))
            return plan
        counters: dict[str, int] = {}
        for entry in configs:
            cls = _cfg_class(entry) or ""
            if owner_class == "Sequential" and cls == "InputLayer":
                continue  # Sequential.layers leaves out its InputLayer, so the file does too
            base = self.snake(cls)
            counters[base] = counters.get(base, -1) + 1
            key = base if counters[base] == 0 else f"{base}_{counters[base]}"
            if key not in subs:
                self.missing(entry, where, owner_class, f"no group {where}/{key}")
                continue
            plan.append((key, entry))
        return plan

    def missing(self, entry, where: str, owner_class: str | None, found: str) -> None:
        if _cfg_class(entry) == "InputLayer":
            return  # InputLayers have no weights; Sequential models do not save theirs
        raise MissingWeightsError(
            f"{self.label}: the config lists layer {_cfg_name(entry)!r} "
            f"({_cfg_class(entry)}) under {where!r} but the weights file has {found}; the file "
            "does not hold this model's weights (or is incomplete). Pass the config of the "
            "model that saved the file, or save the weights again.",
            path=self.label,
            where=where,
        )

    def check_depth(self, where: str, depth: int) -> None:
        if depth > _h5.MAX_DEPTH:
            raise UnsafeFileError(
                f"{self.label}: {where} is nested {depth} groups deep, over the limit of "
                f"{_h5.MAX_DEPTH}; Keras models nest a handful of levels. Refusing the file.",
                path=self.label,
                where=where,
            )
