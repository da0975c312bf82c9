"""Bidirectional and TimeDistributed against Keras 3 (same random asymmetric weights)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

import jrnn
from tests.helpers import assert_close, cell_weights, randomize
from tests.keras_twins import MASKS, flatten, random_inputs

B, T, F = 3, 7, 3

SPECS = {
    "lstm": (jrnn.LSTM, keras.layers.LSTM, 5),
    "gru": (jrnn.GRU, keras.layers.GRU, 4),
    "simple": (jrnn.SimpleRNN, keras.layers.SimpleRNN, 4),
}


def _pair(kind, merge_mode="concat", seed=0, **flags):
    jcls, kcls, units = SPECS[kind]
    rngs = nnx.Rngs(seed)
    bi = jrnn.Bidirectional(jcls(units, F, rngs=rngs, **flags), merge_mode, rngs=rngs)
    randomize(bi, seed)
    kbi = keras.layers.Bidirectional(
        kcls(units, recurrent_initializer="zeros", **flags), merge_mode=merge_mode
    )
    kbi.build((B, T, F))
    kbi.set_weights(cell_weights(bi.forward_layer.cell) + cell_weights(bi.backward_layer.cell))
    return bi, kbi


def _keras_call(kbi, x, mask=None, initial_state=None):
    kwargs = {}
    if mask is not None:
        kwargs["mask"] = tf.constant(mask)
    if initial_state is not None:
        kwargs["initial_state"] = [tf.constant(s) for s in initial_state]
    return kbi(tf.constant(x), **kwargs)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple"])
@pytest.mark.parametrize(
    "return_sequences,return_state,mask_name",
    [(True, False, "gaps"), (False, True, "gaps"), (True, True, "none")],
)
def test_bidirectional_parity(kind, merge_mode, return_sequences, return_state, mask_name):
    bi, kbi = _pair(kind, merge_mode, return_sequences=return_sequences, return_state=return_state)
    x = random_inputs(B, T, F)
    mask = MASKS[mask_name]
    init = None
    if return_state:
        rng = np.random.default_rng(4)
        n = 2 if kind == "lstm" else 1
        units = SPECS[kind][2]
        init = [(rng.standard_normal((B, units)) * 0.5).astype(np.float32) for _ in range(2 * n)]
    ours = flatten(bi(x, mask=mask, initial_state=init))
    theirs = flatten(_keras_call(kbi, x, mask, init))
    assert len(ours) == len(theirs)
    for k, (a, e) in enumerate(zip(ours, theirs)):
        assert_close(a, e, time=T, what=f"output[{k}]")


def test_bidirectional_stack_custom_backward_and_gradients():
    rngs = nnx.Rngs(0)
    fwd = jrnn.RNN(
        [jrnn.LSTMCell(4, F, rngs=rngs), jrnn.GRUCell(3, 4, rngs=rngs)], return_sequences=True
    )
    bwd = jrnn.GRU(3, F, return_sequences=True, go_backwards=True, reset_after=False, rngs=rngs)
    bi = jrnn.Bidirectional(fwd, backward_layer=bwd)
    randomize(bi, 1)
    kbi = keras.layers.Bidirectional(
        keras.layers.RNN(
            [keras.layers.LSTMCell(4), keras.layers.GRUCell(3)], return_sequences=True
        ),
        backward_layer=keras.layers.GRU(
            3, return_sequences=True, go_backwards=True, reset_after=False
        ),
    )
    kbi.build((B, T, F))
    weights = [w for c in fwd.cell.cells for w in cell_weights(c)] + cell_weights(bwd.cell)
    kbi.set_weights(weights)
    x = random_inputs(B, T, F)
    mask = MASKS["gaps"]
    assert_close(bi(x, mask=mask), _keras_call(kbi, x, mask).numpy(), time=T)

    cot = np.random.default_rng(3).standard_normal((B, T, 6)).astype(np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(kbi(xt, mask=tf.constant(mask)) * cot)
    k_grads = tape.gradient(loss, [xt, *kbi.trainable_weights])
    graphdef, params, rest = nnx.split(bi, nnx.Param, ...)

    def f(params, x):
        return jnp.sum(nnx.merge(graphdef, params, rest)(x, mask=mask) * cot)

    g_params, g_x = jax.grad(f, argnums=(0, 1))(params, jnp.asarray(x))
    g = nnx.merge(graphdef, g_params, rest)
    ours = (
        [g_x]
        + [w for c in g.forward_layer.cell.cells for w in cell_weights(c)]
        + (cell_weights(g.backward_layer.cell))
    )
    for a, e in zip(ours, k_grads):
        assert_close(a, np.asarray(e), time=T)


def test_bidirectional_stateful_and_errors():
    rngs = nnx.Rngs(0)
    bi = jrnn.Bidirectional(
        jrnn.LSTM(4, F, stateful=True, return_sequences=True, rngs=rngs), rngs=rngs
    )
    ref = jrnn.Bidirectional(
        jrnn.LSTM(4, F, return_sequences=True, return_state=True, rngs=rngs),
        backward_layer=None,
        rngs=rngs,
    )
    nnx.update(ref, nnx.state(bi, nnx.Param))
    x1, x2 = random_inputs(B, T, F, 1), random_inputs(B, T, F, 2)
    bi(x1)
    _, *states = ref(x1)
    assert_close(bi(x2), ref(x2, initial_state=states)[0])
    bi.reset_state()
    assert_close(bi(x1), ref(x1)[0])
    with pytest.raises(AttributeError, match=r"not stateful"):
        ref.reset_state()
    with pytest.raises(ValueError, match=r"`merge_mode` must be one of"):
        jrnn.Bidirectional(jrnn.LSTM(4, F, rngs=rngs), "max", rngs=rngs)
    with pytest.raises(ValueError, match=r"different `go_backwards`"):
        jrnn.Bidirectional(jrnn.LSTM(4, F, rngs=rngs), backward_layer=jrnn.LSTM(4, F, rngs=rngs))
    with pytest.raises(ValueError, match=r"same `return_sequences`"):
        jrnn.Bidirectional(
            jrnn.LSTM(4, F, rngs=rngs),
            backward_layer=jrnn.LSTM(4, F, go_backwards=True, return_sequences=True, rngs=rngs),
        )
    with pytest.raises(ValueError, match=r"pass `rngs="):
        jrnn.Bidirectional(jrnn.LSTM(4, F, rngs=rngs))
    with pytest.raises(ValueError, match=r"`layer` must be a jrnn recurrent layer"):
        jrnn.Bidirectional(nnx.Linear(2, 2, rngs=rngs), rngs=rngs)


def test_time_distributed_dense_and_lstm():
    rngs = nnx.Rngs(0)
    dense = nnx.Linear(F, 6, rngs=rngs)
    randomize(dense, 2)
    td = jrnn.TimeDistributed(dense)
    kd = keras.layers.TimeDistributed(keras.layers.Dense(6))
    kd.build((B, T, F))
    kd.set_weights([np.asarray(dense.kernel[...]), np.asarray(dense.bias[...])])
    x = random_inputs(B, T, F)
    assert_close(td(x), kd(tf.constant(x)).numpy())

    inner = jrnn.LSTM(4, F, return_sequences=True, rngs=rngs)
    randomize(inner, 3)
    td2 = jrnn.TimeDistributed(inner)
    kt = keras.layers.TimeDistributed(keras.layers.LSTM(4, return_sequences=True))
    x4 = np.random.default_rng(5).standard_normal((2, 3, 5, F)).astype(np.float32)
    kt.build(x4.shape)
    kt.set_weights(cell_weights(inner.cell))
    mask = np.random.default_rng(6).random((2, 3, 5)) > 0.3
    assert_close(td2(x4, mask=mask), kt(tf.constant(x4), mask=tf.constant(mask)).numpy())

    def loss(m, x):
        return jnp.sum(m(x) ** 2)

    g = nnx.grad(loss)(td2, jnp.asarray(x4))
    assert all(
        bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(nnx.state(g, nnx.Param))
    )
    with pytest.raises(ValueError, match=r"rank >= 3"):
        td(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"`mask` must start with \(batch, time\)"):
        td2(x4, mask=np.ones((2, 4, 5), bool))
