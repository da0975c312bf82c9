"""Every plot function runs on every recurrent layer family and writes a non-empty PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import jax
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


def test_weight_plots_of_gradients_and_of_given_values():
    """see-rnn's mode='grads' and data=: the heatmap draws exactly the gradients jrnn.inspect
    computes (the model's loss w.r.t. one sub-layer's weights), or the given state."""
    rngs = nnx.Rngs(0)
    seq = nnx.Sequential(
        jrnn.LSTM(4, 3, return_sequences=True, name="enc", rngs=rngs),
        jrnn.GRU(2, 4, name="head", rngs=rngs),
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    y = rng.standard_normal((2, 2)).astype(np.float32)
    fig = plot.rnn_heatmap("enc", model=seq, mode="grads", x=x, y=y)
    grads = inspect.get_gradients(seq, x, y)["layers"][0]["cell"]
    kernel, recurrent = _axes_images(fig)[:2]
    np.testing.assert_array_equal(kernel.get_array(), grads["kernel"][...])
    np.testing.assert_array_equal(recurrent.get_array(), grads["recurrent_kernel"][...])
    assert fig.get_suptitle() == "weight gradients"
    plt.close(fig)
    fig = plot.rnn_histogram(seq.layers[1], mode="grads", x=np.ones((2, 5, 4), np.float32))
    (kernel_update,) = [ax for ax in fig.axes if ax.get_title() == "KERNEL UPDATE"]
    areas = sum(p.get_height() * p.get_width() for p in kernel_update.patches)
    assert areas == pytest.approx(1.0)  # a density, as see-rnn draws
    plt.close(fig)
    saved = jax.tree.map(lambda v: v * 0 + 0.5, nnx.state(seq.layers[1], nnx.Param))
    fig = plot.rnn_heatmap(seq.layers[1], data=saved)
    assert all(np.all(im.get_array() == 0.5) for im in _axes_images(fig))
    plt.close(fig)
    arrays = jax.tree.map(np.ones_like, inspect.get_rnn_weights(seq.layers[0]))  # see-rnn's
    fig = plot.rnn_heatmap("enc", model=seq, data=arrays)
    assert all(np.all(im.get_array() == 1.0) for im in _axes_images(fig))
    plt.close(fig)
    with pytest.raises(ValueError, match=r"`weights\['kernel'\]` must have shape \(3, 16\)"):
        plot.rnn_histogram(seq.layers[0], data={**arrays, "kernel": np.ones((2, 2))})
    with pytest.raises(ValueError, match=r"rnn_heatmap: mode='grads' needs the inputs `x`"):
        plot.rnn_heatmap(seq.layers[0], mode="grads")
    with pytest.raises(ValueError, match=r"rnn_histogram: `mode` must be 'weights' or 'grads'"):
        plot.rnn_histogram(seq.layers[0], mode="gradients")
    with pytest.raises(ValueError, match=r"are for mode='grads'; received them with mode='w"):
        plot.rnn_histogram(seq.layers[0], x=x)
    with pytest.raises(TypeError, match=r"rnn_histogram: `layer` must be a jrnn recurrent"):
        plot.rnn_histogram("enc")  # a name needs model=
    with pytest.raises(TypeError, match=r"rnn_heatmap: unknown keyword argument\(s\) \['show_b"):
        plot.rnn_heatmap(seq.layers[0], show_borders=False)  # see-rnn's; not a call keyword
    with pytest.raises(ValueError, match=r"rnn_heatmap: `data` must be an nnx.State shaped"):
        plot.rnn_heatmap(seq.layers[0], data=saved)  # the GRU's state, not the LSTM's


def test_histogram_equate_axes_per_direction_or_all():
    layer = _layers()["Bidirectional"]
    layer.backward_layer.cell.kernel[...] = 10 * layer.backward_layer.cell.kernel[...]

    def ranges(fig):
        shown = [ax for ax in fig.axes if ax.axison and "BIAS" not in ax.get_title()]
        return {ax.get_title(): ax.get_xlim() for ax in shown}

    fig = plot.rnn_histogram(layer)  # see-rnn's default, 1
    per_block = ranges(fig)
    # One set of bin edges per shared range: bins fitted to one gate's narrow range were
    # invisibly thin on the block's axis (gradients of a gate near zero drew nothing).
    forward = [ax for ax in fig.axes if ax.get_title().startswith("FORWARD LAYER K")]
    assert len({round(p.get_width(), 9) for ax in forward for p in ax.patches}) == 1
    assert per_block["FORWARD LAYER KERNEL INPUT"] == per_block["FORWARD LAYER RECURRENT CELL"]
    low, high = per_block["FORWARD LAYER KERNEL INPUT"]
    assert low == -high  # symmetric, as see-rnn
    assert len({ax.get_ylim() for ax in forward}) == 1  # one y-range per block
    assert per_block["FORWARD LAYER KERNEL INPUT"] != per_block["BACKWARD LAYER KERNEL INPUT"]
    assert len(set(ranges(plot.rnn_histogram(layer, equate_axes=2)).values())) == 1
    assert len(set(ranges(plot.rnn_histogram(layer, equate_axes=0)).values())) > 2
    plt.close("all")
    with pytest.raises(ValueError, match=r"`equate_axes` must be 0, 1 or 2; received 3"):
        plot.rnn_histogram(layer, equate_axes=3)


def test_feature_plot_layouts_from_see_rnn():
    data = np.random.default_rng(0).standard_normal((3, 7, 4))
    fig = plot.features_1D(data, subplot_samples=True, max_timesteps=5)
    shown = [ax for ax in fig.axes if ax.axison]
    assert len(shown) == 3  # one subplot per sample, one curve per channel (+ the zero line)
    assert all(len(ax.lines) == 4 + 1 and len(ax.lines[0].get_xdata()) == 5 for ax in shown)
    plt.close(fig)
    fig = plot.features_2D(data, n_rows=3, reflect_half=True, timesteps_xaxis=False)
    images = _axes_images(fig)
    assert len(images) == 3 and images[0].get_array().shape == (7, 4)  # timesteps down
    expected = np.concatenate([data[0, :, :2], data[0, ::-1, 2:]], axis=-1)
    np.testing.assert_array_equal(images[0].get_array(), expected)
    plt.close(fig)
    with pytest.raises(ValueError, match=r"features_2D: `max_timesteps` must be a positive int"):
        plot.features_2D(data, max_timesteps=0)
    with pytest.raises(ValueError, match=r"features_1D: `share_xy` must be a bool, 'row'"):
        plot.features_1D(data, share_xy="x")


def test_histograms_clip_peaks_and_draw_grids():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.zeros(1000), rng.standard_normal(500), [np.nan]])
    fig = plot.hist_clipped(values, peaks_to_clip=1, bins=50)
    (ax,) = fig.axes
    heights = sorted(p.get_height() for p in ax.patches)
    assert ax.get_ylim()[1] == pytest.approx(heights[-2] * 1.05)  # the zeros' bin is cut
    texts = [t.get_text() for t in ax.texts]
    assert f"{int(heights[-1])})" in texts[-1] and "1 NaN" in texts
    plt.close(fig)
    data = rng.standard_normal((3, 6, 2)) + 1.0
    fig = plot.features_hist(data, center_zero=True, title="outputs per sample")
    assert len(fig.axes) == 3 and all(ax.get_xlim()[0] == -ax.get_xlim()[1] for ax in fig.axes)
    assert sum(p.get_height() for p in fig.axes[0].patches) == 12  # data[0], flattened
    plt.close(fig)
    fig = plot.features_hist_v2(
        [[[data[0], data[1]], [data[2]]], [[data[0]], [data[1], data[2]]]],
        colnames=["epoch 1", "epoch 2"],
        side_annot="layer ",
        ylim=5,
    )
    assert [len(ax.containers) for ax in fig.axes] == [2, 1, 1, 2]  # histograms per cell
    assert [ax.get_title() for ax in fig.axes[:2]] == ["epoch 1", "epoch 2"]
    assert all(ax.get_ylim() == (0, 5) for ax in fig.axes)
    plt.close(fig)
    with pytest.raises(ValueError, match=r"same, non-zero number of cells; .*\[1, 2\]"):
        plot.features_hist_v2([[data], [data, data]])
    with pytest.raises(ValueError, match=r"hist_clipped: `peaks_to_clip` must be an int >= 0"):
        plot.hist_clipped(values, -1)
    with pytest.raises(ValueError, match=r"features_hist: `data` must be an array \(n, ...\)"):
        plot.features_hist(np.float32(1.0))


def test_stacked_heatmap_labels_each_cell_by_its_own_gates():
    rngs = nnx.Rngs(0)
    stack = jrnn.RNN([jrnn.GRUCell(4, 3, rngs=rngs), jrnn.LSTMCell(3, 4, rngs=rngs)])
    fig = plot.rnn_heatmap(stack)
    by_title = {ax.get_title(): ax for ax in fig.axes}
    for title, labels, lines in (
        ("CELL 0 KERNEL", ["UPDATE", "RESET", "NEW"], [3.5, 7.5]),
        ("CELL 1 KERNEL", ["INPUT", "FORGET", "CELL", "OUTPUT"], [2.5, 5.5, 8.5]),
        ("CELL 1 BIAS", ["INPUT", "FORGET", "CELL", "OUTPUT"], [2.5, 5.5, 8.5]),
    ):
        ax = by_title[title]
        assert [t.get_text() for t in ax.get_xticklabels()] == labels, title
        assert [line.get_xdata()[0] for line in ax.lines] == lines, title
    plt.close(fig)


def test_bfloat16_data_render(tmp_path):
    layer = jrnn.GRU(4, 3, return_sequences=True, dtype="bfloat16", rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    acts, y = inspect.get_activations(layer, x), layer(x)
    figures = {
        "heatmap": plot.rnn_heatmap(layer),
        "gate": plot.gate_heatmap(acts, "z"),
        "features_2D": plot.features_2D(y),
        "hist_v2": plot.features_hist_v2([[acts["z"], acts["r"]]]),
        "clipped": plot.hist_clipped(acts["z"]),
    }
    for name, fig in figures.items():
        fig.savefig(tmp_path / f"{name}.png")  # matplotlib cannot reduce or bin bfloat16
        assert all(im.get_array().dtype == np.float32 for im in _axes_images(fig)), name
        plt.close(fig)


def test_features_0D_refuses_other_ranks():
    with pytest.raises(
        ValueError, match=r"features_0D: `data` must be \(samples, channels\); received shape"
    ):
        plot.features_0D(np.zeros((2, 6, 4)))


def test_weight_plots_draw_cudnn_applied_layout_and_both_directions_of_merge_none():
    layer = jrnn.CuDNNGRU(4, 3, rngs=nnx.Rngs(0))
    fig = plot.rnn_heatmap(layer)
    kernel, recurrent = _axes_images(fig)[:2]
    k, rk, _ = layer.cell.keras_equivalent_weights()
    np.testing.assert_array_equal(kernel.get_array(), k)
    np.testing.assert_array_equal(recurrent.get_array(), rk)
    plt.close(fig)
    rngs = nnx.Rngs(0)
    gru = jrnn.GRU(4, 3, return_sequences=True, rngs=rngs)
    bi = jrnn.Bidirectional(gru, merge_mode=None, rngs=rngs)
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    fig = plot.rnn_heatmap(bi, mode="grads", x=x)
    (backward,) = [ax for ax in fig.axes if ax.get_title() == "BACKWARD LAYER KERNEL"]
    assert np.abs(backward.get_images()[0].get_array()).max() > 0  # all 0 before
    plt.close(fig)
    with pytest.raises(TypeError, match=r"rnn_heatmap: `layer` must be a jrnn recurrent layer"):
        plot.rnn_heatmap(jrnn.Dense(2, 3, rngs=rngs), mode="grads", x=x)
    with pytest.raises(ValueError, match=r"rnn_histogram: `x` must be an array"):
        plot.rnn_histogram(layer, mode="grads", x="x")
