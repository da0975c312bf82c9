"""importers.layouts against the frameworks that own each layout (PyTorch, Flax) and
against jrnn's own CuDNN cells; Keras 1 against a NumPy reference of its per-gate maths."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen, nnx

import jrnn
from importers import layouts
from tests.helpers import assert_close
from tests.keras_twins import random_inputs

B, T, F, U = 3, 6, 3, 5


def _rand(*shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 0.4).astype(np.float32)


def _set(layer, weights):
    cells = layer.cell.cells if hasattr(layer.cell, "cells") else [layer.cell]
    flat = [w for ws in weights for w in ws]
    params = [p for c in cells for p in (c.kernel, c.recurrent_kernel, c.bias)]
    for p, w in zip(params, flat):
        p[...] = np.asarray(w, np.float32)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_torch_state_dicts_bidirectional_two_layers(kind):
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
    module = cls(F, U, num_layers=2, bidirectional=True, batch_first=True)
    x = random_inputs(B, T, F)
    with torch.no_grad():
        expected = module(torch.from_numpy(x))[0].numpy()
    layers = layouts.torch_state_dict_to_keras(module.state_dict(), kind)
    jcls = {"lstm": jrnn.LSTM, "gru": jrnn.GRU, "rnn": jrnn.SimpleRNN}[kind]
    rngs = nnx.Rngs(0)
    y = x
    for k, entry in enumerate(layers):
        n_in = F if k == 0 else 2 * U
        bi = jrnn.Bidirectional(jcls(U, n_in, return_sequences=True, rngs=rngs), rngs=rngs)
        _set(bi.forward_layer, [entry["forward"]])
        _set(bi.backward_layer, [entry["backward"]])
        y = bi(y)
    assert_close(y, expected, time=T)


def test_keras_to_torch_round_trips_and_refusals():
    k, rk, b = _rand(F, 4 * U), _rand(U, 4 * U, seed=1), _rand(4 * U, seed=2)
    w_ih, w_hh, b_ih, b_hh = layouts.keras_lstm_to_torch(k, rk, b)
    module = torch.nn.LSTM(F, U, batch_first=True)
    module.load_state_dict(
        {
            n: torch.from_numpy(np.ascontiguousarray(a))
            for n, a in zip(
                ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"),
                (w_ih, w_hh, b_ih, b_hh),
            )
        },
        strict=True,
    )
    layer = jrnn.LSTM(U, F, return_sequences=True, rngs=nnx.Rngs(0))
    _set(layer, [(k, rk, b)])
    x = random_inputs(B, T, F)
    with torch.no_grad():
        assert_close(layer(x), module(torch.from_numpy(x))[0].numpy(), time=T)
    gk, grk, gb = _rand(F, 3 * U), _rand(U, 3 * U, seed=1), _rand(2, 3 * U, seed=2)
    back = layouts.torch_gru_to_keras(*layouts.keras_gru_to_torch(gk, grk, gb))
    for a, e in zip(back, (gk, grk, gb)):
        np.testing.assert_array_equal(a, e)
    with pytest.raises(ValueError, match=r"reset_after=False\) cannot be expressed"):
        layouts.keras_gru_to_torch(gk, grk, _rand(3 * U))
    with pytest.raises(ValueError, match=r"proj_size"):
        layouts.torch_state_dict_to_keras(torch.nn.LSTM(F, U, proj_size=2).state_dict(), "lstm")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cudnn_conversions_match_jrnn_cudnn_cells_and_round_trip(kind):
    gates = 4 if kind == "lstm" else 3
    k, rk, b = _rand(F, gates * U), _rand(U, gates * U, seed=1), _rand(2 * gates * U, seed=2)
    cell = (jrnn.CuDNNLSTMCell if kind == "lstm" else jrnn.CuDNNGRUCell)(U, F, rngs=nnx.Rngs(0))
    for p, w in zip((cell.kernel, cell.recurrent_kernel, cell.bias), (k, rk, b)):
        p[...] = w
    to_keras = layouts.cudnn_lstm_to_keras if kind == "lstm" else layouts.cudnn_gru_to_keras
    to_cudnn = layouts.keras_lstm_to_cudnn if kind == "lstm" else layouts.keras_gru_to_cudnn
    ours = to_keras(k, rk, b)
    for a, e in zip(ours, cell.keras_weights()):
        assert_close(a, np.asarray(e))
    again = to_keras(*to_cudnn(*ours))
    for a, e in zip(again, ours):
        np.testing.assert_allclose(a, e, atol=1e-6)
    if kind == "gru":
        with pytest.raises(ValueError, match=r"reset_after=False\) cannot be converted"):
            layouts.keras_gru_to_cudnn(ours[0], ours[1], _rand(3 * U))
    with pytest.raises(ValueError, match=r"bias: expected shape"):
        to_keras(k, rk, b[:-1])


def test_keras1_lstm_and_gru_per_gate():
    rng = np.random.default_rng(3)
    x = random_inputs(B, T, F)
    w = {
        g: (
            _rand(F, U, seed=rng.integers(1e6)),
            _rand(U, U, seed=rng.integers(1e6)),
            _rand(U, seed=rng.integers(1e6)),
        )
        for g in "icfo"
    }
    stored = [a for g in "icfo" for a in w[g]]  # Keras 1 order i, c, f, o
    layer = jrnn.LSTM(U, F, return_sequences=True, rngs=nnx.Rngs(0))
    _set(layer, [layouts.keras1_lstm_to_keras(stored)])
    h = c = np.zeros((B, U), np.float32)
    sig = lambda v: 1 / (1 + np.exp(-v))
    ys = []
    for t in range(T):
        gate = {g: x[:, t] @ w[g][0] + h @ w[g][1] + w[g][2] for g in "icfo"}
        c = sig(gate["f"]) * c + sig(gate["i"]) * np.tanh(gate["c"])
        h = sig(gate["o"]) * np.tanh(c)
        ys.append(h)
    assert_close(layer(x), np.stack(ys, 1), time=T)
    g9 = [_rand(*s, seed=n) for n, s in enumerate([(F, U), (U, U), (U,)] * 3)]
    k, _, b = layouts.keras1_gru_to_keras(g9)
    assert k.shape == (F, 3 * U) and b.shape == (3 * U,)
    np.testing.assert_array_equal(k[:, U : 2 * U], g9[3])
    with pytest.raises(ValueError, match=r"expected 12 arrays; received 3"):
        layouts.keras1_lstm_to_keras(g9[:3])


def test_flax_cells():
    x = random_inputs(B, T, F)
    k, rk, b = _rand(F, 4 * U), _rand(U, 4 * U, seed=1), _rand(4 * U, seed=2)
    cell = nnx.OptimizedLSTMCell(F, U, rngs=nnx.Rngs(0))
    params = layouts.keras_lstm_to_flax_optimized(k, rk, b)
    cell.dense_i.kernel[...] = params["dense_i"]["kernel"]
    cell.dense_h.kernel[...] = params["dense_h"]["kernel"]
    cell.dense_h.bias[...] = params["dense_h"]["bias"]
    carry = (jnp.zeros((B, U)), jnp.zeros((B, U)))  # Flax carry order (c, h), zeros
    ys = []
    for t in range(T):
        carry, y = cell(carry, jnp.asarray(x[:, t]))
        ys.append(y)
    layer = jrnn.LSTM(U, F, return_sequences=True, rngs=nnx.Rngs(0))
    _set(layer, [layouts.flax_optimized_lstm_to_keras(params)])
    assert_close(layer(x), jnp.stack(ys, 1), time=T)

    gk, grk, gb = _rand(F, 3 * U), _rand(U, 3 * U, seed=1), _rand(2, 3 * U, seed=2)
    lp = layouts.keras_gru_to_flax_linen(gk, grk, gb)
    gcell = linen.GRUCell(features=U)
    carry = jnp.zeros((B, U))
    ys = []
    for t in range(T):
        carry, y = gcell.apply({"params": lp}, carry, jnp.asarray(x[:, t]))
        ys.append(y)
    gru = jrnn.GRU(U, F, return_sequences=True, rngs=nnx.Rngs(0))
    _set(gru, [(gk, grk, gb)])
    assert_close(gru(x), jnp.stack(ys, 1), time=T)
    back = layouts.flax_linen_gru_to_keras(lp)
    _set(gru, [back])
    assert_close(gru(x), jnp.stack(ys, 1), time=T)
