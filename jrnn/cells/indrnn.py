"""IndRNN (Li et al., 2018) as titu1994/Keras-IndRNN implements it (the IndRNN see-rnn inspects).

Source: ``ind_rnn.py`` at titu1994/Keras-IndRNN HEAD ``e5f1da3`` (the tf.keras port). One
step, with kernel ``W (in, u)`` (its weight file names it ``input_kernel``; jrnn stores it
as ``kernel``), a recurrent *vector* ``u (units,)`` and bias ``b (units,)``::

    h' = act(x W + u ⊙ h + b)          (act = relu by default; state (h,), output h')

The recurrent vector is clipped in the forward pass; the stored parameter stays raw, as
Keras-IndRNN's ``get_weights`` returns the raw variable:

1. ``recurrent_clip_min`` or ``recurrent_clip_max`` None: no clipping (both become None).
2. Either equal to -1: ``clip_min = 0`` and ``clip_max = 2 ** (1 / timesteps)``.
   Keras-IndRNN takes ``timesteps`` from the input shape at build (``IndRNN.build``) and
   uses ``clip_max = 1.0`` with a warning when it is unknown. jrnn knows the length of
   every call, so a layer (or a ``jrnn.RNN`` stack) uses the call's length unless the
   cell was built with ``timesteps=``; only a single-step call (``cell(carry, x_t)``),
   which cannot know the length, falls back to Keras-IndRNN's 1.0. Keras-IndRNN writes
   the resolved numbers into the saved config, so imported models carry explicit bounds.
3. ``clip_min != 0``: ``u = sign(u) * max(|u|, |clip_min|)``.
4. ``u = clip(u, clip_min, clip_max)`` with Keras' ``K.clip``: ``clip_max < clip_min``
   means ``clip_max = clip_min``.

Gradients follow TensorFlow's: ``clip`` passes the gradient inside ``[clip_min,
clip_max]`` (bounds included) and none outside, and step 3 passes it where
``|u| >= |clip_min|`` (TF's ``maximum`` gives ties to its first argument).

Dropout: one input mask and one recurrent mask per call, reused at every step (inverted
dropout). Keras-IndRNN multiplies by ``dp_mask[0]``, the first sample's row of a
``(batch, features)`` mask, so every sample shares one mask; jrnn draws one mask per
sample, as Keras' ``SimpleRNNCell`` does.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
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
    """One IndRNN step: ``h' = act(x_projected + u ⊙ h)``.

    Args:
      params: ``{"recurrent_kernel": (u,)}``, already clipped (other entries ignored).
      carry: ``(h,)`` with ``h (batch, u)``.
      x_projected: ``x W + b``, ``(batch, u)``.
      recurrent_masks: None or a ``(batch, u)`` recurrent dropout mask applied to ``h``.

    Returns:
      ``((h',), h', {"h": h'})``.
    """
    (h,) = carry
    if recurrent_masks is not None:
        h = h * recurrent_masks
    h_new = activation(x_projected + params["recurrent_kernel"] * h)
    return (h_new,), h_new, {"h": h_new}


def resolve_clip_range(
    clip_min: float | None, clip_max: float | None, timesteps: int | None
) -> tuple[float, float] | None:
    """The ``(clip_min, clip_max)`` Keras-IndRNN clips with, or None for no clipping.

    ``-1`` in either bound gives ``(0, 2 ** (1 / timesteps))`` (``(0, 1)`` when
    ``timesteps`` is None, as Keras-IndRNN); ``clip_max < clip_min`` gives
    ``clip_max = clip_min`` (``K.clip``).

    Example:
      >>> from jrnn.cells.indrnn import resolve_clip_range
      >>> [resolve_clip_range(*bounds, 4) for bounds in [(-1, -1), (-2, 2), (0.5, 0.2)]]
      [(0.0, 1.189207115002721), (-2.0, 2.0), (0.5, 0.5)]
    """
    if clip_min is None or clip_max is None:
        return None
    if clip_min == -1 or clip_max == -1:
        if jax.export.is_symbolic_dim(timesteps):  # jax.export's symbolic time: traced
            return 0.0, jnp.exp2(1.0 / jnp.asarray(timesteps, jnp.float32))
        return 0.0, (2.0 ** (1.0 / int(timesteps)) if timesteps else 1.0)
    return float(clip_min), float(max(clip_max, clip_min))


def clip_recurrent_kernel(
    u: Array, clip_min: float | None, clip_max: float | None, timesteps: int | None
) -> Array:
    """Keras-IndRNN's forward-pass clipping of the recurrent vector ``u (units,)``.

    Values and gradients equal TensorFlow's ``K.sign(u) * K.maximum(K.abs(u), |clip_min|)``
    (when ``clip_min != 0``) followed by ``K.clip(u, clip_min, clip_max)``; see the module
    docstring for the rules and :func:`resolve_clip_range` for the bounds.

    Example:
      >>> import jax.numpy as jnp
      >>> from jrnn.cells.indrnn import clip_recurrent_kernel
      >>> clip_recurrent_kernel(jnp.array([-3.0, -0.1, 0.0, 0.1, 3.0]), -0.5, 1.0, None)
      Array([-0.5, -0.5,  0. ,  0.5,  1. ], dtype=float32)
    """
    bounds = resolve_clip_range(clip_min, clip_max, timesteps)
    if bounds is None:
        return u
    lo, hi = bounds
    if lo:
        floor = abs(lo)
        u = jnp.where(jnp.abs(u) >= floor, u, jnp.sign(u) * floor)
    hi = hi.astype(u.dtype) if isinstance(hi, jax.Array) else hi  # symbolic time's bound
    return jnp.where(u < lo, lo, jnp.where(u > hi, hi, u)).astype(u.dtype)


def _check_clip(value: Any, argument: str, owner: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ValueError(
            f"{_checks.where(owner)}: `{argument}` must be None, -1 or a real number; "
            f"received {value!r}."
        )
    return value


@register
class IndRNNCell(DenseCellMixin, RNNCellBase):
    """Independently recurrent cell (titu1994/Keras-IndRNN ``IndRNNCell``).

    ``h' = act(x W + u ⊙ h + b)`` with the recurrent vector ``u`` clipped in the forward
    pass (rules in :mod:`jrnn.cells.indrnn`).

    Parameters: ``kernel (in_features, units)`` (``input_kernel`` in Keras-IndRNN files),
    ``recurrent_kernel (units,)``, ``bias (units,)``.

    Args:
      units: width of ``h``.
      in_features: width of ``x_t``.
      recurrent_clip_min, recurrent_clip_max: clip range of the recurrent vector (cell
        defaults -2 and 2, as Keras-IndRNN's cell; -1 derives it from the number of
        timesteps; None in either disables clipping).
      activation: relu by default.
      use_bias: whether ``b`` exists.
      kernel_initializer, bias_initializer: as Keras (glorot_uniform, zeros).
      recurrent_initializer: None means ``RandomUniform(-v, v)`` with
        ``v = min(clip_max, 1)`` after the -1 rule (so 1 with it, and 1 without clipping),
        as Keras-IndRNN's ``build``.
      dropout, recurrent_dropout: rates of the input mask and the recurrent-state mask
        (one mask each per call).
      timesteps: the sequence length the -1 rule uses; None takes each call's length.
      implementation: only 2 exists (Keras-IndRNN warns and uses 2 for other values;
        jrnn refuses them).
      seed, dtype, param_dtype, regularizers, constraints, name, rngs: as
        :class:`jrnn.SimpleRNNCell`.

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
        self.name = _checks.name(name, self)
        common_cell_args(self, locals())
        if implementation != 2 or isinstance(implementation, bool):
            raise ValueError(
                f"{_checks.where(self)}: `implementation` must be 2 (the only IndRNN "
                f"implementation); received {implementation!r}."
            )
        self.implementation = 2
        recurrent_clip_min = _check_clip(recurrent_clip_min, "recurrent_clip_min", self)
        recurrent_clip_max = _check_clip(recurrent_clip_max, "recurrent_clip_max", self)
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
            bounds = resolve_clip_range(recurrent_clip_min, recurrent_clip_max, self.timesteps)
            v = 1.0 if bounds is None else min(bounds[1], 1.0)
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

    def clip_range(self, time: int | None = None) -> tuple[float, float] | None:
        """The ``(clip_min, clip_max)`` used for a call on ``time`` steps (None: no clip).

        ``timesteps=`` (if given) wins over ``time``; with neither, the -1 rule gives
        Keras-IndRNN's ``(0, 1)``.
        """
        return resolve_clip_range(
            self.recurrent_clip_min, self.recurrent_clip_max, self.timesteps or time
        )

    def params_for_length(self, time: int | None, *, cast: bool = True) -> dict[str, Array]:
        """Parameters with the recurrent vector clipped for a call on ``time`` steps
        (:meth:`clip_range`), in the compute dtype unless ``cast=False``."""
        u = clip_recurrent_kernel(
            self.recurrent_kernel[...],
            self.recurrent_clip_min,
            self.recurrent_clip_max,
            self.timesteps or time,
        )
        params = {
            "kernel": self.kernel[...],
            "recurrent_kernel": u,
            "bias": None if self.bias is None else self.bias[...],
        }
        return self.cast_params(params) if cast else params

    def params(self, *, cast: bool = True) -> dict[str, Array]:
        """Parameters for a single-step call: the -1 rule uses ``timesteps``, or 1.0 as
        Keras-IndRNN when it is unknown (layers pass the call's length instead)."""
        return self.params_for_length(None, cast=cast)

    def project_inputs(self, params: dict[str, Array], x: Array, input_masks: Any) -> Array:
        """``x W + b``: ``(..., batch, in)`` -> ``(..., batch, u)``."""
        return dense_projection(x, params["kernel"], params["bias"], input_masks, 1)

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        """One IndRNN step (:func:`indrnn_step`)."""
        del constants
        return indrnn_step(params, carry, x_projected, recurrent_masks, activation=self.activation)


__all__ = ["IndRNNCell", "clip_recurrent_kernel", "indrnn_step", "resolve_clip_range"]
