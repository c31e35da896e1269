"""Interactive ipywidgets tools for the notebooks."""

from __future__ import annotations

import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import clear_output, display
from torch import Tensor, nn

from digitlab.analysis import confusion_matrix, find_mistakes, saliency, top_confusions
from digitlab.plots import plot_mistake, plot_preprocess_steps
from digitlab.preprocess import preprocess_steps, to_mnist


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


# Drawing canvas and upload: a learner's own digits through to_mnist and a Predictor.

PAD_SIZE = 280  # pixels of the drawing canvas (10 per MNIST pixel)
PEN_WIDTH = 22  # stroke width in canvas pixels, about the thickness of an MNIST stroke scaled up


def rasterize(strokes: list[list[tuple[float, float]]], size: int = PAD_SIZE, width: int = PEN_WIDTH):
    """Strokes (lists of (x, y) canvas points) -> a uint8 picture [size, size], white ink on black."""
    from PIL import Image, ImageDraw

    picture = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(picture)
    r = width / 2
    for stroke in strokes:
        if len(stroke) > 1:
            draw.line(stroke, fill=255, width=width)
        for x, y in stroke:  # round caps and joints, as the browser's round pen draws them
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(picture)


def probability_text(probs: Tensor) -> str:
    """The prediction and its probability, e.g. 'predicted 7 (p = 0.981)'."""
    pred = int(probs.argmax())
    return f"predicted {pred} (p = {float(probs[pred]):.3f})"


def _probability_widgets() -> tuple[widgets.Label, list[widgets.FloatProgress], widgets.VBox]:
    """A caption and ten labelled probability bars, updated in place (fast enough for live drawing)."""
    caption = widgets.Label("draw a digit")
    bars = [widgets.FloatProgress(min=0, max=1, description=str(d), layout={"width": "260px"}) for d in range(10)]
    return caption, bars, widgets.VBox([caption, *bars])


def _show_probabilities(caption: widgets.Label, bars: list[widgets.FloatProgress], probs: Tensor | None,
                        message: str = "") -> None:
    """Set the caption and bars to `probs` (or empty them and show `message`)."""
    caption.value = probability_text(probs) if probs is not None else message
    best = int(probs.argmax()) if probs is not None else -1
    for d, bar in enumerate(bars):
        bar.value = float(probs[d]) if probs is not None else 0.0
        bar.bar_style = "success" if d == best else ""


def _png(image: Tensor, scale: int = 4) -> bytes:
    """A [28, 28] float image (white ink on black) as PNG bytes, enlarged `scale` times, ink dark on white."""
    from io import BytesIO

    from PIL import Image

    pixels = (255 * (1 - image.clamp(0, 1))).round().to(torch.uint8).numpy()
    buffer = BytesIO()
    Image.fromarray(pixels).resize((28 * scale, 28 * scale), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


class DrawingPad:
    """Draw a digit with the mouse: strokes are collected in Python, rasterised, turned into an MNIST
    image with `to_mnist` and classified by `predictor` while you draw."""

    def __init__(self, predictor, size: int = PAD_SIZE, width: int = PEN_WIDTH, every_s: float = 0.05):
        from ipycanvas import Canvas

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
        self.preview = widgets.Image(format="png", layout={"width": "112px", "height": "112px"})
        self.caption, self.bars, probabilities = _probability_widgets()
        self.probs: Tensor | None = None
        self.widget = widgets.HBox([widgets.VBox([self.canvas, self.clear_button]),
                                    widgets.VBox([widgets.Label("what the network sees"), self.preview]),
                                    probabilities])

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
        self.preview.value = b""
        _show_probabilities(self.caption, self.bars, None, "draw a digit")

    def image(self) -> np.ndarray:
        """The strokes so far as a picture [size, size] (white ink on black)."""
        return rasterize(self.strokes, self.size, self.width)

    def update(self) -> Tensor | None:
        """Classify what is drawn: rasterise, to_mnist, predict; refresh the preview and the bars."""
        self.last_update = time.perf_counter()
        try:
            x = to_mnist(self.image())
        except ValueError:  # nothing drawn yet
            self.probs = None
            _show_probabilities(self.caption, self.bars, None, "draw a digit")
            return None
        self.probs = self.predictor.predict_proba(x)[0]
        self.preview.value = _png(x)
        _show_probabilities(self.caption, self.bars, self.probs)
        return self.probs


def drawing_pad(predictor) -> widgets.HBox:
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
        raise ValueError(f"the upload is not a picture PIL can read ({err}); upload a PNG or JPEG.") from err
    steps = preprocess_steps(picture)
    return steps, predictor.predict_proba(torch.from_numpy(steps["centred"]))[0]


def upload_classifier(predictor) -> widgets.VBox:
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
    return widgets.VBox([upload, out])
