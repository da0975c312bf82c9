"""Native CPU kernels (XLA FFI custom calls) for the recurrences of LSTM, GRU, SimpleRNN and
ConvLSTM.

``lstm.cc``, ``gru.cc``, ``simple.cc``, ``conv_lstm.cc``, ``dense.cc`` and ``common.h`` are
compiled into one library when jrnn is installed (``pip install``; an optional extension: a
machine without a C++ compiler still installs jrnn). Each kernel file is built twice, for
AVX-512 and for AVX2 with FMA, and the library registers the build this CPU runs
(:func:`isa`; ``JRNN_NATIVE_ISA=avx2`` picks the AVX2 build on an AVX-512 CPU). At run time
:func:`available` says whether the kernels can run here (the library was built, the CPU has
AVX-512 or AVX2 and FMA, ``JRNN_NATIVE`` is not ``0``) and :func:`unavailable_reason` why
not; the layers then run their XLA scan, which computes the same function.
``JRNN_NATIVE_THREADS`` caps the threads a kernel uses (default: XLA's intra-op pool);
``JRNN_NATIVE_HUGEPAGES=0`` stops the forward kernels advising huge pages for the buffers
they save for training (below); ``JRNN_NATIVE_L2_BYTES`` overrides the per-core L2 size
the float32 tiles compare a step's weights with to decide whether to prefetch the next
weight panel (default: the C library's figure; results are bit-identical either way).

:func:`lstm`, :func:`gru` and :func:`simple_rnn` run a whole sequence: the input and
recurrent products of a step are one register-tiled GEMM with the gate maths applied in
registers. ``reverse=True`` runs from the last time index to the first with each output
at its input's index (Keras' ``go_backwards`` without flipped copies of the inputs and
outputs), and :func:`lstm_bidirectional`, :func:`gru_bidirectional` and
:func:`simple_rnn_bidirectional` run both directions of a ``Bidirectional`` layer in one
call, writing the concatenated output directly. All of them take Keras' masks
(``mask=``, ``(batch, time)`` booleans): a masked step keeps the state and outputs it. Their
backward kernels produce the gate pre-activation gradients; one native kernel
(``dense.cc``) sums the weight and bias gradients over all steps (reading ``y`` and ``h0``
in place where ``dR`` needs the shifted states; in bfloat16 only where the CPU has AMX,
elsewhere XLA's GEMMs do), and the input gradient is an XLA GEMM.
XLA:CPU maps a training step's temporaries afresh on
every call and each page faults on first touch, so the training path keeps them few: the
backward kernels write their gradients over the saved gates and ``h_{t-1}`` over ``dy``
(input/output aliases; XLA copies an argument first wherever it is still needed; a
``Bidirectional`` training step's two directions share one ``y`` and one ``dy``, each
kernel writing and reading its half in place: :func:`_two_directions`), and the
forward kernels advise transparent huge pages (``MADV_HUGEPAGE``) for the buffers they
save. Both are ``jax.custom_vjp`` functions: ``jit``,
``grad``/``vjp`` and ``vmap`` (one kernel call per batched element) work; forward-mode
autodiff (``jvp``, ``jacfwd``) and second derivatives do not: the layers' default
``native=None`` takes the XLA scan in calls those trace (``native=False`` where they are
applied to an already traced function: jitted, checkpointed, a ``lax.scan`` body, or
``jax.linearize``, which a call cannot see).

They run float32, and bfloat16 where the AVX-512 build runs on a CPU with AVX512_BF16: with
bfloat16 inputs, weights and states, the products accumulate in float32 (``vdpbf16ps``,
or AMX tiles where the CPU has AMX: :func:`amx`), the gate maths and LSTM's cell state
``c`` run in float32, and ``h`` is rounded to bfloat16 once per step (as it is stored; the
next step reads that). That rounds far less often than computing every operation in
bfloat16 (what the XLA scan and Keras do under a bfloat16 policy); the error against
float32 comes mostly from rounding the inputs and weights, and is about the scan's or
smaller. The forward kernels save the gates for the backward pass in bfloat16 (LSTM's
``c`` stays float32); the backward kernels read them, accumulate ``dh`` in float32 and
write the pre-activation gradients in bfloat16 over them; the weight and input gradients
are products of those with float32 accumulation (AMX tiles or XLA's GEMMs, as above);
gradients return in the arguments' dtype.
Saving the gates in bfloat16 halves that traffic (the LSTM's typical training step 30.1
-> 23.1 ms with glibc retaining memory, 40.4 -> 23.1 under its defaults) and rounds the
gradients a little more: against float32 on the same rounded arguments (LSTM (64, 100,
128, 256)), the input gradient's relative error went from 2.5e-3 to 3.5e-3 and the
weights' stayed 1.6e-3 to 2.0e-3, where the bfloat16 XLA scan's are 6.9e-3 and 1.0e-2 to
2.6e-2.

:func:`conv_lstm` runs a ConvLSTM (rank 1, 2 or 3, channels_last, float32): per step and
kernel tap, a register tile multiplies the input rows and the ``h`` rows of the pixels
that tap reads (gathered through tables of the two convolutions' geometry; padding reads
zeros) by that tap's blocks of ``W`` and ``R``, and applies LSTM's gate maths in
registers. Its backward kernel gathers ``dz_{t+1}`` the same way through the transposed
table, and a third kernel computes the kernel gradients ``dW`` and ``dR`` as one GEMM
over gathered rows of every frame (XLA:CPU's
filter-gradient convolution is slower, and 20-90x slower inside a loop).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jrnn.cells.conv_lstm import _conv_plain, conv_output_length, recurrent_conv_input_grad

Array = jax.Array

_LIB_GLOB = os.path.join(os.path.dirname(__file__), "_kernels*.so")
_TARGETS = (
    "jrnn_lstm_fwd",
    "jrnn_lstm_bwd",
    "jrnn_gru_fwd",
    "jrnn_gru_bwd",
    "jrnn_simple_fwd",
    "jrnn_simple_bwd",
    "jrnn_conv_lstm_fwd",
    "jrnn_conv_lstm_bwd",
    "jrnn_dense_weight_grad",
    "jrnn_conv_weight_grad",
)
#: The kernels (a cell's ``native_kernel``) that also run bfloat16.
BFLOAT16_KERNELS = frozenset({"lstm", "gru", "simple_rnn"})
#: The kernels that run backwards in time in place (``reverse=True``).
REVERSIBLE_KERNELS = frozenset({"lstm", "gru", "simple_rnn"})
#: The kernels that take a step mask (``mask=``: Keras' masking).
MASKED_KERNELS = frozenset({"lstm", "gru", "simple_rnn"})
_F32 = jnp.float32
_BF16 = jnp.bfloat16


#: The instruction sets of the kernel builds, best first (``jrnn_native_isa()``'s codes).
_ISAS = {"avx512": 2, "avx2": 1}


def _unavailable(why: str) -> tuple[None, None, str]:
    return None, None, why


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str | None, str | None]:
    """Load the compiled library and register the FFI targets of the build this CPU runs,
    once per process: ``(library, instruction set, None)``, or ``(None, None, why not)``."""
    paths = sorted(glob.glob(_LIB_GLOB))
    if not paths:
        return _unavailable(
            "the library jrnn/native/_kernels*.so was not built (reinstall jrnn on a "
            "machine with a C++ compiler)"
        )
    lib = ctypes.CDLL(paths[0])
    reinstall = f"the library {paths[0]} predates this jrnn (it lacks {{}}); reinstall jrnn"
    if not hasattr(lib, "jrnn_native_isa"):
        return _unavailable(reinstall.format("its AVX2 build"))
    best = lib.jrnn_native_isa()
    if best == 0:
        return _unavailable(
            "this CPU has neither AVX-512 nor AVX2 with FMA (the kernels' instruction sets)"
        )
    wanted = os.environ.get("JRNN_NATIVE_ISA", "")
    if wanted and wanted not in _ISAS:
        raise ValueError(
            f"JRNN_NATIVE_ISA must be one of {', '.join(_ISAS)} (or unset for the best this "
            f"CPU runs); received {wanted!r}."
        )
    chosen = wanted or next(name for name, code in _ISAS.items() if code <= best)
    if _ISAS[chosen] > best:
        return _unavailable(f"JRNN_NATIVE_ISA={chosen} is set but this CPU lacks AVX-512")
    missing = [name for name in _TARGETS if not hasattr(lib, f"{name}_{chosen}")]
    if missing:
        return _unavailable(reinstall.format(", ".join(f"{n}_{chosen}" for n in missing)))
    for name in _TARGETS:
        handler = jax.ffi.pycapsule(getattr(lib, f"{name}_{chosen}"))
        jax.ffi.register_ffi_target(name, handler, platform="cpu")
    return lib, chosen, None


def isa() -> str | None:
    """The instruction set of the kernel build that runs here: ``"avx512"``, ``"avx2"``
    (AVX2 with FMA), or None where the kernels cannot run (:func:`unavailable_reason`)."""
    if os.environ.get("JRNN_NATIVE", "1") == "0":
        return None
    return _load()[1]


def unavailable_reason(dtype=jnp.float32) -> str | None:
    """Why the native kernels cannot run in this process on ``dtype`` (float32 or
    bfloat16), or None when they can."""
    if os.environ.get("JRNN_NATIVE", "1") == "0":
        return "JRNN_NATIVE=0 is set"
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(_F32), jnp.dtype(_BF16)):
        return f"the kernels run float32 and bfloat16 only, not {dtype}"
    lib, chosen, reason = _load()
    if reason is None and dtype == jnp.dtype(_BF16):
        if chosen != "avx512":
            return "the bfloat16 kernels need AVX-512 with AVX512_BF16 (this build: AVX2)"
        if not lib.jrnn_native_bf16_supported():
            return "this CPU lacks AVX512_BF16 (the bfloat16 kernels' instruction set)"
    return reason


def amx() -> bool:
    """Whether the bfloat16 kernels compute their products on AMX tiles here: a CPU with
    AMX-TILE and AMX-BF16 (Intel Sapphire Rapids and later), Linux granting the tile state,
    and ``JRNN_NATIVE_AMX`` not ``0`` (read at every kernel call). Elsewhere they run
    AVX512_BF16 dot products; the two agree to float32 rounding of the sums, not bit for
    bit."""
    if not available(_BF16):
        return False
    lib = _load()[0]
    return hasattr(lib, "jrnn_native_amx") and bool(lib.jrnn_native_amx())


def available(dtype=jnp.float32) -> bool:
    """Whether the native kernels can run in this process on ``dtype`` (see
    :func:`unavailable_reason`)."""
    return unavailable_reason(dtype) is None


def _storage_dtype(function: str, dtypes=(_F32, _BF16), /, **arrays: Array):
    """The one dtype of a kernel's inputs, weights and states, checked: all equal, one the
    kernel runs (``dtypes``; ``function`` names it in the error), and one that can run
    here."""
    dtypes_seen = {name: jnp.dtype(a.dtype) for name, a in arrays.items()}
    first, dtype = next(iter(dtypes_seen.items()))
    for name, d in dtypes_seen.items():
        if d != dtype:
            raise ValueError(
                f"jrnn.native: `{name}` must have the dtype of `{first}` ({dtype}); received {d}."
            )
    if dtype not in [jnp.dtype(d) for d in dtypes]:
        runs = " and ".join(str(jnp.dtype(d)) for d in dtypes)
        raise ValueError(f"jrnn.native.{function} runs {runs} only; received {dtype}.")
    reason = unavailable_reason(dtype)
    if reason is not None:
        raise RuntimeError(f"jrnn's native CPU kernels cannot run here: {reason}.")
    return dtype


_ROLES = {
    "w": " (the kernel)",
    "b": " (the bias)",
    "bi": " (the input bias)",
    "br": " (the recurrent bias)",
    "r": " (the recurrent kernel)",
}


def _check_shapes(function: str, gates: int, x, mask, stacked: bool = False, **arrays) -> None:
    """Trace-time checks of a public function's argument shapes, which the kernels would
    otherwise refuse only when they run: ``x (batch, time, F)``; by argument name, ``r``
    (the recurrent kernel) ``(H, gates·H)``, ``w (F, gates·H)``, the biases ``b``, ``bi``,
    ``br`` ``(gates·H,)``, the states ``h0``, ``c0`` ``(batch, H)``, each after a leading 2
    when ``stacked`` (the bidirectional functions); ``mask (batch, time)``."""
    lead = (2,) if stacked else ()
    where = f"jrnn.native.{function}"
    if x.ndim != 3:
        raise ValueError(f"{where}: `x` must be (batch, time, features); received {x.shape}.")
    batch, time, features = x.shape
    r = arrays["r"]
    r_ok = r.ndim == len(lead) + 2 and r.shape[-1] == gates * r.shape[-2]
    if r.shape[: len(lead)] != lead or not r_ok:
        want = ["2"] * bool(lead) + ["units", f"{gates} * units" if gates > 1 else "units"]
        raise ValueError(
            f"{where}: `r` (the recurrent kernel) must have shape ({', '.join(want)}); "
            f"received {r.shape}."
        )
    n = gates * r.shape[-2]
    want = {"w": (features, n), "b": (n,), "bi": (n,), "br": (n,), "r": r.shape[len(lead) :]}
    for name, a in arrays.items():
        shape = (*lead, *want.get(name, (batch, r.shape[-2])))
        if a.shape != shape:
            label = f"`{name}`" + _ROLES.get(name, "")
            raise ValueError(f"{where}: {label} must have shape {shape}; received {a.shape}.")
    if mask is not None and mask.shape != (batch, time):
        raise ValueError(f"{where}: `mask` must have shape {(batch, time)}; received {mask.shape}.")


def _call(
    target: str,
    outs: list[tuple[tuple[int, ...], object]],
    *args: Array,
    aliases: dict[int, int] | None = None,
    **attributes: Any,
):
    """The FFI call ``target`` with results of the given (shape, dtype); ``aliases`` maps
    argument indices to the results that may reuse their buffers (XLA copies the argument
    first where it is still needed elsewhere); ``attributes`` are the handler's static
    attributes (``reverse``)."""
    out = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in outs]
    call = jax.ffi.ffi_call(target, out, vmap_method="sequential", input_output_aliases=aliases)
    return call(*args, **attributes)


def _forward_call(target: str, outs, *args: Array, y_in: Array | None, slot, reverse: bool):
    """A forward kernel's call: ``args``, then ``y_in``, the array whose slot ``slot = (k,
    n)`` the call writes in place (aliased to its output ``y``), or None: ``y`` is new
    (and the call writes its slot k of n). See :func:`_two_directions`."""
    dt = outs[0][1]
    aliases = None if y_in is None else {len(args): 0}
    y_in = jnp.zeros((0,), dt) if y_in is None else y_in
    return _call(target, outs, *args, y_in, aliases=aliases, reverse=reverse, slot=slot[0])


def _dy_alias(dy: Array, units: int, argument: int, result: int) -> dict[int, int]:
    """A backward kernel's alias of ``dy`` (argument index) to the result it overwrites:
    ``{argument: result}`` where ``dy`` is one direction's ``(batch, time, units)``, none
    where it holds both directions' (a Bidirectional training step's, read in place by
    both backward calls; :func:`_two_directions`)."""
    return {argument: result} if dy.shape[-1] == units else {}


def _weights(packed: Array) -> Array:
    """Packed panels ``(..., P, K, C)`` as the kernel build that runs here reads them
    (``PackedPanel`` in common.h). float32 on AVX-512: unchanged, row k holding the C
    columns. float32 on AVX2: the same shape, but each panel holds its 16-column blocks one
    after another, each block's K rows contiguous (element (k, 16q + c) at 16 K q + 16 k + c
    of the panel). bfloat16 (AVX-512 only): ``(..., P, ceil(K/2), 2C)`` with rows 2kk and
    2kk+1 interleaved per column (one ``vdpbf16ps`` takes both), zero past K."""
    if packed.dtype != _BF16:
        if _load()[1] != "avx2":
            return packed
        *lead, k, c = packed.shape
        blocks = jnp.swapaxes(packed.reshape(*lead, k, c // 16, 16), -2, -3)
        return blocks.reshape(packed.shape)
    *lead, k, c = packed.shape
    packed = jnp.pad(packed, [(0, 0)] * len(lead) + [(0, k % 2), (0, 0)])
    packed = packed.reshape(*lead, -1, 2, c)
    return jnp.swapaxes(packed, -1, -2).reshape(*lead, -1, 2 * c)


def _f32(*arrays: Array) -> list[Array]:
    return [a.astype(_F32) for a in arrays]


def _like(grads, primals) -> tuple[Array, ...]:
    """Cotangents in their primals' dtypes (the bfloat16 kernels' gradients run float32)."""
    return tuple(g.astype(p.dtype) for g, p in zip(grads, primals))


def _pack(w: Array, gates: int, order: tuple[int, ...]) -> Array:
    """``W (..., K, gates*H)`` -> ``(..., ceil(H/16), K, 16*len(order))``: panel p holds, for
    units 16p..16p+15 (zero-padded past H), the gate blocks ``order`` side by side."""
    *lead, k, n = w.shape
    h = n // gates
    p = -(-h // 16)
    blocks = jnp.stack([w[..., g * h : (g + 1) * h] for g in order], axis=-2)  # static slices
    blocks = jnp.pad(blocks, [(0, 0)] * (len(lead) + 2) + [(0, 16 * p - h)])
    blocks = jnp.moveaxis(blocks.reshape(*lead, k, len(order), p, 16), -2, -4)
    return blocks.reshape(*lead, p, k, -1)


def _panels(w: Array, width: int) -> Array:
    """``W (..., K, N)`` -> ``(..., ceil(N/width), K, width)``: panel p holds columns
    ``width*p .. width*p + width - 1`` (zero-padded past N)."""
    *lead, k, n = w.shape
    p = -(-n // width)
    w = jnp.pad(w, [(0, 0)] * (len(lead) + 1) + [(0, width * p - n)])
    return jnp.swapaxes(w.reshape(*lead, k, p, width), -2, -3)


def _panels64(w: Array) -> Array:
    """``W (K, N)`` -> ``(ceil(N/64), K, 64)`` (:func:`_panels`)."""
    return _panels(w, 64)


def _pack_transposed(r: Array) -> Array:
    """``R (H, G)`` -> ``(ceil(H/64), G, 64)``: panel p holds ``Rᵀ`` for units 64p..64p+63
    (zero-padded past H): the backward pass's ``dz Rᵀ``."""
    return _panels64(r.T)


def _product_grads(x, w, r, states, g_in, g_rec, reverse=False, slot=0):
    """The gradients a backward kernel leaves to GEMMs, from the gradients of the
    pre-activations ``x W + b_i`` (``g_in``) and ``h_{t-1} R + b_r`` (``g_rec``), the
    inputs ``x`` and the states each step's recurrent product read: ``(dx, dW, db_i, db_r,
    dR, dh0 through R)``, float32. ``states`` is ``h_prev (batch, time, H)`` itself, or
    ``(y, h0)``, whose shift by one step it is (:func:`_h_prev`), ``y`` holding this
    direction's outputs in columns ``slot H ..`` (a Bidirectional training step's both
    directions', :func:`_two_directions`). ``reverse``: the
    recurrence ran from the last time index to the first (its first step, which read
    ``h0``, is the last index).

    ``g_in`` and ``g_rec`` are each a list of ``(batch, time, ·)`` arrays, side by side in
    Keras' gate order (GRU's two share the z, r array): one product per array, because XLA
    would copy a column slice of one array into a fresh buffer first.

    In float32, dW with db_i and dR with db_r come from the native ``Σ aᵀ g`` kernel
    (dense.cc), which reads ``(y, h0)`` in place instead of a copy shifted by XLA, and
    whose sums do not depend on the thread count. On the AVX2 benchmark machine it runs
    these products at 140-164 GFLOP/s. Inside LSTM's and GRU's training steps that is level
    with XLA's GEMMs. It pays where XLA would first build h_prev (SimpleRNN's throughput
    training step: 235.8 -> 212.1 ms) and at small batches (LSTM at batch 8, T 1000: 35.7
    -> 34.2 ms). dx stays an XLA GEMM. In bfloat16 (the primals and, from the backward
    kernels, the gradients) the sums accumulate in float32, as the forward kernel does:
    on CPUs with AMX (:func:`amx`, checked when traced) and from ``_AMX_SUM_ROWS`` rows
    of batch × time on, the same kernel runs them on AMX tiles, at 1.6-1.8 TFLOP/s on the
    Intel benchmark machine's two cores against 0.6-0.8 for XLA's GEMMs (the throughput
    LSTM's bfloat16 training step: 151 -> 119 ms); elsewhere they are XLA's GEMMs (~2.7x
    faster than its float32 ones: the typical LSTM's bfloat16 training step went from 89.5
    to 76.8 ms)."""
    dot = functools.partial(jnp.einsum, preferred_element_type=_F32)
    first = -1 if reverse else 0
    rows = x.shape[0] * x.shape[1]
    native_sums = x.dtype == _F32 or (amx() and rows >= _AMX_SUM_ROWS)
    if isinstance(states, tuple) and not native_sums:
        y, h0 = states
        units = h0.shape[-1]
        states = _h_prev(h0, y[..., slot * units : (slot + 1) * units], reverse)

    def split(m, parts):  # m's columns as parts' widths
        bounds = np.cumsum([p.shape[-1] for p in parts])[:-1]
        return jnp.split(m, bounds, axis=-1)

    def cat(arrays):
        return jnp.concatenate(arrays, axis=-1)

    def sums(a, gs):  # (Σ aᵀ g, Σ g) over batch and time, each g's side by side
        if not native_sums:
            return (
                cat([dot("btf,btg->fg", a, g) for g in gs]),
                cat([jnp.sum(g, axis=(0, 1), dtype=_F32) for g in gs]),
            )
        a, h0 = a if isinstance(a, tuple) else (a, None)
        rows = (a if h0 is None else h0).shape[-1]  # a (y) may hold several slots
        out = [
            _call(
                "jrnn_dense_weight_grad",
                [((rows, g.shape[-1]), _F32), ((g.shape[-1],), _F32)],
                a,
                g,
                jnp.zeros((0,), a.dtype) if h0 is None else h0,
                shifted=h0 is not None,
                reverse=reverse,
                slot=slot if h0 is not None else 0,
            )
            for g in gs
        ]
        return cat([o[0] for o in out]), cat([o[1] for o in out])

    dw, db_i = sums(x, g_in)
    dr, db_r = sums(states, g_rec)
    return (
        sum(dot("btg,fg->btf", g, wk) for g, wk in zip(g_in, split(w, g_in))),
        dw,
        db_i,
        db_r,
        dr,
        sum(dot("bg,ug->bu", g[:, first], rk) for g, rk in zip(g_rec, split(r, g_rec))),
    )


#: The fewest batch × time rows whose bfloat16 weight gradients run on jrnn's AMX kernel
#: (:func:`_product_grads`): it keeps every tile's float32 sums between blocks of 256
#: rows, which few rows do not pay back. Alone (Intel benchmark machine, 2 cores), for
#: ``(rows × 512)ᵀ (rows × 4096)``: 320 rows 1.85-2.0 ms against XLA's 1.3; 512 rows
#: 1.96 against 1.95; 1024 rows 3.0 against 3.5; 2048 rows 5.5 against 9.0 (smaller
#: products win from fewer rows: 512 rows of ``(· × 256)ᵀ (· × 1024)``, 0.48 against 0.57).
_AMX_SUM_ROWS = 512


def _h_prev(h0: Array, y: Array, reverse: bool) -> Array:
    """The states ``(batch, time, H)`` each step's recurrent product read: h0, y[:, :-1]
    (reversed: y[:, 1:], h0)."""
    if reverse:
        return jnp.concatenate([y[:, 1:], h0[:, None]], axis=1)
    return jnp.concatenate([h0[:, None], y[:, :-1]], axis=1)


# ---------------------------------------------------------------------------- LSTM
def _saved(directions: int, batch: int, time: int, width: int) -> tuple[int, ...]:
    """The shape of an array a forward kernel saves for the backward pass: ``(D, batch,
    time, width)``, without the D axis for one direction (the training path's: its backward
    kernel aliases the array, which XLA does without a copy only for a custom call's own
    result, not for a reshape of it)."""
    return ((directions,) if directions > 1 else ()) + (batch, time, width)


def _steps(mask: Array | None) -> Array:
    """A kernel's step mask argument: ``(batch, time)`` uint8 (0: the step keeps the
    state), or ``(0,)`` for none."""
    return jnp.zeros((0,), jnp.uint8) if mask is None else mask.astype(jnp.uint8)


def _lstm_forward(
    x, w, b, r, h0, c0, sequence: bool, save: bool, reverse: bool, mask=None, slot=(0, 1), y_in=None
):
    """The forward kernel over D directions side by side: ``w (D, F, 4H)``, ``b (D, 4H)``,
    ``r (D, H, 4H)``, ``h0``/``c0 (D, batch, H)``; direction d runs backwards in time when
    ``reverse != (d odd)``. Returns ``y (batch, time, D H)`` (or ``(0,)``), ``h_T``, ``c_T``
    ``(D, batch, H)`` and, with ``save``, the gates ``(D, batch, time, 4H)`` and cell
    states ``(D, batch, time, H)`` the backward kernel reads (without the D axis when
    D = 1). ``slot = (k, n)``: y holds n such calls' outputs side by side, ``(batch, time,
    n D H)``, this call's the k-th; it is a new array (``y_in`` None) or ``y_in``, written
    in place (:func:`_forward_call`)."""
    dt = _storage_dtype("lstm", x=x, kernel=w, bias=b, recurrent_kernel=r, h0=h0, c0=c0)
    batch, time, _ = x.shape
    d, h = r.shape[0], r.shape[1]
    outs = [((batch, time, slot[1] * d * h) if sequence else (0,), dt)] + [((d, batch, h), dt)] * 2
    # Saved: the gates (in the storage dtype) and c (float32).
    outs += [
        ((_saved(d, batch, time, n * h) if save else (0,)), t) for n, t in ((4, dt), (1, _F32))
    ]
    order = (0, 1, 2, 3)
    wp, rp = _weights(_pack(w, 4, order)), _weights(_pack(r, 4, order))
    return _forward_call(
        "jrnn_lstm_fwd",
        outs,
        x,
        wp,
        b.astype(_F32),
        rp,
        h0,
        c0,
        _steps(mask),
        y_in=y_in,
        slot=slot,
        reverse=reverse,
    )


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
    mask: Array | None = None,
):
    """An LSTM over a whole sequence with sigmoid gates and tanh activations (Keras'
    defaults), float32 or bfloat16 (every argument the same dtype; see the module
    docstring for bfloat16's arithmetic).

    Args:
      x: inputs ``(batch, time, F)``.
      w: the kernel ``(F, 4H)``, gate blocks i, f, c, o (Keras layout).
      b: the bias ``(4H,)``.
      r: the recurrent kernel ``(H, 4H)``.
      h0, c0: initial states ``(batch, H)``.
      sequence: return the outputs of every step; False returns None in their place and,
        outside differentiation, keeps only the last state in memory.
      reverse: run from the last time index to the first (Keras' ``go_backwards``), with
        each output at its input's time index: ``lstm(x, ..., reverse=True)[0]`` equals
        ``flip(lstm(flip(x), ...)[0])`` (flip: along time), with no flipped copies.
      mask: optional ``(batch, time)`` booleans: a False step keeps ``h`` and ``c`` (Keras'
        masking), and its output is the kept ``h``: ``y`` is the state sequence. (Keras'
        layer outputs zeros before the first unmasked step; :class:`jrnn.RNN` applies
        that rule, and ``zero_output_for_mask``, to this ``y``.)

    Returns:
      ``(y, h_T, c_T)``: the outputs ``(batch, time, H)`` (or None) and the final states,
      in the arguments' dtype.
    """
    _check_shapes("lstm", 4, x, mask, w=w, b=b, r=r, h0=h0, c0=c0)
    y, h, c = _lstm(x, w, b, r, h0, c0, mask, sequence, reverse)
    return (y if sequence else None), h, c


def lstm_bidirectional(
    x: Array,
    w: Array,
    b: Array,
    r: Array,
    h0: Array,
    c0: Array,
    *,
    sequence: bool = True,
    mask: Array | None = None,
):
    """A bidirectional LSTM in one kernel call (as :func:`lstm`): direction 0 runs forwards
    in time, direction 1 backwards, each with its own weights; the threads share both
    directions' rows, and each direction writes its half of the concatenated output
    directly (no flipped or concatenated copies).

    Args:
      x: inputs ``(batch, time, F)``.
      w: the two kernels ``(2, F, 4H)``; b: the biases ``(2, 4H)``; r: the recurrent
        kernels ``(2, H, 4H)`` (forward's, then backward's).
      h0, c0: initial states ``(2, batch, H)``.
      sequence, mask: as :func:`lstm` (one mask for both directions).

    Returns:
      ``(y, h_T, c_T)``: ``y (batch, time, 2H)``, Keras' ``Bidirectional`` concat of the
      forward outputs and the backward ones at their inputs' time index (or None), and the
      final states ``(2, batch, H)``.
    """
    _check_shapes("lstm_bidirectional", 4, x, mask, True, w=w, b=b, r=r, h0=h0, c0=c0)
    y, h, c = _lstm_bi(sequence, x, mask, w, b, r, h0, c0)
    return (y if sequence else None), h, c


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _lstm(x, w, b, r, h0, c0, mask, sequence, reverse):
    y, h, c, _, _ = _lstm_forward(
        x, w[None], b[None], r[None], h0[None], c0[None], sequence, False, reverse, mask
    )
    return y, h[0], c[0]


def _lstm_fwd(x, w, b, r, h0, c0, mask, sequence, reverse, slot=(0, 1), y_in=None):
    y, h, c, gates, cs = _lstm_forward(
        x, w[None], b[None], r[None], h0[None], c0[None], True, True, reverse, mask, slot, y_in
    )
    out = y if sequence else jnp.zeros((0,), y.dtype)
    return (out, h[0], c[0]), (x, w, r, h0, c0, mask, gates, cs, y)


def _lstm_bwd(sequence, reverse, res, cotangents, slot=0):
    x, w, r, h0, c0, mask, gates, cs, y = res
    dy, dh, dc = cotangents
    dt = y.dtype
    batch, time, _ = gates.shape
    h = r.shape[0]
    if not sequence:
        dy = jnp.zeros((batch, time, h), dt)
    # dz overwrites the gates and h_prev dy (one direction's dy: _dy_alias): no fresh
    # (batch, time, .) buffers. dh_direct: the dh that reaches h0 past masked first steps
    # (zero without a mask).
    dz, h_prev, dc0, dh_direct = _call(
        "jrnn_lstm_bwd",
        [((batch, time, 4 * h), dt), ((batch, time, h), dt)] + [((batch, h), _F32)] * 2,
        _weights(_pack_transposed(r)),
        gates,
        cs,
        y,
        h0,
        c0,
        dy.astype(dt),
        *_f32(dh, dc),
        _steps(mask),
        aliases={1: 0, **_dy_alias(dy, h, 6, 1)},
        reverse=reverse,
        slot=slot,
    )
    dx, dw, db, _, dr, dh0 = _product_grads(x, w, r, h_prev, [dz], [dz], reverse)
    return (*_like((dx, dw, db, dr, dh0 + dh_direct, dc0), (x, w, x, r, h0, c0)), None)


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def _two_directions(primal, one_fwd, one_bwd):
    """``run(sequence, x, mask, *stacked)``: a custom-VJP function of both directions of a
    bidirectional layer. ``primal(x, *stacked, sequence, mask)`` is the one forward call
    over ``stacked`` (each argument with a leading axis of 2: forward's, backward's) giving
    ``(y (batch, time, 2H), *finals (2, batch, H))``; ``mask``: the steps' mask ``(batch,
    time)`` or None.

    Training runs the two directions as two calls of the one-direction rules
    ``one_fwd(x, *args, mask, sequence, reverse, slot, y_in)`` and ``one_bwd(sequence,
    reverse, residuals, cotangents, slot)`` (whose last gradient is the mask's, None; the
    last residual is ``y``): each backward kernel aliases its own direction's saved
    arrays, which a slice of one ``(2, ...)`` array could not give it. ``y`` and its
    cotangent stay one ``(batch, time, 2H)`` array each: the second forward call writes
    its half into the first's ``y`` in place, and both backward calls read their halves of
    ``y`` and ``dy`` in place (``slot``). No concatenated copy of ``y``, no split copies of
    ``dy`` (at the float32 BiLSTM's throughput training step, (256, 50, 256, 512), XLA's
    temporaries went from 408.5 to 384.5 MiB; docs/performance.md, "Backwards in time")."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
    def run(sequence, x, mask, *stacked):
        return tuple(primal(x, *stacked, sequence, mask))  # fwd's structure (a tuple)

    def fwd(sequence, x, mask, *stacked):
        y, outs, res = None, [], []
        for k in (0, 1):
            out, r = one_fwd(x, *(a[k] for a in stacked), mask, True, k == 1, (k, 2), y)
            y = out[0]
            outs.append(out)
            res.append(r)
        # Both directions' residuals hold the finished y: the first call's y is the second
        # call's y_in, which XLA would copy if anything else still read it.
        res = [(*r[:-1], y) for r in res]
        finals = [jnp.stack([o[i] for o in outs]) for i in range(1, len(outs[0]))]
        return (y if sequence else jnp.zeros((0,), y.dtype), *finals), res

    def bwd(sequence, res, cotangents):
        dy, *dfinals = cotangents
        y = res[0][-1]
        dy = dy if sequence else jnp.zeros(y.shape, y.dtype)
        grads = [one_bwd(True, k == 1, res[k], (dy, *(d[k] for d in dfinals)), k) for k in (0, 1)]
        dx = grads[0][0] + grads[1][0]
        arrays = len(grads[0]) - 1  # the last is the mask's
        return (dx, None, *(jnp.stack([g[i] for g in grads]) for i in range(1, arrays)))

    run.defvjp(fwd, bwd)
    return run


_lstm_bi = _two_directions(
    lambda x, w, b, r, h0, c0, sequence, mask: _lstm_forward(
        x, w, b, r, h0, c0, sequence, False, False, mask
    )[:3],
    _lstm_fwd,
    _lstm_bwd,
)


# ---------------------------------------------------------------------------- GRU
def _gru_forward(
    x,
    w,
    bi,
    br,
    r,
    h0,
    sequence: bool,
    save: bool,
    reverse: bool,
    mask=None,
    slot=(0, 1),
    y_in=None,
):
    """The forward kernel over D directions side by side (as :func:`_lstm_forward`, with
    ``slot`` and ``y_in``): ``w (D, F, 3H)``, ``bi``/``br (D, 3H)``, ``r (D, H, 3H)``,
    ``h0 (D, batch, H)``."""
    dt = _storage_dtype(
        "gru", x=x, kernel=w, input_bias=bi, recurrent_bias=br, recurrent_kernel=r, h0=h0
    )
    batch, time, _ = x.shape
    d, h = r.shape[0], r.shape[1]
    outs = [((batch, time, slot[1] * d * h) if sequence else (0,), dt), ((d, batch, h), dt)]
    # Saved for the backward pass: (z, r), h~ and m_h = h R_h + b_rh (gru.cc).
    outs += [((_saved(d, batch, time, n * h) if save else (0,)), dt) for n in (2, 1, 1)]
    # Input panels hold (x_h, x_z, x_r), recurrent ones (m_z, m_r, m_h): see gru.cc.
    wp, rp = _weights(_pack(w, 3, (2, 0, 1))), _weights(_pack(r, 3, (0, 1, 2)))
    return _forward_call(
        "jrnn_gru_fwd",
        outs,
        x,
        wp,
        bi.astype(_F32),
        br.astype(_F32),
        rp,
        h0,
        _steps(mask),
        y_in=y_in,
        slot=slot,
        reverse=reverse,
    )


def gru(
    x: Array,
    w: Array,
    bi: Array,
    br: Array,
    r: Array,
    h0: Array,
    *,
    sequence: bool = True,
    reverse: bool = False,
    mask: Array | None = None,
):
    """A GRU with ``reset_after=True`` (Keras 3's default and CuDNNGRU's maths) over a
    whole sequence, sigmoid gates and tanh activation, float32 or bfloat16 (as
    :func:`lstm`).

    Args:
      x: inputs ``(batch, time, F)``.
      w: the kernel ``(F, 3H)``, gate blocks z, r, h (Keras layout).
      bi, br: the input and recurrent biases ``(3H,)`` (Keras' ``bias[0]``, ``bias[1]``).
      r: the recurrent kernel ``(H, 3H)``.
      h0: initial state ``(batch, H)``.
      sequence, reverse, mask: as :func:`lstm`.

    Returns:
      ``(y, h_T)``: the outputs ``(batch, time, H)`` (or None) and the final state.
    """
    _check_shapes("gru", 3, x, mask, w=w, bi=bi, br=br, r=r, h0=h0)
    y, h = _gru(x, w, bi, br, r, h0, mask, sequence, reverse)
    return (y if sequence else None), h


def _gru_one(x, w, bi, br, r, h0, mask, sequence, save, reverse, slot=(0, 1), y_in=None):
    """:func:`_gru_forward` of one direction: ``(y, h_T (batch, H), *saved)``."""
    y, h, *saved = _gru_forward(
        x,
        w[None],
        bi[None],
        br[None],
        r[None],
        h0[None],
        sequence,
        save,
        reverse,
        mask,
        slot,
        y_in,
    )
    return y, h[0], *saved


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _gru(x, w, bi, br, r, h0, mask, sequence, reverse):
    y, h, *_ = _gru_one(x, w, bi, br, r, h0, mask, sequence, save=False, reverse=reverse)
    return y, h


def _gru_fwd(x, w, bi, br, r, h0, mask, sequence, reverse, slot=(0, 1), y_in=None):
    y, h, *saved = _gru_one(x, w, bi, br, r, h0, mask, True, True, reverse, slot, y_in)
    out = y if sequence else jnp.zeros((0,), y.dtype)
    return (out, h), (x, w, r, h0, mask, saved, y)


def _gru_bwd(sequence, reverse, res, cotangents, slot=0):
    x, w, r, h0, mask, saved, y = res
    dy, dh = cotangents
    dt = y.dtype
    batch, time, _ = y.shape
    h = r.shape[0]
    if not sequence:
        dy = jnp.zeros((batch, time, h), dt)
    # gzr, gax = da, gah = da·r overwrite the saved zr, h~, m_h, and h_prev dy (one
    # direction's: _dy_alias).
    gzr, gax, gah, h_prev, dh0 = _call(
        "jrnn_gru_bwd",
        [((batch, time, n * h), dt) for n in (2, 1, 1, 1)] + [((batch, h), _F32)],
        _weights(_pack_transposed(r)),
        *saved,
        y,
        h0,
        dy.astype(dt),
        dh.astype(_F32),
        _steps(mask),
        aliases={1: 0, 2: 1, 3: 2, **_dy_alias(dy, h, 6, 3)},
        reverse=reverse,
        slot=slot,
    )
    dx, dw, dbi, dbr, dr, dh0_rec = _product_grads(x, w, r, h_prev, [gzr, gax], [gzr, gah], reverse)
    return (*_like((dx, dw, dbi, dbr, dr, dh0 + dh0_rec), (x, w, x, x, r, h0)), None)


_gru.defvjp(_gru_fwd, _gru_bwd)


def gru_bidirectional(
    x: Array,
    w: Array,
    bi: Array,
    br: Array,
    r: Array,
    h0: Array,
    *,
    sequence: bool = True,
    mask: Array | None = None,
):
    """A bidirectional GRU (``reset_after=True``) in one kernel call, as
    :func:`lstm_bidirectional`: every argument but ``x`` and ``mask`` stacks forward's and
    backward's (``w (2, F, 3H)``, ``bi``/``br (2, 3H)``, ``r (2, H, 3H)``, ``h0 (2, batch,
    H)``).

    Returns:
      ``(y, h_T)``: ``y (batch, time, 2H)`` (or None) and the final states ``(2, batch, H)``.
    """
    _check_shapes("gru_bidirectional", 3, x, mask, True, w=w, bi=bi, br=br, r=r, h0=h0)
    y, h = _gru_bi(sequence, x, mask, w, bi, br, r, h0)
    return (y if sequence else None), h


_gru_bi = _two_directions(
    lambda x, w, bi, br, r, h0, sequence, mask: _gru_forward(
        x, w, bi, br, r, h0, sequence, False, False, mask
    )[:2],
    _gru_fwd,
    _gru_bwd,
)


# ---------------------------------------------------------------------------- SimpleRNN
def simple_rnn(
    x: Array,
    w: Array,
    b: Array,
    r: Array,
    h0: Array,
    *,
    sequence: bool = True,
    reverse: bool = False,
    mask: Array | None = None,
):
    """A SimpleRNN with tanh (Keras' default) over a whole sequence, float32 or bfloat16
    (as :func:`lstm`).

    Args:
      x: inputs ``(batch, time, F)``.
      w: the kernel ``(F, H)``; b: the bias ``(H,)``; r: the recurrent kernel ``(H, H)``.
      h0: initial state ``(batch, H)``.
      sequence, reverse, mask: as :func:`lstm`.

    Returns:
      ``(y, h_T)``: the outputs ``(batch, time, H)`` (or None) and the final state.
    """
    _check_shapes("simple_rnn", 1, x, mask, w=w, b=b, r=r, h0=h0)
    y, h = _simple(x, w, b, r, h0, mask, sequence, reverse)
    return (y if sequence else None), h


def _simple_forward(
    x, w, b, r, h0, sequence: bool, reverse: bool, mask=None, slot=(0, 1), y_in=None
):
    """The forward kernel over D directions side by side (as :func:`_lstm_forward`, with
    ``slot`` and ``y_in``): ``w (D, F, H)``, ``b (D, H)``, ``r (D, H, H)``, ``h0 (D, batch,
    H)``."""
    dt = _storage_dtype("simple_rnn", x=x, kernel=w, bias=b, recurrent_kernel=r, h0=h0)
    batch, time, _ = x.shape
    d, h = r.shape[0], r.shape[1]
    outs = [((batch, time, slot[1] * d * h) if sequence else (0,), dt), ((d, batch, h), dt)]
    wp, rp = _weights(_panels64(w)), _weights(_panels64(r))
    return _forward_call(
        "jrnn_simple_fwd",
        outs,
        x,
        wp,
        b.astype(_F32),
        rp,
        h0,
        _steps(mask),
        y_in=y_in,
        slot=slot,
        reverse=reverse,
    )


def _simple_one(x, w, b, r, h0, mask, sequence, reverse, slot=(0, 1), y_in=None):
    y, h = _simple_forward(
        x, w[None], b[None], r[None], h0[None], sequence, reverse, mask, slot, y_in
    )
    return y, h[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _simple(x, w, b, r, h0, mask, sequence, reverse):
    return _simple_one(x, w, b, r, h0, mask, sequence, reverse)


def _simple_fwd(x, w, b, r, h0, mask, sequence, reverse, slot=(0, 1), y_in=None):
    y, h = _simple_one(x, w, b, r, h0, mask, True, reverse, slot, y_in)
    return ((y if sequence else jnp.zeros((0,), y.dtype)), h), (x, w, r, h0, mask, y)


def _simple_bwd(sequence, reverse, res, cotangents, slot=0):
    x, w, r, h0, mask, y = res
    dy, dh = cotangents
    batch, time, _ = y.shape
    h = r.shape[0]
    if not sequence:
        dy = jnp.zeros((batch, time, h), y.dtype)
    # dh_direct: the dh that reaches h0 past masked first steps (zero without a mask).
    dz, dh_direct = _call(
        "jrnn_simple_bwd",
        [((batch, time, h), y.dtype), (dh.shape, _F32)],
        _weights(_pack_transposed(r)),
        y,
        dy.astype(y.dtype),
        dh.astype(_F32),
        _steps(mask),
        aliases=_dy_alias(dy, h, 2, 0),  # dz overwrites one direction's dy
        reverse=reverse,
        slot=slot,
    )
    dx, dw, db, _, dr, dh0 = _product_grads(x, w, r, (y, h0), [dz], [dz], reverse, slot)
    return (*_like((dx, dw, db, dr, dh0 + dh_direct), (x, w, x, r, h0)), None)


_simple.defvjp(_simple_fwd, _simple_bwd)


def simple_rnn_bidirectional(
    x: Array,
    w: Array,
    b: Array,
    r: Array,
    h0: Array,
    *,
    sequence: bool = True,
    mask: Array | None = None,
):
    """A bidirectional SimpleRNN in one kernel call, as :func:`lstm_bidirectional`: every
    argument but ``x`` and ``mask`` stacks forward's and backward's (``w (2, F, H)``,
    ``b (2, H)``, ``r (2, H, H)``, ``h0 (2, batch, H)``).

    Returns:
      ``(y, h_T)``: ``y (batch, time, 2H)`` (or None) and the final states ``(2, batch, H)``.
    """
    _check_shapes("simple_rnn_bidirectional", 1, x, mask, True, w=w, b=b, r=r, h0=h0)
    y, h = _simple_bi(sequence, x, mask, w, b, r, h0)
    return (y if sequence else None), h


_simple_bi = _two_directions(
    lambda x, w, b, r, h0, sequence, mask: _simple_forward(x, w, b, r, h0, sequence, False, mask),
    _simple_fwd,
    _simple_bwd,
)


# ---------------------------------------------------------------------------- ConvLSTM
@functools.cache
def _taps(
    spatial: tuple[int, ...],
    kernel: tuple[int, ...],
    strides: tuple[int, ...] | None = None,
    dilation: tuple[int, ...] | None = None,
    padding: str = "same",
) -> tuple[Any, Any]:
    """A convolution's geometry (TensorFlow's/XLA's padding: "same" pads the odd pixel
    after) as two int32 tables over row-major flattened pixels and kernel taps:
    ``tab (out_pixels, taps)``, the input pixel tap k of output pixel p reads, and
    ``tab_t (in_pixels, taps)``, the output pixel whose tap k reads input pixel q; -1
    where there is none (padding). Defaults: the recurrent convolution (stride 1, "same")."""
    rank = len(spatial)
    strides = strides or (1,) * rank
    dilation = dilation or (1,) * rank
    out = [
        conv_output_length(n, k, s, padding, d)
        for n, k, s, d in zip(spatial, kernel, strides, dilation)
    ]
    pad = [
        max((o - 1) * s + (k - 1) * d + 1 - n, 0) // 2 if padding == "same" else 0
        for n, k, s, d, o in zip(spatial, kernel, strides, dilation, out)
    ]

    def grid(shape):  # (prod(shape), rank) row-major coordinates
        return np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(
            -1, len(shape)
        )

    coords = grid(out)[:, None] * strides + grid(kernel)[None] * dilation - pad
    inside = np.all((coords >= 0) & (coords < np.array(spatial)), axis=-1)
    index = np.ravel_multi_index(
        tuple(np.moveaxis(np.where(inside[..., None], coords, 0), -1, 0)), spatial
    )
    tab = np.where(inside, index, -1).astype(np.int32)
    tab_t = np.full((int(np.prod(spatial)), tab.shape[1]), -1, np.int32)
    p, k = np.nonzero(inside)
    tab_t[tab[p, k], k] = p  # one output pixel per (input pixel, tap): p -> q is injective
    return tab, tab_t


def _weight_grad(src: Array, dz: Array, tab) -> Array:
    """``dW (taps, C, G)`` of a convolution from its input frames ``src (N, Pin, C)``, the
    output gradients ``dz (N, Pout, G)`` and its tap table (:func:`_taps`): one GEMM over
    gathered rows in the native kernel (XLA:CPU's filter-gradient convolution is slower,
    and 20-90x slower still inside a loop)."""
    return _call(
        "jrnn_conv_weight_grad",
        [((tab.shape[1], src.shape[-1], dz.shape[-1]), _F32)],
        src,
        dz,
        jnp.asarray(tab),
    )[0]


def _conv_backward_units(filters: int) -> int:
    """Units per panel of the backward ConvLSTM kernel (``BackwardBlocks`` in
    conv_lstm.cc): 16, 32 or 64, the fewest 16-unit blocks that hold ``filters``."""
    return 16 if filters <= 16 else 32 if filters <= 32 else 64


def conv_lstm(
    x: Array,
    w: Array,
    b: Array,
    r: Array,
    h0: Array,
    c0: Array,
    *,
    strides: Any = 1,
    padding: str = "valid",
    dilation: Any = 1,
    sequence: bool = True,
):
    """A ConvLSTM (rank 1, 2 or 3; channels_last) over a whole sequence, with sigmoid gates
    and tanh activations (Keras' defaults), float32::

        z_t = (x_t ⊛ W; strides, padding, dilation) + b + (h_{t-1} ⊛ R; stride 1, "same")
        c_t = σ(f) c_{t-1} + σ(i) tanh(c~);  h_t = σ(o) tanh(c_t)

    Args:
      x: inputs ``(batch, time, *spatial, C)``.
      w: the kernel ``(*kernel_size, C, 4F)``, gate blocks i, f, c, o (Keras layout).
      b: the bias ``(4F,)``.
      r: the recurrent kernel ``(*kernel_size, F, 4F)``.
      h0, c0: initial states ``(batch, *out_spatial, F)``, ``out_spatial`` the input
        convolution's output size (:func:`jrnn.cells.conv_lstm.conv_output_length`).
      strides, dilation: ints or tuples of ``rank`` ints, and padding ("valid" or
        "same"), of the input convolution.
      sequence: as :func:`lstm`.

    Returns:
      ``(y, h_T, c_T)``: the outputs ``(batch, time, *out_spatial, F)`` (or None) and the
      final states.
    """
    rank = r.ndim - 2
    geometry = tuple(
        tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * rank for v in (strides, dilation)
    )
    if padding not in ("valid", "same"):
        raise ValueError(
            f"jrnn.native.conv_lstm: `padding` must be 'valid' or 'same'; received {padding!r}."
        )
    y, h, c = _conv_lstm(x, w, b, r, h0, c0, sequence, (*geometry, padding))
    return (y if sequence else None), h, c


def _conv_geometry(x, w, b, r, h0, c0, geometry):
    """``(batch, time, pixels, filters, tab_x, nbr)`` of a ConvLSTM call, every shape
    checked against ``x``'s and ``r``'s."""
    strides, dilation, padding = geometry
    rank = r.ndim - 2
    filters = r.shape[-2]
    if rank not in (1, 2, 3) or r.shape[-1] != 4 * filters or x.ndim != rank + 3:
        raise ValueError(
            f"jrnn.native.conv_lstm: `r` must be (*kernel_size, F, 4F) with 1 to 3 spatial "
            f"axes and `x` (batch, time, *spatial, C) of rank {rank} + 3; received r "
            f"{r.shape} and x {x.shape}."
        )
    if len(strides) != rank or len(dilation) != rank:
        raise ValueError(
            f"jrnn.native.conv_lstm: `strides` and `dilation` need {rank} values; received "
            f"{strides} and {dilation}."
        )
    batch, time, *spatial, channels = x.shape
    kernel = w.shape[:rank]
    out = [
        conv_output_length(n, k, s, padding, d)
        for n, k, s, d in zip(spatial, kernel, strides, dilation)
    ]
    want = {
        "w": (*kernel, channels, 4 * filters),
        "b": (4 * filters,),
        "h0": (batch, *out, filters),
        "c0": (batch, *out, filters),
    }
    for name, a in (("w", w), ("b", b), ("h0", h0), ("c0", c0)):
        if a.shape != want[name]:
            raise ValueError(
                f"jrnn.native.conv_lstm: `{name}` must have shape {want[name]} (from `x` "
                f"{x.shape}, the recurrent kernel {r.shape} and the convolution's geometry); "
                f"received {a.shape}."
            )
    tab_x, _ = _taps(tuple(spatial), tuple(kernel), strides, dilation, padding)
    nbr, _ = _taps(tuple(out), tuple(r.shape[:rank]))
    return batch, time, int(np.prod(out)), filters, tab_x, nbr


def _conv_lstm_forward(x, w, b, r, h0, c0, geometry, sequence: bool, save: bool):
    dt = _storage_dtype(
        "conv_lstm", (_F32,), x=x, kernel=w, bias=b, recurrent_kernel=r, h0=h0, c0=c0
    )
    batch, time, pixels, f, tab_x, nbr = _conv_geometry(x, w, b, r, h0, c0, geometry)
    outs = [((batch, time, pixels, f) if sequence else (0,), dt)] + [((batch, pixels, f), dt)] * 2
    if save:
        outs += [((batch, time, pixels, 4 * f), _F32), ((batch, time, pixels, f), _F32)]
    else:
        outs += [((0,), _F32)] * 2
    order = (0, 1, 2, 3)
    flat = functools.partial(jnp.reshape, shape=(batch, pixels, f))
    y, h, c, gates, cs = _call(
        "jrnn_conv_lstm_fwd",
        outs,
        x.reshape(batch, time, -1, x.shape[-1]),
        _weights(_pack(w.reshape(-1, 4 * f), 4, order)),
        b,
        jnp.asarray(tab_x),
        _weights(_pack(r.reshape(-1, 4 * f), 4, order)),
        jnp.asarray(nbr),
        flat(h0),
        flat(c0),
    )
    unflat = functools.partial(jnp.reshape, shape=h0.shape)
    y = y.reshape(batch, time, *h0.shape[1:]) if sequence else y
    return y, unflat(h), unflat(c), gates, cs


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _conv_lstm(x, w, b, r, h0, c0, sequence, geometry):
    y, h, c, _, _ = _conv_lstm_forward(x, w, b, r, h0, c0, geometry, sequence, save=False)
    return y, h, c


def _conv_lstm_fwd(x, w, b, r, h0, c0, sequence, geometry):
    y, h, c, gates, cs = _conv_lstm_forward(x, w, b, r, h0, c0, geometry, True, save=True)
    out = y if sequence else jnp.zeros((0,), y.dtype)
    return (out, h, c), (x, w, r, h0, c0, y, gates, cs)


def _conv_lstm_bwd(sequence, geometry, res, cotangents):
    x, w, r, h0, c0, y, gates, cs = res
    dy, dh, dc = cotangents
    batch, time, pixels, g = gates.shape
    f = g // 4
    strides, dilation, padding = geometry
    rank = r.ndim - 2
    spatial = x.shape[2:-1]
    tab_x, _ = _taps(tuple(spatial), tuple(w.shape[:rank]), strides, dilation, padding)
    nbr, nbr_t = _taps(tuple(h0.shape[1:-1]), tuple(r.shape[:rank]))
    if not sequence:
        dy = jnp.zeros(y.shape, y.dtype)
    flat = functools.partial(jnp.reshape, shape=(batch, pixels, f))
    rt = jnp.moveaxis(r.reshape(-1, f, g), 1, 2)  # (taps, 4F, F): Rᵀ per tap
    dz, h_prev, dc0 = _call(
        "jrnn_conv_lstm_bwd",
        [((batch, time, pixels, n), _F32) for n in (g, f)] + [((batch, pixels, f), _F32)],
        _weights(_panels(rt.reshape(-1, f), _conv_backward_units(f))),
        jnp.asarray(nbr_t),
        gates,
        cs,
        y.reshape(batch, time, pixels, f),
        flat(h0),
        flat(c0),
        dy.reshape(batch, time, pixels, f),
        *[flat(a.astype(_F32)) for a in (dh, dc)],
        aliases={2: 0, 7: 1},  # dz overwrites the gates, h_{t-1} dy
    )
    # Kernel gradients: one GEMM over gathered rows of every frame each (dW from the input
    # frames, dR from the h_{t-1} frames); dx and dh_0 are transposed convolutions (XLA).
    frames = dz.reshape(batch * time, pixels, g)
    x_frames = x.reshape(batch * time, *spatial, x.shape[-1])
    dw = _weight_grad(x_frames.reshape(batch * time, -1, x.shape[-1]), frames, tab_x)
    dr = _weight_grad(h_prev.reshape(batch * time, pixels, f), frames, nbr)
    dz = dz.reshape(batch * time, *h0.shape[1:-1], g)
    conv_args = (strides, padding, dilation, True)
    _, dx_of = jax.vjp(lambda x: _conv_plain(x, w, *conv_args), x_frames)
    dz0 = dz.reshape(batch, time, *dz.shape[1:])[:, 0]
    return (
        dx_of(dz)[0].reshape(x.shape),
        dw.reshape(w.shape),
        jnp.sum(frames, axis=(0, 1)),
        dr.reshape(r.shape),
        recurrent_conv_input_grad(r, dz0),
        dc0.reshape(c0.shape),
    )


_conv_lstm.defvjp(_conv_lstm_fwd, _conv_lstm_bwd)

__all__ = [
    "available",
    "conv_lstm",
    "gru",
    "gru_bidirectional",
    "lstm",
    "lstm_bidirectional",
    "simple_rnn",
    "simple_rnn_bidirectional",
    "unavailable_reason",
]
