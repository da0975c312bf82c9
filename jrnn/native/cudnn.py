"""cuDNN LSTM on CUDA GPUs, through :mod:`jax.experimental.rnn` (JAX's cuDNN binding).

:func:`lstm` and :func:`lstm_bidirectional` take the same arguments as the CPU kernels'
:func:`jrnn.native.lstm` and :func:`jrnn.native.lstm_bidirectional` (Keras' layout) and
return the same values; the layers call them on the GPU backend on request (``native=True``
or ``use_cudnn=True``; see ``native`` in :class:`jrnn.RNN`): measured on an H200 the XLA
scan, unrolled, is faster in most cases, so it is the default there.
Each packs Keras' weights into cuDNN's flat parameter vector (:func:`pack_weights`):
``W_ih = kernel.T`` and ``W_hh = recurrent_kernel.T`` (Keras' gate order i, f, c, o is
cuDNN's i, f, g, o), ``b_ih = bias``, ``b_hh = 0``; gradients flow back through the
packing to Keras' arrays.

Limits of the binding (``jax.experimental.rnn``): float32 only; a CUDA GPU (no CPU or TPU
lowering; ROCm orders the gates differently and is not dispatched to); no ``vmap``
(its primitives have no batching rule; the layers' ``native=False`` runs the XLA scan
instead); matrix products at JAX's default precision (TF32 on GPUs that have it, as the
XLA scan's products) unless ``jax_default_matmul_precision`` says otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def _rnn():
    from jax.experimental import rnn  # imported on first use: only GPUs need it

    return rnn


def on_gpu() -> bool:
    """Whether JAX's default backend is a GPU: the layers' fused kernel is then cuDNN's
    (LSTM, on request) instead of jrnn's CPU kernels, and their scans unroll 16 steps."""
    return jax.default_backend() == "gpu"


def unavailable_reason(dtype=jnp.float32) -> str | None:
    """Why the cuDNN LSTM cannot run in this process on ``dtype``, or None when it can."""
    if not on_gpu():
        return f"cuDNN runs on CUDA GPUs only (default backend: {jax.default_backend()})"
    if jnp.dtype(dtype) != jnp.dtype(jnp.float32):
        return f"JAX's cuDNN LSTM runs float32 only, not {jnp.dtype(dtype)}"
    if _rnn().gpu_rnn is None:
        return "this jaxlib has no cuDNN RNN binding (jax._src.lib.gpu_rnn is missing)"
    version = jax.devices()[0].client.platform_version.lower()
    if "rocm" in version:
        return "ROCm's MIOpen orders the LSTM gates differently; jrnn dispatches CUDA only"
    return None


def pack_weights(w: Array, b: Array, r: Array) -> Array:
    """cuDNN's flat LSTM parameters from Keras' arrays, one layer of ``D`` directions.

    Args:
      w: kernels ``(D, F, 4H)``; b: biases ``(D, 4H)``; r: recurrent kernels
        ``(D, H, 4H)`` (gate blocks i, f, c, o, as Keras).

    Returns:
      ``(D·4H·(F + H + 2),)`` float32, the layout of ``jax.experimental.rnn``: every
      direction's ``W_ih (4H, F)`` then ``W_hh (4H, H)``, then every direction's
      ``b_ih (4H,)`` then ``b_hh (4H,)`` (zeros; Keras has one bias).
    """
    matrices = [m for d in range(w.shape[0]) for m in (w[d].T.ravel(), r[d].T.ravel())]
    biases = [v for d in range(b.shape[0]) for v in (b[d], jnp.zeros_like(b[d]))]
    return jnp.concatenate(matrices + biases)


def _cudnn(x, h0, c0, weights, bidirectional: bool):
    """One call of JAX's cuDNN LSTM over full-length sequences: ``(y, h_n, c_n)``."""
    batch, time, features = x.shape
    try:
        return _rnn().lstm(
            x,
            h0,
            c0,
            weights,
            jnp.full((batch,), time, jnp.int32),
            input_size=features,
            hidden_size=h0.shape[-1],
            num_layers=1,
            dropout=0.0,
            bidirectional=bidirectional,
        )
    except NotImplementedError as e:  # e.g. under vmap: its primitives have no batching rule
        raise NotImplementedError(
            f"jax.experimental.rnn's cuDNN LSTM cannot run this call ({e}); build the layer "
            "without native=True or use_cudnn=True to run the XLA scan instead"
        ) from e


def lstm(
    x: Array,
    w: Array,
    b: Array,
    r: Array,
    h0: Array,
    c0: Array,
    *,
    sequence: bool = True,
    reverse: bool = False,
):
    """An LSTM over a whole sequence on cuDNN; arguments and results as
    :func:`jrnn.native.lstm` (float32): ``x (batch, time, F)``, ``w (F, 4H)``,
    ``b (4H,)``, ``r (H, 4H)``, ``h0, c0 (batch, H)`` ->
    ``(y (batch, time, H) or None, h_T, c_T)``. ``reverse`` runs from the last time index
    to the first, each output at its input's index (cuDNN reads a flipped copy)."""
    if reverse:
        x = jnp.flip(x, 1)
    y, h, c = _cudnn(x, h0[None], c0[None], pack_weights(w[None], b[None], r[None]), False)
    if not sequence:
        return None, h[0], c[0]
    return (jnp.flip(y, 1) if reverse else y), h[0], c[0]


def lstm_bidirectional(
    x: Array,
    w: Array,
    b: Array,
    r: Array,
    h0: Array,
    c0: Array,
    *,
    sequence: bool = True,
):
    """Both directions of a Bidirectional LSTM in one cuDNN call; arguments and results as
    :func:`jrnn.native.lstm_bidirectional`: weights and states stacked ``(2, ...)``
    (forward, then backward) -> ``(y (batch, time, 2H) or None, h (2, batch, H),
    c (2, batch, H))``, the backward outputs at their inputs' time index."""
    y, h, c = _cudnn(x, h0, c0, pack_weights(w, b, r), True)
    return (y if sequence else None), h, c


__all__ = ["lstm", "lstm_bidirectional", "on_gpu", "pack_weights", "unavailable_reason"]
