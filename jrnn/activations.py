"""Keras 3 activations by name, as pure JAX functions (plus Keras 2's hard sigmoid).

Every name ``keras.activations.get`` accepts in Keras 3.15 resolves to a JAX function
with Keras' default arguments (``leaky_relu`` slope 0.2, exact-erf ``gelu``,
``squareplus`` b=4, shrink thresholds 0.5, softmax-family on the last axis).
``hard_sigmoid`` is Keras 3's ``relu6(x + 3) / 6``; Keras 1/2 files mean
``clip(0.2 x + 0.5, 0, 1)``, available as ``"keras2_hard_sigmoid"`` (importers choose it
from the file's Keras version). Functions preserve the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def _c(value: float, x: Array) -> Array:
    return jnp.asarray(value, x.dtype)


def linear(x: Array) -> Array:
    """``x``."""
    return x


def tanh(x: Array) -> Array:
    """``tanh(x)``."""
    return jnp.tanh(x)


def sigmoid(x: Array) -> Array:
    """``1 / (1 + exp(-x))``."""
    return jax.nn.sigmoid(x)


def hard_sigmoid(x: Array) -> Array:
    """Keras 3: ``relu6(x + 3) / 6`` (0 below -3, 1 above 3)."""
    return jax.nn.relu6(x + _c(3.0, x)) / _c(6.0, x)


def keras2_hard_sigmoid(x: Array) -> Array:
    """Keras 1/2 and tf.keras: ``clip(0.2 x + 0.5, 0, 1)``."""
    return jnp.clip(_c(0.2, x) * x + _c(0.5, x), _c(0.0, x), _c(1.0, x))


def relu(x: Array) -> Array:
    """``max(x, 0)``."""
    return jax.nn.relu(x)


def relu6(x: Array) -> Array:
    """``min(max(x, 0), 6)``."""
    return jax.nn.relu6(x)


def leaky_relu(x: Array) -> Array:
    """``x if x > 0 else 0.2 x`` (Keras' default negative slope)."""
    return jax.nn.leaky_relu(x, negative_slope=0.2)


def elu(x: Array) -> Array:
    """``x if x > 0 else exp(x) - 1``."""
    return jax.nn.elu(x)


def selu(x: Array) -> Array:
    """Scaled ELU (``scale = 1.0507...``, ``alpha = 1.6732...``)."""
    return jax.nn.selu(x)


def celu(x: Array) -> Array:
    """``max(x, 0) + min(0, exp(x) - 1)`` (alpha 1)."""
    return jax.nn.celu(x)


def softplus(x: Array) -> Array:
    """``log(1 + exp(x))``."""
    return jax.nn.softplus(x)


def softsign(x: Array) -> Array:
    """``x / (1 + |x|)``."""
    return jax.nn.soft_sign(x)


def silu(x: Array) -> Array:
    """``x * sigmoid(x)`` (also named ``swish``)."""
    return jax.nn.silu(x)


def gelu(x: Array) -> Array:
    """``x * Phi(x)`` with the exact erf form (Keras' ``approximate=False`` default)."""
    return jax.nn.gelu(x, approximate=False)


def exponential(x: Array) -> Array:
    """``exp(x)``."""
    return jnp.exp(x)


def hard_silu(x: Array) -> Array:
    """``x * hard_sigmoid(x)`` (also named ``hard_swish``)."""
    return x * hard_sigmoid(x)


def hard_tanh(x: Array) -> Array:
    """``clip(x, -1, 1)``."""
    return jnp.clip(x, _c(-1.0, x), _c(1.0, x))


def log_sigmoid(x: Array) -> Array:
    """``log(sigmoid(x))``."""
    return jax.nn.log_sigmoid(x)


def mish(x: Array) -> Array:
    """``x * tanh(softplus(x))``."""
    return x * jnp.tanh(jax.nn.softplus(x))


def softmax(x: Array) -> Array:
    """Softmax over the last axis."""
    return jax.nn.softmax(x, axis=-1)


def log_softmax(x: Array) -> Array:
    """Log-softmax over the last axis."""
    return jax.nn.log_softmax(x, axis=-1)


def tanh_shrink(x: Array) -> Array:
    """``x - tanh(x)``."""
    return x - jnp.tanh(x)


def glu(x: Array) -> Array:
    """Gated linear unit on the last axis: ``a * sigmoid(b)`` with ``a, b = split(x, 2)``."""
    a, b = jnp.split(x, 2, axis=-1)
    return a * jax.nn.sigmoid(b)


def squareplus(x: Array) -> Array:
    """``(x + sqrt(x^2 + 4)) / 2``."""
    return (x + jnp.sqrt(jnp.square(x) + _c(4.0, x))) / _c(2.0, x)


def soft_shrink(x: Array) -> Array:
    """``x - 0.5 if x > 0.5, x + 0.5 if x < -0.5, else 0``."""
    t = _c(0.5, x)
    return jnp.where(x > t, x - t, jnp.where(x < -t, x + t, jnp.zeros_like(x)))


def hard_shrink(x: Array) -> Array:
    """``x if |x| > 0.5 else 0``."""
    return jnp.where(jnp.abs(x) > _c(0.5, x), x, jnp.zeros_like(x))


def sparse_plus(x: Array) -> Array:
    """``0 if x <= -1, x if x >= 1, (x + 1)^2 / 4`` between."""
    return jax.nn.sparse_plus(x)


def sparse_sigmoid(x: Array) -> Array:
    """``0 if x <= -1, 1 if x >= 1, (x + 1) / 2`` between."""
    return jax.nn.sparse_sigmoid(x)


def sparsemax(x: Array) -> Array:
    """Keras 3.15's sparsemax over the last axis, formula for formula.

    Keras computes the threshold as ``(sum of the cumulative sums over the support - 1) / k``
    rather than the published ``(cumsum[k] - 1) / k`` (Martins & Astudillo, 2016), so its
    outputs need not sum to 1 when the support has more than one element; jrnn follows
    Keras so that ported models give Keras' numbers.
    """
    z = -jnp.sort(-x, axis=-1)
    cumsum = jnp.cumsum(z, axis=-1)
    r = jnp.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    support = z - (cumsum - 1) / r > 0
    k = jnp.sum(support, axis=-1, keepdims=True).astype(x.dtype)
    tau = (
        jnp.sum(jnp.where(support, cumsum, jnp.zeros_like(cumsum)), axis=-1, keepdims=True) - 1
    ) / k
    return jnp.maximum(x - tau, jnp.zeros_like(x))


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    f.__name__: f
    for f in (
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
}
_ACTIVATIONS["swish"] = silu
_ACTIVATIONS["hard_swish"] = hard_silu


def names() -> tuple[str, ...]:
    """All valid activation names, sorted."""
    return tuple(sorted(_ACTIVATIONS))


def get(identifier: Any) -> Callable[[Array], Array]:
    """An activation from a name, ``None`` (linear), a Keras config, or a callable.

    Keras configs: a name string (Keras 3 writes ``"tanh"``) or a dict such as
    ``{"module": "keras.activations", "class_name": "function", "config": "tanh",
    "registered_name": "function"}`` / ``{"class_name": "tanh", ...}``.
    """
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        if identifier not in _ACTIVATIONS:
            raise ValueError(f"Unknown activation {identifier!r}. Valid names: {list(names())}.")
        return _ACTIVATIONS[identifier]
    if isinstance(identifier, dict):
        config = identifier.get("config")
        if isinstance(config, str):
            return get(config)
        class_name = identifier.get("class_name")
        if isinstance(class_name, str) and class_name in _ACTIVATIONS:
            return _ACTIVATIONS[class_name]
        raise ValueError(
            f"Cannot interpret activation config {identifier!r}: expected a name in "
            f"'config' or 'class_name'. Valid names: {list(names())}."
        )
    if callable(identifier):
        return identifier
    raise TypeError(
        f"Cannot interpret activation {identifier!r} (type {type(identifier).__name__}); "
        "expected a name, None, a Keras config dict or a callable."
    )


def serialize(fn: Callable[[Array], Array]) -> str:
    """The name of a jrnn activation (inverse of :func:`get` for named functions)."""
    for name, candidate in _ACTIVATIONS.items():
        if candidate is fn and name not in ("swish", "hard_swish"):
            return name
    raise ValueError(f"Cannot serialize activation {fn!r}: it is not a named jrnn activation.")


__all__ = [
    *sorted(n for n in _ACTIVATIONS if n not in ("swish", "hard_swish")),
    "get",
    "names",
    "serialize",
]
