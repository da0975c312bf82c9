"""Native CPU kernels (XLA FFI) for the sequential part of recurrent layers.

``lstm_cpu.cc`` is compiled when jrnn is installed (``pip install``; an optional
extension: a machine without a C++ compiler installs jrnn without it). At run time
:func:`lstm_available` says whether the kernel can run here: the extension was built, the
CPU has AVX-512, and ``JRNN_NATIVE`` is not ``0``. Otherwise the layers use their XLA
scan, which computes the same function.

The kernels cover the recurrence only: the input projection ``x W + b`` and every weight
gradient are ordinary XLA ops around them, so :func:`lstm_recurrence` is differentiable
(``jax.custom_vjp``) and composes with ``jit``/``grad``; ``vmap`` of it runs the kernel
once per batched element (``vmap_method="sequential"``).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os

import jax
import jax.numpy as jnp

Array = jax.Array

_LIB_GLOB = os.path.join(os.path.dirname(__file__), "_lstm_cpu*.so")


@functools.cache
def _library() -> ctypes.CDLL | None:
    """Load the compiled extension and register its FFI targets (once); None if absent
    or unusable on this CPU."""
    paths = sorted(glob.glob(_LIB_GLOB))
    if not paths:
        return None
    lib = ctypes.CDLL(paths[0])
    if not lib.jrnn_native_supported():
        return None
    for name in ("jrnn_lstm_fwd", "jrnn_lstm_bwd"):
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    return lib


def lstm_available() -> bool:
    """Whether the native CPU LSTM kernel can run in this process (see module docs)."""
    return unavailable_reason() is None


def unavailable_reason() -> str | None:
    """Why the native kernel cannot run here, or None when it can."""
    if os.environ.get("JRNN_NATIVE", "1") == "0":
        return "JRNN_NATIVE=0 is set"
    if not glob.glob(_LIB_GLOB):
        return (
            "the extension jrnn/_native/_lstm_cpu*.so was not built (reinstall jrnn on a "
            "machine with a C++ compiler)"
        )
    if _library() is None:
        return "this CPU lacks AVX-512 (the kernel's instruction set)"
    return None


def _pack_forward(w: Array) -> Array:
    """``W (K, 4H)`` -> ``(ceil(H/16), K, 64)``: panel p holds the i, f, c, o columns of
    units 16p..16p+15 (zero-padded past H). Used for the kernel and the recurrent kernel."""
    k, h = w.shape[0], w.shape[1] // 4
    p = -(-h // 16)
    w4 = jnp.pad(w.reshape(k, 4, h), ((0, 0), (0, 0), (0, 16 * p - h)))
    return w4.reshape(k, 4, p, 16).transpose(2, 0, 1, 3).reshape(p, k, 64)


def _pack_backward(r: Array) -> Array:
    """``R (H, 4H)`` -> ``(ceil(H/64), 4H, 64)``: panel p holds ``Rᵀ`` for units
    64p..64p+63 (zero-padded past H)."""
    h = r.shape[0]
    p = -(-h // 64)
    rt = jnp.pad(r.T, ((0, 0), (0, 64 * p - h)))
    return rt.reshape(4 * h, p, 64).transpose(1, 0, 2)


def _require() -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"jrnn's native CPU LSTM kernel cannot run here: {reason}.")


def _forward_call(x, w, b, r, h0, c0, save: bool):
    _require()
    batch, time, _ = x.shape
    h = r.shape[0]
    f32 = jnp.float32
    out = [
        jax.ShapeDtypeStruct((batch, time, h), f32),
        jax.ShapeDtypeStruct((batch, h), f32),
        jax.ShapeDtypeStruct((batch, h), f32),
        jax.ShapeDtypeStruct((batch, time, 4 * h) if save else (0,), f32),
        jax.ShapeDtypeStruct((batch, time, h) if save else (0,), f32),
    ]
    call = jax.ffi.ffi_call("jrnn_lstm_fwd", out, vmap_method="sequential")
    return call(x, _pack_forward(w), b, _pack_forward(r), h0, c0)


@jax.custom_vjp
def lstm(
    x: Array, w: Array, b: Array, r: Array, h0: Array, c0: Array
) -> tuple[Array, Array, Array]:
    """An LSTM over a whole sequence (sigmoid gates, tanh activations), float32.

    Args:
      x: inputs ``(batch, time, F)``.
      w: the kernel ``(F, 4H)``, gate blocks i, f, c, o (Keras layout).
      b: the bias ``(4H,)``.
      r: the recurrent kernel ``(H, 4H)``.
      h0, c0: initial states ``(batch, H)``.

    Returns:
      ``(y, h_T, c_T)``: the outputs ``(batch, time, H)`` and the final states.
    """
    y, ht, ct, _, _ = _forward_call(x, w, b, r, h0, c0, save=False)
    return y, ht, ct


def _lstm_fwd(x, w, b, r, h0, c0):
    y, ht, ct, gates, cseq = _forward_call(x, w, b, r, h0, c0, save=True)
    return (y, ht, ct), (x, w, r, h0, c0, y, gates, cseq)


def _lstm_bwd(res, cts):
    _require()
    x, w, r, h0, c0, y, gates, cseq = res
    dy, dht, dct = cts
    batch, time, g = gates.shape
    h = g // 4
    f32 = jnp.float32
    call = jax.ffi.ffi_call(
        "jrnn_lstm_bwd",
        [jax.ShapeDtypeStruct((batch, time, g), f32), jax.ShapeDtypeStruct((batch, h), f32)],
        vmap_method="sequential",
    )
    dz, dc0 = call(_pack_backward(r), gates, cseq, c0, dy, dht, dct)
    h_prev = jnp.concatenate([h0[:, None], y[:, :-1]], axis=1)
    dx = jnp.einsum("btg,fg->btf", dz, w)
    dw = jnp.einsum("btf,btg->fg", x, dz)
    db = jnp.sum(dz, axis=(0, 1))
    dr = jnp.einsum("btu,btg->ug", h_prev, dz)
    dh0 = dz[:, 0] @ r.T
    return dx, dw, db, dr, dh0, dc0


lstm.defvjp(_lstm_fwd, _lstm_bwd)

__all__ = ["lstm", "lstm_available", "unavailable_reason"]
