"""The website's drawing pad reads digits as the notebook's does.

The same 1,000 pictures (500 MNIST test digits enlarged to the pad's 280x280, 500 pen digits from
`digitlab.strokes`) go through the page's own JavaScript (book/pad/preprocess.js and network.js, with ONNX Runtime
Web in Node on the exported course network) and through `to_mnist` and PyTorch (`course_model()`). Skipped only
where `node` or `npm` is missing; the `pad_runtime` fixture runs `npm ci` where book/pad/node_modules is missing.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from digitlab import webpad
from digitlab.checkpoints import course_model
from digitlab.data import load_mnist, normalize
from digitlab.errors import DigitlabError, NoDigitError
from digitlab.preprocess import to_mnist
from digitlab.strokes import draw_strokes, pen_digit
from digitlab.widgets import PAD_SIZE, PEN_WIDTH

PAD = webpad.PAD_DIR
N_MNIST, N_PEN = 500, 500


def pad_pictures() -> tuple[np.ndarray, np.ndarray]:
    """1,000 pictures as the pad holds them (uint8 [N, 280, 280], ink 255 on 0) and their digits."""
    rng = np.random.default_rng(29)
    X, y = load_mnist("test")
    chosen = rng.choice(len(y), N_MNIST, replace=False)
    mnist = [np.asarray(Image.fromarray(X[i].numpy()).resize((PAD_SIZE, PAD_SIZE), Image.BILINEAR)) for i in chosen]
    digits = rng.integers(0, 10, N_PEN)
    # Half drawn as the notebook's pad rasterises strokes, half with smoothed edges as a browser's canvas draws them.
    pen = [np.asarray(draw_strokes(pen_digit(int(d), rng, PAD_SIZE), PAD_SIZE, PEN_WIDTH, scale=1 + 3 * (k % 2)))
           for k, d in enumerate(digits)]
    return np.stack(mnist + pen), np.concatenate([y[chosen].numpy(), digits])


def python_side(pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(refused, pixels [N, 28, 28], probabilities [N, 10]) from to_mnist and the course network in PyTorch."""
    refused = np.zeros(len(pictures), dtype=bool)
    pixels = np.zeros((len(pictures), 28, 28), dtype=np.float32)
    for i, picture in enumerate(pictures):
        try:
            pixels[i] = to_mnist(picture).numpy()
        except NoDigitError:
            refused[i] = True
    net = course_model(progress=False)[0].eval()
    with torch.no_grad():
        probs = torch.softmax(net(normalize(torch.from_numpy(pixels))), 1).numpy()
    return refused, pixels, probs


def node_side(pictures: np.ndarray, tmp: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same from the page's JavaScript in Node: book/pad/agree.mjs."""
    n, h, w = pictures.shape
    (tmp / "pictures.bin").write_bytes(np.array([n, h, w], dtype=np.uint32).tobytes() + pictures.tobytes())
    model = webpad.export_pad_model(tmp / webpad.MODEL_FILE)
    run = subprocess.run(["node", str(PAD / "agree.mjs"), str(tmp / "pictures.bin"), str(model), str(tmp / "out.bin")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    print(run.stdout.strip())
    out = (tmp / "out.bin").read_bytes()
    refused = np.frombuffer(out[:n], dtype=np.uint8).astype(bool)
    values = np.frombuffer(out[n:], dtype=np.float32).reshape(n, 794)
    return refused, values[:, :784].reshape(n, 28, 28), values[:, 784:]


@pytest.fixture(scope="module")
def both(tmp_path_factory, pad_runtime):
    pictures, digits = pad_pictures()
    return python_side(pictures), node_side(pictures, tmp_path_factory.mktemp("pad")), digits


def test_the_page_reads_the_pictures_as_the_notebook_does(both):
    (py_refused, py_pixels, py_probs), (js_refused, js_pixels, js_probs), digits = both
    n = len(digits)
    assert n == 1000
    py_pred = np.where(py_refused, -1, py_probs.argmax(1))   # -1: refused as no digit
    js_pred = np.where(js_refused, -1, js_probs.argmax(1))
    same = float((py_pred == js_pred).mean())
    read = ~py_refused & ~js_refused
    pixel_diff = np.abs(py_pixels - js_pixels).reshape(n, -1).max(1)
    agree = read & (pixel_diff <= 0.02)
    prob_diff = np.abs(py_probs - js_probs).max(1)
    right = py_pred == digits
    print(f"same prediction {same:.2%} of {n} ({int(py_refused.sum())} refused by Python, {int(js_refused.sum())} by "
          f"JavaScript); worst pixel difference {pixel_diff[read].max():.2e} over {int(read.sum())} read by both; "
          f"pixels within 0.02 on {int(agree.sum())}; worst probability difference there {prob_diff[agree].max():.2e}; "
          f"right: MNIST {float(right[:N_MNIST].mean()):.1%}, pen {float(right[N_MNIST:].mean()):.1%}")
    assert same >= 0.995
    # Pixels within 0.02 wherever both read the picture, but for a centre of mass that rounds the other way at a
    # half pixel (a whole-pixel shift) in at most 0.5% of them; probabilities within 0.01 wherever pixels agree.
    assert agree.sum() >= 0.995 * read.sum() and read.sum() >= 0.95 * n
    assert prob_diff[agree].max() <= 0.01


def test_the_record_the_page_quotes_is_the_committed_network_on_mnist_test(tmp_path):
    record = webpad.read_record()
    model = webpad.export_pad_model(tmp_path / webpad.MODEL_FILE)
    assert record["test_images"] == 10_000
    assert webpad.mnist_test_correct(model) == (record["test_correct"], record["test_images"])


def test_a_record_of_another_network_stops_the_build(tmp_path):
    record = json.loads(webpad.RECORD.read_text())
    (tmp_path / "model.json").write_text(json.dumps({**record, "checkpoint_sha256": "0" * 64}))
    with pytest.raises(DigitlabError, match="refresh it with python -m digitlab.webpad"):
        webpad.read_record(tmp_path / "model.json")


def odd_pictures() -> tuple[np.ndarray, list[str]]:
    """Pictures that take the other turns of to_mnist: refused ones, a light page, ink touching the border."""
    rng = np.random.default_rng(7)
    pen = [np.asarray(draw_strokes(pen_digit(d, rng, PAD_SIZE), PAD_SIZE, PEN_WIDTH)) for d in (3, 8, 5)]
    half = [np.asarray(draw_strokes(pen_digit(d, rng, PAD_SIZE // 2), PAD_SIZE // 2, PEN_WIDTH // 2)) for d in (2, 7)]
    speck = np.zeros((PAD_SIZE, PAD_SIZE), np.uint8)
    speck[130:150, 130:145] = 255
    ruled = pen[1].copy()
    ruled[:6] = 255                                               # a line along the top edge
    pictures = {"blank": np.zeros((PAD_SIZE, PAD_SIZE), np.uint8), "speck": speck,
                "noise": rng.integers(0, 256, (PAD_SIZE, PAD_SIZE)).astype(np.uint8),
                "two digits": np.pad(np.hstack(half), ((70, 70), (0, 0))),
                "light page": 255 - pen[0], "ruled top": ruled, "plain": pen[2]}
    return np.stack(list(pictures.values())), list(pictures)


def test_blank_and_odd_pictures_are_refused_or_read_alike(tmp_path, pad_runtime):
    pictures, names = odd_pictures()
    py_refused, py_pixels, py_probs = python_side(pictures)
    js_refused, js_pixels, js_probs = node_side(pictures, tmp_path)
    print(dict(zip(names, zip(py_refused.tolist(), js_refused.tolist(), strict=True), strict=True)))
    assert py_refused[:4].all() and js_refused.tolist() == py_refused.tolist()   # blank, speck, noise, two digits
    read = ~py_refused
    assert read.sum() >= 2
    assert np.abs(py_pixels[read] - js_pixels[read]).max() <= 0.02
    assert (py_probs[read].argmax(1) == js_probs[read].argmax(1)).all()
    assert np.abs(py_probs[read] - js_probs[read]).max() <= 0.01
