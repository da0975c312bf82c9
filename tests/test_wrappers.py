"""Bidirectional and TimeDistributed against Keras 3 (and Keras 2 where jrnn follows it).

Keras side: Keras 3.15.1 on TensorFlow, in-process, with the same random asymmetric
weights (Keras' Bidirectional weights are the forward layer's then the backward layer's,
each cell's kernel, recurrent_kernel, bias). Sizes are distinct (batch 3, time 7,
features 3, units 5 / 4). jrnn calls that are compared are grouped into one ``jax.jit``
each, so that the file stays fast. Tolerances: tests/helpers.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

import jrnn
from tests.helpers import assert_close, cell_weights, randomize
from tests.keras_twins import MASKS, flatten, random_inputs

B, T, F = 3, 7, 3
MERGE_MODES = ["concat", "sum", "mul", "ave", None]


# Parameters are overwritten with random values: zeros initialisers only save the
# orthogonal QR (jrnn) and keep the file fast.
Z = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}


def _jrnn_stack(rngs, **kw):
    cells = [jrnn.LSTMCell(4, F, rngs=rngs, **Z), jrnn.GRUCell(5, 4, rngs=rngs, **Z)]
    return jrnn.RNN(cells, **kw)


def _keras_stack(**kw):
    cells = [
        keras.layers.LSTMCell(4, **Z),
        keras.layers.GRUCell(5, **Z),
    ]
    return keras.layers.RNN(cells, **kw)


# kind -> (jrnn layer builder, Keras layer builder)
KINDS = {
    "lstm": (
        lambda rngs, **kw: jrnn.LSTM(5, F, rngs=rngs, **Z, **kw),
        lambda **kw: keras.layers.LSTM(5, **Z, **kw),
    ),
    "gru": (
        lambda rngs, **kw: jrnn.GRU(4, F, rngs=rngs, **Z, **kw),
        lambda **kw: keras.layers.GRU(4, **Z, **kw),
    ),
    "simple": (
        lambda rngs, **kw: jrnn.SimpleRNN(4, F, rngs=rngs, **Z, **kw),
        lambda **kw: keras.layers.SimpleRNN(4, **Z, **kw),
    ),
    "stack": (_jrnn_stack, _keras_stack),
}


def _cells(layer):
    cell = layer.cell
    return list(cell.cells) if isinstance(cell, jrnn.StackedRNNCells) else [cell]


def _keras_order(bi):
    """A jrnn Bidirectional's weights in Keras' get_weights() order."""
    return [
        w
        for direction in (bi.forward_layer, bi.backward_layer)
        for cell in _cells(direction)
        for w in cell_weights(cell)
    ]


def _pair(kind, merge_mode="concat", seed=0, **flags):
    make_jrnn, make_keras = KINDS[kind]
    rngs = nnx.Rngs(seed)
    bi = jrnn.Bidirectional(make_jrnn(rngs, **flags), merge_mode, rngs=rngs)
    randomize(bi, seed)
    kbi = keras.layers.Bidirectional(make_keras(**flags), merge_mode=merge_mode)
    kbi.build((B, T, F))
    kbi.set_weights(_keras_order(bi))
    return bi, kbi


def _keras_states(layer, seed):
    """Random initial states for one direction, in Keras' list form (nested per cell)."""
    rng = np.random.default_rng(seed)
    carry = layer.cell.initialize_carry(B)

    def rand(z):
        return (rng.standard_normal(z.shape) * 0.5).astype(np.float32)

    if isinstance(layer.cell, jrnn.StackedRNNCells):
        return [[rand(z) for z in cell_carry] for cell_carry in carry]
    return [rand(z) for z in carry]


def _keras_call(klayer, x, mask=None, initial_state=None, **kwargs):
    if mask is not None:
        kwargs["mask"] = tf.constant(mask)
    if initial_state is not None:
        kwargs["initial_state"] = tf.nest.map_structure(tf.constant, initial_state)
    return klayer(tf.constant(x), **kwargs)


def _jit_calls(calls):
    """Run ``[(module, args, kwargs), ...]`` in one jax.jit (one compilation)."""
    return jax.jit(lambda: [m(*a, **kw) for m, a, kw in calls])()


def _assert_all_close(ours, theirs, what):
    ours, theirs = flatten(ours), flatten(theirs)
    assert len(ours) == len(theirs), f"{what}: {len(ours)} outputs != Keras' {len(theirs)}"
    for k, (a, e) in enumerate(zip(ours, theirs)):
        assert_close(a, e, time=T, what=f"{what} output[{k}]")


# (return_sequences, return_state, mask, initial_state, zero_output_for_mask given)
FLAGS = [
    (True, False, "gaps", False, False),
    # the given layer asks for zero_output_for_mask=True; Bidirectional forces it to
    # return_sequences (False), which changes the last output of rows whose last step
    # is masked.
    (False, True, "gaps", True, True),
    (True, True, "right_padded", True, False),
    (False, False, "left_padded", True, False),
]


@pytest.mark.parametrize("k", range(len(KINDS)), ids=list(KINDS))
def test_bidirectional_matches_keras_all_merge_modes(k):
    """LSTM, GRU, SimpleRNN and a stacked RNN (LSTMCell + GRUCell), each with all five
    merge modes; over the four kinds every merge mode meets every FLAGS row once
    (return_sequences / return_state, masks with gaps or padding, initial_state)."""
    kind = list(KINDS)[k]
    x = random_inputs(B, T, F)
    calls, expected, names = [], [], []
    for m, merge_mode in enumerate(MERGE_MODES):
        row = FLAGS[(k + m) % len(FLAGS)]
        seqs, state, mask_name, use_init, zofm = row
        flags = {"return_sequences": seqs, "return_state": state, "zero_output_for_mask": zofm}
        bi, kbi = _pair(kind, merge_mode, seed=m, **flags)
        assert bi.forward_layer.zero_output_for_mask is seqs
        assert bi.backward_layer.zero_output_for_mask is seqs
        mask = MASKS[mask_name]
        init = None
        if use_init:
            init = _keras_states(bi.forward_layer, m) + _keras_states(bi.backward_layer, m + 7)
        calls.append((bi, (x,), {"mask": mask, "initial_state": init}))
        expected.append(_keras_call(kbi, x, mask, init))
        names.append(f"{kind} merge_mode={merge_mode} flags={row}")
    for ours, theirs, what in zip(_jit_calls(calls), expected, names):
        _assert_all_close(ours, theirs, what)


def _grads_vs_tape(bi, kbi, x, mask, init, seed=3):
    """Gradients of sum(outputs * cotangents) w.r.t. inputs, initial states and weights."""
    outs = jax.tree_util.tree_leaves(jax.eval_shape(lambda: bi(x, mask=mask, initial_state=init)))
    rng = np.random.default_rng(seed)
    cots = [rng.standard_normal(o.shape).astype(np.float32) for o in outs]
    xt = tf.constant(x)
    init_t = [tf.constant(s) for s in jax.tree_util.tree_leaves(init)]
    with tf.GradientTape() as tape:
        tape.watch([xt, *init_t])
        k_init = None
        if init is not None:
            k_init = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(init), init_t)
        kout = kbi(xt, mask=tf.constant(mask), initial_state=k_init)
        loss = sum(tf.reduce_sum(o * c) for o, c in zip(tf.nest.flatten(kout), cots))
    expected = tape.gradient(loss, [xt, *init_t, *kbi.trainable_weights])

    graphdef, params, rest = nnx.split(bi, nnx.Param, ...)

    def loss_fn(params, x, init):
        out = nnx.merge(graphdef, params, rest)(x, mask=mask, initial_state=init)
        return sum(jnp.sum(o * c) for o, c in zip(jax.tree_util.tree_leaves(out), cots))

    g_params, g_x, g_init = jax.jit(jax.grad(loss_fn, argnums=(0, 1, 2)))(
        params, jnp.asarray(x), init
    )
    g = nnx.merge(graphdef, g_params, rest)
    ours = [g_x, *jax.tree_util.tree_leaves(g_init), *_keras_order(g)]
    assert len(ours) == len(expected)
    for k, (a, e) in enumerate(zip(ours, expected)):
        assert_close(a, np.asarray(e), time=T, what=f"gradient[{k}]")


@pytest.mark.parametrize("kind,merge_mode,seqs", [("lstm", "concat", True), ("gru", "ave", False)])
def test_bidirectional_gradients_match_tape(kind, merge_mode, seqs):
    bi, kbi = _pair(kind, merge_mode, seed=5, return_sequences=seqs, return_state=True)
    init = _keras_states(bi.forward_layer, 1) + _keras_states(bi.backward_layer, 2)
    _grads_vs_tape(bi, kbi, random_inputs(B, T, F), MASKS["gaps"], init)


def _custom_pair(merge_mode, **flags):
    rngs = nnx.Rngs(0)
    fwd = _jrnn_stack(rngs, **flags)  # LSTMCell(4) + GRUCell(5)
    bwd = jrnn.GRU(4, F, go_backwards=True, reset_after=False, rngs=rngs, **Z, **flags)
    bi = jrnn.Bidirectional(fwd, merge_mode, backward_layer=bwd)
    randomize(bi, 4)
    kbi = keras.layers.Bidirectional(
        _keras_stack(**flags),
        merge_mode=merge_mode,
        backward_layer=keras.layers.GRU(4, go_backwards=True, reset_after=False, **Z, **flags),
    )
    kbi.build((B, T, F))
    kbi.set_weights(_keras_order(bi))
    return bi, kbi, fwd, bwd


def test_custom_backward_layer_other_cell_and_units():
    """Keras allows a backward layer of another class and size: here a stacked forward
    RNN (LSTMCell(4) + GRUCell(5)) and a GRU(4, reset_after=False) backward layer.
    Outputs and states ((h1, c1), (h2,), h_b), and gradients with respect to inputs and
    every weight of both directions."""
    flags = {"return_sequences": True, "return_state": True}
    x, mask = random_inputs(B, T, F), MASKS["gaps"]
    bi, kbi, fwd, bwd = _custom_pair("concat", **flags)
    assert bi.forward_layer is fwd and bi.backward_layer is bwd  # no rngs: used as given
    # initial_state is split at the forward layer's state count (3 + 1 here; Keras' split
    # in halves cannot express this): equal to running the two layers yourself.
    init = _keras_states(fwd, 1) + _keras_states(bwd, 2)
    ours, got, (y_f, *s_f), (y_b, *s_b) = _jit_calls(
        [
            (bi, (x,), {"mask": mask}),
            (bi, (x,), {"mask": mask, "initial_state": init}),
            (fwd, (x,), {"mask": mask, "initial_state": init[:2]}),
            (bwd, (x,), {"mask": mask, "initial_state": init[2:]}),
        ]
    )
    _assert_all_close(ours, _keras_call(kbi, x, mask), "custom backward")
    y, (_, c1), (h2,), h_b = ours
    assert y.shape == (B, T, 9) and c1.shape == (B, 4) and h2.shape == (B, 5)
    assert h_b.shape == (B, 4)
    want = (jnp.concatenate([y_f, jnp.flip(y_b, 1)], -1), *s_f, *s_b)
    for a, e in zip(flatten(got), flatten(want)):
        assert_close(a, e)
    _grads_vs_tape(bi, kbi, x, mask, None)


def test_stateful_two_calls_and_reset_match_keras():
    rngs = nnx.Rngs(0)
    flags = {"return_sequences": True, "stateful": True}
    bi = jrnn.Bidirectional(
        jrnn.LSTM(5, F, batch_size=B, rngs=rngs, **Z, **flags), "sum", rngs=rngs
    )
    randomize(bi, 6)
    kbi = keras.layers.Bidirectional(keras.layers.LSTM(5, **Z, **flags), merge_mode="sum")
    kbi.build((B, T, F))
    kbi.set_weights(_keras_order(bi))
    call = nnx.jit(lambda layer, x, init: layer(x, initial_state=init))  # compiled once
    x1, x2 = random_inputs(B, T, F, 1), random_inputs(B, T, F, 2)
    assert len(bi.states) == 4 and not any(np.any(np.asarray(s)) for s in bi.states)
    for k, x in enumerate((x1, x2)):
        assert_close(call(bi, x, None), _keras_call(kbi, x).numpy(), time=T, what=f"call {k}")
        _assert_all_close(bi.states, kbi.states, f"states (h_f, c_f, h_b, c_b) after call {k}")
    bi.reset_state()
    kbi.reset_state()
    assert not any(np.any(np.asarray(s)) for s in bi.states)
    assert_close(call(bi, x2, None), _keras_call(kbi, x2).numpy(), time=T, what="after reset")
    # reset_state(states=...) (Keras 2's form) splits like initial_state.
    init = _keras_states(bi.forward_layer, 3) + _keras_states(bi.backward_layer, 4)
    bi.reset_state(init)
    ref = jrnn.Bidirectional(
        bi.forward_layer.rebuild(rngs=rngs, stateful=False),
        "sum",
        backward_layer=bi.backward_layer.rebuild(rngs=rngs, stateful=False),
    )
    nnx.update(ref, nnx.state(bi, nnx.Param))
    assert_close(call(bi, x1, None), call(ref, x1, init), time=T, what="reset to states")


def test_construction_rules_and_names():
    rngs = nnx.Rngs(0)
    lstm = jrnn.LSTM(5, F, return_sequences=True, recurrent_initializer="zeros", rngs=rngs)
    kernel = np.asarray(lstm.cell.kernel[...])
    # With rngs (Keras): fresh forward and backward layers from lstm's config.
    bi = jrnn.Bidirectional(lstm, rngs=rngs)
    assert bi.forward_layer is not lstm and bi.backward_layer is not lstm
    assert (bi.forward_layer.name, bi.backward_layer.name) == ("forward_lstm", "backward_lstm")
    assert not bi.forward_layer.go_backwards and bi.backward_layer.go_backwards
    assert not np.allclose(np.asarray(bi.forward_layer.cell.kernel[...]), kernel)
    assert lstm.zero_output_for_mask is False  # the given layer is left untouched
    assert bi.forward_layer.zero_output_for_mask and bi.backward_layer.zero_output_for_mask
    assert (bi.return_sequences, bi.return_state, bi.stateful, bi.units) == (True, False, False, 5)
    names = [
        (jrnn.SimpleRNN(4, F, rngs=rngs, **Z), "forward_simple_rnn", "backward_simple_rnn"),
        (jrnn.GRU(4, F, name="forward_enc", rngs=rngs, **Z), "forward_enc", "backward_forward_enc"),
        (_jrnn_stack(rngs), "forward_rnn", "backward_rnn"),
    ]
    for layer, forward_name, backward_name in names:
        bi = jrnn.Bidirectional(layer, rngs=rngs)
        assert (bi.forward_layer.name, bi.backward_layer.name) == (forward_name, backward_name)
    # Without rngs: `layer` itself is the forward layer (weights kept, shared).
    backward = lstm.rebuild(rngs=rngs, go_backwards=True)
    bi = jrnn.Bidirectional(lstm, backward_layer=backward)
    assert bi.forward_layer is lstm and bi.backward_layer is backward
    assert lstm.zero_output_for_mask is True  # forced on the layer Bidirectional runs
    np.testing.assert_array_equal(np.asarray(bi.forward_layer.cell.kernel[...]), kernel)


def test_go_backwards_layer_is_flipped_as_keras2():
    """A go_backwards=True layer: its twin gets go_backwards=False (Keras 2 flips; Keras 3
    sets True and refuses the pair). Checked against tf_keras with the same weights."""
    import tf_keras

    rngs = nnx.Rngs(0)
    flags = {"return_sequences": True, "go_backwards": True}
    bi = jrnn.Bidirectional(jrnn.GRU(4, F, rngs=rngs, **Z, **flags), "concat", rngs=rngs)
    assert bi.forward_layer.go_backwards and not bi.backward_layer.go_backwards
    randomize(bi, 7)
    kbi = tf_keras.layers.Bidirectional(tf_keras.layers.GRU(4, **flags))
    kbi.build((B, T, F))
    kbi.set_weights(_keras_order(bi))
    x, mask = random_inputs(B, T, F), MASKS["gaps"]
    (ours,) = _jit_calls([(bi, (x,), {"mask": mask})])
    assert_close(ours, _keras_call(kbi, x, mask).numpy(), time=T)
    with pytest.raises(ValueError, match="different `go_backwards`"):
        keras.layers.Bidirectional(keras.layers.GRU(4, **flags))  # Keras 3, for the record


def test_config_round_trip_and_rebuild():
    rngs = nnx.Rngs(0)
    bi = jrnn.Bidirectional(
        jrnn.LSTM(5, F, return_sequences=True, rngs=rngs, **Z), "ave", name="bi", rngs=rngs
    )
    config = bi.get_config()
    assert config["merge_mode"] == "ave" and config["name"] == "bi"
    assert config["layer"]["class_name"] == "LSTM" and config["backward_layer"] is None
    twin = jrnn.Bidirectional.from_config(config, rngs=nnx.Rngs(1))
    assert twin.get_config() == config and twin.name == "bi"
    assert twin.backward_layer.go_backwards and twin.forward_layer.name == "forward_lstm"
    nnx.update(twin, nnx.state(bi, nnx.Param))
    x = random_inputs(B, T, F)
    summed = bi.rebuild(rngs=nnx.Rngs(2), merge_mode="sum")
    nnx.update(summed, nnx.state(bi, nnx.Param))
    a, b, c = _jit_calls([(bi, (x,), {}), (twin, (x,), {}), (summed, (x,), {})])
    assert_close(a, b)
    assert_close(c, 2 * a)
    # a custom backward layer is serialised too
    custom = jrnn.Bidirectional(
        jrnn.LSTM(5, F, rngs=rngs, **Z),
        backward_layer=jrnn.GRU(4, F, go_backwards=True, rngs=rngs, **Z),
    )
    again = jrnn.Bidirectional.from_config(custom.get_config(), rngs=nnx.Rngs(3))
    assert isinstance(again.backward_layer, jrnn.GRU) and again.backward_layer.units == 4


class _ConstantCell(jrnn.RNNCellBase):
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
    """`constants` reach both directions, as in Keras 2 (tf_keras) Bidirectional."""
    import tf_keras

    class KerasCell(tf_keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = self.state_size = units

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

    rngs = nnx.Rngs(0)
    fwd = jrnn.RNN(_ConstantCell(4, F, 2, rngs=rngs), return_sequences=True)
    bwd = jrnn.RNN(_ConstantCell(4, F, 2, rngs=rngs), return_sequences=True, go_backwards=True)
    bi = jrnn.Bidirectional(fwd, "concat", bwd)
    x, mask = random_inputs(B, T, F), MASKS["gaps"]
    const = np.random.default_rng(3).standard_normal((B, 2)).astype(np.float32)
    kbi = tf_keras.layers.Bidirectional(
        tf_keras.layers.RNN(KerasCell(4), return_sequences=True),
        backward_layer=tf_keras.layers.RNN(KerasCell(4), return_sequences=True, go_backwards=True),
    )
    kbi(tf.constant(x), constants=tf.constant(const))
    kbi.set_weights([np.asarray(v) for d in (fwd, bwd) for v in d.cell.params().values()])
    expected = kbi(tf.constant(x), constants=tf.constant(const), mask=tf.constant(mask))
    (ours,) = _jit_calls([(bi, (x,), {"constants": [const], "mask": mask})])
    assert_close(ours, expected.numpy(), time=T)
    with pytest.raises(ValueError, match=r"LSTM 'forward_lstm': `constants` were given"):
        _pair("lstm")[0](x, constants=[const])


def test_training_and_rngs_pass_through():
    """Dropout: training and rngs reach both directions; a raw key is split in two (the
    directions never share a mask); an nnx.Rngs gives each direction its own key."""
    rngs = nnx.Rngs(0)
    flags = {"return_sequences": True, "dropout": 0.4, "recurrent_dropout": 0.3}
    bi = jrnn.Bidirectional(jrnn.SimpleRNN(4, F, rngs=rngs, **Z, **flags), rngs=rngs)
    randomize(bi, 8)
    fwd, bwd = bi.forward_layer, bi.backward_layer
    x = random_inputs(B, T, F)
    key = jax.random.key(5)
    k_f, k_b = jax.random.split(key)
    stream = nnx.Rngs(dropout=1)
    r_f, r_b = stream.dropout(), stream.dropout()

    def merged(k_f, k_b):  # training=True reaches both: their masks are in the reference
        y_b = bwd(x, training=True, rngs=k_b)
        return jnp.concatenate([fwd(x, training=True, rngs=k_f), jnp.flip(y_b, 1)], -1)

    @jax.jit
    def run():
        return [
            (bi(x, training=True, rngs=key), merged(k_f, k_b)),
            (bi(x, training=True, rngs=nnx.Rngs(dropout=1)), merged(r_f, r_b)),
        ]

    for got, want in run():
        assert_close(got, want)


def test_mixed_precision_output_dtype_as_keras():
    """Keras casts both outputs to the wrapper's compute dtype (float32 by default, so a
    mixed_bfloat16 layer gives float32 outputs); states keep the layer's dtype."""
    flags = {"return_sequences": True, "return_state": True, "dtype": "mixed_bfloat16"}
    bi, kbi = _pair("simple", "sum", **flags)
    x = random_inputs(B, T, F)
    rngs = nnx.Rngs(0)
    layer = jrnn.SimpleRNN(4, F, dtype="mixed_bfloat16", rngs=rngs, **Z)
    bf16 = jrnn.Bidirectional(layer, dtype="mixed_bfloat16", rngs=rngs)
    ours, bf16_out = _jit_calls([(bi, (x,), {}), (bf16, (x,), {})])
    theirs = _keras_call(kbi, x)
    assert [str(o.dtype) for o in ours] == [o.dtype.name for o in theirs]
    assert str(ours[0].dtype) == "float32" and str(ours[1].dtype) == "bfloat16"
    for a, e in zip(flatten(ours), flatten(theirs)):
        assert_close(a, e, dtype="bfloat16", time=T)
    assert bf16_out.dtype == jnp.bfloat16


def test_bidirectional_errors():
    rngs = nnx.Rngs(0)

    def lstm(**kw):
        return jrnn.LSTM(4, F, rngs=rngs, **Z, **kw)

    with pytest.raises(ValueError, match=r"Invalid merge mode. Received: `merge_mode`='max'"):
        jrnn.Bidirectional(lstm(), "max", rngs=rngs)
    with pytest.raises(ValueError, match=r"`layer` must be a jrnn recurrent layer.*Linear"):
        jrnn.Bidirectional(nnx.Linear(2, 2, rngs=rngs), rngs=rngs)
    with pytest.raises(ValueError, match=r"`backward_layer` must be a jrnn recurrent layer"):
        jrnn.Bidirectional(lstm(), backward_layer=nnx.Linear(2, 2, rngs=rngs))
    with pytest.raises(ValueError, match=r"expected `rngs=nnx.Rngs\(...\)`.*received neither"):
        jrnn.Bidirectional(lstm())
    with pytest.raises(
        ValueError,
        match=r"should have different `go_backwards` value. Received: forward_layer.go_backwards "
        r"False, backward_layer.go_backwards=False",
    ):
        jrnn.Bidirectional(lstm(), backward_layer=lstm())
    for attribute in ("return_sequences", "return_state", "stateful"):
        with pytest.raises(
            ValueError,
            match=rf'same value for attribute "{attribute}", got "False" for forward layer and '
            r'"True" for backward layer',
        ):
            jrnn.Bidirectional(lstm(), backward_layer=lstm(go_backwards=True, **{attribute: True}))
    with pytest.raises(AttributeError, match=r"Layer must be stateful.*stateful=False"):
        jrnn.Bidirectional(lstm(), rngs=rngs).reset_state()
    bi = jrnn.Bidirectional(lstm(return_sequences=True), "sum", rngs=rngs)
    x = random_inputs(B, T, F)
    with pytest.raises(ValueError, match=r"`initial_state` must hold the forward layer's 2 state"):
        bi(x, initial_state=[np.zeros((B, 4), np.float32)] * 3)
    wrong = [np.zeros((B, 4), np.float32)] * 3 + [np.zeros((B, 2), np.float32)]
    with pytest.raises(ValueError, match=r"LSTM 'backward_lstm': `initial_state\[1\]` must have"):
        jax.eval_shape(lambda: bi(x, initial_state=wrong))  # traced only, not compiled
    mixed = jrnn.Bidirectional(
        lstm(return_sequences=True),
        "sum",
        backward_layer=jrnn.GRU(3, F, return_sequences=True, go_backwards=True, rngs=rngs, **Z),
    )
    with pytest.raises(ValueError, match=r"merge_mode='sum' needs forward and backward outputs"):
        jax.eval_shape(lambda: mixed(x))


# ---------------------------------------------------------------- TimeDistributed
def _linear_pair(module):
    randomize(module, 2)
    kd = keras.layers.TimeDistributed(keras.layers.Dense(6))
    kd.build((B, T, F))
    kd.set_weights([np.asarray(module.kernel[...]), np.asarray(module.bias[...])])
    return jrnn.TimeDistributed(module), kd


def test_time_distributed_dense_matches_keras_with_gradients():
    """nnx.Linear and jrnn.Dense with Keras Dense weights; a (batch, time) mask is ignored
    by modules without a `mask` argument, as Keras does; gradients vs tf.GradientTape."""
    rngs = nnx.Rngs(0)
    x, mask = random_inputs(B, T, F), MASKS["gaps"]
    for module in (nnx.Linear(F, 6, rngs=rngs), jrnn.Dense(6, F, rngs=rngs)):
        td, kd = _linear_pair(module)
        assert td.layer is module
        assert_close(td(x, mask=mask), _keras_call(kd, x, mask).numpy())
    xt = tf.constant(x)
    cot = np.random.default_rng(3).standard_normal((B, T, 6)).astype(np.float32)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(kd(xt) * cot)
    expected = tape.gradient(loss, [xt, *kd.trainable_weights])

    def loss_fn(td, x):
        return jnp.sum(td(x) * cot)

    g_td, g_x = nnx.grad(loss_fn, argnums=(0, 1))(td, jnp.asarray(x))
    for a, e in zip([g_x, g_td.layer.kernel[...], g_td.layer.bias[...]], expected):
        assert_close(a, np.asarray(e))


@pytest.mark.parametrize("return_sequences", [True, False])
def test_time_distributed_lstm_on_4d_inputs_with_masks_and_gradients(return_sequences):
    """An LSTM over the inner time axis of (batch, time, inner_time, features), a
    (batch, time, inner_time) mask passed on as Keras' mask[:, t]; gradients w.r.t. the
    inputs and the weights vs tf.GradientTape."""
    rngs = nnx.Rngs(0)
    inner = jrnn.LSTM(4, F, return_sequences=return_sequences, rngs=rngs, **Z)
    randomize(inner, 3)
    td = jrnn.TimeDistributed(inner)
    kt = keras.layers.TimeDistributed(
        keras.layers.LSTM(4, return_sequences=return_sequences, recurrent_initializer="zeros")
    )
    x4 = np.random.default_rng(5).standard_normal((B, 4, 5, F)).astype(np.float32)
    kt.build(x4.shape)
    kt.set_weights(cell_weights(inner.cell))
    mask = np.random.default_rng(6).random((B, 4, 5)) > 0.3
    mask[0, 1] = False  # one fully masked inner sequence
    out_shape = (B, 4, 5, 4) if return_sequences else (B, 4, 4)
    cot = np.random.default_rng(7).standard_normal(out_shape).astype(np.float32)
    xt = tf.constant(x4)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        k_out = kt(xt, mask=tf.constant(mask))
        loss = tf.reduce_sum(k_out * cot)
    expected = tape.gradient(loss, [xt, *kt.trainable_weights])

    def loss_fn(td, x):
        y = td(x, mask=mask)
        return jnp.sum(y * cot), y

    (_, y), (g_td, g_x) = nnx.jit(nnx.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))(
        td, jnp.asarray(x4)
    )
    assert y.shape == out_shape
    assert_close(y, k_out.numpy(), time=5)
    for a, e in zip([g_x, *cell_weights(g_td.layer.cell)], expected):
        assert_close(a, np.asarray(e), time=5)


def test_time_distributed_pass_through_and_errors():
    rngs = nnx.Rngs(0)
    inner = jrnn.GRU(4, F, return_state=True, dropout=0.5, rngs=rngs, **Z)
    randomize(inner, 9)
    td = jrnn.TimeDistributed(inner)
    x4 = np.random.default_rng(5).standard_normal((2, 3, 5, F)).astype(np.float32)
    key = jax.random.key(1)
    # training and rngs reach the inner module: one call over (batch * time, ...)
    (y, h), (y_ref, h_ref), (y_eval, _) = _jit_calls(
        [
            (td, (x4,), {"training": True, "rngs": key}),
            (inner, (x4.reshape(6, 5, F),), {"training": True, "rngs": key}),
            (td, (x4,), {}),
        ]
    )
    assert_close(y, y_ref.reshape(2, 3, 4))
    assert_close(h, h_ref.reshape(2, 3, 4))
    assert not np.allclose(np.asarray(y), np.asarray(y_eval))
    # Keras passes a (batch, time) mask on as mask[:, t]; an LSTM over 4-D inputs needs
    # (batch, time, inner_time), so the inner layer refuses it (Keras fails too).
    with pytest.raises(ValueError, match=r"GRU: `mask` must have shape \(batch, time\)"):
        jax.eval_shape(lambda: td(x4, mask=np.ones((2, 3), bool)))
    with pytest.raises(ValueError, match=r"at least 3 dimensions \(batch, time, ...\); received"):
        td(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"`mask` must be at least 2D.*received shape \(2,\)"):
        td(x4, mask=np.ones((2,), bool))
    with pytest.raises(ValueError, match=r"TimeDistributed: `inputs` must hold real numbers"):
        td(np.asarray(x4).astype(np.complex64))
    with pytest.raises(
        ValueError, match=r"`mask` must start with \(batch, time\) = \(2, 3\).*\(2, 4, 5\)"
    ):
        td(x4, mask=np.ones((2, 4, 5), bool))
    with pytest.raises(ValueError, match=r"`layer` must be a Flax NNX module.*received function"):
        jrnn.TimeDistributed(lambda x: x)
    with pytest.raises(ValueError, match=r"`layer` must not be stateful"):
        jrnn.TimeDistributed(jrnn.LSTM(4, F, stateful=True, rngs=rngs, **Z))
    # Keras' argument name, and the former one.
    dense = jrnn.Dense(2, F, rngs=rngs)
    assert jrnn.TimeDistributed(layer=dense).layer is dense
    assert jrnn.TimeDistributed(module=dense).layer is dense
    with pytest.raises(TypeError, match=r"as `layer` .* or `module` .*received both"):
        jrnn.TimeDistributed(dense, module=dense)
    config = jrnn.TimeDistributed(jrnn.LSTM(4, F, rngs=rngs, **Z), name="td").get_config()
    rebuilt = jrnn.TimeDistributed.from_config(config, rngs=nnx.Rngs(1))
    assert isinstance(rebuilt.layer, jrnn.LSTM) and rebuilt.name == "td"


def _scramble(kmodel):
    """Random asymmetric weights (scale 0.5) into a Keras model."""
    kmodel.set_weights(
        [
            np.random.default_rng(k).standard_normal(w.shape) * 0.5
            for k, w in enumerate(kmodel.get_weights())
        ]
    )


def test_time_distributed_batch_normalization_trains_per_timestep_as_keras3():
    """Keras 3 calls the module once per timestep: in training each timestep has its own
    batch moments and updates the moving ones in turn (a masked step too); `keras2=True`
    is tf.keras' reshape path, one call with moments pooled over time."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 4, 2)) * [1.0, 5.0] + [0.0, 3.0]).astype(np.float32)
    x[:, 2] += 10.0  # the timesteps' moments differ
    mask = np.array([[1, 1, 0, 1], [1, 0, 1, 1], [0, 1, 1, 1]], bool)  # 2 samples a step
    for m in (None, mask):
        ktd = keras.layers.TimeDistributed(keras.layers.BatchNormalization(momentum=0.8))
        want = np.asarray(ktd(x, training=True, mask=m))
        td = jrnn.TimeDistributed(jrnn.BatchNormalization(2, momentum=0.8))
        assert_close(nnx.jit(lambda td, x, m: td(x, training=True, mask=m))(td, x, m), want)
        for name in ("moving_mean", "moving_variance"):
            assert_close(getattr(td.layer, name)[...], getattr(ktd.layer, name).numpy())
    pooled = jrnn.TimeDistributed(jrnn.BatchNormalization(2, epsilon=0.0), keras2=True)
    flat = x.reshape(-1, 2)
    assert_close(pooled(x, training=True), ((flat - flat.mean(0)) / flat.std(0)).reshape(x.shape))


def test_time_distributed_activity_penalty_mask_and_lists_as_keras():
    """Keras 3 calls the module's `call`: its own activity regularizer adds nothing
    (tf.keras 2 counts it: keras2=True); tf.keras 2 also takes the module's output mask
    (a TimeDistributed Embedding masks the words of a TimeDistributed LSTM); a list of
    inputs is refused as Keras 3 refuses it."""
    import tf_keras

    import importers

    x = random_inputs(2, 3, 4)
    for keras_lib, expected in ((keras, 0.0), (tf_keras, None)):
        inp = keras_lib.Input((3, 4))
        dense = keras_lib.layers.Dense(3, activity_regularizer="l2")
        kmodel = keras_lib.Model(inp, keras_lib.layers.TimeDistributed(dense)(inp))
        kmodel(x)
        model = importers.load(kmodel)
        model(x)
        want = float(sum(kmodel.losses)) if expected is None else expected
        assert (want > 0.0) == (expected is None)  # tf.keras counts it, Keras 3 does not
        assert float(jrnn.regularization_loss(model)) == pytest.approx(want, rel=1e-5)
    ids = np.array(
        [[[1, 2, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0]], [[4, 5, 6, 7], [0, 0, 0, 0], [8, 9, 0, 0]]],
        np.int32,
    )  # (documents, sentences, words)
    inp = tf_keras.Input((3, 4), dtype="int32")
    words = tf_keras.layers.TimeDistributed(tf_keras.layers.Embedding(20, 4, mask_zero=True))(inp)
    sentences = tf_keras.layers.TimeDistributed(tf_keras.layers.LSTM(3))(words)
    kmodel = tf_keras.Model(inp, tf_keras.layers.LSTM(2, return_sequences=True)(sentences))
    _scramble(kmodel)
    assert_close(importers.load(kmodel)(ids), kmodel(ids).numpy())
    td = jrnn.TimeDistributed(jrnn.Dense(3, 4, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"`inputs` must be one array .* received a list of 2"):
        td([x, x])


def test_keras2_bidirectional_without_merge_masks_both_outputs():
    """Keras' Bidirectional.compute_mask gives merge_mode=None's (y, y_rev) both the input
    mask: a masked layer reading y_rev of an imported tf.keras 2 model stays masked."""
    import tf_keras

    import importers

    seq = np.array([[1, 2, 0, 3, 0], [4, 0, 0, 0, 0]], np.int32)
    inp = tf_keras.Input((None,), dtype="int32")
    e = tf_keras.layers.Embedding(20, 4, mask_zero=True)(inp)
    bi = tf_keras.layers.Bidirectional(
        tf_keras.layers.LSTM(3, return_sequences=True), merge_mode=None
    )
    _, y_rev = bi(e)
    kmodel = tf_keras.Model(inp, tf_keras.layers.SimpleRNN(2, return_sequences=True)(y_rev))
    _scramble(kmodel)
    assert_close(importers.load(kmodel)(seq), kmodel(seq).numpy())


def test_time_distributed_nested_penalties_and_per_step_keys_as_keras3():
    """Keras 3 calls the module once per timestep: a layer nested in it adds its activity
    penalty of every timestep (each over the batch), on the vectorised path and on the
    per-timestep one (a BatchNormalization in training); a raw key gives every timestep
    its own dropout mask."""
    x = random_inputs(2, 5, 4)
    for with_norm in (False, True):
        layers = [keras.Input((4,)), keras.layers.Dense(3, activity_regularizer="l2")]
        layers += [keras.layers.BatchNormalization()] if with_norm else []
        kinner = keras.Sequential(layers)
        inp = keras.Input((5, 4))
        kmodel = keras.Model(inp, keras.layers.TimeDistributed(kinner)(inp))
        kmodel(x, training=with_norm)

        class Inner(nnx.Module):
            def __init__(self, norm):
                self.dense = jrnn.Dense(3, 4, activity_regularizer="l2", rngs=nnx.Rngs(0))
                self.norm = jrnn.BatchNormalization(3) if norm else None

            def __call__(self, x, training=False):
                y = self.dense(x)
                return self.norm(y, training=training) if self.norm is not None else y

        inner = Inner(with_norm)
        inner.dense.kernel[...] = kinner.layers[0].kernel.numpy()
        inner.dense.bias[...] = kinner.layers[0].bias.numpy()
        jrnn.TimeDistributed(inner)(x, training=with_norm)
        want = float(sum(kmodel.losses))
        assert float(jrnn.regularization_loss(inner)) == pytest.approx(want, rel=1e-5)

    class Dropped(nnx.Module):
        def __init__(self):
            self.norm = jrnn.BatchNormalization(4)  # the per-timestep path

        def __call__(self, x, training=False, rngs=None):
            keep = jax.random.bernoulli(rngs, 0.5, x.shape)
            return self.norm(jnp.where(keep, x, 0.0), training=training)

    y = jrnn.TimeDistributed(Dropped())(jnp.ones((8, 6, 4)), training=True, rngs=jax.random.key(0))
    zeros = np.asarray(y == y[:, :1])  # where each step equals the first one
    assert not zeros.all()
