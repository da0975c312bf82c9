"""Bad arguments to the recurrent API raise errors naming the argument; Keras' accepted
spellings are accepted with Keras' meaning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import importers
import jrnn

X = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)


def _lstm(**kw):
    return jrnn.LSTM(4, 3, rngs=nnx.Rngs(0), **kw)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"inputs": None}, r"`inputs` must be an array; received None"),
        ({"inputs": "abc"}, r"`inputs` must be an array \(or a list of arrays\); received str"),
        ({"mask": "abc"}, r"`mask` must be an array"),
        ({"initial_state": [None, None]}, r"`initial_state` must be an array"),
        ({"initial_state": "h"}, r"`initial_state` must be an array"),
        ({"initial_state": [np.ones((2, 4), np.complex64)] * 2}, "must hold real numbers"),
        ({"constants": [np.ones((2, 3))]}, "does not accept constants"),
    ],
)
def test_call_arguments_are_checked_before_the_eager_jit(kwargs, match):
    kwargs = dict(kwargs)
    inputs = kwargs.pop("inputs", X)
    for method in (_lstm().__call__, _lstm().run):
        with pytest.raises(ValueError, match=match):
            method(inputs, **kwargs)


def test_bad_dropout_rngs_name_the_argument():
    layer = _lstm(dropout=0.5, seed=1)
    with pytest.raises(TypeError, match=r"`rngs` must be an nnx\.Rngs, an nnx\.RngStream or a JAX"):
        layer(X, training=True, rngs=5)
    out = layer(X, training=True, rngs=jax.random.key(3))  # a typed key
    again = layer(X, training=True, rngs=jax.random.PRNGKey(3))  # a legacy one
    assert out.shape == again.shape == (2, 4)


def test_mask_with_a_trailing_axis_of_one_is_the_plain_mask():
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    layer = _lstm(return_sequences=True)
    np.testing.assert_array_equal(layer(X, mask=mask[..., None]), layer(X, mask=mask))


def test_cells_called_directly_check_constants_and_carry():
    cell = jrnn.LSTMCell(4, 3, rngs=nnx.Rngs(0))
    carry = cell.initialize_carry(2)
    with pytest.raises(ValueError, match="LSTMCell does not accept constants"):
        cell(carry, X[:, 0], constants=[np.ones((2, 3))])
    with pytest.raises(ValueError, match=r"`carry` must hold real numbers"):
        cell(tuple(c.astype(jnp.complex64) for c in carry), X[:, 0])
    with pytest.raises(ValueError, match="`inputs` must be an array"):
        cell(carry, None)


@pytest.mark.parametrize("bad", [-1, 2.5, "2", (), True])
def test_initialize_carry_checks_the_batch(bad):
    with pytest.raises(ValueError, match="`input_shape` must be the batch size or"):
        jrnn.GRUCell(4, 3, rngs=nnx.Rngs(0)).initialize_carry(bad)


def test_conv_lstm_cell_carry_needs_the_frame_shape():
    cell = jrnn.ConvLSTMCell(rank=2, filters=4, kernel_size=3, in_channels=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="depend on the input frames"):
        cell.initialize_carry(2)
    assert [c.shape for c in cell.initialize_carry((2, 8, 8, 3))] == [(2, 6, 6, 4)] * 2


def test_numpy_bools_and_ints_are_accepted():
    layer = jrnn.GRU(
        4, 3, return_sequences=np.True_, dropout=0.5, seed=np.int64(3), rngs=nnx.Rngs(0)
    )
    assert layer.return_sequences is True and layer.cell.seed == 3
    assert layer(X).shape == (2, 5, 4)


def test_initializer_none_is_keras_default_glorot_uniform():
    a = jrnn.SimpleRNN(4, 3, kernel_initializer=None, rngs=nnx.Rngs(0))
    b = jrnn.SimpleRNN(4, 3, kernel_initializer="glorot_uniform", rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(a.cell.kernel[...], b.cell.kernel[...])
    dense = jrnn.Dense(3, 2, bias_initializer=None, rngs=nnx.Rngs(0))
    assert float(jnp.abs(dense.bias[...]).sum()) > 0  # Keras: glorot_uniform, not zeros


def test_tf_keras_l1_l2_name_is_refused():
    with pytest.raises(ValueError, match="Unknown regularizer 'l1_l2'"):
        _lstm(kernel_regularizer="l1_l2")
    assert jrnn.regularizers.get("l1l2").get_config() == {"l1": 0.0, "l2": 0.0}


def test_utils_and_training_arguments():
    for bad in (2.5, True, "5", 0):
        with pytest.raises(ValueError, match="`length` must be a positive integer"):
            jrnn.utils.bucket_length(bad)
    with pytest.raises(ValueError, match="`buckets` must be increasing"):
        jrnn.utils.bucket_length(3, buckets=(4.5, 8))
    with pytest.raises(TypeError, match=r"`model` must be an nnx\.Module"):
        jrnn.regularization_loss(5)


def test_sparse_labels_outside_the_classes_make_the_loss_nan():
    from jrnn.training import _sparse_categorical

    p = jnp.full((3, 4), 0.25)
    losses = _sparse_categorical(jnp.array([0, -1, 4]), p)
    assert np.isfinite(losses[0]) and np.isnan(losses[1]) and np.isnan(losses[2])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda a: a([np.ones((2, 4, 3)), np.ones((2, 5, 2))], mask=None),
            "a key with the query's feature size",
        ),
        (
            lambda a: a([np.ones((2, 4, 3)), np.ones((2, 5, 3)), np.ones((2, 6, 3))]),
            "as many key as value steps",
        ),
        (
            lambda a: a([np.ones((2, 4, 3))] * 2, mask=[None, np.ones((2, 5), bool)]),
            r"a value mask of shape \(2, 4\)",
        ),
        (lambda a: a([np.ones((4, 3))] * 2), r"3-D \(batch, steps, features\)"),
    ],
)
def test_attention_shapes_are_checked(call, match):
    with pytest.raises(ValueError, match=match):
        call(jrnn.Attention())


def test_keras_sequential_checks_its_arguments_and_the_layers_shapes():
    r = nnx.Rngs(0)
    with pytest.raises(ValueError, match=r"`inputs` feature shape must be \(3,\)"):
        importers.keras_sequential([jrnn.LSTM(4, 3, rngs=r)], (None, 5))
    with pytest.raises(ValueError, match=r"Dense 'dense': `inputs` must have 5 features"):
        importers.keras_sequential([jrnn.LSTM(4, 3, rngs=r), jrnn.Dense(2, 5, rngs=r)], (None, 3))
    for kw, match in [
        ({"batch_size": 0}, "`batch_size` must be a positive integer"),
        ({"name": "a/b"}, "`name` must be a string without '/'"),
        ({"input_dtype": "nope"}, "`input_dtype` must be a dtype name"),
    ]:
        with pytest.raises(ValueError, match=match):
            importers.keras_sequential([jrnn.LSTM(4, 3, rngs=r)], (None, 3), **kw)
    with pytest.raises(ValueError, match="`input_shape` must be a tuple of positive sizes"):
        importers.keras_sequential([jrnn.LSTM(4, 3, rngs=r)], 3)
    long_window = [jrnn.Conv1D(2, 100, 3, rngs=r), jrnn.MaxPooling1D(80)]
    importers.keras_sequential(long_window, (None, 3))  # None is any length: 4096 passes
    stateful = jrnn.LSTM(4, 3, stateful=True, batch_size=2, rngs=r)
    stateful(X)
    before = np.asarray(stateful.states[0][...])
    importers.keras_sequential([stateful], (None, 3))  # the shape check runs on a copy
    np.testing.assert_array_equal(stateful.states[0][...], before)


def test_activity_regularizer_variable_exists_before_the_first_call():
    """A call changes no graph structure: nnx.split/merge into jax.jit works on every call."""
    layer = _lstm(activity_regularizer="l2")
    graphdef, state = nnx.split(layer)
    step = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    first = step(state, X)
    np.testing.assert_array_equal(step(state, X), first)
    assert float(jrnn.regularization_loss(layer)) == 0.0  # Keras: no losses before a call
    layer(X)
    assert nnx.graphdef(layer) == graphdef and float(jrnn.regularization_loss(layer)) > 0


def test_float64_layer_called_without_x64_raises():
    with jax.enable_x64(True):
        layer = jrnn.GRU(4, 3, dtype="float64", rngs=nnx.Rngs(0))
        assert layer(X).dtype == jnp.float64
    with pytest.raises(ValueError, match="float64 needs JAX's 64-bit mode"):
        layer(X)


def test_importer_and_inspect_arguments():
    from importers._files import read_keras_file
    from importers.model import ImportedModel

    with pytest.raises(TypeError, match="`custom_layers` must be a dict"):
        ImportedModel({"class_name": "Sequential", "config": {"layers": []}}, {}, [1])
    with pytest.raises(ValueError, match="`max_member_bytes` must be a positive integer"):
        read_keras_file("missing.keras", max_member_bytes="a")
    with pytest.raises(TypeError, match="`loss` must be a function"):
        jrnn.inspect.gradients_over_time(_lstm(), X, loss="nope")
