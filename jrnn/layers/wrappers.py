"""Bidirectional and TimeDistributed, with Keras 3 semantics.

Keras sources: ``keras/src/layers/rnn/bidirectional.py`` and
``keras/src/layers/rnn/time_distributed.py`` (v3.15.1); where Keras 3 and Keras 2
(``tf.keras`` v2.15) differ, the class docstrings say which one jrnn follows and why.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrnn import _checks
from jrnn._config import Configurable, capture, register
from jrnn._dtypes import resolve_policy
from jrnn.rnn import NOT_CACHED, RNN, RNNState, cached_call, eager_arguments, native_pair

#: The accepted ``merge_mode`` values, as Keras lists them.
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _snake_case(name: str) -> str:
    """Keras' ``to_snake_case`` (``keras/src/utils/naming.py``): ``SimpleRNN`` -> ``simple_rnn``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _removeprefix(name: str, prefix: str) -> str:
    return name[len(prefix) :] if name.startswith(prefix) else name


def _state_count(layer: RNN) -> int:
    """Number of state arrays (carry leaves) of ``layer``: LSTM 2, GRU 1, stacks the sum."""

    def count(shapes: Any) -> int:  # a shape is a tuple of sizes (None: set per call)
        if all(d is None or isinstance(d, int) for d in shapes):
            return 1
        return sum(count(s) for s in shapes)

    return count(layer.cell.state_shapes)


def _split_keys(rngs: Any) -> tuple[Any, Any]:
    """One ``rngs`` call argument for each direction.

    ``nnx.Rngs`` and ``nnx.RngStream`` are stateful (each direction draws its own key
    from them); a raw key is split in two, so the directions never share a dropout mask.
    """
    if rngs is None or isinstance(rngs, (nnx.Rngs, nnx.RngStream)):
        return rngs, rngs
    forward_key, backward_key = jax.random.split(rngs)
    return forward_key, backward_key


@register
class Bidirectional(Configurable, nnx.Module):
    """Keras ``Bidirectional``: a forward and a backward recurrent layer, outputs merged.

    Both directions read the same ``inputs (batch, time, *features)``; the backward one
    has ``go_backwards=True``, so its sequence output is in reversed time order and is
    flipped back to input time order before merging. With forward output ``y`` and
    backward output ``y_rev`` (after the flip), ``merge_mode`` gives::

        "concat": concatenate([y, y_rev], axis=-1)      "sum": y + y_rev
        "mul":    y * y_rev      "ave": (y + y_rev) / 2  None:  (y, y_rev)

    Args:
      layer: a jrnn recurrent layer: any :class:`jrnn.RNN` subclass (SimpleRNN, GRU,
        LSTM, RNN over a cell or a list of cells, ConvLSTM1D/2D/3D, IndRNN, CuDNNLSTM,
        CuDNNGRU, ...). Only the ``RNN`` API is used: ``get_config``/``rebuild``,
        ``go_backwards``, ``return_sequences``, ``return_state``, ``stateful``,
        ``zero_output_for_mask``, ``reset_state`` and the call.
      merge_mode: one of ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or
        ``None`` (return both outputs).
      backward_layer: optional jrnn recurrent layer for the backward direction. It must
        have the opposite ``go_backwards`` and the same ``stateful``,
        ``return_sequences`` and ``return_state`` as ``layer`` (Keras' checks and
        messages). It may differ otherwise (another cell type, other ``units``; then
        only ``"concat"`` and ``None`` can merge outputs of different sizes). It is used
        as given (not copied), as in Keras.
      rngs: ``nnx.Rngs`` for fresh parameters. **With** ``rngs`` jrnn does what Keras
        does: the forward layer is a new layer built from ``layer``'s config (named
        ``forward_<name>``) and the default backward layer another one with
        ``go_backwards`` flipped (named ``backward_<name>``), both freshly initialised;
        ``layer`` itself is left untouched and unused. **Without** ``rngs``, ``layer``
        itself becomes ``forward_layer`` (its weights, e.g. loaded or trained, are kept
        and shared with the caller; its name is kept) and ``backward_layer`` must be
        given, since a fresh backward layer needs ``rngs`` (to keep trained forward
        weights and build a fresh backward layer, pass
        ``backward_layer=layer.rebuild(rngs=..., go_backwards=not layer.go_backwards)``).
        Rebuilding needs ``layer``'s recorded config, so a custom cell must be registered
        (``jrnn._config.register``); otherwise give both layers and no ``rngs``.
      name: Keras layer name. Names of the default directions come from ``layer.name``
        (or Keras' snake-case class name, e.g. ``lstm``, ``simple_rnn``).
      dtype: Keras dtype policy of the wrapper: both directions' outputs (not the states)
        are cast to its compute dtype before merging, as Keras does. ``None`` is float32,
        Keras' default policy, so a ``mixed_bfloat16`` layer gives float32 outputs, as in
        Keras unless the wrapper itself gets ``dtype="mixed_bfloat16"``.

    As Keras, both directions get ``zero_output_for_mask = return_sequences`` (masked
    steps of a returned sequence are zeros); this attribute is set on the layers
    Bidirectional runs, including a given ``backward_layer`` and, without ``rngs``,
    ``layer``.

    Differences from Keras 3: a ``layer`` with ``go_backwards=True`` is accepted and its
    flipped twin (``go_backwards=False``) runs backwards, as in Keras 2 (Keras 3 sets the
    twin's ``go_backwards=True`` and then refuses the pair); Keras' ``weights=`` argument
    is not taken (Keras 3.15 stores it as ``initial_weights``, which nothing reads, so it
    has no effect there; set parameters on ``forward_layer``/``backward_layer``); ``constants``
    (Keras 2) are passed to both directions; ``initial_state`` is split at the forward
    layer's state count, which is Keras' split in halves whenever the directions have the
    same states, and also works for a backward layer with other states.

    Call args:
      inputs: ``(batch, time, *features)``.
      mask: optional ``(batch, time)`` booleans, passed to both directions.
      initial_state: optional list: the forward layer's states then the backward
        layer's (``[h_f, c_f, h_b, c_b]`` for LSTM; nested per cell or flat for stacks).
      training: apply the layers' dropout (passed to both).
      constants: Keras-2 constants, passed to both (for cells that accept them).
      rngs: optional ``nnx.Rngs``/stream/key for dropout; a raw key is split in two.

    Returns:
      The merged output: ``(batch, time, 2 * units)`` for ``"concat"`` with
      ``return_sequences``, ``(batch, 2 * units)`` without (``units`` for the other
      modes); ``merge_mode=None`` gives ``(y, y_rev)``. With ``return_state``:
      ``(output, *forward_states, *backward_states)``, or with ``merge_mode=None``
      ``(y, y_rev, *forward_states, *backward_states)``, as Keras.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> rngs = nnx.Rngs(0)
      >>> bi = jrnn.Bidirectional(
      ...     jrnn.LSTM(4, 3, return_sequences=True, return_state=True, rngs=rngs), rngs=rngs
      ... )
      >>> y, h_f, c_f, h_b, c_b = bi(jnp.ones((2, 7, 3)))
      >>> y.shape, h_b.shape, bi.forward_layer.name, bi.backward_layer.name
      ((2, 7, 8), (2, 4), 'forward_lstm', 'backward_lstm')
      >>> fwd = jrnn.GRU(4, 3, rngs=rngs)  # e.g. with trained weights: kept without rngs
      >>> bwd = jrnn.SimpleRNN(2, 3, go_backwards=True, rngs=rngs)
      >>> bi = jrnn.Bidirectional(fwd, backward_layer=bwd)
      >>> bi.forward_layer is fwd, bi(jnp.ones((2, 7, 3))).shape
      (True, (2, 6))
    """

    def __init__(
        self,
        layer: RNN,
        merge_mode: str | None = "concat",
        backward_layer: RNN | None = None,
        *,
        rngs: nnx.Rngs | None = None,
        name: str | None = None,
        dtype: Any = None,
    ):
        self._config = capture(locals())
        self.name = _checks.name(name, self)
        if not isinstance(layer, RNN):
            raise ValueError(
                f"{_checks.where(self)}: `layer` must be a jrnn recurrent layer (a jrnn.RNN "
                f"subclass such as jrnn.LSTM); received {type(layer).__name__}."
            )
        if backward_layer is not None and not isinstance(backward_layer, RNN):
            raise ValueError(
                f"{_checks.where(self)}: `backward_layer` must be a jrnn recurrent layer (a "
                f"jrnn.RNN subclass) or None; received {type(backward_layer).__name__}."
            )
        if merge_mode is not None and not (
            isinstance(merge_mode, str) and merge_mode in MERGE_MODES
        ):
            raise ValueError(
                f"{_checks.where(self)}: Invalid merge mode. Received: `merge_mode`="
                f'{merge_mode!r}. Merge mode should be one of {{"sum", "mul", "ave", "concat", '
                "None}."
            )
        self.policy = resolve_policy(dtype, None, _checks.where(self))
        base = layer.name or _snake_case(type(layer).__name__)
        if rngs is not None:
            forward = layer.rebuild(rngs=rngs, name=f"forward_{_removeprefix(base, 'forward_')}")
        elif backward_layer is not None:
            forward = layer
        else:
            raise ValueError(
                f"{_checks.where(self)}: the backward layer needs fresh parameters; expected "
                "`rngs=nnx.Rngs(...)` (Keras' behaviour: both directions are rebuilt from "
                "`layer`'s config) or `backward_layer=` (then `layer` is used as the forward "
                "layer with its weights); received neither."
            )
        if backward_layer is None:
            backward_layer = layer.rebuild(
                rngs=rngs,
                go_backwards=not layer.go_backwards,
                name=f"backward_{_removeprefix(base, 'backward_')}",
            )
        self._verify_layer_config(forward, backward_layer)
        for direction in (forward, backward_layer):
            if not getattr(direction, "keeps_output_when_masked", False):  # tf.keras' ConvRNN
                direction.zero_output_for_mask = direction.return_sequences  # as Keras
        self.forward_layer = forward
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = forward.return_sequences
        self.return_state = forward.return_state
        self.stateful = forward.stateful

    def _verify_layer_config(self, forward: RNN, backward: RNN) -> None:
        where = _checks.where(self)
        if forward.go_backwards == backward.go_backwards:
            raise ValueError(
                f"{where}: Forward layer and backward layer should have different "
                f"`go_backwards` value. Received: forward_layer.go_backwards "
                f"{forward.go_backwards}, backward_layer.go_backwards={backward.go_backwards}"
            )
        for attribute in ("stateful", "return_sequences", "return_state"):
            forward_value, backward_value = (
                getattr(forward, attribute),
                getattr(backward, attribute),
            )
            if forward_value != backward_value:
                raise ValueError(
                    f"{where}: Forward layer and backward layer are expected to have the same "
                    f'value for attribute "{attribute}", got "{forward_value}" for forward '
                    f'layer and "{backward_value}" for backward layer'
                )

    @property
    def units(self) -> int:
        """The forward layer's ``units`` (what see-rnn style summaries report)."""
        return self.forward_layer.units

    # ------------------------------------------------------------------ states
    def _split_states(self, states: Any, argument: str) -> tuple[list, list]:
        flat = jax.tree_util.tree_leaves(states)
        n_forward = _state_count(self.forward_layer)
        n_backward = _state_count(self.backward_layer)
        if len(flat) != n_forward + n_backward:
            raise ValueError(
                f"{_checks.where(self)}: `{argument}` must hold the forward layer's "
                f"{n_forward} state(s) then the backward layer's {n_backward} state(s) "
                f"({n_forward + n_backward} arrays); received {len(flat)}."
            )
        return flat[:n_forward], flat[n_forward:]

    @property
    def states(self) -> tuple | None:
        """The current states of a stateful wrapper, forward's then backward's (flat), as
        Keras' ``states``; None before the first call or when not stateful."""
        values = []
        for direction in (self.forward_layer, self.backward_layer):
            if direction.states is None:
                return None
            values += [
                v.get_value()
                for v in jax.tree_util.tree_leaves(
                    direction.states, is_leaf=lambda v: isinstance(v, RNNState)
                )
            ]
        return tuple(values)

    def reset_state(self, states: Any = None) -> None:
        """Reset both directions' states to zeros, or to ``states`` (forward's then
        backward's, as ``initial_state``). Raises AttributeError when the wrapper is not
        stateful, with Keras' message "Layer must be stateful."."""
        if not self.stateful:
            raise AttributeError(
                f"{_checks.where(self)}: Layer must be stateful. reset_state() needs the "
                "wrapped layer built with stateful=True; received stateful=False."
            )
        if states is None:
            self.forward_layer.reset_state()
            self.backward_layer.reset_state()
            return
        forward_states, backward_states = self._split_states(states, "states")
        self.forward_layer.reset_state(forward_states)
        self.backward_layer.reset_state(backward_states)

    def reset_states(self, states: Any = None) -> None:
        """Keras 2 name of :meth:`reset_state`."""
        self.reset_state(states)

    # ------------------------------------------------------------------ call
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
        """Run both directions and merge; see the class docstring. Called outside any JAX
        transformation, the call runs as one compiled program per shapes and flags
        (:func:`jrnn.rnn.cached_call`), as under ``nnx.jit``."""
        if eager_arguments((inputs, mask, initial_state, constants), training):
            out = cached_call(
                self, "_call", {"training": training}, check=True,
                inputs=inputs, mask=mask, initial_state=initial_state, constants=constants,
                rngs=rngs,
            )  # fmt: skip
            if out is not NOT_CACHED:
                return out
        return self._call(inputs, mask, initial_state, training, constants, rngs)

    def _call(self, inputs, mask, initial_state, training, constants, rngs) -> Any:
        """:meth:`__call__`'s work, traced or not."""
        with jax.named_scope("jrnn.Bidirectional"), contextlib.ExitStack() as bound:
            for layer in (self.forward_layer, self.backward_layer):
                if isinstance(layer, RNN):  # ConvLSTM: the shapes of this call's frames
                    bound.enter_context(layer.cell.bound_to(tuple(np.shape(inputs))[2:]))
            forward_state = backward_state = None
            if initial_state is not None:
                forward_state, backward_state = self._split_states(initial_state, "initial_state")
            pair = None
            layers = (self.forward_layer, self.backward_layer)
            if constants is None and all(isinstance(m, RNN) for m in layers):
                pair = native_pair(
                    self.forward_layer,
                    self.backward_layer,
                    inputs,
                    training,
                    (forward_state, backward_state),
                    mask,
                )
            dtype = self.policy.compute_dtype
            if pair is not None:
                # Both directions in one native call, the output already concatenated.
                both, lasts, forward_final, backward_final = pair
                states = (*forward_final, *backward_final) if self.return_state else ()
                if both is not None and self.merge_mode == "concat":
                    output = both.astype(dtype)
                else:
                    y, y_rev = jnp.split(both, 2, axis=-1) if both is not None else lasts
                    output = self._merge(y.astype(dtype), y_rev.astype(dtype))
            else:
                forward_rngs, backward_rngs = _split_keys(rngs)
                common = {"mask": mask, "training": training, "constants": constants}
                y = self.forward_layer(
                    inputs, initial_state=forward_state, rngs=forward_rngs, **common
                )
                y_rev = self.backward_layer(
                    inputs, initial_state=backward_state, rngs=backward_rngs, **common
                )
                states = ()
                if self.return_state:
                    states = (*y[1:], *y_rev[1:])
                    y, y_rev = y[0], y_rev[0]
                y, y_rev = y.astype(dtype), y_rev.astype(dtype)
                if self.return_sequences:
                    y_rev = jnp.flip(y_rev, axis=1)
                output = self._merge(y, y_rev)
            if self.return_state:
                return (*output, *states) if self.merge_mode is None else (output, *states)
            return output

    def _merge(self, y: jax.Array, y_rev: jax.Array) -> Any:
        if self.merge_mode is None:
            return (y, y_rev)
        if self.merge_mode == "concat":
            if y.shape[:-1] != y_rev.shape[:-1]:
                raise ValueError(
                    f"{_checks.where(self)}: merge_mode='concat' needs outputs that differ only "
                    f"in the last axis; received forward {y.shape}, backward {y_rev.shape}."
                )
            return jnp.concatenate([y, y_rev], axis=-1)
        if y.shape != y_rev.shape:
            raise ValueError(
                f"{_checks.where(self)}: merge_mode={self.merge_mode!r} needs forward and "
                f"backward outputs of the same shape; received forward {y.shape}, backward "
                f"{y_rev.shape}. Use merge_mode='concat' or None for layers of different sizes."
            )
        if self.merge_mode == "sum":
            return y + y_rev
        if self.merge_mode == "ave":
            return (y + y_rev) / 2
        return y * y_rev


def _accepts(module: Any, argument: str) -> bool:
    """Whether ``module.__call__`` has a parameter named ``argument`` (Keras'
    ``_call_has_mask_arg`` / ``_call_has_training_arg``)."""
    try:
        parameters = inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get(argument)
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _couples_the_batch(module: nnx.Module) -> bool:
    """Whether ``module`` holds a layer whose training-mode output for one sample depends
    on the other samples of the batch (batch normalization's statistics)."""
    from jrnn.layers.core import BatchNormalization

    return any(
        isinstance(m, (BatchNormalization, nnx.BatchNorm)) for _, m in nnx.iter_graph(module)
    )


def _inner_mask(module: Any, x: Any, mask: Any) -> Any:
    """The output mask Keras 2 computes for ``module(x)`` (the first output's where it
    has several): a recurrent layer keeps ``mask`` only when it returns sequences; a
    layer with ``compute_mask`` says; any other passes it through."""
    if isinstance(module, (RNN, Bidirectional)):
        if not module.return_sequences:
            return None
        return mask
    if hasattr(module, "compute_mask"):
        out = module.compute_mask(x, mask)
        return out[0] if isinstance(out, (list, tuple)) else out
    return mask


@register
class TimeDistributed(Configurable, nnx.Module):
    """Keras ``TimeDistributed``: apply one module to every timestep, with shared weights.

    ``output[:, t] = module(inputs[:, t])`` for every ``t``. Where every sample's output
    depends on that sample alone (all layers but batch normalization in training), the
    timesteps run in one vectorised call: ``inputs (batch, time, *features)`` reshaped to
    ``(batch * time, *features)``, given to ``module`` once, the result reshaped to
    ``(batch, time, *module_output)``. A module holding a ``BatchNormalization`` (or
    ``nnx.BatchNorm``) runs once per timestep in training, as Keras 3 runs every module:
    each timestep then has its own batch statistics and updates the moving ones in turn.
    As Keras 3 (which calls the module's ``call`` once per timestep), the module's own
    activity regularizer adds no penalty, and each layer nested in it adds its penalty of
    every timestep.

    ``keras2=True`` gives tf.keras 2's semantics instead (the importers set it for Keras 2
    models): one call on the reshaped batch whatever the module, so batch statistics pool
    the timesteps and the module's activity penalty counts, and the output mask is the
    module's (:meth:`compute_mask`). tf.keras takes that path whenever the batch size is
    not fixed, as in ``fit``. A wrapped Keras model (:class:`importers.ImportedModel`)
    runs twice there, as in tf.keras, whose ``compute_mask`` runs the model's graph
    again: its layers' activity penalties count twice, and in training its batch
    normalizations move their statistics twice.

    Args:
      layer: any Flax NNX module that maps a batch ``(n, *features)`` to ``(n, ...)``:
        ``nnx.Linear``, :class:`jrnn.Dense`, a jrnn recurrent layer on
        ``(batch, time, inner_time, features)`` inputs, ... (kept as ``self.layer``, as
        Keras), or a model (:class:`importers.ImportedModel`). A stateful recurrent
        module, or a module holding one, is refused: Keras runs it on the timesteps one
        after another, so its states would flow from timestep to timestep of the outer
        axis.
      name: Keras layer name.
      keras2: tf.keras 2's semantics (above); False (Keras 3's) by default.
      module: the former name of ``layer``, still accepted as a keyword.

    Call args:
      inputs: one array ``(batch, time, *features)``, rank >= 3 (a list of arrays is
        refused, as Keras 3 refuses it).
      mask: optional ``(batch, time, ...)`` booleans. As Keras, it is passed on (as
        ``mask[:, t]``, here all timesteps at once: ``(batch * time, ...)``) only to a
        module whose ``__call__`` takes ``mask``: for a recurrent module on 4-D inputs,
        give ``(batch, time, inner_time)``. A module without a ``mask`` argument runs on
        every timestep (masking then concerns downstream layers).
      training: passed to a module whose ``__call__`` takes ``training`` (Flax modules
        that use ``deterministic`` keep their own setting).
      rngs: passed, when given, to a module whose ``__call__`` takes ``rngs``.

    Returns:
      ``(batch, time, *module_output)``; a tuple output (e.g. ``return_state``) gives a
      tuple of such arrays.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> td = jrnn.TimeDistributed(nnx.Linear(3, 5, rngs=nnx.Rngs(0)))
      >>> td(jnp.ones((2, 7, 3))).shape
      (2, 7, 5)
      >>> td = jrnn.TimeDistributed(jrnn.LSTM(4, 3, rngs=nnx.Rngs(0)))
      >>> td(jnp.ones((2, 7, 6, 3)), mask=jnp.ones((2, 7, 6), bool)).shape
      (2, 7, 4)
    """

    def __init__(
        self,
        layer: nnx.Module | None = None,
        *,
        name: str | None = None,
        keras2: bool = False,
        module: nnx.Module | None = None,
    ):
        self.name = _checks.name(name, self)
        if module is not None:
            if layer is not None:
                raise TypeError(
                    f"{_checks.where(self)}: give the wrapped module once, as `layer` (Keras' "
                    "name) or `module` (its former name); received both."
                )
            layer = module
        self._config = capture({"layer": layer, "name": name, "keras2": keras2})
        if not isinstance(layer, nnx.Module):
            raise ValueError(
                f"{_checks.where(self)}: `layer` must be a Flax NNX module (nnx.Module); "
                f"received {type(layer).__name__}."
            )
        stateful = [
            getattr(m, "name", None) or type(m).__name__
            for _, m in nnx.iter_graph(layer)
            if isinstance(m, nnx.Module) and getattr(m, "stateful", False) is True
        ]
        if stateful:
            raise ValueError(
                f"{_checks.where(self)}: `layer` must not be stateful (its states would flow "
                "across the distributed timesteps); expected stateful=False, received "
                f"stateful=True ({stateful[0]!r})."
            )
        self.layer = layer
        self.keras2 = _checks.boolean(keras2, "keras2", self)

    def _checked(self, inputs: Any, mask: Any) -> tuple[jax.Array, Any]:
        if isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"{_checks.where(self)}: `inputs` must be one array (batch, time, ...), as "
                f"Keras 3's TimeDistributed takes; received a {type(inputs).__name__} of "
                f"{len(inputs)}."
            )
        _checks.real_dtype(getattr(inputs, "dtype", None), "inputs", self)
        x = jnp.asarray(inputs)
        if x.ndim < 3:
            raise ValueError(
                f"{_checks.where(self)}: `inputs` must have at least 3 dimensions (batch, "
                f"time, ...); received shape {x.shape}."
            )
        if mask is None:
            return x, None
        m = jnp.asarray(mask)
        if m.ndim < 2:
            raise ValueError(
                f"{_checks.where(self)}: `mask` must be at least 2D (batch, time, ...); "
                f"received shape {m.shape}."
            )
        if m.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"{_checks.where(self)}: `mask` must start with (batch, time) = "
                f"{x.shape[:2]} as the inputs {x.shape}; received shape {m.shape}."
            )
        return x, m

    def __call__(
        self, inputs: Any, *, mask: Any = None, training: bool = False, rngs: Any = None
    ) -> Any:
        """``inputs (batch, time, *features)`` -> ``(batch, time, *module_output)``."""
        return self.call_with_mask(inputs, mask, training=training, rngs=rngs)[0]

    def call_with_mask(
        self, inputs: Any, mask: Any = None, *, training: bool = False, rngs: Any = None
    ) -> tuple[Any, Any]:
        """``(outputs, output mask)`` of one call: the output mask is
        :meth:`compute_mask`'s, taken from the module's own call where the module reports
        it (a model's ``call_with_mask``) instead of running the module again. Called
        outside any JAX transformation, the call runs as one compiled program per shapes
        and flags (:func:`jrnn.rnn.cached_call`), as under ``nnx.jit``."""
        if eager_arguments((inputs, mask), training):
            out = cached_call(
                self, "_call_with_mask", {"training": training}, check=True,
                inputs=inputs, mask=mask, rngs=rngs,
            )  # fmt: skip
            if out is not NOT_CACHED:
                return out
        return self._call_with_mask(inputs, mask, training, rngs)

    def _call_with_mask(self, inputs, mask, training, rngs) -> tuple[Any, Any]:
        """:meth:`call_with_mask`'s work, traced or not."""
        with jax.named_scope("jrnn.TimeDistributed"):
            x, m = self._checked(inputs, mask)
            batch, time = x.shape[:2]
            kwargs: dict[str, Any] = {}
            if _accepts(self.layer, "training"):
                kwargs["training"] = training
            if rngs is not None and _accepts(self.layer, "rngs"):
                kwargs["rngs"] = rngs
            takes_mask = m is not None and _accepts(self.layer, "mask")
            try:
                y, inner = self._distributed(x, m, kwargs, takes_mask, training)
            except ValueError as err:  # the module saw (batch * time, ...): say where from
                raise ValueError(
                    f"{_checks.where(self)}: its {type(self.layer).__name__} got each timestep "
                    f"of the inputs {x.shape} as {(batch * time, *x.shape[2:])}: {err}"
                ) from err
            penalty = getattr(self.layer, "activity_loss", None)
            if not self.keras2 and isinstance(penalty, nnx.Variable):
                penalty.set_value(jnp.zeros_like(penalty.get_value()))  # Keras 3 calls `call`
            return y, self._output_mask(x, m, inner)

    def _distributed(self, x, m, kwargs, takes_mask, training):
        """The module over every timestep (see the class docstring); returns (outputs, the
        module's output mask on the reshaped timesteps where its call reported it, else
        ``_NOT_REPORTED``)."""
        batch, time = x.shape[:2]
        if training and not self.keras2 and _couples_the_batch(self.layer):
            steps, totals = [], {}
            for t in range(time):
                step_kwargs = dict(kwargs)
                if takes_mask:
                    step_kwargs["mask"] = m[:, t]
                if isinstance(step_kwargs.get("rngs"), jax.Array):  # a raw key: one per step
                    step_kwargs["rngs"] = jax.random.fold_in(step_kwargs["rngs"], t)
                steps.append(self.layer(x[:, t], **step_kwargs))
                for penalty in self._nested_penalties():  # Keras 3 adds every step's
                    total = totals.get(id(penalty), (penalty, 0.0))[1] + penalty.get_value()
                    totals[id(penalty)] = (penalty, total)
            for penalty, total in totals.values():
                penalty.set_value(total)
            return jax.tree_util.tree_map(lambda *a: jnp.stack(a, axis=1), *steps), _NOT_REPORTED
        if takes_mask:
            kwargs["mask"] = m.reshape(batch * time, *m.shape[2:])
        flat = x.reshape(batch * time, *x.shape[2:])
        inner = _NOT_REPORTED
        if self.keras2 and getattr(type(self.layer), "is_imported_keras_model", False):
            y, inner = self._keras2_model_call(flat, kwargs, training)
        elif self.keras2 and hasattr(self.layer, "call_with_mask"):
            y, inner = self.layer.call_with_mask(flat, **kwargs)
        else:
            y = self.layer(flat, **kwargs)
        if not self.keras2:  # Keras 3: T calls, each penalty over B rows (here B * T rows)
            for penalty in self._nested_penalties():
                penalty.set_value(penalty.get_value() * time)
        return jax.tree_util.tree_map(lambda a: a.reshape(batch, time, *a.shape[1:]), y), inner

    def _keras2_model_call(self, flat, kwargs, training):
        """tf.keras' ``TimeDistributed(model)``: the model's call, then the model run again
        on the same inputs for the output mask (``compute_mask`` of a Keras 2 model runs
        its graph, in the call's training mode): its layers' activity penalties count
        twice, and in training its batch normalizations move their statistics twice, as
        in tf.keras' ``fit``. The second run is made only where it changes something."""
        y, inner = self.layer.call_with_mask(flat, **kwargs)
        penalties = self._nested_penalties()
        if training and _couples_the_batch(self.layer):
            first = [p.get_value() for p in penalties]
            _, inner = self.layer.call_with_mask(flat, **kwargs)
            for penalty, value in zip(penalties, first):
                penalty.set_value(penalty.get_value() + value)
        else:
            for penalty in penalties:
                penalty.set_value(penalty.get_value() * 2)
        return y, inner

    def _nested_penalties(self) -> list:
        """The activity penalties recorded by the layers inside the module (not its own)."""
        return [
            m.activity_loss
            for _, m in nnx.iter_graph(self.layer)
            if m is not self.layer
            and isinstance(m, nnx.Module)
            and isinstance(getattr(m, "activity_loss", None), nnx.Variable)
        ]

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        """The output mask. Keras 3: ``mask`` as given. ``keras2=True``: tf.keras 2's rule,
        the module's own output mask on the reshaped timesteps (an ``Embedding(mask_zero=
        True)`` gives ``(batch, time, words)``), or where it gives none, ``mask`` reduced
        to ``(batch, time)`` by ``any`` over its trailing axes."""
        if not self.keras2:
            return mask
        x, m = self._checked(inputs, mask)
        return self._output_mask(x, m, _NOT_REPORTED)

    def _output_mask(self, x: jax.Array, m: Any, inner: Any) -> Any:
        """:meth:`compute_mask` given the module's output mask ``inner`` on the reshaped
        timesteps (``_NOT_REPORTED``: ask the module)."""
        if not self.keras2:
            return m
        batch, time = x.shape[:2]
        if inner is _NOT_REPORTED:
            inner = _inner_mask(
                self.layer,
                x.reshape(batch * time, *x.shape[2:]),
                None if m is None else m.reshape(batch * time, *m.shape[2:]),
            )
        if isinstance(inner, (list, tuple)):  # a model's several outputs: the first's
            inner = inner[0] if inner else None
        if inner is None:
            return None if m is None else jnp.any(m, axis=tuple(range(2, m.ndim)))
        return jnp.reshape(inner, (batch, time, *jnp.shape(inner)[1:]))


_NOT_REPORTED = object()  # a module call that gave no output mask


__all__ = ["MERGE_MODES", "Bidirectional", "TimeDistributed"]
