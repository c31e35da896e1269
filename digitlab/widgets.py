"""Interactive ipywidgets tools for the notebooks."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import clear_output, display
from torch import Tensor, nn

from digitlab.analysis import confusion_matrix, find_mistakes, saliency, top_confusions
from digitlab.plots import plot_mistake


def mistake_options(cm: Tensor) -> list[tuple[str, tuple[int | None, int | None]]]:
    """Dropdown options (label, (true, predicted)): all mistakes, then every confused pair, most frequent first."""
    total = int(cm.sum() - cm.diag().sum())
    return [(f"all mistakes ({total})", (None, None))] + [
        (f"true {t} → predicted {p} ({n})", (t, p)) for t, p, n in top_confusions(cm, k=None)]


def mistake_caption(i: int, probs: Tensor, y: Tensor) -> str:
    """One line on item i: its true label, the prediction and both probabilities."""
    true, pred = int(y[i]), int(probs[i].argmax())
    return (f"image #{i}: true {true} (p = {probs[i, true]:.3f}), "
            f"predicted {pred} (p = {probs[i, pred]:.3f})")


def mistake_explorer(net: nn.Module, X: Tensor, y: Tensor, probs: Tensor) -> widgets.VBox:
    """Pick a (true, predicted) pair and step through its mistakes, most confident first: digit, probabilities,
    saliency."""
    cm = confusion_matrix(y, probs.argmax(1), probs.shape[1])
    pair = widgets.Dropdown(options=mistake_options(cm), description="mistakes", layout={"width": "320px"})
    step = widgets.IntSlider(min=0, max=0, description="step", continuous_update=False)
    caption = widgets.Label()
    out = widgets.Output()

    def show(_=None):
        idx = find_mistakes(probs, y, *pair.value)
        with out:
            clear_output(wait=True)
            if len(idx) == 0:
                caption.value = "no mistakes to show"
                return
            i = int(idx[step.value])
            caption.value = f"{step.value + 1} of {len(idx)}, " + mistake_caption(i, probs, y)
            fig = plot_mistake(X[i], probs[i], int(y[i]), saliency(net, X[i: i + 1])[0])
            display(fig)
            plt.close(fig)

    def choose(_=None):
        moved = step.value != 0
        step.value = 0  # `show` redraws when the value moves
        step.max = max(len(find_mistakes(probs, y, *pair.value)) - 1, 0)
        if not moved:
            show()

    pair.observe(choose, "value")
    step.observe(show, "value")
    choose()
    return widgets.VBox([widgets.HBox([pair, step]), caption, out])
