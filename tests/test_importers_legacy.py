"""Keras 1 model files and Theano-trained kernels, read as Keras 2 reads them.

No Keras 1 or Theano is installed, so the files are written here in their formats (a
Keras 1 ``model.save``: ``model_config`` in Keras 1 argument names, per-gate weights named
``<layer>_W_i``..., no ``keras_version`` attribute; a Theano file: ``backend="theano"`` and
spatially flipped convolution kernels). The reference is tf_keras (Keras 2) holding the
same weights in Keras 2's layout: what Keras 2's ``load_model`` would compute.
"""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

from importers import layouts
from importers.errors import UnsupportedLayerError
from importers.model import load
from tests.helpers import randomize_keras

tfk = pytest.importorskip("tf_keras")


def _rand(model, seed=0):
    randomize_keras(model, seed, scale=0.4)


def _save(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "HDF5 is legacy"
        model.save(path)


def _reloads_by_name(model, path, x, expected):
    """``importers.load_weights`` of the same file into the model's layers, their
    parameters zeroed first, converts the arrays as Keras 2's ``load_weights`` does (Keras
    1 per-gate arrays joined, Theano kernels flipped): the outputs come back."""
    import jax
    from flax import nnx

    from importers import load_weights

    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree_util.tree_map(lambda p: p * 0, params))
    assert load_weights(model, path) == list(model.layers)
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)


def _keras1_rnn(name, units, **extra):
    cfg = {
        "name": name,
        "output_dim": units,
        "init": "glorot_uniform",
        "inner_init": "orthogonal",
        "activation": "tanh",
        "inner_activation": "hard_sigmoid",
        "W_regularizer": None,
        "U_regularizer": None,
        "b_regularizer": None,
        "dropout_W": 0.0,
        "dropout_U": 0.0,
        "return_sequences": True,
        "go_backwards": False,
        "stateful": False,
        "unroll": False,
        "consume_less": "cpu",
        "trainable": True,
    }
    cfg.update(extra)
    return cfg


def _write_keras1(path, config, weights):
    """A Keras 1 ``model.save`` file: no keras_version, per-layer weight_names."""
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [n.encode() for n in weights]
        for layer, named in weights.items():
            lg = g.create_group(layer)
            lg.attrs["weight_names"] = [n.encode() for n, _ in named]
            for n, a in named:
                lg[n] = a


def test_keras1_sequential_tagger(tmp_path):
    ref = tfk.Sequential(
        [
            tfk.Input((6,), dtype="int32"),
            tfk.layers.Embedding(10, 4, mask_zero=True),
            tfk.layers.LSTM(3, return_sequences=True, recurrent_activation="hard_sigmoid"),
            tfk.layers.GRU(
                2, return_sequences=True, reset_after=False, recurrent_activation="hard_sigmoid"
            ),
            tfk.layers.TimeDistributed(tfk.layers.Dense(2)),
        ]
    )
    _rand(ref)
    emb, lstm, gru, td = (layer.get_weights() for layer in ref.layers)
    config = {
        "class_name": "Sequential",
        "config": [
            {
                "class_name": "Embedding",
                "config": {
                    "name": "embedding_1",
                    "input_dim": 10,
                    "output_dim": 4,
                    "mask_zero": True,
                    "init": "uniform",
                    "W_regularizer": None,
                    "W_constraint": None,
                    "activity_regularizer": None,
                    "dropout": 0.0,
                    "input_length": 6,
                    "input_dtype": "int32",
                    "batch_input_shape": [None, 6],
                    "trainable": True,
                },
            },
            {"class_name": "LSTM", "config": _keras1_rnn("lstm_1", 3, forget_bias_init="one")},
            {"class_name": "GRU", "config": _keras1_rnn("gru_1", 2)},
            {
                "class_name": "TimeDistributed",
                "config": {
                    "name": "timedistributed_1",
                    "trainable": True,
                    "layer": {
                        "class_name": "Dense",
                        "config": {
                            "name": "dense_1",
                            "output_dim": 2,
                            "init": "glorot_uniform",
                            "activation": "linear",
                            "W_regularizer": None,
                            "b_regularizer": None,
                            "activity_regularizer": None,
                            "W_constraint": None,
                            "b_constraint": None,
                            "bias": True,
                            "input_dim": None,
                            "trainable": True,
                        },
                    },
                },
            },
        ],
    }
    weights = {
        "embedding_1": [("embedding_1_W", emb[0])],
        "lstm_1": list(
            zip(layouts.keras1_weight_names("lstm", "lstm_1"), layouts.keras_lstm_to_keras1(*lstm))
        ),
        "gru_1": list(
            zip(layouts.keras1_weight_names("gru", "gru_1"), layouts.keras_gru_to_keras1(*gru))
        ),
        "timedistributed_1": [("dense_1_W", td[0]), ("dense_1_b", td[1])],
    }
    path = tmp_path / "keras1.h5"
    _write_keras1(path, config, weights)
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]], np.int32)
    model = load(path)
    np.testing.assert_allclose(np.asarray(model(ids)), ref.predict(ids, verbose=0), atol=1e-5)
    _reloads_by_name(model, path, ids, ref.predict(ids, verbose=0))
    assert model.get_layer("lstm_1").cell.recurrent_activation.__name__ == "keras2_hard_sigmoid"
    assert model.get_layer("gru_1").cell.reset_after is False


def test_keras1_merge_modes():
    from importers.legacy import keras1_layer_entry

    entry = keras1_layer_entry(
        {"class_name": "Merge", "config": {"name": "m", "mode": "concat", "concat_axis": -1}}
    )
    assert entry["class_name"] == "Concatenate" and entry["config"]["axis"] == -1
    assert (
        keras1_layer_entry({"class_name": "Merge", "config": {"name": "s", "mode": "sum"}})[
            "class_name"
        ]
        == "Add"
    )
    with pytest.raises(UnsupportedLayerError, match="'cos'"):
        keras1_layer_entry({"class_name": "Merge", "config": {"name": "c", "mode": "cos"}})
    with pytest.raises(UnsupportedLayerError, match="word dropout"):
        keras1_layer_entry(
            {"class_name": "Embedding", "config": {"name": "e", "output_dim": 2, "dropout": 0.2}}
        )


def test_theano_conv_lstm_kernels_are_flipped(tmp_path):
    ref = tfk.Sequential(
        [tfk.Input((3, 5, 4, 2)), tfk.layers.ConvLSTM2D(3, (3, 2), padding="same", name="cl")]
    )
    _rand(ref)
    path = tmp_path / "theano.h5"
    _save(ref, path)
    with h5py.File(path, "r+") as f:
        f.attrs["backend"] = b"theano"
        f["model_weights"].attrs["backend"] = b"theano"
        group = f["model_weights"]["cl"]
        for wname in group.attrs["weight_names"]:
            wname = wname.decode() if isinstance(wname, bytes) else wname
            if "kernel" in wname:  # kernel and recurrent_kernel, as Theano would hold them
                data = group[wname][...]
                group[wname][...] = data[::-1, ::-1]
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 4, 2)).astype(np.float32)
    model = load(path)
    np.testing.assert_allclose(np.asarray(model(x)), ref.predict(x, verbose=0), atol=1e-5)
    _reloads_by_name(model, path, x, ref.predict(x, verbose=0))


def test_keras1_convolution_sizes_and_strides(tmp_path):
    """Keras 1.2 writes a Convolution2D's and ConvLSTM2D's kernel size as ``nb_row`` and
    ``nb_col``, a Convolution3D's as ``kernel_dim1..3``, and strides as ``subsample``;
    Keras 2's legacy interface turns them into ``kernel_size`` and ``strides``."""
    F = 3
    ref = tfk.Sequential(
        [
            tfk.Input((3, 6, 5, 2)),
            tfk.layers.ConvLSTM2D(F, (3, 2), padding="same", recurrent_activation="sigmoid"),
            tfk.layers.Conv2D(4, (2, 2), strides=(2, 1)),
        ]
    )
    _rand(ref)
    (k, rk, b), (w2, b2) = ref.layers[0].get_weights(), ref.layers[1].get_weights()
    gates = {g: slice(i * F, (i + 1) * F) for i, g in enumerate("ifco")}
    per_gate = [
        (f"cl_{part}_{g}", array[..., gates[g]])
        for g in "icfo"  # Keras 1's storage order
        for part, array in (("W", k), ("U", rk), ("b", b))
    ]
    common = {"dim_ordering": "tf", "init": "glorot_uniform", "bias": True}
    conv_lstm = {
        "name": "cl",
        "batch_input_shape": [None, 3, 6, 5, 2],
        "nb_filter": F,
        "nb_row": 3,
        "nb_col": 2,
        "border_mode": "same",
        "inner_activation": "sigmoid",
        "activation": "tanh",
        "return_sequences": False,
        "go_backwards": False,
        "stateful": False,
        **common,
    }
    conv = {"name": "conv", "nb_filter": 4, "nb_row": 2, "nb_col": 2, "subsample": [2, 1]}
    config = {
        "class_name": "Sequential",
        "config": [
            {"class_name": "ConvLSTM2D", "config": conv_lstm},
            {"class_name": "Convolution2D", "config": {**conv, "border_mode": "valid", **common}},
        ],
    }
    path = tmp_path / "k1_conv.h5"
    _write_keras1(path, config, {"cl": per_gate, "conv": [("conv_W", w2), ("conv_b", b2)]})
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 5, 2)).astype(np.float32)
    model = load(path)
    np.testing.assert_allclose(np.asarray(model(x)), ref.predict(x, verbose=0), atol=1e-5)
    _reloads_by_name(model, path, x, ref.predict(x, verbose=0))

    ref3 = tfk.Sequential([tfk.Input((5, 4, 6, 2)), tfk.layers.Conv3D(3, (2, 3, 1), strides=2)])
    _rand(ref3)
    w3, b3 = ref3.get_weights()
    sizes = {"kernel_dim1": 2, "kernel_dim2": 3, "kernel_dim3": 1, "subsample": [2, 2, 2]}
    conv3 = {"name": "c3", "batch_input_shape": [None, 5, 4, 6, 2], "nb_filter": 3, **sizes}
    config = {
        "class_name": "Sequential",
        "config": [{"class_name": "Convolution3D", "config": {**conv3, **common}}],
    }
    _write_keras1(tmp_path / "k1_c3.h5", config, {"c3": [("c3_W", w3), ("c3_b", b3)]})
    x3 = np.random.default_rng(2).standard_normal((2, 5, 4, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(load(tmp_path / "k1_c3.h5")(x3)), ref3.predict(x3, verbose=0), atol=1e-5
    )
    del conv3["kernel_dim3"]
    config["config"][0]["config"] = {**conv3, **common}
    _write_keras1(tmp_path / "bad.h5", config, {"c3": [("c3_W", w3), ("c3_b", b3)]})
    with pytest.raises(UnsupportedLayerError, match=r"needs \['kernel_dim1', 'kernel_dim2', 'k"):
        load(tmp_path / "bad.h5")


def test_theano_kernels_inside_a_nested_model(tmp_path):
    """Keras 2 converts a nested model's layers one by one (``convert_nested_model``):
    load_weights flips the Theano kernel of a Conv1D inside a nested Sequential too."""
    inner = tfk.Sequential(
        [tfk.Input((6, 3)), tfk.layers.Conv1D(4, 3, padding="same", name="conv")], name="inner"
    )
    i = tfk.Input((6, 3))
    ref = tfk.Model(i, tfk.layers.LSTM(2, name="lstm")(inner(i)))
    _rand(ref)
    path = tmp_path / "nested.h5"
    _save(ref, path)
    with h5py.File(path, "r+") as f:
        for node in (f, f["model_weights"]):
            node.attrs["backend"] = b"theano"
            node.attrs["keras_version"] = b"2.1.6"

        def flip(name, obj):
            if isinstance(obj, h5py.Dataset) and "conv" in name and "kernel" in name:
                obj[...] = obj[...][::-1]

        f["model_weights"]["inner"].visititems(flip)
    x = np.random.default_rng(2).standard_normal((2, 6, 3)).astype(np.float32)
    model = load(path)
    np.testing.assert_allclose(np.asarray(model(x)), ref.predict(x, verbose=0), atol=1e-5)
    _reloads_by_name(model, path, x, ref.predict(x, verbose=0))


@pytest.mark.parametrize("backend", ["tensorflow", "theano"])
def test_keras_2_1_sequential_config_is_a_bare_list(tmp_path, backend):
    """Multi-backend Keras up to 2.1.6 saved a Sequential model's config as a bare list of
    layer entries (2.2.0 made it ``{"name", "layers"}``); Theano kernels in such a file are
    still flipped."""
    ref = tfk.Sequential([tfk.Input((6, 3)), tfk.layers.Conv1D(4, 3, name="c"), tfk.layers.LSTM(2)])
    _rand(ref)
    path = tmp_path / "k21.h5"
    _save(ref, path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"] = config["config"]["layers"]
        f.attrs["model_config"] = json.dumps(config).encode()
        for node in (f, f["model_weights"]):
            node.attrs["keras_version"] = b"2.1.6"
            node.attrs["backend"] = backend.encode()
        if backend == "theano":
            group = f["model_weights"]["c"]
            for wname in group.attrs["weight_names"]:
                wname = wname.decode() if isinstance(wname, bytes) else wname
                if "kernel" in wname:
                    group[wname][...] = group[wname][...][::-1]
    x = np.random.default_rng(3).standard_normal((2, 6, 3)).astype(np.float32)
    model = load(path)
    np.testing.assert_allclose(np.asarray(model(x)), ref.predict(x, verbose=0), atol=1e-5)
    _reloads_by_name(model, path, x, ref.predict(x, verbose=0))
