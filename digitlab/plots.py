"""Figures the notebooks share: digit grids, learning curves and the like."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from digitlab.errors import DigitlabError

# A colour-blind-safe palette (seaborn's "colorblind", after Okabe and Ito) used by every figure of the course.
PALETTE = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
           "#56b4e9"]
BLUE, ORANGE, GREEN, RED, GREY = PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3], PALETTE[7]
STYLE = {
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "legend.frameon": False, "figure.dpi": 100, "image.cmap": "viridis",
}


def use_style() -> None:
    """Give every figure the course's look: readable sizes, a light grid and the colour-blind-safe PALETTE."""
    plt.rcParams.update(STYLE)


def _as_grid_images(X) -> np.ndarray:
    """Images [N, H, W] or [N, 1, H, W] (tensor or array) -> float array [N, H, W]."""
    X = X.detach().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X)
    if X.ndim == 4 and X.shape[1] == 1:
        X = X[:, 0]
    if X.ndim == 2:
        X = X[None]
    if X.ndim != 3 or len(X) == 0:
        raise DigitlabError(f"images must be shaped [N, H, W] or [N, 1, H, W] with N >= 1; got {list(X.shape)}.")
    return X.astype(np.float32)


def _grid(n: int, titles, ncols: int, scale: float):
    """A figure with one axis (no frame) per item, in rows of `ncols`; checks there is one title per item."""
    if titles is not None and len(titles) != n:
        raise DigitlabError(f"got {n} images but {len(titles)} titles: give one title per image.")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols * scale, 1.3 * nrows * scale), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if titles is not None and i < n:
            ax.set_title(str(titles[i]), fontsize=9)
    return fig, axes


def show_images(X, titles=None, ncols: int = 10, scale: float = 1.0, cmap: str = "gray_r",
                symmetric: bool = False, suptitle: str | None = None) -> np.ndarray:
    """Show images [N, H, W] or [N, 1, H, W] in a grid, one optional title each; return the axes."""
    X = _as_grid_images(X)
    fig, axes = _grid(len(X), titles, ncols, scale)
    for x, ax in zip(X, axes.flat, strict=False):
        # symmetric: zero is the middle colour (weights, normalised inputs); else each image spans its own range.
        vmax = (np.abs(x).max() or 1.0) if symmetric else None
        ax.imshow(x, cmap=cmap, vmin=-vmax if symmetric else None, vmax=vmax)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return axes


def show_pictures(pictures: list[np.ndarray], titles=None, ncols: int = 10, scale: float = 1.0,
                  suptitle: str | None = None) -> np.ndarray:
    """Show pictures as they are (uint8 gray or RGB, each its own size) in a grid; return the axes."""
    fig, axes = _grid(len(pictures), titles, ncols, scale)
    for picture, ax in zip(pictures, axes.flat, strict=False):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return axes


def plot_history(history: dict, axes=None) -> np.ndarray:
    """Loss and accuracy per epoch, train and validation, from a `fit` history; return the two axes."""
    missing = {"epoch", "train_loss", "val_loss", "train_acc", "val_acc"} - history.keys()
    if missing:
        raise DigitlabError(f"history lacks {sorted(missing)}: pass the dict that digitlab.fit returns.")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    epochs = history["epoch"]
    for ax, metric, label in zip(axes, ["loss", "acc"], ["cross-entropy loss", "accuracy"], strict=True):
        ax.plot(epochs, history[f"train_{metric}"], "o-", label="train")
        ax.plot(epochs, history[f"val_{metric}"], "s--", label="validation")
        ax.set(xlabel="epoch", ylabel=label)
        if len(epochs) <= 15:
            ax.set_xticks(epochs)
        else:  # one tick per epoch would crowd the axis: a few whole-number ticks instead
            ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].figure.tight_layout()
    return axes


def plot_effects(table, xlabel: str = "difference", ax=None, title: str | None = None, legend: bool = True):
    """Effects with their 95% intervals, one row each: a dot at the mean, a bar from `low` to `high`.

    `table` is a DataFrame (or dict of dicts) with the columns mean, low and high, one row per effect, as
    `digitlab.stats.compare` returns them. Intervals that exclude 0 are drawn in blue and filled; those
    that include 0 in grey and open, so the two kinds differ in shape as well as colour; `legend` says which is
    which, beside the axes. Return the axes.
    """
    import pandas as pd

    table = pd.DataFrame(table).T if isinstance(table, dict) else table
    missing = {"mean", "low", "high"} - set(table.columns)
    if missing:
        raise DigitlabError(f"table lacks the columns {sorted(missing)}: one row per effect with mean, low and high.")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.2))
    rows = np.arange(len(table))
    resolved = ((table["low"] > 0) | (table["high"] < 0)).to_numpy()
    for kind, face, color, name in [(True, BLUE, BLUE, "95% interval excludes 0"),
                                    (False, "white", GREY, "95% interval includes 0")]:
        pick = resolved == kind
        if not pick.any():
            continue
        t = table[pick]
        ax.errorbar(t["mean"], rows[pick], xerr=[t["mean"] - t["low"], t["high"] - t["mean"]], fmt="o",
                    color=color, mfc=face, mec=color, ms=7, capsize=4, lw=1.5, label=name)
    ax.axvline(0, color="black", lw=1, ls="--")
    ax.set_yticks(rows, [str(i) for i in table.index])
    ax.set_ylim(len(table) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the axes: it hides no interval
    if title:
        ax.set_title(title)
    return ax


def plot_embedding(Z, y, ax=None, size: float = 2.0, title: str | None = None):
    """Scatter 2-D points Z [N, 2] coloured by class y, with a legend of the classes; return the axes."""
    Z = Z.detach().cpu().numpy() if isinstance(Z, Tensor) else np.asarray(Z)
    y = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if Z.ndim != 2 or Z.shape[1] != 2 or len(Z) != len(y):
        raise DigitlabError(f"Z must be [N, 2] with one label per row; got Z {list(Z.shape)} and {len(y)} labels.")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 6))
    for c in np.unique(y):
        pts = Z[y == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=size, color=PALETTE[int(c) % len(PALETTE)], label=str(c), alpha=0.6)
    ax.legend(markerscale=max(1.0, 6 / size), title="digit", loc="center left", bbox_to_anchor=(1, 0.5))
    if title:
        ax.set_title(title)
    return ax


def plot_confusion(cm: Tensor, normalize: bool = False, ax=None):
    """Confusion-matrix heatmap (rows: true, columns: predicted); `normalize`: % of each true class, diagonal hidden."""
    import seaborn as sns
    from matplotlib.colors import LogNorm

    cm = cm.detach().cpu().numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    if normalize:
        data = 100 * cm / np.maximum(cm.sum(1, keepdims=True), 1)
        annot = np.where(cm > 0, np.char.mod("%.1f", data), "")
        sns.heatmap(data, mask=np.eye(len(cm), dtype=bool), annot=annot, fmt="", cmap="Reds", square=True,
                    cbar_kws={"label": "% of the true class"}, ax=ax)
        ax.set_title("row-normalised mistakes (%), diagonal hidden")
    else:
        annot = np.where(cm > 0, cm.astype(str), "")
        sns.heatmap(np.where(cm > 0, cm, np.nan), annot=annot, fmt="", cmap="Blues", square=True,
                    norm=LogNorm(vmin=1, vmax=max(cm.max(), 2)), cbar_kws={"label": "count (log scale)"}, ax=ax)
        ax.set_title("counts (blank: none)")
    ax.set(xlabel="predicted", ylabel="true")
    ax.tick_params(axis="y", rotation=0)
    ax.grid(False)  # the course style's grid would cut through the cells
    return ax


def _probability_bars(ax, p: np.ndarray, true: int, pred: int) -> None:
    """Bars of the class probabilities p; the true class blue, a wrong prediction red."""
    colors = [GREY] * len(p)
    colors[pred] = RED
    colors[true] = BLUE
    ax.bar(range(len(p)), p, color=colors)
    ax.set_ylim(0, 1)
    ax.set_xticks(range(len(p)))
    ax.tick_params(labelsize=7, length=0)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def plot_mistakes(X, probs: Tensor, y: Tensor, indices, ncols: int = 6, suptitle: str | None = None):
    """Each chosen image with its index, true label, prediction, confidence and a bar of all class probabilities."""
    X = _as_grid_images(X)
    indices = [int(i) for i in indices]
    if not indices:
        raise DigitlabError("no indices to show: the selection is empty.")
    ncols = max(1, min(ncols, len(indices)))
    nrows = -(-len(indices) // ncols)
    fig, axes = plt.subplots(2 * nrows, ncols, figsize=(1.5 * ncols, 2.4 * nrows), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1] * nrows})
    for ax in axes.flat:
        ax.axis("off")
    for k, i in enumerate(indices):
        top, bottom = axes[2 * (k // ncols), k % ncols], axes[2 * (k // ncols) + 1, k % ncols]
        p = probs[i].detach().cpu().numpy()
        true, pred = int(y[i]), int(p.argmax())
        top.imshow(X[i], cmap="gray_r")
        top.set_title(f"#{i}: {true}→{pred} ({p[pred]:.2f})", fontsize=8)
        bottom.axis("on")
        _probability_bars(bottom, p, true, pred)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_reliability(rel: dict, ax=None, title: str | None = None):
    """Reliability diagram from `analysis.reliability`: accuracy per confidence bin against the diagonal."""
    edges, count = rel["edges"].numpy(), rel["count"].numpy()
    acc, conf = rel["accuracy"].numpy(), rel["confidence"].numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    full = count > 0
    lo, width = edges[:-1][full], np.diff(edges)[full]
    ax.bar(lo, acc[full], width, align="edge", color=BLUE, alpha=0.7, edgecolor="white",
           label="accuracy of the bin")
    ax.plot(lo + width / 2, conf[full], "_", color=RED, ms=10, mew=2, label="mean confidence of the bin")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for x, a, n in zip(lo + width / 2, acc[full], count[full], strict=True):
        ax.text(x, min(a, 0.8) + 0.03, str(n), ha="center", va="bottom", fontsize=8, rotation=90)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (largest probability)", ylabel="accuracy")
    ax.legend(loc="upper left", fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_saliency(X, maps: dict, titles=None, scale: float = 1.0):
    """The images in the top row and, below, one row per saliency map (name -> [N, H, W]) outlined with the digit."""
    X = _as_grid_images(X)
    rows = [("image", X, "gray_r")] + [(name, _as_grid_images(m), "inferno") for name, m in maps.items()]
    fig, axes = plt.subplots(len(rows), len(X), figsize=(1.3 * len(X) * scale, 1.4 * len(rows) * scale),
                             squeeze=False)
    for r, (name, images, cmap) in enumerate(rows):
        for c in range(len(X)):
            axes[r, c].imshow(images[c], cmap=cmap)
            if r > 0:  # outline of the digit's ink on each map
                axes[r, c].contour(X[c], levels=[(X[c].min() + X[c].max()) / 2], colors="cyan", linewidths=0.6)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    if titles is not None:
        for ax, t in zip(axes[0], titles, strict=True):
            ax.set_title(str(t), fontsize=8)
    fig.tight_layout()
    return axes


def plot_mistake(x, p: Tensor, true: int, sal, title: str = ""):
    """One digit, its class probabilities and the saliency of its prediction side by side; return the figure."""
    x, sal = _as_grid_images(x)[0], _as_grid_images(sal)[0]
    p = p.detach().cpu().numpy()
    pred = int(p.argmax())
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.8), gridspec_kw={"width_ratios": [1, 1.4, 1]})
    axes[0].imshow(x, cmap="gray_r")
    axes[0].set_title(title or f"true {true}, predicted {pred}", fontsize=9)
    _probability_bars(axes[1], p, true, pred)
    axes[1].set_title("class probabilities (blue: true)", fontsize=9)
    axes[2].imshow(sal, cmap="inferno")
    axes[2].set_title(f"saliency of '{pred}'", fontsize=9)
    for ax in (axes[0], axes[2]):
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_preprocess_steps(steps: dict, probs: Tensor | None = None):
    """Each stage of `to_mnist` (from `preprocess_steps`) side by side, then the probabilities; return the figure."""
    n = len(steps) + (probs is not None)
    fig, axes = plt.subplots(1, n, figsize=(2.1 * n, 2.4), squeeze=False)
    axes = axes[0]
    for ax, (name, image) in zip(axes, steps.items(), strict=False):
        ink_bright = name != "input"  # after the first step ink is bright on black, as in MNIST
        ax.imshow(image, cmap="gray_r" if ink_bright else "gray", vmin=0, vmax=1)
        ax.set_title(f"{name}\n{image.shape[1]}x{image.shape[0]}", fontsize=9)
        ax.axis("off")
    if probs is not None:
        p = probs.detach().cpu().numpy()
        pred = int(p.argmax())
        _probability_bars(axes[-1], p, pred, pred)
        axes[-1].set_title(f"predicted {pred} (p = {p[pred]:.2f})", fontsize=9)
    fig.tight_layout()
    return fig


def plot_benchmark(rows: list[dict], targets: dict[str, float]):
    """Single-image p50 latency and batch throughput of each inference path, with the targets (such as
    `infer_bench.TARGETS`); return the axes.

    Bars are labelled with their values (e.g. "0.150 ms", "5,460"); the legend sits below the panels,
    clear of the bars."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    p50_target_ms, throughput_target = targets["latency"], targets["throughput"]

    rows = [r for r in rows if "skipped" not in r]
    names = [r["backend"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9), sharey=True)
    panels = [("p50_ms", "One image per call: median latency", "milliseconds per image (lower is better)",
               p50_target_ms, "{:.3f} ms"),
              ("images_per_s", "Batches: throughput", "images per second (higher is better)",
               throughput_target, "{:,.0f}")]
    for ax, (key, title, xlabel, target, fmt) in zip(axes, panels, strict=True):
        values = [r[key] for r in rows]
        ax.barh(range(len(rows)), values, color=[GREY] + [BLUE] * (len(rows) - 1))
        ax.axvline(target, color=RED, linestyle="--")
        for i, v in enumerate(values):
            ax.text(v, i, " " + fmt.format(v), va="center", fontsize=8)
        ax.set_xlim(0, 1.3 * max(*values, target))  # room for the labels right of the longest bar
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(axis="y", visible=False)
    axes[1].xaxis.set_major_formatter("{x:,.0f}")  # 10,000 rather than 10000
    axes[0].set_yticks(range(len(rows)), names)
    axes[0].set_ylabel("inference path")
    axes[0].invert_yaxis()  # the reference on top (the y axis is shared)
    handles = [Patch(color=GREY, label="eager PyTorch, the reference"), Patch(color=BLUE, label="other paths"),
               Line2D([], [], color=RED, linestyle="--",
                      label=f"targets: {p50_target_ms:g} ms per image, {throughput_target:,.0f} images/s")]
    fig.legend(handles=handles, loc="lower center", ncol=3)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # keep the bottom strip for the legend
    return axes
