"""importers: Keras weights and gate layouts into jrnn (and back).

So far: :mod:`importers.layouts` — every gate-layout conversion on bare NumPy arrays
(Keras 2 CuDNN, Keras 1 per-gate, PyTorch, Flax) — and :func:`load_weights`, which loads
Keras 3 ``.keras``/``.weights.h5`` and legacy ``.h5`` weights into jrnn modules you
built. Rebuilding whole models from their config is the open part of the importers issue.
"""

from importers import layouts as layouts
from importers.model import load as load
from importers.weights import keras_params as keras_params
from importers.weights import load_weights as load_weights

__all__ = ["keras_params", "layouts", "load", "load_weights"]
