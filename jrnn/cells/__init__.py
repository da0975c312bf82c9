"""jrnn cells: one file per cell family, all following :mod:`jrnn.cells.base`'s protocol."""

from jrnn.cells.base import RNNCellBase as RNNCellBase
from jrnn.cells.conv_lstm import ConvLSTMCell as ConvLSTMCell
from jrnn.cells.cudnn import CuDNNGRUCell as CuDNNGRUCell
from jrnn.cells.cudnn import CuDNNLSTMCell as CuDNNLSTMCell
from jrnn.cells.gru import GRUCell as GRUCell
from jrnn.cells.gru import gru_step as gru_step
from jrnn.cells.indrnn import IndRNNCell as IndRNNCell
from jrnn.cells.indrnn import indrnn_step as indrnn_step
from jrnn.cells.lstm import LSTMCell as LSTMCell
from jrnn.cells.lstm import lstm_step as lstm_step
from jrnn.cells.simple import SimpleRNNCell as SimpleRNNCell
from jrnn.cells.simple import simple_rnn_step as simple_rnn_step
from jrnn.cells.stacked import StackedRNNCells as StackedRNNCells

__all__ = [
    "ConvLSTMCell",
    "CuDNNGRUCell",
    "CuDNNLSTMCell",
    "GRUCell",
    "IndRNNCell",
    "LSTMCell",
    "RNNCellBase",
    "SimpleRNNCell",
    "StackedRNNCells",
    "gru_step",
    "indrnn_step",
    "lstm_step",
    "simple_rnn_step",
]
