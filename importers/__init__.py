"""importers: Keras weights and gate layouts into jrnn (and back).

So far: :mod:`importers.layouts` — every gate-layout conversion on bare NumPy arrays
(Keras 2 CuDNN, Keras 1 per-gate, PyTorch, Flax). Reading whole Keras files is the
open importers issue.
"""

from importers import layouts as layouts

__all__ = ["layouts"]
