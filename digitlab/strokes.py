"""Pen strokes of handwritten digits: a few ways to write each digit, bent and placed at random, and drawn
with a round pen as the drawing pad draws them."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

# Each digit as a few strokes in a unit box (x right, y down), several ways to write it.

def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 40) -> np.ndarray:
    """Points along an elliptic arc, angles in degrees counter-clockwise as seen on the page."""
    t = np.radians(np.linspace(start, end, n))
    return np.stack([cx + rx * np.cos(t), cy - ry * np.sin(t)], 1)


def _line(*points: tuple[float, float]) -> np.ndarray:
    """A polyline through `points`."""
    return np.array(points, dtype=float)


def _join(*parts: np.ndarray) -> np.ndarray:
    """One stroke from consecutive pieces."""
    return np.concatenate(parts)


STROKES: dict[int, list[list[np.ndarray]]] = {
    0: [[_arc(0.3, 0.5, 0.28, 0.49, 90, 450)], [_arc(0.3, 0.5, 0.3, 0.47, 100, 470)]],
    1: [[_line((0.3, 0), (0.3, 1))], [_line((0.12, 0.2), (0.32, 0), (0.3, 1))],
        [_line((0.12, 0.18), (0.32, 0), (0.3, 1)), _line((0.12, 1), (0.5, 1))]],
    2: [[_join(_arc(0.3, 0.28, 0.27, 0.27, 160, -30), _line((0.04, 1), (0.6, 1)))],
        [_join(_arc(0.3, 0.27, 0.26, 0.26, 170, -45), _line((0.02, 0.98)),
               _arc(0.14, 0.9, 0.08, 0.08, 180, 360), _line((0.6, 1)))]],
    3: [[_join(_arc(0.3, 0.26, 0.26, 0.25, 150, -90), _arc(0.3, 0.74, 0.29, 0.26, 90, -150))],
        [_join(_line((0.05, 0), (0.55, 0), (0.25, 0.42)), _arc(0.3, 0.7, 0.28, 0.29, 100, -150))]],
    4: [[_line((0.45, 1), (0.45, 0), (0.02, 0.68), (0.6, 0.68))],
        [_line((0.1, 0), (0.04, 0.6), (0.6, 0.6)), _line((0.45, 0.2), (0.45, 1))]],
    5: [[_join(_line((0.55, 0), (0.1, 0), (0.08, 0.45)), _arc(0.3, 0.69, 0.28, 0.3, 130, -140))],
        [_join(_line((0.1, 0.02), (0.08, 0.45)), _arc(0.3, 0.69, 0.28, 0.3, 130, -140)),
         _line((0.1, 0.02), (0.56, 0))]],
    6: [[_join(_line((0.52, 0), (0.28, 0.12), (0.1, 0.38)), _arc(0.3, 0.72, 0.26, 0.27, 170, 530))],
        [_join(_arc(0.62, 0.6, 0.6, 0.6, 95, 180), _arc(0.3, 0.74, 0.27, 0.25, 180, 535))]],
    7: [[_line((0.02, 0), (0.6, 0), (0.22, 1))],
        [_line((0.02, 0), (0.6, 0), (0.22, 1)), _line((0.15, 0.5), (0.5, 0.5))],
        [_line((0.02, 0.12), (0.04, 0), (0.6, 0), (0.3, 1))]],
    8: [[_arc(0.3, 0.25, 0.22, 0.24, 0, 360), _arc(0.3, 0.73, 0.28, 0.27, 90, 450)],
        [_join(_arc(0.3, 0.25, 0.22, 0.24, 20, 270), _arc(0.3, 0.74, 0.28, 0.26, 90, -270),
               _arc(0.3, 0.25, 0.22, 0.24, 270, 380))]],
    9: [[_join(_arc(0.3, 0.27, 0.27, 0.26, 0, 360), _line((0.56, 1)))],
        [_join(_arc(0.3, 0.27, 0.27, 0.26, 10, 370), _line((0.56, 0.55), (0.5, 0.85), (0.35, 1)))]],
}


def wobble(strokes: list[np.ndarray], rng: np.random.Generator, amount: float) -> list[np.ndarray]:
    """Bend the strokes with a smooth random displacement (a hand is no compass) plus a little tremor."""
    k = rng.uniform(1.5, 4.0, (2, 2))
    phase = rng.uniform(0, 2 * np.pi, (2, 2))
    bent = []
    for s in strokes:
        dx = np.sin(k[0, 0] * s[:, 1] + phase[0, 0]) + np.sin(k[0, 1] * s[:, 0] + phase[0, 1])
        dy = np.sin(k[1, 0] * s[:, 0] + phase[1, 0]) + np.sin(k[1, 1] * s[:, 1] + phase[1, 1])
        moved = s + amount * np.stack([dx, dy], 1) / 2
        bent.append(moved + rng.normal(0, amount / 8, s.shape))
    return bent


def resample(stroke: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    """Points every `step` along the stroke, as a mouse reports them: a fast hand gives few, so curves turn angular."""
    seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
    length = np.concatenate([[0], np.cumsum(seg)])
    if length[-1] <= step:
        return stroke[[0, -1]]
    at = np.concatenate([[0], np.arange(rng.uniform(0, step), length[-1], step), [length[-1]]])
    return np.stack([np.interp(at, length, stroke[:, i]) for i in range(2)], 1)


def pen_digit(digit: int, rng: np.random.Generator, size: int) -> list[np.ndarray]:
    """Strokes of a hand-drawn `digit` in canvas pixels: a random way of writing it, bent, slanted, placed."""
    variants = STROKES[digit]
    strokes = wobble(variants[rng.integers(len(variants))], rng, rng.uniform(0.0, 0.06))
    slant, angle = rng.uniform(-0.35, 0.2), np.radians(rng.uniform(-12, 12))
    height = rng.uniform(0.4, 0.85) * size
    width = height * rng.uniform(0.75, 1.25)
    cos, sin = np.cos(angle), np.sin(angle)
    placed = []
    for s in strokes:
        x, y = (s[:, 0] - 0.3 + slant * (s[:, 1] - 0.5)) * width, (s[:, 1] - 0.5) * height
        placed.append(np.stack([cos * x - sin * y, sin * x + cos * y], 1))
    points = np.concatenate(placed)
    lo, hi = points.min(0), points.max(0)
    room = np.maximum(size - (hi - lo), 0) * 0.8
    offset = rng.uniform(0, 1, 2) * room + 0.1 * (size - (hi - lo)) - lo
    step = rng.uniform(0.01, 0.12) * size
    return [resample(s + offset, step, rng) for s in placed]


def draw_strokes(strokes: list[np.ndarray], size: int, width: float, scale: int = 1) -> Image.Image:
    """Strokes drawn as the drawing pad draws them (round pen of `width`), 255 = ink; `scale` > 1 smooths edges."""
    big = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(big)
    r = width * scale / 2
    for s in strokes:
        points = [(float(x) * scale, float(y) * scale) for x, y in s]
        if len(points) > 1:
            draw.line(points, fill=255, width=max(1, round(width * scale)))
        for x, y in points:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return big if scale == 1 else big.resize((size, size), Image.BOX)
