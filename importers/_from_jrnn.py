"""Keras 3 configs for models assembled from jrnn layers by hand (not imported from Keras).

:func:`keras_sequential` turns a jrnn layer, or a list of them applied in order, into an
:class:`importers.ImportedModel` over a Keras 3 ``Sequential`` config, holding the layers'
current weights, so that :func:`importers.save_keras` / :func:`importers.save_weights`
write it for Keras. The config is rebuilt into jrnn modules by the importer's own
converters, so what Keras will read is checked to be what the layers compute: a layer or
setting Keras 3 has no exact equivalent for (a custom activation callable, ``param_dtype``
other than the policy's, IndRNN/CuDNN layers, ``RNN`` over custom cells) raises
:class:`~importers.errors.UnsupportedLayerError` naming it.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from importers.convert import IN_WRAPPER_POLICY
from importers.errors import UnsupportedLayerError

# jrnn-only constructor arguments of the recurrent layers (Keras 3 takes the others).
_JRNN_ONLY = (
    "in_features",
    "in_channels",
    "spatial_shape",
    "hoist_input_projection",
    "remat",
    "native",
)


def _activation(fn: Any) -> str:
    from jrnn import activations

    return activations.serialize(fn)


def _check_activations(cls: str, name: str, config: dict) -> None:
    """Refuse Keras 2's hard sigmoid: Keras 3 has no activation equal to it."""
    for key in ("activation", "recurrent_activation"):
        if config.get(key) in ("keras2_hard_sigmoid",):
            raise UnsupportedLayerError(
                cls,
                name,
                detail=f"{key}='keras2_hard_sigmoid' is Keras 2's clip(0.2x + 0.5, 0, 1); Keras "
                "3's hard_sigmoid is relu6(x + 3) / 6, a different function, and Keras 3 has "
                "no built-in activation equal to Keras 2's",
            )


def _initializers(module: Any) -> dict:
    """The ``*_initializer`` arguments a core layer was built with, as Keras configs."""
    import json

    out = {}
    for argument, text in getattr(module, "keras_initializers", ()):
        if text is None:
            raise UnsupportedLayerError(
                type(module).__name__,
                str(getattr(module, "name", None) or type(module).__name__),
                detail=f"{argument} is a function, which has no Keras config (give a Keras "
                "initializer name, config or jrnn.initializers object)",
            )
        out[argument] = json.loads(text)
    return out


def _core_configs() -> dict[type, Callable[[Any], dict]]:
    from importers._convert_core import POOLS
    from jrnn.layers import core

    def conv(m):
        return {
            "filters": m.filters,
            "kernel_size": list(m.kernel_size),
            "strides": list(m.strides),
            "padding": m.padding,
            "data_format": m.data_format,
            "dilation_rate": list(m.dilation_rate),
            "groups": m.groups,
            "activation": _activation(m.activation),
            "use_bias": m.bias is not None,
            **_initializers(m),
            **_governance(m, ("kernel", "bias", "activity")),
        }

    def pool(m):
        return {
            "pool_size": list(m.pool_size),
            "strides": list(m.strides),
            "padding": m.padding,
            "data_format": m.data_format,
        }

    def global_pool(m):
        return {"data_format": m.data_format, "keepdims": m.keepdims}

    def pairs(value):  # a padding or cropping: (before, after), or one such pair per axis
        return [list(v) if isinstance(v, tuple) else v for v in value]

    def norm(m):
        return {
            "axis": list(m.axis),
            "epsilon": m.epsilon,
            "center": m.beta is not None,
            "scale": m.gamma is not None,
            **_initializers(m),
            **_governance(m, ("beta", "gamma")),
        }

    return {
        core.Dense: lambda m: {
            "units": m.units,
            "activation": _activation(m.activation),
            "use_bias": m.bias is not None,
            **_initializers(m),
            **_governance(m, ("kernel", "bias", "activity")),
        },
        core.Embedding: lambda m: {
            "input_dim": int(m.embeddings.shape[0]),
            "output_dim": int(m.embeddings.shape[1]),
            "mask_zero": bool(m.mask_zero),
            **_initializers(m),
            **_governance(m, ("embeddings", "activity")),
        },
        core.Masking: lambda m: {"mask_value": float(m.mask_value)},
        core.Activation: lambda m: {"activation": _activation(m.activation)},
        core.Dropout: lambda m: {"rate": m.rate, "seed": m.seed},
        core.SpatialDropout1D: lambda m: {"rate": m.rate, "seed": m.seed},
        core.GaussianNoise: lambda m: {"stddev": m.stddev, "seed": m.seed},
        core.GaussianDropout: lambda m: {"rate": m.rate, "seed": m.seed},
        core.Flatten: lambda m: {"data_format": m.data_format},
        core.Reshape: lambda m: {"target_shape": list(m.target_shape)},
        core.Permute: lambda m: {"dims": list(m.dims)},
        core.RepeatVector: lambda m: {"n": m.n},
        **dict.fromkeys(
            (core.ZeroPadding1D, core.ZeroPadding2D, core.ZeroPadding3D),
            lambda m: {"padding": pairs(m.padding), "data_format": m.data_format},
        ),
        core.Cropping1D: lambda m: {"cropping": list(m.cropping)},
        **dict.fromkeys(
            (core.Cropping2D, core.Cropping3D),
            lambda m: {"cropping": pairs(m.cropping), "data_format": m.data_format},
        ),
        core.UpSampling1D: lambda m: {"size": m.size},
        core.UpSampling2D: lambda m: {
            "size": list(m.size),
            "data_format": m.data_format,
            "interpolation": _keras3_interpolation(m),
        },
        core.UpSampling3D: lambda m: {"size": list(m.size), "data_format": m.data_format},
        core.LeakyReLU: lambda m: {"negative_slope": _non_negative_slope(m)},
        core.ReLU: lambda m: {
            "max_value": m.max_value,
            "negative_slope": m.negative_slope,
            "threshold": m.threshold,
        },
        core.ELU: lambda m: {"alpha": m.alpha},
        core.Softmax: lambda m: (
            {"axis": list(m.axis) if isinstance(m.axis, tuple) else m.axis} | _keras3_mask_rule(m)
        ),
        core.PReLU: lambda m: {
            "shared_axes": None if m.shared_axes is None else list(m.shared_axes),
            **_initializers(m),
            **_governance(m, ("alpha", "activity")),
        },
        core.Identity: lambda m: _keras3_mask_rule(m),
        core.ActivityRegularization: lambda m: {"l1": m.l1, "l2": m.l2},
        core.Conv1D: conv,
        core.Conv2D: conv,
        core.Conv3D: conv,
        **{
            getattr(core, f"{kind}{rank}D"): global_pool if kind.startswith("Global") else pool
            for kind in POOLS
            for rank in (1, 2, 3)
        },
        core.BatchNormalization: lambda m: {**norm(m), "axis": m.axis[0], "momentum": m.momentum},
        core.LayerNormalization: norm,
    }


def _keras3_interpolation(module: Any) -> str:
    """An UpSampling2D's interpolation, refused where Keras 3 has no such interpolation."""
    from importers.export import keras3_interpolation_refusal

    reason = keras3_interpolation_refusal(module.interpolation, module.keras2, module.compute_dtype)
    if reason:
        raise UnsupportedLayerError(
            "UpSampling2D", str(module.name or "UpSampling2D"), detail=reason
        )
    return module.interpolation


def _keras3_mask_rule(module: Any) -> dict:
    """Nothing, or the refusal of a layer built with tf.keras' mask rule (``keras2=True``:
    Softmax's uniform fully masked rows, Identity's dropped mask), which no Keras 3 layer
    follows."""
    if getattr(module, "keras2", False):
        raise UnsupportedLayerError(
            type(module).__name__,
            str(getattr(module, "name", None) or type(module).__name__),
            detail="keras2=True is tf.keras' mask rule, which Keras 3's layer does not follow",
        )
    return {}


def _governance(module: Any, prefixes: tuple[str, ...]) -> dict[str, Any]:
    """A core layer's regularizers and constraints as Keras 3 configs (jrnn's classes carry
    Keras' names and arguments); anything else (a plain function) is refused by name."""
    out = {}
    for prefix in prefixes:
        for kind in ("regularizer", "constraint"):
            key = f"{prefix}_{kind}"
            value = getattr(module, key, None)
            if value is None:
                continue
            if not hasattr(value, "get_config"):
                raise UnsupportedLayerError(
                    type(module).__name__,
                    str(getattr(module, "name", None)),
                    detail=f"{key}={value!r} is not a jrnn {kind} class with a Keras config",
                )
            module_name = "keras.regularizers" if kind == "regularizer" else "keras.constraints"
            out[key] = {
                "module": module_name,
                "class_name": type(value).__name__,
                "config": value.get_config(),
                "registered_name": None,
            }
    return out


class _Namer:
    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, module: Any, cls: str) -> str:
        from importers._files import _snake_case_keras3

        name = getattr(module, "name", None)
        if name and "/" in name:
            raise UnsupportedLayerError(
                cls, name, detail="Keras refuses layer names that contain '/'"
            )
        if not name:
            base = _snake_case_keras3(cls)
            name, k = base, 0
            while name in self.used:
                k += 1
                name = f"{base}_{k}"
        if name in self.used:
            raise ValueError(
                f"keras_sequential: two layers are named {name!r}; Keras names are unique."
            )
        self.used.add(name)
        return name


_CELLS_KERAS3 = ("SimpleRNNCell", "GRUCell", "LSTMCell")


def _recurrent(module: Any, namer: _Namer) -> dict:
    import jrnn

    cls = type(module).__name__
    name = str(getattr(module, "name", None) or cls)
    if type(module) is jrnn.RNN:
        return _generic_rnn(module, namer)
    if type(module) in (jrnn.CuDNNLSTM, jrnn.CuDNNGRU):  # as the LSTM/GRU it equals
        from importers.export import _cudnn_as_keras3

        config = _keras3_arguments(cls, name, dict(module.get_config()), module.cell.policy)
        entry = _cudnn_as_keras3({"class_name": cls, "config": config})
        entry["config"]["unroll"] = module.unroll is True
        entry["config"]["name"] = namer(module, entry["class_name"])
        return _entry(entry["class_name"], entry["config"])
    if type(module) not in (
        jrnn.SimpleRNN,
        jrnn.GRU,
        jrnn.LSTM,
        jrnn.ConvLSTM1D,
        jrnn.ConvLSTM2D,
        jrnn.ConvLSTM3D,
    ):
        raise UnsupportedLayerError(
            cls,
            name,
            detail="Keras 3 has no built-in layer equal to it, so it cannot be written to a "
            "Keras 3 file (SimpleRNN, GRU, LSTM, ConvLSTM1D/2D/3D and RNN over SimpleRNN, "
            "GRU and LSTM cells can)",
        )
    config = _keras3_arguments(cls, name, dict(module.get_config()), module.cell.policy)
    config["zero_output_for_mask"] = module.zero_output_for_mask
    config["name"] = namer(module, cls)
    return _entry(cls, config)


def _keras3_arguments(cls: str, name: str, config: dict, policy: Any) -> dict:
    """A jrnn layer's or cell's ``get_config()`` as Keras 3's arguments: jrnn-only keys
    dropped, activations by name, the policy as ``dtype``; refused where Keras 3 has no
    equal (a ``param_dtype`` of its own, an initializer or constraint object, Keras 2's
    hard sigmoid)."""
    override = config.pop("param_dtype", None) not in (None, np.dtype(policy.param_dtype).name)
    if override or "->" in str(getattr(policy, "name", "")):  # the policy's name for one
        raise UnsupportedLayerError(
            cls,
            name,
            detail=f"its dtype policy {policy.name!r} (a param_dtype other than the "
            "policy's) has no Keras 3 equivalent",
        )
    for key in (*_JRNN_ONLY, "batch_size", "implementation"):
        config.pop(key, None)
    for key in ("activation", "recurrent_activation"):
        if key in config and not isinstance(config[key], str):
            config[key] = _activation(config[key])
    for key, value in config.items():
        if key.endswith(("_initializer", "_regularizer", "_constraint")) and not (
            value is None or isinstance(value, (str, dict))
        ):
            raise UnsupportedLayerError(
                cls, name, detail=f"{key}={value!r} is not a Keras name or config"
            )
    _check_activations(cls, name, config)
    config["dtype"] = policy.name
    return config


def _generic_rnn(module: Any, namer: _Namer) -> dict:
    """``jrnn.RNN(cell or [cells])`` as Keras 3's ``RNN`` over the same cells."""
    from jrnn.cells.stacked import StackedRNNCells

    cells = module.cell.cells if isinstance(module.cell, StackedRNNCells) else [module.cell]
    entries = []
    for k, cell in enumerate(cells):
        cls = type(cell).__name__
        label = f"{module.name or 'rnn'}.cells[{k}]"
        if cls not in _CELLS_KERAS3:
            raise UnsupportedLayerError(
                cls,
                label,
                detail="Keras 3's RNN is written over SimpleRNNCell, GRUCell and LSTMCell only",
            )
        config = _keras3_arguments(cls, label, dict(cell.get_config()), cell.policy)
        config["name"] = cell.name or (f"{_snake(cls)}_{k}" if len(cells) > 1 else _snake(cls))
        entries.append(_entry(cls, config))
    cell_entry = entries[0]
    if isinstance(module.cell, StackedRNNCells):
        cell_entry = _entry("StackedRNNCells", {"cells": entries, "name": "stacked_rnn_cells"})
    config = {
        key: value
        for key, value in module.get_config().items()
        if key in ("return_sequences", "return_state", "go_backwards", "stateful")
    }
    config["unroll"] = module.unroll is True  # jrnn's partial unroll=k computes the same
    config["zero_output_for_mask"] = module.zero_output_for_mask
    activity = module.get_config().get("activity_regularizer")
    if activity is not None and not isinstance(activity, (str, dict)):
        raise UnsupportedLayerError(
            "RNN",
            str(module.name or "rnn"),
            detail=f"activity_regularizer={activity!r} is not a Keras name or config",
        )
    config["activity_regularizer"] = activity
    config["cell"] = cell_entry
    config["dtype"] = module.cell.policy.name
    config["name"] = namer(module, "RNN")
    return _entry("RNN", config)


def _non_negative_slope(module: Any) -> float:
    if module.negative_slope < 0:
        raise UnsupportedLayerError(
            "LeakyReLU",
            str(module.name or "LeakyReLU"),
            detail=f"its negative_slope {module.negative_slope} is refused by Keras 3's "
            "LeakyReLU (negative_slope >= 0)",
        )
    return module.negative_slope


def _snake(cls: str) -> str:
    from importers._files import _snake_case_keras3

    return _snake_case_keras3(cls)


def _entry(cls: str, config: dict) -> dict:
    return {"module": "keras.layers", "class_name": cls, "config": config, "registered_name": None}


def layer_entry(module: Any, namer: _Namer | None = None) -> dict:
    """The Keras 3 ``{"module", "class_name", "config", "registered_name"}`` entry of one
    jrnn module; a frozen one (``module.trainable = False``, which jrnn's training reads)
    and the layers inside it get ``"trainable": false``, as Keras writes a frozen layer."""
    from importers.export import _with_trainable

    return _with_trainable(_layer_entry(module, namer), module)


def _layer_entry(module: Any, namer: _Namer | None = None) -> dict:
    """:func:`layer_entry` but for ``trainable``."""
    import jrnn
    from importers.model import ImportedModel

    namer = namer or _Namer()
    cls = type(module).__name__
    if isinstance(module, ImportedModel):
        return _model_entry(module, namer)
    if isinstance(module, jrnn.Bidirectional):
        inner = layer_entry(module.forward_layer, _Namer())
        inner["config"]["name"] = inner["config"]["name"].removeprefix("forward_")
        config = {
            "layer": inner,
            "merge_mode": module.merge_mode,
            "dtype": module.policy.name,
            "name": namer(module, cls),
        }
        backward = layer_entry(module.backward_layer, _Namer())
        # Keras 3 builds the missing backward layer as the forward one with go_backwards=True
        # (whatever the forward layer's): any other backward layer is written out.
        twin = dict(inner["config"], go_backwards=True)
        if {**backward["config"], "name": None} != {**twin, "name": None}:
            if getattr(module.backward_layer, "units", None) != getattr(
                module.forward_layer, "units", None
            ):
                raise UnsupportedLayerError(
                    cls,
                    str(module.name or cls),
                    detail="Keras 3's Bidirectional takes both directions' outputs to have the "
                    "forward layer's size, so directions of different units cannot be written",
                )
            config["backward_layer"] = backward
        return _entry(cls, config)
    if isinstance(module, jrnn.TimeDistributed):
        inner = layer_entry(module.layer, _Namer())
        if module.keras2:
            from importers.export import keras2_mask_difference

            reason = keras2_mask_difference(inner, masked=True)
            if reason:
                raise UnsupportedLayerError(cls, str(module.name or cls), detail=reason)
        config = {"layer": inner, "name": namer(module, cls)}
        if inner.get("class_name") in IN_WRAPPER_POLICY and "dtype" in inner["config"]:
            # jrnn computes the wrapped layer in its own policy; Keras 3's wrapper calls
            # `layer.call` under the wrapper's: the wrapper takes the layer's.
            config["dtype"] = inner["config"]["dtype"]
            noise_dtype = getattr(module.layer, "noise_dtype", None)
            if noise_dtype is not None:  # Keras 3 draws a Gaussian noise layer's noise in
                inner["config"]["dtype"] = noise_dtype  # its own compute dtype
        return {"class_name": cls, "config": config}
    if isinstance(module, jrnn.RNN):
        return _recurrent(module, namer)
    mappers = _core_configs()
    if type(module) not in mappers:
        raise UnsupportedLayerError(
            cls,
            str(getattr(module, "name", None) or cls),
            detail="jrnn does not know the Keras 3 layer equal to this module",
        )
    config = mappers[type(module)](module)
    _check_activations(cls, str(getattr(module, "name", None) or cls), config)
    config["name"] = namer(module, cls)
    config["dtype"] = (
        getattr(module, "dtype_policy", None) or getattr(module, "compute_dtype", None) or "float32"
    )
    if "->" in config["dtype"]:  # DTypePolicy.name of a param_dtype override
        raise UnsupportedLayerError(
            cls,
            str(getattr(module, "name", None) or cls),
            detail=f"its dtype policy {config['dtype']!r} (a param_dtype other than the "
            "policy's) has no Keras 3 equivalent",
        )
    return _entry(cls, config)


def _model_entry(model: Any, namer: _Namer) -> dict:
    """An imported Keras 3 model as a layer (nested, or in ``TimeDistributed``): its own
    config, under the name the namer gives it."""
    from importers.export import _check_keras3, _top_level

    config = model.model_config
    name = str(model.name or config["class_name"])
    _check_keras3(config)  # a custom_layers stand-in has no Keras 3 class to write
    if model.keras_major < 3:
        raise UnsupportedLayerError(
            config["class_name"],
            name,
            detail="it was imported from a Keras 2 (tf.keras) model, whose rules "
            "(hard_sigmoid, masks, batch normalization) its config keeps; a Keras 3 "
            "Sequential cannot hold it. Write it with importers.save_keras on its own",
        )
    config.pop("compile_config", None)
    config["config"] = {**config["config"], "name": namer(model, config["class_name"])}
    return _top_level(config)


def _unique_input_name(taken: set) -> str:
    """``input_layer`` as Keras names it, or ``input_layer_<k>`` where a layer took it."""
    name, k = "input_layer", 0
    while name in taken:
        k += 1
        name = f"input_layer_{k}"
    return name


def _stateful_batch_size(modules: list, batch_size: int | None) -> int | None:
    """The model's batch size: ``batch_size``, or the one its stateful layers were built
    or called with (Keras 3 needs a static batch size for them); refused where they
    disagree or none is known."""
    from flax import nnx

    import jrnn

    found: list[tuple[str, int | None]] = []
    for module in modules:
        for _, m in nnx.iter_graph(module):
            if isinstance(m, jrnn.RNN) and m.stateful:
                size = m.batch_size
                if size is None and m.states is not None:
                    size = int(jax.tree_util.tree_leaves(m._state_values())[0].shape[0])
                found.append((str(m.name or type(m).__name__), size))
    if not found:
        return batch_size
    known = [f"{label}: {size}" for label, size in found]
    sizes = {size for _, size in found if size is not None}
    if batch_size is None:
        if len(sizes) != 1 or any(size is None for _, size in found):
            raise ValueError(
                "keras_sequential: stateful layers need the model's batch size (Keras 3 "
                "refuses them without a static one): pass batch_size=, or build them with "
                f"batch_size=; their batch sizes: {known}."
            )
        return sizes.pop()
    if sizes - {batch_size}:
        raise ValueError(
            f"keras_sequential: batch_size={batch_size} differs from the stateful layers' "
            f"batch sizes {known}."
        )
    return batch_size


def keras_sequential(
    layers: Any,
    input_shape: tuple,
    *,
    input_dtype: str | None = None,
    name: str = "sequential",
    batch_size: int | None = None,
):
    """An :class:`importers.ImportedModel` over a Keras 3 ``Sequential`` of jrnn ``layers``.

    Args:
      layers: a jrnn layer or a list of them, applied in order; a model imported from
        Keras 3 (:func:`importers.load`) is one too, alone or in ``jrnn.TimeDistributed``
        (written as the nested Keras model, its layers' current weights included).
      input_shape: the input shape without the batch axis, ``None`` for any size
        (``(None, 16)`` for variable-length sequences of 16 features).
      input_dtype: the input's dtype (``"int32"`` for token ids); None: the first layer's
        variable dtype (float32 under a mixed policy, float64 for a float64 layer), so that
        the model's inputs, which are converted to it as Keras converts them, lose nothing.
      name: the Keras model name.
      batch_size: a fixed batch size (stateful layers need one).

    Returns:
      The model, holding the layers' current weights; ``importers.save_keras(model, path)``
      writes it for Keras 3.

    Raises:
      UnsupportedLayerError: a layer or setting Keras 3 cannot represent exactly.
      ValueError: a bad argument, or layers that do not take ``input_shape`` (or each
        other's outputs): the model is traced once, abstractly, on such an input (a size
        of None as 64), and the layer that refuses it names the shapes.
    """
    import jrnn
    from importers.model import ImportedModel
    from importers.weights import keras_params
    from jrnn import _checks

    where = "keras_sequential"
    if not isinstance(input_shape, (list, tuple)) or not all(
        d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1)
        for d in input_shape
    ):
        raise ValueError(
            f"{where}: `input_shape` must be a tuple of positive sizes (None for any), "
            f"without the batch axis, e.g. (None, 16); received {input_shape!r}."
        )
    if batch_size is not None:
        batch_size = _checks.positive_int(batch_size, "batch_size", where)
    if not isinstance(name, str) or "/" in name:
        raise ValueError(
            f"{where}: `name` must be a string without '/' (Keras' rule); received {name!r}."
        )
    if input_dtype is not None:
        try:
            input_dtype = np.dtype(input_dtype).name
        except TypeError:
            raise ValueError(
                f"{where}: `input_dtype` must be a dtype name such as 'float32' or 'int32'; "
                f"received {input_dtype!r}."
            ) from None
    input_shape = tuple(None if d is None else int(d) for d in input_shape)
    modules = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    batch_size = _stateful_batch_size(modules, batch_size)
    namer = _Namer()
    entries = [layer_entry(m, namer) for m in modules]
    by_name = {e["config"]["name"]: m for e, m in zip(entries, modules)}
    if input_dtype is None:
        from jrnn._dtypes import resolve_policy

        policy = entries[0]["config"].get("dtype") if entries else None
        input_dtype = np.dtype(resolve_policy(policy).param_dtype).name
    first = _entry(
        "InputLayer",
        {
            "batch_shape": [batch_size, *input_shape],
            "dtype": input_dtype,
            "sparse": False,
            "name": _unique_input_name({e["config"]["name"] for e in entries}),
        },
    )
    config = {"class_name": "Sequential", "config": {"name": name, "layers": [first, *entries]}}

    def arrays(layer_name: str) -> list:
        # a layer of a model among the layers: "model/layer", "time_distributed/model/layer"
        head, *path = layer_name.split("/")
        module = by_name[head]
        for part in path:
            module = (
                module.layer if isinstance(module, jrnn.TimeDistributed) else module.get_layer(part)
            )
        return [np.asarray(p[...]) for p in keras_params(module)]

    model = ImportedModel(config, arrays)
    _trace_once(model, batch_size, tuple(input_shape))
    return model


def _trace_once(model: Any, batch_size: int | None, input_shape: tuple) -> None:
    """Trace ``model`` abstractly on one input of ``input_shape`` in its Input's dtype, on
    a copy (stateful layers keep their states): layers refusing their inputs raise here,
    at construction, rather than in Keras when the written file is loaded. A size of None
    is tried as 64 and as 4096; only a model refusing both is refused (a Reshape that
    fixes a None length is, where Keras would accept it symbolically)."""
    from flax import nnx

    from jrnn._checks import shape_str

    graphdef, state = nnx.split(model)

    def call(state, x):
        return nnx.merge(graphdef, state)(x)

    dtype = model._input_dtypes[0] or "float32"
    first_error = None
    # A size of None stands for any: one that passes (a window may need a long sequence).
    for size in (64, 4096) if None in input_shape else (None,):
        shape = (batch_size or 1, *(size if d is None else d for d in input_shape))
        try:
            jax.eval_shape(call, state, jax.ShapeDtypeStruct(shape, dtype))
            return
        except ValueError as err:
            first_error = first_error or err
    raise ValueError(
        f"keras_sequential: the layers do not take inputs of shape "
        f"{shape_str((batch_size, *input_shape))} (traced with sizes 64 and 4096 for None): "
        f"{first_error}"
    ) from None
