"""Build a jrnn layer and its Keras 3 twin from one spec, with the same random weights.

A *spec* is a dict: ``kind`` ("simple", "gru", "lstm"), ``units`` and the cell arguments
shared by both libraries (activation, recurrent_activation, use_bias, reset_after,
implementation, unit_forget_bias). A stack is a list of specs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np
import tensorflow as tf
from flax import nnx

import jrnn
from tests.helpers import cell_weights, randomize

JRNN_CELLS = {"simple": jrnn.SimpleRNNCell, "gru": jrnn.GRUCell, "lstm": jrnn.LSTMCell}
JRNN_LAYERS = {"simple": jrnn.SimpleRNN, "gru": jrnn.GRU, "lstm": jrnn.LSTM}
KERAS_CELLS = {
    "simple": keras.layers.SimpleRNNCell,
    "gru": keras.layers.GRUCell,
    "lstm": keras.layers.LSTMCell,
}
KERAS_LAYERS = {
    "simple": keras.layers.SimpleRNN,
    "gru": keras.layers.GRU,
    "lstm": keras.layers.LSTM,
}


def _cell_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("kind", "units")}


def _keras_cell_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    # Weights are overwritten after build; zeros avoid Keras' orthogonal QR, which
    # TensorFlow cannot run in bfloat16.
    return {"recurrent_initializer": "zeros", **_cell_kwargs(spec)}


def make_pair(
    spec: dict[str, Any] | list[dict[str, Any]],
    in_features: int,
    *,
    batch: int,
    time: int,
    seed: int = 0,
    dtype: Any = None,
    **rnn_kwargs: Any,
) -> tuple[jrnn.RNN, keras.layers.Layer]:
    """A jrnn layer and a built Keras layer with identical random weights."""
    rngs = nnx.Rngs(seed)
    keras_rnn_kwargs = dict(rnn_kwargs)
    unroll = keras_rnn_kwargs.pop("unroll", False)
    keras_rnn_kwargs["unroll"] = unroll is True
    keras_rnn_kwargs.pop("batch_size", None)
    kdtype = {"dtype": dtype} if dtype is not None else {}
    if isinstance(spec, list):
        cells, kcells, n_in = [], [], in_features
        for s in spec:
            cells.append(
                JRNN_CELLS[s["kind"]](s["units"], n_in, dtype=dtype, rngs=rngs, **_cell_kwargs(s))
            )
            kcells.append(KERAS_CELLS[s["kind"]](s["units"], **kdtype, **_keras_cell_kwargs(s)))
            n_in = s["units"]
        layer = jrnn.RNN(cells, **rnn_kwargs)
        klayer = keras.layers.RNN(kcells, **kdtype, **keras_rnn_kwargs)
        jcells = cells
    else:
        layer = JRNN_LAYERS[spec["kind"]](
            spec["units"], in_features, dtype=dtype, rngs=rngs, **_cell_kwargs(spec), **rnn_kwargs
        )
        klayer = KERAS_LAYERS[spec["kind"]](
            spec["units"], **kdtype, **_keras_cell_kwargs(spec), **keras_rnn_kwargs
        )
        jcells = [layer.cell]
    randomize(layer, seed)
    klayer.build((batch, time, in_features))
    klayer.set_weights([w for c in jcells for w in cell_weights(c)])
    return layer, klayer


def random_inputs(batch: int, time: int, features: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, time, features)).astype(np.float32)


def random_states(layer: jrnn.RNN, batch: int, seed: int = 2) -> Any:
    """Random initial states with the layer's carry structure (numpy, nested per cell)."""
    rng = np.random.default_rng(seed)
    zeros = layer.cell.initialize_carry(batch)
    return jax.tree_util.tree_map(
        lambda z: (rng.standard_normal(z.shape) * 0.5).astype(np.float32), zeros
    )


MASKS = {
    "none": None,
    # gaps in the middle, a row masked at step 0, a fully masked row, left padding.
    "gaps": np.array(
        [[1, 0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=bool
    ),
    "right_padded": np.array(
        [[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0]], dtype=bool
    ),
    "left_padded": np.array(
        [[0, 0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]], dtype=bool
    ),
}


def to_keras_states(states: Any) -> Any:
    """jrnn nested-tuple states -> Keras lists of tensors."""
    if states is None:
        return None
    return jax.tree_util.tree_map(
        tf.constant, list(list(s) if isinstance(s, tuple) else s for s in states)
    )


def flatten(outputs: Any) -> list[np.ndarray]:
    leaves = jax.tree_util.tree_leaves(
        outputs, is_leaf=lambda a: isinstance(a, (tf.Tensor, tf.Variable, jax.Array, np.ndarray))
    )
    return [
        np.asarray(a, dtype=np.float32)
        if not isinstance(a, jax.Array)
        else np.asarray(a.astype(jnp.float32))
        for a in leaves
    ]


def keras_call(klayer, x, *, mask=None, initial_state=None, training=False):
    kwargs = {"training": training}
    if initial_state is not None and klayer.compute_dtype != "float32":
        initial_state = jax.tree_util.tree_map(
            lambda a: np.asarray(a).astype(klayer.compute_dtype), initial_state
        )
    if mask is not None:
        kwargs["mask"] = tf.constant(mask)
    if initial_state is not None:
        kwargs["initial_state"] = to_keras_states(initial_state)
    return klayer(tf.constant(x), **kwargs)
