"""SimpleRNN: the pure step and the Keras-layout cell.

``h' = act(x W + b + h R)`` with kernel ``W (in, u)``, recurrent kernel ``R (u, u)``,
bias ``b (u,)``; state ``(h,)``; the output is ``h'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flax import nnx

from jrnn import _checks
from jrnn import activations as activations_lib
from jrnn._config import capture, register
from jrnn.cells.base import (
    Array,
    DenseCellMixin,
    RNNCellBase,
    common_cell_args,
    dense_projection,
    recurrent_projection,
)


def simple_rnn_step(
    params: dict[str, Array],
    carry: tuple[Array],
    x_projected: Array,
    recurrent_masks: Array | None,
    *,
    activation: Callable[[Array], Array],
) -> tuple[tuple[Array], Array, dict[str, Array]]:
    """One SimpleRNN step: ``h' = act(x_projected + h R)``; activations ``{"h": h'}``."""
    (h,) = carry
    h_new = activation(
        x_projected + recurrent_projection(h, params["recurrent_kernel"], recurrent_masks, 1)
    )
    return (h_new,), h_new, {"h": h_new}


@register
class SimpleRNNCell(DenseCellMixin, RNNCellBase):
    """Fully-connected RNN cell with Keras 3 ``SimpleRNNCell`` arguments and weights.

    Parameters: ``kernel (in_features, units)``, ``recurrent_kernel (units, units)``,
    ``bias (units,)``.

    Args:
      units: width of ``h``.
      in_features: width of ``x_t``.
      activation: tanh by default (None means linear, as Keras).
      use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
      dropout, recurrent_dropout, seed, dtype, param_dtype, regularizers, constraints,
      rngs: as :class:`jrnn.LSTMCell`.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> cell = jrnn.SimpleRNNCell(4, 3, rngs=nnx.Rngs(0))
      >>> (h,), y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        activation: Any = "tanh",
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
        seed: int | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        self.name = _checks.name(name, self)
        common_cell_args(self, locals())
        self.use_bias = _checks.boolean(use_bias, "use_bias", self)
        self.state_shapes = ((self.units,),)
        self._create_dense_params(
            rngs=rngs,
            kernel_shape=(self.in_features, self.units),
            recurrent_shape=(self.units, self.units),
            bias_shape=(self.units,) if self.use_bias else None,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
        )
        self._init_dropout_rngs(rngs, seed)

    @property
    def native_kernel(self) -> str | None:  # type: ignore[override]
        """``"simple_rnn"`` with tanh, Keras' default (what the native kernel computes)."""
        return "simple_rnn" if self.activation is activations_lib.tanh else None

    def project_inputs(self, params: dict[str, Array], x: Array, input_masks: Any) -> Array:
        """``x W + b``: ``(..., batch, in)`` -> ``(..., batch, u)``."""
        return dense_projection(x, params["kernel"], params["bias"], input_masks, 1)

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        """One SimpleRNN step (:func:`simple_rnn_step`)."""
        del constants
        return simple_rnn_step(
            params, carry, x_projected, recurrent_masks, activation=self.activation
        )


__all__ = ["SimpleRNNCell", "simple_rnn_step"]
