"""GRU: the pure step and the Keras-layout cell, ``reset_after`` True and False.

Gate order z (update), r (reset), h (candidate). With ``W`` the kernel ``(in, 3u)`` and
``R`` the recurrent kernel ``(u, 3u)``::

    reset_after=True  (Keras 3 default; bias (2, 3u): row 0 input bias b_i, row 1 recurrent b_r)
        x_z, x_r, x_h = split(x W + b_i);  m_z, m_r, m_h = split(h R + b_r)
        z = σ(x_z + m_z);  r = σ(x_r + m_r);  h~ = act(x_h + r ⊙ m_h)
    reset_after=False (Keras 2 / TF1; bias (3u,), input side only)
        x_z, x_r, x_h = split(x W + b)
        z = σ(x_z + h R_z);  r = σ(x_r + h R_r);  h~ = act(x_h + (r ⊙ h) R_h)
    both: h' = z ⊙ h + (1 - z) ⊙ h~
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from flax import nnx

from jrnn import _checks
from jrnn._config import capture, register
from jrnn.cells.base import (
    Array,
    DenseCellMixin,
    RNNCellBase,
    common_cell_args,
    dense_projection,
    recurrent_projection,
    resolve_activation,
)


def gru_step(
    params: dict[str, Array],
    carry: tuple[Array],
    x_projected: Array,
    recurrent_masks: Array | None,
    *,
    reset_after: bool,
    activation: Callable[[Array], Array],
    recurrent_activation: Callable[[Array], Array],
) -> tuple[tuple[Array], Array, dict[str, Array]]:
    """One GRU step on hoisted inputs.

    Args:
      params: ``recurrent_kernel (u, 3u)`` and ``recurrent_bias (3u,)`` or None.
      carry: ``(h,)`` with ``h (batch, u)``.
      x_projected: ``x W + b_input``, ``(batch, 3u)``.
      recurrent_masks: None, ``(batch, u)`` or ``(3, batch, u)``.

    Returns:
      ``((h',), h', activations)`` with activations ``z, r, h_tilde, h``.
    """
    (h,) = carry
    rk = params["recurrent_kernel"]
    u = h.shape[-1]
    xz, xr, xh = jnp.split(x_projected, 3, axis=-1)
    # Keras draws recurrent dropout masks only with implementation=1: one per gate.
    if reset_after:
        inner = recurrent_projection(h, rk, recurrent_masks, 3)
        if params["recurrent_bias"] is not None:
            inner = inner + params["recurrent_bias"]
        mz, mr, mh = jnp.split(inner, 3, axis=-1)
        z = recurrent_activation(xz + mz)
        r = recurrent_activation(xr + mr)
        h_tilde = activation(xh + r * mh)
    else:
        zr_masks = None if recurrent_masks is None else recurrent_masks[:2]
        mz, mr = jnp.split(recurrent_projection(h, rk[:, : 2 * u], zr_masks, 2), 2, axis=-1)
        z = recurrent_activation(xz + mz)
        r = recurrent_activation(xr + mr)
        h_h = h if recurrent_masks is None else h * recurrent_masks[2]
        h_tilde = activation(xh + (r * h_h) @ rk[:, 2 * u :])
    h_new = z * h + (1 - z) * h_tilde
    return (h_new,), h_new, {"z": z, "r": r, "h_tilde": h_tilde, "h": h_new}


@register
class GRUCell(DenseCellMixin, RNNCellBase):
    """Gated recurrent unit cell with Keras 3 ``GRUCell`` arguments and weights.

    Parameters (``nnx.Param``, Keras layout): ``kernel (in_features, 3*units)``,
    ``recurrent_kernel (units, 3*units)``, ``bias (2, 3*units)`` if ``reset_after`` else
    ``(3*units,)``; gate blocks z, r, h.

    Args:
      units: width of ``h``.
      in_features: width of the input ``x_t``.
      activation: candidate activation (tanh).
      recurrent_activation: gate activation (sigmoid).
      use_bias: whether to create ``bias``.
      kernel_initializer, recurrent_initializer, bias_initializer: Keras initializers.
      dropout, recurrent_dropout: Keras dropout rates (a non-zero ``recurrent_dropout``
        switches to ``implementation=1``: one mask per gate, as Keras).
      reset_after: apply the reset gate after the recurrent matmul (Keras 3 / cuDNN
        convention, default) or before it (Keras 2 / TF1 convention).
      implementation: 2 (fused) or 1 (per-gate dropout masks).
      seed, dtype, param_dtype, regularizers, constraints, rngs: as :class:`LSTMCell`.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> cell = jrnn.GRUCell(4, 3, rngs=nnx.Rngs(0))
      >>> (h,), y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> reset_before = jrnn.GRUCell(4, 3, reset_after=False, rngs=nnx.Rngs(0))
      >>> y.shape, cell.bias.shape, reset_before.bias.shape
      ((2, 4), (2, 12), (12,))
    """

    gate_names = ("z", "r", "h")

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        reset_after: bool = True,
        implementation: int = 2,
        seed: int | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        self.name = _checks.name(name, self)
        common_cell_args(self, locals())
        self.recurrent_activation = resolve_activation(
            recurrent_activation, "recurrent_activation", self
        )
        self.use_bias = _checks.boolean(use_bias, "use_bias", self)
        self.reset_after = _checks.boolean(reset_after, "reset_after", self)
        self.implementation = _checks.implementation(implementation, self)
        if self.recurrent_dropout != 0.0:
            self.implementation = 1
        self.dropout_mask_count = 3 if self.implementation == 1 else 1
        self.state_shapes = ((self.units,),)
        u = self.units
        bias_shape = None
        if self.use_bias:
            bias_shape = (2, 3 * u) if self.reset_after else (3 * u,)
        self._create_dense_params(
            rngs=rngs,
            kernel_shape=(self.in_features, 3 * u),
            recurrent_shape=(u, 3 * u),
            bias_shape=bias_shape,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
        )
        self._init_dropout_rngs(rngs, seed)

    def params(self, *, cast: bool = True) -> dict[str, Array]:
        """``kernel``, ``recurrent_kernel``, ``input_bias`` and ``recurrent_bias`` (or None),
        in the compute dtype unless ``cast=False``."""
        input_bias = recurrent_bias = None
        if self.bias is not None:
            bias = self.bias[...]
            if self.reset_after:
                input_bias, recurrent_bias = bias[0], bias[1]
            else:
                input_bias = bias
        params = {
            "kernel": self.kernel[...],
            "recurrent_kernel": self.recurrent_kernel[...],
            "input_bias": input_bias,
            "recurrent_bias": recurrent_bias,
        }
        return self.cast_params(params) if cast else params

    @property
    def native_kernel(self) -> str | None:  # type: ignore[override]
        """``"gru"`` for ``reset_after=True`` with Keras' default activations (what the
        native kernel computes)."""
        return "gru" if self.reset_after and self._default_gate_activations else None

    def project_inputs(self, params: dict[str, Array], x: Array, input_masks: Any) -> Array:
        """``x W + b_input``: ``(..., batch, in)`` -> ``(..., batch, 3u)``."""
        return dense_projection(x, params["kernel"], params["input_bias"], input_masks, 3)

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        """One GRU step (:func:`gru_step`)."""
        del constants
        return gru_step(
            params,
            carry,
            x_projected,
            recurrent_masks,
            reset_after=self.reset_after,
            activation=self.activation,
            recurrent_activation=self.recurrent_activation,
        )


__all__ = ["GRUCell", "gru_step"]
