"""``load_weights``: Keras weight files into jrnn modules the user built.

Every file is read by :func:`importers.read_keras_file` (bounded, validated, no pickle,
no code; see :mod:`importers._files` for the layouts): ``.keras`` archives, Keras 3
``.weights.h5``, and legacy HDF5 files of Keras 1/2/3 and tf.keras (``model.save`` and
``save_weights``). Layers are matched by their Keras name; a layer's arrays come in
Keras' ``get_weights()`` order, which is the order of :func:`keras_params`, so every
weight naming variant of the files (``lstm_1/kernel:0``, ``lstm/lstm_cell/kernel:0``,
``forward_lstm_1/...``, stacked cells ``rnn/stacked_rnn_cells/lstm_cell/...``, IndRNN's
``input_kernel``) loads the same way. The one order a Keras 3 ``.weights.h5`` does not
record, stacked cells of mixed classes (groups ``lstm_cell``, ``gru_cell``,
``lstm_cell_1``), is recovered from the jrnn cells' classes as Keras names the groups.

Loading is all or nothing: every count and shape is checked before any parameter is
assigned. The arrays are converted as Keras 2's own ``load_weights`` converts them for the
target's layer class (``preprocess_weights_for_loading``): a Keras 1 file's per-gate
LSTM/GRU/ConvLSTM2D arrays are joined, a Theano-trained file's convolution kernels are
flipped (:mod:`importers.legacy`), and CuDNNLSTM/CuDNNGRU-layout arrays loaded into a
``jrnn.LSTM``/``jrnn.GRU`` take the canonical layout (CuDNNGRU arrays into
``GRU(reset_after=False)`` are refused, as Keras refuses them). The conversions themselves
are public in :mod:`importers.layouts`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from importers import _files
from importers.errors import (
    ExtraWeightsError,
    KerasFileError,
    MissingWeightsError,
    UnsupportedLayerError,
    WeightShapeError,
)

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


def _unordered_arrays(module: Any, lw: _files.LayerWeights, label: str, layer: str) -> list:
    """Arrays of a Keras 3 subtree whose stacked-cell order the file does not record."""
    import jrnn

    if lw.ordered:
        return list(lw.arrays)

    def child(key: str) -> _files.LayerWeights:
        if key not in lw.children:
            raise MissingWeightsError(
                f"{label}: layer {layer!r}: the file has no {key!r} under {lw.path!r} (it "
                f"holds {sorted(lw.children)}); the jrnn module does not match the layer "
                "that wrote the file.",
                path=label,
                where=f"{lw.path}/{key}",
            )
        return lw.children[key]

    if isinstance(module, jrnn.Bidirectional):
        return _unordered_arrays(
            module.forward_layer, child("forward_layer"), label, layer
        ) + _unordered_arrays(module.backward_layer, child("backward_layer"), label, layer)
    if isinstance(module, jrnn.TimeDistributed):
        return _unordered_arrays(module.layer, child("layer"), label, layer)
    if isinstance(module, jrnn.RNN):
        return _unordered_arrays(module.cell, child("cell"), label, layer)
    if isinstance(module, jrnn.StackedRNNCells):
        by_group = {m.path.rsplit("/", 1)[-1]: m for m in lw.children.values()}
        counts: dict[str, int] = {}
        arrays: list = []
        for cell in module.cells:
            base = _KERAS_CELL_NAMES.get(type(cell).__name__, type(cell).__name__.lower())
            n = counts.get(base, 0)
            counts[base] = n + 1
            key = base if n == 0 else f"{base}_{n}"
            if key not in by_group:
                raise MissingWeightsError(
                    f"{label}: layer {layer!r}: the jrnn stack's cell {len(counts) - 1} "
                    f"({type(cell).__name__}) needs the group {lw.path}/cells/{key}, which "
                    f"the file lacks (it holds {sorted(by_group)}).",
                    path=label,
                    where=f"{lw.path}/cells/{key}",
                )
            arrays += _unordered_arrays(cell, by_group.pop(key), label, layer)
        if any(m.arrays for m in by_group.values()):
            raise ExtraWeightsError(
                f"{label}: layer {layer!r}: the file holds weights of the cells "
                f"{sorted(k for k, m in by_group.items() if m.arrays)} under {lw.path!r} "
                "that the jrnn stack has no cell for; build the stack with the cells of the "
                "Keras layer that wrote the file.",
                path=label,
                where=lw.path,
            )
        return arrays
    raise UnsupportedLayerError(
        lw.class_name,
        layer,
        path=label,
        detail=(
            f"the file does not record the order of the mixed-class list under {lw.path!r} "
            f"and the target {type(module).__name__} does not say it; use "
            "importers.read_keras_file(path, config=...) with the model's config."
        ),
    )


def _layers_of(target: Any) -> Mapping[str, Any]:
    """The target's ``{keras_layer_name: module}``, without recorded ``keras.ops`` calls
    (a Keras 3 Functional model's ``NotEqual``/``Any`` mask nodes, ...): Keras writes no
    weights entry for them."""
    from importers._ops import KerasOp

    layers = getattr(target, "layers", None) if not isinstance(target, Mapping) else target
    if layers is None or not all(hasattr(layers, a) for a in ("items", "keys")):
        raise TypeError(
            "load_weights: target must be a mapping {keras_layer_name: jrnn module} or a "
            "converted model with a `.layers` mapping (importers.load(...)); received "
            f"{type(target).__name__}."
        )
    return {name: m for name, m in layers.items() if not isinstance(m, KerasOp)}


def _as_stored_by_keras2(
    module: Any,
    arrays: list,
    kf: _files.KerasFile,
    name: str,
    names: list | None = None,
    scopes: tuple | None = None,
) -> list:
    """The arrays as Keras 2's ``load_weights`` converts them for a layer of ``module``'s
    class (``preprocess_weights_for_loading``): Keras 1 per-gate arrays joined and
    Theano-trained convolution kernels flipped (:func:`importers.legacy.convert_weights`),
    CuDNN-layout arrays into LSTM/GRU (the bias shape tells the layout); a nested model's
    layers one by one (``convert_nested_model``), from their legacy weight ``names``
    (``scopes``: the names their scopes start with, by default the layer's)."""
    import jrnn
    from importers import convert, legacy
    from importers.model import ImportedModel, owned_weights

    if isinstance(module, ImportedModel):
        if names is None or kf.format not in ("h5_full", "h5_weights"):
            return list(arrays)  # Keras 3 files: nothing Keras 2 converts
        claimed: set[int] = set()

        def layers_of(model: ImportedModel, scopes: tuple) -> list:
            out = []
            for inner, layer in model.layers.items():
                if isinstance(layer, ImportedModel):  # a model nested in the nested model
                    out += layers_of(layer, (*scopes, inner))
                    continue
                mine = [arrays[k] for k in owned_weights(names, (*scopes, inner), claimed)]
                out += _as_stored_by_keras2(layer, mine, kf, inner)
            return out

        out = layers_of(module, scopes or (name,))
        return out + [a for k, a in enumerate(arrays) if k not in claimed]  # the count check

    if isinstance(module, jrnn.Bidirectional):
        half = len(arrays) // 2  # as Keras 2 splits them
        return _as_stored_by_keras2(
            module.forward_layer, arrays[:half], kf, name
        ) + _as_stored_by_keras2(module.backward_layer, arrays[half:], kf, name)
    if isinstance(module, jrnn.TimeDistributed):
        if isinstance(module.layer, ImportedModel):  # its weights are named in its scope
            return _as_stored_by_keras2(
                module.layer, arrays, kf, name, names, (name, module.layer.name)
            )
        return _as_stored_by_keras2(module.layer, arrays, kf, name)
    if str(kf.keras_version).split(".")[0] == "1" or kf.backend == "theano":
        # jrnn's classes bear their Keras names; what the conversions read of the config
        # (a ConvLSTM2D's data_format, a Conv1D's kernel_size) is the module's own.
        owners = (module, getattr(module, "cell", None))
        config = {
            key: value
            for key in ("data_format", "kernel_size")
            for value in [next((getattr(o, key) for o in owners if hasattr(o, key)), None)]
            if value is not None
        }
        entry = {"class_name": type(module).__name__, "config": config}
        arrays = legacy.convert_weights(entry, arrays, kf.keras_version, kf.backend)
    if type(module) in (jrnn.LSTM, jrnn.GRU):
        config = {"name": name, "reset_after": getattr(module.cell, "reset_after", False)}
        arrays = convert._from_cudnn_layout(type(module), config, list(arrays))
    return list(arrays)


def _plan_layer(
    name: str, module: Any, lw, label: str, kf: _files.KerasFile
) -> list[tuple[nnx.Variable, np.ndarray]]:
    """(parameter, array) pairs for one layer after every count and shape check."""
    params = keras_params(module)
    arrays = _unordered_arrays(module, lw, label, name)
    arrays = _as_stored_by_keras2(module, arrays, kf, name, list(lw.weight_names))
    names = list(lw.weight_names) if lw.ordered else [f"#{k}" for k in range(len(arrays))]
    if len(arrays) < len(params):
        raise MissingWeightsError(
            f"{label}: layer {name!r} holds {len(arrays)} weights in the file "
            f"({names}), but the jrnn {type(module).__name__} needs {len(params)} "
            f"(shapes {[tuple(p.shape) for p in params]}); the file was written by a "
            "different layer (use_bias, cell count) or is incomplete.",
            path=label,
            where=lw.path or name,
        )
    if len(arrays) > len(params):
        raise ExtraWeightsError(
            f"{label}: layer {name!r} holds {len(arrays)} weights in the file "
            f"({names}), but the jrnn {type(module).__name__} has only {len(params)} "
            f"parameters (shapes {[tuple(p.shape) for p in params]}); refusing to drop "
            f"{names[len(params) :]}. Build the jrnn layer as the Keras layer that wrote "
            "the file (use_bias, cells).",
            path=label,
            where=lw.path or name,
        )
    planned = []
    for k, (param, array) in enumerate(zip(params, arrays)):
        weight = names[k] if k < len(names) else f"#{k}"
        if tuple(param.shape) != tuple(array.shape):
            raise WeightShapeError(
                path=label,
                layer=name,
                weight=f"{weight} (weight {k})",
                expected=tuple(param.shape),
                received=tuple(array.shape),
            )
        planned.append((param, array))
    return planned


def load_weights(
    target: Any,
    source: str | os.PathLike,
    *,
    strict: bool = True,
    config: Any = None,
    max_member_bytes: int = _files.DEFAULT_MAX_MEMBER_BYTES,
    max_total_bytes: int = _files.DEFAULT_MAX_TOTAL_BYTES,
) -> list[str]:
    """Load a Keras weights or model file into jrnn modules, matching layers by name.

    Args:
        target: ``{keras_layer_name: jrnn module}``, or a converted model with a ``.layers``
            mapping (an :class:`importers.ImportedModel`). Each module receives its Keras
            layer's arrays in :func:`keras_params` order, converted as Keras 2 converts
            Keras 1, Theano and CuDNN-layout arrays (see the module docstring).
        source: a ``.keras`` archive, a Keras 3 ``.weights.h5`` or a legacy ``.h5`` (Keras
            1/2/3, tf.keras), read by :func:`importers.read_keras_file`.
        strict: with True (default) any layer that cannot be loaded raises and nothing is
            assigned; with False such layers are skipped, left out of the returned list, and
            the others are loaded. File-level problems (corrupt, unsafe) always raise.
        config: the model's Keras config (``json.loads(model.to_json())``, or the
            :class:`~importers.KerasFile` of its ``.keras``/``.h5`` file), for a
            ``.weights.h5`` written by tf.keras: such a file records no layer names, only
            its groups' names (the layer class counted in model order: ``lstm``,
            ``lstm_1``), so names cannot be matched without it. An imported model as
            ``target`` brings its own config. Ignored for the formats that record names.
        max_member_bytes: largest archive member / array accepted (as in
            :func:`importers.read_keras_file`).
        max_total_bytes: largest total of bytes read (as in
            :func:`importers.read_keras_file`).

    Layers of the file that ``target`` does not name are left alone, as Keras'
    ``load_weights(by_name=True)`` leaves them (and so are a model's own variables outside
    its layers); :func:`importers.load` refuses both instead.

    Returns:
        The Keras names of the layers loaded, in ``target`` order (recorded ``keras.ops``
        calls of a Functional model, which hold no weights, are left out).

    Raises:
        MissingWeightsError: no layer of that name in the file, or fewer arrays than the
            module needs.
        ExtraWeightsError: more arrays in the file than the module has parameters.
        WeightShapeError: an array's shape differs from its parameter's (naming file,
            layer, weight, expected and received shapes).
        UnsupportedLayerError: CuDNNGRU-layout arrays for a ``GRU(reset_after=False)``.
        CorruptFileError, UnsafeFileError, KerasFileError: the file cannot be read safely
            (see :func:`importers.read_keras_file`), or it records no layer names and no
            ``config`` names them.

    Example:
        >>> import os, tempfile, h5py, numpy as np
        >>> from flax import nnx
        >>> path = os.path.join(tempfile.mkdtemp(), "w.h5")
        >>> with h5py.File(path, "w") as f:  # a Keras-2-style save_weights("w.h5")
        ...     f.attrs["layer_names"] = [b"dense_1"]
        ...     g = f.create_group("dense_1")
        ...     g.attrs["weight_names"] = [b"dense_1/kernel:0", b"dense_1/bias:0"]
        ...     g["dense_1/kernel:0"] = np.ones((3, 2), "f4")
        ...     g["dense_1/bias:0"] = np.zeros(2, "f4")
        >>> dense = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
        >>> load_weights({"dense_1": dense}, path)
        ['dense_1']
        >>> float(dense.kernel[...].sum())
        6.0
    """
    layers = _layers_of(target)
    label = os.fspath(source)
    # A tf.keras .weights.h5 records no layer names (Keras 3's records them), only its
    # groups' attribute names (a per-class count in model order: "lstm", "lstm_1"); the
    # model's config recovers the names, as Keras' own load_weights matches by position.
    if config is None and not isinstance(target, Mapping):
        config = getattr(target, "model_config", None)
    kf = _files._read(
        label,
        config,
        max_member_bytes,
        max_total_bytes,
        keep_unordered=True,
        config_if_unnamed=True,
    )
    unnamed = [lw.name for lw in kf.layer_weights.values() if not lw.named]
    if unnamed:
        raise KerasFileError(
            f"{label}: the file records no layer names, only group names (the layer class "
            f"counted in model order: {unnamed[:8]}), so the target's names cannot be matched "
            "to its layers safely (a layer named 'lstm' need not be the group 'lstm'). Pass "
            "the model's config, load_weights(target, path, config=json.loads(model.to_json()))"
            " or config=importers.read_keras_file('model.keras'), or an imported model as "
            "target.",
            path=label,
        )
    planned: list[tuple[nnx.Variable, np.ndarray]] = []
    loaded = []
    for name, module in layers.items():
        try:
            lw = kf.layer_weights.get(name)
            if lw is None:
                raise MissingWeightsError(
                    f"{label}: no layer named {name!r} in the file (it holds "
                    f"{list(kf.layer_weights)[:20]}); pass the Keras layer names as the keys "
                    "of target.",
                    path=label,
                    where=name,
                )
            planned += _plan_layer(name, module, lw, label, kf)
        except KerasFileError:
            if strict:
                raise
            continue
        loaded.append(name)
    for param, array in planned:
        param.set_value(np.asarray(array, dtype=param[...].dtype))
    return loaded


__all__ = ["keras_params", "load_weights"]
