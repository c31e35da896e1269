"""Turn any picture of a digit into a 28x28 MNIST-style image, the way MNIST itself was made."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from digitlab.errors import DigitlabError, MissingFileError, NoDigitError, WrongTypeError

# MNIST's recipe: the digit's bounding box is scaled to fit 20x20 pixels (keeping its aspect
# ratio), then the digit is placed in a 28x28 frame with its centre of mass at pixel (14, 14).
BOX = 20
MIN_SIZE = 8   # pixels on a picture's longer side: the tiniest scans of the foreign-digit bench
SIZE = 28
CENTRE = 14.0
# A pixel counts as ink when it is at least this far from the background, as a share of the
# darkest (or brightest) stroke; fainter specks (paper texture, JPEG noise) are dropped.
INK_THRESHOLD = 0.25
# Below this contrast (on a 0-1 scale) between ink and background the picture is blank.
MIN_CONTRAST = 0.1
# Ink whose bounding box is smaller than this share of the picture's longer side, or than this many
# pixels, is a speck (dust, a stray tap on the pad), not a digit; MNIST digits span 20 of 28 pixels.
MIN_INK_SHARE = 0.1
MIN_INK_PIXELS = 3
# Pictures smaller than MNIST's 28 pixels (a tiny scan, a thumbnail) are enlarged smoothly (bicubic) to at least
# this many pixels before the ink is found, so that thresholding does not leave blocky strokes.
TINY_TO = 28
# A tiny picture is cut close to its digit, so ink covers much of its border and a surface fitted to the border
# would take strokes for paper; its paper is one flat level instead: this percentile of its pixels.
PAPER_PERCENTILE = 20
# Ink that is not connected to the digit and holds less than this share of the largest stroke's ink
# (a dot on the paper, a stretch of a ruled line, a dark speck in a photo's corner) is dropped.
MIN_STROKE_SHARE = 0.1
# Ink in more than this share of a picture's parts (`pieces`' grid cells) is noise, a texture or a dark page,
# not a digit: MNIST's test digits, even cropped to one pixel around the ink, reach at most 0.70.
MAX_INK_SHARE = 0.9
# Pieces of ink that each hold this share of the largest piece's ink, with a gap between them across the
# picture, are digits side by side (on the 10,000 MNIST test digits, enlarged 3 times, this refuses none) ...
SIDE_BY_SIDE_SHARE = 0.35
SIDE_BY_SIDE_HEIGHT = 0.6   # ... and each at least this share of the tallest one's height


def as_grayscale(image) -> np.ndarray:
    """A PIL image, file path, numpy array or tensor (gray, RGB or RGBA) -> float gray [H, W] in [0, 1]."""
    if isinstance(image, (str, Path)):
        image = _open(image)
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        image = _from_pil(as_viewed(image))
    if isinstance(image, Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise WrongTypeError(f"image must be a PIL image, file path, numpy array or torch tensor, "
                        f"not {type(image).__name__}.")
    x = image
    if x.ndim == 3 and x.shape[0] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
        x = np.moveaxis(x, 0, -1)  # channels first -> channels last
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if not (x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (3, 4))):
        raise DigitlabError(f"image must be gray [H, W], RGB [H, W, 3] or RGBA [H, W, 4]; "
                            f"got shape {list(image.shape)}.")
    if min(x.shape[:2]) < 2:
        raise DigitlabError(f"image is too small to hold a digit: {x.shape[1]}x{x.shape[0]} pixels.")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255
    elif x.dtype == np.bool_:
        x = x.astype(np.float32)
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise DigitlabError("image contains NaN or infinite values.")
        if x.min() < 0 or x.max() > 1:
            raise DigitlabError(f"float images must hold values in [0, 1]; this one ranges from {x.min():.3g} "
                             f"to {x.max():.3g}. Divide 0-255 pixels by 255.")
    else:
        raise WrongTypeError(f"image pixels must be uint8 (0-255), bool or float (0-1), not {x.dtype}.")
    if x.ndim == 3:
        gray = x[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if x.shape[-1] == 4:  # transparent pixels are background: lay the picture on white paper
            alpha = x[..., 3]
            gray = gray * alpha + (1 - alpha)
        x = gray
    return np.clip(x, 0, 1)


def as_viewed(image):
    """A PIL image turned upright as a viewer shows it: phones store a photo as taken and record in its EXIF
    data how to turn it."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def _from_pil(image) -> np.ndarray:
    """A PIL image in any mode and bit depth -> uint8 gray or RGBA, or float gray in [0, 1]."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):  # 16- and 32-bit integers, 32-bit floats
        x = np.asarray(image).astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        top = 1.0 if mode == "F" and hi <= 1 else 255.0 if hi <= 255 and not mode.startswith("I;16") else 65535.0
        if lo < 0 or hi > top:
            raise DigitlabError(f"a mode {mode} picture with values from {lo:.3g} to {hi:.3g}: digitlab reads "
                                "pixel values from 0 to 1, 255 or 65535. Save it as an 8- or 16-bit picture.")
        return (x / top).astype(np.float32)
    if mode in ("LA", "La", "PA", "RGBA", "RGBa", "P") or "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))
    for target in ("L", "RGB"):  # LAB, for one, converts to RGB only
        with contextlib.suppress(ValueError):
            return np.asarray(image.convert(target))
    raise DigitlabError(f"pictures in PIL mode {mode} cannot be read; save it as RGB or grayscale.")


def _open(path: str | Path):
    """Open an image file with PIL, with a clear error if it is missing or not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im
    except FileNotFoundError:
        raise MissingFileError(f"No image file at {path}.") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DigitlabError(f"{path} is not an image file PIL can read ({err}).") from err


def border(x: np.ndarray) -> np.ndarray:
    """The outermost pixels of a picture [H, W]: top row, bottom row, left column, right column."""
    return np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])


def ink_bright(image) -> np.ndarray:
    """The picture as gray [H, W] in [0, 1] with the ink bright, like MNIST: a light page (by its border) is flipped."""
    x = as_grayscale(image)
    return 1 - x if float(np.median(border(x))) > 0.5 else x


def strength(x: np.ndarray, paper: np.ndarray | float) -> np.ndarray:
    """How far each pixel of `x` rises above the `paper`, as a share of the strongest stroke; faint specks are 0."""
    above = x - paper
    contrast = float(above.max())
    if contrast < MIN_CONTRAST:
        raise NoDigitError(
            f"No digit found: the picture is blank or almost uniform (ink-to-background contrast {contrast:.2f}, "
            f"needs at least {MIN_CONTRAST}). Draw or photograph a darker, thicker digit.")
    s = np.clip(above / contrast, 0, 1).astype(np.float32)
    s[s < INK_THRESHOLD - 1e-6] = 0  # the margin keeps float rounding (e.g. of 255 - x) from deciding
    return s


def ink(image, flat: bool = False) -> np.ndarray:
    """Ink strength [H, W] in [0, 1] (1 = strongest stroke, 0 = background), for dark-on-light or light-on-dark.

    The paper is a smooth surface fitted to the picture's border, so uneven light on a photographed page
    is not taken for ink, or one level (PAPER_PERCENTILE) if `flat`; ink not connected to the digit's strokes
    and much fainter in total is dropped.
    """
    x = ink_bright(image)
    paper = np.float32(np.percentile(x, PAPER_PERCENTILE)) if flat else background(x)
    return main_strokes(strength(x, paper))


def background(x: np.ndarray, rounds: int = 3) -> np.ndarray:
    """The paper's brightness [H, W]: a quadratic surface fitted to the border, ignoring ink that touches it."""
    h, w = x.shape
    u, v = np.linspace(-1, 1, w, dtype=np.float32), np.linspace(-1, 1, h, dtype=np.float32)
    ones_u, ones_v = np.ones(w, dtype=np.float32), np.ones(h, dtype=np.float32)
    eu = np.concatenate([u, u, -ones_v, ones_v])  # the coordinates of `border(x)`, in its order
    ev = np.concatenate([-ones_u, ones_u, v, v])
    b = border(x)
    A = np.stack([np.ones_like(eu), eu, ev, eu * eu, ev * ev, eu * ev], 1)
    paper = np.ones(len(b), dtype=bool)
    for _ in range(rounds):  # refit without the border pixels far on the ink side of the surface
        coef = np.linalg.lstsq(A[paper], b[paper], rcond=None)[0]
        residual = b - A @ coef
        spread = 1.4826 * float(np.median(np.abs(residual[paper]))) + 0.01
        now = residual < 3 * spread + 0.01
        if (now == paper).all() or now.sum() < 6:
            break
        paper = now
    c0, cu, cv, cuu, cvv, cuv = (float(c) for c in coef)
    surface = (c0 + cu * u + cuu * u * u)[None, :] + (cv * v + cvv * v * v)[:, None] + cuv * np.outer(v, u)
    return surface.astype(np.float32)


def pieces(levels: np.ndarray, grid: int = 32) -> tuple[np.ndarray, np.ndarray, int]:
    """The connected pieces of ink: (piece number of each grid cell, 0 for none; ink of each piece; cell size).

    Pieces are found on a grid of at most `grid` x `grid` cells (a cell holding any ink is ink), which keeps
    this fast on large pictures; pieces closer than a cell count as one.
    """
    h, w = levels.shape
    cell = -(-max(h, w) // grid)
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), dtype=np.float32)
    padded[:h, :w] = levels
    mass = padded.reshape(gh, cell, gw, cell).sum((1, 3))  # ink per cell
    mask = torch.from_numpy((mass > 0).astype(np.float32))[None, None]
    label = torch.arange(1, gh * gw + 1, dtype=torch.float32).reshape(1, 1, gh, gw) * mask  # exact below 2**24
    while True:  # every ink cell takes the largest label among its ink neighbours, until nothing changes
        spread = F.max_pool2d(label, 3, stride=1, padding=1) * mask
        if torch.equal(spread, label):
            break
        label = spread
    label = label[0, 0].numpy().astype(np.int64)
    piece_mass = np.bincount(label.ravel(), weights=mass.ravel(), minlength=gh * gw + 1)
    piece_mass[0] = 0
    return label, piece_mass, cell


def main_strokes(levels: np.ndarray, grid: int = 32) -> np.ndarray:
    """Keep the connected pieces of ink (`pieces`) that hold at least MIN_STROKE_SHARE of the largest one's ink."""
    h, w = levels.shape
    label, piece_mass, cell = pieces(levels, grid)
    keep = (piece_mass >= MIN_STROKE_SHARE * piece_mass.max())[label]
    keep = keep.repeat(cell, 0).repeat(cell, 1)[:h, :w]
    return np.where(keep, levels, 0).astype(np.float32)


def check_one_digit(levels: np.ndarray) -> None:
    """Refuse ink that is not one digit: ink over most of the picture (noise, a texture, a dark page), or
    large pieces of ink side by side with a gap between them (two digits or more)."""
    label, piece_mass, _ = pieces(levels)
    share = float((label > 0).mean())
    if share > MAX_INK_SHARE:
        raise NoDigitError(f"No digit found: ink is spread over {share:.0%} of the picture (noise, a texture or a "
                           "dark page?). Photograph one digit on plain paper.")
    big = np.flatnonzero(piece_mass >= SIDE_BY_SIDE_SHARE * piece_mass.max())
    rows = {k: np.flatnonzero((label == k).any(1)) for k in big}
    height = max(r[-1] - r[0] + 1 for r in rows.values())
    tall = [k for k in big if rows[k][-1] - rows[k][0] + 1 >= SIDE_BY_SIDE_HEIGHT * height]   # not a 5's bar
    spans = sorted(tuple(np.flatnonzero((label == k).any(0))[[0, -1]]) for k in tall)   # columns of each piece
    reach = spans[0][1]
    for first, last in spans[1:]:
        if first > reach + 1:   # a column without ink of a big piece between them
            raise NoDigitError(f"{len(spans)} pieces of ink side by side, each about as large as a digit: digitlab "
                               "reads one digit at a time. Crop the picture to one digit.")
        reach = max(reach, last)


def enlarge_tiny(x: np.ndarray, size: int = TINY_TO) -> np.ndarray:
    """A picture smaller than `size` pixels (longer side), enlarged (bicubic) a whole number of times to reach it."""
    factor = -(-size // max(x.shape))
    if factor <= 1:
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None]
    return F.interpolate(t, scale_factor=factor, mode="bicubic", align_corners=False)[0, 0].clamp(0, 1).numpy()


def crop_to_ink(levels: np.ndarray) -> np.ndarray:
    """The smallest rectangle that holds every ink pixel; a speck of ink is no digit."""
    rows, cols = np.flatnonzero(levels.any(1)), np.flatnonzero(levels.any(0))
    size = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    if size < max(MIN_INK_PIXELS, MIN_INK_SHARE * max(levels.shape)):
        raise NoDigitError(
            f"No digit found: the only ink is a speck of {rows[-1] - rows[0] + 1}x{cols[-1] - cols[0] + 1} pixels in "
            f"a {levels.shape[1]}x{levels.shape[0]} picture. Draw the digit larger or crop closer to it.")
    return levels[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]


def fit_box(digit: np.ndarray, box: int = BOX) -> np.ndarray:
    """Scale so the longer side is `box` pixels, keeping the aspect ratio; the strongest ink stays 1, as in MNIST."""
    h, w = digit.shape
    scale = box / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = torch.from_numpy(np.ascontiguousarray(digit))[None, None]
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    x = x[0, 0].clamp(0, 1)
    return (x / x.max()).numpy()


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    """(row, column) of the ink's centre of mass, in pixel coordinates."""
    total = digit.sum()
    rows, cols = np.arange(digit.shape[0]), np.arange(digit.shape[1])
    return float(digit.sum(1) @ rows / total), float(digit.sum(0) @ cols / total)


def centre_in_frame(digit: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Paste `digit` into a size x size frame with its centre of mass at the frame's centre (whole pixels)."""
    h, w = digit.shape
    cy, cx = centre_of_mass(digit)
    top = int(np.clip(round(CENTRE - cy), 0, size - h))
    left = int(np.clip(round(CENTRE - cx), 0, size - w))
    frame = np.zeros((size, size), dtype=np.float32)
    frame[top: top + h, left: left + w] = digit
    return frame


def preprocess_steps(image) -> dict[str, np.ndarray]:
    """Every stage of `to_mnist` as a picture: input, ink, cropped, scaled (20x20 box), centred (28x28)."""
    gray = as_grayscale(image)
    if max(gray.shape) < MIN_SIZE:
        raise NoDigitError(f"image is too small to hold a digit: {gray.shape[1]}x{gray.shape[0]} pixels; the "
                           f"smallest digitlab reads is {MIN_SIZE} pixels on its longer side.")
    found = ink(enlarge_tiny(gray), flat=max(gray.shape) < TINY_TO)
    check_one_digit(found)
    cropped = crop_to_ink(found)
    scaled = fit_box(cropped)
    return {"input": gray, "ink": found, "cropped": cropped, "scaled": scaled, "centred": centre_in_frame(scaled)}


def to_mnist(image) -> Tensor:
    """Any picture of one digit -> a float32 [28, 28] MNIST-style image: ink high, paper 0, pixels in [0, 1].

    Accepts a PIL image, an image file path, a numpy array or a tensor: gray, RGB or RGBA,
    any size, dark-on-light or light-on-dark. The result goes straight into `digitlab.predict`,
    `Predictor` or `digitlab.normalize`.
    """
    return torch.from_numpy(preprocess_steps(image)["centred"])
