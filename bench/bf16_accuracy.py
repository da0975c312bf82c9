"""How far bfloat16 runs are from float32: ``python -m bench.bf16_accuracy``.

For LSTM, GRU and SimpleRNN layers at a few shapes (random weights of scale
min(0.5, 2/sqrt(in + units))),
prints the max abs error of the outputs and the max gradient error (relative to the
largest float32 gradient) against the float32 layer on the same weights, for

* ``kernel``: ``dtype="bfloat16"`` on the native kernels (float32 accumulation, gate maths
  and LSTM cell state; ``h`` rounded once per step);
* ``scan``: ``dtype="bfloat16"`` on the XLA scan (every operation rounded, as Keras does);

and ``kernel vs rounded``: the bfloat16 kernels against the float32 kernels run on the
same bfloat16-rounded weights, inputs and states (the error the kernels add to the
unavoidable rounding of their inputs).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jrnn
from jrnn import native

SHAPES = [
    (13, 9, 5, 20),
    (1, 7, 3, 5),
    (1, 6, 64, 256),
    (64, 4, 16, 33),
    (7, 1, 3, 4),
    (16, 100, 32, 64),
]
LAYERS = {"lstm": jrnn.LSTM, "gru": jrnn.GRU, "simple_rnn": jrnn.SimpleRNN}


def _randomize(module: nnx.Module, scale: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for _, param in nnx.iter_graph(module):
        if isinstance(param, nnx.Param):
            v = rng.standard_normal(param.shape) * scale
            param.set_value(jnp.asarray(v, param.get_value().dtype))


def _errors(made: dict, x) -> dict[str, tuple[float, float]]:
    def loss(m):
        return jnp.sum(jnp.sin(m(x).astype(jnp.float32)))

    ref_y = made["float32"](x)
    ref_g = jax.tree_util.tree_leaves(nnx.grad(loss)(made["float32"]))
    out = {}
    for key in ("kernel", "scan"):
        y_err = float(jnp.max(jnp.abs(made[key](x).astype(jnp.float32) - ref_y)))
        grads = jax.tree_util.tree_leaves(nnx.grad(loss)(made[key]))
        g_err = max(
            float(
                jnp.max(jnp.abs(a.astype(jnp.float32) - b)) / max(1.0, float(jnp.max(jnp.abs(b))))
            )
            for a, b in zip(grads, ref_g)
        )
        out[key] = (y_err, g_err)
    # The kernels on rounded values: the same layers with float32 weights that are the
    # bfloat16 ones, and rounded inputs.
    rounded = made["rounded"]
    xr = x.astype(jnp.bfloat16).astype(jnp.float32)
    y_err = float(jnp.max(jnp.abs(made["kernel"](x).astype(jnp.float32) - rounded(xr))))
    out["kernel vs rounded"] = (y_err, float("nan"))
    return out


def main() -> int:
    if not native.available(jnp.bfloat16):
        print(f"bfloat16 kernels unavailable: {native.unavailable_reason(jnp.bfloat16)}")
        return 1
    worst: dict[str, list[float]] = {}
    for name, layer in LAYERS.items():
        for batch, time, features, units in SHAPES:
            scale = min(0.5, 2.0 / np.sqrt(features + units))
            made = {}
            for key, kw in {
                "float32": dict(native=False),
                "kernel": dict(dtype="bfloat16", native=True),
                "scan": dict(dtype="bfloat16", native=False),
                "rounded": dict(native=True),
            }.items():
                made[key] = layer(units, features, return_sequences=True, rngs=nnx.Rngs(0), **kw)
                _randomize(made[key], scale)
            for _, param in nnx.iter_graph(made["rounded"]):
                if isinstance(param, nnx.Param):
                    v = param.get_value()
                    param.set_value(v.astype(jnp.bfloat16).astype(jnp.float32))
            x = jnp.asarray(
                np.random.default_rng(1).standard_normal((batch, time, features)), jnp.float32
            )
            errs = _errors(made, x)
            print(
                f"{name:10s} {(batch, time, features, units)!s:18s} "
                + ", ".join(
                    f"{k}: y {y:.4f}" + ("" if g != g else f" grad {g:.4f}")
                    for k, (y, g) in errs.items()
                )
            )
            for k, (y, g) in errs.items():
                w = worst.setdefault(k, [0.0, 0.0])
                w[0] = max(w[0], y)
                w[1] = max(w[1], g) if g == g else w[1]
    print(
        "worst: "
        + ", ".join(
            f"{k}: y {y:.4f}" + ("" if k == "kernel vs rounded" else f" grad {g:.4f}")
            for k, (y, g) in worst.items()
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
