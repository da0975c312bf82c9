"""Non-recurrent Keras layers a ported model needs, as thin nnx Modules (Keras names/layout).

So far: Dense (kernel ``(in, out)``, bias ``(out,)``), Embedding (``embeddings (vocab, dim)``,
``mask_zero`` -> :meth:`Embedding.compute_mask`), Masking, Activation, Dropout (identity
at inference) and Concatenate.

Example:
    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> Dense(3, 2, rngs=nnx.Rngs(0))(jnp.ones((1, 2))).shape
    (1, 3)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrnn import activations


class Dense(nnx.Module):
    """``activation(x @ kernel + bias)``; x ``(..., in_features)`` -> ``(..., units)``."""

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        activation: Any = None,
        use_bias: bool = True,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self.units, self.name = units, name
        self.activation = activations.get(activation)
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (in_features, units)) * 0.1)
        self.bias = nnx.Param(jnp.zeros((units,))) if use_bias else None

    def __call__(self, x, *, training: bool = False):
        y = x @ self.kernel[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return self.activation(y)


class Embedding(nnx.Module):
    """Lookup ``embeddings[ids]``; ids ``(batch, time)`` -> ``(batch, time, output_dim)``."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        *,
        mask_zero: bool = False,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self.mask_zero, self.name = mask_zero, name
        self.embeddings = nnx.Param(jax.random.uniform(rngs.params(), (input_dim, output_dim)))

    def __call__(self, ids, *, training: bool = False):
        return jnp.take(self.embeddings[...], jnp.asarray(ids).astype(jnp.int32), axis=0)

    def compute_mask(self, ids, mask=None):
        """``ids != 0`` when ``mask_zero``, else None."""
        return jnp.asarray(ids) != 0 if self.mask_zero else None


class Masking(nnx.Module):
    """Zeroes steps whose features all equal ``mask_value`` and masks them."""

    def __init__(self, mask_value: float = 0.0, *, name: str | None = None):
        self.mask_value, self.name = mask_value, name

    def compute_mask(self, x, mask=None):
        """``(batch, time)``: True where any feature differs from ``mask_value``."""
        return jnp.any(x != self.mask_value, axis=-1)

    def __call__(self, x, *, training: bool = False):
        return x * self.compute_mask(x)[..., None].astype(x.dtype)


class Activation(nnx.Module):
    """Applies a named activation."""

    def __init__(self, activation: Any, *, name: str | None = None):
        self.activation, self.name = activations.get(activation), name

    def __call__(self, x, *, training: bool = False):
        return self.activation(x)


class Dropout(nnx.Module):
    """Identity at inference (only inference is supported so far)."""

    def __init__(self, rate: float = 0.0, *, name: str | None = None):
        self.rate, self.name = rate, name

    def __call__(self, x, *, training: bool = False):
        return x


class Concatenate(nnx.Module):
    """Concatenates a list of tensors along ``axis``."""

    def __init__(self, axis: int = -1, *, name: str | None = None):
        self.axis, self.name = axis, name

    def __call__(self, xs, *, training: bool = False):
        return jnp.concatenate(list(xs), axis=self.axis)
