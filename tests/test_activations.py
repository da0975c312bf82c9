"""jrnn.activations against Keras 3.15.1 (TensorFlow backend) and tf_keras 2.21.

Values and gradients are compared with Keras in-process on the same float32 inputs;
every activation meets ``|jrnn - keras| <= 1e-6 + 1e-6 |keras|`` (measured worst case:
``exponential`` at rtol 1.1e-7 near e^20; ``gelu`` 4.8e-7 absolute). 16-bit results are
compared with jrnn's own float32 result on the same rounded inputs.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from keras.src.activations import ALL_OBJECTS_DICT as KERAS_ACTIVATIONS
from keras.src.saving import serialization_lib

from jrnn import activations

# Keras' "threshold" needs two more arguments, so it is no one-argument activation.
KERAS_NAMES = sorted(set(KERAS_ACTIVATIONS) - {"threshold"})
RTOL = ATOL = 1e-6  # float32 parity with Keras, every activation (see module docstring)
TOL_16BIT = {"bfloat16": 2e-2}  # rtol = atol, vs jrnn's float32 on the same inputs

_rng = np.random.default_rng(0)
# Random values at three scales, plus every kink/saturation point (0, +-0.5, +-1, +-2.5,
# +-3, +-6) and overflow paths (+-20, +-88, +-100: exp overflows to inf, as in Keras).
_SPECIAL = [0.0, 0.5, -0.5, 1.0, -1.0, 2.5, -2.5, 3.0, -3.0, 6.0, -6.0, 20.0, -20.0]
_SPECIAL += [88.0, -88.0, 100.0, -100.0, 1e-3, -1e-3, 1e-6]
X = (
    np.concatenate(
        [
            _rng.standard_normal(44) * 0.5,
            _rng.standard_normal(64) * 3.0,
            _rng.standard_normal(64) * 10.0,
            _SPECIAL,
        ]
    )
    .astype(np.float32)
    .reshape(8, 24)  # last axis even, for glu
)
# Gradient points: random, so no input sits exactly on a kink.
XG = (_rng.standard_normal((8, 24)) * 3.0).astype(np.float32)
# 16-bit inputs: moderate magnitudes (|x| <= 8), where 16-bit results are meaningful.
X16 = np.clip(XG, -8.0, 8.0)

# Keras keyword arguments: every non-default setting jrnn supports, against Keras.
KWARGS_CASES = [
    ("relu", {"negative_slope": 0.1}),
    ("relu", {"max_value": 6.0}),
    ("relu", {"max_value": 2.5}),
    ("relu", {"threshold": 1.0}),
    ("relu", {"threshold": -0.5, "max_value": 3.0}),
    ("relu", {"negative_slope": 0.3, "threshold": 0.5}),
    ("relu", {"negative_slope": 0.2, "max_value": 4.0}),
    ("relu", {"negative_slope": 0.1, "threshold": 1.0, "max_value": 5.0}),
    ("leaky_relu", {"negative_slope": 0.01}),
    ("elu", {"alpha": 0.5}),
    ("celu", {"alpha": 2.0}),
    ("gelu", {"approximate": True}),
    ("softmax", {"axis": 0}),
    ("softmax", {"axis": None}),
    ("log_softmax", {"axis": 0}),
    ("glu", {"axis": 0}),
    ("squareplus", {"b": 1.0}),
    ("soft_shrink", {"threshold": 1.0}),
    ("hard_shrink", {"threshold": 1.0}),
    ("sparsemax", {"axis": 0}),
    ("threshold", {"threshold": 0.3, "default_value": -1.0}),
]


def _keras(fn, x, **kwargs):
    return fn(tf.constant(x), **kwargs).numpy()


def _weights(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _weighted_grad(fn, x, w):
    return jax.grad(lambda v: jnp.sum(w * fn(v).astype(jnp.float32)))(x)


def _weighted_grad_tf(fn, x, w):
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.reduce_sum(tf.constant(w) * fn(xt))
    return tape.gradient(y, xt).numpy()


# One jit per batch (every activation at once) keeps this file fast: per-name tests
# index the cached results. Tracing happens under strict dtype promotion.
_CASES = {name: activations.get(name) for name in activations.names()}
_CASES |= {
    f"{name}-{kwargs}": functools.partial(getattr(activations, name), **kwargs)
    for name, kwargs in KWARGS_CASES
}


def _compile(fn, *args):
    """``jax.jit(fn)`` traced under strict dtype promotion, compiled at XLA backend
    optimisation level 0: LLVM's optimisation of these large test programs would
    otherwise dominate the file's run time (the HLO, hence the arithmetic, is the same)."""
    with jax.numpy_dtype_promotion("strict"):
        lowered = jax.jit(fn).lower(*args)
    return lowered.compile({"xla_backend_optimization_level": 0})


@functools.cache
def _float32_results() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per case, in one program: (value at X, weighted gradient at XG)."""

    def run(x, xg):
        out = {}
        for case, fn in _CASES.items():
            w = jnp.asarray(_weights(jax.eval_shape(fn, xg).shape))
            out[case] = (fn(x), _weighted_grad(fn, xg, w))
        return out

    args = (jnp.asarray(X), jnp.asarray(XG))
    return jax.tree.map(np.asarray, _compile(run, *args)(*args))


@functools.cache
def _bfloat16_values() -> dict[str, jax.Array]:
    """Per activation name, in one program: its bfloat16 value at X16."""
    x = jnp.asarray(X16, jnp.bfloat16)
    return _compile(lambda v: {n: activations.get(n)(v) for n in activations.names()}, x)(x)


def _case_ids(cases):
    return [f"{n}-{k}" for n, k in cases]


# --- Names -------------------------------------------------------------------------------


def test_names_are_exactly_keras_names_plus_keras2_hard_sigmoid():
    assert set(activations.names()) == set(KERAS_NAMES) | {"keras2_hard_sigmoid"}
    assert list(activations.names()) == sorted(activations.names())
    assert "threshold" not in activations.names()


@pytest.mark.parametrize("alias,target", [("swish", "silu"), ("hard_swish", "hard_silu")])
def test_aliases_are_the_same_function(alias, target):
    assert activations.get(alias) is activations.get(target)
    assert KERAS_ACTIVATIONS[alias] is KERAS_ACTIVATIONS[target]


# --- Values, gradients, jit, dtypes ------------------------------------------------------


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_values_equal_keras_eager_and_jit(name):
    ours = np.asarray(activations.get(name)(jnp.asarray(X)))  # eager
    theirs = _keras(keras.activations.get(name), X)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(_float32_results()[name][0], theirs, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_gradients_equal_tensorflow(name):
    ours = _float32_results()[name][1]
    w = _weights(_keras(keras.activations.get(name), XG).shape)
    theirs = _weighted_grad_tf(keras.activations.get(name), XG, w)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,kwargs", KWARGS_CASES, ids=_case_ids(KWARGS_CASES))
def test_keras_keyword_arguments_equal_keras(name, kwargs):
    value, grad = _float32_results()[f"{name}-{kwargs}"]
    kfn = functools.partial(getattr(keras.activations, name), **kwargs)
    np.testing.assert_allclose(value, _keras(kfn, X), rtol=RTOL, atol=ATOL)
    w = _weights(value.shape)
    np.testing.assert_allclose(grad, _weighted_grad_tf(kfn, XG, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", activations.names())
def test_bfloat16_values(name):
    value = _bfloat16_values()[name]
    assert value.dtype == jnp.bfloat16
    # float32 arithmetic on the same rounded inputs
    reference = activations.get(name)(jnp.asarray(X16, jnp.bfloat16).astype(jnp.float32))
    tol = TOL_16BIT["bfloat16"]
    np.testing.assert_allclose(value.astype(jnp.float32), reference, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_every_case_preserves_dtype_under_strict_promotion(dtype):
    x = jax.ShapeDtypeStruct(X16.shape, jnp.dtype(dtype))
    with jax.numpy_dtype_promotion("strict"):
        for case, fn in _CASES.items():
            assert jax.eval_shape(fn, x).dtype == x.dtype, case
            grad = jax.eval_shape(jax.grad(lambda v, fn=fn: jnp.sum(fn(v))), x)
            assert grad.dtype == x.dtype, case


def test_activations_accept_array_likes():
    assert activations.relu([-1.0, 2.0]).tolist() == [0.0, 2.0]
    assert activations.hard_sigmoid(np.float32(0.0)).dtype == jnp.float32


# --- Keras 2 hard sigmoid ----------------------------------------------------------------


def test_keras2_hard_sigmoid_equals_tf_keras():
    ours = np.asarray(activations.keras2_hard_sigmoid(jnp.asarray(X)))
    np.testing.assert_array_equal(ours, tf_keras.backend.hard_sigmoid(tf.constant(X)).numpy())
    np.testing.assert_array_equal(
        ours, tf_keras.activations.get("hard_sigmoid")(tf.constant(X)).numpy()
    )
    grads = _weighted_grad(activations.keras2_hard_sigmoid, jnp.asarray(X), jnp.ones(X.shape))
    tf_grads = _weighted_grad_tf(tf_keras.backend.hard_sigmoid, X, np.ones_like(X))
    np.testing.assert_array_equal(grads, tf_grads)  # incl. the bounds +-2.5 (TF: 0.2 there)


def test_keras2_and_keras3_hard_sigmoid_differ():
    x = jnp.asarray([1.0, 2.75])
    np.testing.assert_allclose(activations.hard_sigmoid(x), [4 / 6, 2.75 / 6 + 0.5], rtol=1e-6)
    np.testing.assert_allclose(activations.keras2_hard_sigmoid(x), [0.7, 1.0], rtol=1e-6)


# --- get, serialize, errors --------------------------------------------------------------


def test_get_none_and_callables():
    assert activations.get(None) is activations.linear
    assert activations.get(jax.nn.relu) is jax.nn.relu
    f = lambda x: 2 * x
    assert activations.get(f) is f


@pytest.mark.parametrize("name", KERAS_NAMES)
def test_get_reads_every_keras3_serialization(name):
    expected = activations.get(name)
    keras_fn = keras.activations.get(name)
    assert activations.get(keras.activations.serialize(keras_fn)) is expected  # config.json
    assert activations.get(serialization_lib.serialize_keras_object(keras_fn)) is expected
    config = {
        "module": "keras.activations",
        "class_name": "function",
        "config": name,
        "registered_name": "function",
    }
    assert activations.get(config) is expected
    assert activations.get({"class_name": name, "config": {}}) is expected  # Keras 2 style


def test_get_reads_layer_configs_of_keras3_and_tf_keras():
    k3 = keras.layers.LSTM(2, activation="swish", recurrent_activation="hard_sigmoid")
    k3_config = k3.get_config()
    assert activations.get(k3_config["activation"]) is activations.silu
    assert activations.get(k3_config["recurrent_activation"]) is activations.hard_sigmoid
    k2_config = tf_keras.layers.LSTM(2, activation="swish").get_config()
    assert activations.get(k2_config["activation"]) is activations.silu
    # tf_keras writes "hard_sigmoid" too, meaning Keras 2's; importers map the name.
    assert tf_keras.layers.GRU(2).get_config()["recurrent_activation"] == "sigmoid"


@pytest.mark.parametrize("name", activations.names())
def test_serialize_inverts_get(name):
    fn = activations.get(name)
    assert activations.get(activations.serialize(fn)) is fn


def test_serialize_gives_keras3_canonical_names():
    assert activations.serialize(activations.get("swish")) == "silu"
    assert activations.serialize(activations.get("hard_swish")) == "hard_silu"
    assert keras.activations.serialize(keras.activations.get("swish")) == "silu"


@pytest.mark.parametrize(
    "fn", [lambda x: x, jax.nn.relu, functools.partial(activations.relu, max_value=1.0)]
)
def test_serialize_rejects_unnamed_functions(fn):
    with pytest.raises(ValueError, match=r"Cannot serialize activation .* not one of"):
        activations.serialize(fn)


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(
        ValueError, match=r"Unknown activation 'tanhh'\. Valid names: \[.*'tanh'.*\]\. Did you"
    ) as info:
        activations.get("tanhh")
    assert "Did you mean 'tanh'?" in str(info.value)
    assert all(repr(n) in str(info.value) for n in activations.names())
    with pytest.raises(ValueError, match=r"Unknown activation 'Tanh'"):  # case-sensitive
        activations.get("Tanh")
    with pytest.raises(ValueError, match=r"Unknown activation 'nope'\. Valid names: \["):
        activations.get({"class_name": "function", "config": "nope"})


def test_threshold_is_a_function_but_not_a_name():
    # Keras resolves the name, but the function cannot run with one argument.
    with pytest.raises(TypeError):
        keras.activations.get("threshold")(tf.constant(X))
    with pytest.raises(ValueError, match=r"'threshold' needs the arguments `threshold` and"):
        activations.get("threshold")
    with pytest.raises(ValueError, match=r"functools\.partial"):
        activations.get(
            {"module": "keras.activations", "class_name": "function", "config": "threshold"}
        )
    fn = functools.partial(activations.threshold, threshold=0.0, default_value=-2.0)
    assert activations.get(fn) is fn
    np.testing.assert_array_equal(fn(jnp.asarray([-1.0, 0.0, 3.0])), [-2.0, -2.0, 3.0])


def test_config_errors():
    custom = {
        "module": "my_package.acts",
        "class_name": "function",
        "config": "my_act",
        "registered_name": "Custom>my_act",
    }
    with pytest.raises(ValueError, match=r"from module 'my_package\.acts', a custom function"):
        activations.get(custom)
    leaky = {"module": "keras.layers", "class_name": "LeakyReLU", "config": {"negative_slope": 0.1}}
    with pytest.raises(ValueError, match=r"Cannot interpret activation config .*LeakyReLU"):
        activations.get(leaky)
    with pytest.raises(ValueError, match=r"'config' must name the function"):
        activations.get({"class_name": "function", "config": None})
    with pytest.raises(ValueError, match=r"Cannot interpret activation config"):
        activations.get({"class_name": "tanh", "config": {"alpha": 1.0}})


@pytest.mark.parametrize("bad", [3, 1.5, ["tanh"], b"tanh"])
def test_wrong_types_raise_type_error(bad):
    with pytest.raises(TypeError, match=r"Cannot interpret activation .* expected a name \(str\)"):
        activations.get(bad)


def test_glu_needs_an_even_axis():
    with pytest.raises(ValueError, match=r"glu: the size of axis -1 must be even.*\(2, 3\)"):
        activations.glu(jnp.ones((2, 3)))


def test_sparsemax_follows_keras_not_the_paper():
    # Keras 3.15 sums the cumulative sums over the support: [0.5, 0.4] -> [0.3, 0.2]
    # (the paper's sparsemax gives [0.55, 0.45], summing to 1).
    x = np.asarray([[0.5, 0.4]], np.float32)
    np.testing.assert_allclose(activations.sparsemax(jnp.asarray(x)), [[0.3, 0.2]], rtol=1e-6)
    np.testing.assert_allclose(_keras(keras.activations.sparsemax, x), [[0.3, 0.2]], rtol=1e-6)


def test_every_public_name_is_documented():
    assert sorted(activations.__all__) == sorted(set(activations.__all__))
    for name in activations.__all__:
        obj = getattr(activations, name)
        assert inspect.getdoc(obj), name
    for name in activations.names():
        assert "``" in inspect.getdoc(activations.get(name)), name  # states its formula


def test_unhashable_callables_are_taken_as_they_are():
    import dataclasses

    @dataclasses.dataclass  # eq=True: unhashable
    class Scaled:
        k: float

        def __call__(self, x):
            return self.k * jnp.tanh(x)

    fn = Scaled(2.0)
    assert activations.get(fn) is fn
    assert activations.get(jnp.tanh) is activations.tanh  # the same function, named
