"""Shared validators: one place for jrnn's argument and shape error messages.

Every message names the layer (or cell), the argument, what was expected and
what was received, so that errors read the same everywhere.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import jax
import numpy as np

T = TypeVar("T")


def where(owner: Any) -> str:
    """Return the prefix used by error messages: ``"LSTM(units=5)"``-like."""
    if isinstance(owner, str):
        return owner
    name = type(owner).__name__
    label = getattr(owner, "name", None)
    return f"{name} {label!r}" if label else name


def positive_int(value: Any, argument: str, owner: Any) -> int:
    """Check that ``value`` is an integer >= 1 and return it as ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"{where(owner)}: `{argument}` must be a positive integer; received {value!r}."
        )
    return int(value)


def int_tuple(value: Any, rank: int, argument: str, owner: Any) -> tuple[int, ...]:
    """Keras' ``standardize_tuple``: a positive int, or ``rank`` of them, as a tuple."""

    def positive(v: Any) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) and v >= 1

    if isinstance(value, numbers.Integral):
        values: tuple = (value,) * rank
    elif isinstance(value, (tuple, list)):
        values = tuple(value)
    else:
        values = ()
    if len(values) != rank or not all(positive(v) for v in values):
        raise ValueError(
            f"{where(owner)}: `{argument}` must be a positive int or a tuple of {rank} "
            f"positive ints; received {value!r}."
        )
    return tuple(int(v) for v in values)


def lowercase_one_of(value: Any, argument: str, allowed: Iterable[str], owner: Any) -> str:
    """Keras' ``padding`` / ``data_format`` rule: a string, any case, one of ``allowed``."""
    return one_of(value.lower() if isinstance(value, str) else value, argument, allowed, owner)


def data_format(value: Any, owner: Any) -> str:
    """Keras' ``standardize_data_format``: ``None`` is ``"channels_last"``; any case."""
    if value is None:
        return "channels_last"
    return lowercase_one_of(value, "data_format", ("channels_last", "channels_first"), owner)


def name(value: Any, owner: Any) -> str | None:
    """A layer's ``name``: None or a string (``/`` is allowed here, as tf.keras allows it;
    ``importers.save_keras`` refuses it, as Keras 3 does)."""
    if value is not None and not isinstance(value, str):
        raise ValueError(
            f"{type(owner).__name__}: `name` must be None or a string; received {value!r}."
        )
    return value


def seed(value: Any, owner: Any) -> int | None:
    """Keras' ``seed``: None or an int."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{where(owner)}: `seed` must be None or an int; received {value!r}.")
    return int(value)


def rate(value: Any, argument: str, owner: Any) -> float:
    """Check a dropout rate: a real number in [0, 1). Keras clips silently; jrnn refuses."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"{where(owner)}: `{argument}` must be a float in [0, 1); received {value!r}."
        )
    return float(value)


def one_of(value: Any, argument: str, allowed: Iterable[Any], owner: Any) -> Any:
    """Check that ``value`` is one of ``allowed`` and return it."""
    allowed = tuple(allowed)
    if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
        raise ValueError(
            f"{where(owner)}: `{argument}` must be one of {allowed!r}; received {value!r}."
        )
    return value


def boolean(value: Any, argument: str, owner: Any) -> bool:
    """Check that ``value`` is a Python (or NumPy) bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where(owner)}: `{argument}` must be a bool; received {value!r}.")
    return bool(value)


def bool_or_positive_int(value: Any, argument: str, owner: Any, meaning: str) -> bool | int:
    """``unroll``/``remat``: a bool, or a positive int (``meaning`` says what it counts)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and value >= 1:
        return int(value)
    raise ValueError(
        f"{where(owner)}: `{argument}` must be a bool or a positive int ({meaning}); "
        f"received {value!r}."
    )


def implementation(value: Any, owner: Any) -> int:
    """Keras' ``implementation`` argument: 1 (per-gate matmuls) or 2 (fused)."""
    if value not in (1, 2) or isinstance(value, bool):
        raise ValueError(f"{where(owner)}: `implementation` must be 1 or 2; received {value!r}.")
    return int(value)


def resolved(get: Callable[[Any], T], value: Any, argument: str, owner: Any) -> T:
    """``get(value)``: an activation, initializer, regularizer or constraint from its name
    or config, whose error (an unknown name, a bad config) names the owner and argument."""
    try:
        return get(value)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{where(owner)}: `{argument}`: {error}") from None


def rngs(value: Any, owner: Any) -> Any:
    """Check that ``rngs`` is an ``nnx.Rngs`` (the parameters' random numbers)."""
    from flax import nnx

    if not isinstance(value, nnx.Rngs):
        raise TypeError(
            f"{where(owner)}: `rngs` must be an nnx.Rngs (it draws the initial weights and "
            f"dropout masks), e.g. rngs=nnx.Rngs(0); received {value!r}."
        )
    return value


def is_real(dtype: Any) -> bool:
    """Whether ``dtype`` holds real numbers: a float (bfloat16 included), int or bool."""
    import jax.numpy as jnp

    try:
        dtype = jnp.dtype(dtype)
    except TypeError:
        return False
    return bool(
        jnp.issubdtype(dtype, jnp.floating)
        or jnp.issubdtype(dtype, jnp.integer)
        or dtype == jnp.bool_
    )


def real_dtype(dtype: Any, argument: str, owner: Any) -> None:
    """Refuse complex, string and object arrays: casting them to the compute dtype would
    drop the imaginary part (JAX only warns) or fail inside JAX."""
    if dtype is not None and not is_real(dtype):
        raise ValueError(
            f"{where(owner)}: `{argument}` must hold real numbers (float, int or bool); "
            f"received dtype {dtype}."
        )


def arrays(owner: Any, **arguments: Any) -> None:
    """Each argument given (not None) is an array, a number or a (nested) list or tuple of
    them, of real numbers: a string, a None inside, or a complex array is refused here,
    naming the argument, before JAX would fail on it or drop an imaginary part."""
    import jax

    for argument, value in arguments.items():
        if value is None:
            continue
        for leaf in jax.tree_util.tree_leaves(value, is_leaf=lambda v: v is None):
            plain = hasattr(leaf, "dtype") or isinstance(leaf, numbers.Number)
            if leaf is None or isinstance(leaf, (str, bytes)) or not plain:
                raise ValueError(
                    f"{where(owner)}: `{argument}` must be an array (or a list of arrays); "
                    f"received {type(leaf).__name__} {leaf!r:.60}."
                )
            try:
                dtype = np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.result_type(leaf)
            except TypeError:
                continue  # not a NumPy dtype (a PRNG key, a foreign array): JAX decides
            real_dtype(dtype, argument, owner)


def is_key(value: Any) -> bool:
    """A JAX PRNG key: a typed key, or a legacy ``uint32`` one of shape ``(..., 2)``."""
    import jax
    import jax.numpy as jnp

    if not isinstance(value, (jax.Array, np.ndarray)):  # an nnx.Rngs answers every attribute
        return False  # (`.dtype` is its stream of that name, or its default stream)
    dtype = value.dtype
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return dtype == jnp.uint32 and tuple(np.shape(value))[-1:] == (2,)


def call_key(rngs: Any, owner: Any) -> Any:
    """The dropout key of a call-time ``rngs``: an ``nnx.Rngs`` (its ``dropout`` stream),
    an ``nnx.RngStream`` or a JAX key; None stays None (the layer's own stream)."""
    from flax import nnx

    check_rngs(rngs, owner)
    if rngs is None or is_key(rngs):
        return rngs
    if isinstance(rngs, nnx.Rngs):
        return rngs["dropout"]()
    return rngs()  # an nnx.RngStream


def check_rngs(rngs: Any, owner: Any) -> None:
    """Refuse a call-time ``rngs`` that is not None, an ``nnx.Rngs``, an ``nnx.RngStream``
    or a JAX key, naming it."""
    from flax import nnx

    if not (rngs is None or isinstance(rngs, (nnx.Rngs, nnx.RngStream)) or is_key(rngs)):
        raise TypeError(
            f"{where(owner)}: `rngs` must be an nnx.Rngs, an nnx.RngStream or a JAX PRNG key "
            f"(jax.random.key(0)), or None; received {rngs!r:.60}."
        )


def shape_str(shape: Iterable[Any]) -> str:
    """Format a shape with ``None`` for unknown dimensions: ``(batch, 7, 3)``."""
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def frozen(module: Any) -> bool:
    """Whether ``module`` is frozen, Keras' ``trainable = False``: any value Keras' setter
    reads as False (``False``, ``numpy.False_``, ``0``, a concrete 0-d false array)."""
    value = getattr(module, "trainable", True)
    if isinstance(value, (bool, np.bool_, numbers.Integral)):
        return not value
    if isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0:
        if isinstance(value, jax.core.Tracer):
            raise ValueError(
                f"{where(module)}: `trainable` must be a Python bool; received a traced array."
            )
        return not bool(value)
    return False
