"""importers.export: jrnn models back to Keras 3 (.keras and .weights.h5).

Every model is imported from Keras with random asymmetric weights, its jrnn parameters are
then changed (+0.01, as after fine-tuning), saved, loaded by Keras 3 and compared with the
jrnn outputs; the HDF5 tree is compared with the one Keras itself writes for that model.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras import layers as L

import importers
from importers import export
from importers.errors import UnsupportedLayerError
from importers.model import ImportedModel
from tests.helpers import nudge, randomize_keras

T, F = 7, 3


def _float_inputs(seed=1):
    return np.random.default_rng(seed).standard_normal((2, T, F)).astype(np.float32)


def _int_inputs(seed=1):
    x = np.random.default_rng(seed).integers(1, 10, (2, T)).astype(np.int32)
    x[0, 4:] = 0  # masked tail
    return x


def _keras_save(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)


def _keras_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return keras.saving.load_model(path)


def _tree(h5: h5py.File) -> dict:
    """{path: (name attr or shape, values)} of a weights tree."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = (obj.shape, str(obj.dtype), np.asarray(obj))
        else:
            out[name] = ({k: str(v) for k, v in obj.attrs.items()}, None, None)

    h5.visititems(visit)
    return out


def _keras_tree(path) -> dict:
    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
        return _tree(f)


def _assert_same_tree(ours: dict, theirs: dict, names=True):
    assert sorted(ours) == sorted(theirs)
    for key, (a, dtype, value) in ours.items():
        b, dtype2, value2 = theirs[key]
        if value is None:
            if names:
                assert a == b, key
            else:
                assert set(a) == set(b), key
        else:
            assert (a, dtype) == (b, dtype2), key
            np.testing.assert_array_equal(value, value2, err_msg=key)


# -- models ------------------------------------------------------------------------------


def sequential_rnns():
    return keras.Sequential(
        [
            keras.Input((T, F)),
            L.LSTM(5, return_sequences=True),
            L.GRU(4, return_sequences=True),  # reset_after=True
            L.GRU(3, return_sequences=True, reset_after=False),
            L.SimpleRNN(2),
            L.Dense(2),
        ]
    )


def functional_wrappers():
    i = keras.Input((T, F), name="x")
    a = L.Bidirectional(L.LSTM(3, return_sequences=True))(i)
    b = L.TimeDistributed(L.Dense(4))(a)
    c = L.RNN([L.LSTMCell(3), L.GRUCell(2)], return_sequences=True)(b)
    d = L.RNN(L.SimpleRNNCell(2, name="my_cell"))(c)
    e = L.GRU(2)(a)
    return keras.Model(i, L.Concatenate()([d, e]))


def embedding_mask():
    return keras.Sequential(
        [
            keras.Input((T,), dtype="int32"),
            L.Embedding(10, F, mask_zero=True),
            L.LSTM(5, return_sequences=True),
            L.Bidirectional(L.GRU(3)),
            L.Dense(2),
        ]
    )


def nested_and_norm():
    inner = keras.Sequential([keras.Input((T, F)), L.LSTM(4, return_sequences=True)], name="inner")
    i = keras.Input((T, F))
    a = inner(i)
    b = L.Conv1D(3, 2, padding="same")(a)
    c = L.BatchNormalization()(b)
    d = L.LayerNormalization()(c)
    return keras.Model(i, L.GRU(2)(d))


MODELS = {
    "sequential_rnns": (sequential_rnns, _float_inputs),
    "functional_wrappers": (functional_wrappers, _float_inputs),
    "embedding_mask": (embedding_mask, _int_inputs),
    "nested_and_norm": (nested_and_norm, _float_inputs),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_export_loads_in_keras_with_tuned_weights(kind, tmp_path):
    build, inputs = MODELS[kind]
    km = build()
    randomize_keras(km)
    x = inputs()
    m = importers.load(km)
    nudge(m)
    expected = np.asarray(m(x))
    assert not np.allclose(expected, km(x).numpy(), atol=1e-4)  # the nudge changed outputs

    path = tmp_path / "tuned.keras"
    export.save_keras(m, path)
    loaded = _keras_load(path)
    np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-5, rtol=0)
    assert [w.shape for w in loaded.get_weights()] == [w.shape for w in km.get_weights()]

    # The tree is the one Keras 3 writes for that model (paths, names, shapes, values).
    again = tmp_path / "again.keras"
    _keras_save(loaded, again)
    _assert_same_tree(_keras_tree(path), _keras_tree(again))

    # jrnn reads its own file back to the same model.
    np.testing.assert_allclose(np.asarray(importers.load(path)(x)), expected, atol=0, rtol=0)

    # save_weights: a .weights.h5 that the original Keras model loads.
    weights = tmp_path / "tuned.weights.h5"
    export.save_weights(m, weights)
    km.load_weights(weights)
    np.testing.assert_allclose(km(x).numpy(), expected, atol=1e-5, rtol=0)
    reference = tmp_path / "keras.weights.h5"
    km.save_weights(reference)
    with h5py.File(weights, "r") as a, h5py.File(reference, "r") as b:
        assert dict(a.attrs) == dict(b.attrs) == {}
        _assert_same_tree(_tree(a), _tree(b))


def test_keras_file_round_trip(tmp_path):
    """.keras (written by Keras) -> jrnn -> tuned -> .keras -> Keras."""
    km = functional_wrappers()
    randomize_keras(km, seed=3)
    original = tmp_path / "original.keras"
    _keras_save(km, original)
    m = importers.load(original)
    x = _float_inputs()
    np.testing.assert_allclose(np.asarray(m(x)), km(x).numpy(), atol=1e-5, rtol=0)
    nudge(m, -0.02)
    out = tmp_path / "out.keras"
    export.save_keras(m, out)
    np.testing.assert_allclose(_keras_load(out)(x).numpy(), np.asarray(m(x)), atol=1e-5, rtol=0)
    # config.json keeps every layer config of the original (names, arguments).
    with zipfile.ZipFile(original) as a, zipfile.ZipFile(out) as b:
        ca, cb = json.loads(a.read("config.json")), json.loads(b.read("config.json"))
    assert cb["config"]["layers"] == ca["config"]["layers"]
    assert (cb["module"], cb["class_name"]) == (ca["module"], ca["class_name"])


def test_archive_members_and_metadata(tmp_path):
    km = sequential_rnns()
    km.compile(optimizer="adam", loss="mse")  # jrnn holds no Keras optimizer state
    m = importers.load(km)
    path = tmp_path / "m.keras"
    export.save_keras(m, path)
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        assert [i.filename for i in infos] == ["metadata.json", "config.json", "model.weights.h5"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        meta = json.loads(z.read("metadata.json"))
        config = json.loads(z.read("config.json"))
    assert meta["keras_version"] == export.KERAS_VERSION
    assert meta["saved_by"].startswith("jrnn ")
    assert (config["module"], config["class_name"]) == ("keras", "Sequential")
    assert config["build_config"] == {"input_shape": [None, T, F]}
    assert "compile_config" not in config
    assert _keras_load(path).count_params() == km.count_params()


# -- Keras 2 / tf_keras ---------------------------------------------------------------------


def _one(y):
    """The single output (a tf_keras Functional config lists even one output in a list)."""
    return np.asarray(y[0] if isinstance(y, list) else y)


def _tf_keras():
    import tf_keras

    return tf_keras


def test_tf_keras_models_export_to_keras3(tmp_path):
    k = _tf_keras()
    kl = k.layers
    seq = k.Sequential(
        [
            kl.Embedding(10, F, mask_zero=True, input_length=T),
            kl.GRU(4, return_sequences=True),
            kl.Bidirectional(kl.LSTM(2, return_sequences=True)),
            kl.TimeDistributed(kl.Dense(2)),
            kl.SimpleRNN(3),
        ]
    )
    i = k.Input((T, F))
    fn = k.Model(i, kl.Dense(2)(kl.LSTM(3, return_sequences=True)(i)))
    for km, x in ((seq, _int_inputs()), (fn, _float_inputs())):
        randomize_keras(km, seed=5)
        m = importers.load(km)
        assert m.keras_major == 2
        np.testing.assert_allclose(_one(m(x)), km(x).numpy(), atol=1e-5, rtol=0)
        nudge(m)
        path = tmp_path / f"{km.name}.keras"
        export.save_keras(m, path)
        loaded = _keras_load(path)
        np.testing.assert_allclose(loaded(x).numpy(), _one(m(x)), atol=1e-5, rtol=0)


def test_keras_sequential_input_takes_the_first_layers_dtype():
    """A float64 layer's model gets a float64 Input (its inputs are converted to the Input's
    dtype, as Keras converts them); a mixed policy's Input is float32."""
    import jax
    from flax import nnx

    import jrnn

    with jax.enable_x64(True):
        lstm = jrnn.LSTM(3, 2, dtype="float64", rngs=nnx.Rngs(0))
        model = importers.keras_sequential([lstm], (5, 2))
        x = np.random.default_rng(0).standard_normal((2, 5, 2))
        np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(lstm(x)))
    mixed = jrnn.GRU(3, 2, dtype="mixed_bfloat16", rngs=nnx.Rngs(0))
    config = importers.keras_sequential([mixed], (5, 2)).model_config
    assert config["config"]["layers"][0]["config"]["dtype"] == "float32"


def test_tf_keras_nested_models_masked_concatenate_and_spatial_dropout(tmp_path):
    """Keras 2 numbers a nested model's first call 1 (Keras 3: 0); Keras 3 names the
    operations of a masked Concatenate's mask `concatenate`, as the layer, while loading a
    Keras 2 style graph (the layer is written as `concatenate_merge`); Keras 3's
    SpatialDropout1D takes no `trainable` or `noise_shape`. Each file loads in a fresh
    Keras session with the model's outputs."""
    k = _tf_keras()
    kl = k.layers
    inner = k.Sequential([k.Input((T, F)), kl.LSTM(3, return_sequences=True)], name="inner")
    i = k.Input((T, F))
    nested = k.Model(i, inner(kl.SpatialDropout1D(0.2)(i)), name="nested")
    ids = k.Input((T,), dtype="int32")
    e = kl.Embedding(10, F, mask_zero=True)(ids)
    both = kl.Concatenate(name="concatenate")(  # the clashing name, whatever ran before
        [kl.LSTM(3, return_sequences=True)(e), kl.GRU(2, return_sequences=True)(e)]
    )
    masked = k.Model(ids, kl.LSTM(2)(both), name="masked")
    for km, x in ((nested, _float_inputs()), (masked, _int_inputs())):
        randomize_keras(km, seed=3)
        m = importers.load(km)
        np.testing.assert_allclose(_one(m(x)), _one(km(x).numpy()), atol=1e-5, rtol=0)
        path = tmp_path / f"{km.name}.keras"
        export.save_keras(m, path)
        keras.backend.clear_session()  # Keras' operation names start afresh, as in a new process
        np.testing.assert_allclose(_keras_load(path)(x).numpy(), _one(m(x)), atol=1e-5, rtol=0)
    names = [layer["config"]["name"] for layer in export.keras_config(m)["config"]["layers"]]
    assert "concatenate_merge" in names


def test_tf_keras_shared_nested_functional_and_timedistributed_masks(tmp_path):
    """A nested Functional keeps Keras 2's numbering in `output_layers` (Keras 3 numbers
    it from 1 there too); a TimeDistributed whose tf.keras output mask Keras 3 would not
    compute (its Embedding makes one) is refused."""
    k = _tf_keras()
    kl = k.layers
    i = k.Input((4,))
    inner = k.Model(i, kl.Dense(2)(i), name="inner")
    a, b = k.Input((4,), name="a"), k.Input((4,), name="b")
    km = k.Model([a, b], [inner(a), inner(b)])
    randomize_keras(km, seed=2)
    m = importers.load(km)
    export.save_keras(m, tmp_path / "shared.keras")
    xs = [_float_inputs()[:, 0, :2].repeat(2, 1), -_float_inputs(2)[:, 0, :2].repeat(2, 1)]
    for got, want in zip(_keras_load(tmp_path / "shared.keras")(xs), m(xs), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)
    ids = k.Input((3, 4), dtype="int32")
    words = kl.TimeDistributed(kl.Embedding(20, 4, mask_zero=True))(ids)
    tagged = k.Model(ids, kl.LSTM(2)(kl.TimeDistributed(kl.LSTM(3))(words)))
    with pytest.raises(UnsupportedLayerError, match="takes the output mask of its Embedding"):
        export.save_keras(importers.load(tagged), tmp_path / "tagged.keras")


@pytest.mark.parametrize("return_sequences", [False, True])
def test_keras2_bidirectional_of_a_go_backwards_layer_writes_its_twin(tmp_path, return_sequences):
    """Keras 2 builds the backward twin of a go_backwards=True layer with go_backwards=False;
    Keras 3 would build it with True and refuse the pair, so the twin is written out."""
    k = _tf_keras()
    km = k.Sequential(
        [
            k.Input((T, F)),
            k.layers.Bidirectional(
                k.layers.LSTM(3, go_backwards=True, return_sequences=return_sequences),
                merge_mode="sum",
            ),
        ]
    )
    randomize_keras(km, seed=2)
    m = importers.load(km)
    path = tmp_path / "bi.keras"
    export.save_keras(m, path)
    bi = export.keras_config(m)["config"]["layers"][1]["config"]
    assert bi["backward_layer"]["config"]["go_backwards"] is False
    x = _float_inputs()
    np.testing.assert_allclose(_keras_load(path)(x).numpy(), km(x).numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["plain", "bidirectional"])
def test_keras2_initial_state_inputs_are_written_as_keras3_call_arguments(tmp_path, bidirectional):
    """Keras 2 records ``rnn(x, initial_state=[h, c])`` as a node with inputs ``[x, h, c]``;
    Keras 3 reads that as a call on a list, so it is written as ``x`` plus
    ``initial_state``. With a mask on ``x`` it is refused: Keras 3 would run it unmasked."""
    k = _tf_keras()
    x_in, ctx = k.Input((T, F)), k.Input((2,))
    states = [k.layers.Dense(3, activation="tanh")(ctx), k.layers.Dense(3)(ctx)]
    second = k.layers.LSTM(3, return_sequences=True)
    if bidirectional:
        second, states = k.layers.Bidirectional(second), states * 2
    km = k.Model([x_in, ctx], k.layers.GRU(2)(second(x_in, initial_state=states)))
    randomize_keras(km, seed=4)
    m = importers.load(km)
    export.save_keras(m, tmp_path / "state.keras")
    xs = [_float_inputs(), np.random.default_rng(1).standard_normal((2, 2)).astype("f4")]
    got = _keras_load(tmp_path / "state.keras")(xs).numpy()
    np.testing.assert_allclose(got, km(xs).numpy(), atol=1e-5, rtol=0)
    ids = k.Input((None,), dtype="int32")
    seq, h = k.layers.SimpleRNN(2, return_sequences=True, return_state=True)(
        k.layers.Embedding(10, 3, mask_zero=True)(ids)
    )
    masked = importers.load(
        k.Model(ids, k.layers.SimpleRNN(2, name="second")(seq, initial_state=[h]))
    )
    with pytest.raises(UnsupportedLayerError, match=r"'second'.*a Keras mask reaches this call"):
        export.save_keras(masked, tmp_path / "masked.keras")


def test_keras2_gru_without_reset_after_is_written_out():
    """Keras <= 2.2 configs omit reset_after (Keras 2's default was False, Keras 3's True)
    and the InputLayer (the first layer holds batch_input_shape)."""
    k = _tf_keras()
    km = k.Sequential([k.Input((T, F)), k.layers.GRU(3, reset_after=False)])
    randomize_keras(km)
    config = {"class_name": "Sequential", "config": km.get_config()}
    old_input = config["config"]["layers"].pop(0)
    gru_config = config["config"]["layers"][0]["config"]
    del gru_config["reset_after"]
    gru_config["batch_input_shape"] = old_input["config"]["batch_input_shape"]
    weights = {layer.name: layer.get_weights() for layer in km.layers}
    m = ImportedModel(config, lambda n: weights[n], {}, 2)
    inp, gru = export.keras_config(m)["config"]["layers"]
    assert inp["class_name"] == "InputLayer"
    assert inp["config"]["batch_shape"] == [None, T, F]
    assert gru["config"]["reset_after"] is False
    assert not {"time_major", "batch_input_shape"} & set(gru["config"])
    x = _float_inputs()
    rebuilt = keras.Sequential.from_config(export.keras_config(m)["config"])
    rebuilt.set_weights(km.get_weights())
    np.testing.assert_allclose(rebuilt(x).numpy(), np.asarray(m(x)), atol=1e-5, rtol=0)


def test_keras2_hard_sigmoid_is_refused_naming_the_layer(tmp_path):
    k = _tf_keras()
    km = k.Sequential([k.Input((T, F)), k.layers.LSTM(3, recurrent_activation="hard_sigmoid")])
    m = importers.load(km)
    with pytest.raises(UnsupportedLayerError, match=r"'lstm.*hard_sigmoid.*0\.2x") as err:
        export.save_keras(m, tmp_path / "m.keras")
    assert err.value.layer_name == km.layers[0].name
    assert not (tmp_path / "m.keras").exists()


def test_keras3_hard_sigmoid_is_kept(tmp_path):
    km = keras.Sequential([keras.Input((T, F)), L.GRU(3, recurrent_activation="hard_sigmoid")])
    randomize_keras(km)
    m = importers.load(km)
    path = tmp_path / "m.keras"
    export.save_keras(m, path)
    x = _float_inputs()
    np.testing.assert_allclose(_keras_load(path)(x).numpy(), np.asarray(m(x)), atol=1e-5)


# -- refusals ----------------------------------------------------------------------------------


def test_custom_layers_are_refused(tmp_path):
    km = keras.Sequential([keras.Input((T, F)), L.LSTM(3), L.Lambda(lambda t: t * 2.0)])
    m = importers.load(km, custom_layers={"Lambda": lambda config, arrays: lambda x: 2.0 * x})
    with pytest.raises(UnsupportedLayerError, match=r"Lambda.*built-in"):
        export.save_keras(m, tmp_path / "m.keras")


def test_bad_arguments(tmp_path):
    m = importers.load(sequential_rnns())
    with pytest.raises(ValueError, match=r"must end in '\.keras'"):
        export.save_keras(m, tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"must end in '\.weights\.h5'"):
        export.save_weights(m, tmp_path / "m.h5")
    with pytest.raises(TypeError, match="ImportedModel"):
        export.save_keras(next(iter(m.layers.values())), tmp_path / "m.keras")


def test_cudnn_layers_export_as_keras3_lstm_gru(tmp_path):
    """A Keras 2 CuDNNLSTM/CuDNNGRU file goes back to Keras 3 as the LSTM /
    GRU(reset_after=True) it equals, with Keras 2's weight conversion; tuned values kept."""
    tfk = _tf_keras()
    from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM

    km = tfk.Sequential(
        [
            tfk.Input((T, F)),
            CuDNNLSTM(4, return_sequences=True, name="cl"),
            tfk.layers.Bidirectional(CuDNNGRU(3, return_sequences=True), name="bi"),
            CuDNNGRU(2, go_backwards=True, name="cg"),
        ]
    )
    randomize_keras(km, seed=9)
    _keras_save(km, tmp_path / "cudnn.h5")
    m = importers.load(tmp_path / "cudnn.h5")
    nudge(m)
    x = _float_inputs()
    export.save_keras(m, tmp_path / "back.keras")
    loaded = _keras_load(tmp_path / "back.keras")
    assert [type(layer).__name__ for layer in loaded.layers] == ["LSTM", "Bidirectional", "GRU"]
    np.testing.assert_allclose(loaded(x).numpy(), _one(m(x)), atol=1e-5, rtol=0)


def test_bfloat16_params_round_trip(tmp_path):
    """A mixed_bfloat16 Keras 3 model: variables stay float32, compute in bfloat16; the
    exported file reloads in Keras with the same outputs (bfloat16 tolerance)."""
    km = keras.Sequential(
        [
            keras.Input((T, F)),
            L.LSTM(4, return_sequences=True, dtype="mixed_bfloat16"),
            L.Dense(2, dtype="bfloat16"),
        ]
    )
    randomize_keras(km, seed=3)
    m = importers.load(km)
    x = _float_inputs()
    ours = np.asarray(_one(m(x)), np.float32)
    np.testing.assert_allclose(ours, np.asarray(km(x), np.float32), atol=3e-2, rtol=0)
    export.save_keras(m, tmp_path / "bf16.keras")
    loaded = _keras_load(tmp_path / "bf16.keras")
    assert loaded.layers[1].weights[0].dtype == "bfloat16"
    np.testing.assert_allclose(
        np.asarray(loaded(x), np.float32), np.asarray(km(x), np.float32), atol=1e-6, rtol=0
    )


# -- models assembled from jrnn layers by hand ----------------------------------------------


def _hand_built_cases():
    from flax import nnx

    import jrnn

    r = nnx.Rngs(0)
    tagger = [
        jrnn.Embedding(20, 6, mask_zero=True, rngs=r),
        jrnn.Bidirectional(jrnn.LSTM(5, 6, return_sequences=True, rngs=r), rngs=r),
        jrnn.LayerNormalization((10,)),
        jrnn.Dropout(0.3, seed=5),
        jrnn.Bidirectional(
            jrnn.GRU(4, 10, return_sequences=True, reset_after=False, rngs=r),
            backward_layer=jrnn.SimpleRNN(4, 10, return_sequences=True, go_backwards=True, rngs=r),
            merge_mode="concat",
        ),
        jrnn.TimeDistributed(jrnn.Dense(3, 8, activation="softmax", rngs=r)),
    ]
    ids = np.array([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]], np.int32)
    conv = [
        jrnn.Masking(0.0),
        jrnn.Conv1D(6, 3, 3, padding="causal", activation="relu", rngs=r),
        jrnn.MaxPooling1D(2, None, "same"),
        jrnn.GaussianNoise(0.1, seed=2),
        jrnn.SimpleRNN(4, 6, return_sequences=True, activation="relu", rngs=r),
        jrnn.GlobalAveragePooling1D(),
        jrnn.Dense(2, 4, use_bias=False, rngs=r),
    ]
    video = [
        jrnn.ConvLSTM2D(
            3, 3, in_channels=1, spatial_shape=(6, 6), padding="same", return_sequences=True, rngs=r
        ),
        jrnn.BatchNormalization(3),
        jrnn.ConvLSTM2D(2, 3, in_channels=3, spatial_shape=(6, 6), rngs=r),
        jrnn.Flatten(),
        jrnn.Dense(4, 32, activation="tanh", rngs=r),
    ]
    rng = np.random.default_rng(0)
    return [
        (tagger, (None,), "int32", ids),
        (conv, (None, 3), "float32", rng.standard_normal((2, 8, 3)).astype(np.float32)),
        (video, (4, 6, 6, 1), "float32", rng.standard_normal((2, 4, 6, 6, 1)).astype(np.float32)),
    ]


@pytest.mark.parametrize("case", [0, 1, 2], ids=["tagger", "conv_rnn", "video"])
def test_hand_built_jrnn_models_export(case, tmp_path):
    """jrnn layers assembled by hand (weights nudged as training would) -> keras_sequential
    -> save_keras: Keras 3 loads the file and gives the same outputs."""
    layers, shape, dtype, x = _hand_built_cases()[case]
    model = importers.keras_sequential(layers, shape, input_dtype=dtype)
    nudge(model)
    export.save_keras(model, tmp_path / "hand.keras")
    loaded = _keras_load(tmp_path / "hand.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-5, rtol=0)


def test_hand_built_export_refusals():
    from flax import nnx

    import jrnn

    r = nnx.Rngs(0)
    with pytest.raises(UnsupportedLayerError, match=r"IndRNN.*no built-in layer"):
        importers.keras_sequential([jrnn.IndRNN(4, 3, rngs=r)], (5, 3))
    with pytest.raises(ValueError, match="Cannot serialize activation"):
        importers.keras_sequential([jrnn.Dense(2, 3, activation=lambda v: v * 2, rngs=r)], (3,))
    with pytest.raises(UnsupportedLayerError, match="different units"):
        importers.keras_sequential(
            [
                jrnn.Bidirectional(
                    jrnn.GRU(4, 3, rngs=r),
                    backward_layer=jrnn.SimpleRNN(2, 3, go_backwards=True, rngs=r),
                )
            ],
            (5, 3),
        )
    with pytest.raises(ValueError, match="two layers are named 'd'"):
        importers.keras_sequential(
            [jrnn.Dense(3, 3, name="d", rngs=r), jrnn.Dense(2, 3, name="d", rngs=r)], (3,)
        )
    with pytest.raises(UnsupportedLayerError, match="keras2_hard_sigmoid"):
        importers.keras_sequential(
            [jrnn.GRU(2, 3, recurrent_activation="keras2_hard_sigmoid", rngs=r)], (5, 3)
        )
    with pytest.raises(UnsupportedLayerError, match="contain '/'"):
        importers.keras_sequential([jrnn.LSTM(2, 3, name="enc/lstm", rngs=r)], (5, 3))
    with pytest.raises(ValueError, match="stateful layers need the model's batch size"):
        importers.keras_sequential([jrnn.LSTM(2, 3, stateful=True, rngs=r)], (5, 3))
    with pytest.raises(ValueError, match="batch_size=3 differs"):
        importers.keras_sequential(
            [jrnn.LSTM(2, 3, stateful=True, batch_size=2, rngs=r)], (5, 3), batch_size=3
        )


def test_hand_built_export_of_twins_states_and_names(tmp_path):
    """A Bidirectional over a go_backwards=True layer writes its twin (Keras 3 would build
    it with go_backwards=True too and refuse the pair); a stateful layer's batch size
    becomes the model's; a layer may be named as keras_sequential's Input would be;
    jrnn.RNN over cells is Keras' RNN over the same cells; CuDNN layers the LSTM and GRU
    they equal."""
    from flax import nnx

    import jrnn

    r = nnx.Rngs(0)
    x = _float_inputs()
    cases = [
        [jrnn.Bidirectional(jrnn.LSTM(3, F, go_backwards=True, rngs=r), rngs=r)],
        [jrnn.LSTM(3, F, stateful=True, batch_size=2, name="input_layer", rngs=r)],
        [jrnn.RNN(jrnn.LSTMCell(4, F, rngs=r), return_sequences=True, go_backwards=True)],
        [jrnn.CuDNNLSTM(4, F, return_sequences=True, rngs=r), jrnn.CuDNNGRU(3, 4, rngs=r)],
        [  # Keras' RNN over a stack: (y, GRU's h, SimpleRNN's h)
            jrnn.RNN(
                [
                    jrnn.GRUCell(4, F, reset_after=False, rngs=r),
                    jrnn.SimpleRNNCell(2, 4, activation="relu", rngs=r),
                ],
                return_state=True,
            )
        ],
    ]
    for layers in cases:
        model = importers.keras_sequential(layers, (T, F))
        nudge(model)
        export.save_keras(model, tmp_path / "m.keras")
        loaded = _keras_load(tmp_path / "m.keras")
        for a, b in zip(_flat(loaded(x)), _flat(model(x)), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0)


def _flat(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def test_saved_files_take_the_umask_keep_modes_and_follow_links(tmp_path):
    """Written through a renamed temporary file, yet as `open(path, "w")` would: a new file
    gets the umask's mode, a replaced one keeps its mode, a link's target is replaced."""
    import os

    from flax import nnx

    import jrnn

    model = importers.keras_sequential([jrnn.Dense(2, 3, rngs=nnx.Rngs(0))], (3,))
    umask = os.umask(0o022)
    try:
        export.save_keras(model, tmp_path / "new.keras")
        assert (tmp_path / "new.keras").stat().st_mode & 0o777 == 0o644
        (tmp_path / "kept.keras").write_bytes(b"")
        (tmp_path / "kept.keras").chmod(0o640)
        export.save_keras(model, tmp_path / "kept.keras")
        assert (tmp_path / "kept.keras").stat().st_mode & 0o777 == 0o640
        (tmp_path / "target.keras").write_bytes(b"")
        (tmp_path / "link.keras").symlink_to(tmp_path / "target.keras")
        export.save_keras(model, tmp_path / "link.keras")
        assert (tmp_path / "link.keras").is_symlink()
        assert zipfile.is_zipfile(tmp_path / "target.keras")
        # checkpoints too (both files were 0600 whatever the umask)
        importers.checkpoint.save_checkpoint(importers.load(tmp_path / "new.keras"), tmp_path / "c")
        for file in (tmp_path / "c").iterdir():
            assert file.stat().st_mode & 0o777 == 0o644, file
    finally:
        os.umask(umask)


def _frozen_model():
    """A Keras model with a frozen LSTM and a frozen BatchNormalization (random weights,
    positive moving variances)."""
    i = keras.Input((T, F), name="x")
    a = L.LSTM(5, return_sequences=True, name="frozen_lstm")(i)
    b = L.BatchNormalization(name="frozen_bn")(a)
    c = L.Bidirectional(L.GRU(3, return_sequences=True, name="gru"), name="bi")(b)
    model = keras.Model(i, L.Dense(2, name="head")(c), name="frozen")
    randomize_keras(model)
    bn = model.get_layer("frozen_bn")
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma, beta, mean, np.abs(var) + 0.5])
    model.get_layer("frozen_lstm").trainable = False
    bn.trainable = False
    return model


def _trainable_flags(model) -> dict:
    flags = {layer.name: layer.trainable for layer in model.layers}
    bi = model.get_layer("bi")
    flags["bi.forward"], flags["bi.backward"] = (
        bi.forward_layer.trainable,
        bi.backward_layer.trainable,
    )
    return flags


def test_frozen_layers_round_trip_keras_jrnn_keras(tmp_path):
    # Keras -> jrnn -> Keras with a frozen LSTM and a frozen BatchNormalization: the layers
    # come back frozen, weights (in Keras' file order) and outputs equal, in training mode
    # too (a frozen BatchNormalization normalizes with its moving statistics).
    kmodel = _frozen_model()
    x = _float_inputs()
    model = importers.load(kmodel)
    _keras_save(kmodel, tmp_path / "keras.keras")
    importers.save_keras(model, tmp_path / "jrnn.keras")
    _assert_same_tree(_keras_tree(tmp_path / "jrnn.keras"), _keras_tree(tmp_path / "keras.keras"))
    back = _keras_load(tmp_path / "jrnn.keras")
    assert _trainable_flags(back) == _trainable_flags(kmodel)
    assert len(back.trainable_weights) == len(kmodel.trainable_weights) == 2 * 3 + 2
    for w, w2 in zip(back.get_weights(), kmodel.get_weights(), strict=True):
        np.testing.assert_array_equal(w, w2)
    for training in (False, True):
        np.testing.assert_allclose(
            back(x, training=training), kmodel(x, training=training), rtol=0, atol=1e-6
        )
    importers.save_weights(model, tmp_path / "jrnn.weights.h5")
    fresh = _frozen_model()
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    fresh.load_weights(tmp_path / "jrnn.weights.h5")
    for w, w2 in zip(fresh.get_weights(), kmodel.get_weights(), strict=True):
        np.testing.assert_array_equal(w, w2)


def test_trainable_changed_after_import_is_written(tmp_path):
    # The writers wrote the imported config's `trainable`: an LSTM unfrozen in jrnn came
    # back frozen, a Dense and a Bidirectional frozen in jrnn came back trainable.
    model = importers.load(_frozen_model())
    model.get_layer("frozen_lstm").trainable = True
    model.get_layer("head").trainable = False
    model.get_layer("bi").trainable = False
    importers.save_keras(model, tmp_path / "changed.keras")
    back = _keras_load(tmp_path / "changed.keras")
    assert _trainable_flags(back) == {
        "x": True,
        "frozen_lstm": True,
        "frozen_bn": False,
        "bi": False,
        "bi.forward": False,
        "bi.backward": False,
        "head": False,
    }
    assert len(back.trainable_weights) == 3  # the LSTM's kernel, recurrent kernel and bias
    # One direction frozen: Keras 3 writes both directions' configs (`backward_layer`).
    model.get_layer("bi").trainable = True
    model.get_layer("bi").forward_layer.trainable = False
    importers.save_keras(model, tmp_path / "one_direction.keras")
    flags = _trainable_flags(_keras_load(tmp_path / "one_direction.keras"))
    assert (flags["bi"], flags["bi.forward"], flags["bi.backward"]) == (True, False, True)


def test_keras_sequential_writes_frozen_jrnn_layers(tmp_path):
    from flax import nnx

    import jrnn

    rngs = nnx.Rngs(0)
    lstm = jrnn.LSTM(4, F, return_sequences=True, name="frozen_lstm", rngs=rngs)
    bn = jrnn.BatchNormalization(4, name="frozen_bn")
    bi = jrnn.Bidirectional(jrnn.GRU(3, 4, name="gru", rngs=rngs), name="bi", rngs=rngs)
    head = jrnn.Dense(2, 6, name="head", rngs=rngs)
    lstm.trainable = bn.trainable = bi.trainable = False
    model = importers.keras_sequential([lstm, bn, bi, head], (T, F))
    importers.save_keras(model, tmp_path / "seq.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "seq.keras").read("config.json"))
    written = {
        e["config"]["name"]: e["config"].get("trainable", True) for e in config["config"]["layers"]
    }
    assert written == {
        "input_layer": True,
        "frozen_lstm": False,
        "frozen_bn": False,
        "bi": False,
        "head": True,
    }
    back = _keras_load(tmp_path / "seq.keras")
    assert {layer.name: layer.trainable for layer in back.layers} == {
        "frozen_lstm": False,
        "frozen_bn": False,
        "bi": False,
        "head": True,
    }
    assert not back.get_layer("bi").forward_layer.trainable
    assert len(back.trainable_weights) == 2
    x = _float_inputs()
    for training in (False, True):
        np.testing.assert_allclose(
            back(x, training=training),
            model(x, training=training),
            rtol=0,
            atol=1e-5,
        )
