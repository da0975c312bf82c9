"""jrnn layers and imported models under JAX transformations and deployment paths:
``jax.export`` (concrete and symbolic shapes, several platforms), per-example gradients,
ensembles, forward-mode derivatives and the eager-call cache."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import export

import jrnn

P = export.symbolic_shape


def _flat(module):
    """``(graphdef, flat weights, treedef)``: an exported function takes plain arrays."""
    graphdef, state = nnx.split(module)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    return graphdef, leaves, treedef


def _exported(module, *specs, platforms=None, call=lambda m, *a: m(*a)):
    """``(Exported, its deserialized copy's call, the direct call)`` of ``call(module,
    *args)`` exported for arguments of ``specs``."""
    graphdef, leaves, treedef = _flat(module)

    def forward(weights, *args):
        return call(nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, weights)), *args)

    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves]
    kwargs = {} if platforms is None else {"platforms": platforms}
    exp = export.export(jax.jit(forward), **kwargs)(shapes, *specs)
    back = export.deserialize(exp.serialize())
    return exp, (lambda *a: back.call(leaves, *a)), (lambda *a: forward(leaves, *a))


def _inputs(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


_SYMBOLIC_LAYERS = {
    "LSTM": lambda: jrnn.LSTM(5, 3, return_sequences=True, rngs=nnx.Rngs(0)),
    "GRU backwards": lambda: jrnn.GRU(5, 3, go_backwards=True, rngs=nnx.Rngs(0)),
    "SimpleRNN": lambda: jrnn.SimpleRNN(5, 3, return_sequences=True, rngs=nnx.Rngs(0)),
    "LSTM remat": lambda: jrnn.LSTM(5, 3, return_sequences=True, remat=True, rngs=nnx.Rngs(0)),
    "LSTM unroll=3": lambda: jrnn.LSTM(5, 3, unroll=3, rngs=nnx.Rngs(0)),
    "LSTM unroll=True": lambda: jrnn.LSTM(5, 3, unroll=True, rngs=nnx.Rngs(0)),
    "IndRNN clipped": lambda: jrnn.IndRNN(5, 3, return_sequences=True, rngs=nnx.Rngs(0)),
    "Bidirectional": lambda: jrnn.Bidirectional(
        jrnn.LSTM(5, 3, return_sequences=True, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1)
    ),
}


@pytest.mark.parametrize("name", sorted(_SYMBOLIC_LAYERS))
def test_export_symbolic_batch_and_time(name):
    """A layer exported for ``(b, t, 3)`` inputs runs other batch sizes and lengths as the
    direct call (which runs the native kernels where they apply). Before, the cells refused
    a symbolic batch ('`input_shape` must be the batch size'), the native blocker compared
    't >= 2', remat cut a symbolic time into segments, and IndRNN's clip took int(t)."""
    layer = _SYMBOLIC_LAYERS[name]()
    exp, exported, direct = _exported(layer, jax.ShapeDtypeStruct(P("b, t, 3"), jnp.float32))
    assert "custom_call @jrnn" not in exp.mlir_module()
    for shape in [(2, 9, 3), (3, 4, 3), (1, 1, 3)]:
        x = _inputs(shape)
        np.testing.assert_allclose(exported(x), direct(x), atol=2e-6, rtol=0)


def test_export_symbolic_mask_and_frames():
    """Masks with a symbolic time, and ConvLSTM2D with symbolic frame sizes."""
    layer = jrnn.GRU(4, 3, return_sequences=True, rngs=nnx.Rngs(0))
    spec = P("b, t, 3")
    _, exported, direct = _exported(
        layer,
        jax.ShapeDtypeStruct(spec, jnp.float32),
        jax.ShapeDtypeStruct(spec[:2], jnp.bool_),
        call=lambda m, x, mask: m(x, mask=mask),
    )
    x = _inputs((3, 6, 3))
    mask = jnp.asarray(np.random.default_rng(1).random((3, 6)) > 0.3)
    np.testing.assert_allclose(exported(x, mask), direct(x, mask), atol=2e-6, rtol=0)

    conv = jrnn.ConvLSTM2D(2, 3, in_channels=2, padding="same", rngs=nnx.Rngs(0))
    _, exported, direct = _exported(conv, jax.ShapeDtypeStruct(P("b, t, h, w, 2"), jnp.float32))
    x = _inputs((2, 3, 5, 6, 2))
    np.testing.assert_allclose(exported(x), direct(x), atol=2e-6, rtol=0)
