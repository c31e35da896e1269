"""Interactive ipywidgets tools for the notebooks."""

from __future__ import annotations

import html
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import clear_output, display
from torch import Tensor, nn

from digitlab.analysis import confusion_matrix, find_mistakes, saliency, top_confusions
from digitlab.errors import DigitlabError
from digitlab.plots import plot_mistake, plot_preprocess_steps
from digitlab.preprocess import preprocess_steps, to_mnist
from digitlab.strokes import draw_strokes


class _Noted:
    """A widget whose plain-text form is a note for readers without a running kernel.

    A saved notebook keeps two parts of a widget's output: the widget view, which only a live kernel
    can draw, and a plain-text fallback, which JupyterLab shows when there is none (a notebook just
    opened, a static rendering). ipywidgets' fallback is the widget's repr, e.g. `HBox(children=(...`;
    this keeps the view and replaces the fallback with `note`.
    """

    def __init__(self, *args, note: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.note = note  # a plain attribute, not a trait: nothing to send to the browser

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None and self.note:
            bundle["text/plain"] = self.note
        return bundle


class NotedHBox(_Noted, widgets.HBox):
    """An HBox whose plain-text output is `note`."""


class NotedVBox(_Noted, widgets.VBox):
    """A VBox whose plain-text output is `note`."""


def _needs_kernel(what: str, to: str) -> str:
    """The plain-text note of an interactive widget: what it is and that it needs a running kernel."""
    return f"{what}: run this cell in JupyterLab to {to} (it needs a running kernel)."


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


def mistake_explorer(net: nn.Module, X: Tensor, y: Tensor, probs: Tensor) -> NotedVBox:
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
    return NotedVBox([widgets.HBox([pair, step]), caption, out],
                     note=_needs_kernel("Mistake explorer", "step through the network's mistakes"))


# Drawing canvas and upload: a learner's own digits through to_mnist and a Predictor.

# Module settings, read each time a pad is made or strokes are rasterised (so that
# `digitlab.widgets.PEN_WIDTH = 8` takes effect for the next pad).
PAD_SIZE = 280  # pixels of the drawing canvas (10 per MNIST pixel)
PEN_WIDTH = 22  # stroke width in canvas pixels, about the thickness of an MNIST stroke scaled up


def rasterize(strokes: list[list[tuple[float, float]]], size: int | None = None, width: int | None = None):
    """Strokes (lists of (x, y) canvas points) -> a uint8 picture [size, size], ink 255 on paper 0 (MNIST's values).

    `size` and `width` default to the module's PAD_SIZE and PEN_WIDTH as they are at the call."""
    size = PAD_SIZE if size is None else size
    width = PEN_WIDTH if width is None else width
    return np.asarray(draw_strokes([np.asarray(s, dtype=float).reshape(-1, 2) for s in strokes], size, width))


def probability_text(probs: Tensor) -> str:
    """The prediction and its probability, e.g. 'predicted 7 (p = 0.981)'."""
    pred = int(probs.argmax())
    return f"predicted {pred} (p = {float(probs[pred]):.3f})"


def _probability_widgets() -> tuple[widgets.HTML, list[widgets.FloatProgress], widgets.VBox]:
    """A caption and ten labelled probability bars, updated in place (fast enough for live drawing); the caption
    wraps, so that a message such as why nothing is read shows whole."""
    caption = widgets.HTML("draw a digit")
    bars = [widgets.FloatProgress(min=0, max=1, description=str(d), layout={"width": "260px"}) for d in range(10)]
    return caption, bars, widgets.VBox([caption, *bars])


def _show_probabilities(caption: widgets.HTML, bars: list[widgets.FloatProgress], probs: Tensor | None,
                        message: str = "") -> None:
    """Set the caption and bars to `probs` (or empty them and show `message`)."""
    caption.value = html.escape(probability_text(probs) if probs is not None else message)
    best = int(probs.argmax()) if probs is not None else -1
    for d, bar in enumerate(bars):
        bar.value = float(probs[d]) if probs is not None else 0.0
        bar.bar_style = "success" if d == best else ""


PREVIEW_SCALE = 4  # the preview shows each of the 28x28 pixels as 4x4 screen pixels


def _png(image: Tensor, scale: int = PREVIEW_SCALE) -> bytes:
    """A [28, 28] float image (ink high, paper 0) as PNG bytes, enlarged `scale` times, ink dark on white."""
    from io import BytesIO

    from PIL import Image

    pixels = (255 * (1 - image.clamp(0, 1))).round().to(torch.uint8).numpy()
    buffer = BytesIO()
    Image.fromarray(pixels).resize((28 * scale, 28 * scale), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


BLANK_PNG = _png(torch.zeros(28, 28))  # the preview before the first stroke: an empty (white) 28x28 picture


class DrawingPad:
    """Draw a digit with the mouse: strokes are collected in Python, rasterised, turned into an MNIST
    image with `to_mnist` and classified by `predictor` while you draw."""

    def __init__(self, predictor, size: int | None = None, width: int | None = None, every_s: float = 0.05):
        from ipycanvas import Canvas

        size = PAD_SIZE if size is None else size  # the module settings as they are now
        width = PEN_WIDTH if width is None else width
        self.predictor, self.size, self.width, self.every_s = predictor, size, width, every_s
        self.strokes: list[list[tuple[float, float]]] = []
        self.drawing = False
        self.last_update = 0.0
        self.canvas = Canvas(width=size, height=size, layout={"border": "1px solid #999"})
        self.canvas.line_width, self.canvas.line_cap, self.canvas.line_join = width, "round", "round"
        self.canvas.on_mouse_down(self.pen_down)
        self.canvas.on_mouse_move(self.pen_move)
        self.canvas.on_mouse_up(self.pen_up)
        self.canvas.on_mouse_out(self.pen_up)
        self.clear_button = widgets.Button(description="clear", icon="eraser")
        self.clear_button.on_click(lambda _: self.clear())
        side = f"{28 * PREVIEW_SCALE}px"
        # A blank 28x28 picture until the first stroke (an empty Image shows a broken-image icon).
        self.preview = widgets.Image(value=BLANK_PNG, format="png",
                                     layout={"width": side, "height": side, "border": "1px solid #999"})
        self.caption, self.bars, probabilities = _probability_widgets()
        self.probs: Tensor | None = None
        # Fixed widths and margins keep the three columns apart: canvas, preview, probabilities.
        seen = widgets.VBox([widgets.Label("what the network sees"), self.preview],
                            layout={"width": "170px", "margin": "0 16px", "align_items": "center"})
        probabilities.layout = widgets.Layout(width="300px")
        self.widget = NotedHBox([widgets.VBox([self.canvas, self.clear_button]), seen, probabilities],
                                note=_needs_kernel("Drawing pad", "draw a digit and watch the prediction"))

    def pen_down(self, x: float, y: float) -> None:
        """Start a stroke at (x, y)."""
        self.drawing = True
        self.strokes.append([(x, y)])
        self.canvas.fill_circle(x, y, self.width / 2)

    def pen_move(self, x: float, y: float) -> None:
        """Extend the current stroke to (x, y); update the prediction at most every `every_s` seconds."""
        if not self.drawing:
            return
        x0, y0 = self.strokes[-1][-1]
        self.strokes[-1].append((x, y))
        self.canvas.stroke_line(x0, y0, x, y)
        if time.perf_counter() - self.last_update >= self.every_s:
            self.update()

    def pen_up(self, x: float, y: float) -> None:
        """Finish the stroke and update the prediction."""
        if self.drawing:
            self.drawing = False
            self.update()

    def clear(self) -> None:
        """Wipe the canvas and the prediction."""
        self.strokes, self.drawing, self.probs = [], False, None
        self.canvas.clear()
        self.preview.value = BLANK_PNG
        _show_probabilities(self.caption, self.bars, None, "draw a digit")

    def image(self) -> np.ndarray:
        """The strokes so far as a picture [size, size] (ink 255 on paper 0)."""
        return rasterize(self.strokes, self.size, self.width)

    def update(self) -> Tensor | None:
        """Classify what is drawn: rasterise, to_mnist, predict; refresh the preview and the bars."""
        self.last_update = time.perf_counter()
        try:
            x = to_mnist(self.image())
        except ValueError as err:  # nothing drawn yet, or no single digit: say which, in a few words
            self.probs = None
            self.preview.value = BLANK_PNG
            said = str(err).split(":")[0] if self.strokes else "draw a digit"
            _show_probabilities(self.caption, self.bars, None, said)
            return None
        self.probs = self.predictor.predict_proba(x)[0]
        self.preview.value = _png(x)
        _show_probabilities(self.caption, self.bars, self.probs)
        return self.probs


def drawing_pad(predictor) -> NotedHBox:
    """A canvas to draw digits on, with the network's live prediction and probabilities."""
    return DrawingPad(predictor).widget


def classify_upload(content: bytes, predictor) -> tuple[dict, Tensor]:
    """The bytes of an uploaded picture -> (each preprocessing step as a picture, class probabilities)."""
    from io import BytesIO

    from PIL import Image, UnidentifiedImageError

    try:
        picture = Image.open(BytesIO(content))
        picture.load()
    except (UnidentifiedImageError, OSError) as err:
        raise DigitlabError(f"the upload is not a picture PIL can read ({err}); upload a PNG or JPEG.") from err
    steps = preprocess_steps(picture)
    return steps, predictor.predict_proba(torch.from_numpy(steps["centred"]))[0]


def upload_classifier(predictor) -> NotedVBox:
    """Upload a photo of a handwritten digit: see each preprocessing step and the prediction."""
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="photo")
    out = widgets.Output()

    def show(_=None):
        if not upload.value:
            return
        item = upload.value[0]
        with out:
            clear_output(wait=True)
            try:
                steps, probs = classify_upload(bytes(item["content"]), predictor)
            except ValueError as err:
                print(f"{item['name']}: {err}")
                return
            fig = plot_preprocess_steps(steps, probs)
            display(fig)
            plt.close(fig)

    upload.observe(show, "value")
    return NotedVBox([upload, out], note=_needs_kernel("Photo upload", "classify a picture of a digit"))
