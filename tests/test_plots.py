import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from digitlab.plots import plot_embedding, plot_history, show_images, show_pictures


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("shape", [(7, 28, 28), (7, 1, 28, 28)])
def test_show_images_grid_and_titles(shape):
    X = torch.rand(shape)
    axes = show_images(X, titles=list("abcdefg"), ncols=3)
    assert axes.shape == (3, 3)
    shown = [ax for ax in axes.flat if ax.images]
    assert len(shown) == 7
    assert [ax.get_title() for ax in shown] == list("abcdefg")
    np.testing.assert_allclose(shown[4].images[0].get_array(), X.reshape(7, 28, 28)[4].numpy())


def test_show_images_symmetric_colours_centre_zero():
    W = torch.tensor([[[-1.0, 0.5], [0.2, 0.1]]])
    ax = show_images(W, symmetric=True, cmap="RdBu")[0, 0]
    assert ax.images[0].get_clim() == (-1.0, 1.0)


def test_show_images_rejects_bad_input():
    with pytest.raises(ValueError, match="one title per image"):
        show_images(torch.zeros(3, 28, 28), titles=["a"])
    with pytest.raises(ValueError, match="shaped"):
        show_images(torch.zeros(2, 3, 28, 28))


def test_show_pictures_shows_each_picture_as_it_is():
    gray = np.full((40, 30), 200, dtype=np.uint8)
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    axes = show_pictures([gray, rgb, gray], titles=["a", "b", "c"], ncols=2)
    assert axes.shape == (2, 2) and not axes[1, 1].images
    shown = axes[0, 0].images[0]
    assert shown.get_array().shape == (40, 30) and shown.get_clim() == (0, 255)  # no contrast stretch
    assert axes[0, 1].images[0].get_array().shape == (8, 8, 3) and axes[0, 1].get_title() == "b"
    plt.close("all")


def test_plot_history_draws_train_and_validation():
    history = {"epoch": [1, 2, 3], "train_loss": [0.9, 0.5, 0.3], "val_loss": [0.8, 0.6, 0.5],
               "train_acc": [0.7, 0.8, 0.9], "val_acc": [0.72, 0.79, 0.85]}
    loss_ax, acc_ax = plot_history(history)
    assert [line.get_label() for line in loss_ax.lines] == ["train", "validation"]
    assert list(acc_ax.lines[1].get_ydata()) == history["val_acc"]
    with pytest.raises(ValueError, match="val_acc"):
        plot_history({k: v for k, v in history.items() if k != "val_acc"})


def test_plot_embedding_one_colour_per_class():
    Z = torch.randn(30, 2)
    y = torch.arange(30) % 3
    ax = plot_embedding(Z, y)
    assert len(ax.collections) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        plot_embedding(torch.randn(30, 3), y)


def test_error_analysis_figures():
    from digitlab.analysis import reliability
    from digitlab.plots import plot_confusion, plot_mistakes, plot_reliability, plot_saliency

    cm = torch.tensor([[5, 1], [0, 4]])
    assert plot_confusion(cm).get_xlabel() == "predicted"
    assert plot_confusion(cm, normalize=True).get_ylabel() == "true"
    probs, y = torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([1, 1])
    fig = plot_mistakes(torch.rand(2, 28, 28), probs, y, [0])
    assert fig.axes[0].get_title() == "#0: 1→0 (0.90)"
    rel = reliability(probs, y, 10)
    ax = plot_reliability(rel)  # one bar per non-empty bin, as tall as the bin's accuracy, starting at its edge
    full = rel["count"] > 0
    assert [p.get_height() for p in ax.patches] == pytest.approx(rel["accuracy"][full].tolist())
    assert [p.get_x() for p in ax.patches] == pytest.approx(rel["edges"][:-1][full].tolist())
    axes = plot_saliency(torch.rand(3, 28, 28), {"predicted": torch.rand(3, 28, 28)})
    assert axes.shape == (2, 3)


def test_plot_benchmark_readable_labels_and_a_legend_clear_of_the_data():
    from digitlab.infer_bench import TARGETS
    from digitlab.plots import plot_benchmark

    rows = [{"backend": "eager", "p50_ms": 0.521, "images_per_s": 5459.4},
            {"backend": "fused", "p50_ms": 0.345, "images_per_s": 9279.0},
            {"backend": "onnxruntime", "p50_ms": 0.150, "images_per_s": 15355.2},
            {"backend": "missing", "skipped": "not installed"}]
    latency_ax, throughput_ax = plot_benchmark(rows, TARGETS)
    assert [t.get_text() for t in throughput_ax.texts] == [" 5,459", " 9,279", " 15,355"]
    assert [t.get_text() for t in latency_ax.texts] == [" 0.521 ms", " 0.345 ms", " 0.150 ms"]
    assert [t.get_text() for t in latency_ax.get_yticklabels()] == ["eager", "fused", "onnxruntime"]
    for ax in (latency_ax, throughput_ax):
        assert ax.get_xlabel() and ax.get_title()
    fig = latency_ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in (latency_ax, throughput_ax):  # the legend hides no bar and no label
        for artist in [*ax.patches, *ax.texts]:
            assert not legend.overlaps(artist.get_window_extent(renderer))
        assert ax.get_xlim()[1] > max(p.get_width() for p in ax.patches)  # bars end inside the panel
