"""Digits as the web page would send them: pen strokes replayed over time, or canvas PNGs.

The page's canvas is 280 px, exports transparent PNGs with the ink in the alpha channel, and
sends the strokes drawn so far while the pen moves. Every tool that pretends to be the page
(the client, the load test, the benchmarks) builds its inputs here, so they all send the
same thing.
"""

from __future__ import annotations

import base64
import functools
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CANVAS = 280  # the web page's canvas, in px; UNIPEN digits are fitted to it by model.data
CANVAS_PEN_PX = 18  # a typical seed page's lineWidth on a 280 px canvas
PEN_POINTS_PER_SECOND = 100.0  # UNIPEN tablets sample at 60-200 Hz
PEN_SECONDS = (0.3, 3.0)  # how long drawing one digit may take, whatever its point count

Strokes = list[list[list[float]]]


@dataclass(frozen=True)
class Sample:
    """One digit (label an int) or number (label a str of digits) to draw: canvas strokes
    (y down) and its label when known."""

    strokes: Strokes
    label: int | str | None = None


def as_strokes(strokes: Sequence[Any]) -> Strokes:
    """Plain JSON lists rounded to 0.1 px: a canvas reports no finer, and it keeps frames small."""
    return [[[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(s)] for s in strokes]


@functools.cache
def unipen_samples(
    path: str | os.PathLike | None = None, heldout_only: bool = True
) -> list[Sample]:
    """UNIPEN digits on the canvas; by default only the writers the model never trained on."""
    from model.data import load_unipen, unipen_split

    records = load_unipen(path)
    if heldout_only:
        records = unipen_split(records)[1]
    return [Sample(as_strokes(r["strokes"]), int(r["label"])) for r in records]


@functools.cache
def number_samples(path: str | os.PathLike | None = None) -> list[Sample]:
    """The dev writers' numbers of 2-8 digits, as written (model.evaluate_numbers lays them
    on a wide canvas); for number mode."""
    from model.evaluate_numbers import load_numbers

    return [Sample(as_strokes(n["strokes"]), n["label"]) for n in load_numbers(path)]


class PenReplay:
    """The strokes drawn after t seconds, with the pen moving at a steady point rate."""

    def __init__(self, strokes: Strokes, points_per_second: float = PEN_POINTS_PER_SECOND):
        self.strokes = strokes
        self.total = sum(len(s) for s in strokes)
        low, high = PEN_SECONDS
        self.duration = min(max(self.total / points_per_second, low), high)

    def count_at(self, t: float) -> int:
        """Points on the canvas t seconds after pen-down (at least one: the pen touched)."""
        if t >= self.duration:
            return self.total
        return max(1, min(self.total, int(self.total * t / self.duration)))

    def time_of(self, count: int) -> float:
        """When the count-th point appears."""
        return self.duration * count / self.total

    def prefix(self, count: int) -> Strokes:
        """The first `count` points, split into strokes as drawn: the page's growing snapshot."""
        out: Strokes = []
        for stroke in self.strokes:
            if count <= 0:
                break
            out.append(stroke[:count])
            count -= len(stroke)
        return out


# --- canvas PNGs: what the page sends when it sends an image ------------------------------


def png_data_url(data: bytes, mime: str = "image/png") -> str:
    """The `image` field of a snapshot or predict: images travel as data URLs."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def digit_image_png(image: np.ndarray, size: int = CANVAS) -> bytes:
    """A 28x28 MNIST digit (ink = 255) scaled to fill the canvas, as the canvas exports it."""
    from PIL import Image

    alpha = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    return _ink_png(alpha)


def strokes_png(strokes: Strokes, pen_px: int = CANVAS_PEN_PX, size: int = CANVAS) -> bytes:
    """Strokes inked with a round pen, as the canvas exports them: what an image client sends.

    Rendered here rather than by the server's code so that a benchmark pays for it before its
    clock starts, as a browser would.
    """
    from PIL import Image, ImageDraw

    ink = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(ink)
    for stroke in strokes:
        points = [tuple(p) for p in stroke]
        if len(points) > 1:
            draw.line(points, fill=255, width=pen_px, joint="curve")
        r = pen_px / 2
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return _ink_png(ink)


def _ink_png(ink: Any) -> bytes:
    """A PIL "L" image of ink coverage as a browser canvas PNG: transparent, ink in alpha."""
    from PIL import Image

    rgba = Image.new("RGBA", ink.size, (0, 0, 0, 0))
    rgba.putalpha(ink)
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    return buf.getvalue()
