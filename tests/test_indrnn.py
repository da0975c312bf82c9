"""IndRNN against references written from titu1994/Keras-IndRNN's equations.

Reference: ``ind_rnn.py`` @ e5f1da3 (the tf.keras port): ``h' = act(x W + u * h + b)``
with a recurrent vector ``u``; before use ``u`` is clipped: -1 bounds mean
``[0, 2**(1/T)]`` (T from the input length); a non-zero ``clip_min`` first forces
``|u| >= |clip_min|`` keeping the sign (``K.sign(u) * K.maximum(K.abs(u), |clip_min|)``);
then ``K.clip(u, clip_min, clip_max)``.

Two references: a NumPy loop (every clipping case, masks, dropout masks), and a tf_keras
``RNN`` around a small cell that writes the same equations with Keras' backend ops, so
that masks/go_backwards/states follow Keras 2's own RNN and gradients (including the
clip's, at the bounds) come from ``tf.GradientTape``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from flax import nnx
from jax.test_util import check_grads

import jrnn
from jrnn.cells.indrnn import clip_recurrent_kernel
from tests.helpers import assert_close, randomize
from tests.keras_twins import MASKS

B, T, F, U = 3, 7, 3, 5
K = tf_keras.backend


def resolved_bounds(clip_min, clip_max, time):
    """Keras-IndRNN's build-time rule, written out: None, -1, then K.clip's max >= min."""
    if clip_min is None or clip_max is None:
        return None
    if clip_min == -1 or clip_max == -1:
        return 0.0, 2.0 ** (1.0 / time)
    return clip_min, max(clip_max, clip_min)


def numpy_clip(u, bounds):
    if bounds is None:
        return u
    lo, hi = bounds
    if lo:
        u = np.sign(u) * np.maximum(np.abs(u), abs(lo))
    return np.clip(u, lo, hi)


def reference(
    x,
    w,
    u,
    b,
    *,
    bounds,
    mask=None,
    go_backwards=False,
    h0=None,
    activation=lambda v: np.maximum(v, 0),
    input_mask=None,
    recurrent_mask=None,
):
    """NumPy IndRNN over ``x (batch, time, in)``; masked steps keep h and the last output."""
    u = numpy_clip(u, bounds)
    if input_mask is not None:
        x = x * input_mask[:, None, :]
    h = np.zeros((x.shape[0], w.shape[1]), np.float32) if h0 is None else h0
    out, ys = np.zeros_like(h), []
    order = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    for t in order:
        h_in = h if recurrent_mask is None else h * recurrent_mask
        new = activation(x[:, t] @ w + u * h_in + b)
        if mask is not None:
            m = mask[:, t][:, None]
            h, out = np.where(m, new, h), np.where(m, new, out)
        else:
            h = out = new
        ys.append(out)
    return np.stack(ys, 1), h


def _weights(cell):
    return (
        np.asarray(cell.kernel[...]),
        np.asarray(cell.recurrent_kernel[...]),
        np.asarray(cell.bias[...]),
    )


class Keras2IndRNNCell(tf_keras.layers.Layer):
    """Keras-IndRNN's cell equations with tf_keras' backend ops (bounds already resolved,
    as Keras-IndRNN's build resolves them; the clip runs in the forward pass)."""

    def __init__(self, units, bounds, activation, **kwargs):
        super().__init__(**kwargs)
        self.units = self.state_size = self.output_size = units
        self.bounds = bounds
        self.activation = tf_keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="input_kernel", shape=(input_shape[-1], self.units))
        self.recurrent_kernel = self.add_weight(name="recurrent_kernel", shape=(self.units,))
        self.bias = self.add_weight(name="bias", shape=(self.units,))

    def call(self, inputs, states):
        u = self.recurrent_kernel
        if self.bounds is not None:
            lo, hi = self.bounds
            if abs(lo):
                u = K.sign(u) * K.maximum(K.abs(u), abs(lo))
            u = K.clip(u, lo, hi)
        h = K.dot(inputs, self.kernel) + states[0] * u
        h = self.activation(K.bias_add(h, self.bias))
        return h, [h]


# ---------------------------------------------------------------------------- clipping
@pytest.mark.parametrize(
    "clip,time,timesteps",
    [
        ((-1, -1), 4, None),  # layer defaults: [0, 2**(1/4)]
        ((-1, -1), 9, None),  # [0, 2**(1/9)]
        ((-1, 0.5), 4, None),  # one -1 is enough
        ((-1, -1), 4, 9),  # timesteps= wins over the call length
        ((None, None), 7, None),
        ((None, 2.0), 7, None),  # one None disables clipping
        ((0.0, 0.5), 7, None),
        ((-0.3, 0.8), 7, None),  # clip_min != 0: |u| >= 0.3, sign kept
        ((0.2, 1.5), 7, None),  # positive clip_min
        ((-2, 2), 7, None),  # the cell defaults: |u| forced to 2
        ((0.5, 0.2), 7, None),  # K.clip: max < min means max = min
    ],
)
def test_clipping_cases(clip, time, timesteps):
    layer = jrnn.IndRNN(
        U,
        F,
        recurrent_clip_min=clip[0],
        recurrent_clip_max=clip[1],
        timesteps=timesteps,
        return_sequences=True,
        return_state=True,
        rngs=nnx.Rngs(0),
    )
    randomize(layer, 1, scale=1.5)  # recurrent entries well outside the clip ranges
    raw = np.asarray(layer.cell.recurrent_kernel[...]).copy()
    x = np.random.default_rng(2).standard_normal((B, time, F)).astype(np.float32)
    ys, h = layer(x)
    bounds = resolved_bounds(*clip, timesteps or time)
    assert layer.cell.clip_range(time) == (None if bounds is None else pytest.approx(bounds))
    ref_ys, ref_h = reference(x, *_weights(layer.cell), bounds=bounds)
    scale = max(1.0, float(np.abs(ref_ys).max()))  # (-2, 2) forces |u| = 2: values grow 2^T
    assert_close(ys / scale, ref_ys / scale)
    assert_close(h / scale, ref_h / scale)
    # the stored parameter stays raw (Keras-IndRNN's get_weights returns the variable)
    np.testing.assert_array_equal(np.asarray(layer.cell.recurrent_kernel[...]), raw)
    if bounds is not None:
        assert np.any((raw < bounds[0]) | (raw > bounds[1]))


@pytest.mark.parametrize(
    "bounds,u",
    [
        # ties with both bounds and with |clip_min|, inside, outside, zero
        ((-0.5, 1.0), [-3.0, -0.5, -0.2, 0.0, 0.3, 0.5, 0.7, 1.0, 2.0]),
        ((0.0, 1.25), [-1.0, 0.0, 0.5, 1.25, 1.5, 0.25, -0.1, 1.0, 3.0]),
        ((0.3, 0.3), [-1.0, -0.3, 0.0, 0.1, 0.3, 0.5, 0.2, -0.2, 0.31]),
        ((-2.0, 2.0), [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 2.5, -0.5, 0.5]),
    ],
)
def test_clip_values_and_gradients_equal_keras_backend(bounds, u):
    """Values and gradients of the clip equal TensorFlow's K ops, bounds and ties included."""
    u = np.asarray(u, np.float32)
    cot = np.random.default_rng(0).standard_normal(u.shape).astype(np.float32)
    ut = tf.Variable(u)
    with tf.GradientTape() as tape:
        lo, hi = bounds
        v = ut
        if abs(lo):
            v = K.sign(v) * K.maximum(K.abs(v), abs(lo))
        v = K.clip(v, lo, hi)
        loss = tf.reduce_sum(v * cot)
    expected_grad = tape.gradient(loss, ut).numpy()

    def f(u):
        return jnp.sum(clip_recurrent_kernel(u, *bounds, None) * cot)

    np.testing.assert_array_equal(
        np.asarray(clip_recurrent_kernel(jnp.asarray(u), *bounds, None)), v
    )
    np.testing.assert_array_equal(np.asarray(jax.grad(f)(jnp.asarray(u))), expected_grad)


# ---------------------------------------------------------------------------- Keras 2 RNN twin
@pytest.mark.parametrize(
    "clip,go_backwards,mask",
    [((-1, -1), False, "gaps"), ((-0.5, 1.0), True, "gaps"), ((0.0, 0.8), True, "none")],
)
def test_equal_to_keras2_rnn_twin(clip, go_backwards, mask):
    """Outputs, states and gradients (inputs and all weights, through the clip) equal a
    tf_keras RNN running Keras-IndRNN's equations, with masks with gaps, go_backwards,
    a non-zero initial state and return_state."""
    layer = jrnn.IndRNN(
        U,
        F,
        recurrent_clip_min=clip[0],
        recurrent_clip_max=clip[1],
        activation="tanh",
        return_sequences=True,
        return_state=True,
        go_backwards=go_backwards,
        rngs=nnx.Rngs(0),
    )
    randomize(layer, 3, scale=0.8)
    bounds = resolved_bounds(*clip, T)
    u = np.array(layer.cell.recurrent_kernel[...])
    u[:2] = np.float32(bounds[0]), np.float32(bounds[1])  # exactly on the bounds
    layer.cell.recurrent_kernel[...] = u
    cell = Keras2IndRNNCell(U, bounds, "tanh")
    klayer = tf_keras.layers.RNN(
        cell, return_sequences=True, return_state=True, go_backwards=go_backwards
    )
    klayer.build((None, T, F))
    klayer.set_weights(list(_weights(layer.cell)))

    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, F)).astype(np.float32)
    h0 = (rng.standard_normal((B, U)) * 0.5).astype(np.float32)
    m = MASKS[mask]
    cot = rng.standard_normal((B, T, U)).astype(np.float32)

    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        kys, kh = klayer(
            xt,
            initial_state=[tf.constant(h0)],
            mask=None if m is None else tf.constant(m),
        )
        loss = tf.reduce_sum(kys * cot) + tf.reduce_sum(kh)
    k_dx, *k_dw = tape.gradient(loss, [xt, cell.kernel, cell.recurrent_kernel, cell.bias])

    ys, h = layer(x, mask=m, initial_state=h0)
    assert_close(ys, kys.numpy())
    assert_close(h, kh.numpy())
    ref_ys, _ = reference(
        x,
        *_weights(layer.cell),
        bounds=bounds,
        mask=m,
        go_backwards=go_backwards,
        h0=h0,
        activation=np.tanh,
    )
    assert_close(ys, ref_ys)

    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def f(params, x):
        ys, h = nnx.merge(graphdef, params, rest)(x, mask=m, initial_state=h0)
        return jnp.sum(ys * cot) + jnp.sum(h)

    dparams, dx = jax.grad(f, argnums=(0, 1))(params, jnp.asarray(x))
    assert_close(dx, k_dx.numpy(), what="d/dx")
    for name, e in zip(("kernel", "recurrent_kernel", "bias"), k_dw, strict=True):
        assert_close(dparams["cell"][name][...], e.numpy(), what=f"d/d{name}")


# ---------------------------------------------------------------------------- stacks, cells
def test_stacked_cells_and_single_step_calls():
    """RNN([IndRNNCell, IndRNNCell]) uses each cell's own bounds (-2/2 defaults; -1 takes the
    call length); a single-step call without `timesteps` uses Keras-IndRNN's (0, 1)."""
    rngs = nnx.Rngs(0)
    c1 = jrnn.IndRNNCell(U, F, rngs=rngs)
    c2 = jrnn.IndRNNCell(4, U, recurrent_clip_min=-1, recurrent_clip_max=-1, rngs=rngs)
    layer = jrnn.RNN([c1, c2], return_sequences=True, return_state=True)
    randomize(layer, 6, scale=0.8)
    x = np.random.default_rng(7).standard_normal((B, T, F)).astype(np.float32)
    y1, h1 = reference(x, *_weights(c1), bounds=(-2, 2))
    y2, h2 = reference(y1, *_weights(c2), bounds=(0.0, 2.0 ** (1 / T)))
    ys, (s1,), (s2,) = layer(x)
    assert_close(ys, y2)
    assert_close(s1, h1)
    assert_close(s2, h2)

    assert c2.clip_range() == (0.0, 1.0)
    _, y = c2(c2.initialize_carry(B), jnp.asarray(y1[:, 0]))
    ref, _ = reference(y1[:, :1], *_weights(c2), bounds=(0.0, 1.0))
    assert_close(y, ref[:, 0])
    fixed = jrnn.IndRNNCell(
        4, U, recurrent_clip_min=-1, recurrent_clip_max=-1, timesteps=T, rngs=nnx.Rngs(0)
    )
    assert fixed.clip_range() == fixed.clip_range(3) == (0.0, 2.0 ** (1 / T))


def test_check_grads_float64_with_clipping():
    """jax.test_util.check_grads through the clip (entries away from the bounds, where the
    clip is differentiable), for the layer defaults and for a sign-preserving clip_min."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(8).standard_normal((2, 5, F)), jnp.float64)
        for clip in ((-1, -1), (-0.5, 1.0)):
            layer = jrnn.IndRNN(
                U,
                F,
                recurrent_clip_min=clip[0],
                recurrent_clip_max=clip[1],
                activation="tanh",
                return_sequences=True,
                dtype="float64",
                rngs=nnx.Rngs(0),
            )
            randomize(layer, 9)
            # inside, below, above, and within |clip_min| (raised to it, sign kept)
            layer.cell.recurrent_kernel[...] = jnp.asarray([0.6, -0.9, 1.7, 0.2, -0.1], jnp.float64)
            graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
            check_grads(
                lambda p, x, graphdef=graphdef, rest=rest: nnx.merge(graphdef, p, rest)(x),
                (params, x),
                order=1,
                modes=("fwd", "rev"),
                atol=1e-6,
                rtol=1e-6,
            )


# ---------------------------------------------------------------------------- init, dropout
@pytest.mark.parametrize(
    "clip,bound",
    [((0.0, 0.5), 0.5), ((-1, -1), 1.0), ((None, None), 1.0), ((-2, 2), 1.0)],
)
def test_default_recurrent_initializer(clip, bound):
    """RandomUniform(-v, v) with v = min(clip_max, 1) after the -1 rule (1 without clip)."""
    cell = jrnn.IndRNNCell(
        256, F, recurrent_clip_min=clip[0], recurrent_clip_max=clip[1], rngs=nnx.Rngs(0)
    )
    u = np.asarray(cell.recurrent_kernel[...])
    assert np.abs(u).max() <= bound
    assert np.abs(u).max() > 0.9 * bound and u.min() < -0.9 * bound


def test_dropout_masks_one_per_call_reused_over_time():
    layer = jrnn.IndRNN(
        U,
        F,
        dropout=0.4,
        recurrent_dropout=0.3,
        activation="tanh",
        return_sequences=True,
        rngs=nnx.Rngs(0),
    )
    randomize(layer, 10)
    x = np.random.default_rng(11).standard_normal((B, T, F)).astype(np.float32)
    key = jax.random.key(0)
    in_mask, rec_mask = layer.cell.dropout_masks(B, True, key)
    assert in_mask.shape == (B, F) and rec_mask.shape == (B, U)
    assert set(np.unique(np.asarray(in_mask))) <= {0.0, np.float32(1 / 0.6)}
    assert set(np.unique(np.asarray(rec_mask))) <= {0.0, np.float32(1 / 0.7)}
    ref, _ = reference(
        x,
        *_weights(layer.cell),
        bounds=(0.0, 2.0 ** (1 / T)),
        activation=np.tanh,
        input_mask=np.asarray(in_mask),
        recurrent_mask=np.asarray(rec_mask),
    )
    assert_close(layer(x, training=True, rngs=key), ref)
    assert_close(
        layer(x),
        reference(x, *_weights(layer.cell), bounds=(0.0, 2.0 ** (1 / T)), activation=np.tanh)[0],
    )


def test_argument_errors():
    with pytest.raises(ValueError, match=r"IndRNNCell: `implementation` must be 2.*received 1"):
        jrnn.IndRNNCell(U, F, implementation=1, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"IndRNNCell: `recurrent_clip_max` must be None, -1 or"):
        jrnn.IndRNNCell(U, F, recurrent_clip_max="2", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`timesteps` must be a positive integer; received 0"):
        jrnn.IndRNN(U, F, timesteps=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`dropout` must be a float in \[0, 1\)"):
        jrnn.IndRNN(U, F, dropout=1.0, rngs=nnx.Rngs(0))
