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
    """Keras' rank-generic ``ConvLSTM`` layer (use ConvLSTM1D/2D/3D, which fix ``rank``).

    An LSTM whose input and recurrent transformations are convolutions; maths, weights
    and gate order as :class:`jrnn.ConvLSTMCell` (``layer.cell.kernel
    (*kernel_size, in_channels, 4*filters)``, ``recurrent_kernel (*kernel_size, filters,
    4*filters)``, ``bias (4*filters,)``, gates i, f, c, o).

    Args:
      rank, filters, kernel_size, strides, padding, data_format, dilation_rate,
        activation, recurrent_activation, use_bias, *_initializer, unit_forget_bias,
        *_regularizer, *_constraint, dropout, recurrent_dropout, seed: Keras 3's
        arguments, as :class:`jrnn.ConvLSTMCell`.
      in_channels: channels of the input frames (Keras reads them at ``build``).
      spatial_shape: spatial size of the input frames, ``(W,)``, ``(H, W)`` or
        ``(D, H, W)`` (an int for all axes); inputs of another size are refused. None
        (the default): frames of any size, the states following each call's frames, as
        tf.keras 2 allows (Keras 3 fixes the size at ``build``); a stateful layer keeps
        the size of its first call.
      return_sequences, return_state, go_backwards, stateful, unroll,
        zero_output_for_mask, remat, hoist_input_projection, activity_regularizer,
        batch_size, dtype, param_dtype, name: as :class:`jrnn.RNN` / :class:`jrnn.LSTM`.
      native: as :class:`jrnn.RNN`. On CPU, with the default activations, channels_last and
        float32, both convolutions and the gate maths of every step run on jrnn's native
        ConvLSTM kernel (:func:`jrnn.native.conv_lstm`; per-gate input dropout and
        recurrent dropout in training run the XLA scan).
      rngs: ``nnx.Rngs`` for initialisation and dropout.

    Call: ``layer(inputs, mask=None, initial_state=None, training=False)`` with

    * ``inputs (batch, time, *spatial_shape, in_channels)`` (channels_last) or
      ``(batch, time, in_channels, *spatial_shape)`` (channels_first);
    * ``mask (batch, time)``; ``initial_state [h, c]``, each shaped like one output step.

    Returns ``(batch, *out_spatial, filters)`` (channels_first: ``(batch, filters,
    *out_spatial)``), ``(batch, time, ...)`` with ``return_sequences``, and ``(output, h,
    c)`` with ``return_state``; ``out_spatial`` is the input convolution's output size.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.ConvLSTM(2, 4, (3, 2), in_channels=3, spatial_shape=(6, 5),
      ...                       strides=2, padding="same", return_state=True,
      ...                       rngs=nnx.Rngs(0))
      >>> y, h, c = layer(jnp.ones((2, 7, 6, 5, 3)))
      >>> y.shape, c.shape, layer.cell.kernel.shape
      ((2, 3, 3, 4), (2, 3, 3, 4), (3, 2, 3, 16))
    """

    _gpu_unroll = 1  # unroll=False on GPU: not measured for convolutions (see RNN)

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: Any,
        *,
        in_channels: int,
        spatial_shape: Any = None,
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
        native: bool | None = None,
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


@register
class ConvLSTM1D(ConvLSTM):
    """1-D convolutional LSTM (Keras ``ConvLSTM1D``): :class:`jrnn.ConvLSTM` with rank 1.

    Inputs ``(batch, time, width, in_channels)`` (channels_last) or ``(batch, time,
    in_channels, width)``; ``spatial_shape=(width,)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.ConvLSTM1D(4, 3, in_channels=2, spatial_shape=(9,), rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 5, 9, 2))).shape
      (2, 7, 4)
    """

    def __init__(self, filters: int, kernel_size: Any, *, rngs: nnx.Rngs, **kwargs: Any):
        """Arguments as :class:`jrnn.ConvLSTM` without ``rank``."""
        self._config = capture({"filters": filters, "kernel_size": kernel_size, **kwargs})
        super().__init__(1, filters, kernel_size, rngs=rngs, **kwargs)


@register
class ConvLSTM2D(ConvLSTM):
    """2-D convolutional LSTM (Keras ``ConvLSTM2D``): :class:`jrnn.ConvLSTM` with rank 2.

    Inputs ``(batch, time, height, width, in_channels)`` (channels_last) or ``(batch,
    time, in_channels, height, width)``; ``spatial_shape=(height, width)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.ConvLSTM2D(4, (3, 3), in_channels=2, spatial_shape=(6, 5),
      ...                         padding="same", return_sequences=True, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 3, 6, 5, 2))).shape
      (2, 3, 6, 5, 4)
    """

    def __init__(self, filters: int, kernel_size: Any, *, rngs: nnx.Rngs, **kwargs: Any):
        """Arguments as :class:`jrnn.ConvLSTM` without ``rank``."""
        self._config = capture({"filters": filters, "kernel_size": kernel_size, **kwargs})
        super().__init__(2, filters, kernel_size, rngs=rngs, **kwargs)


@register
class ConvLSTM3D(ConvLSTM):
    """3-D convolutional LSTM (Keras ``ConvLSTM3D``): :class:`jrnn.ConvLSTM` with rank 3.

    Inputs ``(batch, time, depth, height, width, in_channels)`` (channels_last) or
    ``(batch, time, in_channels, depth, height, width)``; ``spatial_shape=(depth, height,
    width)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.ConvLSTM3D(2, 2, in_channels=1, spatial_shape=(3, 4, 4), rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((1, 2, 3, 4, 4, 1))).shape
      (1, 2, 3, 3, 2)
    """

    def __init__(self, filters: int, kernel_size: Any, *, rngs: nnx.Rngs, **kwargs: Any):
        """Arguments as :class:`jrnn.ConvLSTM` without ``rank``."""
        self._config = capture({"filters": filters, "kernel_size": kernel_size, **kwargs})
        super().__init__(3, filters, kernel_size, rngs=rngs, **kwargs)


__all__ = ["ConvLSTM", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"]
