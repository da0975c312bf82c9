"""The native CPU LSTM, GRU and SimpleRNN kernels (``jrnn.native``) against jrnn's XLA scan.

Both paths compute the same function; the scan is the reference (it is what the Keras
parity tests were first proven on, and they now run through the kernel by default).
Every comparison uses random asymmetric weights and non-zero initial states, at shapes
that exercise both ways the kernel splits work (by batch rows, and by unit panels within
a step for small batches), unit counts that are not multiples of the 16/64-unit panels,
and batch sizes that are not multiples of the 6-row register tile.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jrnn
from jrnn import native as native_kernels
from tests.helpers import assert_close, assert_gradients_close, jit_call, randomize


def _cpu_runs_kernels() -> bool:
    """Whether /proc/cpuinfo lists an instruction set of the kernels (AVX2 with FMA, which
    every AVX-512 CPU also has)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx2 " in flags and " fma " in flags


def test_extension_is_built_where_a_compiler_exists():
    # The extension is optional at install (a machine without a compiler still installs
    # jrnn), so a broken build would otherwise hide behind the XLA fallback.
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler on this machine: the extension is not expected")
    built = glob.glob(os.path.join(os.path.dirname(native_kernels.__file__), "_kernels*.so"))
    assert built, "a C++ compiler exists but jrnn/native/_kernels*.so was not built"
    if _cpu_runs_kernels():
        assert native_kernels.unavailable_reason() is None
        assert native_kernels.isa() in ("avx512", "avx2")


LAYERS = [jrnn.LSTM, jrnn.GRU, jrnn.SimpleRNN]

needs_kernel = pytest.mark.skipif(
    not native_kernels.available(),
    reason=f"native kernel unavailable: {native_kernels.unavailable_reason()}",
)

# (batch, time, features, units): row split with odd sizes; one row (panel split within
# each step, one thread and several); a partial 6-row tile; one step; 64+ units.
SHAPES = [(13, 9, 5, 20), (1, 7, 3, 5), (1, 6, 64, 256), (64, 4, 16, 33), (7, 1, 3, 4)]


def _pair(units, features, seed=0, layer=jrnn.LSTM, **kw):
    """The same randomized layer twice: native (required) and the XLA scan."""
    layers = []
    # Random asymmetric weights, scaled as trained ones are (~1/sqrt(fan-in)) so that wide
    # layers do not saturate every gate.
    scale = min(0.5, 2.0 / np.sqrt(features + units))
    for native in (True, False):
        made = layer(units, features, native=native, rngs=nnx.Rngs(0), **kw)
        randomize(made, seed, scale=scale)
        layers.append(made)
    return layers


def _inputs(shape, seed=1):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape), jnp.float32)


def _states(batch, units, seed=2):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal((batch, units)) * 0.5, jnp.float32) for _ in "hc"]


def _kernel(kind, bidirectional=False):
    """``jrnn.native.<kind>`` (or its bidirectional call) under ``jax.jit``, its flags
    static (see :func:`tests.helpers.jit_call`)."""
    if bidirectional:
        return jax.jit(getattr(native_kernels, f"{kind}_bidirectional"), static_argnames="sequence")
    return jax.jit(getattr(native_kernels, kind), static_argnames=("sequence", "reverse"))


@needs_kernel
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
@pytest.mark.parametrize("batch,time,features,units", SHAPES)
def test_outputs_states_and_gradients_equal_the_scan(layer, batch, time, features, units):
    native, scan = _pair(units, features, layer=layer, return_sequences=True, return_state=True)
    x = _inputs((batch, time, features))
    states = _states(batch, units)[: len(scan.cell.state_shapes)]
    for a, b in zip(*(jit_call(m, x, initial_state=states) for m in (native, scan))):
        assert_close(a, b, time=time)

    weights = jnp.asarray(np.random.default_rng(3).standard_normal((batch, time, units)))

    def loss(layer, x, states):
        y, *final = layer(x, initial_state=states)
        return jnp.sum(y * weights) + sum(
            jnp.sum(jnp.sin(s) * (i + 1)) for i, s in enumerate(final)
        )

    grads = [nnx.jit(nnx.grad(loss, argnums=(0, 1, 2)))(m, x, states) for m in (native, scan)]
    for a, b in zip(jax.tree_util.tree_leaves(grads[0]), jax.tree_util.tree_leaves(grads[1])):
        assert_gradients_close(a, b)


@needs_kernel
@pytest.mark.parametrize(
    "kw",
    [
        {"go_backwards": True},
        {"use_bias": False},
        {"return_sequences": False},
        {"unroll": True},
    ],
    ids=lambda kw: ",".join(kw),
)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_layer_options_equal_the_scan(layer, kw):
    native, scan = _pair(12, 5, layer=layer, **kw)
    x = _inputs((9, 8, 5))
    assert_close(native(x), scan(x), time=8)
    g = [nnx.grad(lambda m: jnp.sum(jnp.tanh(m(x))))(m) for m in (native, scan)]
    for a, b in zip(jax.tree_util.tree_leaves(g[0]), jax.tree_util.tree_leaves(g[1])):
        assert_close(a, b, time=8)


@needs_kernel
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_stateful_calls_carry_states_as_the_scan_does(layer):
    native, scan = _pair(10, 4, layer=layer, stateful=True, return_sequences=True)
    for seed in (1, 2):
        x = _inputs((6, 5, 4), seed)
        assert_close(native(x), scan(x), time=10)
    for a, b in zip(native.states, scan.states):
        assert_close(a[...], b[...], time=10)


@needs_kernel
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_input_dropout_in_training_equals_the_scan(layer):
    native, scan = _pair(8, 6, layer=layer, dropout=0.4, seed=5, return_sequences=True)
    x = _inputs((7, 6, 6))
    a = native(x, training=True, rngs=nnx.Rngs(dropout=3))
    b = scan(x, training=True, rngs=nnx.Rngs(dropout=3))
    assert_close(a, b, time=6)
    assert not np.allclose(np.asarray(a), np.asarray(native(x)))  # dropout did apply


def _runs_kernel(m, x) -> bool:
    return "jrnn_" in str(jax.make_jaxpr(lambda x: m(x))(x))


@pytest.mark.short_call_rule
@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_default_runs_short_calls_on_the_scan(layer, dtype):
    # A kernel call first packs the weights, which a call of one step or few rows does not
    # win back (bench/short_calls.py): native=None runs the kernel from 2 steps and
    # SHORT_CALL_ROWS rows of batch × time; native=True, and an LSTM's use_cudnn=True,
    # run it on any call.
    if dtype == "bfloat16" and not native_kernels.available(jnp.bfloat16):
        pytest.skip(native_kernels.unavailable_reason(jnp.bfloat16))
    least = jrnn.rnn.SHORT_CALL_ROWS[jnp.dtype(dtype)]
    made = {
        kw.get("native"): layer(8, 3, dtype=dtype, rngs=nnx.Rngs(0), **kw)
        for kw in ({}, {"native": True})
    }
    bi = jrnn.Bidirectional(layer(8, 3, dtype=dtype, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    for batch, time, kernel in (
        (1, 1, False),
        (4 * least, 1, False),
        (1, 2, False),
        (least // 2, 2, True),
        (1, least - 1, False),
        (1, least, True),
    ):
        x = jnp.ones((batch, time, 3), dtype)
        assert _runs_kernel(made[None], x) == kernel, (batch, time)
        assert _runs_kernel(bi, x) == kernel, (batch, time)
        assert _runs_kernel(made[True], x)
    if layer is jrnn.LSTM:
        demanding = jrnn.LSTM(8, 3, dtype=dtype, use_cudnn=True, rngs=nnx.Rngs(0))
        assert _runs_kernel(demanding, jnp.ones((1, 1, 3), dtype))
    short = jnp.asarray(np.random.default_rng(0).standard_normal((2, 1, 3)), dtype)
    assert_close(made[None](short), made[True](short), dtype=dtype, time=1)


@pytest.mark.short_call_rule
@needs_kernel
def test_convlstm_default_runs_the_kernel_from_one_step():
    # Its rows are the pixels of every frame: the kernel won from one step on.
    conv = jrnn.ConvLSTM2D(4, 3, in_channels=2, spatial_shape=(5, 4), rngs=nnx.Rngs(0))
    assert _runs_kernel(conv, jnp.ones((1, 1, 5, 4, 2)))


@needs_kernel
def test_cudnn_layers_and_bidirectional_equal_the_scan():
    x = _inputs((5, 7, 4))
    for make in (
        lambda native: jrnn.CuDNNLSTM(6, 4, return_sequences=True, native=native, rngs=nnx.Rngs(0)),
        lambda native: jrnn.CuDNNGRU(6, 4, return_sequences=True, native=native, rngs=nnx.Rngs(0)),
        lambda native: jrnn.RNN(
            jrnn.SimpleRNNCell(6, 4, rngs=nnx.Rngs(0)), return_sequences=True, native=native
        ),
        lambda native: jrnn.Bidirectional(
            jrnn.LSTM(6, 4, return_sequences=True, native=native, rngs=nnx.Rngs(0)),
            rngs=nnx.Rngs(1),
        ),
    ):
        a, b = make(True), make(False)
        randomize(a, 4)
        randomize(b, 4)
        assert_close(a(x), b(x), time=7)
        ga = nnx.grad(lambda m: jnp.sum(jnp.sin(m(x))))(a)
        gb = nnx.grad(lambda m: jnp.sum(jnp.sin(m(x))))(b)
        for u, v in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
            assert_close(u, v, time=7)


@needs_kernel
def test_results_do_not_depend_on_the_thread_count():
    # Each (row, unit) is computed by the same register tile whichever thread runs it
    # (ConvLSTM: each (frame, pixel, unit)); the weight gradients' sums run over blocks of
    # rows in one order whichever thread owns their columns (dense.cc).
    code = (
        "import numpy as np, jax.numpy as jnp; from flax import nnx; import jrnn\n"
        "from tests.helpers import randomize\n"
        "for b, t in ((64, 20), (1, 30)):\n"
        "    for layer in (jrnn.LSTM, jrnn.GRU, jrnn.SimpleRNN):\n"
        "        m = layer(256, 64, native=True, return_sequences=True, rngs=nnx.Rngs(0))\n"
        "        randomize(m, 0, scale=0.1)\n"
        "        x = jnp.asarray(np.random.default_rng(0).standard_normal((b, t, 64)), 'float32')\n"
        "        np.save(f'{OUT}/{layer.__name__}{b}.npy', np.asarray(nnx.jit(m)(x)))\n"
        "        g = nnx.jit(nnx.grad(lambda m: jnp.sum(jnp.sin(m(x)))))(m).cell\n"
        "        dk = [np.ravel(g.kernel.value), np.ravel(g.recurrent_kernel.value)]\n"
        "        dk = np.concatenate(dk + [np.ravel(g.bias.value)])\n"
        "        np.save(f'{OUT}/d{layer.__name__}{b}.npy', dk)\n"
        "    m = jrnn.ConvLSTM2D(20, 3, in_channels=3, spatial_shape=(9, 9), padding='same',\n"
        "                        native=True, return_sequences=True, rngs=nnx.Rngs(0))\n"
        "    randomize(m, 0, scale=0.3)\n"
        "    x = np.random.default_rng(0).standard_normal((b, 5, 9, 9, 3))\n"
        "    x = jnp.asarray(x, 'float32')\n"
        "    np.save(f'{OUT}/ConvLSTM2D{b}.npy', np.asarray(nnx.jit(m)(x)))\n"
    )
    outs = []
    for threads in ("1", "3"):  # one thread; three over two cores (uneven splits)
        out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"jrnn-native-{os.getpid()}-{threads}")
        os.makedirs(out, exist_ok=True)
        env = dict(os.environ, JRNN_NATIVE_THREADS=threads)
        subprocess.run(
            [sys.executable, "-c", f"OUT = {out!r}\n" + code],
            check=True,
            env=env,
            cwd=os.path.dirname(os.path.dirname(__file__)),
        )
        outs.append(
            [
                np.load(os.path.join(out, f"{n}{b}.npy"))
                for n in ("LSTM", "GRU", "SimpleRNN", "ConvLSTM2D", "dLSTM", "dGRU", "dSimpleRNN")
                for b in (64, 1)
            ]
        )
        shutil.rmtree(out)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


@needs_kernel
def test_float32_panels_are_packed_as_the_running_build_reads_them():
    # PackedPanel (common.h): AVX-512 reads row k of a panel (its C columns) at once; AVX2
    # runs one K loop per 16-column block, so each block's rows lie one after another.
    packed = jnp.arange(2 * 5 * 48, dtype=jnp.float32).reshape(2, 5, 48)  # (P, K, C)
    got = np.asarray(native_kernels._weights(packed)).reshape(2, -1)
    p, k, q, c = np.meshgrid(range(2), range(5), range(3), range(16), indexing="ij")
    if native_kernels.isa() == "avx2":
        at = 16 * 5 * q + 16 * k + c
    else:
        at = 48 * k + 16 * q + c
    np.testing.assert_array_equal(got[p, at], np.asarray(packed)[p, k, 16 * q + c])


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("batch", [1, 2])
def test_small_batch_rows_are_bitwise_the_large_batch_rows(kind, batch, dtype):
    # Tiles of one or two rows run their K loops over several column blocks at once (the
    # AVX2 build), and at batch <= 2 the LSTM forward kernel computes b + x W for every
    # step first (one GEMM, so a step reads only R); at batch 7 six-row tiles run, and each
    # LSTM step computes its own x W. Every sum runs over k in the same order either way, so
    # the small call's rows equal the large call's bitwise: forwards, backwards in time,
    # masked, and both directions in one call. The state gradients, which XLA's products
    # finish (dh0 += dz_0 Rᵀ), agree to rounding. In bfloat16 (batch 19: AMX tiles of 16
    # and 3 rows where the CPU has AMX, else six-row vdpbf16ps tiles) likewise.
    if dtype == "bfloat16" and not native_kernels.available(jnp.bfloat16):
        pytest.skip(native_kernels.unavailable_reason(jnp.bfloat16))
    fn, fn2 = _kernel(kind), _kernel(kind, bidirectional=True)
    big_batch = 7 if dtype == "float32" else 19
    args = [a.astype(dtype) for a in _function_args(kind, big_batch, 40, 24, 37)]
    n_states = 2 if kind == "lstm" else 1
    weights, states = args[1:-n_states], args[-n_states:]
    rng = np.random.default_rng(1)
    mask = jnp.asarray(rng.random((big_batch, 40)) > 0.3)
    cotangent = jnp.asarray(rng.standard_normal((big_batch, 40, 37)), dtype)
    rows = slice(0, batch)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=2e-2, atol=2e-2)

    def state_grads(x, s, c, **kw):
        def loss(s):
            y, *last = fn(x, *weights, *s, **kw)
            y, c32 = y.astype(jnp.float32), c.astype(jnp.float32)
            return jnp.sum(y * c32) + sum(jnp.sum(h.astype(jnp.float32)) for h in last)

        return jax.jit(jax.grad(loss))(s)

    for kw in ({}, {"reverse": True}, {"mask": mask}):
        small_kw = {**kw, "mask": kw["mask"][rows]} if "mask" in kw else kw
        big = fn(args[0], *weights, *states, **kw)
        small = fn(args[0][rows], *weights, *(s[rows] for s in states), **small_kw)
        for u, v in zip(small, big):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v)[rows], err_msg=str(kw))
        big = state_grads(args[0], states, cotangent, **kw)
        small = state_grads(args[0][rows], [s[rows] for s in states], cotangent[rows], **small_kw)
        for u, v in zip(small, big):
            u, v = np.asarray(u, np.float32), np.asarray(v, np.float32)
            np.testing.assert_allclose(u, v[rows], **tol)
    two = [jnp.stack([a, a[::-1] * 0.5]) for a in weights]
    states = [jnp.stack([a, -a]) for a in states]
    big = fn2(args[0], *two, *states)
    small = fn2(args[0][rows], *two, *(s[:, rows] for s in states))
    np.testing.assert_array_equal(np.asarray(small[0]), np.asarray(big[0])[rows])
    for u, v in zip(small[1:], big[1:]):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v)[:, rows])


# (N, P, C, G): a partial row tile and column panel; one column; many rows (several
# 256-row blocks and a tail); one step; more columns than rows of dw.
DENSE_GRAD_SHAPES = [(3, 5, 13, 70), (1, 1, 1, 1), (7, 100, 20, 130), (9, 1, 6, 64), (2, 3, 4, 200)]


@needs_kernel
@pytest.mark.parametrize("n,p,c,g", DENSE_GRAD_SHAPES)
@pytest.mark.parametrize("shift", ["none", "forward", "reverse"])
@pytest.mark.parametrize("slot", [(0, 1), (1, 2)])
@pytest.mark.parametrize(
    "dtype,amx",
    [("float32", "1"), ("bfloat16", "1"), ("bfloat16", "0")],
    ids=["f32", "bf16", "bf16-no-amx"],
)
def test_dense_weight_grad_kernel_is_the_sum_of_row_products(
    n, p, c, g, shift, slot, dtype, amx, monkeypatch
):
    # dw = Σ a_iᵀ dz_i and db = Σ dz_i over the N P rows, where a row of a "shifted" left
    # operand is the state the step read: a[n, p - 1] (reverse: p + 1), first[n] at the
    # first step; slot (k, n): a is the k-th of n (N, P, C) operands side by side. Checked
    # in float64 against NumPy, and bitwise across thread counts. bfloat16 operands (sums
    # in float32) run on AMX tiles where the CPU has them (JRNN_NATIVE_AMX=1), else, and
    # with JRNN_NATIVE_AMX=0, widened to float32 for the float32 tiles.
    if dtype == "bfloat16" and not native_kernels.available(jnp.bfloat16):
        pytest.skip(native_kernels.unavailable_reason(jnp.bfloat16))
    monkeypatch.setenv("JRNN_NATIVE_AMX", amx)
    rng = np.random.default_rng(c * g + p)

    def values(*shape):  # exactly representable in dtype
        return np.array(jnp.asarray(rng.standard_normal(shape), dtype).astype(jnp.float32))

    a, dz = values(n, p, c), values(n, p, g)
    beside = values(n, p, slot[1], c)
    beside[:, :, slot[0]] = a
    first = values(n, c)
    left = a
    if shift == "forward":
        left = np.concatenate([first[:, None], a[:, :-1]], axis=1)
    elif shift == "reverse":
        left = np.concatenate([a[:, 1:], first[:, None]], axis=1)
    want_dw = np.einsum("npc,npg->cg", left.astype(np.float64), dz.astype(np.float64))
    f32 = jnp.float32

    def run():
        return native_kernels._call(
            "jrnn_dense_weight_grad",
            [((c, g), f32), ((g,), f32)],
            jnp.asarray(beside.reshape(n, p, -1), dtype),
            jnp.asarray(dz, dtype),
            jnp.asarray(first, dtype) if shift != "none" else jnp.zeros((0,), dtype),
            shifted=shift != "none",
            reverse=shift == "reverse",
            slot=slot[0],
        )

    dw, db = run()
    scale = np.sqrt(n * p)
    np.testing.assert_allclose(np.asarray(dw), want_dw, atol=1e-5 * scale, rtol=1e-5)
    want_db = dz.astype(np.float64).sum(axis=(0, 1))
    np.testing.assert_allclose(np.asarray(db), want_db, atol=1e-5 * scale, rtol=1e-5)
    for threads in ("1", "3"):
        monkeypatch.setenv("JRNN_NATIVE_THREADS", threads)
        other = run()
        np.testing.assert_array_equal(np.asarray(other[0]), np.asarray(dw))
        np.testing.assert_array_equal(np.asarray(other[1]), np.asarray(db))


@needs_kernel
def test_dense_weight_grad_kernel_names_a_wrong_shape():
    f32 = jnp.float32
    with pytest.raises(Exception, match=r"first must have shape \(2, 4\), received \(3, 4\)"):
        native_kernels._call(
            "jrnn_dense_weight_grad",
            [((4, 5), f32), ((5,), f32)],
            jnp.zeros((2, 3, 4), f32),
            jnp.zeros((2, 3, 5), f32),
            jnp.zeros((3, 4), f32),
            shifted=True,
            reverse=False,
            slot=0,
        )
    with pytest.raises(Exception, match="dz must be float32, received bfloat16"):
        native_kernels._call(
            "jrnn_dense_weight_grad",
            [((4, 5), f32), ((5,), f32)],
            jnp.zeros((2, 3, 4), f32),
            jnp.zeros((2, 3, 5), jnp.bfloat16),
            jnp.zeros((0,), f32),
            shifted=False,
            reverse=False,
            slot=0,
        )
    with pytest.raises(Exception, match=r"a must be \(2, 3, slots x 4\) with slot 2 < slots; "):
        native_kernels._call(
            "jrnn_dense_weight_grad",
            [((4, 5), f32), ((5,), f32)],
            jnp.zeros((2, 3, 8), f32),
            jnp.zeros((2, 3, 5), f32),
            jnp.zeros((0,), f32),
            shifted=False,
            reverse=False,
            slot=2,
        )


def _run_isa(isa: str, code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -c code args...`` under ``JRNN_NATIVE_ISA=isa`` (and ``env``), from the
    repository root."""
    env = dict(os.environ, JRNN_NATIVE_ISA=isa, **env)
    root = os.path.dirname(os.path.dirname(__file__))
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=root, capture_output=True, text=True
    )


@needs_kernel
def test_both_instruction_set_builds_compute_the_same_results(tmp_path):
    # The AVX-512 and AVX2 builds share the packed layouts and run the same operations in
    # the same order per lane (vscalefps is two exact power-of-two products on AVX2), so
    # where the CPU runs both their results are bitwise equal; each equals the scan. The
    # kernel gradients cover dense.cc, batch 1 the LSTM's hoisted projection, the
    # Bidirectional layers the two-call training path's shared y and dy (slots). The AVX2
    # build runs with JRNN_NATIVE_POISON=1 (test_no_kernel_reads_a_result_before_writing_it
    # covers the build the CPU picks): bitwise equality also says it reads no result
    # before writing it.
    code = (
        "import sys, numpy as np, jax, jax.numpy as jnp; from flax import nnx; import jrnn\n"
        "from jrnn import native\n"
        "from tests.helpers import randomize\n"
        "if native.isa() is None: print(native.unavailable_reason()); sys.exit(3)\n"
        "assert native.isa() == sys.argv[1], native.isa()\n"
        "rng = np.random.default_rng(0)\n"
        "x = jnp.asarray(rng.standard_normal((7, 6, 20)), 'float32')\n"
        "mask = jnp.asarray(rng.random((7, 6)) > 0.3)\n"
        "out = {}\n"
        "for name in ('LSTM', 'GRU', 'SimpleRNN', 'BiLSTM', 'BiGRU', 'BiSimpleRNN'):\n"
        "    layer = getattr(jrnn, name.removeprefix('Bi'))\n"
        "    for native_ in (True, False):\n"
        "        m = layer(37, 20, native=native_, return_sequences=True, rngs=nnx.Rngs(0))\n"
        "        if name.startswith('Bi'): m = jrnn.Bidirectional(m, rngs=nnx.Rngs(1))\n"
        "        randomize(m, 0, scale=0.3)\n"
        "        f = lambda m, x: jnp.sum(jnp.sin(m(x, mask=mask)))\n"
        "        y, g = nnx.jit(nnx.value_and_grad(f, argnums=(0, 1)))(m, x)\n"
        "        key = f'{name}-{native_}'\n"
        "        call = nnx.jit(lambda m, x, mask: m(x, mask=mask))\n"
        "        out[key + '-y'] = np.asarray(call(m, x, mask))\n"
        "        out[key + '-y1'] = np.asarray(call(m, x[:1], mask[:1]))\n"
        "        out[key + '-dx'] = np.asarray(g[1])\n"
        "        out[key + '-dk'] = np.concatenate([np.ravel(v) for v in jax.tree.leaves(g[0])])\n"
        "c = jrnn.ConvLSTM2D(5, 3, in_channels=2, spatial_shape=(6, 5), padding='same',\n"
        "                    return_sequences=True, rngs=nnx.Rngs(0))\n"
        "randomize(c, 0, scale=0.3)\n"
        "xc = jnp.asarray(rng.standard_normal((2, 4, 6, 5, 2)), 'float32')\n"
        "out['conv-y'] = np.asarray(nnx.jit(c)(xc))\n"
        "np.savez(sys.argv[2], **out)\n"
    )
    results = {}
    for isa in ("avx512", "avx2"):
        path = str(tmp_path / f"{isa}.npz")
        run = _run_isa(isa, code, isa, path, JRNN_NATIVE_POISON=str(int(isa == "avx2")))
        if run.returncode == 3:
            assert isa == "avx512" and "lacks AVX-512" in run.stdout
            continue
        assert run.returncode == 0, run.stderr[-3000:]
        results[isa] = dict(np.load(path))
    assert "avx2" in results  # every CPU that runs the kernels runs the AVX2 build
    for out in results.values():
        for layer in ("LSTM", "GRU", "SimpleRNN", "BiLSTM", "BiGRU", "BiSimpleRNN"):
            kernel, scan = (f"{layer}-{native_}-" for native_ in ("True", "False"))
            assert_close(out[kernel + "y"], out[scan + "y"], what=layer)
            assert_close(out[kernel + "y1"], out[scan + "y1"], what=layer)  # LSTM: hoisted x W
            for what in ("dx", "dk"):
                assert_gradients_close(out[kernel + what], out[scan + what])
    if len(results) == 2:
        for key, value in results["avx512"].items():
            np.testing.assert_array_equal(value, results["avx2"][key], err_msg=key)


def _outputs_and_grads(m, x, mask):
    """A layer's outputs (as a list) and the gradients of a loss over them, for its weights
    and ``x``, jitted (the kernels read their environment when they run, not when traced)."""

    def loss(m, x):
        out = m(x, mask=mask)
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        return sum(jnp.sum(jnp.sin(o.astype(jnp.float32))) for o in out), out

    (_, out), grads = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True))(m, x)
    return [np.asarray(a) for a in (*out, *jax.tree_util.tree_leaves(grads))]


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_no_kernel_reads_a_result_before_writing_it(layer, dtype, monkeypatch):
    # XLA hands a kernel its results uninitialised, often as zeroed fresh pages. With
    # JRNN_NATIVE_POISON=1 (read at every call) each kernel first fills those results with
    # NaN (common.h, PoisonFreshResults), so one read before it is written changes the
    # outputs or gradients: they must be bitwise those without, over the kernels' paths
    # (masks, both directions, the last output only, remat's segments, the Bidirectional
    # training step's shared y and dy, batch 1's hoisted projection, an AMX tile of 3 rows).
    if dtype == "bfloat16" and not native_kernels.available(jnp.bfloat16):
        pytest.skip(native_kernels.unavailable_reason(jnp.bfloat16))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((19, 6, 5)), dtype)
    mask = jnp.asarray(rng.random((19, 6)) > 0.3)
    cases = []
    for kw in (
        {},
        {"go_backwards": True, "return_state": True},
        {"return_sequences": False},
        {"remat": 2},
        {"bidirectional": True},
    ):
        bidirectional = kw.pop("bidirectional", False)
        kw = {"return_sequences": True, **kw}
        m = layer(9, 5, native=True, dtype=dtype, rngs=nnx.Rngs(0), **kw)
        if bidirectional:
            m = jrnn.Bidirectional(m, rngs=nnx.Rngs(1))
        randomize(m, 0, scale=0.3)
        cases += [(m, x, mask), (m, x[:1], None)]
    if layer is jrnn.LSTM and dtype == "float32":
        conv = dict(in_channels=2, spatial_shape=(5, 4), padding="same", return_sequences=True)
        c = jrnn.ConvLSTM2D(4, 3, rngs=nnx.Rngs(0), **conv)
        randomize(c, 0, scale=0.3)
        cases.append((c, jnp.asarray(rng.standard_normal((2, 3, 5, 4, 2)), dtype), None))
    for m, xs, ms in cases:
        monkeypatch.setenv("JRNN_NATIVE_POISON", "0")
        clean = _outputs_and_grads(m, xs, ms)
        monkeypatch.setenv("JRNN_NATIVE_POISON", "1")
        poisoned = _outputs_and_grads(m, xs, ms)
        for a, b in zip(clean, poisoned):
            assert not np.isnan(np.asarray(a, np.float32)).any()
            np.testing.assert_array_equal(a, b)


def test_unknown_instruction_set_is_an_error():
    run = _run_isa("sse2", "from jrnn import native; native.isa()")
    assert run.returncode != 0
    assert "JRNN_NATIVE_ISA must be one of avx512, avx2" in run.stderr
    assert "received 'sse2'" in run.stderr


@needs_kernel
def test_function_api_under_jit_and_vmap():
    rng = np.random.default_rng(0)
    b, t, f, h = 3, 4, 5, 7
    x = jnp.asarray(rng.standard_normal((2, b, t, f)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((f, 4 * h)) * 0.3, jnp.float32)
    bias = jnp.asarray(rng.standard_normal((4 * h,)) * 0.3, jnp.float32)
    r = jnp.asarray(rng.standard_normal((h, 4 * h)) * 0.3, jnp.float32)
    h0, c0 = _states(b, h)
    batched = jax.jit(jax.vmap(lambda x: native_kernels.lstm(x, w, bias, r, h0, c0)))(x)
    for i in range(2):
        for got, want in zip(batched, native_kernels.lstm(x[i], w, bias, r, h0, c0)):
            assert_close(got[i], want)
    w1, r1, b1 = w[:, :h], r[:, :h], bias[:h]
    batched = jax.jit(jax.vmap(lambda x: native_kernels.simple_rnn(x, w1, b1, r1, h0)))(x)
    for i in range(2):
        for got, want in zip(batched, native_kernels.simple_rnn(x[i], w1, b1, r1, h0)):
            assert_close(got[i], want)
    w3, r3, b3 = w[:, : 3 * h], r[:, : 3 * h], bias[: 3 * h]
    batched = jax.jit(jax.vmap(lambda x: native_kernels.gru(x, w3, b3, -b3, r3, h0)))(x)
    for i in range(2):
        for got, want in zip(batched, native_kernels.gru(x[i], w3, b3, -b3, r3, h0)):
            assert_close(got[i], want)


@needs_kernel
def test_native_true_names_what_prevents_it():
    x = _inputs((2, 3, 4))
    with pytest.raises(ValueError, match=r"native=True.*has a mask"):
        conv = jrnn.ConvLSTM1D(
            2, 3, in_channels=4, spatial_shape=(5,), native=True, rngs=nnx.Rngs(0)
        )
        conv(jnp.ones((2, 3, 5, 4)), mask=jnp.ones((2, 3), bool))
    with pytest.raises(ValueError, match=r"native=True.*activation='relu'; the kernel computes"):
        jrnn.LSTM(5, 4, activation="relu", native=True, rngs=nnx.Rngs(0))(x)
    with pytest.raises(ValueError, match=r"native=True.*GRUCell has reset_after=False"):
        jrnn.GRU(5, 4, reset_after=False, native=True, rngs=nnx.Rngs(0))(x)
    with pytest.raises(ValueError, match=r"native=True.*recurrent_activation='hard_sigmoid'"):
        jrnn.GRU(5, 4, recurrent_activation="hard_sigmoid", native=True, rngs=nnx.Rngs(0))(x)
    with pytest.raises(ValueError, match=r"native=True.*SimpleRNNCell has activation='relu'"):
        jrnn.SimpleRNN(5, 4, activation="relu", native=True, rngs=nnx.Rngs(0))(x)
    with pytest.raises(ValueError, match=r"native=True.*IndRNNCell has no native kernel"):
        jrnn.RNN(jrnn.IndRNNCell(5, 4, rngs=nnx.Rngs(0)), native=True)(x)
    stack = [
        jrnn.LSTMCell(5, 4, rngs=nnx.Rngs(0)),
        jrnn.GRUCell(3, 5, reset_after=False, rngs=nnx.Rngs(1)),
    ]
    with pytest.raises(ValueError, match=r"native=True.*cells\[1\]: GRUCell has reset_after"):
        jrnn.RNN(stack, native=True)(x)
    with pytest.raises(ValueError, match=r"native=True.*recurrent dropout"):
        layer = jrnn.LSTM(5, 4, recurrent_dropout=0.3, native=True, rngs=nnx.Rngs(0))
        layer(x, training=True)
    with pytest.raises(ValueError, match=r"native=True.*float32 and bfloat16 only"):
        jrnn.LSTM(5, 4, dtype="mixed_float16", native=True, rngs=nnx.Rngs(0))(x)
    with pytest.raises(ValueError, match=r"native=True.*runs in float32 only \(input float16"):
        frames = np.zeros((1, 2, 4, 4, 2), np.float32)  # ConvLSTM's kernel has no bfloat16
        jrnn.ConvLSTM2D(3, 3, in_channels=2, dtype="mixed_float16", native=True, rngs=nnx.Rngs(0))(
            frames
        )
    with pytest.raises(ValueError, match=r"native=True.*record"):
        jrnn.LSTM(5, 4, native=True, rngs=nnx.Rngs(0)).run(x, record=True)
    with pytest.raises(ValueError, match="`native` must be a bool"):
        jrnn.LSTM(5, 4, native="yes", rngs=nnx.Rngs(0))


@needs_kernel
@pytest.mark.parametrize(
    "layer",
    [jrnn.LSTM, "bidirectional", "conv"],
    ids=lambda layer: getattr(layer, "__name__", layer),
)
def test_forward_mode_and_second_derivatives_take_the_scan(layer):
    """The kernels have reverse mode only: ``jax.jvp``, ``jacfwd``, ``hessian`` and
    ``grad`` of ``grad`` raised JAX's "can't apply forward-mode autodiff" or "The FFI call
    ... cannot be differentiated" on default layers. Calls they trace take the scan (as
    ``native=False``); ``grad`` keeps the kernel; ``native=True`` names the reason."""

    def make(native):
        if layer == "conv":
            made = jrnn.ConvLSTM1D(3, 2, in_channels=2, spatial_shape=(5,), native=native,
                                   return_sequences=True, rngs=nnx.Rngs(0))  # fmt: skip
        elif layer == "bidirectional":
            made = jrnn.Bidirectional(
                jrnn.LSTM(6, 3, native=native, return_sequences=True, rngs=nnx.Rngs(0)),
                rngs=nnx.Rngs(1),
            )
        else:
            made = layer(6, 3, native=native, return_sequences=True, rngs=nnx.Rngs(0))
        randomize(made, 0, scale=0.5)
        return made

    default, scan = make(None), make(False)
    x = _inputs((2, 3, 5, 2) if layer == "conv" else (3, 4, 3))

    def loss(model):
        return lambda x: jnp.sum(jnp.tanh(model(x)) ** 2)

    assert _runs_kernel(default, x)
    assert "jrnn_" in str(jax.make_jaxpr(jax.grad(loss(default)))(x))
    tangent = jnp.cos(x)

    def jvp(model):  # jitted outside (jax.jvp of a jitted function cannot be seen)
        return jax.jit(lambda x: jax.jvp(loss(model), (x,), (tangent,)))(x)

    def hvp(model):
        return jax.jit(jax.grad(lambda x: jnp.vdot(jax.grad(loss(model))(x), tangent)))(x)

    for got, want in zip(jvp(default), jvp(scan)):
        assert_close(got, want)

    assert_close(hvp(default), hvp(scan))
    required = make(True)
    with pytest.raises(ValueError, match=r"native=True.*forward-mode autodiff"):
        jvp(required)
    with pytest.raises(ValueError, match=r"native=True.*second derivative"):
        hvp(required)


def test_unsupported_calls_fall_back_to_the_scan():
    # native=None: masks, recorded activations, custom activations all still work.
    layer = jrnn.LSTM(5, 4, return_sequences=True, rngs=nnx.Rngs(0))
    scan = jrnn.LSTM(5, 4, return_sequences=True, native=False, rngs=nnx.Rngs(0))
    x = _inputs((2, 3, 4))
    mask = jnp.asarray([[True, False, True], [True, True, False]])
    assert_close(layer(x, mask=mask), scan(x, mask=mask))
    assert layer.run(x, record=True).activations is not None


def test_env_switch_turns_it_off(monkeypatch):
    monkeypatch.setenv("JRNN_NATIVE", "0")
    assert not native_kernels.available()
    assert native_kernels.unavailable_reason() == "JRNN_NATIVE=0 is set"
    with pytest.raises(ValueError, match="JRNN_NATIVE=0"):
        jrnn.LSTM(5, 4, native=True, rngs=nnx.Rngs(0))(_inputs((2, 3, 4)))


@needs_kernel
@pytest.mark.parametrize(
    "remat,go_backwards,time", [(True, False, 12), (3, True, 12), (True, True, 13), (5, False, 13)]
)  # segments 3x4, 4x3, 4x3+1 and 5x2+3 (a shorter last one: first when going backwards)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_remat_segments_equal_the_scan(layer, remat, go_backwards, time):
    # Backwards in time the segments run last to first, each backwards in place.
    native, scan = _pair(
        9,
        4,
        layer=layer,
        remat=remat,
        go_backwards=go_backwards,
        return_sequences=True,
        return_state=True,
    )
    x = _inputs((5, time, 4))
    for a, b in zip(jit_call(native, x), jit_call(scan, x)):
        assert_close(a, b, time=time)
    # Each segment slices x in place: the input's gradient too (stacked layers need it).
    g = [
        nnx.jit(nnx.grad(lambda m, x: jnp.sum(jnp.sin(m(x)[0])), argnums=(0, 1)))(m, x)
        for m in (native, scan)
    ]
    for a, b in zip(jax.tree_util.tree_leaves(g[0]), jax.tree_util.tree_leaves(g[1])):
        assert_gradients_close(a, b)


# ------------------------------------------------------------------ bfloat16
needs_bf16_kernel = pytest.mark.skipif(
    not native_kernels.available(jnp.bfloat16),
    reason=f"bfloat16 kernels unavailable: {native_kernels.unavailable_reason(jnp.bfloat16)}",
)


def _function_args(kind, batch, time, features, units, seed=0):
    """Random float32 arguments of ``jrnn.native.<kind>`` (asymmetric, scaled as trained
    weights are)."""
    rng = np.random.default_rng(seed)
    gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[kind]
    scale = min(0.5, 2.0 / np.sqrt(features + units))

    def normal(*shape, s=scale):
        return jnp.asarray(rng.standard_normal(shape) * s, jnp.float32)

    x = normal(batch, time, features, s=1.0)
    w, r = normal(features, gates * units), normal(units, gates * units)
    biases = [normal(gates * units, s=0.1)] * (2 if kind == "gru" else 1)
    states = [normal(batch, units, s=0.5)] * (2 if kind == "lstm" else 1)
    if kind == "gru":
        return [x, w, *biases, r, *states]
    return [x, w, biases[0], r, *states]


@needs_bf16_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_bfloat16_weight_gradients_run_the_amx_kernel_from_enough_rows(kind):
    # bfloat16 weight gradients: jrnn's kernel on AMX from _AMX_SUM_ROWS rows of batch ×
    # time on (XLA's GEMMs below, where the kernel's per-block sums do not pay; and on
    # CPUs without AMX); float32 runs the kernel at any size. Both give the gradients the
    # scan gives (the parity tests); here, which one runs.
    least = native_kernels._AMX_SUM_ROWS
    fn = getattr(native_kernels, kind)
    for dtype, batch, time in [
        ("bfloat16", 4, least // 4),
        ("bfloat16", 4, least // 4 - 1),
        ("float32", 4, 3),
    ]:
        args = [a.astype(dtype) for a in _function_args(kind, batch, time, 3, 5)]

        def loss(*a):
            return jnp.mean(jnp.square(fn(*a)[0].astype(jnp.float32)))

        jaxpr = str(jax.make_jaxpr(jax.grad(loss, argnums=(1,)))(*args))
        runs = dtype == "float32" or (native_kernels.amx() and batch * time >= least)
        assert ("jrnn_dense_weight_grad" in jaxpr) == runs, (dtype, batch, time)


@needs_bf16_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("batch,time,features,units", SHAPES)
def test_bfloat16_kernel_is_the_float32_kernel_on_the_rounded_values(
    kind, batch, time, features, units
):
    # The bfloat16 kernel accumulates in float32 and rounds only h, once per step: on
    # bfloat16 arguments it must match the float32 kernel on the same (rounded) values to
    # within that rounding (a packing or conversion error would be off by O(1)).
    fn = _kernel(kind)
    args = _function_args(kind, batch, time, features, units)
    low = [a.astype(jnp.bfloat16) for a in args]
    rounded = [a.astype(jnp.float32) for a in low]
    for sequence in (True, False):
        got, want = fn(*low, sequence=sequence), fn(*rounded, sequence=sequence)
        for a, b in zip(got, want):
            if b is None:
                assert a is None
                continue
            assert a.dtype == jnp.bfloat16 and a.shape == b.shape
            assert float(jnp.max(jnp.abs(a.astype(jnp.float32) - b))) <= 2e-2

    def loss(*a):
        out = [o for o in fn(*a) if o is not None]
        return sum(jnp.sum(jnp.sin(o.astype(jnp.float32)) * (i + 1)) for i, o in enumerate(out))

    argnums = tuple(range(len(args)))
    g_low = jax.jit(jax.grad(loss, argnums))(*low)
    g_ref = jax.jit(jax.grad(loss, argnums))(*rounded)
    for a, b in zip(g_low, g_ref):
        assert a.dtype == jnp.bfloat16 and a.shape == b.shape
        scale = max(1.0, float(jnp.max(jnp.abs(b))))
        assert float(jnp.max(jnp.abs(a.astype(jnp.float32) - b))) <= 2e-2 * scale


@pytest.mark.skipif(
    not native_kernels.amx(),
    reason="the bfloat16 kernels run no AMX tiles here (jrnn.native.amx())",
)
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("batch,time,features,units", [(17, 11, 37, 33), (35, 5, 64, 130)])
def test_amx_tiles_agree_with_the_avx512_bf16_tiles(
    kind, batch, time, features, units, monkeypatch
):
    # AMX tiles (16 rows, and a partial block; K steps of 32 and a zero-padded tail; a
    # batch of one: test_small_batch_rows_are_bitwise_the_large_batch_rows) against
    # the vdpbf16ps tiles (JRNN_NATIVE_AMX=0, read at every call): both accumulate the same
    # products in float32, rounded differently, so outputs differ by at most a bfloat16
    # rounding and gradients by as little; forwards, backwards in time and masked.
    fn = getattr(native_kernels, kind)
    args = [a.astype(jnp.bfloat16) for a in _function_args(kind, batch, time, features, units)]
    mask = jnp.asarray(np.random.default_rng(2).random((batch, time)) > 0.3)

    def loss(*a, **kw):
        out = [o for o in fn(*a, **kw) if o is not None]
        return sum(jnp.sum(jnp.sin(o.astype(jnp.float32)) * (i + 1)) for i, o in enumerate(out))

    def run(**kw):  # not jitted: JRNN_NATIVE_AMX is read when the kernel runs
        return fn(*args, **kw), jax.grad(functools.partial(loss, **kw), tuple(range(len(args))))(
            *args
        )

    differs = False  # somewhere: the AMX tiles did run
    for kw in ({}, {"reverse": True}, {"mask": mask}, {"sequence": False}):
        amx = run(**kw)
        monkeypatch.setenv("JRNN_NATIVE_AMX", "0")
        avx512 = run(**kw)
        monkeypatch.delenv("JRNN_NATIVE_AMX")
        for a, b in zip(jax.tree.leaves(amx), jax.tree.leaves(avx512)):
            assert a.dtype == b.dtype == jnp.bfloat16 and a.shape == b.shape
            a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
            scale = max(1.0, float(np.max(np.abs(b))))
            assert float(np.max(np.abs(a - b))) <= 1e-2 * scale, kw
            differs = differs or not np.array_equal(a, b)
    assert differs


@needs_bf16_kernel
@pytest.mark.parametrize("dtype", ["bfloat16", "mixed_bfloat16"])
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_bfloat16_layers_run_the_kernel_within_the_bfloat16_tolerance(layer, dtype):
    units, features, batch, time = 33, 5, 13, 20
    made = {}
    for key, kw in {
        "native": dict(dtype=dtype, native=True),
        "scan": dict(dtype=dtype, native=False),
        "float32": dict(native=False),
    }.items():
        made[key] = layer(
            units, features, return_sequences=True, return_state=True, rngs=nnx.Rngs(0), **kw
        )
        # ~1/sqrt(fan-in), as trained weights are: a chaotic recurrence (larger weights)
        # would amplify any rounding, float32 included, past every tolerance.
        randomize(made[key], 0, scale=1.0 / np.sqrt(features + units))
    x = _inputs((batch, time, features))
    ref = jit_call(made["float32"], x)
    for key in ("native", "scan"):
        for a, b in zip(jit_call(made[key], x), ref):
            assert a.dtype == jnp.bfloat16
            assert_close(a, b, dtype="bfloat16", time=time, what=key)

    def loss(m):
        y, *_ = m(x)
        return jnp.sum(jnp.sin(y.astype(jnp.float32)))

    grads = {k: jax.tree_util.tree_leaves(nnx.jit(nnx.grad(loss))(m)) for k, m in made.items()}
    param_dtype = jnp.float32 if dtype == "mixed_bfloat16" else jnp.bfloat16
    for a, b in zip(grads["native"], grads["float32"]):
        assert a.dtype == param_dtype
        scale = max(1.0, float(jnp.max(jnp.abs(b))))
        assert float(jnp.max(jnp.abs(a.astype(jnp.float32) - b))) <= 6e-2 * scale


@needs_kernel
def test_function_dtypes_are_checked():
    args = _function_args("lstm", 2, 3, 4, 5)
    with pytest.raises(
        ValueError,
        match=r"`kernel` must have the dtype of `x` \(float32\); "
        r"received bfloat16",
    ):
        native_kernels.lstm(args[0], args[1].astype(jnp.bfloat16), *args[2:])
    with pytest.raises(ValueError, match="gru runs float32 and bfloat16 only; received float16"):
        native_kernels.gru(*[a.astype(jnp.float16) for a in _function_args("gru", 2, 3, 4, 5)])
    assert "float16" in native_kernels.unavailable_reason(jnp.float16)


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_function_shapes_are_checked_when_traced(kind):
    # A ValueError naming the argument, its shape and the received one, raised while
    # tracing (the kernels would refuse the call only when it runs).
    fn, bi = getattr(native_kernels, kind), getattr(native_kernels, f"{kind}_bidirectional")
    args = _function_args(kind, 2, 3, 4, 5)  # x, w, bias(es), r, state(s)
    names = {"lstm": "w b r h0 c0", "gru": "w bi br r h0", "simple_rnn": "w b r h0"}[kind]
    n = {"lstm": 20, "gru": 15, "simple_rnn": 5}[kind]
    want = {"w": (4, n), "b": (n,), "bi": (n,), "br": (n,), "h0": (2, 5), "c0": (2, 5)}
    for i, name in enumerate(names.split(), start=1):
        if name == "r":
            continue
        bad = list(args)
        bad[i] = jnp.concatenate([bad[i], bad[i]], axis=-1)  # one axis too long
        with pytest.raises(ValueError, match=rf"{kind}: `{name}`.* must have shape "):
            jax.make_jaxpr(lambda *a: fn(*a))(*bad)
        with pytest.raises(ValueError) as raised:
            fn(*bad)
        assert f"{want[name]}; received {bad[i].shape}" in str(raised.value)
    r = names.split().index("r") + 1
    with pytest.raises(ValueError, match=r"`r` \(the recurrent kernel\) must have shape \(units"):
        fn(*args[:r], args[r][:, 1:], *args[r + 1 :])
    with pytest.raises(ValueError, match=r"`x` must be \(batch, time, features\); received"):
        fn(args[0][0], *args[1:])
    with pytest.raises(ValueError, match=r"`mask` must have shape \(2, 3\); received \(3, 2\)"):
        fn(*args, mask=jnp.ones((3, 2), bool))
    # The bidirectional functions want every argument but x and the mask stacked.
    with pytest.raises(ValueError, match=rf"{kind}_bidirectional: `r` .*\(2, units"):
        bi(*args)
    stacked = [args[0]] + [jnp.stack([a, a]) for a in args[1:]]
    assert bi(*stacked)[0].shape == (2, 3, 10)


# ------------------------------------------------------------------ stacks
def _stack_pair(features=4, **kw):
    """The same randomized stack [LSTM, GRU, SimpleRNN] twice: native and the scan."""
    layers = []
    for native in (True, False):
        rngs = nnx.Rngs(0)
        cells = [
            jrnn.LSTMCell(7, features, rngs=rngs, **kw),
            jrnn.GRUCell(6, 7, rngs=rngs, **kw),
            jrnn.SimpleRNNCell(5, 6, rngs=rngs, **kw),
        ]
        made = jrnn.RNN(cells, return_sequences=True, return_state=True, native=native)
        randomize(made, 0, scale=0.4)
        layers.append(made)
    return layers


@needs_kernel
@pytest.mark.parametrize(
    "kw",
    [{}, {"go_backwards": True}, {"remat": 3}, {"return_sequences": False}],
    ids=lambda kw: ",".join(kw) or "default",
)
@pytest.mark.parametrize("masked", [False, True])
def test_stacked_cells_run_one_kernel_per_cell_and_equal_the_scan(kw, masked):
    native, scan = _stack_pair()
    for layer in (native, scan):
        for key, value in kw.items():
            setattr(layer, key, value)
    x = _inputs((5, 11, 4))
    call = {"mask": _step_mask(5, 11)} if masked else {}
    rng = np.random.default_rng(4)
    states = tuple(
        tuple(jnp.asarray(rng.standard_normal((5, u)) * 0.5, jnp.float32) for _ in range(n))
        for u, n in ((7, 2), (6, 1), (5, 1))
    )
    for a, b in zip(
        jax.tree_util.tree_leaves(jit_call(native, x, initial_state=states, **call)),
        jax.tree_util.tree_leaves(jit_call(scan, x, initial_state=states, **call)),
    ):
        assert_close(a, b, time=11)

    def loss(m, x, states):
        return sum(
            jnp.sum(jnp.sin(v) * (i + 1))
            for i, v in enumerate(jax.tree_util.tree_leaves(m(x, initial_state=states, **call)))
        )

    grads = [nnx.jit(nnx.grad(loss, argnums=(0, 1, 2)))(m, x, states) for m in (native, scan)]
    for a, b in zip(jax.tree_util.tree_leaves(grads[0]), jax.tree_util.tree_leaves(grads[1])):
        scale = max(1.0, float(jnp.max(jnp.abs(b))))  # sums of many terms: relative
        assert float(jnp.max(jnp.abs(a - b))) <= 5e-5 * scale
    # The kernel path ran: the jaxpr holds one forward kernel call per cell.
    text = str(jax.make_jaxpr(lambda x: native(x, initial_state=states, **call))(x))
    for target in ("jrnn_lstm_fwd", "jrnn_gru_fwd", "jrnn_simple_fwd"):
        assert target in text
    assert "scan[" not in text or kw.get("remat")


@needs_kernel
def test_stacked_cells_input_dropout_equals_the_scan_and_recurrent_dropout_falls_back():
    native, scan = _stack_pair(dropout=0.3)
    x = _inputs((5, 6, 4))
    outs = [m(x, training=True, rngs=nnx.Rngs(dropout=7)) for m in (native, scan)]
    for a, b in zip(jax.tree_util.tree_leaves(outs[0]), jax.tree_util.tree_leaves(outs[1])):
        assert_close(a, b, time=6)
    native, _ = _stack_pair(recurrent_dropout=0.3)
    with pytest.raises(ValueError, match=r"native=True.*recurrent dropout"):
        native(x, training=True)
    with pytest.raises(ValueError, match=r"native=True.*cells\[1\]: IndRNNCell has no native"):
        rngs = nnx.Rngs(0)
        jrnn.RNN([jrnn.LSTMCell(3, 4, rngs=rngs), jrnn.IndRNNCell(3, 3, rngs=rngs)], native=True)(x)


# ------------------------------------------------------------------ buffers written in place
@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_backward_kernels_never_overwrite_residuals_still_in_use(kind, dtype):
    # The backward kernels write their gradients over the saved gates and over dy (XLA
    # aliases the buffers, and copies an argument first where it is still needed). One VJP
    # applied twice reads the same residuals twice, eagerly and within one jit: every
    # application must give the first one's gradients.
    if dtype == "bfloat16" and not native_kernels.available(jnp.bfloat16):
        pytest.skip(native_kernels.unavailable_reason(jnp.bfloat16))
    fn = getattr(native_kernels, kind)
    args = [a.astype(dtype) for a in _function_args(kind, 13, 9, 5, 20)]
    outs, vjp = jax.vjp(fn, *args)
    rng = np.random.default_rng(3)
    cts = [
        tuple(jnp.asarray(rng.standard_normal(o.shape), o.dtype) for o in outs) for _ in range(2)
    ]

    @jax.jit
    def twice(args, ct1, ct2):
        _, vjp = jax.vjp(fn, *args)
        return vjp(ct1), vjp(ct2)

    first = [vjp(ct) for ct in cts]
    again = [vjp(ct) for ct in cts]
    for got in (again, twice(args, *cts)):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(first)):
            np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


@needs_kernel
@pytest.mark.parametrize(
    "kind,dtype,saved",
    [
        ("lstm", "float32", 7),
        ("gru", "float32", 6),
        ("simple_rnn", "float32", 2),
        ("lstm", "bfloat16", 4),
        ("gru", "bfloat16", 3),
        ("simple_rnn", "bfloat16", 1.5),
    ],
)
def test_training_step_maps_no_sequence_buffer_beyond_the_saved_ones(kind, dtype, saved):
    # XLA:CPU maps a call's temporaries afresh each time, and every page of them faults on
    # first touch: at the typical shape that was a third of the GRU training step. In units
    # of one (batch, time, units) float32 array, the step needs y and dy plus what the
    # forward kernel saves (LSTM: 4 gates and c; GRU: 4 gates; SimpleRNN: nothing, its dR
    # reads y and h0 in place); the backward kernels write their gradients (and LSTM's and
    # GRU's h_prev) over the gates and dy. Before they did, the steps took 11, 13 and 4
    # units (SimpleRNN 3 while XLA built h_prev for dR). In bfloat16 every array but LSTM's
    # c is half a unit; before the gates were saved in bfloat16 (float32, which the
    # bfloat16 gradients could not overwrite), LSTM took 8 units and GRU 7. bfloat16
    # SimpleRNN: 1.5 units where XLA builds h_prev for dR, 1 where the AMX weight-gradient
    # kernel reads y and h0 in place.
    if dtype == "bfloat16" and not native_kernels.available(jnp.bfloat16):
        pytest.skip(native_kernels.unavailable_reason(jnp.bfloat16))
    if (kind, dtype) == ("simple_rnn", "bfloat16") and native_kernels.amx():
        saved = 1
    fn = getattr(native_kernels, kind)
    batch, time, features, units = 16, 200, 8, 64
    x, *params = [a.astype(dtype) for a in _function_args(kind, batch, time, features, units)]
    n = len(params) - (2 if kind == "lstm" else 1)

    def loss(*p):
        return jnp.mean(jnp.square(fn(x, *p)[0].astype(jnp.float32)))

    compiled = jax.jit(jax.grad(loss, argnums=tuple(range(n)))).lower(*params).compile()
    unit = batch * time * units * 4
    temp = compiled.memory_analysis().temp_size_in_bytes / unit
    assert saved <= temp < saved + 0.5, f"{kind}: temporaries of {temp:.2f} units"


@needs_kernel
def test_huge_page_advice_changes_no_result():
    # The forward kernels advise huge pages for the buffers they save for training (an OS
    # hint, JRNN_NATIVE_HUGEPAGES=0 turns it off): gradients are bit-identical either way.
    code = (
        "import jax, numpy as np, jax.numpy as jnp; from jrnn import native\n"
        "from tests.test_native import _function_args\n"
        "for kind in ('lstm', 'gru'):\n"
        "    x, *p = _function_args(kind, 64, 40, 16, 256)\n"
        "    f = getattr(native, kind)\n"
        "    g = jax.grad(lambda *p: jnp.sum(jnp.sin(f(x, *p)[0])), range(len(p)))(*p)\n"
        "    np.savez(f'{OUT}/{kind}.npz', *[np.asarray(a) for a in g])\n"
    )
    results = []
    for advice in ("1", "0"):
        out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"jrnn-thp-{os.getpid()}-{advice}")
        os.makedirs(out, exist_ok=True)
        subprocess.run(
            [sys.executable, "-c", f"OUT = {out!r}\n" + code],
            check=True,
            env=dict(os.environ, JRNN_NATIVE_HUGEPAGES=advice),
            cwd=os.path.dirname(os.path.dirname(__file__)),
        )
        results.append(
            [
                np.load(os.path.join(out, f"{k}.npz"))[n]
                for k in ("lstm", "gru")
                for n in ("arr_0", "arr_3")
            ]
        )
        shutil.rmtree(out)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("batch", [3, 20])
def test_next_panel_prefetch_changes_no_result(kind, batch, monkeypatch):
    # The float32 tiles prefetch the next weight panel into L2 where a step's weights are
    # more than L2 holds (JRNN_NATIVE_L2_BYTES overrides its size, read at every call),
    # and run that K loop four rows at a time, in the same order: outputs and gradients
    # are bit-identical either way. Batch 3 splits units between threads per step, batch
    # 20 rows; 5 inputs and 37 units give K loops of lengths that are not multiples of 4.
    x, *p = _function_args(kind, batch, 6, 5, 37)
    f = getattr(native_kernels, kind)

    def run():
        grads = jax.grad(lambda *p: jnp.sum(jnp.sin(f(x, *p)[0])), range(len(p)))(*p)
        return [f(x, *p)[0], *grads]

    monkeypatch.setenv("JRNN_NATIVE_L2_BYTES", str(1 << 40))
    without = run()
    monkeypatch.setenv("JRNN_NATIVE_L2_BYTES", "1")
    for a, b in zip(run(), without):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_per_example_gradients_under_vmap_equal_a_loop(kind, bidirectional):
    # vmap runs the kernels once per example (a loop in XLA), the in-place backward
    # kernels included (and a bidirectional step's second forward call writing into the
    # first's y): each example's buffers must be its own.
    fn = getattr(native_kernels, f"{kind}_bidirectional" if bidirectional else kind)
    xs = jnp.stack([_function_args(kind, 3, 6, 5, 20, seed=s)[0] for s in range(3)])
    _, *params = _function_args(kind, 3, 6, 5, 20)
    if bidirectional:
        params = [jnp.stack([p, p * 0.5]) for p in params]

    def loss(x, params):
        return jnp.sum(jnp.sin(fn(x, *params)[0]))

    batched = jax.jit(jax.vmap(jax.grad(loss, argnums=1), in_axes=(0, None)))(xs, params)
    for i in range(len(xs)):
        for got, want in zip(batched, jax.grad(loss, argnums=1)(xs[i], params)):
            assert_close(got[i], want)


# ------------------------------------------------------------------ backwards in time
def _flip(a):
    return jnp.flip(a, 1)


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("batch,time,features,units", [(13, 9, 5, 20), (1, 7, 3, 70)])
def test_reverse_is_the_kernel_over_flipped_time(kind, dtype, batch, time, features, units):
    # reverse=True runs from the last time index to the first and writes each output at
    # its input's index: the same arithmetic as the forward kernel over flipped inputs
    # (bit for bit), without the flipped copies. Gradients sum the same terms in another
    # order (the weight-gradient GEMMs run over the time axis as stored).
    if dtype == "bfloat16" and not native_kernels.available(jnp.bfloat16):
        pytest.skip(native_kernels.unavailable_reason(jnp.bfloat16))
    fn = _kernel(kind)
    x, *params = [a.astype(dtype) for a in _function_args(kind, batch, time, features, units)]
    got = fn(x, *params, reverse=True)
    want = fn(_flip(x), *params)
    np.testing.assert_array_equal(_flip(got[0]), want[0])
    for a, b in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fn(x, *params, reverse=True, sequence=False)[1:], want[1:]):
        np.testing.assert_array_equal(a, b)

    weights = jnp.asarray(np.random.default_rng(5).standard_normal((batch, time, units)))

    def loss(reverse, x, *params):
        if reverse:
            y, *final = fn(x, *params, reverse=True)
        else:
            y, *final = fn(_flip(x), *params)
            y = _flip(y)
        return jnp.sum(y.astype(jnp.float32) * weights) + sum(
            jnp.sum(jnp.sin(s.astype(jnp.float32)) * (i + 1)) for i, s in enumerate(final)
        )

    argnums = tuple(range(1 + len(params)))
    for got, want in zip(
        jax.jit(jax.grad(functools.partial(loss, True), argnums))(x, *params),
        jax.jit(jax.grad(functools.partial(loss, False), argnums))(x, *params),
    ):
        assert_gradients_close(got, want)


def _bidirectional_args(kind, batch, time, features, units, seed=0):
    forward = _function_args(kind, batch, time, features, units, seed=seed)
    backward = _function_args(kind, batch, time, features, units, seed=seed + 1)
    return [forward[0]] + [jnp.stack(pair) for pair in zip(forward[1:], backward[1:])]


def _apart(kind):
    """Both directions of ``jrnn.native.<kind>`` as two calls, outputs concatenated."""
    fn = getattr(native_kernels, kind)

    def run(x, *stacked, sequence=True):
        outs = [fn(x, *(a[k] for a in stacked), sequence=sequence, reverse=k == 1) for k in (0, 1)]
        y = jnp.concatenate([o[0] for o in outs], -1) if sequence else None
        return y, *(jnp.stack([o[i] for o in outs]) for i in range(1, len(outs[0])))

    return run


@needs_kernel
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize(
    "batch,time,features,units", [(13, 9, 5, 20), (1, 7, 3, 70), (2, 5, 4, 33)]
)
def test_bidirectional_call_is_two_directions_concatenated(
    kind, dtype, batch, time, features, units
):
    # One call runs both directions (threads share their rows, or their unit panels at
    # small batches) and writes each half of the concatenated output: bit-identical to the
    # two directions run apart; gradients through the two-call training path, of the
    # jitted call inside grad too (its custom VJP's primal and fwd rule return one structure).
    if dtype == "bfloat16" and not native_kernels.available(jnp.bfloat16):
        pytest.skip(native_kernels.unavailable_reason(jnp.bfloat16))
    one_call = _kernel(kind, bidirectional=True)
    apart = jax.jit(_apart(kind), static_argnames="sequence")
    args = [a.astype(dtype) for a in _bidirectional_args(kind, batch, time, features, units)]
    got = one_call(*args)
    want = apart(*args)
    assert got[0].shape == (batch, time, 2 * units)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    last = one_call(*args, sequence=False)
    assert last[0] is None
    for a, b in zip(last[1:], want[1:]):
        np.testing.assert_array_equal(a, b)

    weights = jnp.asarray(np.random.default_rng(5).standard_normal((batch, time, 2 * units)))

    def loss(fn, sequence, *args):
        y, *finals = fn(*args, sequence=sequence)
        total = sum(jnp.sum(jnp.sin(f.astype(jnp.float32)) * (i + 1)) for i, f in enumerate(finals))
        return total + (jnp.sum(y.astype(jnp.float32) * weights) if sequence else 0.0)

    argnums = tuple(range(len(args)))
    for sequence in (True, False):
        grads = [
            jax.jit(jax.grad(functools.partial(loss, fn, sequence), argnums))(*args)
            for fn in (one_call, apart)
        ]
        for a, b in zip(*grads):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


_FORWARDS = {  # kind: (the forward kernel's Python wrapper, its state arguments)
    "lstm": (native_kernels._lstm_forward, 2),
    "gru": (native_kernels._gru_forward, 1),
    "simple_rnn": (native_kernels._simple_forward, 1),
}


def _forward_slot(kind, args, slot, y_in=None):
    """One direction of ``kind``'s forward kernel writing slot ``(k, n)`` of its output."""
    forward, states = _FORWARDS[kind]
    x, *weights = args[: len(args) - states]
    stacked = [a[None] for a in (*weights, *args[len(args) - states :])]
    flags = (True, False, False) if kind != "simple_rnn" else (True, False)
    return forward(x, *stacked, *flags, None, slot, y_in)


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_forward_kernels_write_their_slot_of_a_shared_output(kind, monkeypatch):
    # A Bidirectional training step's two forward calls share one y (batch, time, 2H): the
    # first makes it and writes slot 0, the second writes slot 1 in place (y_in, aliased).
    # Each half equals the one-direction output; the kernels refuse a y_in that is not the
    # output's own buffer and a slot outside y.
    args = _function_args(kind, 3, 5, 4, 6)
    other = [a * 0.5 for a in args]

    @jax.jit
    def shared(args, other):
        y = _forward_slot(kind, args, (0, 2))[0]
        return _forward_slot(kind, other, (1, 2), y_in=y)[0]

    y = shared(args, other)
    np.testing.assert_array_equal(y[..., :6], _forward_slot(kind, args, (0, 1))[0])
    np.testing.assert_array_equal(y[..., 6:], _forward_slot(kind, other, (0, 1))[0])
    with pytest.raises(Exception, match=r"y must be \(3, 5, slots x 6\) with slot 2 < slots"):
        _forward_slot(kind, args, (2, 2))
    call = native_kernels._call
    monkeypatch.setattr(  # XLA then hands the kernel a copy of y_in: refused
        native_kernels, "_call", lambda *a, aliases=None, **kw: call(*a, **kw)
    )
    with pytest.raises(Exception, match=r"y_in must be \(0,\) or alias y"):
        _forward_slot(kind, other, (1, 2), y_in=jnp.zeros((3, 5, 12)))


def _ops(fn, *args) -> str:
    return str(jax.make_jaxpr(fn)(*args))


@needs_kernel
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_bidirectional_layer_runs_one_call_without_flips_or_concatenation(layer):
    x = _inputs((6, 8, 5))
    bi = jrnn.Bidirectional(layer(7, 5, return_sequences=True, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    graph, state = nnx.split(bi)
    ops = _ops(lambda s, x: nnx.merge(graph, s)(x), state, x)
    target = {jrnn.LSTM: "lstm", jrnn.GRU: "gru", jrnn.SimpleRNN: "simple"}[layer]
    assert ops.count(f"jrnn_{target}_fwd") == 1
    assert "rev[" not in ops and "concatenate" not in ops
    # go_backwards alone: x is read as given; only the returned sequence is flipped.
    made = layer(7, 5, go_backwards=True, return_sequences=True, rngs=nnx.Rngs(0))
    graph, state = nnx.split(made)
    assert _ops(lambda s, x: nnx.merge(graph, s)(x), state, x).count("rev[") == 1
    made = layer(7, 5, go_backwards=True, rngs=nnx.Rngs(0))
    graph, state = nnx.split(made)
    assert "rev[" not in _ops(lambda s, x: nnx.merge(graph, s)(x), state, x)


def _bidirectional_pair(merge_mode="concat", seed=4, layer=jrnn.LSTM, **kw):
    made = []
    for native in (None, False):  # None: the one native call where it can run
        bi = jrnn.Bidirectional(
            layer(7, 5, native=native, rngs=nnx.Rngs(0), **kw),
            merge_mode=merge_mode,
            rngs=nnx.Rngs(1),
        )
        randomize(bi, seed, scale=0.4)
        made.append(bi)
    return made


# The merge runs in Python after the one kernel call (the same for every cell): every merge
# mode on LSTM, both output forms on each cell.
_BIDIRECTIONAL_CASES = [
    *[(jrnn.LSTM, mode, True) for mode in ("concat", "sum", "mul", "ave", None)],
    (jrnn.LSTM, "concat", False),
    (jrnn.LSTM, None, False),
    *[
        (layer, mode, seq)
        for layer in (jrnn.GRU, jrnn.SimpleRNN)
        for mode, seq in (("concat", True), ("sum", False))
    ],
]


@needs_kernel
@pytest.mark.parametrize(
    "layer,merge_mode,return_sequences",
    _BIDIRECTIONAL_CASES,
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_bidirectional_one_call_equals_the_scan(layer, merge_mode, return_sequences):
    fused, scan = _bidirectional_pair(
        merge_mode, layer=layer, return_sequences=return_sequences, return_state=True
    )
    x = _inputs((6, 8, 5))
    states = _states(6, 7)[: len(scan.forward_layer.cell.state_shapes)] * 2
    for kw in ({}, {"initial_state": states}):
        a, b = jit_call(fused, x, **kw), jit_call(scan, x, **kw)
        assert len(a) == len(b)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            assert_close(u, v, time=8)

    def loss(m):
        return sum(jnp.sum(jnp.sin(o) * (i + 1)) for i, o in enumerate(jax.tree.leaves(m(x))))

    grad = nnx.jit(nnx.grad(loss))
    for u, v in zip(jax.tree.leaves(grad(fused)), jax.tree.leaves(grad(scan))):
        assert_gradients_close(u, v)


@needs_kernel
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.__name__)
def test_bidirectional_states_masks_and_dropout_keep_their_semantics(layer):
    x = _inputs((4, 6, 5))
    # Stateful: one call keeps both directions' final states, as two calls do.
    fused, scan = _bidirectional_pair(layer=layer, return_sequences=True, stateful=True)
    for _ in range(2):
        assert_close(fused(x), scan(x), time=12)
    for u, v in zip(fused.states, scan.states):
        assert_close(u, v, time=12)
    # A mask, input dropout in training, other sizes: the two directions run apart.
    mask = jnp.asarray(np.arange(6)[None, :] < np.array([6, 3, 1, 5])[:, None])
    fused, scan = _bidirectional_pair(layer=layer, return_sequences=True)
    assert_close(fused(x, mask=mask), scan(x, mask=mask), time=6)
    fused, scan = _bidirectional_pair(layer=layer, return_sequences=True, dropout=0.5)
    a = fused(x, training=True, rngs=jax.random.key(0))
    b = scan(x, training=True, rngs=jax.random.key(0))
    assert_close(a, b, time=6)
    backward = layer(3, 5, go_backwards=True, rngs=nnx.Rngs(2))
    forward = layer(7, 5, rngs=nnx.Rngs(3))
    bi = jrnn.Bidirectional(forward, backward_layer=backward)
    assert_close(bi(x), jnp.concatenate([forward(x), backward(x)], -1), time=6)


def _step_mask(batch, time, seed=5):
    """Random steps masked, plus the patterns Keras' rules single out: a row masked
    throughout, one masked at its first and last steps, one with no masked step."""
    rng = np.random.default_rng(seed)
    mask = rng.random((batch, time)) < 0.6
    mask[0] = False
    mask[1, [0, -1]] = False
    mask[1, 1:-1] = True
    mask[2] = True
    return jnp.asarray(mask)


MASKED_LAYERS = LAYERS  # every native dense kernel takes masks


# (batch, time, features, units, go_backwards, zero_output_for_mask, return_sequences):
# both work splits (rows; unit panels at batch 1), each in both directions, and the three
# flags in the four runs that cover every pair of their values.
_MASKED_CASES = [
    (13, 9, 5, 20, False, False, True),
    (13, 9, 5, 20, True, True, True),
    (1, 6, 64, 70, False, True, False),
    (1, 6, 64, 70, True, False, False),
]


@needs_kernel
@pytest.mark.parametrize("layer", MASKED_LAYERS, ids=lambda layer: layer.__name__)
@pytest.mark.parametrize(
    "batch,time,features,units,go_backwards,zero_output_for_mask,return_sequences", _MASKED_CASES
)
def test_masked_calls_run_the_kernel_and_equal_the_scan(
    layer, go_backwards, zero_output_for_mask, return_sequences, batch, time, features, units
):
    kw = dict(
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask,
        return_sequences=return_sequences,
        return_state=True,
    )
    native, scan = _pair(units, features, layer=layer, **kw)
    x = _inputs((batch, time, features))
    mask = _step_mask(batch, time) if batch > 2 else jnp.asarray([[0, 1, 1, 0, 1, 0]], bool)
    states = _states(batch, units)[: len(scan.cell.state_shapes)]
    for a, b in zip(*(jit_call(m, x, mask=mask, initial_state=states) for m in (native, scan))):
        assert_close(a, b, time=time)
    graph, state = nnx.split(native)
    ops = _ops(lambda s, x: nnx.merge(graph, s)(x, mask=mask), state, x)
    assert "jrnn_" in ops and "scan[" not in ops

    weights = jnp.asarray(np.random.default_rng(3).standard_normal((batch, time, units)))

    def loss(layer, x, states):
        y, *final = layer(x, mask=mask, initial_state=states)
        y = y * weights if return_sequences else y * weights[:, 0]
        return jnp.sum(y) + sum(jnp.sum(jnp.sin(s) * (i + 2)) for i, s in enumerate(final))

    grads = [nnx.jit(nnx.grad(loss, argnums=(0, 1, 2)))(m, x, states) for m in (native, scan)]
    for a, b in zip(jax.tree_util.tree_leaves(grads[0]), jax.tree_util.tree_leaves(grads[1])):
        assert_gradients_close(a, b)


@needs_kernel
@pytest.mark.parametrize("kind", sorted(native_kernels.MASKED_KERNELS))
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_masked_steps_keep_the_state_in_the_kernel(kind, dtype):
    """The kernel's own contract: a masked step keeps the state, and its output is the
    kept state; forwards and backwards in time."""
    if dtype == "bfloat16" and not native_kernels.available(jnp.bfloat16):
        pytest.skip(native_kernels.unavailable_reason(jnp.bfloat16))
    batch, time = 7, 8
    x, *params = [a.astype(dtype) for a in _function_args(kind, batch, time, 5, 12)]
    mask = np.asarray(_step_mask(batch, time))
    fn = getattr(native_kernels, kind)
    for reverse in (False, True):
        y, *final = fn(x, *params, mask=jnp.asarray(mask), reverse=reverse)
        plain = fn(x, *params, reverse=reverse)
        initial = params[-len(final) :]
        order = range(time - 1, -1, -1) if reverse else range(time)
        y = np.asarray(y.astype(jnp.float32))
        for b in range(batch):
            kept = np.asarray(initial[0][b].astype(jnp.float32))
            for t in order:
                if not mask[b, t]:
                    np.testing.assert_array_equal(y[b, t], kept)
                kept = y[b, t]
        for s, s0 in zip(final, initial):  # row 0: every step masked
            np.testing.assert_array_equal(s[0], s0[0])
        # Row 2 has no masked step: the plain kernel's, bit for bit.
        np.testing.assert_array_equal(y[2], np.asarray(plain[0][2].astype(jnp.float32)))
        for s, p in zip(final, plain[1:]):
            np.testing.assert_array_equal(s[2], p[2])


# Each merge mode on LSTM with two opposite flag pairs (return_sequences, zero_output_for_mask);
# two cases on the other cells (the merge and the flags act in Python on the one call's
# output, the same for every cell).
_MASKED_BIDIRECTIONAL_CASES = [
    *[
        (jrnn.LSTM, mode, seq, zero)
        for mode in ("concat", "sum", None)
        for seq, zero in ((True, False), (False, True))
    ],
    *[
        (layer, mode, seq, zero)
        for layer in (jrnn.GRU, jrnn.SimpleRNN)
        for mode, seq, zero in (("concat", True, False), (None, False, True))
    ],
]


@needs_kernel
@pytest.mark.parametrize(
    "layer,merge_mode,return_sequences,zero_output_for_mask",
    _MASKED_BIDIRECTIONAL_CASES,
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_masked_bidirectional_runs_one_call_and_equals_the_scan(
    layer, merge_mode, return_sequences, zero_output_for_mask
):
    fused, scan = _bidirectional_pair(
        merge_mode,
        layer=layer,
        return_sequences=return_sequences,
        return_state=True,
        zero_output_for_mask=zero_output_for_mask,
    )
    x = _inputs((6, 8, 5))
    mask = _step_mask(6, 8)
    states = _states(6, 7)[: len(scan.forward_layer.cell.state_shapes)] * 2
    for kw in ({"mask": mask}, {"mask": mask, "initial_state": states}):
        a, b = jit_call(fused, x, **kw), jit_call(scan, x, **kw)
        assert len(a) == len(b)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            assert_close(u, v, time=8)
    graph, state = nnx.split(fused)
    ops = _ops(lambda s, x: nnx.merge(graph, s)(x, mask=mask), state, x)
    assert ops.count("jrnn_") == 1 and "scan[" not in ops

    def loss(m):
        out = jax.tree.leaves(m(x, mask=mask, initial_state=states))
        return sum(jnp.sum(jnp.sin(o) * (i + 1)) for i, o in enumerate(out))

    grad = nnx.jit(nnx.grad(loss))
    for u, v in zip(jax.tree.leaves(grad(fused)), jax.tree.leaves(grad(scan))):
        assert_gradients_close(u, v)
