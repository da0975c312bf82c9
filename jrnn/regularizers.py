"""Keras 3 weight regularizers as pure JAX functions of a weight.

``L1(l1=0.01)``: ``l1 * sum(|w|)``; ``L2(l2=0.01)``: ``l2 * sum(w**2)``;
``L1L2(l1=0.0, l2=0.0)``: both; ``OrthogonalRegularizer(factor=0.01, mode="rows")``:
``factor * 0.5 * sum(|P - diag(P)|) / (n (n - 1) / 2)`` with ``P`` the Gram matrix of
the L2-normalised rows (or columns). Names as Keras 3 (``"l1"``, ``"l2"``, ``"l1l2"``,
``"orthogonal_regularizer"`` and the class names; not tf.keras' ``"l1_l2"``, which meant
``L1L2(0.01, 0.01)`` there and is refused, as Keras 3 refuses it); ``get`` also takes
Keras config dicts and callables. :func:`jrnn.regularization_loss` sums them over a model.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jrnn import _keras_objects


def _factor(value: Any, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or math.isinf(value)
        or math.isnan(value)
        or value < 0
    ):
        raise ValueError(f"Regularizer `{name}` must be a non-negative float; received {value!r}.")
    return float(value)


class Regularizer:
    """Base class: ``regularizer(weight) -> scalar penalty`` (in the weight's dtype)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        """The penalty of ``x``."""
        return jnp.zeros((), jnp.asarray(x).dtype)

    def get_config(self) -> dict[str, Any]:
        """Keras-style constructor arguments."""
        return {}

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


def _sum_abs(x: jax.Array) -> jax.Array:
    """``sum(|x|)`` whose gradient is ``sign(x)``, 0 at 0 as TensorFlow's (JAX's ``abs``
    has gradient 1 at 0: an L1 penalty on zero-initialised biases moved them at once)."""
    return jnp.sum(x * jax.lax.stop_gradient(jnp.sign(x)))


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x**2)`` (Keras defaults l1=l2=0.0 for the class)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, x):
        """The penalty of ``x``."""
        x = jnp.asarray(x)
        total = jnp.zeros((), x.dtype)
        if self.l1:
            total = total + jnp.asarray(self.l1, x.dtype) * _sum_abs(x)
        if self.l2:
            total = total + jnp.asarray(self.l2, x.dtype) * jnp.sum(jnp.square(x))
        return total

    def get_config(self):
        """``{"l1": ..., "l2": ...}``."""
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    """``l1 * sum(|x|)``, default 0.01."""

    def __init__(self, l1: float = 0.01):
        self.l1 = _factor(0.01 if l1 is None else l1, "l1")

    def __call__(self, x):
        """The penalty of ``x``."""
        x = jnp.asarray(x)
        return jnp.asarray(self.l1, x.dtype) * _sum_abs(x)

    def get_config(self):
        """``{"l1": ...}``."""
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(x**2)``, default 0.01."""

    def __init__(self, l2: float = 0.01):
        self.l2 = _factor(0.01 if l2 is None else l2, "l2")

    def __call__(self, x):
        """The penalty of ``x``."""
        x = jnp.asarray(x)
        return jnp.asarray(self.l2, x.dtype) * jnp.sum(jnp.square(x))

    def get_config(self):
        """``{"l2": ...}``."""
        return {"l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """Mean absolute off-diagonal cosine similarity of rows (or columns), times factor/2."""

    def __init__(self, factor: float = 0.01, mode: str = "rows"):
        self.factor = _factor(factor, "factor")
        if mode not in ("rows", "columns"):
            raise ValueError(
                f"OrthogonalRegularizer: `mode` must be 'rows' or 'columns'; received {mode!r}."
            )
        self.mode = mode

    def __call__(self, x):
        """The penalty of the rank-2 ``x``."""
        x = jnp.asarray(x)
        if x.ndim != 2:
            raise ValueError(
                f"OrthogonalRegularizer needs a rank-2 weight; received shape {x.shape}."
            )
        axis = 1 if self.mode == "rows" else 0
        inv = jnp.minimum(
            jax.lax.rsqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True)),
            jnp.asarray(1e7, x.dtype),  # Keras: 1 / epsilon()
        )
        n = x * inv
        product = n @ n.T if self.mode == "rows" else n.T @ n
        size = product.shape[0]
        off = product * (1.0 - jnp.eye(size, dtype=x.dtype))
        pairs = size * (size - 1.0) / 2.0
        return jnp.asarray(self.factor, x.dtype) * 0.5 * jnp.sum(jnp.abs(off)) / pairs

    def get_config(self):
        """``{"factor": ..., "mode": ...}``."""
        return {"factor": self.factor, "mode": self.mode}


_REGISTRY: dict[str, type] = {
    "Regularizer": Regularizer,
    "L1": L1,
    "L2": L2,
    "L1L2": L1L2,
    "OrthogonalRegularizer": OrthogonalRegularizer,
    "l1": L1,
    "l2": L2,
    "l1l2": L1L2,
    "orthogonal_regularizer": OrthogonalRegularizer,
}


def get(identifier: Any) -> Any:
    """A regularizer from None, a Keras name, a Keras config dict, an instance or a callable."""
    return _keras_objects.resolve(identifier, _REGISTRY, "regularizer")


def serialize(regularizer: Any) -> Any:
    """Keras 3 config dict of a jrnn regularizer."""
    return _keras_objects.serialize(regularizer, "regularizer")


__all__ = ["L1", "L1L2", "L2", "OrthogonalRegularizer", "Regularizer", "get", "serialize"]
