"""Keras 3 initializers with Keras' distributions and fan computations, as JAX initializers.

Every initializer is an object callable as ``init(key, shape, dtype=jnp.float32)`` (the
JAX initializer protocol) with Keras' constructor arguments and ``get_config()``.
Distributions follow ``keras/src/initializers``: variance scaling divides ``scale`` by
``max(1, fan)`` with Keras' ``compute_fans`` (conv kernels: receptive field times the
last two dims); ``truncated_normal`` uses stddev ``sqrt(scale) / 0.8796...`` truncated
at two standard deviations; ``orthogonal`` is the QR of a normal matrix with the signs
of ``diag(r)``, transposed when rows < cols. Random numbers are JAX's, so values
differ from Keras' while distributions match. Random draws are computed in float32
(or float64) and cast, so bfloat16/float16 parameters work too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Initializer = Callable[..., Array]


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras' ``compute_fans``: ``(fan_in, fan_out)`` of a weight shape."""
    shape = tuple(shape)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    if len(shape) == 2:
        return int(shape[0]), int(shape[1])
    receptive = math.prod(shape[:-2])
    return int(shape[-2] * receptive), int(shape[-1] * receptive)


def _draw_dtype(dtype: Any) -> Any:
    dtype = jnp.dtype(dtype)
    return dtype if dtype in (jnp.dtype("float32"), jnp.dtype("float64")) else jnp.float32


class KerasInitializer:
    """Base class: ``init(key, shape, dtype)`` plus Keras' ``get_config``."""

    def __call__(self, key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Keras-style constructor arguments."""
        return {}

    def _key(self, key: Array | None) -> Array:
        if key is None:
            seed = getattr(self, "seed", None)
            if seed is None:
                raise ValueError(
                    f"{type(self).__name__}: pass a JAX `key` (or construct it with `seed=`)."
                )
            return jax.random.key(seed)
        return key

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


class Zeros(KerasInitializer):
    """All zeros."""

    def __call__(self, key, shape, dtype=jnp.float32):
        """Zeros of ``shape``."""
        return jnp.zeros(shape, dtype)


class Ones(KerasInitializer):
    """All ones."""

    def __call__(self, key, shape, dtype=jnp.float32):
        """Ones of ``shape``."""
        return jnp.ones(shape, dtype)


class Constant(KerasInitializer):
    """All ``value``."""

    def __init__(self, value: float = 0.0):
        self.value = value

    def __call__(self, key, shape, dtype=jnp.float32):
        """``value`` broadcast to ``shape``."""
        return jnp.full(shape, self.value, dtype)

    def get_config(self):
        """``{"value"}``."""
        return {"value": self.value}


class Identity(KerasInitializer):
    """``gain * eye`` for 2-D shapes."""

    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def __call__(self, key, shape, dtype=jnp.float32):
        """``gain * eye(*shape)``."""
        if len(shape) != 2:
            raise ValueError(f"Identity initializer needs a 2-D shape; received {tuple(shape)}.")
        return (self.gain * jnp.eye(*shape, dtype=_draw_dtype(dtype))).astype(dtype)

    def get_config(self):
        """``{"gain"}``."""
        return {"gain": self.gain}


class RandomNormal(KerasInitializer):
    """Normal(mean, stddev)."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, key, shape, dtype=jnp.float32):
        """Samples of ``shape``."""
        d = _draw_dtype(dtype)
        x = self.mean + self.stddev * jax.random.normal(self._key(key), shape, d)
        return x.astype(dtype)

    def get_config(self):
        """``{"mean", "stddev", "seed"}``."""
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(KerasInitializer):
    """Uniform(minval, maxval)."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, key, shape, dtype=jnp.float32):
        """Samples of ``shape``."""
        d = _draw_dtype(dtype)
        x = jax.random.uniform(self._key(key), shape, d, self.minval, self.maxval)
        return x.astype(dtype)

    def get_config(self):
        """``{"minval", "maxval", "seed"}``."""
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class TruncatedNormal(KerasInitializer):
    """Normal(mean, stddev) truncated at two standard deviations."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, key, shape, dtype=jnp.float32):
        """Samples of ``shape``."""
        d = _draw_dtype(dtype)
        x = jax.random.truncated_normal(self._key(key), -2.0, 2.0, shape, d)
        return (self.mean + self.stddev * x).astype(dtype)

    def get_config(self):
        """``{"mean", "stddev", "seed"}``."""
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class VarianceScaling(KerasInitializer):
    """Keras ``VarianceScaling``: variance ``scale / fan`` (fan_in, fan_out or fan_avg)."""

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
    ):
        if scale <= 0.0:
            raise ValueError(f"VarianceScaling: `scale` must be positive; received {scale}.")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(
                f"VarianceScaling: `mode` must be fan_in, fan_out or fan_avg; received {mode!r}."
            )
        distribution = distribution.lower()
        if distribution == "normal":
            distribution = "truncated_normal"
        if distribution not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise ValueError(
                "VarianceScaling: `distribution` must be uniform, truncated_normal or "
                f"untruncated_normal; received {distribution!r}."
            )
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, key, shape, dtype=jnp.float32):
        """Samples of ``shape``."""
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}
        scale = self.scale / max(1.0, fan[self.mode])
        d = _draw_dtype(dtype)
        key = self._key(key)
        if self.distribution == "truncated_normal":
            std = math.sqrt(scale) / 0.87962566103423978
            x = std * jax.random.truncated_normal(key, -2.0, 2.0, shape, d)
        elif self.distribution == "untruncated_normal":
            x = math.sqrt(scale) * jax.random.normal(key, shape, d)
        else:
            limit = math.sqrt(3.0 * scale)
            x = jax.random.uniform(key, shape, d, -limit, limit)
        return x.astype(dtype)

    def get_config(self):
        """``{"scale", "mode", "distribution", "seed"}``."""
        return {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
        }


def _variance_scaling_class(name: str, scale: float, mode: str, distribution: str) -> type:
    def __init__(self, seed: int | None = None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed)

    def get_config(self):
        return {"seed": self.seed}

    doc = (
        f"Keras ``{name}``: VarianceScaling(scale={scale}, mode={mode!r}, "
        f"distribution={distribution!r})."
    )
    return type(
        name,
        (VarianceScaling,),
        {"__init__": __init__, "get_config": get_config, "__doc__": doc, "__module__": __name__},
    )


GlorotUniform = _variance_scaling_class("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _variance_scaling_class("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeUniform = _variance_scaling_class("HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _variance_scaling_class("HeNormal", 2.0, "fan_in", "truncated_normal")
LecunUniform = _variance_scaling_class("LecunUniform", 1.0, "fan_in", "uniform")
LecunNormal = _variance_scaling_class("LecunNormal", 1.0, "fan_in", "truncated_normal")


class Orthogonal(KerasInitializer):
    """Keras ``Orthogonal(gain)``: orthogonal rows or columns of the flattened shape."""

    def __init__(self, gain: float = 1.0, seed: int | None = None):
        self.gain, self.seed = gain, seed

    def __call__(self, key, shape, dtype=jnp.float32):
        """An orthogonal matrix reshaped to ``shape`` (rank >= 2)."""
        if len(shape) < 2:
            raise ValueError(
                f"Orthogonal initializer needs a shape of rank >= 2; received {tuple(shape)}."
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]
        d = _draw_dtype(dtype)
        a = jax.random.normal(self._key(key), (max(rows, cols), min(rows, cols)), d)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.sign(jnp.diagonal(r))
        if rows < cols:
            q = q.T
        return (self.gain * q.reshape(shape)).astype(dtype)

    def get_config(self):
        """``{"gain", "seed"}``."""
        return {"gain": self.gain, "seed": self.seed}


_CLASSES = (
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
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_REGISTRY: dict[str, type] = {c.__name__: c for c in _CLASSES}
_REGISTRY.update({_snake(c.__name__): c for c in _CLASSES})
_REGISTRY.update(
    {
        "IdentityInitializer": Identity,
        "OrthogonalInitializer": Orthogonal,
        "normal": RandomNormal,
        "uniform": RandomUniform,
        "one": Ones,
        "zero": Zeros,
    }
)


def get(identifier: Any) -> Initializer:
    """An initializer from a Keras name, a Keras config dict, an instance or any callable
    ``init(key, shape, dtype)``."""
    if isinstance(identifier, str):
        if identifier not in _REGISTRY:
            raise ValueError(
                f"Unknown initializer {identifier!r}. Valid names: {sorted(_REGISTRY)}."
            )
        return _REGISTRY[identifier]()
    if isinstance(identifier, dict):
        class_name = identifier.get("class_name")
        config = dict(identifier.get("config") or {})
        if class_name not in _REGISTRY:
            raise ValueError(
                f"Unknown initializer class {class_name!r} in config {identifier!r}. Valid: "
                f"{sorted(_REGISTRY)}."
            )
        cls = _REGISTRY[class_name]
        config.pop("dtype", None)  # Keras 2 configs may carry it; it does not change values
        for key in ("input_axes", "output_axes"):
            if config.get(key) is not None:
                raise ValueError(
                    f"Initializer {class_name}: `{key}` is not supported by jrnn; received "
                    f"{config[key]!r}."
                )
            config.pop(key, None)
        import inspect

        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = set(config) - accepted
        if unknown:
            raise ValueError(
                f"Initializer {class_name} config has unknown keys {sorted(unknown)}; "
                f"accepted: {sorted(accepted)}."
            )
        return cls(**config)
    if callable(identifier):
        return identifier
    raise TypeError(
        f"Cannot interpret initializer {identifier!r} (type {type(identifier).__name__}); "
        "expected a name, a Keras config dict or a callable init(key, shape, dtype)."
    )


def serialize(initializer: KerasInitializer) -> dict[str, Any]:
    """Keras 3 config dict of a jrnn initializer."""
    if not isinstance(initializer, KerasInitializer):
        raise ValueError(f"Cannot serialize {initializer!r}: not a jrnn Keras initializer.")
    return {
        "module": "keras.initializers",
        "class_name": type(initializer).__name__,
        "config": initializer.get_config(),
        "registered_name": None,
    }


def unit_forget_bias(bias_initializer: Any, units: int) -> Initializer:
    """Keras' LSTM ``unit_forget_bias``: ``concat([init((u,)), ones((u,)), init((2u,))])``.

    Returns an initializer for shape ``(4 * units,)``.
    """
    base = get(bias_initializer)

    def init(key, shape, dtype=jnp.float32):
        if tuple(shape) != (4 * units,):
            raise ValueError(
                f"unit_forget_bias: shape must be ({4 * units},); received {tuple(shape)}."
            )
        k1, k2 = jax.random.split(key)
        return jnp.concatenate(
            [base(k1, (units,), dtype), jnp.ones((units,), dtype), base(k2, (2 * units,), dtype)]
        )

    return init


__all__ = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
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
    "serialize",
    "unit_forget_bias",
]
