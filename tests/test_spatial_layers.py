"""2-D and 3-D pooling, padding, cropping and upsampling: jrnn layers and their conversion
from Keras 3 and tf.keras, and back (save_keras, keras_sequential), against both Kerases.

Inputs have odd, distinct sizes (7 x 5 images, 5 x 7 x 4 volumes), windows with strides
other than their size and ``same`` padding; values and gradients are compared with
TensorFlow's (Keras 3 on its TensorFlow backend, as the suite runs, and tf.keras).
"""

from __future__ import annotations

import json
import warnings

import h5py
import jax
import jax.numpy as jnp
import keras
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from flax import nnx

import importers
import jrnn
from importers.errors import UnsupportedLayerError
from tests.helpers import randomize_keras

LIBS = {"keras": keras, "tf_keras": tf_keras}
ATOL = 1e-6  # float32: TensorFlow's and XLA's sums differ by a few ulps
_IMAGE, _VOLUME = (7, 5, 3), (5, 7, 4, 2)  # spatial sizes, channels last


def _x(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _save(model, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf_keras' "HDF5 is legacy" notice
        model.save(path)
    return path


# name -> (the layer, from a Keras `layers` module and a data_format; the input shape without
# the batch axis, channels last). Every layer is named, as Keras configs name them.
_LAYERS = {
    "max2d_same": (lambda L, f: L.MaxPooling2D((3, 2), (2, 1), "same", f, name="p"), _IMAGE),
    "max2d_valid_overlap": (
        lambda L, f: L.MaxPooling2D((2, 3), (1, 2), "valid", f, name="p"),
        _IMAGE,
    ),
    "max2d_default": (lambda L, f: L.MaxPooling2D(data_format=f, name="p"), _IMAGE),
    "avg2d_same": (lambda L, f: L.AveragePooling2D((3, 2), (2, 1), "same", f, name="p"), _IMAGE),
    "avg2d_valid": (lambda L, f: L.AveragePooling2D((2, 3), (1, 2), "valid", f, name="p"), _IMAGE),
    "max3d_same": (lambda L, f: L.MaxPooling3D((2, 3, 2), (1, 2, 3), "same", f, name="p"), _VOLUME),
    "max3d_valid": (lambda L, f: L.MaxPooling3D((1, 2, 2), data_format=f, name="p"), _VOLUME),
    "avg3d_same": (
        lambda L, f: L.AveragePooling3D((2, 3, 2), (1, 2, 3), "same", f, name="p"),
        _VOLUME,
    ),
    "avg3d_valid": (
        lambda L, f: L.AveragePooling3D((3, 2, 2), (2, 1, 2), "valid", f, name="p"),
        _VOLUME,
    ),
    "gmax2d": (lambda L, f: L.GlobalMaxPooling2D(f, name="g"), _IMAGE),
    "gavg2d_keepdims": (lambda L, f: L.GlobalAveragePooling2D(f, keepdims=True, name="g"), _IMAGE),
    "gmax3d_keepdims": (lambda L, f: L.GlobalMaxPooling3D(f, keepdims=True, name="g"), _VOLUME),
    "gavg3d": (lambda L, f: L.GlobalAveragePooling3D(f, name="g"), _VOLUME),
    "pad2d_int": (lambda L, f: L.ZeroPadding2D(2, f, name="z"), _IMAGE),
    "pad2d_sym": (lambda L, f: L.ZeroPadding2D((1, 3), f, name="z"), _IMAGE),
    "pad2d_pairs": (lambda L, f: L.ZeroPadding2D(((1, 2), (0, 3)), f, name="z"), _IMAGE),
    "pad3d_mixed": (lambda L, f: L.ZeroPadding3D((1, (2, 0), 3), f, name="z"), _VOLUME),
    "pad3d_default": (lambda L, f: L.ZeroPadding3D(data_format=f, name="z"), _VOLUME),
    "crop2d_pairs": (lambda L, f: L.Cropping2D(((1, 2), (0, 3)), f, name="c"), _IMAGE),
    "crop2d_one_left": (lambda L, f: L.Cropping2D((3, 2), f, name="c"), _IMAGE),  # 1 x 1 left
    "crop2d_int": (lambda L, f: L.Cropping2D(1, f, name="c"), _IMAGE),
    "crop3d_mixed": (lambda L, f: L.Cropping3D((1, (2, 0), 1), f, name="c"), _VOLUME),
    "crop3d_default": (lambda L, f: L.Cropping3D(data_format=f, name="c"), _VOLUME),
    "up2d_nearest": (lambda L, f: L.UpSampling2D((2, 3), f, name="u"), _IMAGE),
    "up3d": (lambda L, f: L.UpSampling3D((1, 2, 3), f, name="u"), _VOLUME),
    "up3d_int": (lambda L, f: L.UpSampling3D(2, f, name="u"), _VOLUME),
    **{
        f"up2d_{method}": (
            lambda L, f, method=method: L.UpSampling2D((3, 2), f, method, name="u"),
            _IMAGE,
        )
        for method in ("bilinear", "bicubic", "area", "lanczos3", "lanczos5")
    },
}
# tf.keras' interpolations that Keras 3 refuses.
_TF_KERAS_ONLY = {
    f"up2d_{method}": (
        lambda L, f, method=method: L.UpSampling2D((2, 3), f, method, name="u"),
        _IMAGE,
    )
    for method in ("gaussian", "mitchellcubic")
}


def _shape(shape, fmt):
    return shape if fmt == "channels_last" else (shape[-1], *shape[:-1])


def _tf_value_and_grad(model, x, r):
    """Keras' outputs and d(sum(y * r))/dx by tf.GradientTape (None where TensorFlow has no
    gradient: ResizeArea)."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = model(xt, training=False)
        loss = tf.reduce_sum(y * r)
    try:
        grad = tape.gradient(loss, xt).numpy()
    except LookupError:  # "gradient registry has no entry for: ResizeArea"
        grad = None
    return np.asarray(y), grad


def _jrnn_value_and_grad(model, x, r):
    y = model(x)
    grad = jax.grad(lambda v: jnp.sum(model(v) * r))(jnp.asarray(x))
    return np.asarray(y), np.asarray(grad)


_CASES = [(kind, lib) for kind in _LAYERS for lib in LIBS] + [
    (kind, "tf_keras") for kind in _TF_KERAS_ONLY
]


def _linear_map_grad(model, x, r):
    """d(sum(y * r))/dx of a linear ``model`` from its outputs alone: ``y = A x``, so the
    gradient is ``A^T r``, with ``A``'s columns the model's outputs on one-hot inputs
    (TensorFlow registers no gradient for ResizeArea)."""
    n = int(np.prod(x.shape[1:]))
    basis = np.eye(n, dtype=np.float32).reshape(n, *x.shape[1:])
    columns = np.asarray(model(basis), np.float64).reshape(n, -1)
    return (r.reshape(len(r), -1).astype(np.float64) @ columns.T).reshape(x.shape)


def _first(a):
    return np.moveaxis(a, -1, 1)


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize(("kind", "lib_name"), _CASES, ids=[f"{k}-{lib}" for k, lib in _CASES])
def test_layer_values_and_gradients_as_keras(kind, lib_name, fmt):
    """Each layer imported from a live Keras 3 / tf.keras model: outputs and d(sum(y * r))/dx
    as TensorFlow's within 1e-6 (relative above 1). tf.keras' 2-D pools in channels_first
    cannot run on TensorFlow's CPU kernels (NHWC only): their twin in channels_last on the
    transposed inputs is the reference. ResizeArea has no TensorFlow gradient: the area
    interpolation's is checked against the transpose of TensorFlow's linear map."""
    make, shape = {**_LAYERS, **_TF_KERAS_ONLY}[kind]
    lib = LIBS[lib_name]
    model = lib.Sequential([lib.Input(_shape(shape, fmt)), make(lib.layers, fmt)])
    x = _x(2, *_shape(shape, fmt))
    nchw_refused = lib is tf_keras and fmt == "channels_first" and kind[:5] in ("max2d", "avg2d")
    if nchw_refused:  # Default MaxPoolingOp only supports NHWC on device type CPU
        with pytest.raises(tf.errors.InvalidArgumentError, match="only supports NHWC"):
            model(x)
        twin = lib.Sequential([lib.Input(shape), make(lib.layers, "channels_last")])
        r = _first(_x(*twin(np.moveaxis(x, 1, -1)).shape, seed=5))
        want, want_grad = _tf_value_and_grad(twin, np.moveaxis(x, 1, -1), np.moveaxis(r, 1, -1))
        want, want_grad = _first(want), _first(want_grad)
    else:
        r = _x(*model(x).shape, seed=5)
        want, want_grad = _tf_value_and_grad(model, x, r)
    ported = importers.load(model)
    got, got_grad = _jrnn_value_and_grad(ported, x, r)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=ATOL)
    if want_grad is None:
        assert kind == "up2d_area"
        want_grad = _linear_map_grad(model, x, r)
    np.testing.assert_allclose(got_grad, want_grad, atol=ATOL, rtol=ATOL)


# -- whole models ---------------------------------------------------------------------------


def _cnn_lstm(lib, functional: bool):
    """Keras' CNN-LSTM video classifier: per-frame Conv2D -> MaxPooling2D -> Flatten, then an
    LSTM over the frames (9 x 7 frames: the pool drops a row and a column)."""
    L = lib.layers
    body = [
        L.TimeDistributed(L.Conv2D(4, 3, activation="relu", name="conv"), name="td_conv"),
        L.TimeDistributed(L.MaxPooling2D(2, name="pool"), name="td_pool"),
        L.TimeDistributed(L.Flatten(name="flat"), name="td_flat"),
        L.LSTM(5, name="lstm"),
        L.Dense(3, name="head"),
    ]
    frames = lib.Input((4, 9, 7, 3), name="frames")
    if not functional:
        return lib.Sequential([frames, *body], name="cnn_lstm")
    h = frames
    for layer in body:
        h = layer(h)
    return lib.Model(frames, h, name="cnn_lstm")


def _conv_lstm_video(lib):
    """ConvLSTM2D(return_sequences=True) feeding the 3-D pools, 2-D global pooling and
    padding/cropping/upsampling, with two outputs (a label and frames)."""
    L = lib.layers
    frames = lib.Input((4, 8, 7, 2), name="frames")
    sig = {"recurrent_activation": "sigmoid"}  # tf.keras' hard_sigmoid has no Keras 3 twin
    h = L.ConvLSTM2D(4, 3, padding="same", return_sequences=True, name="convlstm", **sig)(frames)
    a = L.MaxPooling3D((1, 2, 2), name="pool3d")(h)  # (4, 4, 3, 4)
    a = L.ConvLSTM2D(3, 2, name="convlstm2", **sig)(a)  # (3, 2, 3)
    a = L.GlobalAveragePooling2D(name="gap")(a)
    b = L.GlobalMaxPooling3D(name="gmp3d")(L.AveragePooling3D(2, padding="same", name="ap3d")(h))
    label = L.Dense(3, name="label")(L.Concatenate(name="cat")([a, b]))
    v = L.TimeDistributed(L.ZeroPadding2D(((1, 0), (2, 1)), name="pad"), name="td_pad")(h)
    v = L.TimeDistributed(L.Cropping2D(((0, 2), 1), name="crop"), name="td_crop")(v)
    v = L.TimeDistributed(
        L.UpSampling2D((2, 1), interpolation="bilinear", name="up"), name="td_up"
    )(v)
    v = L.UpSampling3D((1, 1, 2), name="up3d")(L.ZeroPadding3D((0, 1, 0), name="pad3d")(v))
    v = L.Cropping3D(((0, 1), (1, 1), (2, 0)), name="crop3d")(v)
    out_frames = L.Conv3D(1, 3, padding="same", name="frames_out")(v)
    return lib.Model(frames, [label, out_frames], name="video")


def _check_model(model, x, sources):
    """Every source (the live model, files) loads to Keras' outputs."""
    randomize_keras(model, seed=3, scale=0.4)
    want = model(x)
    want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
    for source in sources(model):
        got = importers.load(source)(x)
        got = got if isinstance(got, (list, tuple)) else [got]
        assert len(got) == len(want), source
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(np.asarray(g), w, atol=1e-5, rtol=0, err_msg=str(source))
    return want


@pytest.mark.parametrize("functional", [True, False], ids=["functional", "sequential"])
def test_cnn_lstm_keras3_live_keras_and_h5(functional, tmp_path):
    model = _cnn_lstm(keras, functional)
    _check_model(
        model,
        _x(2, 4, 9, 7, 3),
        lambda m: [m, _save(m, tmp_path / "m.keras"), _save(m, tmp_path / "m.h5")],
    )


@pytest.mark.parametrize("functional", [True, False], ids=["functional", "sequential"])
def test_cnn_lstm_tf_keras_live_and_h5(functional, tmp_path):
    model = _cnn_lstm(tf_keras, functional)
    _check_model(model, _x(2, 4, 9, 7, 3), lambda m: [m, _save(m, tmp_path / "m.h5")])


@pytest.mark.parametrize("lib_name", list(LIBS))
def test_conv_lstm_video_model(lib_name, tmp_path):
    model = _conv_lstm_video(LIBS[lib_name])
    files = (".keras", ".h5") if lib_name == "keras" else (".h5",)
    want = _check_model(
        model,
        _x(2, 4, 8, 7, 2),
        lambda m: [m, *(_save(m, tmp_path / f"m{ext}") for ext in files)],
    )
    assert [w.shape for w in want] == [(2, 3), (2, 3, 14, 14, 1)]


@pytest.mark.parametrize("lib_name", list(LIBS))
def test_save_keras_round_trip(lib_name, tmp_path):
    """Models imported from Keras 3 and tf.keras (written by the exporter's tf.keras
    writer) -> importers.save_keras -> keras.saving.load_model: Keras 3's outputs are the
    source model's; the classes and arguments are Keras'."""
    lib = LIBS[lib_name]
    x = _x(2, 4, 8, 7, 2)
    for model in (_conv_lstm_video(lib), _cnn_lstm(lib, functional=True)):
        randomize_keras(model, seed=4, scale=0.4)
        xm = x if model.name == "video" else _x(2, 4, 9, 7, 3)
        want = model(xm)
        path = tmp_path / f"{model.name}.keras"
        importers.save_keras(importers.load(model), path)
        back = keras.saving.load_model(path)
        got = back(xm)
        for g, w in zip(
            got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]
        ):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5, rtol=0)
    layers = {layer.name: layer for layer in back.layers}
    assert isinstance(layers["td_pool"].layer, keras.layers.MaxPooling2D)
    video = keras.saving.load_model(tmp_path / "video.keras")
    layers = {layer.name: layer for layer in video.layers}
    assert layers["pool3d"].pool_size == (1, 2, 2)
    assert layers["td_pad"].layer.padding == ((1, 0), (2, 1))
    assert layers["td_up"].layer.interpolation == "bilinear"
    assert layers["crop3d"].cropping == ((0, 1), (1, 1), (2, 0))


def _rename_classes(path, renames: dict):
    """Rewrite the class names of a legacy .h5 file's model config (as older files or
    other writers spell the aliases)."""
    with h5py.File(path, "r+") as f:
        text = f.attrs["model_config"]
        text = text.decode() if isinstance(text, bytes) else text
        for old, new in renames.items():
            text = text.replace(f'"class_name": "{old}"', f'"class_name": "{new}"')
        f.attrs["model_config"] = text
        return json.loads(text)


def test_aliases_load_and_are_written_by_their_class_names(tmp_path):
    """A tf.keras .h5 whose config names the short aliases (MaxPool2D, AvgPool3D,
    GlobalAvgPool2D, GlobalMaxPool3D): tf.keras and jrnn read it; save_keras writes the
    Keras 3 class names."""
    L = tf_keras.layers
    frames = tf_keras.Input((4, 8, 6, 2), name="frames")
    h = L.AveragePooling3D((1, 2, 1), name="ap")(frames)
    a = L.GlobalMaxPooling3D(name="gmp")(h)
    b = L.TimeDistributed(L.MaxPooling2D((2, 3), name="mp"), name="td")(h)
    b = L.GlobalAveragePooling2D(name="gap")(L.Reshape((4, 4, 2), name="rs")(b))
    model = tf_keras.Model(frames, L.Concatenate(name="cat")([a, b]), name="aliases")
    path = _save(model, tmp_path / "m.h5")
    config = _rename_classes(
        path,
        {
            "AveragePooling3D": "AvgPool3D",
            "GlobalMaxPooling3D": "GlobalMaxPool3D",
            "MaxPooling2D": "MaxPool2D",
            "GlobalAveragePooling2D": "GlobalAvgPool2D",
        },
    )
    assert "MaxPool2D" in json.dumps(config) and "MaxPooling2D" not in json.dumps(config)
    x = _x(2, 4, 8, 6, 2)
    want = model(x).numpy()
    reread = tf_keras.models.load_model(path)
    np.testing.assert_allclose(reread(x).numpy(), want, atol=1e-6)
    ported = importers.load(path)
    np.testing.assert_allclose(np.asarray(ported(x)), want, atol=1e-6)
    importers.save_keras(ported, tmp_path / "back.keras")
    back = keras.saving.load_model(tmp_path / "back.keras")
    assert {type(layer).__name__ for layer in back.layers} >= {
        "AveragePooling3D",
        "GlobalMaxPooling3D",
        "GlobalAveragePooling2D",
    }
    np.testing.assert_allclose(np.asarray(back(x)), want, atol=1e-6)
    for alias, cls in importers._convert_core.POOL_ALIASES.items():
        config = {"name": "p", "data_format": "channels_last"}
        module = importers.convert.CONVERTERS[alias](config, [], None)
        assert type(module).__name__ == cls


def test_keras_sequential_writes_the_new_layers(tmp_path):
    """Hand-built jrnn layers -> keras_sequential -> save_keras -> keras.saving.load_model:
    the same classes, arguments and outputs (both data formats, every interpolation Keras 3
    takes)."""
    image = [
        jrnn.ZeroPadding2D(((1, 2), (0, 3))),
        jrnn.Cropping2D((1, (0, 2))),
        jrnn.MaxPooling2D((3, 2), strides=(2, 1), padding="same"),
        jrnn.UpSampling2D((2, 3), interpolation="bicubic"),
        jrnn.AveragePooling2D((2, 3), strides=1, padding="same", name="avg"),
        jrnn.UpSampling2D(2, interpolation="lanczos3", name="up2"),
        jrnn.GlobalMaxPooling2D(keepdims=True),
        jrnn.UpSampling2D((1, 2), name="up3"),
        jrnn.GlobalAveragePooling2D(),
    ]
    volume = [
        jrnn.ZeroPadding3D(1, data_format="channels_first"),
        jrnn.Cropping3D((0, (1, 2), 1), data_format="channels_first"),
        jrnn.AveragePooling3D((2, 3, 2), (1, 2, 3), "same", "channels_first"),
        jrnn.UpSampling3D((2, 1, 2), data_format="channels_first"),
        jrnn.MaxPooling3D(2, data_format="channels_first"),
        jrnn.GlobalAveragePooling3D("channels_first", keepdims=True),
        jrnn.GlobalMaxPooling3D("channels_first"),
    ]
    for layers, shape in ((image, (7, 5, 3)), (volume, (2, 5, 7, 4))):
        model = importers.keras_sequential(layers, shape)
        importers.save_keras(model, tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        assert [type(layer).__name__ for layer in loaded.layers] == [
            type(layer).__name__ for layer in layers
        ]
        x = _x(2, *shape)
        np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=ATOL)
    assert loaded.layers[1].cropping == ((0, 0), (1, 2), (1, 1))
    assert loaded.layers[2].strides == (1, 2, 3)


def test_masks_are_dropped_as_by_both_kerases():
    """Keras 3 and tf.keras drop a mask at these layers (Keras 3 warns, tf.keras says
    nothing); jrnn's output mask is None too, and the values are the same."""
    x = _x(2, 6, 4, 3)
    x[0, 2:] = 0.0  # masked cells
    for lib in LIBS.values():
        L = lib.layers
        for layer in (
            L.MaxPooling2D(name="l"),
            L.AveragePooling2D(2, name="l"),
            L.GlobalAveragePooling2D(name="l"),
            L.ZeroPadding2D(name="l"),
            L.Cropping2D(1, name="l"),
            L.UpSampling2D(interpolation="bilinear", name="l"),
        ):
            cells = lib.Input((6, 4, 3))
            model = lib.Model(cells, layer(L.Masking(name="m")(cells)))
            want = model(x)
            assert getattr(want, "_keras_mask", None) is None
            ported = importers.load(model)
            assert ported.compute_mask(x) is None
            np.testing.assert_allclose(np.asarray(ported(x)), np.asarray(want), atol=ATOL)


def test_dtypes_as_keras3_and_tf_keras(tmp_path):
    """mixed_bfloat16: the pools and padding compute and return bfloat16. UpSampling2D's
    tf.image.resize interpolations compute in float32: Keras 3 casts the result back to the
    inputs' dtype (integers rounded and clipped), tf.keras returns float32; nearest keeps
    the dtype in both. save_keras refuses tf.keras' float32 rule under a 16-bit policy."""
    image, volume = _x(2, 7, 5, 3) * 3.0, _x(2, 5, 7, 4, 2)
    cases = [
        (keras, lambda L: L.MaxPooling2D(dtype="mixed_bfloat16", name="l"), image, "bfloat16"),
        (
            keras,
            lambda L: L.AveragePooling3D(2, dtype="mixed_bfloat16", name="l"),
            volume,
            "bfloat16",
        ),
        (keras, lambda L: L.ZeroPadding2D(dtype="mixed_bfloat16", name="l"), image, "bfloat16"),
        (keras, lambda L: L.UpSampling2D(dtype="mixed_bfloat16", name="l"), image, "bfloat16"),
        (tf_keras, lambda L: L.UpSampling2D(dtype="mixed_bfloat16", name="l"), image, "bfloat16"),
    ]
    for method in ("bilinear", "area", "lanczos3"):
        for lib, dtype in ((keras, "bfloat16"), (tf_keras, "float32")):
            make = lambda L, m=method: L.UpSampling2D(
                interpolation=m, dtype="mixed_bfloat16", name="l"
            )
            cases.append((lib, make, image, dtype))
    for lib, make, x, dtype in cases:
        model = lib.Sequential([lib.Input(x.shape[1:]), make(lib.layers)])
        want = model(x)
        got = importers.load(model)(x)
        assert want.dtype.name == dtype and got.dtype == jnp.dtype(dtype), (lib, model.layers)
        # bfloat16 average pools round the mean once, as TensorFlow's default oneDNN kernel;
        # the suite's TensorFlow (oneDNN off) rounds each partial sum: a partial sum's ulp
        # over the count apart (exact: test_average_pooling_16_bit_sums_round_as_tensorflow).
        averages = "Average" in type(model.layers[-1]).__name__
        np.testing.assert_allclose(
            np.asarray(got, np.float32),
            np.asarray(tf.cast(want, tf.float32)),
            atol=2**-7 if averages else 1e-6,
        )
    with pytest.raises(UnsupportedLayerError, match=r"returns tf\.image\.resize's float32"):
        importers.save_keras(importers.load(model), tmp_path / "m.keras")
    # integer images: Keras 3 rounds the float32 result and clips it to the dtype's range
    ints = np.random.default_rng(3).integers(-9, 250, (2, 5, 4, 1)).astype(np.int32)
    up = keras.Sequential(
        [
            keras.Input((5, 4, 1), dtype="int32"),
            keras.layers.UpSampling2D((3, 2), interpolation="bicubic", name="l"),
        ]
    )
    want = np.asarray(up(ints))
    got = importers.load(up)(ints)
    assert want.dtype == np.int32 and got.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(got), want)
    small = jrnn.UpSampling2D(3, interpolation="bicubic")(ints.astype(np.uint8))
    assert small.dtype == jnp.uint8  # clipped at 0 and 255 (bicubic overshoots), not wrapped
    assert jrnn.UpSampling2D(interpolation="area", keras2=True)(ints).dtype == jnp.float32


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_average_pooling_16_bit_sums_round_as_tensorflow(policy):
    """16-bit average pools equal TensorFlow's CPU AvgPool bit for bit. float16: the
    window's cells added in row-major order, each partial sum rounded (Eigen's kernel,
    also what TensorFlow runs with oneDNN on); XLA's reduce_window (jrnn before) kept
    float32 partial sums: 104 of 288 outputs one ulp off (0.0039). bfloat16: TensorFlow's
    default oneDNN kernel sums in float32 and rounds the mean once (0 of 2184 outputs
    differ over these configurations, measured); the suite runs TensorFlow with oneDNN off,
    whose Eigen kernel rounds each partial sum (153 of 288 differ), so bfloat16 is compared
    with TensorFlow's float32 AvgPool of the same bfloat16 inputs, rounded once. tf.keras
    runs no float16 AvgPool3D on CPU."""
    x2, x3 = _x(4, 9, 8, 3) * 3.0, _x(4, 5, 7, 4, 3) * 3.0
    cases = [
        ((2, 3), (1, 2), "valid", x2),
        ((3, 2), (2, 1), "same", x2),
        ((3,), (2,), "same", x2[:, 0]),
    ]
    if policy == "mixed_bfloat16":
        cases += [((2, 3, 2), (1, 2, 3), "same", x3), ((2, 2, 2), (2, 2, 2), "same", x3)]
    for pool, strides, padding, x in cases:
        name = f"AveragePooling{len(pool)}D"
        if policy == "mixed_bfloat16":
            rounded = tf.constant(x.astype(ml_dtypes.bfloat16).astype(np.float32))
            pooled = tf.nn.avg_pool(rounded, pool, strides, padding.upper()).numpy()
            wants = [pooled.astype(ml_dtypes.bfloat16).astype(np.float32)]
        else:
            wants = []
            for lib in LIBS.values():
                layer = getattr(lib.layers, name)(pool, strides, padding, dtype=policy, name="l")
                model = lib.Sequential([lib.Input(x.shape[1:]), layer])
                wants.append(np.asarray(tf.cast(model(x), tf.float32)))
        layer = getattr(jrnn, name)(pool, strides, padding, dtype=policy)
        got = layer(jnp.asarray(x))
        assert got.dtype == jnp.dtype(policy.split("_")[1])
        for want in wants:
            np.testing.assert_array_equal(np.asarray(got, np.float32), want)


def test_average_pool_counts_come_from_the_shapes():
    """The count of cells inside each window is NumPy arithmetic on the shapes: a
    reduce_window over ones, constant-folded by XLA, took 26 s to compile for
    AveragePooling2D(3, 1, 'same') on (16, 64, 64, 32). The means equal TensorFlow's."""
    x = _x(2, 7, 6, 3)
    for pool, strides, padding in (
        ((3, 2), (2, 1), "same"),
        ((3, 3), (1, 1), "same"),
        ((2, 2), None, "valid"),
    ):
        layer = jrnn.AveragePooling2D(pool, strides, padding)
        hlo = jax.jit(layer).lower(jnp.asarray(x)).as_text()
        assert hlo.count("reduce_window") == 1
        want = tf.nn.avg_pool(tf.constant(x), pool, strides or pool, padding.upper()).numpy()
        np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x))), want, atol=ATOL)


def test_pools_differentiate_under_jit_and_train_as_keras():
    """Max/average pools (1-D to 3-D) differentiate inside jax.jit, so make_train_step
    trains a model holding them: a jnp.array init made reduce_window the generic primitive,
    which has no transpose ("Linearization failed"; make_train_step on the CNN-LSTM raised
    it). Three Adam steps on the imported CNN-LSTM leave Keras' weights within 1e-4 (Adam's
    m / sqrt(v) of tiny gradients: 1.5e-5 measured). MaxPooling of integers keeps them, as
    Keras (the -inf identity failed: OverflowError)."""
    x2 = jnp.asarray(_x(2, 6, 6, 3))
    for layer, x in (
        (jrnn.MaxPooling1D(2), x2[:, 0]),
        (jrnn.AveragePooling1D(3, 2, "same"), x2[:, 0]),
        (jrnn.MaxPooling2D(2), x2),
        (jrnn.AveragePooling2D(3, 2, "same"), x2),
        (jrnn.AveragePooling2D(2, dtype="mixed_bfloat16"), x2),
        (jrnn.MaxPooling3D(2), x2[..., None]),
        (jrnn.AveragePooling3D(2, padding="same"), x2[..., None]),
    ):

        def loss(v, layer=layer):
            return jnp.sum(layer(v).astype(jnp.float32) ** 2)

        np.testing.assert_allclose(jax.jit(jax.grad(loss))(x), jax.grad(loss)(x), atol=1e-6)
    ints = np.arange(32, dtype=np.int32).reshape(2, 4, 4, 1)
    want = keras.Sequential([keras.Input((4, 4, 1), dtype="int32"), keras.layers.MaxPooling2D()])
    got = jrnn.MaxPooling2D()(ints)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want(ints)))

    model = _cnn_lstm(keras, functional=True)
    randomize_keras(model, seed=3, scale=0.4)
    x, y = _x(2, 4, 9, 7, 3), _x(2, 3, seed=9)
    ported = importers.load(model)
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    optimizer = nnx.Optimizer(ported, jrnn.training.keras_adam(1e-2), wrt=nnx.Param)
    step = jrnn.training.make_train_step("mse")
    for _ in range(3):
        want_loss = float(model.train_on_batch(x, y))
        got_loss = float(step(ported, optimizer, jnp.asarray(x), jnp.asarray(y)))
    assert abs(got_loss - want_loss) < 1e-5
    for got, want in zip(importers.keras_params(ported), model.get_weights(), strict=True):
        np.testing.assert_allclose(np.asarray(got[...]), want, atol=1e-4)


def test_max_pooling_gradients_at_ties_as_tensorflow():
    """Windows whose max is held by several cells (integer-valued frames, upsampled or
    padded inputs): TensorFlow's MaxPool3DGrad gives every tied cell the window's whole
    gradient, its 1-D/2-D MaxPoolGrad (as JAX) only the first. jrnn's MaxPooling3D gave the
    first only: d(sum(y * r))/dx was up to 2.4 off Keras' (its sum 0.36 against -10.1) on
    inputs in {0, 1, 2}; now equal. Forward mode (jvp) still works."""
    rng = np.random.default_rng(0)
    for lib in LIBS.values():
        L = lib.layers
        for layer, shape in (
            (L.MaxPooling3D(2, padding="same", name="p"), (3, 5, 5, 2)),
            (L.MaxPooling3D((2, 3, 1), (1, 2, 1), name="p"), (4, 7, 3, 2)),
            (L.MaxPooling2D(3, strides=1, padding="same", name="p"), (5, 7, 2)),
            (L.MaxPooling1D(3, 2, "same", name="p"), (9, 2)),
        ):
            model = lib.Sequential([lib.Input(shape), layer])
            x = rng.integers(0, 3, (2, *shape)).astype(np.float32)
            r = _x(*model(x).shape, seed=5)
            _, want = _tf_value_and_grad(model, x, r)
            got = _jrnn_value_and_grad(importers.load(model), x, r)[1]
            np.testing.assert_allclose(got, want, atol=ATOL, err_msg=type(layer).__name__)
    layer = jrnn.MaxPooling3D(2)
    x = jnp.asarray(rng.integers(0, 3, (2, 4, 4, 4, 1)).astype(np.float32))
    _, tangent = jax.jvp(layer, (x,), (jnp.ones_like(x),))
    assert np.all(np.asarray(tangent) >= 1)  # each window's tied cells' tangents, summed


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: jrnn.MaxPooling2D((2,)),
            r"MaxPooling2D: `pool_size` must be a positive int or a tuple of 2 positive ints; "
            r"received \(2,\)",
        ),
        (lambda: jrnn.AveragePooling3D(2, strides=(1, 0, 1)), "AveragePooling3D: `strides`"),
        (lambda: jrnn.MaxPooling3D(2.0), r"`pool_size` must be a positive int or a tuple of 3"),
        (lambda: jrnn.MaxPooling2D(padding="full"), "MaxPooling2D: `padding` must be one of"),
        (lambda: jrnn.AveragePooling2D(data_format="nhwc"), "AveragePooling2D: `data_format`"),
        (lambda: jrnn.GlobalMaxPooling2D(keepdims="yes"), "GlobalMaxPooling2D: `keepdims`"),
        (lambda: jrnn.GlobalAveragePooling3D("ncdhw"), "GlobalAveragePooling3D: `data_format`"),
        (
            lambda: jrnn.ZeroPadding2D((1, 2, 3)),
            r"ZeroPadding2D: padding must be an int >= 0, a tuple of 2 ints >= 0 or a tuple "
            r"of 2 \(before, after\) pairs of ints >= 0; received \(1, 2, 3\)",
        ),
        (lambda: jrnn.ZeroPadding2D(-1), "ZeroPadding2D: padding must be an int >= 0"),
        (lambda: jrnn.ZeroPadding3D(((1, -1), 1, 1)), r"received \(\(1, -1\), 1, 1\)"),
        (lambda: jrnn.ZeroPadding3D((1, (1, 2, 3), 1)), "ZeroPadding3D: padding must be"),
        (lambda: jrnn.ZeroPadding2D(True), "ZeroPadding2D: padding must be"),
        (lambda: jrnn.Cropping2D(((1, 1), (2.5, 1))), "Cropping2D: cropping must be"),
        (lambda: jrnn.Cropping3D((1, 1)), r"tuple of 3 ints >= 0 .* received \(1, 1\)"),
        (lambda: jrnn.Cropping2D(1, data_format="nchw"), "Cropping2D: `data_format`"),
        (lambda: jrnn.UpSampling2D(0), r"UpSampling2D: `size` must be a positive int or a"),
        (lambda: jrnn.UpSampling3D((2, 2)), r"`size` must be a positive int or a tuple of 3"),
        (
            lambda: jrnn.UpSampling2D(interpolation="cubic"),
            r"UpSampling2D: `interpolation` must be one of \('nearest', 'bilinear', 'bicubic', "
            r"'area', 'lanczos3', 'lanczos5', 'gaussian', 'mitchellcubic'\); received 'cubic'",
        ),
        (lambda: jrnn.UpSampling2D(keras2=1), "UpSampling2D: `keras2` must be a bool"),
    ],
)
def test_constructor_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


_IMG = np.ones((2, 7, 5, 3), np.float32)
_VOL = np.ones((2, 5, 7, 4, 2), np.float32)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: jrnn.MaxPooling2D(2)(_VOL),
            r"MaxPooling2D: inputs must be 4-D \(batch, rows, cols, channels\); received "
            r"'shape \(2, 5, 7, 4, 2\)'",
        ),
        (
            lambda: jrnn.AveragePooling2D(data_format="channels_first")(_IMG[0]),
            r"4-D \(batch, channels, rows, cols\); received 'shape \(7, 5, 3\)'",
        ),
        (
            lambda: jrnn.MaxPooling3D()(_IMG),
            r"MaxPooling3D: inputs must be 5-D \(batch, dim1, dim2, dim3, channels\)",
        ),
        (  # Keras refuses a window longer than a valid-padded axis (an empty output)
            lambda: jrnn.MaxPooling2D((2, 6))(_IMG),
            r"MaxPooling2D: inputs must be at least 6 steps on each spatial axis \(its window "
            r"with padding='valid'\); received 'shape \(2, 7, 5, 3\)'",
        ),
        (lambda: jrnn.AveragePooling3D((6, 1, 1))(_VOL), "at least 6 steps"),
        (lambda: jrnn.GlobalMaxPooling2D()(_VOL), "GlobalMaxPooling2D: inputs must be 4-D"),
        (lambda: jrnn.GlobalAveragePooling3D()(_IMG), "GlobalAveragePooling3D: inputs must be 5-D"),
        (lambda: jrnn.ZeroPadding3D()(_IMG), r"ZeroPadding3D: inputs must be 5-D"),
        (
            lambda: jrnn.Cropping2D(((3, 4), 0))(_IMG),
            r"Cropping2D: inputs must be more than 7 rows \(cropping \(\(3, 4\), \(0, 0\)\)\); "
            r"received 'shape \(2, 7, 5, 3\)'",
        ),
        (
            lambda: jrnn.Cropping2D((0, (3, 2)), data_format="channels_first")(_IMG),
            r"more than 5 cols .* received 'shape \(2, 7, 5, 3\)'",
        ),
        (lambda: jrnn.Cropping3D((0, 0, 2))(_VOL), r"more than 4 cells along dim3 \(cropping"),
        (lambda: jrnn.UpSampling2D(interpolation="bilinear")(_VOL), "UpSampling2D: inputs"),
        (lambda: jrnn.UpSampling3D()(_IMG), r"UpSampling3D: inputs must be 5-D"),
    ],
)
def test_call_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_keras_refuses_what_jrnn_refuses():
    """The shapes jrnn refuses are Keras' refusals too (a valid window longer than its axis,
    a cropping leaving no cell)."""
    for lib in LIBS.values():
        for layer in (lib.layers.MaxPooling2D((2, 6)), lib.layers.Cropping2D(((3, 4), 0))):
            with pytest.raises(ValueError):
                lib.Sequential([lib.Input(_IMG.shape[1:]), layer])


@pytest.mark.parametrize(
    ("cls", "config", "match"),
    [
        ("MaxPooling2D", {"padding": "full"}, "padding='full' is not supported"),
        ("AvgPool3D", {"data_format": "channels_middle"}, "data_format='channels_middle'"),
        ("GlobalMaxPool2D", {"data_format": "nhwc"}, "data_format='nhwc' is not supported"),
        ("ZeroPadding3D", {"padding": [[1, 1], [1, 1]]}, "ZeroPadding3D: padding must"),
        ("Cropping2D", {"cropping": "1"}, "Cropping2D: cropping must be"),
        ("UpSampling2D", {"interpolation": "cubic"}, "`interpolation` must be one of"),
        ("UpSampling3D", {"size": [2, 2, 0]}, "UpSampling3D 'lay': `size` must be"),
    ],
)
def test_converter_refusals(cls, config, match):
    with pytest.raises(ValueError, match=match):
        importers.convert.CONVERTERS[cls]({"name": "lay", **config}, [], None)


def test_bad_config_through_load_names_the_layer():
    model = keras.Sequential([keras.Input((7, 5, 3)), keras.layers.Cropping2D(1, name="crop")])
    model.layers[0].cropping = ((1, 1), (1, -1))  # a config Keras' constructor would refuse
    with pytest.raises(
        UnsupportedLayerError,
        match=r"layer 'crop' of class 'Cropping2D' is not supported: .* Cropping2D: cropping "
        r"must be .* received \(\(1, 1\), \(1, -1\)\)",
    ):
        importers.load(model)


def test_save_keras_refuses_tf_keras_only_interpolations(tmp_path):
    """tf.keras' gaussian and mitchellcubic are computed (test_layer_values...) but not
    written for Keras 3, which refuses them, from an imported model or hand-built layers."""
    model = tf_keras.Sequential(
        [
            tf_keras.Input((7, 5, 3)),
            tf_keras.layers.UpSampling2D(interpolation="gaussian", name="up"),
        ]
    )
    with pytest.raises(UnsupportedLayerError, match=r"interpolation='gaussian' is tf\.keras'"):
        importers.save_keras(importers.load(model), tmp_path / "m.keras")
    with pytest.raises(keras.errors.ValueError if hasattr(keras, "errors") else ValueError):
        keras.layers.UpSampling2D(interpolation="mitchellcubic")(_IMG)
    layer = jrnn.UpSampling2D(interpolation="mitchellcubic", name="up")
    with pytest.raises(UnsupportedLayerError, match="Keras 3's UpSampling2D refuses it"):
        importers.keras_sequential([layer], (7, 5, 3))
    keras2 = jrnn.UpSampling2D(interpolation="bilinear", keras2=True, dtype="mixed_bfloat16")
    with pytest.raises(UnsupportedLayerError, match="the Keras 3 layer would compute other"):
        importers.keras_sequential([keras2], (7, 5, 3))
    importers.keras_sequential(
        [jrnn.UpSampling2D(interpolation="bilinear", keras2=True)], (7, 5, 3)
    )
