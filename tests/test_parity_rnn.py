"""Parity of SimpleRNN, GRU (both reset_after), LSTM, RNN and stacked cells with Keras 3.

Keras side: Keras 3.15.1, TensorFlow backend, in-process, same random asymmetric weights
(tests/keras_twins.py). Sizes are distinct (batch 3, time 7, features 3, units 5/4) so
that a transposed or mis-ordered gate cannot pass. Tolerances: tests/helpers.py.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

from tests.helpers import assert_close, cell_weights
from tests.keras_twins import (
    MASKS,
    flatten,
    keras_call,
    make_pair,
    random_inputs,
    random_states,
)

B, T, F = 3, 7, 3

SPECS = {
    "simple": {"kind": "simple", "units": 5},
    "gru": {"kind": "gru", "units": 5},
    "gru_reset_before": {"kind": "gru", "units": 5, "reset_after": False},
    "lstm": {"kind": "lstm", "units": 5},
    "lstm_impl1": {"kind": "lstm", "units": 5, "implementation": 1},
    "gru_impl1_reset_before": {
        "kind": "gru",
        "units": 4,
        "reset_after": False,
        "implementation": 1,
    },
    "lstm_no_bias": {"kind": "lstm", "units": 4, "use_bias": False},
    "gru_no_bias": {"kind": "gru", "units": 4, "use_bias": False},
    "lstm_relu_hard_sigmoid": {
        "kind": "lstm",
        "units": 5,
        "activation": "relu",
        "recurrent_activation": "hard_sigmoid",
    },
    "gru_softsign": {"kind": "gru", "units": 4, "activation": "softsign"},
    "simple_relu": {"kind": "simple", "units": 4, "activation": "relu"},
    "stack": [
        {"kind": "lstm", "units": 4},
        {"kind": "gru", "units": 5},
        {"kind": "simple", "units": 3},
    ],
}

# (return_sequences, return_state, go_backwards, zero_output_for_mask, initial_state)
FLAGS = [
    (False, False, False, False, False),
    (True, False, False, False, False),
    (True, True, False, False, True),
    (False, True, True, False, True),
    (True, True, True, False, False),
    (True, False, False, True, True),
    (True, True, True, True, True),
    (False, True, False, True, False),
]


def _compare(spec, flags, mask_name, seed=0):
    return_sequences, return_state, go_backwards, zofm, use_init = flags
    layer, klayer = make_pair(
        spec,
        F,
        batch=B,
        time=T,
        seed=seed,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        zero_output_for_mask=zofm,
    )
    x = random_inputs(B, T, F, seed + 1)
    mask = MASKS[mask_name]
    init = random_states(layer, B, seed + 2) if use_init else None
    expected = flatten(keras_call(klayer, x, mask=mask, initial_state=init))
    actual = flatten(layer(x, mask=mask, initial_state=init))
    assert len(actual) == len(expected)
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, time=T, what=f"output[{k}]")


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "".join("1" if v else "0" for v in f))
@pytest.mark.parametrize("mask_name", ["none", "gaps"])
@pytest.mark.parametrize("spec_name", list(SPECS))
def test_forward_parity(spec_name, mask_name, flags):
    _compare(SPECS[spec_name], flags, mask_name)


@pytest.mark.parametrize("mask_name", ["right_padded", "left_padded"])
@pytest.mark.parametrize("spec_name", ["lstm", "gru", "stack"])
def test_padding_patterns(spec_name, mask_name):
    for flags in [FLAGS[2], FLAGS[4], FLAGS[5]]:
        _compare(SPECS[spec_name], flags, mask_name)


@pytest.mark.parametrize("unroll", [True, 3])
@pytest.mark.parametrize("spec_name", ["lstm", "gru", "simple", "stack"])
def test_unroll_parity(spec_name, unroll):
    layer, klayer = make_pair(
        SPECS[spec_name], F, batch=B, time=T, return_sequences=True, unroll=unroll
    )
    x = random_inputs(B, T, F)
    mask = MASKS["gaps"]
    assert_close(layer(x, mask=mask), flatten(keras_call(klayer, x, mask=mask))[0], time=T)


def _loss_weights(outputs, seed=5):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(np.shape(o)).astype(np.float32) for o in outputs]


@pytest.mark.parametrize("mask_name", ["none", "gaps"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize(
    "spec_name", ["simple", "gru", "gru_reset_before", "lstm", "lstm_impl1", "stack"]
)
def test_gradient_parity(spec_name, go_backwards, mask_name):
    """d(loss)/d(inputs, initial states, every weight) equals tf.GradientTape's."""
    layer, klayer = make_pair(
        SPECS[spec_name],
        F,
        batch=B,
        time=T,
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
    )
    x = random_inputs(B, T, F)
    mask = MASKS[mask_name]
    init = random_states(layer, B)
    init_leaves, init_def = jax.tree_util.tree_flatten(init)
    weights = _loss_weights(flatten(layer(x, mask=mask, initial_state=init)))

    # Keras / TensorFlow
    xt = tf.constant(x)
    init_t = [tf.constant(s) for s in init_leaves]
    with tf.GradientTape() as tape:
        tape.watch([xt, *init_t])
        k_init = jax.tree_util.tree_unflatten(init_def, init_t)
        k_init = [list(s) if isinstance(s, tuple) else s for s in k_init]
        outs = klayer(xt, mask=None if mask is None else tf.constant(mask), initial_state=k_init)
        outs = jax.tree_util.tree_leaves(outs, is_leaf=lambda a: isinstance(a, tf.Tensor))
        loss = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(outs, weights)])
    k_grads = tape.gradient(loss, [xt, *init_t, *klayer.trainable_weights])

    # jrnn
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss_fn(params, x, init_leaves):
        model = nnx.merge(graphdef, params, rest)
        outs = model(
            x, mask=mask, initial_state=jax.tree_util.tree_unflatten(init_def, init_leaves)
        )
        return sum(jnp.sum(o * w) for o, w in zip(jax.tree_util.tree_leaves(outs), weights))

    g_params, g_x, g_init = jax.grad(loss_fn, argnums=(0, 1, 2))(params, x, init_leaves)
    grad_layer = nnx.merge(graphdef, g_params, rest)
    cells = grad_layer.cell.cells if hasattr(grad_layer.cell, "cells") else [grad_layer.cell]
    j_grads = [g_x, *g_init, *[w for c in cells for w in cell_weights(c)]]
    assert len(j_grads) == len(k_grads)
    for k, (a, e) in enumerate(zip(j_grads, k_grads)):
        assert_close(a, np.asarray(e), time=T, what=f"gradient[{k}]")


@pytest.mark.parametrize("spec_name", ["lstm", "gru", "simple", "stack"])
def test_stateful_parity(spec_name):
    """Three consecutive calls carry states; reset_state() zeroes them, as Keras."""
    layer, klayer = make_pair(
        SPECS[spec_name], F, batch=B, time=T, return_sequences=True, stateful=True
    )
    for k in range(3):
        x = random_inputs(B, T, F, seed=10 + k)
        mask = MASKS["gaps"] if k == 1 else None
        assert_close(layer(x, mask=mask), flatten(keras_call(klayer, x, mask=mask))[0], time=T)
    layer.reset_state()
    # Keras 3.15.1's RNN.reset_state() fails on stacked cells (it iterates the nested
    # state lists with .assign); zero the variables directly there.
    for v in keras.tree.flatten(klayer.states):
        v.assign(tf.zeros_like(v))
    x = random_inputs(B, T, F, seed=20)
    assert_close(layer(x), flatten(keras_call(klayer, x))[0], time=T)


def test_stateful_reset_with_states_and_alias():
    layer, _ = make_pair(SPECS["lstm"], F, batch=B, time=T, stateful=True)
    x = random_inputs(B, T, F)
    states = random_states(layer, B)
    layer.reset_states(states)  # Keras 2 name and form
    via_reset = layer(x)
    layer2, _ = make_pair(SPECS["lstm"], F, batch=B, time=T)
    np.testing.assert_array_equal(
        np.asarray(via_reset), np.asarray(layer2(x, initial_state=states))
    )


@pytest.mark.parametrize(
    "policy,spec_name",
    list(
        itertools.product(["mixed_bfloat16", "mixed_float16", "bfloat16"], ["lstm", "gru", "stack"])
    ),
)
def test_dtype_policy_parity(policy, spec_name):
    layer, klayer = make_pair(
        SPECS[spec_name],
        F,
        batch=B,
        time=T,
        dtype=policy,
        return_sequences=True,
        return_state=True,
    )
    x = random_inputs(B, T, F)
    # Keras 3.15.1 cannot run a masked stack under a 16-bit policy (tf.where between a
    # float32 and a 16-bit tensor inside its RNN loop), so stacks are compared unmasked.
    mask = None if spec_name == "stack" else MASKS["gaps"]
    outs = layer(x, mask=mask)
    kouts = keras_call(klayer, x, mask=mask)
    compute = "float16" if "float16" in policy and "b" not in policy else "bfloat16"
    for a, e in zip(jax.tree_util.tree_leaves(outs), flatten(kouts)):
        assert a.dtype == jnp.dtype(compute)
        assert_close(a, e, dtype=compute, time=T)
    param_dtype = "bfloat16" if policy == "bfloat16" else "float32"
    assert layer.cell.kernel.dtype == jnp.dtype(param_dtype) if spec_name != "stack" else True
