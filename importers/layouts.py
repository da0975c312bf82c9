"""Gate-layout conversions between Keras (jrnn's layout) and every layout found in the wild.

Pure NumPy on bare arrays: no jax, keras, tensorflow or torch import of its own (flag
and count arguments are checked by :mod:`jrnn._checks`, imported on use). Every function
validates its inputs once, raises ``ValueError`` naming the weight or argument, the
expected and the received value, returns new arrays (never views of its inputs) and keeps
the dtype. Weights must be floating-point arrays (float16/32/64, bfloat16, as Keras'
are): int, bool, complex, string and object arrays are refused, never cast. A Keras
``bias`` of None (``use_bias=False``) converts as zeros.

**Canonical layout** (Keras 2/3 and jrnn; ``u`` = units, ``in`` = input features; gate
blocks are contiguous column slices of the last axis):

=====================  ============  ================  ===============================  =======
layer                  kernel        recurrent_kernel  bias                             gates
=====================  ============  ================  ===============================  =======
LSTM                   ``(in, 4u)``  ``(u, 4u)``       ``(4u,)``                        i f c o
GRU reset_after=True   ``(in, 3u)``  ``(u, 3u)``       ``(2, 3u)`` row 0 input, 1 rec.  z r h
GRU reset_after=False  ``(in, 3u)``  ``(u, 3u)``       ``(3u,)`` (input side only)      z r h
SimpleRNN              ``(in, u)``   ``(u, u)``        ``(u,)``                         --
=====================  ============  ================  ===============================  =======

**Other layouts** (facts with sources: ``shared/reference/keras-rnn-facts.md`` §3.5, §4).
Gate letters are Keras' throughout: torch/Flax ``g`` and TF1 ``j`` are Keras ``c``; torch/Flax
``n`` is Keras ``h``; TF1 GRU ``u`` is Keras ``z``.

======================================  ==========================================  ==========
source (where the layout is defined)    arrays                                      gates
======================================  ==========================================  ==========
Keras 2 ``CuDNNLSTM`` (keras 2.2.4       kernel ``(in, 4u)``: each gate's cuDNN     i f c o
``keras/layers/cudnn_recurrent.py``;     ``(u, in)`` matrix row-major in an
``_convert_rnn_weights`` in              ``(in, u)`` slot; recurrent ``(u, 4u)``
``engine/saving.py``, tf_keras           per gate transposed; bias ``(8u,)`` =
``saving/legacy/hdf5_format.py``)        input biases then recurrent biases
Keras 2 ``CuDNNGRU`` (same files)        as CuDNNLSTM with 3 gates; bias ``(6u,)``  z r h
                                         = input then recurrent (reset-after maths)
Keras 1 LSTM (keras 1.2.2                12 arrays ``W_*, U_*, b_*`` stored in      i c f o
``layers/recurrent.py``)                 order i, c, f, o; names ``<layer>_W_i``...
Keras 1 GRU (same)                       9 arrays ``W_z,U_z,b_z, W_r,..., b_h``     z r h
                                         (reset-before maths)
Keras 1 SimpleRNN; LSTM/GRU with         3 arrays ``W, U, b`` already in Keras      --
``consume_less='gpu'``                   layout
PyTorch ``nn.LSTM`` (torch.nn.RNNBase)   ``weight_ih (4u, in)``, ``weight_hh        i f c o
                                         (4u, u)``, ``bias_ih``, ``bias_hh (4u,)``
PyTorch ``nn.GRU``                       ``(3u, in)``, ``(3u, u)``, two biases;     r z h
                                         reset-after maths
PyTorch ``nn.RNN`` (tanh or relu)        ``(u, in)``, ``(u, u)``, two biases        --
Flax linen ``LSTMCell`` and              ``ii, if, ig, io``: ``{kernel (in, u)}``;  i f c o
``OptimizedLSTMCell``                    ``hi, hf, hg, ho``: ``{kernel (u, u),
(``flax/linen/recurrent.py``)            bias (u,)}``
Flax nnx ``LSTMCell``                    as linen, attribute ``if_`` for ``if``     i f c o
(``flax/nnx/nn/recurrent.py``)
Flax nnx ``OptimizedLSTMCell``           ``dense_i.kernel (in, 4u)``,               i f c o
                                         ``dense_h.kernel (u, 4u)``, ``dense_h.bias``
                                         = the Keras LSTM layout
Flax linen ``GRUCell``                   ``ir, iz, in``: kernel + bias; ``hr, hz``: r z h
                                         kernel; ``hn``: kernel + bias
Flax nnx ``GRUCell``                     ``dense_i.kernel (in, 3u)``, ``dense_i.biasr z h
                                         (3u,)``, ``dense_h.kernel (u, 3u)``; no
                                         recurrent bias (google/flax#5594)
Flax linen / nnx ``SimpleCell``          linen ``i`` (kernel, bias), ``h`` (kernel);--
                                         nnx ``dense_i``, ``dense_h``
TF1 ``LSTMCell`` / ``BasicLSTMCell``     ``kernel (in + u, 4u)`` on ``[x, h]``,     i c f o
(``tensorflow/python/keras/layers/       ``bias (4u,)``; ``forget_bias`` added at
legacy_rnn/rnn_cell_impl.py``)           run time, not stored
TF1 ``GRUCell`` (same file)              ``gates/kernel (in + u, 2u)`` (r, z),      r z | h
                                         ``gates/bias (2u,)``, ``candidate/kernel
                                         (in + u, u)``, ``candidate/bias (u,)``;
                                         reset-before maths
TF1 ``BasicRNNCell`` (same file)         ``kernel (in + u, u)``, ``bias (u,)``      --
======================================  ==========================================  ==========

**Not representable** (the converters raise ``ValueError`` saying why): GRU
``reset_after=False`` into any reset-after layout (cuDNN, PyTorch, Flax) and
``reset_after=True`` into a reset-before one (Keras 1, TF1): the reset gate multiplies
``h`` before the recurrent matmul in one and ``h @ U_h + b`` after it in the other, and no
weights make the two equal (Keras 2 refuses this too); Keras GRU with a non-zero recurrent
candidate bias into Flax nnx ``GRUCell``; PyTorch LSTM ``proj_size``. TF1 ``LSTMCell``
peepholes (``w_f_diag`` ...), ``num_proj`` and ``cell_clip`` are not read here (Keras has
no equivalent).

**Activations are not weights.** These functions move parameters only; the maths around
them must be chosen where the layer is built: a PyTorch ``nn.RNN(nonlinearity='relu')``
needs ``SimpleRNN(activation='relu')``, and a Flax cell built with a non-default
``gate_fn`` / ``activation_fn`` (defaults sigmoid / tanh, Keras' too) needs the jrnn or
Keras layer's ``recurrent_activation`` / ``activation`` set to match; nothing in the params
records them, so no converter can check it.

Example:
    >>> import numpy as np
    >>> from importers import layouts
    >>> k, rk, b = np.ones((3, 20)), np.ones((5, 20)), np.ones(20)
    >>> w_ih, w_hh, b_ih, b_hh = layouts.keras_lstm_to_torch(k, rk, b)
    >>> w_ih.shape, w_hh.shape, b_ih.shape, float(b_hh.sum())
    ((20, 3), (20, 5), (20,), 0.0)
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Arrays = tuple[np.ndarray, ...]
Order = str | Sequence[str]

KERAS_LSTM_GATES = "ifco"
"""Keras LSTM gate order (input, forget, cell candidate, output); also cuDNN, PyTorch, Flax."""
KERAS_GRU_GATES = "zrh"
"""Keras GRU gate order (update, reset, candidate); also Keras 1 and Keras 2 CuDNNGRU."""
KERAS1_LSTM_GATES = "icfo"
"""Keras 1 LSTM storage order of the per-gate arrays; TF1 LSTMCell's ``i, j, f, o`` too."""
TORCH_GRU_GATES = "rzh"
"""PyTorch ``nn.GRU``, Flax ``GRUCell`` and cuDNN order (reset, update, new)."""

_GATE_COUNT = {"lstm": 4, "gru": 3, "simple_rnn": 1}
_CLASS = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}

_RESET_BEFORE_MATHS = (
    "GRU(reset_after=False) applies the reset gate to h before the recurrent matmul, "
    "tanh(x W_h + b_h + (r * h) U_h), while {target} applies it after, "
    "tanh(x W_h + b_h + r * (h U_h + b_hh)); no choice of weights makes the two equal "
    "(Keras 2's loader refuses this conversion too: '... is not compatible with ...')"
)


# ----------------------------------------------------------------------------- helpers
def _array(value: Any) -> np.ndarray:
    """NumPy view of an array-like, a torch tensor or a Flax nnx ``Variable`` (duck-typed)."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: ml_dtypes' (JAX's)
            import ml_dtypes
            import torch

            return value.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        value = value.numpy()
    elif hasattr(value, "get_value"):  # flax.nnx.Variable
        value = value.get_value()
    return np.asarray(value)


def _is_float(dtype: np.dtype) -> bool:
    if dtype.kind == "f":
        return True
    if dtype.kind != "V":
        return False
    import ml_dtypes  # JAX's extra floats (bfloat16, float8_*) have NumPy dtype kind "V"

    try:
        ml_dtypes.finfo(dtype)
    except ValueError:
        return False
    return True


def _weight(value: Any, what: str) -> np.ndarray:
    """``value`` as a floating-point array; the one dtype check every converter's input
    passes (int, bool, complex, string and object arrays are refused, never cast)."""
    a = _array(value)
    if not _is_float(a.dtype):
        raise ValueError(
            f"{what}: expected a floating-point array (float16/32/64 or bfloat16, as Keras "
            f"weights are); received dtype {a.dtype}."
        )
    return a


def _flag(value: Any, argument: str, where: str) -> bool:
    from jrnn._checks import boolean  # on use: this module's own imports stay NumPy-only

    return boolean(value, argument, where)


def _count_or_none(value: Any, argument: str, where: str) -> int | None:
    from jrnn._checks import positive_int

    return None if value is None else positive_int(value, argument, where)


def _finite_real(value: Any, argument: str, where: str) -> float:
    number = np.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float64's range
            pass
    if not np.isfinite(number):
        raise ValueError(
            f"{where}: `{argument}` must be a finite real number such as 1.0; received {value!r}."
        )
    return number


def _fmt(shape: Sequence[int | str]) -> str:
    parts = [str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def _expect(value: Any, shape: Sequence[int | str], what: str) -> np.ndarray:
    """``value`` as a float array of ``shape``; a ``str`` entry is a named free dimension."""
    a = _weight(value, what)
    ok = a.ndim == len(shape) and all(
        isinstance(s, str) or a.shape[d] == s for d, s in enumerate(shape)
    )
    if not ok:
        raise ValueError(f"{what}: expected shape {_fmt(shape)}; received {a.shape}.")
    return a


def _units(recurrent_kernel: Any, gates: int, what: str) -> tuple[np.ndarray, int]:
    rk = _weight(recurrent_kernel, what)
    if rk.ndim != 2 or rk.shape[1] != gates * rk.shape[0]:
        want = "(units, units)" if gates == 1 else f"(units, {gates} * units)"
        raise ValueError(f"{what}: expected shape {want}; received {rk.shape}.")
    return rk, rk.shape[0]


def _keras(
    kind: str,
    kernel: Any,
    recurrent_kernel: Any,
    bias: Any,
    target: str,
    reset_after: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Validate Keras-layout weights of ``kind`` being converted to ``target``.

    For GRU, ``reset_after`` says which maths ``target`` computes (None: either).
    """
    name = _CLASS[kind]
    n = _GATE_COUNT[kind]
    rk, u = _units(recurrent_kernel, n, f"Keras {name} recurrent_kernel (to {target})")
    k = _expect(kernel, ("in", n * u), f"Keras {name} kernel (to {target}, units={u})")
    if bias is None:  # use_bias=False: the layer adds nothing, as zeros would
        if kind == "gru" and reset_after is None:
            raise ValueError(
                f"Keras GRU bias (to {target}): None is ambiguous here; pass zeros of shape "
                f"(2, {3 * u}) for reset_after=True or ({3 * u},) for reset_after=False."
            )
        shape = (2, n * u) if kind == "gru" and reset_after else (n * u,)
        bias = np.zeros(shape, k.dtype)
    b = _weight(bias, f"Keras {name} bias (to {target})")
    if kind != "gru":
        b = _expect(b, (n * u,), f"Keras {name} bias (to {target}, units={u})")
        return k, rk, b, u
    if b.shape == (3 * u,) and reset_after is True:
        raise ValueError(
            f"Keras GRU(reset_after=False) weights (bias shape {b.shape}) cannot be converted "
            f"to {target}: " + _RESET_BEFORE_MATHS.format(target=target) + ". Load them into "
            "a GRU(reset_after=False) (jrnn.GRU or Keras) instead."
        )
    if b.shape == (2, 3 * u) and reset_after is False:
        raise ValueError(
            f"Keras GRU(reset_after=True) weights (bias shape {b.shape}) cannot be converted "
            f"to {target}, which computes the reset-before GRU: "
            + _RESET_BEFORE_MATHS.format(target="GRU(reset_after=True)")
            + ". Load them into a GRU(reset_after=True) (jrnn.GRU or Keras) instead."
        )
    if b.shape not in ((3 * u,), (2, 3 * u)):
        raise ValueError(
            f"Keras GRU bias (to {target}, units={u}): expected shape (2, {3 * u}) "
            f"(reset_after=True) or ({3 * u},) (reset_after=False); received {b.shape}."
        )
    return k, rk, b, u


def _order(order: Any, argument: str, where: str) -> list[str]:
    names = list(order) if isinstance(order, (str, Sequence)) else []
    if not names or not all(isinstance(g, str) for g in names) or len(set(names)) != len(names):
        raise ValueError(
            f"{where}: `{argument}` must name one or more distinct gates, e.g. 'ifco' or "
            f"['i', 'f']; received {order!r}."
        )
    return names


def _axis(axis: Any, ndim: int, where: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -ndim <= axis < ndim:
        raise ValueError(
            f"{where}: `axis` must be an int in [{-ndim}, {ndim}) for {ndim}-D arrays; "
            f"received {axis!r}."
        )
    return int(axis) % ndim


def split_gates(array: Any, order: Order, axis: int = -1) -> dict[str, np.ndarray]:
    """Split ``array`` into equal gate blocks along ``axis``, keyed by gate name.

    Args:
        array: any shape; ``array.shape[axis]`` must be ``len(order) * units``.
        order: gate names in the order of the blocks, e.g. ``"ifco"`` or ``["i", "f"]``.
        axis: the gate axis.

    Returns:
        ``{gate: block}`` with blocks of ``array.shape[axis] // len(order)`` along ``axis``.

    Example:
        >>> import numpy as np
        >>> {g: b.tolist() for g, b in split_gates(np.arange(4), "ab").items()}
        {'a': [0, 1], 'b': [2, 3]}
    """
    a = _array(array)
    names = _order(order, "order", "split_gates")
    if a.shape[_axis(axis, a.ndim, "split_gates")] % len(names):
        raise ValueError(
            f"split_gates: axis {axis} must hold {len(names)} equal gate blocks {names}; "
            f"received an array of shape {a.shape}."
        )
    return {g: block.copy() for g, block in zip(names, np.split(a, len(names), axis=axis))}


def join_gates(blocks: Mapping[str, Any], order: Order, axis: int = -1) -> np.ndarray:
    """Concatenate gate blocks along ``axis`` in ``order`` (inverse of :func:`split_gates`).

    Args:
        blocks: ``{gate: array}``; every gate of ``order`` must be present.
        order: gate names in the order wanted.
        axis: the gate axis.

    Returns:
        A new array holding the blocks of ``order`` along ``axis``.
    """
    names = _order(order, "order", "join_gates")
    if not isinstance(blocks, Mapping):
        raise ValueError(
            f"join_gates: `blocks` must be a mapping {{gate: array}}; received "
            f"{type(blocks).__name__}."
        )
    missing = [g for g in names if g not in blocks]
    if missing:
        raise ValueError(f"join_gates: blocks {sorted(blocks)} lack gates {missing}.")
    arrays = [_array(blocks[g]) for g in names]
    ax = _axis(axis, arrays[0].ndim, "join_gates")
    if len({(a.ndim, a.shape[:ax] + a.shape[ax + 1 :]) for a in arrays}) > 1:
        shapes = {g: a.shape for g, a in zip(names, arrays)}
        raise ValueError(
            f"join_gates: gate blocks must have the same shape except along axis {axis}; "
            f"received {shapes}."
        )
    return np.concatenate(arrays, axis=ax)


def reorder_gates(array: Any, from_order: Order, to_order: Order, axis: int = -1) -> np.ndarray:
    """Permute the equal gate blocks of ``array`` along ``axis``: the one gate permutation.

    Every converter of this module that reorders gates goes through this function.

    Args:
        array: any shape; ``array.shape[axis] = len(from_order) * units``.
        from_order: gate names of the blocks as stored, e.g. ``"icfo"`` (Keras 1 LSTM).
        to_order: gate names wanted, a permutation of ``from_order``, e.g. ``"ifco"``.
        axis: the gate axis (``-1`` for kernels ``(in, G*u)`` and biases, ``0`` for
            PyTorch's ``(G*u, in)`` weights).

    Returns:
        A new array of the same shape and dtype with the blocks in ``to_order``.

    Example:
        >>> import numpy as np
        >>> reorder_gates(np.array([1, 1, 2, 2, 3, 3]), "rzh", "zrh").tolist()
        [2, 2, 1, 1, 3, 3]
    """
    src = _order(from_order, "from_order", "reorder_gates")
    dst = _order(to_order, "to_order", "reorder_gates")
    if sorted(src) != sorted(dst):
        raise ValueError(
            f"reorder_gates: to_order {dst} must be a permutation of from_order {src}."
        )
    return join_gates(split_gates(array, src, axis), dst, axis)


def _per_gate(array: np.ndarray, gates: int, func: Callable[[np.ndarray], np.ndarray]):
    """Apply ``func`` to each of the ``gates`` column blocks (Keras 2's ``transform_kernels``)."""
    return np.concatenate([func(b) for b in np.split(array, gates, axis=-1)], axis=-1)


def detect_keras_rnn_layout(kind: str, kernel: Any, recurrent_kernel: Any, bias: Any) -> str:
    """Say which layout three LSTM/GRU arrays are in, from the bias shape as Keras 2 does.

    The rule of Keras 2's ``_convert_rnn_weights`` (units ``u`` from the recurrent kernel):
    LSTM bias ``(8u,)`` -> ``"cudnn"``, ``(4u,)`` -> ``"keras"``; GRU ``(6u,)`` ->
    ``"cudnn"``, ``(2, 3u)`` -> ``"keras"`` (reset_after=True), ``(3u,)`` ->
    ``"keras_reset_before"`` (reset_after=False). ``bias=None`` (``use_bias=False``) is
    ``"keras"`` for LSTM and raises for GRU, whose maths the bias shape would tell.

    Args:
        kind: ``"lstm"`` or ``"gru"``.
        kernel: ``(in, 4u)`` / ``(in, 3u)``.
        recurrent_kernel: ``(u, 4u)`` / ``(u, 3u)``.
        bias: see above.

    Returns:
        ``"cudnn"``, ``"keras"`` or ``"keras_reset_before"``.

    Example:
        >>> import numpy as np
        >>> detect_keras_rnn_layout("gru", np.zeros((3, 15)), np.zeros((5, 15)), np.zeros(30))
        'cudnn'
    """
    if kind not in ("lstm", "gru"):
        raise ValueError(f"detect_keras_rnn_layout: kind must be 'lstm' or 'gru'; got {kind!r}.")
    n = _GATE_COUNT[kind]
    name = _CLASS[kind]
    _, u = _units(recurrent_kernel, n, f"{name} recurrent_kernel")
    _expect(kernel, ("in", n * u), f"{name} kernel (units={u})")
    if bias is None:
        if kind == "gru":
            raise ValueError(
                "GRU without bias: the layout (reset_after or not) cannot be told from the "
                "weights; pass a zero bias of shape (2, 3u) or (3u,)."
            )
        return "keras"
    shape = _weight(bias, f"{name} bias").shape
    layouts = {(2 * n * u,): "cudnn"}
    if kind == "lstm":
        layouts[(n * u,)] = "keras"
    else:
        layouts[(2, n * u)] = "keras"
        layouts[(n * u,)] = "keras_reset_before"
    if shape not in layouts:
        expected = ", ".join(f"{_fmt(s)} ({v})" for s, v in layouts.items())
        raise ValueError(f"{name} bias (units={u}): expected one of {expected}; received {shape}.")
    return layouts[shape]


# ----------------------------------------------------------------------------- CuDNN (Keras 2)
def _cudnn_to_keras(kernel, recurrent_kernel, gates: int, name: str):
    rk, u = _units(recurrent_kernel, gates, f"{name} recurrent_kernel")
    k = _expect(kernel, ("in", gates * u), f"{name} kernel (units={u})")
    # Keras 2: per gate `k.T.reshape(k.shape, order='F')` == the row-major (u, in) cuDNN
    # matrix transposed; recurrent kernels are transposed per gate.
    kernel = _per_gate(k, gates, lambda g: g.T.reshape(g.shape, order="F"))
    return kernel, _per_gate(rk, gates, lambda g: g.T), u


def _keras_to_cudnn(k: np.ndarray, rk: np.ndarray, gates: int):
    kernel = _per_gate(k, gates, lambda g: g.T.reshape(g.shape, order="C"))
    return kernel, _per_gate(rk, gates, lambda g: np.ascontiguousarray(g.T))


def cudnn_lstm_to_keras(kernel: Any, recurrent_kernel: Any, bias: Any) -> Arrays:
    """Keras 2 ``CuDNNLSTM`` weights -> Keras ``LSTM`` (Keras 2's ``_convert_rnn_weights``).

    Args:
        kernel: ``(in, 4u)``, gates i, f, c, o, each block the cuDNN ``(u, in)`` matrix
            stored row-major in an ``(in, u)`` slot.
        recurrent_kernel: ``(u, 4u)``, each block the cuDNN ``(u, u)`` matrix.
        bias: ``(8u,)`` = input biases (i, f, c, o) then recurrent biases (i, f, c, o).

    Returns:
        ``(kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u,))``, gates i, f, c, o; the
        bias is the sum of the two halves (LSTM adds them anyway).
    """
    k, rk, u = _cudnn_to_keras(kernel, recurrent_kernel, 4, "CuDNNLSTM")
    b = _expect(bias, (8 * u,), f"CuDNNLSTM bias (units={u})")
    return k, rk, b[: 4 * u] + b[4 * u :]


def keras_lstm_to_cudnn(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> Arrays:
    """Keras ``LSTM`` weights -> Keras 2 ``CuDNNLSTM`` (inverse of :func:`cudnn_lstm_to_keras`).

    Args:
        kernel: ``(in, 4u)``, recurrent_kernel ``(u, 4u)``, bias ``(4u,)``; gates i, f, c, o.

    Returns:
        ``(kernel (in, 4u), recurrent_kernel (u, 4u), bias (8u,))`` in the CuDNNLSTM layout;
        the bias is ``tile(0.5 * bias, 2)`` (input and recurrent halves equal, as Keras 2).
    """
    k, rk, b, _ = _keras("lstm", kernel, recurrent_kernel, bias, "CuDNNLSTM")
    k, rk = _keras_to_cudnn(k, rk, 4)
    return k, rk, np.tile(0.5 * b, 2).astype(b.dtype)


def cudnn_gru_to_keras(kernel: Any, recurrent_kernel: Any, bias: Any) -> Arrays:
    """Keras 2 ``CuDNNGRU`` weights -> Keras ``GRU(reset_after=True)``.

    There is no conversion to ``GRU(reset_after=False)``: cuDNN's GRU is reset-after.

    Args:
        kernel: ``(in, 3u)``, gates z, r, h, each block a row-major cuDNN ``(u, in)`` matrix.
        recurrent_kernel: ``(u, 3u)``, each block the cuDNN ``(u, u)`` matrix.
        bias: ``(6u,)`` = input biases (z, r, h) then recurrent biases (z, r, h).

    Returns:
        ``(kernel (in, 3u), recurrent_kernel (u, 3u), bias (2, 3u))``, gates z, r, h.
    """
    k, rk, u = _cudnn_to_keras(kernel, recurrent_kernel, 3, "CuDNNGRU")
    b = _expect(bias, (6 * u,), f"CuDNNGRU bias (units={u})")
    return k, rk, b.reshape(2, 3 * u).copy()


def keras_gru_to_cudnn(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> Arrays:
    """Keras ``GRU(reset_after=True)`` weights -> Keras 2 ``CuDNNGRU``.

    A ``GRU(reset_after=False)`` (bias ``(3u,)``) raises ``ValueError``: cuDNN computes the
    reset-after GRU.

    Args:
        kernel: ``(in, 3u)``, recurrent_kernel ``(u, 3u)``, bias ``(2, 3u)``; gates z, r, h.

    Returns:
        ``(kernel (in, 3u), recurrent_kernel (u, 3u), bias (6u,))`` in the CuDNNGRU layout.
    """
    k, rk, b, _ = _keras("gru", kernel, recurrent_kernel, bias, "CuDNNGRU", reset_after=True)
    k, rk = _keras_to_cudnn(k, rk, 3)
    return k, rk, b.reshape(-1).copy()


# ----------------------------------------------------------------------------- Keras 1
_KERAS1 = {
    "lstm": (KERAS1_LSTM_GATES, KERAS_LSTM_GATES),
    "gru": (KERAS_GRU_GATES, KERAS_GRU_GATES),
}


def keras1_weight_names(kind: str, layer_name: str) -> list[str]:
    """Keras 1's weight names for a layer, in storage order (``"<layer>_W_i"`` ...).

    Args:
        kind: ``"lstm"`` (12 names, gates i, c, f, o), ``"gru"`` (9, z, r, h) or
            ``"simple_rnn"`` (``W, U, b``).
        layer_name: the Keras 1 layer name, e.g. ``"lstm_1"``.

    Example:
        >>> keras1_weight_names("gru", "gru_1")[:3]
        ['gru_1_W_z', 'gru_1_U_z', 'gru_1_b_z']
    """
    return [f"{layer_name}_{s}" for s in _keras1_suffixes(kind)]


def _keras1_suffixes(kind: str) -> list[str]:
    if kind == "simple_rnn":
        return ["W", "U", "b"]
    if kind not in _KERAS1:
        raise ValueError(f"kind must be 'lstm', 'gru' or 'simple_rnn'; received {kind!r}.")
    return [f"{p}_{g}" for g in _KERAS1[kind][0] for p in "WUb"]


def _keras1_arrays(weights: Any, kind: str) -> list[np.ndarray]:
    """The Keras 1 arrays in storage order, from a sequence or a ``{name: array}`` mapping.

    Names match by suffix (``lstm_1_W_i``, ``lstm_1_W_i:0`` or ``model/lstm_1_W_i:0``);
    three arrays ``W, U, b`` are the ``consume_less='gpu'`` / SimpleRNN form.
    """
    name = f"Keras 1 {_CLASS[kind]}"
    per_gate, fused = _keras1_suffixes(kind), ["W", "U", "b"]
    if not isinstance(weights, Mapping):
        arrays = [_array(w) for w in weights]
        allowed = {len(per_gate), 3}
        if len(arrays) not in allowed:
            raise ValueError(
                f"{name}: expected {' or '.join(map(str, sorted(allowed)))} arrays "
                f"({', '.join(per_gate)}); received {len(arrays)}."
            )
        return arrays
    bases = {key: re.sub(r":\d+$", "", str(key)).rsplit("/", 1)[-1] for key in weights}
    for suffixes in (per_gate, fused):
        found: dict[str, Any] = {}
        for key, base in bases.items():
            hits = [s for s in suffixes if base == s or base.endswith("_" + s)]
            if hits:
                if hits[0] in found:
                    raise ValueError(f"{name}: two weights end in {hits[0]!r}: {sorted(bases)}.")
                found[hits[0]] = weights[key]
        if len(found) == len(suffixes) == len(weights):
            return [_array(found[s]) for s in suffixes]
    raise ValueError(
        f"{name}: expected weights named '<layer>_' + one of {per_gate} (or {fused}); "
        f"received {sorted(map(str, weights))}."
    )


def _keras1_to_keras(weights: Any, kind: str) -> Arrays:
    arrays = _keras1_arrays(weights, kind)
    if len(arrays) == 3:  # SimpleRNN or consume_less='gpu': already the Keras layout
        w, u_, b = arrays
        _keras(
            kind,
            w,
            u_,
            b,
            "Keras (from Keras 1 W, U, b)",
            reset_after=False if kind == "gru" else None,
        )
        return w.copy(), u_.copy(), b.copy()
    stored, keras_order = _KERAS1[kind]
    name = f"Keras 1 {_CLASS[kind]}"
    _, u = _units(arrays[1], 1, f"{name} U_{stored[0]}")
    n_in = _expect(arrays[0], ("in", u), f"{name} W_{stored[0]} (units={u})").shape[0]
    parts = []
    for p, (prefix, shape) in enumerate((("W", (n_in, u)), ("U", (u, u)), ("b", (u,)))):
        blocks = {
            g: _expect(arrays[3 * j + p], shape, f"{name} {prefix}_{g}")
            for j, g in enumerate(stored)
        }
        parts.append(join_gates(blocks, keras_order))
    return tuple(parts)


def _keras_to_keras1(kind: str, kernel, recurrent_kernel, bias) -> list[np.ndarray]:
    k, rk, b, _ = _keras(
        kind,
        kernel,
        recurrent_kernel,
        bias,
        "Keras 1",
        reset_after=False if kind == "gru" else None,
    )
    stored, keras_order = _KERAS1[kind]
    per = [split_gates(a, keras_order) for a in (k, rk, b)]
    return [per[p][g].copy() for g in stored for p in range(3)]


def keras1_lstm_to_keras(weights: Sequence[Any] | Mapping[str, Any]) -> Arrays:
    """Keras 1 LSTM weights -> Keras ``LSTM`` (Keras 2's ``preprocess_weights_for_loading``).

    Args:
        weights: the 12 per-gate arrays in Keras 1's storage order ``W_i, U_i, b_i, W_c,
            U_c, b_c, W_f, U_f, b_f, W_o, U_o, b_o`` (``W (in, u)``, ``U (u, u)``,
            ``b (u,)``), or a mapping keyed by Keras 1 names (``lstm_1_W_i``, suffix
            matched, ``:0`` and ``scope/`` prefixes ignored). Three arrays ``W, U, b``
            (``consume_less='gpu'``) are already in the Keras layout and are copied.

    Returns:
        ``(kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u,))``, gates i, f, c, o.
    """
    return _keras1_to_keras(weights, "lstm")


def keras_lstm_to_keras1(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> list[np.ndarray]:
    """Keras ``LSTM`` -> Keras 1's 12 per-gate arrays in storage order (gates i, c, f, o).

    Returns:
        ``[W_i, U_i, b_i, W_c, U_c, b_c, W_f, U_f, b_f, W_o, U_o, b_o]``; zip with
        :func:`keras1_weight_names` for names.
    """
    return _keras_to_keras1("lstm", kernel, recurrent_kernel, bias)


def keras1_gru_to_keras(weights: Sequence[Any] | Mapping[str, Any]) -> Arrays:
    """Keras 1 GRU weights -> Keras ``GRU(reset_after=False)`` (Keras 1's GRU is reset-before).

    Args:
        weights: the 9 arrays ``W_z, U_z, b_z, W_r, U_r, b_r, W_h, U_h, b_h`` (``W (in, u)``,
            ``U (u, u)``, ``b (u,)``), or a mapping keyed by Keras 1 names (``gru_1_W_z``),
            or the three fused arrays ``W, U, b`` (``consume_less='gpu'``).

    Returns:
        ``(kernel (in, 3u), recurrent_kernel (u, 3u), bias (3u,))``, gates z, r, h.
    """
    return _keras1_to_keras(weights, "gru")


def keras_gru_to_keras1(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> list[np.ndarray]:
    """Keras ``GRU(reset_after=False)`` -> Keras 1's 9 per-gate arrays (z, r, h).

    A ``GRU(reset_after=True)`` (bias ``(2, 3u)``) raises: Keras 1's GRU is reset-before.
    """
    return _keras_to_keras1("gru", kernel, recurrent_kernel, bias)


def keras1_simple_rnn_to_keras(weights: Sequence[Any] | Mapping[str, Any]) -> Arrays:
    """Keras 1 ``SimpleRNN`` ``W (in, u), U (u, u), b (u,)`` -> Keras (same layout, checked)."""
    return _keras1_to_keras(weights, "simple_rnn")


def keras_simple_rnn_to_keras1(
    kernel: Any, recurrent_kernel: Any, bias: Any = None
) -> list[np.ndarray]:
    """Keras ``SimpleRNN`` -> Keras 1 ``[W, U, b]`` (same layout, checked and copied)."""
    k, rk, b, _ = _keras("simple_rnn", kernel, recurrent_kernel, bias, "Keras 1")
    return [k.copy(), rk.copy(), b.copy()]


# ----------------------------------------------------------------------------- PyTorch
_TORCH_ORDERS = {  # (PyTorch's gate order, Keras'); a SimpleRNN is one "gate" h
    "lstm": (KERAS_LSTM_GATES, KERAS_LSTM_GATES),
    "gru": (TORCH_GRU_GATES, KERAS_GRU_GATES),
    "simple_rnn": ("h", "h"),
}


def _torch_to_keras(kind: str, weight_ih, weight_hh, bias_ih, bias_hh) -> Arrays:
    name = {"lstm": "nn.LSTM", "gru": "nn.GRU", "simple_rnn": "nn.RNN"}[kind]
    n = _GATE_COUNT[kind]
    w_hh = _weight(weight_hh, f"torch {name} weight_hh")
    if w_hh.ndim != 2 or w_hh.shape[0] != n * w_hh.shape[1]:
        want = "(hidden, hidden)" if n == 1 else f"({n} * hidden, hidden)"
        hint = (
            " (a proj_size > 0 module's weight_hh is (4 * hidden, proj_size): Keras LSTM has no "
            "projection)"
            if kind == "lstm" and w_hh.ndim == 2 and w_hh.shape[0] % 4 == 0
            else ""
        )
        raise ValueError(
            f"torch {name} weight_hh: expected shape {want}; received {w_hh.shape}{hint}."
        )
    u = w_hh.shape[1]
    w_ih = _expect(weight_ih, (n * u, "in"), f"torch {name} weight_ih (hidden={u})")
    dtype = w_ih.dtype
    b_ih = np.zeros(n * u, dtype) if bias_ih is None else bias_ih
    b_hh = np.zeros(n * u, dtype) if bias_hh is None else bias_hh
    b_ih = _expect(b_ih, (n * u,), f"torch {name} bias_ih (hidden={u})")
    b_hh = _expect(b_hh, (n * u,), f"torch {name} bias_hh (hidden={u})")
    torch_order, keras_order = _TORCH_ORDERS[kind]
    kernel = reorder_gates(w_ih.T, torch_order, keras_order)
    recurrent = reorder_gates(w_hh.T, torch_order, keras_order)
    if kind == "gru":  # reset-after: the two biases stay apart
        bias = np.stack([reorder_gates(b, torch_order, keras_order) for b in (b_ih, b_hh)])
    else:  # the two biases are only ever added
        bias = reorder_gates(b_ih + b_hh, torch_order, keras_order)
    return kernel, recurrent, bias


def torch_lstm_to_keras(
    weight_ih: Any, weight_hh: Any, bias_ih: Any = None, bias_hh: Any = None
) -> Arrays:
    """One direction of one layer of PyTorch ``nn.LSTM`` -> Keras ``LSTM``.

    Args:
        weight_ih: ``(4u, in)`` rows ``W_ii | W_if | W_ig | W_io`` (gates i, f, g=c, o).
        weight_hh: ``(4u, u)``.
        bias_ih, bias_hh: ``(4u,)`` each, or None (``bias=False``: zeros).

    Returns:
        ``(kernel = weight_ih.T (in, 4u), recurrent_kernel = weight_hh.T (u, 4u),
        bias = bias_ih + bias_hh (4u,))``, gates i, f, c, o.
    """
    return _torch_to_keras("lstm", weight_ih, weight_hh, bias_ih, bias_hh)


def keras_lstm_to_torch(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> Arrays:
    """Keras ``LSTM`` -> PyTorch ``nn.LSTM`` ``(weight_ih, weight_hh, bias_ih, bias_hh)``.

    Keras has one bias, PyTorch two that are only ever added: the whole Keras bias goes to
    ``bias_ih`` and ``bias_hh`` is zeros (so a torch -> Keras -> torch trip keeps the sum,
    not the split).

    Args:
        kernel: ``(in, 4u)``, recurrent_kernel ``(u, 4u)``, bias ``(4u,)``; gates i, f, c, o.

    Returns:
        ``weight_ih (4u, in)``, ``weight_hh (4u, u)``, ``bias_ih (4u,)``, ``bias_hh (4u,)``
        (zeros), gates i, f, g, o.
    """
    k, rk, b, _ = _keras("lstm", kernel, recurrent_kernel, bias, "torch nn.LSTM")
    return _keras_to_torch_arrays(k, rk, b, np.zeros_like(b), "lstm")


def _keras_to_torch_arrays(k, rk, b_ih, b_hh, kind: str) -> Arrays:
    torch_order, keras_order = _TORCH_ORDERS[kind]

    def rows(a):
        return np.ascontiguousarray(reorder_gates(a, keras_order, torch_order).T)

    return (
        rows(k),
        rows(rk),
        reorder_gates(b_ih, keras_order, torch_order),
        reorder_gates(b_hh, keras_order, torch_order),
    )


def torch_gru_to_keras(
    weight_ih: Any, weight_hh: Any, bias_ih: Any = None, bias_hh: Any = None
) -> Arrays:
    """One direction of one layer of PyTorch ``nn.GRU`` -> Keras ``GRU(reset_after=True)``.

    PyTorch computes ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, the Keras
    reset-after maths, with gates in order r, z, n.

    Args:
        weight_ih: ``(3u, in)`` rows ``W_ir | W_iz | W_in``.
        weight_hh: ``(3u, u)``.
        bias_ih, bias_hh: ``(3u,)`` each, or None (``bias=False``: zeros).

    Returns:
        ``(kernel (in, 3u), recurrent_kernel (u, 3u), bias (2, 3u))``, gates z, r, h, bias
        row 0 = reordered ``bias_ih``, row 1 = reordered ``bias_hh``. Exact both ways.
    """
    return _torch_to_keras("gru", weight_ih, weight_hh, bias_ih, bias_hh)


def keras_gru_to_torch(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> Arrays:
    """Keras ``GRU(reset_after=True)`` -> PyTorch ``nn.GRU`` (exact inverse of
    :func:`torch_gru_to_keras`). ``GRU(reset_after=False)`` raises ``ValueError``.

    Args:
        kernel: ``(in, 3u)``, recurrent_kernel ``(u, 3u)``, bias ``(2, 3u)``; gates z, r, h.

    Returns:
        ``weight_ih (3u, in)``, ``weight_hh (3u, u)``, ``bias_ih (3u,)``, ``bias_hh (3u,)``,
        gates r, z, n.
    """
    k, rk, b, _ = _keras("gru", kernel, recurrent_kernel, bias, "torch nn.GRU", reset_after=True)
    return _keras_to_torch_arrays(k, rk, b[0], b[1], "gru")


def torch_rnn_to_keras(
    weight_ih: Any, weight_hh: Any, bias_ih: Any = None, bias_hh: Any = None
) -> Arrays:
    """PyTorch ``nn.RNN`` (``tanh`` or ``relu``) -> Keras ``SimpleRNN`` (same activation).

    Args:
        weight_ih: ``(u, in)``; weight_hh ``(u, u)``; bias_ih, bias_hh ``(u,)`` or None.

    Returns:
        ``(kernel (in, u), recurrent_kernel (u, u), bias = bias_ih + bias_hh (u,))``.
    """
    return _torch_to_keras("simple_rnn", weight_ih, weight_hh, bias_ih, bias_hh)


def keras_simple_rnn_to_torch(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> Arrays:
    """Keras ``SimpleRNN`` -> PyTorch ``nn.RNN``; the bias goes to ``bias_ih``, ``bias_hh``
    is zeros (PyTorch only adds the two).

    Returns:
        ``weight_ih (u, in)``, ``weight_hh (u, u)``, ``bias_ih (u,)``, ``bias_hh (u,)``.
    """
    k, rk, b, _ = _keras("simple_rnn", kernel, recurrent_kernel, bias, "torch nn.RNN")
    return _keras_to_torch_arrays(k, rk, b, np.zeros_like(b), "simple_rnn")


_TORCH_KINDS = {
    "lstm": (torch_lstm_to_keras, keras_lstm_to_torch, "nn.LSTM"),
    "gru": (torch_gru_to_keras, keras_gru_to_torch, "nn.GRU"),
    "rnn": (torch_rnn_to_keras, keras_simple_rnn_to_torch, "nn.RNN"),
}
_TORCH_KEY = re.compile(r"^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")
_DIRECTIONS = (("forward", ""), ("backward", "_reverse"))


def _torch_kind(kind: str, what: str) -> tuple:
    if kind not in _TORCH_KINDS:
        raise ValueError(f"{what}: kind must be one of {sorted(_TORCH_KINDS)}; received {kind!r}.")
    return _TORCH_KINDS[kind]


def torch_state_dict_to_keras(
    state_dict: Mapping[str, Any],
    kind: str,
    num_layers: int | None = None,
    bidirectional: bool | None = None,
) -> list[dict[str, Arrays]]:
    """A whole PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` state dict -> Keras weights.

    Layers and directions are read from the keys ``weight_ih_l{k}``, ``weight_hh_l{k}``,
    ``bias_ih_l{k}``, ``bias_hh_l{k}`` and their ``_reverse`` twins; ``bias=False`` modules
    (no bias keys) give zero biases. ``proj_size`` (``weight_hr_l{k}``) raises: Keras has
    no projected LSTM.

    Args:
        state_dict: ``module.state_dict()`` (tensors or arrays) of the RNN module itself
            (strip a prefix such as ``"lstm."`` from a larger model's keys first).
        kind: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        num_layers: if given, the number of layers expected.
        bidirectional: if given, whether ``_reverse`` weights are expected.

    Returns:
        One dict per layer: ``{"forward": (kernel, recurrent_kernel, bias)}`` plus
        ``"backward"`` for bidirectional modules, in the Keras layout of
        :func:`torch_lstm_to_keras` / :func:`torch_gru_to_keras` /
        :func:`torch_rnn_to_keras`. A Keras ``Bidirectional`` layer ``k`` takes
        ``forward`` for its ``forward_layer`` and ``backward`` for its ``backward_layer``.
    """
    to_keras, _, name = _torch_kind(kind, "torch_state_dict_to_keras")
    num_layers = _count_or_none(num_layers, "num_layers", "torch_state_dict_to_keras")
    if bidirectional is not None:
        bidirectional = _flag(bidirectional, "bidirectional", "torch_state_dict_to_keras")
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"torch_state_dict_to_keras: state_dict must be a mapping of names to tensors "
            f"(pass module.state_dict()); received {type(state_dict).__name__}."
        )
    entries: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    unknown = []
    for key, value in state_dict.items():
        m = _TORCH_KEY.match(str(key))
        if not m:
            unknown.append(key)
            continue
        wb, part, layer, rev = m.groups()
        if part == "hr":
            raise ValueError(
                f"torch {name} state dict has {key} of shape {_array(value).shape}: the module "
                "was built with proj_size > 0, which projects h before the recurrence; Keras "
                "LSTM has no projection, so these weights cannot be converted."
            )
        direction = "backward" if rev else "forward"
        entries.setdefault((int(layer), direction), {})[f"{wb}_{part}"] = _array(value)
    if unknown:
        raise ValueError(
            f"torch_state_dict_to_keras: unexpected keys {sorted(map(str, unknown))}; expected "
            "only weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} (and _reverse). "
            "Pass the RNN module's own state_dict, with any prefix stripped."
        )
    if not entries:
        raise ValueError("torch_state_dict_to_keras: the state dict has no weight_ih_l0.")
    layers = sorted({layer for layer, _ in entries})
    if layers != list(range(len(layers))):
        raise ValueError(
            f"torch_state_dict_to_keras: layers {layers} found; expected 0 .. {layers[-1]}."
        )
    has_reverse = {layer for layer, d in entries if d == "backward"}
    if has_reverse and has_reverse != set(layers):
        raise ValueError(
            f"torch_state_dict_to_keras: _reverse weights only for layers {sorted(has_reverse)} "
            f"of {layers}."
        )
    if num_layers is not None and num_layers != len(layers):
        raise ValueError(
            f"torch_state_dict_to_keras: num_layers={num_layers} expected; the state dict "
            f"has {len(layers)} layers."
        )
    if bidirectional is not None and bidirectional != bool(has_reverse):
        raise ValueError(
            f"torch_state_dict_to_keras: bidirectional={bidirectional} expected; the state "
            f"dict is {'bi' if has_reverse else 'uni'}directional."
        )
    out = []
    for layer in layers:
        entry = {}
        for direction, suffix in _DIRECTIONS:
            arrays = entries.get((layer, direction))
            if arrays is None:
                continue
            key = f"l{layer}{suffix}"
            missing = [p for p in ("weight_ih", "weight_hh") if p not in arrays]
            if missing or len([p for p in arrays if p.startswith("bias")]) == 1:
                raise ValueError(
                    f"torch_state_dict_to_keras: layer {key} has {sorted(arrays)}; expected "
                    "weight_ih, weight_hh and both or neither of bias_ih, bias_hh."
                )
            entry[direction] = to_keras(
                arrays["weight_ih"],
                arrays["weight_hh"],
                arrays.get("bias_ih"),
                arrays.get("bias_hh"),
            )
        out.append(entry)
    return out


def keras_to_torch_state_dict(
    layers: Sequence[Mapping[str, Sequence[Any]]], kind: str, bias: bool = True
) -> dict[str, np.ndarray]:
    """Keras weights per layer and direction -> a PyTorch ``nn.LSTM``/``nn.GRU``/``nn.RNN``
    state dict of NumPy arrays (inverse of :func:`torch_state_dict_to_keras`).

    Load it with ``module.load_state_dict({k: torch.from_numpy(v) for k, v in
    sd.items()}, strict=True)`` into a module built with the same ``num_layers``,
    ``bidirectional`` and ``bias``. LSTM and RNN biases go to ``bias_ih`` (``bias_hh`` zeros).

    Args:
        layers: one mapping per layer, ``{"forward": (kernel, recurrent_kernel, bias)}``
            plus ``"backward"`` for a bidirectional module (every layer alike); a
            ``use_bias=False`` layer's bias is None, or left out as Keras'
            ``get_weights()`` leaves it: ``(kernel, recurrent_kernel)``. Layer ``k > 0``
            takes ``(directions * u)`` input features.
        kind: ``"lstm"``, ``"gru"`` (reset_after=True weights only) or ``"rnn"``.
        bias: a bool; False for a ``bias=False`` module: bias keys are left out, and a
            non-zero Keras bias raises.

    Returns:
        ``{"weight_ih_l0": (G*u, in), "weight_hh_l0": (G*u, u), "bias_ih_l0": (G*u,),
        "bias_hh_l0": (G*u,), ..._reverse ...}`` in PyTorch's own key order.
    """
    _, to_torch, name = _torch_kind(kind, "keras_to_torch_state_dict")
    bias = _flag(bias, "bias", "keras_to_torch_state_dict")
    if isinstance(layers, Mapping) or not isinstance(layers, Sequence):
        raise ValueError(
            "keras_to_torch_state_dict: layers must be a list with one mapping per layer, "
            f"[{{'forward': (kernel, recurrent_kernel, bias)}}, ...]; received "
            f"{type(layers).__name__}."
        )
    if not layers:
        raise ValueError("keras_to_torch_state_dict: no layers given.")
    directions = None
    previous = None
    out: dict[str, np.ndarray] = {}
    for layer, entry in enumerate(layers):
        if not isinstance(entry, Mapping):
            raise ValueError(
                f"keras_to_torch_state_dict: layer {layer} must be a mapping {{'forward': "
                f"(kernel, recurrent_kernel, bias)}} (plus 'backward'); received "
                f"{type(entry).__name__}."
            )
        present = [d for d, _ in _DIRECTIONS if d in entry]
        extra = sorted(set(entry) - {"forward", "backward"})
        if "forward" not in entry or extra or (directions and present != directions):
            want = directions or "'forward' and optionally 'backward'"
            raise ValueError(
                f"keras_to_torch_state_dict: layer {layer} has keys {sorted(entry)}; expected "
                f"{want}, the same in every layer."
            )
        directions = present
        for direction, suffix in _DIRECTIONS:
            if direction not in entry:
                continue
            weights = entry[direction]
            sequence = isinstance(weights, Sequence) and not isinstance(weights, str)
            if not sequence or len(weights) not in (2, 3):
                size = f" of length {len(weights)}" if sequence else ""
                raise ValueError(
                    f"keras_to_torch_state_dict: layer {layer} {direction} must be "
                    "(kernel, recurrent_kernel, bias), or (kernel, recurrent_kernel) for a "
                    f"use_bias=False layer; received a {type(weights).__name__}{size}."
                )
            w_ih, w_hh, b_ih, b_hh = to_torch(*weights)
            if previous is not None and w_ih.shape[1] != previous:
                raise ValueError(
                    f"keras_to_torch_state_dict: layer {layer} {direction} kernel has "
                    f"{w_ih.shape[1]} input features; expected {previous} "
                    "(directions * units of the layer below)."
                )
            key = f"l{layer}{suffix}"
            out[f"weight_ih_{key}"], out[f"weight_hh_{key}"] = w_ih, w_hh
            if bias:
                out[f"bias_ih_{key}"], out[f"bias_hh_{key}"] = b_ih, b_hh
            elif np.any(b_ih) or np.any(b_hh):
                raise ValueError(
                    f"keras_to_torch_state_dict: bias=False, but layer {key} has a non-zero "
                    f"Keras bias; build the torch {name} with bias=True."
                )
        previous = len(directions) * w_hh.shape[1]
    return out


# ----------------------------------------------------------------------------- Flax
_K, _KB = ("kernel",), ("kernel", "bias")


def _exact_keys(found: Mapping, expected: Sequence[str], what: str) -> None:
    missing = [k for k in expected if k not in found]
    unexpected = sorted(str(k) for k in found if k not in expected)
    if missing or unexpected:
        why = "; ".join(
            f"{label} {keys}"
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        )
        raise ValueError(
            f"{what}: expected exactly {list(expected)}; received {sorted(map(str, found))} "
            f"({why})."
        )


def _flax_params(params: Any, what: str, layout: Mapping[str, Sequence[str]]) -> Mapping:
    """``params`` (or linen's ``{"params": params}``) holding exactly ``layout``'s modules
    and their leaves: a missing, unexpected or non-mapping entry raises, named."""
    if isinstance(params, Mapping) and set(params) == {"params"}:  # linen `variables` whole
        params = params["params"]
    if not isinstance(params, Mapping):
        raise ValueError(
            f"{what}: expected a nested mapping of parameters; received {type(params).__name__}."
        )
    _exact_keys(params, list(layout), f"{what} modules")
    for module, leaves in layout.items():
        if not isinstance(params[module], Mapping):
            raise ValueError(
                f"{what} {module}: expected a mapping with keys {list(leaves)}; received "
                f"{type(params[module]).__name__}."
            )
        _exact_keys(params[module], leaves, f"{what} {module}")
    return params


def _flax_leaf(
    params: Mapping[str, Any], module: str, leaf: str, shape: Sequence[int | str], what: str
) -> np.ndarray:
    return _expect(params[module][leaf], shape, f"{what} {module}.{leaf}")


def _flax_units(params, module: str, what: str) -> int:
    rk = _flax_leaf(params, module, "kernel", ("u", "u"), what)
    return _units(rk, 1, f"{what} {module}.kernel")[1]


_LINEN_LSTM = {"i": ("ii", "hi"), "f": ("if", "hf"), "c": ("ig", "hg"), "o": ("io", "ho")}
_NNX_LSTM = {**_LINEN_LSTM, "f": ("if_", "hf")}


def _flax_lstm_to_keras(params, names, what) -> Arrays:
    layout = {**{i: _K for i, _ in names.values()}, **{h: _KB for _, h in names.values()}}
    p = _flax_params(params, what, layout)
    u = _flax_units(p, names["i"][1], what)
    k = {g: _flax_leaf(p, i, "kernel", ("in", u), what) for g, (i, _) in names.items()}
    rk = {g: _flax_leaf(p, h, "kernel", (u, u), what) for g, (_, h) in names.items()}
    b = {g: _flax_leaf(p, h, "bias", (u,), what) for g, (_, h) in names.items()}
    return tuple(join_gates(a, KERAS_LSTM_GATES) for a in (k, rk, b))


def _keras_lstm_to_flax(kernel, recurrent_kernel, bias, names, what) -> dict:
    k, rk, b, _ = _keras("lstm", kernel, recurrent_kernel, bias, what)
    k, rk, b = (split_gates(a, KERAS_LSTM_GATES) for a in (k, rk, b))
    out: dict[str, dict[str, np.ndarray]] = {}
    for g, (i, h) in names.items():
        out[i] = {"kernel": k[g].copy()}
        out[h] = {"kernel": rk[g].copy(), "bias": b[g].copy()}
    return out


def flax_linen_lstm_to_keras(params: Mapping[str, Any]) -> Arrays:
    """Flax linen ``LSTMCell`` or ``OptimizedLSTMCell`` params -> Keras ``LSTM``.

    Args:
        params: ``{"ii": {"kernel": (in, u)}, "if": ..., "ig": ..., "io": ...,
            "hi": {"kernel": (u, u), "bias": (u,)}, "hf", "hg", "ho"}`` (gates i, f, g=c,
            o; input kernels without bias), or linen's ``{"params": {...}}`` variables.

    Returns:
        ``(kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u,))``, gates i, f, c, o.
        Exact both ways (with :func:`keras_lstm_to_flax_linen`).
    """
    return _flax_lstm_to_keras(params, _LINEN_LSTM, "Flax linen LSTMCell")


def keras_lstm_to_flax_linen(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> dict:
    """Keras ``LSTM`` -> Flax linen ``LSTMCell`` / ``OptimizedLSTMCell`` params.

    Returns:
        ``{"ii": {"kernel"}, "if", "ig", "io", "hi": {"kernel", "bias"}, "hf", "hg", "ho"}``
        (NumPy); apply with ``cell.apply({"params": params}, carry, x)``, carry ``(c, h)``.
    """
    return _keras_lstm_to_flax(kernel, recurrent_kernel, bias, _LINEN_LSTM, "Flax LSTMCell")


def flax_nnx_lstm_to_keras(state: Mapping[str, Any]) -> Arrays:
    """Flax nnx ``LSTMCell`` state -> Keras ``LSTM``.

    Args:
        state: ``nnx.to_pure_dict(nnx.state(cell, nnx.Param))``: ``{"ii": {"kernel": (in, u)},
            "if_", "ig", "io", "hi": {"kernel": (u, u), "bias": (u,)}, "hf", "hg", "ho"}``.

    Returns:
        ``(kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u,))``, gates i, f, c, o.
    """
    return _flax_lstm_to_keras(state, _NNX_LSTM, "Flax nnx LSTMCell")


def keras_lstm_to_flax_nnx(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> dict:
    """Keras ``LSTM`` -> Flax nnx ``LSTMCell`` pure state dict (attribute ``if_``).

    Load it with ``state = nnx.state(cell, nnx.Param); nnx.replace_by_pure_dict(state,
    d); nnx.update(cell, state)``.
    """
    return _keras_lstm_to_flax(kernel, recurrent_kernel, bias, _NNX_LSTM, "Flax nnx LSTMCell")


def flax_nnx_optimized_lstm_to_keras(state: Mapping[str, Any]) -> Arrays:
    """Flax nnx ``OptimizedLSTMCell`` state -> Keras ``LSTM``: the same layout, copied.

    Args:
        state: ``{"dense_i": {"kernel": (in, 4u)}, "dense_h": {"kernel": (u, 4u),
            "bias": (4u,)}}``, gates i, f, g=c, o.

    Returns:
        ``(dense_i.kernel, dense_h.kernel, dense_h.bias)`` as Keras' kernel,
        recurrent_kernel and bias.
    """
    what = "Flax nnx OptimizedLSTMCell"
    p = _flax_params(state, what, {"dense_i": _K, "dense_h": _KB})
    rk = _flax_leaf(p, "dense_h", "kernel", ("u", "4u"), what)
    rk, u = _units(rk, 4, f"{what} dense_h.kernel")
    return (
        _flax_leaf(p, "dense_i", "kernel", ("in", 4 * u), what).copy(),
        rk.copy(),
        _flax_leaf(p, "dense_h", "bias", (4 * u,), what).copy(),
    )


def keras_lstm_to_flax_nnx_optimized(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> dict:
    """Keras ``LSTM`` -> Flax nnx ``OptimizedLSTMCell`` pure state dict (same layout).

    Returns:
        ``{"dense_i": {"kernel": (in, 4u)}, "dense_h": {"kernel": (u, 4u), "bias": (4u,)}}``.
    """
    k, rk, b, _ = _keras("lstm", kernel, recurrent_kernel, bias, "Flax nnx OptimizedLSTMCell")
    return {"dense_i": {"kernel": k.copy()}, "dense_h": {"kernel": rk.copy(), "bias": b.copy()}}


_LINEN_GRU = {"z": ("iz", "hz"), "r": ("ir", "hr"), "h": ("in", "hn")}
_LINEN_GRU_LAYOUT = {"iz": _KB, "ir": _KB, "in": _KB, "hz": _K, "hr": _K, "hn": _KB}


def flax_linen_gru_to_keras(params: Mapping[str, Any]) -> Arrays:
    """Flax linen ``GRUCell`` params -> Keras ``GRU(reset_after=True)``.

    Linen computes ``r = σ(x W_ir + b_ir + h W_hr)``, ``z = σ(x W_iz + b_iz + h W_hz)``,
    ``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``, ``h' = (1 - z) n + z h``.

    Args:
        params: ``{"ir", "iz", "in": {"kernel": (in, u), "bias": (u,)}, "hr", "hz":
            {"kernel": (u, u)}, "hn": {"kernel": (u, u), "bias": (u,)}}`` (or
            ``{"params": {...}}``).

    Returns:
        ``(kernel (in, 3u), recurrent_kernel (u, 3u), bias (2, 3u))``, gates z, r, h; bias
        row 0 ``[b_iz, b_ir, b_in]``, row 1 ``[0, 0, b_hn]``. Exact.
    """
    what = "Flax linen GRUCell"
    p = _flax_params(params, what, _LINEN_GRU_LAYOUT)
    u = _flax_units(p, "hn", what)
    k = {g: _flax_leaf(p, i, "kernel", ("in", u), what) for g, (i, _) in _LINEN_GRU.items()}
    rk = {g: _flax_leaf(p, h, "kernel", (u, u), what) for g, (_, h) in _LINEN_GRU.items()}
    b_in = {g: _flax_leaf(p, i, "bias", (u,), what) for g, (i, _) in _LINEN_GRU.items()}
    b_hn = _flax_leaf(p, "hn", "bias", (u,), what)
    b_rec = {"z": np.zeros_like(b_hn), "r": np.zeros_like(b_hn), "h": b_hn}
    bias = np.stack([join_gates(b_in, KERAS_GRU_GATES), join_gates(b_rec, KERAS_GRU_GATES)])
    return join_gates(k, KERAS_GRU_GATES), join_gates(rk, KERAS_GRU_GATES), bias


def keras_gru_to_flax_linen(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> dict:
    """Keras ``GRU(reset_after=True)`` -> Flax linen ``GRUCell`` params.

    Linen has no recurrent bias for z and r, so those are folded into the input biases:
    ``b_iz = b[0, z] + b[1, z]``, ``b_ir = b[0, r] + b[1, r]``, ``b_in = b[0, h]``,
    ``b_hn = b[1, h]`` (equal outputs; a Keras -> linen -> Keras trip therefore returns the
    summed biases in row 0 and zeros in row 1 for z and r). ``GRU(reset_after=False)``
    raises ``ValueError``: linen's GRU is reset-after.

    Returns:
        ``{"iz", "ir", "in": {"kernel", "bias"}, "hz", "hr": {"kernel"}, "hn": {"kernel",
        "bias"}}`` (NumPy).
    """
    k, rk, b, _ = _keras("gru", kernel, recurrent_kernel, bias, "Flax GRUCell", reset_after=True)
    k, rk, b_x, b_h = (split_gates(a, KERAS_GRU_GATES) for a in (k, rk, b[0], b[1]))
    out = {}
    for g, (i, h) in _LINEN_GRU.items():
        out[i] = {"kernel": k[g].copy(), "bias": b_x[g] + b_h[g] if g != "h" else b_x[g].copy()}
        out[h] = {"kernel": rk[g].copy()}
    out["hn"]["bias"] = b_h["h"].copy()
    return out


def flax_nnx_gru_to_keras(state: Mapping[str, Any]) -> Arrays:
    """Flax nnx ``GRUCell`` state -> Keras ``GRU(reset_after=True)`` (exact).

    Args:
        state: ``{"dense_i": {"kernel": (in, 3u), "bias": (3u,)}, "dense_h": {"kernel":
            (u, 3u)}}``, gates r, z, n; nnx has no recurrent bias.

    Returns:
        ``(kernel (in, 3u), recurrent_kernel (u, 3u), bias (2, 3u))``, gates z, r, h; bias
        row 0 = reordered ``dense_i.bias``, row 1 zeros.
    """
    what = "Flax nnx GRUCell"
    p = _flax_params(state, what, {"dense_i": _KB, "dense_h": _K})
    rk = _flax_leaf(p, "dense_h", "kernel", ("u", "3u"), what)
    rk, u = _units(rk, 3, f"{what} dense_h.kernel")
    k = _flax_leaf(p, "dense_i", "kernel", ("in", 3 * u), what)
    b = _flax_leaf(p, "dense_i", "bias", (3 * u,), what)
    order = (TORCH_GRU_GATES, KERAS_GRU_GATES)
    bias = np.stack([reorder_gates(b, *order), np.zeros_like(b)])
    return reorder_gates(k, *order), reorder_gates(rk, *order), bias


def keras_gru_to_flax_nnx(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> dict:
    """Keras ``GRU(reset_after=True)`` -> Flax nnx ``GRUCell`` pure state dict.

    ``dense_i.bias = [b[0, r] + b[1, r], b[0, z] + b[1, z], b[0, h]]``. nnx ``GRUCell``
    has no recurrent bias (its docstring's ``b_hn`` is missing: google/flax#5594), so a
    non-zero recurrent candidate bias ``bias[1, 2u:]`` raises ``ValueError`` (use linen's
    ``GRUCell`` or jrnn), as does ``GRU(reset_after=False)``.

    Returns:
        ``{"dense_i": {"kernel": (in, 3u), "bias": (3u,)}, "dense_h": {"kernel": (u, 3u)}}``,
        gates r, z, n.
    """
    target = "Flax nnx GRUCell"
    k, rk, b, u = _keras("gru", kernel, recurrent_kernel, bias, target, reset_after=True)
    b_hh = b[1, 2 * u :]
    if np.any(b_hh):
        raise ValueError(
            f"Keras GRU recurrent candidate bias bias[1, {2 * u}:] is non-zero (max |b| = "
            f"{float(np.max(np.abs(b_hh))):.3g}), but {target} has no recurrent bias "
            "(dense_h has use_bias=False; google/flax issue #5594), so r * (h U_h + b_hh) "
            "cannot be expressed. Use flax.linen.GRUCell (which has hn.bias) or jrnn.GRU."
        )
    b_x, b_h = split_gates(b[0], KERAS_GRU_GATES), split_gates(b[1], KERAS_GRU_GATES)
    folded = {g: b_x[g] + b_h[g] for g in KERAS_GRU_GATES}
    order = (KERAS_GRU_GATES, TORCH_GRU_GATES)
    return {
        "dense_i": {"kernel": reorder_gates(k, *order), "bias": join_gates(folded, order[1])},
        "dense_h": {"kernel": reorder_gates(rk, *order)},
    }


def _identity_if(residual: bool, u: int, dtype) -> np.ndarray:
    return np.eye(u, dtype=dtype) if residual else np.zeros((u, u), dtype)


def _flax_simple_to_keras(params, i_name, h_name, residual, what) -> Arrays:
    residual = _flag(residual, "residual", what)
    p = _flax_params(params, what, {i_name: _KB, h_name: _K})
    u = _flax_units(p, h_name, what)
    rk = _flax_leaf(p, h_name, "kernel", (u, u), what)
    return (
        _flax_leaf(p, i_name, "kernel", ("in", u), what).copy(),
        rk + _identity_if(residual, u, rk.dtype),
        _flax_leaf(p, i_name, "bias", (u,), what).copy(),
    )


def _keras_simple_to_flax(kernel, recurrent_kernel, bias, i_name, h_name, residual, what):
    residual = _flag(residual, "residual", what)
    k, rk, b, u = _keras("simple_rnn", kernel, recurrent_kernel, bias, what)
    return {
        i_name: {"kernel": k.copy(), "bias": b.copy()},
        h_name: {"kernel": rk - _identity_if(residual, u, rk.dtype)},
    }


def flax_linen_simple_to_keras(params: Mapping[str, Any], residual: bool = False) -> Arrays:
    """Flax linen ``SimpleCell`` params -> Keras ``SimpleRNN``.

    Args:
        params: ``{"i": {"kernel": (in, u), "bias": (u,)}, "h": {"kernel": (u, u)}}``.
        residual: the cell's ``residual`` flag; ``act(x W + b + h R + h)`` is a SimpleRNN
            with recurrent kernel ``R + I``.

    Returns:
        ``(kernel (in, u), recurrent_kernel (u, u), bias (u,))``.
    """
    return _flax_simple_to_keras(params, "i", "h", residual, "Flax linen SimpleCell")


def keras_simple_rnn_to_flax_linen(
    kernel: Any, recurrent_kernel: Any, bias: Any = None, residual: bool = False
) -> dict:
    """Keras ``SimpleRNN`` -> Flax linen ``SimpleCell`` params ``{"i": {"kernel", "bias"},
    "h": {"kernel"}}`` (``h.kernel = recurrent_kernel - I`` for a ``residual`` cell)."""
    return _keras_simple_to_flax(
        kernel, recurrent_kernel, bias, "i", "h", residual, "Flax linen SimpleCell"
    )


def flax_nnx_simple_to_keras(state: Mapping[str, Any], residual: bool = False) -> Arrays:
    """Flax nnx ``SimpleCell`` state ``{"dense_i": {"kernel", "bias"}, "dense_h":
    {"kernel"}}`` -> Keras ``SimpleRNN`` (``residual`` as in
    :func:`flax_linen_simple_to_keras`)."""
    return _flax_simple_to_keras(state, "dense_i", "dense_h", residual, "Flax nnx SimpleCell")


def keras_simple_rnn_to_flax_nnx(
    kernel: Any, recurrent_kernel: Any, bias: Any = None, residual: bool = False
) -> dict:
    """Keras ``SimpleRNN`` -> Flax nnx ``SimpleCell`` pure state dict ``{"dense_i":
    {"kernel", "bias"}, "dense_h": {"kernel"}}``."""
    return _keras_simple_to_flax(
        kernel, recurrent_kernel, bias, "dense_i", "dense_h", residual, "Flax nnx SimpleCell"
    )


# ----------------------------------------------------------------------------- TF1
def _tf1_rows(kernel: Any, cols: int, u: int, input_size: int | None, what: str):
    """Split a TF1 kernel ``(in + u, cols)`` acting on ``concat([x, h])`` into x and h rows."""
    k = _expect(kernel, ("in + units", cols), f"{what} (units={u})")
    n_in = k.shape[0] - u
    if n_in < 1 or (input_size is not None and n_in != input_size):
        want = f"({input_size} + {u}, {cols})" if input_size is not None else f"(in + {u}, {cols})"
        raise ValueError(f"{what} (units={u}): expected shape {want}; received {k.shape}.")
    return k[:n_in], k[n_in:]


def tf1_lstm_to_keras(
    kernel: Any, bias: Any, input_size: int | None = None, forget_bias: float = 1.0
) -> Arrays:
    """TF1 ``LSTMCell`` / ``BasicLSTMCell`` checkpoint weights -> Keras ``LSTM``.

    TF1 computes ``[i, j, f, o] = [x, h] @ kernel + bias``, ``c' = σ(f + forget_bias) c +
    σ(i) tanh(j)``, ``h' = σ(o) tanh(c')`` (``j`` is Keras' ``c``); ``forget_bias`` is a
    constructor argument (default 1.0), not stored, so it is added to the f block here.
    Peepholes, ``num_proj`` and ``cell_clip`` have no Keras equivalent and are not read.

    Args:
        kernel: ``(in + u, 4u)`` (``rnn/lstm_cell/kernel``), gates i, j, f, o.
        bias: ``(4u,)`` (``rnn/lstm_cell/bias``).
        input_size: ``in``, checked if given (else ``kernel.shape[0] - u``).
        forget_bias: the cell's ``forget_bias``, a finite real number.

    Returns:
        ``(kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u,))``, gates i, f, c, o.
    """
    input_size = _count_or_none(input_size, "input_size", "tf1_lstm_to_keras")
    forget_bias = _finite_real(forget_bias, "forget_bias", "tf1_lstm_to_keras")
    b = _weight(bias, "TF1 LSTMCell bias")
    if b.ndim != 1 or b.shape[0] % 4 or b.shape[0] == 0:
        raise ValueError(f"TF1 LSTMCell bias: expected shape (4 * units,); received {b.shape}.")
    u = b.shape[0] // 4
    k_x, k_h = _tf1_rows(kernel, 4 * u, u, input_size, "TF1 LSTMCell kernel")
    order = (KERAS1_LSTM_GATES, KERAS_LSTM_GATES)
    blocks = split_gates(reorder_gates(b, *order), KERAS_LSTM_GATES)
    blocks["f"] = blocks["f"] + np.asarray(forget_bias, b.dtype)
    return reorder_gates(k_x, *order), reorder_gates(k_h, *order), join_gates(blocks, order[1])


def keras_lstm_to_tf1(
    kernel: Any, recurrent_kernel: Any, bias: Any = None, forget_bias: float = 1.0
) -> Arrays:
    """Keras ``LSTM`` -> TF1 ``LSTMCell`` / ``BasicLSTMCell`` ``(kernel, bias)``.

    ``forget_bias`` (the TF1 cell's, added at run time) is subtracted from the f block, so
    with the default 1.0 a Keras forget bias of exactly 1 is stored as 0.

    Returns:
        ``kernel (in + u, 4u)`` acting on ``[x, h]``, ``bias (4u,)``, gates i, j, f, o.
    """
    forget_bias = _finite_real(forget_bias, "forget_bias", "keras_lstm_to_tf1")
    k, rk, b, _ = _keras("lstm", kernel, recurrent_kernel, bias, "TF1 LSTMCell")
    blocks = split_gates(b, KERAS_LSTM_GATES)
    blocks["f"] = blocks["f"] - np.asarray(forget_bias, b.dtype)
    order = (KERAS_LSTM_GATES, KERAS1_LSTM_GATES)
    stacked = np.concatenate([k, rk], axis=0)
    return reorder_gates(stacked, *order), join_gates(blocks, order[1])


def tf1_gru_to_keras(
    gates_kernel: Any,
    gates_bias: Any,
    candidate_kernel: Any,
    candidate_bias: Any,
    input_size: int | None = None,
) -> Arrays:
    """TF1 ``GRUCell`` checkpoint weights -> Keras ``GRU(reset_after=False)`` (exact).

    TF1 computes ``[r, u] = σ([x, h] @ gates/kernel + gates/bias)``, ``c = tanh([x, r * h]
    @ candidate/kernel + candidate/bias)``, ``h' = u h + (1 - u) c``: Keras' reset-before
    GRU with ``z = u``.

    Args:
        gates_kernel: ``(in + u, 2u)``, gates r, u (``rnn/gru_cell/gates/kernel``).
        gates_bias: ``(2u,)``.
        candidate_kernel: ``(in + u, u)``.
        candidate_bias: ``(u,)``.
        input_size: ``in``, checked if given.

    Returns:
        ``(kernel (in, 3u), recurrent_kernel (u, 3u), bias (3u,))``, gates z, r, h.
    """
    input_size = _count_or_none(input_size, "input_size", "tf1_gru_to_keras")
    cb = _weight(candidate_bias, "TF1 GRUCell candidate/bias")
    if cb.ndim != 1 or cb.shape[0] == 0:
        raise ValueError(
            f"TF1 GRUCell candidate/bias: expected shape (units,); received {cb.shape}."
        )
    u = cb.shape[0]
    gb = _expect(gates_bias, (2 * u,), f"TF1 GRUCell gates/bias (units={u})")
    gx, gh = _tf1_rows(gates_kernel, 2 * u, u, input_size, "TF1 GRUCell gates/kernel")
    cx, ch = _tf1_rows(candidate_kernel, u, u, gx.shape[0], "TF1 GRUCell candidate/kernel")
    order = (TORCH_GRU_GATES, KERAS_GRU_GATES)  # [r, u | candidate] -> [z, r, h]
    return tuple(
        reorder_gates(np.concatenate(pair, axis=-1), *order)
        for pair in ((gx, cx), (gh, ch), (gb, cb))
    )


def keras_gru_to_tf1(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> Arrays:
    """Keras ``GRU(reset_after=False)`` -> TF1 ``GRUCell`` (exact inverse of
    :func:`tf1_gru_to_keras`). ``GRU(reset_after=True)`` raises: TF1's GRU is reset-before.

    Returns:
        ``gates/kernel (in + u, 2u)`` (r, u), ``gates/bias (2u,)``, ``candidate/kernel
        (in + u, u)``, ``candidate/bias (u,)``.
    """
    k, rk, b, u = _keras("gru", kernel, recurrent_kernel, bias, "TF1 GRUCell", reset_after=False)
    stacked = reorder_gates(np.concatenate([k, rk], axis=0), KERAS_GRU_GATES, TORCH_GRU_GATES)
    b = reorder_gates(b, KERAS_GRU_GATES, TORCH_GRU_GATES)
    gates, candidate = np.split(stacked, [2 * u], axis=-1)
    return (
        np.ascontiguousarray(gates),
        b[: 2 * u].copy(),
        np.ascontiguousarray(candidate),
        b[2 * u :].copy(),
    )


def tf1_rnn_to_keras(kernel: Any, bias: Any, input_size: int | None = None) -> Arrays:
    """TF1 ``BasicRNNCell`` ``kernel (in + u, u)``, ``bias (u,)`` -> Keras ``SimpleRNN``
    ``(kernel (in, u), recurrent_kernel (u, u), bias (u,))``."""
    input_size = _count_or_none(input_size, "input_size", "tf1_rnn_to_keras")
    b = _weight(bias, "TF1 BasicRNNCell bias")
    if b.ndim != 1 or b.shape[0] == 0:
        raise ValueError(f"TF1 BasicRNNCell bias: expected shape (units,); received {b.shape}.")
    k_x, k_h = _tf1_rows(kernel, b.shape[0], b.shape[0], input_size, "TF1 BasicRNNCell kernel")
    return k_x.copy(), k_h.copy(), b.copy()


def keras_simple_rnn_to_tf1(kernel: Any, recurrent_kernel: Any, bias: Any = None) -> Arrays:
    """Keras ``SimpleRNN`` -> TF1 ``BasicRNNCell`` ``(kernel (in + u, u), bias (u,))``."""
    k, rk, b, _ = _keras("simple_rnn", kernel, recurrent_kernel, bias, "TF1 BasicRNNCell")
    return np.concatenate([k, rk], axis=0), b.copy()


__all__ = [
    "KERAS1_LSTM_GATES",
    "KERAS_GRU_GATES",
    "KERAS_LSTM_GATES",
    "TORCH_GRU_GATES",
    "cudnn_gru_to_keras",
    "cudnn_lstm_to_keras",
    "detect_keras_rnn_layout",
    "flax_linen_gru_to_keras",
    "flax_linen_lstm_to_keras",
    "flax_linen_simple_to_keras",
    "flax_nnx_gru_to_keras",
    "flax_nnx_lstm_to_keras",
    "flax_nnx_optimized_lstm_to_keras",
    "flax_nnx_simple_to_keras",
    "join_gates",
    "keras1_gru_to_keras",
    "keras1_lstm_to_keras",
    "keras1_simple_rnn_to_keras",
    "keras1_weight_names",
    "keras_gru_to_cudnn",
    "keras_gru_to_flax_linen",
    "keras_gru_to_flax_nnx",
    "keras_gru_to_keras1",
    "keras_gru_to_tf1",
    "keras_gru_to_torch",
    "keras_lstm_to_cudnn",
    "keras_lstm_to_flax_linen",
    "keras_lstm_to_flax_nnx",
    "keras_lstm_to_flax_nnx_optimized",
    "keras_lstm_to_keras1",
    "keras_lstm_to_tf1",
    "keras_lstm_to_torch",
    "keras_simple_rnn_to_flax_linen",
    "keras_simple_rnn_to_flax_nnx",
    "keras_simple_rnn_to_keras1",
    "keras_simple_rnn_to_tf1",
    "keras_simple_rnn_to_torch",
    "keras_to_torch_state_dict",
    "reorder_gates",
    "split_gates",
    "tf1_gru_to_keras",
    "tf1_lstm_to_keras",
    "tf1_rnn_to_keras",
    "torch_gru_to_keras",
    "torch_lstm_to_keras",
    "torch_rnn_to_keras",
    "torch_state_dict_to_keras",
]
