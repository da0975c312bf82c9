"""Keras 2's ``CuDNNLSTM`` / ``CuDNNGRU``: :class:`jrnn.RNN` around the CuDNN-layout cells.

As Keras 2.2.4 (``keras/layers/cudnn_recurrent.py``): tanh/sigmoid fixed, no dropout, masks
refused ("Masking is not supported for CuDNN RNNs"), ``go_backwards`` reverses the inputs
and returns outputs in processing order (as every jrnn layer). The parameters keep the
CuDNN layers' own layout (:mod:`jrnn.cells.cudnn`); the numbers equal those of Keras 2's
``LSTM`` / ``GRU(reset_after=True)`` after its ``_convert_rnn_weights``. These layers
run on jrnn's scan on every backend.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jrnn import _checks
from jrnn._config import capture, register
from jrnn.cells.cudnn import CuDNNGRUCell, CuDNNLSTMCell
from jrnn.layers.recurrent import _split_arguments
from jrnn.rnn import RNN, RNNResult


class _CuDNNLayer(RNN):
    def run(self, inputs: Any, *, mask: Any = None, **kwargs: Any) -> RNNResult:
        """As :meth:`jrnn.RNN.run`; a mask raises, as in Keras 2's CuDNN layers."""
        if mask is not None:
            raise ValueError(
                f"{_checks.where(self)}: `mask` must be None — masking is not supported for "
                "CuDNN RNNs (Keras 2 raises the same); received a mask. Use jrnn.LSTM / "
                "jrnn.GRU(reset_after=True) with `layer.cell.keras_equivalent_weights()` for "
                "masked sequences."
            )
        return super().run(inputs, **kwargs)


def _arguments(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    return _split_arguments({**arguments, "zero_output_for_mask": False})


@register
class CuDNNLSTM(_CuDNNLayer):
    """Keras 2 ``CuDNNLSTM``: an LSTM (gates i, f, c, o; tanh/sigmoid) whose weights are
    stored in the CuDNN layer's layout.

    Parameters on ``layer.cell`` (:class:`jrnn.CuDNNLSTMCell`): ``kernel (in_features, 4u)``,
    ``recurrent_kernel (u, 4u)``, ``bias (8u,)`` = input biases then recurrent biases.

    Args:
      units, in_features: sizes.
      kernel_initializer, recurrent_initializer, bias_initializer, unit_forget_bias,
      regularizers, constraints, dtype, param_dtype: as :class:`jrnn.CuDNNLSTMCell`.
      return_sequences, return_state, go_backwards, stateful, unroll, remat,
      hoist_input_projection, native, activity_regularizer, batch_size, name: as
      :class:`jrnn.RNN` (on CPU the recurrence runs on jrnn's native LSTM kernel).
      rngs: ``nnx.Rngs`` for the parameters.

    Call: ``layer(inputs (batch, time, in_features), initial_state=None)`` ->
    ``(batch, units)``, ``(batch, time, units)`` with ``return_sequences``, and
    ``(output, h, c)`` with ``return_state``. ``mask=`` raises ValueError.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.CuDNNLSTM(4, 3, return_sequences=True, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 5, 3))).shape, layer.cell.bias.shape
      ((2, 5, 4), (32,))
    """

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool | int = False,
        remat: bool | int = False,
        hoist_input_projection: bool | None = None,
        native: bool | None = None,
        batch_size: int | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        cell_arguments, rnn_arguments = _arguments(locals())
        super().__init__(CuDNNLSTMCell(**cell_arguments), **rnn_arguments)


@register
class CuDNNGRU(_CuDNNLayer):
    """Keras 2 ``CuDNNGRU``: a reset-after GRU (gates z, r, h; tanh/sigmoid) whose weights
    are stored in the CuDNN layer's layout.

    Parameters on ``layer.cell`` (:class:`jrnn.CuDNNGRUCell`): ``kernel (in_features, 3u)``,
    ``recurrent_kernel (u, 3u)``, ``bias (6u,)`` = input biases then recurrent biases.

    Args:
      units, in_features: sizes.
      kernel_initializer, recurrent_initializer, bias_initializer, regularizers,
      constraints, dtype, param_dtype: as :class:`jrnn.CuDNNGRUCell`.
      return_sequences, return_state, go_backwards, stateful, unroll, remat,
      hoist_input_projection, native, activity_regularizer, batch_size, name: as
      :class:`jrnn.RNN` (on CPU the recurrence runs on jrnn's native GRU kernel).
      rngs: ``nnx.Rngs`` for the parameters.

    Call: ``layer(inputs (batch, time, in_features), initial_state=None)`` ->
    ``(batch, units)``, ``(batch, time, units)`` with ``return_sequences``, and
    ``(output, h)`` with ``return_state``. ``mask=`` raises ValueError.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.CuDNNGRU(4, 3, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 5, 3))).shape, layer.cell.bias.shape
      ((2, 4), (24,))
    """

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool | int = False,
        remat: bool | int = False,
        hoist_input_projection: bool | None = None,
        native: bool | None = None,
        batch_size: int | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        cell_arguments, rnn_arguments = _arguments(locals())
        super().__init__(CuDNNGRUCell(**cell_arguments), **rnn_arguments)


__all__ = ["CuDNNGRU", "CuDNNLSTM"]
