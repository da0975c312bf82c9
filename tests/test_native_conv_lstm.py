"""The native ConvLSTM recurrence kernel (``jrnn.native.conv_lstm``) against jrnn's XLA scan.

The scan is the reference (the Keras parity tests of ``test_conv_lstm.py`` were proven on
it, and run through the kernel now). Shapes cover ranks 1-3, odd and even kernel sizes
(TensorFlow's "same" pads the odd pixel after), filter counts below, at and above the
16-unit blocks, frame sizes that are not multiples of the 6-pixel register tile, and
both ways the kernel splits work (by frames, and by pixel blocks within a step for a
batch of one).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jrnn
from jrnn import native as native_kernels
from tests.helpers import assert_close, jit_call, randomize
from tests.test_native import needs_kernel

# (rank, batch, time, spatial, in_channels, filters, kernel_size, extra layer arguments)
CASES = [
    (2, 3, 4, (6, 7), 3, 5, (3, 3), {"padding": "same"}),
    (1, 1, 5, (9,), 2, 20, (2,), {"strides": 2}),
    (3, 2, 3, (3, 4, 5), 2, 33, (3, 2, 2), {"padding": "same"}),
    (2, 8, 3, (9, 9), 4, 17, (3, 3), {"go_backwards": True, "dilation_rate": 2}),
    (2, 13, 2, (4, 4), 3, 16, (1, 1), {}),
    (2, 2, 3, (5, 5), 7, 100, (3, 3), {"padding": "same"}),  # several unit panels both ways
]


def _pair(rank, spatial, channels, filters, kernel, seed=0, **kw):
    """The same randomized ConvLSTM twice: native (required) and the XLA scan."""
    layers = []
    # Scaled as trained weights are (~1/sqrt(fan-in)), so that wide layers do not saturate.
    taps = int(np.prod(kernel)) if isinstance(kernel, tuple) else kernel**rank
    scale = min(0.3, 2.0 / np.sqrt(taps * (channels + filters)))
    for native in (True, False):
        layer = jrnn.ConvLSTM(
            rank,
            filters,
            kernel,
            in_channels=channels,
            spatial_shape=spatial,
            native=native,
            rngs=nnx.Rngs(0),
            **kw,
        )
        randomize(layer, seed, scale=scale)
        layers.append(layer)
    return layers


def _normal(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _assert_grads_close(got, want):
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert a.shape == b.shape
        scale = max(1.0, float(jnp.max(jnp.abs(b))))  # sums of many terms: relative
        assert float(jnp.max(jnp.abs(a - b))) <= 5e-5 * scale


@needs_kernel
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"rank{c[0]}-b{c[1]}-f{c[5]}")
def test_outputs_states_and_gradients_equal_the_scan(case):
    rank, batch, time, spatial, channels, filters, kernel, kw = case
    native, scan = _pair(
        rank, spatial, channels, filters, kernel, return_sequences=True, return_state=True, **kw
    )
    x = _normal((batch, time, *spatial, channels), 1)
    state_shape = (batch, *scan.cell.state_shapes[0])
    states = [_normal(state_shape, 2) * 0.5, _normal(state_shape, 3) * 0.5]
    for a, b in zip(*(jit_call(m, x, initial_state=states) for m in (native, scan))):
        assert_close(a, b, time=time)

    def loss(layer, x, states):
        y, h, c = layer(x, initial_state=states)
        return jnp.sum(jnp.sin(y)) + jnp.sum(jnp.cos(h)) + 2 * jnp.sum(jnp.sin(c))

    grads = [nnx.jit(nnx.grad(loss, argnums=(0, 1, 2)))(m, x, states) for m in (native, scan)]
    _assert_grads_close(grads[0], grads[1])
    text = str(jax.make_jaxpr(lambda x: native(x, initial_state=states))(x))
    assert "jrnn_conv_lstm_fwd" in text


@needs_kernel
@pytest.mark.parametrize(
    "kw",
    [
        {"return_sequences": False},
        {"use_bias": False, "return_sequences": True},
        {"remat": True, "return_sequences": True},
        {"remat": 2, "return_state": True},
        {"unroll": True, "return_sequences": True},
    ],
    ids=lambda kw: ",".join(k for k in kw if k not in ("return_sequences",)) or "last",
)
def test_layer_options_equal_the_scan(kw):
    native, scan = _pair(2, (5, 6), 3, 7, (3, 3), padding="same", **kw)
    x = _normal((4, 6, 5, 6, 3), 1)
    for a, b in zip(jax.tree_util.tree_leaves(native(x)), jax.tree_util.tree_leaves(scan(x))):
        assert_close(a, b, time=6)

    def loss(m):
        return sum(jnp.sum(jnp.sin(v)) for v in jax.tree_util.tree_leaves(m(x)))

    _assert_grads_close(nnx.grad(loss)(native), nnx.grad(loss)(scan))


@needs_kernel
def test_stateful_calls_carry_states_as_the_scan_does():
    native, scan = _pair(1, (8,), 2, 6, (3,), padding="same", stateful=True)
    for seed in (1, 2):
        x = _normal((3, 4, 8, 2), seed)
        assert_close(native(x), scan(x), time=8)


@needs_kernel
def test_stacked_conv_cells_run_one_kernel_per_cell():
    def stack(native):
        cells = [
            jrnn.ConvLSTMCell(
                2, 6, 3, in_channels=2, spatial_shape=(5, 5), padding="same", rngs=nnx.Rngs(0)
            ),
            jrnn.ConvLSTMCell(
                2, 4, 2, in_channels=6, spatial_shape=(5, 5), padding="same", rngs=nnx.Rngs(1)
            ),
        ]
        layer = jrnn.RNN(cells, return_sequences=True, native=native)
        randomize(layer, 0, scale=0.3)
        return layer

    native, scan = stack(True), stack(False)
    x = _normal((3, 4, 5, 5, 2), 1)
    assert_close(jit_call(native, x), jit_call(scan, x), time=4)
    grads = [nnx.jit(nnx.grad(lambda m: jnp.sum(jnp.sin(m(x)))))(m) for m in (native, scan)]
    _assert_grads_close(*grads)
    assert str(jax.make_jaxpr(lambda x: native(x))(x)).count("jrnn_conv_lstm_fwd") == 2


@needs_kernel
def test_what_falls_back_to_the_scan():
    x = _normal((2, 3, 5, 5, 2), 1)
    kw = {"in_channels": 2, "spatial_shape": (5, 5), "native": True, "rngs": nnx.Rngs(0)}
    with pytest.raises(ValueError, match=r"native=True.*ConvLSTMCell has activation='relu'"):
        jrnn.ConvLSTM2D(3, 3, activation="relu", **kw)(x)
    with pytest.raises(ValueError, match=r"native=True.*float32 only"):
        jrnn.ConvLSTM2D(3, 3, dtype="bfloat16", **kw)(x.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match=r"native=True.*one mask per gate"):
        jrnn.ConvLSTM2D(3, 3, dropout=0.5, **kw)(x, training=True)
    with pytest.raises(ValueError, match=r"native=True.*recurrent dropout"):
        jrnn.ConvLSTM2D(3, 3, recurrent_dropout=0.5, **kw)(x, training=True)
    with pytest.raises(ValueError, match=r"native=True.*data_format='channels_first'"):
        jrnn.ConvLSTM2D(3, 3, data_format="channels_first", **kw)(jnp.moveaxis(x, 4, 2))
    # native=None: the same calls run on the scan; dropout outside training uses the kernel.
    layer = jrnn.ConvLSTM2D(
        3, 3, dropout=0.5, in_channels=2, spatial_shape=(5, 5), rngs=nnx.Rngs(0)
    )
    assert layer(x, training=True).shape == (2, 3, 3, 3)
    assert "jrnn_conv_lstm_fwd" in str(jax.make_jaxpr(lambda x: layer(x))(x))


@needs_kernel
def test_function_api_checks():
    bt, s, c, f = (2, 3), (4, 5), 3, 6
    x, w = _normal((*bt, *s, c), 1), _normal((3, 3, c, 4 * f), 2) * 0.3
    b, r = _normal((4 * f,), 3), _normal((3, 3, f, 4 * f), 4) * 0.2
    h0, c0 = _normal((2, *s, f), 5), _normal((2, *s, f), 6)
    same = {"padding": "same"}
    y, h, c_t = jax.jit(lambda *a: native_kernels.conv_lstm(*a, **same))(x, w, b, r, h0, c0)
    none, h2, c2 = native_kernels.conv_lstm(x, w, b, r, h0, c0, sequence=False, **same)
    assert none is None and y.shape == (*bt, *s, f)
    np.testing.assert_array_equal(h, h2)
    np.testing.assert_array_equal(c_t, c2)
    batched = jax.vmap(lambda x: native_kernels.conv_lstm(x, w, b, r, h0, c0, **same)[1])(
        jnp.stack([x, -x])
    )
    assert_close(batched[1], native_kernels.conv_lstm(-x, w, b, r, h0, c0, **same)[1])
    # "valid": 4x5 frames give 2x3 states.
    with pytest.raises(ValueError, match=r"`h0` must have shape \(2, 2, 3, 6\).*ed \(2, 4, 5, 6\)"):
        native_kernels.conv_lstm(x, w, b, r, h0, c0)
    with pytest.raises(ValueError, match=r"`c0` must have shape"):
        native_kernels.conv_lstm(x, w, b, r, h0, c0[:1], **same)
    with pytest.raises(ValueError, match=r"`w` must have shape \(3, 3, 3, 24\)"):
        native_kernels.conv_lstm(x, w[..., :-1], b, r, h0, c0, **same)
    with pytest.raises(ValueError, match=r"`b` must have shape"):
        native_kernels.conv_lstm(x, w, b[:-1], r, h0, c0, **same)
    with pytest.raises(ValueError, match=r"`r` must be \(\*kernel_size, F, 4F\)"):
        native_kernels.conv_lstm(x, w, b, r[..., :-1], h0, c0, **same)
    with pytest.raises(ValueError, match=r"`strides` and `dilation` need 2 values"):
        native_kernels.conv_lstm(x, w, b, r, h0, c0, strides=(1, 1, 1), **same)
    with pytest.raises(ValueError, match=r"`padding` must be 'valid' or 'same'"):
        native_kernels.conv_lstm(x, w, b, r, h0, c0, padding="full")
    with pytest.raises(ValueError, match="runs float32 only; received bfloat16"):
        args = (x, w, b, r, h0, c0)
        native_kernels.conv_lstm(*(a.astype(jnp.bfloat16) for a in args), **same)


@needs_kernel
@pytest.mark.parametrize(
    "rank,spatial,kernel,kw",
    [
        (1, (9,), 2, {"padding": "same"}),
        (1, (10,), 3, {"padding": "same", "strides": 2}),
        (2, (7, 6), (3, 2), {"padding": "same", "strides": (2, 3)}),
        (2, (7, 8), 3, {"padding": "same", "dilation_rate": (2, 1)}),
        (2, (7, 8), 3, {"dilation_rate": 2}),
        (3, (4, 5, 6), (2, 3, 3), {"strides": (2, 1, 2)}),
    ],
    ids=lambda v: str(v).replace(" ", ""),
)
def test_input_convolution_geometries_equal_the_scan(rank, spatial, kernel, kw):
    # The input tap tables (and the weight-gradient kernel on them) against XLA's
    # convolutions and their gradients.
    native, scan = _pair(rank, spatial, 5, 9, kernel, return_sequences=True, **kw)
    x = _normal((2, 3, *spatial, 5), 1)
    assert_close(jit_call(native, x), jit_call(scan, x), time=3)
    grad = nnx.jit(nnx.grad(lambda m, x: jnp.sum(jnp.sin(m(x))), argnums=(0, 1)))
    grads = [grad(m, x) for m in (native, scan)]
    _assert_grads_close(*grads)


@needs_kernel
def test_tap_tables_follow_tensorflow_padding():
    nbr, nbr_t = native_kernels._taps((4,), (2,))
    # Kernel 2, "same": output i reads inputs i and i+1 (the odd pixel padded after).
    np.testing.assert_array_equal(nbr, [[0, 1], [1, 2], [2, 3], [3, -1]])
    np.testing.assert_array_equal(nbr_t, [[0, -1], [1, 0], [2, 1], [3, 2]])
    nbr, _ = native_kernels._taps((2, 3), (3, 3))
    assert nbr.shape == (6, 9)
    np.testing.assert_array_equal(nbr[4], [0, 1, 2, 3, 4, 5, -1, -1, -1])
    # Kernel 3, stride 2, "same" on 6 pixels: 3 outputs, pad total 1, all after.
    tab, tab_t = native_kernels._taps((6,), (3,), (2,), (1,), "same")
    np.testing.assert_array_equal(tab, [[0, 1, 2], [2, 3, 4], [4, 5, -1]])
    np.testing.assert_array_equal(tab_t[2], [1, -1, 0])


@needs_kernel
def test_backward_kernel_never_overwrites_residuals_still_in_use():
    # The backward kernel writes dz over the saved gates and h_{t-1} over dy (XLA aliases
    # the buffers, copying an argument first where it is still needed): one VJP applied
    # twice, eagerly and within one jit, gives the first application's gradients.
    s, c, f = (4, 5), 3, 6
    args = [
        _normal((2, 3, *s, c), 1),
        _normal((3, 3, c, 4 * f), 2) * 0.3,
        _normal((4 * f,), 3),
        _normal((3, 3, f, 4 * f), 4) * 0.2,
        _normal((2, *s, f), 5),
        _normal((2, *s, f), 6),
    ]

    def fn(*a):
        return native_kernels.conv_lstm(*a, padding="same")

    outs, vjp = jax.vjp(fn, *args)
    cts = [tuple(_normal(o.shape, 10 + i + 3 * k) for i, o in enumerate(outs)) for k in range(2)]

    @jax.jit
    def twice(args, ct1, ct2):
        _, vjp = jax.vjp(fn, *args)
        return vjp(ct1), vjp(ct2)

    first = [vjp(ct) for ct in cts]
    for got in ([vjp(ct) for ct in cts], twice(args, *cts)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(first)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
