"""jrnn checkpoints: a model's Keras config and current weights, loadable without Keras.

A checkpoint is a directory holding two files:

``jrnn_checkpoint.json`` — a JSON object::

    {"format": "jrnn-checkpoint", "format_version": 1,
     "jrnn_version": "0.1.0", "save_id": "5f0c...", "keras_major": 3,
     "model_config": {"class_name": ..., "config": ...},   # the Keras model config
     "layers": {"lstm": ["lstm/cell/kernel", "lstm/cell/recurrent_kernel",
                         "lstm/cell/bias"],
                "dropout": [],
                "sub/gru": [...]}}                           # nested model "sub", layer "gru"

    ``layers`` maps every converted Keras layer (nested models' layers as
    ``"outer/inner"``) to the keys of its tensors in ``weights.safetensors``, in Keras
    ``get_weights()`` order (:func:`importers.keras_params`). ``keras_major`` is the Keras
    major version whose semantics the config has (``< 3``: Keras 2's ``hard_sigmoid`` and
    GRU default, see :mod:`importers.model`). ``save_id`` is a random id the weights file's
    ``__metadata__`` repeats: files of two different saves (a save cut short between its
    two files) are refused. Each layer's tensor keys are its parameters' paths in the jrnn
    module, in Keras order, and must be those of the rebuilt model.

``weights.safetensors`` — the safetensors format: an 8-byte little-endian unsigned header
    length ``N``; ``N`` bytes of UTF-8 JSON ``{key: {"dtype": "F32", "shape": [3, 20],
    "data_offsets": [begin, end]}, "__metadata__": {str: str}}`` (padded with spaces);
    then the data buffer: each tensor's bytes, C order, little-endian, at
    ``[begin, end)`` relative to the buffer start. Dtypes: ``F16 BF16 F32 F64 I8 I16 I32
    I64 U8 U16 U32 U64 BOOL``.

``optimizer.safetensors`` — only when saved with ``optimizer=``: the optimizer's state
    (``nnx.OptState`` variables: ``step``, ``opt_state``'s moments and counts, a dynamic
    loss scale's ``dynamic_scale`` / ``step_counter``), each under its path in
    ``nnx.state(optimizer)`` joined by ``/``; the JSON lists those keys under
    ``"optimizer"`` and the file repeats the ``save_id``. :func:`restore_optimizer` loads
    it into an optimizer built for the loaded model.

Reading is bounded and strict: the header length must fit the file and
:data:`MAX_HEADER_BYTES`; every entry needs exactly those three fields; dtype names are
checked; ``end - begin`` must equal the shape's element count times the item size; the
tensors must tile the buffer exactly (no gaps, no overlap, nothing after the last), so
the buffer's declared size must equal the file's; nothing is allocated before these
checks pass. Problems raise :class:`~importers.errors.CorruptFileError` (malformed),
:class:`~importers.errors.UnsafeFileError` (over the limits),
:class:`~importers.errors.MissingWeightsError` /
:class:`~importers.errors.ExtraWeightsError` (tensors named by the JSON but absent,
tensors or layers nobody uses). Loading imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from importers._files import _check_layer_entries, _check_model_config, _parse_json
from importers._write import atomic_write
from importers.errors import (
    CorruptFileError,
    ExtraWeightsError,
    KerasFileError,
    MissingWeightsError,
    UnsafeFileError,
)

__all__ = [
    "CHECKPOINT_JSON",
    "OPTIMIZER_FILE",
    "WEIGHTS_FILE",
    "load_checkpoint",
    "read_safetensors",
    "restore_optimizer",
    "save_checkpoint",
    "write_safetensors",
]

CHECKPOINT_JSON = "jrnn_checkpoint.json"
WEIGHTS_FILE = "weights.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
FORMAT = "jrnn-checkpoint"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 100 * 1024**2  # safetensors' own limit
MAX_JSON_BYTES = 256 * 1024**2
DEFAULT_MAX_TOTAL_BYTES = 16 * 1024**3

_DTYPES = {
    "F16": "<f2",
    "F32": "<f4",
    "F64": "<f8",
    "I8": "i1",
    "I16": "<i2",
    "I32": "<i4",
    "I64": "<i8",
    "U8": "u1",
    "U16": "<u2",
    "U32": "<u4",
    "U64": "<u8",
    "BOOL": "?",
}
_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
_MAX_RANK = 64  # NumPy's limit on an array's dimensions


def _bf16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def _dtype_of(name: str) -> np.dtype:
    return _bf16() if name == "BF16" else np.dtype(_DTYPES[name])


def _name_of(dtype: np.dtype) -> str:
    if dtype.name == "bfloat16":
        return "BF16"
    for name, code in _DTYPES.items():
        if np.dtype(code) == dtype:
            return name
    raise ValueError(
        f"safetensors has no dtype for {dtype}; supported: {sorted([*_DTYPES, 'BF16'])}."
    )


# -- safetensors ---------------------------------------------------------------------------


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, Any], metadata: dict | None = None
) -> None:
    """Write ``{key: array}`` to ``path`` in the safetensors format (see module doc).

    Tensors are written in the mapping's order, each C-contiguous little-endian; the
    header is padded with spaces to a multiple of 8 bytes. The file is replaced atomically.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    offset = 0
    for key, value in tensors.items():
        if not isinstance(key, str):
            raise ValueError(
                f"write_safetensors: tensor keys must be strings; received {key!r} "
                f"({type(key).__name__})."
            )
        if key == "__metadata__":
            raise ValueError("'__metadata__' is reserved by safetensors; rename the tensor.")
        array = np.asarray(value)
        if array.dtype.name != "bfloat16" and array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        shape = [int(d) for d in array.shape]  # before ascontiguousarray, which makes 0-d 1-d
        array = np.ascontiguousarray(array)
        nbytes = array.size * array.dtype.itemsize
        header[key] = {
            "dtype": _name_of(array.dtype),
            "shape": shape,
            "data_offsets": [offset, offset + nbytes],
        }
        arrays.append(array)
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"write_safetensors: {path!r} is a directory, not a file path.")

    def write(f):
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for array in arrays:
            f.write(array.tobytes(order="C"))

    atomic_write(os.path.abspath(path), write)


def read_safetensors(
    path: str | os.PathLike, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file strictly: ``({key: array}, metadata)``.

    Args:
        path: the file.
        max_total_bytes: the largest file accepted.

    Raises:
        CorruptFileError: truncated file, header length past the end, header not a JSON
            object, an entry without exactly ``dtype``/``shape``/``data_offsets``, an
            unknown dtype, a shape that is not a list of non-negative integers, offsets
            whose length disagrees with the shape, overlapping tensors, gaps or trailing
            bytes in the buffer.
        UnsafeFileError: the file or its header is over the limits.
    """
    label = os.fspath(path)
    size = os.path.getsize(label)
    if size > max_total_bytes:
        raise UnsafeFileError(
            f"{label}: the file is {size} bytes, over the limit of {max_total_bytes} "
            "(max_total_bytes); refusing to read it.",
            path=label,
        )
    with open(label, "rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise CorruptFileError(
                f"{label}: expected an 8-byte header length, the file has {len(prefix)} "
                "bytes; it is truncated or not a safetensors file.",
                path=label,
            )
        (n,) = struct.unpack("<Q", prefix)
        if n > MAX_HEADER_BYTES:
            raise UnsafeFileError(
                f"{label}: the header declares {n} bytes, over the limit of "
                f"{MAX_HEADER_BYTES}; refusing to read it.",
                path=label,
                where="header",
            )
        if n > size - 8:
            raise CorruptFileError(
                f"{label}: the header declares {n} bytes but only {size - 8} follow the "
                "length; the file is truncated or not a safetensors file.",
                path=label,
                where="header",
            )
        raw = f.read(n)
        header = _parse_json(raw.rstrip(b" "), label, "safetensors header")
        if not isinstance(header, dict):
            raise CorruptFileError(
                f"{label}: the safetensors header must be a JSON object, found a JSON "
                f"{type(header).__name__}.",
                path=label,
                where="header",
            )
        metadata = header.pop("__metadata__", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise CorruptFileError(
                f"{label}: '__metadata__' must map strings to strings; found {metadata!r:.200}.",
                path=label,
                where="__metadata__",
            )
        buffer_size = size - 8 - n
        plan = sorted(
            ((_entry(label, key, spec, buffer_size), key) for key, spec in header.items()),
            key=lambda item: (item[0][2], item[0][3]),
        )
        position = 0
        for (_, _, begin, end), key in plan:
            if begin != position:
                what = "overlaps the previous tensor" if begin < position else "leaves a gap"
                raise CorruptFileError(
                    f"{label}: tensor {key!r} starts at byte {begin}, expected {position}: "
                    f"it {what}; safetensors buffers are tiled exactly.",
                    path=label,
                    where=key,
                )
            position = end
        if position != buffer_size:
            raise CorruptFileError(
                f"{label}: the tensors cover {position} bytes of the data buffer, the file "
                f"holds {buffer_size}; the file is truncated or has trailing bytes.",
                path=label,
                where="data",
            )
        data = f.read(buffer_size)
    if len(data) != buffer_size:
        raise CorruptFileError(
            f"{label}: read {len(data)} bytes of data, expected {buffer_size}; the file "
            "changed while it was read.",
            path=label,
        )
    tensors = {}
    for (dtype, shape, begin, end), key in plan:
        count = (end - begin) // dtype.itemsize
        tensors[key] = np.frombuffer(data, dtype, count, begin).reshape(shape).copy()
    order = {key: tensors[key] for key in header}
    return order, dict(metadata)


def _entry(label: str, key: str, spec: Any, buffer_size: int):
    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(
            f"{label}: tensor {key!r}: {what}; the safetensors header is damaged or forged.",
            path=label,
            where=key,
        )

    if not isinstance(spec, dict) or set(spec) != _ENTRY_KEYS:
        found = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise bad(f"expected an object with keys {sorted(_ENTRY_KEYS)}, found {found}")
    name, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not isinstance(name, str) or (name not in _DTYPES and name != "BF16"):
        raise bad(f"unknown dtype {name!r} (supported: {sorted([*_DTYPES, 'BF16'])})")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise bad(f"shape must be a list of non-negative integers, found {shape!r:.200}")
    if len(shape) > _MAX_RANK:
        raise bad(f"shape has {len(shape)} dimensions, more than NumPy's {_MAX_RANK}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise bad(f"data_offsets must be [begin, end] integers, found {offsets!r:.200}")
    begin, end = offsets
    if not 0 <= begin <= end <= buffer_size:
        raise bad(
            f"data_offsets [{begin}, {end}] lie outside the data buffer of {buffer_size} bytes"
        )
    dtype = _dtype_of(name)
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize != end - begin:
        raise bad(
            f"shape {shape} of {name} needs {count * dtype.itemsize} bytes, data_offsets "
            f"give {end - begin}"
        )
    extent = dtype.itemsize  # NumPy's bound (an empty array too): non-zero sizes x item size
    for d in shape:
        extent *= d or 1
    if extent >= 2**63:
        raise bad(f"shape {shape!r:.200} is larger than any array can be")
    return dtype, tuple(shape), begin, end


# -- checkpoints ---------------------------------------------------------------------------


def _layer_tensors(model: Any, prefix: str = "") -> dict[str, list[tuple[str, np.ndarray]]]:
    """``{layer key: [(tensor key, array)]}`` for every converted layer, nested included."""
    from flax import nnx

    from importers.model import ImportedModel
    from importers.weights import keras_params

    out: dict[str, list[tuple[str, np.ndarray]]] = {}

    def add(key: str, tensors: list) -> None:
        if key in out:  # "a/b" at the top and "b" inside the nested model "a"
            raise ValueError(
                f"save_checkpoint: two layers are both named {key!r} in the checkpoint (a "
                "layer name holding '/' meets a nested model's layer); rename one of them."
            )
        out[key] = tensors

    for name, layer in model.layers.items():
        key = f"{prefix}{name}"
        if isinstance(layer, ImportedModel):
            for inner, tensors in _layer_tensors(layer, key + "/").items():
                add(inner, tensors)
            continue
        if isinstance(getattr(layer, "layer", None), ImportedModel):  # TimeDistributed(model)
            for inner, tensors in _layer_tensors(layer.layer, f"{key}/{layer.layer.name}/").items():
                add(inner, tensors)
            continue
        paths = {
            id(v): "/".join(str(p) for p in path)
            for path, v in nnx.iter_graph(layer)
            if isinstance(v, nnx.Variable)
        }
        tensors, used = [], set()
        for i, param in enumerate(keras_params(layer)):
            tensor = f"{key}/{paths.get(id(param), i)}"
            if tensor in used:
                tensor = f"{key}/{i}"
            used.add(tensor)
            tensors.append((tensor, np.asarray(param[...])))
        add(key, tensors)
    return out


def _optimizer_tensors(optimizer: Any) -> dict[str, Any]:
    """``{key: nnx.Variable}`` for every ``nnx.OptState`` of ``optimizer`` (its step, its
    optax state, a dynamic loss scale's), keyed by its path joined by ``/``."""
    from flax import nnx

    if not isinstance(optimizer, nnx.Optimizer):
        raise TypeError(
            "checkpoint: `optimizer` must be an nnx.Optimizer (or nnx.ModelAndOptimizer); "
            f"received {type(optimizer).__name__}."
        )
    out = {}
    for path, variable in nnx.to_flat_state(nnx.state(optimizer, nnx.OptState)):
        key = "/".join(str(p) for p in path)
        value = np.asarray(variable.get_value())
        if value.dtype.kind not in "fiub" and value.dtype.name != "bfloat16":
            raise ValueError(
                f"checkpoint: the optimizer's state {key!r} is {value.dtype}, which a "
                "checkpoint cannot hold (numbers only)."
            )
        out[key] = variable
    return out


def save_checkpoint(model: Any, path: str | os.PathLike, *, optimizer: Any = None) -> None:
    """Save an :class:`importers.ImportedModel` as a jrnn checkpoint directory.

    Args:
        model: the model; its *current* parameter values are saved, with the Keras config
            it was rebuilt from. Stateful layers' states are not saved (nor are they in
            Keras' files): a loaded model starts from zero states.
        path: the directory (created if needed; the checkpoint files in it are replaced,
            nothing else is touched).
        optimizer: an ``nnx.Optimizer`` of ``model`` whose state to save too (``step``,
            the optax state, a dynamic loss scale), for :func:`restore_optimizer` to
            resume training from.

    Example:
        >>> import tempfile, numpy as np
        >>> from importers.model import ImportedModel
        >>> config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        ...     {"class_name": "InputLayer", "config": {"batch_shape": [None, 5, 3], "name": "x"}},
        ...     {"class_name": "LSTM", "config": {"name": "lstm", "units": 4}}]}}
        >>> arrays = [np.full((3, 16), 0.1, "f4"), np.zeros((4, 16), "f4"), np.zeros(16, "f4")]
        >>> model = ImportedModel(config, lambda layer_name: arrays)
        >>> path = tempfile.mkdtemp()
        >>> save_checkpoint(model, path)
        >>> restored = load_checkpoint(path)  # imports neither TensorFlow nor Keras
        >>> restored(np.ones((2, 5, 3), "f4")).shape
        (2, 4)
    """
    import jrnn
    from importers.export import _with_trainable
    from importers.model import ImportedModel

    if not isinstance(model, ImportedModel):
        raise TypeError(
            "save_checkpoint: expected an importers.ImportedModel (from importers.load); "
            f"received {type(model).__name__}."
        )
    directory = os.fspath(path)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"save_checkpoint: {directory!r} exists and is not a directory.")
    optimizer_state = None if optimizer is None else _optimizer_tensors(optimizer)
    layers = _layer_tensors(model)
    tensors: dict[str, np.ndarray] = {}
    for name, items in layers.items():
        for key, array in items:
            if key in tensors:
                raise ValueError(
                    f"save_checkpoint: layer {name!r}'s tensor key {key!r} is also another "
                    "layer's (layer names holding '/'); rename the layer."
                )
            tensors[key] = array
    for file in (WEIGHTS_FILE, OPTIMIZER_FILE, CHECKPOINT_JSON):
        if os.path.isdir(os.path.join(directory, file)):
            raise ValueError(
                f"save_checkpoint: {os.path.join(directory, file)!r} is a directory; the "
                "checkpoint writes a file there."
            )
    os.makedirs(directory, exist_ok=True)
    # Both files carry one random id: a save cut short between the two files (the weights
    # replaced, the JSON not) leaves files whose ids differ, which load_checkpoint refuses.
    save_id = uuid.uuid4().hex
    write_safetensors(
        os.path.join(directory, WEIGHTS_FILE),
        tensors,
        metadata={"format": FORMAT, "jrnn_version": jrnn.__version__, "save_id": save_id},
    )
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "jrnn_version": jrnn.__version__,
        "save_id": save_id,
        "keras_major": int(model.keras_major),
        # Each layer's trainable as the model holds it now (set after import, say).
        "model_config": _with_trainable(model.model_config, model),
        "layers": {name: [k for k, _ in items] for name, items in layers.items()},
    }
    if optimizer_state is not None:
        write_safetensors(
            os.path.join(directory, OPTIMIZER_FILE),
            {k: np.asarray(v.get_value()) for k, v in optimizer_state.items()},
            metadata={"format": FORMAT, "jrnn_version": jrnn.__version__, "save_id": save_id},
        )
        manifest["optimizer"] = list(optimizer_state)
    atomic_write(
        os.path.join(directory, CHECKPOINT_JSON), json.dumps(manifest, indent=1).encode("utf-8")
    )


def _read_manifest(label: str) -> dict:
    path = os.path.join(label, CHECKPOINT_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{label}: not a jrnn checkpoint (no {CHECKPOINT_JSON}).")
    size = os.path.getsize(path)
    if size > MAX_JSON_BYTES:
        raise UnsafeFileError(
            f"{path}: {size} bytes, over the limit of {MAX_JSON_BYTES}; refusing to parse it.",
            path=path,
        )
    with open(path, "rb") as f:
        manifest = _parse_json(f.read(), path, CHECKPOINT_JSON)

    def bad(what: str) -> CorruptFileError:
        return CorruptFileError(f"{path}: {what}.", path=path, where=CHECKPOINT_JSON)

    if not isinstance(manifest, dict):
        raise bad(f"expected a JSON object, found a JSON {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise bad(f"'format' must be {FORMAT!r}, found {manifest.get('format')!r}")
    version = manifest.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise KerasFileError(
            f"{path}: format_version {version!r} is not supported by this jrnn (it reads "
            f"version {FORMAT_VERSION}); upgrade jrnn or save the checkpoint again.",
            path=path,
            where="format_version",
        )
    major = manifest.get("keras_major")
    if not isinstance(major, int) or isinstance(major, bool) or not 1 <= major <= 3:
        raise bad(f"'keras_major' must be 1, 2 or 3, found {major!r}")
    config = manifest.get("model_config")
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("class_name"), str)
        or not isinstance(config.get("config"), dict)
    ):
        raise bad("'model_config' must be a Keras model config {'class_name', 'config'}")
    _check_model_config(config, path, "'model_config'", allow_list=False)
    _check_layer_entries(config, path, "'model_config'")
    if not isinstance(manifest.get("save_id", ""), str):
        raise bad(f"'save_id' must be a string, found {manifest.get('save_id')!r:.100}")
    layers = manifest.get("layers")
    if not isinstance(layers, dict) or not all(
        isinstance(v, list) and all(isinstance(k, str) for k in v) for v in layers.values()
    ):
        raise bad("'layers' must map layer names to lists of tensor keys")
    return manifest


def _read_tensors(label: str, manifest: dict, name: str, max_total_bytes: int) -> dict:
    """The tensors of the checkpoint file ``name``, which must exist and come from the
    save ``manifest`` records (its ``save_id``)."""
    file = os.path.join(label, name)
    if not os.path.isfile(file):
        raise MissingWeightsError(f"{label}: the checkpoint has no {name}.", path=label, where=name)
    tensors, metadata = read_safetensors(file, max_total_bytes=max_total_bytes)
    if metadata.get("save_id") != manifest.get("save_id"):
        raise CorruptFileError(
            f"{label}: {name} and {CHECKPOINT_JSON} come from different saves (save ids "
            f"{metadata.get('save_id')!r} and {manifest.get('save_id')!r}): a save was cut "
            "short or one file was copied over; save the checkpoint again.",
            path=label,
            where="save_id",
        )
    return tensors


def load_checkpoint(
    path: str | os.PathLike,
    *,
    custom_layers: dict | None = None,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Any:
    """Rebuild the :class:`importers.ImportedModel` saved by :func:`save_checkpoint`.

    Imports neither TensorFlow nor Keras.

    Args:
        path: the checkpoint directory.
        custom_layers: as for :func:`importers.load` (``{"ClassName": factory}``).
        max_total_bytes: the largest ``weights.safetensors`` accepted.

    Returns:
        The model, with the saved parameter values.

    Raises:
        FileNotFoundError: ``path`` holds no ``jrnn_checkpoint.json``.
        CorruptFileError, UnsafeFileError: a malformed or oversized file (see module doc).
        MissingWeightsError: a tensor the JSON lists is absent from the weights file, or a
            layer of the config has no entry in ``layers``.
        ExtraWeightsError: tensors or layers that the model does not use.
    """
    from importers.model import ImportedModel

    label = os.fspath(path)
    manifest = _read_manifest(label)
    weights_path = os.path.join(label, WEIGHTS_FILE)
    tensors = _read_tensors(label, manifest, WEIGHTS_FILE, max_total_bytes)
    layers: dict[str, list[str]] = manifest["layers"]
    for name, keys in layers.items():
        for key in keys:
            if key not in tensors:
                raise MissingWeightsError(
                    f"{weights_path}: layer {name!r} needs tensor {key!r} (per "
                    f"{CHECKPOINT_JSON}), which the file lacks.",
                    path=weights_path,
                    where=key,
                )
    listed = {k for keys in layers.values() for k in keys}
    unused = [k for k in tensors if k not in listed]
    if unused:
        raise ExtraWeightsError(
            f"{weights_path}: tensors {unused[:10]} belong to no layer of {CHECKPOINT_JSON}; "
            "refusing to drop them.",
            path=weights_path,
            where=unused[0],
        )
    asked: set[str] = set()

    def weights(name: str) -> list:
        if name not in layers:
            raise MissingWeightsError(
                f"{label}: the model config has a layer {name!r}, which {CHECKPOINT_JSON} "
                f"does not list (it lists {sorted(layers)[:20]}).",
                path=label,
                where=name,
            )
        asked.add(name)
        return [tensors[k] for k in layers[name]]

    model = ImportedModel(
        manifest["model_config"], weights, custom_layers or {}, manifest["keras_major"]
    )
    for name, entries in _layer_tensors(model).items():
        expected = [key for key, _ in entries]
        if name in layers and layers[name] != expected:  # as save_checkpoint names them
            raise CorruptFileError(
                f"{label}: {CHECKPOINT_JSON} lists the tensors {layers[name][:8]} for layer "
                f"{name!r}, whose parameters are {expected[:8]} in Keras order; the file was "
                "altered.",
                path=label,
                where=name,
            )
        for key, value in entries:  # jrnn writes every parameter in its own dtype
            if key in tensors and tensors[key].dtype != value.dtype:
                raise CorruptFileError(
                    f"{weights_path}: tensor {key!r} is stored as {tensors[key].dtype}, but "
                    f"the parameter it loads into is {value.dtype} (the model config's "
                    "dtype); a checkpoint holds every parameter in its own dtype, so the "
                    "file was altered.",
                    path=weights_path,
                    where=key,
                )
    never = sorted(set(layers) - asked)
    if any(layers[n] for n in never):
        raise ExtraWeightsError(
            f"{label}: {CHECKPOINT_JSON} lists weights for layers {never[:10]} that the "
            "model config does not have; refusing to drop them.",
            path=label,
            where=never[0],
        )
    return model


def restore_optimizer(
    path: str | os.PathLike,
    optimizer: Any,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> None:
    """Load the optimizer state :func:`save_checkpoint` saved (``optimizer=``) into
    ``optimizer``, in place: build it as the saved one was (the same optax
    transformation and ``wrt``) for the model :func:`load_checkpoint` returned. For a
    dynamic loss scale, call the train step's ``init(optimizer)`` first.

    Example::

        model = importers.load_checkpoint("ckpt")
        optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
        step = jrnn.training.make_train_step("mse", loss_scale="dynamic")
        step.init(optimizer)  # the loss-scale state, to restore into
        importers.restore_optimizer("ckpt", optimizer)

    Raises:
        FileNotFoundError: not a checkpoint.
        KerasFileError: the checkpoint was saved without an optimizer.
        CorruptFileError, UnsafeFileError: a malformed, oversized or mismatched file.
        MissingWeightsError / ExtraWeightsError: the saved state lacks some of
            ``optimizer``'s state, or holds state it has not (another optax
            transformation, another ``wrt``, or a loss scale).
        ValueError: a state of another shape or dtype than ``optimizer``'s.
    """
    label = os.fspath(path)
    manifest = _read_manifest(label)
    keys = manifest.get("optimizer")
    if keys is None:
        raise KerasFileError(
            f"{label}: the checkpoint holds no optimizer state (save_checkpoint was called "
            "without optimizer=).",
            path=label,
            where="optimizer",
        )
    file = os.path.join(label, OPTIMIZER_FILE)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CorruptFileError(
            f"{label}: 'optimizer' in {CHECKPOINT_JSON} must be a list of tensor keys.",
            path=label,
            where="optimizer",
        )
    tensors = _read_tensors(label, manifest, OPTIMIZER_FILE, max_total_bytes)
    if sorted(tensors) != sorted(keys):
        raise CorruptFileError(
            f"{file}: its tensors are not the ones {CHECKPOINT_JSON} lists; the file was altered.",
            path=file,
            where="optimizer",
        )
    variables = _optimizer_tensors(optimizer)
    missing = [k for k in variables if k not in tensors]
    if missing:
        raise MissingWeightsError(
            f"{file}: the optimizer has state {missing[:10]} that the checkpoint lacks: it was "
            "saved from another optax transformation or `wrt`.",
            path=file,
            where=missing[0],
        )
    extra = [k for k in tensors if k not in variables]
    if extra:
        hint = (
            " (a dynamic loss scale: call the train step's init(optimizer) first)"
            if {"dynamic_scale", "step_counter"} & set(extra)
            else ""
        )
        raise ExtraWeightsError(
            f"{file}: the checkpoint holds optimizer state {extra[:10]} that this optimizer "
            f"has not{hint}; refusing to drop it.",
            path=file,
            where=extra[0],
        )
    for key, variable in variables.items():
        want = np.asarray(variable.get_value())
        if tensors[key].shape != want.shape or tensors[key].dtype != want.dtype:
            raise ValueError(
                f"restore_optimizer: {file}: state {key!r} is {tensors[key].dtype} "
                f"{tensors[key].shape}; this optimizer's is {want.dtype} {want.shape}."
            )
    import jax.numpy as jnp

    for key, variable in variables.items():
        variable.set_value(jnp.asarray(tensors[key]))
