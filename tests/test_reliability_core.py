"""Extreme shapes and values, NaN/Inf propagation as Keras, determinism, bounded recompilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jrnn
from tests.helpers import assert_close, count_traces
from tests.keras_twins import flatten, keras_call, make_pair, random_inputs


@pytest.mark.parametrize("kind", ["simple", "gru", "lstm"])
def test_nan_and_inf_propagate_as_keras(kind):
    layer, klayer = make_pair(
        {"kind": kind, "units": 4}, 3, batch=3, time=6, return_sequences=True, return_state=True
    )
    x = random_inputs(3, 6, 3)
    x[0, 2, 1] = np.nan
    x[1, 4, 0] = np.inf
    x[2, 1, 2] = -np.inf
    mask = np.ones((3, 6), bool)
    mask[1, 4] = False  # the Inf sits on a masked step: Keras discards that step's states
    for use_mask in (None, mask):
        ours = flatten(layer(x, mask=use_mask))
        theirs = flatten(keras_call(klayer, x, mask=use_mask))
        for a, e in zip(ours, theirs):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(e))
            finite = np.isfinite(e)
            np.testing.assert_array_equal(finite, np.isfinite(a))
            assert_close(np.where(finite, a, 0), np.where(finite, e, 0))


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_units_one_batch_one_time_one_and_all_masked(kind):
    layer, klayer = make_pair(
        {"kind": kind, "units": 1}, 1, batch=1, time=1, return_sequences=True, return_state=True
    )
    x = random_inputs(1, 1, 1)
    for a, e in zip(flatten(layer(x)), flatten(keras_call(klayer, x))):
        assert_close(a, e)
    all_masked = np.zeros((1, 1), bool)
    for a, e in zip(
        flatten(layer(x, mask=all_masked)), flatten(keras_call(klayer, x, mask=all_masked))
    ):
        assert_close(a, e)


def test_large_units():
    layer, klayer = make_pair({"kind": "lstm", "units": 300}, 7, batch=2, time=5)
    x = random_inputs(2, 5, 7)
    assert_close(layer(x), flatten(keras_call(klayer, x))[0], time=5)


def test_very_long_sequence_inference_memory_is_flat():
    """T = 100_000: without return_sequences only the carry lives across steps."""
    layer = jrnn.LSTM(8, 4, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 100_000, 4)), jnp.float32)
    run = jax.jit(lambda s, x: nnx.merge(nnx.graphdef(layer), s)(x))
    compiled = run.lower(nnx.state(layer), x).compile()
    memory = compiled.memory_analysis()
    # Only a time-major copy of the inputs (T*4 floats); a hoisted (T, batch, 4*units)
    # buffer would be 8x that, a stored output sequence 2x.
    assert memory.temp_size_in_bytes <= x.nbytes + 65_536
    out = compiled(nnx.state(layer), x)
    assert out.shape == (1, 8) and bool(jnp.all(jnp.isfinite(out)))


def test_determinism_bit_identical():
    x = random_inputs(3, 9, 3)
    outs = []
    for _ in range(2):
        layer = jrnn.GRU(
            5,
            3,
            dropout=0.3,
            recurrent_dropout=0.3,
            seed=4,
            return_sequences=True,
            rngs=nnx.Rngs(0),
        )
        outs.append(np.asarray(layer(x, training=True)))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_bucketing_bounds_recompilation_and_keeps_results():
    layer = jrnn.LSTM(5, 3, return_state=True, rngs=nnx.Rngs(0))
    traces = []

    @nnx.jit
    def apply(model, x, mask):
        traces.append(x.shape)
        return model(x, mask=mask)

    for length in range(3, 30, 2):
        x = random_inputs(2, length, 3, seed=length)
        px, pm = jrnn.utils.pad_to_bucket(x, buckets=(8, 16, 32))
        for a, e in zip(apply(layer, px, pm), layer(x)):
            assert_close(a, e)
    assert len(traces) == 3  # one compilation per bucket, not per length


def test_bucketing_errors():
    with pytest.raises(ValueError, match=r"`inputs` must have shape \(batch, time, \.\.\.\)"):
        jrnn.utils.pad_to_bucket(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"`mask` must have shape \(2, 3\)"):
        jrnn.utils.pad_to_bucket(np.ones((2, 3, 1)), mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"`buckets` must be increasing"):
        jrnn.utils.bucket_length(3, buckets=(8, 4))


# -- extreme shapes: T = 0, a fully masked first step, large units ----------------------------


@pytest.mark.parametrize("kind", ["simple", "gru", "lstm"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_empty_time_axis_raises_naming_the_argument(kind, return_sequences):
    """T = 0: Keras 3.15 fails too (TensorFlow: InvalidArgumentError from a strided slice,
    JAX: IndexError), with no word about the cause; jrnn raises ValueError naming
    ``inputs``, the layer and the shape, eagerly and under jit, instead of returning an
    empty sequence or the initial state."""
    layer, klayer = make_pair(
        {"kind": kind, "units": 4},
        3,
        batch=2,
        time=1,
        return_sequences=return_sequences,
        return_state=True,
    )
    x = np.zeros((2, 0, 3), np.float32)
    name = type(layer).__name__
    match = rf"{name}: `inputs` must have at least one timestep; received shape \(2, 0, 3\)"
    with pytest.raises(ValueError, match=match):
        layer(x)
    with pytest.raises(ValueError, match=match):
        nnx.jit(lambda m, x: m(x))(layer, x)
    with pytest.raises(Exception):  # noqa: B017 - Keras' own failure has no useful type
        keras_call(klayer, x)


@pytest.mark.parametrize("kind", ["simple", "gru", "lstm"])
def test_every_row_masked_at_step_zero(kind):
    """Step 0 masked in every row (then ragged masks): outputs there are zeros and the
    states carry the initial state, as in Keras' TensorFlow backend."""
    layer, klayer = make_pair(
        {"kind": kind, "units": 5}, 3, batch=3, time=7, return_sequences=True, return_state=True
    )
    x = random_inputs(3, 7, 3)
    mask = np.ones((3, 7), bool)
    mask[:, 0] = False
    mask[1, :3] = False
    mask[2, :] = False  # one row masked at every step
    ours, theirs = flatten(layer(x, mask=mask)), flatten(keras_call(klayer, x, mask=mask))
    for a, e in zip(ours, theirs):
        assert_close(a, e, time=7)
    np.testing.assert_array_equal(np.asarray(ours[0])[:, 0], 0.0)
    np.testing.assert_array_equal(np.asarray(ours[0])[2], 0.0)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_units_1024_small_batch(kind):
    layer, klayer = make_pair(
        {"kind": kind, "units": 1024}, 3, batch=1, time=4, return_sequences=True, return_state=True
    )
    x = random_inputs(1, 4, 3)
    # Each recurrent dot product sums 1024 float32 terms in another order than TensorFlow's
    # GEMM: rounding grows like sqrt(n), so the bound is the float32 one times
    # sqrt(1024 / 16) = 8 (the parity protocol's 1e-5 is for the usual <= 16 units).
    for a, e in zip(flatten(layer(x)), flatten(keras_call(klayer, x))):
        assert np.all(np.isfinite(a))
        assert_close(np.asarray(a) / 8, np.asarray(e) / 8, time=4)


@pytest.mark.parametrize("native", [False, None], ids=["scan", "default"])
def test_eager_calls_trace_once_and_keep_state_semantics(native, monkeypatch):
    """An eager call runs as one cached program (jrnn.rnn.cached_call): the scan's body is a
    fresh closure at every trace, so uncached every eager call compiled anew (~150 ms for a
    (2, 4, 3) LSTM) and kept its executable (memory and memory maps grew per call)."""
    import jrnn.rnn

    traces = count_traces(monkeypatch)
    layer = jrnn.LSTM(4, 3, native=native, return_state=True, rngs=nnx.Rngs(0))
    x = random_inputs(2, 5, 3)
    first = layer(x)
    for _ in range(3):
        for a, e in zip(layer(x), first):
            np.testing.assert_array_equal(a, e)
    assert traces == [True]  # traced once, under the cache's jit
    # New weights of the same shapes reuse the program and change the result.
    layer.cell.kernel.set_value(layer.cell.kernel[...] * 2)
    assert not np.allclose(layer(x)[0], first[0])
    assert traces == [True]
    # A new layer of the same structure reuses it too.
    jrnn.LSTM(4, 3, native=native, return_state=True, rngs=nnx.Rngs(1))(x)
    assert traces == [True]
    # What the library reads while tracing (here the short-call rule) is part of the key.
    monkeypatch.setattr(jrnn.rnn, "SHORT_CALL_STEPS", 3)
    layer(x)
    assert traces == [True, True]


@pytest.mark.parametrize("native", [False, None], ids=["scan", "default"])
def test_eager_run_with_activations_traces_once(native, monkeypatch):
    """Eager ``layer.run`` calls (jrnn.inspect.get_activations makes them, ``record=True``)
    run as one cached program per ``record``/``training`` too (jrnn.rnn.cached_call), and
    return what the traced call returns."""
    traces = count_traces(monkeypatch)
    layer = jrnn.GRU(4, 3, native=native, return_sequences=True, rngs=nnx.Rngs(0))
    x = random_inputs(2, 5, 3)
    first = layer.run(x, record=True)
    assert set(first.activations) and traces == [True]
    for _ in range(3):
        again = layer.run(x, record=True)
        for a, e in zip(jax.tree.leaves(again), jax.tree.leaves(first)):
            np.testing.assert_array_equal(a, e)
    assert traces == [True]
    plain = layer.run(x)  # record is part of the key
    assert plain.activations is None and traces == [True, True]
    np.testing.assert_allclose(plain.output, first.output, rtol=1e-6, atol=1e-6)
    jitted = nnx.jit(lambda m, x: m.run(x, record=True))(layer, x)
    for a, e in zip(jax.tree.leaves(jitted), jax.tree.leaves(first)):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6)
    # get_activations (its documented use) reuses the same program.
    count = len(traces)
    for _ in range(2):
        jrnn.inspect.get_activations(layer, x)
    assert len(traces) == count


def test_eager_stateful_and_dropout_calls_update_the_layer():
    """Stateful states and dropout RNG streams advance across cached eager calls exactly
    as inside the caller's own ``nnx.jit``."""
    x = random_inputs(2, 4, 3)
    layers = [
        jrnn.GRU(5, 3, stateful=True, dropout=0.3, native=False, rngs=nnx.Rngs(7)) for _ in range(2)
    ]
    jitted = nnx.jit(lambda m, x: m(x, training=True))
    for _ in range(3):
        a = layers[0](x, training=True)
        b = jitted(layers[1], x)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(layers[0].states[0][...]), np.asarray(layers[1].states[0][...]), atol=1e-6
    )
    assert not np.allclose(layers[0](x, training=True), layers[0](x, training=True))


def test_eager_wrapper_calls_run_as_one_cached_program(monkeypatch):
    """An eager Bidirectional ran op by op around its two cached directions (a GRU(32) on
    (8, 20, 16): 3.0 ms a call against 0.63 ms under nnx.jit), a TimeDistributed op by op:
    each now runs as one program per shapes and flags, equal to nnx.jit's, stateful states
    and dropout streams advancing as there; a stateful layer's first call (its states
    made) and a layer hooked by jrnn.inspect run op by op."""
    import jrnn.layers.wrappers as wrappers

    runs: list[bool] = []
    for cls, method in (
        (wrappers.Bidirectional, "_call"),
        (wrappers.TimeDistributed, "_call_with_mask"),
    ):
        original = getattr(cls, method)

        def counting(self, *args, _original=original, **kwargs):
            inputs = args[0] if args else kwargs["inputs"]  # (a cached call passes keywords)
            runs.append(isinstance(inputs, jax.core.Tracer))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, counting)
    jax.clear_caches()
    x = random_inputs(2, 5, 3)
    mask = np.ones((2, 5), bool)
    mask[1, 3:] = False

    def make():
        gru = jrnn.GRU(4, 3, return_sequences=True, stateful=True, dropout=0.3, rngs=nnx.Rngs(0))
        return jrnn.Bidirectional(gru, rngs=nnx.Rngs(1))

    eager, twin = make(), make()
    jitted = nnx.jit(lambda m, x, k: m(x, mask=k, training=True))
    got = [eager(x, mask=mask, training=True) for _ in range(3)]
    assert runs == [False, True]  # the states made op by op, then one trace for the rest
    for a in got:
        np.testing.assert_allclose(np.asarray(a), np.asarray(jitted(twin, x, mask)), atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(eager.forward_layer.states[0][...]),
        np.asarray(twin.forward_layer.states[0][...]),
        atol=1e-6,
    )
    del runs[:]
    td = jrnn.TimeDistributed(jrnn.Dense(2, 3, rngs=nnx.Rngs(0)))
    first = td(x)
    for _ in range(3):
        np.testing.assert_array_equal(np.asarray(td(x)), np.asarray(first))
    assert runs == [True]
    # a module that reads values in Python (a NumPy activation) runs op by op, as before
    del runs[:]
    numpy_td = jrnn.TimeDistributed(jrnn.Activation(lambda a: np.tanh(np.asarray(a))))
    for _ in range(2):
        np.testing.assert_allclose(np.asarray(numpy_td(x)), np.tanh(x), atol=1e-6)
    assert runs == [True, False, False]  # one failed trace, then op by op
    # jrnn.inspect hooks the inner layer: the wrapper runs op by op and the hook sees arrays
    del runs[:]
    bi = jrnn.Bidirectional(
        jrnn.LSTM(4, 3, return_sequences=True, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1)
    )
    outs = jrnn.inspect.get_outputs(bi, x, ["forward_layer"])
    assert runs == [False] and not isinstance(outs["forward_layer"], jax.core.Tracer)
    np.testing.assert_allclose(outs["forward_layer"], bi.forward_layer(x), atol=1e-6)


def test_eager_calls_write_back_no_weights():
    """The cached eager program returned every variable and wrote all of them back: the
    weights were copied at every call (LSTM(1024): 11.6-14.4 ms against 2.9-4.0 for a jit
    that reads them), moved to the last input's device, and a weight update made in another
    thread during a call was undone (50 of 300 survived). Only the state a call changes
    (stateful states, RNG counters; an nnx.Rngs argument's too) comes back."""
    layer = jrnn.GRU(5, 3, stateful=True, dropout=0.3, native=False, rngs=nnx.Rngs(7))
    x = random_inputs(2, 4, 3)
    layer(x, training=True)  # creates the states
    kernel, states = layer.cell.kernel.get_value(), layer.states[0].get_value()
    rngs = nnx.Rngs(dropout=3)
    twin = nnx.clone(layer)
    a = layer(x, training=True, rngs=rngs)
    assert layer.cell.kernel.get_value() is kernel  # read, not replaced
    assert not np.allclose(layer.states[0].get_value(), states)  # advanced
    b = layer(x, training=True, rngs=rngs)  # the argument's counter advanced: a new mask
    twin_rngs = nnx.Rngs(dropout=3)
    jitted = nnx.jit(lambda m, x, r: m(x, training=True, rngs=r))
    np.testing.assert_allclose(a, jitted(twin, x, twin_rngs), atol=1e-6)
    np.testing.assert_allclose(b, jitted(twin, x, twin_rngs), atol=1e-6)
    with pytest.raises(TypeError, match=r"`rngs` must be .*received 'abc'"):
        layer(x, rngs="abc")  # unused at inference, but no rngs: named before the jit


def test_call_time_rngs_with_a_default_stream():
    """`rngs=nnx.Rngs(0)` (a default stream) crashed every dropout call ("Cannot interpret
    'RngStream'"): an nnx.Rngs answers `.dtype` with a stream, so it passed for a key."""
    from jrnn._checks import is_key

    assert not is_key(nnx.Rngs(0)) and is_key(jax.random.key(0))
    x = random_inputs(2, 4, 3)
    for native in (False, None):
        layer = jrnn.LSTM(4, 3, dropout=0.3, native=native, rngs=nnx.Rngs(1))
        eager = layer(x, training=True, rngs=nnx.Rngs(5))
        jitted = nnx.jit(lambda m, x, r: m(x, training=True, rngs=r))(layer, x, nnx.Rngs(5))
        np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-6)
