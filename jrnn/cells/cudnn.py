"""Keras 2's CuDNNLSTM / CuDNNGRU weights, computed exactly as Keras 2 converts them.

The CuDNN layers store each gate's cuDNN matrix row-major in a Keras-shaped slot
(``keras/layers/cudnn_recurrent.py`` @2.2.4 flattens blocks with no transpose), gates in
Keras order. Keras 2's ``_convert_rnn_weights`` maps them to LSTM / GRU(reset_after=True):

* input kernel, per gate block ``k (in, u)``: ``k.T.reshape((in, u), order="F")``, i.e.
  ``k.reshape(u, in).T``;
* recurrent kernel, per gate block: ``k.T``;
* LSTM bias ``(8u,)`` = input biases then recurrent biases: their sum;
* GRU bias ``(6u,)``: ``reshape(2, 3u)`` (row 0 input, row 1 recurrent).

The cells keep the CuDNN layout as their parameters and convert in ``params()`` (once per
call, outside the time loop), then run :func:`jrnn.cells.lstm.lstm_step` /
:func:`jrnn.cells.gru.gru_step` with tanh/sigmoid, as cuDNN does.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
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
    resolve_initializer,
)
from jrnn.cells.gru import gru_step
from jrnn.cells.lstm import lstm_step


def cudnn_kernel_to_keras(kernel: Array, gates: int) -> Array:
    """Input kernel ``(in, gates*u)`` in the CuDNN layer's layout -> Keras layout.

    Per gate block ``k (in, u)``: ``k.reshape(u, in).T``, which is Keras 2's
    ``k.T.reshape(k.shape, order="F")``.
    """
    n_in, width = kernel.shape
    u = width // gates
    blocks = [kernel[:, g * u : (g + 1) * u].reshape(u, n_in).T for g in range(gates)]
    return jnp.concatenate(blocks, axis=1)


def cudnn_recurrent_to_keras(recurrent_kernel: Array, gates: int) -> Array:
    """Recurrent kernel ``(u, gates*u)`` in the CuDNN layer's layout -> Keras layout
    (each ``(u, u)`` gate block transposed)."""
    u = recurrent_kernel.shape[0]
    blocks = [recurrent_kernel[:, g * u : (g + 1) * u].T for g in range(gates)]
    return jnp.concatenate(blocks, axis=1)


class _CuDNNCell(DenseCellMixin, RNNCellBase):
    gates: int = 4

    def _setup(self, arguments: dict[str, Any], bias_shape: tuple[int, ...], bias_init: Any):
        rngs = arguments["rngs"]
        self.name = _checks.name(arguments["name"], self)
        common_cell_args(self, {**arguments, "activation": "tanh"})
        self.recurrent_activation = activations_lib.sigmoid
        self.use_bias = True
        u = self.units
        self._create_dense_params(
            rngs=rngs,
            kernel_shape=(self.in_features, self.gates * u),
            recurrent_shape=(u, self.gates * u),
            bias_shape=bias_shape,
            kernel_initializer=arguments["kernel_initializer"],
            recurrent_initializer=arguments["recurrent_initializer"],
            bias_initializer=bias_init,
        )
        self._init_dropout_rngs(rngs, None)

    def keras_equivalent_weights(self) -> list[Array]:
        """The equivalent Keras ``LSTM`` / ``GRU(reset_after=True)`` weights, as Keras 2's
        ``_convert_rnn_weights`` makes them: ``[kernel (in, gu), recurrent_kernel (u, gu),
        bias]`` with the LSTM bias ``(4u,)`` the sum of the two halves and the GRU bias
        ``(2, 3u)`` (row 0 input, row 1 recurrent), in the compute dtype."""
        p = self.params()
        bias = p["bias"] if self.gates == 4 else jnp.stack([p["input_bias"], p["recurrent_bias"]])
        return [p["kernel"], p["recurrent_kernel"], bias]

    def _converted(self) -> tuple[Array, Array, Array]:
        kernel = cudnn_kernel_to_keras(self.kernel[...], self.gates)
        recurrent = cudnn_recurrent_to_keras(self.recurrent_kernel[...], self.gates)
        return kernel, recurrent, self.bias[...]


@register
class CuDNNLSTMCell(_CuDNNCell):
    """Keras 2 ``CuDNNLSTM``'s weights and maths as a cell.

    Parameters (the CuDNN layer's layout, gate blocks i, f, c, o):
    ``kernel (in_features, 4u)`` (each block a cuDNN ``(u, in)`` matrix stored row-major),
    ``recurrent_kernel (u, 4u)`` (each block transposed), ``bias (8u,)`` = input biases
    ``b_x`` then recurrent biases ``b_h``. With ``W``, ``R`` the Keras-layout matrices
    (:meth:`keras_equivalent_weights`)::

        z = x W + b_x + h R + b_h;     i, f, c~, o = split(z, 4)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(c~);   h' = sigmoid(o) * tanh(c')

    State ``(h, c)``. tanh/sigmoid are fixed; no dropout (as the Keras 2 layer).

    Args:
      units, in_features: sizes.
      kernel_initializer, recurrent_initializer, bias_initializer: applied to the stored
        ``(in, 4u)``, ``(u, 4u)`` and ``(8u,)`` arrays, as Keras 2.
      unit_forget_bias: ones in the recurrent forget block ``bias[5u:6u]`` only (Keras
        2.2.4 ``CuDNNLSTM.build``), ``bias_initializer`` elsewhere.
      regularizers, constraints, dtype, param_dtype, name, rngs: as :class:`jrnn.LSTMCell`.

    Example:
      >>> from flax import nnx
      >>> import jrnn
      >>> cell = jrnn.CuDNNLSTMCell(4, 3, rngs=nnx.Rngs(0))
      >>> cell.bias.shape, float(cell.bias[20:24].sum()), float(cell.bias[...].sum())
      ((32,), 4.0, 4.0)
    """

    gates = 4
    gate_names = ("i", "f", "c", "o")
    native_kernel = "lstm"

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
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        self.name = _checks.name(name, self)
        self.unit_forget_bias = _checks.boolean(unit_forget_bias, "unit_forget_bias", self)
        base = resolve_initializer(bias_initializer, "bias_initializer", self)
        bias_init = base
        if self.unit_forget_bias:

            def bias_init(key, shape, dtype=jnp.float32):  # Keras 2.2.4 CuDNNLSTM.build
                k1, k2 = jax.random.split(key)
                return jnp.concatenate(
                    [
                        base(k1, (5 * units,), dtype),
                        jnp.ones((units,), dtype),
                        base(k2, (2 * units,), dtype),
                    ]
                )

        self._setup(dict(locals(), units=units, in_features=in_features), (8 * units,), bias_init)
        self.state_shapes = ((self.units,), (self.units,))

    def params(self, *, cast: bool = True) -> dict[str, Array]:
        """Keras-layout kernel, recurrent kernel and summed bias, in the compute dtype
        unless ``cast=False``."""
        kernel, recurrent, bias = self._converted()
        u4 = 4 * self.units
        params = {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias[:u4] + bias[u4:]}
        return self.cast_params(params) if cast else params

    def project_inputs(self, params, x, input_masks):
        """``x W + b``: ``(..., batch, in)`` -> ``(..., batch, 4u)``."""
        return dense_projection(x, params["kernel"], params["bias"], input_masks, 4)

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        """One LSTM step with tanh/sigmoid."""
        del constants
        return lstm_step(
            params,
            carry,
            x_projected,
            recurrent_masks,
            activation=activations_lib.tanh,
            recurrent_activation=activations_lib.sigmoid,
        )


@register
class CuDNNGRUCell(_CuDNNCell):
    """Keras 2 ``CuDNNGRU``'s weights and maths as a cell (reset-after GRU).

    Parameters (the CuDNN layer's layout, gate blocks z, r, h):
    ``kernel (in_features, 3u)`` (each block a cuDNN ``(u, in)`` matrix stored row-major),
    ``recurrent_kernel (u, 3u)`` (each block transposed), ``bias (6u,)`` = input biases
    ``b_x`` then recurrent biases ``b_h``. With ``W``, ``R`` the Keras-layout matrices
    (:meth:`keras_equivalent_weights`; Keras' ``GRU(reset_after=True)`` bias is ``[b_x; b_h]``)::

        zx, rx, hx = split(x W + b_x, 3);   zh, rh, hh = split(h R + b_h, 3)
        z = sigmoid(zx + zh);  r = sigmoid(rx + rh);  h~ = tanh(hx + r * hh)
        h' = z * h + (1 - z) * h~

    State ``(h,)``. tanh/sigmoid are fixed; no dropout (as the Keras 2 layer).

    Args:
      units, in_features: sizes.
      kernel_initializer, recurrent_initializer, bias_initializer: applied to the stored
        ``(in, 3u)``, ``(u, 3u)`` and ``(6u,)`` arrays, as Keras 2.
      regularizers, constraints, dtype, param_dtype, name, rngs: as :class:`jrnn.GRUCell`.

    Example:
      >>> from flax import nnx
      >>> import jrnn
      >>> cell = jrnn.CuDNNGRUCell(4, 3, rngs=nnx.Rngs(0))
      >>> cell.bias.shape, [w.shape for w in cell.keras_equivalent_weights()]
      ((24,), [(3, 12), (4, 12), (2, 12)])
    """

    gates = 3
    gate_names = ("z", "r", "h")
    native_kernel = "gru"

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
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        self._setup(
            dict(locals(), units=units, in_features=in_features), (6 * units,), bias_initializer
        )
        self.state_shapes = ((self.units,),)

    def params(self, *, cast: bool = True) -> dict[str, Array]:
        """Keras-layout kernels and the (input, recurrent) bias rows, in the compute dtype
        unless ``cast=False``."""
        kernel, recurrent, bias = self._converted()
        u3 = 3 * self.units
        params = {
            "kernel": kernel,
            "recurrent_kernel": recurrent,
            "input_bias": bias[:u3],
            "recurrent_bias": bias[u3:],
        }
        return self.cast_params(params) if cast else params

    def project_inputs(self, params, x, input_masks):
        """``x W + b_input``: ``(..., batch, in)`` -> ``(..., batch, 3u)``."""
        return dense_projection(x, params["kernel"], params["input_bias"], input_masks, 3)

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        """One reset-after GRU step with tanh/sigmoid."""
        del constants
        return gru_step(
            params,
            carry,
            x_projected,
            recurrent_masks,
            reset_after=True,
            activation=activations_lib.tanh,
            recurrent_activation=activations_lib.sigmoid,
        )


__all__ = ["CuDNNGRUCell", "CuDNNLSTMCell", "cudnn_kernel_to_keras", "cudnn_recurrent_to_keras"]
