"""LSTM layers on the GPU backend dispatch to cuDNN (``jrnn.native.cudnn``).

This CPU suite cannot run cuDNN, so the ``fake_gpu`` fixture stands in for it: the
layers see a GPU backend, and ``jax.experimental.rnn.lstm`` (cuDNN) is replaced by the
same module's pure-JAX reference ``lstm_ref`` reading the same flat parameter vector
through JAX's ``unpack_lstm_weights``. That proves everything on jrnn's side: which calls
dispatch, the weight packing, directions, states, ``go_backwards``, stacks, Bidirectional
in one call, gradients through the packing. ``test_real_cudnn_equals_the_scan`` runs
where a CUDA GPU is present (not in CPU CI).
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import rnn as jax_rnn

import jrnn
from jrnn.native import cudnn
from tests.helpers import assert_close, assert_gradients_close, randomize


@pytest.fixture(autouse=True)
def _float32_products():
    """float32 matrix products on a real GPU too (JAX's default there is TF32, whose
    ~1e-3 relative error would swamp the comparisons of two summation orders)."""
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture
def fake_gpu(monkeypatch):
    """A GPU backend whose cuDNN LSTM is JAX's reference; returns the list of calls'
    ``bidirectional`` flags."""
    calls = []

    def lstm(x, h0, c0, weights, seq_lengths, **sizes):
        calls.append(sizes["bidirectional"])
        assert weights.shape == (
            jax_rnn.get_num_params_in_lstm(
                sizes["input_size"],
                sizes["hidden_size"],
                sizes["num_layers"],
                sizes["bidirectional"],
            ),
        )
        unpacked = jax_rnn.unpack_lstm_weights(
            weights,
            sizes["input_size"],
            sizes["hidden_size"],
            sizes["num_layers"],
            sizes["bidirectional"],
        )
        return jax_rnn.lstm_ref(x, h0, c0, *unpacked, seq_lengths, *sizes.values())

    monkeypatch.setattr(cudnn, "on_gpu", lambda: True)
    monkeypatch.setattr(cudnn, "_rnn", lambda: types.SimpleNamespace(gpu_rnn=object(), lstm=lstm))
    return calls


def _inputs(shape, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _pair(make, seed=0):
    """``make(native)`` twice, with the same random weights: (cuDNN, XLA scan)."""
    made = []
    for native in (True, False):
        layer = make(native)
        randomize(layer, seed, scale=0.4)
        made.append(layer)
    return made


def _loss(layer, x):
    out = layer(x)
    return sum(jnp.sum(jnp.sin(o) * (i + 1)) for i, o in enumerate(jax.tree.leaves(out)))


def _assert_same(fused, scan, x, time, **kw):
    a, b = fused(x, **kw), scan(x, **kw)
    assert len(jax.tree.leaves(a)) == len(jax.tree.leaves(b))
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert_close(u, v, time=time)


def _assert_same_gradients(fused, scan, x):
    for u, v in zip(
        jax.tree.leaves(nnx.grad(_loss, argnums=(0, 1))(fused, x)),
        jax.tree.leaves(nnx.grad(_loss, argnums=(0, 1))(scan, x)),
    ):
        assert_gradients_close(u, v)


@pytest.mark.parametrize("directions", [1, 2])
def test_packing_is_jax_experimental_rnn_layout(directions):
    features, units = 5, 3
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((directions, features, 4 * units)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((directions, 4 * units)), jnp.float32)
    r = jnp.asarray(rng.standard_normal((directions, units, 4 * units)), jnp.float32)
    flat = cudnn.pack_weights(w, b, r)
    bidirectional = directions == 2
    assert flat.shape == (jax_rnn.get_num_params_in_lstm(features, units, 1, bidirectional),)
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(flat, features, units, 1, bidirectional)
    for d in range(directions):
        np.testing.assert_array_equal(w_ih[d], w[d].T)
        np.testing.assert_array_equal(w_hh[d], r[d].T)
        np.testing.assert_array_equal(b_ih[d], b[d])
        np.testing.assert_array_equal(b_hh[d], np.zeros(4 * units))


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_lstm_dispatches_to_cudnn_and_equals_the_scan(fake_gpu, go_backwards, return_sequences):
    fused, scan = _pair(
        lambda native: jrnn.LSTM(
            6,
            5,
            go_backwards=go_backwards,
            return_sequences=return_sequences,
            return_state=True,
            native=native,
            rngs=nnx.Rngs(0),
        )
    )
    x = _inputs((4, 7, 5))
    states = [_inputs((4, 6), seed=s) * 0.5 for s in (2, 3)]
    _assert_same(fused, scan, x, time=7)
    _assert_same(fused, scan, x, time=7, initial_state=states)
    assert fake_gpu == [False, False]
    _assert_same_gradients(fused, scan, x)
    # The fused call under jit: one cuDNN call, the same result.
    graph, state = nnx.split(fused)
    jitted = jax.jit(lambda s, x: nnx.merge(graph, s)(x))(state, x)
    for u, v in zip(jitted, scan(x)):
        assert_close(u, v, time=7)


def test_stacks_remat_dropout_and_keras2_cudnn_layers(fake_gpu):
    x = _inputs((3, 8, 5))
    fused, scan = _pair(
        lambda native: jrnn.RNN(
            [jrnn.LSTMCell(6, 5, rngs=nnx.Rngs(0)), jrnn.LSTMCell(4, 6, rngs=nnx.Rngs(1))],
            return_sequences=True,
            remat=4,
            native=native,
        )
    )
    _assert_same(fused, scan, x, time=8)
    assert fake_gpu == [False, False]  # one per cell, in the traced remat segment
    _assert_same_gradients(fused, scan, x)
    # Input dropout (one mask per batch row) is applied before the call.
    fused, scan = _pair(
        lambda native: jrnn.LSTM(6, 5, dropout=0.5, native=native, rngs=nnx.Rngs(0))
    )
    del fake_gpu[:]
    a = fused(x, training=True, rngs=jax.random.key(0))
    assert_close(a, scan(x, training=True, rngs=jax.random.key(0)), time=8)
    assert fake_gpu == [False]
    # Keras 2's CuDNNLSTM (two biases, stored in cuDNN's block layout).
    fused, scan = _pair(lambda native: jrnn.CuDNNLSTM(6, 5, native=native, rngs=nnx.Rngs(0)))
    del fake_gpu[:]
    _assert_same(fused, scan, x, time=8)
    assert fake_gpu == [False]


@pytest.mark.parametrize("merge_mode", ["concat", "sum", None])
def test_bidirectional_lstm_is_one_bidirectional_cudnn_call(fake_gpu, merge_mode):
    fused, scan = _pair(
        lambda native: jrnn.Bidirectional(
            jrnn.LSTM(
                6, 5, return_sequences=True, return_state=True, native=native, rngs=nnx.Rngs(0)
            ),
            merge_mode=merge_mode,
            rngs=nnx.Rngs(1),
        )
    )
    x = _inputs((4, 7, 5))
    states = [_inputs((4, 6), seed=s) * 0.5 for s in (2, 3, 4, 5)]
    _assert_same(fused, scan, x, time=7)
    _assert_same(fused, scan, x, time=7, initial_state=states)
    assert fake_gpu == [True, True]
    _assert_same_gradients(fused, scan, x)


def test_what_does_not_dispatch_runs_the_scan_and_says_why(fake_gpu):
    x = _inputs((3, 6, 5))
    mask = jnp.asarray(np.arange(6)[None, :] < np.array([6, 3, 1])[:, None])
    # A GRU (no cuDNN GRU in JAX), a stack with one, bfloat16, a mask, use_cudnn=False.
    cases = [
        (lambda **kw: jrnn.GRU(4, 5, rngs=nnx.Rngs(0), **kw), {}, "not GRUCell"),
        (
            lambda **kw: jrnn.RNN(
                [jrnn.LSTMCell(4, 5, rngs=nnx.Rngs(0)), jrnn.SimpleRNNCell(3, 4, rngs=nnx.Rngs(1))],
                **kw,
            ),
            {},
            "not SimpleRNNCell",
        ),
        (lambda **kw: jrnn.LSTM(4, 5, rngs=nnx.Rngs(0), **kw), {"mask": mask}, "a mask"),
        (
            lambda **kw: jrnn.LSTM(4, 5, dtype="bfloat16", rngs=nnx.Rngs(0), **kw),
            {"bf16": True},
            "float32 only",
        ),
        (
            lambda **kw: jrnn.LSTM(4, 5, use_cudnn=False, rngs=nnx.Rngs(0), **kw),
            {},
            "use_cudnn=False",
        ),
    ]
    for make, call, why in cases:
        inputs = x.astype(jnp.bfloat16) if call.pop("bf16", False) else x
        default, scan = make(), make(native=False)
        nnx.update(default, nnx.state(scan))
        assert_close(default(inputs, **call), scan(inputs, **call), time=6)
        assert fake_gpu == []
        with pytest.raises(ValueError, match=rf"native=True but .*{why}"):
            required = make(native=True)
            required(inputs, **call)
    # Keras' use_cudnn=True demands cuDNN of an LSTM, as Keras does; a GRU's is ignored
    # (Keras-on-JAX's GRU fast path is a scan, as jrnn's GRU on GPU).
    with pytest.raises(ValueError, match=r"use_cudnn=True but .*a mask"):
        jrnn.LSTM(4, 5, use_cudnn=True, rngs=nnx.Rngs(0))(x, mask=mask)
    assert jrnn.GRU(4, 5, use_cudnn=True, rngs=nnx.Rngs(0))(x).shape == (3, 4)


def test_default_on_gpu_is_the_scan_unrolled_16_steps(fake_gpu, monkeypatch):
    # Measured on an H200 (bench/gpu_probe.py), the scan with 16 steps per loop iteration
    # beat JAX's cuDNN LSTM; cuDNN runs on request (native=True or use_cudnn=True).
    unrolls = []
    scan = jax.lax.scan

    def recording_scan(*args, unroll=1, **kw):
        unrolls.append(unroll)
        return scan(*args, unroll=unroll, **kw)

    monkeypatch.setattr(jax.lax, "scan", recording_scan)
    x = _inputs((2, 20, 5))
    default = jrnn.LSTM(4, 5, rngs=nnx.Rngs(0))
    default(x)
    jrnn.Bidirectional(jrnn.LSTM(4, 5, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))(x)
    jrnn.GRU(4, 5, rngs=nnx.Rngs(0))(x)
    assert fake_gpu == [] and unrolls == [16] * 4
    del unrolls[:]
    jrnn.LSTM(4, 5, unroll=3, rngs=nnx.Rngs(0))(x)  # an int is exactly that
    jrnn.ConvLSTM1D(2, 3, in_channels=1, spatial_shape=(6,), rngs=nnx.Rngs(0))(
        _inputs((2, 5, 6, 1))
    )  # convolutions: not measured, rolled
    assert unrolls == [3, 1]
    requested = jrnn.LSTM(4, 5, use_cudnn=True, rngs=nnx.Rngs(0))
    nnx.update(requested, nnx.state(default))
    assert_close(requested(x), default(x), time=20)
    assert fake_gpu == [False]
    monkeypatch.setattr(cudnn, "on_gpu", lambda: False)
    assert default._scan_unroll() == 1  # CPU and TPU: a rolled loop


@pytest.mark.skipif(cudnn.on_gpu(), reason="tests the CPU backend")
def test_use_cudnn_true_off_gpu_names_the_backend():
    # Off GPU the LSTM runs jrnn's CPU kernel, which satisfies use_cudnn=True where it
    # runs; where it cannot (native=False), the error says why.
    with pytest.raises(ValueError, match=r"use_cudnn=True but .*native=False"):
        jrnn.LSTM(4, 5, use_cudnn=True, native=False, rngs=nnx.Rngs(0))(_inputs((2, 3, 5)))
    assert "default backend: cpu" in cudnn.unavailable_reason()


@pytest.mark.skipif(not cudnn.on_gpu(), reason="needs a CUDA GPU (JAX's default backend)")
def test_real_cudnn_equals_the_scan():  # pragma: no cover - GPU machines only
    assert cudnn.unavailable_reason() is None
    with jax.default_matmul_precision("highest"):
        for make in (
            lambda native: jrnn.LSTM(
                32,
                16,
                return_sequences=True,
                return_state=True,
                native=native,
                rngs=nnx.Rngs(0),
            ),
            lambda native: jrnn.Bidirectional(
                jrnn.LSTM(32, 16, return_sequences=True, native=native, rngs=nnx.Rngs(0)),
                rngs=nnx.Rngs(1),
            ),
        ):
            fused, scan = _pair(make)
            x = _inputs((8, 20, 16))
            _assert_same(fused, scan, x, time=20)
            _assert_same_gradients(fused, scan, x)


def test_an_unsupported_cudnn_call_says_how_to_avoid_it(fake_gpu, monkeypatch):
    def unbatchable(*args, **kwargs):
        raise NotImplementedError("Batching rule for 'rnn_fwd' not implemented")

    monkeypatch.setattr(
        cudnn, "_rnn", lambda: types.SimpleNamespace(gpu_rnn=object(), lstm=unbatchable)
    )
    layer = jrnn.LSTM(4, 5, native=True, rngs=nnx.Rngs(0))
    with pytest.raises(NotImplementedError, match=r"rnn_fwd.*without native=True"):
        jax.vmap(layer)(_inputs((2, 3, 6, 5)))
    assert jax.vmap(jrnn.LSTM(4, 5, rngs=nnx.Rngs(0)))(_inputs((2, 3, 6, 5))).shape == (2, 3, 4)
