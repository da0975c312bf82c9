"""IndRNN (Li et al., 2018) as titu1994/Keras-IndRNN implements it (the IndRNN see-rnn inspects).

``h' = act(x W + u ⊙ h + b)`` with kernel ``W (in, u)`` (stored in files as
``input_kernel``), a recurrent *vector* ``u (units,)`` and bias ``b (units,)``; state
``(h,)``. The recurrent vector is clipped in the forward pass (the stored parameter stays
raw, as Keras-IndRNN's ``get_weights`` returns it):

* ``recurrent_clip_min``/``recurrent_clip_max`` None: no clipping;
* either equal to -1: ``clip_min = 0``, ``clip_max = 2 ** (1 / timesteps)``;
* ``clip_min != 0``: ``u = sign(u) * max(|u|, |clip_min|)`` first;
* then ``u = clip(u, clip_min, clip_max)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from flax import nnx

from jrnn import _checks
from jrnn import initializers as initializers_lib
from jrnn._config import capture, register
from jrnn.cells.base import Array, DenseCellMixin, RNNCellBase, common_cell_args, dense_projection


def indrnn_step(
    params: dict[str, Array],
    carry: tuple[Array],
    x_projected: Array,
    recurrent_masks: Array | None,
    *,
    activation: Callable[[Array], Array],
) -> tuple[tuple[Array], Array, dict[str, Array]]:
    """One IndRNN step: ``h' = act(x_projected + u ⊙ h)`` (``u`` already clipped)."""
    (h,) = carry
    if recurrent_masks is not None:
        h = h * recurrent_masks
    h_new = activation(x_projected + params["recurrent_kernel"] * h)
    return (h_new,), h_new, {"h": h_new}


def clip_recurrent_kernel(
    u: Array, clip_min: float | None, clip_max: float | None, timesteps: int | None
) -> Array:
    """Keras-IndRNN's forward-pass clipping of the recurrent vector (see module docstring)."""
    if clip_min is None or clip_max is None:
        return u
    if clip_min == -1 or clip_max == -1:
        clip_min, clip_max = 0.0, 2.0 ** (1.0 / timesteps) if timesteps else 1.0
    if clip_min:
        u = jnp.sign(u) * jnp.maximum(jnp.abs(u), jnp.asarray(abs(clip_min), u.dtype))
    return jnp.clip(u, jnp.asarray(clip_min, u.dtype), jnp.asarray(clip_max, u.dtype))


@register
class IndRNNCell(DenseCellMixin, RNNCellBase):
    """Independently recurrent cell (titu1994/Keras-IndRNN ``IndRNNCell``).

    Parameters: ``kernel (in_features, units)``, ``recurrent_kernel (units,)``,
    ``bias (units,)``.

    Args:
      units, in_features: sizes.
      recurrent_clip_min, recurrent_clip_max: clip range of the recurrent vector (cell
        defaults -2 and 2; -1 derives it from the number of timesteps; None disables).
      activation: relu by default.
      recurrent_initializer: None means ``RandomUniform(-v, v)`` with
        ``v = min(clip_max, 1)`` (1 without clipping or with the -1 rule), as Keras-IndRNN.
      timesteps: the sequence length the -1 rule uses; None takes each call's length
        (Keras-IndRNN fixes it from the declared input length at build).
      other arguments: as :class:`jrnn.SimpleRNNCell` (one input and one recurrent dropout
        mask).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> cell = jrnn.IndRNNCell(4, 3, rngs=nnx.Rngs(0))
      >>> (h,), y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> cell.recurrent_kernel.shape, y.shape
      ((4,), (2, 4))
    """

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        recurrent_clip_min: float | None = -2,
        recurrent_clip_max: float | None = 2,
        activation: Any = "relu",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = None,
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        timesteps: int | None = None,
        implementation: int = 2,
        seed: int | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        self.name = name
        common_cell_args(self, locals())
        if implementation != 2:
            raise ValueError(
                f"IndRNNCell: only `implementation=2` exists; received {implementation!r}."
            )
        if recurrent_clip_min is None or recurrent_clip_max is None:
            recurrent_clip_min = recurrent_clip_max = None
        self.recurrent_clip_min = recurrent_clip_min
        self.recurrent_clip_max = recurrent_clip_max
        self.timesteps = (
            None if timesteps is None else _checks.positive_int(timesteps, "timesteps", self)
        )
        self.use_bias = _checks.boolean(use_bias, "use_bias", self)
        self.state_shapes = ((self.units,),)
        if recurrent_initializer is None:
            v = 1.0
            if recurrent_clip_max is not None and -1 not in (
                recurrent_clip_min,
                recurrent_clip_max,
            ):
                v = min(recurrent_clip_max, 1.0)
            recurrent_initializer = initializers_lib.RandomUniform(-v, v)
        self._create_dense_params(
            rngs=rngs,
            kernel_shape=(self.in_features, self.units),
            recurrent_shape=(self.units,),
            bias_shape=(self.units,) if self.use_bias else None,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
        )
        self._init_dropout_rngs(rngs, seed)

    def params_for_length(self, time: int) -> dict[str, Array]:
        """Parameters with the recurrent vector clipped for a ``time``-step call."""
        dt = self.policy.compute_dtype
        u = clip_recurrent_kernel(
            self.recurrent_kernel[...],
            self.recurrent_clip_min,
            self.recurrent_clip_max,
            self.timesteps or time,
        )
        return {
            "kernel": self.kernel[...].astype(dt),
            "recurrent_kernel": u.astype(dt),
            "bias": None if self.bias is None else self.bias[...].astype(dt),
        }

    def params(self) -> dict[str, Array]:
        """Parameters for one step (the -1 rule uses ``timesteps``, else 1.0 as Keras-IndRNN)."""
        return self.params_for_length(self.timesteps or 0)

    def project_inputs(self, params: dict[str, Array], x: Array, input_masks: Any) -> Array:
        """``x W + b``: ``(..., batch, in)`` -> ``(..., batch, u)``."""
        return dense_projection(x, params["kernel"], params["bias"], input_masks, 1)

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        """One IndRNN step (:func:`indrnn_step`)."""
        del constants
        return indrnn_step(params, carry, x_projected, recurrent_masks, activation=self.activation)


__all__ = ["IndRNNCell", "clip_recurrent_kernel", "indrnn_step"]
