"""IndRNN: :class:`jrnn.RNN` around :class:`jrnn.IndRNNCell` (titu1994/Keras-IndRNN ``IndRNN``).

The layer differs from the cell only in its clip defaults, as Keras-IndRNN's:
``recurrent_clip_min = recurrent_clip_max = -1``, i.e. the recurrent vector is clipped to
``[0, 2 ** (1 / timesteps)]`` with ``timesteps`` the length of each call (or the
``timesteps=`` argument). The rules are in :mod:`jrnn.cells.indrnn`.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jrnn._config import capture, register
from jrnn.cells.indrnn import IndRNNCell
from jrnn.layers.recurrent import _split_arguments
from jrnn.rnn import RNN


@register
class IndRNN(RNN):
    """Independently recurrent layer (titu1994/Keras-IndRNN ``IndRNN``).

    ``h_t = act(x_t W + u ⊙ h_{t-1} + b)`` with kernel ``W (in_features, units)``, a
    recurrent vector ``u (units,)`` clipped in the forward pass and bias ``b (units,)``;
    parameters on ``layer.cell``.

    Args:
      units, in_features: sizes.
      recurrent_clip_min, recurrent_clip_max: -1 (the layer defaults) clips ``u`` to
        ``[0, 2 ** (1 / timesteps)]``; numbers clip to ``[min, max]`` after forcing
        ``|u| >= |min|`` when ``min != 0``; None disables clipping.
      timesteps: the length the -1 rule uses; None (default) uses each call's length.
        Keras-IndRNN fixes it from the declared input length at build (and uses a
        bound of 1.0 when that is unknown: pass ``recurrent_clip_min=0.0,
        recurrent_clip_max=1.0`` to reproduce such a model).
      activation, use_bias, initializers, regularizers, constraints, dropout,
      recurrent_dropout, implementation, seed, dtype, param_dtype: as
        :class:`jrnn.IndRNNCell`.
      return_sequences, return_state, go_backwards, stateful, unroll,
      zero_output_for_mask, remat, hoist_input_projection, activity_regularizer,
      batch_size, name: as :class:`jrnn.RNN`.
      rngs: ``nnx.Rngs`` for the parameters (and dropout).

    Call: ``layer(inputs (batch, time, in_features), mask=None, initial_state=None,
    training=False)`` -> ``(batch, units)``, ``(batch, time, units)`` with
    ``return_sequences``, and ``(output, h)`` with ``return_state``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.IndRNN(4, 3, return_sequences=True, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 7, 3))).shape, layer.cell.clip_range(7)
      ((2, 7, 4), (0.0, 1.1040895136738123))
    """

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        recurrent_clip_min: float | None = -1,
        recurrent_clip_max: float | None = -1,
        activation: Any = "relu",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = None,
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        timesteps: int | None = None,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool | int = False,
        zero_output_for_mask: bool = False,
        remat: bool | int = False,
        hoist_input_projection: bool | None = None,
        implementation: int = 2,
        batch_size: int | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        cell_arguments, rnn_arguments = _split_arguments(locals())
        super().__init__(IndRNNCell(**cell_arguments), **rnn_arguments)


__all__ = ["IndRNN"]
