"""Keras 3 activations by name, as pure JAX functions (plus Keras 2's hard sigmoid).

Every name that ``keras.activations.get`` (Keras 3.15) resolves to a one-argument
activation has a JAX function here, formula for formula with Keras' TensorFlow backend
and with Keras' keyword arguments and defaults (``leaky_relu`` slope 0.2, exact-erf
``gelu``, ``squareplus`` b=4, shrink thresholds 0.5, the softmax family on the last
axis). Aliases as in Keras: ``swish`` is ``silu``, ``hard_swish`` is ``hard_silu``.

Two names differ from Keras on purpose:

* ``"keras2_hard_sigmoid"`` is Keras 1/2's (and tf.keras') ``clip(0.2 x + 0.5, 0, 1)``.
  Keras 3's ``hard_sigmoid`` is ``relu6(x + 3) / 6`` (slope 1/6), so a layer saved by
  Keras 2 with ``recurrent_activation="hard_sigmoid"`` needs this one; importers pick it
  from the file's Keras version.
* ``"threshold"`` is accepted by ``keras.activations.get`` but needs two more arguments
  (``threshold``, ``default_value``), so a layer built with it fails when called. Here
  :func:`threshold` is a plain function and ``get("threshold")`` raises, saying so.

Every function keeps its input's dtype (bfloat16 in, bfloat16 out; constants are cast
to ``x.dtype``, so they pass under ``jax_numpy_dtype_promotion="strict"``), is jit-able
and differentiable.

Example:
  >>> import jax.numpy as jnp
  >>> from jrnn import activations
  >>> x = jnp.array([-4.0, 0.0, 1.5])
  >>> activations.get("hard_sigmoid")(x)  # Keras 3: relu6(x + 3) / 6
  Array([0.  , 0.5 , 0.75], dtype=float32)
  >>> activations.get("keras2_hard_sigmoid")(x)  # Keras 1/2: clip(0.2 x + 0.5, 0, 1)
  Array([0. , 0.5, 0.8], dtype=float32)
  >>> activations.serialize(activations.get("swish"))
  'silu'
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Activation = Callable[[Array], Array]


def _c(value: float, x: Array) -> Array:
    """``value`` as a scalar of ``x.dtype`` (no promotion, strict-mode safe)."""
    return jnp.asarray(value, x.dtype)


def _zero(x: Array) -> Array:
    return jnp.zeros((), x.dtype)


# --- Plain activations -------------------------------------------------------------------


def linear(x: Array) -> Array:
    """Linear (identity): ``linear(x) = x``; returns ``x`` unchanged. ``get(None)`` is this."""
    return x


def tanh(x: Array) -> Array:
    """Hyperbolic tangent: ``tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))``."""
    return jnp.tanh(x)


def sigmoid(x: Array) -> Array:
    """Logistic sigmoid: ``sigmoid(x) = 1 / (1 + exp(-x))``."""
    return jax.nn.sigmoid(x)


def hard_sigmoid(x: Array) -> Array:
    """Keras 3 hard sigmoid: ``hard_sigmoid(x) = relu6(x + 3) / 6``.

    0 for ``x <= -3``, 1 for ``x >= 3``, ``x / 6 + 0.5`` between. Keras 1/2 used a
    different slope; see :func:`keras2_hard_sigmoid`.
    """
    x = jnp.asarray(x)
    return jax.nn.relu6(x + _c(3.0, x)) / _c(6.0, x)


def keras2_hard_sigmoid(x: Array) -> Array:
    """Keras 1/2 (tf.keras, tf_keras) hard sigmoid: ``clip(0.2 x + 0.5, 0, 1)``.

    0 for ``x <= -2.5``, 1 for ``x >= 2.5``. Not a Keras 3 name: it is what
    ``"hard_sigmoid"`` meant in files written by Keras 1 and 2.
    """
    x = jnp.asarray(x)
    return _clip(x * _c(0.2, x) + _c(0.5, x), 0.0, 1.0)


def _clip(x: Array, low: float, high: float) -> Array:
    """``clip(x, low, high)`` with TensorFlow's ``clip_by_value`` gradient (1 at the bounds)."""
    return jnp.where(x < low, _c(low, x), jnp.where(x > high, _c(high, x), x))


def relu(
    x: Array,
    negative_slope: float = 0.0,
    max_value: float | None = None,
    threshold: float = 0.0,
) -> Array:
    """Rectified linear unit: ``relu(x) = max(x, 0)`` with Keras' defaults.

    With Keras' optional arguments (``keras.activations.relu``): ``x`` for
    ``threshold < x < max_value``, ``max_value`` above it, and
    ``negative_slope * (x - threshold)`` below the threshold, computed step by step as
    Keras does (including Keras' order: values between ``threshold < 0`` and 0 are
    clipped to 0 when ``max_value`` is set).
    """
    x = jnp.asarray(x)
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return leaky_relu(x, negative_slope=negative_slope)
        if threshold != 0:
            negative_part = jax.nn.relu(-x + _c(threshold, x))
        else:
            negative_part = jax.nn.relu(-x)
    clip_max = max_value is not None
    if threshold != 0:
        x = jnp.where(x > _c(threshold, x), x, _zero(x))
    elif max_value == 6:
        x = jax.nn.relu6(x)
        clip_max = False
    else:
        x = jax.nn.relu(x)
    if clip_max:
        x = _clip(x, 0.0, max_value)
    if negative_slope != 0.0:
        x = x - _c(negative_slope, x) * negative_part
    return x


def relu6(x: Array) -> Array:
    """ReLU capped at 6: ``relu6(x) = min(max(x, 0), 6)``."""
    return jax.nn.relu6(x)


def leaky_relu(x: Array, negative_slope: float = 0.2) -> Array:
    """Leaky ReLU: ``x`` if ``x > 0`` else ``negative_slope * x`` (Keras' default 0.2)."""
    x = jnp.asarray(x)
    return jnp.where(x > _zero(x), x, _c(negative_slope, x) * x)


def elu(x: Array, alpha: float = 1.0) -> Array:
    """Exponential linear unit: ``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``."""
    x = jnp.asarray(x)
    res = jax.nn.elu(x)
    if alpha == 1:
        return res
    return jnp.where(x > _zero(x), res, _c(alpha, x) * res)


def selu(x: Array) -> Array:
    """Scaled ELU: ``scale * x`` if ``x > 0`` else ``scale * alpha * (exp(x) - 1)``.

    ``alpha = 1.6732632423543772``, ``scale = 1.0507009873554805`` (Klambauer et al.).
    """
    return jax.nn.selu(x)


def celu(x: Array, alpha: float = 1.0) -> Array:
    """Continuously differentiable ELU: ``max(x, 0) + alpha * expm1(min(x, 0) / alpha)``."""
    x = jnp.asarray(x)
    a = _c(alpha, x)
    return jnp.maximum(x, _zero(x)) + a * jnp.expm1(jnp.minimum(x, _zero(x)) / a)


def softplus(x: Array) -> Array:
    """Softplus: ``softplus(x) = log(exp(x) + 1)`` (computed stably)."""
    return jax.nn.softplus(x)


def softsign(x: Array) -> Array:
    """Softsign: ``softsign(x) = x / (|x| + 1)``."""
    x = jnp.asarray(x)
    return x / (jnp.abs(x) + _c(1.0, x))


def silu(x: Array) -> Array:
    """SiLU, also named swish: ``silu(x) = x * sigmoid(x)``."""
    return jax.nn.silu(x)


def gelu(x: Array, approximate: bool = False) -> Array:
    """Gaussian error linear unit, exact by default (Keras' ``approximate=False``).

    ``gelu(x) = 0.5 x (1 + erf(x / sqrt(2)))``; with ``approximate=True``
    ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))``. Same formulas as
    ``tf.nn.gelu``.
    """
    x = jnp.asarray(x)
    half, one = _c(0.5, x), _c(1.0, x)
    if approximate:
        inner = _c(0.7978845608028654, x) * (x + _c(0.044715, x) * x**3)
        return half * x * (one + jnp.tanh(inner))
    return half * x * (one + jax.lax.erf(x / _c(1.4142135623730951, x)))


def exponential(x: Array) -> Array:
    """Exponential: ``exponential(x) = exp(x)``."""
    return jnp.exp(x)


def hard_silu(x: Array) -> Array:
    """Hard SiLU, also named hard_swish: ``hard_silu(x) = x * relu6(x + 3) / 6``.

    0 for ``x <= -3``, ``x`` for ``x >= 3``, ``x (x + 3) / 6`` between.
    """
    x = jnp.asarray(x)
    return x * hard_sigmoid(x)


def hard_tanh(x: Array) -> Array:
    """Hard tanh: ``hard_tanh(x) = clip(x, -1, 1)``."""
    return _clip(jnp.asarray(x), -1.0, 1.0)


def log_sigmoid(x: Array) -> Array:
    """Log-sigmoid: ``log_sigmoid(x) = log(1 / (1 + exp(-x))) = -softplus(-x)``."""
    return jax.nn.log_sigmoid(x)


def mish(x: Array) -> Array:
    """Mish: ``mish(x) = x * tanh(softplus(x))``."""
    x = jnp.asarray(x)
    return x * jnp.tanh(jax.nn.softplus(x))


def softmax(x: Array, axis: int | None = -1) -> Array:
    """Softmax: ``exp(x) / sum(exp(x), axis)``, over the last axis by default.

    ``axis=None`` normalises over all elements, as Keras does.
    """
    return jax.nn.softmax(x, axis=axis)


def log_softmax(x: Array, axis: int | None = -1) -> Array:
    """Log-softmax: ``x - log(sum(exp(x), axis))``, over the last axis by default."""
    return jax.nn.log_softmax(x, axis=axis)


def tanh_shrink(x: Array) -> Array:
    """Tanh shrink: ``tanh_shrink(x) = x - tanh(x)``."""
    x = jnp.asarray(x)
    return x - jnp.tanh(x)


def glu(x: Array, axis: int = -1) -> Array:
    """Gated linear unit: ``glu(x) = a * sigmoid(b)`` with ``a, b = split(x, 2, axis)``.

    The size of ``axis`` must be even; the output has half of it.
    """
    x = jnp.asarray(x)
    if x.shape[axis] % 2 != 0:
        raise ValueError(
            f"glu: the size of axis {axis} must be even to split it into two halves; "
            f"received x.shape={x.shape}."
        )
    a, b = jnp.split(x, 2, axis=axis)
    return a * jax.nn.sigmoid(b)


def squareplus(x: Array, b: float = 4) -> Array:
    """Squareplus: ``squareplus(x) = (x + sqrt(x^2 + b)) / 2`` (Keras' default ``b = 4``)."""
    x = jnp.asarray(x)
    return (x + jnp.sqrt(jnp.square(x) + _c(b, x))) / _c(2.0, x)


def soft_shrink(x: Array, threshold: float = 0.5) -> Array:
    """Soft shrink: ``x - t`` if ``x > t``, ``x + t`` if ``x < -t``, else 0 (``t = 0.5``)."""
    x = jnp.asarray(x)
    t = _c(threshold, x)
    return jnp.where(x > t, x - t, jnp.where(x < -t, x + t, _zero(x)))


def hard_shrink(x: Array, threshold: float = 0.5) -> Array:
    """Hard shrink: ``x`` if ``|x| > t`` else 0 (``t = 0.5``)."""
    x = jnp.asarray(x)
    return jnp.where(jnp.abs(x) > _c(threshold, x), x, _zero(x))


def sparse_plus(x: Array) -> Array:
    """SparsePlus: 0 for ``x <= -1``, ``(x + 1)^2 / 4`` for ``-1 < x < 1``, ``x`` for ``x >= 1``."""
    x = jnp.asarray(x)
    one = _c(1.0, x)
    return jnp.where(x <= -one, _zero(x), jnp.where(x < one, _c(0.25, x) * jnp.square(x + one), x))


def sparse_sigmoid(x: Array) -> Array:
    """Sparse sigmoid: 0 for ``x <= -1``, ``(x + 1) / 2`` for ``-1 < x < 1``, 1 for ``x >= 1``."""
    x = jnp.asarray(x)
    one = _c(1.0, x)
    return jnp.where(x <= -one, _zero(x), jnp.where(x >= one, one, _c(0.5, x) * (x + one)))


def sparsemax(x: Array, axis: int = -1) -> Array:
    """Keras 3.15's sparsemax, formula for formula: ``max(x - tau, 0)`` along ``axis``.

    With ``z`` sorted descending, ``c = cumsum(z)``, ``r = 1..n`` and the support
    ``S = {j : z_j - (c_j - 1) / r_j > 0}``, Keras computes
    ``tau = (sum_{j in S} c_j - 1) / |S|`` -- not the published
    ``tau = (c_{|S|} - 1) / |S|`` (Martins & Astudillo, 2016). The two agree when the
    support has one element; otherwise Keras' outputs need not sum to 1. jrnn follows
    Keras so that ported models give Keras' numbers.
    """
    x = jnp.asarray(x)
    moved = jnp.moveaxis(x, axis, -1)
    z = -jnp.sort(-moved, axis=-1)
    cumsum = jnp.cumsum(z, axis=-1)
    r = jnp.arange(1, moved.shape[-1] + 1, dtype=x.dtype)
    support = z - (cumsum - _c(1.0, x)) / r > _zero(x)
    k = jnp.sum(support, axis=-1, keepdims=True).astype(x.dtype)
    total = jnp.sum(jnp.where(support, cumsum, _zero(x)), axis=-1, keepdims=True)
    tau = (total - _c(1.0, x)) / k
    return jnp.moveaxis(jnp.maximum(moved - tau, _zero(x)), -1, axis)


def threshold(x: Array, threshold: float, default_value: float) -> Array:
    """Keras' threshold function: ``x`` if ``x > threshold`` else ``default_value``.

    Not a named activation (it needs both arguments); use
    ``functools.partial(threshold, threshold=..., default_value=...)``.
    """
    x = jnp.asarray(x)
    return jnp.where(x > _c(threshold, x), x, _c(default_value, x))


# --- Registry ----------------------------------------------------------------------------

_CANONICAL: tuple[Activation, ...] = (
    celu,
    elu,
    exponential,
    gelu,
    glu,
    hard_shrink,
    hard_sigmoid,
    hard_silu,
    hard_tanh,
    keras2_hard_sigmoid,
    leaky_relu,
    linear,
    log_sigmoid,
    log_softmax,
    mish,
    relu,
    relu6,
    selu,
    sigmoid,
    silu,
    soft_shrink,
    softmax,
    softplus,
    softsign,
    sparse_plus,
    sparse_sigmoid,
    sparsemax,
    squareplus,
    tanh,
    tanh_shrink,
)
_ALIASES: dict[str, Activation] = {"swish": silu, "hard_swish": hard_silu}
_ACTIVATIONS: dict[str, Activation] = {f.__name__: f for f in _CANONICAL} | _ALIASES
_NAME_OF: dict[int, str] = {id(f): f.__name__ for f in _CANONICAL}
# Modules whose serialized functions name Keras' built-ins (Keras 3 writes "builtins").
_KERAS_MODULES = ("builtins", "keras", "tf_keras", "tensorflow")


def names() -> tuple[str, ...]:
    """All names :func:`get` accepts (Keras 3's, aliases, ``keras2_hard_sigmoid``), sorted.

    Example:
      >>> from jrnn import activations
      >>> "tanh" in activations.names() and "swish" in activations.names()
      True
    """
    return tuple(sorted(_ACTIVATIONS))


def _by_name(name: str) -> Activation:
    if name in _ACTIVATIONS:
        return _ACTIVATIONS[name]
    if name == "threshold":
        raise ValueError(
            "Activation 'threshold' needs the arguments `threshold` and `default_value`, so "
            "it cannot be used by name (Keras accepts the name, but a layer using it fails "
            "when called). Use functools.partial(jrnn.activations.threshold, threshold=..., "
            "default_value=...)."
        )
    close = difflib.get_close_matches(name, _ACTIVATIONS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown activation {name!r}. Valid names: {list(names())}.{hint}")


def _from_config(config: dict[str, Any]) -> Activation:
    class_name = config.get("class_name")
    inner = config.get("config")
    if class_name == "function":
        if not isinstance(inner, str):
            raise ValueError(
                f"Activation config {config!r}: 'config' must name the function (a string) "
                f"when class_name is 'function'; received {inner!r}."
            )
        module = config.get("module")
        if module is not None and module.split(".")[0] not in _KERAS_MODULES:
            raise ValueError(
                f"Activation config {config!r} names {inner!r} from module {module!r}, a "
                "custom function; jrnn resolves only Keras' built-in activations by name. "
                "Pass the JAX function itself instead."
            )
        return _by_name(inner)
    if isinstance(class_name, str) and class_name in _ACTIVATIONS and inner in (None, {}):
        return _ACTIVATIONS[class_name]  # {"class_name": "tanh", "config": {}}
    raise ValueError(
        f"Cannot interpret activation config {config!r}: expected "
        "{'class_name': 'function', 'config': <name>, ...} as Keras writes it, or a bare "
        f"name. Activation layers (LeakyReLU, PReLU, ...) are not activations. Valid names: "
        f"{list(names())}."
    )


#: Callables equal to a named activation because it only calls them.
_SAME_AS: dict[Any, Activation] = {jnp.tanh: tanh, jax.nn.sigmoid: sigmoid}


def get(identifier: str | dict[str, Any] | Activation | None) -> Activation:
    """The activation named or described by ``identifier``.

    Args:
      identifier: one of
        * a name (case-sensitive, as Keras): ``"tanh"``, ``"swish"``, ...; see
          :func:`names`;
        * ``None``: :func:`linear`, as in Keras;
        * a Keras config: Keras 3 writes a bare name in ``config.json``; the dict form
          ``{"module": "keras.activations", "class_name": "function", "config": "tanh",
          "registered_name": "function"}`` (``module`` may be ``"builtins"``), or
          ``{"class_name": "tanh", "config": {}}``;
        * any callable ``f(x) -> y``, returned as is; ``jnp.tanh`` and
          ``jax.nn.sigmoid``, the very functions :func:`tanh` and :func:`sigmoid` call,
          give those (so a cell given them still runs the native kernels and serializes).

    Returns:
      A function ``f(x: Array) -> Array``.

    Raises:
      ValueError: unknown name (the message lists the valid ones), ``"threshold"``, or a
        config that names a custom function.
      TypeError: any other type.

    Example:
      >>> from jrnn import activations
      >>> activations.get("swish") is activations.silu
      True
      >>> activations.get({"class_name": "function", "config": "relu"}) is activations.relu
      True
    """
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        return _by_name(identifier)
    if isinstance(identifier, dict):
        return _from_config(identifier)
    if callable(identifier):
        try:
            return _SAME_AS.get(identifier, identifier)
        except TypeError:  # an unhashable callable (an eq=True dataclass instance, ...)
            return identifier
    raise TypeError(
        f"Cannot interpret activation {identifier!r} (type {type(identifier).__name__}); "
        "expected a name (str), None, a Keras config dict or a callable f(x)."
    )


def serialize(fn: Activation) -> str:
    """The name of a jrnn activation: the inverse of :func:`get` for named functions.

    Aliases give their canonical Keras name (``swish`` -> ``"silu"``, as Keras 3 writes
    it). ``keras2_hard_sigmoid`` gives ``"keras2_hard_sigmoid"``, which Keras cannot read.

    Raises:
      ValueError: ``fn`` is not one of this module's named activations.

    Example:
      >>> from jrnn import activations
      >>> activations.serialize(activations.hard_silu)
      'hard_silu'
    """
    name = _NAME_OF.get(id(fn))
    if name is None or _ACTIVATIONS[name] is not fn:
        raise ValueError(
            f"Cannot serialize activation {fn!r}: it is not one of jrnn.activations' named "
            f"functions ({list(names())})."
        )
    return name


__all__ = [
    "celu",
    "elu",
    "exponential",
    "gelu",
    "get",
    "glu",
    "hard_shrink",
    "hard_sigmoid",
    "hard_silu",
    "hard_tanh",
    "keras2_hard_sigmoid",
    "leaky_relu",
    "linear",
    "log_sigmoid",
    "log_softmax",
    "mish",
    "names",
    "relu",
    "relu6",
    "selu",
    "serialize",
    "sigmoid",
    "silu",
    "soft_shrink",
    "softmax",
    "softplus",
    "softsign",
    "sparse_plus",
    "sparse_sigmoid",
    "sparsemax",
    "squareplus",
    "tanh",
    "tanh_shrink",
    "threshold",
]
