"""``TimeDistributed(model)``: a Keras model applied to every timestep (a frame encoder
before an LSTM), imported from live models and every file, differentiated, and written
back (checkpoints, Keras 3 files and weights), for Keras 3 and tf.keras."""

from __future__ import annotations

import warnings

import jax
import keras
import numpy as np
import pytest
import tensorflow as tf

import importers
import jrnn
from importers.errors import UnsupportedLayerError
from tests.helpers import randomize_keras

tf_keras = pytest.importorskip("tf_keras")
LIBS = {"keras": keras, "tf_keras": tf_keras}


def _build(lib, kind):
    """(model, input shape); the wrapped model is named "inner"/"frame_enc"."""
    L = lib.layers
    if kind == "sequential":
        inner = lib.Sequential(
            [lib.Input((4,)), L.Dense(3, name="d1"), L.Dense(2, activation="tanh", name="d2")],
            name="inner",
        )
        x = lib.Input((5, 4), name="x")
        return lib.Model(x, L.LSTM(3, name="lstm")(L.TimeDistributed(inner, name="td")(x))), (
            2, 5, 4,
        )  # fmt: skip
    if kind == "built_in_the_call":  # no Input: its layers are built inside the wrapper
        inner = lib.Sequential([L.Dense(3, name="d1"), L.Dense(2, name="d2")], name="inner")
        x = lib.Input((5, 4), name="x")
        return lib.Model(x, L.TimeDistributed(inner, name="td")(x)), (2, 5, 4)
    if kind in ("frame_lstm", "masked"):  # an LSTM over each frame's own steps
        a = lib.Input((6, 3), name="a")
        h = L.LSTM(4, name="il")(a)
        inner = lib.Model(a, L.Dense(2, name="idn")(h), name="frame_enc")
        x = lib.Input((5, 6, 3), name="x")
        h = L.Masking(0.0, name="mk")(x) if kind == "masked" else x
        h = L.TimeDistributed(inner, name="td")(h)
        out = L.Dense(2, name="out")(h) if kind == "masked" else L.GRU(3, name="g")(h)
        return lib.Model(x, out), (2, 5, 6, 3)
    if kind == "batch_norm":  # its legacy weight order differs from get_weights()
        inner = lib.Sequential(
            [
                lib.Input((4,)),
                L.Dense(3, name="d1"),
                L.BatchNormalization(name="bn"),
                L.Dense(2, name="d2"),
            ],
            name="inner",
        )
        return lib.Sequential(
            [lib.Input((5, 4)), L.TimeDistributed(inner, name="td"), L.SimpleRNN(2, name="s")]
        ), (2, 5, 4)
    if kind == "in_a_nested_model":
        inner = lib.Sequential([lib.Input((4,)), L.Dense(3, name="d1")], name="inner")
        b = lib.Input((5, 4), name="b")
        mid = lib.Model(b, L.TimeDistributed(inner, name="td")(b), name="mid")
        x = lib.Input((5, 4), name="x")
        return lib.Model(x, L.LSTM(2, name="l")(mid(x))), (2, 5, 4)
    raise AssertionError(kind)


def _model(lib_name, kind, seed=1):
    model, shape = _build(LIBS[lib_name], kind)
    randomize_keras(model, seed, scale=0.5)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    if kind == "masked":
        x[0, 3:] = 0.0  # whole frames
        x[1, :, 4:] = 0.0  # the last steps of every frame
    return model, x


def _save(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    return path


KINDS = ["sequential", "built_in_the_call", "frame_lstm", "masked", "batch_norm",
         "in_a_nested_model"]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_imports_from_live_models_and_files_with_gradients(tmp_path, lib_name, kind):
    """It was refused ("a nested model wrapped in TimeDistributed is not converted")."""
    model, x = _model(lib_name, kind)
    expected = np.asarray(model(x))
    sources = [model, _save(model, tmp_path / "m.keras")]
    if not (lib_name == "keras" and kind == "masked"):  # Keras 3 cannot read its own:
        sources.append(_save(model, tmp_path / "m.h5"))  # "Unknown layer: 'NotEqual'"
    for source in sources:
        ported = importers.load(source)
        np.testing.assert_allclose(np.asarray(ported(x)), expected, atol=1e-5, err_msg=str(source))
    owner = ported.get_layer("mid") if kind == "in_a_nested_model" else ported
    assert isinstance(owner.get_layer("td").layer, importers.ImportedModel)
    if kind in ("frame_lstm", "masked"):  # the LSTM inside, as it saw the timesteps; one
        # call (tf.keras' rule made a second one for the wrapper's output mask: "ran 2 times")
        seen = jrnn.inspect.get_outputs(ported, x, "il")["il"]
        assert seen.shape == (x.shape[0] * x.shape[1], 4)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        total = tf.reduce_sum(model(xt))
    got = jax.grad(lambda v: ported(v).sum())(x)
    np.testing.assert_allclose(np.asarray(got), tape.gradient(total, xt).numpy(), atol=1e-5)
    if kind == "batch_norm":  # Keras 3 normalises each timestep on its own, tf.keras all
        np.testing.assert_allclose(
            np.asarray(ported(x, training=True)),
            np.asarray(model(x, training=True)),
            atol=1e-5,
        )


@pytest.mark.parametrize("kind", ["frame_lstm", "batch_norm", "in_a_nested_model"])
@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_written_back_as_checkpoints_keras_files_and_weights(tmp_path, lib_name, kind):
    model, x = _model(lib_name, kind)
    expected = np.asarray(model(x))
    ported = importers.load(_save(model, tmp_path / "m.keras"))
    importers.save_checkpoint(ported, tmp_path / "ckpt")
    np.testing.assert_allclose(
        np.asarray(importers.load_checkpoint(tmp_path / "ckpt")(x)), expected, atol=1e-5
    )
    importers.save_keras(ported, tmp_path / "back.keras")
    back = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(np.asarray(back(x)), expected, atol=1e-5)
    fresh, _ = _model("keras", kind, seed=5)  # Keras 3 loads jrnn's weights file
    importers.save_weights(ported, tmp_path / "w.weights.h5")
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(np.asarray(fresh(x)), expected, atol=1e-5)
    # Keras' weight files into an imported model with other weights
    files = [tmp_path / "k.weights.h5"] + ([tmp_path / "k.h5"] if lib_name == "tf_keras" else [])
    for path in files:
        model.save_weights(path)
        other = importers.load(_model(lib_name, kind, seed=9)[0])
        importers.load_weights(other, path)
        np.testing.assert_allclose(np.asarray(other(x)), expected, atol=1e-5, err_msg=str(path))


def test_refusals_name_the_reason(tmp_path):
    """tf.keras' TimeDistributed masks as its model computes, Keras 3's passes the mask on:
    a masked tf.keras model is not written to a Keras 3 file; a stateful layer in the model
    cannot be distributed (Keras runs the timesteps one after another); a model wrapped
    twice is named."""
    model, _ = _model("tf_keras", "masked")
    with pytest.raises(UnsupportedLayerError, match="output mask of the Functional model"):
        importers.save_keras(importers.load(model), tmp_path / "m.keras")
    L = keras.layers
    inner = keras.Sequential(
        [keras.Input((3, 4), batch_size=2), L.LSTM(2, stateful=True, name="st")], name="inner"
    )
    x = keras.Input((5, 3, 4), batch_size=2)
    stateful = keras.Model(x, L.TimeDistributed(inner, name="td")(x))
    with pytest.raises(UnsupportedLayerError, match=r"'td'.*stateful=True \('st'\)"):
        importers.load(stateful)
    inner = keras.Sequential([keras.Input((4,)), L.Dense(2)], name="inner")
    x = keras.Input((2, 5, 4))
    twice = keras.Model(x, L.TimeDistributed(L.TimeDistributed(inner), name="outer")(x))
    with pytest.raises(UnsupportedLayerError, match=r"TimeDistributed\(TimeDistributed"):
        importers.load(twice)


def test_imported_models_in_a_new_sequential_written_back(tmp_path):
    """A Keras 3 frame encoder, imported, under a new jrnn head (alone, and wrapped in
    TimeDistributed), written to a Keras 3 file: it was refused ("jrnn does not know the
    Keras 3 layer equal to this module")."""
    from flax import nnx

    model, x = _model("keras", "sequential")
    encoder = importers.load(model).get_layer("td").layer
    head = jrnn.LSTM(3, 2, rngs=nnx.Rngs(0))
    new = importers.keras_sequential([jrnn.TimeDistributed(encoder), head], input_shape=(5, 4))
    expected = head(jax.vmap(encoder, in_axes=1, out_axes=1)(x))
    np.testing.assert_allclose(np.asarray(new(x)), np.asarray(expected), atol=1e-6)
    importers.save_keras(new, tmp_path / "new.keras")
    back = keras.saving.load_model(tmp_path / "new.keras")
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(expected), atol=1e-5)
    L = keras.layers
    sequence = keras.Sequential([keras.Input((5, 4)), L.GRU(3, return_sequences=True)], name="s")
    randomize_keras(sequence, 2)
    nested = importers.keras_sequential(
        [importers.load(sequence), jrnn.Dense(2, 3, rngs=nnx.Rngs(1))], input_shape=(5, 4)
    )
    importers.save_keras(nested, tmp_path / "nested.keras")
    back = keras.saving.load_model(tmp_path / "nested.keras")
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(nested(x)), atol=1e-5)

    @keras.saving.register_keras_serializable("jrnn_tests")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    i = keras.Input((5, 4))
    custom = importers.load(
        keras.Model(i, Twice(name="twice")(i)), custom_layers={"Twice": lambda c, a: jrnn.ELU()}
    )
    with pytest.raises(UnsupportedLayerError, match="no built-in class"):  # it said: pass
        importers.keras_sequential([custom], (5, 4))  # custom_layers= (no such argument)
    old, _ = _model("tf_keras", "sequential")
    with pytest.raises(UnsupportedLayerError, match="imported from a Keras 2"):
        importers.keras_sequential(
            [jrnn.TimeDistributed(importers.load(old).get_layer("td").layer)], (5, 4)
        )


def test_tf_keras_training_runs_the_model_twice_as_tf_keras():
    """tf.keras' TimeDistributed.compute_mask runs a wrapped model's graph again in the
    call's training mode: activity penalties count twice and batch normalization moves its
    statistics twice per fit step (jrnn ran it once: loss 2.776 against 3.947; moving
    mean 0.5 against 0.75 of the batch mean at momentum 0.5)."""
    import optax
    from flax import nnx

    L = tf_keras.layers
    inner = tf_keras.Sequential(
        [
            tf_keras.Input((3,)),
            L.Dense(3, activity_regularizer=tf_keras.regularizers.L2(0.5), name="d"),
            L.BatchNormalization(momentum=0.5, name="bn"),
        ],
        name="frame",
    )
    model = tf_keras.Sequential([tf_keras.Input((5, 3)), L.TimeDistributed(inner, name="td")])
    randomize_keras(model, 2, scale=0.5)
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((4, 5, 3)).astype(np.float32) + b for b in (1.0, 0.0))
    ported = importers.load(model)
    ported(x)
    model(x)
    np.testing.assert_allclose(
        float(jrnn.regularization_loss(ported)), float(sum(model.losses)), rtol=1e-5
    )
    model.compile(optimizer=tf_keras.optimizers.SGD(0.1), loss="mse")
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    optimizer = nnx.Optimizer(ported, optax.sgd(0.1), wrt=nnx.Param)
    loss = jrnn.training.make_train_step("mse")(ported, optimizer, x, y)
    np.testing.assert_allclose(float(loss), history.history["loss"][0], rtol=1e-5)
    bn = ported.get_layer("td").layer.get_layer("bn")
    want = model.get_layer("td").layer.get_layer("bn").get_weights()
    np.testing.assert_allclose(np.asarray(bn.moving_mean[...]), want[2], atol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.moving_variance[...]), want[3], atol=1e-5)
