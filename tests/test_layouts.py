"""importers.layouts against the frameworks that own each layout.

A NumPy reference of the Keras maths (checked against Keras 3 itself) runs the converted
Keras weights; the owning framework runs the same weights in its own layout: PyTorch
``nn.LSTM/GRU/RNN`` (multi-layer, bidirectional), Flax linen and nnx cells, TF1
``LSTMCell/BasicLSTMCell/GRUCell/BasicRNNCell`` (tf.compat.v1.nn.rnn_cell, which is
``tf_keras.src.layers.rnn.legacy_cells`` once Keras 3 is installed). CuDNN and Keras 1
conversions must equal tf_keras' own ``preprocess_weights_for_loading``. Random asymmetric
weights, non-zero initial states, distinct sizes (batch 2, time 7, features 3, units 5).
"""

from __future__ import annotations

import ast
import copy
import doctest
import inspect
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen, nnx

from importers import layouts
from tests.helpers import assert_close

pytestmark = pytest.mark.filterwarnings(
    # tf.compat.v1.nn.rnn_cell classes warn on construction; they are the layout's owner.
    r"ignore:`tf\.nn\.rnn_cell\.\w+` is deprecated:UserWarning"
)

B, T, F, U = 2, 7, 3, 5
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}


# ----------------------------------------------------------------------------- references
def _rand(*shape, seed=0, scale=0.5):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _keras_weights(kind, n_in=F, reset_after=True, seed=0):
    g = GATES[kind]
    bias_shape = (2, 3 * U) if kind == "gru" and reset_after else (g * U,)
    return (
        _rand(n_in, g * U, seed=seed),
        _rand(U, g * U, seed=seed + 1),
        _rand(*bias_shape, seed=seed + 2),
    )


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def keras_rnn(kind, x, weights, state, activation=np.tanh):
    """Keras 3 cell maths (keras-rnn-facts.md §2.3) in float64 over ``x (B, T, in)``.

    ``state`` is ``(h, c)`` for LSTM and ``h`` otherwise; returns ``(ys (B, T, u), state)``.
    """
    k, rk, b = (np.asarray(a, np.float64) for a in weights)
    u = rk.shape[0]
    h = np.asarray(state[0] if kind == "lstm" else state, np.float64)
    c = np.asarray(state[1], np.float64) if kind == "lstm" else None
    ys = []
    for t in range(x.shape[1]):
        xt = np.asarray(x[:, t], np.float64)
        if kind == "lstm":
            z = xt @ k + h @ rk + b
            i, f, cc, o = np.split(z, 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * activation(cc)
            h = _sigmoid(o) * activation(c)
        elif kind == "gru":
            b_x, b_h = (b[0], b[1]) if b.ndim == 2 else (b, None)
            xz, xr, xh = np.split(xt @ k + b_x, 3, axis=-1)
            if b_h is not None:  # reset_after=True
                mz, mr, mh = np.split(h @ rk + b_h, 3, axis=-1)
                z, r = _sigmoid(xz + mz), _sigmoid(xr + mr)
                hh = activation(xh + r * mh)
            else:
                z = _sigmoid(xz + h @ rk[:, :u])
                r = _sigmoid(xr + h @ rk[:, u : 2 * u])
                hh = activation(xh + (r * h) @ rk[:, 2 * u :])
            h = z * h + (1 - z) * hh
        else:
            h = activation(xt @ k + b + h @ rk)
        ys.append(h)
    return np.stack(ys, 1), ((h, c) if kind == "lstm" else h)


def stacked_reference(kind, x, layers, h0, c0=None, activation=np.tanh):
    """Multi-layer (bi)directional Keras maths with PyTorch's state layout ``(L*D, B, u)``."""
    y = x
    for layer, entry in enumerate(layers):
        directions = [d for d in ("forward", "backward") if d in entry]
        outs = []
        for d, direction in enumerate(directions):
            idx = layer * len(directions) + d
            state = (h0[idx], c0[idx]) if kind == "lstm" else h0[idx]
            inputs = y if direction == "forward" else y[:, ::-1]
            ys, _ = keras_rnn(kind, inputs, entry[direction], state, activation)
            outs.append(ys if direction == "forward" else ys[:, ::-1])
        y = np.concatenate(outs, axis=-1)
    return y


def _x(seed=10):
    return _rand(B, T, F, seed=seed, scale=1.0)


def _state(kind, seed=20, lead=()):
    h = _rand(*lead, B, U, seed=seed)
    return (h, _rand(*lead, B, U, seed=seed + 1)) if kind == "lstm" else h


def _assert_same(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)
        assert np.asarray(a).dtype == np.asarray(e).dtype


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before", "simple_rnn"])
def test_numpy_reference_matches_keras3(kind):
    import keras

    base = kind.replace("_reset_before", "")
    weights = _keras_weights(base, reset_after=kind == "gru")
    x, state = _x(), _state(base)
    cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "simple_rnn": keras.layers.SimpleRNN}
    kwargs = {"reset_after": kind == "gru"} if base == "gru" else {}
    layer = cls[base](U, return_sequences=True, **kwargs)
    layer.build((B, T, F))
    layer.set_weights(list(weights))
    initial = list(state) if base == "lstm" else [state]
    y = layer(x, initial_state=initial)
    assert_close(np.asarray(y), keras_rnn(base, x, weights, state)[0], time=T)


# ----------------------------------------------------------------------------- gate helpers
def test_reorder_split_join_gates():
    a = np.arange(12).reshape(2, 6)
    np.testing.assert_array_equal(layouts.reorder_gates(a, "rzh", "zrh"), a[:, [2, 3, 0, 1, 4, 5]])
    np.testing.assert_array_equal(
        layouts.reorder_gates(a.T, ["r", "z", "h"], "zrh", axis=0), a[:, [2, 3, 0, 1, 4, 5]].T
    )
    blocks = layouts.split_gates(a, "zrh")
    assert list(blocks) == ["z", "r", "h"] and blocks["r"].shape == (2, 2)
    np.testing.assert_array_equal(layouts.join_gates(blocks, "zrh"), a)
    with pytest.raises(ValueError, match=r"permutation of from_order"):
        layouts.reorder_gates(a, "rzh", "zrc")
    with pytest.raises(ValueError, match=r"4 equal gate blocks .* shape \(2, 6\)"):
        layouts.reorder_gates(a, "ifco", "icfo")
    with pytest.raises(ValueError, match=r"lack gates \['h'\]"):
        layouts.join_gates({"z": a, "r": a}, "zrh")
    with pytest.raises(ValueError, match=r"axis -1 must hold 3 equal gate blocks"):
        layouts.split_gates(np.zeros(13), "zrh")
    blocks["z"][...] = -1  # new arrays, as the module promises: the input is untouched
    np.testing.assert_array_equal(a, np.arange(12).reshape(2, 6))


_A, _B = np.zeros((2, 6)), np.zeros(6)


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: layouts.split_gates(_B, ""),
            r"split_gates: `order` must name one or more "
            r"distinct gates, e\.g\. 'ifco' or \['i', 'f'\]; received ''",
        ),
        (lambda: layouts.split_gates(_B, None), r"`order` must name .*; received None"),
        (lambda: layouts.split_gates(_B, "aab"), r"`order` must name .* distinct .* 'aab'"),
        (lambda: layouts.split_gates(_B, [1, 2]), r"`order` must name .*; received \[1, 2\]"),
        (
            lambda: layouts.split_gates(_A, "ab", axis=1.5),
            r"split_gates: `axis` must be an int in \[-2, 2\) for 2-D arrays; received 1\.5",
        ),
        (lambda: layouts.split_gates(_A, "ab", axis="a"), r"`axis` must be an int .* 'a'"),
        (lambda: layouts.split_gates(_A, "ab", axis=True), r"`axis` must be an int .* True"),
        (lambda: layouts.split_gates(_A, "ab", axis=2), r"`axis` must be an int .* 2\.$"),
        (
            lambda: layouts.join_gates({"a": _B, "b": _A}, "ab"),
            r"join_gates: gate blocks must have the same shape except along axis -1; "
            r"received \{'a': \(6,\), 'b': \(2, 6\)\}",
        ),
        (
            lambda: layouts.join_gates({"a": _A, "b": _A[:1]}, "ab"),
            r"same shape except along axis -1; received \{'a': \(2, 6\), 'b': \(1, 6\)\}",
        ),
        (
            lambda: layouts.join_gates({"a": _B, "b": _B}, "ab", axis=5),
            r"join_gates: `axis` must be an int in \[-1, 1\) for 1-D arrays; received 5",
        ),
        (
            lambda: layouts.join_gates([_B, _B], "ab"),
            r"join_gates: `blocks` must be a mapping \{gate: array\}; received list",
        ),
        (lambda: layouts.reorder_gates(_B, "ab", ""), r"reorder_gates: `to_order` must name"),
        (lambda: layouts.reorder_gates(_B, 3, "ab"), r"reorder_gates: `from_order` must name"),
    ],
)
def test_gate_helpers_refuse_bad_order_axis_and_blocks(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _keras_to_functions():
    return sorted(
        name
        for name in layouts.__all__
        if name.startswith("keras_") and "_to_" in name and name != "keras_to_torch_state_dict"
    )


@pytest.mark.parametrize("name", _keras_to_functions())
def test_a_bias_of_none_converts_as_zeros(name):
    """``use_bias=False`` layers give two arrays: every Keras-to-X converter takes the
    missing bias as zeros of the shape the target's maths needs."""
    kind = "lstm" if "lstm" in name else "gru" if "gru" in name else "simple_rnn"
    reset_after = kind == "gru" and not name.endswith(("keras1", "tf1"))
    k, rk, b = _keras_weights(kind, reset_after=reset_after)
    convert = getattr(layouts, name)
    without, zeros = convert(k, rk), convert(k, rk, np.zeros_like(b))
    for got, want in zip(jax.tree_util.tree_leaves(without), jax.tree_util.tree_leaves(zeros)):
        np.testing.assert_array_equal(got, want)
    sd = (
        layouts.keras_to_torch_state_dict(
            [{"forward": (k, rk)}], "rnn" if kind == "simple_rnn" else kind, bias=False
        )
        if "torch" in name
        else None
    )
    assert sd is None or sorted(sd) == ["weight_hh_l0", "weight_ih_l0"]


_INVERSES = {  # every X_to_keras converter, and the converter that makes its input
    "cudnn_lstm_to_keras": "keras_lstm_to_cudnn",
    "cudnn_gru_to_keras": "keras_gru_to_cudnn",
    "keras1_lstm_to_keras": "keras_lstm_to_keras1",
    "keras1_gru_to_keras": "keras_gru_to_keras1",
    "keras1_simple_rnn_to_keras": "keras_simple_rnn_to_keras1",
    "torch_lstm_to_keras": "keras_lstm_to_torch",
    "torch_gru_to_keras": "keras_gru_to_torch",
    "torch_rnn_to_keras": "keras_simple_rnn_to_torch",
    "flax_linen_lstm_to_keras": "keras_lstm_to_flax_linen",
    "flax_linen_gru_to_keras": "keras_gru_to_flax_linen",
    "flax_linen_simple_to_keras": "keras_simple_rnn_to_flax_linen",
    "flax_nnx_lstm_to_keras": "keras_lstm_to_flax_nnx",
    "flax_nnx_optimized_lstm_to_keras": "keras_lstm_to_flax_nnx_optimized",
    "flax_nnx_gru_to_keras": "keras_gru_to_flax_nnx",
    "flax_nnx_simple_to_keras": "keras_simple_rnn_to_flax_nnx",
    "tf1_lstm_to_keras": "keras_lstm_to_tf1",
    "tf1_gru_to_keras": "keras_gru_to_tf1",
    "tf1_rnn_to_keras": "keras_simple_rnn_to_tf1",
}


def _converter_args(name):
    """Valid float32 arguments for the public array-taking function ``name``."""
    lstm = _keras_weights("lstm")
    if name in ("keras_to_torch_state_dict", "torch_state_dict_to_keras"):
        sd = layouts.keras_to_torch_state_dict([{"forward": lstm}], "lstm")
        return ([{"forward": lstm}] if name.startswith("keras") else sd), "lstm"
    if name == "detect_keras_rnn_layout":
        return ("lstm", *lstm)
    if name in _INVERSES:
        made = getattr(layouts, _INVERSES[name])(*_converter_args(_INVERSES[name]))
        return made if isinstance(made, tuple) else (made,)  # Keras 1 list, Flax dict
    kind = "lstm" if "lstm" in name else "gru" if "gru" in name else "simple_rnn"
    k, rk, b = _keras_weights(kind, reset_after=not name.endswith(("keras1", "tf1")))
    if name == "keras_gru_to_flax_nnx":  # nnx GRUCell has no recurrent bias (flax#5594)
        b = np.stack([b[0], np.zeros_like(b[1])])
    return k, rk, b


def _cast(tree, dtype):
    if isinstance(tree, dict):
        return {key: _cast(v, dtype) for key, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cast(v, dtype) for v in tree)
    return tree.astype(dtype) if isinstance(tree, np.ndarray) else tree


_NOT_ARRAY_FUNCTIONS = {"split_gates", "join_gates", "reorder_gates", "keras1_weight_names"}
_ARRAY_FUNCTIONS = sorted(
    name
    for name in layouts.__all__
    if callable(getattr(layouts, name)) and name not in _NOT_ARRAY_FUNCTIONS
)


def test_every_converter_is_covered_by_the_dtype_test():
    assert set(_ARRAY_FUNCTIONS) == set(_keras_to_functions()) | set(_INVERSES) | {
        "keras_to_torch_state_dict",
        "torch_state_dict_to_keras",
        "detect_keras_rnn_layout",
    }


@pytest.mark.parametrize("name", _ARRAY_FUNCTIONS)
def test_every_converter_refuses_integer_weights(name):
    """Keras weights are floating point; an int array is refused, never cast (an int
    ``keras_lstm_to_cudnn`` bias used to come back as ``int(0.5 * b)``: all zeros)."""
    convert, args = getattr(layouts, name), _converter_args(name)
    convert(*args)  # the float32 arguments are valid
    with pytest.raises(
        ValueError, match=r": expected a floating-point array .*; received dtype int64"
    ):
        convert(*_cast(args, np.int64))


@pytest.mark.parametrize("dtype", [np.int32, np.bool_, np.complex64, np.str_, object])
@pytest.mark.parametrize("name", ["keras_lstm_to_cudnn", "torch_gru_to_keras"])
def test_non_float_weights_are_refused_naming_the_array(name, dtype):
    args = _converter_args(name)
    bad = (*args[:-1], args[-1].astype(dtype))  # the bias only
    which = "Keras LSTM bias (to CuDNNLSTM)" if "cudnn" in name else "torch nn.GRU bias_hh"
    with pytest.raises(ValueError, match=re.escape(which) + r".*floating-point array"):
        getattr(layouts, name)(*bad)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, jnp.bfloat16])
def test_float_weights_of_every_width_convert_and_keep_their_dtype(dtype):
    k, rk, b = (a.astype(dtype) for a in _keras_weights("lstm"))
    *kernels, cb = layouts.keras_lstm_to_cudnn(k, rk, b)
    assert all(a.dtype == dtype for a in (*kernels, cb))
    np.testing.assert_array_equal(cb.astype(np.float64), np.tile(0.5 * b.astype(np.float64), 2))


# ----------------------------------------------------------------------------- CuDNN (Keras 2)
def cudnn_reference(kind, x, weights, state):
    """What a Keras 2 CuDNN layer computes: per gate, the cuDNN ``(u, in)`` matrix stored
    row-major in an ``(in, u)`` slot, the ``(u, u)`` recurrent matrix as stored, biases
    ``b_W`` then ``b_R`` (keras 2.2.4 ``cudnn_recurrent.py``); cuDNN GRU is reset-after."""
    k, rk, b = (np.asarray(a, np.float64) for a in weights)
    g = GATES[kind]
    n_in, u = k.shape[0], rk.shape[0]
    W = [blk.reshape(u, n_in) for blk in np.hsplit(k, g)]
    R = list(np.hsplit(rk, g))
    b_w, b_r = np.split(b.reshape(2, g, u), 2)
    h = np.asarray(state[0] if kind == "lstm" else state, np.float64)
    c = np.asarray(state[1], np.float64) if kind == "lstm" else None
    ys = []
    for t in range(x.shape[1]):
        xt = np.asarray(x[:, t], np.float64)
        wx = [xt @ W[j].T + b_w[0, j] for j in range(g)]
        rh = [h @ R[j].T + b_r[0, j] for j in range(g)]
        if kind == "lstm":
            i, f, cc, o = (wx[j] + rh[j] for j in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(cc)
            h = _sigmoid(o) * np.tanh(c)
        else:
            z, r = _sigmoid(wx[0] + rh[0]), _sigmoid(wx[1] + rh[1])
            h = z * h + (1 - z) * np.tanh(wx[2] + r * rh[2])
        ys.append(h)
    return np.stack(ys, 1)


def _cudnn_weights(kind, seed=0):
    g = GATES[kind]
    return (
        _rand(F, g * U, seed=seed),
        _rand(U, g * U, seed=seed + 1),
        _rand(2 * g * U, seed=seed + 2),
    )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cudnn_conversions_equal_tf_keras_and_run_the_same(kind):
    import tf_keras
    from tf_keras.src.layers.rnn.cudnn_gru import CuDNNGRU
    from tf_keras.src.layers.rnn.cudnn_lstm import CuDNNLSTM
    from tf_keras.src.saving.legacy.hdf5_format import preprocess_weights_for_loading

    def tf_keras_convert(layer, weights):
        return preprocess_weights_for_loading(
            layer, [w.copy() for w in weights], "2.2.4", "tensorflow"
        )

    lstm = kind == "lstm"
    to_keras = layouts.cudnn_lstm_to_keras if lstm else layouts.cudnn_gru_to_keras
    to_cudnn = layouts.keras_lstm_to_cudnn if lstm else layouts.keras_gru_to_cudnn
    native = tf_keras.layers.LSTM(U) if lstm else tf_keras.layers.GRU(U, reset_after=True)
    cudnn_layer = CuDNNLSTM(U) if lstm else CuDNNGRU(U)

    cudnn = _cudnn_weights(kind)
    ours = to_keras(*cudnn)
    _assert_same(ours, tf_keras_convert(native, cudnn))
    x, state = _x(), _state(kind)
    assert_close(keras_rnn(kind, x, ours, state)[0], cudnn_reference(kind, x, cudnn, state), time=T)

    keras_w = _keras_weights(kind)
    back = to_cudnn(*keras_w)
    _assert_same(back, tf_keras_convert(cudnn_layer, keras_w))
    assert_close(
        cudnn_reference(kind, x, back, state), keras_rnn(kind, x, keras_w, state)[0], time=T
    )

    # Round trips: Keras -> cuDNN -> Keras is exact; cuDNN -> Keras -> cuDNN keeps the
    # kernels exactly (an LSTM's two bias halves come back as equal halves of their sum).
    _assert_same(to_keras(*back), keras_w)
    again = to_cudnn(*ours)
    _assert_same(again[:2], cudnn[:2])
    if lstm:
        np.testing.assert_allclose(again[2][: 4 * U] * 2, cudnn[2][: 4 * U] + cudnn[2][4 * U :])
    else:
        np.testing.assert_array_equal(again[2], cudnn[2])


def test_cudnn_refuses_reset_before_gru_and_bad_shapes():
    k, rk, b = _keras_weights("gru", reset_after=False)
    with pytest.raises(
        ValueError,
        match=r"reset_after=False\) weights \(bias shape \(15,\)\) "
        r"cannot be converted to CuDNNGRU: .*before the recurrent matmul",
    ):
        layouts.keras_gru_to_cudnn(k, rk, b)
    ck, crk, cb = _cudnn_weights("lstm")
    with pytest.raises(
        ValueError,
        match=r"CuDNNLSTM bias \(units=5\): expected shape \(40,\); "
        r"received \(39,\)",
    ):
        layouts.cudnn_lstm_to_keras(ck, crk, cb[:-1])
    with pytest.raises(
        ValueError,
        match=r"CuDNNLSTM kernel \(units=5\): expected shape "
        r"\(in, 20\); received \(3, 15\)",
    ):
        layouts.cudnn_lstm_to_keras(ck[:, :15], crk, cb)
    with pytest.raises(ValueError, match=r"recurrent_kernel: expected shape \(units, 3 \* units\)"):
        layouts.cudnn_gru_to_keras(ck, crk, cb)


@pytest.mark.parametrize(
    "kind,bias_shape,expected",
    [
        ("lstm", (40,), "cudnn"),
        ("lstm", (20,), "keras"),
        ("lstm", None, "keras"),
        ("gru", (30,), "cudnn"),
        ("gru", (2, 15), "keras"),
        ("gru", (15,), "keras_reset_before"),
    ],
)
def test_detect_keras_rnn_layout(kind, bias_shape, expected):
    g = GATES[kind]
    bias = None if bias_shape is None else np.zeros(bias_shape)
    got = layouts.detect_keras_rnn_layout(kind, np.zeros((F, g * U)), np.zeros((U, g * U)), bias)
    assert got == expected


def test_detect_keras_rnn_layout_errors():
    k, rk = np.zeros((F, 15)), np.zeros((U, 15))
    with pytest.raises(
        ValueError,
        match=r"GRU bias \(units=5\): expected one of \(30,\) "
        r"\(cudnn\), \(2, 15\) \(keras\), \(15,\) \(keras_reset_before\); "
        r"received \(3, 15\)",
    ):
        layouts.detect_keras_rnn_layout("gru", k, rk, np.zeros((3, 15)))
    with pytest.raises(
        ValueError,
        match=r"GRU kernel \(units=5\): expected shape \(in, 15\); "
        r"received \(3, 20\)",
    ):
        layouts.detect_keras_rnn_layout("gru", np.zeros((F, 20)), rk, np.zeros(15))
    with pytest.raises(ValueError, match=r"cannot be told"):
        layouts.detect_keras_rnn_layout("gru", k, rk, None)
    with pytest.raises(ValueError, match=r"kind must be 'lstm' or 'gru'"):
        layouts.detect_keras_rnn_layout("conv_lstm", k, rk, None)


# ----------------------------------------------------------------------------- Keras 1
def keras1_reference(kind, x, per_gate, state):
    """Keras 1.2.2's per-gate maths (``layers/recurrent.py``), sigmoid inner activation."""
    h = np.asarray(state[0] if kind == "lstm" else state, np.float64)
    c = np.asarray(state[1], np.float64) if kind == "lstm" else None
    w = {g: [np.asarray(a, np.float64) for a in arrays] for g, arrays in per_gate.items()}
    ys = []
    for t in range(x.shape[1]):
        xt = np.asarray(x[:, t], np.float64)
        if kind == "lstm":
            a = {g: xt @ w[g][0] + h @ w[g][1] + w[g][2] for g in "icfo"}
            c = _sigmoid(a["f"]) * c + _sigmoid(a["i"]) * np.tanh(a["c"])
            h = _sigmoid(a["o"]) * np.tanh(c)
        else:
            z = _sigmoid(xt @ w["z"][0] + w["z"][2] + h @ w["z"][1])
            r = _sigmoid(xt @ w["r"][0] + w["r"][2] + h @ w["r"][1])
            hh = np.tanh(xt @ w["h"][0] + w["h"][2] + (r * h) @ w["h"][1])
            h = z * h + (1 - z) * hh
        ys.append(h)
    return np.stack(ys, 1)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_keras1_per_gate_equals_tf_keras_and_runs_the_same(kind):
    import tf_keras
    from tf_keras.src.saving.legacy.hdf5_format import preprocess_weights_for_loading

    stored = "icfo" if kind == "lstm" else "zrh"
    per_gate = {
        g: (_rand(F, U, seed=3 * j), _rand(U, U, seed=3 * j + 1), _rand(U, seed=3 * j + 2))
        for j, g in enumerate(stored)
    }
    arrays = [a for g in stored for a in per_gate[g]]  # Keras 1 storage order
    to_keras = layouts.keras1_lstm_to_keras if kind == "lstm" else layouts.keras1_gru_to_keras
    ours = to_keras(arrays)
    target = (
        tf_keras.layers.LSTM(U) if kind == "lstm" else tf_keras.layers.GRU(U, reset_after=False)
    )
    _assert_same(ours, preprocess_weights_for_loading(target, list(arrays), "1", "theano"))
    x, state = _x(), _state(kind)
    assert_close(
        keras_rnn(kind, x, ours, state)[0], keras1_reference(kind, x, per_gate, state), time=T
    )

    # Named (dict) form, in any order, with TF's ":0" and a scope prefix.
    names = layouts.keras1_weight_names(kind, f"{kind}_1")
    named = {f"model/{n}:0": a for n, a in reversed(list(zip(names, arrays)))}
    _assert_same(to_keras(named), ours)
    # And back.
    to_keras1 = layouts.keras_lstm_to_keras1 if kind == "lstm" else layouts.keras_gru_to_keras1
    _assert_same(to_keras1(*ours), arrays)
    # Three fused arrays (consume_less='gpu') are already the Keras layout.
    _assert_same(to_keras(list(ours)), ours)
    _assert_same(
        to_keras({f"{kind}_1_W": ours[0], f"{kind}_1_U": ours[1], f"{kind}_1_b": ours[2]}), ours
    )


def test_keras1_simple_rnn_and_errors():
    w = _keras_weights("simple_rnn")
    _assert_same(
        layouts.keras1_simple_rnn_to_keras(
            {"simplernn_1_W": w[0], "simplernn_1_U": w[1], "simplernn_1_b": w[2]}
        ),
        w,
    )
    _assert_same(layouts.keras_simple_rnn_to_keras1(*w), w)
    assert layouts.keras1_weight_names("lstm", "l")[:6] == [
        "l_W_i",
        "l_U_i",
        "l_b_i",
        "l_W_c",
        "l_U_c",
        "l_b_c",
    ]
    with pytest.raises(ValueError, match=r"Keras 1 LSTM: expected 3 or 12 arrays .*; received 9"):
        layouts.keras1_lstm_to_keras([np.zeros((U, U))] * 9)
    with pytest.raises(ValueError, match=r"expected weights named .*received \['gru_1_W_z'\]"):
        layouts.keras1_gru_to_keras({"gru_1_W_z": np.zeros((F, U))})
    arrays = [a for j in range(3) for a in (_rand(F, U), _rand(U, U), _rand(U))]
    arrays[4] = _rand(U, U + 1)
    with pytest.raises(
        ValueError, match=r"Keras 1 GRU U_r: expected shape \(5, 5\); received \(5, 6\)"
    ):
        layouts.keras1_gru_to_keras(arrays)
    k, rk, b = _keras_weights("gru", reset_after=True)
    with pytest.raises(
        ValueError,
        match=r"reset_after=True\) weights .* cannot be converted to "
        r"Keras 1, which computes the reset-before GRU",
    ):
        layouts.keras_gru_to_keras1(k, rk, b)


# ----------------------------------------------------------------------------- PyTorch
_TORCH = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def _torch_module(kind, nonlinearity="tanh", **kwargs):
    torch.manual_seed(0)
    extra = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    return _TORCH[kind](F, U, batch_first=True, **extra, **kwargs).double()


def _torch_run(module, kind, x, h0, c0=None):
    with torch.no_grad():
        hx = (
            (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else torch.from_numpy(h0)
        )
        return module(torch.from_numpy(x), hx)[0].numpy()


_CASES = [("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"), ("rnn", "relu")]


@pytest.mark.parametrize("kind,nonlinearity", _CASES)
@pytest.mark.parametrize("num_layers,bidirectional,bias", [(2, True, True), (1, False, False)])
def test_torch_state_dict_to_keras(kind, nonlinearity, num_layers, bidirectional, bias):
    module = _torch_module(
        kind, nonlinearity, num_layers=num_layers, bidirectional=bidirectional, bias=bias
    )
    dirs = 2 if bidirectional else 1
    x = _x().astype(np.float64)
    h0 = _rand(num_layers * dirs, B, U, seed=30).astype(np.float64)
    c0 = _rand(num_layers * dirs, B, U, seed=31).astype(np.float64)
    expected = _torch_run(module, kind, x, h0, c0)
    layers = layouts.torch_state_dict_to_keras(module.state_dict(), kind, num_layers, bidirectional)
    assert len(layers) == num_layers
    assert all(
        set(e) == ({"forward", "backward"} if bidirectional else {"forward"}) for e in layers
    )
    base = "simple_rnn" if kind == "rnn" else kind
    act = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0.0))
    got = stacked_reference(base, x, layers, h0, c0, activation=act)
    assert_close(got, expected, time=T)


@pytest.mark.parametrize("kind,nonlinearity", _CASES)
def test_keras_to_torch_state_dict_loads_strictly_and_runs_the_same(kind, nonlinearity):
    base = "simple_rnn" if kind == "rnn" else kind
    layers = [
        {
            d: _keras_weights(base, n_in=F if layer == 0 else 2 * U, seed=10 * layer + 5 * j)
            for j, d in enumerate(("forward", "backward"))
        }
        for layer in range(2)
    ]
    sd = layouts.keras_to_torch_state_dict(layers, kind)
    module = _torch_module(kind, nonlinearity, num_layers=2, bidirectional=True).float()
    assert list(sd) == list(module.state_dict())  # PyTorch's own key order
    module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    module.double()
    x = _x().astype(np.float64)
    h0, c0 = _rand(4, B, U, seed=30).astype(np.float64), _rand(4, B, U, seed=31).astype(np.float64)
    act = np.tanh if nonlinearity == "tanh" else (lambda v: np.maximum(v, 0.0))
    assert_close(
        _torch_run(module, kind, x, h0, c0), stacked_reference(base, x, layers, h0, c0, act), time=T
    )
    # Back to Keras: GRU is exact; LSTM/RNN biases come back summed (bias_hh was zeros).
    _assert_same(layouts.torch_state_dict_to_keras(sd, kind)[1]["backward"], layers[1]["backward"])


def test_torch_single_layer_functions_and_bias_split():
    k, rk, b = _keras_weights("lstm")
    w_ih, w_hh, b_ih, b_hh = layouts.keras_lstm_to_torch(k, rk, b)
    assert w_ih.shape == (4 * U, F) and w_ih.flags.c_contiguous
    np.testing.assert_array_equal(b_ih, b)
    np.testing.assert_array_equal(b_hh, np.zeros_like(b))
    _assert_same(layouts.torch_lstm_to_keras(w_ih, w_hh, b_ih, b_hh), (k, rk, b))
    g = _keras_weights("gru")
    w = layouts.keras_gru_to_torch(*g)
    np.testing.assert_array_equal(w[0][:U], g[0][:, U : 2 * U].T)  # torch r first
    _assert_same(layouts.torch_gru_to_keras(*w), g)
    s = _keras_weights("simple_rnn")
    _assert_same(layouts.torch_rnn_to_keras(*layouts.keras_simple_rnn_to_torch(*s)), s)
    doubled = tuple(a.astype(np.float64) for a in g)  # dtype is kept
    _assert_same(layouts.torch_gru_to_keras(*layouts.keras_gru_to_torch(*doubled)), doubled)


def test_torch_errors():
    gk, grk, gb = _keras_weights("gru", reset_after=False)
    reason = r"reset_after=False\) weights .* cannot be converted to torch nn.GRU: .*reset gate"
    with pytest.raises(ValueError, match=reason):
        layouts.keras_gru_to_torch(gk, grk, gb)
    with pytest.raises(ValueError, match=reason):
        layouts.keras_to_torch_state_dict([{"forward": (gk, grk, gb)}], "gru")
    with pytest.raises(ValueError, match=r"weight_hr_l0 of shape \(2, 5\).*proj_size"):
        layouts.torch_state_dict_to_keras(torch.nn.LSTM(F, U, proj_size=2).state_dict(), "lstm")
    sd = torch.nn.LSTM(F, U, num_layers=2).state_dict()
    with pytest.raises(ValueError, match=r"num_layers=3 expected; the state dict has 2 layers"):
        layouts.torch_state_dict_to_keras(sd, "lstm", num_layers=3)
    with pytest.raises(ValueError, match=r"bidirectional=True expected; .* unidirectional"):
        layouts.torch_state_dict_to_keras(sd, "lstm", bidirectional=True)
    with pytest.raises(ValueError, match=r"unexpected keys \['lstm.weight_ih_l0'\].*prefix"):
        layouts.torch_state_dict_to_keras({"lstm.weight_ih_l0": sd["weight_ih_l0"]}, "lstm")
    with pytest.raises(
        ValueError,
        match=r"nn.GRU weight_hh: expected shape \(3 \* hidden, hidden\); "
        r"received \(20, 5\)",
    ):
        layouts.torch_state_dict_to_keras(sd, "gru")
    with pytest.raises(ValueError, match=r"kind must be one of \['gru', 'lstm', 'rnn'\]"):
        layouts.torch_state_dict_to_keras(sd, "simple_rnn")
    with pytest.raises(
        ValueError, match=r"layer 1 forward kernel has 3 input features; expected 5"
    ):
        layouts.keras_to_torch_state_dict([{"forward": _keras_weights("lstm")}] * 2, "lstm")
    with pytest.raises(ValueError, match=r"bias=False, but layer l0 has a non-zero Keras bias"):
        layouts.keras_to_torch_state_dict([{"forward": _keras_weights("lstm")}], "lstm", bias=False)
    with pytest.raises(
        ValueError,
        match=r"Keras LSTM bias \(to torch nn.LSTM, units=5\): expected "
        r"shape \(20,\); received \(2, 20\)",
    ):
        layouts.keras_lstm_to_torch(*_keras_weights("lstm")[:2], np.zeros((2, 20)))
    with pytest.raises(ValueError, match=r"state_dict must be a mapping .*module.state_dict\(\)"):
        layouts.torch_state_dict_to_keras(torch.nn.LSTM(F, U), "lstm")
    with pytest.raises(ValueError, match=r"layers must be a list with one mapping per layer"):
        layouts.keras_to_torch_state_dict({"forward": _keras_weights("lstm")}, "lstm")
    proj = torch.nn.LSTM(F, U, proj_size=2)
    with pytest.raises(ValueError, match=r"received \(20, 2\) \(a proj_size > 0 module"):
        layouts.torch_lstm_to_keras(proj.weight_ih_l0, proj.weight_hh_l0)


_LSTM_SD = {  # a one-layer nn.LSTM state dict
    "weight_ih_l0": np.zeros((4 * U, F), np.float32),
    "weight_hh_l0": np.zeros((4 * U, U), np.float32),
}


@pytest.mark.parametrize(
    "call,message",
    [
        *(
            (
                lambda v=v: layouts.torch_state_dict_to_keras(_LSTM_SD, "lstm", num_layers=v),
                r"torch_state_dict_to_keras: `num_layers` must be a positive integer; "
                rf"received {re.escape(repr(v))}\.",
            )
            for v in ("1", 1.0, 0, True)
        ),
        (
            lambda: layouts.torch_state_dict_to_keras(_LSTM_SD, "lstm", bidirectional="no"),
            r"torch_state_dict_to_keras: `bidirectional` must be a bool; received 'no'",
        ),
        *(
            (
                lambda v=v: layouts.keras_to_torch_state_dict(
                    [{"forward": _keras_weights("lstm")}], "lstm", bias=v
                ),
                rf"keras_to_torch_state_dict: `bias` must be a bool; received {v!r}",
            )
            for v in ("no", 1, None)
        ),
        (
            lambda: layouts.keras_to_torch_state_dict([_keras_weights("lstm")], "lstm"),
            r"keras_to_torch_state_dict: layer 0 must be a mapping \{'forward': \(kernel, "
            r"recurrent_kernel, bias\)\} \(plus 'backward'\); received tuple",
        ),
        *(
            (
                lambda v=v: layouts.keras_to_torch_state_dict([{"forward": v}], "lstm"),
                r"keras_to_torch_state_dict: layer 0 forward must be \(kernel, "
                r"recurrent_kernel, bias\), or \(kernel, recurrent_kernel\) for a "
                rf"use_bias=False layer; received {message}\.",
            )
            for v, message in [
                (_keras_weights("lstm")[:1], "a tuple of length 1"),
                ((*_keras_weights("lstm"), None), "a tuple of length 4"),
                (np.zeros((3, 4)), "a ndarray"),
                ({"kernel": np.zeros(3)}, "a dict"),
            ]
        ),
    ],
)
def test_torch_state_dict_arguments_are_checked(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_keras_to_torch_state_dict_takes_a_use_bias_false_layer_as_zero_biases():
    k, rk, b = _keras_weights("lstm")
    sd = layouts.keras_to_torch_state_dict([{"forward": (k, rk)}], "lstm")
    np.testing.assert_array_equal(sd["bias_ih_l0"], np.zeros_like(b))
    _assert_same(
        sd.values(),
        layouts.keras_to_torch_state_dict([{"forward": (k, rk, None)}], "lstm").values(),
    )


def test_torch_bfloat16_weights_keep_their_dtype():
    module = torch.nn.GRU(F, U).to(torch.bfloat16)
    ((k, rk, b),) = (
        layer["forward"] for layer in layouts.torch_state_dict_to_keras(module.state_dict(), "gru")
    )
    assert k.dtype == jnp.bfloat16 and b.shape == (2, 3 * U)
    want = layouts.torch_gru_to_keras(*(p.detach().float() for p in module.parameters()))
    for got, expected in zip((k, rk, b), want):
        np.testing.assert_array_equal(got.astype(np.float32), expected)


# ----------------------------------------------------------------------------- Flax
def _random_tree(tree, seed):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return jax.tree_util.tree_unflatten(
        treedef, [_rand(*np.shape(leaf), seed=seed + j) for j, leaf in enumerate(leaves)]
    )


def _shapes(tree):
    return jax.tree_util.tree_map(np.shape, tree)


def _flax_carry(kind, state):
    if kind == "lstm":  # Flax carries (c, h); Keras states are (h, c)
        return jnp.asarray(state[1]), jnp.asarray(state[0])
    return jnp.asarray(state)


def _run_flax(step, kind, x, state):
    carry, ys = _flax_carry(kind, state), []
    for t in range(x.shape[1]):
        carry, y = step(carry, jnp.asarray(x[:, t]))
        ys.append(np.asarray(y))
    return np.stack(ys, 1)


_LINEN = [
    (
        "lstm",
        linen.LSTMCell,
        {},
        layouts.flax_linen_lstm_to_keras,
        layouts.keras_lstm_to_flax_linen,
    ),
    (
        "lstm",
        linen.OptimizedLSTMCell,
        {},
        layouts.flax_linen_lstm_to_keras,
        layouts.keras_lstm_to_flax_linen,
    ),
    ("gru", linen.GRUCell, {}, layouts.flax_linen_gru_to_keras, layouts.keras_gru_to_flax_linen),
    (
        "simple_rnn",
        linen.SimpleCell,
        {},
        layouts.flax_linen_simple_to_keras,
        layouts.keras_simple_rnn_to_flax_linen,
    ),
    (
        "simple_rnn",
        linen.SimpleCell,
        {"residual": True},
        layouts.flax_linen_simple_to_keras,
        layouts.keras_simple_rnn_to_flax_linen,
    ),
]


@pytest.mark.parametrize(
    "kind,cls,kw,to_keras,from_keras", _LINEN, ids=lambda v: getattr(v, "__name__", None)
)
def test_flax_linen_cells_both_ways(kind, cls, kw, to_keras, from_keras):
    cell = cls(features=U, **kw)
    x, state = _x(), _state(kind)
    init = cell.init(jax.random.key(0), _flax_carry(kind, state), jnp.asarray(x[:, 0]))["params"]
    extra = {"residual": True} if kw else {}

    def step(params):
        return lambda carry, xt: cell.apply({"params": params}, carry, xt)

    # Flax -> Keras: random Flax params (non-zero biases everywhere).
    params = _random_tree(init, seed=40)
    keras_w = to_keras({"params": params}, **extra)
    assert_close(
        keras_rnn(kind, x, keras_w, state)[0], _run_flax(step(params), kind, x, state), time=T
    )
    # Keras -> Flax: the same parameter tree as Flax's own init, and the same outputs.
    keras_w = _keras_weights(kind, seed=50)
    params = from_keras(*keras_w, **extra)
    assert _shapes(params) == _shapes(jax.tree_util.tree_map(np.asarray, dict(init)))
    assert_close(
        _run_flax(step(params), kind, x, state), keras_rnn(kind, x, keras_w, state)[0], time=T
    )
    # Round trip Flax -> Keras -> Flax is exact (residual: up to adding/subtracting I).
    params = _random_tree(init, seed=60)
    again = from_keras(*to_keras(params, **extra), **extra)
    jax.tree_util.tree_map(
        (lambda a, e: np.testing.assert_allclose(a, e, atol=1e-6))
        if kw
        else np.testing.assert_array_equal,
        again,
        params,
    )


def _nnx_set(cell, pure):
    state = nnx.state(cell, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(cell, state)


_NNX = [
    ("lstm", nnx.LSTMCell, {}, layouts.flax_nnx_lstm_to_keras, layouts.keras_lstm_to_flax_nnx),
    (
        "lstm",
        nnx.OptimizedLSTMCell,
        {},
        layouts.flax_nnx_optimized_lstm_to_keras,
        layouts.keras_lstm_to_flax_nnx_optimized,
    ),
    ("gru", nnx.GRUCell, {}, layouts.flax_nnx_gru_to_keras, layouts.keras_gru_to_flax_nnx),
    (
        "simple_rnn",
        nnx.SimpleCell,
        {},
        layouts.flax_nnx_simple_to_keras,
        layouts.keras_simple_rnn_to_flax_nnx,
    ),
    (
        "simple_rnn",
        nnx.SimpleCell,
        {"residual": True},
        layouts.flax_nnx_simple_to_keras,
        layouts.keras_simple_rnn_to_flax_nnx,
    ),
]


@pytest.mark.parametrize(
    "kind,cls,kw,to_keras,from_keras", _NNX, ids=lambda v: getattr(v, "__name__", None)
)
def test_flax_nnx_cells_both_ways(kind, cls, kw, to_keras, from_keras):
    cell = cls(F, U, rngs=nnx.Rngs(0), **kw)
    x, state = _x(), _state(kind)
    pure = nnx.to_pure_dict(nnx.state(cell, nnx.Param))
    # nnx -> Keras, with the state as a pure dict and as the nnx.State itself.
    _nnx_set(cell, _random_tree(pure, seed=40))
    expected = _run_flax(cell, kind, x, state)
    keras_w = to_keras(nnx.to_pure_dict(nnx.state(cell, nnx.Param)), **kw)
    assert_close(keras_rnn(kind, x, keras_w, state)[0], expected, time=T)
    _assert_same(to_keras(nnx.state(cell, nnx.Param), **kw), keras_w)
    # Keras -> nnx.
    keras_w = list(_keras_weights(kind, seed=50))
    if kind == "gru":  # nnx.GRUCell has no recurrent candidate bias (flax#5594)
        keras_w[2][1, 2 * U :] = 0.0
    params = from_keras(*keras_w, **kw)
    assert _shapes(params) == _shapes(pure)
    _nnx_set(cell, params)
    assert_close(_run_flax(cell, kind, x, state), keras_rnn(kind, x, keras_w, state)[0], time=T)


def test_flax_refusals():
    k, rk, b = _keras_weights("gru")
    with pytest.raises(ValueError, match=r"bias\[1, 10:\] is non-zero .* no recurrent bias .*5594"):
        layouts.keras_gru_to_flax_nnx(k, rk, b)
    reset_before = _keras_weights("gru", reset_after=False)
    for convert in (layouts.keras_gru_to_flax_nnx, layouts.keras_gru_to_flax_linen):
        with pytest.raises(
            ValueError,
            match=r"GRU\(reset_after=False\) weights .* cannot be "
            r"converted to Flax .*GRUCell: .*before the recurrent matmul",
        ):
            convert(*reset_before)
    params = layouts.keras_lstm_to_flax_linen(*_keras_weights("lstm"))
    del params["hf"]
    with pytest.raises(ValueError, match=r"LSTMCell modules: .*\(missing \['hf'\]\)"):
        layouts.flax_linen_lstm_to_keras(params)
    params = layouts.keras_lstm_to_flax_nnx(*_keras_weights("lstm"))
    params["if_"]["kernel"] = np.zeros((F, U + 1))
    with pytest.raises(
        ValueError,
        match=r"nnx LSTMCell if_.kernel: expected shape \(in, 5\); "
        r"received \(3, 6\)",
    ):
        layouts.flax_nnx_lstm_to_keras(params)


def _set(tree, path, value):
    tree = copy.deepcopy(tree)
    *parents, last = path
    node = tree
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return tree


_ONES = np.ones(U, np.float32)
_LINEN_LSTM_MODULES = r"\['ii', 'if', 'ig', 'io', 'hi', 'hf', 'hg', 'ho'\]"


@pytest.mark.parametrize(
    "to_keras,path,value,message",
    [
        (
            "flax_linen_lstm_to_keras",
            ("ii", "bias"),
            _ONES,
            r"Flax linen LSTMCell ii: expected exactly \['kernel'\]; received "
            r"\['bias', 'kernel'\] \(unexpected \['bias'\]\)",
        ),
        (
            "flax_linen_lstm_to_keras",
            ("extra",),
            {"kernel": _ONES},
            rf"Flax linen LSTMCell modules: expected exactly {_LINEN_LSTM_MODULES}; "
            r"received \[.*'extra'.*\] \(unexpected \['extra'\]\)",
        ),
        (
            "flax_linen_lstm_to_keras",
            ("hf",),
            None,
            r"LSTMCell modules: expected exactly .*\(missing \['hf'\]\)",
        ),
        (
            "flax_linen_lstm_to_keras",
            ("ho",),
            _ONES,
            r"Flax linen LSTMCell ho: expected a mapping with keys \['kernel', 'bias'\]; "
            r"received ndarray",
        ),
        (
            "flax_nnx_lstm_to_keras",
            ("hi", "bias"),
            None,
            r"nnx LSTMCell hi: .*\(missing \['bias'\]\)",
        ),
        (
            "flax_nnx_optimized_lstm_to_keras",
            ("dense_i", "bias"),
            _ONES,
            r"dense_i: .*unexpected \['bias'\]",
        ),
        (
            "flax_linen_gru_to_keras",
            ("hz", "bias"),
            _ONES,
            r"linen GRUCell hz: .*unexpected \['bias'\]",
        ),
        (
            "flax_nnx_gru_to_keras",
            ("dense_h", "bias"),
            _ONES,
            r"nnx GRUCell dense_h: .*unexpected \['bias'\]",
        ),
        (
            "flax_linen_simple_to_keras",
            ("h", "bias"),
            _ONES,
            r"linen SimpleCell h: .*unexpected \['bias'\]",
        ),
        (
            "flax_nnx_simple_to_keras",
            ("dense_x",),
            {},
            r"nnx SimpleCell modules: .*unexpected \['dense_x'\]",
        ),
    ],
)
def test_flax_params_must_hold_exactly_the_cells_parameters(to_keras, path, value, message):
    """A parameter the converter does not read (``hz.bias``, an extra module) raises
    rather than being dropped: the cell it came from computes something else."""
    params = _converter_args(to_keras)[0]
    getattr(layouts, to_keras)(params)
    with pytest.raises(ValueError, match=message):
        getattr(layouts, to_keras)(_set(params, path, value))
    with pytest.raises(ValueError, match=message):  # linen's {"params": ...} variables too
        getattr(layouts, to_keras)({"params": _set(params, path, value)})


@pytest.mark.parametrize("value", ["no", 1, None])
@pytest.mark.parametrize(
    "name",
    [
        "flax_linen_simple_to_keras",
        "flax_nnx_simple_to_keras",
        "keras_simple_rnn_to_flax_linen",
        "keras_simple_rnn_to_flax_nnx",
    ],
)
def test_residual_must_be_a_bool(name, value):
    cell = "linen" if "linen" in name else "nnx"
    with pytest.raises(
        ValueError, match=rf"Flax {cell} SimpleCell: `residual` must be a bool; received {value!r}"
    ):
        getattr(layouts, name)(*_converter_args(name), residual=value)


# ----------------------------------------------------------------------------- TF1
def _tf1_cells():
    from tf_keras.src.layers.rnn import legacy_cells

    return legacy_cells


def _tf1_run(cell, kind, x, state, weights):
    import tensorflow as tf

    cells = _tf1_cells()
    if kind == "lstm":
        tf_state = cells.LSTMStateTuple(tf.constant(state[1]), tf.constant(state[0]))  # (c, h)
    else:
        tf_state = tf.constant(state)
    cell(tf.constant(x[:, 0]), tf_state)  # build
    cell.set_weights([np.asarray(w) for w in weights])
    ys = []
    for t in range(x.shape[1]):
        y, tf_state = cell(tf.constant(x[:, t]), tf_state)
        ys.append(y.numpy())
    return np.stack(ys, 1)


@pytest.mark.parametrize(
    "cell_name,forget_bias", [("LSTMCell", 1.0), ("LSTMCell", 0.3), ("BasicLSTMCell", 1.0)]
)
def test_tf1_lstm_both_ways(cell_name, forget_bias):
    cls = getattr(_tf1_cells(), cell_name)
    x, state = _x(), _state("lstm")
    tf1 = (_rand(F + U, 4 * U, seed=70), _rand(4 * U, seed=71))
    expected = _tf1_run(cls(U, forget_bias=forget_bias), "lstm", x, state, tf1)
    keras_w = layouts.tf1_lstm_to_keras(*tf1, input_size=F, forget_bias=forget_bias)
    assert_close(keras_rnn("lstm", x, keras_w, state)[0], expected, time=T)

    keras_w = _keras_weights("lstm", seed=80)
    tf1 = layouts.keras_lstm_to_tf1(*keras_w, forget_bias=forget_bias)
    got = _tf1_run(cls(U, forget_bias=forget_bias), "lstm", x, state, tf1)
    assert_close(got, keras_rnn("lstm", x, keras_w, state)[0], time=T)
    back = layouts.tf1_lstm_to_keras(*tf1, forget_bias=forget_bias)
    _assert_same(back[:2], keras_w[:2])
    np.testing.assert_allclose(back[2], keras_w[2], atol=1e-7)
    _assert_same(
        layouts.tf1_lstm_to_keras(*layouts.keras_lstm_to_tf1(*keras_w, 0.0), None, 0.0), keras_w
    )


@pytest.mark.parametrize("kind", ["gru", "simple_rnn"])
def test_tf1_gru_and_basic_rnn_both_ways(kind):
    cells = _tf1_cells()
    cls = cells.GRUCell if kind == "gru" else cells.BasicRNNCell
    to_keras = layouts.tf1_gru_to_keras if kind == "gru" else layouts.tf1_rnn_to_keras
    from_keras = layouts.keras_gru_to_tf1 if kind == "gru" else layouts.keras_simple_rnn_to_tf1
    x, state = _x(), _state(kind)
    shapes = [(F + U, 2 * U), (2 * U,), (F + U, U), (U,)] if kind == "gru" else [(F + U, U), (U,)]
    tf1 = [_rand(*s, seed=70 + j) for j, s in enumerate(shapes)]
    expected = _tf1_run(cls(U), kind, x, state, tf1)
    keras_w = to_keras(*tf1)
    assert keras_w[2].shape == (GATES[kind] * U,)  # GRU: reset_after=False
    assert_close(keras_rnn(kind, x, keras_w, state)[0], expected, time=T)
    _assert_same(from_keras(*keras_w), tf1)

    keras_w = _keras_weights(kind, reset_after=False, seed=80)
    got = _tf1_run(cls(U), kind, x, state, from_keras(*keras_w))
    assert_close(got, keras_rnn(kind, x, keras_w, state)[0], time=T)
    _assert_same(to_keras(*from_keras(*keras_w)), keras_w)


@pytest.mark.parametrize("value", [None, "1", "a", True, float("nan"), float("inf"), [1.0, 2.0]])
@pytest.mark.parametrize("name", ["tf1_lstm_to_keras", "keras_lstm_to_tf1"])
def test_tf1_forget_bias_must_be_a_finite_real_number(name, value):
    with pytest.raises(
        ValueError,
        match=rf"{name}: `forget_bias` must be a finite real number such as 1\.0; "
        rf"received {re.escape(repr(value))}\.",
    ):
        getattr(layouts, name)(*_converter_args(name), forget_bias=value)


def test_tf1_forget_bias_takes_ints_and_numpy_scalars():
    tf1 = _converter_args("tf1_lstm_to_keras")
    _assert_same(
        layouts.tf1_lstm_to_keras(*tf1, forget_bias=np.float32(0.5)),
        layouts.tf1_lstm_to_keras(*tf1, forget_bias=0.5),
    )
    _assert_same(
        layouts.keras_lstm_to_tf1(*_keras_weights("lstm"), forget_bias=2),
        layouts.keras_lstm_to_tf1(*_keras_weights("lstm"), forget_bias=2.0),
    )


@pytest.mark.parametrize("value", ["3", 2.5, 0])
@pytest.mark.parametrize("name", ["tf1_lstm_to_keras", "tf1_gru_to_keras", "tf1_rnn_to_keras"])
def test_tf1_input_size_must_be_a_positive_int(name, value):
    with pytest.raises(
        ValueError,
        match=rf"{name}: `input_size` must be a positive integer; received {value!r}\.",
    ):
        getattr(layouts, name)(*_converter_args(name), input_size=value)


def test_tf1_errors():
    with pytest.raises(
        ValueError,
        match=r"reset_after=True\) weights \(bias shape \(2, 15\)\) "
        r"cannot be converted to TF1 GRUCell, which computes the reset-before GRU",
    ):
        layouts.keras_gru_to_tf1(*_keras_weights("gru"))
    with pytest.raises(
        ValueError,
        match=r"TF1 LSTMCell kernel \(units=5\): expected shape "
        r"\(4 \+ 5, 20\); received \(8, 20\)",
    ):
        layouts.tf1_lstm_to_keras(np.zeros((F + U, 4 * U)), np.zeros(4 * U), input_size=4)
    with pytest.raises(
        ValueError,
        match=r"TF1 LSTMCell bias: expected shape \(4 \* units,\); "
        r"received \(19,\)",
    ):
        layouts.tf1_lstm_to_keras(np.zeros((F + U, 4 * U)), np.zeros(19))
    with pytest.raises(
        ValueError,
        match=r"TF1 GRUCell candidate/kernel \(units=5\): expected "
        r"shape \(3 \+ 5, 5\); received \(9, 5\)",
    ):
        layouts.tf1_gru_to_keras(np.zeros((8, 10)), np.zeros(10), np.zeros((9, 5)), np.zeros(5))


# ----------------------------------------------------------------------------- module hygiene
def test_layouts_module_imports_numpy_only():
    tree = ast.parse(Path(layouts.__file__).read_text())
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "collections", "numbers", "re", "typing", "numpy"}, imported


def test_layouts_public_names_documented_and_examples_run():
    for name in layouts.__all__:
        obj = getattr(layouts, name)
        if callable(obj):
            assert inspect.getdoc(obj), f"importers.layouts.{name} has no docstring"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = doctest.DocTestFinder(exclude_empty=True).find(layouts, "importers.layouts")
    assert sum(len(t.examples) for t in tests) >= 8
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
