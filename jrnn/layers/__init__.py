"""jrnn layers: recurrent layers, wrappers, and the other layers a ported model needs."""

from jrnn.layers.conv_lstm import ConvLSTM as ConvLSTM
from jrnn.layers.conv_lstm import ConvLSTM1D as ConvLSTM1D
from jrnn.layers.conv_lstm import ConvLSTM2D as ConvLSTM2D
from jrnn.layers.conv_lstm import ConvLSTM3D as ConvLSTM3D
from jrnn.layers.core import Activation as Activation
from jrnn.layers.core import Concatenate as Concatenate
from jrnn.layers.core import Dense as Dense
from jrnn.layers.core import Dropout as Dropout
from jrnn.layers.core import Embedding as Embedding
from jrnn.layers.core import Masking as Masking
from jrnn.layers.cudnn import CuDNNGRU as CuDNNGRU
from jrnn.layers.cudnn import CuDNNLSTM as CuDNNLSTM
from jrnn.layers.indrnn import IndRNN as IndRNN
from jrnn.layers.recurrent import GRU as GRU
from jrnn.layers.recurrent import LSTM as LSTM
from jrnn.layers.recurrent import SimpleRNN as SimpleRNN
from jrnn.layers.wrappers import Bidirectional as Bidirectional
from jrnn.layers.wrappers import TimeDistributed as TimeDistributed

__all__ = [
    "GRU",
    "LSTM",
    "Activation",
    "Bidirectional",
    "Concatenate",
    "ConvLSTM",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "CuDNNGRU",
    "CuDNNLSTM",
    "Dense",
    "Dropout",
    "Embedding",
    "IndRNN",
    "Masking",
    "SimpleRNN",
    "TimeDistributed",
]
