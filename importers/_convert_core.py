"""Converters for the non-recurrent Keras layers around RNNs (filled in by the core-layers work).

``CORE_CONVERTERS[class_name](config, arrays, in_shape) -> nnx.Module`` with the contract of
:mod:`importers.convert`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

CORE_CONVERTERS: dict[str, Callable[[dict, list, Any], nnx.Module]] = {}
