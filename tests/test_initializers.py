"""jrnn.initializers against Keras 3.15.1 (TensorFlow backend) and tf_keras 2.21.

Two kinds of evidence:

* exact algorithm parity: Keras' random draws are replaced (pytest ``monkeypatch``)
  by the JAX draws jrnn makes from the same key, so Keras' own code (fans, scale, the
  0.8796 correction, QR and sign fix) must produce jrnn's values;
* distribution parity with Keras' real samples (seeded, so deterministic): a two-sample
  Kolmogorov-Smirnov test, moments and bounds on 120 000 values.
"""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import scipy.stats
import tf_keras
from keras.src.initializers import ALL_OBJECTS_DICT as KERAS_INITIALIZERS
from keras.src.initializers import random_initializers as keras_random_initializers

from jrnn import initializers

KEY = jax.random.key(0)
KERAS_UNSUPPORTED = {"Initializer", "initializer", "STFT", "STFTInitializer", "stft"}
KERAS_NAMES = sorted(set(KERAS_INITIALIZERS) - KERAS_UNSUPPORTED)
BIG = (400, 300)  # 120 000 samples: std to ~0.2%, KS test sensitive to ~1% shifts
SIGMA = initializers.TRUNCATED_NORMAL_STD


# --- Names and fans ----------------------------------------------------------------------


def test_names_are_exactly_keras_names():
    assert set(initializers.names()) == set(KERAS_NAMES)
    assert list(initializers.names()) == sorted(initializers.names())


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_every_keras_name_gives_the_same_class(name):
    ours = initializers.get(name)
    assert type(ours).__name__ == KERAS_INITIALIZERS[name].__name__


@pytest.mark.parametrize("name", sorted(KERAS_UNSUPPORTED))
def test_keras_names_jrnn_does_not_support_say_so(name):
    with pytest.raises(ValueError, match=rf"Initializer '{name}' is not supported by jrnn: "):
        initializers.get(name)


FAN_SHAPES = [
    (),
    (0,),
    (7,),
    (1, 1),
    (40, 30),
    (30, 40),
    (3, 20, 16),
    (3, 3, 20, 16),
    (2, 3, 3, 20, 16),
    (5, 4, 3, 2, 6),
    (1, 1, 1),
    (4, 0, 5),
]


@pytest.mark.parametrize("shape", FAN_SHAPES, ids=str)
def test_compute_fans_equal_keras(shape):
    assert initializers.compute_fans(shape) == keras_random_initializers.compute_fans(shape)
    assert initializers.compute_fans(list(shape)) == initializers.compute_fans(shape)


@pytest.mark.parametrize(
    "shape,input_axes,output_axes",
    [((3, 4, 5), [0, 1], [2]), ((3, 4, 5), [1], [0, 2]), ((3, 4, 5), [0], None), ((6, 2), [], [])],
)
def test_compute_fans_with_axes_equal_keras(shape, input_axes, output_axes):
    ours = initializers.compute_fans(shape, input_axes, output_axes)
    assert ours == keras_random_initializers.compute_fans(shape, input_axes, output_axes)


# --- Exact algorithm parity (Keras' code on jrnn's draws) --------------------------------


@pytest.fixture
def keras_draws_from_key(monkeypatch):
    """Make Keras' random.normal/truncated_normal/uniform return jrnn's draws from KEY.

    The unit draws come from jrnn's (compiled, cached) sampler with location 0 and
    scale 1, so they are exactly the ``z`` jrnn draws; Keras' ``mean``/``stddev``/
    ``minval``/``maxval`` are applied here, so Keras' code alone decides them.
    """
    random = keras_random_initializers.random
    zero, one = jnp.float32(0.0), jnp.float32(1.0)

    def unit(shape, distribution):
        z = initializers._sample(
            KEY,
            zero,
            one,
            shape=tuple(shape),
            dtype=jnp.dtype("float32"),
            distribution=distribution,
        )
        return np.asarray(z)

    def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        return np.float32(mean) + np.float32(stddev) * unit(shape, "normal")

    def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        return np.float32(mean) + np.float32(stddev) * unit(shape, "truncated_normal")

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        lo, hi = np.float32(minval), np.float32(maxval)
        return lo + (hi - lo) * unit(shape, "uniform")  # JAX's own formula, max() aside

    monkeypatch.setattr(random, "normal", normal)
    monkeypatch.setattr(random, "truncated_normal", truncated_normal)
    monkeypatch.setattr(random, "uniform", uniform)


RANDOM_CONFIGS = [
    ("GlorotUniform", {}),
    ("GlorotNormal", {}),
    ("HeUniform", {}),
    ("HeNormal", {}),
    ("LecunUniform", {}),
    ("LecunNormal", {}),
    ("RandomNormal", {}),
    ("RandomNormal", {"mean": 1.0, "stddev": 2.0}),
    ("RandomUniform", {}),
    ("RandomUniform", {"minval": -3.0, "maxval": 1.0}),
    ("TruncatedNormal", {}),
    ("TruncatedNormal", {"mean": 0.5, "stddev": 0.2}),
    ("VarianceScaling", {}),
    ("VarianceScaling", {"scale": 2.5, "mode": "fan_out", "distribution": "untruncated_normal"}),
    ("VarianceScaling", {"scale": 0.3, "mode": "fan_avg", "distribution": "uniform"}),
    ("VarianceScaling", {"scale": 1.5, "mode": "fan_in", "distribution": "normal"}),
    ("VarianceScaling", {"mode": "fan_in", "input_axes": [0, 1], "output_axes": [2]}),
    ("HeNormal", {"input_axes": [1], "output_axes": [0, 2]}),
]


# Shapes: 2-D and rank-4 (conv kernels: receptive fields) for every configuration;
# rank 3 where the configuration names axes.
EXACT_CASES = [
    (class_name, config, shape)
    for class_name, config in RANDOM_CONFIGS
    for shape in ([(3, 4, 6)] if "input_axes" in config else [(7, 5), (2, 3, 4, 5)])
]


@pytest.mark.usefixtures("keras_draws_from_key")
@pytest.mark.parametrize(
    "class_name,config,shape", EXACT_CASES, ids=[f"{c}-{k}-{s}" for c, k, s in EXACT_CASES]
)
def test_random_initializers_are_keras_algorithm_exactly(class_name, config, shape):
    identifier = {"class_name": class_name, "config": config}
    theirs = np.asarray(keras.initializers.get(identifier)(shape))
    ours = np.asarray(initializers.get(identifier)(KEY, shape))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


@pytest.mark.usefixtures("keras_draws_from_key")
@pytest.mark.parametrize("gain", [1.0, 1.7])
@pytest.mark.parametrize(
    "shape", [(6, 6), (5, 9), (9, 5), (2, 3, 8), (4, 4, 3, 5), (1, 7)], ids=str
)
def test_orthogonal_is_keras_algorithm_exactly(shape, gain):
    config = {"class_name": "Orthogonal", "config": {"gain": gain, "seed": None}}
    theirs = np.asarray(keras.initializers.get(config)(shape))
    ours = np.asarray(initializers.get(config)(KEY, shape))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)  # TF's QR vs LAPACK's


# --- Distribution parity with Keras' real samples ----------------------------------------


def _vs_limit(shape, scale, mode):
    fan_in, fan_out = initializers.compute_fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    return scale / max(1.0, n)


# name -> (expected std, bound on |x - mean| or None, expected mean)
_V = {
    "glorot": _vs_limit(BIG, 1.0, "fan_avg"),
    "he": _vs_limit(BIG, 2.0, "fan_in"),
    "lecun": _vs_limit(BIG, 1.0, "fan_in"),
}
EXPECTED = {
    "glorot_uniform": (math.sqrt(_V["glorot"]), math.sqrt(3 * _V["glorot"]), 0.0),
    "he_uniform": (math.sqrt(_V["he"]), math.sqrt(3 * _V["he"]), 0.0),
    "lecun_uniform": (math.sqrt(_V["lecun"]), math.sqrt(3 * _V["lecun"]), 0.0),
    "glorot_normal": (math.sqrt(_V["glorot"]), 2 * math.sqrt(_V["glorot"]) / SIGMA, 0.0),
    "he_normal": (math.sqrt(_V["he"]), 2 * math.sqrt(_V["he"]) / SIGMA, 0.0),
    "lecun_normal": (math.sqrt(_V["lecun"]), 2 * math.sqrt(_V["lecun"]) / SIGMA, 0.0),
    "variance_scaling": (math.sqrt(_V["lecun"]), 2 * math.sqrt(_V["lecun"]) / SIGMA, 0.0),
    "random_normal": (0.05, None, 0.0),
    "random_uniform": (0.1 / math.sqrt(12), 0.05, 0.0),
    "truncated_normal": (0.05 * SIGMA, 0.1, 0.0),
    "orthogonal": (1 / math.sqrt(BIG[0]), None, 0.0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_distribution_matches_keras_samples(name):
    std, bound, mean = EXPECTED[name]
    ours = np.asarray(initializers.get(name)(jax.random.key(1), BIG)).ravel()
    theirs = np.asarray(
        keras.initializers.get({"class_name": name, "config": {"seed": 1}})(BIG)
    ).ravel()
    for sample in (ours, theirs):
        np.testing.assert_allclose(sample.std(), std, rtol=0.01)
        assert abs(sample.mean() - mean) < 0.02 * std
        if bound is not None:
            assert np.abs(sample - mean).max() <= bound * (1 + 1e-6)
            assert np.abs(sample - mean).max() >= 0.99 * bound  # the bound is reached
    assert scipy.stats.ks_2samp(ours, theirs).pvalue > 1e-3


def test_truncated_normal_with_mean_is_cut_around_the_mean():
    w = np.asarray(initializers.TruncatedNormal(mean=3.0, stddev=0.5)(KEY, BIG))
    assert np.abs(w - 3.0).max() <= 1.0 + 1e-6
    np.testing.assert_allclose(w.std(), 0.5 * SIGMA, rtol=0.01)


# --- Orthogonal --------------------------------------------------------------------------


@pytest.mark.parametrize("gain", [1.0, 0.5])
@pytest.mark.parametrize(
    "shape", [(6, 6), (5, 9), (9, 5), (2, 3, 8), (3, 2, 8), (4, 4, 3, 5), (1, 1)], ids=str
)
def test_orthogonal_gives_scaled_orthonormal_rows_or_columns(shape, gain):
    w = np.asarray(initializers.Orthogonal(gain=gain)(KEY, shape), np.float64)
    assert w.shape == shape
    flat = w.reshape(-1, shape[-1])
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=1e-5)


def test_orthogonal_errors():
    with pytest.raises(ValueError, match=r"rank >= 2; received shape=\(5,\) of rank 1"):
        initializers.Orthogonal()(KEY, (5,))


# --- Deterministic initializers ----------------------------------------------------------


def test_deterministic_initializers_equal_keras():
    cases = [
        (initializers.Zeros(), keras.initializers.Zeros(), (3, 4)),
        (initializers.Ones(), keras.initializers.Ones(), (3, 4)),
        (initializers.Constant(0.3), keras.initializers.Constant(0.3), (2, 3, 4)),
        (initializers.Constant([1.0, 2.0]), keras.initializers.Constant([1.0, 2.0]), (3, 2)),
        (initializers.Identity(), keras.initializers.Identity(), (4, 4)),
        (initializers.Identity(gain=2.5), keras.initializers.Identity(gain=2.5), (3, 5)),
        (initializers.Identity(gain=-1.0), keras.initializers.Identity(gain=-1.0), (5, 3)),
    ]
    for ours, theirs, shape in cases:
        np.testing.assert_array_equal(ours(None, shape), np.asarray(theirs(shape)))


def test_deterministic_initializers_take_any_dtype():
    assert initializers.Zeros()(None, (2,), jnp.int32).dtype == jnp.int32
    np.testing.assert_array_equal(initializers.Constant(2)(None, (2,), jnp.int32), [2, 2])
    assert initializers.Identity()(None, (2, 2), jnp.bfloat16).dtype == jnp.bfloat16


def test_identity_and_constant_errors():
    with pytest.raises(
        ValueError, match=r"only be used for 2-D shapes; received shape=\(2, 2, 2\)"
    ):
        initializers.Identity()(None, (2, 2, 2))
    with pytest.raises(ValueError, match=r"value of shape \(3,\) does not broadcast to shape"):
        initializers.Constant([1.0, 2.0, 3.0])(None, (2, 2))


# --- dtypes, jit, keys and seeds ---------------------------------------------------------


@pytest.mark.parametrize("name", ["glorot_uniform", "he_normal", "orthogonal", "random_normal"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_dtypes_under_strict_promotion(name, dtype):
    init = initializers.get(name)
    with jax.numpy_dtype_promotion("strict"):
        w = init(KEY, (7, 5), dtype)
        w32 = init(KEY, (7, 5), jnp.float32)
    assert w.dtype == jnp.dtype(dtype)
    np.testing.assert_array_equal(w, w32.astype(dtype))  # drawn in float32, then cast


# One class per code path (the other VarianceScaling subclasses share GlorotUniform's).
JIT_CLASSES = ["Constant", "GlorotUniform", "HeNormal", "Identity", "Orthogonal", "RandomNormal"]


@pytest.mark.parametrize("name", [*JIT_CLASSES, "TruncatedNormal", "Zeros"])
def test_initializers_jit_with_static_shape(name):
    init = initializers.get(name)
    shape = (7, 5)
    eager = init(KEY, shape, jnp.float32)
    jitted = jax.jit(init, static_argnums=(1, 2))(KEY, shape, jnp.float32)
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)


def test_random_initializers_need_a_float_dtype():
    with pytest.raises(ValueError, match=r"GlorotUniform: random initializers need a floating"):
        initializers.GlorotUniform()(KEY, (2, 2), jnp.int32)


def test_key_drives_randomness_and_seed_only_replaces_a_missing_key():
    init = initializers.RandomNormal(seed=3)
    np.testing.assert_array_equal(init(None, (5,)), init(None, (5,)))  # Keras' int seeds
    np.testing.assert_array_equal(init(None, (5,)), init(jax.random.key(3), (5,)))
    np.testing.assert_array_equal(init(KEY, (5,)), initializers.RandomNormal()(KEY, (5,)))
    assert not np.array_equal(init(KEY, (5,)), init(jax.random.key(1), (5,)))
    legacy_key = jax.random.PRNGKey(0)  # raw uint32 keys work too
    assert init(legacy_key, (5,)).shape == (5,)
    with pytest.raises(ValueError, match=r"RandomNormal: pass a JAX PRNG key, e\.g\."):
        initializers.RandomNormal()(None, (5,))


def test_seed_generator_config_gives_its_seed():
    kinit = keras.initializers.RandomNormal(seed=keras.random.SeedGenerator(7))
    ours = initializers.get(keras.initializers.serialize(kinit))
    assert isinstance(ours.seed, dict) and ours.seed["class_name"] == "SeedGenerator"
    np.testing.assert_array_equal(ours(None, (3,)), ours(jax.random.key(7), (3,)))


@pytest.mark.parametrize("seed", ["1", 1.5, True, {"class_name": "Other"}])
def test_bad_seeds(seed):
    with pytest.raises(ValueError, match=r"`seed` must be None, an int or a Keras SeedGenerator"):
        initializers.RandomUniform(seed=seed)


# --- Configs: get, serialize, Keras 3 and Keras 2 ----------------------------------------


def _keras_config(kinit):
    config = dict(kinit.get_config())
    if type(kinit).__name__ == "Identity":
        config.setdefault("gain", kinit.gain)  # Keras 3.15's get_config drops it
    return config


@pytest.mark.parametrize("name", [n for n in KERAS_NAMES if n.lower() != "constant"])
def test_get_reads_keras3_serialization_of_every_name(name):
    kinit = keras.initializers.get(name)
    config = keras.initializers.serialize(kinit)
    ours = initializers.get(config)
    assert type(ours).__name__ == type(kinit).__name__
    assert ours.get_config() == _keras_config(kinit)
    ours_config = initializers.serialize(ours)
    assert set(ours_config) == set(config)
    assert initializers.get(ours_config) == ours
    back = keras.initializers.deserialize(ours_config)  # Keras reads what jrnn writes
    assert type(back) is type(kinit) and _keras_config(back) == _keras_config(kinit)


NON_DEFAULT = [
    lambda: keras.initializers.VarianceScaling(
        2.0, "fan_out", "uniform", seed=3, input_axes=[0], output_axes=[1]
    ),
    lambda: keras.initializers.VarianceScaling(0.5, "fan_avg", "normal"),
    lambda: keras.initializers.RandomNormal(mean=1.0, stddev=2.0, seed=4),
    lambda: keras.initializers.RandomUniform(minval=-1.0, maxval=2.0, seed=5),
    lambda: keras.initializers.TruncatedNormal(mean=0.1, stddev=0.3),
    lambda: keras.initializers.Orthogonal(gain=1.5, seed=2),
    lambda: keras.initializers.HeNormal(seed=7),
    lambda: keras.initializers.GlorotUniform(input_axes=[0], output_axes=[1]),
    lambda: keras.initializers.Constant(3.0),
    lambda: keras.initializers.Constant(np.array([1.0, 2.0])),
    lambda: keras.initializers.Identity(gain=2.0),
    lambda: keras.initializers.Ones(),
]


@pytest.mark.parametrize("make", NON_DEFAULT, ids=range(len(NON_DEFAULT)))
def test_get_reads_keras3_configs_and_objects_with_non_default_arguments(make):
    kinit = make()
    from_object = initializers.get(kinit)
    assert type(from_object).__name__ == type(kinit).__name__
    if type(kinit).__name__ == "Identity":
        # Keras writes {} for Identity, losing the gain; the object still has it.
        assert from_object.gain == 2.0
        assert initializers.get(keras.initializers.serialize(kinit)).gain == 1.0
        return
    from_config = initializers.get(keras.initializers.serialize(kinit))
    assert from_config == from_object
    assert from_config.get_config() == kinit.get_config()
    shape = (7, 5) if type(kinit).__name__ != "Constant" else (7, 2)
    np.testing.assert_allclose(from_config(KEY, shape), from_object(KEY, shape), rtol=0, atol=0)


def test_get_reads_keras_classes_and_jrnn_classes():
    assert isinstance(
        initializers.get(keras.initializers.GlorotUniform), initializers.GlorotUniform
    )
    assert initializers.get(initializers.HeNormal) == initializers.HeNormal()
    instance = initializers.Orthogonal(gain=2.0)
    assert initializers.get(instance) is instance


def test_get_returns_other_callables_as_is():
    init = jax.nn.initializers.normal(0.5)
    assert initializers.get(init) is init


@pytest.mark.parametrize(
    "name",
    [
        "glorot_uniform",
        "glorot_normal",
        "he_normal",
        "lecun_uniform",
        "orthogonal",
        "identity",
        "zeros",
        "ones",
        "random_normal",
        "random_uniform",
        "truncated_normal",
    ],
)
def test_get_reads_tf_keras_serialization(name):
    k2init = tf_keras.initializers.get(name)
    config = tf_keras.initializers.serialize(k2init)
    ours = initializers.get(config)
    assert type(ours).__name__ == type(k2init).__name__
    assert (
        initializers.get({"class_name": config["class_name"], "config": config["config"]}) == ours
    )
    for key, value in k2init.get_config().items():
        assert ours.get_config()[key] == value


@pytest.mark.parametrize(
    "config,expected",
    [
        (  # Keras 2.2 wrote glorot_uniform as VarianceScaling
            {
                "class_name": "VarianceScaling",
                "config": {
                    "scale": 1.0,
                    "mode": "fan_avg",
                    "distribution": "uniform",
                    "seed": None,
                },
            },
            initializers.VarianceScaling(1.0, "fan_avg", "uniform"),
        ),
        (  # TF 1 wrote the dtype; it does not change the values
            {"class_name": "GlorotUniform", "config": {"seed": None, "dtype": "float32"}},
            initializers.GlorotUniform(),
        ),
        (
            {
                "class_name": "Constant",
                "config": {"value": 0.5, "dtype": "float32", "verify_shape": False},
            },
            initializers.Constant(0.5),
        ),
        (
            {"class_name": "VarianceScaling", "config": {"distribution": "Normal"}},
            initializers.VarianceScaling(distribution="truncated_normal"),
        ),
        ({"class_name": "Zeros", "config": None}, initializers.Zeros()),
        ({"class_name": "zero", "config": {}}, initializers.Zeros()),
    ],
)
def test_get_reads_legacy_configs(config, expected):
    assert initializers.get(config) == expected


def test_constant_array_values_round_trip_like_keras():
    kinit = keras.initializers.Constant(np.array([1.0, 2.0]))
    ours = initializers.get(keras.initializers.serialize(kinit))
    np.testing.assert_array_equal(ours(None, (3, 2)), np.asarray(kinit((3, 2))))
    assert initializers.serialize(ours) == keras.initializers.serialize(kinit)
    assert initializers.Constant(np.float32(2.0)).get_config() == {"value": 2.0}


def test_equality_hash_and_repr():
    a, b = initializers.Orthogonal(gain=2.0), initializers.Orthogonal(gain=2.0)
    assert a == b and hash(a) == hash(b) and a != initializers.Orthogonal()
    assert initializers.GlorotUniform() != initializers.GlorotNormal()
    assert repr(a) == "Orthogonal(seed=None, gain=2.0)"
    assert initializers.Orthogonal.from_config(a.get_config()) == a


# --- Errors ------------------------------------------------------------------------------


def test_unknown_names_list_valid_names_and_suggest():
    with pytest.raises(
        ValueError, match=r"Unknown initializer 'glorot_unifrom'\. Valid names: \["
    ) as info:
        initializers.get("glorot_unifrom")
    assert "Did you mean 'glorot_uniform'?" in str(info.value)
    assert all(repr(n) in str(info.value) for n in initializers.names())
    with pytest.raises(ValueError, match=r"Unknown initializer 'Glorot_Uniform'"):
        initializers.get("Glorot_Uniform")  # case-sensitive, as Keras
    with pytest.raises(ValueError, match=r"Unknown initializer 'Nope'\. Valid names"):
        initializers.get({"class_name": "Nope", "config": {}})


def test_unknown_config_keys_raise_naming_class_key_and_value():
    with pytest.raises(
        ValueError, match=r"config for Zeros has unknown keys \['bogus'\] \(bogus=1\); accepted"
    ):
        initializers.get({"class_name": "Zeros", "config": {"bogus": 1}})
    with pytest.raises(ValueError, match=r"GlorotUniform has unknown keys \['scale'\]"):
        initializers.get({"class_name": "GlorotUniform", "config": {"scale": 2.0}})
    with pytest.raises(ValueError, match=r"Orthogonal: 'config' must be a dict"):
        initializers.get({"class_name": "Orthogonal", "config": "gain"})


def test_custom_and_malformed_configs_raise():
    custom = {
        "module": "my_package",
        "class_name": "MyInit",
        "config": {},
        "registered_name": "Custom>MyInit",
    }
    with pytest.raises(ValueError, match=r"names a custom initializer \(module 'my_package'"):
        initializers.get(custom)
    with pytest.raises(ValueError, match=r"'class_name' is missing"):
        initializers.get({"config": {}})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        initializers.get({"class_name": "Zeros", "config": {}, "extra": 1})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scale": 0.0}, r"`scale` must be a positive float; received scale=0\.0"),
        ({"scale": -1.0}, r"`scale` must be a positive float"),
        ({"mode": "fan_sum"}, r"`mode` must be one of \['fan_in', 'fan_out', 'fan_avg'\]"),
        ({"distribution": "cauchy"}, r"`distribution` must be one of \['uniform', 'trunc"),
    ],
)
def test_variance_scaling_validates_like_keras(kwargs, match):
    with pytest.raises(ValueError):
        keras.initializers.VarianceScaling(**kwargs)
    with pytest.raises(ValueError, match=rf"VarianceScaling: {match}"):
        initializers.VarianceScaling(**kwargs)


@pytest.mark.parametrize("bad", [None, 3, 1.5, ["zeros"]])
def test_wrong_types_raise_type_error(bad):
    with pytest.raises(TypeError, match=r"Cannot interpret initializer .* expected a name"):
        initializers.get(bad)


def test_serialize_rejects_non_keras_initializers():
    with pytest.raises(ValueError, match=r"Cannot serialize .* not a jrnn Keras initializer"):
        initializers.serialize(jax.nn.initializers.zeros)
    with pytest.raises(ValueError, match=r"unit_forget_bias is a layer argument in Keras"):
        initializers.serialize(initializers.unit_forget_bias("zeros", 2))


# --- unit_forget_bias --------------------------------------------------------------------


def _keras_lstm_bias(bias_initializer, units):
    layer = keras.layers.LSTM(units, bias_initializer=bias_initializer, unit_forget_bias=True)
    layer.build((None, 7, 3))
    return layer.cell.bias.numpy()


@pytest.mark.parametrize("base", ["zeros", "ones", 0.3])
def test_unit_forget_bias_equals_keras_lstm(base):
    keras_base = keras.initializers.Constant(base) if isinstance(base, float) else base
    ours_base = initializers.Constant(base) if isinstance(base, float) else base
    theirs = _keras_lstm_bias(keras_base, 5)
    ours = initializers.unit_forget_bias(ours_base, 5)(KEY, (20,))
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize(
    "base",
    [
        {"class_name": "RandomNormal", "config": {"stddev": 1.0}},
        "glorot_uniform",
        initializers.Orthogonal(),  # rank-1 blocks: Keras' Orthogonal fails the same way
    ],
    ids=["random_normal", "glorot_uniform", "orthogonal"],
)
def test_unit_forget_bias_calls_the_base_twice_with_split_keys(base):
    init = initializers.unit_forget_bias(base, 5)
    if isinstance(base, initializers.Orthogonal):
        with pytest.raises(ValueError, match=r"rank >= 2"):
            init(KEY, (20,))
        return
    b = np.asarray(init(KEY, (20,)))
    k1, k2 = jax.random.split(KEY)
    base_init = initializers.get(base)
    np.testing.assert_array_equal(b[:5], base_init(k1, (5,)))  # fans of (5,), as Keras
    np.testing.assert_array_equal(b[5:10], np.ones(5))
    np.testing.assert_array_equal(b[10:], base_init(k2, (10,)))


def test_unit_forget_bias_leading_axes_dtype_and_seeded_bases():
    b = initializers.unit_forget_bias("zeros", 2)(KEY, (3, 8), jnp.bfloat16)
    assert b.shape == (3, 8) and b.dtype == jnp.bfloat16
    np.testing.assert_array_equal(b[:, 2:4], 1.0)
    np.testing.assert_array_equal(b[:, np.r_[0:2, 4:8]], 0.0)
    seeded = initializers.unit_forget_bias(initializers.RandomUniform(seed=1), 5)
    b = np.asarray(seeded(None, (20,)))  # no key: the seed repeats, as in Keras
    np.testing.assert_array_equal(b[:5], initializers.RandomUniform(seed=1)(None, (5,)))


def test_unit_forget_bias_errors():
    with pytest.raises(ValueError, match=r"shape must be \(20,\); received \(12,\)"):
        initializers.unit_forget_bias("zeros", 5)(KEY, (12,))
    with pytest.raises(ValueError, match=r"shape must be \(3, 20\); received \(3, 12\)"):
        initializers.unit_forget_bias("zeros", 5)(KEY, (3, 12))
    with pytest.raises(ValueError, match=r"`units` must be a positive int; received 0"):
        initializers.unit_forget_bias("zeros", 0)
    with pytest.raises(ValueError, match=r"Unknown initializer 'zeroes'"):
        initializers.unit_forget_bias("zeroes", 5)


# --- Documentation -----------------------------------------------------------------------


def test_every_public_name_is_documented():
    for name in initializers.__all__:
        obj = getattr(initializers, name)
        if isinstance(obj, float):
            continue
        assert inspect.getdoc(obj), name
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and callable(member):
                    assert inspect.getdoc(member), f"{name}.{attr}"
            assert inspect.getdoc(obj.__call__), f"{name}.__call__"
