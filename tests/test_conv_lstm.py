"""ConvLSTM1D/2D/3D against Keras 3 (same random asymmetric weights)."""

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

B, T, C, FILTERS = 2, 4, 3, 4
SPATIAL = {1: (7,), 2: (6, 5), 3: (4, 5, 3)}
KERNEL = {1: 3, 2: (3, 2), 3: (2, 3, 2)}
JRNN = {1: jrnn.ConvLSTM1D, 2: jrnn.ConvLSTM2D, 3: jrnn.ConvLSTM3D}
KERAS = {1: keras.layers.ConvLSTM1D, 2: keras.layers.ConvLSTM2D, 3: keras.layers.ConvLSTM3D}


def _pair(rank, data_format="channels_last", seed=0, **kw):
    layer = JRNN[rank](
        FILTERS,
        KERNEL[rank],
        in_channels=C,
        spatial_shape=SPATIAL[rank],
        data_format=data_format,
        rngs=nnx.Rngs(seed),
        **kw,
    )
    randomize(layer, seed, scale=0.3)
    klayer = KERAS[rank](
        FILTERS, KERNEL[rank], data_format=data_format, recurrent_initializer="zeros", **kw
    )
    frame = (C, *SPATIAL[rank]) if data_format == "channels_first" else (*SPATIAL[rank], C)
    klayer.build((B, T, *frame))
    klayer.set_weights(cell_weights(layer.cell))
    x = np.random.default_rng(seed + 1).standard_normal((B, T, *frame)).astype(np.float32)
    return layer, klayer, x


def _flat(out):
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


CASES = [
    {"padding": "valid", "return_sequences": True},
    {"padding": "same", "return_sequences": False, "return_state": True, "go_backwards": True},
    {"padding": "same", "strides": 2, "return_sequences": True},
    {"padding": "valid", "dilation_rate": 2, "return_sequences": True, "return_state": True},
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_conv_lstm_parity_channels_last(rank, case):
    kw = dict(CASES[case])
    if rank == 3 and kw.get("dilation_rate"):
        kw["padding"] = "same"  # the 4x5x3 frame is too small for a dilated valid kernel
    layer, klayer, x = _pair(rank, **kw)
    mask = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], bool)
    for m in (None, mask):
        ours = _flat(layer(x, mask=m))
        theirs = _flat(klayer(tf.constant(x), mask=None if m is None else tf.constant(m)))
        assert len(ours) == len(theirs)
        for a, e in zip(ours, theirs):
            assert_close(a, e, time=T)


@pytest.mark.parametrize("rank", [1, 2])
def test_conv_lstm_channels_first(rank):
    """TensorFlow's CPU convolutions refuse NCHW, so Keras runs channels_last on transposed
    inputs here; jrnn's channels_first result must equal that, transposed back."""
    layer = JRNN[rank](
        FILTERS,
        KERNEL[rank],
        in_channels=C,
        spatial_shape=SPATIAL[rank],
        data_format="channels_first",
        padding="same",
        return_sequences=True,
        rngs=nnx.Rngs(0),
    )
    randomize(layer, 0, scale=0.3)
    klayer = KERAS[rank](
        FILTERS, KERNEL[rank], padding="same", return_sequences=True, recurrent_initializer="zeros"
    )
    klayer.build((B, T, *SPATIAL[rank], C))
    klayer.set_weights(cell_weights(layer.cell))
    x_last = np.random.default_rng(1).standard_normal((B, T, *SPATIAL[rank], C)).astype(np.float32)
    x_first = np.moveaxis(x_last, -1, 2)
    assert_close(
        np.moveaxis(np.asarray(layer(x_first)), 2, -1), klayer(tf.constant(x_last)).numpy(), time=T
    )


def test_conv_lstm_initial_state_stateful_and_gradients():
    layer, klayer, x = _pair(2, padding="same", return_sequences=True, return_state=True)
    rng = np.random.default_rng(5)
    state_shape = (B, *SPATIAL[2], FILTERS)
    init = [rng.standard_normal(state_shape).astype(np.float32) * 0.3 for _ in range(2)]
    ours = _flat(layer(x, initial_state=init))
    theirs = _flat(klayer(tf.constant(x), initial_state=[tf.constant(s) for s in init]))
    for a, e in zip(ours, theirs):
        assert_close(a, e, time=T)

    cot = rng.standard_normal(theirs[0].shape).astype(np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(klayer(xt)[0] * cot)
    k_grads = tape.gradient(loss, [xt, *klayer.trainable_weights])
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def f(params, x):
        return jnp.sum(nnx.merge(graphdef, params, rest)(x)[0] * cot)

    g_params, g_x = jax.grad(f, argnums=(0, 1))(params, jnp.asarray(x))
    ours = [g_x, *cell_weights(nnx.merge(graphdef, g_params, rest).cell)]
    for a, e in zip(ours, k_grads):
        assert_close(a, np.asarray(e), time=T)

    stateful = jrnn.ConvLSTM2D(
        FILTERS,
        KERNEL[2],
        in_channels=C,
        spatial_shape=SPATIAL[2],
        padding="same",
        stateful=True,
        return_sequences=True,
        rngs=nnx.Rngs(0),
    )
    nnx.update(stateful, nnx.state(layer, nnx.Param))
    stateful(x)
    _, h, c = layer(x)
    assert_close(stateful(x), layer(x, initial_state=[h, c])[0], time=T)


def test_conv_lstm_dropout_masks_and_errors():
    layer = jrnn.ConvLSTM2D(
        FILTERS,
        3,
        in_channels=C,
        spatial_shape=(6, 5),
        dropout=0.3,
        recurrent_dropout=0.3,
        padding="same",
        rngs=nnx.Rngs(0),
    )
    in_m, rec_m = layer.cell.dropout_masks(B, True, jax.random.key(0))
    assert in_m.shape == (4, B, 6, 5, C) and rec_m.shape == (4, B, 6, 5, FILTERS)
    x = jnp.asarray(np.random.default_rng(2).standard_normal((B, T, 6, 5, C)), jnp.float32)
    hoisted = jrnn.ConvLSTM2D(
        FILTERS,
        3,
        in_channels=C,
        spatial_shape=(6, 5),
        dropout=0.3,
        recurrent_dropout=0.3,
        padding="same",
        hoist_input_projection=True,
        rngs=nnx.Rngs(0),
    )
    assert_close(
        layer(x, training=True, rngs=jax.random.key(1)),
        hoisted(x, training=True, rngs=jax.random.key(1)),
    )
    with pytest.raises(ValueError, match=r"strides > 1 together with dilation_rate > 1"):
        jrnn.ConvLSTM2D(
            4, 3, in_channels=C, spatial_shape=(9, 9), strides=2, dilation_rate=2, rngs=nnx.Rngs(0)
        )
    with pytest.raises(ValueError, match=r"`padding` must be one of \('valid', 'same'\)"):
        jrnn.ConvLSTM2D(4, 3, in_channels=C, spatial_shape=(9, 9), padding="full", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`kernel_size` must be a positive int or a tuple of 2"):
        jrnn.ConvLSTM2D(4, (3, 3, 3), in_channels=C, spatial_shape=(9, 9), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"feature shape must be \(6, 5, 3\)"):
        layer(jnp.ones((B, T, 5, 6, C)))


def test_bidirectional_conv_lstm_matches_keras():
    rngs = nnx.Rngs(0)
    fwd = jrnn.ConvLSTM2D(
        FILTERS,
        KERNEL[2],
        in_channels=C,
        spatial_shape=SPATIAL[2],
        padding="same",
        return_sequences=True,
        rngs=rngs,
    )
    bi = jrnn.Bidirectional(fwd, merge_mode="sum", rngs=rngs)
    randomize(bi, 3, scale=0.3)
    kbi = keras.layers.Bidirectional(
        keras.layers.ConvLSTM2D(
            FILTERS, KERNEL[2], padding="same", return_sequences=True, recurrent_initializer="zeros"
        ),
        merge_mode="sum",
    )
    kbi.build((B, T, *SPATIAL[2], C))
    kbi.set_weights(cell_weights(bi.forward_layer.cell) + cell_weights(bi.backward_layer.cell))
    x = np.random.default_rng(4).standard_normal((B, T, *SPATIAL[2], C)).astype(np.float32)
    mask = np.array([[1, 1, 0, 1], [1, 0, 1, 1]], bool)
    assert_close(bi(x, mask=mask), kbi(tf.constant(x), mask=tf.constant(mask)).numpy(), time=T)
