"""Non-recurrent layers around RNNs: jrnn modules + importers converters match Keras 3."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tf_keras
from flax import nnx

import importers
import jrnn
from importers.errors import UnsupportedLayerError

L = keras.layers


def _rand(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            new = [rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in ws]
            if "moving_variance" in str(getattr(layer.weights[-1], "name", "")):
                new[-1] = np.abs(new[-1]) + 0.5
            layer.set_weights(new)


def _parity(model, x, atol=1e-5, randomize=True):
    if randomize:
        _rand(model)
    xs = x if isinstance(x, list) else [x]
    expected = model(xs if isinstance(x, list) else x, training=False)
    got = importers.load(model)(x)
    exp = expected if isinstance(expected, list) else [expected]
    got = got if isinstance(got, list) else [got]
    for e, g in zip(exp, got, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=atol)
    return got


def _x(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ids(seed=2):
    ids = np.random.default_rng(seed).integers(1, 9, (2, 7)).astype(np.int32)
    ids[0, 4:] = 0
    ids[1, :2] = 0
    return ids


def _masked(layer, lstm_after=True):
    """ids -> Embedding(mask_zero) -> layer -> LSTM(return_sequences) (mask observable)."""
    layers = [L.Embedding(10, 4, mask_zero=True), layer]
    if lstm_after:
        layers.append(L.LSTM(5, return_sequences=True))
    return keras.Sequential([keras.Input((7,), dtype="int32"), *layers])


@pytest.mark.parametrize(
    "layer",
    [
        lambda: L.Dense(6, activation="tanh"),
        lambda: L.Dense(6, use_bias=False),
        lambda: L.Activation("relu"),
        lambda: L.Dropout(0.3),
        lambda: L.SpatialDropout1D(0.3),
        lambda: L.GaussianNoise(0.5),
        lambda: L.GaussianDropout(0.3),
        lambda: L.BatchNormalization(),
        lambda: L.BatchNormalization(center=False, epsilon=0.01, momentum=0.9),
        lambda: L.LayerNormalization(),
        lambda: L.LayerNormalization(scale=False, epsilon=1e-5),
    ],
    ids=[
        "dense_tanh",
        "dense_nobias",
        "act",
        "drop",
        "sdrop",
        "gnoise",
        "gdrop",
        "bn",
        "bn2",
        "ln",
        "ln2",
    ],
)
def test_mask_passing_layers(layer):
    _parity(_masked(layer()), _ids())


def test_masking_then_lstm():
    x = _x(2, 7, 3)
    x[0, 3:] = 0.0
    m = keras.Sequential([keras.Input((7, 3)), L.Masking(0.0), L.Dense(4), L.LSTM(5)])
    _parity(m, x)


@pytest.mark.parametrize(
    "cls", ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate"]
)
def test_merges(cls):
    a, b = keras.Input((7, 4)), keras.Input((7, 4))
    h = getattr(L, cls)()([L.Dense(4)(a), b])
    out = L.LSTM(5, return_sequences=True)(h)
    _parity(keras.Model([a, b], out), [_x(2, 7, 4), _x(2, 7, 4, seed=3)])


@pytest.mark.parametrize(
    "layers,shape",
    [
        ([L.Flatten(), L.Dense(3)], (7, 3)),
        ([L.Reshape((3, 7)), L.LSTM(4)], (7, 3)),
        ([L.Reshape((-1, 7))], (7, 3)),
        ([L.Permute((2, 1)), L.GRU(4)], (7, 3)),
        ([L.LSTM(4), L.RepeatVector(5), L.LSTM(3, return_sequences=True)], (7, 3)),
    ],
    ids=["flatten", "reshape", "reshape_m1", "permute", "repeat"],
)
def test_reshaping(layers, shape):
    _parity(keras.Sequential([keras.Input(shape), *layers]), _x(2, *shape))


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize(
    "kw",
    [{}, {"strides": 2}, {"dilation_rate": 2}, {"groups": 2}],
    ids=["plain", "strides", "dilation", "groups"],
)
def test_conv1d(padding, kw):
    m = keras.Sequential(
        [keras.Input((9, 4)), L.Conv1D(6, 3, padding=padding, activation="relu", **kw)]
    )
    _parity(m, _x(2, 9, 4))


@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize(
    "kw",
    [{}, {"strides": 2}, {"dilation_rate": 2}, {"groups": 2}],
    ids=["plain", "strides", "dilation", "groups"],
)
def test_conv2d_conv3d(rank, padding, kw):
    spatial = (7, 6) if rank == 2 else (6, 7, 5)
    cls = L.Conv2D if rank == 2 else L.Conv3D
    layer = cls(6, 3, padding=padding, activation="relu", **kw)
    _parity(keras.Sequential([keras.Input((*spatial, 4)), layer]), _x(2, *spatial, 4))


@pytest.mark.parametrize("cls", [jrnn.Conv1D, jrnn.Conv2D, jrnn.Conv3D])
def test_conv_channels_first_is_channels_last_transposed(cls):
    """TensorFlow's CPU kernels refuse NCHW, so channels_first is checked against
    channels_last on the same weights."""
    last = cls(5, 3, 4, strides=2, padding="same", rngs=nnx.Rngs(0))
    first = cls(5, 3, 4, strides=2, padding="same", data_format="channels_first", rngs=nnx.Rngs(0))
    x = jnp.asarray(_x(2, *(6,) * cls.rank, 4))
    np.testing.assert_allclose(
        first(jnp.moveaxis(x, -1, 1)), jnp.moveaxis(last(x), -1, 1), rtol=1e-6, atol=1e-6
    )


def test_conv1d_drops_mask():
    _parity(_masked(L.Conv1D(4, 3, padding="same")), _ids())


@pytest.mark.parametrize("cls", ["MaxPooling1D", "AveragePooling1D"])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("strides", [None, 1])
def test_pooling(cls, padding, fmt, strides):
    layer = getattr(L, cls)(pool_size=3, strides=strides, padding=padding, data_format=fmt)
    _parity(keras.Sequential([keras.Input((8, 4)), layer]), _x(2, 8, 4))


@pytest.mark.parametrize("cls", ["GlobalMaxPooling1D", "GlobalAveragePooling1D"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_masked(cls, keepdims):
    m = _masked(L.LSTM(5, return_sequences=True), lstm_after=False)
    m.add(getattr(L, cls)(keepdims=keepdims))
    _parity(m, _ids())


@pytest.mark.parametrize("cls", ["GlobalMaxPooling1D", "GlobalAveragePooling1D"])
def test_global_pooling_channels_first(cls):
    m = keras.Sequential([keras.Input((4, 7)), getattr(L, cls)(data_format="channels_first")])
    _parity(m, _x(2, 4, 7))


def test_layer_norm_axes():
    m = keras.Sequential([keras.Input((7, 3)), L.LayerNormalization(axis=[1, 2])])
    _parity(m, _x(2, 7, 3))


@pytest.mark.parametrize("masked", [False, True])
def test_batch_norm_training(masked):
    bn = L.BatchNormalization(momentum=0.8)
    if masked:
        model = _masked(bn, lstm_after=False)
        x = _ids()
    else:
        model = keras.Sequential([keras.Input((7, 4)), bn])
        x = _x(2, 7, 4)
    _rand(model)
    jm = importers.load(model)
    name = bn.name
    got = jm(x, training=True)
    expected = model(x, training=True)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-5)
    jb = jm.get_layer(name)
    assert isinstance(jb.moving_mean, nnx.BatchStat)
    np.testing.assert_allclose(np.asarray(jb.moving_mean[...]), bn.moving_mean.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(jb.moving_variance[...]), bn.moving_variance.numpy(), atol=1e-5
    )
    # keras_params order: gamma, beta, moving_mean, moving_variance
    ws = importers.keras_params(jb) if hasattr(importers, "keras_params") else jb.keras_weights()
    for v, w in zip(ws, bn.get_weights(), strict=True):
        np.testing.assert_allclose(np.asarray(v[...]), w, atol=1e-5)


def test_dropout_training_statistics():
    layer = jrnn.Dropout(0.25, rngs=nnx.Rngs(dropout=0))
    x = jnp.ones((4, 50, 20))
    assert layer(x) is x
    y = np.asarray(layer(x, training=True))
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.03
    y2 = np.asarray(layer(x, training=True))
    assert not np.array_equal(y, y2)  # a fresh draw per call
    y3 = np.asarray(layer(x, training=True, rngs=jax.random.key(5)))
    np.testing.assert_array_equal(y3, layer(x, training=True, rngs=jax.random.key(5)))


def test_spatial_dropout_drops_channels():
    y = np.asarray(jrnn.SpatialDropout1D(0.5, seed=0)(jnp.ones((3, 6, 40)), training=True))
    assert (y == y[:, :1, :]).all()
    assert 0.2 < (y[:, 0] == 0).mean() < 0.8


def test_gaussian_layers_training():
    x = jnp.ones((4, 100, 50))
    n = np.asarray(jrnn.GaussianNoise(0.5, seed=0)(x, training=True)) - 1.0
    assert abs(n.std() - 0.5) < 0.02 and abs(n.mean()) < 0.02
    g = np.asarray(jrnn.GaussianDropout(0.2, rngs=nnx.Rngs(1))(x, training=True))
    assert abs(g.std() - np.sqrt(0.2 / 0.8)) < 0.02 and abs(g.mean() - 1.0) < 0.02
    assert jrnn.GaussianNoise(0.5, seed=0)(x) is x and jrnn.GaussianDropout(0.2, seed=0)(x) is x


def test_model_training_dropout_is_random_but_inference_identity():
    m = keras.Sequential([keras.Input((7, 3)), L.Dropout(0.5), L.Dense(2)])
    jm = importers.load(m)
    x = _x(2, 7, 3)
    a, b = jm(x, training=True), jm(x, training=True)
    assert not np.allclose(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(np.asarray(jm(x)), np.asarray(m(x)), atol=1e-5)


def test_tf_keras_models():
    TL = tf_keras.layers
    model = tf_keras.Sequential(
        [
            tf_keras.Input((8, 3)),
            TL.Conv1D(4, 3, padding="causal"),
            TL.BatchNormalization(),
            TL.LayerNormalization(),
            TL.MaxPool1D(2),
            TL.GlobalAveragePooling1D(),
            TL.Dense(2),
        ]
    )
    _rand(model)
    x = _x(2, 8, 3)
    np.testing.assert_allclose(np.asarray(importers.load(model)(x)), model(x).numpy(), atol=1e-5)


def test_weight_shape_error():
    m = keras.Sequential([keras.Input((7, 3)), L.Conv1D(4, 3)])
    cfg = m.layers[0].get_config()
    conv = importers.convert.CONVERTERS["Conv1D"]
    with pytest.raises(ValueError, match="'bias' must have shape \\(4,\\); received \\(5,\\)"):
        conv(cfg, [np.zeros((3, 3, 4), np.float32), np.zeros(5, np.float32)], None)


@pytest.mark.parametrize(
    "cls,cfg,match",
    [
        ("Conv1D", {"padding": "full"}, "padding='full'"),
        ("MaxPooling1D", {"data_format": "channels_middle"}, "data_format='channels_middle'"),
        ("LayerNormalization", {"rms_scaling": True}, "rms_scaling=True"),
        ("BatchNormalization", {"renorm": True}, "renorm=True"),
        ("Dropout", {"noise_shape": [None, 1, 3]}, "noise_shape"),
    ],
)
def test_unsupported_config(cls, cfg, match):
    base = {"name": "lay", "filters": 4, "kernel_size": 3, "rate": 0.1}
    arrays = {
        "Conv1D": [np.zeros((3, 3, 4), np.float32), np.zeros(4, np.float32)],
        "LayerNormalization": [np.ones(3, np.float32), np.zeros(3, np.float32)],
        "BatchNormalization": [np.ones(3, np.float32)] * 4,
    }.get(cls, [])
    with pytest.raises(ValueError, match=match):
        importers.convert.CONVERTERS[cls]({**base, **cfg}, arrays, None)


def test_unsupported_config_through_load():
    m = keras.Sequential([keras.Input((7, 3)), L.LayerNormalization(rms_scaling=True)])
    with pytest.raises(UnsupportedLayerError, match="rms_scaling"):
        importers.load(m)


_R = nnx.Rngs


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: jrnn.Dropout(1.5), "Dropout: rate must be in"),
        (lambda: jrnn.Dropout("a"), "Dropout: rate must be a real number"),
        (lambda: jrnn.GaussianDropout(1.0), r"GaussianDropout: rate must be in \[0, 1\)"),
        (lambda: jrnn.Permute((1, 3)), "Permute: dims"),
        (lambda: jrnn.Permute((2.7, 1)), "Permute: dims must be a tuple of ints"),
        (lambda: jrnn.Conv1D(2, 3, 4, padding="full", rngs=_R(0)), "Conv1D: `padding`"),
        (lambda: jrnn.Conv1D(2, 2.5, 4, rngs=_R(0)), "Conv1D: `kernel_size`"),
        (lambda: jrnn.Conv1D(2, 0, 4, rngs=_R(0)), "Conv1D: `kernel_size`"),
        (lambda: jrnn.Conv1D(0, 3, 4, rngs=_R(0)), "Conv1D: `filters`"),
        (lambda: jrnn.Conv1D(2, 3, 4, groups=0, rngs=_R(0)), "Conv1D: `groups`"),
        (lambda: jrnn.Conv2D(2, 3, 4, padding="causal", rngs=_R(0)), "Conv2D: `padding`"),
        (
            lambda: jrnn.Conv1D(2, 3, 4, strides=2, dilation_rate=2, rngs=_R(0)),
            "Conv1D: strides must be 1 where dilation_rate > 1",
        ),
        (lambda: jrnn.Conv1D(2, 3, 4, data_format="nhwc", rngs=_R(0)), "`data_format`"),
        (lambda: jrnn.MaxPooling1D(0), "MaxPooling1D: `pool_size`"),
        (lambda: jrnn.MaxPooling1D(2, strides=1.5), "MaxPooling1D: `strides`"),
        (lambda: jrnn.Dense(2.5, 3, rngs=_R(0)), "Dense: `units`"),
        (lambda: jrnn.Dense(0, 3, rngs=_R(0)), "Dense: `units`"),
        (lambda: jrnn.Dense("4", 3, rngs=_R(0)), "Dense: `units`"),
        (lambda: jrnn.Embedding(10.5, 4, rngs=_R(0)), "Embedding: `input_dim`"),
        (lambda: jrnn.Embedding(10, 0, rngs=_R(0)), "Embedding: `output_dim`"),
        (lambda: jrnn.RepeatVector(2.9), "RepeatVector: `n`"),
        (lambda: jrnn.RepeatVector(True), "RepeatVector: `n`"),
        (lambda: jrnn.Reshape((2, -1, -1)), "Reshape: target_shape"),
        (lambda: jrnn.Reshape((2.5,)), "Reshape: target_shape must be a tuple of ints"),
        (lambda: jrnn.Masking("a"), "Masking: mask_value must be a real number"),
        (lambda: jrnn.Concatenate(axis=1.0), "Concatenate: axis must be an int"),
        (lambda: jrnn.BatchNormalization(3, epsilon="a"), "epsilon must be a real number"),
        (lambda: jrnn.BatchNormalization(3, axis="a"), "axis must be a tuple of ints"),
        (lambda: jrnn.BatchNormalization(0), "`num_features`"),
        (lambda: jrnn.LayerNormalization((3, 4)), "param_shape must be 1 positive sizes"),
        (lambda: jrnn.Dense(2, 3, name=5, rngs=_R(0)), "Dense: `name` must be None or a str"),
        (lambda: jrnn.LSTM(2, 3, name=5, rngs=_R(0)), "LSTM: `name` must be None or a str"),
        (lambda: jrnn.LSTM(2, 3, dropout=0.5, seed="a", rngs=_R(0)), "`seed` must be None or"),
        (lambda: jrnn.LSTM(2, 3, seed=1.5, rngs=_R(0)), "`seed` must be None or an int"),
        (lambda: jrnn.LeakyReLU(None), "LeakyReLU: negative_slope must be a real number"),
        (lambda: jrnn.ReLU(max_value=-1), "ReLU: max_value must be >= 0; received -1"),
        (lambda: jrnn.ReLU(negative_slope=-0.5), "ReLU: negative_slope must be >= 0"),
        (lambda: jrnn.ReLU(threshold="a"), "ReLU: threshold must be a real number"),
        (lambda: jrnn.ELU("a"), "ELU: alpha must be a real number; received 'a'"),
        (lambda: jrnn.Softmax(axis=1.5), "Softmax: axis must be an int or a tuple of ints"),
        (lambda: jrnn.Softmax(axis=()), "Softmax: axis must be an int or a non-empty tuple"),
        (lambda: jrnn.Softmax(robust_masking=True), "robust_masking must be False unless keras2"),
        (lambda: jrnn.PReLU((None, 4)), r"PReLU: in_shape must be positive sizes .*\(axis 1\)"),
        (lambda: jrnn.PReLU((7, 4), shared_axes=3), r"PReLU: shared_axes must be axes in \[1, 2\]"),
        (lambda: jrnn.PReLU((7, 4), shared_axes=[1.0]), "PReLU: shared_axes must be a tuple of"),
        (lambda: jrnn.PReLU("7"), "PReLU: in_shape must be a tuple of sizes"),
        (lambda: jrnn.PReLU((7,), alpha_initializer="he_normal"), "draws random values"),
        (lambda: jrnn.ActivityRegularization(l1=-1), "ActivityRegularization: l1 must be >= 0"),
        (lambda: jrnn.ZeroPadding1D((1, -1)), "ZeroPadding1D: padding must be an int >= 0 or"),
        (lambda: jrnn.ZeroPadding1D(True), "ZeroPadding1D: padding must be"),
        (lambda: jrnn.ZeroPadding1D(1, "nwc"), "ZeroPadding1D: `data_format`"),
        (
            lambda: jrnn.Cropping1D((1, 2, 3)),
            r"Cropping1D: cropping must be .* received \(1, 2, 3\)",
        ),
        (lambda: jrnn.UpSampling1D(0), "UpSampling1D: `size` must be a positive integer"),
        (lambda: jrnn.UpSampling1D(1.5), "UpSampling1D: `size` must be a positive integer"),
        (lambda: jrnn.Identity(keras2="yes"), "Identity: `keras2`"),
    ],
)
def test_constructor_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


_X3 = np.ones((2, 5, 3), np.float32)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: jrnn.Add()(_X3), "Add: inputs must be a list of tensors; received 'one ndarray"),
        (lambda: jrnn.Add()([]), "at least 1 tensor"),
        (lambda: jrnn.Add()([_X3, _X3[:1]]), "tensors of one batch size"),
        (lambda: jrnn.Add()([_X3, _X3[:, :4]]), r"sizes are equal \(or 1\)"),
        (lambda: jrnn.Concatenate()([_X3, _X3[:, :4]]), "match except on axis 2"),
        (lambda: jrnn.Concatenate()([_X3, _X3[:, 0]]), "of one rank"),
        (lambda: jrnn.Concatenate(axis=3)([_X3, _X3]), "axis must be an axis of the 3-D"),
        (lambda: jrnn.Conv1D(2, 3, 3, rngs=_R(0))(_X3.astype(np.int32)), "floating-point"),
        (lambda: jrnn.Conv1D(2, 3, 4, rngs=_R(0))(_X3), r"3-D \(batch, \*spatial, 4\)"),
        (lambda: jrnn.Conv1D(2, 6, 3, rngs=_R(0))(_X3), "at least 6 steps"),
        (lambda: jrnn.Conv1D(2, 3, 3, dilation_rate=3, rngs=_R(0))(_X3), "at least 7 steps"),
        (lambda: jrnn.MaxPooling1D(6)(_X3), "at least 6 steps"),
        (lambda: jrnn.AveragePooling1D(2)(_X3[0]), "3-D"),
        (lambda: jrnn.GlobalMaxPooling1D()(_X3[0]), "3-D"),
        (lambda: jrnn.GlobalAveragePooling1D()(_X3[..., None]), "3-D"),
        (lambda: jrnn.Reshape((4,))(_X3), r"4 values per example"),
        (lambda: jrnn.Reshape((4, -1))(_X3), r"4 times an integer values"),
        (lambda: jrnn.Permute((2, 1))(_X3[..., None]), "3-D"),
        (lambda: jrnn.BatchNormalization(4)(_X3), r"sizes \(4,\) on axis"),
        (lambda: jrnn.LayerNormalization((4,))(_X3), r"sizes \(4,\) on axis"),
        (lambda: jrnn.Dropout(0.5, seed=0)(_X3.astype(np.int32), training=True), "floating-point"),
        (lambda: jrnn.Dense(2, 3, rngs=_R(0))(_X3.astype(np.complex64)), "real numbers"),
        (lambda: jrnn.Cropping1D((3, 2))(_X3), r"Cropping1D: inputs must be more than 5 steps"),
        (lambda: jrnn.ZeroPadding1D()(_X3[0]), r"ZeroPadding1D: inputs must be 3-D"),
        (lambda: jrnn.UpSampling1D()(_X3[..., None]), r"UpSampling1D: inputs must be 3-D"),
        (lambda: jrnn.PReLU((5, 4))(_X3), r"PReLU: inputs must be shape \(batch, 5, 4\)"),
        (lambda: jrnn.PReLU((5, 3), shared_axes=1)(_X3[0]), r"shape \(batch, \*, 3\)"),
        (lambda: jrnn.PReLU((5, 3))(_X3.astype(np.complex64)), "real numbers"),
        (
            lambda: jrnn.Softmax()(_X3, mask=np.ones((2, 5), bool)),
            r"Softmax: mask must be broadcastable to the inputs' shape \(2, 5, 3\)",
        ),
        (lambda: jrnn.Softmax()(_X3, mask=np.ones((1, 2, 5, 3))), "no more axes"),
        (lambda: jrnn.Softmax(axis=3)(_X3), "Softmax: axis must be distinct axes of the 3-D"),
        (lambda: jrnn.Softmax(axis=(1, -2))(_X3), "Softmax: axis must be distinct axes"),
    ],
)
def test_call_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_keras_spellings_accepted():
    """Keras lowercases padding and data_format (None is channels_last) and takes NumPy
    bools; Dropout(1.0) drops everything; a one-input merge is its input."""
    x = _x(2, 6, 3)
    a = jrnn.Conv1D(2, 3, 3, padding="SAME", data_format=None, rngs=_R(0))
    b = jrnn.Conv1D(2, 3, 3, padding="same", rngs=_R(0))
    np.testing.assert_array_equal(np.asarray(a(x)), np.asarray(b(x)))
    assert jrnn.MaxPooling1D(2, padding="Valid", data_format="CHANNELS_LAST")(x).shape == (2, 3, 3)
    assert jrnn.Flatten(data_format=None)(x).shape == (2, 18)
    assert jrnn.LSTM(2, 3, use_bias=np.True_, rngs=_R(0)).cell.use_bias is True
    assert jrnn.Dense(2, 3, use_bias=np.False_, rngs=_R(0)).bias is None
    np.testing.assert_array_equal(jrnn.Dropout(1.0, seed=0)(x, training=True), np.zeros_like(x))
    np.testing.assert_array_equal(jrnn.Add()([x]), x)
    assert jrnn.LayerNormalization(3)(x).shape == x.shape


def test_dense_dtypes_as_keras():
    """Keras' float32 policy: integer inputs give float32 outputs (the product promotes
    them), float16 inputs are computed in float32; Conv refuses integers."""
    dense = L.Dense(2)
    xi = np.arange(6, dtype=np.int32).reshape(2, 3)
    dense.build((None, 3))
    got = jrnn.Dense(2, 3, rngs=_R(0))
    got.kernel[...] = jnp.asarray(dense.kernel.numpy())
    for x in (xi, xi.astype(np.float16), xi.astype(bool)):
        y = got(x)
        assert y.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(y), np.asarray(dense(x)), rtol=1e-6)
    with pytest.raises(ValueError, match="floating-point"):
        jrnn.Conv1D(2, 1, 3, rngs=_R(0))(xi[:, None])


@pytest.mark.parametrize(
    ("shapes", "kind"),
    [
        ([(2, 5, 3), (2, 3)], "Add"),  # Keras adds the missing axis after the batch
        ([(2, 5, 3), (2, 1, 3)], "Multiply"),
        ([(2, 2, 3), (2, 3)], "Average"),  # NumPy's rule would align batch with time
        ([(2, 5, 3), (2, 5, 1)], "Maximum"),
        ([(2, 5, 3), (2, 5, 3), (2, 3)], "Subtract"),
    ],
)
def test_merge_broadcasting_as_keras(shapes, kind):
    xs = [_x(*s, seed=i) for i, s in enumerate(shapes)]
    if kind == "Subtract":
        with pytest.raises(ValueError, match="exactly 2"):
            jrnn.Subtract()(xs)
        return
    expected = getattr(L, kind)()(xs)
    np.testing.assert_allclose(
        np.asarray(getattr(jrnn, kind)()(xs)), np.asarray(expected), rtol=1e-6
    )


def test_numpy_config_values_cache():
    """Two layers whose configs differ only by NumPy values run (their configs are cache
    keys of the eager call) and keep their own values."""
    x = _x(2, 5, 3)
    outs = []
    for value in (np.ones(8), np.zeros(8)):
        init = {"class_name": "Constant", "config": {"value": value}}
        layer = jrnn.LSTM(2, 3, unit_forget_bias=False, bias_initializer=init, rngs=_R(0))
        outs.append(np.asarray(layer(x)))
    assert not np.allclose(outs[0], outs[1])
    a = jrnn.ConvLSTM1D(2, [3], in_channels=3, rngs=_R(0))
    b = jrnn.ConvLSTM1D(2, np.int64(3), in_channels=3, rngs=_R(0))
    z = _x(2, 4, 8, 3)
    assert a(z).shape == b(z).shape == (2, 6, 2)


def _attention_model(kind, kw, call_kw, lib=keras):
    """Two masked sequences -> recurrent encoders -> attention -> LSTM (masks observable)."""
    La = lib.layers
    a, b = lib.Input((7, 3)), lib.Input((6, 3))
    q = La.LSTM(4, return_sequences=True)(La.Masking()(a))
    v = La.GRU(4, return_sequences=True)(La.Masking()(b))
    o = getattr(La, kind)(**kw)([q, v], **call_kw)
    outs = list(o) if isinstance(o, (list, tuple)) else [o]
    return lib.Model([a, b], [La.LSTM(3)(outs[0]), *outs])


def _attention_inputs():
    x, y = _x(2, 7, 3), _x(2, 6, 3, seed=4)
    x[0, 5:] = 0.0
    y[1, 3:] = 0.0
    return [x, y]


ATTENTION_CASES = [
    ("Attention", {}, {}),
    ("Attention", {"use_scale": True}, {"use_causal_mask": True}),
    ("Attention", {"score_mode": "concat", "use_scale": True}, {}),
    ("Attention", {"score_mode": "concat"}, {"return_attention_scores": True}),
    ("AdditiveAttention", {}, {}),
    ("AdditiveAttention", {"use_scale": False}, {"use_causal_mask": True}),
]


@pytest.mark.parametrize("kind,kw,call_kw", ATTENTION_CASES)
def test_attention(kind, kw, call_kw, tmp_path):
    model = _attention_model(kind, kw, call_kw)
    x = _attention_inputs()
    _parity(model, x)
    model.save(tmp_path / "att.keras")
    expected = model(x)
    for got, exp in zip(importers.load(tmp_path / "att.keras")(x), expected, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(exp), atol=1e-5)
    importers.save_keras(importers.load(model), tmp_path / "back.keras")
    back = keras.saving.load_model(tmp_path / "back.keras")
    for got, exp in zip(back(x), expected, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(exp), atol=1e-5)


@pytest.mark.parametrize("kind,kw,call_kw", ATTENTION_CASES[:2] + ATTENTION_CASES[4:5])
def test_attention_tf_keras(kind, kw, call_kw):
    _parity(_attention_model(kind, kw, call_kw, lib=tf_keras), _attention_inputs())


def test_attention_dropout_training():
    m = jrnn.Attention(dropout=0.5, rngs=nnx.Rngs(dropout=3))
    q, v = jnp.ones((2, 3, 4)), jnp.asarray(_x(2, 5, 4))
    np.testing.assert_allclose(m([q, v]), jrnn.Attention()([q, v]))
    out, w = m([q, v], training=True, return_attention_scores=True)
    assert 0 < int(jnp.sum(w == 0)) < w.size
    np.testing.assert_allclose(out, w @ v, rtol=1e-6)


def test_attention_bad_arguments():
    with pytest.raises(ValueError, match="score_mode must be 'dot' or 'concat'; received 'x'"):
        jrnn.Attention(score_mode="x")
    with pytest.raises(ValueError, match="inputs must be a list"):
        jrnn.Attention()(jnp.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="dim must be"):
        jrnn.AdditiveAttention()
    with pytest.raises(
        ValueError, match=r"received a list of 1 \[an array of shape \(1, 2, 3\) \(float32\)\]"
    ):
        jrnn.Attention()([jnp.ones((1, 2, 3))])  # the array described, not printed
    with pytest.raises(ValueError, match=r"feature size must be dim=4 .*shape \(2, 3, 5\)"):
        jrnn.AdditiveAttention(4)([jnp.ones((2, 3, 5)), jnp.ones((2, 6, 5))])


@pytest.mark.parametrize("kind", ["Attention", "AdditiveAttention"])
def test_attention_dtype_policies_as_keras(kind):
    """``dtype="mixed_bfloat16"``: float32 weights, inputs autocast, bfloat16 out, as Keras."""
    kw = {"use_scale": True} if kind == "Attention" else {}
    q, v = _x(2, 3, 4), _x(2, 5, 4, seed=2)
    ref = getattr(L, kind)(dtype="mixed_bfloat16", **kw)
    want = ref([q, v])
    layer = getattr(jrnn, kind)(
        **({"dim": 4} if kind != "Attention" else {}), dtype="mixed_bfloat16", **kw
    )
    for p, w in zip(layer.keras_weights(), ref.get_weights(), strict=True):
        assert p[...].dtype == jnp.float32
        p[...] = jnp.asarray(w)
    got = layer([q, v])
    assert got.dtype == jnp.bfloat16 and "bfloat16" in str(want.dtype)
    np.testing.assert_allclose(
        np.asarray(got, np.float32), np.asarray(want, np.float32), atol=2e-2, rtol=2e-2
    )


@pytest.mark.parametrize("cls", ["Multiply", "Maximum", "Minimum", "Add", "Average"])
@pytest.mark.parametrize("masked", ["first", "second", "both"])
def test_merges_with_masks(cls, masked):
    """Keras 3.15's masked merges: Multiply counts masked steps as 1, Maximum/Minimum let
    only unmasked steps compete; the output mask is the OR of the input masks."""
    a, b = keras.Input((7, 4)), keras.Input((7, 4))
    ha = L.Masking()(a) if masked in ("first", "both") else a
    hb = L.Masking()(b) if masked in ("second", "both") else b
    h = getattr(L, cls)()([L.Dense(4)(ha), L.Dense(4)(hb)])
    out = L.LSTM(5, return_sequences=True)(h)
    x, y = _x(2, 7, 4), _x(2, 7, 4, seed=3)
    x[0, 4:] = 0.0
    y[0, 2:5] = 0.0
    y[1, :3] = 0.0
    _parity(keras.Model([a, b], [out, h]), [x, y])


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_policies_carried_over(policy):
    """Every layer keeps its Keras policy: float32 variables, 16-bit compute, outputs in the
    compute dtype; normalisation layers compute in float32 as Keras does."""
    kw = {"dtype": policy}
    a = keras.Input((7,), dtype="int32")
    h = L.Embedding(10, 6, mask_zero=True, **kw)(a)
    q = L.LSTM(4, return_sequences=True, **kw)(h)
    q = L.LayerNormalization(**kw)(L.BatchNormalization(**kw)(q))
    o = L.Attention(use_scale=True, **kw)([q, q])
    head = L.Dense(3, activation="softmax", name="head", **kw)
    out = head(L.Conv1D(4, 3, padding="same", **kw)(o))
    model = keras.Model(a, out)
    _rand(model)
    ids = _ids()
    exp = np.asarray(model(ids))
    jm = importers.load(model)
    assert jm.layers["head"].kernel[...].dtype == jnp.float32
    got = jm(ids)
    assert got.dtype == exp.dtype == np.dtype(policy.split("_")[1])
    np.testing.assert_allclose(np.asarray(got, np.float32), exp.astype(np.float32), atol=3e-2)


def test_mixed_precision_tagger_under_a_global_policy():
    """A tagger built under keras' global mixed_bfloat16 policy (Embedding, Bidirectional
    LSTM, TimeDistributed Dense): same dtype and values as Keras."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        ids = keras.Input((7,), dtype="int32")
        h = L.Embedding(10, 6, mask_zero=True)(ids)
        h = L.Bidirectional(L.LSTM(5, return_sequences=True))(h)
        model = keras.Model(ids, L.TimeDistributed(L.Dense(3, activation="softmax"))(h))
    finally:
        keras.config.set_dtype_policy(previous)
    _rand(model)
    exp = np.asarray(model(_ids()))
    got = importers.load(model)(_ids())
    assert got.dtype == exp.dtype == np.dtype("bfloat16")
    np.testing.assert_allclose(np.asarray(got, np.float32), exp.astype(np.float32), atol=2e-2)


@pytest.mark.parametrize(
    "jrnn_cls,keras_cls",
    [
        (jrnn.Dense, keras.layers.Dense),
        (jrnn.Embedding, keras.layers.Embedding),
        (jrnn.Conv1D, keras.layers.Conv1D),
        (jrnn.BatchNormalization, keras.layers.BatchNormalization),
        (jrnn.LayerNormalization, keras.layers.LayerNormalization),
        (jrnn.PReLU, keras.layers.PReLU),
    ],
)
def test_initializer_arguments_and_defaults_are_keras(jrnn_cls, keras_cls, tmp_path):
    """Every `*_initializer` Keras' layer takes, with Keras' default; hand-built layers
    write the ones given to their Keras config."""
    import inspect as pyinspect

    def defaults(fn):
        return {
            k: p.default
            for k, p in pyinspect.signature(fn).parameters.items()
            if k.endswith("_initializer")
        }

    assert defaults(jrnn_cls.__init__) == defaults(keras_cls.__init__)
    r = nnx.Rngs(0)
    dense = jrnn.Dense(3, 4, kernel_initializer="orthogonal", bias_initializer="ones", rngs=r)
    np.testing.assert_allclose(dense.kernel[...].T @ dense.kernel[...], np.eye(3), atol=1e-5)
    np.testing.assert_array_equal(dense.bias[...], np.ones(3))
    norm = jrnn.BatchNormalization(3, moving_variance_initializer=jrnn.initializers.Constant(2.0))
    np.testing.assert_array_equal(norm.moving_variance[...], np.full(3, 2.0))
    model = importers.keras_sequential([dense, norm], (4,))
    importers.save_keras(model, tmp_path / "init.keras")
    loaded = keras.saving.load_model(tmp_path / "init.keras")
    assert isinstance(loaded.layers[0].kernel_initializer, keras.initializers.Orthogonal)
    assert isinstance(loaded.layers[1].moving_variance_initializer, keras.initializers.Constant)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match=r"`gamma_initializer`='he_normal' draws random values"):
        jrnn.LayerNormalization((3,), gamma_initializer="he_normal")
    with pytest.raises(ValueError, match=r"kernel_initializer"):
        jrnn.Dense(3, 4, kernel_initializer="no_such_initializer", rngs=r)


@pytest.mark.parametrize("cls", ["Add", "Multiply", "Maximum", "Concatenate"])
def test_tf_keras_merges_keep_keras2_mask_rules(cls):
    """tf.keras merges read no masks and AND the input masks (Keras 3: OR, and Multiply,
    Maximum, Minimum mask their values): two differently masked branches into a masked
    SimpleRNN were up to 1.02 off when imported with Keras 3's rules."""
    K = tf_keras.layers
    a, b = tf_keras.Input((6,), dtype="int32"), tf_keras.Input((6,), dtype="int32")
    ea = K.Embedding(9, 4, mask_zero=True)(a)
    eb = K.Embedding(9, 4, mask_zero=True)(b)
    out = K.SimpleRNN(3, return_sequences=True)(getattr(K, cls)()([ea, eb]))
    model = tf_keras.Model([a, b], out)
    ids_a = np.array([[1, 2, 0, 3, 0, 4], [5, 0, 6, 7, 8, 0]], np.int32)
    ids_b = np.array([[0, 2, 3, 0, 1, 1], [5, 5, 0, 7, 0, 2]], np.int32)
    _parity(model, [ids_a, ids_b])


def test_tf_keras_fused_batch_norm_updates_the_unbiased_moving_variance():
    """tf.keras' default fused kernel (4-D input, last axis) moves the moving variance
    toward var * n / (n - 1); Keras 3 (and 3-D inputs) toward var."""
    K = tf_keras.layers
    inp = tf_keras.Input((5, 4, 3))
    model = tf_keras.Model(inp, K.BatchNormalization(momentum=0.5, name="bn")(K.Conv2D(3, 2)(inp)))
    _rand(model)
    x = _x(6, 5, 4, 3)
    imported = importers.load(model)
    model(x, training=True)
    imported(x, training=True)
    for got, want in zip(
        importers.keras_params(imported.get_layer("bn"))[-2:], model.get_layer("bn").weights[-2:]
    ):
        np.testing.assert_allclose(np.asarray(got[...]), want.numpy(), rtol=1e-5)


def test_activity_regularizer_on_a_weightless_layer_is_refused():
    """Keras 3 writes activity_regularizer for every layer and adds its penalty; jrnn's
    weightless core layers have none to add, so the layer is refused, not the term lost."""
    inp = keras.Input((5, 3))
    h = L.Activation("tanh", activity_regularizer="l2", name="act")(
        L.LSTM(4, return_sequences=True)(inp)
    )
    with pytest.raises(UnsupportedLayerError, match=r"'act'.*activity_regularizer"):
        importers.load(keras.Model(inp, h))


def test_imported_dropout_layers_draw_their_own_masks():
    """Keras gives every layer its own seed generator: two unseeded Dropouts (or LSTMs with
    dropout) of one model drop different units; two with one Keras ``seed`` the same."""
    i = keras.Input((6, 3))
    model = keras.Model(i, L.Subtract()([L.Dropout(0.5)(i), L.Dropout(0.5)(i)]))
    x = np.ones((4, 6, 3), np.float32)
    assert np.abs(np.asarray(importers.load(model)(x, training=True))).max() > 0
    seeded = keras.Model(i, L.Subtract()([L.Dropout(0.5, seed=3)(i), L.Dropout(0.5, seed=3)(i)]))
    np.testing.assert_array_equal(importers.load(seeded)(x, training=True), 0.0)
    a, b = (
        L.LSTM(4, dropout=0.5, recurrent_dropout=0.5),
        L.LSTM(4, dropout=0.5, recurrent_dropout=0.5),
    )
    twins = keras.Model(i, L.Subtract()([a(i), b(i)]))
    b.set_weights(a.get_weights())
    assert np.abs(np.asarray(importers.load(twins)(x, training=True))).max() > 0
    cell = L.RNN(L.LSTMCell(4, dropout=0.5, recurrent_dropout=0.5), return_sequences=True)
    bidir = importers.load(keras.Model(i, L.Bidirectional(cell, name="bi")(i))).layers["bi"]
    masks = [d.cell.dropout_masks(4, True) for d in (bidir.forward_layer, bidir.backward_layer)]
    assert not np.array_equal(masks[0][0], masks[1][0])  # the cells' names repeat in Keras
    with pytest.raises(ValueError, match=r"`rate`=0.5 needs random numbers"):
        jrnn.Dropout(0.5)
    assert jrnn.Dropout(0.5, seed=1).seed == 1


_POLICY_LAYERS = {  # jrnn layer, its Keras twin, an input
    "Dense": (
        lambda **kw: jrnn.Dense(5, 3, activation="tanh", **kw),
        lambda **kw: L.Dense(5, activation="tanh", **kw),
        lambda: _x(2, 7, 3),
    ),
    "Conv1D": (
        lambda **kw: jrnn.Conv1D(4, 3, 3, padding="causal", **kw),
        lambda **kw: L.Conv1D(4, 3, padding="causal", **kw),
        lambda: _x(2, 7, 3),
    ),
    "Embedding": (
        lambda **kw: jrnn.Embedding(10, 4, **kw),
        lambda **kw: L.Embedding(10, 4, **kw),
        _ids,
    ),
    "LayerNormalization": (
        lambda **kw: jrnn.LayerNormalization(3, **kw),
        lambda **kw: L.LayerNormalization(**kw),
        lambda: _x(2, 7, 3),
    ),
    "BatchNormalization": (
        lambda **kw: jrnn.BatchNormalization(3, **kw),
        lambda **kw: L.BatchNormalization(**kw),
        lambda: _x(2, 7, 3),
    ),
    "PReLU": (
        lambda **kw: jrnn.PReLU((7, 3), shared_axes=[1], **kw),
        lambda **kw: L.PReLU(shared_axes=[1], **kw),
        lambda: _x(2, 7, 3),
    ),
}


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "bfloat16", "float64"])
@pytest.mark.parametrize("kind", list(_POLICY_LAYERS))
def test_core_layer_dtype_policies_as_keras(kind, policy):
    """``dtype=`` as Keras': variables in the policy's variable dtype, outputs in its
    compute dtype, values as Keras' layer built with the same policy and weights."""
    make, make_keras, inputs = _POLICY_LAYERS[kind]
    variable = "float32" if policy.startswith("mixed") else policy
    compute = policy.removeprefix("mixed_")
    x = inputs()
    if policy == "float64" and x.dtype == np.float32:  # else LayerNormalization's float32
        x = x.astype(np.float64)  # maths (Keras does not autocast its inputs) differ by 1e-6
    ref = make_keras(dtype=policy)
    ref(x)
    _rand(keras.Sequential([ref]))
    with jax.enable_x64(policy == "float64"):
        layer = make(dtype=policy, rngs=_R(0))
        assert (layer.compute_dtype, layer.dtype_policy) == (compute, policy)
        for p, w, kw in zip(layer.keras_weights(), ref.get_weights(), ref.weights, strict=True):
            assert jnp.dtype(p[...].dtype).name == keras.backend.standardize_dtype(kw.dtype)
            assert jnp.dtype(p[...].dtype).name == variable
            p[...] = jnp.asarray(w)
        got, want = layer(x), ref(x)
        assert jnp.dtype(got.dtype).name == keras.backend.standardize_dtype(want.dtype) == compute
        tol = 1e-10 if policy == "float64" else 2e-2
        np.testing.assert_allclose(
            np.asarray(got, np.float64), np.asarray(want, np.float64), atol=tol, rtol=tol
        )
        if kind == "BatchNormalization":  # the moving statistics' update, in their dtype
            got, want = layer(x, training=True), ref(x, training=True)
            for p, w in zip(layer.keras_weights(), ref.get_weights(), strict=True):
                assert jnp.dtype(p[...].dtype).name == variable
                np.testing.assert_allclose(
                    np.asarray(p[...], np.float64), np.asarray(w, np.float64), atol=tol, rtol=tol
                )


def test_weightless_layers_autocast_as_keras():
    """Keras casts a weightless layer's floating inputs to its dtype; jrnn's take ``dtype=``
    too, and without it keep the inputs' dtype."""
    x = _x(2, 7, 4)
    for layer, ref in [
        (
            jrnn.Activation("relu", dtype="mixed_bfloat16"),
            L.Activation("relu", dtype="mixed_bfloat16"),
        ),
        (jrnn.GlobalAveragePooling1D(dtype="bfloat16"), L.GlobalAveragePooling1D(dtype="bfloat16")),
        (jrnn.Dropout(0.5, seed=1, dtype="mixed_bfloat16"), L.Dropout(0.5, dtype="mixed_bfloat16")),
        (jrnn.LeakyReLU(dtype="bfloat16"), L.LeakyReLU(dtype="bfloat16")),
        (jrnn.ZeroPadding1D(dtype="mixed_bfloat16"), L.ZeroPadding1D(dtype="mixed_bfloat16")),
        (
            jrnn.ActivityRegularization(0.1, dtype="bfloat16"),
            L.ActivityRegularization(0.1, dtype="bfloat16"),
        ),
    ]:
        got, want = layer(x), ref(x)
        assert (
            got.dtype == jnp.bfloat16 and keras.backend.standardize_dtype(want.dtype) == "bfloat16"
        )
        np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))
    assert jrnn.Add(dtype="bfloat16")([x, x]).dtype == jnp.bfloat16
    assert jrnn.Activation("relu")(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_dtype_arguments_are_checked():
    with pytest.raises(
        ValueError, match=r"Dense: `dtype` must be a floating dtype.*received 'int32'"
    ):
        jrnn.Dense(2, 3, dtype="int32", rngs=_R(0))
    with pytest.raises(ValueError, match="Embedding: `param_dtype` must be a floating dtype"):
        jrnn.Embedding(4, 2, param_dtype="mixed", rngs=_R(0))
    with pytest.raises(ValueError, match="Flatten: `dtype` must be a floating dtype"):
        jrnn.Flatten(dtype="bool")
    with pytest.raises(ValueError, match="float64 needs JAX's 64-bit mode"):
        jrnn.LayerNormalization(3, dtype="float64")
    with jax.enable_x64(True):
        layer = jrnn.Conv1D(2, 1, 3, dtype="float64", rngs=_R(0))
    with pytest.raises(ValueError, match="Conv1D: dtype float64 needs JAX's 64-bit mode"):
        layer(_x(2, 4, 3))


def test_hand_built_policies_round_trip(tmp_path):
    """jrnn layers built with ``dtype="mixed_bfloat16"`` -> keras_sequential -> save_keras:
    Keras loads the policy (float32 variables, bfloat16 outputs) and importers.load keeps it."""
    kw = {"dtype": "mixed_bfloat16", "rngs": _R(0)}
    layers = [
        jrnn.Embedding(10, 4, **kw),
        jrnn.Conv1D(4, 3, 4, padding="same", **kw),
        jrnn.LayerNormalization(4, dtype="mixed_bfloat16"),
        jrnn.BatchNormalization(4, dtype="mixed_bfloat16"),
        jrnn.Dense(3, 4, activation="softmax", name="head", **kw),
    ]
    model = importers.keras_sequential(layers, (None,), input_dtype="int32")
    importers.save_keras(model, tmp_path / "mixed.keras")
    ids = _ids()
    loaded = keras.saving.load_model(tmp_path / "mixed.keras")
    assert {layer.dtype_policy.name for layer in loaded.layers} == {"mixed_bfloat16"}
    want = loaded(ids)
    assert keras.backend.standardize_dtype(want.dtype) == "bfloat16"
    again = importers.load(tmp_path / "mixed.keras")
    assert again.layers["head"].dtype_policy == "mixed_bfloat16"
    assert again.layers["head"].kernel[...].dtype == jnp.float32
    for got in (model(ids), again(ids)):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_allclose(
            np.asarray(got, np.float32), np.asarray(want, np.float32), atol=2e-2, rtol=0
        )
    # A param_dtype override Keras cannot name ("bfloat16->float32") is refused, not written.
    # Recurrent layers too (they raised a ValueError about a `dtype` nobody passed).
    for odd in (
        jrnn.Dense(3, 4, dtype="float32", param_dtype="bfloat16", rngs=_R(0)),
        jrnn.LSTM(3, 4, param_dtype="bfloat16", rngs=_R(0)),
        jrnn.Bidirectional(jrnn.GRU(3, 4, param_dtype="bfloat16", rngs=_R(0)), rngs=_R(1)),
    ):
        refused = r"bfloat16->float32.*no Keras 3 equivalent"
        with pytest.raises(importers.errors.UnsupportedLayerError, match=refused):
            importers.keras_sequential([odd], (5, 4))


# -- activation, identity, padding layers ---------------------------------------------------

# The layer from a Keras library (keras or tf_keras) and whether Keras 3 passes its mask on.
_SMALL_LAYERS = {
    "leaky_relu": (lambda lib: lib.layers.LeakyReLU(0.15), True),
    "leaky_relu_default": (lambda lib: lib.layers.LeakyReLU(), True),
    "relu": (lambda lib: lib.layers.ReLU(), True),
    "relu_args": (lambda lib: lib.layers.ReLU(0.4, 0.2, 0.1), True),
    "relu6_leaky": (lambda lib: lib.layers.ReLU(6.0, 0.3), True),
    "elu": (lambda lib: lib.layers.ELU(0.6), True),
    "softmax": (lambda lib: lib.layers.Softmax(), True),
    "softmax_axes": (lambda lib: lib.layers.Softmax(axis=[1, 2]), True),
    "prelu": (lambda lib: lib.layers.PReLU(), True),
    "prelu_shared": (lambda lib: lib.layers.PReLU(shared_axes=[1]), True),
    "identity": (lambda lib: lib.layers.Identity(), True),
    "activity_reg": (lambda lib: lib.layers.ActivityRegularization(0.01, 0.02), True),
    "zero_padding": (lambda lib: lib.layers.ZeroPadding1D((1, 2)), False),
    "zero_padding_int": (lambda lib: lib.layers.ZeroPadding1D(2), False),
    "zero_padding_cf": (
        lambda lib: lib.layers.ZeroPadding1D((0, 3), data_format="channels_first"),
        False,
    ),
    "cropping": (lambda lib: lib.layers.Cropping1D((2, 1)), False),
    "cropping_end0": (lambda lib: lib.layers.Cropping1D((1, 0)), False),
    "upsampling": (lambda lib: lib.layers.UpSampling1D(3), False),
}


def _small_model(lib, make, masked: bool):
    """ids -> Embedding(mask_zero) -> layer -> LSTM(return_sequences) when ``masked`` (the
    LSTM sees the mask the layer passes on, or none), else a (7, 4) float input -> layer."""
    La = lib.layers
    if masked:
        body = [La.Embedding(10, 4, mask_zero=True), make(lib)]
        body.append(La.LSTM(5, return_sequences=True))
        return lib.Sequential([lib.Input((7,), dtype="int32"), *body])
    return lib.Sequential([lib.Input((7, 4)), make(lib)])


@pytest.mark.parametrize("kind", list(_SMALL_LAYERS))
def test_small_layers_keras3_live_and_files(kind, tmp_path):
    """Live, .keras and legacy .h5, masked (Embedding(mask_zero) -> layer -> LSTM: the mask
    passed on or dropped as Keras 3) and on negative float inputs; activity penalties too."""
    make, passes_mask = _SMALL_LAYERS[kind]
    floats = _small_model(keras, make, masked=False)
    x = _x(2, 7, 4) * 2.0
    got = _parity(floats, x)[0]
    assert (x < 0).any() and got.shape == floats(x).shape
    # A (batch, time) mask does not broadcast to Softmax's (batch, time, 4) inputs: Keras
    # refuses the model (masked Softmax: test_softmax_mask_keras3).
    model = floats if kind.startswith("softmax") else _small_model(keras, make, masked=True)
    data = x if kind.startswith("softmax") else _ids()
    _parity(model, data)
    if model is not floats:  # the LSTM's output mask is the one it was given
        keras_mask = getattr(model(data), "_keras_mask", None)
        assert (keras_mask is not None) == passes_mask
        jrnn_mask = importers.load(model).compute_mask(data)
        assert (jrnn_mask is not None) == passes_mask
        if passes_mask:
            np.testing.assert_array_equal(np.asarray(jrnn_mask), np.asarray(keras_mask))
    if kind == "activity_reg":
        jm = importers.load(floats)
        jm(x)
        np.testing.assert_allclose(
            float(jrnn.regularization_loss(jm)), float(sum(floats.losses)), rtol=1e-6
        )
    expected = np.asarray(model(data))
    for name in ("m.keras", "m.h5"):
        model.save(tmp_path / name)
        np.testing.assert_allclose(
            np.asarray(importers.load(tmp_path / name)(data)), expected, atol=1e-5
        )


_TF_KERAS_CHAINS = {  # ids (masked) or floats -> the layers (tf.keras has no mask errors here)
    "masked_activations": lambda La: [
        La.Embedding(10, 4, mask_zero=True),
        La.LeakyReLU(0.15),
        La.ReLU(0.4, 0.2, 0.1),
        La.ELU(0.6),
        La.PReLU(shared_axes=[1]),
        La.ActivityRegularization(0.01, 0.02),
        La.LSTM(5, return_sequences=True),  # masked: the mask passed through them all
        La.ZeroPadding1D((1, 2)),
        La.LSTM(3, return_sequences=True),  # unmasked: ZeroPadding1D dropped it
    ],
    "masked_reshaping": lambda La: [
        La.Embedding(10, 4, mask_zero=True),
        La.LeakyReLU(),
        La.ReLU(6.0, 0.3),
        La.PReLU(),
        La.Cropping1D((2, 1)),
        La.UpSampling1D(3),
        La.ZeroPadding1D(2),
        La.LSTM(3, return_sequences=True),
    ],
    "floats": lambda La: [
        La.ReLU(),
        La.Cropping1D((1, 0)),
        La.Softmax(axis=[1, 2]),
        La.Dense(3),
        La.Softmax(),
    ],
}


@pytest.mark.parametrize("chain", list(_TF_KERAS_CHAINS))
def test_small_layers_tf_keras_live_and_h5(chain, tmp_path):
    """tf.keras' twins (LeakyReLU's ``alpha``, NumPy-scalar ReLU arguments, no
    ZeroPadding1D data_format, activity penalties divided by the batch), live and from a
    legacy .h5 file, masks passed on and dropped as tf.keras does."""
    floats = chain == "floats"
    first = tf_keras.Input((7, 4)) if floats else tf_keras.Input((7,), dtype="int32")
    model = tf_keras.Sequential([first, *_TF_KERAS_CHAINS[chain](tf_keras.layers)])
    data = _x(2, 7, 4) * 2.0 if floats else _ids()
    _parity(model, data)
    if chain == "masked_activations":
        jm = importers.load(model)
        jm(data)
        model(data)
        np.testing.assert_allclose(
            float(jrnn.regularization_loss(jm)), float(sum(model.losses)), rtol=1e-6
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tf_keras' "HDF5 is legacy" notice
        model.save(tmp_path / "m.h5")
    np.testing.assert_allclose(
        np.asarray(importers.load(tmp_path / "m.h5")(data)), model(data).numpy(), atol=1e-5
    )


def test_small_layers_save_keras_round_trip(tmp_path):
    """Imported (Keras 3 and tf.keras) models with every new layer -> save_keras -> Keras 3
    loads the same outputs; tf.keras' LeakyReLU ``alpha`` is written as ``negative_slope``."""
    x = _x(2, 7, 4) * 2.0
    for lib in (keras, tf_keras):
        La = lib.layers
        inp = lib.Input((7, 4))
        h = La.PReLU(shared_axes=[1])(La.LeakyReLU(0.2)(inp))
        h = La.ZeroPadding1D((1, 2))(La.ELU(0.5)(La.ReLU(0.9, 0.1, 0.05)(h)))
        h = La.UpSampling1D(2)(La.Cropping1D((2, 1))(h))
        h = La.ActivityRegularization(l1=0.01)(h)
        out = La.Softmax(axis=1)(La.Dense(3)(h))
        if lib is keras:
            out = La.Identity()(out)
        model = lib.Model(inp, out)
        _rand(model)
        expected = np.asarray(model(x))
        path = tmp_path / f"{lib.__name__}.keras"
        importers.save_keras(importers.load(model), path)
        back = keras.saving.load_model(path)
        np.testing.assert_allclose(np.asarray(back(x)), expected, atol=1e-5)
        leaky = next(layer for layer in back.layers if isinstance(layer, L.LeakyReLU))
        assert leaky.negative_slope == pytest.approx(0.2)


def test_small_layers_keras_sequential(tmp_path):
    """Hand-built jrnn layers -> keras_sequential -> save_keras -> keras.saving.load_model."""
    prelu = jrnn.PReLU((None, 4), shared_axes=1, alpha_regularizer="l2", rngs=_R(0))
    prelu.alpha[...] = jnp.asarray(_x(1, 4, seed=5))
    layers = [
        jrnn.ZeroPadding1D((1, 2)),
        jrnn.Cropping1D(1),
        jrnn.UpSampling1D(2),
        jrnn.LeakyReLU(0.1),
        prelu,
        jrnn.ReLU(3.0, 0.2, 0.5),
        jrnn.ELU(0.7),
        jrnn.Identity(),
        jrnn.ActivityRegularization(0.01),
        jrnn.Softmax(axis=(1, 2)),
    ]
    model = importers.keras_sequential(layers, (7, 4))
    importers.save_keras(model, tmp_path / "small.keras")
    loaded = keras.saving.load_model(tmp_path / "small.keras")
    assert [type(layer).__name__ for layer in loaded.layers] == [
        type(layer).__name__ for layer in layers
    ]
    x = _x(2, 7, 4) * 2.0
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)
    assert loaded.layers[4].alpha.shape == (1, 4)
    assert isinstance(loaded.layers[4].alpha_regularizer, keras.regularizers.L2)
    model(x)
    loaded(x)
    np.testing.assert_allclose(  # the activity penalty, divided by the batch size
        float(model.layers["activity_regularization"].activity_loss.get_value()),
        float(sum(loaded.layers[8].losses)),
        rtol=1e-6,
    )
    for layer in (jrnn.Softmax(keras2=True), jrnn.Identity(keras2=True)):
        with pytest.raises(UnsupportedLayerError, match=r"keras2=True is tf\.keras' mask rule"):
            importers.keras_sequential([layer], (7, 4))


def _softmax_inputs():
    scores = _x(2, 4, 5) * 3.0
    mask = np.random.default_rng(7).random((2, 1, 5)) > 0.4
    mask[0, 0, 0] = True
    mask[1, 0, :] = False  # a fully masked row
    return scores, mask


def _softmax_model(lib, **kw):
    scores, mask = lib.Input((4, 5)), lib.Input((1, 5), dtype="bool")
    return lib.Model([scores, mask], lib.layers.Softmax(**kw)(scores, mask=mask))


def test_softmax_mask_keras3(tmp_path):
    """Keras 3.15: masked logits -1e9, masked outputs zeroed (a fully masked row: zeros),
    the mask broadcast from (batch, 1, keys); live and .keras."""
    scores, mask = _softmax_inputs()
    model = _softmax_model(keras)
    got = _parity(model, [scores, mask], randomize=False)[0]
    np.testing.assert_array_equal(np.asarray(got)[1], 0.0)
    model.save(tmp_path / "s.keras")
    np.testing.assert_allclose(
        np.asarray(importers.load(tmp_path / "s.keras")([scores, mask])),
        np.asarray(model([scores, mask])),
        atol=1e-6,
    )
    layer = jrnn.Softmax(axis=1)
    m = mask.repeat(4, axis=1)
    want = L.Softmax(axis=1)(scores, mask=m)
    np.testing.assert_allclose(np.asarray(layer(scores, mask=m)), np.asarray(want), atol=1e-6)
    float_mask = m.astype(np.float32) * 0.9
    want = L.Softmax()(scores, mask=float_mask)
    np.testing.assert_allclose(
        np.asarray(jrnn.Softmax()(scores, mask=float_mask)), np.asarray(want), atol=1e-6
    )


@pytest.mark.parametrize("robust", [False, True])
def test_softmax_mask_tf_keras_rule(robust):
    """tf.keras adds (1 - mask) * -1e9 (robust_masking: sets -1e9) and keeps the outputs:
    a fully masked row comes out uniform. jrnn's keras2=True is that rule; the importer
    uses it where the config says tf.keras (``robust_masking``, or importers.model's
    ``keras2`` mark)."""
    import tensorflow as tf

    scores, mask = _softmax_inputs()
    want = tf_keras.layers.Softmax(robust_masking=robust)(scores, mask=tf.constant(mask))
    want = want.numpy()
    got = jrnn.Softmax(keras2=True, robust_masking=robust)(scores, mask=mask)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
    np.testing.assert_allclose(want[1], 0.2)
    convert = importers.convert.CONVERTERS["Softmax"]
    config = {"name": "s", "axis": -1, "keras2": True}
    if robust:
        config = {"name": "s", "axis": -1, "robust_masking": True}  # no mark needed
    np.testing.assert_allclose(
        np.asarray(convert(config, [], None)(scores, mask=mask)), want, atol=1e-6
    )
    if robust:
        _parity(_softmax_model(tf_keras, robust_masking=True), [scores, mask], randomize=False)
    else:  # partly masked rows: the two rules agree
        partly = mask.copy()
        partly[1, 0, 2] = True
        _parity(_softmax_model(tf_keras), [scores, partly], randomize=False)


@pytest.mark.parametrize("kind", ["softmax", "identity"])
def test_tf_keras_mask_rules_through_load(kind):
    if kind == "softmax":
        scores, mask = _softmax_inputs()
        _parity(_softmax_model(tf_keras), [scores, mask], randomize=False)
    else:  # tf.keras' Identity does not support masking: the LSTM after it runs unmasked
        _parity(_small_model(tf_keras, lambda lib: lib.layers.Identity(), masked=True), _ids())


def test_tf_keras_identity_and_softmax_rules_as_layers():
    assert jrnn.Identity(keras2=True).compute_mask(_X3, np.ones((2, 5), bool)) is None
    m = np.ones((2, 5), bool)
    assert jrnn.Identity().compute_mask(_X3, m) is m
    convert = importers.convert.CONVERTERS["Identity"]
    assert convert({"name": "i", "keras2": True}, [], None).keras2


def test_save_keras_refuses_tf_keras_mask_rules(tmp_path):
    """A tf.keras Softmax with a mask or Identity in a masked model has no Keras 3 twin."""
    model = _softmax_model(tf_keras, robust_masking=True)
    with pytest.raises(UnsupportedLayerError, match="fully masked row comes out uniform"):
        importers.save_keras(importers.load(model), tmp_path / "s.keras")
    identity = _small_model(tf_keras, lambda lib: lib.layers.Identity(), masked=True)
    with pytest.raises(UnsupportedLayerError, match="Identity does not support masking"):
        importers.save_keras(importers.load(identity), tmp_path / "i.keras")
    masked = _small_model(tf_keras, lambda lib: lib.layers.LeakyReLU(), masked=True)
    importers.save_keras(importers.load(masked), tmp_path / "ok.keras")  # no Identity: fine


@pytest.mark.parametrize(
    "kind,make,make_keras,x",
    [
        ("leaky", lambda: jrnn.LeakyReLU(0.2), lambda: L.LeakyReLU(0.2), None),
        ("relu", lambda: jrnn.ReLU(0.9, 0.1, 0.2), lambda: L.ReLU(0.9, 0.1, 0.2), None),
        ("elu", lambda: jrnn.ELU(0.7), lambda: L.ELU(0.7), None),
        ("softmax", lambda: jrnn.Softmax(axis=1), lambda: L.Softmax(axis=1), None),
        ("prelu", None, None, None),
    ],
)
def test_small_layers_gradients_as_tensorflow(kind, make, make_keras, x):
    """d(sum(y * w))/dx (and /d alpha for PReLU) by jax.grad equals tf.GradientTape's."""
    import tensorflow as tf

    x = _x(2, 7, 4) * 2.0
    w = _x(2, 7, 4, seed=9)
    if kind == "prelu":
        ref = L.PReLU(shared_axes=[1])
        ref.build((None, 7, 4))
        ref.set_weights([_x(1, 4, seed=4)])
        layer = jrnn.PReLU((7, 4), shared_axes=[1])
        layer.alpha[...] = jnp.asarray(ref.get_weights()[0])
    else:
        ref, layer = make_keras(), make()
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(ref(xt) * w)
    want = tape.gradient(loss, [xt, *ref.trainable_weights])
    graphdef, state = nnx.split(layer)

    def f(xj, state):
        return jnp.sum(nnx.merge(graphdef, state)(xj) * w)

    gx, gstate = jax.grad(f, argnums=(0, 1))(jnp.asarray(x), state)
    got = [gx, *jax.tree_util.tree_leaves(gstate)]
    assert len(got) == (2 if kind == "prelu" else 1)
    for g, e in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=1e-5)


def test_prelu_alpha_penalty_in_regularization_loss():
    layer = jrnn.PReLU(
        (7, 4), alpha_regularizer=jrnn.regularizers.L2(0.5), alpha_initializer="ones"
    )
    np.testing.assert_allclose(float(jrnn.regularization_loss(layer)), 0.5 * 28, rtol=1e-6)


def test_tf_keras_negative_leaky_slope_computed_and_not_written(tmp_path):
    """tf.keras takes LeakyReLU(alpha=-0.2); jrnn refused the model at load. Keras 3
    refuses negative slopes, so the exporters refuse to write one."""
    L2 = tf_keras.layers
    model = tf_keras.Sequential([tf_keras.Input((5, 3)), L2.LeakyReLU(alpha=-0.2, name="lr")])
    x = _x(2, 5, 3)
    np.testing.assert_allclose(np.asarray(importers.load(model)(x)), model(x), atol=1e-6)
    with pytest.raises(UnsupportedLayerError, match=r"negative slope -0\.2"):
        importers.save_keras(importers.load(model), tmp_path / "m.keras")
    with pytest.raises(UnsupportedLayerError, match=r"negative_slope -0\.1"):
        importers.keras_sequential([jrnn.LeakyReLU(-0.1)], (5, 3))


_KERAS3_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16", "float16", "bfloat16")


@pytest.mark.parametrize("cls", ["GaussianNoise", "GaussianDropout"])
def test_gaussian_noise_in_mixed_time_distributed_is_keras3s(cls, tmp_path):
    # Keras 3's TimeDistributed casts the inputs to its compute dtype and runs `layer.call`,
    # which returns them as they are at inference and draws the noise in the layer's own
    # compute dtype in training (the JAX backend promotes: float16 inputs with float32
    # noise give float32; the TensorFlow backend raises where the two differ). jrnn
    # computed both in one policy: 32 of the 50 policy pairs gave another dtype than
    # Keras 3's, in training or at inference.
    x = np.random.default_rng(0).standard_normal((64, 8, 32)).astype(np.float32)
    for outer in _KERAS3_POLICIES:
        for own in _KERAS3_POLICIES:
            noise = getattr(L, cls)(0.2, seed=1, dtype=own, name="noise")
            kmodel = keras.Sequential(
                [keras.Input((8, 32)), L.TimeDistributed(noise, dtype=outer, name="td")]
            )
            model = importers.load(kmodel)
            inputs = keras.mixed_precision.DTypePolicy(outer).compute_dtype
            computed = keras.mixed_precision.DTypePolicy(own).compute_dtype
            y = model(x)
            assert y.dtype == inputs, (outer, own)
            np.testing.assert_array_equal(y, kmodel(x, training=False))
            y = model(x, training=True)
            with jax.numpy_dtype_promotion("standard"):
                promoted = jnp.promote_types(inputs, computed)
            assert y.dtype == promoted, (outer, own)
            if inputs == computed:  # Keras' TensorFlow backend runs it too
                assert y.dtype == kmodel(x, training=True).dtype
    # float16 inputs, float32 noise: the noise is not rounded to float16.
    noise = getattr(L, cls)(0.2, seed=1, dtype="float32", name="noise")
    kmodel = keras.Sequential(
        [keras.Input((8, 32)), L.TimeDistributed(noise, dtype="mixed_float16", name="td")]
    )
    model = importers.load(kmodel)
    x16 = x.astype(np.float16).astype(np.float32)
    y = np.asarray(model(x, training=True))
    n = y - x16 if cls == "GaussianNoise" else y / x16 - 1.0
    std = 0.2 if cls == "GaussianNoise" else np.sqrt(0.2 / 0.8)
    assert abs(n.std() - std) < 0.02 * std and abs(n.mean()) < 0.02 * std
    if cls == "GaussianNoise":
        assert (n.astype(np.float16).astype(np.float32) != n).mean() > 0.9
    # Written back (keras_sequential), the wrapped layer keeps its float32 noise.
    seq = importers.keras_sequential([model.get_layer("td")], (8, 32))
    entry = seq.model_config["config"]["layers"][1]
    assert (entry["config"]["dtype"], entry["config"]["layer"]["config"]["dtype"]) == (
        "float16",
        "float32",
    )
    assert model.get_layer("td").layer.noise_dtype == "float32"
    assert seq.get_layer("td").layer.noise_dtype == "float32"


#: Keras 3 weightless layers jrnn converts, each with a per-timestep input shape.
_WEIGHTLESS_IN_TIME_DISTRIBUTED = {
    "Dropout": (lambda d: L.Dropout(0.5, seed=1, dtype=d), (6,)),
    "SpatialDropout1D": (lambda d: L.SpatialDropout1D(0.5, seed=1, dtype=d), (4, 6)),
    "Activation": (lambda d: L.Activation("tanh", dtype=d), (6,)),
    "ReLU": (lambda d: L.ReLU(max_value=1.0, negative_slope=0.1, dtype=d), (6,)),
    "LeakyReLU": (lambda d: L.LeakyReLU(0.2, dtype=d), (6,)),
    "ELU": (lambda d: L.ELU(dtype=d), (6,)),
    "Softmax": (lambda d: L.Softmax(dtype=d), (6,)),
    "Identity": (lambda d: L.Identity(dtype=d), (6,)),
    "Masking": (lambda d: L.Masking(0.0, dtype=d), (4, 6)),
    "ActivityRegularization": (lambda d: L.ActivityRegularization(0.01, dtype=d), (6,)),
    "Flatten": (lambda d: L.Flatten(dtype=d), (3, 4)),
    "Reshape": (lambda d: L.Reshape((4, 3), dtype=d), (3, 4)),
    "Permute": (lambda d: L.Permute((2, 1), dtype=d), (3, 4)),
    "RepeatVector": (lambda d: L.RepeatVector(2, dtype=d), (6,)),
    "ZeroPadding2D": (lambda d: L.ZeroPadding2D(1, dtype=d), (4, 4, 2)),
    "Cropping1D": (lambda d: L.Cropping1D(1, dtype=d), (4, 3)),
    "UpSampling2D": (lambda d: L.UpSampling2D(2, dtype=d), (4, 4, 2)),
    "AveragePooling2D": (lambda d: L.AveragePooling2D(2, dtype=d), (4, 4, 2)),
    "MaxPooling1D": (lambda d: L.MaxPooling1D(2, dtype=d), (4, 3)),
    "GlobalAveragePooling1D": (lambda d: L.GlobalAveragePooling1D(dtype=d), (4, 3)),
}


@pytest.mark.parametrize("cls", sorted(_WEIGHTLESS_IN_TIME_DISTRIBUTED))
def test_weightless_layer_in_mixed_time_distributed_is_keras3s(cls):
    # Keras 3's TimeDistributed casts the inputs to its compute dtype and runs `layer.call`,
    # which a weightless layer computes in its inputs' dtype: the wrapper's compute dtype,
    # whatever the layer's own policy. jrnn reasoned from the layer's variable dtype
    # (_wrapped_policy), which a weightless layer lacks: 12 of the 25 policy pairs gave
    # another dtype (a float16 wrapper over a float32 Dropout: float32, Keras float16), and
    # Masking and ActivityRegularization kept their own policy (16 of 25).
    make, shape = _WEIGHTLESS_IN_TIME_DISTRIBUTED[cls]
    pairs = [(outer, own) for outer in _KERAS3_POLICIES for own in _KERAS3_POLICIES]
    inp = keras.Input((3, *shape))
    kmodel = keras.Model(
        inp, [L.TimeDistributed(make(own), dtype=outer)(inp) for outer, own in pairs]
    )
    model = importers.load(kmodel)
    x = np.random.default_rng(0).standard_normal((2, 3, *shape)).astype(np.float32)
    for training in (False, True):
        want, got = kmodel(x, training=training), model(x, training=training)
        for (outer, own), w, g in zip(pairs, want, got, strict=True):
            assert g.dtype == keras.mixed_precision.DTypePolicy(outer).compute_dtype, (
                outer,
                own,
                training,
            )
            assert g.dtype == keras.backend.standardize_dtype(w.dtype), (outer, own, training)
            if not (training and "Dropout" in cls):  # the last bit of exp, tanh, mean...
                tol = {"float32": 1e-6, "float16": 1e-3, "bfloat16": 8e-3}[str(g.dtype)]
                np.testing.assert_allclose(
                    np.asarray(g, np.float32),
                    np.asarray(w, np.float32),
                    rtol=tol,
                    atol=tol,
                    err_msg=str((outer, own, training)),
                )
