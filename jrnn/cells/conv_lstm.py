"""ConvLSTM (rank 1, 2, 3): Keras 3's ``ConvLSTMCell`` maths on ``lax.conv_general_dilated``.

Kernel ``(*kernel_size, in_channels, 4*filters)``, recurrent kernel
``(*kernel_size, filters, 4*filters)``, bias ``(4*filters,)``; gates i, f, c, o on the
channel axis (``keras/src/layers/rnn/conv_lstm.py``, ``ConvLSTMCell.build``/``call``)::

    z = conv(x, W; strides, padding, dilation_rate) + b + conv(h, R; strides 1, "same")

then the LSTM update shared with :class:`jrnn.LSTMCell` (:func:`jrnn.cells.lstm.lstm_update`).
The input convolution of every timestep runs as one convolution over ``time * batch``
frames when the driver hoists it (:meth:`ConvLSTMCell.project_inputs` on a whole
sequence), or per step. Keras draws 4 dropout masks for the inputs and 4 for ``h`` (one
per gate).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrnn import _checks
from jrnn import initializers as initializers_lib
from jrnn._config import capture, register
from jrnn._dtypes import resolve_policy
from jrnn.cells.base import (
    Array,
    DenseCellMixin,
    RNNCellBase,
    resolve_activation,
    resolve_initializer,
    set_regularizers_and_constraints,
)
from jrnn.cells.lstm import lstm_update

_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}


def conv_output_length(length: int, kernel: int, stride: int, padding: str, dilation: int) -> int:
    """Keras/TF convolution output length: ``ceil(length / stride)`` for "same",
    ``floor((length - dilation * (kernel - 1) - 1) / stride) + 1`` for "valid"."""
    if padding == "same":
        return -(-length // stride)
    return (length - dilation * (kernel - 1) - 1) // stride + 1


def conv(x: Array, w: Array, *, strides, padding: str, dilation, channels_last: bool) -> Array:
    """N-D convolution in Keras' layouts (``keras.ops.conv``).

    Args:
      x: ``(N, *spatial, C_in)`` (channels_last) or ``(N, C_in, *spatial)``.
      w: ``(*kernel_size, C_in, C_out)``.
      strides, dilation: tuples of ``rank`` ints (dilation applies to the kernel).
      padding: "valid" or "same" (TensorFlow's "SAME": the odd pixel is padded after).
      channels_last: the layout of ``x`` and of the result.

    Returns:
      ``(N, *out_spatial, C_out)`` or ``(N, C_out, *out_spatial)``.

    Its derivative with respect to ``w`` is computed as one GEMM over image patches
    (``patches(x)ᵀ · dz``; the patches are recomputed in the backward pass, not stored).
    The recurrences call this once per step, inside a ``lax.scan``, where XLA:CPU runs its
    own filter-gradient convolution 20-90x slower than outside a loop (batch 8, 16x16
    frames, 8 or 32 -> 128 channels, 10 iterations: 201 vs 15 ms and 909 vs 40 ms); the
    native ConvLSTM path takes whole sequences to :mod:`jrnn.native` instead. Forward
    values, forward-mode and reverse-mode derivatives are those of the convolution.
    """
    return _conv(x, w, tuple(strides), padding, tuple(dilation), bool(channels_last))


def _conv_plain(x, w, strides, padding, dilation, channels_last):
    rank = w.ndim - 2
    spatial = _SPATIAL[rank]
    lhs = f"N{spatial}C" if channels_last else f"NC{spatial}"
    dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, (lhs, f"{spatial}IO", lhs))
    return jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=strides,
        padding=padding.upper(),
        rhs_dilation=dilation,
        dimension_numbers=dn,
    )


def _patches_matmul(x, w, strides, padding, dilation, channels_last):
    """``conv(x, w)`` as patches(x) @ w: linear in ``w`` with a GEMM transpose."""
    rank = w.ndim - 2
    spatial = _SPATIAL[rank]
    if not channels_last:
        x = jnp.moveaxis(x, 1, -1)
    lhs = f"N{spatial}C"
    patches = jax.lax.conv_general_dilated_patches(
        x,
        filter_shape=w.shape[:rank],
        window_strides=strides,
        padding=padding.upper(),
        rhs_dilation=dilation,
        dimension_numbers=(lhs, f"{spatial}IO", lhs),
    )  # features ordered (C_in, *kernel)
    c_in, c_out = w.shape[-2], w.shape[-1]
    y = patches @ jnp.moveaxis(w, rank, 0).reshape(c_in * math.prod(w.shape[:rank]), c_out)
    return y if channels_last else jnp.moveaxis(y, -1, 1)


def recurrent_conv_input_grad(r: Array, dz: Array) -> Array:
    """The gradient of a recurrent convolution ``z = h ⊛ R`` (stride 1, "same",
    channels_last) with respect to ``h``, given ``dz (batch, *spatial, 4F)``: the
    transposed convolution, ``(batch, *spatial, F)``."""
    rank = r.ndim - 2
    args = ((1,) * rank, "same", (1,) * rank, True)
    h = jnp.zeros((*dz.shape[:-1], r.shape[-2]), dz.dtype)
    _, h_of = jax.vjp(lambda h: _conv_plain(h, r, *args), h)
    return h_of(dz)[0]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def _conv(x, w, strides, padding, dilation, channels_last):
    return _conv_plain(x, w, strides, padding, dilation, channels_last)


@_conv.defjvp
def _conv_jvp(strides, padding, dilation, channels_last, primals, tangents):
    x, w = primals
    x_dot, w_dot = tangents
    args = (strides, padding, dilation, channels_last)
    out = _conv_plain(x, w, *args)
    w_term = jax.checkpoint(_patches_matmul, static_argnums=(2, 3, 4, 5))(x, w_dot, *args)
    return out, _conv_plain(x_dot, w, *args) + w_term


@register
class ConvLSTMCell(DenseCellMixin, RNNCellBase):
    """Convolutional LSTM cell of rank 1, 2 or 3 (Keras 3 ``ConvLSTMCell``).

    Parameters (``nnx.Param``, Keras layout): ``kernel (*kernel_size, in_channels,
    4*filters)``, ``recurrent_kernel (*kernel_size, filters, 4*filters)``, ``bias
    (4*filters,)``; gate blocks i, f, c, o on the last axis. With ``⊛`` a convolution::

        z = (x ⊛ W; strides, padding, dilation_rate) + b + (h ⊛ R; stride 1, "same")
        i, f, c~, o = split(z, 4, channel axis)
        c' = σ(f) ⊙ c + σ(i) ⊙ act(c~)
        h' = σ(o) ⊙ act(c')

    σ = ``recurrent_activation`` (sigmoid), act = ``activation`` (tanh). States ``(h, c)``.

    Shapes (channels_last; channels_first puts the channel axis right after batch):
    a step input ``x_t (batch, *spatial_shape, in_channels)``; ``h``, ``c`` and the output
    ``(batch, *out_spatial, filters)`` with ``out_spatial`` the input convolution's
    output size (:func:`conv_output_length`: ``ceil(n / s)`` for "same").

    Args:
      rank: 1, 2 or 3.
      filters: output channels (the "units").
      kernel_size: int or tuple of ``rank`` ints.
      in_channels: channels of the input frames.
      spatial_shape: spatial size of the input frames (int or ``rank`` ints), checked at
        every call; None (the default): frames of any size, the state shape following each
        call's frames (as tf.keras 2 allows; Keras 3 fixes it at ``build``).
      strides, dilation_rate: ints or tuples of ``rank`` ints for the input convolution;
        strides > 1 together with dilation_rate > 1 is refused, as Keras does.
      padding: "valid" or "same" (case-insensitive) for the input convolution; the
        recurrent convolution is always stride 1, "same", undilated (Keras).
      data_format: "channels_last" (default, also for None) or "channels_first".
      activation, recurrent_activation, use_bias, kernel_initializer,
        recurrent_initializer, bias_initializer, unit_forget_bias, regularizers,
        constraints, seed, dtype, param_dtype: as :class:`jrnn.LSTMCell`.
      dropout, recurrent_dropout: rates in [0, 1) (Keras clips out-of-range rates; jrnn
        refuses them). Training draws 4 inverted-dropout masks of the step input's shape
        and 4 of ``h``'s (one per gate), once per call, as Keras.
      rngs: ``nnx.Rngs`` for initialisation (``params``) and dropout.

    Call (Flax protocol): ``(h, c), y = cell((h, c), x_t)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> cell = jrnn.ConvLSTMCell(2, 4, 3, in_channels=2, spatial_shape=(6, 5),
      ...                          rngs=nnx.Rngs(0))
      >>> cell.kernel.shape, cell.recurrent_kernel.shape, cell.bias.shape
      ((3, 3, 2, 16), (3, 3, 4, 16), (16,))
      >>> (h, c), y = cell(cell.initialize_carry(2), jnp.ones((2, 6, 5, 2)))
      >>> y.shape
      (2, 4, 3, 4)
    """

    gate_names = ("i", "f", "c", "o")
    dropout_mask_count = 4

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
        self.rank = _checks.one_of(rank, "rank", (1, 2, 3), self)
        self.filters = self.units = _checks.positive_int(filters, "filters", self)
        self.in_channels = _checks.positive_int(in_channels, "in_channels", self)
        self.kernel_size = _checks.int_tuple(kernel_size, rank, "kernel_size", self)
        self.strides = _checks.int_tuple(strides, rank, "strides", self)
        self.dilation_rate = _checks.int_tuple(dilation_rate, rank, "dilation_rate", self)
        self.spatial_shape = (
            None
            if spatial_shape is None
            else _checks.int_tuple(spatial_shape, rank, "spatial_shape", self)
        )
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{_checks.where(self)}: `strides` > 1 together with `dilation_rate` > 1 is not "
                "supported (Keras refuses it too); pass strides=1 or dilation_rate=1. Received "
                f"strides={self.strides}, dilation_rate={self.dilation_rate}."
            )
        self.padding = _checks.lowercase_one_of(padding, "padding", ("valid", "same"), self)
        self.data_format = _checks.data_format(data_format, self)
        _checks.rngs(rngs, self)
        self.activation = resolve_activation(activation, "activation", self)
        self.recurrent_activation = resolve_activation(
            recurrent_activation, "recurrent_activation", self
        )
        self.use_bias = _checks.boolean(use_bias, "use_bias", self)
        self.unit_forget_bias = _checks.boolean(unit_forget_bias, "unit_forget_bias", self)
        self.dropout = _checks.rate(dropout, "dropout", self)
        self.recurrent_dropout = _checks.rate(recurrent_dropout, "recurrent_dropout", self)
        self.policy = resolve_policy(dtype, param_dtype, _checks.where(self))
        set_regularizers_and_constraints(self, locals())
        self._set_shapes(self.spatial_shape)
        f = self.filters
        bias_init = resolve_initializer(bias_initializer, "bias_initializer", self)
        if self.use_bias and self.unit_forget_bias:
            bias_init = initializers_lib.unit_forget_bias(bias_init, f)
        self._create_dense_params(
            rngs=rngs,
            kernel_shape=(*self.kernel_size, self.in_channels, 4 * f),
            recurrent_shape=(*self.kernel_size, f, 4 * f),
            bias_shape=(4 * f,) if self.use_bias else None,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_init,
        )
        self._init_dropout_rngs(rngs, seed)

    def _set_shapes(self, spatial: tuple[int, ...] | None, what: str = "`spatial_shape`") -> None:
        """``input_shape``, ``state_shapes`` and ``output_shape`` for frames of size
        ``spatial`` (None: unknown, each size None, bound per call by :meth:`bound_to`)."""
        channels_last = self.data_format == "channels_last"
        if spatial is None:
            frame, out_spatial = (None,) * self.rank, (None,) * self.rank
        else:
            frame = spatial
            out_spatial = tuple(
                conv_output_length(n, k, s, self.padding, d)
                for n, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate)
            )
            if any(not jax.export.is_symbolic_dim(n) and n < 1 for n in out_spatial):
                raise ValueError(
                    f"{_checks.where(self)}: {what} {spatial} is too small for "
                    f"kernel_size={self.kernel_size} with padding='valid' (output "
                    f"{out_spatial})."
                )
        shapes = {
            "input_shape": (*frame, self.in_channels)
            if channels_last
            else (self.in_channels, *frame),
            "output_shape": (*out_spatial, self.filters)
            if channels_last
            else (self.filters, *out_spatial),
        }
        shapes["state_shapes"] = (shapes["output_shape"],) * 2
        for name, value in shapes.items():  # also inside a transformation's trace
            object.__setattr__(self, name, value)

    @contextlib.contextmanager
    def bound_to(self, features: tuple[int, ...]):
        """Within the block, the cell's shapes are those of frames ``features`` (one step's
        shape without batch) when it was built without ``spatial_shape``; a cell built
        with one is unchanged (its calls check the frames against it). Inputs of another
        rank or channel count leave it unbound, for the call's own check to refuse."""
        features = tuple(features)
        channel_axis = -1 if self.data_format == "channels_last" else 0
        if (
            self.spatial_shape is not None
            or len(features) != self.rank + 1
            or features[channel_axis] != self.in_channels
        ):
            yield self
            return
        spatial = tuple(features[:-1] if self.data_format == "channels_last" else features[1:])
        try:
            self._set_shapes(spatial, "the input frames' size")  # refuses too small frames
            yield self
        finally:
            self._set_shapes(None)

    @property
    def native_kernel(self) -> str | None:  # type: ignore[override]
        """``"conv_lstm"`` with Keras' default activations and channels_last (what the
        native kernel computes; float32)."""
        default = self._default_gate_activations and self.data_format == "channels_last"
        return "conv_lstm" if default else None

    @property
    def _channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else -(self.rank + 1)

    def _conv_gates(self, x: Array, w: Array, masks: Array | None, **conv_args) -> Array:
        """Convolve ``x (..., batch, *frame)``; per-gate masks give one conv per gate."""
        frame = x.shape[-(self.rank + 1) :]
        lead = x.shape[: -(self.rank + 1)]
        channels_last = self.data_format == "channels_last"
        if masks is None:
            flat = x.reshape(-1, *frame)
            out = conv(flat, w, channels_last=channels_last, **conv_args)
            return out.reshape(*lead, *out.shape[1:])
        outs = []
        for g, w_g in enumerate(jnp.split(w, 4, axis=-1)):
            flat = (x * masks[g]).reshape(-1, *frame)
            out = conv(flat, w_g, channels_last=channels_last, **conv_args)
            outs.append(out.reshape(*lead, *out.shape[1:]))
        return jnp.concatenate(outs, axis=self._channel_axis)

    def project_inputs(self, params: dict[str, Array], x: Array, input_masks: Any) -> Array:
        """Input convolution plus bias, for one step or a whole time-major sequence.

        ``x (..., batch, *frame)`` -> ``(..., batch, *state)`` with ``4*filters``
        channels (gate blocks i, f, c, o). Leading axes are folded into the batch, so a
        sequence ``(time, batch, ...)`` is one convolution over ``time * batch`` frames.
        ``input_masks``: None or ``(4, batch, *frame)`` (one dropout mask per gate).
        """
        z = self._conv_gates(
            x,
            params["kernel"],
            input_masks,
            strides=self.strides,
            padding=self.padding,
            dilation=self.dilation_rate,
        )
        if params["bias"] is not None:
            shape = [1] * z.ndim
            shape[self._channel_axis] = -1
            z = z + params["bias"].reshape(shape)
        return z

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        """One ConvLSTM step: the recurrent convolution (stride 1, "same") of ``h``, then
        the LSTM update; ``((h', c'), h', activations)`` with activations ``i, f,
        c_tilde, o, c, h``, each ``(batch, *state)``."""
        del constants
        h, c = carry
        rz = self._conv_gates(
            h,
            params["recurrent_kernel"],
            recurrent_masks,
            strides=(1,) * self.rank,
            padding="same",
            dilation=(1,) * self.rank,
        )
        return lstm_update(
            x_projected + rz,
            c,
            activation=self.activation,
            recurrent_activation=self.recurrent_activation,
            axis=self._channel_axis,
        )


__all__ = ["ConvLSTMCell", "conv", "conv_output_length"]
