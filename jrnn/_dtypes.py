"""Keras dtype policies: parameter (variable) dtype versus compute dtype.

Keras layers take ``dtype=`` as a dtype name or a policy name. ``"mixed_float16"``
and ``"mixed_bfloat16"`` keep variables in float32 and compute in the 16-bit type;
a plain dtype uses it for both. jrnn layers take the same ``dtype=`` and, like
Flax, an explicit ``param_dtype=`` that overrides the variable dtype.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

_MIXED = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


class DTypePolicy(NamedTuple):
    """A resolved policy: the dtype parameters are stored in, and the dtype maths runs in."""

    param_dtype: Any
    compute_dtype: Any

    @property
    def name(self) -> str:
        """Keras' name for this policy (``"float32"``, ``"mixed_bfloat16"``, ...)."""
        p, c = jnp.dtype(self.param_dtype).name, jnp.dtype(self.compute_dtype).name
        if p == c:
            return p
        if p == "float32" and c in ("float16", "bfloat16"):
            return f"mixed_{c}"
        return f"{p}->{c}"


def _float_dtype(value: Any, argument: str, owner: str) -> Any:
    try:
        dt = jnp.dtype(value)
    except TypeError as error:
        raise ValueError(
            f"{owner}: `{argument}` must be a floating dtype or a Keras dtype policy name "
            f"(float32, float16, bfloat16, float64, mixed_float16, mixed_bfloat16); "
            f"received {value!r}."
        ) from error
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(
            f"{owner}: `{argument}` must be a floating dtype; received {value!r} ({dt.name})."
        )
    return dt


def resolve_policy(dtype: Any = None, param_dtype: Any = None, owner: str = "layer") -> DTypePolicy:
    """Resolve Keras' ``dtype`` (a dtype, a policy name, or a Keras ``DTypePolicy`` config dict)
    plus an optional ``param_dtype`` override into a :class:`DTypePolicy`.

    ``None`` means float32 for both, as Keras' default ``"float32"`` policy.
    """
    if isinstance(dtype, DTypePolicy):
        policy = dtype
    else:
        if isinstance(
            dtype, dict
        ):  # Keras 3 config: {"class_name": "DTypePolicy", "config": {"name": ...}}
            config = dtype.get("config")
            if not isinstance(config, dict) or "name" not in config:
                raise ValueError(
                    f"{owner}: `dtype` config dict must look like "
                    f"{{'class_name': 'DTypePolicy', 'config': {{'name': 'float32'}}}}; "
                    f"received {dtype!r}."
                )
            dtype = config["name"]
        if dtype is None:
            policy = DTypePolicy(jnp.dtype("float32"), jnp.dtype("float32"))
        elif isinstance(dtype, str) and dtype in _MIXED:
            policy = DTypePolicy(jnp.dtype("float32"), jnp.dtype(_MIXED[dtype]))
        else:
            dt = _float_dtype(dtype, "dtype", owner)
            policy = DTypePolicy(dt, dt)
    if param_dtype is not None:
        policy = DTypePolicy(_float_dtype(param_dtype, "param_dtype", owner), policy.compute_dtype)
    check_x64(policy, owner)
    return policy


def set_policy(
    module: Any, dtype: Any = None, param_dtype: Any = None, owner: str | None = None
) -> DTypePolicy:
    """Give a non-recurrent layer Keras' dtype policy (:func:`resolve_policy` of ``dtype`` and
    ``param_dtype``): ``module.policy``, ``module.compute_dtype`` (the compute dtype's name,
    which the layer casts floating inputs to, as Keras autocasts them) and
    ``module.dtype_policy`` (Keras' policy name, which ``importers.save_keras`` writes back).
    The core layers' constructors and the importers' converters both set policies with it."""
    policy = resolve_policy(dtype, param_dtype, owner or type(module).__name__)
    module.policy = policy
    module.compute_dtype = jnp.dtype(policy.compute_dtype).name
    module.dtype_policy = policy.name
    return policy


def check_x64(policy: DTypePolicy, owner: str) -> None:
    """A float64 policy needs JAX's 64-bit mode, at construction and at every call (a layer
    built inside ``with jax.enable_x64(True):`` and called outside it would compute in
    float32 without a word)."""
    if jnp.dtype("float64") in (policy.param_dtype, policy.compute_dtype):
        import jax

        if not jax.config.jax_enable_x64:
            raise ValueError(
                f"{owner}: dtype float64 needs JAX's 64-bit mode, which is off: JAX would "
                "store and compute float32 without saying so. Enable it first "
                "(jax.config.update('jax_enable_x64', True), JAX_ENABLE_X64=1, or build and "
                "call the layer inside `with jax.enable_x64(True):`), or ask for float32."
            )


def as_compute(x: Any, dtype: Any) -> jnp.ndarray:
    """Cast a floating array (or NumPy array / Python number) to the compute dtype."""
    x = jnp.asarray(x)
    if x.dtype == dtype:
        return x
    return x.astype(dtype)


def is_floating(x: Any) -> bool:
    """True for floating JAX/NumPy arrays."""
    return jnp.issubdtype(np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype, jnp.floating)
