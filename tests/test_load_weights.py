"""importers.load_weights: Keras 3 (.keras, .weights.h5, legacy .h5) and tf_keras .h5 files
made at test time load into jrnn modules that then give Keras' outputs."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest
import tf_keras
from flax import nnx

import importers
import jrnn
from importers._ops import KerasOp
from importers.errors import (
    CorruptFileError,
    KerasFileError,
    MissingWeightsError,
    WeightShapeError,
)
from tests.helpers import assert_close
from tests.keras_twins import random_inputs

B, T, F = 2, 6, 3
# Legacy .h5 saving is what this test is about; Keras warns that it is legacy.
pytestmark = pytest.mark.filterwarnings(
    "ignore:You are saving your model as an HDF5 file:UserWarning"
)
FILES = {
    ".keras": "m.keras",
    ".weights.h5": "m.weights.h5",
    "legacy.h5": "m.h5",
    "tf_keras.h5": "m.h5",
    "tf_keras.weights.h5": "w.h5",
}


def _keras_model(lib):
    inp = lib.Input((T, F))
    x = lib.layers.Bidirectional(lib.layers.LSTM(4, return_sequences=True), name="bi")(inp)
    x = lib.layers.RNN(
        [lib.layers.LSTMCell(3), lib.layers.GRUCell(2), lib.layers.LSTMCell(2)],
        return_sequences=True,
        name="stack",
    )(x)
    x = lib.layers.GRU(3, reset_after=False, return_sequences=True, name="gru")(x)
    x = lib.layers.TimeDistributed(lib.layers.Dense(2), name="td")(x)
    return lib.Model(inp, x)


def _jrnn_model():
    rngs = nnx.Rngs(0)
    bi = jrnn.Bidirectional(jrnn.LSTM(4, F, return_sequences=True, rngs=rngs), rngs=rngs)
    stack = jrnn.RNN(
        [
            jrnn.LSTMCell(3, 8, rngs=rngs),
            jrnn.GRUCell(2, 3, rngs=rngs),
            jrnn.LSTMCell(2, 2, rngs=rngs),
        ],
        return_sequences=True,
    )
    gru = jrnn.GRU(3, 2, reset_after=False, return_sequences=True, rngs=rngs)
    td = jrnn.TimeDistributed(nnx.Linear(3, 2, rngs=rngs))
    layers = {"bi": bi, "stack": stack, "gru": gru, "td": td}

    def run(x):
        return td(gru(stack(bi(x))))

    return layers, run


@pytest.mark.parametrize(
    "fmt", [".keras", ".weights.h5", "legacy.h5", "tf_keras.h5", "tf_keras.weights.h5"]
)
def test_load_weights_formats(fmt, tmp_path):
    lib = tf_keras if fmt.startswith("tf_keras") else keras
    model = _keras_model(lib)
    for w in model.weights:  # random asymmetric weights, not the initial ones
        w.assign(
            np.random.default_rng(abs(hash(w.name)) % 2**32)
            .standard_normal(w.shape)
            .astype("float32")
            * 0.4
        )
    path = str(tmp_path / FILES[fmt])
    if fmt in (".weights.h5", "tf_keras.weights.h5"):
        model.save_weights(path)
    else:
        model.save(path)
    layers, run = _jrnn_model()
    assert sorted(importers.load_weights(layers, path)) == ["bi", "gru", "stack", "td"]
    x = random_inputs(B, T, F)
    assert_close(run(x), np.asarray(model(x)), time=T)


def test_load_weights_errors(tmp_path):
    model = _keras_model(keras)
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    layers, _ = _jrnn_model()
    before = np.asarray(layers["gru"].cell.kernel[...]).copy()
    wrong = {"gru": jrnn.GRU(4, 2, reset_after=False, rngs=nnx.Rngs(0)), **{"bi": layers["bi"]}}
    with pytest.raises(
        WeightShapeError,
        match=r"m\.weights\.h5: layer 'gru', weight 'layers/gru/cell/vars/0 \(weight 0\)': "
        r"expected shape \(2, 12\), received \(2, 9\)",
    ):
        importers.load_weights(wrong, path)
    with pytest.raises(MissingWeightsError, match=r"no layer named 'nope'"):
        importers.load_weights({"nope": layers["gru"]}, path)
    np.testing.assert_array_equal(np.asarray(layers["gru"].cell.kernel[...]), before)
    assert importers.load_weights(
        {"nope": layers["gru"], "gru": layers["gru"]}, path, strict=False
    ) == ["gru"]
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(CorruptFileError, match=r"neither a zip archive \(\.keras\) nor an HDF5"):
        importers.load_weights(layers, str(bad))


def test_load_weights_into_imported_model_and_indrnn_names(tmp_path):
    """A converted model (its ``.layers``) is a target; IndRNN's ``input_kernel`` and Keras
    1.2-style flat names (``ind_1/input_kernel:0``) load by order."""
    model = _keras_model(keras)
    path = str(tmp_path / "m.keras")
    model.save(path)
    imported = importers.load(path)
    for p in importers.keras_params(imported.layers["gru"]):
        p.set_value(np.zeros(p.shape, p[...].dtype))
    assert importers.load_weights(imported, path) == list(imported.layers.keys())
    np.testing.assert_array_equal(
        np.asarray(imported.layers["gru"].cell.kernel[...]),
        model.get_layer("gru").get_weights()[0],
    )
    rng = np.random.default_rng(0)
    kernel, recurrent, bias = (rng.standard_normal(s).astype("f4") for s in ((F, 5), (5,), (5,)))
    legacy = tmp_path / "ind.h5"
    with h5py.File(legacy, "w") as f:
        f.attrs["layer_names"] = [b"ind_1"]
        f.attrs["keras_version"] = b"2.1.6"
        g = f.create_group("ind_1")
        names = [b"ind_1/input_kernel:0", b"ind_1/recurrent_kernel:0", b"ind_1/bias:0"]
        g.attrs["weight_names"] = names
        for name, value in zip(names, (kernel, recurrent, bias)):
            g[name.decode()] = value
    ind = jrnn.IndRNN(5, F, rngs=nnx.Rngs(0))
    assert importers.load_weights({"ind_1": ind}, legacy) == ["ind_1"]
    for got, want in zip(importers.keras_params(ind), (kernel, recurrent, bias)):
        np.testing.assert_array_equal(np.asarray(got[...]), want)


@pytest.mark.parametrize("source", ["w.weights.h5", "m.keras"])
def test_load_weights_into_imported_model_with_mask_op_nodes(source, tmp_path):
    """Keras 3 records Embedding(mask_zero=True)'s mask as NotEqual/Any op nodes in a
    Functional model; files hold no weights for them, so they are not targets."""
    inp = keras.Input((None,), dtype="int32")
    emb = keras.layers.Embedding(10, 4, mask_zero=True, name="emb")(inp)
    model = keras.Model(inp, keras.layers.LSTM(3, name="lstm")(emb))
    path = str(tmp_path / source)
    model.save_weights(path) if source.endswith(".weights.h5") else model.save(path)
    imported = importers.load(keras.models.model_from_json(model.to_json()))
    assert any(isinstance(m, KerasOp) for m in imported.layers.values())
    assert importers.load_weights(imported, path) == ["emb", "lstm"]
    ids = np.array([[3, 4, 5, 0, 0], [1, 2, 0, 0, 0]], "int32")
    assert_close(imported(ids), model(ids).numpy())


def test_tf_keras_weights_h5_records_no_names_so_a_config_names_them(tmp_path):
    """tf.keras' ``.weights.h5`` names its groups by layer class in model order ("lstm",
    "lstm_1"), not by layer name: layers named "lstm_1", "lstm" would each get the other's
    weights if matched by name. The model's config (or an imported model) names them;
    without one the load is refused."""
    import json

    model = tf_keras.Sequential(
        [
            tf_keras.Input((T, F)),
            tf_keras.layers.LSTM(3, return_sequences=True, name="lstm_1"),
            tf_keras.layers.LSTM(2, name="lstm"),
        ]
    )
    rng = np.random.default_rng(4)
    model.set_weights([rng.standard_normal(w.shape).astype("f4") * 0.5 for w in model.weights])
    path = str(tmp_path / "w.weights.h5")
    model.save_weights(path)
    model.save(tmp_path / "m.keras")
    x = random_inputs(B, T, F)
    first, second = (
        jrnn.LSTM(3, F, return_sequences=True, rngs=nnx.Rngs(0)),
        jrnn.LSTM(2, 3, rngs=nnx.Rngs(0)),
    )
    layers = {"lstm_1": first, "lstm": second}
    with pytest.raises(KerasFileError, match=r"records no layer names.*\['lstm', 'lstm_1'\]"):
        importers.load_weights(layers, path)
    config = json.loads(model.to_json())
    assert importers.load_weights(layers, path, config=config) == ["lstm_1", "lstm"]
    assert_close(second(first(x)), np.asarray(model(x)), time=T)
    imported = importers.load(str(tmp_path / "m.keras"))
    for p in importers.keras_params(imported.layers["lstm"]):
        p.set_value(np.zeros(p.shape, p[...].dtype))
    assert importers.load_weights(imported, path) == ["lstm_1", "lstm"]
    assert_close(imported(x), np.asarray(model(x)), time=T)
