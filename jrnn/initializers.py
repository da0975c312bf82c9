"""Keras 3 initializers with Keras' distributions and fan computations, as JAX initializers.

Every initializer is an object with Keras' constructor arguments and ``get_config()``,
callable with the JAX initializer protocol ``init(key, shape, dtype=jnp.float32)``.
The algorithms are Keras 3.15's (``keras/src/initializers``):

* ``VarianceScaling(scale, mode, distribution)``: ``s = scale / max(1, n)`` with ``n``
  the ``fan_in``, ``fan_out`` or their mean from :func:`compute_fans` (for rank > 2
  kernels, the receptive field ``prod(shape[:-2])`` times ``shape[-2]`` / ``shape[-1]``);
  ``uniform``: ``U(-sqrt(3 s), sqrt(3 s))``; ``untruncated_normal``: ``N(0, s)``;
  ``truncated_normal`` (alias ``normal``): ``N(0, sigma^2)`` cut at ``2 sigma`` with
  ``sigma = sqrt(s) / 0.87962566103423978`` (the std of a unit normal truncated at
  +-2), so the samples' std is ``sqrt(s)``. Glorot, He and LeCun are fixed settings.
* ``Orthogonal(gain)``: a normal matrix of shape ``(max(r, c), min(r, c))`` with
  ``r = prod(shape[:-1])``, ``c = shape[-1]``; ``q, R = qr(a)``; ``q *= sign(diag(R))``;
  transposed if ``r < c``; times ``gain``; reshaped to ``shape``.
* ``RandomNormal``, ``RandomUniform``, ``TruncatedNormal`` (cut at 2 stddev), ``Zeros``,
  ``Ones``, ``Constant(value)``, ``Identity(gain)`` (2-D only).

Randomness: the ``key`` argument always drives it. ``seed=`` (as in Keras) is used only
when ``key`` is ``None``, as ``jax.random.key(seed)``, so a seeded initializer called
without a key gives the same values every time (as Keras' integer seeds do). Values
differ from Keras' (different random number generators); distributions are the same.
Random draws are made in float32 (float64 if asked for) and cast, so bfloat16/float16
parameters work.

Example:
  >>> import jax
  >>> from jrnn import initializers
  >>> init = initializers.get("glorot_uniform")
  >>> w = init(jax.random.key(0), (3, 5))
  >>> w.shape, w.dtype
  ((3, 5), dtype('float32'))
  >>> bool(abs(w).max() <= (6 / (3 + 5)) ** 0.5)
  True
  >>> initializers.serialize(init)
  {'module': 'keras.initializers', 'class_name': 'GlorotUniform',
   'config': {'seed': None, 'input_axes': None, 'output_axes': None},
   'registered_name': None}
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
import re
from collections.abc import Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Initializer(Protocol):
    """What :func:`get` returns: any JAX initializer ``init(key, shape, dtype) -> Array``."""

    def __call__(self, key: Array | None, shape: Sequence[int], dtype: Any = ...) -> Array:
        """Values of ``shape`` and ``dtype`` drawn with the PRNG ``key``."""
        ...


# Truncating N(0, 1) at +-2 leaves a standard deviation of this (Keras' constant).
TRUNCATED_NORMAL_STD = 0.87962566103423978


def compute_fans(
    shape: Sequence[int],
    input_axes: Sequence[int] | None = None,
    output_axes: Sequence[int] | None = None,
) -> tuple[int, int]:
    """Keras' ``compute_fans``: ``(fan_in, fan_out)`` of a weight shape.

    Rank 0: ``(1, 1)``; rank 1: ``(n, n)``; rank 2 ``(in, out)``: ``(in, out)``; rank > 2
    (convolution kernels ``(*spatial, in, out)``): ``(in * rf, out * rf)`` with the
    receptive field ``rf = prod(spatial)``. When both ``input_axes`` and
    ``output_axes`` are given, the fans are the products of those axes' sizes.

    Example:
      >>> from jrnn.initializers import compute_fans
      >>> compute_fans((3, 3, 16, 32))
      (144, 288)
    """
    shape = tuple(int(d) for d in shape)
    if input_axes is not None and output_axes is not None:
        return (
            int(math.prod(shape[a] for a in input_axes)),
            int(math.prod(shape[a] for a in output_axes)),
        )
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _shape(shape: Sequence[int], who: str) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        out = tuple(int(d) for d in shape)
    except TypeError:
        raise TypeError(f"{who}: `shape` must be a sequence of ints; received {shape!r}.") from None
    if any(d < 0 for d in out):
        raise ValueError(f"{who}: `shape` must have non-negative sizes; received {out}.")
    return out


def _float_dtypes(dtype: Any, who: str) -> tuple[Any, Any]:
    """``(dtype, draw dtype)``: random draws happen in float32 unless float64 is asked for."""
    dtype = jnp.dtype(jnp.float32 if dtype is None else dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{who}: random initializers need a floating dtype; received dtype={dtype}."
        )
    draw = dtype if dtype in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)) else jnp.float32
    return dtype, jnp.dtype(draw)


def _seed_value(seed: Any, who: str) -> int | None:
    """The integer behind Keras' ``seed``: ``None``, an int, or a SeedGenerator config."""
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return int(seed)
    if isinstance(seed, dict) and seed.get("class_name") == "SeedGenerator":
        return _seed_value((seed.get("config") or {}).get("seed"), who)
    raise ValueError(
        f"{who}: `seed` must be None, an int or a Keras SeedGenerator config; "
        f"received seed={seed!r}."
    )


@functools.partial(jax.jit, static_argnames=("shape", "dtype", "distribution"))
def _sample(
    key: Array,
    low: Array,
    high: Array,
    *,
    shape: tuple[int, ...],
    dtype: Any,
    distribution: str,
) -> Array:
    """One compiled program per (shape, dtype, distribution), whatever the parameters.

    ``normal``: ``low + high * N(0, 1)``; ``truncated_normal``: ``low + high * z`` with
    ``z`` a unit normal truncated to ``[-2, 2]``; ``uniform``: ``U[low, high)``.
    """
    if distribution == "uniform":
        return jax.random.uniform(key, shape, dtype, low, high)
    if distribution == "normal":
        return low + high * jax.random.normal(key, shape, dtype)
    return low + high * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _orthogonal(key: Array, gain: Array, *, shape: tuple[int, ...], dtype: Any) -> Array:
    """Keras' orthogonal matrix algorithm (see :class:`Orthogonal`), compiled per shape."""
    rows, cols = math.prod(shape[:-1]), shape[-1]
    a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), dtype)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diagonal(r))
    if rows < cols:
        q = q.T
    return gain * q.reshape(shape)


class KerasInitializer:
    """Base class: a Keras initializer callable as ``init(key, shape, dtype=jnp.float32)``.

    Subclasses implement ``__call__`` and ``get_config`` (Keras' keys); equality
    compares class and config.
    """

    def __call__(self, key: Array | None, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        """Values of ``shape`` and ``dtype``; ``key`` is a JAX PRNG key."""
        raise NotImplementedError(f"{type(self).__name__} does not implement __call__.")

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, with Keras' keys (Keras' ``get_config``)."""
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KerasInitializer:
        """An instance from a ``get_config()`` dict (Keras' ``from_config``)."""
        return _construct(cls, cls.__name__, config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _RandomInitializer(KerasInitializer):
    """Shared seed handling: ``seed`` is used only when ``key`` is None."""

    def __init__(self, seed: Any = None):
        self._seed = _seed_value(seed, type(self).__name__)
        self.seed = seed

    def _key(self, key: Array | None) -> Array:
        if key is not None:
            return key
        if self._seed is None:
            raise ValueError(
                f"{type(self).__name__}: pass a JAX PRNG key, e.g. "
                "init(jax.random.key(0), shape), or construct the initializer with "
                "`seed=` to draw from jax.random.key(seed) when the key is None."
            )
        return jax.random.key(self._seed)

    def _draw(
        self,
        key: Array | None,
        shape: Sequence[int],
        dtype: Any,
        distribution: str,
        low: float,
        high: float,
    ) -> Array:
        who = type(self).__name__
        shape = _shape(shape, who)
        dtype, d = _float_dtypes(dtype, who)
        low, high = jnp.asarray(low, d), jnp.asarray(high, d)
        x = _sample(self._key(key), low, high, shape=shape, dtype=d, distribution=distribution)
        return x.astype(dtype)


# --- Constant initializers --------------------------------------------------------------


class Zeros(KerasInitializer):
    """All zeros (any dtype).

    Example:
      >>> import jax.numpy as jnp
      >>> from jrnn.initializers import Zeros
      >>> Zeros()(None, (2,), jnp.int32)
      Array([0, 0], dtype=int32)
    """

    def __call__(self, key, shape, dtype=jnp.float32):
        """``zeros(shape, dtype)``; ``key`` is ignored (may be None)."""
        return jnp.zeros(_shape(shape, "Zeros"), dtype)


class Ones(KerasInitializer):
    """All ones (any dtype)."""

    def __call__(self, key, shape, dtype=jnp.float32):
        """``ones(shape, dtype)``; ``key`` is ignored (may be None)."""
        return jnp.ones(_shape(shape, "Ones"), dtype)


def _to_value(value: Any) -> Any:
    """Decode Keras' ``{"class_name": "__numpy__", ...}`` serialisation of array values."""
    if isinstance(value, dict) and value.get("class_name") in ("__numpy__", "__tensor__"):
        inner = value.get("config") or {}
        return np.asarray(inner.get("value"), dtype=inner.get("dtype"))
    return value


class Constant(KerasInitializer):
    """Every element ``value``: ``value * ones(shape)`` (a scalar, or an array that
    broadcasts to the shape), cast to the dtype.

    Args:
      value: a Python scalar (Keras' documented case) or an array-like.
    """

    def __init__(self, value: Any = 0.0):
        self.value = _to_value(value)

    def __call__(self, key, shape, dtype=jnp.float32):
        """``value`` broadcast to ``shape``; ``key`` is ignored (may be None)."""
        shape = _shape(shape, "Constant")
        value = jnp.asarray(self.value, dtype)
        try:
            return jnp.broadcast_to(value, shape)
        except ValueError:
            raise ValueError(
                f"Constant: value of shape {value.shape} does not broadcast to shape {shape}."
            ) from None

    def get_config(self):
        """``{"value"}``; arrays as Keras writes them (``{"class_name": "__numpy__", ...}``)."""
        value = self.value
        if isinstance(value, (np.ndarray, jax.Array, np.generic)):
            array = np.asarray(value)
            if array.ndim == 0:
                value = array.item()
            else:
                value = {
                    "class_name": "__numpy__",
                    "config": {"value": array.tolist(), "dtype": array.dtype.name},
                }
        return {"value": value}


class Identity(KerasInitializer):
    """``gain * eye(rows, cols)`` for 2-D shapes (Keras ``Identity``/``IdentityInitializer``).

    Args:
      gain: multiplicative factor.
    """

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def __call__(self, key, shape, dtype=jnp.float32):
        """``gain * eye(*shape)``; ``key`` is ignored (may be None).

        Raises:
          ValueError: ``shape`` is not 2-D.
        """
        shape = _shape(shape, "Identity")
        if len(shape) != 2:
            raise ValueError(
                f"Identity initializer can only be used for 2-D shapes; received "
                f"shape={shape} of rank {len(shape)}."
            )
        return jnp.asarray(self.gain, dtype) * jnp.eye(*shape, dtype=dtype)

    def get_config(self):
        """``{"gain"}`` (Keras 3.15 writes ``{}``, dropping the gain; see the note below).

        Keras 3.15's ``Identity.get_config`` returns ``{}``, so Keras itself loses a
        non-default ``gain`` when saving; jrnn keeps it (Keras reads ``{"gain": g}``).
        """
        return {"gain": self.gain}


# --- Random initializers ----------------------------------------------------------------


class RandomNormal(_RandomInitializer):
    """Normal ``N(mean, stddev^2)``.

    Args:
      mean: mean of the values.
      stddev: standard deviation of the values.
      seed: int, ``None``, or a Keras SeedGenerator config; used only when ``key`` is None.
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: Any = None):
        self.mean, self.stddev = mean, stddev
        super().__init__(seed)

    def __call__(self, key, shape, dtype=jnp.float32):
        """``mean + stddev * normal(key, shape)``."""
        return self._draw(key, shape, dtype, "normal", self.mean, self.stddev)

    def get_config(self):
        """``{"seed", "mean", "stddev"}`` (Keras' keys)."""
        return {"seed": self.seed, "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(_RandomInitializer):
    """Normal ``N(mean, stddev^2)`` cut at two standard deviations from the mean.

    Args:
      mean: mean of the (untruncated) normal.
      stddev: standard deviation of the untruncated normal; the samples' std is
        ``0.8796 * stddev``.
      seed: int, ``None``, or a Keras SeedGenerator config; used only when ``key`` is None.
    """

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: Any = None):
        self.mean, self.stddev = mean, stddev
        super().__init__(seed)

    def __call__(self, key, shape, dtype=jnp.float32):
        """``mean + stddev * truncated_normal(key, -2, 2, shape)``."""
        return self._draw(key, shape, dtype, "truncated_normal", self.mean, self.stddev)

    def get_config(self):
        """``{"seed", "mean", "stddev"}`` (Keras' keys)."""
        return {"seed": self.seed, "mean": self.mean, "stddev": self.stddev}


class RandomUniform(_RandomInitializer):
    """Uniform ``U[minval, maxval)``.

    Args:
      minval: lower bound (inclusive).
      maxval: upper bound (exclusive).
      seed: int, ``None``, or a Keras SeedGenerator config; used only when ``key`` is None.
    """

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: Any = None):
        self.minval, self.maxval = minval, maxval
        super().__init__(seed)

    def __call__(self, key, shape, dtype=jnp.float32):
        """``uniform(key, shape, minval, maxval)``."""
        return self._draw(key, shape, dtype, "uniform", self.minval, self.maxval)

    def get_config(self):
        """``{"seed", "minval", "maxval"}`` (Keras' keys)."""
        return {"seed": self.seed, "minval": self.minval, "maxval": self.maxval}


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("uniform", "truncated_normal", "untruncated_normal")


class VarianceScaling(_RandomInitializer):
    """Keras ``VarianceScaling``: samples with variance ``scale / n``.

    ``n`` is ``max(1, fan)`` for ``mode`` ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``
    (their mean), from :func:`compute_fans`. ``distribution``:

    * ``"truncated_normal"`` (``"normal"`` is an alias): ``N(0, sigma^2)`` cut at
      ``2 sigma``, ``sigma = sqrt(scale / n) / 0.87962566103423978``;
    * ``"untruncated_normal"``: ``N(0, scale / n)``;
    * ``"uniform"``: ``U(-limit, limit)``, ``limit = sqrt(3 scale / n)``.

    Args:
      scale: positive scaling factor.
      mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
      distribution: as above (case-insensitive, as Keras).
      seed: int, ``None``, or a Keras SeedGenerator config; used only when ``key`` is None.
      input_axes, output_axes: optional axes whose sizes multiply to the fans (Keras
        3.15); used only when both are given.

    Raises:
      ValueError: non-positive ``scale``, unknown ``mode`` or ``distribution``.

    Example:
      >>> import jax
      >>> from jrnn.initializers import VarianceScaling
      >>> init = VarianceScaling(2.0, "fan_in", "uniform")
      >>> w = init(jax.random.key(0), (200, 3))
      >>> bool(abs(w).max() <= (3 * 2.0 / 200) ** 0.5)
      True
    """

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: Any = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ):
        who = type(self).__name__
        if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or scale <= 0.0:
            raise ValueError(f"{who}: `scale` must be a positive float; received scale={scale!r}.")
        if mode not in _MODES:
            raise ValueError(f"{who}: `mode` must be one of {list(_MODES)}; received {mode!r}.")
        if not isinstance(distribution, str):
            raise ValueError(
                f"{who}: `distribution` must be one of {list(_DISTRIBUTIONS)} (or 'normal'); "
                f"received {distribution!r}."
            )
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(
                f"{who}: `distribution` must be one of {list(_DISTRIBUTIONS)} (or 'normal'); "
                f"received {distribution!r}."
            )
        self.scale, self.mode, self.distribution = scale, mode, distribution
        self.input_axes, self.output_axes = input_axes, output_axes
        super().__init__(seed)

    def variance(self, shape: Sequence[int]) -> float:
        """``scale / max(1, fan)``: the variance of the samples for ``shape``."""
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
        return self.scale / max(1.0, fan[self.mode])

    def __call__(self, key, shape, dtype=jnp.float32):
        """Samples of ``shape`` with variance :meth:`variance` ``(shape)``."""
        variance = self.variance(_shape(shape, type(self).__name__))
        if self.distribution == "truncated_normal":
            stddev = math.sqrt(variance) / TRUNCATED_NORMAL_STD
            return self._draw(key, shape, dtype, "truncated_normal", 0.0, stddev)
        if self.distribution == "untruncated_normal":
            return self._draw(key, shape, dtype, "normal", 0.0, math.sqrt(variance))
        limit = math.sqrt(3.0 * variance)
        return self._draw(key, shape, dtype, "uniform", -limit, limit)

    def get_config(self):
        """``{"seed", "scale", "mode", "distribution", "input_axes", "output_axes"}``."""
        return {
            "seed": self.seed,
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


class _FixedVarianceScaling(VarianceScaling):
    """VarianceScaling with Keras' fixed (scale, mode, distribution)."""

    _SETTINGS: tuple[float, str, str] = (1.0, "fan_in", "truncated_normal")

    def __init__(
        self,
        seed: Any = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ):
        super().__init__(*self._SETTINGS, seed, input_axes, output_axes)

    def get_config(self):
        """``{"seed", "input_axes", "output_axes"}`` (Keras' keys)."""
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_FixedVarianceScaling):
    """Glorot (Xavier) uniform: ``U(-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))``.

    ``VarianceScaling(scale=1.0, mode="fan_avg", distribution="uniform")``.
    """

    _SETTINGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    """Glorot (Xavier) normal: truncated normal with std ``sqrt(2 / (fan_in + fan_out))``.

    ``VarianceScaling(scale=1.0, mode="fan_avg", distribution="truncated_normal")``.
    """

    _SETTINGS = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    """He uniform: ``U(-limit, limit)``, ``limit = sqrt(6 / fan_in)``.

    ``VarianceScaling(scale=2.0, mode="fan_in", distribution="uniform")``.
    """

    _SETTINGS = (2.0, "fan_in", "uniform")


class HeNormal(_FixedVarianceScaling):
    """He normal: truncated normal with std ``sqrt(2 / fan_in)``.

    ``VarianceScaling(scale=2.0, mode="fan_in", distribution="truncated_normal")``.
    """

    _SETTINGS = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    """LeCun uniform: ``U(-limit, limit)``, ``limit = sqrt(3 / fan_in)``.

    ``VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")``.
    """

    _SETTINGS = (1.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    """LeCun normal: truncated normal with std ``sqrt(1 / fan_in)``.

    ``VarianceScaling(scale=1.0, mode="fan_in", distribution="truncated_normal")``.
    """

    _SETTINGS = (1.0, "fan_in", "truncated_normal")


class Orthogonal(_RandomInitializer):
    """Keras ``Orthogonal(gain)`` (alias ``OrthogonalInitializer``).

    The shape is flattened to ``(r, c) = (prod(shape[:-1]), shape[-1])``; a normal
    matrix ``a`` of shape ``(max(r, c), min(r, c))`` gives ``q, R = qr(a)``,
    ``q * sign(diag(R))``, transposed when ``r < c``, times ``gain``, reshaped to
    ``shape``. The flattened result has orthonormal columns (``r >= c``) or rows
    (``r < c``), scaled by ``gain``.

    Args:
      gain: multiplicative factor.
      seed: int, ``None``, or a Keras SeedGenerator config; used only when ``key`` is None.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jrnn.initializers import Orthogonal
      >>> q = Orthogonal(gain=2.0)(jax.random.key(0), (3, 5))
      >>> bool(jnp.allclose(q @ q.T, 4.0 * jnp.eye(3), atol=1e-5))
      True
    """

    def __init__(self, gain: float = 1.0, seed: Any = None):
        self.gain = gain
        super().__init__(seed)

    def __call__(self, key, shape, dtype=jnp.float32):
        """An orthogonal matrix (times ``gain``) reshaped to ``shape`` (rank >= 2).

        Raises:
          ValueError: ``shape`` has rank < 2.
        """
        shape = _shape(shape, "Orthogonal")
        if len(shape) < 2:
            raise ValueError(
                f"Orthogonal initializer needs a shape of rank >= 2; received shape={shape} "
                f"of rank {len(shape)}."
            )
        dtype, d = _float_dtypes(dtype, "Orthogonal")
        gain = jnp.asarray(self.gain, d)
        return _orthogonal(self._key(key), gain, shape=shape, dtype=d).astype(dtype)

    def get_config(self):
        """``{"seed", "gain"}`` (Keras' keys)."""
        return {"seed": self.seed, "gain": self.gain}


# --- Registry, get, serialize -----------------------------------------------------------

_CLASSES: tuple[type[KerasInitializer], ...] = (
    Constant,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    Identity,
    LecunNormal,
    LecunUniform,
    Ones,
    Orthogonal,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    Zeros,
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_REGISTRY: dict[str, type[KerasInitializer]] = {c.__name__: c for c in _CLASSES}
_REGISTRY |= {_snake(c.__name__): c for c in _CLASSES}
_REGISTRY |= {  # Keras' aliases
    "IdentityInitializer": Identity,
    "OrthogonalInitializer": Orthogonal,
    "normal": RandomNormal,
    "one": Ones,
    "uniform": RandomUniform,
    "zero": Zeros,
}
_UNSUPPORTED = {
    "STFT": "it builds Fourier-transform kernels for keras.layers.STFTSpectrogram only",
    "STFTInitializer": "it builds Fourier-transform kernels for keras.layers.STFTSpectrogram only",
    "stft": "it builds Fourier-transform kernels for keras.layers.STFTSpectrogram only",
    "Initializer": "it is Keras' abstract base class",
    "initializer": "it is Keras' abstract base class",
}
# Config keys that Keras 1/2 or TF 1 wrote and that do not change the values drawn.
_IGNORED_KEYS = {"dtype"}
_IGNORED_KEYS_BY_CLASS = {"Constant": {"verify_shape"}}
_KERAS_MODULES = ("keras", "tf_keras", "tensorflow")
_TOP_LEVEL_KEYS = {"module", "class_name", "config", "registered_name", "shared_object_id"}


def names() -> tuple[str, ...]:
    """All names :func:`get` accepts (Keras' class names, snake_case names, aliases), sorted.

    Example:
      >>> from jrnn import initializers
      >>> {"glorot_uniform", "GlorotUniform", "OrthogonalInitializer"} <= set(
      ...     initializers.names())
      True
    """
    return tuple(sorted(_REGISTRY))


def _lookup(name: str) -> type[KerasInitializer]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _UNSUPPORTED:
        raise ValueError(f"Initializer {name!r} is not supported by jrnn: {_UNSUPPORTED[name]}.")
    close = difflib.get_close_matches(name, _REGISTRY, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown initializer {name!r}. Valid names: {list(names())}.{hint}")


def _construct(cls: type[KerasInitializer], class_name: str, config: Any) -> KerasInitializer:
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ValueError(
            f"Initializer {class_name}: 'config' must be a dict of constructor arguments; "
            f"received {config!r}."
        )
    ignored = _IGNORED_KEYS | _IGNORED_KEYS_BY_CLASS.get(cls.__name__, set())
    config = {k: v for k, v in config.items() if k not in ignored}
    parameters = inspect.signature(cls.__init__).parameters.values()
    accepted = {
        p.name
        for p in parameters
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    unknown = sorted(set(config) - accepted)
    if unknown:
        received = ", ".join(f"{k}={config[k]!r}" for k in unknown)
        raise ValueError(
            f"Initializer config for {class_name} has unknown keys {unknown} ({received}); "
            f"accepted keys: {sorted(accepted)} (and {sorted(ignored)}, which are ignored). "
            "jrnn does not guess what they would change."
        )
    return cls(**config)


def _from_config(identifier: dict[str, Any]) -> KerasInitializer:
    extra = sorted(set(identifier) - _TOP_LEVEL_KEYS)
    class_name = identifier.get("class_name")
    if extra or not isinstance(class_name, str):
        raise ValueError(
            f"Cannot interpret initializer config {identifier!r}: expected Keras' "
            "{'module': 'keras.initializers', 'class_name': ..., 'config': {...}, "
            "'registered_name': None} or {'class_name': ..., 'config': {...}}"
            + (f"; unexpected keys {extra}." if extra else "; 'class_name' is missing.")
        )
    module = identifier.get("module")
    registered = identifier.get("registered_name")
    if (module is not None and str(module).split(".")[0] not in _KERAS_MODULES) or (
        registered not in (None, class_name)
    ):
        raise ValueError(
            f"Initializer config {identifier!r} names a custom initializer (module "
            f"{module!r}, registered_name {registered!r}); jrnn resolves only Keras' "
            "built-in initializers. Pass a callable init(key, shape, dtype) instead."
        )
    return _construct(_lookup(class_name), class_name, identifier.get("config"))


def _is_keras_object(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] in _KERAS_MODULES and hasattr(obj, "get_config")


def get(identifier: Any) -> Initializer:
    """The initializer named or described by ``identifier``.

    Args:
      identifier: one of
        * a name, as Keras spells it (case-sensitive): a class name
          (``"GlorotUniform"``), its snake_case name (``"glorot_uniform"``) or a Keras
          alias (``"uniform"``, ``"normal"``, ``"one"``, ``"zero"``,
          ``"IdentityInitializer"``, ``"OrthogonalInitializer"``); see :func:`names`;
        * a Keras config dict: Keras 3's ``{"module": "keras.initializers",
          "class_name": "GlorotUniform", "config": {"seed": None, ...},
          "registered_name": None}`` or Keras 2's ``{"class_name": ..., "config": ...}``.
          ``"dtype"`` in the config (Keras 1/2, TF 1) is ignored; any other unknown key
          raises;
        * a jrnn initializer instance (returned as is) or class (instantiated);
        * a Keras/tf.keras initializer object, converted through its ``get_config()``;
        * any other callable ``init(key, shape, dtype)``, returned as is.

    Returns:
      A callable ``init(key, shape, dtype=jnp.float32) -> Array``.

    Raises:
      ValueError: unknown name (the message lists the valid ones), unsupported Keras
        initializer (STFT), a custom initializer's config, or unknown config keys.
      TypeError: any other type (including ``None``).

    Example:
      >>> from jrnn import initializers
      >>> initializers.get("uniform")
      RandomUniform(seed=None, minval=-0.05, maxval=0.05)
      >>> initializers.get({"class_name": "Orthogonal", "config": {"gain": 2.0, "seed": 1}})
      Orthogonal(seed=1, gain=2.0)
    """
    if isinstance(identifier, KerasInitializer):
        return identifier
    if isinstance(identifier, str):
        return _lookup(identifier)()
    if isinstance(identifier, dict):
        return _from_config(identifier)
    if inspect.isclass(identifier):
        if issubclass(identifier, KerasInitializer):
            return identifier()
        if identifier.__module__.split(".")[0] in _KERAS_MODULES:
            return _lookup(identifier.__name__)()
    elif _is_keras_object(identifier):
        config = dict(identifier.get_config())
        if type(identifier).__name__ == "Identity" and hasattr(identifier, "gain"):
            config.setdefault("gain", identifier.gain)  # Keras 3.15 drops it from its config
        return _from_config({"class_name": type(identifier).__name__, "config": config})
    if callable(identifier):
        return identifier
    raise TypeError(
        f"Cannot interpret initializer {identifier!r} (type {type(identifier).__name__}); "
        "expected a name (str), a Keras config dict, an initializer or a callable "
        "init(key, shape, dtype)."
    )


def serialize(initializer: KerasInitializer) -> dict[str, Any]:
    """Keras 3's config dict of a jrnn initializer (what ``keras.initializers.serialize``
    writes), readable by :func:`get` and by Keras.

    Raises:
      ValueError: ``initializer`` is not a jrnn Keras initializer (plain callables and
        :func:`unit_forget_bias` have no Keras config).

    Example:
      >>> from jrnn import initializers
      >>> initializers.serialize(initializers.Constant(0.5))
      {'module': 'keras.initializers', 'class_name': 'Constant', 'config': {'value': 0.5},
       'registered_name': None}
    """
    if not isinstance(initializer, KerasInitializer):
        hint = (
            " unit_forget_bias is a layer argument in Keras (LSTM(unit_forget_bias=True)), "
            "not an initializer: serialize its bias initializer."
            if isinstance(initializer, _UnitForgetBias)
            else ""
        )
        raise ValueError(
            f"Cannot serialize {initializer!r}: it is not a jrnn Keras initializer.{hint}"
        )
    return {
        "module": "keras.initializers",
        "class_name": type(initializer).__name__,
        "config": initializer.get_config(),
        "registered_name": None,
    }


class _UnitForgetBias:
    """Keras' LSTM bias with ``unit_forget_bias=True``; see :func:`unit_forget_bias`."""

    def __init__(self, bias_initializer: Any, units: int):
        if not isinstance(units, numbers.Integral) or isinstance(units, bool) or units < 1:
            raise ValueError(
                f"unit_forget_bias: `units` must be a positive int; received {units!r}."
            )
        self.bias_initializer = get(bias_initializer)
        self.units = int(units)

    def __call__(self, key: Array | None, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        """``concat([init(k1, (u,)), ones((u,)), init(k2, (2u,))])`` for shape ``(4u,)``."""
        u = self.units
        shape = _shape(shape, "unit_forget_bias")
        if not shape or shape[-1] != 4 * u:
            expected = (*shape[:-1], 4 * u)
            raise ValueError(
                f"unit_forget_bias(units={u}): shape must be {expected}; received {shape}. "
                f"The last axis holds the 4 gate blocks i, f, c, o of {u} units each."
            )
        lead = shape[:-1]
        k1, k2 = (None, None) if key is None else jax.random.split(key)
        parts = (
            self.bias_initializer(k1, (*lead, u), dtype),
            jnp.ones((*lead, u), dtype),
            self.bias_initializer(k2, (*lead, 2 * u), dtype),
        )
        return jnp.concatenate([jnp.asarray(p, dtype) for p in parts], axis=-1)

    def __repr__(self) -> str:
        return f"unit_forget_bias({self.bias_initializer!r}, units={self.units})"


def unit_forget_bias(bias_initializer: Any, units: int) -> Initializer:
    """Keras' LSTM bias initialiser with ``unit_forget_bias=True``.

    For shape ``(4 * units,)`` it returns, exactly as Keras' ``LSTM.build``::

        concat([bias_initializer((units,)), ones((units,)), bias_initializer((2 * units,))])

    i.e. the gate blocks ``i, f, c, o`` with ones in the forget block. Keras calls
    ``bias_initializer`` twice (shapes ``(units,)`` and ``(2 * units,)``, so fans are
    those of the blocks); here the two calls get the two halves of
    ``jax.random.split(key)`` (with ``key=None`` both get ``None``, so a seeded
    initializer repeats its values, as Keras' seeded initializers do). Shapes
    ``(..., 4 * units)`` split the last axis the same way.

    Args:
      bias_initializer: anything :func:`get` accepts.
      units: the LSTM's units (the size of each gate block).

    Returns:
      An initializer ``init(key, shape, dtype)``.

    Raises:
      ValueError: when called with a shape whose last axis is not ``4 * units``.

    Example:
      >>> import jax
      >>> from jrnn import initializers
      >>> initializers.unit_forget_bias("zeros", 2)(jax.random.key(0), (8,))
      Array([0., 0., 1., 1., 0., 0., 0., 0.], dtype=float32)
    """
    return _UnitForgetBias(bias_initializer, units)


__all__ = [
    "TRUNCATED_NORMAL_STD",
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "Initializer",
    "KerasInitializer",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
    "compute_fans",
    "get",
    "names",
    "serialize",
    "unit_forget_bias",
]
