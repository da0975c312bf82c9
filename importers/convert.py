"""One converter per Keras class: ``CONVERTERS[class_name](config, arrays, in_shape) -> module``.

``config`` is the Keras layer config (``layer.get_config()``; Keras 3 or Keras 2 keys),
``arrays`` its weights in Keras ``get_weights()`` order and layout (SimpleRNN/GRU/LSTM:
``kernel (in, G*units)``, ``recurrent_kernel (units, G*units)``, ``bias``; gate orders
i,f,c,o and z,r,h), ``in_shape`` the input shape without the batch axis when the loader
knows it (a tuple; a list of tuples for layers called on several tensors), else None.

The recurrent layers are built from their Keras config directly: every jrnn recurrent
layer takes Keras' argument names, so a config key is passed through when the jrnn class
accepts it, dropped when it only restates a default jrnn shares (``trainable``,
``time_major=False``, ``implementation``...), and anything else raises
:class:`~importers.errors.UnsupportedLayerError` naming the key and its value, never
silently ignored. Every array's shape is checked against the parameter it fills.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

import jrnn
from importers._convert_core import _NAME_PREFIX, POOL_ALIASES, layer_rngs
from importers.errors import (
    ExtraWeightsError,
    KerasFileError,
    MissingWeightsError,
    UnsupportedLayerError,
    WeightShapeError,
)
from jrnn._dtypes import resolve_policy

# Keys of Keras layer configs that carry no meaning for a jrnn module, with the values
# jrnn supports (None: any value). `trainable` is kept on the module as an attribute.
_NEUTRAL_KEYS: dict[str, Any] = {
    "trainable": None,
    "implementation": None,  # Keras' 1/2 split only changes the op grouping, not the math
    "time_major": (False,),
    "batch_input_shape": None,
    "batch_shape": None,
    "input_dim": None,
    "input_length": None,
    "input_shape": None,
    "module": None,
    "registered_name": None,
    "reset_after": None,  # filtered by class below
    "unit_forget_bias": None,  # only used by initialisation
}


def _signature(cls: type) -> set[str]:
    for klass in cls.__mro__:
        params = inspect.signature(klass.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return set(params)
    return set()


def keras_kwargs(cls: type, config: dict, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The Keras config as keyword arguments of the jrnn class ``cls`` (see module doc)."""
    accepted = _signature(cls) - {"self", "rngs", "in_features", "in_channels", "cell"}
    name = config.get("name")
    out = {}
    for key, value in config.items():
        if key in drop:
            continue
        if key in accepted:
            out[key] = value
        elif key in _NEUTRAL_KEYS:
            allowed = _NEUTRAL_KEYS[key]
            if allowed is not None and value not in allowed:
                raise UnsupportedLayerError(
                    cls.__name__,
                    str(name),
                    detail=f"config {key}={value!r} is not supported by jrnn (supported: "
                    f"{list(allowed)}).",
                )
        else:
            raise UnsupportedLayerError(
                cls.__name__,
                str(name),
                detail=f"config key {key!r} (value {value!r}) has no jrnn equivalent, so the "
                "layer cannot be converted exactly.",
            )
    return out


#: What :func:`importers.load` is converting (a file's path, "a live Keras model"): the
#: source that conversion errors name.
SOURCE: contextvars.ContextVar[str] = contextvars.ContextVar("SOURCE", default="the source")


def count_error(layer: str, needed: list, arrays: list) -> KerasFileError:
    """The error for ``arrays`` that are fewer or more than the ``needed`` shapes."""
    kind = MissingWeightsError if len(arrays) < len(needed) else ExtraWeightsError
    return kind(
        f"{SOURCE.get()}: layer {layer!r} holds {len(arrays)} weight arrays (shapes "
        f"{[tuple(np.shape(a)) for a in arrays]}), but the jrnn layer needs {len(needed)} "
        f"(shapes {[tuple(s) for s in needed]}); the file was written by a different layer "
        "(use_bias, cell count) or is damaged.",
        path=SOURCE.get(),
        where=layer,
    )


def assign(params: list, arrays: list, layer: str, names: tuple[str, ...] | None = None) -> None:
    """Copy ``arrays`` into ``params`` (nnx Variables) after checking every shape first
    (``names``: the arrays' names in the source, else those it carries, else indices)."""
    if len(params) != len(arrays):
        raise count_error(layer, [p[...].shape for p in params], arrays)
    names = names or getattr(arrays, "weight_names", None)
    for k, (p, a) in enumerate(zip(params, arrays)):
        if tuple(p[...].shape) != tuple(np.shape(a)):
            raise WeightShapeError(
                path=SOURCE.get(),
                layer=layer,
                weight=f"{names[k]} (weight {k})" if names else f"weight {k}",
                expected=tuple(p[...].shape),
                received=tuple(np.shape(a)),
            )
    for p, a in zip(params, arrays):
        p[...] = jnp.asarray(a, dtype=p[...].dtype)


def _keras_params(module) -> list:
    from importers.weights import keras_params

    return keras_params(module)


def _finish(module, config: dict, arrays: list):
    """Assign arrays in Keras order and record ``trainable``."""
    assign(_keras_params(module), arrays, str(config.get("name")))
    return record_trainable(module, config)


# -- recurrent cells and layers ------------------------------------------------------------

_CELLS: dict[str, type] = {
    "SimpleRNNCell": jrnn.SimpleRNNCell,
    "GRUCell": jrnn.GRUCell,
    "LSTMCell": jrnn.LSTMCell,
    "IndRNNCell": jrnn.IndRNNCell,
}


def n_cell_weights(entry: dict) -> int:
    """Number of arrays a Keras recurrent cell / layer entry owns (``get_weights()``)."""
    cls, cfg = entry["class_name"], entry["config"]
    if cls == "StackedRNNCells":
        return sum(n_cell_weights(c) for c in cfg["cells"])
    if cls == "RNN":
        cell = cfg["cell"]
        cells = cell if isinstance(cell, list) else [cell]
        return sum(n_cell_weights(c) for c in cells)
    if cls == "Bidirectional":
        back = cfg.get("backward_layer") or cfg["layer"]
        return n_cell_weights(cfg["layer"]) + n_cell_weights(back)
    if cls in ("CuDNNLSTM", "CuDNNGRU"):
        return 3
    return 2 + (1 if cfg.get("use_bias", True) else 0)


def _cell(entry: dict, arrays: list, in_features: int):
    cls_name, cfg = entry["class_name"], entry["config"]
    if cls_name == "StackedRNNCells":
        return _stack(cfg["cells"], arrays, in_features)
    if cls_name not in _CELLS:
        raise UnsupportedLayerError(
            cls_name,
            str(cfg.get("name")),
            detail="not a recurrent cell class jrnn knows (SimpleRNNCell, GRUCell, "
            "LSTMCell, IndRNNCell, StackedRNNCells).",
        )
    cls = _CELLS[cls_name]
    drop = () if "name" in _signature(cls) else ("name",)
    kw = keras_kwargs(cls, cfg, drop=drop)
    if cls is jrnn.GRUCell:
        kw["reset_after"] = cfg.get("reset_after", False)
    cell = cls(kw.pop("units"), in_features, rngs=layer_rngs(cfg), **kw)
    return _finish(cell, cfg, arrays)


def _stack(cells: list, arrays: list, in_features: int):
    built, start = [], 0
    for entry in cells:
        n = n_cell_weights(entry)
        cell = _cell(entry, arrays[start : start + n], in_features)
        built.append(cell)
        in_features = entry["config"]["units"]
        start += n
    if start != len(arrays):
        raise ExtraWeightsError(
            f"{SOURCE.get()}: the stacked cells' layer holds {len(arrays)} weight arrays, "
            f"its {len(cells)} cells need {start}; refusing to drop the rest.",
            path=SOURCE.get(),
        )
    return jrnn.StackedRNNCells(built)


def _in_features(arrays: list, in_shape, name: str) -> int:
    if arrays:
        return int(np.shape(arrays[0])[0])
    if in_shape:
        return int(in_shape[-1])
    raise UnsupportedLayerError(None, name, detail="its input size is unknown (no weights).")


def _from_cudnn_layout(cls: type, config: dict, arrays: list) -> list:
    """CuDNN-layout arrays in an LSTM/GRU layer converted by Keras 2's own rule.

    Keras 2 does this when a CuDNNLSTM/CuDNNGRU weights file is loaded into LSTM/GRU (the
    bias shape tells the layout); CuDNNGRU into ``GRU(reset_after=False)`` is refused, as
    Keras refuses it.
    """
    from importers import layouts

    kind = "lstm" if cls is jrnn.LSTM else "gru"
    if len(arrays) != 3:
        return arrays
    try:
        layout = layouts.detect_keras_rnn_layout(kind, *arrays)
    except ValueError:
        return arrays  # not a layout question: the shape check reports the mismatch
    if layout != "cudnn":
        return arrays
    if kind == "gru" and not config.get("reset_after", False):
        raise UnsupportedLayerError(
            "GRU",
            str(config.get("name")),
            detail="the weights are in CuDNNGRU layout, which is reset-after; Keras 2 refuses "
            "to load them into GRU(reset_after=False) and so does jrnn.",
        )
    convert = layouts.cudnn_lstm_to_keras if kind == "lstm" else layouts.cudnn_gru_to_keras
    return list(convert(*arrays))


def _rnn_layer(cls: type, *, gru: bool = False):
    def convert(config: dict, arrays: list, in_shape: Any):
        kw = keras_kwargs(cls, config)
        if gru:
            # Keras 2 (multi-backend) GRU defaulted to reset_after=False; configs written
            # before the argument existed do not record it.
            kw["reset_after"] = config.get("reset_after", False)
        if cls in (jrnn.LSTM, jrnn.GRU):
            arrays = _from_cudnn_layout(cls, config, arrays)
        if kw.get("implementation") == 0:  # Keras 2.0-2.2's (and Keras 1 'cpu') mode 0 is 1
            kw["implementation"] = 1
        units = kw.pop("units")
        layer = cls(
            units,
            _in_features(arrays, in_shape, str(config.get("name"))),
            rngs=layer_rngs(config),
            **kw,
        )
        return _finish(layer, config, arrays)

    return convert


def _rnn(config: dict, arrays: list, in_shape: Any):
    """Keras ``RNN(cell)`` / ``RNN([cells])``."""
    cell_cfg = config["cell"]
    in_features = _in_features(arrays, in_shape, str(config.get("name")))
    if isinstance(cell_cfg, list):
        cell = _stack(cell_cfg, arrays, in_features)
    else:
        cell = _cell(cell_cfg, arrays, in_features)
    kw = keras_kwargs(jrnn.RNN, config, drop=("cell", "dtype"))  # cells carry the policy
    return record_trainable(jrnn.RNN(cell, **kw), config)


def _conv_lstm(cls: type, rank: int):
    def convert(config: dict, arrays: list, in_shape: Any):
        name = str(config.get("name"))
        if isinstance(in_shape, list) and in_shape and isinstance(in_shape[0], tuple):
            in_shape = in_shape[0]  # Keras 2's call node [x, *initial states]
        kw = keras_kwargs(cls, config, drop=("keras2",))
        if config.get("keras2"):  # tf.keras' ConvRNN never passes zero_output_for_mask
            kw["zero_output_for_mask"] = False
        channels_first = kw.get("data_format") == "channels_first"
        spatial = channels = None  # unknown: frames of any size, states following each call
        if in_shape and len(in_shape) == rank + 2:
            spatial = tuple(in_shape[2:]) if channels_first else tuple(in_shape[1:-1])
            channels = in_shape[1] if channels_first else in_shape[-1]
            if any(d is None for d in spatial):
                spatial = None
        if arrays:
            channels = arrays[0].shape[-2]  # the kernel (*kernel_size, in_channels, 4f)
        if channels is None:
            raise UnsupportedLayerError(
                cls.__name__,
                name,
                detail="neither its weights nor the model record its input channels; give "
                "the Keras model a keras.Input shape, or save it with its weights.",
            )
        layer = cls(
            kw.pop("filters"),
            kw.pop("kernel_size"),
            in_channels=int(channels),
            spatial_shape=spatial,
            rngs=layer_rngs(config),
            **kw,
        )
        layer.keeps_output_when_masked = bool(config.get("keras2"))
        return _finish(layer, config, arrays)

    return convert


# -- wrappers ---------------------------------------------------------------------------------


def inner(entry: dict, arrays: list, in_shape: Any):
    cls = entry["class_name"]
    if cls not in CONVERTERS:
        nested = cls in ("Sequential", "Functional", "Model")
        raise UnsupportedLayerError(
            cls,
            str(entry.get("config", {}).get("name")),
            detail="a model is converted in TimeDistributed(model), not wrapped deeper "
            "(TimeDistributed(TimeDistributed(model))); pass custom_layers for the outer "
            "wrapper's class"
            if nested
            else "it is wrapped (Bidirectional/TimeDistributed) and jrnn has no converter "
            "for the class.",
        )
    return record_trainable(CONVERTERS[cls](entry["config"], arrays, in_shape), entry["config"])


def record_trainable(module: Any, config: dict) -> Any:
    """``module`` with Keras' ``trainable=False`` (a frozen layer) recorded on it, which
    :func:`jrnn.training.make_train_step` and BatchNormalization read."""
    if config.get("trainable") is False and isinstance(module, nnx.Module):
        module.trainable = False
    return module


def _bidirectional(config, arrays, in_shape):
    """Keras order: the forward layer's weights, then the backward layer's."""
    n_forward = (
        n_cell_weights(config["layer"]) if _is_recurrent(config["layer"]) else (len(arrays) // 2)
    )
    fwd = inner(config["layer"], arrays[:n_forward], in_shape)
    bcfg = config.get("backward_layer")
    if bcfg is None:
        cfg = dict(config["layer"]["config"])
        cfg["go_backwards"] = not cfg.get("go_backwards", False)
        cfg["name"] = "backward_" + str(cfg.get("name"))
        bcfg = {"class_name": config["layer"]["class_name"], "config": cfg}
    token = _NAME_PREFIX.set("backward/")  # its own dropout streams (cells' names repeat)
    try:
        bwd = inner(bcfg, arrays[n_forward:], in_shape)
    finally:
        _NAME_PREFIX.reset(token)
    kw = keras_kwargs(jrnn.Bidirectional, config, drop=("layer", "backward_layer"))
    return jrnn.Bidirectional(fwd, backward_layer=bwd, **kw)


def _is_recurrent(entry: dict) -> bool:
    return entry["class_name"] in _RECURRENT


#: Weightless layers whose Keras 3 ``call`` computes in its inputs' dtype (no variable,
#: no dtype of its own; the Gaussian noise layers draw their noise in their own, see
#: ``_GAUSSIAN_NOISE``): inside Keras 3's TimeDistributed, which casts the inputs to its
#: compute dtype and runs ``layer.call`` (no autocast to the layer's own), they return
#: the wrapper's compute dtype whatever theirs.
WEIGHTLESS_IN_WRAPPER = frozenset(
    (
        "Flatten", "Reshape", "Permute", "RepeatVector", "Activation", "ReLU", "LeakyReLU",
        "ELU", "Softmax", "Dropout", "SpatialDropout1D", "GaussianNoise", "GaussianDropout",
        "Identity", "Masking", "ActivityRegularization",
        "MaxPooling1D", "AveragePooling1D", "GlobalMaxPooling1D", "GlobalAveragePooling1D",
        "MaxPooling2D", "AveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling2D",
        "MaxPooling3D", "AveragePooling3D", "GlobalMaxPooling3D", "GlobalAveragePooling3D",
        "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
        "Cropping3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
        *POOL_ALIASES,
    )
)  # fmt: skip

#: Layers whose Keras 3 ``call`` reads no dtype of its own: inside Keras 3's
#: TimeDistributed (which runs ``layer.call``, not ``layer(...)``: no autocast of the
#: wrapped layer's own) they compute in the wrapper's policy: the weightless ones in its
#: compute dtype, the weighted ones with their variables read as :func:`_wrapped_policy`
#: says.
IN_WRAPPER_POLICY = WEIGHTLESS_IN_WRAPPER | {"Dense", "Conv1D", "Conv2D", "Conv3D", "PReLU"}


_GAUSSIAN_NOISE = ("GaussianNoise", "GaussianDropout")


def _time_distributed(config, arrays, in_shape):
    sub = tuple(in_shape[1:]) if in_shape else None
    kw = keras_kwargs(jrnn.TimeDistributed, config, drop=("layer", "dtype"))
    entry = config["layer"]
    noise_dtype = None
    if (
        not config.get("keras2")  # tf.keras calls the wrapped layer: its own policy applies
        and entry.get("class_name") in IN_WRAPPER_POLICY
        and config.get("dtype") is not None
    ):
        own = entry.get("config", {}).get("dtype")
        if entry.get("class_name") in WEIGHTLESS_IN_WRAPPER:
            # Keras 3 runs `layer.call` on inputs in the wrapper's compute dtype, which a
            # weightless layer computes in and returns (its own policy is never applied);
            # a Gaussian noise layer draws its noise in its own compute dtype.
            policy = np.dtype(resolve_policy(config["dtype"]).compute_dtype).name
            if entry.get("class_name") in _GAUSSIAN_NOISE:
                noise_dtype = np.dtype(resolve_policy(own).compute_dtype).name
        else:
            policy = _wrapped_policy(config["dtype"], own)
        if policy is not None:
            entry = {**entry, "config": {**entry.get("config", {}), "dtype": policy}}
    layer = inner(entry, arrays, sub)
    if noise_dtype is not None:
        layer.noise_dtype = noise_dtype
    module = jrnn.TimeDistributed(layer, **kw)
    module.keeps_output_dtype = True  # Keras returns what the wrapped layer computed
    return module


def wider_float(a: Any, b: Any) -> np.dtype:
    """The float dtype both promote to: the wider one; float32 for float16 with bfloat16."""
    a, b = np.dtype(a), np.dtype(b)
    if a == b or a.itemsize != b.itemsize:
        return a if a.itemsize >= b.itemsize else b
    return np.dtype(np.float32)


def _wrapped_policy(wrapper: Any, layer: Any) -> str | None:
    """The policy a layer computes in inside Keras 3's TimeDistributed of policy ``wrapper``
    (which casts the inputs to its compute dtype and runs ``layer.call``): a mixed wrapper
    reads the layer's variables in its compute dtype (Keras' autocast scope); a plain one
    leaves them as they are, so the maths runs in the wider of the two dtypes (a float16
    wrapper over a float32 Dense: float32 maths on float16-rounded inputs). The layer's
    variables keep their dtype. None where no policy names the pair (the layer then keeps
    its own)."""
    wrapper, layer = resolve_policy(wrapper), resolve_policy(layer)
    variables = np.dtype(layer.param_dtype)
    compute = np.dtype(wrapper.compute_dtype)
    if compute == np.dtype(wrapper.param_dtype):  # no autocast scope
        compute = wider_float(compute, variables)
    if compute == variables:
        return compute.name
    if variables == np.dtype(np.float32) and compute.name in ("float16", "bfloat16"):
        return f"mixed_{compute.name}"
    return None


_RECURRENT = {
    "SimpleRNN": _rnn_layer(jrnn.SimpleRNN),
    "GRU": _rnn_layer(jrnn.GRU, gru=True),
    "LSTM": _rnn_layer(jrnn.LSTM),
    "RNN": _rnn,
    "CuDNNLSTM": _rnn_layer(jrnn.CuDNNLSTM),
    "CuDNNGRU": _rnn_layer(jrnn.CuDNNGRU),
    "IndRNN": _rnn_layer(jrnn.IndRNN),
    "ConvLSTM1D": _conv_lstm(jrnn.ConvLSTM1D, 1),
    "ConvLSTM2D": _conv_lstm(jrnn.ConvLSTM2D, 2),
    "ConvLSTM3D": _conv_lstm(jrnn.ConvLSTM3D, 3),
}

CONVERTERS: dict[str, Callable[[dict, list, Any], nnx.Module]] = {
    **_RECURRENT,
    "Bidirectional": _bidirectional,
    "TimeDistributed": _time_distributed,
}

from importers._convert_core import CORE_CONVERTERS, with_policy  # noqa: E402

CONVERTERS.update(CORE_CONVERTERS)
# TimeDistributed autocasts its inputs to its own policy, as Keras layers do.
CONVERTERS["TimeDistributed"] = with_policy(_time_distributed)
