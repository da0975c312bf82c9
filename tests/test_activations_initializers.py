"""jrnn.activations and jrnn.initializers against Keras 3: values, distributions, configs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tensorflow as tf

from jrnn import activations, initializers

X = (
    np.concatenate([np.linspace(-7, 7, 142), [-0.5, 0.5, -1.0, 1.0, 3.0, -3.0]])
    .astype(np.float32)
    .reshape(2, -1)
)


@pytest.mark.parametrize("name", [n for n in activations.names() if n != "keras2_hard_sigmoid"])
def test_activation_equals_keras(name):
    ours = np.asarray(activations.get(name)(jnp.asarray(X)))
    theirs = np.asarray(keras.activations.get(name)(tf.constant(X)))
    np.testing.assert_allclose(ours, theirs, atol=2e-6, rtol=2e-6)
    # dtype preserved, jit-able and differentiable
    y = jax.jit(activations.get(name))(jnp.asarray(X, jnp.bfloat16))
    assert y.dtype == jnp.bfloat16
    g = jax.grad(lambda v: jnp.sum(activations.get(name)(v)))(jnp.asarray(X))
    assert g.shape == X.shape


def test_every_keras_name_is_known():
    from keras.src.activations import ALL_OBJECTS_DICT

    expected = set(ALL_OBJECTS_DICT) - {"threshold"}  # threshold needs two extra arguments
    assert expected <= set(activations.names())


def test_keras2_hard_sigmoid_and_configs():
    import tf_keras

    ours = activations.get("keras2_hard_sigmoid")(jnp.asarray(X))
    np.testing.assert_allclose(
        ours, tf_keras.backend.hard_sigmoid(tf.constant(X)).numpy(), atol=1e-7
    )
    assert activations.get(None) is activations.linear
    assert activations.get(keras.activations.serialize(keras.activations.get("tanh"))) is (
        activations.tanh
    )
    config = {
        "module": "keras.activations",
        "class_name": "function",
        "config": "relu",
        "registered_name": "function",
    }
    assert activations.get(config) is activations.relu
    assert activations.serialize(activations.get("swish")) == "silu"
    with pytest.raises(ValueError, match=r"Unknown activation 'tanhh'. Valid names: \["):
        activations.get("tanhh")
    with pytest.raises(TypeError, match=r"Cannot interpret activation 3"):
        activations.get(3)


SHAPES = [(), (7,), (40, 30), (3, 3, 20, 16), (5, 4, 3, 2, 6)]


@pytest.mark.parametrize("shape", SHAPES)
def test_compute_fans_equal_keras(shape):
    from keras.src.initializers.random_initializers import compute_fans

    assert initializers.compute_fans(shape) == compute_fans(shape)


@pytest.mark.parametrize(
    "name,bound",
    [
        ("glorot_uniform", lambda fi, fo: np.sqrt(6 / (fi + fo))),
        ("he_uniform", lambda fi, fo: np.sqrt(6 / fi)),
        ("lecun_uniform", lambda fi, fo: np.sqrt(3 / fi)),
    ],
)
def test_uniform_variance_scaling(name, bound):
    shape = (400, 300)
    w = np.asarray(initializers.get(name)(jax.random.key(0), shape))
    limit = bound(*shape)
    assert np.abs(w).max() <= limit + 1e-7
    np.testing.assert_allclose(w.std(), limit / np.sqrt(3), rtol=0.02)
    k = np.asarray(keras.initializers.get(name)(shape))
    np.testing.assert_allclose(w.std(), k.std(), rtol=0.03)


@pytest.mark.parametrize(
    "name",
    [
        "glorot_normal",
        "he_normal",
        "lecun_normal",
        "truncated_normal",
        "random_normal",
        "random_uniform",
    ],
)
def test_normal_family_matches_keras_statistics(name):
    shape = (400, 300)
    w = np.asarray(initializers.get(name)(jax.random.key(1), shape))
    k = np.asarray(keras.initializers.get(name)(shape))
    np.testing.assert_allclose(w.std(), k.std(), rtol=0.03)
    np.testing.assert_allclose(w.mean(), k.mean(), atol=0.01 * k.std() + 1e-4)
    np.testing.assert_allclose(np.abs(w).max(), np.abs(k).max(), rtol=0.15)
    if "truncated" in name or (name.endswith("_normal") and name != "random_normal"):
        assert np.abs(w).max() <= 1.02 * 2 * k.std() / 0.8796  # truncated at 2 stddev


@pytest.mark.parametrize("shape", [(6, 6), (5, 9), (9, 5), (2, 3, 8), (4, 4, 3, 5)])
@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_orthogonal(shape, gain):
    w = np.asarray(
        initializers.get({"class_name": "Orthogonal", "config": {"gain": gain, "seed": None}})(
            jax.random.key(2), shape
        )
    )
    flat = w.reshape(-1, shape[-1])
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=1e-5)
    assert initializers.get("orthogonal")(jax.random.key(0), (4, 4), jnp.bfloat16).dtype == (
        jnp.bfloat16
    )


@pytest.mark.parametrize(
    "name",
    [
        "glorot_uniform",
        "GlorotUniform",
        "orthogonal",
        "OrthogonalInitializer",
        "zeros",
        "ones",
        "uniform",
        "normal",
        "he_normal",
        "lecun_uniform",
        "variance_scaling",
        "truncated_normal",
        "identity",
        "IdentityInitializer",
    ],
)
def test_keras_configs_resolve_to_same_class_and_params(name):
    kinit = keras.initializers.get(name)
    config = keras.initializers.serialize(kinit)
    ours = initializers.get(config)
    assert type(ours).__name__ == type(kinit).__name__ or (
        type(kinit).__name__,
        type(ours).__name__,
    ) in {("Identity", "Identity")}
    kconf = {k: v for k, v in kinit.get_config().items() if k not in ("input_axes", "output_axes")}
    if name.lower().startswith("identity"):
        kconf = {"gain": 1.0}  # Keras 3.15.1's Identity.get_config() drops `gain`
    assert ours.get_config() == kconf
    assert initializers.get(initializers.serialize(ours)) == ours


def test_unit_forget_bias_and_errors():
    for base in ("zeros", "ones", {"class_name": "RandomNormal", "config": {"stddev": 1.0}}):
        b = np.asarray(initializers.unit_forget_bias(base, 5)(jax.random.key(0), (20,)))
        np.testing.assert_array_equal(b[5:10], np.ones(5))
        if base == "zeros":
            np.testing.assert_array_equal(b[np.r_[0:5, 10:20]], 0)
        if base == "ones":
            np.testing.assert_array_equal(b, 1)
    with pytest.raises(ValueError, match=r"shape must be \(20,\); received \(12,\)"):
        initializers.unit_forget_bias("zeros", 5)(jax.random.key(0), (12,))
    with pytest.raises(ValueError, match=r"Unknown initializer 'glorot_unifrom'"):
        initializers.get("glorot_unifrom")
    with pytest.raises(ValueError, match=r"unknown keys \['bogus'\]"):
        initializers.get({"class_name": "Zeros", "config": {"bogus": 1}})
    with pytest.raises(ValueError, match=r"rank >= 2"):
        initializers.Orthogonal()(jax.random.key(0), (5,))
    seeded = initializers.RandomNormal(seed=3)
    np.testing.assert_array_equal(seeded(None, (3,)), seeded(None, (3,)))
