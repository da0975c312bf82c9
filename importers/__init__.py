"""importers: Keras models, weights and gate layouts into jrnn, and back.

* :func:`load` rebuilds a whole Keras model (``.keras``, legacy ``.h5`` of Keras 1/2/3 and
  tf.keras, a live ``keras.Model``, or a jrnn checkpoint directory) as one ``nnx.Module``.
* :func:`load_weights` loads a weights file into jrnn modules you built.
* :func:`save_keras` / :func:`save_weights` write a model back for Keras 3;
  :func:`keras_sequential` makes one from jrnn layers assembled by hand.
* :func:`read_keras_file` reads any Keras file into NumPy arrays safely (bounded reads,
  no pickle, no code), the single reader behind both.
* :mod:`importers.layouts`: every gate-layout conversion on bare arrays (Keras 2 CuDNN,
  Keras 1 per-gate, PyTorch, Flax, TF1), both ways.
* :mod:`importers.legacy`: Keras 1 configs/weights and Theano kernels as Keras 2 reads them.
* :mod:`importers.errors`: the exceptions, all :class:`~importers.errors.KerasFileError`
  (a ``ValueError``).

Only h5py, json, zipfile and NumPy are used for files; Keras is imported only when a live
Keras model is passed.
"""

from importers import checkpoint as checkpoint
from importers import errors as errors
from importers import export as export
from importers import layouts as layouts
from importers import legacy as legacy
from importers._files import KerasFile as KerasFile
from importers._files import read_keras_file as read_keras_file
from importers._from_jrnn import keras_sequential as keras_sequential
from importers.checkpoint import load_checkpoint as load_checkpoint
from importers.checkpoint import restore_optimizer as restore_optimizer
from importers.checkpoint import save_checkpoint as save_checkpoint
from importers.export import save_keras as save_keras
from importers.export import save_weights as save_weights
from importers.model import ImportedModel as ImportedModel
from importers.model import load as load
from importers.weights import keras_params as keras_params
from importers.weights import load_weights as load_weights

__all__ = [
    "ImportedModel",
    "KerasFile",
    "checkpoint",
    "errors",
    "export",
    "keras_params",
    "keras_sequential",
    "layouts",
    "legacy",
    "load",
    "load_checkpoint",
    "load_weights",
    "read_keras_file",
    "restore_optimizer",
    "save_checkpoint",
    "save_keras",
    "save_weights",
]
