"""The ``jrnn`` command (also ``python -m jrnn``).

Subcommands:
  demo   build an LSTM, run it under jit, and compare it with Keras 3 on the same
         weights when Keras is installed (parity figure and timing).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    import jrnn

    batch, steps, features, units = args.batch, args.time, args.features, args.units
    rng = np.random.default_rng(0)
    layer = jrnn.LSTM(units, features, return_sequences=True, return_state=True, rngs=nnx.Rngs(0))
    x = rng.standard_normal((batch, steps, features)).astype(np.float32)
    mask = np.ones((batch, steps), bool)
    mask[0, steps // 2 :] = False  # a padded first sequence

    apply = nnx.jit(lambda m, x, mask: m(x, mask=mask))
    start = time.perf_counter()
    y, h, c = apply(layer, x, mask)
    jax.block_until_ready(y)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(10):
        y, h, c = apply(layer, x, mask)
    jax.block_until_ready(y)
    run_ms = (time.perf_counter() - start) / 10 * 1e3
    print(
        f"jrnn {jrnn.__version__} on {jax.default_backend()}: LSTM(units={units}) on "
        f"inputs {x.shape} with a mask"
    )
    print(f"  output {tuple(y.shape)}, states h {tuple(h.shape)}, c {tuple(c.shape)}")
    print(f"  first call (trace + XLA compile) {compile_s:.2f} s, then {run_ms:.2f} ms per call")

    try:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
    except ImportError:
        print("  Keras is not installed: parity check skipped (pip install 'jrnn[keras]').")
        return 0
    klayer = keras.layers.LSTM(units, return_sequences=True, return_state=True)
    klayer.build((batch, steps, features))
    cell = layer.cell
    klayer.set_weights(
        [
            np.asarray(cell.kernel[...]),
            np.asarray(cell.recurrent_kernel[...]),
            np.asarray(cell.bias[...]),
        ]
    )
    ky, kh, kc = klayer(x, mask=mask)
    errors = [float(jnp.max(jnp.abs(a - np.asarray(b)))) for a, b in ((y, ky), (h, kh), (c, kc))]
    worst = max(errors)
    print(
        f"  Keras {keras.__version__} ({keras.backend.backend()} backend), same weights: "
        f"max |jrnn - Keras| = {worst:.2e} (outputs, h, c; tolerance 1e-5)"
    )
    return 0 if worst <= 1e-5 else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jrnn`` console script."""
    parser = argparse.ArgumentParser(
        prog="jrnn", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run an LSTM and check it against Keras")
    demo.add_argument("--batch", type=int, default=8)
    demo.add_argument("--time", type=int, default=50)
    demo.add_argument("--features", type=int, default=16)
    demo.add_argument("--units", type=int, default=32)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
