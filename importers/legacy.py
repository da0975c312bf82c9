"""Keras 1 configs and weights, and Theano-trained kernels, brought to Keras 2 form.

What Keras 2.2.4 itself does when it opens an older file, so that :func:`importers.load`
reads Keras 1 models (and Keras 1/2 models trained on Theano) the same way:

* **Configs** (``keras/legacy/interfaces.py``): Keras 1 argument names become Keras 2
  names (:data:`KERAS1_KEYS`: ``output_dim`` -> ``units``, ``init`` ->
  ``kernel_initializer``, ``inner_activation`` -> ``recurrent_activation``,
  ``dropout_W`` -> ``dropout``, ``border_mode`` -> ``padding``, ``subsample`` ->
  ``strides``, ``nb_row``/``nb_col`` and ``kernel_dim1..3`` -> ``kernel_size``...), ``consume_less``
  becomes ``implementation``, ``forget_bias_init='one'`` becomes
  ``unit_forget_bias=True``, ``dim_ordering`` ``tf``/``th`` becomes ``data_format``,
  ``Convolution1D`` is ``Conv1D``, Keras 1 initializer and regularizer configs are read
  as Keras 2 ones. A Keras 1 ``Sequential`` config (a bare list of layers) becomes
  ``{"layers": [...]}``. A Keras 1 ``Merge`` layer becomes the Keras 2 merge layer of
  its ``mode`` (``concat``, ``sum``, ``mul``, ``ave``, ``max``); other modes (``dot``,
  ``cos``, lambdas) raise. Keras 1 GRUs are reset-before (``reset_after=False``).
* **Weights** (``keras/engine/saving.py: preprocess_weights_for_loading``): Keras 1's
  per-gate LSTM (``W_i, U_i, b_i, W_c, ...``, gates i, c, f, o), GRU (z, r, h) and
  ConvLSTM2D arrays are joined in Keras 2's order (:mod:`importers.layouts`);
  Keras 1 Conv1D kernels ``(filter_length, 1, in, filters)`` lose their unit axis.
* **Theano kernels**: Theano convolves where TensorFlow (and XLA) correlate, so the
  spatial axes of Conv1D/2D/3D and ConvLSTM2D kernels (and ConvLSTM2D's recurrent
  kernel) written by the Theano backend are flipped (``conv_utils.convert_kernel``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from importers import layouts
from importers.errors import UnsupportedLayerError

KERAS1_KEYS: dict[str, str] = {
    "output_dim": "units",
    "init": "kernel_initializer",
    "inner_init": "recurrent_initializer",
    "inner_activation": "recurrent_activation",
    "W_regularizer": "kernel_regularizer",
    "U_regularizer": "recurrent_regularizer",
    "b_regularizer": "bias_regularizer",
    "W_constraint": "kernel_constraint",
    "U_constraint": "recurrent_constraint",
    "b_constraint": "bias_constraint",
    "dropout_W": "dropout",
    "dropout_U": "recurrent_dropout",
    "consume_less": "implementation",
    "bias": "use_bias",
    "p": "rate",
    "sigma": "stddev",
    "nb_filter": "filters",
    "filter_length": "kernel_size",
    "subsample_length": "strides",
    "subsample": "strides",
    "border_mode": "padding",
    "pool_length": "pool_size",
    "stride": "strides",
    "dim_ordering": "data_format",
    "length": "n",
}
_EMBEDDING_KEYS = {
    "init": "embeddings_initializer",
    "W_regularizer": "embeddings_regularizer",
    "W_constraint": "embeddings_constraint",
}
_CLASSES = {
    "Convolution1D": "Conv1D",
    "Convolution2D": "Conv2D",
    "Convolution3D": "Conv3D",
}
_MERGE_MODES = {
    "concat": "Concatenate",
    "sum": "Add",
    "mul": "Multiply",
    "ave": "Average",
    "max": "Maximum",
}
_CONSUME_LESS = {"cpu": 0, "mem": 1, "gpu": 2}
_DIM_ORDERING = {"tf": "channels_last", "th": "channels_first", "default": "channels_last"}
# Keras 1 initializer names that are Keras 2 names under another spelling.
_INITIALIZERS = {
    "one": "ones",
    "zero": "zeros",
    "uniform": "random_uniform",
    "normal": "random_normal",
}
_CONV_LAYERS = ("Conv1D", "Conv2D", "Conv3D", "ConvLSTM2D")


def keras1_model_config(config: dict) -> dict:
    """A Keras 1 model config (``{"class_name", "config"}``) in Keras 2 form."""
    cfg = config.get("config")
    if isinstance(cfg, list):  # Keras 1 Sequential: a bare list of layer entries
        cfg = {"name": "sequential", "layers": cfg}
    else:
        cfg = dict(cfg)
    cfg["layers"] = [keras1_layer_entry(e) for e in cfg["layers"]]
    return {**config, "config": cfg}


def keras1_layer_entry(entry: dict) -> dict:
    """One Keras 1 layer entry (class name, config, inbound nodes) in Keras 2 form."""
    cls = _CLASSES.get(entry["class_name"], entry["class_name"])
    cfg = dict(entry["config"])
    name = str(cfg.get("name"))
    if cls in ("Sequential", "Model"):
        nested = keras1_model_config({"class_name": cls, "config": entry["config"]})
        return {**entry, **nested}
    if cls == "Merge":
        mode = cfg.get("mode", "sum")
        if not isinstance(mode, str) or mode not in _MERGE_MODES:
            raise UnsupportedLayerError(
                "Merge",
                name,
                detail=f"Keras 1 Merge mode {mode!r} has no exact Keras 2 layer (supported "
                f"modes: {sorted(_MERGE_MODES)}); lambda modes are code jrnn never runs.",
            )
        cls = _MERGE_MODES[mode]
        new = {"name": cfg.get("name"), "trainable": cfg.get("trainable", True)}
        if cls == "Concatenate":
            new["axis"] = cfg.get("concat_axis", -1)
        cfg = new
    if cls in ("Bidirectional", "TimeDistributed"):
        cfg["layer"] = keras1_layer_entry(cfg["layer"])
    for parts in (("nb_row", "nb_col"), ("kernel_dim1", "kernel_dim2", "kernel_dim3")):
        present = [k for k in parts if k in cfg]
        if present and len(present) != len(parts):
            raise UnsupportedLayerError(
                cls,
                name,
                detail=f"its Keras 1 kernel size needs {list(parts)}; the config has only "
                f"{present}.",
            )
        if present:  # Convolution2D/ConvLSTM2D's nb_row, nb_col; Convolution3D's kernel_dim*
            cfg["kernel_size"] = tuple(cfg.pop(k) for k in parts)
    keys = dict(KERAS1_KEYS)
    if cls == "Embedding":
        keys.update(_EMBEDDING_KEYS)
        keys.pop("output_dim")
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        new_key = keys.get(key, key)
        if key == "consume_less":
            value = _CONSUME_LESS.get(value, value)
        elif key == "dim_ordering":
            value = _DIM_ORDERING.get(value, value)
        elif key == "forget_bias_init":
            new_key, value = "unit_forget_bias", value == "one"
        elif key in ("init", "inner_init") and isinstance(value, str):
            value = _INITIALIZERS.get(value, value)
        elif key == "input_dtype" or (key in ("input_dim", "input_length") and cls != "Embedding"):
            continue  # only the input shape/dtype; the weights give the sizes
        elif key == "input_length":
            continue
        elif key == "dropout" and cls == "Embedding":
            if value:
                raise UnsupportedLayerError(
                    cls,
                    name,
                    detail=f"Keras 1 Embedding word dropout ({value}) has no Keras 2 "
                    "equivalent; set it to 0 to convert the model for inference.",
                )
            continue
        out[new_key] = value
    if cls == "GRU":
        out.setdefault("reset_after", False)
    if cls == "Conv1D" and isinstance(out.get("kernel_size"), int):
        out["kernel_size"] = (out["kernel_size"],)
    return {**entry, "class_name": cls, "config": out}


def convert_weights(
    entry: dict, arrays: list, keras_version: str | None, backend: str | None
) -> list:
    """The layer's arrays as Keras 2 holds them (see module doc); ``entry`` in Keras 2 form."""
    cls, cfg = entry["class_name"], entry["config"]
    arrays = list(arrays)
    if cls == "Bidirectional":
        half = len(arrays) // 2
        return convert_weights(cfg["layer"], arrays[:half], keras_version, backend) + (
            convert_weights(
                cfg.get("backward_layer") or cfg["layer"], arrays[half:], keras_version, backend
            )
        )
    if cls == "TimeDistributed":
        return convert_weights(cfg["layer"], arrays, keras_version, backend)
    if str(keras_version).split(".")[0] == "1":
        if cls == "LSTM" and len(arrays) == 12:
            arrays = list(layouts.keras1_lstm_to_keras(arrays))
        elif cls == "GRU" and len(arrays) == 9:
            arrays = list(layouts.keras1_gru_to_keras(arrays))
        elif cls == "ConvLSTM2D" and len(arrays) == 12:
            # stored per gate i, c, f, o as (W, U, b); Keras 2 joins them as i, f, c, o
            arrays = [
                np.concatenate([arrays[3 * g + p] for g in (0, 2, 1, 3)], -1) for p in range(3)
            ]
            if cfg.get("data_format") == "channels_first":
                arrays[0] = np.transpose(arrays[0], (2, 3, 1, 0))
                arrays[1] = np.transpose(arrays[1], (2, 3, 1, 0))
        elif cls == "Conv1D" and arrays and np.ndim(arrays[0]) == 4:
            kernel = arrays[0]
            k = (
                cfg["kernel_size"][0]
                if isinstance(cfg.get("kernel_size"), (list, tuple))
                else (cfg.get("kernel_size"))
            )
            if kernel.shape[:2] != (k, 1):  # Keras 1.1: (filters, in, length, 1)
                kernel = np.transpose(kernel, (2, 3, 1, 0))
            arrays[0] = kernel[:, 0, :, :]
    if backend == "theano" and cls in _CONV_LAYERS and arrays:
        arrays[0] = _flip_spatial(arrays[0])
        if cls == "ConvLSTM2D":
            arrays[1] = _flip_spatial(arrays[1])
    return arrays


def _flip_spatial(kernel: np.ndarray) -> np.ndarray:
    """Keras' ``conv_utils.convert_kernel``: reverse every spatial axis of ``(*k, in, out)``."""
    kernel = np.asarray(kernel)
    index = tuple(slice(None, None, -1) for _ in range(kernel.ndim - 2)) + (slice(None),) * 2
    return np.copy(kernel[index])
