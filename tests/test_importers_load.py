"""importers.load rebuilds live Keras 3 models in jrnn with equal outputs."""

from __future__ import annotations

import pathlib
import warnings

import h5py
import jax
import keras
import numpy as np
import pytest

import importers
from importers.model import load
from importers.weights import keras_params
from tests.helpers import randomize_keras


def _rand_weights(model, seed=0):
    randomize_keras(model, seed, scale=0.3)


def _save(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    return path


def _check(
    model, inputs, tmp_path=None, files=(".keras",), atol=1e-5, randomize=True, reference=None
):
    """The live model and each saved file give Keras' outputs (files read without Keras).

    ``reference``: another Keras model (same weights) whose outputs are the expected ones.
    """
    if randomize:
        _rand_weights(model)
    if reference is not None:
        reference.set_weights(model.get_weights())
    expected = (reference or model).predict(inputs, verbose=0)
    exp = list(expected) if isinstance(expected, (list, tuple)) else [expected]
    sources = [model] + [_save(model, tmp_path / f"m{ext}") for ext in (files if tmp_path else ())]
    for source in sources:
        got = load(source)(inputs)
        got = got if isinstance(got, list) else [got]
        assert len(exp) == len(got), source
        for e, g in zip(exp, got, strict=True):
            np.testing.assert_allclose(np.asarray(g, np.float32), e, atol=atol, err_msg=str(source))


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
    # A module whose call names no `training` (a raw TypeError at the first call before):
    # Keras passes `training` and `mask` only to calls that name them.
    got = load(m, custom_layers={"Lambda": lambda cfg, w: lambda t: t * 2})
    np.testing.assert_allclose(np.asarray(got(np.ones((1, 3), np.float32), training=True)), 2.0)


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
@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_files_load_with_keras_blocked(tmp_path, flavour, ext):
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
    path = tmp_path / f"m{ext}"
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


# -- files, nested models, the whole recurrent family ------------------------------------


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_keras_file_and_h5_of_a_tagger(tmp_path):
    m = keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(12, 5, mask_zero=True),
            keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True)),
            keras.layers.GRU(3, return_sequences=True),
            keras.layers.TimeDistributed(keras.layers.Dense(3)),
        ]
    )
    ids = np.array([[3, 4, 5, 0, 0, 0], [1, 2, 0, 7, 8, 11]], np.int32)
    _check(m, ids, tmp_path, files=(".keras", ".h5"))


@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_nested_sequential_in_functional(tmp_path, lib_name):
    lib = keras if lib_name == "keras" else pytest.importorskip("tf_keras")
    inner = lib.Sequential(
        [lib.Input((5, 3)), lib.layers.LSTM(4, return_sequences=True), lib.layers.Dense(2)],
        name="encoder",
    )
    x = lib.Input((5, 3))
    y = lib.layers.GRU(3)(inner(x))
    m = lib.Model(x, y)
    _rand_weights(inner, seed=7)
    _check(m, _x(2, 5, 3), tmp_path, files=(".keras", ".h5"))
    assert set(load(m).get_layer("encoder").layers.keys()) == {layer.name for layer in inner.layers}


@pytest.mark.parametrize("shape", ["two_levels", "named_like_its_layer"])
def test_tf_keras_h5_models_nested_twice_or_named_like_a_layer(tmp_path, shape):
    """A tf.keras .h5 keeps a nested model's weights in one group under the names of the
    scopes they were made in: the innermost layer's (``il/lstm_cell/kernel:0``) however deep
    the nesting. jrnn read the first name component below the group as the layer: a model
    nested twice lost its inner LSTM's arrays, and a nested model "enc" holding an LSTM
    "enc" took the LSTM's weights for a layer "lstm_cell"; both raised WeightShapeError."""
    tfk = pytest.importorskip("tf_keras")
    L = tfk.layers
    a = tfk.Input((None, 4), name="a_in")
    name = "enc" if shape == "named_like_its_layer" else "il"
    inner = tfk.Model(a, L.LSTM(5, return_sequences=True, name=name)(a), name="enc")
    if shape == "two_levels":
        b = tfk.Input((None, 4), name="b_in")
        inner = tfk.Model(b, L.Dense(3, name="md")(inner(b)), name="mid")
    x = tfk.Input((None, 4), name="x")
    model = tfk.Model(x, L.GRU(2, name="og")(inner(x)), name="outer")
    _check(model, _x(2, 5, 4), tmp_path, files=(".h5",))
    _rand_weights(model, seed=3)
    weights = tmp_path / "w.h5"
    model.save_weights(weights)
    twin = load(tmp_path / "m.h5")
    importers.load_weights(twin, weights)
    np.testing.assert_allclose(twin(_x(2, 5, 4)), model(_x(2, 5, 4)), atol=1e-5)
    with h5py.File(tmp_path / "m.h5", "a") as f:  # a weight no layer of the group owns
        group = f["model_weights"][inner.name]
        group.create_dataset("zz/kernel:0", data=np.ones((2, 2), np.float32))
        names = [n if isinstance(n, bytes) else n.encode() for n in group.attrs["weight_names"]]
        group.attrs["weight_names"] = np.array([*names, b"zz/kernel:0"])
    with pytest.raises(importers.errors.ExtraWeightsError, match=r"zz/kernel:0"):
        load(tmp_path / "m.h5")  # was dropped without a word


def test_conversion_errors_name_the_file_the_weight_and_the_counts(tmp_path):
    """They read "None: layer 'g', weight '2': expected shape (2, 9)" and, for a missing
    array, "weight '<count>': expected shape (3,), received (0,)"."""
    x = keras.Input((None, 4), name="x")
    model = keras.Model(x, keras.layers.GRU(3, name="g")(x))
    path = _save(model, tmp_path / "m.h5")
    with h5py.File(path, "a") as f:
        group = f["model_weights"]["g"]
        names = [n if isinstance(n, str) else n.decode() for n in group.attrs["weight_names"]]
        bias = names[2]
        del group[bias]
        group.create_dataset(bias, data=np.zeros((7,), np.float32))
    with pytest.raises(importers.errors.WeightShapeError) as err:
        load(path)
    assert str(err.value).startswith(f"{path}: layer 'g', weight '{bias} (weight 2)': expected")
    with h5py.File(path, "a") as f:
        group = f["model_weights"]["g"]
        del group[bias]
        group.attrs["weight_names"] = np.array([n.encode() for n in names[:2]])
    with pytest.raises(
        importers.errors.MissingWeightsError,
        match=r"m.h5: layer 'g' holds 2 weight arrays.*needs 3",
    ):
        load(path)


@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_inputs_by_name_and_fixed_sizes_as_keras(lib_name):
    """tf.keras takes a dict of inputs keyed by the Input layers' names (jrnn: "expected 2
    input(s); received 1"); an Input's fixed time length is enforced (jrnn ran a (2, 5, 3)
    array through an `Input((7, 3))` without a word, where Keras refuses it)."""
    lib = keras if lib_name == "keras" else pytest.importorskip("tf_keras")
    a, b = lib.Input((None, 3), name="a"), lib.Input((7, 3), name="b")
    summed = lib.layers.Add(name="add")(
        [lib.layers.LSTM(4, name="la")(a), lib.layers.GRU(4, name="gb")(b)]
    )
    model = lib.Model([a, b], summed, name="m")
    _rand_weights(model)
    twin = load(model)
    xa, xb = _x(2, 5, 3), _x(2, 7, 3, seed=1)
    want = model.predict([xa, xb], verbose=0)
    np.testing.assert_allclose(twin({"b": xb, "a": xa}), want, atol=1e-5)
    np.testing.assert_allclose(twin([xa, xb]), want, atol=1e-5)
    with pytest.raises(
        ValueError, match=r"m: input 1 \('b'\) must have shape \(None, 7, 3\).*\(2, 5, 3\)"
    ):
        twin([xa, xa])
    with pytest.raises(ValueError):  # Keras refuses it too
        model([xa, xa])
    # Keras 3's Sequential checks no input shape: one built by its first call records that
    # call's (2, 5, 3) and runs any other (the check above refused (4, 7, 3) at first).
    if lib_name == "keras":
        seq = keras.Sequential([keras.layers.LSTM(4, name="l"), keras.layers.Dense(1, name="d")])
        seq(_x(2, 5, 3))
        x = _x(4, 7, 3)
        np.testing.assert_allclose(load(seq)(x), seq(x), atol=1e-5)
        from jrnn.cli._common import input_specs

        assert input_specs(load(seq))[0].batch is None  # `jrnn check --batch 4` refused it


def test_positional_call_arguments_are_the_call_parameters(tmp_path):
    """Keras 3 records `layer(x, a, b)` with every argument; jrnn read the first only, so
    `lstm(x, [h, c])`, `lstm(x, None, mask)` and `attention([q, v], [q_mask, v_mask])` ran
    from zero states / unmasked without a word (0.5-3.1 off)."""
    L = keras.layers
    x, h, c = keras.Input((5, 4), name="x"), keras.Input((3,), name="h"), keras.Input((3,))
    m = keras.Input((5,), dtype="bool", name="m")
    y = L.LSTM(3, return_sequences=True, name="l1")(x, [h, c])
    y = L.GRU(3, return_sequences=True, name="g")(y, h)
    y = L.LSTM(3, return_sequences=True, name="l2")(y, None, m)
    states = [keras.Input((3,)) for _ in range(4)]
    y = L.Bidirectional(L.LSTM(3, return_sequences=True), name="bi")(y, states)
    v, vm = keras.Input((6, 6), name="v"), keras.Input((6,), dtype="bool", name="vm")
    y = L.Attention(name="att")([y, v], [m, vm])
    model = keras.Model([x, h, c, m, *states, v, vm], y)
    rng = np.random.default_rng(3)
    inputs = [_x(2, 5, 4), _x(2, 3, seed=1), _x(2, 3, seed=2), rng.random((2, 5)) > 0.3]
    inputs += [_x(2, 3, seed=k) for k in range(4, 8)] + [_x(2, 6, 6), rng.random((2, 6)) > 0.3]
    _check(model, inputs, tmp_path)
    s, sm = keras.Input((4, 6), name="s"), keras.Input((4, 6), dtype="bool", name="sm")
    _check(keras.Model([s, sm], L.Softmax(name="soft")(s, sm)), [_x(2, 4, 6), rng.random(
        (2, 4, 6)) > 0.4], tmp_path)  # fmt: skip
    from flax import nnx

    import jrnn
    from importers.model import _check_call_kwargs, _refs

    entry = {"class_name": "Dense", "config": {"name": "d"}}
    ref = {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}
    _, _, kwargs = _refs({"args": [ref, None, 1]}, entry=entry)
    with pytest.raises(importers.errors.UnsupportedLayerError, match="2 positional argument"):
        _check_call_kwargs(jrnn.Dense(2, 3, rngs=nnx.Rngs(0)), entry, kwargs)


@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_input_rank_adjusted_as_keras(lib_name):
    """Keras squeezes a last axis of size 1 or adds the one the Input ends in: a univariate
    series given as (batch, time) to an `Input((time, 1))` LSTM, which jrnn refused (the
    LSTM's "must be 3-D"); any other rank is refused at the model, naming the Input."""
    lib = keras if lib_name == "keras" else pytest.importorskip("tf_keras")
    x = lib.Input((6, 1), name="x")
    series = lib.Model(x, lib.layers.LSTM(3, name="l")(x), name="series")
    sequential = lib.Sequential([lib.Input((6, 1)), lib.layers.GRU(2, name="g")])
    f = lib.Input((6,), name="f")
    flat = lib.Model(f, lib.layers.Dense(2, name="d")(f), name="flat")
    for model, shape in [(series, (2, 6)), (sequential, (2, 6)), (flat, (2, 6, 1))]:
        _rand_weights(model)
        np.testing.assert_allclose(load(model)(_x(*shape)), model(_x(*shape)), atol=1e-5)
    if lib_name == "keras":
        with pytest.raises(ValueError, match=r"series: `inputs` must have rank 3.*\(None, 6, 1\)"):
            load(series)(_x(2, 6, 1, 2))
    else:  # tf.keras leaves other ranks to the layers: a Dense model takes (batch, 8)
        i = lib.Input((None, 8))
        dense = lib.Model(i, lib.layers.Dense(3, name="d3")(i))
        np.testing.assert_allclose(load(dense)(_x(4, 8)), dense(_x(4, 8)), atol=1e-5)


@pytest.mark.parametrize("rank", [1, 2])
def test_conv_lstm_in_a_model(tmp_path, rank):
    spatial = (6,) if rank == 1 else (5, 4)
    cls = keras.layers.ConvLSTM1D if rank == 1 else keras.layers.ConvLSTM2D
    m = keras.Sequential(
        [
            keras.Input((3, *spatial, 2)),
            cls(3, 3, padding="same", return_sequences=True),
            cls(2, 2, strides=1),
        ]
    )
    _check(m, _x(2, 3, *spatial, 2), tmp_path)


@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_conv_lstm2d_video_model_with_batch_norm(tmp_path, lib_name):
    """Keras' next-frame video model: ConvLSTM2D + BatchNormalization stacks, Conv3D head;
    and a clip classifier (ConvLSTM2D -> BatchNormalization -> Flatten -> Dense)."""
    lib = keras if lib_name == "keras" else pytest.importorskip("tf_keras")
    L = lib.layers
    frames = lib.Input((4, 8, 8, 1))
    h = L.ConvLSTM2D(4, (5, 5), padding="same", return_sequences=True, activation="relu")(frames)
    h = L.BatchNormalization()(h)
    h = L.ConvLSTM2D(3, (3, 3), padding="same", return_sequences=True)(h)
    h = L.BatchNormalization()(h)
    next_frames = L.Conv3D(1, (3, 3, 3), activation="sigmoid", padding="same")(h)
    clip = L.ConvLSTM2D(2, (3, 3), strides=2)(h)
    label = L.Dense(5, activation="softmax")(L.Flatten()(L.BatchNormalization()(clip)))
    m = lib.Model(frames, [next_frames, label])
    _rand_weights(m, seed=11)
    for layer in m.layers:  # moving variances must stay positive
        if "batch_normalization" in layer.name:
            ws = layer.get_weights()
            layer.set_weights([*ws[:-1], np.abs(ws[-1]) + 0.5])
    _check(m, _x(2, 4, 8, 8, 1), tmp_path, files=(".keras", ".h5"), randomize=False)


def test_rnn_with_stacked_cells_and_single_cell(tmp_path):
    x = keras.Input((5, 3))
    y = keras.layers.RNN(
        [keras.layers.LSTMCell(4), keras.layers.GRUCell(3), keras.layers.SimpleRNNCell(2)],
        return_sequences=True,
    )(x)
    y = keras.layers.RNN(keras.layers.GRUCell(2, reset_after=False))(y)
    _check(keras.Model(x, y), _x(2, 5, 3), tmp_path, files=(".keras", ".h5"))


@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_initial_state_from_other_layers(tmp_path, lib_name):
    lib = keras if lib_name == "keras" else pytest.importorskip("tf_keras")
    x, ctx = lib.Input((5, 3)), lib.Input((2,))
    h = lib.layers.Dense(4, activation="tanh")(ctx)
    c = lib.layers.Dense(4)(ctx)
    y = lib.layers.LSTM(4, return_sequences=True)(x, initial_state=[h, c])
    m = lib.Model([x, ctx], y)
    _check(m, [_x(2, 5, 3), _x(2, 2, seed=1)], tmp_path, files=(".keras", ".h5"))


@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_stacked_cells_states_are_numbered_flat(tmp_path, lib_name):
    """Keras numbers the outputs of RNN([cells], return_state=True) flat: y, then each
    cell's states in turn (jrnn's stack returns them nested per cell)."""
    lib = keras if lib_name == "keras" else pytest.importorskip("tf_keras")
    x = lib.Input((5, 3))
    out, (h1, c1), h2 = lib.layers.RNN(
        [lib.layers.LSTMCell(2), lib.layers.GRUCell(3)], return_state=True
    )(x)
    head = lib.layers.Dense(2)(lib.layers.Concatenate()([c1, h2]))
    _check(lib.Model(x, [out, h1, c1, h2, head]), _x(2, 5, 3), tmp_path, files=(".keras", ".h5"))


def test_nested_and_dict_outputs_keep_their_structure(tmp_path):
    x = keras.Input((5, 3))
    seq, h, c = keras.layers.LSTM(4, return_sequences=True, return_state=True)(x)
    xs = _x(2, 5, 3)
    for outputs in ([seq, [h, c]], {"seq": seq, "states": [h, c]}):
        model = keras.Model(x, outputs)
        _rand_weights(model)
        want = model(xs)
        for source in (model, _save(model, tmp_path / "nested.keras")):
            got = load(source)(xs)
            assert jax.tree.structure(got) == jax.tree.structure(want)
            for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5)


@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["plain", "bidirectional"])
def test_masked_sequence_with_initial_state_follows_each_keras(tmp_path, lib_name, bidirectional):
    """Keras 3 fills in a layer's mask only for a call with one tensor argument, so
    ``rnn(seq, initial_state=...)`` runs unmasked there while its output mask still follows
    ``seq`` (a later layer is masked); Keras 2 masks that call. Each file is loaded with its
    own Keras' rule."""
    lib = keras if lib_name == "keras" else pytest.importorskip("tf_keras")
    ids = lib.Input((None,), dtype="int32")
    emb = lib.layers.Embedding(10, 2, mask_zero=True)(ids)
    seq, *states = lib.layers.LSTM(3, return_sequences=True, return_state=True)(emb)
    second = lib.layers.LSTM(3, return_sequences=True)
    if bidirectional:
        second, states = lib.layers.Bidirectional(second), states * 2
    y = second(seq, initial_state=states)
    model = lib.Model(ids, [y, lib.layers.GRU(2)(y)])
    x = np.array([[3, 4, 5, 6, 7], [1, 2, 0, 0, 0]], "int32")
    _check(model, x, tmp_path, files=(".keras",) if lib is keras else (".h5",))


def test_multiple_outputs_and_states(tmp_path):
    x = keras.Input((5, 3))
    seq, h, c = keras.layers.LSTM(4, return_sequences=True, return_state=True)(x)
    out = keras.layers.Dense(1, name="head")(h)
    m = keras.Model(x, [seq, c, out])
    _check(m, _x(2, 5, 3), tmp_path)


def test_tf_keras_files_with_keras2_semantics(tmp_path):
    tfk = pytest.importorskip("tf_keras")
    m = tfk.Sequential(
        [
            tfk.Input((5, 3)),
            tfk.layers.LSTM(4, recurrent_activation="hard_sigmoid", return_sequences=True),
            tfk.layers.GRU(3, reset_after=False, recurrent_activation="hard_sigmoid"),
        ]
    )
    _rand_weights(m)
    x = _x(2, 5, 3) * 3  # reach the region where the two hard_sigmoids differ
    _check(m, x, tmp_path, files=(".keras", ".h5"), randomize=False)
    layer = load(tmp_path / "m.h5").get_layer(m.layers[0].name)
    assert layer.cell.recurrent_activation.__name__ == "keras2_hard_sigmoid"


def test_gru_config_without_reset_after_uses_keras2_default():
    from importers.model import ImportedModel

    cfg = {
        "class_name": "Sequential",
        "config": {
            "name": "old",
            "layers": [
                {
                    "class_name": "GRU",
                    "config": {"name": "gru_1", "units": 2, "batch_input_shape": [None, 4, 3]},
                }
            ],
        },
    }
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(3, 6), (2, 6), (6,)]]
    model = ImportedModel(cfg, lambda n: arrays, keras_major=2)
    assert model.get_layer("gru_1").cell.reset_after is False


def test_cudnn_weights_in_lstm_config_are_converted_like_keras2():
    from importers import layouts
    from importers.model import ImportedModel

    rng = np.random.default_rng(0)
    k, rk, b = (rng.standard_normal(s).astype(np.float32) for s in [(3, 8), (2, 8), (8,)])
    cudnn = layouts.keras_lstm_to_cudnn(k, rk, b)
    cfg = {
        "class_name": "Sequential",
        "config": {
            "name": "m",
            "layers": [{"class_name": "LSTM", "config": {"name": "l", "units": 2}}],
        },
    }
    x = _x(2, 4, 3)
    direct = ImportedModel(cfg, lambda n: [k, rk, b])(x)
    via_cudnn = ImportedModel(cfg, lambda n: list(cudnn))(x)
    np.testing.assert_allclose(np.asarray(via_cudnn), np.asarray(direct), atol=1e-6)


def test_cudnn_layers_from_a_keras2_file(tmp_path):
    tfk = pytest.importorskip("tf_keras")
    from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM

    import jrnn

    m = tfk.Sequential(
        [tfk.Input((5, 3)), CuDNNLSTM(4, return_sequences=True, name="cl"), CuDNNGRU(3, name="cg")]
    )
    _rand_weights(m)
    path = _save(m, tmp_path / "cudnn.h5")
    model = load(path)
    assert isinstance(model.get_layer("cl"), jrnn.CuDNNLSTM)
    assert isinstance(model.get_layer("cg"), jrnn.CuDNNGRU)
    # tf_keras cannot run CuDNN layers on CPU: its LSTM/GRU twins load the same file.
    twin = tfk.Sequential(
        [
            tfk.Input((5, 3)),
            tfk.layers.LSTM(4, return_sequences=True, name="cl"),
            tfk.layers.GRU(3, reset_after=True, recurrent_activation="sigmoid", name="cg"),
        ]
    )
    twin.load_weights(path)
    x = _x(2, 5, 3)
    np.testing.assert_allclose(np.asarray(model(x)), twin.predict(x, verbose=0), atol=1e-5)
    # importers.load_weights converts CuDNN-layout arrays into LSTM/GRU as Keras 2 does.
    from flax import nnx

    from importers import load_weights
    from importers.errors import UnsupportedLayerError

    lstm = jrnn.LSTM(4, 3, return_sequences=True, rngs=nnx.Rngs(0))
    gru = jrnn.GRU(3, 4, reset_after=True, recurrent_activation="sigmoid", rngs=nnx.Rngs(0))
    assert load_weights({"cl": lstm, "cg": gru}, path) == ["cl", "cg"]
    np.testing.assert_allclose(np.asarray(gru(lstm(x))), twin.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(UnsupportedLayerError, match="reset_after=False"):
        load_weights({"cg": jrnn.GRU(3, 4, reset_after=False, rngs=nnx.Rngs(0))}, path)


def test_mixed_bfloat16_policy_is_carried_over(tmp_path):
    import jax.numpy as jnp

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        m = keras.Sequential(
            [keras.Input((5, 3)), keras.layers.LSTM(4, return_sequences=True), keras.layers.GRU(2)]
        )
    finally:
        keras.config.set_dtype_policy(previous)
    _check(m, _x(2, 5, 3), tmp_path, atol=6e-2)
    layer = load(tmp_path / "m.keras").get_layer(m.layers[0].name)
    assert layer.cell.policy.compute_dtype == jnp.bfloat16
    assert layer.cell.kernel[...].dtype == jnp.float32


def test_policies_of_wrappers_core_layers_and_inputs(tmp_path):
    """A Bidirectional's own policy (its output dtype), a mixed Dense written back under
    its policy's name, and inputs converted to their Input's dtype as Keras converts them."""
    import jax.numpy as jnp

    from importers._from_jrnn import layer_entry

    inp = keras.Input((5, 3), dtype="float16")
    x = keras.layers.Dense(4, dtype="mixed_bfloat16", name="dense")(inp)
    y = keras.layers.Bidirectional(
        keras.layers.LSTM(2, return_sequences=True), dtype="mixed_bfloat16", name="bi"
    )(x)
    m = keras.Model(inp, [y, keras.layers.Dense(2, name="head")(inp)])
    _rand_weights(m)
    model = load(_save(m, tmp_path / "m.keras"))
    x = _x(2, 5, 3)
    ys, head = model(x)
    want_ys, want_head = m.predict(x, verbose=0)
    assert ys.dtype == jnp.bfloat16 and model.get_layer("bi").policy.name == "mixed_bfloat16"
    np.testing.assert_allclose(np.asarray(ys, np.float32), want_ys.astype(np.float32), atol=6e-2)
    np.testing.assert_allclose(np.asarray(head), want_head, atol=1e-5)  # x rounded to float16
    with warnings.catch_warnings():  # an int64 Input without x64: int32, without a warning
        warnings.simplefilter("error")
        ids = keras.Input((4,), dtype="int64")
        emb = keras.Model(ids, keras.layers.Embedding(5, 2)(ids))
        assert load(emb)(np.array([[1, 2, 3, 4]])).shape == (1, 4, 2)
    assert layer_entry(model.get_layer("dense"))["config"]["dtype"] == "mixed_bfloat16"


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_keras3_layer_normalization_is_not_autocast(policy):
    """Keras 3's LayerNormalization opts out of autocast: a float32 input with a large
    offset is normalised in float32 under a mixed policy. The imported model rounded it to
    16 bits first (off by 2.3-2.5, or NaN in float16 at an offset of 1e5)."""
    inp = keras.Input((4, 8))
    h = keras.layers.Dense(8, dtype="float32", name="d")(inp)
    out = keras.layers.LayerNormalization(dtype=policy, name="ln")(h)
    m = keras.Model(inp, out)
    _rand_weights(m)
    x = (1000.0 + 0.1 * _x(2, 4, 8)).astype(np.float32)
    got = np.asarray(load(m)(x), np.float32)
    want = np.asarray(m.predict(x, verbose=0), np.float32)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=2e-2 if policy == "mixed_bfloat16" else 5e-3)


def test_float64_weights_are_not_rounded_through_float32(tmp_path):
    """Under x64 a float64 model's weights load exactly (not through float32 variables);
    without x64 the load is refused, not run in float32."""
    import jax

    m = keras.Sequential(
        [
            keras.Input((5, 3), dtype="float64"),
            keras.layers.Dense(4, dtype="float64"),
            keras.layers.LSTM(2, dtype="float64"),
        ]
    )
    _rand_weights(m)
    path = _save(m, tmp_path / "m.keras")
    with jax.enable_x64(True):
        model = load(path)
        for layer in m.layers:
            params = keras_params(model.get_layer(layer.name))
            for got, want in zip(params, layer.weights, strict=True):
                assert got[...].dtype == np.float64
                np.testing.assert_array_equal(np.asarray(got[...]), want.numpy())
        x = np.random.default_rng(0).standard_normal((2, 5, 3))
        np.testing.assert_allclose(np.asarray(model(x)), m.predict(x, verbose=0), atol=1e-12)
    with pytest.raises(ValueError, match=r"float64 in the file: .*64-bit mode"):
        load(path)


def test_lambda_in_a_file_is_refused_not_executed(tmp_path):
    from importers.errors import UnsupportedLayerError

    x = keras.Input((3,))
    m = keras.Model(x, keras.layers.Lambda(lambda t: t * 2, name="double")(x))
    path = _save(m, tmp_path / "lam.keras")
    with pytest.raises(UnsupportedLayerError, match=r"'double'.*'Lambda'.*never executes"):
        load(path)


def test_weights_only_file_and_unknown_config_key(tmp_path):
    from importers.errors import KerasFileError, UnsupportedLayerError
    from importers.model import ImportedModel

    m = keras.Sequential([keras.Input((4, 3)), keras.layers.LSTM(2)])
    m.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(KerasFileError, match="weights-only"):
        load(tmp_path / "w.weights.h5")
    cfg = {
        "class_name": "Sequential",
        "config": {
            "name": "m",
            "layers": [{"class_name": "LSTM", "config": {"name": "l", "units": 2, "peephole": 1}}],
        },
    }
    with pytest.raises(UnsupportedLayerError, match="'peephole'"):
        ImportedModel(cfg, lambda n: [])


def test_training_applies_dropout_and_inference_does_not(tmp_path):
    import jax

    m = keras.Sequential(
        [keras.Input((5, 3)), keras.layers.LSTM(4, dropout=0.5, recurrent_dropout=0.3)]
    )
    _check(m, _x(2, 5, 3), tmp_path)
    model = load(tmp_path / "m.keras")
    infer = model(_x(2, 5, 3))
    train = model(_x(2, 5, 3), training=True)
    assert jax.numpy.abs(train - infer).max() > 1e-3


_FAMILY = {
    "simple_rnn": lambda **f: keras.layers.SimpleRNN(4, activation="relu", **f),
    "gru_reset_after": lambda **f: keras.layers.GRU(4, **f),
    "gru_reset_before": lambda **f: keras.layers.GRU(4, reset_after=False, **f),
    "lstm": lambda **f: keras.layers.LSTM(4, **f),
    "lstm_no_bias_hard_sigmoid": lambda **f: keras.layers.LSTM(
        4, use_bias=False, recurrent_activation="hard_sigmoid", **f
    ),
    "bidirectional_sum": lambda go_backwards=False, **f: keras.layers.Bidirectional(
        keras.layers.LSTM(4, **f),
        merge_mode="sum",  # Keras 3 refuses go_backwards here
    ),
    "stacked_cells": lambda **f: keras.layers.RNN(
        [keras.layers.LSTMCell(4), keras.layers.GRUCell(3)], **f
    ),
}
_FLAGS = {
    "last": {},
    "sequences_backwards": {"return_sequences": True, "go_backwards": True},
    "unrolled_sequences": {"unroll": True, "return_sequences": True},
}


@pytest.mark.parametrize("flags", list(_FLAGS))
@pytest.mark.parametrize("kind", list(_FAMILY))
def test_recurrent_family_with_masks_through_keras_files(tmp_path, kind, flags):
    """Masking -> layer, saved as .keras and read back without Keras: equal outputs."""

    def build(**flags):
        return keras.Sequential(
            [keras.Input((6, 3)), keras.layers.Masking(0.0), _FAMILY[kind](**flags)]
        )

    x = _x(3, 6, 3, seed=11)
    x[0, 4:] = 0.0  # right padding
    x[1, 2] = 0.0  # a gap
    reference = None
    if kind.startswith("bidirectional") and _FLAGS[flags].get("unroll"):
        # Keras 3.15 (TF backend) quirk: Bidirectional with unroll=True and a mask with
        # gaps differs from unroll=False (a lone unrolled backward LSTM does not); jrnn
        # gives the unroll=False values, which unrolling must not change.
        reference = build(**{**_FLAGS[flags], "unroll": False})
    _check(build(**_FLAGS[flags]), x, tmp_path, reference=reference)


def test_stateful_layer_carries_state_across_calls(tmp_path):
    m = keras.Sequential(
        [keras.Input(batch_shape=(2, 5, 3)), keras.layers.LSTM(4, stateful=True, name="s")]
    )
    _rand_weights(m)
    x = _x(2, 5, 3)
    model = load(_save(m, tmp_path / "s.keras"))
    for _ in range(2):  # the second call starts from the first call's final state
        np.testing.assert_allclose(np.asarray(model(x)), m.predict(x, verbose=0), atol=1e-5)


def test_ported_model_under_jit_split_merge_and_grad(tmp_path):
    import jax
    from flax import nnx

    m = keras.Sequential(
        [keras.Input((5, 3)), keras.layers.LSTM(4, return_sequences=True), keras.layers.GRU(2)]
    )
    _rand_weights(m)
    x = _x(2, 5, 3)
    model = load(_save(m, tmp_path / "m.keras"))
    expected = m.predict(x, verbose=0)
    np.testing.assert_allclose(
        np.asarray(nnx.jit(lambda mod, x: mod(x))(model, x)), expected, atol=1e-5
    )
    graphdef, state = nnx.split(model)
    pure = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    np.testing.assert_allclose(np.asarray(pure(state, x)), expected, atol=1e-5)
    grads = nnx.grad(lambda mod: (mod(x) ** 2).sum())(model)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))


def test_inspection_works_on_ported_models(tmp_path):
    import jrnn

    m = keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(12, 5, mask_zero=True, name="embed"),
            keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi"),
            keras.layers.GRU(3, name="gru"),
        ]
    )
    _rand_weights(m)
    ids = np.array([[3, 4, 5, 0, 0, 0], [1, 2, 9, 7, 8, 11]], np.int32)
    model = load(_save(m, tmp_path / "m.keras"))
    table = jrnn.inspect.summary(model)
    assert "Bidirectional" in table and "GRU" in table
    gates = jrnn.inspect.get_rnn_weights(model.get_layer("gru"), concat_gates=False)
    np.testing.assert_array_equal(
        gates["kernel"]["RESET"], m.get_layer("gru").get_weights()[0][:, 3:6]
    )
    outs = jrnn.inspect.get_outputs(model, ids, ["bi", "gru"])
    np.testing.assert_allclose(
        np.asarray(outs["bi"]),
        keras.Model(m.inputs, m.get_layer("bi").output).predict(ids, verbose=0),
        atol=1e-5,
    )
    norms = jrnn.inspect.gradient_norms_over_time(model, ids, "bi")
    assert norms.shape == (2, 6) and np.isfinite(np.asarray(norms)).all()
    assert float(norms[0, 4]) == 0.0  # a masked step gets no gradient from the output


def test_layer_indices_and_wildcard_follow_keras_model_layers(tmp_path):
    """An index counts Keras' ``model.layers`` (less the InputLayer); Keras 3 writes the
    Masking mask's ``not_equal``/``any`` operation nodes into the file, which are not
    layers, so an index and ``"*"`` skip them as Keras does."""
    import jrnn

    inp = keras.Input((5, 3))
    h = keras.layers.Masking(name="masking")(inp)
    h = keras.layers.LSTM(4, return_sequences=True, name="lstm")(h)
    m = keras.Model(inp, keras.layers.Dense(2, name="dense")(h))
    _rand_weights(m)
    model = load(_save(m, tmp_path / "m.keras"))
    keras_layers = [layer.name for layer in m.layers if not layer.name.startswith("input")]
    assert [label for label, _ in jrnn.inspect.layers_of(model)] == keras_layers
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    x[1, 3:] = 0.0
    outs = jrnn.inspect.get_outputs(model, x, [1, "*"])
    assert list(outs) == [1, "masking", "lstm", "dense"]
    expected = keras.Model(m.inputs, m.get_layer("lstm").output).predict(x, verbose=0)
    np.testing.assert_allclose(np.asarray(outs[1]), expected, atol=1e-5)
    grads = jrnn.inspect.get_gradients(model, x, wrt="*")
    assert list(grads) == keras_layers


def test_a_nested_model_is_a_layer_to_inspect(tmp_path):
    """A nested imported model runs through its parent's `call_with_mask`, not `__call__`:
    its output is recorded there, and `"*"` includes it, as Keras' `model.layers` does."""
    import jrnn

    inner_in = keras.Input((5, 4))
    sub = keras.Model(inner_in, keras.layers.SimpleRNN(3, return_sequences=True)(inner_in))
    sub.name = "sub"
    inp = keras.Input((5, 2))
    h = keras.layers.GRU(4, return_sequences=True, name="gru")(inp)
    m = keras.Model(inp, keras.layers.LSTM(2, name="head")(sub(h)))
    _rand_weights(m)
    model = load(_save(m, tmp_path / "m.keras"))
    x = np.random.default_rng(0).standard_normal((2, 5, 2)).astype(np.float32)
    outs = jrnn.inspect.get_outputs(model, x, "*")
    assert list(outs) == ["gru", "sub", "head"]
    h = keras.Model(m.inputs, m.get_layer("gru").output).predict(x, verbose=0)
    expected = sub.predict(h, verbose=0)
    np.testing.assert_allclose(np.asarray(outs["sub"]), expected, atol=1e-5)
    assert jrnn.inspect.get_gradients(model, x, wrt="sub")["sub"].shape == (2, 5, 3)


def test_tf_keras_conv_lstm_with_initial_state_tensors(tmp_path):
    """Keras 2 records `conv_lstm(x, initial_state=[h, c])` as one node of three inputs; the
    ConvLSTM converter took that list of shapes for the frames' shape."""
    tfk = pytest.importorskip("tf_keras")
    L = tfk.layers
    x_in, h_in, c_in = tfk.Input((3, 6, 5, 2)), tfk.Input((6, 5, 4)), tfk.Input((6, 5, 4))
    y = L.ConvLSTM2D(4, 3, padding="same", return_sequences=True)(x_in, initial_state=[h_in, c_in])
    states = [tfk.Input((6, 4)) for _ in range(4)]
    seq = tfk.Input((3, 6, 2))
    bi = L.Bidirectional(L.ConvLSTM1D(4, 2, padding="same"))(seq, initial_state=states)
    m = tfk.Model([x_in, h_in, c_in, seq, *states], [y, bi])
    _rand_weights(m)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, *t.shape[1:])).astype(np.float32) for t in m.inputs]
    expected = m.predict(xs, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(tmp_path / "m.h5")
    for got, want in zip(load(tmp_path / "m.h5")(xs), expected):
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_conv_lstm_on_frames_of_unknown_size(tmp_path):
    """tf_keras runs a ConvLSTM on frames of any size when the Input leaves them None.
    Propagation fills a None with 1, so the layer used to load for 1x1 frames and fail on
    real inputs; it now loads without `spatial_shape` and follows each call's frames.
    Keras 3 refuses such a ConvLSTM at build, so `save_keras` refuses to write it."""
    tfk = pytest.importorskip("tf_keras")
    from importers import save_keras
    from importers.errors import UnsupportedLayerError

    inp = tfk.Input((None, None, None, 2))
    h = tfk.layers.TimeDistributed(tfk.layers.Conv2D(3, 1))(inp)
    m = tfk.Model(inp, tfk.layers.ConvLSTM2D(3, 3, recurrent_activation="sigmoid")(h))
    _rand_weights(m)
    model = load(m)
    rng = np.random.default_rng(0)
    for shape in ((2, 4, 6, 5, 2), (1, 3, 9, 4, 2)):
        x = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(np.asarray(model(x)), m.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(UnsupportedLayerError, match=r"Keras 3's ConvLSTM needs static frame"):
        save_keras(model, tmp_path / "m.keras")


def test_dict_inputs_sequential_states_and_lora_layers(tmp_path):
    """A model of a dict of inputs, a Sequential whose last layer returns its states (Keras
    returns all three), and a LoRA-enabled Dense (its file merges the low-rank update into
    the kernel; the live layer lists four arrays), live and from files."""
    a, b = keras.Input((5, 3), name="a"), keras.Input((5, 2), name="b")
    both = keras.layers.Concatenate()([a, b])
    keyed = keras.Model({"sig": a, "aux": b}, keras.layers.LSTM(3)(both))
    xs = {"sig": _x(2, 5, 3), "aux": _x(2, 5, 2, seed=1)}
    _check(keyed, xs, tmp_path)
    with pytest.raises(ValueError, match=r"keys \['sig', 'aux'\]; received \['sig'\]"):
        load(keyed)({"sig": xs["sig"]})
    states = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(3, return_state=True)])
    _check(states, _x(2, 5, 3), tmp_path)
    lora = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(3), keras.layers.Dense(4)])
    _rand_weights(lora)
    lora.layers[-1].enable_lora(2)
    _rand_weights(lora, seed=1)  # the LoRA factors too: the merged kernel differs from `kernel`
    _check(lora, _x(2, 5, 3), tmp_path, randomize=False)


def test_nested_functional_outputs_sequential_stack_states_and_wrapped_lora(tmp_path):
    """Keras 3 numbers a nested Functional's calls from 1 in `output_layers` (from 0 in
    the calls); a Sequential ending in a stack with return_state returns Keras' nesting
    (y, [h1, c1], [h2, c2]); a LoRA Dense inside TimeDistributed imports merged."""
    kl = keras.layers
    i = keras.Input((4,))
    inner = keras.Model(i, kl.Dense(2)(i), name="inner")
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = keras.Model([a, b], [inner(a), inner(b)])
    _check(shared, [_x(2, 4), _x(2, 4, seed=1)], tmp_path)
    cells = [kl.LSTMCell(3), kl.LSTMCell(2)]
    stack = keras.Sequential([keras.Input((5, 3)), kl.RNN(cells, return_state=True)])
    _rand_weights(stack)
    x = _x(2, 5, 3)
    got, want = load(stack)(x), stack(x)
    assert [len(v) if isinstance(v, list) else None for v in got] == [None, 2, 2]
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5)
    dense = kl.Dense(4)
    lora = keras.Sequential([keras.Input((5, 3)), kl.TimeDistributed(dense)])
    _rand_weights(lora)
    dense.enable_lora(2)
    _rand_weights(lora, seed=1)
    _check(lora, x, tmp_path, randomize=False)


def test_imported_stateful_models_as_keras(tmp_path):
    """tf.keras' rule for a stateful layer given initial_state (its recorded states win once
    non-zero: the second chunk was 0.50 off); the Input's fixed batch size enforced from the
    first call; ImportedModel.reset_states() as tf.keras' Model.reset_states()."""
    tfk = pytest.importorskip("tf_keras")
    B, F, U = 2, 3, 4
    xi = tfk.Input(batch_shape=(B, None, F))
    hi, ci = tfk.Input(batch_shape=(B, U)), tfk.Input(batch_shape=(B, U))
    lstm = tfk.layers.LSTM(U, stateful=True, return_sequences=True)
    m = tfk.Model([xi, hi, ci], lstm(xi, initial_state=[hi, ci]))
    _rand_weights(m)
    path = _save(m, tmp_path / "stateful.h5")
    model = load(path)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, 6, F)).astype(np.float32)
    h0, c0 = (rng.standard_normal((B, U)).astype(np.float32) for _ in range(2))
    for chunk in (x[:, :3], x[:, 3:]):
        np.testing.assert_allclose(
            np.asarray(model([chunk, h0, c0])), m([chunk, h0, c0]).numpy(), atol=1e-5
        )
    model.reset_states()
    m.reset_states()
    np.testing.assert_allclose(
        np.asarray(model([x[:, :3], h0, c0])), m([x[:, :3], h0, c0]).numpy(), atol=1e-5
    )
    with pytest.raises(ValueError, match="expected batch size 2, received 5"):
        load(path)([np.zeros((5, 3, F), "f4"), np.zeros((5, U), "f4"), np.zeros((5, U), "f4")])


def test_tf_keras_conv_lstm_repeats_the_output_at_masked_steps(tmp_path):
    """tf.keras' ConvRNN ignores zero_output_for_mask (also the one Bidirectional sets):
    a masked step repeats the previous output, where Keras 3 writes zeros."""
    import tf_keras

    layers = tf_keras.layers
    tf_keras.utils.set_random_seed(1)
    x = np.random.default_rng(0).standard_normal((3, 6, 5, 2)).astype("float32")
    m = np.array([[1, 1, 0, 1, 0, 0], [0, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 1]], bool)
    xi, mi = tf_keras.Input((6, 5, 2)), tf_keras.Input((6,), dtype="bool")
    conv = layers.ConvLSTM1D(3, 3, padding="same", return_sequences=True)
    model = tf_keras.Model([xi, mi], layers.Bidirectional(conv)(xi, mask=mi))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the legacy-format notice
        model.save(tmp_path / "m.h5")
    expected = np.asarray(model([x, m]))
    assert np.abs(expected[~m]).max() > 0.05  # the previous outputs, not zeros
    np.testing.assert_allclose(np.asarray(load(tmp_path / "m.h5")([x, m])), expected, atol=2e-5)


@pytest.mark.parametrize("kind", ["keras3", "tf_keras"])
def test_custom_layer_modules_drop_the_mask_as_keras_lambdas(kind, tmp_path):
    from flax import nnx

    lib = keras
    if kind == "tf_keras":
        import tf_keras as lib

    class Double(nnx.Module):  # a user's stand-in for Lambda(lambda t: 2 * t)
        def __call__(self, x, *, training=False):
            return 2.0 * x

    lib.utils.set_random_seed(0)
    i = lib.Input((None,), dtype="int32")
    h = lib.layers.LSTM(6, return_sequences=True)(lib.layers.Embedding(20, 4, mask_zero=True)(i))
    h = lib.layers.Lambda(lambda t: 2.0 * t, output_shape=lambda s: s)(h)
    model = lib.Model(i, lib.layers.GRU(4, return_sequences=True)(h))
    ids = np.array([[0, 0, 3, 4, 5, 6], [1, 2, 0, 0, 7, 8]], "int32")
    ported = load(model, custom_layers={"Lambda": lambda config, arrays: Double()})
    np.testing.assert_allclose(np.asarray(ported(ids)), np.asarray(model(ids)), atol=2e-5)


def _counting(monkeypatch) -> list[bool]:
    """Each run of ImportedModel._call_with_mask, as whether its inputs were traced."""
    runs: list[bool] = []
    original = importers.ImportedModel._call_with_mask

    def counting(self, inputs, mask, training):
        runs.append(isinstance(jax.tree_util.tree_leaves(inputs)[0], jax.core.Tracer))
        return original(self, inputs, mask, training)

    monkeypatch.setattr(importers.ImportedModel, "_call_with_mask", counting)
    jax.clear_caches()
    return runs


def _encoder(batch_size=None, **lstm):
    inp = keras.Input((6,), batch_size=batch_size, dtype="int32", name="ids")
    h = keras.layers.Embedding(20, 4, mask_zero=True, name="emb")(inp)
    h = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True), name="bi")(h)
    h = keras.layers.Dropout(0.3, name="drop")(h)
    h = keras.layers.LSTM(5, name="top", **lstm)(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(h), name="encoder")


def test_eager_model_calls_run_as_one_cached_program(monkeypatch):
    """An imported model called outside any transformation ran op by op (an eager
    Embedding -> Bidirectional(LSTM) -> LSTM -> Dense model took 7.0 ms a call against
    2.2 ms under nnx.jit): it runs as one program per input shapes, equal to nnx.jit's,
    with dropout streams and moving statistics advancing as there."""
    from flax import nnx

    kmodel = _encoder()
    _rand_weights(kmodel)
    ids = np.random.default_rng(0).integers(0, 20, (4, 6)).astype(np.int32)
    ids[1, 4:] = 0
    runs = _counting(monkeypatch)
    model = load(kmodel)
    first = np.asarray(model(ids))
    for _ in range(3):
        np.testing.assert_array_equal(np.asarray(model(ids)), first)
    assert runs == [True]  # traced once
    np.testing.assert_allclose(first, kmodel.predict(ids, verbose=0), atol=1e-5)
    # training: the same dropout masks and moving statistics as the caller's own nnx.jit
    twin = load(kmodel)
    jitted = nnx.jit(lambda m, x: m(x, training=True))
    for _ in range(2):
        np.testing.assert_allclose(
            np.asarray(model(ids, training=True)), np.asarray(jitted(twin, ids)), atol=1e-6
        )
    for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(twin))):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    # the model's structure (operation nodes' recorded arguments too) is a cache key
    hash(nnx.graphdef(model))


def test_eager_model_calls_that_cannot_be_traced_run_op_by_op(monkeypatch):
    """A model that reads a value in Python, holds a custom layer's stand-in, or whose first
    stateful call creates its states runs op by op, with the results it had before."""
    import jrnn

    kmodel = _encoder()
    _rand_weights(kmodel)
    ids = np.random.default_rng(1).integers(1, 20, (2, 6)).astype(np.int32)
    want = kmodel.predict(ids, verbose=0)
    dense_call = jrnn.Dense.__call__

    def reads_a_value(self, x, **kwargs):
        assert float(np.asarray(x).size) > 0  # a concrete value, refused in a trace
        return dense_call(self, x, **kwargs)

    runs = _counting(monkeypatch)
    monkeypatch.setattr(jrnn.Dense, "__call__", reads_a_value)
    model = load(kmodel)
    for _ in range(2):
        np.testing.assert_allclose(np.asarray(model(ids)), want, atol=1e-5)
    assert runs == [True, False, False]  # one failed trace, then op by op
    monkeypatch.setattr(jrnn.Dense, "__call__", dense_call)

    custom = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="s")
    model = load(custom)  # a custom layer's stand-in (a class of the user's): not traced
    model.layers["d"].__class__ = type("Head", (jrnn.Dense,), {"__module__": "user_code"})
    del runs[:]
    model(np.ones((2, 3), np.float32))
    assert runs == [False]
    # a factory's plain function, or a jrnn module around one, runs at every call
    calls = []

    def counted(t):
        calls.append(1)
        return t * 2.0

    inp = keras.Input((3,))
    lam = keras.layers.Lambda(lambda t: t * 2.0, name="lam")(inp)
    lambdas = keras.Model(inp, keras.layers.Dense(2, name="d")(lam))
    for factory in (lambda c, a: counted, lambda c, a: jrnn.Activation(counted)):
        model = load(lambdas, custom_layers={"Lambda": factory})
        del runs[:], calls[:]  # (loading runs the stand-in once, for the shapes)
        for _ in range(3):
            model(np.ones((2, 3), np.float32))
        assert runs == [False] * 3 and len(calls) == 3
    stateful = load(_encoder(2, stateful=True))
    del runs[:]
    stateful(ids), stateful(ids)
    assert runs == [False, True]  # the states are made op by op, then one program


def test_time_distributed_computes_the_wrapped_layer_as_each_keras_does(tmp_path):
    """Keras 3's TimeDistributed runs `layer.call` under its own policy (the wrapped
    layer's is never applied); tf.keras' runs `layer(...)` under the layer's. jrnn
    computed the wrapped layer under its own policy in both (a float32 wrapper over a
    mixed_bfloat16 Dense: 6.6e-3 from Keras 3), and the writers kept configs that Keras 3
    computes differently (a tf.keras file 6.6e-3 off once written to Keras 3)."""
    import jax.numpy as jnp
    from flax import nnx

    import jrnn

    tfk = pytest.importorskip("tf_keras")
    x = _x(3, 6, 8)
    cases = (
        (None, "mixed_bfloat16"),
        ("mixed_bfloat16", None),
        ("float16", None),  # a plain wrapper: float16 inputs, float32 kernel and maths
    )
    for outer, wrapped in cases:
        td = keras.layers.TimeDistributed(
            keras.layers.Dense(5, activation="tanh", dtype=wrapped, name="d"),
            dtype=outer,
            name="td",
        )
        inp = keras.Input((6, 8))
        m = keras.Model(inp, td(inp))
        _rand_weights(m)
        imported = load(m)
        want, got = m.predict(x, verbose=0), imported(x)
        assert got.dtype == want.dtype
        assert imported.layers["td"].layer.kernel[...].dtype == jnp.float32
        atol = 8e-3 if outer == "mixed_bfloat16" else 1e-6  # bfloat16 maths: tanh's rounding
        np.testing.assert_allclose(np.asarray(got, np.float32), want.astype(np.float32), atol=atol)
    # tf.keras: inputs rounded to the wrapper's policy, then the wrapped layer's; written
    # to Keras 3 as a wrapper whose policy computes the same, or refused where none does
    for outer, wrapped, atol in (
        (None, "mixed_bfloat16", 8e-3),
        ("mixed_bfloat16", "float32", 1e-6),
        ("mixed_float16", "mixed_bfloat16", None),
    ):
        inp = tfk.Input((6, 8))
        dense = tfk.layers.Dense(5, activation="tanh", dtype=wrapped, name="d")
        tm = tfk.Model(inp, tfk.layers.TimeDistributed(dense, dtype=outer, name="td")(inp))
        _rand_weights(tm)
        want = np.asarray(tm(x))
        _save(tm, tmp_path / "tf.h5")
        model = load(tmp_path / "tf.h5")
        assert model(x).dtype == want.dtype
        np.testing.assert_allclose(np.asarray(model(x), np.float32), want, atol=atol or 8e-3)
        if atol is None:
            with pytest.raises(importers.errors.UnsupportedLayerError, match="no Keras 3"):
                importers.save_keras(model, tmp_path / "k3.keras")
            continue
        importers.save_keras(model, tmp_path / "k3.keras")
        k3 = keras.saving.load_model(tmp_path / "k3.keras", compile=False)
        np.testing.assert_allclose(np.asarray(k3(x), np.float32), want, atol=1e-6)
    # a jrnn TimeDistributed(Dense(mixed)) written by keras_sequential computes as in jrnn
    layer = jrnn.TimeDistributed(jrnn.Dense(5, 8, dtype="mixed_bfloat16", rngs=nnx.Rngs(0)))
    written = importers.keras_sequential([layer], (6, 8))
    out = layer(x)
    assert out.dtype == jnp.bfloat16 and written(x).dtype == "bfloat16"
    np.testing.assert_allclose(
        np.asarray(written(x), np.float32), np.asarray(out, np.float32), atol=8e-3
    )
