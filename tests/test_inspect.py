"""jrnn.inspect: weights per gate equal Keras slices, activations equal a hand computation,
gradients equal tf.GradientTape's."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

import jrnn
from jrnn import inspect
from tests.helpers import assert_close, count_traces, randomize
from tests.keras_twins import make_pair, random_inputs

B, T, F, U = 2, 5, 3, 4


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def test_lstm_weights_per_gate_equal_keras_slices():
    layer, klayer = make_pair({"kind": "lstm", "units": U}, F, batch=B, time=T)
    k, rk, b = klayer.get_weights()
    w = inspect.get_rnn_weights(layer, concat_gates=False)
    for g, label in enumerate(("INPUT", "FORGET", "CELL", "OUTPUT")):
        np.testing.assert_array_equal(w["kernel"][label], k[:, g * U : (g + 1) * U])
        np.testing.assert_array_equal(w["recurrent_kernel"][label], rk[:, g * U : (g + 1) * U])
        np.testing.assert_array_equal(w["bias"][label], b[g * U : (g + 1) * U])
    full = inspect.get_rnn_weights(layer)
    np.testing.assert_array_equal(full["kernel"], k)


def test_gru_cudnn_bidirectional_and_stack_structures():
    layer, klayer = make_pair({"kind": "gru", "units": U}, F, batch=B, time=T)
    _, _, b = klayer.get_weights()
    w = inspect.get_rnn_weights(layer, concat_gates=False)
    np.testing.assert_array_equal(w["bias"]["RESET"]["input"], b[0, U : 2 * U])
    np.testing.assert_array_equal(w["bias"]["RESET"]["recurrent"], b[1, U : 2 * U])
    cudnn = jrnn.CuDNNLSTM(U, F, rngs=nnx.Rngs(0))
    randomize(cudnn, 1)
    cb = np.asarray(cudnn.cell.bias[...])
    wc = inspect.get_rnn_weights(cudnn, concat_gates=False)
    np.testing.assert_array_equal(wc["bias"]["FORGET"]["recurrent"], cb[5 * U : 6 * U])
    rngs = nnx.Rngs(0)
    bi = jrnn.Bidirectional(jrnn.SimpleRNN(U, F, rngs=rngs), rngs=rngs)
    wb = inspect.get_rnn_weights(bi, concat_gates=False)
    assert set(wb) == {"forward", "backward"} and set(wb["forward"]["kernel"]) == {""}
    stack = jrnn.RNN([jrnn.LSTMCell(U, F, rngs=rngs), jrnn.IndRNNCell(3, U, rngs=rngs)])
    ws = inspect.get_rnn_weights(stack, concat_gates=False)
    assert len(ws) == 2 and ws[1]["recurrent_kernel"][""].shape == (3,)
    with pytest.raises(TypeError, match=r"expected a jrnn recurrent layer"):
        inspect.get_rnn_weights(nnx.Linear(2, 2, rngs=rngs))


@pytest.mark.parametrize("go_backwards", [False, True])
def test_lstm_activations_equal_hand_computation(go_backwards):
    layer = jrnn.LSTM(U, F, return_sequences=True, go_backwards=go_backwards, rngs=nnx.Rngs(0))
    randomize(layer, 2)
    x = random_inputs(B, T, F)
    acts = inspect.get_activations(layer, x)
    w = inspect.get_rnn_weights(layer)
    k, rk, b = w["kernel"], w["recurrent_kernel"], w["bias"]
    h = c = np.zeros((B, U), np.float32)
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    for t in order:
        z = x[:, t] @ k + h @ rk + b
        i, f, g, o = (z[:, n * U : (n + 1) * U] for n in range(4))
        i, f, o, g = _sigmoid(i), _sigmoid(f), _sigmoid(o), np.tanh(g)
        c = f * c + i * g
        h = o * np.tanh(c)
        for name, value in (("i", i), ("f", f), ("c_tilde", g), ("o", o), ("c", c), ("h", h)):
            assert_close(acts[name][:, t], value, what=f"{name} at step {t}")


def test_gru_activations_equal_hand_computation():
    layer = jrnn.GRU(U, F, return_sequences=True, rngs=nnx.Rngs(0))
    randomize(layer, 3)
    x = random_inputs(B, T, F)
    acts = inspect.get_activations(layer, x)
    w = inspect.get_rnn_weights(layer)
    h = np.zeros((B, U), np.float32)
    for t in range(3):
        xz = x[:, t] @ w["kernel"] + w["bias"][0]
        hz = h @ w["recurrent_kernel"] + w["bias"][1]
        z = _sigmoid(xz[:, :U] + hz[:, :U])
        r = _sigmoid(xz[:, U : 2 * U] + hz[:, U : 2 * U])
        hh = np.tanh(xz[:, 2 * U :] + r * hz[:, 2 * U :])
        h = z * h + (1 - z) * hh
        for name, value in (("z", z), ("r", r), ("h_tilde", hh), ("h", h)):
            assert_close(acts[name][:, t], value)


def test_gate_gradients_and_gradients_over_time_equal_tf():
    layer, klayer = make_pair({"kind": "lstm", "units": U}, F, batch=B, time=T)
    x = random_inputs(B, T, F)
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(tf.square(klayer(xt)))
    k_kernel = tape.gradient(loss, klayer.trainable_weights[0]).numpy()
    k_x = tape.gradient(loss, xt).numpy()
    g = inspect.gate_gradients(layer, x)
    assert_close(g["kernel"]["CELL"], k_kernel[:, 2 * U : 3 * U])
    norms = inspect.gradients_over_time(layer, x)
    assert_close(norms, np.sqrt((k_x**2).sum(-1)))
    out_grad = inspect.get_gradients(layer, x, wrt="outputs")
    assert_close(out_grad, 2 * np.asarray(layer(x)))
    with pytest.raises(ValueError, match=r"`wrt` must be 'weights', 'outputs', a layer name"):
        inspect.get_gradients(layer, x, wrt=3.0)
    with pytest.raises(ValueError, match=r"no layer named \['states'\] in the model"):
        inspect.get_gradients(layer, x, wrt="states")  # any other string names a layer
    with pytest.raises(ValueError, match=r"`y` must have the model output's shape \(2, 4\)"):
        inspect.get_gradients(layer, x, np.zeros((B,), np.float32))  # would broadcast


def test_detect_nans_weights_norm_summary():
    assert inspect.detect_nans(np.ones(4)) is None
    assert inspect.detect_nans(np.array([1.0, np.nan, np.inf, 2.0])) == "25% NaN, 25% Inf"
    big = np.zeros(10_000)
    big[3] = np.nan
    assert inspect.detect_nans(big) == "1 NaN"
    layer = jrnn.LSTM(U, F, rngs=nnx.Rngs(0))
    norms = inspect.weights_norm(layer)
    k = np.asarray(layer.cell.kernel[...])
    assert norms["cell/kernel"][0] == pytest.approx(float(np.sqrt((k**2).sum(0)).max()))
    rngs = nnx.Rngs(0)
    text = inspect.summary(jrnn.Bidirectional(jrnn.GRU(U, F, rngs=rngs), rngs=rngs))
    assert "Bidirectional" in text and "GRU" in text and "UPDATE/RESET/NEW" in text

    class Model(nnx.Module):
        def __init__(self):
            self.zeta = jrnn.LSTM(U, F, return_sequences=True, rngs=rngs)
            self.alpha = jrnn.GRU(U, U, rngs=rngs)

    rows = [line.split()[:2] for line in inspect.summary(Model()).splitlines()[1:]]
    assert rows == [["zeta", "LSTM"], ["alpha", "GRU"]]  # the model's order, not the graph's
    jax.block_until_ready(jnp.ones(1))


def test_get_outputs_one_pass():
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.encoder = jrnn.LSTM(U, F, return_sequences=True, name="enc", rngs=rngs)
            self.head = jrnn.GRU(3, U, rngs=rngs)

        def __call__(self, x):
            return self.head(self.encoder(x))

    model = Model(nnx.Rngs(0))
    x = random_inputs(B, T, F)
    outs = inspect.get_outputs(model, x, ["enc", "head"])
    assert_close(outs["enc"], model.encoder(x))
    assert_close(outs["head"], model(x))
    assert type(model.encoder) is jrnn.LSTM  # restored
    with pytest.raises(ValueError, match=r"no layer named \['nope'\]"):
        inspect.get_outputs(model, x, "nope")


def test_gradients_wrt_layer_outputs_per_timestep_equal_tf():
    enc, kenc = make_pair({"kind": "lstm", "units": U}, F, batch=B, time=T, return_sequences=True)
    head, khead = make_pair({"kind": "gru", "units": 3}, U, batch=B, time=T, seed=1)

    class Model(nnx.Module):
        def __init__(self):
            self.encoder, self.head = enc, head

        def __call__(self, x):
            return self.head(self.encoder(x))

    x = random_inputs(B, T, F)
    with tf.GradientTape(persistent=True) as tape:
        h = kenc(tf.constant(x))
        tape.watch(h)
        loss = tf.reduce_sum(tf.square(khead(h)))
    expected = tape.gradient(loss, h).numpy()
    # see-rnn's get_gradients(model, _id, mode="weights") per gate: the model's loss
    # w.r.t. one sub-layer's weights, chosen by module, attribute name or index.
    k_kernel = tape.gradient(loss, kenc.trainable_weights[0]).numpy()
    for layer in (enc, "encoder", 0):
        g = inspect.gate_gradients(layer, x, model=Model())
        assert_close(g["kernel"]["OUTPUT"], k_kernel[:, 3 * U :])
    grads = inspect.get_gradients(Model(), x, wrt=["encoder"])
    assert grads["encoder"].shape == (B, T, U)
    assert_close(grads["encoder"], expected)
    assert_close(inspect.get_gradients(Model(), x, wrt="encoder")["encoder"], expected)
    norms = inspect.gradient_norms_over_time(Model(), x, "encoder")
    assert_close(norms, np.sqrt((expected**2).sum(-1)))
    with pytest.raises(ValueError, match="must return sequences"):
        inspect.gradient_norms_over_time(Model(), x, "head")


def test_gru_reset_before_simple_rnn_and_stack_activations_equal_hand_computation():
    rngs = nnx.Rngs(0)
    gru = jrnn.GRU(U, F, reset_after=False, return_sequences=True, rngs=rngs)
    simple = jrnn.SimpleRNN(U, F, return_sequences=True, rngs=rngs)
    stack = jrnn.RNN([jrnn.SimpleRNNCell(U, F, rngs=rngs), jrnn.SimpleRNNCell(3, U, rngs=rngs)])
    for n, m in enumerate((gru, simple, stack)):
        randomize(m, 4 + n)
    x = random_inputs(B, T, F)
    acts, w = inspect.get_activations(gru, x), inspect.get_rnn_weights(gru)
    k, rk, b = w["kernel"], w["recurrent_kernel"], w["bias"]
    h = np.zeros((B, U), np.float32)
    for t in range(3):
        xz = x[:, t] @ k + b
        z = _sigmoid(xz[:, :U] + h @ rk[:, :U])
        r = _sigmoid(xz[:, U : 2 * U] + h @ rk[:, U : 2 * U])
        hh = np.tanh(xz[:, 2 * U :] + (r * h) @ rk[:, 2 * U :])
        h = z * h + (1 - z) * hh
        for name, value in (("z", z), ("r", r), ("h_tilde", hh), ("h", h)):
            assert_close(acts[name][:, t], value)
    acts, w = inspect.get_activations(simple, x), inspect.get_rnn_weights(simple)
    h = np.zeros((B, U), np.float32)
    for t in range(3):
        h = np.tanh(x[:, t] @ w["kernel"] + h @ w["recurrent_kernel"] + w["bias"])
        assert_close(acts["h"][:, t], h)
    acts, ws = inspect.get_activations(stack, x), inspect.get_rnn_weights(stack)
    h0, h1 = np.zeros((B, U), np.float32), np.zeros((B, 3), np.float32)
    for t in range(3):
        h0 = np.tanh(x[:, t] @ ws[0]["kernel"] + h0 @ ws[0]["recurrent_kernel"] + ws[0]["bias"])
        h1 = np.tanh(h0 @ ws[1]["kernel"] + h1 @ ws[1]["recurrent_kernel"] + ws[1]["bias"])
        assert_close(acts[0]["h"][:, t], h0)
        assert_close(acts[1]["h"][:, t], h1)


def test_gradients_run_as_one_cached_program(monkeypatch):
    """Eager get_gradients / gate_gradients / gradients_over_time / per-layer gradients run
    as one cached program each (an eager jax.grad traced and compiled the model's scans
    anew at every call: ~350 ms and ~60 more memory maps a call); the results equal the
    uncached computation, and models that create variables in their call stay eager."""
    traces = count_traces(monkeypatch)
    layer = jrnn.LSTM(U, F, return_sequences=True, rngs=nnx.Rngs(3))
    x = random_inputs(B, T, F)
    mask = np.array([[True] * T, [True] * (T - 2) + [False] * 2])
    calls = {
        "weights": lambda: inspect.get_gradients(layer, x, mask=mask),
        "per gate": lambda: inspect.gate_gradients(layer, x),
        "over time": lambda: inspect.gradients_over_time(layer, x, mask=mask),
        "of outputs": lambda: inspect.get_gradients(layer, x, wrt=[layer.name or ""]),
    }
    for name, call in calls.items():
        first = call()
        count = len(traces)
        for _ in range(3):
            for a, e in zip(jax.tree.leaves(call()), jax.tree.leaves(first)):
                np.testing.assert_array_equal(a, e)
        assert len(traces) == count, name
    uncached = inspect._gradient_program(
        layer, x, None, None, {"mask": mask}, mode="weights",
        loss=inspect._sum_of_squares, static=(), names=(),
    )  # fmt: skip
    cached = inspect.get_gradients(layer, x, mask=mask)
    for a, e in zip(jax.tree.leaves(cached), jax.tree.leaves(uncached)):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-7)
    # A stateful layer creates its states in its first call: that call stays eager.
    stateful = jrnn.GRU(U, F, stateful=True, rngs=nnx.Rngs(0))
    assert stateful.states is None
    inspect.get_gradients(stateful, x)
    assert stateful.states is not None
    # gradients_over_time differentiates a copy: the states stay where they were.
    before = np.asarray(stateful.states[0][...])
    inspect.gradients_over_time(stateful, x)
    np.testing.assert_array_equal(stateful.states[0][...], before)


def test_argument_errors_and_whole_model_gradients_over_time():
    class Model(nnx.Module):  # no `mask` argument
        def __init__(self):
            self.lstm = jrnn.LSTM(U, F, return_sequences=True, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.lstm(x)

    model, x = Model(), random_inputs(B, T, F)
    np.testing.assert_allclose(
        inspect.gradients_over_time(model, x), inspect.gradients_over_time(model.lstm, x)
    )
    with pytest.raises(TypeError, match=r"get_outputs: `layers` must be a layer name, an index"):
        inspect.get_outputs(model, x, 0.5)
    with pytest.raises(TypeError, match=r"weights_norm: `layer` must be an nnx.Module"):
        inspect.weights_norm("lstm")
    with pytest.raises(TypeError, match=r"detect_nans: `data` must be numeric"):
        inspect.detect_nans("abc")
    with pytest.raises(ValueError, match=r"get_rnn_weights: `concat_gates` must be a bool"):
        inspect.get_rnn_weights(model.lstm, concat_gates="no")


def test_layer_selection_by_index_wildcard_and_substring_as_see_rnn():
    """see-rnn's `_id`: an index into the model's layers, '*' for every layer, and a name
    that is part of exactly one layer's name; jrnn refuses an ambiguous part."""
    rngs = nnx.Rngs(0)
    seq = nnx.Sequential(
        jrnn.LSTM(U, F, return_sequences=True, name="lstm_1", rngs=rngs),
        jrnn.GRU(3, U, return_sequences=True, name="gru_1", rngs=rngs),
        jrnn.SimpleRNN(2, 3, name="gru_head", rngs=rngs),
    )
    x = random_inputs(B, T, F)
    assert [label for label, _ in inspect.layers_of(seq)] == ["lstm_1", "gru_1", "gru_head"]
    h1 = seq.layers[0](x)
    h2 = seq.layers[1](h1)
    everything = inspect.get_outputs(seq, x, "*")
    assert list(everything) == ["lstm_1", "gru_1", "gru_head"]
    assert_close(everything["gru_1"], h2)
    chosen = inspect.get_outputs(seq, x, [0, -1, "lstm", "gru_1"])
    assert_close(chosen[0], h1)
    assert_close(chosen["lstm"], h1)
    assert_close(chosen[-1], seq(x))
    assert_close(chosen["gru_1"], h2)
    grads = inspect.get_gradients(seq, x, wrt=1)
    assert_close(grads[1], inspect.get_gradients(seq, x, wrt="gru_1")["gru_1"])
    with pytest.raises(ValueError, match=r"'gru' is ambiguous: .*\['gru_1', 'gru_head'\]"):
        inspect.get_outputs(seq, x, "gru")
    with pytest.raises(IndexError, match=r"layer index 3 out of range: the model has 3 layers"):
        inspect.get_outputs(seq, x, 3)

    class Model(nnx.Module):  # a user's module: its layers in assignment order
        def __init__(self):
            self.zeta = jrnn.LSTM(U, F, return_sequences=True, rngs=nnx.Rngs(1))
            self.alpha = jrnn.GRU(3, U, rngs=nnx.Rngs(2))
            self.spare = jrnn.GRU(3, U, rngs=nnx.Rngs(3))  # not called

        def __call__(self, x):
            return self.alpha(self.zeta(x))

    model = Model()
    assert [label for label, _ in inspect.layers_of(model)] == ["zeta", "alpha", "spare"]
    nnx.jit(lambda m, x: m(x))(model, x)  # NNX sets the attributes back sorted by name
    assert [label for label, _ in inspect.layers_of(model)] == ["zeta", "alpha", "spare"]
    assert inspect.sub_layer(model, 1) is model.alpha
    assert_close(inspect.get_outputs(model, x, 0)[0], model.zeta(x))
    assert list(inspect.get_outputs(model, x, "*")) == ["zeta", "alpha"]  # the layers that ran
    with pytest.raises(ValueError, match=r"the layers \['spare'\] did not run in `model\(x\)`"):
        inspect.get_outputs(model, x, "spare")


def test_weights_norm_l1_omit_names_and_accumulation():
    layer = jrnn.GRU(U, F, rngs=nnx.Rngs(0))
    k = np.asarray(layer.cell.kernel[...])
    l1 = inspect.weights_norm(layer, norm_fn=np.abs, stat_fns=(np.max,))
    assert l1["cell/kernel"][0] == pytest.approx(float(np.abs(k).sum(0).max()))
    assert set(inspect.weights_norm(layer, omit_names="bias")) == {
        "cell/kernel",
        "cell/recurrent_kernel",
    }
    track = inspect.weights_norm(layer, into={})
    layer.cell.kernel[...] = 2 * layer.cell.kernel[...]
    track = inspect.weights_norm(layer, into=track)
    max_norm = track["cell/kernel"][0]  # the max statistic over the two calls
    assert len(max_norm) == 2 and max_norm[1] == pytest.approx(2 * max_norm[0])
    with pytest.raises(ValueError, match=r"`into\['cell/bias'\]` must be a list of lists"):
        inspect.weights_norm(layer, into=inspect.weights_norm(layer))
    with pytest.raises(ValueError, match=r"holds 2 statistics; this call computes 1"):
        inspect.weights_norm(layer, into=track, stat_fns=(np.max,))
    with pytest.raises(TypeError, match=r"`norm_fn` must be a callable or an \(outer, inner\)"):
        inspect.weights_norm(layer, norm_fn="l2")


def test_with_values_refuses_a_state_of_another_shape():
    rngs = nnx.Rngs(0)
    lstm, gru = jrnn.LSTM(U, F, rngs=rngs), jrnn.GRU(U, F, rngs=rngs)
    twin = inspect.with_values(lstm, jax.tree.map(jnp.zeros_like, nnx.state(lstm, nnx.Param)))
    assert float(jnp.abs(twin.cell.kernel[...]).sum()) == 0.0
    assert float(jnp.abs(lstm.cell.kernel[...]).sum()) > 0.0  # the original is untouched
    with pytest.raises(
        ValueError, match=r"\['cell'\]\['kernel'\].value: \(3, 12\), expected \(3, 16\)"
    ):
        inspect.with_values(lstm, nnx.state(gru, nnx.Param))
    with pytest.raises(ValueError, match=r"is not a sub-layer of `model`"):
        inspect.sub_layer(lstm, gru)


def test_get_weights_penalties_and_weight_loss():
    rngs = nnx.Rngs(0)
    l1l2 = jrnn.regularizers.L1L2(0.1, 0.2)
    seq = nnx.Sequential(
        jrnn.Bidirectional(
            jrnn.LSTM(U, F, return_sequences=True, kernel_regularizer="l2", rngs=rngs),
            name="bi",
            rngs=rngs,
        ),
        jrnn.GRU(2, 2 * U, recurrent_regularizer=l1l2, name="gru", rngs=rngs),
    )
    weights = inspect.get_weights(seq)
    assert len(weights) == 9
    np.testing.assert_array_equal(weights["gru/cell/kernel"], seq.layers[1].cell.kernel[...])
    assert list(inspect.get_weights(seq, 1, omit_names=["bias", "recurrent"])) == ["1/cell/kernel"]
    penalties = inspect.get_weight_penalties(seq)
    assert penalties == {
        "layers/0/backward_layer/cell/kernel": (0.0, 0.01),
        "layers/0/forward_layer/cell/kernel": (0.0, 0.01),
        "layers/1/cell/recurrent_kernel": (0.1, 0.2),
    }
    kernels = [weights[f"bi/{d}_layer/cell/kernel"] for d in ("forward", "backward")]
    rk = weights["gru/cell/recurrent_kernel"]
    expected = sum(0.01 * (k**2).sum() for k in kernels) + 0.1 * abs(rk).sum() + 0.2 * (rk**2).sum()
    assert inspect.weight_loss(seq) == pytest.approx(float(expected), rel=1e-6)


def test_selection_of_duplicate_names_lists_and_shared_layers():
    rngs = nnx.Rngs(0)
    seq = nnx.Sequential(
        jrnn.LSTM(U, F, return_sequences=True, name="rnn", rngs=rngs),
        jrnn.GRU(3, U, return_sequences=True, name="rnn", rngs=rngs),
        jrnn.SimpleRNN(2, 3, name="head", rngs=rngs),
    )
    x = random_inputs(B, T, F)
    assert [label for label, _ in inspect.layers_of(seq)] == ["layers/0", "layers/1", "head"]
    with pytest.raises(ValueError, match=r"'rnn' is ambiguous: it matches \['rnn', 'rnn'\]"):
        inspect.get_outputs(seq, x, "rnn")
    grads = inspect.get_gradients(seq, x, wrt="*")  # each layer under its own label
    assert [g.shape for g in grads.values()] == [(B, T, U), (B, T, 3), (B, 2)]
    assert np.int64(1) in inspect.get_outputs(seq, x, [np.int64(1)])  # NumPy ints index too

    class Blocks(nnx.Module):  # an nnx.List attribute: its layers one by one
        def __init__(self):
            self.blocks = nnx.List([jrnn.LSTM(U, F, return_sequences=True, rngs=nnx.Rngs(1))])
            self.shared = jrnn.GRU(F, U, return_sequences=True, rngs=nnx.Rngs(2))
            self.head = jrnn.LSTM(2, F, rngs=nnx.Rngs(3))

        def __call__(self, x):
            h = self.shared(self.blocks[0](x))
            return self.head(self.shared(jnp.concatenate([h[..., :U], h[..., :U]], -1)[..., :U]))

    model = Blocks()
    assert [label for label, _ in inspect.layers_of(model)] == ["blocks/0", "shared", "head"]
    assert list(inspect.get_outputs(model, x, "*")) == ["blocks/0", "head"]  # ran once
    with pytest.raises(ValueError, match=r"\['shared'\] ran \[2\] times in `model\(x\)`"):
        inspect.get_gradients(model, x, wrt="shared")  # which of its two outputs?


def test_inspection_leaves_states_and_random_streams_as_they_were():
    """Inspecting runs the model; stateful states, dropout streams and the layer's class
    are put back, so that a gradient is the gradient at the model's current state."""
    layer = jrnn.LSTM(U, F, stateful=True, dropout=0.3, return_sequences=True, rngs=nnx.Rngs(0))
    x = random_inputs(B, T, F)
    layer(x)  # states now hold a carry

    def values(tree):
        keys = lambda v: jnp.issubdtype(v.dtype, jax.dtypes.prng_key)
        return [jax.random.key_data(v) if keys(v) else v for v in jax.tree.leaves(tree)]

    before = values(nnx.state(layer))
    expected = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(nnx.clone(layer))
    got = inspect.get_gradients(layer, x)
    for a, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        assert_close(a, e)
    model = nnx.Sequential(layer)
    inspect.get_gradients(model, x, wrt=0, training=True)
    inspect.gate_gradients(layer, x, training=True)
    inspect.get_outputs(model, x, 0)
    inspect.get_activations(layer, x)
    inspect.gradients_over_time(layer, x)
    for a, e in zip(values(nnx.state(layer)), before, strict=True):
        np.testing.assert_array_equal(a, e)


def test_with_rnn_weights_takes_keras_flat_get_weights():
    """see-rnn's get_rnn_weights and Keras' get_weights() give a flat list: a Keras
    Bidirectional's 6 arrays and a stack's 6 load into jrnn twins that then equal Keras."""
    import keras

    x = random_inputs(B, T, F)
    kbi = keras.layers.Bidirectional(keras.layers.LSTM(U, return_sequences=True))
    kbi.build((B, T, F))
    kbi.set_weights(
        [np.random.default_rng(k).standard_normal(w.shape) for k, w in enumerate(kbi.weights)]
    )
    rngs = nnx.Rngs(0)
    bi = jrnn.Bidirectional(jrnn.LSTM(U, F, return_sequences=True, rngs=rngs), rngs=rngs)
    assert_close(inspect.with_rnn_weights(bi, kbi.get_weights())(x), np.asarray(kbi(x)))
    spec = [{"kind": "gru", "units": U}, {"kind": "simple", "units": 2}]
    _, kstack = make_pair(spec, F, batch=B, time=T, seed=0)
    other, _ = make_pair(spec, F, batch=B, time=T, seed=1)
    assert not np.allclose(other(x), kstack(x))
    twin = inspect.with_rnn_weights(other, kstack.get_weights())
    assert_close(twin(x), np.asarray(kstack(x)))
    with pytest.raises(ValueError, match=r"6 arrays in Keras' get_weights\(\) order \(forward "):
        inspect.with_rnn_weights(bi, kbi.get_weights()[:5])


def test_default_loss_covers_every_output_but_not_the_states():
    """Keras sums a loss over a model's outputs: both of Bidirectional(merge_mode=None)
    count (the backward direction's gradients were all 0); return_state's states don't."""
    rngs = nnx.Rngs(0)
    bi = jrnn.Bidirectional(
        jrnn.LSTM(U, F, return_sequences=True, rngs=rngs), merge_mode=None, rngs=rngs
    )
    x = random_inputs(B, T, F)
    fwd, bwd = bi(x)

    def both(m, x):
        f, b = m(x)
        return jnp.sum(f**2) + jnp.sum(b**2)

    expected = nnx.grad(both)(nnx.clone(bi), x)["backward_layer"]["cell"]["kernel"][...]
    g = inspect.gate_gradients(bi, x)["backward"]["kernel"]["FORGET"]
    assert float(np.abs(g).max()) > 0.1
    assert_close(g, expected[:, U : 2 * U])
    gf, gb = inspect.get_gradients(bi, x, wrt="outputs")  # one gradient per output
    assert_close(gf, 2 * fwd)
    assert_close(gb, 2 * bwd)
    dx = jax.grad(lambda x: both(bi, x))(x)
    assert_close(inspect.gradients_over_time(bi, x), np.sqrt((np.asarray(dx) ** 2).sum(-1)))
    norms = inspect.gradient_norms_over_time(nnx.Sequential(bi), x, 0)
    assert_close(norms, np.sqrt((4 * fwd**2 + 4 * bwd**2).sum(-1)))
    zeros = [np.zeros_like(fwd), np.zeros_like(bwd)]  # y: one target per output
    mse = nnx.grad(lambda m: jnp.mean(m(x)[0] ** 2) + jnp.mean(m(x)[1] ** 2))(nnx.clone(bi))
    assert_close(
        inspect.get_gradients(bi, x, zeros)["forward_layer"]["cell"]["kernel"][...],
        mse["forward_layer"]["cell"]["kernel"][...],
    )
    with pytest.raises(ValueError, match=r"returns 2 outputs .* `y` must be a list of 2 targets"):
        inspect.get_gradients(bi, x, zeros[0])
    with_states = jrnn.LSTM(U, F, return_state=True, rngs=nnx.Rngs(1))
    plain = jrnn.LSTM(U, F, rngs=nnx.Rngs(1))
    assert_close(
        inspect.gate_gradients(with_states, x)["kernel"]["CELL"],
        inspect.gate_gradients(plain, x)["kernel"]["CELL"],
    )
    assert_close(inspect.get_gradients(with_states, x, wrt="outputs"), 2 * plain(x))

    class WithLengths(nnx.Module):  # a module of the user's: the rest are no outputs
        def __init__(self):
            self.lstm = jrnn.LSTM(U, F, rngs=nnx.Rngs(1))

        def __call__(self, x):
            return self.lstm(x), jnp.full((x.shape[0],), x.shape[1])

    y = np.zeros((B, U), np.float32)
    assert_close(
        inspect.get_gradients(WithLengths(), x, y)["lstm"]["cell"]["kernel"][...],
        inspect.get_gradients(plain, x, y)["cell"]["kernel"][...],
    )
    assert_close(inspect.get_gradients(WithLengths(), x, wrt="outputs"), 2 * plain(x))


def test_cudnn_gate_blocks_are_the_matrices_applied_to_x_and_h():
    """Per gate, CuDNN kernels are Keras' applied (in, units) / (units, units) matrices
    (keras_equivalent_weights), not the stored cuDNN blocks; their gradients likewise,
    so they equal an LSTM twin's. The concatenated arrays stay the stored ones."""
    cudnn = jrnn.CuDNNLSTM(U, F, return_sequences=True, rngs=nnx.Rngs(0))
    randomize(cudnn, 5)
    k, rk, b = (np.asarray(a) for a in cudnn.cell.keras_equivalent_weights())
    w = inspect.get_rnn_weights(cudnn, concat_gates=False)
    for g, label in enumerate(("INPUT", "FORGET", "CELL", "OUTPUT")):
        np.testing.assert_array_equal(w["kernel"][label], k[:, g * U : (g + 1) * U])
        np.testing.assert_array_equal(w["recurrent_kernel"][label], rk[:, g * U : (g + 1) * U])
    np.testing.assert_array_equal(inspect.get_rnn_weights(cudnn)["kernel"], cudnn.cell.kernel[...])
    twin = inspect.with_rnn_weights(
        jrnn.LSTM(U, F, return_sequences=True, rngs=nnx.Rngs(0)),
        {"kernel": k, "recurrent_kernel": rk, "bias": b},
    )
    x = random_inputs(B, T, F)
    assert_close(twin(x), cudnn(x))
    got, expected = inspect.gate_gradients(cudnn, x), inspect.gate_gradients(twin, x)
    for name in ("kernel", "recurrent_kernel"):
        for label in ("INPUT", "OUTPUT"):
            assert_close(got[name][label], expected[name][label], what=f"{name} {label}")


def test_gradient_functions_check_x_and_layer_before_computing(monkeypatch):
    layer = jrnn.LSTM(U, F, return_sequences=True, rngs=nnx.Rngs(0))
    x = random_inputs(B, T, F)
    with pytest.raises(ValueError, match=r"get_gradients: `x` must be an array .*str 'lstm'"):
        inspect.get_gradients(layer, "lstm", x)  # see-rnn's argument order
    with pytest.raises(ValueError, match=r"gradients_over_time: `x` must be an array"):
        inspect.gradients_over_time(layer, "abc")
    with pytest.raises(ValueError, match=r"get_outputs: `x` must be an array .*str 'lstm'"):
        inspect.get_outputs(nnx.Sequential(layer), "lstm", x)
    with pytest.raises(ValueError, match=r"gradient_norms_over_time: `x` must be an array"):
        inspect.gradient_norms_over_time(nnx.Sequential(layer), None, 0)

    def computed(*args, **kwargs):
        raise AssertionError("the gradient was computed before `layer` was checked")

    monkeypatch.setattr(inspect, "get_gradients", computed)
    dense = jrnn.Dense(2, 3, rngs=nnx.Rngs(0))
    with pytest.raises(
        TypeError, match=r"gate_gradients: `layer` must be a jrnn recurrent .*Dense"
    ):
        inspect.gate_gradients(dense, np.ones((B, 3), np.float32))
    with pytest.raises(TypeError, match=r"received TimeDistributed \(pass the recurrent layer"):
        inspect.gate_gradients(jrnn.TimeDistributed(layer), np.ones((B, 2, T, F), np.float32))
    with pytest.raises(TypeError, match=r"layer_gradients: `layer` must be an nnx.Module without"):
        inspect.layer_gradients("lstm", x)
    with pytest.raises(ValueError, match=r"layer_gradients: `layer` .* is not a sub-layer"):
        inspect.layer_gradients(dense, x, model=nnx.Sequential(layer))
    with pytest.raises(ValueError, match=r"gate_gradients: `x` must be an array"):
        inspect.gate_gradients(layer, "x")


def test_gradient_norms_over_time_refuses_outputs_without_a_time_axis():
    # A ConvLSTM2D without return_sequences returns (batch, rows, cols, filters): axis 1
    # is image rows, as after an UpSampling2D or a Dense fed by them. jrnn returned
    # (2, 5) / (2, 10) "norms over time" that were norms over rows.
    import keras

    import importers

    inp = keras.Input((4, 5, 6, 2), name="frames")
    cl = keras.layers.ConvLSTM2D(3, 3, padding="same", name="cl")(inp)
    up = keras.layers.UpSampling2D(name="up")(cl)
    dense = keras.layers.Dense(2, name="dense")(up)
    seq = keras.layers.ConvLSTM2D(3, 3, padding="same", return_sequences=True, name="cl_seq")(inp)
    td = keras.layers.TimeDistributed(keras.layers.Flatten(name="flat"), name="td")(seq)
    per_step = keras.layers.Dense(2, name="per_step")(td)
    model = importers.load(keras.Model(inp, [dense, per_step], name="two_heads"))
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 6, 2)).astype(np.float32)
    for name, shape, why in (
        ("cl", (2, 5, 6, 3), r"ConvLSTM2D returns its last step only \(return_sequences=False\)"),
        ("up", (2, 10, 12, 3), "UpSampling2D works on 2-D frames: its axis 1 is a spatial axis"),
        ("dense", (2, 10, 12, 2), "it keeps the axes of an output that has no time axis: UpSampl"),
    ):
        with pytest.raises(
            ValueError, match=rf"layer '{name}' .*{re.escape(str(shape))}.* has no time axis: {why}"
        ):
            inspect.gradient_norms_over_time(model, x, name)
    # Outputs that keep a time axis are still taken.
    for name in ("cl_seq", "td", "per_step"):
        g = inspect.get_gradients(model, x, wrt=[name])[name]
        norms = inspect.gradient_norms_over_time(model, x, name)
        assert norms.shape == (2, 4)
        assert_close(norms, np.sqrt((np.asarray(g) ** 2).reshape(2, 4, -1).sum(-1)))

    # An nnx.Sequential, and spatial layers fed by images (no sequence anywhere).
    rngs = nnx.Rngs(0)
    chain = nnx.Sequential(
        jrnn.ConvLSTM2D(3, 3, in_channels=2, spatial_shape=(5, 6), padding="same", rngs=rngs),
        jrnn.UpSampling2D(),
        jrnn.Dense(2, 3, rngs=rngs),
    )
    for index in (0, 1, 2):
        with pytest.raises(ValueError, match="has no time axis"):
            inspect.gradient_norms_over_time(chain, x, index)
    images = nnx.Sequential(jrnn.UpSampling2D(), jrnn.Conv2D(2, 3, 2, padding="same", rngs=rngs))
    for index in (0, 1):
        with pytest.raises(ValueError, match="its axis 1 is a spatial axis"):
            inspect.gradient_norms_over_time(images, x[:, 0], index)
