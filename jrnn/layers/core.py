"""Non-recurrent Keras layers a ported model needs, as thin nnx Modules (Keras names/layout).

Dense (kernel ``(in, out)``, bias ``(out,)``), Embedding (``embeddings (vocab, dim)``,
``mask_zero``), Masking, Activation, the dropout/noise family (identity at inference, Keras'
training behaviour drawn from an ``rngs`` ``dropout`` stream), the merges, Flatten, Reshape,
Permute, RepeatVector, Conv1D/2D/3D, 1D pooling, BatchNormalization and LayerNormalization.
Each module's ``compute_mask(x, mask)`` follows Keras 3.15's rule for its class.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> Dense(3, 2, rngs=nnx.Rngs(0))(jnp.ones((1, 2))).shape
    (1, 3)
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrnn import _checks, activations, initializers, regularizers
from jrnn.cells.base import set_regularizers_and_constraints


def _govern(module: Any, prefixes: tuple[str, ...], arguments: dict[str, Any]) -> None:
    """Keras' ``{prefix}_regularizer`` and ``{prefix}_constraint`` for each weight prefix
    (:func:`jrnn.regularization_loss` and :func:`jrnn.apply_constraints` read them) and,
    with ``activity_regularizer`` among ``arguments``, the output's penalty."""
    set_regularizers_and_constraints(module, arguments, prefixes)
    if "activity_regularizer" in arguments:
        module.activity_regularizer = _checks.resolved(
            regularizers.get, arguments["activity_regularizer"], "activity_regularizer", module
        )
        module.activity_loss = nnx.data(None)


def _initializer_config(value: Any) -> str | None:
    """An initializer argument as Keras writes it, JSON-encoded (hashable, for the module's
    static attributes): a name, a config dict, a jrnn initializer's config; None for a
    plain function, which has no Keras config."""
    import json

    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, initializers.KerasInitializer):
        return json.dumps(
            {
                "module": "keras.initializers",
                "class_name": type(value).__name__,
                "config": value.get_config(),
                "registered_name": None,
            }
        )
    return None


def _initial(module: Any, weight: str, value: Any, shape: tuple, rngs: Any) -> jax.Array:
    """Float32 values of ``weight`` from Keras' ``{weight}_initializer`` argument ``value``
    (a name, a Keras config or an initializer), recorded for the Keras config. Zeros, ones
    and constants need no ``rngs``; a random initializer without them raises."""
    argument = f"{weight}_initializer"
    init = _checks.resolved(initializers.get, value, argument, module)
    module.keras_initializers = (
        *getattr(module, "keras_initializers", ()),
        (argument, _initializer_config(value)),
    )
    if rngs is None:
        if isinstance(init, initializers._RandomInitializer) or not isinstance(
            init, initializers.KerasInitializer
        ):
            raise ValueError(
                f"{_checks.where(module)}: `{argument}`={value!r} draws random values; pass "
                "rngs=nnx.Rngs(...)."
            )
        return init(jax.random.key(0), shape, jnp.float32)
    return init(rngs.params(), shape, jnp.float32)


def _kernel_and_bias(module: Any, shape: tuple, use_bias: bool, arguments: dict, rngs) -> None:
    """``module.kernel`` of ``shape`` and ``module.bias`` of its last size (None without
    ``use_bias``), from the constructor's ``kernel_initializer`` / ``bias_initializer``."""
    init = arguments["kernel_initializer"]
    module.kernel = nnx.Param(_initial(module, "kernel", init, shape, rngs))
    init = arguments["bias_initializer"]
    module.bias = nnx.Param(_initial(module, "bias", init, shape[-1:], rngs)) if use_bias else None


def _active(module: Any, output: Any) -> Any:
    """Record the activity penalty of ``output`` (Keras' ``layer.losses``) and return it."""
    if getattr(module, "activity_regularizer", None) is not None:
        from jrnn.rnn import record_activity_loss

        record_activity_loss(module, output)
    return output


def _bad(layer: Any, arg: str, expected: str, received: Any) -> ValueError:
    return ValueError(f"{type(layer).__name__}: {arg} must be {expected}; received {received!r}.")


class Dense(nnx.Module):
    """``activation(x @ kernel + bias)``; x ``(..., in_features)`` -> ``(..., units)``.

    Keras weights: ``kernel (in_features, units)``, ``bias (units,)``. The mask passes through.
    """

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self.units, self.name = units, name
        self.activation = _checks.resolved(activations.get, activation, "activation", self)
        _govern(self, ("kernel", "bias"), locals())
        _kernel_and_bias(self, (in_features, units), use_bias, locals(), rngs)

    def __call__(self, x, *, training: bool = False):
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"{_checks.where(self)}: `inputs` must have {self.kernel.shape[0]} features "
                f"last, (..., {self.kernel.shape[0]}); received shape {jnp.shape(x)}."
            )
        y = x @ self.kernel[...].astype(x.dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        return _active(self, self.activation(y))

    def keras_weights(self) -> list:
        """``[kernel, bias]`` (bias only with ``use_bias``)."""
        return [self.kernel] + ([self.bias] if self.bias is not None else [])


class Embedding(nnx.Module):
    """Lookup ``embeddings[ids]``; ids ``(batch, time)`` -> ``(batch, time, output_dim)``.

    Keras weight: ``embeddings (input_dim, output_dim)``; ``mask_zero`` masks id 0.
    Ids are taken as Keras 3 on JAX takes them (``jnp.take``): a negative id counts from the
    end, an id past ``input_dim`` gives a row of NaN (TensorFlow raises there, which a
    compiled JAX program cannot); ids are cast to int32 first (an id past 2**31 wraps).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        *,
        mask_zero: bool = False,
        embeddings_initializer: Any = "uniform",
        embeddings_regularizer: Any = None,
        activity_regularizer: Any = None,
        embeddings_constraint: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self.mask_zero, self.name = mask_zero, name
        _govern(self, ("embeddings",), locals())
        self.embeddings = nnx.Param(
            _initial(self, "embeddings", embeddings_initializer, (input_dim, output_dim), rngs)
        )

    def __call__(self, ids, *, training: bool = False):
        out = jnp.take(self.embeddings[...], jnp.asarray(ids).astype(jnp.int32), axis=0)
        return _active(self, out)

    def compute_mask(self, ids, mask=None):
        """``ids != 0`` when ``mask_zero``, else None."""
        return jnp.asarray(ids) != 0 if self.mask_zero else None

    def keras_weights(self) -> list:
        """``[embeddings]``."""
        return [self.embeddings]


class Masking(nnx.Module):
    """Masks steps ``(batch, time, features)`` whose features all equal ``mask_value``."""

    def __init__(self, mask_value: float = 0.0, *, name: str | None = None):
        self.mask_value, self.name = mask_value, name

    def compute_mask(self, x, mask=None):
        """``(batch, time)``: True where any feature differs from ``mask_value``."""
        return jnp.any(x != self.mask_value, axis=-1)

    def __call__(self, x, *, training: bool = False):
        return x * self.compute_mask(x)[..., None].astype(x.dtype)


class Activation(nnx.Module):
    """Applies a named activation elementwise (any shape); the mask passes through."""

    def __init__(self, activation: Any, *, name: str | None = None):
        self.name = name
        self.activation = _checks.resolved(activations.get, activation, "activation", self)

    def __call__(self, x, *, training: bool = False):
        return self.activation(x)


# -- regularisation: identity at inference ---------------------------------------------------


class _Noise(nnx.Module):
    def __init__(self, rate: float, *, name: str | None, rngs: nnx.Rngs | None, arg: str):
        if not 0.0 <= rate < 1.0 and arg == "rate":
            raise _bad(self, arg, "in [0, 1)", rate)
        if rate < 0.0:
            raise _bad(self, arg, ">= 0", rate)
        self.name = name
        self.rngs = rngs if rngs is not None else nnx.Rngs(dropout=0)

    def _key(self, rngs):
        if rngs is None:
            return self.rngs.dropout()
        if isinstance(rngs, nnx.Rngs):
            return rngs.dropout()
        return rngs

    def __call__(self, x, *, training: bool = False, rngs: Any = None):
        if not training:
            return x
        return self._train(x, self._key(rngs))


class Dropout(_Noise):
    """Inverted dropout on ``(batch, ..., features)``: identity at inference.

    With ``training=True`` each element is zeroed with probability ``rate`` and the rest scaled
    by ``1 / (1 - rate)``, the key drawn from ``rngs.dropout`` (call-time ``rngs=`` overrides).
    """

    def __init__(self, rate: float = 0.0, *, name: str | None = None, rngs: nnx.Rngs | None = None):
        super().__init__(rate, name=name, rngs=rngs, arg="rate")
        self.rate = rate

    def _noise_shape(self, x):
        return x.shape

    def _train(self, x, key):
        if self.rate == 0.0:
            return x
        keep = jax.random.bernoulli(key, 1.0 - self.rate, self._noise_shape(x))
        return jnp.where(keep, x / jnp.asarray(1.0 - self.rate, x.dtype), jnp.zeros((), x.dtype))


class SpatialDropout1D(Dropout):
    """Dropout of whole channels of ``(batch, time, channels)``: one draw per (batch, channel)."""

    def _noise_shape(self, x):
        if x.ndim != 3:
            raise _bad(self, "inputs", "3-D (batch, time, channels)", x.shape)
        return (x.shape[0], 1, x.shape[2])


class GaussianNoise(_Noise):
    """Adds ``N(0, stddev^2)`` noise to any-shape inputs when ``training``; identity otherwise."""

    def __init__(self, stddev: float, *, name: str | None = None, rngs: nnx.Rngs | None = None):
        super().__init__(stddev, name=name, rngs=rngs, arg="stddev")
        self.stddev = stddev

    def _train(self, x, key):
        return x + jnp.asarray(self.stddev, x.dtype) * jax.random.normal(key, x.shape, x.dtype)


class GaussianDropout(_Noise):
    """Multiplies by ``N(1, rate / (1 - rate))`` noise when ``training``; identity otherwise."""

    def __init__(self, rate: float, *, name: str | None = None, rngs: nnx.Rngs | None = None):
        super().__init__(rate, name=name, rngs=rngs, arg="rate")
        self.rate = rate

    def _train(self, x, key):
        if self.rate == 0.0:
            return x
        std = math.sqrt(self.rate / (1.0 - self.rate))
        return x * (1.0 + jnp.asarray(std, x.dtype) * jax.random.normal(key, x.shape, x.dtype))


# -- merging -----------------------------------------------------------------------------


class _Merge(nnx.Module):
    """``keras2=True`` (set by the importer for tf.keras models): tf.keras' rules, where no
    merge reads the masks and the output mask is the AND of the inputs' (None ones
    skipped); Keras 3.15 ORs them and masks Multiply, Maximum and Minimum."""

    def __init__(self, *, name: str | None = None, keras2: bool = False):
        self.name = name
        self.keras2 = bool(keras2)

    def __call__(self, xs, *, training: bool = False, mask=None):
        """Merge ``xs``; ``mask`` is the list of the inputs' ``(batch, time)`` masks (or None),
        which only Multiply, Maximum and Minimum read, as Keras 3.15."""
        xs = list(xs)
        if len(xs) < 2 and type(self) is not Concatenate:
            raise _bad(self, "inputs", "a list of at least 2 tensors", len(xs))
        masks = list(mask) if isinstance(mask, (list, tuple)) else [None] * len(xs)
        return self._merge(xs, [None] * len(xs) if self.keras2 else masks)

    def compute_mask(self, xs, mask=None):
        """Keras 3's Merge rule: the OR of the input masks, None if any is None (tf.keras,
        ``keras2``: the AND of those given, None if none is)."""
        if mask is None or not isinstance(mask, (list, tuple)):
            return None
        if self.keras2:
            given = [m for m in mask if m is not None]
            return None if not given else functools.reduce(jnp.logical_and, given)
        if any(m is None for m in mask):
            return None
        out = mask[0]
        for m in mask[1:]:
            out = out | m
        return out


class Add(_Merge):
    """Sum of a list of same-shape tensors; output mask: OR of masks (None if any is None)."""

    def _merge(self, xs, masks):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Subtract(_Merge):
    """``x0 - x1`` of exactly two same-shape tensors."""

    def _merge(self, xs, masks):
        if len(xs) != 2:
            raise _bad(self, "inputs", "a list of exactly 2 tensors", len(xs))
        return xs[0] - xs[1]


def _step_mask(x, m):
    """A ``(batch, time)`` mask broadcast to ``x`` (``(batch, time, ...)``), or None."""
    return None if m is None else jnp.broadcast_to(m[..., None], x.shape)


class Multiply(_Merge):
    """Elementwise product of a list of same-shape tensors.

    With masks (Keras 3.15): masked steps of a masked input count as 1; when every input is
    masked the product is 0 outside the OR of the masks.
    """

    def _merge(self, xs, masks):
        full = [_step_mask(x, m) for x, m in zip(xs, masks)]
        out = any_mask = None
        for x, m in zip(xs, full):
            if m is not None:
                x = jnp.where(m, x, jnp.ones((), x.dtype))
                any_mask = m if any_mask is None else any_mask | m
            out = x if out is None else out * x
        if all(m is not None for m in full):
            out = jnp.where(any_mask, out, jnp.zeros((), out.dtype))
        return out


class Average(_Merge):
    """Elementwise mean of a list of same-shape tensors."""

    def _merge(self, xs, masks):
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out / jnp.asarray(len(xs), out.dtype)


class _MaskedExtremum(_Merge):
    """Keras 3.15's ``_apply_merge_op_and_or_mask``: a masked step of one input takes the
    other operand's value, so only unmasked values compete."""

    _op: Any = None

    def _merge(self, xs, masks):
        out, out_mask = xs[0], _step_mask(xs[0], masks[0])
        for x, m in zip(xs[1:], masks[1:]):
            m = _step_mask(x, m)
            if m is not None:
                x = jnp.where(m, x, out)
            if out_mask is not None:
                out = jnp.where(out_mask, out, x)
            out_mask = out_mask | m if m is not None and out_mask is not None else None
            out = type(self)._op(out, x)
        return out


class Maximum(_MaskedExtremum):
    """Elementwise maximum of a list of same-shape tensors (masked steps do not compete)."""

    _op = jnp.maximum


class Minimum(_MaskedExtremum):
    """Elementwise minimum of a list of same-shape tensors (masked steps do not compete)."""

    _op = jnp.minimum


class Concatenate(_Merge):
    """Concatenates a list of tensors along ``axis`` (e.g. features of ``(batch, time, f_i)``).

    Output mask (Keras 3): the input masks broadcast to the inputs' shapes (all True where
    None), concatenated along ``axis`` and reduced with ``any`` over the last axis.
    """

    def __init__(self, axis: int = -1, *, name: str | None = None, keras2: bool = False):
        super().__init__(name=name, keras2=keras2)
        self.axis = axis

    def _merge(self, xs, masks):
        return jnp.concatenate(xs, axis=self.axis)

    def compute_mask(self, xs, mask=None):
        """Keras 3.15's Concatenate mask rule (see the class docstring); tf.keras'
        (``keras2``) expands each mask by one axis instead of broadcasting it and reduces
        with ``all``."""
        if mask is None or not isinstance(mask, (list, tuple)) or all(m is None for m in mask):
            return None
        full = []
        for x, m in zip(xs, mask):
            if m is None:
                full.append(jnp.ones(x.shape, bool))
            elif m.ndim < x.ndim:
                full.append(
                    m[..., None] if self.keras2 else jnp.broadcast_to(m[..., None], x.shape)
                )
            else:
                full.append(m)
        reduce = jnp.all if self.keras2 else jnp.any
        return reduce(jnp.concatenate(full, axis=self.axis), axis=-1)


# -- reshaping (Keras drops the mask: these layers do not support masking) --------------------


class _NoMask(nnx.Module):
    def compute_mask(self, x, mask=None):
        """None: Keras 3 does not propagate a mask through this layer."""
        return None


class Flatten(_NoMask):
    """``(batch, d1, d2, ...)`` -> ``(batch, d1 * d2 * ...)`` (channels_last order)."""

    def __init__(self, data_format: str = "channels_last", *, name: str | None = None):
        if data_format not in ("channels_last", "channels_first"):
            raise _bad(self, "data_format", "'channels_last' or 'channels_first'", data_format)
        self.data_format, self.name = data_format, name

    def __call__(self, x, *, training: bool = False):
        if self.data_format == "channels_first" and x.ndim > 2:
            x = jnp.moveaxis(x, 1, -1)
        return x.reshape(x.shape[0], -1)


class Reshape(_NoMask):
    """``(batch, ...)`` -> ``(batch, *target_shape)``; one entry may be -1."""

    def __init__(self, target_shape: tuple, *, name: str | None = None):
        self.target_shape, self.name = tuple(int(d) for d in target_shape), name

    def __call__(self, x, *, training: bool = False):
        return x.reshape(x.shape[0], *self.target_shape)


class Permute(_NoMask):
    """Permutes non-batch axes by ``dims`` (1-indexed, as Keras); ``(2, 1)`` swaps time/features."""

    def __init__(self, dims: tuple, *, name: str | None = None):
        dims = tuple(int(d) for d in dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise _bad(self, "dims", f"a permutation of 1..{len(dims)}", dims)
        self.dims, self.name = dims, name

    def __call__(self, x, *, training: bool = False):
        return jnp.transpose(x, (0, *self.dims))


class RepeatVector(_NoMask):
    """``(batch, features)`` -> ``(batch, n, features)``."""

    def __init__(self, n: int, *, name: str | None = None):
        self.n, self.name = int(n), name

    def __call__(self, x, *, training: bool = False):
        if x.ndim != 2:
            raise _bad(self, "inputs", "2-D (batch, features)", x.shape)
        return jnp.repeat(x[:, None, :], self.n, axis=1)


# -- convolution and pooling ---------------------------------------------------------------


def _one(layer, arg, v) -> int:
    if isinstance(v, (list, tuple)):
        if len(v) != 1:
            raise _bad(layer, arg, "an int or a 1-tuple", v)
        v = v[0]
    return int(v)


def _check_format(layer, data_format):
    if data_format not in ("channels_last", "channels_first"):
        raise _bad(layer, "data_format", "'channels_last' or 'channels_first'", data_format)


def _ntuple(layer, arg, v, rank: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        if len(v) != rank:
            raise _bad(layer, arg, f"an int or a {rank}-tuple", v)
        return tuple(int(i) for i in v)
    return (int(v),) * rank


class _Conv(_NoMask):
    """Keras' ``Conv{rank}D`` (see :class:`Conv1D`, :class:`Conv2D`, :class:`Conv3D`)."""

    rank = 1

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple,
        in_channels: int,
        *,
        strides: int | tuple = 1,
        padding: str = "valid",
        data_format: str = "channels_last",
        dilation_rate: int | tuple = 1,
        groups: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        _check_format(self, data_format)
        _govern(self, ("kernel", "bias"), locals())
        paddings = ("valid", "same", "causal") if self.rank == 1 else ("valid", "same")
        if padding not in paddings:
            raise _bad(self, "padding", " or ".join(repr(p) for p in paddings), padding)
        r = self.rank
        self.kernel_size = _ntuple(self, "kernel_size", kernel_size, r)
        self.strides = _ntuple(self, "strides", strides, r)
        self.dilation_rate = _ntuple(self, "dilation_rate", dilation_rate, r)
        if in_channels % groups or filters % groups:
            raise _bad(
                self,
                "groups",
                f"a divisor of in_channels {in_channels} and filters {filters}",
                groups,
            )
        self.filters, self.padding, self.data_format = filters, padding, data_format
        self.groups, self.name = groups, name
        self.activation = _checks.resolved(activations.get, activation, "activation", self)
        shape = (*self.kernel_size, in_channels // groups, filters)
        _kernel_and_bias(self, shape, use_bias, locals(), rngs)

    def __call__(self, x, *, training: bool = False):
        first = self.data_format == "channels_first"
        if first:
            x = jnp.moveaxis(x, 1, -1)
        pad: Any = self.padding.upper()
        if self.padding == "causal":
            pad = [(self.dilation_rate[0] * (self.kernel_size[0] - 1), 0)]
        spatial = "DHW"[-self.rank :] if self.rank > 1 else "W"
        y = jax.lax.conv_general_dilated(
            x,
            self.kernel[...].astype(x.dtype),
            window_strides=self.strides,
            padding=pad,
            rhs_dilation=self.dilation_rate,
            dimension_numbers=(f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"),
            feature_group_count=self.groups,
            precision=jax.lax.Precision.HIGHEST,
        )
        if self.bias is not None:
            y = y + self.bias[...].astype(y.dtype)
        y = self.activation(y)
        return _active(self, jnp.moveaxis(y, -1, 1) if first else y)

    def keras_weights(self) -> list:
        """``[kernel, bias]`` (bias only with ``use_bias``)."""
        return [self.kernel] + ([self.bias] if self.bias is not None else [])


class Conv1D(_Conv):
    """1-D convolution over time: ``(batch, time, in_channels)`` -> ``(batch, time', filters)``.

    Keras weights: ``kernel (kernel_size, in_channels // groups, filters)``, ``bias (filters,)``.
    ``padding`` is ``valid``, ``same`` (TensorFlow's split: extra padding on the right) or
    ``causal`` (left padding ``dilation_rate * (kernel_size - 1)``). ``channels_first`` takes
    ``(batch, in_channels, time)``. Keras 3 drops the mask.
    """

    rank = 1


class Conv2D(_Conv):
    """2-D convolution: ``(batch, rows, cols, in_channels)`` -> ``(batch, rows', cols', filters)``.

    Keras weights: ``kernel (*kernel_size, in_channels // groups, filters)``, ``bias (filters,)``;
    ``padding`` ``valid`` or ``same``; ``channels_first`` takes ``(batch, in_channels, rows,
    cols)``. Keras 3 drops the mask.
    """

    rank = 2


class Conv3D(_Conv):
    """3-D convolution: ``(batch, d1, d2, d3, in_channels)`` -> ``(batch, d1', d2', d3', filters)``
    (e.g. over a video's time, rows and cols). Layout and options as :class:`Conv2D`.
    """

    rank = 3


class _Pool1D(_NoMask):
    def __init__(
        self,
        pool_size: int = 2,
        strides: int | None = None,
        padding: str = "valid",
        data_format: str = "channels_last",
        *,
        name: str | None = None,
    ):
        _check_format(self, data_format)
        if padding not in ("valid", "same"):
            raise _bad(self, "padding", "'valid' or 'same'", padding)
        self.pool_size = _one(self, "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _one(self, "strides", strides)
        self.padding, self.data_format, self.name = padding, data_format, name

    def _window(self, x, init, op):
        return jax.lax.reduce_window(
            x, init, op, (1, self.pool_size, 1), (1, self.strides, 1), self.padding.upper()
        )

    def __call__(self, x, *, training: bool = False):
        if self.data_format == "channels_first":
            x = jnp.swapaxes(x, 1, 2)
        y = self._pool(x)
        return jnp.swapaxes(y, 1, 2) if self.data_format == "channels_first" else y


class MaxPooling1D(_Pool1D):
    """Max over windows of ``pool_size`` steps: ``(batch, time, ch)`` -> ``(batch, time', ch)``."""

    def _pool(self, x):
        return self._window(x, jnp.array(-jnp.inf, x.dtype), jax.lax.max)


class AveragePooling1D(_Pool1D):
    """Mean over windows of ``pool_size`` steps (``same`` padding excludes the padded steps)."""

    def _pool(self, x):
        total = self._window(x, jnp.array(0, x.dtype), jax.lax.add)
        count = self._window(jnp.ones_like(x), jnp.array(0, x.dtype), jax.lax.add)
        return total / count


class _GlobalPool1D(_NoMask):
    def __init__(self, data_format: str = "channels_last", keepdims: bool = False, *, name=None):
        _check_format(self, data_format)
        self.data_format, self.keepdims, self.name = data_format, keepdims, name

    @property
    def _axis(self) -> int:
        return 1 if self.data_format == "channels_last" else 2


class GlobalMaxPooling1D(_GlobalPool1D):
    """Max over time: ``(batch, time, ch)`` -> ``(batch, ch)`` (Keras ignores the mask)."""

    def __call__(self, x, *, training: bool = False):
        return jnp.max(x, axis=self._axis, keepdims=self.keepdims)


class GlobalAveragePooling1D(_GlobalPool1D):
    """Mean over unmasked steps: ``(batch, time, channels)`` -> ``(batch, channels)``.

    With a ``(batch, time)`` mask it is ``sum(x * mask) / sum(mask)``, as Keras 3.
    """

    def __call__(self, x, *, training: bool = False, mask=None):
        if mask is None:
            return jnp.mean(x, axis=self._axis, keepdims=self.keepdims)
        m = jnp.expand_dims(mask.astype(x.dtype), 2 if self.data_format == "channels_last" else 1)
        total = jnp.sum(x * m, axis=self._axis, keepdims=self.keepdims)
        return total / jnp.sum(m, axis=self._axis, keepdims=self.keepdims)


# -- normalisation -------------------------------------------------------------------------


def _axes(layer, axis, ndim) -> tuple[int, ...]:
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    if ndim is None:
        return tuple(int(a) for a in axes)
    out = []
    for a in axes:
        if not -ndim <= int(a) < ndim:
            raise _bad(layer, "axis", f"in [-{ndim}, {ndim})", axis)
        out.append(int(a) % ndim)
    return tuple(sorted(out))


class BatchNormalization(nnx.Module):
    """``gamma * (x - mean) / sqrt(var + epsilon) + beta`` over feature ``axis``.

    x ``(batch, ..., features)`` for ``axis=-1``. Keras weights, in ``get_weights()`` order:
    ``gamma, beta`` (each only with ``scale`` / ``center``), ``moving_mean, moving_variance``
    (``nnx.BatchStat``), all ``(features,)``. Inference uses the moving statistics;
    ``training=True`` uses the batch moments (masked steps excluded, as Keras) and updates
    ``moving = moving * momentum + batch * (1 - momentum)`` in place. The mask passes through.
    ``unbiased_moving_variance=True`` is tf.keras' fused kernel (its default for 4-D and 5-D
    inputs normalised over the first or last axis): the moving variance takes the batch
    variance times ``n / (n - 1)``, ``n`` the values per feature.
    """

    def __init__(
        self,
        num_features: int,
        *,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        unbiased_moving_variance: bool = False,
        name: str | None = None,
        rngs: nnx.Rngs | None = None,
    ):
        _govern(self, ("beta", "gamma"), locals())
        self.axis = _axes(self, axis, None)
        if len(self.axis) != 1:
            raise _bad(self, "axis", "a single axis", axis)
        self.momentum, self.epsilon, self.name = float(momentum), float(epsilon), name
        self.unbiased_moving_variance = bool(unbiased_moving_variance)
        n = (num_features,)
        self.gamma = (
            nnx.Param(_initial(self, "gamma", gamma_initializer, n, rngs)) if scale else None
        )
        self.beta = nnx.Param(_initial(self, "beta", beta_initializer, n, rngs)) if center else None
        self.moving_mean = nnx.BatchStat(
            _initial(self, "moving_mean", moving_mean_initializer, n, rngs)
        )
        self.moving_variance = nnx.BatchStat(
            _initial(self, "moving_variance", moving_variance_initializer, n, rngs)
        )

    def __call__(self, x, *, training: bool = False, mask=None):
        if x.dtype in (jnp.float16, jnp.bfloat16):  # Keras normalises half precision in float32
            return self(x.astype(jnp.float32), training=training, mask=mask).astype(x.dtype)
        axes = _axes(self, self.axis, x.ndim)
        shape = tuple(x.shape[a] if a in axes else 1 for a in range(x.ndim))
        red = tuple(a for a in range(x.ndim) if a not in axes)
        if training:
            if mask is None:
                mean = jnp.mean(x, axis=red, keepdims=True)
                var = jnp.var(x, axis=red, keepdims=True)
            else:
                w = jnp.broadcast_to(mask[..., None], x.shape)
                n = jnp.sum(w.astype(x.dtype), axis=red, keepdims=True)
                mean = jnp.sum(jnp.where(w, x, 0), axis=red, keepdims=True) / (n + 1e-7)
                d = jnp.where(w, x - mean, 0)
                var = jnp.sum(d * d, axis=red, keepdims=True) / (n + 1e-7)
            mom = self.momentum
            moving_var = var
            if self.unbiased_moving_variance:
                n = math.prod(x.shape[a] for a in red)
                moving_var = var * (n / max(n - 1, 1))
            for stat, batch in ((self.moving_mean, mean), (self.moving_variance, moving_var)):
                new = stat[...] * mom + batch.reshape(-1).astype(stat[...].dtype) * (1 - mom)
                stat[...] = new
        else:
            mean = self.moving_mean[...].astype(x.dtype).reshape(shape)
            var = self.moving_variance[...].astype(x.dtype).reshape(shape)
        inv = jax.lax.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            inv = inv * self.gamma[...].astype(x.dtype).reshape(shape)
        y = (x - mean) * inv
        if self.beta is not None:
            y = y + self.beta[...].astype(x.dtype).reshape(shape)
        return y

    def keras_weights(self) -> list:
        """``[gamma, beta, moving_mean, moving_variance]`` (those present)."""
        ws = [self.gamma, self.beta, self.moving_mean, self.moving_variance]
        return [w for w in ws if w is not None]


class LayerNormalization(nnx.Module):
    """Normalises each example over ``axis`` (default the features of ``(batch, time, features)``).

    ``gamma * (x - mean) / sqrt(var + epsilon) + beta``; Keras weights ``gamma, beta`` of the
    shape of ``x`` on ``axis`` (each only with ``scale`` / ``center``). The mask passes through.
    """

    def __init__(
        self,
        param_shape: tuple,
        *,
        axis: Any = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs | None = None,
    ):
        _govern(self, ("beta", "gamma"), locals())
        self.axis = _axes(self, axis, None)
        self.epsilon, self.name = float(epsilon), name
        shape = tuple(int(d) for d in param_shape)
        self.gamma = (
            nnx.Param(_initial(self, "gamma", gamma_initializer, shape, rngs)) if scale else None
        )
        self.beta = (
            nnx.Param(_initial(self, "beta", beta_initializer, shape, rngs)) if center else None
        )

    def __call__(self, x, *, training: bool = False):
        if x.dtype in (jnp.float16, jnp.bfloat16):  # Keras normalises half precision in float32
            return self(x.astype(jnp.float32), training=training).astype(x.dtype)
        axes = _axes(self, self.axis, x.ndim)
        shape = tuple(x.shape[a] if a in axes else 1 for a in range(x.ndim))
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.var(x, axis=axes, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma[...].astype(x.dtype).reshape(shape)
        if self.beta is not None:
            y = y + self.beta[...].astype(x.dtype).reshape(shape)
        return y

    def keras_weights(self) -> list:
        """``[gamma, beta]`` (those present)."""
        return [w for w in (self.gamma, self.beta) if w is not None]
