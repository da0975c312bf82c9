"""importers.load rebuilds live Keras 3 models in jrnn with equal outputs."""

from __future__ import annotations

import pathlib
import warnings

import keras
import numpy as np
import pytest

from importers.model import load


def _rand_weights(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in ws])


def _check(model, inputs):
    _rand_weights(model)
    expected = model.predict(inputs, verbose=0)
    got = load(model)(inputs)
    exp = expected if isinstance(expected, list) else [expected]
    got = got if isinstance(got, list) else [got]
    assert len(exp) == len(got)
    for e, g in zip(exp, got, strict=True):
        np.testing.assert_allclose(np.asarray(g), e, atol=1e-5)


def test_stacked_gru_regressor():
    m = keras.Sequential(
        [
            keras.Input((6, 3)),
            keras.layers.GRU(5, return_sequences=True),
            keras.layers.GRU(4),
            keras.layers.Dense(1),
        ]
    )
    _check(m, np.random.default_rng(1).standard_normal((2, 6, 3)).astype(np.float32))


def test_embedding_mask_zero_lstm():
    m = keras.Sequential(
        [
            keras.Input((7,), dtype="int32"),
            keras.layers.Embedding(10, 4, mask_zero=True),
            keras.layers.LSTM(3, return_sequences=True),
            keras.layers.Dense(2),
        ]
    )
    ids = np.array([[1, 2, 3, 0, 0, 0, 0], [4, 5, 6, 7, 8, 9, 1]], np.int32)
    _check(m, ids)


def test_two_inputs_shared_lstm_concatenate():
    a, b = keras.Input((5, 3)), keras.Input((4, 3))
    lstm = keras.layers.LSTM(4, name="shared")
    out = keras.layers.Dense(2)(keras.layers.Concatenate()([lstm(a), lstm(b)]))
    m = keras.Model([a, b], out)
    rng = np.random.default_rng(2)
    _check(
        m,
        [
            rng.standard_normal((2, 5, 3)).astype(np.float32),
            rng.standard_normal((2, 4, 3)).astype(np.float32),
        ],
    )
    assert load(m).get_layer("shared") is not None


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_flags_return_state_go_backwards(kind):
    extra = {"reset_after": False} if kind == "GRU" else {}
    x = keras.Input((5, 3))
    outs = getattr(keras.layers, kind)(4, return_state=True, go_backwards=True, **extra)(x)
    m = keras.Model(x, list(outs))
    _check(m, np.random.default_rng(3).standard_normal((2, 5, 3)).astype(np.float32))


def test_lambda_unsupported_and_custom_layers():
    x = keras.Input((3,))
    m = keras.Model(x, keras.layers.Lambda(lambda t: t * 2, name="double")(x))
    with pytest.raises(ValueError, match=r"double.*Lambda"):
        load(m)
    got = load(m, custom_layers={"Lambda": lambda cfg, w: lambda t, training=False: t * 2})
    np.testing.assert_allclose(np.asarray(got(np.ones((1, 3), np.float32))), 2.0)


def test_tagger_embedding_bidirectional_time_distributed():
    m = keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(12, 5, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True)),
            keras.layers.TimeDistributed(keras.layers.Dense(3)),
        ]
    )
    ids = np.array([[3, 4, 5, 0, 0, 0], [1, 2, 0, 7, 8, 11]], np.int32)
    _check(m, ids)


def test_tf_keras_keras2_inbound_nodes():
    tfk = pytest.importorskip("tf_keras")
    a, b = tfk.Input((5, 3)), tfk.Input((5, 3))
    gru = tfk.layers.GRU(4, name="shared_gru")
    out = tfk.layers.Dense(2)(tfk.layers.Concatenate()([gru(a), gru(b)]))
    m = tfk.Model([a, b], out)
    rng = np.random.default_rng(4)
    _check(
        m,
        [
            rng.standard_normal((2, 5, 3)).astype(np.float32),
            rng.standard_normal((2, 5, 3)).astype(np.float32),
        ],
    )


def test_tf_keras_hard_sigmoid_is_keras2():
    tfk = pytest.importorskip("tf_keras")
    m = tfk.Sequential([tfk.Input((5, 3)), tfk.layers.LSTM(4, recurrent_activation="hard_sigmoid")])
    _check(m, np.random.default_rng(5).standard_normal((2, 5, 3)).astype(np.float32) * 3)


@pytest.mark.parametrize("flavour", ["keras3", "tf_keras"])
def test_legacy_h5_file_blocked_keras(tmp_path, flavour):
    import subprocess
    import sys

    lib = keras if flavour == "keras3" else pytest.importorskip("tf_keras")
    m = lib.Sequential(
        [
            lib.Input((6,), dtype="int32"),
            lib.layers.Embedding(9, 4, mask_zero=True),
            lib.layers.Bidirectional(lib.layers.GRU(3, return_sequences=True)),
            lib.layers.TimeDistributed(lib.layers.Dense(2)),
        ]
    )
    _rand_weights(m)
    ids = np.array([[3, 4, 5, 0, 0, 0], [1, 2, 0, 7, 8, 1]], np.int32)
    path = tmp_path / "m.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(path)
    np.savez(tmp_path / "io.npz", x=ids, y=m.predict(ids, verbose=0))
    code = (
        "import sys, numpy as np\n"
        "sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "sys.modules['tf_keras'] = None\n"
        "import importers\n"
        f"d = np.load({str(tmp_path / 'io.npz')!r})\n"
        f"y = importers.load({str(path)!r})(d['x'])\n"
        "np.testing.assert_allclose(np.asarray(y), d['y'], atol=1e-5)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=str(pathlib.Path(__file__).parents[1]),
    )
