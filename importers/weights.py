"""``load_weights``: Keras weight files into jrnn modules the user built (h5py only).

Files read:

* Keras 3 ``.weights.h5`` (and the ``model.weights.h5`` inside a ``.keras`` zip): a layer
  lives at ``layers/<snake_case_class>[_N]/`` and is identified by the ``name`` attribute
  of its ``vars`` group; its variables are ``vars/0``, ``vars/1``... (numeric order); an
  RNN's cell is at ``cell/vars``, a stack's cells at ``cell/cells/<snake_class>[_N]/vars``,
  Bidirectional's directions at ``forward_layer``/``backward_layer``, TimeDistributed's
  inner layer at ``layer``.
* Legacy HDF5 (Keras 1/2/tf.keras ``save``/``save_weights``, Keras 3's legacy writer): layer
  groups under ``model_weights`` (full model) or at the root (weights only), arrays read in
  the order of each group's ``weight_names`` attribute (chunked ``weight_names0``... too).

Arrays are assigned in Keras' ``get_weights()`` order to the module's parameters, with
every shape checked. Keras 1/2 conversions (CuDNN biases into LSTM/GRU, Keras 1 per-gate
arrays) are in :mod:`importers.layouts`; this module loads the arrays as stored.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import numpy as np
from flax import nnx

MAX_MEMBER_BYTES = 2 * 1024**3

_KERAS_CELL_NAMES = {
    "LSTMCell": "lstm_cell",
    "GRUCell": "gru_cell",
    "SimpleRNNCell": "simple_rnn_cell",
    "ConvLSTMCell": "conv_lstm_cell",
    "IndRNNCell": "ind_rnn_cell",
}


def keras_params(module: nnx.Module) -> list[nnx.Param]:
    """The module's variables in Keras' ``get_weights()`` order.

    A module that is not a jrnn recurrent layer, cell or wrapper declares its order with a
    ``keras_weights()`` method returning its ``nnx.Variable``s (non-trainable ones, e.g.
    BatchNormalization's moving statistics, included where Keras puts them).
    """
    import jrnn

    if hasattr(module, "keras_weights"):
        return list(module.keras_weights())
    if isinstance(module, jrnn.Bidirectional):
        return keras_params(module.forward_layer) + keras_params(module.backward_layer)
    if isinstance(module, jrnn.TimeDistributed):
        return keras_params(module.layer)
    if isinstance(module, jrnn.RNN):
        return keras_params(module.cell)
    if isinstance(module, jrnn.StackedRNNCells):
        return [p for cell in module.cells for p in keras_params(cell)]
    names = (
        ("kernel", "recurrent_kernel", "bias")
        if isinstance(module, jrnn.RNNCellBase)
        else ("kernel", "bias")
    )
    return [getattr(module, n) for n in names if isinstance(getattr(module, n, None), nnx.Param)]


def _vars(group, path: str) -> list[np.ndarray]:
    if "vars" not in group:
        raise ValueError(f"{path}: no `vars` group in the weights file.")
    datasets = group["vars"]
    return [_read(datasets[k], f"{path}/vars/{k}") for k in sorted(datasets, key=int)]


def _read(dataset, where: str) -> np.ndarray:
    if dataset.dtype.kind not in "fiu" or dataset.size * dataset.dtype.itemsize > MAX_MEMBER_BYTES:
        raise ValueError(
            f"{where}: refusing dataset of dtype {dataset.dtype} and shape "
            f"{dataset.shape} (numeric arrays up to {MAX_MEMBER_BYTES} bytes only)."
        )
    return np.asarray(dataset[()])


def _keras3_arrays(group, module: nnx.Module, path: str) -> list[np.ndarray]:
    import jrnn

    if isinstance(module, jrnn.Bidirectional):
        return _keras3_arrays(
            group["forward_layer"], module.forward_layer, path + "/forward_layer"
        ) + _keras3_arrays(group["backward_layer"], module.backward_layer, path + "/backward_layer")
    if isinstance(module, jrnn.TimeDistributed):
        return _keras3_arrays(group["layer"], module.layer, path + "/layer")
    if isinstance(module, jrnn.RNN):
        cell_group = group["cell"]
        if isinstance(module.cell, jrnn.StackedRNNCells):
            counts: dict[str, int] = {}
            arrays = []
            for cell in module.cell.cells:
                base = _KERAS_CELL_NAMES.get(type(cell).__name__, type(cell).__name__.lower())
                n = counts.get(base, 0)
                counts[base] = n + 1
                name = base if n == 0 else f"{base}_{n}"
                arrays += _vars(cell_group["cells"][name], f"{path}/cell/cells/{name}")
            return arrays
        return _vars(cell_group, path + "/cell")
    return _vars(group, path)


def _find_layer(root, name: str):
    """The group whose ``vars`` attribute ``name`` equals ``name`` (searched depth-first)."""
    stack = [("", root)]
    while stack:
        path, group = stack.pop()
        for key in group:
            child = group[key]
            if not hasattr(child, "keys"):
                continue
            child_path = f"{path}/{key}" if path else key
            if key == "vars":
                continue
            vars_group = child.get("vars")
            label = vars_group.attrs.get("name") if vars_group is not None else None
            if isinstance(label, bytes):
                label = label.decode()
            if label == name:
                return child, child_path
            stack.append((child_path, child))
    return None, None


def _attr_list(group, name: str) -> list[str] | None:
    if name in group.attrs:
        values = list(group.attrs[name])
    elif f"{name}0" in group.attrs:
        values, k = [], 0
        while f"{name}{k}" in group.attrs:
            values += list(group.attrs[f"{name}{k}"])
            k += 1
    else:
        return None
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _legacy_arrays(root, name: str, path: str) -> list[np.ndarray] | None:
    weights_root = root["model_weights"] if "model_weights" in root else root
    if _attr_list(weights_root, "layer_names") is None or name not in weights_root:
        return None
    group = weights_root[name]
    weight_names = _attr_list(group, "weight_names") or []
    arrays = []
    for weight_name in weight_names:
        if weight_name not in group:
            raise ValueError(
                f"{path}: layer {name!r} lists weight {weight_name!r} but the file "
                "has no such dataset."
            )
        arrays.append(_read(group[weight_name], f"{path}:{name}/{weight_name}"))
    return arrays


def _open(source: str):
    import h5py

    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
            if "model.weights.h5" not in names:
                raise ValueError(
                    f"{source}: a .keras archive without model.weights.h5 (members: {names})."
                )
            info = archive.getinfo("model.weights.h5")
            if info.file_size > MAX_MEMBER_BYTES:
                raise ValueError(
                    f"{source}: model.weights.h5 declares {info.file_size} bytes, "
                    f"over the {MAX_MEMBER_BYTES}-byte limit."
                )
            data = archive.read("model.weights.h5")
        return h5py.File(io.BytesIO(data), "r")
    try:
        return h5py.File(source, "r")
    except OSError as error:
        raise ValueError(f"{source}: not a readable HDF5 or .keras file ({error}).") from error


def load_weights(
    target: Mapping[str, nnx.Module], source: str, *, strict: bool = True
) -> list[str]:
    """Load a Keras weights file into jrnn modules: ``target = {keras_layer_name: module}``.

    Returns the names of the layers loaded. With ``strict=True`` (default) a layer missing
    from the file, or a count or shape mismatch, raises ``ValueError`` naming the file,
    layer, weight, expected and received shapes, and nothing is assigned; with
    ``strict=False`` such layers are skipped and left out of the returned list.
    """
    planned: list[tuple[nnx.Param, np.ndarray]] = []
    loaded = []
    with _open(source) as root:
        for name, module in target.items():
            params = keras_params(module)
            arrays = _legacy_arrays(root, name, source)
            if arrays is None:
                group, path = _find_layer(root, name)
                if group is None:
                    if strict:
                        raise ValueError(f"{source}: no layer named {name!r} in the file.")
                    continue
                arrays = _keras3_arrays(group, module, f"{source}:{path}")
            try:
                if len(arrays) != len(params):
                    raise ValueError(
                        f"{source}: layer {name!r} has {len(arrays)} weights in the "
                        f"file; the jrnn module expects {len(params)}."
                    )
                for k, (param, array) in enumerate(zip(params, arrays)):
                    if tuple(param.shape) != array.shape:
                        raise ValueError(
                            f"{source}: layer {name!r} weight {k}: expected shape "
                            f"{tuple(param.shape)}, received {array.shape}."
                        )
            except ValueError:
                if strict:
                    raise
                continue
            planned += list(zip(params, arrays))
            loaded.append(name)
    for param, array in planned:
        param.set_value(np.asarray(array, dtype=param[...].dtype))
    return loaded


__all__ = ["keras_params", "load_weights"]
