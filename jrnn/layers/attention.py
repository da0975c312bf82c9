"""Keras' attention layers over RNN outputs: ``Attention`` (Luong) and ``AdditiveAttention``
(Bahdanau), with Keras 3.15's exact math, masks and weight layout.

Both are called on ``[query, value]`` or ``[query, value, key]`` with query ``(batch, Tq, dim)``
and value/key ``(batch, Tv, dim)`` and return ``(batch, Tq, dim)`` (plus the attention
weights ``(batch, Tq, Tv)`` with ``return_attention_scores=True``). ``mask=[query_mask,
value_mask]`` (``(batch, Tq)``, ``(batch, Tv)``): masked values get ``score - 1e9`` (``- 65504``
in float16) before the softmax, masked query steps output 0; ``use_causal_mask=True`` stops
step ``i`` attending to ``j > i``. The output mask is the query mask.

Example:
    >>> import jax.numpy as jnp
    >>> Attention()([jnp.ones((2, 3, 4)), jnp.ones((2, 5, 4))]).shape
    (2, 3, 4)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrnn import _checks, initializers
from jrnn._dtypes import check_x64, set_policy
from jrnn.layers.core import Dropout


def _described(value: Any) -> str:
    """A short account of ``value``: arrays by shape and dtype, lists by their items."""
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_described(v) for v in value[:4]) + (", ..." if len(value) > 4 else "")
        return f"a {type(value).__name__} of {len(value)} [{inner}]"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)} ({value.dtype})"
    return repr(value)[:80]


def _bad(layer: Any, arg: str, expected: str, received: Any) -> ValueError:
    return ValueError(
        f"{type(layer).__name__}: {arg} must be {expected}; received {_described(received)}."
    )


class Attention(nnx.Module):
    """Dot-product (``score_mode="dot"``) or concat attention, as ``keras.layers.Attention``.

    Scores: ``dot``: ``query @ key^T`` (times ``scale`` with ``use_scale``); ``concat``:
    ``concat_score_weight * sum(tanh(scale * (query_i + key_j)), -1)``. Keras weights, in
    ``get_weights()`` order: ``scale ()`` (with ``use_scale``), ``concat_score_weight ()`` (with
    ``score_mode="concat"``). ``causal=True`` (tf.keras <= 2.10's deprecated constructor flag)
    always applies the causal mask. ``dropout`` drops attention weights when ``training``, keys
    from the ``rngs`` ``dropout`` stream or Keras' ``seed`` (call-time ``rngs=`` overrides; a
    ``dropout`` in (0, 1) needs one of them). ``dtype`` is Keras' (a dtype
    or a policy name such as ``"mixed_bfloat16"``: float32 weights, floating inputs cast to
    bfloat16 as Keras autocasts them; None is float32, Keras' default policy, so bfloat16 or
    float64 inputs are computed in float32 unless ``dtype`` says otherwise, as in the
    recurrent layers); ``param_dtype`` overrides the weights' dtype.
    """

    def __init__(
        self,
        *,
        use_scale: bool = False,
        score_mode: str = "dot",
        dropout: float = 0.0,
        causal: bool = False,
        seed: int | None = None,
        name: str | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        rngs: nnx.Rngs | None = None,
    ):
        set_policy(self, dtype, param_dtype, _checks.where(self))
        if score_mode not in ("dot", "concat"):
            raise _bad(self, "score_mode", "'dot' or 'concat'", score_mode)
        if not 0.0 <= dropout <= 1.0:
            raise _bad(self, "dropout", "in [0, 1]", dropout)
        self.use_scale, self.score_mode, self.dropout, self.name = (
            use_scale,
            score_mode,
            float(dropout),
            _checks.name(name, self),
        )
        self.causal = bool(causal)
        self.seed = _checks.seed(seed, self)
        if 0.0 < dropout < 1.0 and rngs is None and seed is None:
            raise _bad(self, "rngs", "given (or seed=) for dropout > 0", None)
        self.weights_dropout = (
            Dropout(dropout, rngs=rngs, seed=seed) if 0.0 < dropout < 1.0 else None
        )
        self.scale = self._make_scale(rngs) if use_scale else None
        self.concat_score_weight = (
            nnx.Param(jnp.ones((), self.policy.param_dtype)) if score_mode == "concat" else None
        )

    def _make_scale(self, rngs):
        return nnx.Param(jnp.ones((), self.policy.param_dtype))

    def _scores(self, query, key):
        if self.score_mode == "dot":
            scores = query @ jnp.swapaxes(key, -2, -1)
            if self.scale is not None:
                scores = scores * self.scale[...].astype(scores.dtype)
            return scores
        pair = query[..., :, None, :] + key[..., None, :, :]
        if self.scale is not None:
            pair = self.scale[...].astype(pair.dtype) * pair
        weight = self.concat_score_weight[...].astype(pair.dtype)
        return weight * jnp.sum(jnp.tanh(pair), axis=-1)

    def __call__(
        self,
        inputs,
        *,
        mask=None,
        training: bool = False,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
        rngs: Any = None,
    ):
        if not isinstance(inputs, (list, tuple)) or not 2 <= len(inputs) <= 3:
            raise _bad(self, "inputs", "a list [query, value] or [query, value, key]", inputs)
        if mask is not None and (not isinstance(mask, (list, tuple)) or not 2 <= len(mask) <= 3):
            raise _bad(self, "mask", "a list [query_mask, value_mask]", mask)
        q, v, k = (
            self._cast(x) for x in (*inputs[:2], inputs[2] if len(inputs) > 2 else inputs[1])
        )
        q_mask = mask[0] if mask else None
        v_mask = mask[1] if mask else None
        self._check_shapes(q, v, k, q_mask, v_mask)
        scores = self._scores(q, k)
        keep = None if v_mask is None else jnp.asarray(v_mask, bool)[..., None, :]
        if use_causal_mask or self.causal:
            tq, tv = scores.shape[-2:]
            causal = jnp.arange(tq)[:, None] >= jnp.arange(tv)[None, :]
            keep = causal if keep is None else keep & causal
        if keep is not None:
            big = 65504.0 if scores.dtype == jnp.float16 else 1.0e9
            scores = jnp.where(keep, scores, scores - jnp.asarray(big, scores.dtype))
        weights = jax.nn.softmax(scores, axis=-1)
        if training and self.dropout > 0:
            weights = (
                jnp.zeros_like(weights)
                if self.weights_dropout is None  # rate 1: Keras drops everything
                else self.weights_dropout(weights, training=True, rngs=rngs)
            )
        out = weights @ v
        if q_mask is not None:
            out = jnp.where(jnp.asarray(q_mask, bool)[..., None], out, jnp.zeros((), out.dtype))
        return (out, weights) if return_attention_scores else out

    def _check_shapes(self, q, v, k, q_mask, v_mask) -> None:
        """query ``(batch, Tq, dim)``, value ``(batch, Tv, dv)``, key ``(batch, Tv, dim)``;
        masks ``(batch, Tq)`` and ``(batch, Tv)``."""
        shapes = {"query": q.shape, "value": v.shape, "key": k.shape}
        if q.ndim < 3 or v.ndim != q.ndim or k.ndim != q.ndim:
            raise _bad(self, "inputs", "3-D (batch, steps, features) tensors", shapes)
        if not q.shape[:-2] == v.shape[:-2] == k.shape[:-2] or k.shape[-2] != v.shape[-2]:
            raise _bad(self, "inputs", "one batch size, and as many key as value steps", shapes)
        if k.shape[-1] != q.shape[-1]:
            raise _bad(self, "inputs", "a key with the query's feature size", shapes)
        for label, m, x in (("query", q_mask, q), ("value", v_mask, v)):
            if m is not None and tuple(jnp.shape(m)) != x.shape[:-1]:
                raise _bad(
                    self, "mask", f"a {label} mask of shape {x.shape[:-1]}", f"{jnp.shape(m)}"
                )

    def _cast(self, x):
        """Floating inputs in the compute dtype, as Keras autocasts a layer's inputs."""
        check_x64(self.policy, _checks.where(self))
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != self.compute_dtype:
            return x.astype(self.compute_dtype)
        return x

    def compute_mask(self, inputs, mask=None):
        """The query mask (Keras: ``mask[0]``), or None."""
        if mask is None or not isinstance(mask, (list, tuple)) or mask[0] is None:
            return None
        return mask[0]

    def keras_weights(self) -> list:
        """``[scale, concat_score_weight]`` (those present)."""
        return [w for w in (self.scale, self.concat_score_weight) if w is not None]


class AdditiveAttention(Attention):
    """Bahdanau attention, as ``keras.layers.AdditiveAttention``.

    Scores ``sum(scale * tanh(query_i + key_j), -1)``; with ``use_scale`` the Keras weight
    ``scale (dim,)`` (Glorot-uniform initialised), else ``scale = 1``.
    """

    def __init__(
        self,
        dim: int | None = None,
        *,
        use_scale: bool = True,
        dropout: float = 0.0,
        causal: bool = False,
        seed: int | None = None,
        name: str | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        rngs: nnx.Rngs | None = None,
    ):
        if use_scale and dim is None:
            raise _bad(self, "dim", "the feature size of query/key when use_scale", dim)
        self.dim = dim
        super().__init__(
            use_scale=use_scale,
            dropout=dropout,
            causal=causal,
            seed=seed,
            name=name,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def _make_scale(self, rngs):
        key = (rngs if rngs is not None else nnx.Rngs(0)).params()
        shape = (int(self.dim),)
        return nnx.Param(initializers.get("glorot_uniform")(key, shape, self.policy.param_dtype))

    def _scores(self, query, key):
        if self.scale is not None and query.shape[-1] != self.scale.shape[0]:
            raise _bad(
                self,
                "the query and key feature size",
                f"dim={self.scale.shape[0]} (the size of its scale weight)",
                query,
            )
        pair = jnp.tanh(query[..., :, None, :] + key[..., None, :, :])
        if self.scale is not None:
            pair = self.scale[...].astype(pair.dtype) * pair
        return jnp.sum(pair, axis=-1)
