"""LSTM: the pure step and the Keras-layout cell.

Gate order i, f, c, o (Keras). With ``W`` the kernel ``(in, 4u)``, ``R`` the recurrent
kernel ``(u, 4u)`` and ``b`` the bias ``(4u,)``::

    z = x W + b + h R;       i, f, c~, o = split(z, 4)
    c' = σ(f) ⊙ c + σ(i) ⊙ act(c~)
    h' = σ(o) ⊙ act(c')

with σ = ``recurrent_activation`` (sigmoid) and act = ``activation`` (tanh). States ``(h, c)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from flax import nnx

from jrnn import _checks
from jrnn import initializers as initializers_lib
from jrnn._config import capture, register
from jrnn.cells.base import (
    Array,
    DenseCellMixin,
    RNNCellBase,
    common_cell_args,
    dense_projection,
    recurrent_projection,
    resolve_activation,
    resolve_initializer,
)


def lstm_step(
    params: dict[str, Array],
    carry: tuple[Array, Array],
    x_projected: Array,
    recurrent_masks: Array | None,
    *,
    activation: Callable[[Array], Array],
    recurrent_activation: Callable[[Array], Array],
) -> tuple[tuple[Array, Array], Array, dict[str, Array]]:
    """One LSTM step on hoisted inputs.

    Args:
      params: ``{"recurrent_kernel": (u, 4u)}`` (other entries ignored).
      carry: ``(h, c)``, each ``(batch, u)``.
      x_projected: ``x W + b``, ``(batch, 4u)``.
      recurrent_masks: None, ``(batch, u)`` or ``(4, batch, u)`` recurrent dropout masks.

    Returns:
      ``((h', c'), h', activations)`` with activations ``i, f, c_tilde, o, c, h``
      (gate values after their activation), each ``(batch, u)``.
    """
    h, c = carry
    z = x_projected + recurrent_projection(h, params["recurrent_kernel"], recurrent_masks, 4)
    return lstm_update(z, c, activation=activation, recurrent_activation=recurrent_activation)


def lstm_update(
    z: Array,
    c: Array,
    *,
    activation: Callable[[Array], Array],
    recurrent_activation: Callable[[Array], Array],
    axis: int = -1,
) -> tuple[tuple[Array, Array], Array, dict[str, Array]]:
    """The LSTM state update from the summed pre-activations ``z`` (gate blocks i, f, c, o
    along ``axis``) and the previous carry ``c``; shared by LSTM and ConvLSTM."""
    zi, zf, zc, zo = jnp.split(z, 4, axis=axis)
    i = recurrent_activation(zi)
    f = recurrent_activation(zf)
    c_tilde = activation(zc)
    o = recurrent_activation(zo)
    c_new = f * c + i * c_tilde
    h_new = o * activation(c_new)
    acts = {"i": i, "f": f, "c_tilde": c_tilde, "o": o, "c": c_new, "h": h_new}
    return (h_new, c_new), h_new, acts


@register
class LSTMCell(DenseCellMixin, RNNCellBase):
    """Long short-term memory cell with Keras 3 ``LSTMCell`` arguments and weights.

    Parameters (``nnx.Param``, Keras layout): ``kernel (in_features, 4*units)``,
    ``recurrent_kernel (units, 4*units)``, ``bias (4*units,)``, gate blocks i, f, c, o.

    Args:
      units: width of ``h`` and ``c``.
      in_features: width of the input ``x_t``.
      activation: for the candidate and the output (Keras name, config or callable).
      recurrent_activation: for the gates i, f, o.
      use_bias: whether to create ``bias``.
      kernel_initializer, recurrent_initializer, bias_initializer: Keras initializers.
      unit_forget_bias: initialise the forget block of the bias to ones (Keras).
      dropout: input dropout rate (training only; masks drawn once per call).
      recurrent_dropout: dropout rate on ``h`` in the recurrent matmul; as in Keras,
        a non-zero rate switches to ``implementation=1`` (one mask per gate).
      implementation: 2 (fused, default) or 1 (per-gate dropout masks).
      seed: seed of the dropout stream (else drawn from ``rngs``).
      dtype, param_dtype: Keras dtype or policy name (``"mixed_bfloat16"``...), and an
        optional override of the parameter dtype.
      kernel_regularizer, ...: kept for :func:`jrnn.regularization_loss` /
        :func:`jrnn.apply_constraints`.
      rngs: ``nnx.Rngs`` for initialisation (``params`` stream) and dropout.

    Call (Flax protocol): ``(h, c), y = cell((h, c), x_t)`` with ``x_t (batch, in_features)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> cell = jrnn.LSTMCell(4, 3, rngs=nnx.Rngs(0))
      >>> carry = cell.initialize_carry((2, 3))
      >>> (h, c), y = cell(carry, jnp.ones((2, 3)))
      >>> y.shape, cell.kernel.shape, cell.recurrent_kernel.shape, cell.bias.shape
      ((2, 4), (3, 16), (4, 16), (16,))
    """

    gate_names = ("i", "f", "c", "o")

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
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
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
        self.unit_forget_bias = _checks.boolean(unit_forget_bias, "unit_forget_bias", self)
        self.implementation = _checks.implementation(implementation, self)
        if self.recurrent_dropout != 0.0:
            self.implementation = 1  # as Keras: per-gate masks
        self.dropout_mask_count = 4 if self.implementation == 1 else 1
        self.state_shapes = ((self.units,), (self.units,))
        u = self.units
        bias_init = resolve_initializer(bias_initializer, "bias_initializer", self)
        if self.use_bias and self.unit_forget_bias:
            bias_init = initializers_lib.unit_forget_bias(bias_init, u)
        self._create_dense_params(
            rngs=rngs,
            kernel_shape=(self.in_features, 4 * u),
            recurrent_shape=(u, 4 * u),
            bias_shape=(4 * u,) if self.use_bias else None,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_init,
        )
        self._init_dropout_rngs(rngs, seed)

    @property
    def native_kernel(self) -> str | None:  # type: ignore[override]
        """``"lstm"`` with Keras' default activations (what the native kernel computes)."""
        return "lstm" if self._default_gate_activations else None

    def project_inputs(self, params: dict[str, Array], x: Array, input_masks: Any) -> Array:
        """``x W + b``: ``(..., batch, in)`` -> ``(..., batch, 4u)``."""
        return dense_projection(x, params["kernel"], params["bias"], input_masks, 4)

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        """One LSTM step (:func:`lstm_step`)."""
        del constants
        return lstm_step(
            params,
            carry,
            x_projected,
            recurrent_masks,
            activation=self.activation,
            recurrent_activation=self.recurrent_activation,
        )


__all__ = ["LSTMCell", "lstm_step", "lstm_update"]
