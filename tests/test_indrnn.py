"""IndRNN against a NumPy reference written from titu1994/Keras-IndRNN's equations.

Reference (ind_rnn.py @ e5f1da3): h' = act(x W + u * h + b); the recurrent vector u is
clipped in the forward pass: -1 bounds mean [0, 2**(1/T)]; a non-zero clip_min first
forces |u| >= |clip_min| keeping the sign; then clip(u, clip_min, clip_max).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import jrnn
from tests.helpers import assert_close, randomize
from tests.keras_twins import MASKS

B, T, F, U = 3, 7, 3, 5


def reference(
    x,
    w,
    u,
    b,
    *,
    clip_min,
    clip_max,
    mask=None,
    go_backwards=False,
    h0=None,
    activation=lambda v: np.maximum(v, 0),
):
    time = x.shape[1]
    if clip_min is not None and clip_max is not None:
        if clip_min == -1 or clip_max == -1:
            clip_min, clip_max = 0.0, 2.0 ** (1.0 / time)
        if clip_min:
            u = np.sign(u) * np.maximum(np.abs(u), abs(clip_min))
        u = np.clip(u, clip_min, clip_max)
    h = np.zeros((x.shape[0], w.shape[1]), np.float32) if h0 is None else h0
    out, ys = np.zeros_like(h), []
    order = range(time - 1, -1, -1) if go_backwards else range(time)
    for t in order:
        new = activation(x[:, t] @ w + u * h + b)
        if mask is not None:
            m = mask[:, t][:, None]
            new_out = np.where(m, new, out)
            h = np.where(m, new, h)
            out = new_out
        else:
            h = out = new
        ys.append(out)
    return np.stack(ys, 1), h


def _weights(layer):
    c = layer.cell
    return np.asarray(c.kernel[...]), np.asarray(c.recurrent_kernel[...]), np.asarray(c.bias[...])


@pytest.mark.parametrize(
    "clip,time",
    [
        ((-1, -1), 4),
        ((-1, -1), 9),
        ((None, None), 7),
        ((0.0, 0.5), 7),
        ((-0.3, 0.8), 7),
        ((-2, 2), 7),
    ],
)
def test_clipping_cases(clip, time):
    layer = jrnn.IndRNN(
        U,
        F,
        recurrent_clip_min=clip[0],
        recurrent_clip_max=clip[1],
        return_sequences=True,
        return_state=True,
        rngs=nnx.Rngs(0),
    )
    randomize(layer, 1, scale=1.5)  # recurrent entries well outside the clip ranges
    x = np.random.default_rng(2).standard_normal((B, time, F)).astype(np.float32)
    ys, h = layer(x)
    ref_ys, ref_h = reference(x, *_weights(layer), clip_min=clip[0], clip_max=clip[1])
    scale = max(1.0, float(np.abs(ref_ys).max()))  # (-2, 2) forces |u| = 2: values grow 2^T
    assert_close(ys / scale, ref_ys / scale)
    assert_close(h / scale, ref_h / scale)


@pytest.mark.parametrize("go_backwards", [False, True])
def test_masks_go_backwards_initial_state(go_backwards):
    layer = jrnn.IndRNN(
        U,
        F,
        return_sequences=True,
        return_state=True,
        activation="tanh",
        go_backwards=go_backwards,
        rngs=nnx.Rngs(0),
    )
    randomize(layer, 3)
    x = np.random.default_rng(4).standard_normal((B, T, F)).astype(np.float32)
    h0 = np.random.default_rng(5).standard_normal((B, U)).astype(np.float32)
    mask = MASKS["gaps"]
    ys, h = layer(x, mask=mask, initial_state=h0)
    ref_ys, ref_h = reference(
        x,
        *_weights(layer),
        clip_min=-1,
        clip_max=-1,
        mask=mask,
        go_backwards=go_backwards,
        h0=h0,
        activation=np.tanh,
    )
    assert_close(ys, ref_ys)
    assert_close(h, ref_h)


def test_stacked_cells_use_cell_defaults_and_gradients():
    rngs = nnx.Rngs(0)
    layer = jrnn.RNN(
        [jrnn.IndRNNCell(U, F, rngs=rngs), jrnn.IndRNNCell(4, U, rngs=rngs)], return_sequences=True
    )
    randomize(layer, 6, scale=0.4)
    x = np.random.default_rng(7).standard_normal((B, T, F)).astype(np.float32)
    c1, c2 = layer.cell.cells
    y1, _ = reference(
        x,
        np.asarray(c1.kernel[...]),
        np.asarray(c1.recurrent_kernel[...]),
        np.asarray(c1.bias[...]),
        clip_min=-2,
        clip_max=2,
    )
    y2, _ = reference(
        y1,
        np.asarray(c2.kernel[...]),
        np.asarray(c2.recurrent_kernel[...]),
        np.asarray(c2.bias[...]),
        clip_min=-2,
        clip_max=2,
    )
    assert_close(layer(x), y2)
    with jax.enable_x64(True):
        single = jrnn.IndRNN(
            U,
            F,
            recurrent_clip_min=None,
            recurrent_clip_max=None,
            activation="tanh",
            return_sequences=True,
            dtype="float64",
            rngs=nnx.Rngs(0),
        )
        graphdef, params, rest = nnx.split(single, nnx.Param, ...)
        check_grads(
            lambda p, x: nnx.merge(graphdef, p, rest)(x),
            (params, jnp.asarray(x, jnp.float64)),
            order=1,
            modes=("rev",),
            atol=1e-5,
            rtol=1e-5,
        )


def test_recurrent_initializer_default_and_dropout():
    layer = jrnn.IndRNNCell(64, F, recurrent_clip_min=0.0, recurrent_clip_max=0.5, rngs=nnx.Rngs(0))
    assert float(jnp.max(jnp.abs(layer.recurrent_kernel[...]))) <= 0.5
    layer = jrnn.IndRNN(U, F, dropout=0.5, return_sequences=True, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(8).standard_normal((B, T, F)), jnp.float32)
    key = jax.random.key(0)
    in_mask, rec_mask = layer.cell.dropout_masks(B, True, key)
    assert rec_mask is None and in_mask.shape == (B, F)
    assert_close(layer(x, training=True, rngs=key), layer(x * in_mask[:, None, :]))
    with pytest.raises(ValueError, match=r"only `implementation=2`"):
        jrnn.IndRNNCell(U, F, implementation=1, rngs=nnx.Rngs(0))
