"""CuDNNLSTM / CuDNNGRU against Keras 2 (tf_keras 2.21, the tf.keras port of Keras 2.2.4's
``cudnn_recurrent.py``).

The CuDNN-layout weights come from Keras itself: tf_keras' own ``CuDNNLSTM``/``CuDNNGRU``
(which build on CPU but need a GPU to run) get random asymmetric weights and
``save_weights`` writes them to an HDF5 file; a tf_keras ``LSTM`` /
``GRU(reset_after=True, recurrent_activation="sigmoid")`` twin loads that file, converting
the weights with Keras 2's ``_convert_rnn_weights`` because the bias shape says CuDNN.
jrnn's layers hold the same CuDNN-layout arrays and must compute what the twin computes:
outputs, states, stateful calls, and gradients w.r.t. inputs and w.r.t. the CuDNN-layout
parameters (the twin's Keras-layout gradients mapped back through the conversion).
"""

from __future__ import annotations

import inspect

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from flax import nnx
from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU as KerasCuDNNGRU
from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM as KerasCuDNNLSTM

import jrnn
from jrnn.cells.cudnn import cudnn_kernel_to_keras, cudnn_recurrent_to_keras
from tests.helpers import assert_close
from tests.keras_twins import random_inputs, random_states

B, T, F, U = 3, 7, 3, 5
GATES = {"lstm": 4, "gru": 3}
JRNN = {"lstm": jrnn.CuDNNLSTM, "gru": jrnn.CuDNNGRU}
KERAS_CUDNN = {"lstm": KerasCuDNNLSTM, "gru": KerasCuDNNGRU}


def _keras_twin(kind, **flags):
    """tf_keras LSTM / GRU(reset_after=True) with the maths of the CuDNN layers."""
    if kind == "lstm":
        return tf_keras.layers.LSTM(U, name="rnn", **flags)
    return tf_keras.layers.GRU(
        U, reset_after=True, recurrent_activation="sigmoid", name="rnn", **flags
    )


def _model(layer, batch=None):
    inputs = tf_keras.Input((T, F), batch_size=batch)
    return tf_keras.Model(inputs, layer(inputs))


def _cudnn_file(kind, tmp_path, seed=0):
    """An .h5 written by tf_keras' own CuDNN layer holding random CuDNN-layout weights."""
    layer = KERAS_CUDNN[kind](U, name="rnn")
    model = _model(layer)
    rng = np.random.default_rng(seed)
    weights = [(rng.standard_normal(w.shape) * 0.5).astype(np.float32) for w in layer.weights]
    layer.set_weights(weights)
    path = str(tmp_path / f"{kind}.h5")
    model.save_weights(path)
    with h5py.File(path, "r") as f:  # the file holds the CuDNN layout (bias (8u,) / (6u,))
        names = [n.decode() if isinstance(n, bytes) else n for n in f["rnn"].attrs["weight_names"]]
        assert [f["rnn"][n].shape for n in names] == [w.shape for w in weights]
    return path, weights


def _twin_from_cudnn_file(kind, path, batch=None, **flags):
    layer = _keras_twin(kind, **flags)
    model = _model(layer, batch)
    model.load_weights(path)  # Keras 2 converts: the bias shape says CuDNN
    return model, layer


def _jrnn_layer(kind, weights, **flags):
    layer = JRNN[kind](U, F, rngs=nnx.Rngs(0), **flags)
    for param, value in zip(
        (layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias), weights, strict=True
    ):
        assert param.shape == value.shape
        param[...] = value
    return layer


def _as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _keras_grad_to_cudnn(kind, grads):
    """Map gradients w.r.t. Keras-layout weights to the CuDNN layout: the conversion is a
    permutation of the kernels (so its adjoint is Keras' to-CuDNN transform) and, for the
    LSTM bias, a sum of the two halves (so each half gets the whole gradient)."""
    gates = GATES[kind]
    g_kernel, g_recurrent, g_bias = grads
    kernel = np.hstack([k.T.reshape(k.shape, order="C") for k in np.hsplit(g_kernel, gates)])
    recurrent = np.hstack([k.T for k in np.hsplit(g_recurrent, gates)])
    bias = np.tile(g_bias, 2) if kind == "lstm" else g_bias.reshape(-1)
    return [kernel, recurrent, bias]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(
    "flags",
    [
        {"return_sequences": True},
        {"go_backwards": True},
        {"return_sequences": True, "return_state": True, "go_backwards": True},
    ],
    ids=["sequences", "backwards", "sequences-state-backwards"],
)
def test_equal_to_keras2_loading_cudnn_weights(kind, flags, tmp_path):
    path, weights = _cudnn_file(kind, tmp_path)
    _, klayer = _twin_from_cudnn_file(kind, path, **flags)
    layer = _jrnn_layer(kind, weights, **flags)
    x = random_inputs(B, T, F)
    h0 = random_states(layer, B)
    expected = _as_list(klayer(tf.constant(x), initial_state=[tf.constant(s) for s in h0]))
    ours = _as_list(layer(x, initial_state=h0))
    assert len(ours) == len(expected) == (1 + len(h0) if flags.get("return_state") else 1)
    for a, e in zip(ours, expected, strict=True):
        assert_close(a, e.numpy(), time=T)
    # the cell's converted weights are what Keras holds after its own conversion
    for a, e in zip(layer.cell.keras_equivalent_weights(), klayer.get_weights(), strict=True):
        np.testing.assert_array_equal(np.asarray(a), e)

    # gradients w.r.t. the inputs and the parameters, against tf.GradientTape
    cot = np.random.default_rng(3).standard_normal(expected[0].shape).astype(np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(
            _as_list(klayer(xt, initial_state=[tf.constant(s) for s in h0]))[0] * cot
        )
    k_dx, *k_dw = tape.gradient(loss, [xt, *klayer.trainable_weights])

    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def f(params, x):
        return jnp.sum(_as_list(nnx.merge(graphdef, params, rest)(x, initial_state=h0))[0] * cot)

    dparams, dx = jax.grad(f, argnums=(0, 1))(params, jnp.asarray(x))
    assert_close(dx, k_dx.numpy(), time=T)
    cell_grads = dparams["cell"]
    ours_dw = [cell_grads[name][...] for name in ("kernel", "recurrent_kernel", "bias")]
    for name, a, e in zip(
        ("kernel", "recurrent_kernel", "bias"),
        ours_dw,
        _keras_grad_to_cudnn(kind, [g.numpy() for g in k_dw]),
        strict=True,
    ):
        assert_close(a, e, time=T, what=f"d loss / d {name}")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_stateful_two_calls_equal_keras2(kind, tmp_path):
    path, weights = _cudnn_file(kind, tmp_path, seed=4)
    flags = {"stateful": True, "return_sequences": True}
    model, _ = _twin_from_cudnn_file(kind, path, batch=B, **flags)
    layer = _jrnn_layer(kind, weights, **flags)
    for seed in (1, 2):
        x = random_inputs(B, T, F, seed)
        assert_close(layer(x), model(tf.constant(x)).numpy(), time=T, what=f"call {seed}")
    model.reset_states()
    layer.reset_states()
    x = random_inputs(B, T, F, 3)
    assert_close(layer(x), model(tf.constant(x)).numpy(), time=T, what="after reset")


def test_kernel_and_bias_algebra():
    """The effective (Keras-layout) parameters equal NumPy's version of Keras 2's formulas."""
    rng = np.random.default_rng(5)
    for kind, gates in GATES.items():
        cell_cls = jrnn.CuDNNLSTMCell if kind == "lstm" else jrnn.CuDNNGRUCell
        cell = cell_cls(U, F, rngs=nnx.Rngs(0))
        k = rng.standard_normal((F, gates * U)).astype(np.float32)
        r = rng.standard_normal((U, gates * U)).astype(np.float32)
        b = rng.standard_normal((2 * gates * U,)).astype(np.float32)
        cell.kernel[...], cell.recurrent_kernel[...], cell.bias[...] = k, r, b
        keras_k = np.hstack([blk.T.reshape(blk.shape, order="F") for blk in np.hsplit(k, gates)])
        keras_r = np.hstack([blk.T for blk in np.hsplit(r, gates)])
        np.testing.assert_array_equal(cudnn_kernel_to_keras(jnp.asarray(k), gates), keras_k)
        np.testing.assert_array_equal(cudnn_recurrent_to_keras(jnp.asarray(r), gates), keras_r)
        # block g of the kernel is the cuDNN (u, in) matrix stored row-major
        for g in range(gates):
            blk = k[:, g * U : (g + 1) * U]
            np.testing.assert_array_equal(keras_k[:, g * U : (g + 1) * U], blk.reshape(U, F).T)
        p = cell.params()
        np.testing.assert_array_equal(p["kernel"], keras_k)
        np.testing.assert_array_equal(p["recurrent_kernel"], keras_r)
        if kind == "lstm":
            np.testing.assert_array_equal(p["bias"], np.sum(np.split(b, 2), axis=0))
        else:
            np.testing.assert_array_equal(p["input_bias"], b.reshape(2, -1)[0])
            np.testing.assert_array_equal(p["recurrent_bias"], b.reshape(2, -1)[1])
            np.testing.assert_array_equal(cell.keras_equivalent_weights()[2], b.reshape(2, -1))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_arguments_shapes_and_initialisation_match_keras2(kind):
    """Every Keras 2 CuDNN constructor argument exists with Keras' default; weight shapes and
    unit_forget_bias (ones in the recurrent forget block only) are tf_keras' own."""
    keras_cls, ours = KERAS_CUDNN[kind], JRNN[kind]
    keras_params = inspect.signature(keras_cls.__init__).parameters
    our_params = inspect.signature(ours.__init__).parameters
    for name, param in keras_params.items():
        if name in ("self", "kwargs"):
            continue
        assert name in our_params, name
        assert our_params[name].default == param.default, name
    klayer = keras_cls(U)
    klayer.build((None, T, F))
    layer = ours(U, F, rngs=nnx.Rngs(0))
    kweights = klayer.get_weights()
    ourw = [layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias]
    assert [w.shape for w in ourw] == [w.shape for w in kweights]
    np.testing.assert_array_equal(np.asarray(layer.cell.bias[...]), kweights[2])
    if kind == "lstm":
        assert kweights[2][5 * U : 6 * U].tolist() == [1.0] * U
        no_forget = ours(U, F, unit_forget_bias=False, rngs=nnx.Rngs(0))
        assert not np.any(np.asarray(no_forget.cell.bias[...]))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_masks_raise_as_keras2(kind):
    x, mask = random_inputs(B, T, F), np.ones((B, T), bool)
    klayer = KERAS_CUDNN[kind](U)
    with pytest.raises(ValueError, match=r"Masking is not supported for CuDNN RNNs"):
        klayer(tf.constant(x), mask=tf.constant(mask))
    layer = JRNN[kind](U, F, name="enc", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"enc.*`mask`.*masking is not supported for CuDNN RNNs"):
        layer(x, mask=mask)
    with pytest.raises(ValueError, match=r"`unit_forget_bias` must be a bool"):
        jrnn.CuDNNLSTM(U, F, unit_forget_bias="yes", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"dropout"):
        JRNN[kind](U, F, dropout=0.1, rngs=nnx.Rngs(0))  # no dropout, as Keras 2
