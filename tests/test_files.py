"""importers' file reader: every Keras file format against Keras' own weights; hostile files.

Fixtures are written at test time by Keras 3.15.1 (TensorFlow backend), tf_keras 2.21 and
h5py (for Keras 1 style, chunked and hostile files). The reader itself imports neither
Keras nor TensorFlow.
"""

from __future__ import annotations

import doctest
import io
import json
import pickle
import struct
import subprocess
import sys
import warnings
import zipfile

import h5py
import keras
import numpy as np
import pytest
import tf_keras

from importers import _files, _h5, _zip, errors
from importers._files import KerasFile, read_keras_file
from importers.errors import (
    CorruptFileError,
    KerasFileError,
    MissingWeightsError,
    UnsafeFileError,
    UnsupportedLayerError,
    WeightShapeError,
)

K3 = keras.layers
K2 = tf_keras.layers

# Keras 3.15.1's TensorFlow backend calls np.array(variable) while saving; with NumPy 2
# that warns about the copy keyword inside keras (not jrnn). -W error would turn it into
# an error before pyproject's "keras.*" filter applies.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def _randomize(model, seed):
    """Random, distinct values in every weight (Keras' zero biases would hide order bugs)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.standard_normal(w.shape).astype(w.dtype) for w in weights])


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "HDF5 is legacy" notices from both Kerases
        return fn(*args, **kwargs)


class Many(K3.Layer):
    """A layer with 12 own variables: vars/10 and vars/11 must come after vars/9."""

    def build(self, input_shape):
        self.ws = [self.add_weight(shape=(i + 1,), name=f"w{i}") for i in range(12)]

    def call(self, x):
        return x


def _k3_models():
    x_in = keras.Input((7, 3))
    x = K3.LSTM(5, return_sequences=True, name="lstm_a")(x_in)
    x = K3.GRU(4, return_sequences=True, name="gru_ra")(x)
    x = K3.GRU(3, return_sequences=True, reset_after=False, name="gru_rb")(x)
    x = K3.SimpleRNN(4, return_sequences=True)(x)
    x = K3.Bidirectional(K3.LSTM(3, return_sequences=True), name="bidir")(x)
    cells = [K3.LSTMCell(4), K3.GRUCell(2), K3.LSTMCell(3)]
    x = K3.RNN(cells, return_sequences=True, name="stacked")(x)
    x = K3.TimeDistributed(K3.Dense(2), name="td")(x)
    x = K3.Conv1D(4, 2, name="conv")(x)
    x = K3.Dropout(0.1)(x)
    x = Many(name="many")(x)
    x = K3.MultiHeadAttention(2, 3, name="mha")(x, x)
    sub = keras.Sequential([K3.BatchNormalization(name="sub_bn"), K3.Dense(3)], name="sub")
    x = sub(x)
    x = K3.Dense(1, name="head")(x)
    zoo = keras.Model(x_in, x, name="zoo")
    emb = keras.Sequential(
        [keras.Input((7,), dtype="int32"), K3.Embedding(11, 3), K3.LSTM(4), K3.Dense(2)],
        name="emb",
    )
    conv = keras.Sequential([keras.Input((3, 6, 6, 2)), K3.ConvLSTM2D(3, 2)], name="convlstm")
    return {"zoo": zoo, "emb": emb, "convlstm": conv}


def _k2_models():
    x_in = tf_keras.Input((7, 3))
    x = K2.LSTM(5, return_sequences=True, name="lstm_a")(x_in)
    x = K2.GRU(4, return_sequences=True, name="gru_k2")(x)
    x = K2.Bidirectional(K2.LSTM(3, return_sequences=True), name="bidir")(x)
    x = K2.RNN([K2.LSTMCell(4), K2.GRUCell(2)], return_sequences=True, name="stacked")(x)
    x = K2.TimeDistributed(K2.Dense(2), name="td")(x)
    x = K2.Conv1D(4, 2, name="conv")(x)
    x = K2.MultiHeadAttention(2, 3, name="mha")(x, x)
    sub = tf_keras.Sequential([K2.BatchNormalization(name="sub_bn"), K2.Dense(3)], name="sub")
    x = K2.Dense(1, name="head")(sub(x))
    zoo = tf_keras.Model(x_in, x, name="zoo")
    emb = tf_keras.Sequential(
        [tf_keras.Input((7,), dtype="int32"), K2.Embedding(11, 3), K2.LSTM(4), K2.Dense(2)],
        name="emb",
    )
    return {"zoo": zoo, "emb": emb}


def _fit(model):
    model.compile("adam", "mse", metrics=["mae"], run_eagerly=True)
    model.fit(np.arange(28).reshape(4, 7) % 11, np.ones((4, 2)), verbose=0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(models, files): every model saved in every format its Keras writes."""
    d = tmp_path_factory.mktemp("saved")
    models, files = {}, {}
    for seed, (name, model) in enumerate(_k3_models().items()):
        if name == "emb":  # optimizer state in the files
            _fit(model)
        _randomize(model, seed)
        models["k3", name] = model
        files["k3", name, "keras"] = d / f"k3_{name}.keras"
        files["k3", name, "weights_h5"] = d / f"k3_{name}.weights.h5"
        files["k3", name, "h5"] = d / f"k3_{name}.h5"
        model.save(files["k3", name, "keras"])
        model.save_weights(files["k3", name, "weights_h5"])
        _quiet(model.save, files["k3", name, "h5"])
    for seed, (name, model) in enumerate(_k2_models().items(), start=10):
        if name == "emb":  # optimizer and (tf_keras .keras) metric state in the files
            _fit(model)
        _randomize(model, seed)
        models["k2", name] = model
        files["k2", name, "keras"] = d / f"k2_{name}.keras"
        files["k2", name, "h5"] = d / f"k2_{name}.h5"
        files["k2", name, "weights"] = d / f"k2_{name}_w.h5"
        files["k2", name, "weights_h5"] = d / f"k2_{name}.weights.h5"
        model.save(files["k2", name, "keras"])
        _quiet(model.save, files["k2", name, "h5"])
        model.save_weights(files["k2", name, "weights"])
        model.save_weights(files["k2", name, "weights_h5"])
    return models, files


def _legacy_order(layer):
    """What legacy .h5 writers store: trainable weights, then non-trainable ones."""
    return [v.numpy() for v in layer.trainable_weights + layer.non_trainable_weights]


def _assert_same(got, want, what):
    assert len(got) == len(want), f"{what}: {len(got)} arrays, Keras has {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.dtype == w.dtype and g.shape == w.shape, (what, i, g.dtype, g.shape, w.shape)
        assert np.array_equal(g, w), f"{what}: array {i} differs"


def _assert_layers(kf: KerasFile, model, *, legacy: bool):
    for layer in model.layers:
        want = _legacy_order(layer) if legacy else layer.get_weights()
        _assert_same(kf.layer_weights[layer.name].arrays, want, f"{kf.path}:{layer.name}")


CASES = [
    ("k3", "zoo", "keras", "keras_v3", keras.__version__, None),
    ("k3", "emb", "keras", "keras_v3", keras.__version__, None),
    ("k3", "convlstm", "keras", "keras_v3", keras.__version__, None),
    ("k3", "zoo", "h5", "h5_full", keras.__version__, "tensorflow"),
    ("k3", "emb", "h5", "h5_full", keras.__version__, "tensorflow"),
    ("k3", "convlstm", "h5", "h5_full", keras.__version__, "tensorflow"),
    ("k2", "zoo", "keras", "keras_v3", tf_keras.__version__, None),
    ("k2", "emb", "keras", "keras_v3", tf_keras.__version__, None),
    ("k2", "zoo", "h5", "h5_full", tf_keras.__version__, "tensorflow"),
    ("k2", "emb", "h5", "h5_full", tf_keras.__version__, "tensorflow"),
    ("k2", "zoo", "weights", "h5_weights", tf_keras.__version__, "tensorflow"),
    ("k2", "emb", "weights", "h5_weights", tf_keras.__version__, "tensorflow"),
]


@pytest.mark.parametrize("case", CASES, ids=["-".join(c[:3]) for c in CASES])
def test_every_layer_equals_keras(saved, case):
    kind, name, fmt_key, fmt, version, backend = case
    models, files = saved
    model = models[kind, name]
    kf = read_keras_file(files[kind, name, fmt_key])
    assert (kf.format, kf.keras_version, kf.backend) == (fmt, version, backend)
    assert list(kf.layer_weights) == [layer.name for layer in model.layers]
    _assert_layers(kf, model, legacy=fmt.startswith("h5"))
    if fmt != "h5_weights":
        assert kf.model_config["class_name"] in ("Functional", "Sequential")
        assert kf.model_config["config"]["name"] == model.name
    if fmt.startswith("h5"):
        assert all(not lw.children for lw in kf.layer_weights.values())
    else:  # the whole model's weights, in model.get_weights() order
        flat = [a for lw in kf.layer_weights.values() for a in lw.arrays]
        _assert_same(flat, model.get_weights(), f"{kf.path}: whole model")
    assert kf.top_level_weights is None
    if name == "emb" and fmt != "h5_weights":
        assert kf.training_config["loss"] == "mse"


def test_legacy_order_is_trainable_then_non_trainable(saved):
    # Surprise worth a test: for a nested model with BatchNormalization before another
    # layer with weights, legacy .h5 files (Keras 3 and tf_keras) do not use get_weights() order.
    models, files = saved
    for kind, key in (("k3", "h5"), ("k2", "h5"), ("k2", "weights")):
        sub = models[kind, "zoo"].get_layer("sub")
        got = read_keras_file(files[kind, "zoo", key]).layer_weights["sub"].arrays
        _assert_same(got, _legacy_order(sub), "legacy order")
        assert [a.shape for a in got] != [w.shape for w in sub.get_weights()]


def test_keras3_structure(saved):
    models, files = saved
    model = models["k3", "zoo"]
    kf = read_keras_file(files["k3", "zoo", "keras"])
    lstm = kf.layer_weights["lstm_a"]
    assert lstm.class_name == "LSTM" and lstm.config["config"]["units"] == 5
    assert list(lstm.children) == ["cell"] and lstm.children["cell"].name == "lstm_cell"
    assert lstm.weight_names == [f"layers/lstm/cell/vars/{i}" for i in range(3)]
    assert kf.layer_weights["gru_rb"].path == "layers/gru_1"  # class names, not user names
    bidir = kf.layer_weights["bidir"]
    assert list(bidir.children) == ["forward_layer", "backward_layer"]
    for side in ("forward_layer", "backward_layer"):
        keras_side = getattr(model.get_layer("bidir"), side)
        assert bidir.children[side].name == keras_side.name
        _assert_same(bidir.children[side].arrays, keras_side.get_weights(), side)
    stack = kf.layer_weights["stacked"].children["cell"]
    keras_cells = model.get_layer("stacked").cell.cells
    assert list(stack.children) == [c.name for c in keras_cells]
    for cell, keras_cell in zip(stack.children.values(), keras_cells, strict=True):
        _assert_same(cell.arrays, keras_cell.get_weights(), cell.name)
    assert list(kf.layer_weights["td"].children) == ["layer"]
    many = kf.layer_weights["many"]
    assert [a.shape for a in many.arrays] == [(i + 1,) for i in range(12)]
    assert many.weight_names[10] == "layers/many/vars/10"
    assert list(kf.layer_weights["sub"].children) == [
        layer.name for layer in model.get_layer("sub").layers
    ]
    assert kf.metadata["keras_version"] == keras.__version__
    input_name = model.layers[0].name  # "input_layer", or "input_layer_1" after other tests
    assert kf.layer_weights[input_name].arrays == []


def test_tf_keras_v3_archive_without_names(saved):
    # tf_keras' .keras writes no `name` attributes: layers are matched by recomputing
    # Keras' snake-case paths from the config. Its Bidirectional also writes an empty `layer`.
    _, files = saved
    kf = read_keras_file(files["k2", "zoo", "keras"])
    assert kf.layer_weights["gru_k2"].path == "layers/gru"
    assert set(kf.layer_weights["bidir"].children) == {"forward_layer", "backward_layer", "layer"}
    assert kf.layer_weights["bidir"].children["layer"].arrays == []


@pytest.mark.parametrize("name", ["zoo", "emb", "convlstm"])
def test_weights_h5_with_config(saved, name):
    models, files = saved
    model = models["k3", name]
    for config in (json.loads(model.to_json()), read_keras_file(files["k3", name, "keras"])):
        kf = read_keras_file(files["k3", name, "weights_h5"], config=config)
        assert (kf.format, kf.keras_version, kf.model_config["config"]["name"]) == (
            "weights_h5_v3",
            None,
            model.name,
        )
        assert list(kf.layer_weights) == [layer.name for layer in model.layers]
        _assert_layers(kf, model, legacy=False)


@pytest.mark.parametrize("name", ["zoo", "emb"])
def test_tf_keras_weights_h5(saved, name):
    # tf_keras' "x.weights.h5" is the Keras 3 tree without `name` attributes.
    models, files = saved
    model = models["k2", name]
    kf = read_keras_file(files["k2", name, "weights_h5"], config=json.loads(model.to_json()))
    assert kf.format == "weights_h5_v3"
    assert list(kf.layer_weights) == [layer.name for layer in model.layers]
    _assert_layers(kf, model, legacy=False)
    if name == "emb":  # no names, no config: layers are keyed by their group names
        kf = read_keras_file(files["k2", name, "weights_h5"])
        assert list(kf.layer_weights) == ["dense", "embedding", "lstm"]


def test_weights_h5_without_config(saved):
    models, files = saved
    model = models["k3", "emb"]
    kf = read_keras_file(files["k3", "emb", "weights_h5"])
    assert kf.model_config is None and set(kf.layer_weights) == {x.name for x in model.layers}
    _assert_layers(kf, model, legacy=False)
    # Stacked LSTMCell, GRUCell, LSTMCell: the file's per-class names cannot order them.
    with pytest.raises(KerasFileError, match=r"layers/rnn/cell/cells.*Pass config="):
        read_keras_file(files["k3", "zoo", "weights_h5"])


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.enc = K3.LSTM(4, return_sequences=True)
        self.blocks = [K3.GRU(3, return_sequences=True), K3.Dense(2)]

    def call(self, x):
        x = self.enc(x)
        for block in self.blocks:
            x = block(x)
        return x


def test_subclassed_model_weights(tmp_path):
    # No `layers` list: the layers sit under their attribute names (enc, blocks/gru, ...).
    model = Subclassed()
    model(np.zeros((1, 5, 3), "float32"))
    _randomize(model, 3)
    model.save_weights(tmp_path / "s.weights.h5")
    kf = read_keras_file(tmp_path / "s.weights.h5")
    assert {lw.path for lw in kf.layer_weights.values()} == {"enc", "blocks/gru", "blocks/dense"}
    _assert_layers(kf, model, legacy=False)


def test_bfloat16_and_float16(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((5, 3)),
            K3.LSTM(4, dtype="bfloat16", recurrent_initializer="glorot_uniform", name="l"),
            K3.Dense(2, dtype="float16", name="d"),
        ]
    )
    model.save(tmp_path / "m.keras")
    kf = read_keras_file(tmp_path / "m.keras")
    assert str(kf.layer_weights["l"].arrays[0].dtype) == "bfloat16"
    _assert_layers(kf, model, legacy=False)
    # Keras 3's legacy writer stores bfloat16 as untagged 2-byte opaque data (Keras cannot
    # read it back either): refused rather than guessed.
    _quiet(model.save, tmp_path / "m.h5")
    with pytest.raises(UnsafeFileError, match=r"opaque.*no dtype='bfloat16' tag"):
        read_keras_file(tmp_path / "m.h5")


# -- hand-built legacy files -----------------------------------------------------------


def test_keras1_style_file(tmp_path):
    rng = np.random.default_rng(0)
    suffixes = [f"{m}_{g}" for g in "icfo" for m in "WUb"]
    arrays = [
        rng.standard_normal((3, 2) if s[0] == "W" else (2, 2) if s[0] == "U" else (2,))
        for s in suffixes
    ]
    names = [f"lstm_1_{s}".encode() for s in suffixes]
    config = {
        "class_name": "Sequential",
        "config": [{"class_name": "LSTM", "config": {"name": "lstm_1"}}],
    }
    path = tmp_path / "k1.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = [b"lstm_1", b"dropout_1"]
        g = mw.create_group("lstm_1")
        g.attrs["weight_names"] = names
        for n, a in zip(names, arrays, strict=True):
            g[n.decode()] = a
        mw.create_group("dropout_1").attrs["weight_names"] = np.zeros(0)
    kf = read_keras_file(path)
    assert (kf.format, kf.keras_version, kf.backend) == ("h5_full", "1", None)
    lw = kf.layer_weights["lstm_1"]
    assert lw.weight_names == [n.decode() for n in names]  # i, c, f, o as stored
    assert lw.class_name == "LSTM"
    _assert_same(lw.arrays, arrays, "keras 1")
    assert kf.layer_weights["dropout_1"].arrays == []


def test_chunked_attributes(tmp_path):
    path = tmp_path / "chunked.h5"
    names = [f"dense_{i}" for i in range(5)]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names0"] = [n.encode() for n in names[:3]]
        f.attrs["layer_names1"] = [n.encode() for n in names[3:]]
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"theano"
        for i, n in enumerate(names):
            g = f.create_group(n)
            g.attrs["weight_names0"] = [f"{n}/kernel:0".encode()]
            g.attrs["weight_names1"] = [f"{n}/bias:0".encode()]
            g[f"{n}/kernel:0"] = np.full((2, i + 1), i, "f4")
            g[f"{n}/bias:0"] = np.full((i + 1,), -i, "f4")
    kf = read_keras_file(path)
    assert (kf.format, kf.keras_version, kf.backend) == ("h5_weights", "2.2.4", "theano")
    assert list(kf.layer_weights) == names
    assert [a.shape for a in kf.layer_weights["dense_3"].arrays] == [(2, 4), (4,)]
    assert kf.layer_weights["dense_3"].weight_names == ["dense_3/kernel:0", "dense_3/bias:0"]


# -- hostile and broken files ------------------------------------------------------------


def _legacy_h5(path, build):
    """A one-layer legacy weights file; ``build(group)`` adds the weights."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
        f.attrs["keras_version"] = b"2.15.0"
        g = f.create_group("dense")
        build(f, g)
    return path


def _archive(path, members, compression=zipfile.ZIP_STORED):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


_CONFIG = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": []}})


def test_truncated_and_random_files(saved, tmp_path):
    _, files = saved
    data = files["k3", "emb", "keras"].read_bytes()
    (tmp_path / "t.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"t\.keras: not a readable zip archive"):
        read_keras_file(tmp_path / "t.keras")
    data = files["k2", "emb", "h5"].read_bytes()
    (tmp_path / "t.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"t\.h5: /: cannot open the HDF5 file"):
        read_keras_file(tmp_path / "t.h5")
    (tmp_path / "r.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CorruptFileError, match="neither a zip archive"):
        read_keras_file(tmp_path / "r.h5")
    with pytest.raises(KerasFileError, match="a directory"):
        read_keras_file(tmp_path)


@pytest.mark.parametrize(
    "name, match",
    [
        ("../evil", r"'\.\./evil' has a '\.\.' segment"),
        ("/etc/evil", "an absolute path"),
        ("assets\\x", "backslash"),
        ("C:/x", "an absolute path"),
    ],
)
def test_zip_unsafe_names(tmp_path, name, match):
    path = _archive(tmp_path / "m.keras", [("config.json", _CONFIG), (name, b"x")])
    with pytest.raises(UnsafeFileError, match=match):
        read_keras_file(path)


def test_zip_duplicates_and_bomb(tmp_path):
    path = _archive(tmp_path / "d.keras", [("config.json", _CONFIG), ("config.json", "{}")])
    with pytest.raises(UnsafeFileError, match=r"'config\.json' appears more than once"):
        read_keras_file(path)
    bomb = b'{"class_name": "Sequential", "config": {}}' + b" " * 5_000_000
    path = _archive(tmp_path / "b.keras", [("config.json", bomb)], zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 20_000
    with pytest.raises(UnsafeFileError, match=r"config\.json: the member declares 5000042 bytes"):
        read_keras_file(path, max_member_bytes=1_000_000)
    with pytest.raises(UnsafeFileError, match="max_total_bytes"):
        read_keras_file(path, max_total_bytes=1_000_000)


def test_zip_forged_sizes(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", b" " * 100_000)
    for declared, match in ((100, "Bad CRC-32"), (200_000, "declares 200000 bytes but holds")):
        data = bytearray(buf.getvalue())
        struct.pack_into("<I", data, 22, declared)  # local header: uncompressed size
        struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, declared)  # central dir
        (tmp_path / "f.keras").write_bytes(bytes(data))
        with pytest.raises(CorruptFileError, match=match):
            read_keras_file(tmp_path / "f.keras")


@pytest.mark.parametrize(
    "config, error, match",
    [
        (b'{"class_name": ', CorruptFileError, r"config\.json: not valid JSON"),
        (b"[" * 10_000 + b"]" * 10_000, UnsafeFileError, "nested 10000 levels deep"),
        (b'[{"class_name": "Sequential"}]', CorruptFileError, "expected a model config.*list"),
        (
            b'{"class_name": "A", "class_name": "B", "config": {}}',
            CorruptFileError,
            "repeats the key 'class_name'",
        ),
        (_CONFIG.encode(), MissingWeightsError, "neither 'model.weights.h5' nor"),
    ],
    ids=["bad-json", "deep-json", "not-object", "duplicate-key", "no-weights"],
)
def test_archive_config_problems(tmp_path, config, error, match):
    path = _archive(tmp_path / "c.keras", [("metadata.json", "{}"), ("config.json", config)])
    with pytest.raises(error, match=match):
        read_keras_file(path)


def test_npz_weights_need_pickle(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, **{"layers/dense": np.array({"0": np.ones(2)}, dtype=object)})
    path = _archive(
        tmp_path / "n.keras", [("config.json", _CONFIG), ("model.weights.npz", buf.getvalue())]
    )
    with pytest.raises(UnsafeFileError, match=r"model\.weights\.npz: .*pickle"):
        read_keras_file(path)


def test_missing_weights_h5(tmp_path):
    def build(f, g):
        g.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        g["dense/kernel:0"] = np.ones((2, 2), "f4")

    path = _legacy_h5(tmp_path / "m.h5", build)
    with pytest.raises(
        MissingWeightsError, match=r"'dense/bias:0'.*no dataset 'dense/dense/bias:0'"
    ):
        read_keras_file(path)

    def no_group(f, g):
        g.attrs["weight_names"] = np.zeros(0)
        f.attrs["layer_names"] = [b"dense", b"lstm"]

    with pytest.raises(MissingWeightsError, match=r"layer 'lstm' is listed.*no group 'lstm'"):
        read_keras_file(_legacy_h5(tmp_path / "g.h5", no_group))


def _one_dataset(tmp_path, make):
    def build(f, g):
        g.attrs["weight_names"] = [b"w"]
        make(f, g)

    return _legacy_h5(tmp_path / "x.h5", build)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda f, g: g.create_dataset("w", data=["a", "b"], dtype=h5py.string_dtype()),
            UnsafeFileError,
            "dense/w has dtype .*Refusing to read non-numeric",
        ),
        (
            lambda f, g: g.create_dataset("w", (2,), dtype=h5py.vlen_dtype("f4")),
            UnsafeFileError,
            "variable-length float32",
        ),
        (
            lambda f, g: g.create_dataset("w", (2,), dtype=[("a", "f4"), ("b", "i4")]),
            UnsafeFileError,
            "compound",
        ),
        (
            lambda f, g: g.create_dataset("w", shape=(10**9, 10**6), chunks=True, dtype="f4"),
            UnsafeFileError,
            r"declares shape \(1000000000, 1000000\).*max_member_bytes",
        ),
        (
            lambda f, g: g.create_dataset("w", shape=(1000, 100_000), chunks=True, dtype="f4"),
            UnsafeFileError,
            r"= 400000000 bytes but stores only 0 bytes",
        ),
        (
            lambda f, g: g.__setitem__("w", h5py.ExternalLink("other.h5", "/x")),
            UnsafeFileError,
            r"dense/w is an HDF5 ExternalLink to 'other.h5'",
        ),
        (
            lambda f, g: (
                f.create_dataset("x", data=np.ones(2)),
                g.__setitem__("w", h5py.SoftLink("/x")),
            ),
            UnsafeFileError,
            "SoftLink to '/x'",
        ),
        (
            lambda f, g: g.create_dataset("w", (4,), "f4", external=[("raw.bin", 0, 16)]),
            UnsafeFileError,
            "external files",
        ),
        (
            lambda f, g: (
                g.attrs.__setitem__("weight_names", [b"/x"]),
                f.__setitem__("x", np.ones(2)),
            ),
            UnsafeFileError,
            "path segment '' is empty",
        ),
    ],
    ids=[
        "strings",
        "vlen",
        "compound",
        "shape-bomb",
        "storage-bomb",
        "external-link",
        "soft-link",
        "external-storage",
        "absolute-name",
    ],
)
def test_hostile_datasets(tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        read_keras_file(_one_dataset(tmp_path, make))


def test_size_limits_on_real_files(saved):
    _, files = saved
    path = files["k3", "zoo", "keras"]
    with pytest.raises(
        UnsafeFileError,
        match=r"k3_zoo\.keras!model\.weights\.h5: the member "
        r"declares \d+ bytes, over the limit of 50000 .*max_member_bytes",
    ):
        read_keras_file(path, max_member_bytes=50_000)
    path = files["k3", "zoo", "h5"]
    with pytest.raises(
        UnsafeFileError,
        match=r"k3_zoo\.h5: model_weights/lstm_a/lstm_a/lstm_cell/"
        r"recurrent_kernel declares shape \(5, 20\) of float32 = 400 bytes",
    ):
        read_keras_file(path, max_member_bytes=300)
    with pytest.raises(UnsafeFileError, match=r"arrays read to .* max_total_bytes"):
        read_keras_file(path, max_total_bytes=2_000)


def test_v3_tree_problems(tmp_path):
    path = tmp_path / "gap.weights.h5"
    with h5py.File(path, "w") as f:
        v = f.create_group("layers/dense/vars")
        v.attrs["name"] = "d"
        v["0"] = np.ones(2)
        v["2"] = np.ones(2)
    with pytest.raises(
        CorruptFileError, match=r"layers/dense/vars: expected datasets named 0\.\.1"
    ):
        read_keras_file(path)
    path = tmp_path / "cycle.weights.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("layers/wrapper")
        g.create_group("vars").attrs["name"] = "w"
        g["layer"] = g  # a hard link to itself
    with pytest.raises(UnsafeFileError, match="second hard link"):
        read_keras_file(path)
    path = tmp_path / "two.weights.h5"
    with h5py.File(path, "w") as f:
        for attr in ("query", "key"):
            f.create_group(f"layers/custom/{attr}/vars")["0"] = np.ones(2)
        f["layers/custom"].create_group("vars").attrs["name"] = "c"
    with pytest.raises(UnsupportedLayerError, match=r"'c'.*\['key', 'query'\].*not recorded"):
        read_keras_file(path)


def test_config_argument_checks(saved):
    _, files = saved
    with pytest.raises(KerasFileError, match=r"config= is only used for Keras 3 \.weights\.h5"):
        read_keras_file(files["k3", "emb", "keras"], config={"class_name": "X", "config": {}})
    with pytest.raises(KerasFileError, match="config= must be a serialized Keras model config"):
        read_keras_file(files["k3", "emb", "weights_h5"], config={"layers": []})
    wrong = json.loads(
        json.dumps(
            {
                "class_name": "Sequential",
                "config": {
                    "name": "s",
                    "layers": [{"class_name": "GRU", "config": {"name": "nope"}}],
                },
            }
        )
    )
    with pytest.raises(MissingWeightsError, match="config lists layer 'nope' \\(GRU\\)"):
        read_keras_file(files["k3", "emb", "weights_h5"], config=wrong)


def test_reader_needs_neither_keras_nor_tensorflow(saved):
    models, files = saved
    code = (
        "import sys\n"
        "for name in ('keras', 'tensorflow', 'tf_keras'):\n"
        "    sys.modules[name] = None  # any import of them now fails\n"
        "from importers._files import read_keras_file\n"
        "for path in sys.argv[1:]:\n"
        "    kf = read_keras_file(path)\n"
        "    print(kf.format, len(kf.layer_weights))\n"
    )
    paths = [str(files[key]) for key in (("k3", "zoo", "keras"), ("k2", "zoo", "h5"))]
    out = subprocess.run(
        [sys.executable, "-c", code, *paths], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    counts = [str(len(models[kind, "zoo"].layers)) for kind in ("k3", "k2")]
    assert out.stdout.split() == ["keras_v3", counts[0], "h5_full", counts[1]]


# -- errors and docs ---------------------------------------------------------------------


def test_error_classes():
    err = WeightShapeError(
        path="f.h5", layer="lstm", weight="kernel", expected=(3, 8), received=(3, 4)
    )
    assert "f.h5: layer 'lstm', weight 'kernel': expected shape (3, 8), received (3, 4)" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is WeightShapeError and str(again) == str(err)
    assert again.expected == (3, 8)
    err = UnsupportedLayerError("Attention", "att", path="m.keras")
    assert str(err).startswith("m.keras: layer 'att' of class 'Attention' is not supported")
    for cls in (
        CorruptFileError,
        UnsafeFileError,
        MissingWeightsError,
        WeightShapeError,
        UnsupportedLayerError,
    ):
        assert issubclass(cls, KerasFileError) and issubclass(cls, ValueError)


@pytest.mark.parametrize("module", [_files, _h5, _zip, errors])
def test_docstring_examples(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, module.__name__):
        runner.run(test)
    assert runner.failures == 0
