"""Turn a validated drawing into the 28x28 float32 the model sees, in the MNIST convention.

MNIST digits were cropped to their ink, scaled to fit a 20x20 box keeping the aspect ratio,
anti-aliased, and placed in a 28x28 field so that their centre of mass is at the centre.
Doing exactly that here is what makes the model correct wherever and however large the
digit is drawn. Strokes are rasterised by us (not the client's brush) with a pen width
relative to the digit's size, so a tiny and a huge "7" give the same input.

Pure numpy + Pillow, no web framework: the batcher calls this off the event loop.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image, ImageDraw

from server.drawing import DEFAULT_LIMITS, IMAGE_FORMATS, Drawing, PayloadError

SIZE = 28  # the model's input field
BOX = 20  # the digit's longer side inside the field
# Pen width in output pixels (of the 20 px box). MNIST strokes are ~2-3 px wide; this value
# makes the mean ink mass of rendered pen digits match MNIST's (see tests/test_preprocess.py).
PEN_WIDTH = 2.5
SUPERSAMPLE = 4  # rasterise at 4x and box-average down: cheap, smooth anti-aliasing
INK_FLOOR = 0.1  # image pixels fainter than this (relative to the darkest ink) are noise
_OUT = BOX * SUPERSAMPLE
_COS_SHARP_TURN = math.cos(math.radians(40))  # sharper turns get a round join


def to_model_input(
    drawing: Drawing, max_pixels: int = DEFAULT_LIMITS.max_image_pixels
) -> np.ndarray | None:
    """Preprocess either kind of drawing; None means there is no ink at all.

    Raises `PayloadError("bad_image")` if an image's header was fine but its data is not.
    """
    if drawing.image is not None:
        return image_to_input(drawing.image, max_pixels)
    return render_strokes(drawing.strokes or ())


def render_strokes(strokes: Iterable[ArrayLike], pen_width: float = PEN_WIDTH) -> np.ndarray | None:
    """Rasterise strokes of [x, y] canvas points (y down) straight into the MNIST layout.

    The digit is scaled so that its inked extent (skeleton plus pen) spans the 20 px box
    along its longer side, so the pen width is relative to the digit, the aspect ratio is
    kept (a vertical line stays a thin "1"), and a single point is a pen-sized dot.
    `pen_width` (output pixels) is a parameter so that training can vary it.
    """
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return None
    points = np.concatenate(arrays)
    lo, hi = points.min(axis=0), points.max(axis=0)
    centre = (lo + hi) / 2
    extent = float((hi - lo).max())
    # An extent below float noise is one point drawn repeatedly: draw it as a dot.
    is_dot = extent <= 1e-9 * max(1.0, float(np.abs(centre).max()))
    scale = 0.0 if is_dot else (BOX - pen_width) * SUPERSAMPLE / extent
    radius = pen_width * SUPERSAMPLE / 2

    image = Image.new("L", (_OUT, _OUT))
    draw = ImageDraw.Draw(image)
    width = round(2 * radius)
    for stroke in arrays:
        xy = _simplify((stroke - centre) * scale + _OUT / 2)
        if len(xy) > 1:
            draw.line(xy.ravel().tolist(), fill=255, width=width)
        # Round caps at both ends and round joins at sharp turns (gentle turns leave no
        # visible notch); a one-point stroke is just a dot.
        for x, y in xy[_dot_indices(xy)].tolist():
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    ink = np.asarray(image.reduce(SUPERSAMPLE), dtype=np.float32)
    return _place_by_mass(ink / 255)


def _simplify(xy: np.ndarray) -> np.ndarray:
    """Drop points closer than one supersampled pixel along the path.

    A pen sends a point per input event; at the raster's resolution most of them add
    nothing but per-segment drawing cost. Vectorised: keep the first point of each
    1 px step of arc length, and always the last point.
    """
    if len(xy) < 3:
        return xy
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))))
    step = np.floor(arc)
    keep = np.empty(len(xy), dtype=bool)
    keep[0] = True
    keep[1:] = step[1:] != step[:-1]
    keep[-1] = True
    return xy[keep]


def _dot_indices(xy: np.ndarray) -> np.ndarray:
    """Where round pen dots are needed: both ends, and turns sharper than SHARP_TURN."""
    ends = np.array([0, len(xy) - 1]) if len(xy) > 1 else np.array([0])
    if len(xy) < 3:
        return ends
    d = np.diff(xy, axis=0)
    a, b = d[:-1], d[1:]
    dot = np.einsum("ij,ij->i", a, b)
    norms = np.hypot(*a.T) * np.hypot(*b.T)
    sharp = np.flatnonzero(dot < _COS_SHARP_TURN * norms) + 1
    return np.concatenate((ends, sharp))


def image_to_input(data: bytes, max_pixels: int) -> np.ndarray | None:
    """Decode a PNG/JPEG/WebP and bring its ink into the MNIST layout.

    Transparent pixels are background (a browser canvas keeps its ink in the alpha
    channel); opaque images may be dark-on-light or light-on-dark, told apart by the border.
    """
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            if image.width * image.height > max_pixels:
                raise PayloadError(
                    "image_too_many_pixels",
                    f"The image is {image.width}x{image.height} pixels; "
                    f"the limit is {max_pixels} pixels.",
                )
            ink = _ink_map(image)
    except PayloadError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        raise PayloadError("bad_image", "The image could not be decoded.") from None
    return _fit_and_place(ink)


def to_png_data_url(x: np.ndarray) -> str:
    """A 28x28 grayscale PNG data URL of a model input: shows users what the model sees."""
    pixels = (np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _ink_map(image: Image.Image) -> np.ndarray:
    """Ink strength in [0, 1] per pixel (1 = the strongest ink in the image)."""
    if image.has_transparency_data:
        rgba = image if image.mode in ("RGBA", "LA", "PA") else image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32)
        if alpha.min() < 255:
            return _normalise(alpha)
        image = rgba
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    border = np.concatenate((gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]))
    background = float(np.median(border))
    # Light background: ink is darker than it; dark background: ink is lighter.
    ink = background - gray if background >= 128 else gray - background
    return _normalise(ink)


def _normalise(ink: np.ndarray) -> np.ndarray:
    peak = float(ink.max())
    if peak <= 0:
        return np.zeros_like(ink)
    ink = ink / peak
    ink[ink < INK_FLOOR] = 0
    return ink


def _fit_and_place(ink: np.ndarray) -> np.ndarray | None:
    """Crop to the ink, scale its longer side to 20 px (aspect kept), place by mass."""
    rows = np.flatnonzero(ink.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    factor = BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    # Area averaging when shrinking is MNIST's anti-aliasing; bilinear when enlarging.
    resample = Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR
    fitted = Image.fromarray(np.ascontiguousarray(crop), mode="F").resize(size, resample)
    return _place_by_mass(np.clip(np.asarray(fitted, dtype=np.float32), 0.0, 1.0))


def _place_by_mass(patch: np.ndarray) -> np.ndarray | None:
    """Put a <=20x20 patch into the 28x28 field with its centre of mass at the centre."""
    total = float(patch.sum())
    if total <= 0:
        return None
    height, width = patch.shape
    cy = float(patch.sum(axis=1) @ (np.arange(height) + 0.5)) / total
    cx = float(patch.sum(axis=0) @ (np.arange(width) + 0.5)) / total
    top = min(max(round(SIZE / 2 - cy), 0), SIZE - height)
    left = min(max(round(SIZE / 2 - cx), 0), SIZE - width)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top : top + height, left : left + width] = patch
    return out
