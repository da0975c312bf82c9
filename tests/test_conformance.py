"""One conformance suite, parametrised over every jrnn recurrent layer (STYLE.md rule 9).

For each layer: the scan equals a Python loop over the cell's Flax-protocol call; jit
equals eager; a second call does not recompile; gradients pass ``check_grads`` in
float64; time=1 and batch=1 work; go_backwards equals reversing the inputs; bfloat16 runs.
New layers join by adding a factory to ``FACTORIES``.
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

B, T, F = 2, 5, 3


def _stack(rngs, **kw):
    cells = [
        jrnn.LSTMCell(4, F, rngs=rngs, **kw),
        jrnn.GRUCell(3, 4, reset_after=False, rngs=rngs, **kw),
    ]
    return cells


# factory(rngs, **kwargs) -> layer with return_sequences=True; kwargs: go_backwards, dtype
FACTORIES = {
    "SimpleRNN": lambda rngs, dtype=None, **kw: jrnn.SimpleRNN(
        4, F, return_sequences=True, dtype=dtype, rngs=rngs, **kw
    ),
    "GRU": lambda rngs, dtype=None, **kw: jrnn.GRU(
        4, F, return_sequences=True, dtype=dtype, rngs=rngs, **kw
    ),
    "GRU_reset_before": lambda rngs, dtype=None, **kw: jrnn.GRU(
        4, F, reset_after=False, return_sequences=True, dtype=dtype, rngs=rngs, **kw
    ),
    "LSTM": lambda rngs, dtype=None, **kw: jrnn.LSTM(
        4, F, return_sequences=True, dtype=dtype, rngs=rngs, **kw
    ),
    # LSTM runs on the native CPU kernel where it applies; this keeps the XLA scan covered.
    "LSTM_scan": lambda rngs, dtype=None, **kw: jrnn.LSTM(
        4, F, return_sequences=True, native=False, dtype=dtype, rngs=rngs, **kw
    ),
    "CuDNNLSTM": lambda rngs, dtype=None, **kw: jrnn.CuDNNLSTM(
        4, F, return_sequences=True, dtype=dtype, rngs=rngs, **kw
    ),
    "CuDNNGRU": lambda rngs, dtype=None, **kw: jrnn.CuDNNGRU(
        4, F, return_sequences=True, dtype=dtype, rngs=rngs, **kw
    ),
    "IndRNN": lambda rngs, dtype=None, **kw: jrnn.IndRNN(
        4, F, activation="tanh", return_sequences=True, dtype=dtype, rngs=rngs, **kw
    ),
    "RNN_stack": lambda rngs, dtype=None, **kw: jrnn.RNN(
        _stack(rngs, dtype=dtype), return_sequences=True, **kw
    ),
}


def _inputs(batch=B, time=T, seed=0, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((batch, time, F)), dtype)


def _make(name, seed=0, **kw):
    layer = FACTORIES[name](nnx.Rngs(seed), **kw)
    randomize(layer, seed)
    return layer


@pytest.mark.parametrize("name", list(FACTORIES))
def test_scan_equals_python_loop_over_cell(name):
    layer = _make(name)
    x = _inputs()
    carry = layer.cell.initialize_carry((B, F))
    ys = []
    for t in range(T):
        carry, y = layer.cell(carry, x[:, t])
        ys.append(y)
    assert_close(layer(x), jnp.stack(ys, 1))


@pytest.mark.parametrize("name", list(FACTORIES))
def test_jit_equals_eager_and_no_recompile(name):
    layer = _make(name)
    x = _inputs()
    traces = []

    @nnx.jit
    def apply(model, x):
        traces.append(1)
        return model(x)

    assert_close(apply(layer, x), layer(x))
    apply(layer, _inputs(seed=1))
    assert len(traces) == 1, "second call with the same shapes retraced"


def test_float64_without_x64_is_refused():
    """JAX without its 64-bit mode makes float32 of every float64 request (a warning per
    array at most): a float64 layer would silently compute in float32."""
    with pytest.raises(ValueError, match=r"LSTMCell.*float64 needs JAX's 64-bit mode"):
        jrnn.LSTM(3, 2, dtype="float64", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"64-bit mode"):
        jrnn.GRU(3, 2, param_dtype="float64", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("name", list(FACTORIES))
def test_gradients_check_grads_float64(name):
    with jax.enable_x64(True):
        layer = _make(name, dtype="float64")
        graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
        x = _inputs(dtype=jnp.float64)

        def f(params, x):
            return nnx.merge(graphdef, params, rest)(x)

        check_grads(f, (params, x), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("batch,time", [(1, T), (B, 1), (1, 1)])
def test_batch_one_and_time_one(name, batch, time):
    layer = _make(name)
    y = layer(_inputs(batch, time))
    assert y.shape[:2] == (batch, time)
    assert bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize("name", list(FACTORIES))
def test_go_backwards_equals_reversed_inputs(name):
    fwd = _make(name)
    bwd = _make(name, go_backwards=True)
    x = _inputs()
    assert_close(bwd(x), fwd(x[:, ::-1]))


@pytest.mark.parametrize("name", list(FACTORIES))
def test_bfloat16_runs(name):
    layer = _make(name, dtype="bfloat16")
    y = layer(_inputs())
    assert y.dtype == jnp.bfloat16
    assert_close(y, _make(name)(_inputs()), dtype="bfloat16")


def test_every_public_class_shows_its_constructor_signature():
    """``help(jrnn.LSTM)`` and ``inspect.signature`` showed flax's ``(*args, **kwargs)``
    for every layer and cell; an instance's signature stays its call's."""
    import inspect

    classes = [
        value
        for value in vars(jrnn).values()
        if isinstance(value, type) and issubclass(value, nnx.Module)
    ]
    assert len(classes) > 40
    for cls in classes:
        expected = list(inspect.signature(cls.__init__).parameters)[1:]
        assert list(inspect.signature(cls).parameters) == expected, cls.__name__
    layer = jrnn.GRU(3, 2, rngs=nnx.Rngs(0))
    assert "mask" in inspect.signature(layer).parameters
    assert "units" in inspect.signature(jrnn.GRU).parameters
