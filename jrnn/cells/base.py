"""The cell protocol shared by every jrnn recurrent cell.

A cell is a thin :class:`flax.nnx.Module` that holds parameters in Keras' layout and
names. The maths is split in two pure pieces so that the one scan driver
(:func:`jrnn.rnn.rnn_scan`) can hoist the input side out of the time loop:

* ``project_inputs(params, x, input_masks)`` maps inputs ``(..., batch, *features)`` to
  per-step pre-activations ``(..., batch, P)``. It works on a whole sequence at once
  (one GEMM over all timesteps) or on a single step.
* ``step(params, carry, x_projected, recurrent_masks, constants=None)`` advances one
  timestep and returns ``(new_carry, output, activations)``, where ``activations`` is a
  dict of the step's internal values (gates, candidate, states) named as in Keras'
  equations. The driver keeps it only when asked (``record=True``); otherwise XLA removes it.

Cells also follow Flax's cell protocol: ``carry, y = cell(carry, x_t)`` and
``cell.initialize_carry(input_shape)``. Carries are tuples in Keras' state order:
LSTM ``(h, c)``, GRU/SimpleRNN/IndRNN ``(h,)``, StackedRNNCells a tuple of those.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrnn import _checks
from jrnn import activations as activations_lib
from jrnn import constraints as constraints_lib
from jrnn import initializers as initializers_lib
from jrnn import regularizers as regularizers_lib
from jrnn._config import Configurable
from jrnn._dtypes import DTypePolicy, resolve_policy

Array = jax.Array
Carry = Any


def _dim(size: Any) -> Any:
    """A batch size as a shape takes it: an int, or ``jax.export``'s symbolic dimension."""
    return size if jax.export.is_symbolic_dim(size) else int(size)


class RNNCellBase(Configurable, nnx.Module):
    """Base class of jrnn cells (see the module docstring for the protocol).

    Subclasses set in ``__init__``: ``units``, ``input_shape`` (features of one step,
    without batch), ``state_shapes`` (one shape per state, without batch),
    ``output_shape``, ``dropout``, ``recurrent_dropout``, ``policy``, and call
    :meth:`_init_dropout_rngs`. They implement :meth:`params`,
    :meth:`project_inputs` and :meth:`step`.
    """

    #: Whether :meth:`step` uses Keras-2 style ``constants`` (attention cells do).
    accepts_constants: bool = False
    #: Names of the gate blocks in Keras order (``("i", "f", "c", "o")`` for LSTM).
    gate_names: tuple[str, ...] = ()
    #: Number of dropout masks Keras draws per call for this cell configuration.
    dropout_mask_count: int = 1
    #: jrnn cells are built eagerly; kept for Keras-style code that checks it.
    built: bool = True
    #: The :mod:`jrnn.native` kernel whose recurrence equals :meth:`step` (``"lstm"``,
    #: ``"gru"``, ``"simple_rnn"`` or ``"conv_lstm"``), or None. The kernel runs from
    #: :meth:`params` (``kernel``, ``recurrent_kernel`` and the biases).
    native_kernel: str | None = None

    def native_overrides(self) -> str | None:
        """The method of this cell's class that replaces the maths :attr:`native_kernel`
        computes (``step`` or ``project_inputs`` overridden below the class that declares
        the kernel), as ``"Sub.step"``; None when the kernel equals :meth:`step`."""
        cls = type(self)
        owner = next((c for c in cls.__mro__ if "native_kernel" in vars(c)), RNNCellBase)
        for method in ("step", "project_inputs"):
            if getattr(cls, method) is not getattr(owner, method):
                defined = next(c for c in cls.__mro__ if method in vars(c))
                return f"{defined.__name__}.{method}"
        return None

    units: int
    input_shape: tuple[int, ...]
    state_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    policy: DTypePolicy

    @property
    def _default_gate_activations(self) -> bool:
        """Whether the cell has Keras' default tanh activation and sigmoid recurrent
        activation: what the gated native kernels compute."""
        return (
            getattr(self, "activation", None) is activations_lib.tanh
            and getattr(self, "recurrent_activation", None) is activations_lib.sigmoid
        )

    # ----------------------------------------------------------------- Keras-style views
    @property
    def state_size(self) -> int | list[int]:
        """Keras' ``state_size``: an int for one state, a list for several."""
        sizes = [s[-1] if len(s) == 1 else s for s in self.state_shapes]
        return sizes[0] if len(sizes) == 1 else sizes

    @property
    def output_size(self) -> int:
        """Keras' ``output_size`` (the last dimension of the output)."""
        return self.output_shape[-1]

    @property
    def compute_dtype(self) -> Any:
        """The dtype the maths runs in (Keras' ``compute_dtype``)."""
        return self.policy.compute_dtype

    @property
    def param_dtype(self) -> Any:
        """The dtype parameters are stored in (Keras' ``variable_dtype``)."""
        return self.policy.param_dtype

    # ----------------------------------------------------------------- protocol
    def params(self, *, cast: bool = True) -> dict[str, Array]:
        """Parameters as arrays (bias split as the step needs): in the compute dtype, or
        with ``cast=False`` in the variables' own dtype (:meth:`cast_params` casts them).
        A cell of one's own may leave ``cast`` out and return the compute dtype."""
        raise NotImplementedError(f"{type(self).__name__} must implement params()")

    def params_for_length(self, time: int | None, *, cast: bool = True) -> Any:
        """Parameters for a call on ``time`` steps (IndRNN derives its clip range from
        it); ``cast`` as in :meth:`params`."""
        del time
        if not cast and _takes_cast(type(self).params):
            return self.params(cast=False)
        return self.params()

    def cast_params(self, params: Any) -> Any:
        """``params`` with every float array in the compute dtype.

        Layers cast a mixed policy's float32 weights inside each step (as Keras 3 reads
        its variables at every step): the weights' gradients then accumulate over the
        steps in float32, not in the compute dtype, where a float16 sum overflows.
        """
        dtype = self.policy.compute_dtype
        return jax.tree_util.tree_map(lambda a: a.astype(dtype) if float_array(a) else a, params)

    def project_inputs(self, params: dict[str, Array], x: Array, input_masks: Any) -> Array:
        """Input-side pre-activations. Default: identity (no hoistable projection)."""
        del params
        if input_masks is not None:
            x = x * input_masks
        return x

    def step(
        self,
        params: dict[str, Array],
        carry: Carry,
        x_projected: Array,
        recurrent_masks: Any,
        constants: Any = None,
    ) -> tuple[Carry, Array, dict[str, Array]]:
        """One timestep: ``(new_carry, output, activations)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    @contextlib.contextmanager
    def bound_to(self, features: tuple[int, ...]):
        """A block in which the cell's shapes are those for step inputs of shape
        ``features`` (without batch). Cells whose shapes do not depend on the input are
        unchanged; a ConvLSTM cell built without ``spatial_shape`` takes the frames' size
        (layers bind their cell for each call)."""
        del features
        yield self

    # ----------------------------------------------------------------- carry / masks
    def initialize_carry(self, input_shape: tuple[int, ...] | int, rngs: Any = None) -> Carry:
        """Zero carry for a batch: ``input_shape`` is ``(batch, *features)`` or the batch
        size (a ConvLSTM cell built without ``spatial_shape`` needs the former)."""
        del rngs
        if isinstance(input_shape, (tuple, list)) and len(input_shape) > 1:
            with self.bound_to(tuple(input_shape[1:])):
                return self.initialize_carry(input_shape[0])
        batch = (
            input_shape[0]
            if isinstance(input_shape, (tuple, list)) and input_shape
            else input_shape
        )
        if not jax.export.is_symbolic_dim(batch) and (  # jax.export's symbolic batch
            isinstance(batch, (bool, np.bool_))
            or not isinstance(batch, numbers.Integral)
            or batch < 0
        ):
            raise ValueError(
                f"{_checks.where(self)}: `input_shape` must be the batch size or (batch, "
                f"*features); received {input_shape!r}."
            )
        if any(
            d is None
            for d in jax.tree_util.tree_leaves(self.state_shapes, is_leaf=lambda d: d is None)
        ):
            raise ValueError(
                f"{_checks.where(self)}: its state shapes {self.state_shapes} depend on the "
                "input frames: pass input_shape=(batch, *frame_shape), or build the cell with "
                "spatial_shape=."
            )
        return tuple(
            jnp.zeros((_dim(batch), *shape), self.policy.compute_dtype)
            for shape in self.state_shapes
        )

    def _init_dropout_rngs(self, rngs: nnx.Rngs | None, seed: int | None) -> None:
        """Keep a private dropout stream when the cell uses dropout (Keras' ``seed``)."""
        self.seed = seed = _checks.seed(seed, self)
        if self.dropout == 0.0 and self.recurrent_dropout == 0.0:
            self.dropout_rngs = nnx.data(None)
        elif seed is not None:
            self.dropout_rngs = nnx.Rngs(dropout=seed).dropout
        elif rngs is not None:
            self.dropout_rngs = rngs["dropout"].fork()
        else:
            raise ValueError(
                f"{_checks.where(self)}: `dropout`/`recurrent_dropout` need random numbers: pass "
                "`rngs=nnx.Rngs(...)` or `seed=`."
            )

    def _dropout_key(self, rngs: Any) -> Array:
        key = _checks.call_key(rngs, self)
        return self.dropout_rngs() if key is None else key

    def dropout_masks(self, batch: int, training: bool, rngs: Any = None) -> tuple[Any, Any]:
        """Draw the dropout masks for one layer call, as Keras does once per call.

        Returns ``(input_masks, recurrent_masks)``: each ``None`` (no dropout), an array
        ``(batch, *features)`` (one mask shared by all gates), or ``(count, batch, *features)``
        (one per gate block, Keras' ``implementation=1`` and ConvLSTM). Values are 0 or
        ``1/(1-rate)`` (inverted dropout).
        """
        if not training or (self.dropout == 0.0 and self.recurrent_dropout == 0.0):
            return None, None
        key = self._dropout_key(rngs)
        key_in, key_rec = jax.random.split(key)
        count = self.dropout_mask_count
        dtype = self.policy.compute_dtype
        in_masks = rec_masks = None
        if self.dropout > 0.0:
            in_masks = dropout_mask(key_in, self.dropout, count, (batch, *self.input_shape), dtype)
        if self.recurrent_dropout > 0.0:
            rec_masks = dropout_mask(
                key_rec, self.recurrent_dropout, count, (batch, *self.state_shapes[0]), dtype
            )
        return in_masks, rec_masks

    # ----------------------------------------------------------------- Flax protocol
    def __call__(
        self,
        carry: Carry,
        inputs: Array,
        *,
        training: bool = False,
        rngs: Any = None,
        constants: Any = None,
    ) -> tuple[Carry, Array]:
        """One step, Flax's cell protocol: ``new_carry, y = cell(carry, x_t)``.

        Args:
          carry: tuple of states, each ``(batch, *state_shape)`` (LSTM ``(h, c)``).
          inputs: ``(batch, *features)``.
          training: apply dropout (masks drawn for this one step).
          rngs: optional ``nnx.Rngs``/stream/key for dropout.
          constants: Keras-2 constants, for cells with ``accepts_constants``.

        Returns:
          ``(new_carry, output)`` with output ``(batch, *output_shape)``.

        Raises:
          ValueError: ``inputs`` not ``(batch, *input_shape)`` or not real numbers; a
            carry of another structure, or a state not ``(batch, *state_shape)``.
        """
        if constants is not None and not self.accepts_constants:
            raise ValueError(
                f"{_checks.where(self)}: `constants` were given but {type(self).__name__} "
                "does not accept constants."
            )
        carry = tuple(carry) if isinstance(carry, (tuple, list)) else (carry,)
        _checks.arrays(self, carry=carry, inputs=[inputs], constants=constants)
        with self.bound_to(tuple(np.shape(inputs))[1:]):
            inputs = self._check_step_inputs(inputs)
            self._check_carry(carry, self.state_shapes, inputs.shape[0], "carry")
            in_masks, rec_masks = self.dropout_masks(inputs.shape[0], training, rngs)
            params = self.params()
            x = inputs.astype(self.policy.compute_dtype)
            xp = self.project_inputs(params, x, in_masks)
            new_carry, y, _ = self.step(params, carry, xp, rec_masks, constants)
        return new_carry, y

    def _check_step_inputs(self, inputs: Any) -> Array:
        _checks.real_dtype(getattr(inputs, "dtype", None), "inputs", self)
        x = jnp.asarray(inputs)
        feat = tuple(self.input_shape)
        if x.ndim != 1 + len(feat) or tuple(x.shape[1:]) != feat:
            raise ValueError(
                f"{_checks.where(self)}: `inputs` of one step must have shape (batch, "
                f"{', '.join(map(str, feat))}); received shape {tuple(x.shape)}."
            )
        return x

    def _check_carry(self, carry: Any, shapes: tuple, batch: int, path: str) -> None:
        """``carry`` against ``state_shapes`` (nested per cell for stacks), with ``batch``
        rows: a cell call neither broadcasts nor reshapes a state."""
        if all(isinstance(d, int) for d in shapes):  # one state's shape
            expected = (batch, *shapes)
            got = tuple(np.shape(carry))
            _checks.real_dtype(getattr(carry, "dtype", None), path, self)
            if got != expected:
                raise ValueError(
                    f"{_checks.where(self)}: `{path}` must have shape {expected} (batch, "
                    f"*state_shape) for inputs of batch {batch}; received shape {got}."
                )
            return
        if not isinstance(carry, (tuple, list)) or len(carry) != len(shapes):
            count = len(carry) if isinstance(carry, (tuple, list)) else "not a tuple"
            raise ValueError(
                f"{_checks.where(self)}: `{path}` must be a tuple of {len(shapes)} state(s) "
                f"(state_shapes {shapes}, each with a leading batch axis); received "
                f"{type(carry).__name__} ({count})."
            )
        for i, (state, shape) in enumerate(zip(carry, shapes)):
            self._check_carry(state, shape, batch, f"{path}[{i}]")


def float_array(a: Any) -> bool:
    """Whether ``a`` is a floating JAX or NumPy array (a cell's params may hold other
    leaves too: Python numbers, functions)."""
    return isinstance(a, (jax.Array, np.ndarray)) and jnp.issubdtype(a.dtype, jnp.floating)


@functools.cache
def _takes_cast(params_method: Any) -> bool:
    """Whether a cell class's ``params`` takes ``cast`` (a cell of one's own may not)."""
    return "cast" in inspect.signature(params_method).parameters


def own_dtype_params(cell: RNNCellBase, time: int | None) -> Any:
    """``cell.params_for_length(time, cast=False)``: the weights in their own dtype; a
    cell of one's own whose ``params_for_length`` takes no ``cast`` gives its own."""
    if _takes_cast(type(cell).params_for_length):
        return cell.params_for_length(time, cast=False)
    return cell.params_for_length(time)


def dropout_mask(key: Array, rate: float, count: int, shape: tuple[int, ...], dtype: Any) -> Array:
    """Inverted-dropout mask(s): ``shape`` if ``count == 1`` else ``(count, *shape)``."""
    full = shape if count == 1 else (count, *shape)
    keep = jax.random.bernoulli(key, 1.0 - rate, full)
    return jnp.where(keep, jnp.asarray(1.0 / (1.0 - rate), dtype), jnp.zeros((), dtype))


def dense_projection(
    x: Array, kernel: Array, bias: Array | None, masks: Array | None, gates: int
) -> Array:
    """``x @ kernel + bias`` with Keras' dropout masks, on any leading axes.

    Args:
      x: ``(..., batch, in)`` (a whole time-major sequence or a single step).
      kernel: ``(in, gates*units)``.
      bias: ``(gates*units,)`` or None.
      masks: None, ``(batch, in)`` (one mask for all gates) or ``(gates, batch, in)``
        (Keras ``implementation=1``: gate ``g`` sees ``x * masks[g]``).
      gates: number of gate blocks in ``kernel``.

    Returns:
      ``(..., batch, gates*units)``.
    """
    if masks is None:
        y = x @ kernel
    elif masks.ndim == 2:
        y = (x * masks) @ kernel
    else:
        n_in, width = kernel.shape
        per_gate = kernel.reshape(n_in, gates, width // gates)
        xg = jnp.expand_dims(x, -3) * masks  # (..., gates, batch, in)
        y = jnp.einsum("...gbi,igu->...bgu", xg, per_gate)
        y = y.reshape(*y.shape[:-2], width)
    if bias is not None:
        y = y + bias
    return y


def recurrent_projection(h: Array, kernel: Array, masks: Array | None, gates: int) -> Array:
    """``h @ kernel`` with Keras' recurrent dropout masks.

    ``h``: ``(batch, units)``; ``kernel``: ``(units, gates*units)``; ``masks``: None,
    ``(batch, units)`` or ``(gates, batch, units)``. Returns ``(batch, gates*units)``.
    """
    if masks is None:
        return h @ kernel
    if masks.ndim == 2:
        return (h * masks) @ kernel
    n, width = kernel.shape
    y = jnp.einsum("gbu,ugv->bgv", h * masks, kernel.reshape(n, gates, width // gates))
    return y.reshape(h.shape[0], width)


class DenseCellMixin:
    """Parameter creation shared by the dense cells (SimpleRNN, GRU, LSTM, IndRNN)."""

    def params(self, *, cast: bool = True) -> dict[str, Array]:
        """``kernel``, ``recurrent_kernel`` and ``bias`` (or None), in the compute dtype
        unless ``cast=False``."""
        params = {
            "kernel": self.kernel[...],
            "recurrent_kernel": self.recurrent_kernel[...],
            "bias": None if self.bias is None else self.bias[...],
        }
        return self.cast_params(params) if cast else params

    def _create_dense_params(
        self,
        *,
        rngs: nnx.Rngs,
        kernel_shape: tuple[int, ...],
        recurrent_shape: tuple[int, ...],
        bias_shape: tuple[int, ...] | None,
        kernel_initializer: Any,
        recurrent_initializer: Any,
        bias_initializer: Any,
    ) -> None:
        dtype = self.policy.param_dtype
        self.kernel = nnx.Param(
            resolve_initializer(kernel_initializer, "kernel_initializer", self)(
                rngs.params(), kernel_shape, dtype
            )
        )
        self.recurrent_kernel = nnx.Param(
            resolve_initializer(recurrent_initializer, "recurrent_initializer", self)(
                rngs.params(), recurrent_shape, dtype
            )
        )
        if bias_shape is None:
            self.bias = nnx.data(None)
        else:
            self.bias = nnx.Param(
                resolve_initializer(bias_initializer, "bias_initializer", self)(
                    rngs.params(), bias_shape, dtype
                )
            )


_REGULARIZED = ("kernel", "recurrent", "bias")


def resolve_activation(value: Any, argument: str, owner: Any) -> Any:
    """The activation ``value`` names; an unknown one raises naming ``owner`` and
    ``argument``."""
    return _checks.resolved(activations_lib.get, value, argument, owner)


def resolve_initializer(value: Any, argument: str, owner: Any) -> Any:
    """The initializer ``value`` names; an unknown one raises naming ``owner`` and
    ``argument``. ``None`` is Keras' default for a float weight without one,
    ``"glorot_uniform"`` (Keras' ``add_weight``)."""
    if value is None:
        value = "glorot_uniform"
    return _checks.resolved(initializers_lib.get, value, argument, owner)


def set_regularizers_and_constraints(
    cell: Any, arguments: dict[str, Any], prefixes: tuple[str, ...] = _REGULARIZED
) -> None:
    """Resolve ``{prefix}_{regularizer,constraint}`` for each of ``prefixes`` (a cell's
    kernel, recurrent and bias) from a constructor's arguments (bad names fail here);
    :func:`jrnn.regularization_loss` and :func:`jrnn.apply_constraints` apply them."""
    for prefix in prefixes:
        for kind, lib in (("regularizer", regularizers_lib), ("constraint", constraints_lib)):
            argument = f"{prefix}_{kind}"
            setattr(
                cell, argument, _checks.resolved(lib.get, arguments.get(argument), argument, cell)
            )


def common_cell_args(cell: Any, arguments: dict[str, Any]) -> None:
    """Validate and set what every dense cell shares, from its constructor's ``locals()``:
    units, in_features, activation, dropout rates, dtype policy, regularizers, constraints."""
    cell.units = _checks.positive_int(arguments["units"], "units", cell)
    cell.in_features = _checks.positive_int(arguments["in_features"], "in_features", cell)
    _checks.rngs(arguments.get("rngs"), cell)
    cell.activation = resolve_activation(arguments["activation"], "activation", cell)
    cell.dropout = _checks.rate(arguments.get("dropout", 0.0), "dropout", cell)
    cell.recurrent_dropout = _checks.rate(
        arguments.get("recurrent_dropout", 0.0), "recurrent_dropout", cell
    )
    cell.policy = resolve_policy(arguments["dtype"], arguments["param_dtype"], _checks.where(cell))
    cell.input_shape = (cell.in_features,)
    cell.output_shape = (cell.units,)
    set_regularizers_and_constraints(cell, arguments)
