"""The core's contract beyond parity: errors, transforms, dropout, constants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jrnn
from tests.helpers import assert_close, randomize

B, T, F, U = 3, 7, 3, 5


def x_in(batch=B, time=T, features=F, seed=0):
    return jnp.asarray(
        np.random.default_rng(seed).standard_normal((batch, time, features)), jnp.float32
    )


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda layer: layer(jnp.ones((B, F))),
            r"LSTM.*`inputs` must have shape \(batch, time, 3\).*"
            r"received shape \(3, 3\)",
        ),
        (
            lambda layer: layer(jnp.ones((B, T, 4))),
            r"`inputs` feature shape must be \(3,\).*received shape",
        ),
        (lambda layer: layer(jnp.ones((B, 0, F))), r"at least one timestep"),
        (
            lambda layer: layer(x_in(), mask=jnp.ones((B, T + 1), bool)),
            r"`mask` must have shape \(batch, time\) = \(3, 7\); received shape \(3, 8\)",
        ),
        (
            lambda layer: layer(x_in(), mask=jnp.ones((B, T), jnp.complex64)),
            r"`mask` must hold real numbers",
        ),
        (
            lambda layer: layer(x_in(), initial_state=[jnp.zeros((B, U))]),
            r"`initial_state` must hold 2 state\(s\) with shapes "
            r"\[\(3, 5\), \(3, 5\)\]; received 1",
        ),
        (
            lambda layer: layer(x_in(), initial_state=[jnp.zeros((B, U)), jnp.zeros((B, 4))]),
            r"`initial_state\[1\]` must have shape \(3, 5\); received \(3, 4\)",
        ),
        (lambda layer: layer(x_in(), constants=[jnp.ones((B, 2))]), r"does not accept constants"),
        (  # complex inputs: the cast would drop the imaginary part (JAX only warns)
            lambda layer: layer(x_in().astype(jnp.complex64)),
            r"LSTM: `inputs` must hold real numbers \(float, int or bool\); received dtype "
            r"complex64",
        ),
        (
            lambda layer: layer(np.full((B, T, F), "a")),
            r"`inputs` must hold real numbers .*received dtype <U1",
        ),
        (
            lambda layer: layer.reset_state(states=[jnp.zeros((B, U))] * 2),
            r"needs a stateful layer",
        ),
    ],
)
def test_call_errors(call, match):
    layer = jrnn.LSTM(U, F, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=match):
        call(layer)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"units": 0}, r"`units` must be a positive integer; received 0"),
        ({"in_features": 2.5}, r"`in_features` must be a positive integer; received 2.5"),
        ({"dropout": 1.5}, r"`dropout` must be a float in \[0, 1\); received 1.5"),
        ({"recurrent_dropout": -0.1}, r"`recurrent_dropout` must be a float in \[0, 1\)"),
        ({"implementation": 3}, r"`implementation` must be 1 or 2; received 3"),
        ({"unroll": -2}, r"`unroll` must be a bool or a positive int"),
        ({"remat": 2.5}, r"`remat` must be a bool or a positive int"),
        (
            {"use_cudnn": "yes"},
            r"`use_cudnn` must be one of \('auto', True, False\); received 'yes'",
        ),
        ({"return_sequences": "yes"}, r"`return_sequences` must be a bool"),
        ({"activation": "tanhh"}, r"LSTMCell: `activation`: Unknown activation 'tanhh'"),
        (
            {"recurrent_activation": "sigmoidd"},
            r"LSTMCell: `recurrent_activation`: Unknown activation 'sigmoidd'",
        ),
        (
            {"kernel_initializer": "glorot_unifrom"},
            r"LSTMCell: `kernel_initializer`: Unknown initializer 'glorot_unifrom'",
        ),
        ({"bias_initializer": "zeross"}, r"`bias_initializer`: Unknown initializer 'zeross'"),
        ({"kernel_regularizer": "l3"}, r"`kernel_regularizer`: Unknown regularizer 'l3'"),
        ({"recurrent_constraint": "nonneg2"}, r"`recurrent_constraint`: Unknown constraint"),
        ({"activity_regularizer": "l9"}, r"LSTM: `activity_regularizer`: Unknown regularizer"),
        ({"dtype": "int32"}, r"`dtype` must be a floating dtype"),
        ({"dtype": "mixed_int8"}, r"`dtype` must be a floating dtype or a Keras dtype policy"),
    ],
)
def test_constructor_errors(kwargs, match):
    arguments = {"units": U, "in_features": F, "rngs": nnx.Rngs(0), **kwargs}
    with pytest.raises(ValueError, match=match):
        jrnn.LSTM(**arguments)


def test_rngs_must_be_given():
    with pytest.raises(TypeError, match=r"LSTMCell: `rngs` must be an nnx.Rngs .*received None"):
        jrnn.LSTMCell(U, F, dropout=0.2, rngs=None)


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda cell: cell(cell.initialize_carry(B), jnp.ones((B, 4))),
            r"LSTMCell: `inputs` of one step must have shape \(batch, 3\); received shape "
            r"\(3, 4\)",
        ),
        (
            lambda cell: cell(cell.initialize_carry(B), jnp.ones((B, 1, F))),
            r"`inputs` of one step must have shape \(batch, 3\); received shape \(3, 1, 3\)",
        ),
        (
            lambda cell: cell((jnp.zeros((B, U)),), jnp.ones((B, F))),
            r"`carry` must be a tuple of 2 state\(s\) .*received tuple \(1\)",
        ),
        (  # a batch-1 state is not broadcast
            lambda cell: cell((jnp.zeros((1, U)),) * 2, jnp.ones((B, F))),
            r"`carry\[0\]` must have shape \(3, 5\) .*for inputs of batch 3; received "
            r"shape \(1, 5\)",
        ),
        (
            lambda cell: cell(cell.initialize_carry(B), jnp.ones((B, F), jnp.complex64)),
            r"`inputs` must hold real numbers",
        ),
    ],
)
def test_cell_call_errors(call, match):
    """A cell called directly (Flax's ``carry, y = cell(carry, x_t)``) checks its
    arguments as the layers do: nothing is broadcast or left to JAX's messages."""
    cell = jrnn.LSTMCell(U, F, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=match):
        call(cell)
    stack = jrnn.StackedRNNCells([cell, jrnn.GRUCell(2, U, rngs=nnx.Rngs(1))])
    h, c = cell.initialize_carry(B)
    with pytest.raises(ValueError, match=r"StackedRNNCells: `carry\[1\]` must be a tuple"):
        stack(((h, c), jnp.zeros((B, 2))), jnp.ones((B, F)))
    carry, y = stack(stack.initialize_carry(B), jnp.ones((B, F)))
    assert y.shape == (B, 2) and carry[0][1].shape == (B, U)


def test_stateful_batch_size_error_and_explicit_batch():
    layer = jrnn.GRU(U, F, stateful=True, batch_size=B, rngs=nnx.Rngs(0))
    assert layer.states is not None
    layer(x_in())
    with pytest.raises(ValueError, match=r"expected batch size 3, received 2.*batch_size=3"):
        layer(x_in(batch=2))
    with pytest.raises(ValueError, match=r"`states` must have the layer's batch size"):
        layer.reset_state([jnp.zeros((2, U))])
    free = jrnn.GRU(U, F, stateful=True, rngs=nnx.Rngs(0))  # the batch size of its calls
    free(x_in())
    with pytest.raises(ValueError, match=r"Call reset_state\(states=...\) with states of"):
        free(x_in(batch=2))
    free.reset_state([jnp.full((2, U), 0.5)])  # as the error says: a new batch size
    fresh = jrnn.GRU(U, F, rngs=nnx.Rngs(0))
    np.testing.assert_allclose(
        free(x_in(batch=2)), fresh(x_in(batch=2), initial_state=[jnp.full((2, U), 0.5)]), atol=1e-6
    )
    with pytest.raises(ValueError, match=r"`states\[0\]` must have shape \(2, 5\)"):
        free.reset_state([jnp.zeros((2, U + 1))])
    before = np.asarray(free.states[0][...])
    with pytest.raises(ValueError, match=r"`states\[0\]` must have shape \(4, 5\)"):
        free.reset_state([jnp.zeros((4, U + 1))])  # refused before the states are replaced
    np.testing.assert_array_equal(free.states[0][...], before)
    conv = jrnn.ConvLSTM2D(2, 3, in_channels=F, stateful=True, padding="same", rngs=nnx.Rngs(0))
    conv(jnp.ones((2, 4, 5, 5, F)))  # frames of any size: the states follow the first call's
    conv.reset_state([jnp.zeros((3, 5, 5, 2))] * 2)
    assert conv(jnp.ones((3, 4, 5, 5, F))).shape == (3, 5, 5, 2)


def test_stacked_cells_size_error():
    rngs = nnx.Rngs(0)
    with pytest.raises(
        ValueError, match=r"cells\[1\].*takes inputs of shape \(3,\).*outputs \(4,\)"
    ):
        jrnn.StackedRNNCells([jrnn.LSTMCell(4, 3, rngs=rngs), jrnn.GRUCell(5, 3, rngs=rngs)])
    with pytest.raises(TypeError, match=r"`cell` must be a jrnn cell"):
        jrnn.RNN(nnx.Linear(2, 3, rngs=rngs))


# ---------------------------------------------------------------- transforms
def _layers():
    rngs = nnx.Rngs(0)
    return {
        "simple": jrnn.SimpleRNN(U, F, return_sequences=True, rngs=rngs),
        "gru": jrnn.GRU(U, F, return_sequences=True, return_state=True, rngs=rngs),
        "lstm": jrnn.LSTM(U, F, return_state=True, go_backwards=True, rngs=rngs),
        "stack": jrnn.RNN(
            [jrnn.LSTMCell(4, F, rngs=rngs), jrnn.GRUCell(U, 4, reset_after=False, rngs=rngs)],
            return_sequences=True,
            return_state=True,
        ),
    }


@pytest.mark.parametrize("name", ["simple", "gru", "lstm", "stack"])
def test_nnx_jit_grad_vmap_and_split_merge(name):
    layer = _layers()[name]
    randomize(layer, 3)
    x = x_in()
    mask = jnp.asarray(np.random.default_rng(1).random((B, T)) > 0.3)
    eager = layer(x, mask=mask)
    jitted = nnx.jit(lambda m, x, mask: m(x, mask=mask))(layer, x, mask)
    for a, e in zip(jax.tree_util.tree_leaves(jitted), jax.tree_util.tree_leaves(eager)):
        assert_close(a, e)

    # split/merge into a plain jax.jit function
    graphdef, state = nnx.split(layer)

    @jax.jit
    def apply(state, x, mask):
        return nnx.merge(graphdef, state)(x, mask=mask)

    for a, e in zip(
        jax.tree_util.tree_leaves(apply(state, x, mask)), jax.tree_util.tree_leaves(eager)
    ):
        assert_close(a, e)

    # gradients with nnx.grad
    def loss(m, x):
        return sum(jnp.sum(o**2) for o in jax.tree_util.tree_leaves(m(x, mask=mask)))

    grads = nnx.grad(loss)(layer, x)
    leaves = jax.tree_util.tree_leaves(nnx.state(grads, nnx.Param))
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves)

    # vmap over an extra leading axis of inputs equals a loop
    xs = jnp.stack([x, x_in(seed=5)])
    vmapped = jax.vmap(lambda xx: apply(state, xx, mask))(xs)
    for i in range(2):
        single = apply(state, xs[i], mask)
        for a, e in zip(jax.tree_util.tree_leaves(vmapped), jax.tree_util.tree_leaves(single)):
            assert_close(a[i], e)


def test_stateful_under_nnx_jit_carries_states():
    layer = jrnn.LSTM(U, F, stateful=True, return_sequences=True, rngs=nnx.Rngs(0))
    ref = jrnn.LSTM(U, F, return_sequences=True, return_state=True, rngs=nnx.Rngs(0))
    step = nnx.jit(lambda m, x: m(x))
    x1, x2 = x_in(seed=1), x_in(seed=2)
    y1, y2 = step(layer, x1), step(layer, x2)
    r1, h, c = ref(x1)
    r2, _, _ = ref(x2, initial_state=[h, c])
    assert_close(y1, r1)
    assert_close(y2, r2)


# ---------------------------------------------------------------- dropout
@pytest.mark.parametrize("kind", ["simple", "gru", "lstm"])
def test_input_dropout_uses_one_mask_for_every_step(kind):
    """As Keras' own test: with input dropout only, training output equals the inference
    output on inputs multiplied by ONE (batch, features) mask, the same at every step."""
    cls = {"simple": jrnn.SimpleRNN, "gru": jrnn.GRU, "lstm": jrnn.LSTM}[kind]
    layer = cls(U, F, dropout=0.5, return_sequences=True, rngs=nnx.Rngs(0))
    x = x_in()
    key = jax.random.key(42)
    trained = layer(x, training=True, rngs=key)
    in_mask, rec_mask = layer.cell.dropout_masks(B, True, key)
    assert rec_mask is None and in_mask.shape == (B, F)
    assert_close(trained, layer(x * in_mask[:, None, :]))
    # deterministic given the key; different for another key; exact without training
    np.testing.assert_array_equal(
        np.asarray(trained), np.asarray(layer(x, training=True, rngs=key))
    )
    assert not np.allclose(
        np.asarray(trained), np.asarray(layer(x, training=True, rngs=jax.random.key(7)))
    )
    np.testing.assert_array_equal(np.asarray(layer(x)), np.asarray(layer(x, training=False)))


@pytest.mark.parametrize("kind,count", [("simple", 1), ("gru", 3), ("lstm", 4)])
def test_recurrent_dropout_per_gate_masks_match_a_python_loop(kind, count):
    """recurrent_dropout switches LSTM/GRU to implementation 1 with one mask per gate (Keras);
    the scan equals a Python loop over the cell's step with the same masks."""
    cls = {"simple": jrnn.SimpleRNN, "gru": jrnn.GRU, "lstm": jrnn.LSTM}[kind]
    layer = cls(
        U, F, dropout=0.25, recurrent_dropout=0.4, return_sequences=True, seed=3, rngs=nnx.Rngs(0)
    )
    assert layer.cell.dropout_mask_count == count
    if kind != "simple":
        assert layer.cell.implementation == 1
    x = x_in()
    key = jax.random.key(0)
    out = layer(x, training=True, rngs=key)
    in_m, rec_m = layer.cell.dropout_masks(B, True, key)
    expected_shape = (B, U) if count == 1 else (count, B, U)
    assert rec_m.shape == expected_shape
    params = layer.cell.params()
    carry = layer.cell.initialize_carry(B)
    ys = []
    for t in range(T):
        xp = layer.cell.project_inputs(params, x[:, t], in_m)
        carry, y, _ = layer.cell.step(params, carry, xp, rec_m)
        ys.append(y)
    assert_close(out, jnp.stack(ys, axis=1))


def test_dropout_rate_and_scale():
    layer = jrnn.LSTM(64, 32, dropout=0.3, recurrent_dropout=0.2, rngs=nnx.Rngs(0))
    in_m, rec_m = layer.cell.dropout_masks(512, True, jax.random.key(1))
    for m, rate in ((in_m, 0.3), (rec_m, 0.2)):
        values = np.unique(np.asarray(m))
        np.testing.assert_allclose(values, [0.0, 1.0 / (1.0 - rate)], rtol=1e-6)
        assert abs(float(jnp.mean(m == 0)) - rate) < 0.01
    # the layer's own stream advances: two training calls differ, and a fixed seed reproduces
    x = x_in(features=32)
    a, b = layer(x, training=True), layer(x, training=True)
    assert not np.allclose(np.asarray(a), np.asarray(b))
    s1 = jrnn.GRU(4, 32, dropout=0.5, seed=11, rngs=nnx.Rngs(0))
    s2 = jrnn.GRU(4, 32, dropout=0.5, seed=11, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(
        np.asarray(s1(x, training=True)), np.asarray(s2(x, training=True))
    )


def test_stacked_dropout_masks_per_cell():
    rngs = nnx.Rngs(0)
    layer = jrnn.RNN(
        [
            jrnn.LSTMCell(4, F, dropout=0.5, rngs=rngs),
            jrnn.GRUCell(U, 4, recurrent_dropout=0.5, rngs=rngs),
        ],
        return_sequences=True,
    )
    first_in, inner = layer.cell.dropout_masks(B, True, jax.random.key(0))
    assert first_in.shape == (B, F)
    assert inner[0] == (None, None)
    assert inner[1][0] is None and inner[1][1].shape == (3, B, U)
    out = layer(x_in(), training=True, rngs=jax.random.key(0))
    assert out.shape == (B, T, U) and bool(jnp.all(jnp.isfinite(out)))


# ---------------------------------------------------------------- constants
class ConstantAttentionCell(jrnn.RNNCellBase):
    """A Keras-2 style cell using constants: h' = tanh(x W + h R + c V)."""

    accepts_constants = True

    def __init__(self, units, in_features, constant_features, *, rngs):
        self.units = units
        self.input_shape = (in_features,)
        self.state_shapes = ((units,),)
        self.output_shape = (units,)
        self.policy = jrnn.DTypePolicy(jnp.dtype("float32"), jnp.dtype("float32"))
        init = jax.nn.initializers.normal(0.5)
        self.kernel = nnx.Param(init(rngs.params(), (in_features, units)))
        self.recurrent_kernel = nnx.Param(init(rngs.params(), (units, units)))
        self.constant_kernel = nnx.Param(init(rngs.params(), (constant_features, units)))

    def params(self):
        return {k: getattr(self, k)[...] for k in ("kernel", "recurrent_kernel", "constant_kernel")}

    def project_inputs(self, params, x, input_masks):
        return x @ params["kernel"]

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        (h,) = carry
        (c,) = constants
        h = jnp.tanh(x_projected + h @ params["recurrent_kernel"] + c @ params["constant_kernel"])
        return (h,), h, {"h": h}


def test_constants_match_keras2():
    """Keras 2 (tf_keras) passes `constants` to every step; so does jrnn.RNN."""
    import tensorflow as tf
    import tf_keras

    class KerasCell(tf_keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(name="kernel", shape=(F, self.units))
            self.recurrent_kernel = self.add_weight(name="rk", shape=(self.units, self.units))
            self.constant_kernel = self.add_weight(name="ck", shape=(2, self.units))

        def call(self, inputs, states, constants):
            h = tf.tanh(
                inputs @ self.kernel
                + states[0] @ self.recurrent_kernel
                + constants[0] @ self.constant_kernel
            )
            return h, [h]

    cell = ConstantAttentionCell(U, F, 2, rngs=nnx.Rngs(0))
    layer = jrnn.RNN(cell, return_sequences=True, go_backwards=True)
    x = np.asarray(x_in())
    const = np.random.default_rng(3).standard_normal((B, 2)).astype(np.float32)
    mask = np.array([[1, 1, 0, 1, 1, 0, 1]] * B, bool)
    klayer = tf_keras.layers.RNN(KerasCell(U), return_sequences=True, go_backwards=True)
    klayer(tf.constant(x), constants=tf.constant(const))
    klayer.cell.set_weights([np.asarray(v) for v in cell.params().values()])
    expected = klayer(tf.constant(x), constants=tf.constant(const), mask=tf.constant(mask))
    assert_close(layer(x, constants=[const], mask=mask), expected.numpy(), time=T)


class _OwnMixedCell(jrnn.RNNCellBase):
    """A user's cell under a mixed policy whose params() and params_for_length() take no
    ``cast`` (the protocol before it had one): h' = tanh(x W + h R)."""

    def __init__(self, units, in_features, *, rngs):
        self.units = units
        self.input_shape = (in_features,)
        self.state_shapes = ((units,),)
        self.output_shape = (units,)
        self.policy = jrnn.DTypePolicy(jnp.dtype("float32"), jnp.dtype("bfloat16"))
        init = jax.nn.initializers.normal(0.5)
        self.kernel = nnx.Param(init(rngs.params(), (in_features, units)))
        self.recurrent_kernel = nnx.Param(init(rngs.params(), (units, units)))

    def params(self):
        return {
            k: getattr(self, k)[...].astype(jnp.bfloat16) for k in ("kernel", "recurrent_kernel")
        }

    def params_for_length(self, time):
        return self.params()

    def project_inputs(self, params, x, input_masks):
        return x @ params["kernel"]

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        h = jnp.tanh(x_projected + carry[0] @ params["recurrent_kernel"])
        return (h,), h, {"h": h}


@pytest.mark.parametrize("stacked", [False, True])
def test_a_cell_of_ones_own_without_cast_runs_and_differentiates(stacked):
    """Layers ask cells for their weights in their own dtype (``cast=False``); a cell of
    one's own that predates the argument gives its compute-dtype weights instead."""
    cell = _OwnMixedCell(U, F, rngs=nnx.Rngs(0))
    cells = [cell, jrnn.LSTMCell(U, U, dtype="mixed_bfloat16", rngs=nnx.Rngs(1))]
    layer = jrnn.RNN(cells if stacked else cell, return_sequences=True)
    x = x_in()

    def loss(m):
        return m(x).astype(jnp.float32).sum()

    grads = nnx.grad(loss)(layer)
    kernel = grads.cell.cells[0].kernel if stacked else grads.cell.kernel
    assert kernel[...].dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(kernel[...])))
    assert layer(x).dtype == jnp.bfloat16


class _NumbersInParamsCell(_OwnMixedCell):
    """A cell whose params hold a Python number and a function beside its arrays."""

    def params(self, *, cast=True):
        arrays = {k: getattr(self, k)[...] for k in ("kernel", "recurrent_kernel")}
        arrays = self.cast_params(arrays) if cast else arrays
        return {**arrays, "alpha": 0.5, "act": jnp.tanh}

    def params_for_length(self, time, *, cast=True):
        return self.params(cast=cast)

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        h = params["act"](x_projected + params["alpha"] * (carry[0] @ params["recurrent_kernel"]))
        return (h,), h, {"h": h}


def test_a_cells_params_may_hold_numbers_and_functions():
    """Only float arrays are cast (and widened for the gradient); a Python number or a
    function among a cell's params passes through (they raised 'no attribute dtype')."""
    layer = jrnn.RNN(_NumbersInParamsCell(U, F, rngs=nnx.Rngs(0)), return_sequences=True)
    x = x_in()
    eager = layer(x)
    assert eager.dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(nnx.jit(lambda m, v: m(v))(layer, x)), np.asarray(eager)
    )
    grads = nnx.grad(lambda m: m(x).astype(jnp.float32).sum())(layer)
    assert grads.cell.kernel[...].dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(grads.cell.kernel[...])))


# ---------------------------------------------------------------- remat
@pytest.mark.parametrize(
    ("remat", "time"), [(True, 9), (3, 9), (7, 9), (True, 7), (4, 7)]
)  # segments 3x3, 3x3, 7+2, 3+3+1, 4+3
@pytest.mark.parametrize("go_backwards", [False, True])
def test_remat_equals_plain_scan_values_and_gradients(remat, time, go_backwards):
    kw = {
        "return_sequences": True,
        "return_state": True,
        "go_backwards": go_backwards,
        "rngs": nnx.Rngs(0),
    }
    plain = jrnn.LSTM(U, F, **kw)
    rematted = jrnn.LSTM(U, F, remat=remat, **kw)
    randomize(plain, 1)
    randomize(rematted, 1)
    x = x_in(time=time)
    mask = jnp.asarray(np.random.default_rng(2).random((B, time)) > 0.3)
    for a, e in zip(rematted(x, mask=mask), plain(x, mask=mask)):
        assert_close(a, e)

    def loss(m):
        return sum(jnp.sum(jnp.sin(o)) for o in m(x, mask=mask))

    for a, e in zip(
        jax.tree_util.tree_leaves(nnx.state(nnx.grad(loss)(rematted), nnx.Param)),
        jax.tree_util.tree_leaves(nnx.state(nnx.grad(loss)(plain), nnx.Param)),
    ):
        assert_close(a, e)


def test_segment_length():
    from jrnn.rnn import segment_length, segments

    assert segment_length(10000, True) == 100
    assert segment_length(9, True) == 3
    assert segments(1000, True) == (25, 40, 0)  # a divisor near sqrt(1000)
    assert segments(997, True) == (32, 31, 5)  # prime: ~sqrt(T) and a shorter last one
    assert segments(7, True) == (3, 2, 1)
    assert segments(9, 5) == (3, 3, 0)  # a divisor within a factor 2 of the length
    assert segments(9, 7) == (7, 1, 2)
    assert segments(9, 20) == (9, 1, 0)
    with pytest.raises(ValueError, match=r"`remat` must be a bool or a positive int"):
        jrnn.GRU(U, F, remat=0, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("remat", [False, 3])
@pytest.mark.parametrize("name", ["lstm", "stack"])
def test_hoisted_and_per_step_projection_agree(name, remat):
    """Both input-projection schedules (and both with dropout masks) give the same numbers."""

    def make(hoist):
        rngs = nnx.Rngs(0)
        kw = {
            "return_sequences": True,
            "return_state": True,
            "remat": remat,
            "hoist_input_projection": hoist,
        }
        if name == "lstm":
            return jrnn.LSTM(U, F, dropout=0.3, recurrent_dropout=0.2, rngs=rngs, **kw)
        return jrnn.RNN(
            [jrnn.LSTMCell(4, F, dropout=0.3, rngs=rngs), jrnn.GRUCell(U, 4, rngs=rngs)], **kw
        )

    x = x_in(time=9)
    mask = jnp.asarray(np.random.default_rng(2).random((B, 9)) > 0.3)
    key = jax.random.key(3)
    for training in (False, True):
        a = make(True)(x, mask=mask, training=training, rngs=key)
        e = make(False)(x, mask=mask, training=training, rngs=key)
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(e)):
            assert_close(u, v)


def test_numeric_masks_count_as_keras_casts_them():
    """Keras casts a numeric mask to bool: 0/1 floats and ints mask as booleans do."""
    layer = jrnn.GRU(U, F, return_sequences=True, rngs=nnx.Rngs(0))
    mask = np.random.default_rng(3).random((B, T)) > 0.4
    want = layer(x_in(), mask=jnp.asarray(mask))
    for dtype in (jnp.float32, jnp.int8):
        assert_close(layer(x_in(), mask=jnp.asarray(mask, dtype)), want)


def test_a_stateful_first_call_with_initial_state_keeps_its_final_state():
    """The states did not exist yet, so the first call's final state was dropped and the
    next call started from zeros (0.26 off against one whole call)."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 6, 3)), jnp.float32)
    h0, c0 = jnp.full((2, 4), 0.3), jnp.full((2, 4), -0.2)
    stateful = jrnn.LSTM(4, 3, stateful=True, return_sequences=True, rngs=nnx.Rngs(0))
    whole = jrnn.LSTM(4, 3, return_sequences=True, rngs=nnx.Rngs(0))
    chunks = [stateful(x[:, :3], initial_state=[h0, c0]), stateful(x[:, 3:])]
    np.testing.assert_array_equal(
        np.asarray(jnp.concatenate(chunks, 1)), np.asarray(whole(x, initial_state=[h0, c0]))
    )


@pytest.mark.parametrize("native", [None, False])
@pytest.mark.parametrize("cls", [jrnn.LSTM, jrnn.GRU, jrnn.SimpleRNN])
def test_stateful_states_carry_no_gradient_between_calls(cls, native):
    """Keras assigns a stateful layer's final states to variables, which cuts the tape: in
    a loss over two calls, the second call's gradient does not reach the first call."""
    rng = np.random.default_rng(0)
    x1, x2 = (jnp.asarray(rng.standard_normal((8, 5, 3)), jnp.float32) for _ in range(2))
    layer = cls(4, 3, stateful=True, native=native, rngs=nnx.Rngs(0))
    randomize(layer, 1)
    layer(x1)  # creates the states

    def loss(model, x1):
        model(x1)
        return jnp.sum(model(x2))

    assert float(jnp.abs(nnx.grad(loss, argnums=1)(layer, x1)).max()) == 0.0
