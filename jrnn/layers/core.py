"""Non-recurrent Keras layers a ported model needs, as thin nnx Modules (Keras names/layout).

Dense (kernel ``(in, out)``, bias ``(out,)``), Embedding (``embeddings (vocab, dim)``,
``mask_zero``), Masking, Activation, the activation layers (LeakyReLU, ReLU, ELU, Softmax,
PReLU with its ``alpha`` weight), Identity, ActivityRegularization, the dropout/noise family
(identity at inference, Keras' training behaviour drawn from an ``rngs`` ``dropout``
stream), the merges, Flatten, Reshape, Permute, RepeatVector, ZeroPadding1D/2D/3D,
Cropping1D/2D/3D, UpSampling1D/2D/3D, Conv1D/2D/3D, Max/Average pooling and global
pooling in 1, 2 and 3 dimensions, BatchNormalization and LayerNormalization.
Each module's ``compute_mask(x, mask)`` follows Keras 3.15's rule for its class.

Dtype policies, as Keras 3's: the layers with weights take ``dtype`` (a dtype, a policy name
such as ``"mixed_bfloat16"``, or a Keras ``DTypePolicy`` config dict; None is Keras'
default ``"float32"``) and ``param_dtype`` (overrides the variables' dtype, as Flax's).
Variables are created in the policy's variable dtype; floating inputs are cast to its
compute dtype and outputs come in it (``mixed_bfloat16``: float32 variables, bfloat16 maths
and outputs). BatchNormalization and LayerNormalization normalise half-precision inputs in
float32, as Keras. The weightless layers take ``dtype`` alone and then cast floating inputs
to its compute dtype, as Keras autocasts every layer's inputs; without it they keep the
inputs' dtype (Keras would cast them to its global policy's, float32 by default).

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> Dense(3, 2, rngs=nnx.Rngs(0))(jnp.ones((1, 2))).shape
    (1, 3)
    >>> Dense(3, 2, dtype="mixed_bfloat16", rngs=nnx.Rngs(0))(jnp.ones((1, 2))).dtype
    dtype(bfloat16)
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrnn import _checks, activations, initializers, regularizers
from jrnn._dtypes import check_x64, set_policy
from jrnn.cells.base import resolve_initializer, set_regularizers_and_constraints
from jrnn.rnn import initial_activity_loss


def _govern(module: Any, prefixes: tuple[str, ...], arguments: dict[str, Any]) -> None:
    """Keras' ``{prefix}_regularizer`` and ``{prefix}_constraint`` for each weight prefix
    (:func:`jrnn.regularization_loss` and :func:`jrnn.apply_constraints` read them) and,
    with ``activity_regularizer`` among ``arguments``, the output's penalty."""
    set_regularizers_and_constraints(module, arguments, prefixes)
    if "activity_regularizer" in arguments:
        module.activity_regularizer = _checks.resolved(
            regularizers.get, arguments["activity_regularizer"], "activity_regularizer", module
        )
        module.activity_loss = initial_activity_loss(module.activity_regularizer)


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
    """Values of ``weight`` in the module's variable dtype (its ``policy``, set first) from
    Keras' ``{weight}_initializer`` argument ``value`` (a name, a Keras config or an
    initializer), recorded for the Keras config. Zeros, ones and constants need no ``rngs``;
    a random initializer without them raises."""
    argument = f"{weight}_initializer"
    init = resolve_initializer(value, argument, module)
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
        return init(jax.random.key(0), shape, module.policy.param_dtype)
    return init(rngs.params(), shape, module.policy.param_dtype)


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


def _policy(module: Any, dtype: Any, param_dtype: Any = None, *, weights: bool = True) -> None:
    """The constructors' ``dtype`` / ``param_dtype``: Keras' policy (see the module
    docstring), as :func:`jrnn._dtypes.set_policy` sets it. A weightless layer (``weights``
    False) without ``dtype`` has none: it keeps its inputs' dtype."""
    if weights or dtype is not None:
        set_policy(module, dtype, param_dtype, _checks.where(module))
    else:
        module.policy = module.compute_dtype = module.dtype_policy = None


def _autocast(layer: Any, x: Any) -> jax.Array:
    """Keras' autocast: floating ``x`` in the layer's compute dtype (integer and bool inputs
    as they are); unchanged for a weightless layer without a policy."""
    x = jnp.asarray(x)
    policy = getattr(layer, "policy", None)
    if policy is None:
        return x
    check_x64(policy, _checks.where(layer))  # built under x64, called without it
    if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != layer.compute_dtype:
        return x.astype(layer.compute_dtype)
    return x


def _inputs(layer: Any, x: Any, *, floats: bool = False) -> jax.Array:
    """``x`` in the layer's compute dtype (its policy's, float32 by default), as Keras casts
    float inputs and its products promote integer ones. ``floats``: integer and bool inputs
    are refused (Keras' convolutions refuse them)."""
    x = jnp.asarray(x)
    _checks.real_dtype(x.dtype, "inputs", layer)
    if floats and not jnp.issubdtype(x.dtype, jnp.floating):
        raise _bad(layer, "inputs", "a floating-point array", f"dtype {x.dtype}")
    return _autocast(layer, x).astype(layer.compute_dtype)


def _rank(layer: Any, x: Any, ndim: int, layout: str) -> None:
    if jnp.ndim(x) != ndim:
        raise _bad(layer, "inputs", f"{ndim}-D {layout}", f"shape {jnp.shape(x)}")


def _real(layer: Any, arg: str, value: Any) -> float:
    """A real number argument (not a bool or a string), as float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _bad(layer, arg, "a real number", value)
    return float(value)


class Dense(nnx.Module):
    """``activation(x @ kernel + bias)``; x ``(..., in_features)`` -> ``(..., units)``.

    Keras weights: ``kernel (in_features, units)``, ``bias (units,)``. The mask passes through.
    ``dtype`` / ``param_dtype``: Keras' dtype policy and a variables' dtype override (module
    docstring): ``"mixed_bfloat16"`` keeps float32 variables and computes and outputs bfloat16.
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
        dtype: Any = None,
        param_dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, param_dtype)
        self.units = _checks.positive_int(units, "units", self)
        in_features = _checks.positive_int(in_features, "in_features", self)
        use_bias = _checks.boolean(use_bias, "use_bias", self)
        self.activation = _checks.resolved(activations.get, activation, "activation", self)
        _govern(self, ("kernel", "bias"), locals())
        _kernel_and_bias(self, (in_features, self.units), use_bias, locals(), rngs)

    def __call__(self, x, *, training: bool = False):
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"{_checks.where(self)}: `inputs` must have {self.kernel.shape[0]} features "
                f"last, (..., {self.kernel.shape[0]}); received shape {jnp.shape(x)}."
            )
        x = _inputs(self, x)
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
    ``dtype`` / ``param_dtype``: Keras' dtype policy and a variables' dtype override (module
    docstring): the table is stored in the variable dtype, the rows returned in the compute one.
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
        dtype: Any = None,
        param_dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, param_dtype)
        self.mask_zero = _checks.boolean(mask_zero, "mask_zero", self)
        shape = (
            _checks.positive_int(input_dim, "input_dim", self),
            _checks.positive_int(output_dim, "output_dim", self),
        )
        _govern(self, ("embeddings",), locals())
        self.embeddings = nnx.Param(
            _initial(self, "embeddings", embeddings_initializer, shape, rngs)
        )

    def __call__(self, ids, *, training: bool = False):
        check_x64(self.policy, _checks.where(self))
        out = jnp.take(self.embeddings[...], jnp.asarray(ids).astype(jnp.int32), axis=0)
        return _active(self, out.astype(self.compute_dtype))

    def compute_mask(self, ids, mask=None):
        """``ids != 0`` when ``mask_zero``, else None."""
        return jnp.asarray(ids) != 0 if self.mask_zero else None

    def keras_weights(self) -> list:
        """``[embeddings]``."""
        return [self.embeddings]


class Masking(nnx.Module):
    """Masks steps ``(batch, time, features)`` whose features all equal ``mask_value``."""

    def __init__(self, mask_value: float = 0.0, *, name: str | None = None, dtype: Any = None):
        self.mask_value = _real(self, "mask_value", mask_value)
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)

    def compute_mask(self, x, mask=None):
        """``(batch, time)``: True where any feature differs from ``mask_value``."""
        return jnp.any(_autocast(self, x) != self.mask_value, axis=-1)

    def __call__(self, x, *, training: bool = False):
        x = _autocast(self, x)
        return x * self.compute_mask(x)[..., None].astype(x.dtype)


class Activation(nnx.Module):
    """Applies a named activation elementwise (any shape); the mask passes through."""

    def __init__(self, activation: Any, *, name: str | None = None, dtype: Any = None):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.activation = _checks.resolved(activations.get, activation, "activation", self)

    def __call__(self, x, *, training: bool = False):
        return self.activation(_autocast(self, x))


# -- activation layers (Keras' `layers/activations`): the mask passes through -------------


def _slope(layer: Any, arg: str, value: Any) -> float:
    """A real argument >= 0 (Keras refuses None and negative slopes and thresholds)."""
    value = _real(layer, arg, value)
    if value < 0:
        raise _bad(layer, arg, ">= 0", value)
    return value


class LeakyReLU(nnx.Module):
    """``x`` if ``x > 0`` else ``negative_slope * x``, elementwise (any shape).

    Keras 3's argument ``negative_slope`` (default 0.3); tf.keras named it ``alpha`` (the
    importers map it) and took negative slopes too, which Keras 3 refuses: jrnn computes
    them (a tf.keras model's), and the exporters refuse to write them. The gradient at 0 is
    ``negative_slope``, as TensorFlow's. The mask passes through.
    """

    def __init__(self, negative_slope: float = 0.3, *, name: str | None = None, dtype: Any = None):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.negative_slope = _real(self, "negative_slope", negative_slope)

    def __call__(self, x, *, training: bool = False):
        return activations.leaky_relu(_autocast(self, x), negative_slope=self.negative_slope)


class ReLU(nnx.Module):
    """Keras' thresholded, capped, leaky ReLU, elementwise (any shape).

    ``max_value`` for ``x >= max_value``, ``x`` for ``threshold <= x < max_value`` and
    ``negative_slope * (x - threshold)`` below ``threshold``, computed in Keras' order
    (:func:`jrnn.activations.relu`). Defaults (None, 0.0, 0.0) are the plain ReLU; each
    argument must be >= 0. The mask passes through.
    """

    def __init__(
        self,
        max_value: float | None = None,
        negative_slope: float = 0.0,
        threshold: float = 0.0,
        *,
        name: str | None = None,
        dtype: Any = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.max_value = None if max_value is None else _slope(self, "max_value", max_value)
        self.negative_slope = _slope(self, "negative_slope", negative_slope)
        self.threshold = _slope(self, "threshold", threshold)

    def __call__(self, x, *, training: bool = False):
        return activations.relu(
            _autocast(self, x),
            negative_slope=self.negative_slope,
            max_value=self.max_value,
            threshold=self.threshold,
        )


class ELU(nnx.Module):
    """``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``, elementwise; the mask passes through."""

    def __init__(self, alpha: float = 1.0, *, name: str | None = None, dtype: Any = None):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.alpha = _real(self, "alpha", alpha)

    def __call__(self, x, *, training: bool = False):
        return activations.elu(_autocast(self, x), alpha=self.alpha)


def _large_negative(dtype: Any, keras2: bool) -> float:
    """The logit a masked position gets: -1e9, or in float16 Keras 3's -3e4 (tf.keras'
    ``float16.min / 2``)."""
    if jnp.dtype(dtype) == jnp.float16:
        return float(jnp.finfo(jnp.float16).min) / 2 if keras2 else -3e4
    return -1e9


class Softmax(nnx.Module):
    """``exp(x) / sum(exp(x))`` over ``axis`` (an int or a tuple of ints; default the last).

    ``mask`` (call argument) broadcasts to ``x`` (each of its sizes 1 or ``x``'s, no more
    axes than ``x``; a non-boolean mask is ``mask > 0.5``): Keras 3.15 gives masked
    positions the logit -1e9 (-3e4 in float16) and zeros their outputs, so a fully masked
    row outputs zeros. ``keras2=True`` (tf.keras' rule) adds ``(1 - mask) * -1e9`` to the
    logits (``robust_masking=True``: sets them to -1e9) and keeps the outputs, so a fully
    masked row comes out uniform. The mask passes through.
    """

    def __init__(
        self,
        axis: int | tuple = -1,
        *,
        keras2: bool = False,
        robust_masking: bool = False,
        name: str | None = None,
        dtype: Any = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        if isinstance(axis, (list, tuple)):
            self.axis = _int_list(self, "axis", axis)
            if not self.axis:
                raise _bad(self, "axis", "an int or a non-empty tuple of ints", axis)
        elif isinstance(axis, numbers.Integral) and not isinstance(axis, (bool, np.bool_)):
            self.axis = int(axis)
        else:
            raise _bad(self, "axis", "an int or a tuple of ints", axis)
        self.keras2 = _checks.boolean(keras2, "keras2", self)
        self.robust_masking = _checks.boolean(robust_masking, "robust_masking", self)
        if self.robust_masking and not self.keras2:
            raise _bad(
                self, "robust_masking", "False unless keras2=True (tf.keras' argument)", True
            )

    def __call__(self, x, *, training: bool = False, mask=None):
        x = _autocast(self, x)
        axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
        if any(not -x.ndim <= a < x.ndim for a in axes) or len(
            {a % max(x.ndim, 1) for a in axes}
        ) < len(axes):
            raise _bad(self, "axis", f"distinct axes of the {x.ndim}-D inputs", self.axis)
        if mask is None:
            return jax.nn.softmax(x, axis=self.axis)
        mask = jnp.asarray(mask)
        if mask.ndim > x.ndim or any(
            m not in (1, i) for m, i in zip(mask.shape[::-1], x.shape[::-1])
        ):
            raise _bad(
                self,
                "mask",
                f"broadcastable to the inputs' shape {x.shape} (no more axes, each size 1 or "
                "the inputs')",
                f"shape {mask.shape}",
            )
        low = jnp.asarray(_large_negative(x.dtype, self.keras2), x.dtype)
        if self.keras2 and not self.robust_masking:
            x = x + (jnp.ones((), x.dtype) - mask.astype(x.dtype)) * low
        else:
            if mask.dtype != jnp.bool_:
                mask = mask > jnp.asarray(0.5).astype(mask.dtype)
            x = jnp.where(mask, x, low)
        y = jax.nn.softmax(x, axis=self.axis)
        if self.keras2:
            return y
        return jnp.where(mask, y, jnp.zeros((), y.dtype))


class PReLU(nnx.Module):
    """``x`` if ``x > 0`` else ``alpha * x``, with a learned ``alpha`` per input element.

    ``in_shape`` is the input shape without the batch axis, as Keras' ``build`` sees it; the
    Keras weight ``alpha`` has that shape with each of ``shared_axes`` (1-based, as Keras:
    ``shared_axes=[1]`` shares ``alpha`` over the time of ``(batch, time, features)``) set to
    1 (a shared axis may be None in ``in_shape``). Computed as Keras does:
    ``relu(x) - alpha * relu(-x)``. The mask passes through. ``dtype`` / ``param_dtype``:
    Keras' dtype policy and a variables' dtype override, as :class:`Dense`'s.
    """

    def __init__(
        self,
        in_shape: tuple,
        *,
        alpha_initializer: Any = "Zeros",
        alpha_regularizer: Any = None,
        alpha_constraint: Any = None,
        shared_axes: int | tuple | None = None,
        activity_regularizer: Any = None,
        name: str | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        rngs: nnx.Rngs | None = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, param_dtype)
        if isinstance(in_shape, numbers.Integral):
            in_shape = (in_shape,)
        if not isinstance(in_shape, (list, tuple)):
            raise _bad(self, "in_shape", "a tuple of sizes (no batch axis)", in_shape)
        if shared_axes is None:
            shared = ()
        elif isinstance(shared_axes, (list, tuple)):
            shared = _int_list(self, "shared_axes", shared_axes)
        else:
            shared = _int_list(self, "shared_axes", [shared_axes])
        if any(not 1 <= a <= len(in_shape) for a in shared):
            raise _bad(self, "shared_axes", f"axes in [1, {len(in_shape)}]", shared_axes)
        self.shared_axes = tuple(sorted(set(shared))) if shared_axes is not None else None
        shape = []
        for axis, size in enumerate(in_shape, start=1):
            if axis in shared:
                shape.append(1)
            elif isinstance(size, numbers.Integral) and not isinstance(size, bool) and size > 0:
                shape.append(int(size))
            else:
                raise _bad(
                    self,
                    "in_shape",
                    f"positive sizes on the axes not in shared_axes (axis {axis})",
                    in_shape,
                )
        _govern(self, ("alpha",), locals())
        self.alpha = nnx.Param(_initial(self, "alpha", alpha_initializer, tuple(shape), rngs))

    def __call__(self, x, *, training: bool = False):
        x = _inputs(self, x)
        shape = self.alpha.shape
        shared = self.shared_axes or ()
        if x.ndim != len(shape) + 1 or any(
            x.shape[a] != shape[a - 1] for a in range(1, x.ndim) if a not in shared
        ):
            sizes = tuple("*" if a in shared else shape[a - 1] for a in range(1, len(shape) + 1))
            raise _bad(
                self, "inputs", f"shape (batch, {', '.join(map(str, sizes))})", f"shape {x.shape}"
            )
        alpha = self.alpha[...].astype(x.dtype)
        return _active(self, jax.nn.relu(x) + (-alpha) * jax.nn.relu(-x))

    def keras_weights(self) -> list:
        """``[alpha]``."""
        return [self.alpha]


class Identity(nnx.Module):
    """Returns its inputs (any shape). Keras 3 passes the mask through; ``keras2=True``
    (tf.keras' Identity, which does not support masking) drops it."""

    def __init__(self, *, keras2: bool = False, name: str | None = None, dtype: Any = None):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.keras2 = _checks.boolean(keras2, "keras2", self)

    def __call__(self, x, *, training: bool = False):
        return _autocast(self, x)

    def compute_mask(self, x, mask=None):
        """The input mask (None with ``keras2``)."""
        return None if self.keras2 else mask


# -- regularisation: identity at inference ---------------------------------------------------


class _Noise(nnx.Module):
    # Dropout(1.0) drops everything, as Keras; GaussianDropout's noise variance, rate / (1 -
    # rate), needs rate < 1.
    _rate_one_ok = True

    def __init__(
        self,
        rate: float,
        *,
        name: str | None,
        rngs: nnx.Rngs | None,
        seed: Any,
        arg: str,
        dtype: Any = None,
    ):
        _policy(self, dtype, weights=False)
        rate = _real(self, arg, rate)
        if arg == "rate" and not (0.0 <= rate < 1.0 or (rate == 1.0 and self._rate_one_ok)):
            raise _bad(self, arg, "in [0, 1]" if self._rate_one_ok else "in [0, 1)", rate)
        if rate < 0.0:
            raise _bad(self, arg, ">= 0", rate)
        self.name = _checks.name(name, self)
        self.seed = _checks.seed(seed, self)
        if rngs is not None:
            self.rngs = _checks.rngs(rngs, self)
        elif self.seed is not None or rate == 0.0:
            self.rngs = nnx.Rngs(dropout=self.seed or 0)
        else:  # as the recurrent cells: one default stream would give every layer one mask
            raise ValueError(
                f"{_checks.where(self)}: `{arg}`={rate} needs random numbers: pass "
                "rngs=nnx.Rngs(...) or seed= (Keras' `seed`)."
            )

    def _key(self, rngs):
        key = _checks.call_key(rngs, self)
        return self.rngs.dropout() if key is None else key

    def __call__(self, x, *, training: bool = False, rngs: Any = None):
        x = _autocast(self, x)
        if not training:
            return x
        if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
            raise _bad(self, "inputs", "a floating-point array when training", jnp.result_type(x))
        return self._train(x, self._key(rngs))


class Dropout(_Noise):
    """Inverted dropout on ``(batch, ..., features)``: identity at inference.

    With ``training=True`` each element is zeroed with probability ``rate`` and the rest scaled
    by ``1 / (1 - rate)``, the key drawn from ``rngs.dropout`` (call-time ``rngs=`` overrides).
    A ``rate`` above 0 needs ``rngs`` or Keras' ``seed`` (as the recurrent layers' dropout):
    one default stream would give every layer the same mask, where Keras gives each layer
    a seed generator of its own. The same holds for the other noise layers.
    """

    def __init__(
        self,
        rate: float = 0.0,
        *,
        seed: int | None = None,
        name: str | None = None,
        dtype: Any = None,
        rngs: nnx.Rngs | None = None,
    ):
        super().__init__(rate, name=name, rngs=rngs, seed=seed, arg="rate", dtype=dtype)
        self.rate = float(rate)

    def _noise_shape(self, x):
        return x.shape

    def _train(self, x, key):
        if self.rate == 0.0:
            return x
        if self.rate == 1.0:  # Keras (on JAX): every element dropped
            return jnp.zeros_like(x)
        keep = jax.random.bernoulli(key, 1.0 - self.rate, self._noise_shape(x))
        return jnp.where(keep, x / jnp.asarray(1.0 - self.rate, x.dtype), jnp.zeros((), x.dtype))


class SpatialDropout1D(Dropout):
    """Dropout of whole channels of ``(batch, time, channels)``: one draw per (batch, channel)."""

    def _noise_shape(self, x):
        if x.ndim != 3:
            raise _bad(self, "inputs", "3-D (batch, time, channels)", x.shape)
        return (x.shape[0], 1, x.shape[2])


def _noise_dtypes(layer: Any, x: jax.Array) -> tuple[Any, Any]:
    """``(noise dtype, output dtype)`` of a Gaussian noise layer: the noise in the layer's
    ``noise_dtype`` where it has one, else in the inputs' dtype; the output in the two's
    promoted dtype. The importers set ``noise_dtype`` on a layer inside a Keras 3
    ``TimeDistributed``: Keras 3's wrapper casts the inputs to its own compute dtype and
    runs ``layer.call``, which draws the noise in the layer's compute dtype (the JAX
    backend promotes: float16 inputs with float32 noise give float32)."""
    dtype, given = jnp.dtype(getattr(layer, "noise_dtype", None) or x.dtype), jnp.dtype(x.dtype)
    if dtype == given or dtype.itemsize != given.itemsize:  # JAX's promotion, spelt out
        return dtype, max(dtype, given, key=lambda d: d.itemsize)  # (strict mode refuses it)
    return dtype, jnp.dtype(jnp.float32)  # float16 with bfloat16


class GaussianNoise(_Noise):
    """Adds ``N(0, stddev^2)`` noise to any-shape inputs when ``training``; identity otherwise."""

    def __init__(
        self,
        stddev: float,
        *,
        seed: int | None = None,
        name: str | None = None,
        dtype: Any = None,
        rngs: nnx.Rngs | None = None,
    ):
        super().__init__(stddev, name=name, rngs=rngs, seed=seed, arg="stddev", dtype=dtype)
        self.stddev = float(stddev)

    def _train(self, x, key):
        dtype, out = _noise_dtypes(self, x)
        noise = jnp.asarray(self.stddev, dtype) * jax.random.normal(key, x.shape, dtype)
        return x.astype(out) + noise.astype(out)


class GaussianDropout(_Noise):
    """Multiplies by ``N(1, rate / (1 - rate))`` noise when ``training``; identity otherwise."""

    _rate_one_ok = False

    def __init__(
        self,
        rate: float,
        *,
        seed: int | None = None,
        name: str | None = None,
        dtype: Any = None,
        rngs: nnx.Rngs | None = None,
    ):
        super().__init__(rate, name=name, rngs=rngs, seed=seed, arg="rate", dtype=dtype)
        self.rate = float(rate)

    def _train(self, x, key):
        if self.rate == 0.0:
            return x
        std = math.sqrt(self.rate / (1.0 - self.rate))
        dtype, out = _noise_dtypes(self, x)
        noise = 1.0 + jnp.asarray(std, dtype) * jax.random.normal(key, x.shape, dtype)
        return x.astype(out) * noise.astype(out)


class ActivityRegularization(nnx.Module):
    """Returns its inputs (any shape) and records the activity penalty
    ``(l1 * sum(|x|) + l2 * sum(x**2)) / batch`` on ``activity_loss``, as Keras adds it to
    the model's losses (:func:`jrnn.regularization_loss` sums it). The mask passes through.
    """

    def __init__(
        self, l1: float = 0.0, l2: float = 0.0, *, name: str | None = None, dtype: Any = None
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.l1 = _slope(self, "l1", l1)
        self.l2 = _slope(self, "l2", l2)
        _govern(self, (), {"activity_regularizer": regularizers.L1L2(self.l1, self.l2)})

    def __call__(self, x, *, training: bool = False):
        return _active(self, _autocast(self, x))


# -- merging -----------------------------------------------------------------------------


class _Merge(nnx.Module):
    """``keras2=True`` (set by the importer for tf.keras models): tf.keras' rules, where no
    merge reads the masks and the output mask is the AND of the inputs' (None ones
    skipped); Keras 3.15 ORs them and masks Multiply, Maximum and Minimum."""

    def __init__(self, *, name: str | None = None, keras2: bool = False, dtype: Any = None):
        self.name = _checks.name(name, self)
        self.keras2 = _checks.boolean(keras2, "keras2", self)
        _policy(self, dtype, weights=False)

    def __call__(self, xs, *, training: bool = False, mask=None):
        """Merge the list ``xs``; ``mask`` is the list of the inputs' ``(batch, time)`` masks
        (or None), which only Multiply, Maximum and Minimum read, as Keras 3.15."""
        if not isinstance(xs, (list, tuple)):
            raise _bad(
                self, "inputs", "a list of tensors", f"one {type(xs).__name__} {jnp.shape(xs)}"
            )
        if not xs:
            raise _bad(self, "inputs", "a list of at least 1 tensor", "an empty list")
        xs = [_autocast(self, x) for x in xs]
        for x in xs:
            _checks.real_dtype(x.dtype, "inputs", self)
        xs = self._aligned(xs)
        masks = list(mask) if isinstance(mask, (list, tuple)) else [None] * len(xs)
        return self._merge(xs, [None] * len(xs) if self.keras2 else masks)

    def _aligned(self, xs: list) -> list:
        """Keras' Merge rule: one batch size; a lower-rank input gets axes of size 1 after
        its batch axis; then each axis' sizes are equal or 1 (broadcast)."""
        shapes = [x.shape for x in xs]
        if any(not sh for sh in shapes) or len({sh[0] for sh in shapes}) > 1:
            raise _bad(self, "inputs", "tensors of one batch size", shapes)
        rank = max(len(sh) for sh in shapes)
        xs = [x.reshape(x.shape[:1] + (1,) * (rank - x.ndim) + x.shape[1:]) for x in xs]
        if any(len(set(sizes) - {1}) > 1 for sizes in zip(*(x.shape for x in xs))):
            raise _bad(self, "inputs", "tensors whose sizes are equal (or 1) on each axis", shapes)
        return xs

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

    def __init__(
        self, axis: int = -1, *, name: str | None = None, keras2: bool = False, dtype: Any = None
    ):
        super().__init__(name=name, keras2=keras2, dtype=dtype)
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
            raise _bad(self, "axis", "an int", axis)
        self.axis = int(axis)

    def _aligned(self, xs: list) -> list:
        shapes = [x.shape for x in xs]
        ndim = xs[0].ndim
        if not -ndim <= self.axis < ndim:
            raise _bad(self, "axis", f"an axis of the {ndim}-D inputs", self.axis)
        axis = self.axis % ndim
        rest = {sh[:axis] + sh[axis + 1 :] if len(sh) == ndim else None for sh in shapes}
        if len(rest) != 1 or None in rest:
            raise _bad(
                self,
                "inputs",
                f"tensors of one rank whose sizes match except on axis {axis}",
                shapes,
            )
        return xs

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

    def __init__(
        self, data_format: str = "channels_last", *, name: str | None = None, dtype: Any = None
    ):
        self.data_format = _checks.data_format(data_format, self)
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)

    def __call__(self, x, *, training: bool = False):
        x = _autocast(self, x)
        if self.data_format == "channels_first" and x.ndim > 2:
            x = jnp.moveaxis(x, 1, -1)
        return x.reshape(x.shape[0], -1)


class Reshape(_NoMask):
    """``(batch, ...)`` -> ``(batch, *target_shape)``; one entry may be -1."""

    def __init__(self, target_shape: tuple, *, name: str | None = None, dtype: Any = None):
        dims = _int_list(self, "target_shape", target_shape)
        if any(d < 1 and d != -1 for d in dims) or dims.count(-1) > 1:
            raise _bad(self, "target_shape", "positive sizes with at most one -1", target_shape)
        self.target_shape, self.name = dims, _checks.name(name, self)
        _policy(self, dtype, weights=False)

    def __call__(self, x, *, training: bool = False):
        x = _autocast(self, x)
        known = math.prod(d for d in self.target_shape if d != -1)
        size = math.prod(x.shape[1:])
        free = -1 in self.target_shape
        if (size % known != 0) if free else (size != known):
            raise _bad(
                self,
                "inputs",
                f"{known}{' times an integer' if free else ''} values per "
                f"example for target_shape {self.target_shape}",
                f"shape {x.shape}",
            )
        return x.reshape(x.shape[0], *self.target_shape)


class Permute(_NoMask):
    """Permutes non-batch axes by ``dims`` (1-indexed, as Keras); ``(2, 1)`` swaps time/features."""

    def __init__(self, dims: tuple, *, name: str | None = None, dtype: Any = None):
        dims = _int_list(self, "dims", dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise _bad(self, "dims", f"a permutation of 1..{len(dims)}", dims)
        self.dims, self.name = dims, _checks.name(name, self)
        _policy(self, dtype, weights=False)

    def __call__(self, x, *, training: bool = False):
        x = _autocast(self, x)
        _rank(self, x, len(self.dims) + 1, f"(batch, {len(self.dims)} axes to permute)")
        return jnp.transpose(x, (0, *self.dims))


class RepeatVector(_NoMask):
    """``(batch, features)`` -> ``(batch, n, features)``."""

    def __init__(self, n: int, *, name: str | None = None, dtype: Any = None):
        self.n = _checks.positive_int(n, "n", self)
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)

    def __call__(self, x, *, training: bool = False):
        x = _autocast(self, x)
        if x.ndim != 2:
            raise _bad(self, "inputs", "2-D (batch, features)", x.shape)
        return jnp.repeat(x[:, None, :], self.n, axis=1)


def _size(v: Any) -> bool:
    """An int >= 0 (not a bool)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) and v >= 0


def _pair(layer: Any, arg: str, value: Any) -> tuple[int, int]:
    """Keras' ``standardize_tuple(value, 2, allow_zero=True)``: an int >= 0, or two."""
    values = (value, value) if _size(value) else value
    if not isinstance(values, (list, tuple)) or len(values) != 2 or not all(map(_size, values)):
        raise _bad(layer, arg, "an int >= 0 or a tuple of 2 ints >= 0", value)
    return int(values[0]), int(values[1])


def _pairs(layer: Any, arg: str, value: Any, rank: int) -> Any:
    """Keras' ``padding`` / ``cropping`` of ``rank`` spatial axes, in Keras' form: for rank 1
    ``(before, after)`` (:func:`_pair`); for rank 2 and 3 one ``(before, after)`` pair per
    axis, from an int >= 0 (every side), a tuple of ``rank`` ints (symmetric per axis) or of
    ``rank`` pairs (the two forms may mix, as Keras' ``standardize_tuple`` per entry)."""
    if rank == 1:
        return _pair(layer, arg, value)
    if _size(value):
        return ((int(value), int(value)),) * rank
    out = []
    if isinstance(value, (list, tuple)) and len(value) == rank:
        for v in value:
            if _size(v):
                out.append((int(v), int(v)))
            elif isinstance(v, (list, tuple)) and len(v) == 2 and all(map(_size, v)):
                out.append((int(v[0]), int(v[1])))
    if len(out) != rank:
        raise _bad(
            layer,
            arg,
            f"an int >= 0, a tuple of {rank} ints >= 0 or a tuple of {rank} (before, after) "
            "pairs of ints >= 0",
            value,
        )
    return tuple(out)


#: The spatial axes of ``(batch, *spatial, channels)`` as the layouts in errors name them.
_SPATIAL_AXES = {1: ("steps",), 2: ("rows", "cols"), 3: ("dim1", "dim2", "dim3")}


def _layout(rank: int, data_format: str) -> str:
    """``(batch, rows, cols, channels)``-like: the inputs' layout for ``rank`` spatial axes."""
    axes = ", ".join(_SPATIAL_AXES[rank])
    if data_format == "channels_first":
        return f"(batch, channels, {axes})"
    return f"(batch, {axes}, channels)"


class _Spatial(_NoMask):
    """A weightless layer over the ``rank`` spatial axes of ``(batch, *spatial, channels)``
    (``channels_first``: ``(batch, channels, *spatial)``), as Keras' ``...{rank}D`` layers,
    which drop the mask. The rank-generic bases below (pooling, padding, cropping,
    upsampling) are each one class, with thin ``1D``/``2D``/``3D`` names, as :class:`_Conv`."""

    rank = 1

    def _checked(self, x) -> jax.Array:
        """``x`` autocast (:func:`_autocast`), its rank checked."""
        x = _autocast(self, x)
        _rank(self, x, self.rank + 2, _layout(self.rank, self.data_format))
        return x

    def _channels_last(self, x) -> jax.Array:
        """``x`` checked (:meth:`_checked`), its channels last."""
        x = self._checked(x)
        return jnp.moveaxis(x, 1, -1) if self.data_format == "channels_first" else x

    def _restored(self, y) -> jax.Array:
        """``y`` (channels last) in the layer's ``data_format``."""
        return jnp.moveaxis(y, -1, 1) if self.data_format == "channels_first" else y

    def _per_axis(self, value: Any) -> tuple:
        """An argument held in Keras' form (rank 1: one value or pair) as one per axis."""
        return (value,) if self.rank == 1 else tuple(value)


class _ZeroPadding(_Spatial):
    """Keras' ``ZeroPadding{rank}D`` (see :class:`ZeroPadding1D`, :class:`ZeroPadding2D`,
    :class:`ZeroPadding3D`)."""

    def __init__(
        self,
        padding: int | tuple = 1,
        data_format: str | None = None,
        *,
        name: str | None = None,
        dtype: Any = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.padding = _pairs(self, "padding", padding, self.rank)
        self.data_format = _checks.data_format(data_format, self)

    def __call__(self, x, *, training: bool = False):
        y = self._channels_last(x)
        return self._restored(jnp.pad(y, [(0, 0), *self._per_axis(self.padding), (0, 0)]))


class ZeroPadding1D(_ZeroPadding):
    """Zeros before and after the steps: ``(batch, time, ch)`` -> ``(batch, left + time +
    right, ch)`` for ``padding`` ``(left, right)`` (an int pads both sides by it).

    ``channels_first`` pads the last axis of ``(batch, ch, time)`` (``data_format`` None is
    ``channels_last``; tf.keras' layer has no ``data_format``). Keras 3 drops the mask.
    """

    rank = 1


class ZeroPadding2D(_ZeroPadding):
    """Zero rows and columns around each image: ``(batch, rows, cols, ch)`` -> ``(batch,
    top + rows + bottom, left + cols + right, ch)``.

    ``padding``: an int (every side), ``(rows_pad, cols_pad)`` (symmetric per axis) or
    ``((top, bottom), (left, right))``, as Keras; held in the last form. ``channels_first``
    takes ``(batch, ch, rows, cols)``. Keras 3 drops the mask.
    """

    rank = 2


class ZeroPadding3D(_ZeroPadding):
    """Zeros around each volume: ``(batch, d1, d2, d3, ch)`` -> ``(batch, d1', d2', d3',
    ch)``, ``d_i' = before_i + d_i + after_i``.

    ``padding``: an int, a tuple of 3 ints (symmetric per axis) or 3 ``(before, after)``
    pairs, as Keras; held in the last form. ``channels_first`` takes ``(batch, ch, d1, d2,
    d3)``. Keras 3 drops the mask.
    """

    rank = 3


class _Cropping(_Spatial):
    """Keras' ``Cropping{rank}D`` (see :class:`Cropping1D`, :class:`Cropping2D`,
    :class:`Cropping3D`): at least one cell must remain on each axis, as Keras refuses."""

    def __init__(
        self,
        cropping: int | tuple = 1,
        data_format: str | None = None,
        *,
        name: str | None = None,
        dtype: Any = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.cropping = _pairs(self, "cropping", cropping, self.rank)
        self.data_format = _checks.data_format(data_format, self)

    def __call__(self, x, *, training: bool = False):
        y = self._channels_last(x)
        index = [slice(None)]
        cropping = self._per_axis(self.cropping)
        for size, (start, end), axis in zip(y.shape[1:-1], cropping, _SPATIAL_AXES[self.rank]):
            if start + end >= size:
                unit = axis if self.rank < 3 else f"cells along {axis}"
                raise _bad(
                    self,
                    "inputs",
                    f"more than {start + end} {unit} (cropping {self.cropping})",
                    f"shape {jnp.shape(x)}",
                )
            index.append(slice(start, size - end))
        return self._restored(y[tuple(index)])


class Cropping1D(_Cropping):
    """Drops ``cropping`` ``(start, end)`` steps (an int: both ends) of ``(batch, time, ch)``
    -> ``(batch, time - start - end, ch)``; at least one step must remain. Keras 3 drops
    the mask.
    """

    rank = 1

    def __init__(
        self, cropping: int | tuple = (1, 1), *, name: str | None = None, dtype: Any = None
    ):
        super().__init__(cropping, name=name, dtype=dtype)


class Cropping2D(_Cropping):
    """Drops rows and columns at the edges: ``(batch, rows, cols, ch)`` -> ``(batch, rows -
    top - bottom, cols - left - right, ch)``; at least one row and column must remain.

    ``cropping``: an int (every side), ``(rows_crop, cols_crop)`` (symmetric per axis) or
    ``((top, bottom), (left, right))``, as Keras (default: none); held in the last form.
    ``channels_first`` takes ``(batch, ch, rows, cols)``. Keras 3 drops the mask.
    """

    rank = 2

    def __init__(
        self,
        cropping: int | tuple = ((0, 0), (0, 0)),
        data_format: str | None = None,
        *,
        name: str | None = None,
        dtype: Any = None,
    ):
        super().__init__(cropping, data_format, name=name, dtype=dtype)


class Cropping3D(_Cropping):
    """Drops cells at the edges of each volume: ``(batch, d1, d2, d3, ch)`` -> ``(batch,
    d1', d2', d3', ch)``, ``d_i' = d_i - before_i - after_i >= 1``.

    ``cropping``: an int, a tuple of 3 ints (symmetric per axis) or 3 ``(before, after)``
    pairs, as Keras (default: 1 on every side); held in the last form. ``channels_first``
    takes ``(batch, ch, d1, d2, d3)``. Keras 3 drops the mask.
    """

    rank = 3


class _UpSampling(_Spatial):
    """Keras' ``UpSampling{rank}D`` (see :class:`UpSampling1D`, :class:`UpSampling2D`,
    :class:`UpSampling3D`): each cell repeated ``size`` times along each axis."""

    def __init__(
        self,
        size: int | tuple = 2,
        data_format: str | None = None,
        *,
        name: str | None = None,
        dtype: Any = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        if self.rank == 1:  # Keras' UpSampling1D holds an int
            self.size: Any = _checks.positive_int(size, "size", self)
        else:
            self.size = _checks.int_tuple(size, self.rank, "size", self)
        self.data_format = _checks.data_format(data_format, self)

    def __call__(self, x, *, training: bool = False):
        y = self._channels_last(x)
        for axis, factor in enumerate(self._per_axis(self.size), start=1):
            y = jnp.repeat(y, factor, axis=axis)
        return self._restored(y)


class UpSampling1D(_UpSampling):
    """Repeats each step ``size`` times: ``(batch, time, ch)`` -> ``(batch, time * size, ch)``.

    Keras 3 drops the mask.
    """

    rank = 1

    def __init__(self, size: int = 2, *, name: str | None = None, dtype: Any = None):
        super().__init__(size, name=name, dtype=dtype)


#: UpSampling2D's interpolations: every one Keras 3 (on TensorFlow) and tf.keras take.
INTERPOLATIONS = (
    "nearest",
    "bilinear",
    "bicubic",
    "area",
    "lanczos3",
    "lanczos5",
    "gaussian",
    "mitchellcubic",
)


def _saturate_cast(y: jax.Array, dtype: Any) -> jax.Array:
    """Keras 3's ``ops.saturate_cast`` of float32 ``y``: clipped to ``dtype``'s range (as
    float32 holds its limits, rounded towards 0), then cast."""
    dtype = jnp.dtype(dtype)
    if dtype == y.dtype:
        return y
    if dtype == jnp.bool_:
        low, high = 0.0, 1.0
    else:
        info = jnp.iinfo(dtype) if jnp.issubdtype(dtype, jnp.integer) else jnp.finfo(dtype)
        low, high = float(info.min), float(info.max)
    limits = np.finfo(np.float32)
    lo, hi = np.float32(max(float(limits.min), low)), np.float32(min(float(limits.max), high))
    if float(lo) < low:
        lo = np.nextafter(lo, np.float32(0))
    if float(hi) > high:
        hi = np.nextafter(hi, np.float32(0))
    return jnp.clip(y, lo, hi).astype(dtype)


_TABLE = 1024  # TensorFlow's bicubic coefficient table has _TABLE + 1 entries


def _f32(value: Any) -> np.ndarray:
    return np.asarray(value, np.float32)


def _lanczos(radius: float):
    def kernel(x):
        x = np.abs(x)
        pi = _f32(3.14159265359)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = _f32(radius) * np.sin(pi * x) * np.sin(pi * x / _f32(radius)) / (pi * pi * x * x)
        return np.where(x > radius, _f32(0), np.where(x <= 1e-3, _f32(1), y))

    return kernel, radius


def _gaussian(x):
    x = np.abs(x)
    sigma = _f32(0.5)  # radius 1.5 / 3
    return np.where(x >= 1.5, _f32(0), np.exp(-x * x / (_f32(2) * sigma * sigma)))


def _mitchell_cubic(x):
    x = np.abs(x)
    far = ((_f32(-7 / 18) * x + _f32(2)) * x - _f32(10 / 3)) * x + _f32(16 / 9)
    near = ((_f32(7 / 6) * x - _f32(2)) * x) * x + _f32(8 / 9)
    return np.where(x >= 2, _f32(0), np.where(x >= 1, far, near))


#: TensorFlow's ScaleAndTranslate kernels (``sampling_kernels.h``) and their radii.
_SCALE_AND_TRANSLATE = {
    "lanczos3": _lanczos(3.0),
    "lanczos5": _lanczos(5.0),
    "gaussian": (_gaussian, 1.5),
    "mitchellcubic": (_mitchell_cubic, 2.0),
}


@functools.lru_cache(maxsize=256)
def _resize_weights(method: str, size: int, factor: int) -> np.ndarray:
    """:func:`_resize_matrix`, cached (each call of a layer traces it again) and read-only."""
    weights = _resize_matrix(method, size, factor)
    weights.setflags(write=False)
    return weights


def _resize_matrix(method: str, size: int, factor: int) -> np.ndarray:
    """The ``(size * factor, size)`` float32 matrix ``tf.image.resize(method)`` applies to
    one axis upsampled by ``factor`` (half-pixel centres, no antialiasing), computed in
    float32 as TensorFlow's kernels compute it (``resize_bilinear_op.cc``,
    ``resize_bicubic_op.cc``, ``resize_area_op.cc``, ``scale_and_translate_op.cc``)."""
    out = size * factor
    rows = np.arange(out)
    o = np.arange(out, dtype=np.float32)
    half = _f32(0.5)
    w = np.zeros((out, size), np.float32)
    if method in ("bilinear", "bicubic"):
        scale = _f32(size) / _f32(out)
        source = (o + half) * scale - half  # the half-pixel scaler
        floor = np.floor(source)
        delta = source - floor
        low = floor.astype(np.int64)
        if method == "bilinear":
            np.add.at(w, (rows, np.maximum(low, 0)), _f32(1) - delta)
            np.add.at(w, (rows, np.minimum(np.ceil(source).astype(np.int64), size - 1)), delta)
            return w
        # Keys' cubic (a = -0.5) from TensorFlow's table; samples outside the image weigh 0,
        # the others are renormalised to sum to 1.
        a = -0.5
        t = (np.arange(_TABLE + 1) * 1.0 / _TABLE).astype(np.float32).astype(np.float64)
        near = (((a + 2) * t - (a + 3)) * t * t + 1).astype(np.float32)
        t = (t.astype(np.float32) + _f32(1)).astype(np.float64)
        far = ((((a * t - 5 * a) * t + 8 * a) * t) - 4 * a).astype(np.float32)
        offset = np.rint(delta * _f32(_TABLE)).astype(np.int64)
        taps = np.stack([far[offset], near[offset], near[_TABLE - offset], far[_TABLE - offset]], 1)
        index = low[:, None] + np.arange(-1, 3)
        taps = np.where((index >= 0) & (index < size), taps, _f32(0))
        taps = taps * (_f32(1) / taps.sum(1, dtype=np.float32))[:, None]
        np.add.at(w, (rows[:, None], np.clip(index, 0, size - 1)), taps)
        return w
    if method == "area":
        # Each output cell averages the input cells it overlaps, weighted by the overlap.
        scale = _f32(size) / _f32(out)
        start, end = o * scale, (o + _f32(1)) * scale
        for y in range(out):
            for i in range(int(np.floor(start[y])), int(np.ceil(end[y]))):
                if i < start[y]:
                    part = scale if i + 1 > end[y] else _f32(i + 1) - start[y]
                else:
                    part = end[y] - _f32(i) if i + 1 > end[y] else _f32(1)
                w[y, min(i, size - 1)] += part
        return w * (_f32(1) / scale)
    kernel, radius = _SCALE_AND_TRANSLATE[method]
    inverse = _f32(1.0 / (_f32(out) / _f32(size)))
    sample = (o + half) * inverse
    first = np.clip(np.ceil(sample - _f32(radius) - half), 0, size - 1)
    last = np.clip(np.floor(sample + _f32(radius) - half), 0, size - 1)
    source = np.arange(size, dtype=np.float32)
    taps = kernel(np.abs(source[None, :] + half - sample[:, None]))
    inside = (source[None, :] >= first[:, None]) & (source[None, :] <= last[:, None])
    taps = np.where(inside, taps, _f32(0)).astype(np.float32)
    return taps * (_f32(1) / taps.sum(1, dtype=np.float32))[:, None]


class UpSampling2D(_UpSampling):
    """Upsamples each image by the integer ``size`` ``(rows_factor, cols_factor)`` (an int:
    both): ``(batch, rows, cols, ch)`` -> ``(batch, rows * size[0], cols * size[1], ch)``.

    ``interpolation`` ``nearest`` (Keras' default) repeats each pixel. The others are
    ``tf.image.resize``'s (half-pixel centres, no antialiasing), which Keras 3 (its
    TensorFlow backend) and tf.keras call: one ``(rows', rows)`` and one ``(cols', cols)``
    weight matrix, computed as TensorFlow's kernels compute them in float32 —
    ``bilinear``; ``bicubic`` (Keys' cubic, a = -0.5, from TensorFlow's 1024-entry table;
    Keras 3 on JAX uses exact cubic weights instead, up to ~1.5e-3 away); ``area``
    (TensorFlow has no gradient for it, jrnn gives one); ``lanczos3``, ``lanczos5`` and,
    tf.keras only, ``gaussian`` and ``mitchellcubic`` (TensorFlow's ScaleAndTranslate
    kernels; Keras 3 refuses these two). They compute in float32, as TensorFlow's kernels;
    Keras 3 returns the inputs' dtype (integers rounded, values clipped to the dtype's
    range: ``ops.saturate_cast``), tf.keras (``keras2=True``, set by the importers) float32.
    ``channels_first`` takes ``(batch, ch, rows, cols)``. Keras 3 drops the mask.

    Example:
        >>> import jax.numpy as jnp
        >>> UpSampling2D((2, 3), interpolation="bilinear")(jnp.ones((1, 7, 5, 3))).shape
        (1, 14, 15, 3)
    """

    rank = 2

    def __init__(
        self,
        size: int | tuple = 2,
        data_format: str | None = None,
        interpolation: str = "nearest",
        *,
        keras2: bool = False,
        name: str | None = None,
        dtype: Any = None,
    ):
        super().__init__(size, data_format, name=name, dtype=dtype)
        self.interpolation = _checks.lowercase_one_of(
            interpolation, "interpolation", INTERPOLATIONS, self
        )
        self.keras2 = _checks.boolean(keras2, "keras2", self)
        # tf.keras' float32 outputs are not cast to the layer's policy (importers.model)
        self.keeps_output_dtype = self.keras2 and self.interpolation != "nearest"

    def __call__(self, x, *, training: bool = False):
        if self.interpolation == "nearest":
            return super().__call__(x)
        y = self._channels_last(x)
        given = y.dtype
        y = y.astype(jnp.float32)
        for axis, factor in enumerate(self.size, start=1):
            weights = jnp.asarray(_resize_weights(self.interpolation, y.shape[axis], factor))
            y = jnp.tensordot(weights, y, axes=(1, axis), precision=jax.lax.Precision.HIGHEST)
            y = jnp.moveaxis(y, 0, axis)
        if not self.keras2:  # Keras 3's ops.image.resize: back to the inputs' dtype
            if jnp.issubdtype(given, jnp.integer):
                y = jnp.round(y)
            y = _saturate_cast(y, given)
        return self._restored(y)


class UpSampling3D(_UpSampling):
    """Repeats each cell ``size`` ``(f1, f2, f3)`` times along each axis (an int: all):
    ``(batch, d1, d2, d3, ch)`` -> ``(batch, d1 * f1, d2 * f2, d3 * f3, ch)``.

    ``channels_first`` takes ``(batch, ch, d1, d2, d3)``. Keras 3 drops the mask.
    """

    rank = 3


# -- convolution and pooling ---------------------------------------------------------------


def _int_list(layer, arg, values) -> tuple[int, ...]:
    """A tuple or list of ints (not floats or bools), as a tuple."""
    if not isinstance(values, (list, tuple)) or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in values
    ):
        raise _bad(layer, arg, "a tuple of ints", values)
    return tuple(int(v) for v in values)


def _output_length(layer, x, steps: int, window: int, padding: str) -> None:
    """Keras refuses a window longer than its (unpadded) input: no empty outputs."""
    if padding == "valid" and steps < window:
        raise _bad(
            layer,
            "inputs",
            f"at least {window} steps on each spatial axis (its window with padding='valid')",
            f"shape {x.shape}",
        )


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
        dtype: Any = None,
        param_dtype: Any = None,
        rngs: nnx.Rngs,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, param_dtype)
        self.data_format = _checks.data_format(data_format, self)
        _govern(self, ("kernel", "bias"), locals())
        paddings = ("valid", "same", "causal") if self.rank == 1 else ("valid", "same")
        self.padding = _checks.lowercase_one_of(padding, "padding", paddings, self)
        r = self.rank
        self.kernel_size = _checks.int_tuple(kernel_size, r, "kernel_size", self)
        self.strides = _checks.int_tuple(strides, r, "strides", self)
        self.dilation_rate = _checks.int_tuple(dilation_rate, r, "dilation_rate", self)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise _bad(
                self,
                "strides",
                "1 where dilation_rate > 1 (Keras refuses both together)",
                (self.strides, self.dilation_rate),
            )
        filters = _checks.positive_int(filters, "filters", self)
        in_channels = _checks.positive_int(in_channels, "in_channels", self)
        groups = _checks.positive_int(groups, "groups", self)
        use_bias = _checks.boolean(use_bias, "use_bias", self)
        if in_channels % groups or filters % groups:
            raise _bad(
                self,
                "groups",
                f"a divisor of in_channels {in_channels} and filters {filters}",
                groups,
            )
        self.filters, self.groups = filters, groups
        self.activation = _checks.resolved(activations.get, activation, "activation", self)
        shape = (*self.kernel_size, in_channels // groups, filters)
        _kernel_and_bias(self, shape, use_bias, locals(), rngs)

    def __call__(self, x, *, training: bool = False):
        first = self.data_format == "channels_first"
        x = _inputs(self, x, floats=True)
        channels = self.kernel.shape[-2] * self.groups
        if x.ndim != self.rank + 2 or x.shape[1 if first else -1] != channels:
            layout = f"(batch, {channels}, *spatial)" if first else f"(batch, *spatial, {channels})"
            raise _bad(self, "inputs", f"{self.rank + 2}-D {layout}", f"shape {x.shape}")
        if first:
            x = jnp.moveaxis(x, 1, -1)
        for steps, k, d in zip(x.shape[1:-1], self.kernel_size, self.dilation_rate):
            _output_length(self, x, steps, d * (k - 1) + 1, self.padding)
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
    ``(batch, in_channels, time)``. Keras 3 drops the mask. ``dtype`` / ``param_dtype``: Keras'
    dtype policy and a variables' dtype override, as :class:`Dense`'s.
    """

    rank = 1


class Conv2D(_Conv):
    """2-D convolution: ``(batch, rows, cols, in_channels)`` -> ``(batch, rows', cols', filters)``.

    Keras weights: ``kernel (*kernel_size, in_channels // groups, filters)``, ``bias (filters,)``;
    ``padding`` ``valid`` or ``same``; ``channels_first`` takes ``(batch, in_channels, rows,
    cols)``. Keras 3 drops the mask. ``dtype`` / ``param_dtype`` as :class:`Dense`'s.
    """

    rank = 2


class Conv3D(_Conv):
    """3-D convolution: ``(batch, d1, d2, d3, in_channels)`` -> ``(batch, d1', d2', d3', filters)``
    (e.g. over a video's time, rows and cols). Layout and options (``dtype`` and
    ``param_dtype`` too) as :class:`Conv2D`.
    """

    rank = 3


class _Pool(_Spatial):
    """Keras' ``MaxPooling{rank}D`` / ``AveragePooling{rank}D``: windows of ``pool_size``
    cells moved by ``strides`` (default ``pool_size``) over the spatial axes; ``padding``
    ``valid`` (a window longer than its axis is refused, as Keras) or ``same`` (TensorFlow's
    split: the extra cell on the right)."""

    def __init__(
        self,
        pool_size: int | tuple = 2,
        strides: int | tuple | None = None,
        padding: str = "valid",
        data_format: str = "channels_last",
        *,
        name: str | None = None,
        dtype: Any = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.data_format = _checks.data_format(data_format, self)
        self.padding = _checks.lowercase_one_of(padding, "padding", ("valid", "same"), self)
        self.pool_size = _checks.int_tuple(pool_size, self.rank, "pool_size", self)
        if strides is None:
            self.strides = self.pool_size
        else:
            self.strides = _checks.int_tuple(strides, self.rank, "strides", self)

    def _window(self, x, init, op):
        # ``init`` a NumPy scalar: a concrete identity makes reduce_window JAX's max/sum
        # window primitive, which has a transpose rule; a jnp.array, traced under jit, makes
        # it the generic reduce_window, which has none (jit(grad) failed to linearize).
        return jax.lax.reduce_window(
            x,
            init,
            op,
            (1, *self.pool_size, 1),
            (1, *self.strides, 1),
            self.padding.upper(),
        )

    def __call__(self, x, *, training: bool = False):
        x = jnp.asarray(x)
        y = self._channels_last(x)
        for steps, window in zip(y.shape[1:-1], self.pool_size):
            _output_length(self, x, steps, window, self.padding)
        return self._restored(self._pool(y))


def _lowest(dtype: Any) -> np.ndarray:
    """max's identity in ``dtype``, a NumPy scalar: -inf, or an integer dtype's minimum."""
    if jnp.issubdtype(dtype, jnp.integer):
        return np.array(jnp.iinfo(dtype).min, dtype)
    if dtype == jnp.bool_:
        return np.array(False)
    return np.array(-np.inf, dtype)


def _pool_geometry(spatial, pool_size, strides, padding) -> tuple[list, list]:
    """The output sizes and the ``(before, after)`` padding of each spatial axis of a pool
    (``same``: TensorFlow's split, the extra cell after, as reduce_window's)."""
    axes = list(zip(spatial, pool_size, strides))
    if padding == "same":
        outs = [-(-n // s) for n, _, s in axes]
        pads = [max((o - 1) * s + k - n, 0) for o, (n, k, s) in zip(outs, axes)]
        return outs, [(p // 2, p - p // 2) for p in pads]
    return [(n - k) // s + 1 for n, k, s in axes], [(0, 0)] * len(axes)


def _window_cells(outs, pool_size, strides):
    """For each cell offset of the window, in row-major order, the strided slices of the
    padded inputs that this cell of every window reads."""
    for offsets in itertools.product(*(range(k) for k in pool_size)):
        yield tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offsets, outs, strides))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _max_pool_all_ties(x, pool_size, strides, padding):
    """MaxPooling3D's forward pass, differentiated as TensorFlow's MaxPool3DGrad: every cell
    equal to its window's max passes on the window's whole gradient (TensorFlow's 1-D/2-D
    MaxPool and JAX's reduce_window give it to the first such cell only). The tangent is
    the sum of the tied cells' tangents, a linear map whose transpose is that gradient."""
    return jax.lax.reduce_window(
        x, _lowest(x.dtype), jax.lax.max, (1, *pool_size, 1), (1, *strides, 1), padding.upper()
    )


@_max_pool_all_ties.defjvp
def _max_pool_all_ties_jvp(pool_size, strides, padding, primals, tangents):
    (x,), (t,) = primals, tangents
    y = _max_pool_all_ties(x, pool_size, strides, padding)
    outs, pads = _pool_geometry(x.shape[1:-1], pool_size, strides, padding)
    width = [(0, 0), *pads, (0, 0)]
    padded = jnp.pad(x, width, constant_values=_lowest(x.dtype))
    t = jnp.pad(t, width)
    tangent = jnp.zeros(y.shape, t.dtype)
    for cells in _window_cells(outs, pool_size, strides):
        index = (slice(None), *cells, slice(None))
        tangent = tangent + jnp.where(padded[index] == y, t[index], jnp.zeros((), t.dtype))
    return y, tangent


class _MaxPool(_Pool):
    def _pool(self, x):
        if self.rank == 3 and jnp.issubdtype(x.dtype, jnp.floating):
            return _max_pool_all_ties(x, self.pool_size, self.strides, self.padding)
        return self._window(x, _lowest(x.dtype), jax.lax.max)


def _window_counts(spatial, pool_size, strides, padding) -> np.ndarray:
    """How many cells inside the input each window of a pool covers, ``(*outs)`` int32,
    from the shapes alone (a reduce_window over ones was constant-folded by XLA at compile
    time: 26 s for AveragePooling2D(3, 1, 'same') on (16, 64, 64, 32))."""
    outs, pads = _pool_geometry(spatial, pool_size, strides, padding)
    count = np.ones((), np.int32)
    for n, k, s, o, (before, _) in zip(spatial, pool_size, strides, outs, pads):
        start = np.arange(o) * s - before
        along = np.minimum(start + k, n) - np.maximum(start, 0)
        count = np.multiply.outer(count, along.astype(np.int32))
    return count


class _AveragePool(_Pool):
    def _pool(self, x):
        """The window means. float16 sums as TensorFlow's CPU AvgPool (:meth:`_rounded_pool`);
        bfloat16 sums in float32 and rounds the mean once, as its default oneDNN kernel
        (Eigen's, with TF_ENABLE_ONEDNN_OPTS=0, rounds each partial sum instead)."""
        if x.dtype == jnp.float16:
            return self._rounded_pool(x)
        wide = x.astype(jnp.float32) if x.dtype == jnp.bfloat16 else x
        total = self._window(wide, np.array(0, wide.dtype), jax.lax.add)
        count = _window_counts(x.shape[1:-1], self.pool_size, self.strides, self.padding)
        mean = total / jnp.asarray(count, total.dtype)[None, ..., None]
        return mean.astype(x.dtype) if x.dtype == jnp.bfloat16 else mean

    def _rounded_pool(self, x):
        """float16 as TensorFlow's AvgPool kernels (Keras' on CPU, with or without oneDNN):
        each window's cells added one by one in row-major order, every partial sum rounded
        to float16, then divided by the count of cells inside. (XLA's reduce_window keeps
        float32 partial sums: one ulp off in up to half the outputs, 0.0039 for values of
        4 to 8.)"""
        outs, pads = _pool_geometry(x.shape[1:-1], self.pool_size, self.strides, self.padding)
        padded = jnp.pad(x, [(0, 0), *pads, (0, 0)]).astype(jnp.float32)
        total = jnp.zeros((x.shape[0], *outs, x.shape[-1]), jnp.float32)
        for cells in _window_cells(outs, self.pool_size, self.strides):
            # The float32 sum of two float16s is exact enough that its rounding to float16
            # is float16's correctly rounded sum (as Eigen's half adds).
            total = (total + padded[(slice(None), *cells, slice(None))]).astype(x.dtype)
            total = total.astype(jnp.float32)
        count = _window_counts(x.shape[1:-1], self.pool_size, self.strides, self.padding)
        return (total / jnp.asarray(count, jnp.float32)[None, ..., None]).astype(x.dtype)


class MaxPooling1D(_MaxPool):
    """Max over windows of ``pool_size`` steps: ``(batch, time, ch)`` -> ``(batch, time', ch)``."""

    rank = 1


class AveragePooling1D(_AveragePool):
    """Mean over windows of ``pool_size`` steps (``same`` padding excludes the padded steps)."""

    rank = 1


class MaxPooling2D(_MaxPool):
    """Max over windows of ``pool_size`` ``(rows, cols)`` (an int: both) moved by ``strides``:
    ``(batch, rows, cols, ch)`` -> ``(batch, rows', cols', ch)``, ``rows' = (rows - pool) //
    stride + 1`` (``valid``) or ``ceil(rows / stride)`` (``same``; the padding is never the
    max). ``channels_first`` takes ``(batch, ch, rows, cols)``. Keras 3 drops the mask.

    Example:
        >>> import jax.numpy as jnp
        >>> MaxPooling2D((3, 2), strides=(2, 1), padding="same")(jnp.ones((1, 7, 5, 3))).shape
        (1, 4, 5, 3)
    """

    rank = 2


class MaxPooling3D(_MaxPool):
    """Max over windows of ``pool_size`` ``(d1, d2, d3)`` cells (e.g. a video's time, rows
    and cols): ``(batch, d1, d2, d3, ch)`` -> ``(batch, d1', d2', d3', ch)``, sizes as
    :class:`MaxPooling2D`'s; ``channels_first`` takes ``(batch, ch, d1, d2, d3)``.
    """

    rank = 3


class AveragePooling2D(_AveragePool):
    """Mean over windows of ``pool_size`` ``(rows, cols)`` moved by ``strides``: ``(batch,
    rows, cols, ch)`` -> ``(batch, rows', cols', ch)``, sizes as :class:`MaxPooling2D`'s.
    With ``same`` padding a window at the edge averages only the cells inside the image, as
    TensorFlow (and so Keras 3 and tf.keras). ``channels_first`` takes ``(batch, ch, rows,
    cols)``. Keras 3 drops the mask.
    """

    rank = 2


class AveragePooling3D(_AveragePool):
    """Mean over windows of ``pool_size`` ``(d1, d2, d3)`` cells: ``(batch, d1, d2, d3, ch)``
    -> ``(batch, d1', d2', d3', ch)``; ``same`` padding averages only the cells inside, as
    :class:`AveragePooling2D`; ``channels_first`` takes ``(batch, ch, d1, d2, d3)``.
    """

    rank = 3


class _GlobalPool(_Spatial):
    """Keras' ``Global{Max,Average}Pooling{rank}D``: a reduction over every spatial axis,
    ``(batch, *spatial, ch)`` -> ``(batch, ch)`` (``keepdims``: ``(batch, 1, ..., 1, ch)``)."""

    def __init__(
        self,
        data_format: str = "channels_last",
        keepdims: bool = False,
        *,
        name: str | None = None,
        dtype: Any = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, weights=False)
        self.data_format = _checks.data_format(data_format, self)
        self.keepdims = _checks.boolean(keepdims, "keepdims", self)

    @property
    def _axes(self) -> tuple[int, ...]:
        first = 1 if self.data_format == "channels_last" else 2
        return tuple(range(first, first + self.rank))

    def __call__(self, x, *, training: bool = False):
        return self._reduce(self._checked(x), axis=self._axes, keepdims=self.keepdims)


class _GlobalMaxPool(_GlobalPool):
    def _reduce(self, x, axis, keepdims):
        return jnp.max(x, axis=axis, keepdims=keepdims)


class _GlobalAveragePool(_GlobalPool):
    def _reduce(self, x, axis, keepdims):
        return jnp.mean(x, axis=axis, keepdims=keepdims)


class GlobalMaxPooling1D(_GlobalMaxPool):
    """Max over time: ``(batch, time, ch)`` -> ``(batch, ch)`` (Keras ignores the mask)."""

    rank = 1


class GlobalAveragePooling1D(_GlobalAveragePool):
    """Mean over unmasked steps: ``(batch, time, channels)`` -> ``(batch, channels)``.

    With a ``(batch, time)`` mask it is ``sum(x * mask) / sum(mask)``, as Keras 3.
    """

    rank = 1

    def __call__(self, x, *, training: bool = False, mask=None):
        x = self._checked(x)
        if mask is None:
            return self._reduce(x, axis=self._axes, keepdims=self.keepdims)
        m = jnp.expand_dims(mask.astype(x.dtype), 2 if self.data_format == "channels_last" else 1)
        total = jnp.sum(x * m, axis=self._axes, keepdims=self.keepdims)
        return total / jnp.sum(m, axis=self._axes, keepdims=self.keepdims)


class GlobalMaxPooling2D(_GlobalMaxPool):
    """Max over each image: ``(batch, rows, cols, ch)`` -> ``(batch, ch)`` (``keepdims``:
    ``(batch, 1, 1, ch)``); ``channels_first`` takes ``(batch, ch, rows, cols)``. Keras 3
    drops the mask.
    """

    rank = 2


class GlobalMaxPooling3D(_GlobalMaxPool):
    """Max over each volume: ``(batch, d1, d2, d3, ch)`` -> ``(batch, ch)`` (``keepdims``:
    ``(batch, 1, 1, 1, ch)``); ``channels_first`` takes ``(batch, ch, d1, d2, d3)``.
    """

    rank = 3


class GlobalAveragePooling2D(_GlobalAveragePool):
    """Mean over each image: ``(batch, rows, cols, ch)`` -> ``(batch, ch)`` (``keepdims``:
    ``(batch, 1, 1, ch)``); ``channels_first`` takes ``(batch, ch, rows, cols)``. Keras 3
    drops the mask (its 2-D and 3-D global pools do not read one).
    """

    rank = 2


class GlobalAveragePooling3D(_GlobalAveragePool):
    """Mean over each volume: ``(batch, d1, d2, d3, ch)`` -> ``(batch, ch)`` (``keepdims``:
    ``(batch, 1, 1, 1, ch)``); ``channels_first`` takes ``(batch, ch, d1, d2, d3)``.
    """

    rank = 3


# -- normalisation -------------------------------------------------------------------------


def _axes(layer, axis, ndim) -> tuple[int, ...]:
    axes = _int_list(layer, "axis", axis if isinstance(axis, (list, tuple)) else [axis])
    if not axes:
        raise _bad(layer, "axis", "an int or a non-empty list of ints", axis)
    if ndim is None:
        return axes
    out = []
    for a in axes:
        if not -ndim <= int(a) < ndim:
            raise _bad(layer, "axis", f"in [-{ndim}, {ndim})", axis)
        out.append(int(a) % ndim)
    return tuple(sorted(out))


def _normalising(dtype) -> Any:
    """The dtype Keras normalises ``dtype`` inputs in (``result_type(dtype, "float32")``):
    float32 for half precision and integers, float64 for float64."""
    wide = jnp.issubdtype(dtype, jnp.floating) and jnp.dtype(dtype).itemsize > 4
    return jnp.dtype(dtype) if wide else jnp.dtype(jnp.float32)


def _features(layer, x, shape: tuple, expected: tuple) -> None:
    """The sizes of ``x`` on the normalised axes (``shape``, 1 elsewhere) are the weights'."""
    if tuple(d for d in shape if d != 1) != tuple(d for d in expected if d != 1) or math.prod(
        shape
    ) != math.prod(expected):
        raise _bad(
            layer,
            "inputs",
            f"sizes {tuple(expected)} on axis {layer.axis}",
            f"shape {x.shape}",
        )


class BatchNormalization(nnx.Module):
    """``gamma * (x - mean) / sqrt(var + epsilon) + beta`` over feature ``axis``.

    x ``(batch, ..., features)`` for ``axis=-1``. Keras weights, in ``get_weights()`` order:
    ``gamma, beta`` (each only with ``scale`` / ``center``), ``moving_mean, moving_variance``
    (``nnx.BatchStat``), all ``(features,)``. Inference uses the moving statistics;
    ``training=True`` uses the batch moments (masked steps excluded, as Keras) and updates
    ``moving = moving * momentum + batch * (1 - momentum)`` in place; a frozen layer
    (``trainable = False``, as Keras) uses the moving statistics in training too. The mask
    passes through. ``unbiased_moving_variance=True`` is tf.keras' fused kernel (its
    default for 4-D and 5-D inputs normalised over the first or last axis): the moving
    variance takes the batch variance times ``n / (n - 1)``, ``n`` the values per feature.
    ``dtype`` / ``param_dtype``: Keras' dtype policy and a variables' dtype override (module
    docstring); as Keras, floating inputs are cast to the compute dtype, normalised in it or
    float32 if narrower, and the output returned in the compute dtype.
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
        dtype: Any = None,
        param_dtype: Any = None,
        rngs: nnx.Rngs | None = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, param_dtype)
        _govern(self, ("beta", "gamma"), locals())
        self.axis = _axes(self, axis, None)
        if len(self.axis) != 1:
            raise _bad(self, "axis", "a single axis", axis)
        self.momentum = _real(self, "momentum", momentum)
        self.epsilon = _real(self, "epsilon", epsilon)
        self.unbiased_moving_variance = _checks.boolean(
            unbiased_moving_variance, "unbiased_moving_variance", self
        )
        n = (_checks.positive_int(num_features, "num_features", self),)
        scale = _checks.boolean(scale, "scale", self)
        center = _checks.boolean(center, "center", self)
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
        x = _autocast(self, x)
        x = x.astype(_normalising(x.dtype))
        axes = _axes(self, self.axis, x.ndim)
        shape = tuple(x.shape[a] if a in axes else 1 for a in range(x.ndim))
        _features(self, x, shape, self.moving_mean.shape)
        red = tuple(a for a in range(x.ndim) if a not in axes)
        if training and not _checks.frozen(self):  # Keras: a frozen layer uses moving stats
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
                new = stat[...].astype(x.dtype) * mom + batch.reshape(-1) * (1 - mom)
                stat[...] = new.astype(stat[...].dtype)
        else:
            mean = self.moving_mean[...].astype(x.dtype).reshape(shape)
            var = self.moving_variance[...].astype(x.dtype).reshape(shape)
        inv = jax.lax.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            inv = inv * self.gamma[...].astype(x.dtype).reshape(shape)
        y = (x - mean) * inv
        if self.beta is not None:
            y = y + self.beta[...].astype(x.dtype).reshape(shape)
        return y.astype(self.compute_dtype)

    def keras_weights(self) -> list:
        """``[gamma, beta, moving_mean, moving_variance]`` (those present)."""
        ws = [self.gamma, self.beta, self.moving_mean, self.moving_variance]
        return [w for w in ws if w is not None]


class LayerNormalization(nnx.Module):
    """Normalises each example over ``axis`` (default the features of ``(batch, time, features)``).

    ``gamma * (x - mean) / sqrt(var + epsilon) + beta``; Keras weights ``gamma, beta`` of the
    shape of ``x`` on ``axis`` (each only with ``scale`` / ``center``). The mask passes through.
    ``dtype`` / ``param_dtype``: Keras' dtype policy and a variables' dtype override (module
    docstring); as Keras (which does not autocast this layer's inputs), ``x`` is normalised in
    its own dtype or float32 if narrower, rounded to its dtype, and returned in the compute
    dtype.
    """

    #: Keras 3's LayerNormalization does not autocast its input: under a mixed policy a
    #: float32 input is normalised in float32 (importers.load keeps it so).
    autocast = False

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
        dtype: Any = None,
        param_dtype: Any = None,
        rngs: nnx.Rngs | None = None,
    ):
        self.name = _checks.name(name, self)
        _policy(self, dtype, param_dtype)
        _govern(self, ("beta", "gamma"), locals())
        self.axis = _axes(self, axis, None)
        self.epsilon = _real(self, "epsilon", epsilon)
        if isinstance(param_shape, numbers.Integral):
            param_shape = (param_shape,)
        shape = _int_list(self, "param_shape", param_shape)
        if not shape or min(shape) < 1 or len(shape) != len(self.axis):
            raise _bad(
                self, "param_shape", f"{len(self.axis)} positive sizes (one per axis)", shape
            )
        self.param_shape = shape
        scale = _checks.boolean(scale, "scale", self)
        center = _checks.boolean(center, "center", self)
        self.gamma = (
            nnx.Param(_initial(self, "gamma", gamma_initializer, shape, rngs)) if scale else None
        )
        self.beta = (
            nnx.Param(_initial(self, "beta", beta_initializer, shape, rngs)) if center else None
        )

    def __call__(self, x, *, training: bool = False):
        check_x64(self.policy, _checks.where(self))
        given = jnp.asarray(x).dtype
        x = jnp.asarray(x).astype(_normalising(given))
        axes = _axes(self, self.axis, x.ndim)
        shape = tuple(x.shape[a] if a in axes else 1 for a in range(x.ndim))
        _features(self, x, shape, self.param_shape)
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.var(x, axis=axes, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        if self.gamma is not None:
            y = y * self.gamma[...].astype(x.dtype).reshape(shape)
        if self.beta is not None:
            y = y + self.beta[...].astype(x.dtype).reshape(shape)
        if jnp.issubdtype(given, jnp.floating):  # Keras rounds to the input's dtype first
            y = y.astype(given)
        return y.astype(self.compute_dtype)

    def keras_weights(self) -> list:
        """``[gamma, beta]`` (those present)."""
        return [w for w in (self.gamma, self.beta) if w is not None]
