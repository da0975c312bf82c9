"""Shared test helpers: tolerances in one place, random asymmetric weights, Keras twins.

Tolerances (DESIGN.md parity protocol): float32 max abs error 1e-5 for up to 100 steps,
scaled by sqrt(T/100) beyond; bfloat16/float16 bounds are stated here and nowhere else
(a few ulps of the 16-bit type at the largest expected magnitude, at least 1).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

TOLERANCES = {
    "float32": 1e-5,
    "float64": 1e-10,
    # 16-bit policies: jrnn and Keras round at different points (hoisted projection,
    # fused gates), so the bound is a few ulps of the 16-bit type at |x| ~ 1, and relative
    # above it (RELATIVE): an unbounded activation (relu) reaches |x| ~ 8, where one
    # bfloat16 ulp is 0.0625 (a SimpleRNN's 8.5625 against Keras' 8.5, found by the
    # property tests at 400 examples).
    "bfloat16": 6e-2,
    "float16": 1e-2,
}
RELATIVE = {"bfloat16", "float16"}


def tolerance(dtype, time: int = 1) -> float:
    """Absolute tolerance for a comparison in ``dtype`` over ``time`` steps."""
    base = TOLERANCES[jnp.dtype(dtype).name]
    return base * max(1.0, math.sqrt(time / 100.0))


def assert_close(actual, expected, dtype="float32", time: int = 1, what: str = "") -> None:
    """Max-abs comparison with the tolerance of ``dtype`` (see TOLERANCES), scaled by the
    largest expected magnitude (at least 1) for the 16-bit dtypes."""
    a = np.asarray(jnp.asarray(actual).astype(jnp.float32))
    e = (
        np.asarray(jnp.asarray(expected).astype(jnp.float32))
        if not isinstance(expected, np.ndarray)
        else expected.astype(np.float32)
    )
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    err = float(np.max(np.abs(a - e))) if a.size else 0.0
    tol = tolerance(dtype, time)
    if jnp.dtype(dtype).name in RELATIVE and e.size:
        tol *= max(1.0, float(np.max(np.abs(e))))
    assert err <= tol, f"{what}: max abs error {err:.3g} > {tol:.3g}"


def assert_gradients_close(a, b) -> None:
    """Gradients equal within float32 summation error, relative to the largest: random
    weights at 256 units saturate the gates and give gradients ~100, where float32 sums of
    ~300 terms differ by ~1e-5."""
    assert a.shape == b.shape and a.dtype == b.dtype
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    scale = max(1.0, float(jnp.max(jnp.abs(b))))
    assert float(jnp.max(jnp.abs(a - b))) <= 5e-5 * scale


_EXAMPLES_SINCE_CLEAR = [0]


def bound_jax_caches(every: int = 25) -> None:
    """Clear JAX's caches every ``every`` calls (one call per property-test example). Every
    example compiles programs of new shapes and JAX keeps each executable, ~270 memory maps
    an example in test_property_models: ~240 examples in one process reached the kernel's
    65,530-map limit, and XLA crashed (a segmentation fault after `LLVM compilation error:
    Cannot allocate memory`). Clearing at every example cost 35% more time."""
    _EXAMPLES_SINCE_CLEAR[0] += 1
    if _EXAMPLES_SINCE_CLEAR[0] >= every:
        _EXAMPLES_SINCE_CLEAR[0] = 0
        jax.clear_caches()


def count_traces(monkeypatch) -> list[bool]:
    """Record each run of ``jrnn.RNN._run`` (one per trace under a cached program; one per
    call when uncached) as whether its input was a tracer; clears JAX's caches first, as
    earlier tests may have cached the same programs."""
    import jrnn.rnn

    traces: list[bool] = []
    run = jrnn.rnn.RNN._run

    def counting_run(self, *args, **kw):
        inputs = args[0] if args else kw["inputs"]  # (a cached call passes keywords)
        traces.append(isinstance(inputs, jax.core.Tracer))
        return run(self, *args, **kw)

    monkeypatch.setattr(jrnn.rnn.RNN, "_run", counting_run)
    jax.clear_caches()
    return traces


def jit_call(m, x, **kw):
    """``m(x, **kw)`` under ``nnx.jit``: one compiled program, where an eager call compiles
    each operation on its own (most of a parity test's time). Eager calls stay covered by
    the conformance suite and the tests that call layers directly."""
    return nnx.jit(lambda m, x, kw: m(x, **kw))(m, x, kw)


def randomize(module: nnx.Module, seed: int = 0, scale: float = 0.5) -> list[np.ndarray]:
    """Give every ``nnx.Param`` of ``module`` random asymmetric values (normal * scale).

    Returns the new values in ``nnx.state`` order (kernel, recurrent_kernel, bias per cell).
    """
    rng = np.random.default_rng(seed)
    values = []
    for _, param in nnx.iter_graph(module):
        if isinstance(param, nnx.Param):
            v = (rng.standard_normal(param.shape) * scale).astype(np.float32)
            param.set_value(jnp.asarray(v, param.get_value().dtype))
            values.append(v)
    return values


def cell_weights(cell) -> list[np.ndarray]:
    """A jrnn cell's weights in Keras ``get_weights()`` order."""
    out = [np.asarray(cell.kernel[...]), np.asarray(cell.recurrent_kernel[...])]
    if getattr(cell, "bias", None) is not None:
        out.append(np.asarray(cell.bias[...]))
    return out


def tree_to_numpy(tree):
    return jax.tree_util.tree_map(lambda a: np.asarray(jnp.asarray(a).astype(jnp.float32)), tree)


def randomize_keras(model, seed: int = 0, scale: float = 0.4) -> None:
    """Random asymmetric weights for every variable of a Keras model (``set_weights``)."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.standard_normal(w.shape).astype(np.float32) * scale for w in model.get_weights()]
    )


def nudge(model, delta: float = 0.01) -> None:
    """Add ``delta`` to every parameter of a ported model, as fine-tuning would."""
    from importers.weights import keras_params

    for p in keras_params(model):
        p[...] = p[...] + np.asarray(delta, p[...].dtype)
