"""Converters for the non-recurrent Keras layers around RNNs.

``CORE_CONVERTERS[class_name](config, arrays, in_shape) -> nnx.Module`` with the contract of
:mod:`importers.convert`: ``config`` is the Keras 3 or tf_keras 2 layer config, ``arrays`` its
weights in ``get_weights()`` order. Sizes come from the arrays; every array's shape is checked,
and config values jrnn does not reproduce exactly raise ``ValueError`` naming layer, key, value.
"""

from __future__ import annotations

import contextvars
import zlib
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrnn._dtypes import resolve_policy, set_policy
from jrnn.layers import attention, core

#: The variable dtype of the layer being converted (its policy's), so that its arrays are
#: cast once, from the file's dtype: a float64 array through a float32 variable first
#: would lose its low bits.
_PARAM_DTYPE: contextvars.ContextVar = contextvars.ContextVar("param_dtype", default=None)


#: Keras' merge layers (jrnn.layers.core has each under the same name).
MERGE_CLASSES = ("Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")

#: Keras' pooling families, each in 1, 2 and 3 dimensions (``MaxPooling2D``...; jrnn.layers.core
#: has each under the same name).
POOLS = ("MaxPooling", "AveragePooling", "GlobalMaxPooling", "GlobalAveragePooling")
#: Their short names, ``MaxPool2D`` -> ``MaxPooling2D``, as tf.keras and Keras 3 export them.
POOL_ALIASES = {
    f"{kind.replace('Pooling', 'Pool').replace('Average', 'Avg')}{rank}D": f"{kind}{rank}D"
    for kind in POOLS
    for rank in (1, 2, 3)
}


def _name(config: dict) -> str:
    return str(config.get("name"))


def _refuse(config: dict, key: str, value: Any, supported: str) -> ValueError:
    return ValueError(
        f"layer {_name(config)!r}: {key}={value!r} is not supported (supported: {supported})."
    )


def _n_arrays(config: dict, arrays: list, names: list[str]) -> None:
    if len(arrays) != len(names):
        raise ValueError(
            f"layer {_name(config)!r}: expected {len(names)} weight arrays {names}; "
            f"received {len(arrays)}."
        )


def _assign(config: dict, variables: list, arrays: list, names: list[str]) -> None:
    _n_arrays(config, arrays, names)
    for var, arr, wname in zip(variables, arrays, names):
        arr = np.asarray(arr)
        if tuple(arr.shape) != tuple(var.shape):
            raise ValueError(
                f"layer {_name(config)!r}: weight {wname!r} must have shape {tuple(var.shape)}; "
                f"received {tuple(arr.shape)}."
            )
        dtype = var[...].dtype
        if jnp.issubdtype(dtype, jnp.floating) and _PARAM_DTYPE.get() is not None:
            dtype = _PARAM_DTYPE.get()
        var.set_value(jnp.asarray(arr, dtype=dtype))


def _first(config: dict, arrays: list, wname: str, ndim: int) -> np.ndarray:
    if not arrays:
        raise ValueError(f"layer {_name(config)!r}: expected weight {wname!r}; received none.")
    arr = np.asarray(arrays[0])
    if arr.ndim != ndim:
        raise ValueError(
            f"layer {_name(config)!r}: weight {wname!r} must be {ndim}-D; received shape "
            f"{tuple(arr.shape)}."
        )
    return arr


def _only(config: dict, key: str, allowed: tuple, default: Any = None) -> Any:
    value = config.get(key, default)
    if value not in allowed:
        raise _refuse(config, key, value, ", ".join(repr(a) for a in allowed))
    return value


def _falsy(config: dict, *keys: str) -> None:
    for key in keys:
        if config.get(key):
            raise _refuse(config, key, config[key], "a false/None value")


def _dense(config, arrays, in_shape):
    kernel = _first(config, arrays, "kernel", 2)
    return _kernel_bias(
        config, arrays, lambda **kw: core.Dense(int(config["units"]), int(kernel.shape[0]), **kw)
    )


def _governance(config: dict, prefixes: tuple[str, ...], activity: bool = True) -> dict:
    """The config's ``{prefix}_regularizer``/``_constraint`` (and ``activity_regularizer``)
    as keyword arguments: training with jrnn applies them as Keras' ``fit`` does."""
    keys = [f"{p}_{kind}" for p in prefixes for kind in ("regularizer", "constraint")]
    out = {k: config[k] for k in keys if config.get(k) is not None}
    if config.get("activity_regularizer") is not None:
        if not activity:
            raise _refuse(config, "activity_regularizer", config["activity_regularizer"], "None")
        out["activity_regularizer"] = config["activity_regularizer"]
    return out


def layer_rngs(config: dict) -> nnx.Rngs:
    """The random streams of a converted layer: parameters from key 0 (the file's weights
    replace them) and dropout from the layer's Keras ``seed``, or, without one, from its
    name. Keras gives every layer a seed generator of its own, so two layers' dropout
    masks differ; so do these (deterministically, where Keras' unseeded draws are not)."""
    seed = _seed(config)
    if seed is None:
        seed = zlib.crc32(f"{_NAME_PREFIX.get()}{config.get('name')}".encode())
    return nnx.Rngs(0, dropout=seed)


#: Prefixed to the names that seed :func:`layer_rngs` while a Bidirectional's backward
#: layer is converted: its cells keep the forward cells' names in Keras' configs.
_NAME_PREFIX: contextvars.ContextVar[str] = contextvars.ContextVar("jrnn_name_prefix", default="")


def _seed(config: dict) -> int | None:
    """The config's Keras ``seed`` (an int), else None."""
    seed = config.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _kernel_bias(config, arrays, make):
    """A Dense/Conv-like module ``make(activation=, use_bias=, name=, rngs=, regularizers
    and constraints)`` with the Keras ``kernel`` (and ``bias``) assigned."""
    use_bias = config.get("use_bias", True)
    m = make(
        activation=config.get("activation"),
        use_bias=use_bias,
        name=config.get("name"),
        rngs=nnx.Rngs(0),
        **_governance(config, ("kernel", "bias")),
    )
    _assign(config, m.keras_weights(), arrays, ["kernel", "bias"][: 1 + bool(use_bias)])
    return m


def _embedding(config, arrays, in_shape):
    emb = _first(config, arrays, "embeddings", 2)
    m = core.Embedding(
        int(config.get("input_dim", emb.shape[0])),
        int(config.get("output_dim", emb.shape[1])),
        mask_zero=bool(config.get("mask_zero", False)),
        name=config.get("name"),
        rngs=nnx.Rngs(0),
        **_governance(config, ("embeddings",)),
    )
    _assign(config, m.keras_weights(), arrays, ["embeddings"])
    return m


def _noise_shape_none(config):
    if config.get("noise_shape") is not None:
        raise _refuse(config, "noise_shape", config["noise_shape"], "None")


def _dropout(cls):
    def convert(config, arrays, in_shape):
        _n_arrays(config, arrays, [])
        if cls is core.Dropout:
            _noise_shape_none(config)
        if cls is core.SpatialDropout1D:
            _only(config, "data_format", ("channels_last", None))
        return cls(
            float(config.get("rate", 0.0)),
            seed=_seed(config),
            name=config.get("name"),
            rngs=layer_rngs(config),
        )

    return convert


def _merge(cls):
    def convert(config, arrays, in_shape):
        _n_arrays(config, arrays, [])
        keras2 = bool(config.get("keras2", False))  # tf.keras' mask rules (importers.model)
        if cls is core.Concatenate:
            return cls(int(config.get("axis", -1)), name=config.get("name"), keras2=keras2)
        return cls(name=config.get("name"), keras2=keras2)

    return convert


def _conv(cls):
    def convert(config, arrays, in_shape):
        kernel = _first(config, arrays, "kernel", cls.rank + 2)
        groups = int(config.get("groups", 1))
        fmt = _only(config, "data_format", ("channels_last", "channels_first"), "channels_last")
        paddings = ("valid", "same", "causal") if cls.rank == 1 else ("valid", "same")
        padding = _only(config, "padding", paddings, "valid")
        return _kernel_bias(
            config,
            arrays,
            lambda **kw: cls(
                int(config["filters"]),
                config["kernel_size"],
                int(kernel.shape[-2]) * groups,
                strides=config.get("strides", 1),
                padding=padding,
                data_format=fmt,
                dilation_rate=config.get("dilation_rate", 1),
                groups=groups,
                **kw,
            ),
        )

    return convert


def _pool(cls):
    """Max/AveragePooling{1,2,3}D (Keras 3 keeps ``padding`` as written; TensorFlow, which
    computes it, and tf.keras take it in any case)."""

    def convert(config, arrays, in_shape):
        _n_arrays(config, arrays, [])
        padding = config.get("padding", "valid")
        if isinstance(padding, str):
            config = {**config, "padding": padding.lower()}
        return cls(
            config.get("pool_size", 2),
            config.get("strides"),
            _only(config, "padding", ("valid", "same"), "valid"),
            _only(config, "data_format", ("channels_last", "channels_first"), "channels_last"),
            name=config.get("name"),
        )

    return convert


def _global_pool(cls):
    def convert(config, arrays, in_shape):
        _n_arrays(config, arrays, [])
        fmt = _only(config, "data_format", ("channels_last", "channels_first"), "channels_last")
        return cls(fmt, bool(config.get("keepdims", False)), name=config.get("name"))

    return convert


def _batch_norm(config, arrays, in_shape):
    _falsy(config, "renorm", "virtual_batch_size", "adjustment", "synchronized")
    center, scale = config.get("center", True), config.get("scale", True)
    names = ["gamma"] * bool(scale) + ["beta"] * bool(center) + ["moving_mean", "moving_variance"]
    _n_arrays(config, arrays, names)
    axis = config.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise _refuse(config, "axis", axis, "a single axis")
        axis = axis[0]
    rank = None if in_shape is None else len(in_shape) + 1
    fused = (  # tf.keras' default fused kernel (`fused` is not in its configs)
        bool(config.get("keras2"))
        and config.get("fused") is not False
        and rank in (4, 5)
        and int(axis) % rank in (1, rank - 1)
    )
    m = core.BatchNormalization(
        int(np.asarray(arrays[-1]).reshape(-1).shape[0]),
        axis=int(axis),
        unbiased_moving_variance=fused,
        momentum=config.get("momentum", 0.99),
        epsilon=config.get("epsilon", 1e-3),
        center=center,
        scale=scale,
        name=config.get("name"),
        **_governance(config, ("beta", "gamma"), activity=False),
    )
    _assign(config, m.keras_weights(), arrays, names)
    return m


def _layer_norm(config, arrays, in_shape):
    _falsy(config, "rms_scaling")
    center, scale = config.get("center", True), config.get("scale", True)
    names = ["gamma"] * bool(scale) + ["beta"] * bool(center)
    _n_arrays(config, arrays, names)
    if not arrays:
        raise _refuse(config, "center/scale", (center, scale), "at least one of them True")
    m = core.LayerNormalization(
        np.asarray(arrays[0]).shape,
        axis=config.get("axis", -1),
        epsilon=config.get("epsilon", 1e-3),
        center=center,
        scale=scale,
        name=config.get("name"),
        **_governance(config, ("beta", "gamma"), activity=False),
    )
    _assign(config, m.keras_weights(), arrays, names)
    return m


def _attention(additive: bool):
    def convert(config, arrays, in_shape):
        use_scale = bool(config.get("use_scale", additive))
        mode = "dot" if additive else _only(config, "score_mode", ("dot", "concat"), "dot")
        names = ["scale"] * use_scale + ["concat_score_weight"] * (mode == "concat")
        _n_arrays(config, arrays, names)
        common = {
            "use_scale": use_scale,
            "dropout": float(config.get("dropout", 0.0)),
            "causal": bool(config.get("causal", False)),
            "name": config.get("name"),
            "rngs": layer_rngs(config),
        }
        if additive:
            dim = int(np.asarray(arrays[0]).shape[-1]) if use_scale else None
            m = attention.AdditiveAttention(dim, **common)
        else:
            m = attention.Attention(score_mode=mode, **common)
        _assign(config, m.keras_weights(), arrays, names)
        return m

    return convert


def _no_weights(build):
    def convert(config, arrays, in_shape):
        _n_arrays(config, arrays, [])
        return build(config)

    return convert


def _float(config: dict, key: str, default: Any) -> Any:
    """A number of the config as a float (tf.keras' live configs hold NumPy scalars, from
    ``cast_to_floatx``); None stays None, anything else is left for the layer to refuse."""
    value = config.get(key, default)
    if value is None or isinstance(value, bool):
        return value
    try:
        return float(np.asarray(value).item()) if np.ndim(value) == 0 else value
    except (TypeError, ValueError):
        return value


def _leaky_relu(config):
    # Keras 3 writes `negative_slope`; tf.keras (and Keras 3's deprecated spelling) `alpha`.
    key = "negative_slope" if "negative_slope" in config or "alpha" not in config else "alpha"
    return core.LeakyReLU(_float(config, key, 0.3), name=config.get("name"))


def _softmax(config):
    # tf.keras' rule (`keras2`: masked logits get -1e9 added, outputs are not zeroed) where
    # importers.model marks the layer, or where its tf.keras-only `robust_masking` shows it.
    robust = bool(config.get("robust_masking", False))
    return core.Softmax(
        config.get("axis", -1),
        keras2=bool(config.get("keras2", False)) or "robust_masking" in config,
        robust_masking=robust,
        name=config.get("name"),
    )


def _prelu(config, arrays, in_shape):
    _n_arrays(config, arrays, ["alpha"])
    m = core.PReLU(  # the input's sizes are alpha's (1 on the shared axes)
        tuple(int(d) for d in np.shape(arrays[0])),
        shared_axes=config.get("shared_axes"),
        name=config.get("name"),
        **_governance(config, ("alpha",)),
    )
    _assign(config, m.keras_weights(), arrays, ["alpha"])
    return m


def _spatial(cls, key: str, default: Any, **extra: Any):
    """ZeroPadding/Cropping/UpSampling{1,2,3}D: ``key`` (``padding``, ``cropping``, ``size``;
    ``default`` where the config lacks it, Keras' default), ``data_format`` where the class
    takes one (None: ``channels_last``; tf.keras' ZeroPadding1D has none) and the ``extra``
    keyword arguments, read from the config with their defaults (UpSampling2D's
    ``interpolation``, and ``keras2``, which importers.model sets for tf.keras' layer)."""

    def build(config):
        args = [config.get(key, default)]
        if cls not in (core.Cropping1D, core.UpSampling1D):  # Keras' have no data_format
            formats = ("channels_last", "channels_first", None)
            args.append(_only(config, "data_format", formats, None))
        kwargs = {k: config.get(k, d) for k, d in extra.items()}
        return cls(*args, **kwargs, name=config.get("name"))

    return _no_weights(build)


CORE_CONVERTERS: dict[str, Callable[[dict, list, Any], nnx.Module]] = {
    "Dense": _dense,
    "Embedding": _embedding,
    "Masking": _no_weights(
        lambda c: core.Masking(float(c.get("mask_value", 0.0)), name=c.get("name"))
    ),
    "Activation": _no_weights(lambda c: core.Activation(c["activation"], name=c.get("name"))),
    "Dropout": _dropout(core.Dropout),
    "SpatialDropout1D": _dropout(core.SpatialDropout1D),
    "GaussianNoise": _no_weights(
        lambda c: core.GaussianNoise(
            float(c["stddev"]), seed=_seed(c), name=c.get("name"), rngs=layer_rngs(c)
        )
    ),
    "GaussianDropout": _no_weights(
        lambda c: core.GaussianDropout(
            float(c["rate"]), seed=_seed(c), name=c.get("name"), rngs=layer_rngs(c)
        )
    ),
    **{name: _merge(getattr(core, name)) for name in MERGE_CLASSES},
    "Flatten": _no_weights(
        lambda c: core.Flatten(
            _only(c, "data_format", ("channels_last", "channels_first", None), None)
            or "channels_last",
            name=c.get("name"),
        )
    ),
    "Reshape": _no_weights(lambda c: core.Reshape(c["target_shape"], name=c.get("name"))),
    "Permute": _no_weights(lambda c: core.Permute(c["dims"], name=c.get("name"))),
    "RepeatVector": _no_weights(lambda c: core.RepeatVector(c["n"], name=c.get("name"))),
    "ZeroPadding1D": _spatial(core.ZeroPadding1D, "padding", 1),
    "ZeroPadding2D": _spatial(core.ZeroPadding2D, "padding", 1),
    "ZeroPadding3D": _spatial(core.ZeroPadding3D, "padding", 1),
    "Cropping1D": _spatial(core.Cropping1D, "cropping", 1),
    "Cropping2D": _spatial(core.Cropping2D, "cropping", 0),
    "Cropping3D": _spatial(core.Cropping3D, "cropping", 1),
    "UpSampling1D": _spatial(core.UpSampling1D, "size", 2),
    "UpSampling2D": _spatial(core.UpSampling2D, "size", 2, interpolation="nearest", keras2=False),
    "UpSampling3D": _spatial(core.UpSampling3D, "size", 2),
    "LeakyReLU": _no_weights(_leaky_relu),
    "ReLU": _no_weights(
        lambda c: core.ReLU(
            _float(c, "max_value", None),
            _float(c, "negative_slope", 0.0),
            _float(c, "threshold", 0.0),
            name=c.get("name"),
        )
    ),
    "ELU": _no_weights(lambda c: core.ELU(_float(c, "alpha", 1.0), name=c.get("name"))),
    "Softmax": _no_weights(_softmax),
    "PReLU": _prelu,
    "Identity": _no_weights(
        lambda c: core.Identity(keras2=bool(c.get("keras2", False)), name=c.get("name"))
    ),
    "ActivityRegularization": _no_weights(
        lambda c: core.ActivityRegularization(
            _float(c, "l1", 0.0), _float(c, "l2", 0.0), name=c.get("name")
        )
    ),
    "Conv1D": _conv(core.Conv1D),
    "Conv2D": _conv(core.Conv2D),
    "Conv3D": _conv(core.Conv3D),
    **{
        f"{kind}{rank}D": (_global_pool if kind.startswith("Global") else _pool)(
            getattr(core, f"{kind}{rank}D")
        )
        for kind in POOLS
        for rank in (1, 2, 3)
    },
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "Attention": _attention(additive=False),
    "AdditiveAttention": _attention(additive=True),
}


def _no_lost_penalty(config: dict, module: Any) -> Any:
    """Keras 3 writes ``activity_regularizer`` for every layer and adds its penalty to the
    model's losses; jrnn's Dense, Conv and Embedding carry it, the other core layers would
    drop it."""
    penalty = config.get("activity_regularizer")
    if penalty is not None and getattr(module, "activity_regularizer", None) is None:
        raise _refuse(config, "activity_regularizer", penalty, "None on this layer")
    return module


def with_policy(convert):
    """The layer's Keras dtype policy carried over: variables in its variable dtype, and the
    policy set as the layers' ``dtype=`` sets it (:func:`jrnn._dtypes.set_policy`:
    ``module.compute_dtype``, which ``importers.load`` casts floating inputs and outputs to,
    as Keras autocasts, and ``module.dtype_policy``)."""

    def convert_with_policy(config, arrays, in_shape):
        if config.get("dtype") is None:
            return _no_lost_penalty(config, convert(config, arrays, in_shape))
        policy = resolve_policy(config["dtype"], owner=f"layer {_name(config)!r}")
        token = _PARAM_DTYPE.set(jnp.dtype(policy.param_dtype))
        try:
            module = convert(config, arrays, in_shape)
        finally:
            _PARAM_DTYPE.reset(token)
        for var in module.keras_weights() if hasattr(module, "keras_weights") else []:
            if jnp.issubdtype(var.get_value().dtype, jnp.floating):
                var.set_value(var.get_value().astype(policy.param_dtype))
        set_policy(module, policy)  # as the constructors' dtype= sets it
        return _no_lost_penalty(config, module)

    return convert_with_policy


CORE_CONVERTERS = {k: with_policy(v) for k, v in CORE_CONVERTERS.items()}
# The pools' aliases (tf.keras and Keras 3 export both names: MaxPool2D, AvgPool3D, ...)
CORE_CONVERTERS.update({alias: CORE_CONVERTERS[cls] for alias, cls in POOL_ALIASES.items()})
