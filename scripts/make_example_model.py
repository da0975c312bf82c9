"""Build the bundled example of ``jrnn demo``: ``jrnn/data/example.keras`` and
``jrnn/data/example_reference.npz``.

A small Keras 3 model on a toy task (does a token sequence hold more 1s than 2s?):
``Embedding(mask_zero=True) -> Bidirectional(LSTM, return_sequences) -> GRU -> Dense``,
trained for a few epochs so its weights are not random. The reference file holds the
inputs (padded with 0, so the mask matters) and Keras' outputs on them.

Needs Keras (TensorFlow backend). Deterministic: seeded NumPy/Keras, one CPU thread.

    python scripts/make_example_model.py            # writes jrnn/data/
    python scripts/make_example_model.py --h5       # also a legacy example.h5 (development)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "jrnn" / "data"
VOCAB, STEPS, N_REF = 12, 20, 8


def toy_task(rng, n: int):
    """Padded token sequences (0 = padding) and the label ``count(1) > count(2)``."""
    x = rng.integers(1, VOCAB, size=(n, STEPS)).astype("int32")
    lengths = rng.integers(STEPS // 2, STEPS + 1, size=n)
    for row, length in zip(x, lengths):
        row[length:] = 0
    y = ((x == 1).sum(1) > (x == 2).sum(1)).astype("float32")[:, None]
    return x, y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DATA), help="folder to write (default jrnn/data)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--h5", action="store_true", help="also write a legacy example.h5")
    args = parser.parse_args(argv)

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = toy_task(rng, 2048)
    model = keras.Sequential(
        [
            keras.Input((STEPS,), dtype="int32", name="tokens"),
            keras.layers.Embedding(VOCAB, 8, mask_zero=True, name="embedding"),
            keras.layers.Bidirectional(
                keras.layers.LSTM(16, return_sequences=True, name="lstm"), name="bilstm"
            ),
            keras.layers.GRU(16, name="gru"),
            keras.layers.Dense(1, activation="sigmoid", name="dense"),
        ],
        name="example",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(
        x_train, y_train, epochs=args.epochs, batch_size=64, shuffle=False, verbose=0
    )
    x_ref, _ = toy_task(np.random.default_rng(1), N_REF)
    y_ref = np.asarray(model.predict(x_ref, verbose=0))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "example.keras")
    if args.h5:
        model.save(out / "example.h5")
    np.savez(out / "example_reference.npz", inputs=x_ref, outputs=y_ref)
    acc = history.history["accuracy"][-1]
    print(f"wrote {out / 'example.keras'} and example_reference.npz (train accuracy {acc:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
