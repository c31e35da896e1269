import time
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

from digitlab import non_mnist
from digitlab.data import MNIST_MEAN, MNIST_STD
from digitlab.errors import DigitlabError
from digitlab.non_mnist import (
    FONTS,
    LOWRES_SIZES,
    PAD_SIZE,
    SEEDS,
    SOURCES,
    accuracy_by_source,
    foreign_bench,
    typed_digits,
)
from digitlab.preprocess import to_mnist


@pytest.fixture(scope="module")
def small():
    return {split: foreign_bench(split, per_digit=4) for split in ("tune", "report")}


def test_same_split_gives_byte_identical_pictures(small):
    again = foreign_bench("tune", per_digit=4)
    first = small["tune"]
    assert len(again) == len(first) == 4 * 10 * len(SOURCES)
    for a, b in zip(first.images, again.images, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert torch.equal(first.labels, again.labels)
    assert first.sources == again.sources and first.origins == again.origins


def test_a_source_does_not_depend_on_the_others():
    alone = foreign_bench("tune", per_digit=2, sources=("photo",))
    together = foreign_bench("tune", per_digit=2).subset("photo")
    assert all(a.tobytes() == b.tobytes() for a, b in zip(alone.images, together.images, strict=True))


def test_balanced_over_digits_and_sources(small):
    for bench in small.values():
        counts = Counter(zip(bench.sources, bench.labels.tolist(), strict=True))
        assert set(counts) == {(s, d) for s in SOURCES for d in range(10)}
        assert set(counts.values()) == {4}


def test_tune_and_report_share_no_fonts_seeds_or_pictures(small):
    assert SEEDS["tune"] != SEEDS["report"]
    assert not set(FONTS["tune"]) & set(FONTS["report"])
    used = {split: {o for o in bench.origins if o != "pen"} for split, bench in small.items()}
    assert used["tune"] <= set(FONTS["tune"]) and used["report"] <= set(FONTS["report"])
    assert len(used["tune"]) >= 5 and len(used["report"]) >= 5  # several fonts in each part
    tune = {im.tobytes() for im in small["tune"].images}
    assert not any(im.tobytes() in tune for im in small["report"].images)


def test_pictures_are_raw_uploads_of_every_kind(small):
    bench = small["tune"]
    assert all(im.dtype == np.uint8 for im in bench.images)
    shapes = {s: {im.shape for im, src in zip(bench.images, bench.sources, strict=True) if src == s} for s in SOURCES}
    assert shapes["pen"] == {(PAD_SIZE, PAD_SIZE)}
    assert {shape[0] for shape in shapes["lowres"]} == set(LOWRES_SIZES)
    assert all(len(shape) == 3 and shape[2] == 3 for shape in shapes["photo"])  # colour photos
    assert len(shapes["font"]) > 5 and len(shapes["photo"]) > 5  # many sizes
    # Paper is light and ink dark, except on the pad (white on black) and a share of screens (light text on dark).
    photo = [im for im, s in zip(bench.images, bench.sources, strict=True) if s == "photo"]
    assert all(np.median(im) > 128 for im in photo)
    assert all(np.median(im) < 10 for im, s in zip(bench.images, bench.sources, strict=True) if s == "pen")


def test_every_picture_goes_through_to_mnist(small):
    for bench in small.values():
        for image in bench.images:
            x = to_mnist(image)
            assert x.shape == (28, 28) and x.min() >= 0 and x.max() == 1


def test_the_bench_is_a_few_thousand_pictures_built_in_seconds():
    start = time.perf_counter()
    bench = foreign_bench("report")
    seconds = time.perf_counter() - start
    assert len(bench) == 2000
    assert seconds < 60  # about 5 s on a 2-core laptop-class CPU; a minute allows for a busy machine


def test_bad_requests_say_what_to_ask_for():
    with pytest.raises(ValueError, match="'tune' or 'report'"):
        foreign_bench("test")
    with pytest.raises(ValueError, match="unknown source"):
        foreign_bench("tune", sources=("scan",))
    with pytest.raises(ValueError, match="per_digit"):
        foreign_bench("tune", per_digit=0)


class Always(nn.Module):
    """A tiny network that answers `digit` whatever it is shown."""

    def __init__(self, digit: int):
        super().__init__()
        self.fc = nn.Linear(28 * 28, 10)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(torch.nn.functional.one_hot(torch.tensor(digit), 10).float())

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_accuracy_by_source_counts_right_answers(small):
    bench = small["report"]
    always_three = accuracy_by_source(Always(3), bench)
    assert set(always_three) == {*SOURCES, "all"}
    assert all(abs(v - 0.1) < 1e-6 for v in always_three.values())  # one digit in ten is a 3
    oracle = accuracy_by_source(lambda X: bench.labels, bench)  # a function of the images works too
    assert all(v == 1 for v in oracle.values())


def test_a_picture_preprocessing_rejects_counts_as_wrong(small):
    bench = small["tune"]

    def refuse_tiny(image):
        if min(image.shape[:2]) <= max(LOWRES_SIZES):
            raise DigitlabError("No digit found")
        return to_mnist(image)

    acc = accuracy_by_source(lambda X: bench.labels, bench, preprocess=refuse_tiny)
    assert acc["lowres"] == 0 and acc["pen"] == 1 and acc["photo"] == 1
    assert 0 < acc["font"] <= 1 and abs(acc["all"] - np.mean([acc[s] for s in SOURCES])) < 1e-6


def test_the_fast_course_model_reads_foreign_digits(fast_net):
    acc = accuracy_by_source(fast_net, foreign_bench("report", per_digit=10))
    # Chance is 10%; the fast model (2 epochs on 10,000 MNIST digits) reads most of every source.
    assert all(acc[s] >= 0.75 for s in SOURCES), acc
    assert acc["all"] >= 0.85, acc


def test_typed_training_digits_are_seeded_mnist_style_and_in_the_tune_fonts_only(monkeypatch):
    X, y = typed_digits(30)
    again, _ = typed_digits(30)
    assert X.shape == (30, 1, 28, 28) and X.dtype == torch.float32 and torch.equal(X, again)
    assert y.tolist() == [i % 10 for i in range(30)]
    assert X.amin().item() == pytest.approx(-MNIST_MEAN / MNIST_STD)  # black paper, as a normalised MNIST digit
    assert X.amax().item() == pytest.approx((1 - MNIST_MEAN) / MNIST_STD)  # its strongest ink
    assert not torch.equal(typed_digits(30, seed=8)[0], X)
    assert typed_digits(0)[0].shape == (0, 1, 28, 28)
    fonts_used = set()
    original = non_mnist.font_image
    monkeypatch.setattr(non_mnist, "font_image",
                        lambda digit, rng, fonts: fonts_used.update(fonts) or original(digit, rng, fonts))
    typed_digits(10)
    assert fonts_used == set(FONTS["tune"])  # the report part's fonts stay unseen in training
