"""Gate-layout conversions between Keras (jrnn's layout) and the layouts found in the wild.

Pure NumPy on bare arrays; every function returns new arrays and raises ``ValueError``
naming the expected and received shapes. The Keras layout (Keras 2/3, jrnn):

| layer | kernel | recurrent kernel | bias | gates |
|---|---|---|---|---|
| LSTM | ``(in, 4u)`` | ``(u, 4u)`` | ``(4u,)`` | i, f, c, o |
| GRU reset_after=True | ``(in, 3u)`` | ``(u, 3u)`` | ``(2, 3u)`` (input, recurrent) | z, r, h |
| GRU reset_after=False | ``(in, 3u)`` | ``(u, 3u)`` | ``(3u,)`` | z, r, h |
| SimpleRNN | ``(in, u)`` | ``(u, u)`` | ``(u,)`` | — |

Other layouts (sources in ``../shared/reference/keras-rnn-facts.md`` §3.5 and §4):

* Keras 2 CuDNNLSTM/CuDNNGRU: per-gate cuDNN matrices stored row-major in Keras-shaped
  slots, biases doubled (``(8u,)``/``(6u,)``); Keras 2's ``_convert_rnn_weights`` rules.
* Keras 1 per-gate weights: LSTM stored i, c, f, o as ``W_*, U_*, b_*``; GRU z, r, h
  (reset-before maths).
* PyTorch ``nn.LSTM`` (i, f, g, o; ``weight_ih (4u, in)``, ``weight_hh``, two biases),
  ``nn.GRU`` (r, z, n; reset-after maths), ``nn.RNN``.
* Flax NNX ``OptimizedLSTMCell`` (identical to Keras LSTM) and linen ``GRUCell``
  (r, z, n per-gate dense params with ``b_hn``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Arrays = tuple[np.ndarray, ...]


def _check(array: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    a = np.asarray(array)
    if a.shape != tuple(shape):
        raise ValueError(f"{what}: expected shape {tuple(shape)}; received {a.shape}.")
    return a


def reorder_gates(
    array: np.ndarray, from_order: Sequence[str], to_order: Sequence[str], axis: int = -1
) -> np.ndarray:
    """Permute equal gate blocks along ``axis`` from ``from_order`` to ``to_order``."""
    if sorted(from_order) != sorted(to_order):
        raise ValueError(f"reorder_gates: {from_order} and {to_order} name different gates.")
    blocks = np.split(np.asarray(array), len(from_order), axis=axis)
    index = {g: b for g, b in zip(from_order, blocks)}
    return np.concatenate([index[g] for g in to_order], axis=axis)


def _units(recurrent_kernel: np.ndarray, gates: int, what: str) -> int:
    rk = np.asarray(recurrent_kernel)
    if rk.ndim != 2 or rk.shape[1] != gates * rk.shape[0]:
        raise ValueError(f"{what}: recurrent kernel must be (u, {gates}u); received {rk.shape}.")
    return rk.shape[0]


# ----------------------------------------------------------------------------- CuDNN (Keras 2)
def cudnn_lstm_to_keras(kernel, recurrent_kernel, bias) -> Arrays:
    """Keras 2 CuDNNLSTM weights -> LSTM (Keras 2's ``_convert_rnn_weights``)."""
    u = _units(recurrent_kernel, 4, "CuDNNLSTM")
    n_in = np.asarray(kernel).shape[0]
    k = _check(kernel, (n_in, 4 * u), "CuDNNLSTM kernel")
    b = _check(bias, (8 * u,), "CuDNNLSTM bias")
    kernel = np.concatenate([blk.T.reshape(blk.shape, order="F") for blk in np.hsplit(k, 4)], 1)
    recurrent = np.concatenate([blk.T for blk in np.hsplit(np.asarray(recurrent_kernel), 4)], 1)
    return kernel, recurrent, b[: 4 * u] + b[4 * u :]


def keras_lstm_to_cudnn(kernel, recurrent_kernel, bias) -> Arrays:
    """LSTM weights -> Keras 2 CuDNNLSTM (bias split in two equal halves, as Keras 2)."""
    u = _units(recurrent_kernel, 4, "LSTM")
    k = np.asarray(kernel)
    b = _check(bias, (4 * u,), "LSTM bias")
    kernel = np.concatenate([blk.T.reshape(blk.shape, order="C") for blk in np.hsplit(k, 4)], 1)
    recurrent = np.concatenate([blk.T for blk in np.hsplit(np.asarray(recurrent_kernel), 4)], 1)
    return kernel, recurrent, np.tile(0.5 * b, 2)


def cudnn_gru_to_keras(kernel, recurrent_kernel, bias) -> Arrays:
    """Keras 2 CuDNNGRU weights -> GRU(reset_after=True)."""
    u = _units(recurrent_kernel, 3, "CuDNNGRU")
    b = _check(bias, (6 * u,), "CuDNNGRU bias")
    k = np.asarray(kernel)
    kernel = np.concatenate([blk.T.reshape(blk.shape, order="F") for blk in np.hsplit(k, 3)], 1)
    recurrent = np.concatenate([blk.T for blk in np.hsplit(np.asarray(recurrent_kernel), 3)], 1)
    return kernel, recurrent, b.reshape(2, 3 * u)


def keras_gru_to_cudnn(kernel, recurrent_kernel, bias) -> Arrays:
    """GRU(reset_after=True) weights -> Keras 2 CuDNNGRU. A reset-before GRU (bias (3u,))
    is refused: its maths (reset gate before the recurrent matmul) has no cuDNN form."""
    u = _units(recurrent_kernel, 3, "GRU")
    b = np.asarray(bias)
    if b.shape == (3 * u,):
        raise ValueError(
            "GRU(reset_after=False) cannot be converted to CuDNNGRU: cuDNN applies the reset "
            "gate after the recurrent matmul (Keras 2 refuses this conversion too)."
        )
    b = _check(b, (2, 3 * u), "GRU bias")
    k = np.asarray(kernel)
    kernel = np.concatenate([blk.T.reshape(blk.shape, order="C") for blk in np.hsplit(k, 3)], 1)
    recurrent = np.concatenate([blk.T for blk in np.hsplit(np.asarray(recurrent_kernel), 3)], 1)
    return kernel, recurrent, b.reshape(-1)


# ----------------------------------------------------------------------------- Keras 1
def keras1_lstm_to_keras(weights: Sequence[np.ndarray]) -> Arrays:
    """Keras 1 LSTM's 12 arrays ``W_i,U_i,b_i, W_c,U_c,b_c, W_f,U_f,b_f, W_o,U_o,b_o`` -> LSTM."""
    if len(weights) != 12:
        raise ValueError(f"Keras 1 LSTM: expected 12 arrays; received {len(weights)}.")
    w = [np.asarray(a) for a in weights]
    order = (0, 6, 3, 9)  # i, f, c, o from the stored i, c, f, o
    return tuple(np.concatenate([w[g + part] for g in order], axis=-1) for part in range(3))


def keras1_gru_to_keras(weights: Sequence[np.ndarray]) -> Arrays:
    """Keras 1 GRU's 9 arrays ``W_z,U_z,b_z, W_r,U_r,b_r, W_h,U_h,b_h`` -> GRU (reset-before)."""
    if len(weights) != 9:
        raise ValueError(f"Keras 1 GRU: expected 9 arrays; received {len(weights)}.")
    w = [np.asarray(a) for a in weights]
    return tuple(np.concatenate([w[g + part] for g in (0, 3, 6)], axis=-1) for part in range(3))


# ----------------------------------------------------------------------------- PyTorch
def torch_lstm_to_keras(weight_ih, weight_hh, bias_ih, bias_hh) -> Arrays:
    """PyTorch ``nn.LSTM`` layer weights (gates i, f, g, o) -> Keras LSTM (biases summed)."""
    u = np.asarray(weight_hh).shape[1]
    w_ih = _check(weight_ih, (4 * u, np.asarray(weight_ih).shape[1]), "weight_ih")
    w_hh = _check(weight_hh, (4 * u, u), "weight_hh")
    b = _check(bias_ih, (4 * u,), "bias_ih") + _check(bias_hh, (4 * u,), "bias_hh")
    return w_ih.T.copy(), w_hh.T.copy(), b


def keras_lstm_to_torch(kernel, recurrent_kernel, bias) -> Arrays:
    """Keras LSTM -> PyTorch (``weight_ih, weight_hh, bias_ih, bias_hh``); the whole bias
    goes to ``bias_ih`` and ``bias_hh`` is zero (the sum is what both compute)."""
    u = _units(recurrent_kernel, 4, "LSTM")
    b = _check(bias, (4 * u,), "LSTM bias")
    return np.asarray(kernel).T.copy(), np.asarray(recurrent_kernel).T.copy(), b, np.zeros_like(b)


def torch_gru_to_keras(weight_ih, weight_hh, bias_ih, bias_hh) -> Arrays:
    """PyTorch ``nn.GRU`` (gates r, z, n; reset after) -> Keras GRU(reset_after=True)."""
    u = np.asarray(weight_hh).shape[1]
    kernel = reorder_gates(np.asarray(weight_ih).T, "rzh", "zrh")
    recurrent = reorder_gates(_check(weight_hh, (3 * u, u), "weight_hh").T, "rzh", "zrh")
    bias = np.stack(
        [
            reorder_gates(_check(bias_ih, (3 * u,), "bias_ih"), "rzh", "zrh"),
            reorder_gates(_check(bias_hh, (3 * u,), "bias_hh"), "rzh", "zrh"),
        ]
    )
    return kernel, recurrent, bias


def keras_gru_to_torch(kernel, recurrent_kernel, bias) -> Arrays:
    """Keras GRU(reset_after=True) -> PyTorch ``nn.GRU``; reset_after=False is refused."""
    u = _units(recurrent_kernel, 3, "GRU")
    b = np.asarray(bias)
    if b.shape == (3 * u,):
        raise ValueError(
            "GRU(reset_after=False) cannot be expressed by torch.nn.GRU, which applies the "
            "reset gate after the recurrent matmul."
        )
    b = _check(b, (2, 3 * u), "GRU bias")
    return (
        reorder_gates(np.asarray(kernel), "zrh", "rzh").T.copy(),
        reorder_gates(np.asarray(recurrent_kernel), "zrh", "rzh").T.copy(),
        reorder_gates(b[0], "zrh", "rzh"),
        reorder_gates(b[1], "zrh", "rzh"),
    )


def torch_rnn_to_keras(weight_ih, weight_hh, bias_ih, bias_hh) -> Arrays:
    """PyTorch ``nn.RNN`` -> Keras SimpleRNN (biases summed)."""
    return (
        np.asarray(weight_ih).T.copy(),
        np.asarray(weight_hh).T.copy(),
        np.asarray(bias_ih) + np.asarray(bias_hh),
    )


_TORCH = {"lstm": torch_lstm_to_keras, "gru": torch_gru_to_keras, "rnn": torch_rnn_to_keras}


def torch_state_dict_to_keras(state_dict: dict, kind: str) -> list[dict[str, Arrays]]:
    """A whole ``nn.LSTM``/``nn.GRU``/``nn.RNN`` state dict -> one dict per layer with
    ``"forward"`` (and ``"backward"`` for bidirectional modules) Keras weight tuples."""
    if kind not in _TORCH:
        raise ValueError(
            f"torch_state_dict_to_keras: `kind` must be one of {sorted(_TORCH)}; received {kind!r}."
        )
    sd = {
        k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        for k, v in state_dict.items()
    }
    if any(k.startswith("weight_hr") for k in sd):
        raise ValueError("torch LSTM with proj_size (weight_hr_l*) has no Keras equivalent.")
    layers = []
    layer = 0
    while f"weight_ih_l{layer}" in sd:
        entry = {}
        for direction, suffix in (("forward", ""), ("backward", "_reverse")):
            key = f"l{layer}{suffix}"
            if f"weight_ih_{key}" not in sd:
                continue
            bias = [sd.get(f"bias_ih_{key}"), sd.get(f"bias_hh_{key}")]
            if bias[0] is None:
                rows = sd[f"weight_hh_{key}"].shape[0]
                bias = [np.zeros(rows, np.float32)] * 2
            entry[direction] = _TORCH[kind](sd[f"weight_ih_{key}"], sd[f"weight_hh_{key}"], *bias)
        layers.append(entry)
        layer += 1
    if not layers:
        raise ValueError(
            f"torch_state_dict_to_keras: no weight_ih_l0 in the state dict; keys: {sorted(sd)}."
        )
    return layers


# ----------------------------------------------------------------------------- Flax
def flax_optimized_lstm_to_keras(params: dict) -> Arrays:
    """Flax NNX ``OptimizedLSTMCell`` state ``{"dense_i": {"kernel"}, "dense_h": {"kernel",
    "bias"}}`` -> Keras LSTM: the same layout (gates i, f, g, o), so a copy."""
    return (
        np.asarray(params["dense_i"]["kernel"]),
        np.asarray(params["dense_h"]["kernel"]),
        np.asarray(params["dense_h"]["bias"]),
    )


def keras_lstm_to_flax_optimized(kernel, recurrent_kernel, bias) -> dict:
    """Keras LSTM -> Flax NNX ``OptimizedLSTMCell`` state dict."""
    return {
        "dense_i": {"kernel": np.asarray(kernel)},
        "dense_h": {"kernel": np.asarray(recurrent_kernel), "bias": np.asarray(bias)},
    }


def flax_linen_gru_to_keras(params: dict) -> Arrays:
    """Flax linen ``GRUCell`` params (``ir, iz, in`` kernel+bias; ``hr, hz`` kernel;
    ``hn`` kernel+bias) -> Keras GRU(reset_after=True); input biases of r/z go to row 0."""
    p = {k: {n: np.asarray(v) for n, v in d.items()} for k, d in params.items()}
    kernel = np.concatenate([p["iz"]["kernel"], p["ir"]["kernel"], p["in"]["kernel"]], 1)
    recurrent = np.concatenate([p["hz"]["kernel"], p["hr"]["kernel"], p["hn"]["kernel"]], 1)
    zeros = np.zeros_like(p["hn"]["bias"])
    bias = np.stack(
        [
            np.concatenate([p["iz"]["bias"], p["ir"]["bias"], p["in"]["bias"]]),
            np.concatenate([zeros, zeros, p["hn"]["bias"]]),
        ]
    )
    return kernel, recurrent, bias


def keras_gru_to_flax_linen(kernel, recurrent_kernel, bias) -> dict:
    """Keras GRU(reset_after=True) -> Flax linen ``GRUCell`` params (z/r biases summed)."""
    u = _units(recurrent_kernel, 3, "GRU")
    b = np.asarray(bias)
    if b.shape != (2, 3 * u):
        raise ValueError(
            "Only GRU(reset_after=True) (bias (2, 3u)) maps to Flax's GRUCell; "
            f"received bias {b.shape}."
        )
    kz, kr, kh = np.hsplit(np.asarray(kernel), 3)
    rz, rr, rh = np.hsplit(np.asarray(recurrent_kernel), 3)
    (bz, br, bh), (cz, cr, ch) = np.split(b[0], 3), np.split(b[1], 3)
    return {
        "iz": {"kernel": kz, "bias": bz + cz},
        "ir": {"kernel": kr, "bias": br + cr},
        "in": {"kernel": kh, "bias": bh},
        "hz": {"kernel": rz},
        "hr": {"kernel": rr},
        "hn": {"kernel": rh, "bias": ch},
    }


__all__ = [
    "cudnn_gru_to_keras",
    "cudnn_lstm_to_keras",
    "flax_linen_gru_to_keras",
    "flax_optimized_lstm_to_keras",
    "keras1_gru_to_keras",
    "keras1_lstm_to_keras",
    "keras_gru_to_cudnn",
    "keras_gru_to_flax_linen",
    "keras_gru_to_torch",
    "keras_lstm_to_cudnn",
    "keras_lstm_to_flax_optimized",
    "keras_lstm_to_torch",
    "reorder_gates",
    "torch_gru_to_keras",
    "torch_lstm_to_keras",
    "torch_rnn_to_keras",
    "torch_state_dict_to_keras",
]
