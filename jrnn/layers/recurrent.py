"""SimpleRNN, GRU and LSTM layers: :class:`jrnn.RNN` around the matching cell.

Each layer takes Keras 3's arguments: the cell's (units, activations, initializers,
dropout, ...) and the RNN layer's (return_sequences, return_state, go_backwards,
stateful, unroll, zero_output_for_mask), plus ``in_features`` (jrnn modules are built
eagerly) and ``rngs``. Parameters live on ``layer.cell`` in Keras layout.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jrnn import _checks
from jrnn._config import capture, register
from jrnn.cells.gru import GRUCell
from jrnn.cells.lstm import LSTMCell
from jrnn.cells.simple import SimpleRNNCell
from jrnn.rnn import RNN

_RNN_ARGUMENTS = (
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
    "unroll",
    "zero_output_for_mask",
    "remat",
    "hoist_input_projection",
    "native",
    "activity_regularizer",
    "batch_size",
    "name",
)


def _split_arguments(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a layer's ``locals()`` into (cell arguments, RNN arguments)."""
    arguments = {k: v for k, v in arguments.items() if k not in ("self", "__class__")}
    rnn_arguments = {k: arguments.pop(k) for k in _RNN_ARGUMENTS if k in arguments}
    arguments["name"] = rnn_arguments["name"] and f"{rnn_arguments['name']}_cell"
    return arguments, rnn_arguments


def _check_use_cudnn(value: Any, owner: Any) -> Any:
    return _checks.one_of(value, "use_cudnn", ("auto", True, False), owner)


@register
class SimpleRNN(RNN):
    """Fully-connected RNN layer (Keras ``SimpleRNN``): ``h' = act(x W + b + h R)``.

    Args: ``units``, ``in_features`` and every argument of :class:`jrnn.SimpleRNNCell` and
    :class:`jrnn.RNN`. On CPU a tanh SimpleRNN runs on jrnn's native kernel where it
    applies (``native``, see :class:`jrnn.RNN`).

    Call: ``layer(inputs (batch, time, in_features), mask=None, initial_state=None,
    training=False)`` -> ``(batch, units)``, ``(batch, time, units)`` with
    ``return_sequences``, and ``(output, h)`` with ``return_state``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.SimpleRNN(4, 3, return_sequences=True, rngs=nnx.Rngs(0))
      >>> layer(jnp.ones((2, 7, 3))).shape
      (2, 7, 4)
    """

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        activation: Any = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
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
        self._config = capture(locals())
        cell_arguments, rnn_arguments = _split_arguments(locals())
        super().__init__(SimpleRNNCell(**cell_arguments), **rnn_arguments)


@register
class GRU(RNN):
    """Gated recurrent unit layer (Keras ``GRU``), ``reset_after`` True (default) or False.

    Args: ``units``, ``in_features`` and every argument of :class:`jrnn.GRUCell` and
    :class:`jrnn.RNN`; ``use_cudnn`` ("auto", True, False) is accepted and changes
    nothing: JAX has no cuDNN GRU, so on GPU the GRU runs the XLA scan with its input
    projection hoisted, which is what Keras-on-JAX's GRU "fast path" does too. On CPU a
    ``reset_after=True`` GRU runs on jrnn's native kernel where it applies (``native``,
    see :class:`jrnn.RNN`).

    Call: as :class:`jrnn.SimpleRNN`; ``return_state`` gives ``(output, h)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.GRU(4, 3, return_state=True, rngs=nnx.Rngs(0))
      >>> y, h = layer(jnp.ones((2, 7, 3)))
      >>> y.shape, h.shape, layer.cell.bias.shape
      ((2, 4), (2, 4), (2, 12))
    """

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
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
        reset_after: bool = True,
        use_cudnn: Any = "auto",
        implementation: int = 2,
        batch_size: int | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        cell_arguments, rnn_arguments = _split_arguments(locals())
        self.use_cudnn = _check_use_cudnn(cell_arguments.pop("use_cudnn"), self)
        super().__init__(GRUCell(**cell_arguments), **rnn_arguments)


@register
class LSTM(RNN):
    """Long short-term memory layer (Keras ``LSTM``).

    Args: ``units``, ``in_features`` and every argument of :class:`jrnn.LSTMCell` and
    :class:`jrnn.RNN`; ``use_cudnn``: "auto" (default) picks the faster path (on CPU
    jrnn's native kernel where it applies, see ``native`` in :class:`jrnn.RNN`; on a CUDA
    GPU the XLA scan unrolled 16 steps, which beat JAX's cuDNN LSTM, the path Keras 3.15
    on JAX takes, at most of the benchmark's shapes), True requires the backend's kernel
    (cuDNN on GPU, :mod:`jrnn.native.cudnn`; jrnn's native kernel on CPU), raising an
    error that names what prevents it, as Keras does; False never runs cuDNN.

    Call: ``layer(inputs (batch, time, in_features), mask=None, initial_state=None,
    training=False)``; ``return_state`` gives ``(output, h, c)`` (Keras' order).

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> import jrnn
      >>> layer = jrnn.LSTM(4, 3, return_sequences=True, return_state=True, rngs=nnx.Rngs(0))
      >>> y, h, c = layer(jnp.ones((2, 7, 3)))
      >>> y.shape, h.shape, c.shape
      ((2, 7, 4), (2, 4), (2, 4))
    """

    _use_cudnn_demands_kernel = True  # see jrnn.RNN

    def __init__(
        self,
        units: int,
        in_features: int,
        *,
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
        use_cudnn: Any = "auto",
        implementation: int = 2,
        batch_size: int | None = None,
        dtype: Any = None,
        param_dtype: Any = None,
        name: str | None = None,
        rngs: nnx.Rngs,
    ):
        self._config = capture(locals())
        cell_arguments, rnn_arguments = _split_arguments(locals())
        self.use_cudnn = _check_use_cudnn(cell_arguments.pop("use_cudnn"), self)
        super().__init__(LSTMCell(**cell_arguments), **rnn_arguments)


__all__ = ["GRU", "LSTM", "SimpleRNN"]
