"""Bidirectional and TimeDistributed (Keras 3 semantics)."""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrnn import _checks
from jrnn._config import Configurable, capture, register
from jrnn.rnn import RNN

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _flat_states(states: Any) -> list:
    return jax.tree_util.tree_leaves(states)


@register
class Bidirectional(Configurable, nnx.Module):
    """Keras ``Bidirectional``: a forward and a backward recurrent layer, outputs merged.

    Args:
      layer: a jrnn recurrent layer (any :class:`jrnn.RNN` subclass). It becomes the
        forward layer itself, so weights already set on it are kept (Keras re-creates the
        forward layer from its config instead; jrnn keeps your instance).
      merge_mode: "concat" (default), "sum", "mul", "ave" or None (return both).
      backward_layer: optional backward layer; by default ``layer``'s config with
        ``go_backwards`` flipped and fresh parameters from ``rngs``. A given one must have
        the opposite ``go_backwards`` and the same ``stateful``, ``return_sequences`` and
        ``return_state`` (Keras' checks).
      rngs: ``nnx.Rngs`` for the backward layer's parameters (needed without
        ``backward_layer``).
      name: Keras layer name. The default backward layer is named
        ``backward_<layer name>`` as in Keras.

    As Keras, both directions get ``zero_output_for_mask = return_sequences``.

    Call: ``layer(inputs, mask=None, initial_state=None, training=False)``;
    ``initial_state`` is the forward states followed by the backward states (split in
    halves). Returns the merged output ``(batch, time, 2*units)`` (concat) or
    ``(batch, 2*units)``; with ``return_state`` ``(output, *forward_states,
    *backward_states)``, and with ``merge_mode=None`` ``(y_forward, y_backward, *states)``.
    The backward sequence is flipped back to input time order before merging.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> rngs = nnx.Rngs(0)
      >>> bi = jrnn.Bidirectional(jrnn.LSTM(4, 3, return_sequences=True, rngs=rngs), rngs=rngs)
      >>> bi(jnp.ones((2, 7, 3))).shape
      (2, 7, 8)
    """

    def __init__(
        self,
        layer: RNN,
        merge_mode: str | None = "concat",
        backward_layer: RNN | None = None,
        *,
        rngs: nnx.Rngs | None = None,
        name: str | None = None,
    ):
        self._config = capture(
            {
                "layer": layer,
                "merge_mode": merge_mode,
                "backward_layer": backward_layer,
                "name": name,
            }
        )
        self.name = name
        if not isinstance(layer, RNN):
            raise ValueError(
                f"Bidirectional: `layer` must be a jrnn recurrent layer (jrnn.RNN); received "
                f"{type(layer).__name__}."
            )
        _checks.one_of(merge_mode, "merge_mode", MERGE_MODES, self)
        if backward_layer is None:
            if rngs is None:
                raise ValueError(
                    "Bidirectional: pass `rngs=nnx.Rngs(...)` to initialise the backward layer "
                    "(or give `backward_layer`)."
                )
            base = layer.name or type(layer).__name__.lower()
            backward_layer = layer.rebuild(
                rngs=rngs, go_backwards=not layer.go_backwards, name=f"backward_{base}"
            )
        elif not isinstance(backward_layer, RNN):
            raise ValueError(
                f"Bidirectional: `backward_layer` must be a jrnn recurrent layer; received "
                f"{type(backward_layer).__name__}."
            )
        if layer.go_backwards == backward_layer.go_backwards:
            raise ValueError(
                "Bidirectional: the forward and backward layers must have different "
                f"`go_backwards`; received forward_layer.go_backwards={layer.go_backwards}, "
                f"backward_layer.go_backwards={backward_layer.go_backwards}."
            )
        for attribute in ("stateful", "return_sequences", "return_state"):
            fwd, bwd = getattr(layer, attribute), getattr(backward_layer, attribute)
            if fwd != bwd:
                raise ValueError(
                    f"Bidirectional: the forward and backward layers must have the same "
                    f"`{attribute}`; received {fwd} for the forward layer and {bwd} for the "
                    "backward layer."
                )
        for sub in (layer, backward_layer):
            sub.zero_output_for_mask = sub.return_sequences  # as Keras
        self.forward_layer = layer
        self.backward_layer = backward_layer
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.stateful = layer.stateful

    @property
    def units(self) -> int:
        """The forward layer's units."""
        return self.forward_layer.units

    def reset_state(self, states: Any = None) -> None:
        """Reset both directions (stateful only, as Keras); ``states`` split in halves."""
        if not self.stateful:
            raise AttributeError(
                "Bidirectional.reset_state(): the layer is not stateful; build the wrapped "
                "layer with stateful=True."
            )
        if states is None:
            self.forward_layer.reset_state()
            self.backward_layer.reset_state()
            return
        flat = _flat_states(states)
        half = len(flat) // 2
        self.forward_layer.reset_state(flat[:half])
        self.backward_layer.reset_state(flat[half:])

    def reset_states(self, states: Any = None) -> None:
        """Keras 2 name of :meth:`reset_state`."""
        self.reset_state(states)

    def __call__(
        self, inputs, *, mask=None, initial_state=None, training=False, constants=None, rngs=None
    ):
        """See the class docstring."""
        forward_state = backward_state = None
        if initial_state is not None:
            flat = _flat_states(initial_state)
            if len(flat) % 2:
                raise ValueError(
                    f"Bidirectional: `initial_state` must hold the forward states then the "
                    f"backward states (an even count); received {len(flat)} arrays."
                )
            half = len(flat) // 2
            forward_state, backward_state = flat[:half], flat[half:]
        kwargs = {"mask": mask, "training": training, "constants": constants, "rngs": rngs}
        y = self.forward_layer(inputs, initial_state=forward_state, **kwargs)
        y_rev = self.backward_layer(inputs, initial_state=backward_state, **kwargs)
        states: tuple = ()
        if self.return_state:
            states = (*y[1:], *y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = jnp.flip(y_rev, axis=1)
        if self.merge_mode == "concat":
            output = jnp.concatenate([y, y_rev], axis=-1)
        elif self.merge_mode == "sum":
            output = y + y_rev
        elif self.merge_mode == "ave":
            output = (y + y_rev) / 2
        elif self.merge_mode == "mul":
            output = y * y_rev
        else:
            output = (y, y_rev)
        if self.return_state:
            return (*output, *states) if self.merge_mode is None else (output, *states)
        return output


def _accepts(module: Any, argument: str) -> bool:
    try:
        return argument in inspect.signature(module.__call__).parameters
    except (TypeError, ValueError):
        return False


@register
class TimeDistributed(Configurable, nnx.Module):
    """Keras ``TimeDistributed``: apply ``module`` to every timestep, vectorised.

    The module sees ``(batch * time, *features)`` in one call (no Python loop over time).
    A ``mask (batch, time, ...)`` is passed on as ``mask (batch * time, ...)`` to modules
    whose ``__call__`` takes ``mask`` (e.g. a jrnn recurrent layer on
    ``(batch, time, inner_time, features)`` inputs with a ``(batch, time, inner_time)``
    mask); ``training`` is passed to modules that take it.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> td = jrnn.TimeDistributed(nnx.Linear(3, 5, rngs=nnx.Rngs(0)))
      >>> td(jnp.ones((2, 7, 3))).shape
      (2, 7, 5)
    """

    def __init__(self, module: nnx.Module, *, name: str | None = None):
        self._config = capture({"module": module, "name": name})
        self.name = name
        if getattr(module, "stateful", False):
            raise ValueError(
                "TimeDistributed: a stateful inner layer is not supported (its states would "
                "be shared across timesteps); build it with stateful=False."
            )
        self.layer = module

    def __call__(self, inputs, *, mask=None, training=False):
        """``inputs (batch, time, *features)`` -> ``(batch, time, *module_output)``."""
        x = jnp.asarray(inputs)
        if x.ndim < 3:
            raise ValueError(
                f"TimeDistributed: `inputs` must have rank >= 3 (batch, time, ...); received "
                f"shape {x.shape}."
            )
        batch, time = x.shape[:2]
        kwargs = {}
        if mask is not None:
            m = jnp.asarray(mask)
            if m.ndim < 2 or m.shape[:2] != (batch, time):
                raise ValueError(
                    f"TimeDistributed: `mask` must start with (batch, time) = ({batch}, {time}); "
                    f"received shape {m.shape}."
                )
            if _accepts(self.layer, "mask"):
                kwargs["mask"] = m.reshape(batch * time, *m.shape[2:]) if m.ndim > 2 else None
        if _accepts(self.layer, "training"):
            kwargs["training"] = training
        kwargs = {k: v for k, v in kwargs.items() if v is not None or k == "training"}
        y = self.layer(x.reshape(batch * time, *x.shape[2:]), **kwargs)
        return jax.tree_util.tree_map(lambda a: a.reshape(batch, time, *a.shape[1:]), y)

    @classmethod
    def from_config(cls, config, *, rngs):
        """Rebuild (the inner module must be a registered jrnn module)."""
        from jrnn._config import deserialize

        return cls(deserialize(config["module"], rngs), name=config.get("name"))


__all__ = ["MERGE_MODES", "Bidirectional", "TimeDistributed"]
