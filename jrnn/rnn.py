"""The one time loop of jrnn, and the Keras ``RNN`` layer built on it.

:func:`rnn_scan` is the only place that knows about masks, ``go_backwards``,
``return_sequences``, ``unroll`` and per-step recording; every recurrent layer
(SimpleRNN, GRU, LSTM, ConvLSTM, IndRNN, CuDNN layers, stacks, Bidirectional)
runs through it on ``jax.lax.scan``.

Semantics follow Keras 3's TensorFlow backend (``keras/src/backend/tensorflow/rnn.py``):

* a step whose mask is False keeps the previous states; its output is the previous
  output (zeros before the first unmasked step), or zeros with ``zero_output_for_mask``;
* ``go_backwards`` processes time reversed and returns outputs in processing order;
* the last output is the output of the last processed step (after masking).
"""

from __future__ import annotations

import contextvars
import functools
import weakref
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.custom_derivatives import SymbolicZero
from jax.extend import core as jex_core

from jrnn import _checks
from jrnn import native as native_kernels
from jrnn import regularizers as regularizers_lib
from jrnn._config import Configurable, capture, register
from jrnn._dtypes import check_x64
from jrnn.cells.base import RNNCellBase, float_array, own_dtype_params
from jrnn.cells.stacked import StackedRNNCells
from jrnn.native import cudnn

Array = jax.Array


class RNNState(nnx.Variable):
    """The states a ``stateful=True`` layer carries from one call to the next (not trainable)."""


class ActivityLoss(nnx.Variable):
    """The activity-regularization penalty of a layer's last call (Keras' ``layer.losses``)."""


class _Call(NamedTuple):
    """One call's checked inputs ``x (batch, time, *features)``, initial carry, time mask,
    dropout masks and parameters (:meth:`RNN._prepare`)."""

    x: Array
    carry: Any
    time_mask: Array | None
    in_masks: Any
    rec_masks: Any
    params: Any
    wide_params: Any


class RNNResult(NamedTuple):
    """Everything one pass of :meth:`RNN.run` computes.

    Attributes:
      output: what the layer returns as its output (``sequence`` if
        ``return_sequences`` else ``last_output``).
      sequence: ``(batch, time, *output_shape)`` in processing order, or None when the
        layer does not return sequences and ``record`` was False.
      last_output: ``(batch, *output_shape)``.
      states: the final carry (tuple in Keras' state order; nested per cell for stacks).
      activations: with ``record=True``, the cell's per-step activations (gates, candidate,
        states) stacked to ``(batch, time, ...)`` in processing order; else None.
    """

    output: Array
    sequence: Array | None
    last_output: Array
    states: Any
    activations: Any


def _expand_to(m: Array, x: Array) -> Array:
    return m.reshape(m.shape + (1,) * (x.ndim - m.ndim))


def segment_length(time: int, remat: bool | int) -> int:
    """The checkpointed segment length for ``remat``: for True ~``sqrt(time)``, for an int
    that many steps (at most ``time``); a divisor of ``time`` near it where one is (the
    divisor nearest ``sqrt(time)``, or the largest not above the int, when within a
    factor of 2), else exactly that and a shorter last segment (:func:`segments`)."""
    return segments(time, remat)[0]


def segments(time: int, remat: bool | int) -> tuple[int, int, int]:
    """``(length, count, rest)``: ``count`` checkpointed segments of ``length`` steps, then
    one of ``rest`` (0 when ``length`` divides ``time``). A prime ``time`` with
    ``remat=True`` takes ~``sqrt(time)``-step segments and a shorter last one instead of
    one-step segments (997 steps: 31 segments of 32 and one of 5, not 997 of 1)."""
    target = max(1, round(time**0.5)) if remat is True else min(int(remat), time)
    divisors = [d for d in range(1, time + 1) if time % d == 0]
    if remat is True:
        best = min(divisors, key=lambda d: abs(d - target))
        near = target / 2 <= best <= 2 * target
    else:
        best = max(d for d in divisors if d <= target)
        near = 2 * best >= target
    if near:
        return best, time // best, 0
    return target, time // target, time % target


def rnn_scan(
    step,
    xs: Any,
    carry: Any,
    *,
    mask: Array | None = None,
    go_backwards: bool = False,
    unroll: bool | int = 1,
    zero_output_for_mask: bool = False,
    return_sequences: bool = True,
    record: bool = False,
    project=None,
    hoist: bool = True,
    remat: bool | int = False,
) -> tuple[Array, Array | None, Any, Any]:
    """Run ``step`` over time with Keras' masking semantics.

    Args:
      step: ``step(carry, x_t) -> (new_carry, y_t, activations_t)``, pure.
      xs: pytree of time-major arrays ``(time, batch, ...)``.
      carry: initial carry pytree, leaves ``(batch, ...)``.
      mask: ``(time, batch)`` booleans, or None.
      go_backwards: iterate from the last step to the first.
      unroll: passed to ``jax.lax.scan`` (True unrolls fully, an int unrolls that many steps).
      zero_output_for_mask: masked steps output zeros instead of the previous output.
      return_sequences: stack the per-step outputs.
      record: stack the per-step activations.
      project: optional ``project(xs_chunk) -> step inputs`` (the cell's input projection),
        applied to time-major chunks of ``xs`` or to single steps.
      hoist: with ``project``, apply it to the whole sequence at once (one GEMM over all
        timesteps; with ``remat``, once per checkpointed segment) instead of inside every
        step. Which is faster depends on the backend and shape (see ``bench/``).
      remat: False; True (checkpoint segments of ~sqrt(time) steps: only the carry at
        segment boundaries is kept for the backward pass); or an int segment length
        (:func:`segments` says how ``time`` is cut).

    A symbolic ``time`` (``jax.export``'s shape polymorphism) runs one step per iteration
    without checkpointed segments, whatever ``unroll`` and ``remat`` say.

    Returns:
      ``(last_output, outputs, final_carry, activations)``; ``outputs`` is
      ``(time, batch, ...)`` in processing order (or None), ``activations`` likewise.
    """
    if jax.export.is_symbolic_dim(jax.tree_util.tree_leaves(xs)[0].shape[0]):
        # jax.export's symbolic time: a loop of unknown length is neither unrolled nor cut
        # into checkpointed segments (the same function; only speed and memory differ)
        unroll, remat = 1, False
    step_project = None
    if project is not None and not hoist:
        step_project, project = project, None
    elif project is not None and not remat:
        xs, project = project(xs), None
    first = jax.tree_util.tree_map(lambda a: a[:1], xs)
    x0 = jax.tree_util.tree_map(lambda a: a[0], first if project is None else project(first))
    if step_project is not None:
        x0 = step_project(x0)
    carry_type, y_type = jax.eval_shape(lambda c, x: step(c, x)[:2], carry, x0)
    prev0 = jnp.zeros(y_type.shape, y_type.dtype)
    # On a mesh with Explicit axes the sharding is part of the type: a replicated (or
    # unplaced) initial state takes the batch sharding that a step computes from the inputs.
    carry, prev0 = _sharded_as((carry, prev0), (carry_type, y_type), xs)
    # Inside jax.shard_map (check_vma): the loop's state varies over the inputs' mesh axes.
    carry, prev0 = _varying_over(_varying_axes((xs, mask, carry)), (carry, prev0))

    def body(state, inputs):
        old_carry, prev = state
        x_t, m_t = inputs
        if step_project is not None:
            x_t = step_project(x_t)
        new_carry, y, acts = step(old_carry, x_t)
        if m_t is not None:
            fill = jnp.zeros_like(y) if zero_output_for_mask else prev
            y = jnp.where(_expand_to(m_t, y), y, fill)
            new_carry = jax.tree_util.tree_map(
                lambda new, old: jnp.where(_expand_to(m_t, new), new, old), new_carry, old_carry
            )
        emitted = (y if return_sequences else None, acts if record else None)
        return (new_carry, y), emitted

    def run_steps(state, chunk):
        xs_chunk, mask_chunk = chunk
        if project is not None:
            xs_chunk = project(xs_chunk)
        return jax.lax.scan(
            body, state, (xs_chunk, mask_chunk), reverse=go_backwards, unroll=unroll
        )

    if not remat:
        (final_carry, last), (ys, acts) = run_steps((carry, prev0), (xs, mask))
    else:
        time = jax.tree_util.tree_leaves(xs)[0].shape[0]
        seg, count, rest = segments(time, remat)
        full = count * seg
        chunks = jax.tree_util.tree_map(
            lambda a: a[:full].reshape(count, seg, *a.shape[1:]), (xs, mask)
        )
        segmented = functools.partial(jax.lax.scan, jax.checkpoint(run_steps), reverse=go_backwards)
        tail = jax.tree_util.tree_map(lambda a: a[full:], (xs, mask))
        state = (carry, prev0)
        if rest and go_backwards:  # the shorter last segment of time comes first backwards
            state, tail_out = jax.checkpoint(run_steps)(state, tail)
        state, outs = segmented(state, chunks)
        if rest and not go_backwards:
            state, tail_out = jax.checkpoint(run_steps)(state, tail)
        (final_carry, last) = state
        outs = jax.tree_util.tree_map(lambda a: a.reshape(full, *a.shape[2:]), outs)
        if rest:
            outs = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), outs, tail_out)
        ys, acts = outs
    if go_backwards:
        ys, acts = jax.tree_util.tree_map(lambda a: jnp.flip(a, 0), (ys, acts))
    return last, ys, final_carry, acts


def _sharded_as(tree: Any, types: Any, inputs: Any) -> Any:
    """``tree``'s arrays resharded to the explicit shardings of ``types`` (``jax.eval_shape``
    results) where their types differ; unchanged off a mesh with Explicit axes. Outside a
    trace (a stateful layer's first call runs op by op) the arrays are placed on the mesh
    of the concrete ``inputs``."""
    meshes = [
        a.sharding.mesh
        for a in jax.tree_util.tree_leaves(inputs)
        if isinstance(a, jax.Array)
        and not isinstance(a, jax.core.Tracer)
        and isinstance(a.sharding, jax.sharding.NamedSharding)
    ]

    def place(a, want):
        sharding = getattr(want, "sharding", None)
        if not isinstance(sharding, jax.sharding.NamedSharding):
            return a
        have = getattr(jax.typeof(a), "sharding", None)
        if getattr(have, "spec", None) == sharding.spec:
            return a
        if meshes and not isinstance(a, jax.core.Tracer):
            return jax.device_put(a, jax.sharding.NamedSharding(meshes[0], sharding.spec))
        return jax.sharding.reshard(a, sharding)

    return jax.tree_util.tree_map(place, tree, types)


def _varying_axes(tree: Any) -> frozenset:
    """The manual mesh axes (inside ``jax.shard_map``) over which ``tree``'s arrays vary."""
    axes: frozenset = frozenset()
    for a in jax.tree_util.tree_leaves(tree):
        axes |= getattr(getattr(jax.typeof(a), "manual_axis_type", None), "varying", frozenset())
    return axes


def _varying_over(axes: frozenset, tree: Any) -> Any:
    """``tree``'s arrays marked as varying over ``axes`` (a zero initial state does not
    vary, the state a step computes from sharded inputs does: ``lax.scan`` wants both
    typed alike)."""
    if not axes:
        return tree

    def vary(a):
        missing = tuple(sorted(axes - _varying_axes(a)))
        return jax.lax.pcast(a, missing, to="varying") if missing else a

    return jax.tree_util.tree_map(vary, tree)


def _batch_major(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), tree)


@register
class RNN(Configurable, nnx.Module):
    """Keras' ``RNN`` layer: runs a cell (or a list of cells) over time on ``lax.scan``.

    Args:
      cell: a jrnn cell, or a list of cells (wrapped in :class:`StackedRNNCells`).
      return_sequences: return the whole output sequence ``(batch, time, units)`` instead
        of the last output ``(batch, units)``.
      return_state: also return the final states: ``(output, *states)`` (states nested
        per cell for stacked cells, as Keras).
      go_backwards: process the sequence backwards; the returned sequence is in
        processing order (reversed), as Keras.
      stateful: keep the final states of each call as the initial states of the next
        (per batch index); see :meth:`reset_state`.
      unroll: False (a loop: one step per iteration on CPU and TPU, 16 on a GPU, where
        each loop iteration costs a kernel launch and a device-to-host sync; the same
        results), True (fully unrolled) or an int (exactly that many steps per loop
        iteration; Keras only has the bool). Unrolling more costs compile time: on an
        H200, 16 steps per iteration compiled a BiLSTM training step in 10.9 s against
        2.3 s at 4 (``bench/gpu_probe.py``); pass ``unroll=1`` or ``4`` to trade back.
      zero_output_for_mask: masked steps output zeros instead of the previous output.
      activity_regularizer: Keras' penalty on the layer's output (a name, a
        ``jrnn.regularizers`` object or a callable ``output -> scalar``): each call
        records it in ``activity_loss``, which :func:`jrnn.training.regularization_loss`
        adds to the loss (Keras' ``layer.losses``).
      remat: trade compute for memory in training (jrnn only): True checkpoints segments
        of ~sqrt(time) steps and recomputes them (and their input projection) in the
        backward pass, so activation memory grows ~sqrt(time) instead of time; an int
        sets the segment length. A divisor of time near the length is taken where there
        is one, else the last segment is shorter (:func:`jrnn.rnn.segments`).
      hoist_input_projection: compute the input projection ``x W + b`` for all timesteps
        in one GEMM before the time loop (True) or inside each step (False). None picks
        per backend: hoisted on GPU/TPU; per step on CPU, where XLA's CPU matmuls run the
        small per-step GEMM from cache faster than they stream a hoisted
        ``(time, batch, gates*units)`` buffer (measured in ``bench/``). Same results.
      native: run the recurrence on jrnn's native CPU kernel (:mod:`jrnn.native`, built at
        install) instead of the XLA scan. None (default): wherever it applies — a cell with
        a native kernel (LSTM, or GRU with ``reset_after=True``, with Keras' default
        tanh/sigmoid activations; SimpleRNN with tanh; CuDNNLSTM, CuDNNGRU; ConvLSTM with
        those activations and channels_last, float32 only; a stack of such cells, one kernel
        per cell, input dropout of inner cells included), a float32 or bfloat16 compute
        dtype (bfloat16 needs AVX512_BF16), the CPU backend, a CPU with AVX-512 or AVX2 and
        FMA, inputs and weights not sharded over a mesh, and no recurrent dropout, per-gate
        input dropout masks, ``constants`` or recorded activations in the call (``remat``
        works on both paths; masks of any pattern run on the LSTM, GRU and SimpleRNN
        kernels, which keep the state at masked steps, not on ConvLSTM's), and, for the
        LSTM, GRU and SimpleRNN kernels, a call of at least 2 steps and 32 rows of batch ×
        time (8 in bfloat16; :data:`SHORT_CALL_ROWS`): a shorter call, such as a streaming
        model's one step at a time, runs faster on the scan, because the kernel first packs
        the weights (one step of an LSTM of 1024 units at batch 1: 3.7 ms on the kernel,
        0.5 on the scan).
        True: require it (an error names what prevents it). False: always the XLA scan.
        Both compute the same function (float32 rounding differs, ~1e-6; in bfloat16 the
        kernel accumulates products and keeps the gate maths and LSTM's ``c`` in float32,
        rounding ``h`` once per step, where the scan rounds every operation, as Keras
        does); the native path has reverse-mode autodiff
        (``grad``, ``vjp``) but no forward mode (``jvp``, ``jacfwd``) or second
        derivatives: None takes the scan in calls they trace, but cannot see them applied
        to an already traced function (``jax.jvp`` of a jitted or checkpointed function
        or of a ``lax.scan`` body, ``jax.linearize``): use False there.
        ``JRNN_NATIVE=0`` in the environment turns it off process-wide. On the GPU
        backend None runs the XLA scan (input projection hoisted, 16 steps per loop
        iteration, see ``unroll``): measured on an H200 it beat JAX's cuDNN LSTM in 10 of
        12 LSTM and BiLSTM cases, by 1.6-3.7x (``bench/gpu_probe.py``); cuDNN won the
        training steps at batch 256 (LSTM by 1.03x, BiLSTM by 1.30x). There the kernel
        is cuDNN's, on request: ``native=True`` (or ``use_cudnn=True`` on an LSTM layer)
        runs LSTM cells on it (LSTM, CuDNNLSTM, stacks of LSTM cells, Bidirectional LSTM
        in one call; :mod:`jrnn.native.cudnn`), float32, under the same conditions
        except the CPU ones and with no mask, and raises naming what prevents it; GRU
        and SimpleRNN have no cuDNN path in JAX. ``use_cudnn=False`` keeps an LSTM off
        cuDNN even with ``native=True`` (an error then says so); Keras raises too when
        ``use_cudnn=True`` and cuDNN cannot run the call.
      batch_size: for stateful layers, create the state variables now (otherwise the
        first call creates them).
      name: Keras layer name (kept for importers and inspection).

    Call args:
      inputs: ``(batch, time, *features)``.
      mask: optional ``(batch, time)`` booleans (any pattern; False skips the step).
      initial_state: optional states: one array per state (``[h, c]`` for LSTM; a bare
        array for single-state cells; nested per cell, or flat, for stacks).
      training: apply dropout / recurrent_dropout (masks drawn once per call).
      constants: Keras-2 constants passed to every step of a cell that accepts them.
      rngs: optional ``nnx.Rngs``/stream/key for dropout (else the cell's own stream).

    Returns:
      The output (``(batch, time, units)`` or ``(batch, units)``), or with
      ``return_state`` the tuple ``(output, *states)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> rngs = nnx.Rngs(0)
      >>> layer = jrnn.RNN([jrnn.LSTMCell(4, 3, rngs=rngs), jrnn.GRUCell(5, 4, rngs=rngs)],
      ...                  return_sequences=True, return_state=True)
      >>> y, (h1, c1), (h2,) = layer(jnp.ones((2, 7, 3)))
      >>> y.shape, h1.shape, h2.shape
      ((2, 7, 5), (2, 4), (2, 5))
    """

    def __init__(
        self,
        cell: RNNCellBase | list[RNNCellBase],
        *,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool | int = False,
        zero_output_for_mask: bool = False,
        remat: bool | int = False,
        hoist_input_projection: bool | None = None,
        native: bool | None = None,
        activity_regularizer: Any = None,
        batch_size: int | None = None,
        name: str | None = None,
    ):
        if "_config" not in vars(self):
            self._config = capture(locals())
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        if not isinstance(cell, RNNCellBase):
            raise TypeError(
                f"{type(self).__name__}: `cell` must be a jrnn cell (RNNCellBase) or a list of "
                f"cells; received {type(cell).__name__}."
            )
        self.name = _checks.name(name, self)
        self.cell = cell
        self.return_sequences = _checks.boolean(return_sequences, "return_sequences", self)
        self.return_state = _checks.boolean(return_state, "return_state", self)
        self.go_backwards = _checks.boolean(go_backwards, "go_backwards", self)
        self.stateful = _checks.boolean(stateful, "stateful", self)
        self.unroll = _checks.bool_or_positive_int(
            unroll, "unroll", self, "steps unrolled per loop iteration"
        )
        self.zero_output_for_mask = _checks.boolean(
            zero_output_for_mask, "zero_output_for_mask", self
        )
        self.remat = _checks.bool_or_positive_int(
            remat, "remat", self, "steps per checkpointed segment"
        )
        if hoist_input_projection is not None:
            _checks.boolean(hoist_input_projection, "hoist_input_projection", self)
        self.hoist_input_projection = hoist_input_projection
        if native is not None:
            _checks.boolean(native, "native", self)
        self.native = native
        self.activity_regularizer = _checks.resolved(
            regularizers_lib.get, activity_regularizer, "activity_regularizer", self
        )
        self.activity_loss = initial_activity_loss(self.activity_regularizer)
        self.states = nnx.data(None)
        if batch_size is not None:
            batch_size = _checks.positive_int(batch_size, "batch_size", self)
            if self.stateful and not _unknown_size(self.cell.state_shapes):
                self._create_states(batch_size)  # else at the first call (its frames' size)
        self.batch_size = batch_size

    # ------------------------------------------------------------------ Keras-style views
    @property
    def units(self) -> int:
        """The cell's ``units``."""
        return self.cell.units

    @property
    def state_size(self) -> Any:
        """The cell's Keras ``state_size``."""
        return self.cell.state_size

    @property
    def policy(self):
        """The cell's dtype policy."""
        return self.cell.policy

    # ------------------------------------------------------------------ states
    def _create_states(self, batch: int) -> None:
        if _unknown_size(self.cell.state_shapes):
            raise ValueError(
                f"{_checks.where(self)}: the state shape follows the frames of the first "
                "call (the cell has no `spatial_shape`); call the layer once before "
                "reset_state(states=...), or build it with `spatial_shape=`."
            )
        zeros = self.cell.initialize_carry(batch)
        self.states = nnx.data(jax.tree_util.tree_map(RNNState, zeros))

    def _state_values(self) -> Any:
        return jax.tree_util.tree_map(
            lambda v: v.get_value(), self.states, is_leaf=lambda v: isinstance(v, RNNState)
        )

    def reset_state(self, states: Any = None) -> None:
        """Reset the states of a stateful layer to zeros, or to ``states`` (Keras 2's form).

        ``states`` has the structure of ``initial_state``; states of another batch size
        than the current ones start the layer over at that size (unless it was built with
        a fixed ``batch_size``). On a non-stateful layer this is a no-op without ``states``
        (as Keras) and an error with them.
        """
        if not self.stateful:
            if states is not None:
                raise ValueError(
                    f"{_checks.where(self)}: reset_state(states=...) needs a stateful layer; "
                    "this layer was built with stateful=False."
                )
            return
        if states is not None:
            leaves = jax.tree_util.tree_leaves(states)
            batch = np.shape(leaves[0])[0] if leaves and np.ndim(leaves[0]) else None
            if self.batch_size is not None and batch != self.batch_size:
                raise ValueError(
                    f"{_checks.where(self)}: `states` must have the layer's batch size, "
                    f"batch_size={self.batch_size}; received states of batch {batch}."
                )
            current = (
                None
                if self.states is None
                else jax.tree_util.tree_leaves(self._state_values())[0].shape[0]
            )
            if batch is not None and batch != current:
                if self.states is None:
                    self._create_states(batch)
                else:  # the same state shapes (a ConvLSTM's frames too) at the new batch size
                    zeros = jax.tree_util.tree_map(
                        lambda v: jnp.zeros((batch, *v.shape[1:]), v.dtype), self._state_values()
                    )
                    values = self._normalize_initial_state(states, batch, zeros, "states")
                    self.states = nnx.data(jax.tree_util.tree_map(RNNState, values))
                    return  # checked before the old states were replaced
        if self.states is None:
            return
        batch = jax.tree_util.tree_leaves(self._state_values())[0].shape[0]
        values = (
            jax.tree_util.tree_map(jnp.zeros_like, self._state_values())
            if states is None
            else self._normalize_initial_state(states, batch, self._state_values(), "states")
        )
        leaves = jax.tree_util.tree_leaves(self.states, is_leaf=lambda v: isinstance(v, RNNState))
        for var, value in zip(leaves, jax.tree_util.tree_leaves(values)):
            var.set_value(value.astype(var.get_value().dtype))

    def reset_states(self, states: Any = None) -> None:
        """Keras 2 name of :meth:`reset_state`."""
        self.reset_state(states)

    # ------------------------------------------------------------------ validation
    def _check_arguments(self, inputs, mask, initial_state, constants, rngs=None) -> None:
        """The call's array arguments are arrays (not None inside, strings or complex
        numbers) and ``rngs`` is random state: checked before the eager call's jit, whose
        errors would not name them."""
        if inputs is None:
            raise ValueError(f"{_checks.where(self)}: `inputs` must be an array; received None.")
        _checks.check_rngs(rngs, self)
        check_x64(self.policy, _checks.where(self))
        _checks.arrays(
            self, inputs=inputs, mask=mask, initial_state=initial_state, constants=constants
        )

    def _check_inputs(self, inputs: Any) -> Array:
        _checks.real_dtype(getattr(inputs, "dtype", None), "inputs", self)
        x = jnp.asarray(inputs)
        feat = tuple(self.cell.input_shape)
        if x.ndim != 2 + len(feat):
            raise ValueError(
                f"{_checks.where(self)}: `inputs` must have shape (batch, time, "
                f"{', '.join(map(str, feat))}) — rank {2 + len(feat)}; received shape "
                f"{tuple(x.shape)}."
            )
        if tuple(x.shape[2:]) != feat:
            raise ValueError(
                f"{_checks.where(self)}: `inputs` feature shape must be {feat} (the cell's "
                f"{'spatial_shape and in_channels' if len(feat) > 1 else 'in_features'}); "
                f"received shape {tuple(x.shape)}."
            )
        if x.shape[1] == 0:
            raise ValueError(
                f"{_checks.where(self)}: `inputs` must have at least one timestep; received "
                f"shape {tuple(x.shape)}."
            )
        _checks.real_dtype(x.dtype, "inputs", self)
        return x.astype(self.cell.policy.compute_dtype)

    def _check_mask(self, mask: Any, batch: int, time: int) -> Array | None:
        if mask is None:
            return None
        m = jnp.asarray(mask)
        if m.shape == (batch, time, 1):  # Keras takes a trailing axis of 1 alike
            m = m[..., 0]
        if m.shape != (batch, time):
            raise ValueError(
                f"{_checks.where(self)}: `mask` must have shape (batch, time) = ({batch}, {time}); "
                f"received shape {tuple(m.shape)}."
            )
        if m.dtype != jnp.bool_:
            if not (jnp.issubdtype(m.dtype, jnp.integer) or jnp.issubdtype(m.dtype, jnp.floating)):
                raise ValueError(
                    f"{_checks.where(self)}: `mask` must be boolean (or numbers, nonzero for a "
                    f"step to keep); received dtype {m.dtype}."
                )
            m = m != 0  # Keras casts a numeric mask to bool
        return m

    def _normalize_initial_state(
        self, initial_state: Any, batch: int, like: Any = None, argument: str = "initial_state"
    ) -> Any:
        """``initial_state`` checked against the zero carry for ``batch`` (or ``like``, the
        stateful layer's current states) and cast to its dtype, in its structure; errors
        name ``argument``."""
        expected = self.cell.initialize_carry(batch) if like is None else like
        exp_leaves, treedef = jax.tree_util.tree_flatten(expected)
        given = initial_state
        if not isinstance(given, (list, tuple)):
            given = [given]
        given_leaves = jax.tree_util.tree_leaves(
            given, is_leaf=lambda a: not isinstance(a, (list, tuple))
        )
        if len(given_leaves) != len(exp_leaves):
            raise ValueError(
                f"{_checks.where(self)}: `{argument}` must hold {len(exp_leaves)} state(s) "
                f"with shapes {[tuple(e.shape) for e in exp_leaves]}; received "
                f"{len(given_leaves)}."
            )
        out = []
        for k, (g, e) in enumerate(zip(given_leaves, exp_leaves)):
            g = jnp.asarray(g)
            if tuple(g.shape) != tuple(e.shape):
                raise ValueError(
                    f"{_checks.where(self)}: `{argument}[{k}]` must have shape "
                    f"{tuple(e.shape)}; received {tuple(g.shape)}."
                )
            out.append(g.astype(e.dtype))
        return jax.tree_util.tree_unflatten(treedef, out)

    #: Whether Keras' ``use_cudnn=True`` demands the backend's fused kernel (LSTM: Keras
    #: raises where cuDNN cannot run the call; its GRU's fast path on JAX is a plain scan).
    _use_cudnn_demands_kernel = False

    #: Steps per loop iteration of the XLA scan on a GPU when ``unroll=False``: a rolled
    #: loop pays a kernel launch and a device-to-host sync per iteration there. Measured
    #: on an H200 (``bench/gpu_probe.py``, LSTM, BiLSTM and GRU at three shapes): 16 was
    #: the fastest of 1, 4 and 16 in 15 of 18 cases (within 1.26x in the others), up to
    #: 3.2x faster than 1 (GRU training at T=1000). ConvLSTM (not measured) keeps 1.
    _gpu_unroll = 16

    # ------------------------------------------------------------------ call
    def _scan_unroll(self) -> bool | int:
        """``unroll`` as the scan takes it: ``unroll=False`` (Keras' "a symbolic loop")
        runs a loop of 1 step per iteration on CPU and TPU, :attr:`_gpu_unroll` on GPU."""
        if self.unroll is False:
            return self._gpu_unroll if cudnn.on_gpu() else 1
        return self.unroll

    def _hoist(self) -> bool:
        if self.hoist_input_projection is not None:
            return self.hoist_input_projection
        return jax.default_backend() != "cpu"

    def run(
        self,
        inputs: Any,
        *,
        mask: Any = None,
        initial_state: Any = None,
        training: bool = False,
        constants: Any = None,
        rngs: Any = None,
        record: bool = False,
    ) -> RNNResult:
        """Run the layer and return an :class:`RNNResult` (output, sequence, states and,
        with ``record=True``, the per-step activations of the cell)."""
        self._check_arguments(inputs, mask, initial_state, constants, rngs)
        if _eager_call(self, inputs, records_activity=False):
            return cached_call(
                self, "_run", {"training": bool(training), "record": bool(record)},
                inputs=inputs, mask=mask, initial_state=initial_state, constants=constants,
                rngs=rngs,
            )  # fmt: skip
        return self._run(inputs, mask, initial_state, training, constants, rngs, record)

    def _run(self, inputs, mask, initial_state, training, constants, rngs, record) -> RNNResult:
        """:meth:`run`'s work, traced or not."""
        with (
            jax.named_scope(f"jrnn.{type(self).__name__}"),
            self.cell.bound_to(tuple(np.shape(inputs))[2:]),  # ConvLSTM: this call's frames
        ):
            call = self._prepare(inputs, mask, initial_state, training, constants, rngs)
            x, carry, time_mask, in_masks, rec_masks, params, wide_params = call
            blocker = self._native_blocker(
                x, params, time_mask, in_masks, rec_masks, constants, record, carry
            )
            if blocker is None:
                last, sequence, final = self._run_native(
                    x, carry, params, in_masks, rec_masks, time_mask
                )
                acts = None
            else:
                required = self._kernel_required() if x.shape[0] else None  # empty: no work
                if required:
                    raise ValueError(
                        f"{_checks.where(self)}: {required} but the native kernel cannot run "
                        f"this call: {blocker}. Leave it at its default to fall back to the "
                        "XLA scan."
                    )
                last, sequence, final, acts = self._run_scan(
                    x, carry, wide_params, in_masks, rec_masks, constants, time_mask, record
                )
            self._keep_states(final)
            output = sequence if self.return_sequences else last
            return RNNResult(output, sequence, last, final, acts)

    def _prepare(self, inputs, mask, initial_state, training, constants, rngs) -> _Call:
        """The checked inputs, initial carry, time mask, dropout masks and parameters of
        one call (:meth:`run` before it picks the native kernel or the scan)."""
        x = self._check_inputs(inputs)
        batch, time = x.shape[0], x.shape[1]
        time_mask = self._check_mask(mask, batch, time)
        if constants is not None and not self.cell.accepts_constants:
            raise ValueError(
                f"{_checks.where(self)}: `constants` were given but the cell "
                f"{type(self.cell).__name__} does not accept constants."
            )
        if initial_state is not None:
            carry = self._normalize_initial_state(initial_state, batch)
            if self.stateful and self.states is None:  # the call's final carry is kept there
                self._check_state_batch(self.batch_size, batch)
                zeros = jax.tree_util.tree_map(jnp.zeros_like, carry)
                self.states = nnx.data(jax.tree_util.tree_map(RNNState, zeros))
            elif self.stateful:
                self._check_state_batch(
                    jax.tree_util.tree_leaves(self._state_values())[0].shape[0], batch
                )
        elif self.stateful:
            if self.states is None:
                self._create_states(batch if self.batch_size is None else self.batch_size)
            carry = self._state_values()
            self._check_state_batch(jax.tree_util.tree_leaves(carry)[0].shape[0], batch)
            fresh = jax.tree_util.tree_leaves(
                jax.eval_shape(lambda: self.cell.initialize_carry(batch))
            )
            for state, want in zip(jax.tree_util.tree_leaves(carry), fresh):
                if state.shape != want.shape:  # ConvLSTM without spatial_shape: other frames
                    raise ValueError(
                        f"{_checks.where(self)}: a stateful layer keeps the state shape of its "
                        f"first call, {state.shape}; these inputs need {want.shape}. Build "
                        "a new layer (or one with `spatial_shape=`) for frames of that size."
                    )
        else:
            carry = self.cell.initialize_carry(batch)
        in_masks, rec_masks = self.cell.dropout_masks(batch, training, rngs)
        own = own_dtype_params(self.cell, time)
        params = self.cell.cast_params(own)
        wide = jax.tree_util.tree_map(
            lambda a, b: a if float_array(a) and a.dtype.itemsize > b.dtype.itemsize else b,
            own,
            params,
        )
        return _Call(x, carry, time_mask, in_masks, rec_masks, params, wide)

    def _check_state_batch(self, expected: int | None, batch: int) -> None:
        """A stateful layer's call must have its states' batch size (``expected``; None:
        any, before the first call of a layer without ``batch_size``)."""
        if expected is None or expected == batch:
            return
        raise ValueError(
            f"{_checks.where(self)}: a stateful layer must be called with the batch "
            f"size of its states; expected batch size {expected}, received {batch}. "
            + (
                f"It was built with batch_size={self.batch_size}."
                if self.batch_size is not None
                else "Call reset_state(states=...) with states of the new batch size first."
            )
        )

    def _keep_states(self, final: Any) -> None:
        """A stateful layer keeps the final carry of a call as its states."""
        if self.stateful:
            leaves = jax.tree_util.tree_leaves(
                self.states, is_leaf=lambda v: isinstance(v, RNNState)
            )
            for var, value in zip(leaves, jax.tree_util.tree_leaves(final)):
                var.set_value(jax.lax.stop_gradient(value))  # Keras assigns: no gradient

    def _run_scan(self, x, carry, params, in_masks, rec_masks, constants, time_mask, record):
        """The XLA path: :func:`rnn_scan` over time-major inputs; batch-major results.
        ``params``: each weight in the wider of its own dtype and the compute dtype
        (``_Call.wide_params``); the projection and every step cast them."""
        project = functools.partial(_bound_projection, self.cell, params, in_masks)
        step = functools.partial(_bound_step, self.cell, params, rec_masks, constants)
        last, ys, final, acts = rnn_scan(
            step,
            jnp.swapaxes(x, 0, 1),
            carry,
            project=project,
            hoist=self._hoist(),
            remat=self.remat,
            mask=None if time_mask is None else jnp.swapaxes(time_mask, 0, 1),
            go_backwards=self.go_backwards,
            unroll=self._scan_unroll(),
            zero_output_for_mask=self.zero_output_for_mask,
            return_sequences=self.return_sequences,
            record=record,
        )
        sequence = None if ys is None else _batch_major(ys)
        return last, sequence, final, None if acts is None else _batch_major(acts)

    def _native_blocker(
        self, x, params, time_mask, in_masks, rec_masks, constants, record, carry=None
    ) -> str | None:
        """None if this call can run on the native kernel, else the reason it cannot."""
        kernel = self.cell.native_kernel
        if self.native is False:
            return "native=False"
        if any(jax.export.is_symbolic_dim(d) for d in x.shape):
            return "its inputs have symbolic sizes (jax.export's shape polymorphism)"
        if x.shape[0] == 0:  # the scan returns the empty result, as Keras does
            return "the batch is empty"
        if kernel is None:
            return _no_kernel_reason(self.cell)
        per_cell_in, per_cell_rec = self._per_cell_masks(in_masks, rec_masks)
        cells = self.cell.cells if isinstance(self.cell, StackedRNNCells) else [self.cell]
        for cell in {id(c): c for c in (self.cell, *cells)}.values():
            overridden = cell.native_overrides()
            if overridden is not None:
                return f"{overridden} overrides the maths its kernel computes"
        if len({jnp.dtype(c.compute_dtype) for c in cells}) > 1:
            return "its cells compute in different dtypes"
        masks_run = not cudnn.on_gpu() and all(
            c.native_kernel in native_kernels.MASKED_KERNELS for c in cells
        )
        for what, value in (
            ("a mask", None if masks_run else time_mask),
            ("recurrent dropout", jax.tree_util.tree_leaves(per_cell_rec) or None),
            ("constants", constants),
        ):
            if value is not None:
                return f"the call has {what}"
        if record:
            return "activations are recorded (record=True)"
        if any(m is not None and m.ndim != 2 for m in per_cell_in):
            return "input dropout draws one mask per gate (implementation=1, ConvLSTM)"
        compute = jnp.dtype(self.cell.compute_dtype)
        if compute not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)) or x.dtype != compute:
            bfloat16 = all(c.native_kernel in native_kernels.BFLOAT16_KERNELS for c in cells)
            return (
                f"it runs in float32{' and bfloat16' if bfloat16 else ''} only (input "
                f"{x.dtype}, compute {self.cell.compute_dtype})"
            )
        arrays = [a for a in (x, time_mask, *jax.tree_util.tree_leaves(params)) if a is not None]
        if any(
            _differentiated_forward_or_twice(a)
            for a in (*arrays, *jax.tree_util.tree_leaves(carry))
        ):
            return (
                "forward-mode autodiff (jax.jvp, jacfwd, hessian) or a second derivative "
                "traces the call (the kernel has reverse mode only)"
            )
        if _SPREAD.get() or any(_explicitly_sharded(a) or _split_over_devices(a) for a in arrays):
            return "its inputs or weights are sharded over a mesh (it runs on one device)"
        if cudnn.on_gpu():
            use_cudnn = getattr(self, "use_cudnn", "auto")
            if use_cudnn is False:
                return "use_cudnn=False (on GPU the kernel is cuDNN's)"
            if self.native is None and use_cudnn is not True:
                return (
                    "on GPU the default is the XLA scan (faster than JAX's cuDNN LSTM at the "
                    "benchmark's shapes); native=True or use_cudnn=True selects cuDNN"
                )
            others = sorted({type(c).__name__ for c in cells if c.native_kernel != "lstm"})
            if others:
                return f"on GPU only LSTM cells run on cuDNN, not {', '.join(others)}"
            return cudnn.unavailable_reason(compute)
        if compute != jnp.dtype(jnp.float32) and any(
            c.native_kernel not in native_kernels.BFLOAT16_KERNELS for c in cells
        ):
            return f"the ConvLSTM kernel runs in float32 only (compute {compute})"
        if jax.default_backend() != "cpu":
            return f"it runs on the CPU backend only (default backend: {jax.default_backend()})"
        unavailable = native_kernels.unavailable_reason(compute)
        if unavailable is not None or self._kernel_required() is not None:
            return unavailable
        return _short_call(cells, x.shape[0], x.shape[1], compute)

    def _kernel_required(self) -> str | None:
        """The argument that demands the native kernel (``native=True``, or Keras'
        ``use_cudnn=True`` on a layer whose Keras twin then demands cuDNN: LSTM), or
        None."""
        if self.native:
            return "native=True"
        if self._use_cudnn_demands_kernel and getattr(self, "use_cudnn", "auto") is True:
            return "use_cudnn=True"
        return None

    def _per_cell_masks(self, in_masks, rec_masks) -> tuple[list[Any], list[Any]]:
        """The dropout masks of each cell: ``([input masks], [recurrent masks])``, one
        entry per cell of a stack (see :meth:`StackedRNNCells.dropout_masks`)."""
        if not isinstance(self.cell, StackedRNNCells):
            return [in_masks], [rec_masks]
        inner = rec_masks if rec_masks is not None else ((None, None),) * len(self.cell.cells)
        return [in_masks, *(m for m, _ in inner[1:])], [m for _, m in inner]

    def _run_native(self, x, carry, params, in_masks, rec_masks, time_mask=None):
        """The native path (:mod:`jrnn.native`); batch-major throughout. A stack runs its
        cells one after another, each over the whole sequence. With ``go_backwards`` the
        kernels that can run backwards in time do so over ``x`` as given (each output at
        its input's time index), and only the returned sequence is flipped into Keras'
        processing order; the others read a flipped ``x``. With ``time_mask`` (kernels in
        ``jrnn.native.MASKED_KERNELS``) every cell keeps its state at masked steps and
        the kernels return state sequences, to which :func:`_keras_masked_outputs`
        applies Keras' output rules."""
        stacked = isinstance(self.cell, StackedRNNCells)
        cells = list(self.cell.cells) if stacked else [self.cell]
        per_cell_params = params if stacked else (params,)
        per_cell_in, _ = self._per_cell_masks(in_masks, rec_masks)
        reverse = self.go_backwards and all(
            c.native_kernel in native_kernels.REVERSIBLE_KERNELS for c in cells
        )
        if self.go_backwards and not reverse:
            x = jnp.flip(x, 1)
            time_mask = None if time_mask is None else jnp.flip(time_mask, 1)

        def run(x, carries, sequence, steps):
            finals = []
            for k, (cell, p, m) in enumerate(zip(cells, per_cell_params, per_cell_in)):
                if m is not None:
                    x = x * m[:, None]
                last_cell = k == len(cells) - 1
                x, final = _native_runner(cell, p, sequence or not last_cell, reverse)(
                    x, carries[k], steps
                )
                finals.append(final)
            return x, tuple(finals)

        carries = carry if stacked else (carry,)
        if not self.remat:
            y, finals = run(x, carries, self.return_sequences, time_mask)
        else:
            # Checkpointed segments, as rnn_scan does: only the states at segment boundaries
            # are kept; each segment's kernels run again in the backward pass. Backwards in
            # time, the segments run last to first (each output lands at its own index).
            # Each segment slices its inputs out of x (a segment-major copy of x would live
            # through the backward pass; XLA accumulates x's gradient slices in place).
            batch, time = x.shape[:2]
            seg, count, rest = segments(time, self.remat)
            full = count * seg

            def segment_of(length):
                @jax.checkpoint
                def segment(state, chunk):
                    start, steps = chunk
                    x_segment = jax.lax.dynamic_slice_in_dim(x, start, length, axis=1)
                    y_segment, new_state = run(x_segment, state, True, steps)
                    return new_state, y_segment

                return segment

            starts = jnp.arange(0, full, seg)
            masks = (
                None
                if time_mask is None
                else jnp.swapaxes(time_mask[:, :full].reshape(batch, count, seg), 0, 1)
            )
            tail = (full, None if time_mask is None else time_mask[:, full:])
            state = carries
            if rest and reverse:  # the shorter last segment of time comes first backwards
                state, y_tail = segment_of(rest)(state, tail)
            state, ys = jax.lax.scan(segment_of(seg), state, (starts, masks), reverse=reverse)
            if rest and not reverse:
                state, y_tail = segment_of(rest)(state, tail)
            finals = state
            y = None
            if self.return_sequences:
                y = jnp.swapaxes(ys, 0, 1).reshape(batch, full, *ys.shape[3:])
                if rest:
                    y = jnp.concatenate([y, y_tail], axis=1)
        last = finals[-1][0]
        if time_mask is not None:
            y, last = _keras_masked_outputs(y, last, time_mask, reverse, self.zero_output_for_mask)
        if reverse and y is not None:
            y = jnp.flip(y, 1)  # Keras' go_backwards returns the sequence in processing order
        return last, y, (finals if stacked else finals[0])

    def __call__(
        self,
        inputs: Any,
        *,
        mask: Any = None,
        initial_state: Any = None,
        training: bool = False,
        constants: Any = None,
        rngs: Any = None,
    ) -> Any:
        """Keras-style call; see the class docstring."""
        self._check_arguments(inputs, mask, initial_state, constants, rngs)
        if _eager_call(self, inputs):
            return cached_call(
                self, "_outputs", {"training": bool(training)},
                inputs=inputs, mask=mask, initial_state=initial_state, constants=constants,
                rngs=rngs,
            )  # fmt: skip
        return self._outputs(inputs, mask, initial_state, training, constants, rngs)

    def _outputs(self, inputs, mask, initial_state, training, constants, rngs) -> Any:
        """:meth:`__call__`'s work, traced or not (the cached eager program calls this, not
        ``__call__``, so that wrappers of ``__call__``, such as jrnn.inspect's hooks, run
        once and outside the trace)."""
        result = self.run(
            inputs,
            mask=mask,
            initial_state=initial_state,
            training=training,
            constants=constants,
            rngs=rngs,
        )  # traced here (run's own eager check is False), so subclasses' run checks apply
        outputs = (result.output, *result.states) if self.return_state else result.output
        if self.activity_regularizer is not None:
            record_activity_loss(self, outputs)
        return outputs


#: JAX's top-level (eager) trace, as NNX compares traces.
_TOP_TRACE = jex_core.get_opaque_trace_state(convention="nnx")


def _eager_call(layer: RNN, inputs: Any, *, records_activity: bool = True) -> bool:
    """Whether ``layer(inputs, ...)`` runs outside any JAX transformation (at the top-level
    trace, where no argument can be a tracer) on array inputs, so that
    :func:`cached_call` may run it as one cached program. An eager ``jax.lax.scan``
    traces its body anew at every call (a fresh closure over the weights) and XLA compiles
    each trace: an eager (2, 4, 3) LSTM call on the scan took ~150 ms, and every call kept
    its executable (13 memory maps and ~2 MB more per call, until the process runs out of
    maps). Stateful layers before their first call and, in ``__call__``
    (``records_activity``), layers with an activity regularizer create variables in the
    call and stay eager."""
    if not isinstance(inputs, (jax.Array, np.ndarray)) or not eager_arguments(inputs):
        return False  # (bad dtypes raise in the call's checks, not in the jit's arguments)
    return not creates_variables_in_call(layer, records_activity=records_activity)


def eager_arguments(arguments: Any, static: Any = ()) -> bool:
    """Whether a call may run as a :func:`cached_call` program as far as its arguments go:
    at the top-level trace, on arrays of real numbers (pytrees of them and None) and
    hashable ``static`` flags. Concrete arguments do not make a call eager: jax.grad of a
    closure calls layers on concrete inputs and weights inside its trace
    (``jrnn.inspect.get_gradients`` does)."""
    if not at_top_trace():
        return False
    for a in jax.tree_util.tree_leaves(arguments):
        if not isinstance(a, (jax.Array, np.ndarray)) or not _checks.is_real(a.dtype):
            return False
    try:
        hash(static)
    except TypeError:
        return False
    return True


def _traceable(graphdef: Any, module: nnx.Module) -> bool:
    """Whether every sub-module of ``module`` (of structure ``graphdef``, the memo's key) is
    one of jrnn's, importers' or Flax's own (a custom layer may read values in Python or
    keep Python state, which a trace would not show), none creates variables in the call
    (:func:`creates_variables_in_call`) and none is hooked by ``jrnn.inspect`` (its hooks
    read outputs where the module runs, which must not be inside a trace)."""
    known = _TRACEABLE.get(graphdef)
    if known is None:
        known = True
        for _, node in nnx.iter_graph(module):
            if isinstance(node, nnx.Module) and (
                getattr(type(node), "jrnn_inspect_hook", False)
                or type(node).__module__.split(".")[0] not in ("jrnn", "importers", "flax")
                or creates_variables_in_call(node)
            ):
                known = False
                break
        if len(_TRACEABLE) >= 1024:
            _TRACEABLE.clear()
        _TRACEABLE[graphdef] = known
    return known


_TRACEABLE: dict[Any, bool] = {}

#: Modules whose cached call met a value read in Python: they run op by op.
_OP_BY_OP: weakref.WeakSet = weakref.WeakSet()


def at_top_trace() -> bool:
    """Whether code runs at JAX's top-level trace (outside any transformation)."""
    return jex_core.get_opaque_trace_state(convention="nnx") == _TOP_TRACE


def creates_variables_in_call(module: Any, *, records_activity: bool = True) -> bool:
    """Whether calling ``module`` creates variables: a stateful layer before its first call,
    or (``records_activity``) a layer with an activity regularizer. Such calls cannot run
    through a cached ``nnx.jit`` program and stay eager."""
    if getattr(module, "stateful", False) and getattr(module, "states", ()) is None:
        return True
    return records_activity and getattr(module, "activity_regularizer", None) is not None


def _trace_config() -> tuple:
    """What the library reads while tracing a call besides its arguments (the native
    kernels' switch and the short-call rule): part of :func:`cached_call`'s cache key, so
    that changing them takes effect at the next eager call, as without the cache."""
    return (
        native_kernels.unavailable_reason() is None,
        tuple(sorted((str(k), v) for k, v in SHORT_CALL_ROWS.items())),
        SHORT_CALL_STEPS,
    )


#: Whether the eager call being traced has inputs or weights on several devices (a
#: sharding the traced values' types do not show unless its mesh axes are Explicit).
_SPREAD: contextvars.ContextVar[bool] = contextvars.ContextVar("jrnn_spread", default=False)


def _spread_over_devices(layer: nnx.Module, arguments: Any) -> bool:
    """Whether an eager call's array arguments or the layer's weights are split over
    several devices (replicated copies are not: the kernel runs on each as it is)."""
    if jax.device_count() == 1:
        return False
    leaves = [*jax.tree_util.tree_leaves(arguments), *jax.tree_util.tree_leaves(nnx.state(layer))]
    return any(_split_over_devices(a) for a in leaves)


def _differentiated_forward_or_twice(a: Any) -> bool:
    """Whether ``a`` is traced by forward-mode autodiff (``jax.jvp``, ``jacfwd``, the
    outer half of ``hessian``) or by two reverse-mode ones (``grad`` of ``grad``): the
    native kernels (``jax.custom_vjp`` functions) have neither. ``jax.grad`` and
    ``jax.vjp`` linearize (one ``LinearizeTracer``); ``jax.jvp`` pushes ``JVPTracer``s.
    A transformation applied to an already-traced program (``jax.jvp`` of a ``jax.jit``
    or ``jax.checkpoint`` function or of a ``lax.scan`` body) cannot be seen here, nor
    ``jax.linearize`` (one ``LinearizeTracer``, as ``grad``)."""
    linearized = 0
    while isinstance(a, jax.core.Tracer):
        kind = type(a).__name__
        if kind == "JVPTracer":
            return True
        linearized += kind == "LinearizeTracer"
        a = getattr(a, "primal", getattr(a, "val", None))
    return linearized > 1


def _split_over_devices(a: Any) -> bool:
    """A concrete array split (not replicated) over several devices."""
    return (
        isinstance(a, jax.Array)
        and not isinstance(a, jax.core.Tracer)
        and not a.sharding.is_fully_replicated
    )


def _program(graphdef, weights, rest, arguments, *, method, static, config, node_rngs):
    """``module.<method>(**arguments, **static)`` on the module rebuilt from its parts (with
    the call's ``nnx.Rngs`` as ``rngs`` when ``node_rngs``: it is split with the module);
    returns (outputs, the state that is not weights, as the call left it)."""
    node = nnx.merge(graphdef, weights, rest)
    module, kwargs = node, dict(arguments, **dict(static))
    if node_rngs:
        module, kwargs["rngs"] = node
    token = _SPREAD.set(config[-1])  # the rest of the config: part of the cache key only
    try:
        outputs = getattr(module, method)(**kwargs)
    finally:
        _SPREAD.reset(token)
    return outputs, nnx.state(node, nnx.Not(nnx.Param))


#: :func:`cached_call`'s answer for a module it does not run.
NOT_CACHED = object()

_PROGRAM = jax.jit(
    _program, static_argnames=("graphdef", "method", "static", "config", "node_rngs")
)


def cached_call(
    module: nnx.Module, method: str, static: dict, *, check: bool = False, **arguments: Any
) -> Any:
    """An eager call as one compiled program per module structure, shapes and flags:
    ``module.<method>(**arguments, **static)`` under ``jax.jit`` (``arguments``: arrays,
    None or pytrees of them; ``static``: hashable flags, part of the cache key with the
    module's graph and :func:`_trace_config`). An eager ``lax.scan`` compiles its body at
    every call (:func:`_eager_call`), and a model run op by op dispatches every operation.
    The weights go in and are not written back (they stay where they are, and a weight
    update another thread makes meanwhile stands); the rest of the module's state
    (stateful states, dropout RNG counters, moving statistics, activity penalties) and an
    ``nnx.Rngs`` argument's counters come back. With ``check``, a module that is not
    :func:`_traceable`, or whose trace met a value read in Python (it is then remembered),
    is not run: :data:`NOT_CACHED` is returned, and the caller runs it op by op."""
    rngs = arguments.get("rngs")
    node_rngs = isinstance(rngs, (nnx.Rngs, nnx.RngStream))
    if node_rngs:
        del arguments["rngs"]
    node = (module, rngs) if node_rngs else module
    config = (*_trace_config(), _spread_over_devices(module, arguments))
    if check and module in _OP_BY_OP:
        return NOT_CACHED
    graphdef, weights, rest = nnx.split(node, nnx.Param, ...)
    if check and not _traceable(graphdef, module):
        return NOT_CACHED
    try:
        outputs, rest = _PROGRAM(
            graphdef, weights, rest, arguments, method=method, static=tuple(static.items()),
            config=config, node_rngs=node_rngs,
        )  # fmt: skip
    except jax.errors.JAXTypeError:  # a value read in Python (numpy, bool(), float())
        if not check:
            raise
        _OP_BY_OP.add(module)  # op by op from now on
        return NOT_CACHED
    nnx.update(node, rest)
    return outputs


def _keras_masked_outputs(
    y: Array | None, h: Array, mask: Array, reverse: bool, zero_output: bool
) -> tuple[Array | None, Array]:
    """Keras' outputs of a masked call (as :func:`rnn_scan`) from a native kernel's state
    sequence ``y (batch, time, units)`` (or None) and final ``h (batch, units)``: a masked
    step outputs the previous output, zeros before the first unmasked step (in processing
    order: last to first when ``reverse``), or zeros always with ``zero_output``. Returns
    ``(outputs, last output)``; ``mask (batch, time)`` is in ``y``'s time order."""
    if zero_output:
        keep, keep_last = mask, mask[:, 0 if reverse else -1]
    else:
        keep = jax.lax.cummax(mask.astype(jnp.int32), axis=1, reverse=reverse) > 0
        keep_last = jnp.any(mask, axis=1)
    if y is not None:
        y = jnp.where(keep[:, :, None], y, jnp.zeros((), y.dtype))
    return y, jnp.where(keep_last[:, None], h, jnp.zeros((), h.dtype))


def initial_activity_loss(regularizer: Any) -> Any:
    """A layer's ``activity_loss`` before its first call: 0 with an activity regularizer
    (the variable exists from construction, so that a call changes no graph structure:
    ``nnx.split``/``merge``, ``nnx.scan`` and cached jits see one module), else None."""
    return nnx.data(None) if regularizer is None else ActivityLoss(jnp.zeros((), jnp.float32))


def record_activity_loss(layer: nnx.Module, outputs: Any) -> None:
    """Keras 3: the activity penalty of every output tensor, each divided by its batch size,
    summed, and kept on ``layer.activity_loss`` until the next call."""
    total = jnp.zeros((), jnp.float32)
    for out in jax.tree_util.tree_leaves(outputs):
        loss = layer.activity_regularizer(out).astype(jnp.float32)
        if out.ndim > 0 and out.shape[0] > 0:
            loss = loss / out.shape[0]
        total = total + loss
    layer.activity_loss.set_value(total)


def _no_kernel_reason(cell: Any) -> str:
    """Why ``cell`` (whose ``native_kernel`` is None) has no kernel, naming the argument."""
    from jrnn import activations as activations_lib

    if isinstance(cell, StackedRNNCells):
        for k, c in enumerate(cell.cells):
            if c.native_kernel is None:
                return f"cells[{k}]: {_no_kernel_reason(c)}"
    name = type(cell).__name__
    if hasattr(cell, "native_kernel") and type(cell).native_kernel is RNNCellBase.native_kernel:
        return f"{name} has no native kernel (LSTM, GRU, SimpleRNN and ConvLSTM cells have)"
    wanted = {"activation": activations_lib.tanh}
    if hasattr(cell, "recurrent_activation"):
        wanted["recurrent_activation"] = activations_lib.sigmoid
    for argument, function in wanted.items():
        value = getattr(cell, argument, None)
        if value is not function:
            try:
                shown = repr(activations_lib.serialize(value))
            except (ValueError, TypeError):
                shown = getattr(value, "__name__", repr(value))
            return (
                f"{name} has {argument}={shown}; the kernel computes Keras' default "
                f"({function.__name__})"
            )
    if getattr(cell, "reset_after", True) is False:
        return f"{name} has reset_after=False; the kernel computes reset_after=True"
    if getattr(cell, "data_format", "channels_last") != "channels_last":
        return f"{name} has data_format={cell.data_format!r}; the kernel runs channels_last"
    return f"{name} in this configuration has no native kernel"


def _explicitly_sharded(a: Any) -> bool:
    """Whether ``a``'s type carries a sharding over mesh axes (JAX's explicit sharding)."""
    spec = getattr(getattr(jax.typeof(a), "sharding", None), "spec", None)
    return spec is not None and any(s is not None for s in spec)


#: The shortest calls on which ``native=None`` runs the dense kernels (LSTM, GRU,
#: SimpleRNN) on CPU, per compute dtype: at least 2 steps and this many rows of batch ×
#: time. A kernel call first packs the weights into fresh panels (at (64, 1, 1024, 1024)
#: the packing alone took 8-12 ms where XLA's whole step took 5), which a short call does
#: not win back; the bfloat16 scan is slower, so the kernel pays off sooner there. Fitted
#: to 504 measured points (docs/performance.md, "Short calls"). ConvLSTM's kernel, whose
#: rows are the pixels of every frame, won from one step on and has no minimum.
SHORT_CALL_ROWS = {jnp.dtype(jnp.float32): 32, jnp.dtype(jnp.bfloat16): 8}
#: ... and the fewest steps (one step is one product of each weight: nothing to gain).
SHORT_CALL_STEPS = 2


def _unknown_size(shapes: Any) -> bool:
    """Whether nested state shapes hold a None size (a ConvLSTM cell not bound to frames)."""
    if isinstance(shapes, (tuple, list)):
        return any(d is None or _unknown_size(d) for d in shapes)
    return False


def _short_call(cells, batch: int, time: int, compute) -> str | None:
    """Why ``native=None`` runs a call of ``batch`` × ``time`` on the XLA scan rather than
    the dense kernels (:data:`SHORT_CALL_ROWS`, :data:`SHORT_CALL_STEPS`), or None."""
    if any(c.native_kernel not in _DENSE_KERNELS for c in cells):
        return None  # ConvLSTM
    least = SHORT_CALL_ROWS[jnp.dtype(compute)]
    if time >= SHORT_CALL_STEPS and batch * time >= least:
        return None
    return (
        f"the call is too short to pay for packing the weights (batch {batch} × time "
        f"{time}; native=None runs the kernel from {SHORT_CALL_STEPS} steps and {least} "
        f"rows of batch × time in {jnp.dtype(compute).name})"
    )


def _bias(params: dict[str, Any], name: str) -> Array:
    """A cell's bias ``params[name]``, or zeros of the kernel's width without one."""
    b = params.get(name)
    w = params["kernel"]
    return jnp.zeros((w.shape[-1],), w.dtype) if b is None else b


#: The dense native kernels: the cell parameters each takes, in order (a bias the cell
#: lacks stands for zeros), and its function over one direction and over both at once.
_DENSE_KERNELS = {
    "lstm": (
        ("kernel", "bias", "recurrent_kernel"),
        native_kernels.lstm,
        native_kernels.lstm_bidirectional,
    ),
    "gru": (
        ("kernel", "input_bias", "recurrent_bias", "recurrent_kernel"),
        native_kernels.gru,
        native_kernels.gru_bidirectional,
    ),
    "simple_rnn": (
        ("kernel", "bias", "recurrent_kernel"),
        native_kernels.simple_rnn,
        native_kernels.simple_rnn_bidirectional,
    ),
}


#: The same on GPU: cuDNN's LSTM (:mod:`jrnn.native.cudnn`), LSTM only.
_CUDNN_KERNELS = {"lstm": (_DENSE_KERNELS["lstm"][0], cudnn.lstm, cudnn.lstm_bidirectional)}


def _dense_kernels() -> dict[str, tuple[tuple[str, ...], Any, Any]]:
    """The dense kernel table of the default backend (``_DENSE_KERNELS`` or, on GPU,
    ``_CUDNN_KERNELS``)."""
    return _CUDNN_KERNELS if cudnn.on_gpu() else _DENSE_KERNELS


def _dense_args(params: dict[str, Any], names: tuple[str, ...]) -> list[Array]:
    """The arguments of a dense kernel (``_DENSE_KERNELS``) from a cell's parameters."""
    return [_bias(params, n) if "bias" in n else params[n] for n in names]


def native_pair(
    forward: RNN,
    backward: RNN,
    inputs: Any,
    training: bool,
    states: tuple[Any, Any],
    mask: Any = None,
) -> tuple[Array | None, tuple[Array, Array], tuple[Array, ...], tuple[Array, ...]] | None:
    """Both layers of a Bidirectional LSTM, GRU or SimpleRNN in one native call
    (:func:`jrnn.native.lstm_bidirectional` and its GRU and SimpleRNN twins; on GPU,
    LSTM only, :func:`jrnn.native.cudnn.lstm_bidirectional`), or
    None when the pair cannot run that way: both must be layers of one such cell type
    whose call runs on the native kernel (see ``native``) with no input dropout,
    ``forward`` running forwards and ``backward`` backwards in time, of one size and dtype,
    without ``remat`` or an activity regularizer; a ``mask`` (``(batch, time)``, Keras'
    masking) only for kernels in ``jrnn.native.MASKED_KERNELS``. ``states``: each
    direction's ``initial_state`` (or None).

    Returns ``(y, (forward's last output, backward's), forward's final carry,
    backward's)``: ``y (batch, time, 2 units)`` (the forward outputs, then the backward
    ones at their inputs' time index; None without ``return_sequences``); stateful layers
    keep their final carries.
    """
    layers = (forward, backward)
    kernel = forward.cell.native_kernel
    kernels = _dense_kernels()
    if forward.go_backwards or not backward.go_backwards or kernel not in kernels:
        return None
    for layer in layers:
        if (
            layer.cell.native_kernel != kernel
            or (training and (layer.cell.dropout or layer.cell.recurrent_dropout))
            or layer.remat
            or layer.activity_regularizer is not None
            or type(layer).__call__ is not RNN.__call__
            or type(layer).run is not RNN.run
        ):
            return None
    calls = [
        layer._prepare(inputs, mask, state, training, None, None)
        for layer, state in zip(layers, states)
    ]
    for layer, call in zip(layers, calls):
        blocker = layer._native_blocker(
            call.x, call.params, call.time_mask, call.in_masks, call.rec_masks, None, False,
            call.carry,
        )  # fmt: skip
        if blocker is not None or call.in_masks is not None:
            return None
    names, _, both_directions = kernels[kernel]
    arrays = [_dense_args(c.params, names) for c in calls]
    if any(a.shape != b.shape or a.dtype != b.dtype for a, b in zip(*arrays)):
        return None
    stacked = [jnp.stack(pair) for pair in zip(*arrays)]
    initial = [jnp.stack(pair) for pair in zip(*(c.carry for c in calls))]
    steps = calls[0].time_mask
    masked = {} if steps is None else {"mask": steps}
    y, *finals = both_directions(
        calls[0].x, *stacked, *initial, sequence=forward.return_sequences, **masked
    )
    carries = tuple(tuple(f[k] for f in finals) for k in (0, 1))
    for layer, carry in zip(layers, carries):
        layer._keep_states(carry)
    lasts = (carries[0][0], carries[1][0])
    if steps is not None:  # Keras' outputs of masked steps, per direction
        halves = (None, None) if y is None else jnp.split(y, 2, axis=-1)
        outs = [
            _keras_masked_outputs(
                halves[k], lasts[k], steps, k == 1, layers[k].zero_output_for_mask
            )
            for k in (0, 1)
        ]
        y = None if y is None else jnp.concatenate([o[0] for o in outs], axis=-1)
        lasts = (outs[0][1], outs[1][1])
    return y, lasts, *carries


def _native_runner(
    cell: RNNCellBase, params: dict[str, Any], sequence: bool, reverse: bool = False
):
    """``run(x (batch, time, *in), carry, mask=None) -> (y (batch, time, *out) or None,
    final carry)`` on the cell's native kernel (its ``native_kernel``) with the cell's
    ``params()``; ``sequence=False`` skips the output sequence; ``reverse`` runs from the
    last time index to the first (kernels in ``jrnn.native.REVERSIBLE_KERNELS``)."""
    kernel = cell.native_kernel
    if reverse and kernel not in native_kernels.REVERSIBLE_KERNELS:
        raise ValueError(f"jrnn: the native {kernel} kernel does not run backwards in time")
    kernels = _dense_kernels()
    if kernel in kernels:
        names, one_direction, _ = kernels[kernel]
        args = _dense_args(params, names)

        def run(x, carry, steps=None):
            masked = {} if steps is None else {"mask": steps}
            y, *final = one_direction(
                x, *args, *carry, sequence=sequence, reverse=reverse, **masked
            )
            return y, tuple(final)

    elif kernel == "conv_lstm":

        def run(x, carry, steps=None):
            if steps is not None:
                raise ValueError("jrnn: the native ConvLSTM kernel takes no mask")
            y, h, c = native_kernels.conv_lstm(
                x,
                params["kernel"],
                _bias(params, "bias"),
                params["recurrent_kernel"],
                *carry,
                strides=cell.strides,
                padding=cell.padding,
                dilation=cell.dilation_rate,
                sequence=sequence,
            )
            return y, (h, c)

    else:
        raise ValueError(
            f"unknown native kernel {kernel!r}; expected 'lstm', 'gru', 'simple_rnn' or "
            "'conv_lstm'."
        )
    return run


def _bound_step(cell, params, rec_masks, constants, carry, x_t):
    # Weights wider than the compute dtype (a mixed policy's float32) are cast here, in
    # each step, as Keras 3 reads its variables: their gradients accumulate over the
    # steps in float32 (a float16 sum overflows ~40x sooner). XLA hoists the casts out of
    # the forward loop.
    return cell.step(cell.cast_params(params), carry, x_t, rec_masks, constants)


def _bound_projection(cell, params, in_masks, xs):
    low = cell.cast_params(params)
    leaves = jax.tree_util.tree_leaves(params)
    if not all(isinstance(a, (jax.Array, np.ndarray)) for a in leaves) or all(
        a.dtype == b.dtype for a, b in zip(leaves, jax.tree_util.tree_leaves(low))
    ):  # nothing wider, or leaves a custom JVP cannot take (a cell's own numbers, functions)
        return cell.project_inputs(low, xs, in_masks)
    return _wide_gradient_projection(cell)(params, xs, in_masks)


def _wide_gradient_projection(cell):
    """``cell.project_inputs`` on ``cell.cast_params(params)`` (the compute dtype), whose
    derivative with respect to ``params`` runs in their own, wider dtype.

    The hoisted projection sums its weights' gradient over every step and batch row at
    once; in float16 that sum overflows where Keras 3's per-step float32 accumulation
    does not. The derivative with respect to the inputs stays in the compute dtype.
    """

    @jax.custom_jvp
    def project(params, xs, masks):
        return cell.project_inputs(cell.cast_params(params), xs, masks)

    def tangent(t):
        return jnp.zeros(t.shape, t.dtype) if isinstance(t, SymbolicZero) else t

    @functools.partial(project.defjvp, symbolic_zeros=True)
    def project_jvp(primals, tangents):
        params, xs, masks = primals
        d_params, d_xs, _ = tangents
        low = cell.cast_params(params)
        if isinstance(d_xs, SymbolicZero):
            y = cell.project_inputs(low, xs, masks)
            dy = jnp.zeros_like(y)
        else:
            y, dy = jax.jvp(lambda x: cell.project_inputs(low, x, masks), (xs,), (d_xs,))
        if any(not isinstance(t, SymbolicZero) for t in jax.tree_util.tree_leaves(d_params)):
            floats = [a.dtype for a in jax.tree_util.tree_leaves(params) if float_array(a)]
            wide = max(floats, key=lambda d: d.itemsize)

            def widened(tree):  # weights, inputs and dropout masks all in the wide dtype
                return jax.tree_util.tree_map(
                    lambda a: a.astype(wide) if float_array(a) else a, tree
                )

            _, dy_params = jax.jvp(
                lambda p: cell.project_inputs(widened(p), widened(xs), widened(masks)),
                (params,),
                (jax.tree_util.tree_map(tangent, d_params),),
            )
            dy = dy + dy_params.astype(dy.dtype)
        return y, dy

    return project


__all__ = [
    "RNN",
    "ActivityLoss",
    "RNNResult",
    "RNNState",
    "record_activity_loss",
    "rnn_scan",
    "segment_length",
]
