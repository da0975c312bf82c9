"""Every plot function runs on every recurrent layer family and writes a non-empty PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from flax import nnx

import jrnn
from jrnn import inspect, plot


def _layers():
    rngs = nnx.Rngs(0)
    return {
        "SimpleRNN": jrnn.SimpleRNN(4, 3, return_sequences=True, rngs=rngs),
        "GRU": jrnn.GRU(4, 3, return_sequences=True, rngs=rngs),
        "LSTM": jrnn.LSTM(4, 3, return_sequences=True, rngs=rngs),
        "CuDNNLSTM": jrnn.CuDNNLSTM(4, 3, return_sequences=True, rngs=rngs),
        "IndRNN": jrnn.IndRNN(4, 3, return_sequences=True, rngs=rngs),
        "ConvLSTM1D": jrnn.ConvLSTM1D(
            4,
            3,
            in_channels=3,
            spatial_shape=(5,),
            padding="same",
            return_sequences=True,
            rngs=rngs,
        ),
        "Bidirectional": jrnn.Bidirectional(
            jrnn.LSTM(4, 3, return_sequences=True, rngs=rngs), rngs=rngs
        ),
        "stack": jrnn.RNN(
            [jrnn.LSTMCell(4, 3, rngs=rngs), jrnn.GRUCell(4, 4, rngs=rngs)], return_sequences=True
        ),
    }


def _png_ok(path, fig):
    import matplotlib.image as mpimg

    assert path.stat().st_size > 1000
    img = mpimg.imread(path)
    w, h = fig.get_size_inches() * fig.dpi
    assert abs(img.shape[1] - w) <= 2 and abs(img.shape[0] - h) <= 2
    plt.close(fig)


@pytest.mark.parametrize("name", list(_layers()))
def test_weight_plots_and_activation_plots(name, tmp_path):
    layer = _layers()[name]
    for fn in (plot.rnn_histogram, plot.rnn_heatmap):
        path = tmp_path / f"{fn.__name__}.png"
        _png_ok(path, fn(layer, savepath=str(path)))
    x = (
        np.random.default_rng(0)
        .standard_normal((2, 6, 5, 3) if name == "ConvLSTM1D" else (2, 6, 3))
        .astype(np.float32)
    )
    out = np.asarray(layer(x)).reshape(2, 6, -1)
    for fn in (plot.features_1D, plot.features_2D):
        path = tmp_path / f"{fn.__name__}.png"
        _png_ok(path, fn(out, savepath=str(path)))
    path = tmp_path / "f0.png"
    _png_ok(path, plot.features_0D(out[:, -1], savepath=str(path)))
    if name not in ("Bidirectional", "stack"):
        acts = inspect.get_activations(layer, x)
        gate = "f" if "f" in acts else "z" if "z" in acts else "h"
        path = tmp_path / "gate.png"
        _png_ok(path, plot.gate_heatmap(acts, gate, savepath=str(path)))
        path = tmp_path / "flow.png"
        norms = {name: inspect.gradients_over_time(layer, x)}
        _png_ok(path, plot.gradient_flow(norms, savepath=str(path)))
