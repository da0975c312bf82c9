"""Keras-style ``get_config`` / ``from_config`` for jrnn modules.

Every jrnn cell and layer records the arguments it was built with (minus ``rngs``), so
that it can be rebuilt: Bidirectional builds its backward twin from the forward
layer's config, importers and the checkpoint writer serialise models with it.
Nested jrnn modules (a layer's ``cell``, a stack's ``cells``, a wrapper's ``layer``) are
stored as ``{"class_name": ..., "config": ...}`` dicts, as Keras serialises them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flax import nnx

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Make ``cls`` rebuildable from ``{"class_name": cls.__name__, ...}``."""
    _REGISTRY[cls.__name__] = cls
    return cls


def lookup(class_name: str) -> type:
    """The registered jrnn class named ``class_name``."""
    try:
        return _REGISTRY[class_name]
    except KeyError:
        raise ValueError(
            f"Unknown jrnn class {class_name!r}; registered classes: {sorted(_REGISTRY)}."
        ) from None


def serialize(value: Any) -> Any:
    """Replace jrnn modules (recursively, in lists/tuples) by ``{"class_name", "config"}``."""
    if isinstance(value, nnx.Module):
        config = value.get_config() if "_config" in vars(value) else None
        return {"class_name": type(value).__name__, "config": config}
    if isinstance(value, (list, tuple)):
        return [serialize(v) for v in value]
    return value


def deserialize(value: Any, rngs: nnx.Rngs) -> Any:
    """Inverse of :func:`serialize`: rebuild nested modules with fresh parameters from ``rngs``."""
    if isinstance(value, dict) and set(value) == {"class_name", "config"}:
        if value["config"] is None:
            raise ValueError(
                f"{value['class_name']} recorded no config, so it cannot be rebuilt; record one "
                "with `self._config = jrnn._config.capture(locals())` in its __init__."
            )
        return lookup(value["class_name"]).from_config(value["config"], rngs=rngs)
    if isinstance(value, list):
        return [deserialize(v, rngs) for v in value]
    return value


def _freeze(value: Any) -> Any:
    """Hashable and comparable with ``==`` (module graphdefs are cache keys): dicts, lists
    and NumPy arrays frozen, at every depth (tuples as lists); a NumPy scalar as its Python
    number."""
    if isinstance(value, dict):
        return FrozenConfig((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return FrozenArray(value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, FrozenConfig):
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, FrozenArray):
        return value.array()
    return value


class FrozenArray:
    """A NumPy array in a config (a ``Constant`` initializer's value), compared by value."""

    __slots__ = ("key",)

    def __init__(self, array: np.ndarray) -> None:
        object.__setattr__(self, "key", (array.dtype.str, array.shape, array.tobytes()))

    def array(self) -> np.ndarray:
        dtype, shape, data = self.key
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, FrozenArray) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return repr(self.array())


class FrozenConfig:
    """An immutable, hashable config (so module graphdefs stay hashable for ``jax.jit``).

    Deliberately not a tuple subclass: pytree libraries would flatten it.
    """

    __slots__ = ("items",)

    def __init__(self, items: Any = ()) -> None:
        object.__setattr__(self, "items", tuple(items))

    def __iter__(self) -> Any:
        return iter(self.items)

    def __hash__(self) -> int:
        return hash(self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FrozenConfig) and self.items == other.items

    def __repr__(self) -> str:
        return f"FrozenConfig({dict(self.items)!r})"


def capture(arguments: dict[str, Any]) -> FrozenConfig:
    """A config from a constructor's ``locals()``: drops self/rngs, serialises modules."""
    return _freeze(
        {k: serialize(v) for k, v in arguments.items() if k not in ("self", "__class__", "rngs")}
    )


class Configurable:
    """Mixin: ``get_config()`` returns the recorded arguments; ``from_config`` rebuilds."""

    _config: FrozenConfig

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (nested jrnn modules as class_name/config dicts)."""
        if "_config" not in vars(self):
            raise ValueError(
                f"{type(self).__name__} recorded no config; record one with "
                "`self._config = jrnn._config.capture(locals())` first thing in its __init__."
            )
        return _thaw(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any], *, rngs: nnx.Rngs) -> Any:
        """Build a new module (fresh parameters from ``rngs``) from :meth:`get_config`'s dict."""
        arguments = {k: deserialize(v, rngs) for k, v in config.items()}
        return cls(**arguments, rngs=rngs) if _takes_rngs(cls) else cls(**arguments)

    def rebuild(self, *, rngs: nnx.Rngs, **overrides: Any) -> Any:
        """A new module of the same class and config with ``overrides`` and fresh parameters."""
        return type(self).from_config({**self.get_config(), **overrides}, rngs=rngs)


def _takes_rngs(cls: type) -> bool:
    import inspect

    return "rngs" in inspect.signature(cls.__init__).parameters
