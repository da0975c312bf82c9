"""Keras 3 weight constraints: projections applied to a weight after each update.

``MaxNorm(max_value=2, axis=0)``, ``MinMaxNorm(min_value=0.0, max_value=1.0, rate=1.0,
axis=0)``, ``NonNeg()``, ``UnitNorm(axis=0)`` with Keras' formulas (norms over ``axis``,
``epsilon = 1e-7`` in the denominator). Names as Keras (``"max_norm"``, ``"non_neg"``,
``"unit_norm"``, ``"min_max_norm"`` and the class names). :func:`jrnn.apply_constraints`
applies them to a model; :func:`jrnn.training.constraints` is the optax form.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jrnn import _keras_objects

EPSILON = 1e-7  # keras.backend.epsilon()


def _norms(w: jax.Array, axis: Any) -> jax.Array:
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=axis, keepdims=True))


class Constraint:
    """Base class: ``constraint(weight) -> projected weight``."""

    def __call__(self, w: jax.Array) -> jax.Array:
        """The projected ``w``."""
        return w

    def get_config(self) -> dict[str, Any]:
        """Keras-style constructor arguments."""
        return {}

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(sorted(self.get_config().items()))))


class MaxNorm(Constraint):
    """Rescale slices along ``axis`` whose L2 norm exceeds ``max_value``."""

    def __init__(self, max_value: float = 2, axis: Any = 0):
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w):
        """The projected ``w``."""
        norms = _norms(w, self.axis)
        desired = jnp.clip(norms, 0, self.max_value)
        return w * (desired / (EPSILON + norms))

    def get_config(self):
        """``{"max_value", "axis"}``."""
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """``max(w, 0)``."""

    def __call__(self, w):
        """The projected ``w``."""
        return jnp.maximum(w, 0)


class UnitNorm(Constraint):
    """Normalise slices along ``axis`` to unit L2 norm."""

    def __init__(self, axis: Any = 0):
        self.axis = axis

    def __call__(self, w):
        """The projected ``w``."""
        return w / (EPSILON + _norms(w, self.axis))

    def get_config(self):
        """``{"axis"}``."""
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Move slice norms towards ``[min_value, max_value]`` at ``rate`` (1 = strictly)."""

    def __init__(
        self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Any = 0
    ):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w):
        """The projected ``w``."""
        norms = _norms(w, self.axis)
        desired = (
            self.rate * jnp.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        )
        return w * (desired / (EPSILON + norms))

    def get_config(self):
        """``{"min_value", "max_value", "rate", "axis"}``."""
        return {
            "min_value": self.min_value,
            "max_value": self.max_value,
            "rate": self.rate,
            "axis": self.axis,
        }


_REGISTRY: dict[str, type] = {
    "Constraint": Constraint,
    "MaxNorm": MaxNorm,
    "MinMaxNorm": MinMaxNorm,
    "NonNeg": NonNeg,
    "UnitNorm": UnitNorm,
    "max_norm": MaxNorm,
    "min_max_norm": MinMaxNorm,
    "non_neg": NonNeg,
    "unit_norm": UnitNorm,
}


def get(identifier: Any) -> Any:
    """A constraint from None, a Keras name, a Keras config dict, an instance or a callable."""
    return _keras_objects.resolve(identifier, _REGISTRY, "constraint")


def serialize(constraint: Any) -> Any:
    """Keras 3 config dict of a jrnn constraint."""
    return _keras_objects.serialize(constraint, "constraint")


__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "get", "serialize"]
