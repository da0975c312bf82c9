"""ConvLSTM1D/2D/3D against Keras 3 ``keras.layers.ConvLSTM1D/2D/3D``.

Keras side: Keras 3.15.1, TensorFlow backend, in-process, built with the same random
asymmetric weights (tests/helpers.py ``randomize``). Sizes are distinct (batch 2, time 4,
channels 3, filters 4, non-square frames and kernels) so that a transposed kernel, a
mis-ordered gate or a wrong padding side cannot pass. Tolerances: tests/helpers.py.

channels_first: TensorFlow's CPU Conv1D/Conv2D kernels refuse NCW/NCHW ("The Conv2D op
currently only supports the NHWC tensor format on the CPU"; tests/conftest.py turns
oneDNN off), so the Keras twin of a channels_first jrnn layer is the same Keras layer in
channels_last, fed the transposed inputs and initial states, its outputs transposed back
(all inside the GradientTape for gradients). Keras' ConvLSTM maths does not depend on
the layout; Keras runs channels_first NCDHW through XLA on CPU, so ConvLSTM3D is also
compared with a channels_first Keras layer directly (test_channels_first_3d_direct).
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

B, T, C, FILTERS = 2, 4, 3, 4
SPATIAL = {1: (7,), 2: (5, 6), 3: (4, 5, 3)}
KERNEL = {1: 3, 2: (3, 2), 3: (2, 3, 2)}
JRNN = {1: jrnn.ConvLSTM1D, 2: jrnn.ConvLSTM2D, 3: jrnn.ConvLSTM3D}
KERAS = {1: keras.layers.ConvLSTM1D, 2: keras.layers.ConvLSTM2D, 3: keras.layers.ConvLSTM3D}
# A gap in the middle, a masked first step (zeros out, initial state kept) and a masked
# last step.
GAPS = np.array([[1, 0, 1, 1], [0, 1, 1, 0]], bool)
# Where randomize() overwrites the weights anyway: zeros skip the random initialisers,
# whose eager sampling (and orthogonal's QR) compiles once per shape, ~1-2 s of CPU each.
_CHEAP_INIT = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}


def _frame(rank, data_format):
    if data_format == "channels_first":
        return (C, *SPATIAL[rank])
    return (*SPATIAL[rank], C)


def _pair(rank, data_format="channels_last", weights_seed=0, **kw):
    """A jrnn layer, a built Keras twin (channels_last, see the module docstring) with the
    same random weights, and inputs in the jrnn layer's layout."""
    layer = JRNN[rank](
        FILTERS,
        KERNEL[rank],
        in_channels=C,
        spatial_shape=SPATIAL[rank],
        data_format=data_format,
        rngs=nnx.Rngs(weights_seed),
        **_CHEAP_INIT,
        **kw,
    )
    randomize(layer, weights_seed, scale=0.3)
    keras_kw = dict(kw)
    keras_kw["unroll"] = keras_kw.get("unroll") is True
    # Weights are overwritten below; zeros skip Keras' orthogonal initialiser.
    klayer = KERAS[rank](FILTERS, KERNEL[rank], recurrent_initializer="zeros", **keras_kw)
    klayer.build((B, T, *_frame(rank, "channels_last")))
    klayer.set_weights(cell_weights(layer.cell))
    x = np.random.default_rng(weights_seed + 1).standard_normal((B, T, *_frame(rank, data_format)))
    return layer, klayer, x.astype(np.float32)


def _random_states(layer, seed=2):
    rng = np.random.default_rng(seed)
    shape = (B, *layer.cell.state_shapes[0])
    return [(rng.standard_normal(shape) * 0.5).astype(np.float32) for _ in range(2)]


def _channels_last(a, axis):
    """Move the channel ``axis`` of a TF tensor to the end."""
    perm = [d for d in range(a.shape.rank) if d != axis] + [axis]
    return tf.transpose(a, perm)


def _channels_first(a, axis):
    """Move the last (channel) axis of a TF tensor to ``axis``."""
    perm = list(range(a.shape.rank - 1))
    perm.insert(axis, a.shape.rank - 1)
    return tf.transpose(a, perm)


def _keras_forward(layer, klayer, x, mask=None, initial_state=None, training=False):
    """The Keras twin's returned tensors (TF, in jrnn ``layer``'s layout)."""
    first = layer.cell.data_format == "channels_first"
    x = tf.convert_to_tensor(x)
    if initial_state is not None:
        initial_state = [tf.convert_to_tensor(s) for s in initial_state]
    if first:
        x = _channels_last(x, 2)
        if initial_state is not None:
            initial_state = [_channels_last(s, 1) for s in initial_state]
    out = klayer(
        x,
        mask=None if mask is None else tf.constant(mask),
        initial_state=initial_state,
        training=training,
    )
    out = list(out) if isinstance(out, (list, tuple)) else [out]
    if first:
        seq = layer.return_sequences
        out = [_channels_first(o, 2 if k == 0 and seq else 1) for k, o in enumerate(out)]
    return out


def _keras_call(layer, klayer, x, **kwargs):
    return [np.asarray(o) for o in _keras_forward(layer, klayer, x, **kwargs)]


def _flat(out):
    return list(out) if isinstance(out, tuple) else [out]


# (rank, data_format, layer arguments, masks, initial_state)
CASES = {
    "1d_valid_seq": (1, "channels_last", {"padding": "valid", "return_sequences": True}, 2, 0),
    "1d_cf_same_stride2_back_state": (
        1,
        "channels_first",
        {"padding": "same", "strides": 2, "go_backwards": True, "return_state": True},
        1,
        1,
    ),
    "1d_dilation2_zero_output": (
        1,
        "channels_last",
        {"dilation_rate": 2, "return_sequences": True, "zero_output_for_mask": True},
        1,
        1,
    ),
    "2d_valid_seq_state": (
        2,
        "channels_last",
        {"padding": "valid", "return_sequences": True, "return_state": True},
        2,
        1,
    ),
    "2d_same_back_state": (
        2,
        "channels_last",
        {"padding": "same", "go_backwards": True, "return_state": True},
        1,
        0,
    ),
    "2d_same_stride2_seq": (
        2,
        "channels_last",
        {"padding": "same", "strides": 2, "return_sequences": True},
        1,
        0,
    ),
    "2d_valid_stride2_back_seq_state": (
        2,
        "channels_last",
        {"strides": (2, 1), "go_backwards": True, "return_sequences": True, "return_state": True},
        1,
        1,
    ),
    "2d_valid_dilation2_state": (
        2,
        "channels_last",
        {"dilation_rate": 2, "return_state": True},
        1,
        0,
    ),
    "2d_cf_valid_seq_state": (
        2,
        "channels_first",
        {"return_sequences": True, "return_state": True},
        1,
        1,
    ),
    "2d_cf_same_stride2_back_seq": (
        2,
        "channels_first",
        {"padding": "same", "strides": 2, "go_backwards": True, "return_sequences": True},
        1,
        0,
    ),
    "2d_cf_dilation2_same_zero_output": (
        2,
        "channels_first",
        {
            "padding": "same",
            "dilation_rate": (2, 1),
            "return_sequences": True,
            "zero_output_for_mask": True,
        },
        1,
        1,
    ),
    "2d_no_bias_relu_hard_sigmoid_unroll": (
        2,
        "channels_last",
        {
            "padding": "same",
            "use_bias": False,
            "activation": "relu",
            "recurrent_activation": "hard_sigmoid",
            "unroll": True,
            "return_sequences": True,
        },
        1,
        0,
    ),
    "3d_same_seq_state": (
        3,
        "channels_last",
        {"padding": "same", "return_sequences": True, "return_state": True},
        2,
        1,
    ),
    "3d_valid_stride2_back": (
        3,
        "channels_last",
        {"strides": 2, "go_backwards": True, "return_state": True},
        1,
        0,
    ),
    "3d_cf_same_dilation2_seq": (
        3,
        "channels_first",
        {"padding": "same", "dilation_rate": 2, "return_sequences": True},
        1,
        1,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_parity(case):
    """Outputs and returned states equal Keras' (with the gaps mask; some cases also
    unmasked), optionally from a random initial state."""
    rank, data_format, kw, n_masks, use_init = CASES[case]
    layer, klayer, x = _pair(rank, data_format, **kw)
    init = _random_states(layer) if use_init else None
    for mask in (GAPS, None)[:n_masks]:
        ours = _flat(layer(x, mask=mask, initial_state=init))
        theirs = _keras_call(layer, klayer, x, mask=mask, initial_state=init)
        assert len(ours) == len(theirs)
        for k, (a, e) in enumerate(zip(ours, theirs)):
            assert_close(a, e, time=T, what=f"{case} mask={mask is not None} output[{k}]")


def test_channels_first_3d_direct():
    """jrnn channels_first equals a channels_first Keras ConvLSTM3D (no transposes)."""
    kw = {"padding": "same", "strides": (1, 2, 1), "return_sequences": True, "return_state": True}
    layer, _, x = _pair(3, "channels_first", **kw)
    klayer = keras.layers.ConvLSTM3D(
        FILTERS, KERNEL[3], data_format="channels_first", recurrent_initializer="zeros", **kw
    )
    klayer.build(x.shape)
    klayer.set_weights(cell_weights(layer.cell))
    init = _random_states(layer)
    theirs = klayer(tf.constant(x), mask=tf.constant(GAPS), initial_state=init)
    ours = layer(x, mask=GAPS, initial_state=init)
    assert ours[0].shape == (B, T, FILTERS, 4, 3, 3)
    for k, (a, e) in enumerate(zip(ours, theirs)):
        assert_close(a, np.asarray(e), time=T, what=f"output[{k}]")


GRADIENT_CASES = {
    "2d_same_init_mask": (
        2,
        "channels_last",
        {"padding": "same", "return_sequences": True, "return_state": True},
    ),
    "1d_cf_valid_stride2_back": (
        1,
        "channels_first",
        {"strides": 2, "go_backwards": True, "return_sequences": True, "return_state": True},
    ),
    "3d_same_dilation2": (3, "channels_last", {"padding": "same", "dilation_rate": (1, 2, 1)}),
}


@pytest.mark.parametrize("case", list(GRADIENT_CASES))
def test_gradient_parity(case):
    """d(loss)/d(inputs, initial states, kernel, recurrent_kernel, bias) equal
    tf.GradientTape's, for a random weighting of every returned tensor."""
    rank, data_format, kw = GRADIENT_CASES[case]
    layer, klayer, x = _pair(rank, data_format, **kw)
    init = _random_states(layer)
    rng = np.random.default_rng(7)
    cotangents = [
        rng.standard_normal(np.shape(o)).astype(np.float32)
        for o in _flat(layer(x, mask=GAPS, initial_state=init))
    ]

    xt, init_t = tf.constant(x), [tf.constant(s) for s in init]
    with tf.GradientTape() as tape:
        tape.watch([xt, *init_t])
        outs = _keras_forward(layer, klayer, xt, mask=GAPS, initial_state=init_t)
        loss = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(outs, cotangents)])
    k_grads = tape.gradient(loss, [xt, *init_t, *klayer.trainable_weights])

    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss_fn(params, x, init):
        outs = _flat(nnx.merge(graphdef, params, rest)(x, mask=GAPS, initial_state=init))
        return sum(jnp.sum(o * w) for o, w in zip(outs, cotangents))

    grad_fn = jax.jit(jax.grad(loss_fn, argnums=(0, 1, 2)))
    g_params, g_x, g_init = grad_fn(params, jnp.asarray(x), init)
    ours = [g_x, *g_init, *cell_weights(nnx.merge(graphdef, g_params, rest).cell)]
    assert len(ours) == len(k_grads) == 6
    for k, (a, e) in enumerate(zip(ours, k_grads)):
        assert_close(a, np.asarray(e), time=T, what=f"{case} gradient[{k}]")


def test_stateful_parity():
    """Consecutive calls carry (h, c) (one call masked); reset_state() zeroes them, as Keras."""
    layer, klayer, _ = _pair(2, padding="same", stateful=True, return_sequences=True)
    rng = np.random.default_rng(11)
    for k in range(3):
        x = rng.standard_normal((B, T, *_frame(2, "channels_last"))).astype(np.float32)
        mask = GAPS if k == 1 else None
        assert_close(layer(x, mask=mask), _keras_call(layer, klayer, x, mask=mask)[0], time=T)
    for ours, theirs in zip(layer.states, klayer.states):
        assert_close(ours.get_value(), np.asarray(theirs), time=T, what="stored state")
    layer.reset_state()
    klayer.reset_state()
    assert_close(layer(x), _keras_call(layer, klayer, x)[0], time=T, what="after reset_state")


def test_dropout_parity():
    """Training applies Keras' 4 input and 4 recurrent inverted-dropout masks (one per gate,
    shaped like the step input and like h, reused at every step): jrnn's masks, injected
    into Keras' mask cache, give Keras' training output (channels_first, so the masks'
    layout is checked too). Hoisted and per-step input convolutions agree."""
    kw = {"padding": "same", "dropout": 0.3, "recurrent_dropout": 0.4, "return_sequences": True}
    kw["seed"] = 5  # the cell's own dropout stream (no split of the init rngs)
    layer, klayer, x = _pair(2, "channels_first", **kw)
    # An RBG key: threefry's sampler compiles for ~3 s of CPU per mask shape.
    key = jax.random.key(3, impl="rbg")
    in_masks, rec_masks = layer.cell.dropout_masks(B, True, key)
    assert in_masks.shape == (4, B, *_frame(2, "channels_first"))
    assert rec_masks.shape == (4, B, *layer.cell.state_shapes[0])
    assert set(np.unique(np.asarray(in_masks))) == {0.0, np.float32(1 / 0.7)}
    # Keras' mask cache (DropoutRNNCell), in the Keras twin's channels_last layout.
    klayer.cell._dropout_mask = [_channels_last(tf.constant(m), 1) for m in np.asarray(in_masks)]
    klayer.cell._recurrent_dropout_mask = [
        _channels_last(tf.constant(m), 1) for m in np.asarray(rec_masks)
    ]
    expected = _keras_call(layer, klayer, x, mask=GAPS, training=True)[0]
    for hoist in (False, True):
        layer.hoist_input_projection = hoist
        actual = layer(x, mask=GAPS, training=True, rngs=key)
        assert_close(actual, expected, time=T, what=f"hoist={hoist}")


def test_cell_protocol_loop_equals_layer():
    """``carry, y = cell(carry, x_t)`` stepped in Python equals the layer's scan."""
    layer, _, x = _pair(1, padding="same", strides=2, return_sequences=True, return_state=True)
    cell = layer.cell
    carry = cell.initialize_carry((B, *cell.input_shape))
    assert [s.shape for s in carry] == [(B, 4, FILTERS)] * 2
    ys = []
    for t in range(T):
        carry, y = cell(carry, jnp.asarray(x[:, t]))
        ys.append(y)
    seq, h, c = layer(x)
    assert_close(seq, jnp.stack(ys, 1), time=T)
    assert_close(h, carry[0], time=T)
    assert_close(c, carry[1], time=T)


def test_parameters_config_and_unit_forget_bias():
    layer = jrnn.ConvLSTM3D(
        5,
        (2, 3, 1),
        in_channels=2,
        spatial_shape=(4, 5, 6),
        **_CHEAP_INIT,
        name="clstm",
        rngs=nnx.Rngs(0),
    )
    cell = layer.cell
    assert isinstance(cell.kernel, nnx.Param)
    assert cell.kernel.shape == (2, 3, 1, 2, 20)
    assert cell.recurrent_kernel.shape == (2, 3, 1, 5, 20)
    np.testing.assert_array_equal(np.asarray(cell.bias[...]), np.repeat([0, 1, 0, 0], 5))
    assert cell.gate_names == ("i", "f", "c", "o") and cell.dropout_mask_count == 4
    assert cell.state_shapes == ((3, 3, 6, 5),) * 2 and cell.name == "clstm_cell"
    config = layer.get_config()
    assert "rank" not in config and config["spatial_shape"] == [4, 5, 6]
    twin = jrnn.ConvLSTM3D.from_config(config, rngs=nnx.Rngs(1))
    assert type(twin) is jrnn.ConvLSTM3D and twin.cell.kernel.shape == cell.kernel.shape
    cf = layer.rebuild(rngs=nnx.Rngs(2), data_format="channels_first", padding="same")
    assert cf.cell.input_shape == (2, 4, 5, 6) and cf.cell.state_shapes[0] == (5, 4, 5, 6)
    generic = jrnn.ConvLSTM(
        1, 2, 3, in_channels=1, spatial_shape=5, **_CHEAP_INIT, rngs=nnx.Rngs(0)
    )
    assert generic.cell.input_shape == (5, 1) and generic.cell.state_shapes[0] == (3, 2)


def _conv2d(**kw):
    args = {
        "in_channels": C,
        "spatial_shape": (9, 8),
        **_CHEAP_INIT,
        "rngs": nnx.Rngs(0),
        **kw,
    }
    return jrnn.ConvLSTM2D(4, args.pop("kernel_size", 3), **args)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"strides": 2, "dilation_rate": 2},
            r"ConvLSTMCell: `strides` > 1 together with `dilation_rate` > 1 is not supported.*"
            r"strides=\(2, 2\), dilation_rate=\(2, 2\)",
        ),
        (
            {"strides": (1, 2), "dilation_rate": (2, 1)},
            r"`strides` > 1 together with `dilation_rate` > 1",
        ),
        ({"padding": "full"}, r"`padding` must be one of \('valid', 'same'\); received 'full'"),
        ({"padding": "causal"}, r"`padding` must be one of"),
        ({"data_format": "NHWC"}, r"`data_format` must be one of .*received 'nhwc'"),
        ({"kernel_size": (3, 3, 3)}, r"`kernel_size` must be a positive int or a tuple of 2"),
        ({"kernel_size": 0}, r"`kernel_size` must be a positive int.*received 0"),
        ({"strides": (1, True)}, r"`strides` must be a positive int or a tuple of 2"),
        ({"spatial_shape": (9,)}, r"`spatial_shape` must be a positive int or a tuple of 2"),
        ({"spatial_shape": (2, 8)}, r"`spatial_shape` \(2, 8\) is too small for kernel_size"),
        ({"in_channels": 0}, r"`in_channels` must be a positive integer; received 0"),
        ({"dropout": 1.5}, r"`dropout` must be a float in \[0, 1\); received 1.5"),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _conv2d(**kwargs)


def test_keras_refuses_strides_with_dilation_too():
    with pytest.raises(ValueError, match="strides > 1` is not compatible with `dilation_rate"):
        keras.layers.ConvLSTM2D(4, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match=r"`rank` must be one of \(1, 2, 3\); received 4"):
        jrnn.ConvLSTM(4, 2, 3, in_channels=1, spatial_shape=5, rngs=nnx.Rngs(0))


def test_call_errors():
    layer = _conv2d(name="clstm")
    good = jnp.ones((B, T, 9, 8, C))
    assert layer(good).shape == (B, 7, 6, 4)
    with pytest.raises(
        ValueError, match=r"ConvLSTM2D 'clstm': `inputs` must have shape \(batch, time, 9, 8, 3\)"
    ):
        layer(jnp.ones((B, 9, 8, C)))
    with pytest.raises(ValueError, match=r"feature shape must be \(9, 8, 3\).*\(2, 4, 8, 9, 3\)"):
        layer(jnp.ones((B, T, 8, 9, C)))
    with pytest.raises(ValueError, match=r"feature shape must be \(9, 8, 3\)"):
        layer(jnp.ones((B, T, C, 9, 8)))  # channels_first data into a channels_last layer
    with pytest.raises(ValueError, match=r"`mask` must have shape \(batch, time\) = \(2, 4\)"):
        layer(good, mask=np.ones((B, T + 1), bool))
    with pytest.raises(ValueError, match=r"`initial_state\[1\]` must have shape \(2, 7, 6, 4\)"):
        layer(good, initial_state=[jnp.zeros((B, 7, 6, 4)), jnp.zeros((B, 9, 8, 4))])
    with pytest.raises(ValueError, match=r"`initial_state` must hold 2 state\(s\)"):
        layer(good, initial_state=[jnp.zeros((B, 7, 6, 4))])


@pytest.mark.parametrize("native", [None, True, False])
def test_an_empty_batch_gives_an_empty_output(native):
    """Keras returns (0, ...) for a batch of 0; the native kernel's reshape divided by zero
    (`native=None` sent ConvLSTM there, and `native=True` any layer)."""
    rngs = nnx.Rngs(0)
    conv = jrnn.ConvLSTM2D(
        3, 2, in_channels=2, spatial_shape=(5, 4), return_sequences=True, native=native, rngs=rngs
    )
    assert conv(jnp.ones((0, 3, 5, 4, 2))).shape == (0, 3, 4, 3, 3)
    lstm = jrnn.Bidirectional(jrnn.LSTM(4, 2, native=native, rngs=rngs), rngs=rngs)
    assert lstm(jnp.ones((0, 40, 2))).shape == (0, 8)


def test_bidirectional_conv_lstm_matches_keras():
    rngs = nnx.Rngs(0)
    fwd = jrnn.ConvLSTM2D(
        FILTERS,
        KERNEL[2],
        in_channels=C,
        spatial_shape=SPATIAL[2],
        padding="same",
        return_sequences=True,
        **_CHEAP_INIT,
        rngs=rngs,
    )
    bi = jrnn.Bidirectional(fwd, merge_mode="sum", rngs=rngs)
    randomize(bi, 3, scale=0.3)
    kbi = keras.layers.Bidirectional(
        keras.layers.ConvLSTM2D(
            FILTERS, KERNEL[2], padding="same", return_sequences=True, recurrent_initializer="zeros"
        ),
        merge_mode="sum",
    )
    kbi.build((B, T, *SPATIAL[2], C))
    kbi.set_weights(cell_weights(bi.forward_layer.cell) + cell_weights(bi.backward_layer.cell))
    x = np.random.default_rng(4).standard_normal((B, T, *SPATIAL[2], C)).astype(np.float32)
    mask = np.array([[1, 1, 0, 1], [1, 0, 1, 1]], bool)
    assert_close(bi(x, mask=mask), kbi(tf.constant(x), mask=tf.constant(mask)).numpy(), time=T)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides,dilation", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_conv_patch_gradient_equals_convolution_gradient(
    rank, padding, strides, dilation, channels_last
):
    """The kernel gradient taken as a patches GEMM (and forward mode) equals XLA's."""
    from jrnn.cells.conv_lstm import _conv_plain, conv

    rng = np.random.default_rng(rank)
    spatial = (7, 6, 5)[:rank]
    x = rng.standard_normal((2, *spatial, 3) if channels_last else (2, 3, *spatial))
    w = rng.standard_normal((*(3,) * rank, 3, 4))
    x, w = jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32)
    args = ((strides,) * rank, padding, (dilation,) * rank, channels_last)

    def loss(f):
        return lambda x, w: jnp.sum(jnp.sin(f(x, w, *args)))

    fast = loss(
        lambda x, w, s, p, d, c: conv(x, w, strides=s, padding=p, dilation=d, channels_last=c)
    )
    plain = loss(_conv_plain)
    for got, want in zip(jax.grad(fast, (0, 1))(x, w), jax.grad(plain, (0, 1))(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    t = jax.jvp(lambda w: fast(x, w), (w,), (jnp.ones_like(w),))[1]
    np.testing.assert_allclose(
        t, jax.jvp(lambda w: plain(x, w), (w,), (jnp.ones_like(w),))[1], rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("native", [None, False])
def test_without_spatial_shape_frames_of_any_size(native):
    """Built without `spatial_shape`, a ConvLSTM takes each call's frames (tf.keras 2's
    behaviour): outputs and gradients equal those of a layer built for that size with the
    same weights (whose parity with Keras the tests above prove), also under jit, in a
    Bidirectional, a stack and a direct cell call."""
    common = {"padding": "valid", "return_sequences": True, "native": native}
    free = jrnn.ConvLSTM2D(3, 3, in_channels=2, rngs=nnx.Rngs(0), **common)
    assert free.cell.input_shape == (None, None, 2)
    step = nnx.jit(lambda m, x: m(x))
    rng = np.random.default_rng(0)
    for hw in ((6, 5), (9, 7)):
        fixed = jrnn.ConvLSTM2D(3, 3, in_channels=2, spatial_shape=hw, rngs=nnx.Rngs(0), **common)
        x = rng.standard_normal((2, 4, *hw, 2)).astype(np.float32)
        assert_close(free(x), fixed(x))
        assert_close(step(free, x), fixed(x))

        def loss(m, x=x):
            return jnp.sum(m(x) ** 2)

        for a, b in zip(
            jax.tree.leaves(nnx.grad(loss)(free)), jax.tree.leaves(nnx.grad(loss)(fixed))
        ):
            assert_close(a, b)
    assert free.cell.input_shape == (None, None, 2)  # unbound again after the calls
    bi = jrnn.Bidirectional(
        jrnn.ConvLSTM2D(3, 3, in_channels=2, padding="same", rngs=nnx.Rngs(1)), rngs=nnx.Rngs(2)
    )
    assert bi(jnp.ones((1, 2, 5, 6, 2))).shape == (1, 5, 6, 6)
    cells = [
        jrnn.ConvLSTMCell(2, 3, 3, in_channels=2, rngs=nnx.Rngs(3)),
        jrnn.ConvLSTMCell(2, 4, 2, in_channels=3, rngs=nnx.Rngs(4)),
    ]
    assert jrnn.RNN(cells, return_sequences=True)(jnp.ones((1, 3, 7, 6, 2))).shape == (
        1, 3, 4, 3, 4
    )  # fmt: skip
    (h, _), y = cells[0]((jnp.zeros((1, 3, 2, 3)),) * 2, jnp.ones((1, 5, 4, 2)))
    assert y.shape == h.shape == (1, 3, 2, 3)
    with pytest.raises(ValueError, match=r"the input frames' size \(2, 2\) is too small"):
        free(jnp.ones((1, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"feature shape must be \(None, None, 2\)"):
        free(jnp.ones((1, 2, 5, 5, 3)))


def test_stateful_without_spatial_shape_keeps_its_first_frames():
    layer = jrnn.ConvLSTM2D(3, 3, in_channels=2, padding="same", stateful=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"call the layer once before reset_state\(states="):
        layer.reset_state([jnp.zeros((1, 5, 5, 3))] * 2)
    first = layer(jnp.ones((1, 2, 5, 5, 2)))
    assert layer.states[0].shape == (1, 5, 5, 3)
    assert not np.allclose(layer(jnp.ones((1, 2, 5, 5, 2))), first)  # the states carry on
    layer.reset_state()
    assert_close(layer(jnp.ones((1, 2, 5, 5, 2))), first)
    with pytest.raises(ValueError, match=r"keeps the state shape of its first call"):
        layer(jnp.ones((1, 2, 7, 4, 2)))
    sized = jrnn.ConvLSTM2D(
        3, 3, in_channels=2, padding="same", stateful=True, batch_size=2, rngs=nnx.Rngs(0)
    )
    assert sized.states is None  # made by the first call, whose frames give their shape
    with pytest.raises(ValueError, match=r"expected batch size 2, received 1"):
        sized(jnp.ones((1, 2, 5, 5, 2)))
