"""jrnn layers: recurrent layers, wrappers, and the other layers a ported model needs."""

from jrnn.layers.attention import AdditiveAttention as AdditiveAttention
from jrnn.layers.attention import Attention as Attention
from jrnn.layers.conv_lstm import ConvLSTM as ConvLSTM
from jrnn.layers.conv_lstm import ConvLSTM1D as ConvLSTM1D
from jrnn.layers.conv_lstm import ConvLSTM2D as ConvLSTM2D
from jrnn.layers.conv_lstm import ConvLSTM3D as ConvLSTM3D
from jrnn.layers.core import ELU as ELU
from jrnn.layers.core import Activation as Activation
from jrnn.layers.core import ActivityRegularization as ActivityRegularization
from jrnn.layers.core import Add as Add
from jrnn.layers.core import Average as Average
from jrnn.layers.core import AveragePooling1D as AveragePooling1D
from jrnn.layers.core import AveragePooling2D as AveragePooling2D
from jrnn.layers.core import AveragePooling3D as AveragePooling3D
from jrnn.layers.core import BatchNormalization as BatchNormalization
from jrnn.layers.core import Concatenate as Concatenate
from jrnn.layers.core import Conv1D as Conv1D
from jrnn.layers.core import Conv2D as Conv2D
from jrnn.layers.core import Conv3D as Conv3D
from jrnn.layers.core import Cropping1D as Cropping1D
from jrnn.layers.core import Cropping2D as Cropping2D
from jrnn.layers.core import Cropping3D as Cropping3D
from jrnn.layers.core import Dense as Dense
from jrnn.layers.core import Dropout as Dropout
from jrnn.layers.core import Embedding as Embedding
from jrnn.layers.core import Flatten as Flatten
from jrnn.layers.core import GaussianDropout as GaussianDropout
from jrnn.layers.core import GaussianNoise as GaussianNoise
from jrnn.layers.core import GlobalAveragePooling1D as GlobalAveragePooling1D
from jrnn.layers.core import GlobalAveragePooling2D as GlobalAveragePooling2D
from jrnn.layers.core import GlobalAveragePooling3D as GlobalAveragePooling3D
from jrnn.layers.core import GlobalMaxPooling1D as GlobalMaxPooling1D
from jrnn.layers.core import GlobalMaxPooling2D as GlobalMaxPooling2D
from jrnn.layers.core import GlobalMaxPooling3D as GlobalMaxPooling3D
from jrnn.layers.core import Identity as Identity
from jrnn.layers.core import LayerNormalization as LayerNormalization
from jrnn.layers.core import LeakyReLU as LeakyReLU
from jrnn.layers.core import Masking as Masking
from jrnn.layers.core import Maximum as Maximum
from jrnn.layers.core import MaxPooling1D as MaxPooling1D
from jrnn.layers.core import MaxPooling2D as MaxPooling2D
from jrnn.layers.core import MaxPooling3D as MaxPooling3D
from jrnn.layers.core import Minimum as Minimum
from jrnn.layers.core import Multiply as Multiply
from jrnn.layers.core import Permute as Permute
from jrnn.layers.core import PReLU as PReLU
from jrnn.layers.core import ReLU as ReLU
from jrnn.layers.core import RepeatVector as RepeatVector
from jrnn.layers.core import Reshape as Reshape
from jrnn.layers.core import Softmax as Softmax
from jrnn.layers.core import SpatialDropout1D as SpatialDropout1D
from jrnn.layers.core import Subtract as Subtract
from jrnn.layers.core import UpSampling1D as UpSampling1D
from jrnn.layers.core import UpSampling2D as UpSampling2D
from jrnn.layers.core import UpSampling3D as UpSampling3D
from jrnn.layers.core import ZeroPadding1D as ZeroPadding1D
from jrnn.layers.core import ZeroPadding2D as ZeroPadding2D
from jrnn.layers.core import ZeroPadding3D as ZeroPadding3D
from jrnn.layers.cudnn import CuDNNGRU as CuDNNGRU
from jrnn.layers.cudnn import CuDNNLSTM as CuDNNLSTM
from jrnn.layers.indrnn import IndRNN as IndRNN
from jrnn.layers.recurrent import GRU as GRU
from jrnn.layers.recurrent import LSTM as LSTM
from jrnn.layers.recurrent import SimpleRNN as SimpleRNN
from jrnn.layers.wrappers import Bidirectional as Bidirectional
from jrnn.layers.wrappers import TimeDistributed as TimeDistributed

__all__ = [
    "ELU",
    "GRU",
    "LSTM",
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
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "CuDNNGRU",
    "CuDNNLSTM",
    "Dense",
    "Dropout",
    "Embedding",
    "Flatten",
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
    "ReLU",
    "RepeatVector",
    "Reshape",
    "SimpleRNN",
    "Softmax",
    "SpatialDropout1D",
    "Subtract",
    "TimeDistributed",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
]
