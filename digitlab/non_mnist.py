"""A test bench of digits that are not from MNIST: typed in fonts, drawn with a pen, photographed, scanned small.

Everything is made here, from a seed, with no download: `foreign_bench("tune")` for choosing
preprocessing and augmentation, `foreign_bench("report")` (other seeds, other fonts) for the
numbers one reports. `accuracy_by_source` scores a network on it through `to_mnist`.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torch import Tensor, nn

from digitlab.data import normalize
from digitlab.errors import DigitlabError, WrongTypeError
from digitlab.preprocess import to_mnist
from digitlab.strokes import draw_strokes, pen_digit
from digitlab.train import predict

SOURCES = ("font", "pen", "photo", "lowres")
# Digit-bearing fonts bundled with matplotlib (so present wherever digitlab is installed), split in two:
# the report part is typed in fonts the tune part never sees. cmmi10 (old-style numerals) is left out.
FONTS = {
    "tune": ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Oblique.ttf",
             "DejaVuSerif.ttf", "DejaVuSerif-BoldItalic.ttf", "STIXGeneral.ttf", "STIXGeneralBolIta.ttf",
             "cmr10.ttf", "cmss10.ttf"],
    "report": ["DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono-Bold.ttf",
               "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf",
               "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "cmb10.ttf", "cmti10.ttf", "cmtt10.ttf"],
}
SEEDS = {"tune": 13, "report": 1013}  # each source draws from its own stream: [seed, source index]
TYPED_SEED = 7  # typed training digits (`typed_digits`): a stream of their own, in the tune part's fonts
PEN_WIDTHS = (8, 14, 22, 30, 40)  # drawing-pad pixels (the pad is 280x280 and draws 22 wide)
PAD_SIZE = 280
LOWRES_SIZES = (8, 16)


@dataclass
class ForeignBench:
    """Raw pictures (uint8, gray [H, W] or RGB [H, W, 3]) with their digits, sources and what drew them."""

    images: list[np.ndarray]
    labels: Tensor
    sources: list[str]
    origins: list[str]  # the font file, or "pen" for synthetic strokes
    split: str

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, source: str) -> ForeignBench:
        """The images of one source."""
        keep = [i for i, s in enumerate(self.sources) if s == source]
        return ForeignBench([self.images[i] for i in keep], self.labels[keep], [self.sources[i] for i in keep],
                            [self.origins[i] for i in keep], self.split)


# Fonts

def font_path(name: str) -> Path:
    """The path of one of matplotlib's bundled TrueType fonts."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
    if not path.exists():
        raise DigitlabError(f"font {name} is not among matplotlib's bundled fonts in {path.parent}; "
                            "reinstall matplotlib or pick a font from that folder.")
    return path


_FONT_CACHE: dict[tuple[str, int], ImageFont.FreeTypeFont] = {}


def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    """A bundled font at `size` pixels, loaded once."""
    key = (name, size)
    if key not in _FONT_CACHE:
        _FONT_CACHE[key] = ImageFont.truetype(str(font_path(name)), size)
    return _FONT_CACHE[key]


def typed_digit(digit: int, font: str, height: int, rng: np.random.Generator) -> Image.Image:
    """Ink mask (mode L, 255 = ink) of `digit` typed in `font`, slanted and rotated a little, cropped to the ink."""
    f = load_font(font, height)
    mask = Image.new("L", (2 * height, 2 * height), 0)
    ImageDraw.Draw(mask).text((height // 2, height // 4), str(digit), font=f, fill=255)
    shear, angle = rng.uniform(-0.25, 0.25), np.radians(rng.uniform(-8, 8))
    # One affine map about the centre: output (x, y) reads input A @ (x - c, y - c) + c, A = shear @ rotation.
    cos, sin = np.cos(angle), np.sin(angle)
    a, b, d, e = cos + shear * sin, -sin + shear * cos, sin, cos
    c = float(height)
    coeffs = (a, b, c - a * c - b * c, d, e, c - d * c - e * c)
    mask = mask.transform(mask.size, Image.AFFINE, coeffs, resample=Image.BILINEAR)
    return mask.crop(mask.getbbox())


# The four sources: each makes one raw picture of `digit`.

def font_image(digit: int, rng: np.random.Generator, fonts: list[str]) -> tuple[np.ndarray, str]:
    """A typed digit: dark on light (a quarter light on dark, as on a dark screen), any size from 24 to 200 pixels."""
    font = fonts[rng.integers(len(fonts))]
    canvas = int(rng.integers(24, 201))
    mask = typed_digit(digit, font, max(8, round(canvas * rng.uniform(0.45, 0.9))), rng)
    scale = min(1.0, 0.95 * canvas / max(mask.size))
    if scale < 1:
        mask = mask.resize((max(1, round(mask.width * scale)), max(1, round(mask.height * scale))), Image.BOX)
    frame = Image.new("L", (canvas, canvas), 0)
    frame.paste(mask, (int(rng.integers(0, canvas - mask.width + 1)), int(rng.integers(0, canvas - mask.height + 1))))
    a = np.asarray(frame, dtype=np.float32) / 255
    paper, ink = rng.uniform(200, 255), rng.uniform(0, 90)
    if rng.random() < 0.25:
        paper, ink = 255 - paper, 255 - ink
    return np.round(paper + (ink - paper) * a).astype(np.uint8), font


def typed_digits(n: int, seed: int = TYPED_SEED) -> tuple[Tensor, Tensor]:
    """`n` typed digits (0 to 9 in turn) in the tune part's fonts, through `to_mnist`: normalised images and labels."""
    rng = np.random.default_rng(seed)
    labels = [i % 10 for i in range(n)]
    images = [to_mnist(font_image(digit, rng, FONTS["tune"])[0]) for digit in labels]
    return normalize(torch.stack(images) if images else torch.zeros(0, 28, 28)), torch.tensor(labels, dtype=torch.int64)


def pen_image(digit: int, rng: np.random.Generator) -> np.ndarray:
    """A digit drawn on the 280x280 pad: white strokes on black, as `DrawingPad.image()` gives them."""
    strokes = pen_digit(digit, rng, PAD_SIZE)
    width = PEN_WIDTHS[rng.integers(len(PEN_WIDTHS))] * rng.uniform(0.9, 1.1)
    return np.asarray(draw_strokes(strokes, PAD_SIZE, width))


def ink_mask(digit: int, rng: np.random.Generator, fonts: list[str], size: int) -> tuple[np.ndarray, str]:
    """Float ink coverage [size, size] in [0, 1] of a handwritten (even draws) or typed digit, and its origin."""
    if rng.random() < 0.5:
        strokes = pen_digit(digit, rng, size)
        width = size * rng.uniform(0.025, 0.09)
        return np.asarray(draw_strokes(strokes, size, width, scale=2), dtype=np.float32) / 255, "pen"
    font = fonts[rng.integers(len(fonts))]
    mask = typed_digit(digit, font, round(size * rng.uniform(0.45, 0.8)), rng)
    mask.thumbnail((int(size * 0.9), int(size * 0.9)), Image.BOX)
    frame = Image.new("L", (size, size), 0)
    frame.paste(mask, (int(rng.integers(0, size - mask.width + 1)), int(rng.integers(0, size - mask.height + 1))))
    return np.asarray(frame, dtype=np.float32) / 255, font


def perspective_coeffs(size: tuple[int, int], rng: np.random.Generator, amount: float) -> list[float]:
    """PIL PERSPECTIVE coefficients that move each corner of the picture by up to `amount` of its size."""
    w, h = size
    dst = np.array([(0, 0), (w, 0), (w, h), (0, h)], dtype=float)
    src = dst + rng.uniform(-amount, amount, (4, 2)) * (w, h)
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows), src.reshape(-1)).tolist()


def photo_image(digit: int, rng: np.random.Generator, fonts: list[str]) -> tuple[np.ndarray, str]:
    """A phone photo of a digit on paper: off-white or lined, uneven light, slight perspective, blur, noise, JPEG."""
    size = int(rng.integers(80, 241))
    a, origin = ink_mask(digit, rng, fonts, size)
    paper = rng.uniform(200, 250) * np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.86, 1.0)], dtype=np.float32)
    page = np.broadcast_to(paper, (size, size, 3)).copy()
    if rng.random() < 0.4:  # lined paper: faint blue rules, sometimes a red margin
        gap = rng.uniform(0.12, 0.3) * size
        for y in np.arange(rng.uniform(0, gap), size, gap):
            page[int(y): int(y) + max(1, size // 150)] *= (0.82, 0.88, 0.97)
        if rng.random() < 0.3:
            x = int(rng.uniform(0.03, 0.2) * size)
            page[:, x: x + max(1, size // 150)] *= (0.97, 0.8, 0.8)
    ink = (rng.choice([(25, 25, 30), (30, 40, 110), (70, 70, 75)]) + rng.uniform(-15, 15, 3)).astype(np.float32)
    strength = np.float32(rng.uniform(0.7, 1.0))  # pencil and a dry pen leave less than full ink
    t = np.arange(size, dtype=np.float32) / size
    direction = rng.uniform(0, 2 * np.pi)
    tilt, corners = rng.uniform(0, 0.35), rng.uniform(0, 0.25)  # light falls across the page and to the corners
    across = 1 - tilt * np.cos(direction) * t - corners * (t - 0.5) ** 2
    down = -tilt * np.sin(direction) * t - corners * (t - 0.5) ** 2
    light = (across[None, :] + down[:, None]).astype(np.float32)
    a *= strength
    on_paper = Image.fromarray(np.clip(page + (ink - page) * a[..., None], 0, 255).astype(np.uint8))
    on_paper = on_paper.transform(on_paper.size, Image.PERSPECTIVE, perspective_coeffs(on_paper.size, rng, 0.06),
                                  resample=Image.BILINEAR, fillcolor=tuple(int(c) for c in paper))
    rgb = np.asarray(on_paper, dtype=np.float32) * light[..., None]  # the light falls on the tilted page
    picture = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    picture = picture.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 2.0) * size / 160))
    sigma = np.float32(rng.uniform(1, 8))
    noisy = np.asarray(picture, dtype=np.float32) + sigma * rng.standard_normal((size, size, 3), dtype=np.float32)
    picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=int(rng.integers(25, 91)))
    return np.asarray(Image.open(buffer).convert("RGB")), origin


def lowres_image(digit: int, rng: np.random.Generator, fonts: list[str]) -> tuple[np.ndarray, str]:
    """A digit scanned tiny: shrunk (area average) to 8x8 or 16x16 and handed over at that size, dark on light."""
    small = LOWRES_SIZES[rng.integers(len(LOWRES_SIZES))]
    a, origin = ink_mask(digit, rng, fonts, 8 * small)
    ys, xs = np.nonzero(a > 0.1)
    margin = rng.uniform(0.0, 0.15) * 8 * small  # tight crops too: a scan cut close to the digit
    top, bottom = max(0, int(ys.min() - margin)), min(a.shape[0], int(ys.max() + margin) + 1)
    left, right = max(0, int(xs.min() - margin)), min(a.shape[1], int(xs.max() + margin) + 1)
    side = max(bottom - top, right - left)
    square = np.zeros((side, side), dtype=np.float32)
    h, w = bottom - top, right - left
    square[(side - h) // 2: (side - h) // 2 + h, (side - w) // 2: (side - w) // 2 + w] = a[top:bottom, left:right]
    shrunk = np.asarray(Image.fromarray(square).resize((small, small), Image.BOX))
    paper, ink = rng.uniform(210, 255), rng.uniform(0, 60)
    return np.round(paper + (ink - paper) * np.clip(shrunk, 0, 1)).astype(np.uint8), origin


def foreign_bench(split: str = "tune", per_digit: int = 50, sources: tuple[str, ...] = SOURCES) -> ForeignBench:
    """`per_digit` pictures of each digit from each source; "tune" and "report" differ in seeds and fonts."""
    if split not in SEEDS:
        raise DigitlabError(f"split must be 'tune' or 'report', not {split!r}.")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise DigitlabError(f"unknown source(s) {unknown}; the sources are {list(SOURCES)}.")
    if isinstance(per_digit, bool) or not isinstance(per_digit, int) or per_digit < 1:
        raise DigitlabError(f"per_digit must be a whole number of at least 1, not {per_digit!r}.")
    fonts = FONTS[split]
    images, labels, names, origins = [], [], [], []
    for source in sources:
        rng = np.random.default_rng([SEEDS[split], SOURCES.index(source)])
        for _ in range(per_digit):
            for digit in range(10):
                if source == "font":
                    image, origin = font_image(digit, rng, fonts)
                elif source == "pen":
                    image, origin = pen_image(digit, rng), "pen"
                elif source == "photo":
                    image, origin = photo_image(digit, rng, fonts)
                else:
                    image, origin = lowres_image(digit, rng, fonts)
                images.append(image)
                labels.append(digit)
                names.append(source)
                origins.append(origin)
    return ForeignBench(images, torch.tensor(labels), names, origins, split)


# Scoring

def mnist_inputs(bench: ForeignBench, preprocess: Callable = to_mnist) -> tuple[Tensor, Tensor]:
    """Every picture through `preprocess`: images [N, 28, 28] and whether each worked (a failure is a blank)."""
    out, ok = torch.zeros(len(bench), 28, 28), torch.ones(len(bench), dtype=torch.bool)
    for i, image in enumerate(bench.images):
        try:
            out[i] = torch.as_tensor(preprocess(image))
        except DigitlabError:  # "No digit found": counted as a wrong answer
            ok[i] = False
    return out, ok


def _predictions(model, X: Tensor) -> Tensor:
    """Predicted digits of a network, a `Predictor` (anything with .predict) or a function of images [N, 28, 28]."""
    if isinstance(model, nn.Module):
        return predict(model, X)
    if hasattr(model, "predict"):
        return model.predict(X)
    if callable(model):
        return torch.as_tensor(model(X))
    raise WrongTypeError(f"model must be a network, a Predictor or a function of images, not {type(model).__name__}.")


def accuracy_by_source(model, bench: ForeignBench, preprocess: Callable = to_mnist) -> dict[str, float]:
    """Share of each source's pictures that `model` reads correctly after `preprocess`, and over all ("all")."""
    X, ok = mnist_inputs(bench, preprocess)
    correct = (_predictions(model, X).cpu() == bench.labels) & ok
    sources = np.array(bench.sources)
    result = {s: correct[torch.from_numpy(sources == s)].float().mean().item() for s in dict.fromkeys(bench.sources)}
    result["all"] = correct.float().mean().item()
    return result
