"""jrnn layers: recurrent layers, wrappers, and the other layers a ported model needs."""

from jrnn.layers.recurrent import GRU as GRU
from jrnn.layers.recurrent import LSTM as LSTM
from jrnn.layers.recurrent import SimpleRNN as SimpleRNN

__all__ = ["GRU", "LSTM", "SimpleRNN"]
