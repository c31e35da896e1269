import pytest
import torch

from digitlab.analysis import confusion_matrix, find_mistakes
from digitlab.models import DigitRecognitionCNN
from digitlab.train import batched_logits
from digitlab.widgets import mistake_caption, mistake_explorer, mistake_options


def _untrained_predictions(n: int = 40):
    """An untrained network's probabilities for random inputs and labels: plenty of mistakes."""
    torch.manual_seed(0)
    net = DigitRecognitionCNN()
    X, y = torch.randn(n, 1, 28, 28), torch.randint(0, 10, (n,))
    return net, X, y, batched_logits(net, X).softmax(1)


def test_mistake_options_list_all_then_pairs_by_count():
    cm = torch.tensor([[5, 3, 0],
                       [0, 4, 1],
                       [2, 0, 6]])
    assert mistake_options(cm) == [("all mistakes (6)", (None, None)),
                                   ("true 0 → predicted 1 (3)", (0, 1)),
                                   ("true 2 → predicted 0 (2)", (2, 0)),
                                   ("true 1 → predicted 2 (1)", (1, 2))]


def test_mistake_caption():
    probs = torch.tensor([[0.1, 0.3, 0.6], [0.7, 0.2, 0.1]])
    assert mistake_caption(0, probs, torch.tensor([1, 0])) == "image #0: true 1 (p = 0.300), predicted 2 (p = 0.600)"


def test_explorer_steps_through_the_chosen_pair():
    net, X, y, probs = _untrained_predictions()
    box = mistake_explorer(net, X, y, probs)
    pair, step = box.children[0].children
    caption = box.children[1]
    everything = find_mistakes(probs, y)
    assert pair.value == (None, None) and step.max == len(everything) - 1  # starts on all mistakes
    assert caption.value.startswith(f"1 of {len(everything)}, image #{int(everything[0])}:")

    cm = confusion_matrix(y, probs.argmax(1))
    assert len(pair.options) == 1 + int((cm - torch.diag(cm.diag()) > 0).sum())
    # Choose the most frequent pair: the slider spans its mistakes, the caption shows the most confident one.
    label, (t, p) = pair.options[1]
    pair.value = (t, p)
    chosen = find_mistakes(probs, y, true=t, pred=p)
    assert step.max == len(chosen) - 1 and step.value == 0
    assert caption.value == f"1 of {len(chosen)}, " + mistake_caption(int(chosen[0]), probs, y)
    assert label.endswith(f"({len(chosen)})")
    # Step to the last one.
    step.value = step.max
    assert caption.value == f"{len(chosen)} of {len(chosen)}, " + mistake_caption(int(chosen[-1]), probs, y)
    # Back to all mistakes: the slider returns to the first.
    pair.value = (None, None)
    assert step.value == 0 and step.max == len(everything) - 1
    assert caption.value.startswith(f"1 of {len(everything)}, image #{int(everything[0])}:")


def test_explorer_without_mistakes():
    net, X, _, probs = _untrained_predictions(5)
    box = mistake_explorer(net, X, probs.argmax(1), probs)
    assert box.children[1].value == "no mistakes to show"
    assert box.children[0].children[0].options == (("all mistakes (0)", (None, None)),)


# Drawing pad and upload: the browser's mouse events are simulated by calling the pad's callbacks.

@pytest.fixture
def trained_predictor(fast_net):
    """A Predictor of the quick-mode course network."""
    from digitlab.infer import Predictor

    return Predictor(fast_net)


def _draw(pad, points):
    pad.pen_down(*points[0])
    for p in points[1:]:
        pad.pen_move(*p)
    pad.pen_up(*points[-1])


def test_rasterize_draws_round_thick_strokes():
    import numpy as np

    from digitlab.widgets import rasterize

    picture = rasterize([[(50, 100), (200, 100)], [(140, 240)]], size=280, width=20)
    assert picture.shape == (280, 280) and picture.dtype == np.uint8
    assert picture[100, 50:201].min() == 255 and picture[91:110, 120].min() == 255  # along and across the line
    assert picture[80, 120] == 0 and picture[100, 20] == 0  # outside the pen's reach
    assert picture[240, 140] == 255  # a single click leaves a dot
    assert rasterize([]).max() == 0


def test_drawing_pad_recognises_drawn_digits_live(trained_predictor):
    import numpy as np

    from digitlab.widgets import DrawingPad

    pad = DrawingPad(trained_predictor, every_s=0.0)
    assert pad.update() is None and pad.caption.value == "draw a digit"  # nothing drawn yet
    _draw(pad, [(140, 50 + 9 * i) for i in range(21)])
    assert pad.caption.value.startswith("predicted 1") and len(pad.strokes) == 1
    assert bytes(pad.preview.value).startswith(b"\x89PNG")
    values = [bar.value for bar in pad.bars]
    assert abs(sum(values) - 1) < 1e-4 and pad.bars[1].bar_style == "success"
    pad.clear()
    assert pad.strokes == [] and pad.probs is None and max(bar.value for bar in pad.bars) == 0
    t = np.linspace(0, 2 * np.pi, 40)
    _draw(pad, list(zip(140 + 60 * np.sin(t), 140 - 90 * np.cos(t), strict=True)))
    assert int(pad.probs.argmax()) == 0
    pad.clear()
    _draw(pad, [(70 + 7 * i, 50) for i in range(21)] + [(210 - 4 * i, 50 + 10 * i) for i in range(1, 21)])
    assert int(pad.probs.argmax()) == 7
    pad.pen_move(10, 10)  # moving without the button pressed draws nothing
    assert len(pad.strokes) == 1 and len(pad.strokes[0]) == 41


def test_drawing_pad_updates_while_drawing_at_most_every_so_often(trained_predictor):
    from digitlab.widgets import DrawingPad

    pad = DrawingPad(trained_predictor, every_s=3600)
    pad.pen_down(140, 50)
    pad.last_update = float("inf")  # as if it had just updated
    for i in range(1, 20):
        pad.pen_move(140, 50 + 10 * i)
    assert pad.probs is None  # throttled while the pen moves
    pad.pen_up(140, 240)
    assert pad.caption.value.startswith("predicted 1")


def test_classify_upload_of_a_photo_like_picture(capsys, trained_predictor):
    from datetime import datetime, timezone
    from io import BytesIO

    import torch.nn.functional as F
    from PIL import Image

    from digitlab.data import load_mnist
    from digitlab.widgets import classify_upload, upload_classifier

    predictor = trained_predictor
    X, _ = load_mnist("test")
    big = F.interpolate(X[:1].float()[None] / 255, scale_factor=5, mode="bilinear")[0, 0]
    page = torch.zeros(200, 240)
    page[30: 30 + big.shape[0], 70: 70 + big.shape[1]] = big.clamp(0, 1)
    rgb = (255 * (1 - page)).round().to(torch.uint8)[..., None].expand(-1, -1, 3).numpy()
    buffer = BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=85)
    steps, probs = classify_upload(buffer.getvalue(), predictor)
    assert list(steps) == ["input", "ink", "cropped", "scaled", "centred"]
    assert int(probs.argmax()) == int(predictor.predict(X[:1])[0])
    import pytest

    with pytest.raises(ValueError, match="not a picture"):
        classify_upload(b"hello", predictor)
    box = upload_classifier(predictor)
    upload = box.children[0]
    upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"),
                     "last_modified": datetime.now(timezone.utc)},)
    assert "notes.txt: the upload is not a picture" in capsys.readouterr().out


class _NoPredictor:
    """Stands in for a Predictor where the test draws nothing that needs classifying."""

    def predict_proba(self, x):
        raise AssertionError("nothing should be classified here")


def test_pen_width_and_pad_size_settings_are_read_when_a_pad_is_made(monkeypatch):
    import digitlab.widgets as w

    monkeypatch.setattr(w, "PEN_WIDTH", 8)
    monkeypatch.setattr(w, "PAD_SIZE", 140)
    pad = w.DrawingPad(_NoPredictor())
    assert (pad.width, pad.size) == (8, 140)
    assert pad.canvas.line_width == 8 and (pad.canvas.width, pad.canvas.height) == (140, 140)
    picture = w.rasterize([[(20, 70), (120, 70)]])  # a horizontal line, with the settings as they are now
    assert picture.shape == (140, 140)
    assert 7 <= int((picture[:, 70] == 255).sum()) <= 9  # the line is about 8 pixels thick
    assert pad.image().shape == (140, 140)


def _png_pixels(data: bytes):
    from io import BytesIO

    import numpy as np
    from PIL import Image

    assert bytes(data).startswith(b"\x89PNG")
    return np.asarray(Image.open(BytesIO(bytes(data))).convert("L"))


def test_pad_preview_is_a_blank_picture_before_the_first_stroke_and_after_clearing(trained_predictor):
    from digitlab.widgets import DrawingPad

    pad = DrawingPad(trained_predictor, every_s=0.0)
    blank = _png_pixels(pad.preview.value)
    assert blank.shape == (112, 112) and blank.min() == 255  # 28x28 pixels shown 4x, all paper-white
    assert pad.update() is None and _png_pixels(pad.preview.value).min() == 255  # nothing drawn yet
    _draw(pad, [(140, 50 + 9 * i) for i in range(21)])
    drawn = _png_pixels(pad.preview.value)
    assert drawn.shape == (112, 112) and drawn.min() < 128  # the stroke shows dark on white
    pad.clear()
    assert (_png_pixels(pad.preview.value) == blank).all()


def test_widgets_carry_a_note_for_readers_without_a_running_kernel():
    from IPython.core.formatters import DisplayFormatter

    from digitlab.widgets import drawing_pad, upload_classifier

    net, X, y, probs = _untrained_predictions()
    notes = {
        "Drawing pad: run this cell in JupyterLab to draw a digit and watch the prediction "
        "(it needs a running kernel).": drawing_pad(_NoPredictor()),
        "Photo upload: run this cell in JupyterLab to classify a picture of a digit "
        "(it needs a running kernel).": upload_classifier(_NoPredictor()),
        "Mistake explorer: run this cell in JupyterLab to step through the network's mistakes "
        "(it needs a running kernel).": mistake_explorer(net, X, y, probs),
    }
    for note, widget in notes.items():
        bundle, _ = DisplayFormatter().format(widget)  # what a notebook saves as the cell's output
        assert bundle["text/plain"] == note  # not the widget's repr, `HBox(children=(...`
        view = bundle["application/vnd.jupyter.widget-view+json"]  # the live widget is still there
        assert view["model_id"] == widget.model_id and view["version_major"] == 2
