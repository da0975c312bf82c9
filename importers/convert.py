"""One converter per Keras class: ``CONVERTERS[class_name](config, arrays, in_shape) -> module``.

Layouts: arrays come in Keras ``get_weights()`` order and Keras layout (Dense ``kernel (in,
out), bias``; Embedding ``embeddings (vocab, dim)``; SimpleRNN/GRU/LSTM ``kernel (in, G*units),
recurrent_kernel (units, G*units), bias`` with Keras gate order i,f,c,o / z,r,h).
``in_shape`` is the input shape without batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

import jrnn
from jrnn.layers import core

_RNN_KEYS = (
    "activation",
    "recurrent_activation",
    "use_bias",
    "return_sequences",
    "return_state",
    "go_backwards",
    "unroll",
    "unit_forget_bias",
    "reset_after",
)


def _assign(params: list, arrays: list) -> None:
    for p, a in zip(params, arrays, strict=True):
        if tuple(p[...].shape) != tuple(np.shape(a)):
            raise ValueError(f"weight shape {np.shape(a)} != expected {p[...].shape}")
        p[...] = jnp.asarray(a, dtype=p[...].dtype)


def _rnn(cls):
    def convert(config, arrays, in_shape):
        kw = {k: config[k] for k in _RNN_KEYS if k in config}
        if cls is not jrnn.GRU:
            kw.pop("reset_after", None)
        if cls is not jrnn.LSTM:
            kw.pop("unit_forget_bias", None)
        if cls is jrnn.SimpleRNN:
            kw.pop("recurrent_activation", None)
        layer = cls(config["units"], in_shape[-1], name=config.get("name"), rngs=nnx.Rngs(0), **kw)
        c = layer.cell
        _assign([c.kernel, c.recurrent_kernel] + ([c.bias] if c.bias is not None else []), arrays)
        return layer

    return convert


def _dense(config, arrays, in_shape):
    m = core.Dense(
        config["units"],
        in_shape[-1],
        activation=config.get("activation"),
        use_bias=config.get("use_bias", True),
        name=config.get("name"),
        rngs=nnx.Rngs(0),
    )
    _assign([m.kernel] + ([m.bias] if m.bias is not None else []), arrays)
    return m


def _embedding(config, arrays, in_shape):
    m = core.Embedding(
        config["input_dim"],
        config["output_dim"],
        mask_zero=config.get("mask_zero", False),
        name=config.get("name"),
        rngs=nnx.Rngs(0),
    )
    _assign([m.embeddings], arrays)
    return m


def _inner(layer_cfg: dict, arrays: list):
    cls = layer_cfg["class_name"]
    if cls not in CONVERTERS:
        raise ValueError(f"wrapped layer class {cls!r} has no jrnn converter")
    return CONVERTERS[cls](layer_cfg["config"], arrays, (arrays[0].shape[0],) if arrays else ())


def _bidirectional(config, arrays, in_shape):
    """Keras order: forward weights then backward weights (equal halves)."""
    half = len(arrays) // 2
    fwd = _inner(config["layer"], arrays[:half])
    bcfg = config.get("backward_layer")
    if bcfg is None:
        inner = dict(config["layer"]["config"])
        inner["go_backwards"] = not inner.get("go_backwards", False)
        inner["name"] = "backward_" + str(inner.get("name"))
        bcfg = {"class_name": config["layer"]["class_name"], "config": inner}
    bwd = _inner(bcfg, arrays[half:])
    return jrnn.Bidirectional(fwd, config.get("merge_mode", "concat"), bwd, name=config.get("name"))


def _time_distributed(config, arrays, in_shape):
    return jrnn.TimeDistributed(_inner(config["layer"], arrays), name=config.get("name"))


CONVERTERS: dict[str, Callable[[dict, list, Any], nnx.Module]] = {
    "SimpleRNN": _rnn(jrnn.SimpleRNN),
    "GRU": _rnn(jrnn.GRU),
    "LSTM": _rnn(jrnn.LSTM),
    "Dense": _dense,
    "Bidirectional": _bidirectional,
    "TimeDistributed": _time_distributed,
    "Embedding": _embedding,
    "Masking": lambda c, a, s: core.Masking(c.get("mask_value", 0.0), name=c.get("name")),
    "Activation": lambda c, a, s: core.Activation(c["activation"], name=c.get("name")),
    "Dropout": lambda c, a, s: core.Dropout(c.get("rate", 0.0), name=c.get("name")),
    "Concatenate": lambda c, a, s: core.Concatenate(c.get("axis", -1), name=c.get("name")),
}

from importers._convert_core import CORE_CONVERTERS  # noqa: E402

CONVERTERS.update(CORE_CONVERTERS)
