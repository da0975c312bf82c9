"""CuDNNLSTM/CuDNNGRU: jrnn with CuDNN-layout weights equals Keras 2 (tf_keras) LSTM/GRU
that loaded the same CuDNN-layout weights from an HDF5 file (tf_keras converts them itself
with `_convert_rnn_weights`), plus a direct test of the kernel/bias algebra."""

from __future__ import annotations

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from flax import nnx

import jrnn
from jrnn.cells.cudnn import cudnn_kernel_to_keras, cudnn_recurrent_to_keras
from tests.helpers import assert_close
from tests.keras_twins import random_inputs

B, T, F, U = 3, 7, 3, 5


def _cudnn_weights(kind, seed=0):
    rng = np.random.default_rng(seed)
    gates = 4 if kind == "lstm" else 3
    return [
        (rng.standard_normal((F, gates * U)) * 0.5).astype(np.float32),
        (rng.standard_normal((U, gates * U)) * 0.5).astype(np.float32),
        (rng.standard_normal((2 * gates * U,)) * 0.5).astype(np.float32),
    ]


def _keras2_loaded_from_cudnn_file(kind, weights, tmp_path, **flags):
    """A tf_keras LSTM/GRU whose weights come from an .h5 holding CuDNN-layout arrays."""
    inputs = tf_keras.Input((T, F))
    if kind == "lstm":
        layer = tf_keras.layers.LSTM(U, name="rnn", **flags)
    else:
        layer = tf_keras.layers.GRU(
            U, reset_after=True, recurrent_activation="sigmoid", name="rnn", **flags
        )
    outputs = layer(inputs)
    model = tf_keras.Model(inputs, outputs)
    path = str(tmp_path / "w.h5")
    model.save_weights(path)
    with h5py.File(path, "r+") as f:
        group = f["rnn"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        for name, value in zip(names, weights):
            del group[name]
            group.create_dataset(name, data=value)
    model.load_weights(path)  # tf_keras sees a (8u,)/(6u,) bias and converts
    return model, layer


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(
    "flags",
    [
        {"return_sequences": True},
        {"return_sequences": False, "go_backwards": True},
        {"return_sequences": True, "return_state": True, "go_backwards": True},
    ],
)
def test_cudnn_layers_equal_keras2_conversion(kind, flags, tmp_path):
    weights = _cudnn_weights(kind)
    model, klayer = _keras2_loaded_from_cudnn_file(kind, weights, tmp_path, **flags)
    cls = jrnn.CuDNNLSTM if kind == "lstm" else jrnn.CuDNNGRU
    layer = cls(U, F, rngs=nnx.Rngs(0), **flags)
    for param, value in zip(
        (layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias), weights
    ):
        param[...] = value
    x = random_inputs(B, T, F)
    expected = model(tf.constant(x))
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    ours = layer(x)
    ours = ours if isinstance(ours, tuple) else (ours,)
    for a, e in zip(ours, expected):
        assert_close(a, e.numpy(), time=T)
    # the converted weights equal what tf_keras holds after its own conversion
    for a, e in zip(layer.cell.keras_weights(), klayer.get_weights()):
        assert_close(a, e)

    # gradients w.r.t. inputs against the tf_keras twin
    xt = tf.constant(x)
    cot = np.random.default_rng(1).standard_normal(np.shape(expected[0])).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = model(xt)
        out = out[0] if isinstance(out, (list, tuple)) else out
        loss = tf.reduce_sum(out * cot)
    k_grad = tape.gradient(loss, xt).numpy()

    def f(x):
        out = layer(x)
        return jnp.sum((out[0] if isinstance(out, tuple) else out) * cot)

    assert_close(jax.grad(f)(jnp.asarray(x)), k_grad, time=T)


def test_kernel_and_bias_algebra():
    k = np.arange(F * 4 * U, dtype=np.float32).reshape(F, 4 * U)
    expected = np.concatenate(
        [k[:, g * U : (g + 1) * U].T.reshape((F, U), order="F") for g in range(4)], axis=1
    )
    np.testing.assert_array_equal(cudnn_kernel_to_keras(jnp.asarray(k), 4), expected)
    r = np.arange(U * 3 * U, dtype=np.float32).reshape(U, 3 * U)
    np.testing.assert_array_equal(
        cudnn_recurrent_to_keras(jnp.asarray(r), 3),
        np.concatenate([r[:, g * U : (g + 1) * U].T for g in range(3)], axis=1),
    )
    lstm = jrnn.CuDNNLSTMCell(U, F, rngs=nnx.Rngs(0))
    bias = np.arange(8 * U, dtype=np.float32)
    lstm.bias[...] = bias
    np.testing.assert_array_equal(lstm.params()["bias"], bias[: 4 * U] + bias[4 * U :])
    gru = jrnn.CuDNNGRUCell(U, F, rngs=nnx.Rngs(0))
    gru.bias[...] = np.arange(6 * U, dtype=np.float32)
    np.testing.assert_array_equal(
        np.asarray(gru.keras_weights()[2]), np.arange(6 * U, dtype=np.float32).reshape(2, 3 * U)
    )
    # unit_forget_bias: ones in the recurrent forget block only (Keras 2.2.4 CuDNNLSTM.build)
    b = np.asarray(jrnn.CuDNNLSTMCell(U, F, rngs=nnx.Rngs(0)).bias[...])
    np.testing.assert_array_equal(b[5 * U : 6 * U], np.ones(U))
    np.testing.assert_array_equal(np.delete(b, np.s_[5 * U : 6 * U]), 0)


def test_masks_refused_and_stateful():
    layer = jrnn.CuDNNLSTM(U, F, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"masking is not supported for CuDNN RNNs"):
        layer(random_inputs(B, T, F), mask=np.ones((B, T), bool))
    stateful = jrnn.CuDNNGRU(U, F, stateful=True, return_sequences=True, rngs=nnx.Rngs(0))
    ref = jrnn.CuDNNGRU(U, F, return_sequences=True, return_state=True, rngs=nnx.Rngs(0))
    x1, x2 = random_inputs(B, T, F, 1), random_inputs(B, T, F, 2)
    stateful(x1)
    _, h = ref(x1)
    assert_close(stateful(x2), ref(x2, initial_state=h)[0])
