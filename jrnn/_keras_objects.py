"""Resolve Keras object identifiers (name, config dict, instance, callable) against a registry.

Shared by :mod:`jrnn.regularizers` and :mod:`jrnn.constraints`, which accept exactly
what Keras' ``get`` functions accept: ``None``, a registered name (class name or its
snake_case alias), a Keras config dict (Keras 3 ``{"module", "class_name", "config",
"registered_name"}`` or Keras 2 ``{"class_name", "config"}``), an instance, or any
callable.
"""

from __future__ import annotations

import inspect
from typing import Any


def resolve(identifier: Any, registry: dict[str, type], kind: str) -> Any:
    """Return an instance (or the callable) named by ``identifier``; None stays None."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier not in registry:
            raise ValueError(f"Unknown {kind} {identifier!r}. Valid names: {sorted(registry)}.")
        return registry[identifier]()
    if isinstance(identifier, dict):
        class_name = identifier.get("class_name")
        config = identifier.get("config") or {}
        if class_name not in registry or not isinstance(config, dict):
            raise ValueError(
                f"Cannot interpret {kind} config {identifier!r}: expected "
                f"{{'class_name': one of {sorted(set(registry))}, 'config': {{...}}}}."
            )
        cls = registry[class_name]
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = set(config) - accepted
        if unknown:
            raise ValueError(
                f"{kind} {class_name} config has unknown keys {sorted(unknown)}; accepted: "
                f"{sorted(accepted)}."
            )
        return cls(**config)
    if inspect.isclass(identifier):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(
        f"Cannot interpret {kind} {identifier!r} (type {type(identifier).__name__}); expected "
        "None, a name, a Keras config dict or a callable."
    )


def serialize(obj: Any, kind: str) -> Any:
    """Keras 3 config dict of a registered object (None stays None)."""
    if obj is None:
        return None
    if not hasattr(obj, "get_config"):
        raise ValueError(f"Cannot serialize the {kind} {obj!r}: it has no get_config().")
    return {
        "module": f"keras.{kind}s",
        "class_name": type(obj).__name__,
        "config": obj.get_config(),
        "registered_name": None,
    }
