"""jrnn: every Keras recurrent layer and cell in JAX/Flax NNX, on ``jax.lax.scan``.

Parameters live in Keras' layout under Keras' names, calls mirror Keras, and
parity tests prove the numbers equal Keras'. ``import jrnn`` never imports
TensorFlow or Keras.
"""

from jrnn import activations as activations
from jrnn import constraints as constraints
from jrnn import initializers as initializers
from jrnn import inspect as inspect
from jrnn import native as native
from jrnn import plot as plot
from jrnn import regularizers as regularizers
from jrnn import training as training
from jrnn import utils as utils
from jrnn._dtypes import DTypePolicy as DTypePolicy
from jrnn.cells import ConvLSTMCell as ConvLSTMCell
from jrnn.cells import CuDNNGRUCell as CuDNNGRUCell
from jrnn.cells import CuDNNLSTMCell as CuDNNLSTMCell
from jrnn.cells import GRUCell as GRUCell
from jrnn.cells import IndRNNCell as IndRNNCell
from jrnn.cells import LSTMCell as LSTMCell
from jrnn.cells import RNNCellBase as RNNCellBase
from jrnn.cells import SimpleRNNCell as SimpleRNNCell
from jrnn.cells import StackedRNNCells as StackedRNNCells
from jrnn.layers import ELU as ELU
from jrnn.layers import GRU as GRU
from jrnn.layers import LSTM as LSTM
from jrnn.layers import Activation as Activation
from jrnn.layers import ActivityRegularization as ActivityRegularization
from jrnn.layers import Add as Add
from jrnn.layers import AdditiveAttention as AdditiveAttention
from jrnn.layers import Attention as Attention
from jrnn.layers import Average as Average
from jrnn.layers import AveragePooling1D as AveragePooling1D
from jrnn.layers import AveragePooling2D as AveragePooling2D
from jrnn.layers import AveragePooling3D as AveragePooling3D
from jrnn.layers import BatchNormalization as BatchNormalization
from jrnn.layers import Bidirectional as Bidirectional
from jrnn.layers import Concatenate as Concatenate
from jrnn.layers import Conv1D as Conv1D
from jrnn.layers import Conv2D as Conv2D
from jrnn.layers import Conv3D as Conv3D
from jrnn.layers import ConvLSTM as ConvLSTM
from jrnn.layers import ConvLSTM1D as ConvLSTM1D
from jrnn.layers import ConvLSTM2D as ConvLSTM2D
from jrnn.layers import ConvLSTM3D as ConvLSTM3D
from jrnn.layers import Cropping1D as Cropping1D
from jrnn.layers import Cropping2D as Cropping2D
from jrnn.layers import Cropping3D as Cropping3D
from jrnn.layers import CuDNNGRU as CuDNNGRU
from jrnn.layers import CuDNNLSTM as CuDNNLSTM
from jrnn.layers import Dense as Dense
from jrnn.layers import Dropout as Dropout
from jrnn.layers import Embedding as Embedding
from jrnn.layers import Flatten as Flatten
from jrnn.layers import GaussianDropout as GaussianDropout
from jrnn.layers import GaussianNoise as GaussianNoise
from jrnn.layers import GlobalAveragePooling1D as GlobalAveragePooling1D
from jrnn.layers import GlobalAveragePooling2D as GlobalAveragePooling2D
from jrnn.layers import GlobalAveragePooling3D as GlobalAveragePooling3D
from jrnn.layers import GlobalMaxPooling1D as GlobalMaxPooling1D
from jrnn.layers import GlobalMaxPooling2D as GlobalMaxPooling2D
from jrnn.layers import GlobalMaxPooling3D as GlobalMaxPooling3D
from jrnn.layers import Identity as Identity
from jrnn.layers import IndRNN as IndRNN
from jrnn.layers import LayerNormalization as LayerNormalization
from jrnn.layers import LeakyReLU as LeakyReLU
from jrnn.layers import Masking as Masking
from jrnn.layers import Maximum as Maximum
from jrnn.layers import MaxPooling1D as MaxPooling1D
from jrnn.layers import MaxPooling2D as MaxPooling2D
from jrnn.layers import MaxPooling3D as MaxPooling3D
from jrnn.layers import Minimum as Minimum
from jrnn.layers import Multiply as Multiply
from jrnn.layers import Permute as Permute
from jrnn.layers import PReLU as PReLU
from jrnn.layers import ReLU as ReLU
from jrnn.layers import RepeatVector as RepeatVector
from jrnn.layers import Reshape as Reshape
from jrnn.layers import SimpleRNN as SimpleRNN
from jrnn.layers import Softmax as Softmax
from jrnn.layers import SpatialDropout1D as SpatialDropout1D
from jrnn.layers import Subtract as Subtract
from jrnn.layers import TimeDistributed as TimeDistributed
from jrnn.layers import UpSampling1D as UpSampling1D
from jrnn.layers import UpSampling2D as UpSampling2D
from jrnn.layers import UpSampling3D as UpSampling3D
from jrnn.layers import ZeroPadding1D as ZeroPadding1D
from jrnn.layers import ZeroPadding2D as ZeroPadding2D
from jrnn.layers import ZeroPadding3D as ZeroPadding3D
from jrnn.rnn import RNN as RNN
from jrnn.rnn import RNNResult as RNNResult
from jrnn.rnn import RNNState as RNNState
from jrnn.rnn import rnn_scan as rnn_scan
from jrnn.training import apply_constraints as apply_constraints
from jrnn.training import regularization_loss as regularization_loss

__version__ = "0.1.0"


class _ConstructorSignature:
    """A layer class's signature as its ``__init__``'s (``help(jrnn.LSTM)``,
    ``inspect.signature``): flax's module metaclass otherwise shows ``(*args, **kwargs)``.
    Classes only: an instance's signature stays its ``__call__``'s."""

    def __get__(self, instance, owner):
        if instance is not None:
            raise AttributeError("__signature__")
        import inspect as _inspect

        signature = _inspect.signature(owner.__init__)
        return signature.replace(parameters=list(signature.parameters.values())[1:])


def _sign_classes() -> None:
    from flax import nnx

    for value in list(globals().values()):
        if isinstance(value, type) and issubclass(value, nnx.Module):
            value.__signature__ = _ConstructorSignature()


_sign_classes()


def load(source, **options):
    """Load a Keras model (``.keras``, ``.h5``, live model) or a jrnn checkpoint directory.

    The same as :func:`importers.load` (imported lazily; TensorFlow is never imported for
    files); ``options`` are its keyword arguments (``custom_layers={"ClassName":
    factory}``).
    """
    from importers import load as _load

    return _load(source, **options)


__all__ = [
    "ELU",
    "GRU",
    "LSTM",
    "RNN",
    "Activation",
    "ActivityRegularization",
    "Add",
    "AdditiveAttention",
    "Attention",
    "Average",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "BatchNormalization",
    "Bidirectional",
    "Concatenate",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "ConvLSTM",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "ConvLSTMCell",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "CuDNNGRU",
    "CuDNNGRUCell",
    "CuDNNLSTM",
    "CuDNNLSTMCell",
    "DTypePolicy",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
    "GRUCell",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "Identity",
    "IndRNN",
    "IndRNNCell",
    "LSTMCell",
    "LayerNormalization",
    "LeakyReLU",
    "Masking",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "Maximum",
    "Minimum",
    "Multiply",
    "PReLU",
    "Permute",
    "RNNCellBase",
    "RNNResult",
    "RNNState",
    "ReLU",
    "RepeatVector",
    "Reshape",
    "SimpleRNN",
    "SimpleRNNCell",
    "Softmax",
    "SpatialDropout1D",
    "StackedRNNCells",
    "Subtract",
    "TimeDistributed",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "activations",
    "apply_constraints",
    "constraints",
    "initializers",
    "inspect",
    "load",
    "plot",
    "regularization_loss",
    "regularizers",
    "rnn_scan",
    "training",
    "utils",
]
