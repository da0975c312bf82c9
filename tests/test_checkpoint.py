"""importers.checkpoint: jrnn checkpoints (config + safetensors), loaded without Keras.

Round trips keep the tuned jrnn parameters bit for bit; the safetensors reader is checked
against bytes written by hand from the format's specification and refuses hostile files
with specific errors.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap

import jax
import keras
import ml_dtypes
import numpy as np
import pytest
from keras import layers as L

import importers
from importers import checkpoint
from importers.errors import (
    CorruptFileError,
    ExtraWeightsError,
    KerasFileError,
    MissingWeightsError,
    UnsafeFileError,
)
from tests.helpers import nudge, randomize_keras

T, F = 7, 3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _x(seed=1):
    return np.random.default_rng(seed).standard_normal((2, T, F)).astype(np.float32)


def embedding_model():
    return keras.Sequential(
        [
            keras.Input((T,), dtype="int32"),
            L.Embedding(10, F, mask_zero=True),
            L.LSTM(5, return_sequences=True),
            L.RNN([L.LSTMCell(3), L.GRUCell(2)], return_sequences=True),
            L.Bidirectional(L.GRU(3, reset_after=False)),
            L.Dense(2),
        ]
    )


def functional_model():
    inner = keras.Sequential([keras.Input((T, F)), L.SimpleRNN(4, return_sequences=True)])
    i = keras.Input((T, F))
    a = inner(i)
    b = L.TimeDistributed(L.Dense(3))(a)
    c = L.BatchNormalization()(b)
    return keras.Model(i, [L.GRU(2)(c), L.LSTM(2)(a)])


def _assert_same(a, b):
    a = a if isinstance(a, list) else [a]
    b = b if isinstance(b, list) else [b]
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.parametrize("kind", ["embedding", "functional"])
def test_round_trip_keeps_tuned_weights(kind, tmp_path):
    km = embedding_model() if kind == "embedding" else functional_model()
    randomize_keras(km)
    if kind == "embedding":
        x = np.random.default_rng(2).integers(1, 10, (2, T)).astype(np.int32)
        x[1, 3:] = 0
    else:
        x = _x()
    m = importers.load(km)
    nudge(m)
    ckpt = tmp_path / "ckpt"
    checkpoint.save_checkpoint(m, ckpt)
    assert sorted(os.listdir(ckpt)) == ["jrnn_checkpoint.json", "weights.safetensors"]
    manifest = json.loads((ckpt / "jrnn_checkpoint.json").read_text())
    assert manifest["format"] == "jrnn-checkpoint" and manifest["format_version"] == 1
    assert manifest["keras_major"] == 3
    assert manifest["model_config"] == json.loads(json.dumps(m.model_config))
    restored = checkpoint.load_checkpoint(ckpt)
    _assert_same(restored(x), m(x))
    _assert_same(restored.keras_weights(), m.keras_weights())
    # every layer is listed, with its tensors in get_weights() order
    tensors, meta = checkpoint.read_safetensors(ckpt / "weights.safetensors")
    assert meta["format"] == "jrnn-checkpoint"
    listed = [tensors[k] for keys in manifest["layers"].values() for k in keys]
    _assert_same(listed, m.keras_weights())
    if kind == "embedding":  # tensor keys are the parameters' paths in the jrnn layer
        emb, lstm = km.layers[0].name, km.layers[1].name
        assert manifest["layers"][emb] == [f"{emb}/embeddings"]
        assert manifest["layers"][lstm] == [
            f"{lstm}/cell/{n}" for n in ("kernel", "recurrent_kernel", "bias")
        ]
    # saving again over the checkpoint replaces it
    nudge(restored, 0.5)
    checkpoint.save_checkpoint(restored, ckpt)
    _assert_same(checkpoint.load_checkpoint(ckpt)(x), restored(x))


def test_keras2_model_keeps_keras2_semantics(tmp_path):
    """A tf_keras model with Keras 2's hard_sigmoid reloads with the same function."""
    import tf_keras as k

    km = k.Sequential(
        [k.Input((T, F)), k.layers.GRU(3, recurrent_activation="hard_sigmoid", reset_after=False)]
    )
    randomize_keras(km)
    m = importers.load(km)
    assert m.keras_major == 2
    checkpoint.save_checkpoint(m, tmp_path)
    restored = checkpoint.load_checkpoint(tmp_path)
    assert restored.keras_major == 2
    _assert_same(restored(_x()), m(_x()))
    np.testing.assert_allclose(np.asarray(restored(_x())), km(_x()).numpy(), atol=1e-5)


def test_custom_layers_are_passed_through(tmp_path):
    km = keras.Sequential([keras.Input((T, F)), L.LSTM(3), L.Lambda(lambda t: t * 2.0)])
    randomize_keras(km)

    class Double:
        def __call__(self, x, *, training=False):
            return 2.0 * x

    m = importers.load(km, custom_layers={"Lambda": lambda c, a: Double()})
    checkpoint.save_checkpoint(m, tmp_path)
    with pytest.raises(KerasFileError, match="Lambda"):
        checkpoint.load_checkpoint(tmp_path)
    restored = checkpoint.load_checkpoint(tmp_path, custom_layers={"Lambda": lambda c, a: Double()})
    _assert_same(restored(_x()), m(_x()))


_NO_KERAS = textwrap.dedent(
    """
    import sys

    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras"):
                raise ImportError(f"blocked import of {name}")
            return None

    sys.meta_path.insert(0, _Block())
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from importers.checkpoint import load_checkpoint

    model = load_checkpoint(sys.argv[2])
    x = np.load(sys.argv[3])
    np.testing.assert_array_equal(np.asarray(model(x)), np.load(sys.argv[4]))
    assert not any(m.split(".")[0] in ("tensorflow", "keras", "tf_keras") for m in sys.modules)
    print("ok")
    """
)


@pytest.mark.short_call_rule  # the subprocess, which compares bitwise, runs the library's rule
def test_loading_imports_neither_tensorflow_nor_keras(tmp_path):
    km = keras.Sequential([keras.Input((T, F)), L.Bidirectional(L.LSTM(3))])
    randomize_keras(km)
    m = importers.load(km)
    nudge(m)
    checkpoint.save_checkpoint(m, tmp_path / "ckpt")
    np.save(tmp_path / "x.npy", _x())
    np.save(tmp_path / "y.npy", np.asarray(m(_x())))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", _NO_KERAS, ROOT]
        + [str(tmp_path / n) for n in ("ckpt", "x.npy", "y.npy")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


# -- safetensors ------------------------------------------------------------------------------


def _spec_file(path, header: dict, data: bytes, pad: bytes = b""):
    """A safetensors file written byte by byte as the specification describes."""
    text = json.dumps(header).encode() + pad
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def test_reads_a_file_written_from_the_specification(tmp_path):
    a = np.arange(6, dtype="<f4").reshape(2, 3)
    b = np.array([1, -2], dtype="<i8")
    header = {
        "__metadata__": {"k": "v"},
        "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
        "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
    }
    path = _spec_file(tmp_path / "w.safetensors", header, a.tobytes() + b.tobytes(), b"   ")
    tensors, meta = checkpoint.read_safetensors(path)
    assert meta == {"k": "v"} and list(tensors) == ["b", "a"]
    np.testing.assert_array_equal(tensors["a"], a)
    np.testing.assert_array_equal(tensors["b"], b)
    assert tensors["a"].flags.writeable


def test_writer_follows_the_specification(tmp_path):
    arrays = {
        "f32": np.arange(6, dtype=np.float32).reshape(3, 2),
        "bf16": np.array([1.5, -2.0], dtype=ml_dtypes.bfloat16),
        "f16": np.array([0.5], dtype=np.float16),
        "f64": np.array(3.0),
        "i32": np.array([[1, 2]], dtype=np.int32),
        "u8": np.array([255], dtype=np.uint8),
        "bool": np.array([True, False]),
        "empty": np.zeros((0, 4), np.float32),
        "big_endian": np.array([1.0, 2.0], dtype=">f4"),
    }
    path = tmp_path / "w.safetensors"
    checkpoint.write_safetensors(path, arrays, {"a": "b"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8 : 8 + n])
    assert header["__metadata__"] == {"a": "b"}
    assert header["bf16"] == {"dtype": "BF16", "shape": [2], "data_offsets": [24, 28]}
    assert header["big_endian"]["dtype"] == "F32"
    start, end = header["big_endian"]["data_offsets"]
    assert raw[8 + n + start : 8 + n + end] == np.array([1.0, 2.0], "<f4").tobytes()
    tensors, _ = checkpoint.read_safetensors(path)
    for key, value in arrays.items():
        assert tensors[key].dtype == value.dtype.newbyteorder("=") or key == "big_endian"
        np.testing.assert_array_equal(tensors[key], value)
    with pytest.raises(ValueError, match="no dtype"):
        checkpoint.write_safetensors(path, {"c": np.array([1j])})


def _good(tmp_path):
    a = np.arange(4, dtype="<f4")
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    return header, a.tobytes()


HOSTILE = {
    "bad_json": (lambda h, d: (b"{not json", d), CorruptFileError, "not valid JSON"),
    "header_list": (lambda h, d: (b"[1, 2]", d), CorruptFileError, "JSON object"),
    "duplicate_key": (
        lambda h, d: (b'{"a": {}, "a": {}}', d),
        CorruptFileError,
        "repeats the key",
    ),
    "unknown_dtype": (
        lambda h, d: ({"a": {**h["a"], "dtype": "F128"}}, d),
        CorruptFileError,
        "unknown dtype 'F128'",
    ),
    "offsets_out_of_range": (
        lambda h, d: ({"a": {**h["a"], "data_offsets": [0, 1 << 40]}}, d),
        CorruptFileError,
        "outside the data buffer",
    ),
    "negative_offset": (
        lambda h, d: ({"a": {**h["a"], "data_offsets": [-4, 12]}}, d),
        CorruptFileError,
        "outside the data buffer",
    ),
    "shape_vs_bytes": (
        lambda h, d: ({"a": {**h["a"], "shape": [5]}}, d),
        CorruptFileError,
        "needs 20 bytes",
    ),
    "huge_shape": (
        lambda h, d: ({"a": {**h["a"], "shape": [1 << 40, 1 << 40]}}, d),
        CorruptFileError,
        "needs",
    ),
    "bad_shape": (
        lambda h, d: ({"a": {**h["a"], "shape": [2, -2]}}, d),
        CorruptFileError,
        "non-negative integers",
    ),
    "bool_shape": (
        lambda h, d: ({"a": {**h["a"], "shape": [True]}}, d),
        CorruptFileError,
        "non-negative integers",
    ),
    "extra_field": (
        lambda h, d: ({"a": {**h["a"], "offset": 0}}, d),
        CorruptFileError,
        "expected an object with keys",
    ),
    "overlap": (
        lambda h, d: (
            {
                "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]},
            },
            d,
        ),
        CorruptFileError,
        "overlaps",
    ),
    "gap": (
        lambda h, d: ({"a": {**h["a"], "shape": [3], "data_offsets": [4, 16]}}, d),
        CorruptFileError,
        "gap",
    ),
    "trailing_bytes": (lambda h, d: (h, d + b"\0" * 8), CorruptFileError, "trailing bytes"),
    "truncated_data": (lambda h, d: (h, d[:10]), CorruptFileError, "outside the data buffer"),
    "bad_metadata": (
        lambda h, d: ({**h, "__metadata__": {"a": 1}}, d),
        CorruptFileError,
        "__metadata__",
    ),
    "metadata_not_an_object": (
        lambda h, d: ({**h, "__metadata__": []}, d),
        CorruptFileError,
        "'__metadata__' must map strings to strings; found \\[\\]",
    ),
    "empty_but_huge_shape": (  # no bytes needed, yet NumPy cannot make such an array
        lambda h, d: ({"a": {"dtype": "F32", "shape": [0, 1 << 70], "data_offsets": [0, 0]}}, b""),
        CorruptFileError,
        "larger than any array can be",
    ),
    "too_many_dimensions": (
        lambda h, d: ({"a": {"dtype": "F32", "shape": [0] * 65, "data_offsets": [0, 0]}}, b""),
        CorruptFileError,
        "65 dimensions, more than NumPy's 64",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_safetensors(case, tmp_path):
    make, error, message = HOSTILE[case]
    header, data = make(*_good(tmp_path))
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    with pytest.raises(error, match=message) as err:
        checkpoint.read_safetensors(path)
    assert str(path) in str(err.value)


def test_truncated_and_oversized_headers(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x10\x00\x00")
    with pytest.raises(CorruptFileError, match="8-byte header length"):
        checkpoint.read_safetensors(path)
    path.write_bytes(struct.pack("<Q", 64) + b"{}")
    with pytest.raises(CorruptFileError, match="declares 64 bytes but only 2"):
        checkpoint.read_safetensors(path)
    path.write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    with pytest.raises(UnsafeFileError, match="over the limit"):
        checkpoint.read_safetensors(path)
    header, data = _good(tmp_path)
    _spec_file(path, header, data)
    with pytest.raises(UnsafeFileError, match="max_total_bytes"):
        checkpoint.read_safetensors(path, max_total_bytes=32)


# -- hostile checkpoints ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    km = keras.Sequential([keras.Input((T, F)), L.LSTM(3), L.Dense(2)])
    m = importers.load(km)
    path = tmp_path_factory.mktemp("ckpt")
    checkpoint.save_checkpoint(m, path)
    return path


def _copy(saved, tmp_path):
    for name in os.listdir(saved):
        (tmp_path / name).write_bytes((saved / name).read_bytes())
    return json.loads((tmp_path / "jrnn_checkpoint.json").read_text())


def _write_manifest(tmp_path, manifest):
    (tmp_path / "jrnn_checkpoint.json").write_text(json.dumps(manifest))


def test_manifest_errors(saved, tmp_path):
    manifest = _copy(saved, tmp_path)
    cases = [
        ({**manifest, "format": "other"}, CorruptFileError, "'format' must be"),
        ({**manifest, "format_version": 2}, KerasFileError, "format_version 2"),
        ({**manifest, "format_version": True}, KerasFileError, "format_version True"),
        ({**manifest, "save_id": 7}, CorruptFileError, "'save_id' must be a string"),
        ({**manifest, "save_id": "0" * 32}, CorruptFileError, "come from different saves"),
        (
            {**manifest, "model_config": {"class_name": "Sequential", "config": {"layers": [1]}}},
            CorruptFileError,
            "model_config",
        ),
        ({**manifest, "keras_major": "3"}, CorruptFileError, "keras_major"),
        ({**manifest, "model_config": [1]}, CorruptFileError, "model_config"),
        ({**manifest, "layers": {"lstm": "x"}}, CorruptFileError, "'layers' must map"),
    ]
    for bad, error, message in cases:
        _write_manifest(tmp_path, bad)
        with pytest.raises(error, match=message):
            checkpoint.load_checkpoint(tmp_path)
    (tmp_path / "jrnn_checkpoint.json").write_text("[1, 2")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        checkpoint.load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"jrnn_checkpoint\.json"):
        checkpoint.load_checkpoint(tmp_path / "nowhere")


def test_weights_that_do_not_match_the_manifest(saved, tmp_path):
    manifest = _copy(saved, tmp_path)
    lstm, dense = list(manifest["layers"])
    missing = {**manifest, "layers": {**manifest["layers"], lstm: [*manifest["layers"][lstm], "x"]}}
    _write_manifest(tmp_path, missing)
    with pytest.raises(MissingWeightsError, match="needs tensor 'x'"):
        checkpoint.load_checkpoint(tmp_path)
    unused = {**manifest, "layers": {**manifest["layers"], dense: []}}
    _write_manifest(tmp_path, unused)
    with pytest.raises(ExtraWeightsError, match="belong to no layer"):
        checkpoint.load_checkpoint(tmp_path)
    layers = dict(manifest["layers"])
    del layers[lstm]
    _write_manifest(tmp_path, {**manifest, "layers": layers})
    with pytest.raises((MissingWeightsError, ExtraWeightsError)):
        checkpoint.load_checkpoint(tmp_path)
    extra = {**manifest, "layers": {**manifest["layers"], "ghost": manifest["layers"][dense]}}
    _write_manifest(tmp_path, extra)
    with pytest.raises(ExtraWeightsError, match="ghost"):
        checkpoint.load_checkpoint(tmp_path)
    _write_manifest(tmp_path, manifest)
    os.remove(tmp_path / "weights.safetensors")
    with pytest.raises(MissingWeightsError, match=r"no weights\.safetensors"):
        checkpoint.load_checkpoint(tmp_path)


def test_wrong_shapes_are_refused(saved, tmp_path):
    manifest = _copy(saved, tmp_path)
    tensors, meta = checkpoint.read_safetensors(tmp_path / "weights.safetensors")
    key = manifest["layers"][next(iter(manifest["layers"]))][0]
    tensors[key] = np.zeros((1, 1), np.float32)
    checkpoint.write_safetensors(tmp_path / "weights.safetensors", tensors, meta)
    with pytest.raises(KerasFileError, match=r"\(1, 1\)"):
        checkpoint.load_checkpoint(tmp_path)


def test_a_changed_dtype_tag_is_refused(saved, tmp_path):
    """One flipped byte in the header (``"F32"`` to ``"I32"``) made the float bits load as
    integers, cast into the float kernel: ~1e9 weights, no error."""
    manifest = _copy(saved, tmp_path)
    key = manifest["layers"][next(iter(manifest["layers"]))][0]
    tensors, meta = checkpoint.read_safetensors(tmp_path / "weights.safetensors")
    tensors[key] = tensors[key].view(np.int32)  # the same bytes under another dtype
    checkpoint.write_safetensors(tmp_path / "weights.safetensors", tensors, meta)
    with pytest.raises(CorruptFileError, match=rf"{key!r} is stored as int32, but the param"):
        checkpoint.load_checkpoint(tmp_path)


def test_tensor_keys_must_be_the_model_parameters_in_keras_order(tmp_path):
    """Swapped keys of one shape (a Bidirectional's two directions) would load each array
    into the other's parameter."""
    km = keras.Sequential([keras.Input((T, F)), L.Bidirectional(L.LSTM(3), name="bi")])
    checkpoint.save_checkpoint(importers.load(km), tmp_path)
    manifest = json.loads((tmp_path / "jrnn_checkpoint.json").read_text())
    keys = manifest["layers"]["bi"]
    swapped = keys[3:] + keys[:3]  # backward_layer's tensors first
    _write_manifest(tmp_path, {**manifest, "layers": {"bi": swapped}})
    with pytest.raises(CorruptFileError, match=r"lists the tensors .* for layer 'bi'"):
        checkpoint.load_checkpoint(tmp_path)


def test_a_save_cut_short_between_its_two_files_is_refused(tmp_path):
    """The weights of a second save beside the JSON of the first: neither model's."""
    first = importers.load(keras.Sequential([keras.Input((T, F)), L.GRU(2)]))
    second = importers.load(keras.Sequential([keras.Input((T, F)), L.GRU(2)]))
    checkpoint.save_checkpoint(first, tmp_path / "a")
    checkpoint.save_checkpoint(second, tmp_path / "b")
    (tmp_path / "a" / "weights.safetensors").write_bytes(
        (tmp_path / "b" / "weights.safetensors").read_bytes()
    )
    with pytest.raises(CorruptFileError, match="come from different saves"):
        checkpoint.load_checkpoint(tmp_path / "a")


def test_scalar_parameters_keep_their_shape(tmp_path):
    """Attention's ``scale`` and ``concat_score_weight`` are 0-d: stored as shape [],
    not the [1] of ``np.ascontiguousarray``."""
    q, v = keras.Input((4, F), name="q"), keras.Input((6, F), name="v")
    km = keras.Model([q, v], L.Attention(use_scale=True, score_mode="concat", name="att")([q, v]))
    km.get_layer("att").scale.assign(0.7)
    km.get_layer("att").concat_score_weight.assign(1.3)
    m = importers.load(km)
    checkpoint.save_checkpoint(m, tmp_path)
    tensors, _ = checkpoint.read_safetensors(tmp_path / "weights.safetensors")
    assert [a.shape for a in tensors.values()] == [(), ()]
    x = [_x()[:, :4], _x(2)[:, :6]]
    _assert_same(checkpoint.load_checkpoint(tmp_path)(x), m(x))


def test_layer_names_holding_a_slash_that_collide_are_refused(tmp_path):
    """tf.keras allows '/' in names: a layer "a/b" and the layer "b" of a nested model "a"
    would share the checkpoint key "a/b"."""
    tf_keras = pytest.importorskip("tf_keras")
    inner = tf_keras.Sequential(
        [tf_keras.Input((3,)), tf_keras.layers.Dense(3, name="b")], name="a"
    )
    x = tf_keras.Input((3,))
    km = tf_keras.Model(x, tf_keras.layers.Dense(3, name="a/b")(inner(x)))
    with pytest.raises(ValueError, match="two layers are both named 'a/b'"):
        checkpoint.save_checkpoint(importers.load(km), tmp_path)
    assert not os.listdir(tmp_path)


def test_save_refuses_other_objects(tmp_path):
    with pytest.raises(TypeError, match="ImportedModel"):
        checkpoint.save_checkpoint(object(), tmp_path)
    (tmp_path / "file").write_text("")
    m = importers.load(keras.Sequential([keras.Input((T, F)), L.GRU(2)]))
    with pytest.raises(ValueError, match="not a directory"):
        checkpoint.save_checkpoint(m, tmp_path / "file")
    (tmp_path / "ck" / "weights.safetensors").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"weights\.safetensors' is a directory"):
        checkpoint.save_checkpoint(m, tmp_path / "ck")
    with pytest.raises(ValueError, match="tensor keys must be strings"):
        checkpoint.write_safetensors(tmp_path / "w.safetensors", {1: np.zeros(2)})


# ---------------------------------------------------------------- optimizer state
def _trainable_model():
    return importers.load(
        keras.Sequential(
            [
                keras.Input((T, F), name="o_in"),
                L.LSTM(4, return_sequences=True, name="o_lstm"),
                L.BatchNormalization(name="o_bn"),
                L.GRU(2, name="o_gru"),
            ],
            name="o_model",
        )
    )


def _adam(model):
    from flax import nnx

    from jrnn import training

    return nnx.Optimizer(model, training.keras_adam(1e-2), wrt=nnx.Param)


def _optimizer_state(optimizer):
    from flax import nnx

    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(optimizer, nnx.OptState)))


def test_a_checkpoint_with_its_optimizer_resumes_training_exactly(tmp_path):
    """save_checkpoint(optimizer=) keeps Adam's moments, the step and the dynamic loss
    scale; restore_optimizer puts them in an optimizer built for the loaded model, and
    training goes on exactly as if uninterrupted (a fresh optimizer restarts the moments,
    the step count and the scale)."""
    from jrnn import training

    x = _x()
    y = np.random.default_rng(3).standard_normal((x.shape[0], 2)).astype(np.float32)
    step = training.make_train_step("mse", loss_scale="dynamic", dynamic_growth_steps=2)
    model = _trainable_model()
    optimizer = _adam(model)
    step(model, optimizer, x, np.full_like(y, np.inf))  # skipped: the scale halves
    for _ in range(3):
        step(model, optimizer, x, y)
    importers.save_checkpoint(model, tmp_path, optimizer=optimizer)
    restored = importers.load_checkpoint(tmp_path)
    resumed = _adam(restored)
    step.init(resumed)
    importers.restore_optimizer(tmp_path, resumed)
    jax.tree.map(
        np.testing.assert_array_equal, _optimizer_state(resumed), _optimizer_state(optimizer)
    )
    for _ in range(4):
        step(model, optimizer, x, y)
        step(restored, resumed, x, y)
    for a, b in zip(model.keras_weights(), restored.keras_weights(), strict=True):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]))
    jax.tree.map(
        np.testing.assert_array_equal, _optimizer_state(resumed), _optimizer_state(optimizer)
    )


def test_restore_optimizer_refuses_what_does_not_fit(tmp_path):
    """No optimizer saved; a loss scale saved but not initialised; another optax
    transformation: each a clear error, and nothing half-restored."""
    import optax
    from flax import nnx

    from jrnn import training

    x = _x()
    y = np.zeros((x.shape[0], 2), np.float32)
    model = _trainable_model()
    importers.save_checkpoint(model, tmp_path / "plain")
    with pytest.raises(KerasFileError, match="holds no optimizer state"):
        importers.restore_optimizer(tmp_path / "plain", _adam(model))
    step = training.make_train_step("mse", loss_scale="dynamic")
    optimizer = _adam(model)
    step(model, optimizer, x, y)
    importers.save_checkpoint(model, tmp_path / "scaled", optimizer=optimizer)
    with pytest.raises(ExtraWeightsError, match=r"init\(optimizer\) first"):
        importers.restore_optimizer(tmp_path / "scaled", _adam(model))
    sgd = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
    step.init(sgd)
    before = _optimizer_state(sgd)
    with pytest.raises(MissingWeightsError, match="another optax transformation"):
        importers.restore_optimizer(tmp_path / "scaled", sgd)
    jax.tree.map(np.testing.assert_array_equal, _optimizer_state(sgd), before)
    with pytest.raises(TypeError, match=r"must be an nnx\.Optimizer"):
        importers.save_checkpoint(model, tmp_path / "bad", optimizer=object())


def test_a_checkpoint_keeps_trainable_as_the_model_holds_it(tmp_path):
    """A layer frozen (or unfrozen) after import stays so through a checkpoint: the
    checkpoint wrote the imported config's trainable, which training reads on load."""
    from jrnn import training

    model = _trainable_model()
    model.get_layer("o_lstm").trainable = False
    importers.save_checkpoint(model, tmp_path)
    restored = importers.load_checkpoint(tmp_path)
    assert training.frozen_modules(restored) == (("layers", "o_lstm"),)
    restored.get_layer("o_lstm").trainable = True
    importers.save_checkpoint(restored, tmp_path / "again")
    assert training.frozen_modules(importers.load_checkpoint(tmp_path / "again")) == ()
