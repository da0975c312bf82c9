"""ConvLSTM1D/2D/3D: :class:`jrnn.RNN` around a rank-generic :class:`jrnn.ConvLSTMCell`."""

from __future__ import annotations

from typing import Any

from flax import nnx

from jrnn._config import capture, register
from jrnn.cells.conv_lstm import ConvLSTMCell
from jrnn.layers.recurrent import _split_arguments
from jrnn.rnn import RNN


@register
class ConvLSTM(RNN):
    """Keras' rank-generic ``ConvLSTM`` layer (use ConvLSTM1D/2D/3D).

    Inputs ``(batch, time, *spatial_shape, in_channels)`` (channels_last) or
    ``(batch, time, in_channels, *spatial_shape)`` (channels_first); output and states
    ``(batch, [time,] *out_spatial, filters)``. Arguments: those of
    :class:`jrnn.ConvLSTMCell` and :class:`jrnn.RNN`.
    """

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: Any,
        *,
        in_channels: int,
        spatial_shape: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
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
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool | int = False,
        zero_output_for_mask: bool = False,
        remat: bool | int = False,
        hoist_input_projection: bool | None = None,
        batch_size: int | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        if "_config" not in vars(self):
            self._config = capture(locals())
        cell_arguments, rnn_arguments = _split_arguments(locals())
        super().__init__(ConvLSTMCell(**cell_arguments), **rnn_arguments)


def _ranked(rank: int, doc: str) -> type:
    class _Layer(ConvLSTM):
        def __init__(self, filters: int, kernel_size: Any, **kwargs: Any):
            self._config = capture({"filters": filters, "kernel_size": kernel_size, **kwargs})
            super().__init__(rank, filters, kernel_size, **kwargs)

        @classmethod
        def from_config(cls, config, *, rngs):
            return cls(**{**config, "rngs": rngs})

    _Layer.__name__ = _Layer.__qualname__ = f"ConvLSTM{rank}D"
    _Layer.__doc__ = doc
    _Layer.__init__.__doc__ = f"See :class:`jrnn.ConvLSTM`; rank {rank}."
    _Layer.from_config.__func__.__doc__ = "Rebuild from :meth:`get_config` with fresh weights."
    return register(_Layer)


ConvLSTM1D = _ranked(
    1,
    """1-D convolutional LSTM (Keras ``ConvLSTM1D``).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.ConvLSTM1D(4, 3, in_channels=2, spatial_shape=(9,), rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 5, 9, 2))).shape
      (2, 7, 4)
    """,
)
ConvLSTM2D = _ranked(
    2,
    """2-D convolutional LSTM (Keras ``ConvLSTM2D``).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.ConvLSTM2D(4, (3, 3), in_channels=2, spatial_shape=(6, 5),
      ...                         padding="same", return_sequences=True, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 3, 6, 5, 2))).shape
      (2, 3, 6, 5, 4)
    """,
)
ConvLSTM3D = _ranked(
    3,
    """3-D convolutional LSTM (Keras ``ConvLSTM3D``).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.ConvLSTM3D(2, 2, in_channels=1, spatial_shape=(3, 4, 4), rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((1, 2, 3, 4, 4, 1))).shape
      (1, 2, 3, 3, 2)
    """,
)

__all__ = ["ConvLSTM", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"]
