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
        "Bidirectional_stack": jrnn.Bidirectional(
            jrnn.RNN(
                [jrnn.LSTMCell(4, 3, rngs=rngs), jrnn.GRUCell(2, 4, rngs=rngs)],
                return_sequences=True,
            ),
            rngs=rngs,
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
    if name not in ("Bidirectional", "stack", "Bidirectional_stack"):
        acts = inspect.get_activations(layer, x)
        gate = "f" if "f" in acts else "z" if "z" in acts else "h"
        path = tmp_path / "gate.png"
        _png_ok(path, plot.gate_heatmap(acts, gate, savepath=str(path)))
        path = tmp_path / "flow.png"
        norms = {name: inspect.gradients_over_time(layer, x)}
        _png_ok(path, plot.gradient_flow(norms, savepath=str(path)))


def _axes_images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def test_cudnn_bias_heatmap_shows_input_and_recurrent_rows():
    """CuDNN layers store (8u,) biases: input i, f, c, o then recurrent i, f, c, o; the
    heatmap draws them as two rows under the gate labels, as it does for GRU reset_after."""
    layer = jrnn.CuDNNLSTM(4, 3, rngs=nnx.Rngs(0))
    fig = plot.rnn_heatmap(layer)
    (bias_ax,) = [ax for ax in fig.axes if ax.get_title() == "BIAS"]
    assert bias_ax.get_images()[0].get_array().shape == (2, 16)
    assert [t.get_text() for t in bias_ax.get_yticklabels()] == ["input", "recurrent"]
    assert [t.get_text() for t in bias_ax.get_xticklabels()] == [
        "INPUT", "FORGET", "CELL", "OUTPUT"
    ]  # fmt: skip
    plt.close(fig)


def test_feature_plots_read_their_axes_and_ranges():
    data = np.random.default_rng(0).standard_normal((2, 10, 3)).astype(np.float32)
    fig = plot.features_1D(data[0])  # (timesteps, channels): one plot, a curve per channel
    (ax,) = fig.axes
    assert len(ax.lines) == 3 + 1 and len(ax.lines[0].get_xdata()) == 10  # + the zero line
    plt.close(fig)
    fig = plot.features_2D(data[0], norm=(-5, 5))  # one sample: one image, given range
    (image,) = _axes_images(fig)
    assert image.get_array().shape == (3, 10) and image.get_clim() == (-5, 5)
    plt.close(fig)
    with pytest.raises(ValueError, match=r"features_1D: `data` must be .*received shape"):
        plot.features_1D(np.zeros((2, 3, 4, 4, 5)))
    with pytest.raises(ValueError, match=r"features_2D: `norm` must be 'auto', None or"):
        plot.features_2D(data, norm="symmetric")
    with pytest.raises(ValueError, match=r"rnn_heatmap: `norm` must be 'auto', None or"):
        plot.rnn_heatmap(_layers()["LSTM"], norm="symmetric")


def test_gate_heatmap_ranges_labels_and_errors():
    layer = jrnn.LSTM(4, 3, rngs=nnx.Rngs(0))
    acts = inspect.get_activations(layer, np.ones((2, 5, 3), np.float32))
    fig = plot.gate_heatmap(acts, "FORGET")  # see-rnn's label for "f"; a sigmoid gate: 0..1
    assert _axes_images(fig)[0].get_clim() == (0.0, 1.0)
    plt.close(fig)
    fig = plot.gate_heatmap(acts, "c")  # the cell state goes negative: a symmetric range
    low, high = _axes_images(fig)[0].get_clim()
    assert low == -high and high >= float(np.abs(acts["c"][0]).max())
    plt.close(fig)
    with pytest.raises(ValueError, match=r"`gate` must be one of \['c', 'c_tilde', 'f'"):
        plot.gate_heatmap(acts, "forget")
    bi = jrnn.Bidirectional(jrnn.LSTM(4, 3, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"pick acts\['forward'\]"):
        plot.gate_heatmap(inspect.get_activations(bi, np.ones((2, 5, 3), np.float32)))


def test_histogram_annotates_inf_in_the_bias():
    layer = jrnn.LSTM(4, 3, rngs=nnx.Rngs(0))
    layer.cell.bias.set_value(layer.cell.bias[...].at[0].set(np.inf))
    fig = plot.rnn_histogram(layer)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("Inf" in t for t in texts)
    assert max(abs(x) for ax in fig.axes if ax.axison for x in ax.get_xlim()) < 1e6
    plt.close(fig)
