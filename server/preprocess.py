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
INK_FLOOR = 0.1  # image pixels fainter than this (relative to the strongest ink) are noise
_OUT = BOX * SUPERSAMPLE
_COS_SHARP_TURN = math.cos(math.radians(40))  # sharper turns get a round join
_PIXEL_CENTRES = np.arange(SIZE) + 0.5  # float64 centres of a row's or column's pixels


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
    # Work on contiguous (2, n) rows: numpy reduces (n, 2) columns ~30x slower.
    paths = [np.asarray(s, dtype=np.float64).reshape(-1, 2).T.copy() for s in strokes]
    paths = [p for p in paths if p.shape[1]]
    if not paths:
        return None
    points = paths[0] if len(paths) == 1 else np.concatenate(paths, axis=1)
    lo, hi = points.min(axis=1), points.max(axis=1)
    centre = (lo + hi) / 2
    extent = float((hi - lo).max())
    # An extent below float noise is one point drawn repeatedly: draw it as a dot.
    is_dot = extent <= 1e-9 * max(1.0, *np.abs(centre).tolist())
    scale = 0.0 if is_dot else (BOX - pen_width) * SUPERSAMPLE / extent
    radius = pen_width * SUPERSAMPLE / 2

    image = Image.new("L", (_OUT, _OUT))
    draw = ImageDraw.Draw(image)
    width = round(2 * radius)
    for path in paths:
        path = _simplify((path - centre[:, None]) * scale + _OUT / 2)
        if path.shape[1] > 1:
            draw.line(path.T.ravel().tolist(), fill=255, width=width)
        # Round caps at both ends and round joins at sharp turns (gentle turns leave no
        # visible notch); a one-point stroke is just a dot. Boxes in one numpy step: this
        # runs for every live update, ~12 dots each.
        dots = path[:, _dot_indices(path)]
        for box in np.concatenate((dots - radius, dots + radius)).T.tolist():
            draw.ellipse(box, fill=255)
    small = image.reduce(SUPERSAMPLE)
    # frombuffer(tobytes()) is the same pixels as asarray(image), without the array
    # interface's detour (~2 us a render).
    ink = np.frombuffer(small.tobytes(), dtype=np.uint8).reshape(BOX, BOX)
    return _place_by_mass(ink.astype(np.float32) / 255)


def _simplify(path: np.ndarray) -> np.ndarray:
    """Drop points closer than one supersampled pixel along the (2, n) path.

    A pen sends a point per input event; at the raster's resolution most of them add
    nothing but per-segment drawing cost. Vectorised: keep the first point of each
    1 px step of arc length, and always the last point.
    """
    if path.shape[1] < 3:
        return path
    step = path[:, 1:] - path[:, :-1]  # np.diff, without its per-call overhead
    arc = np.floor(np.cumsum(np.hypot(step[0], step[1])))
    keep = np.empty(path.shape[1], dtype=bool)
    keep[0] = True
    keep[1] = arc[0] >= 1
    keep[2:] = arc[1:] != arc[:-1]
    keep[-1] = True
    return path[:, keep]


def _dot_indices(path: np.ndarray) -> np.ndarray:
    """Where round pen dots are needed: both ends, and turns sharper than 40 degrees."""
    n = path.shape[1]
    ends = np.array([0, n - 1]) if n > 1 else np.array([0])
    if n < 3:
        return ends
    dx, dy = path[:, 1:] - path[:, :-1]
    dot = dx[:-1] * dx[1:] + dy[:-1] * dy[1:]
    lengths = np.hypot(dx, dy)
    norms = lengths[:-1] * lengths[1:]
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


def tiny_png() -> bytes:
    """An 8x8 transparent PNG: the warm-up's image drawing (it primes Pillow's decoders)."""
    buffer = io.BytesIO()
    Image.new("LA", (8, 8), (0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


def to_png_data_url(x: np.ndarray) -> str:
    """A 28x28 grayscale PNG data URL of a model input: shows users what the model sees."""
    pixels = (np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _ink_map(image: Image.Image) -> Image.Image:
    """An 8-bit ink image: 255 is the strongest ink in the picture, 0 is background.

    All per-pixel work is Pillow C code on 8-bit data (a channel split and one lookup
    table); numpy only sees the border, to tell the background's shade.
    """
    if image.has_transparency_data:
        rgba = image if image.mode in ("RGBA", "LA", "PA") else image.convert("RGBA")
        alpha = rgba.getchannel("A")
        extrema = alpha.getextrema()
        if extrema[0] < 255:  # transparent pixels are background: the ink is the alpha
            return alpha.point(_ink_lut(np.arange(256.0), extrema))
        image = rgba
    gray = image.convert("L")
    pixels = np.asarray(gray)
    border = np.concatenate((pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]))
    background = float(np.median(border))
    # Light background: ink is darker than it; dark background: ink is lighter.
    levels = np.arange(256.0)
    strength = background - levels if background >= 128 else levels - background
    return gray.point(_ink_lut(strength, gray.getextrema()))


def _ink_lut(strength: np.ndarray, extrema: tuple[int, int]) -> list[int]:
    """A lookup table from pixel value to ink, stretched so the strongest ink is 255.

    Values fainter than INK_FLOOR of the peak are paper texture or compression noise and
    become background, so they neither widen the crop nor pull the centre of mass.
    """
    strength = np.clip(strength, 0.0, None)
    peak = max(strength[extrema[0]], strength[extrema[1]])
    if peak <= 0:
        return [0] * 256
    table = np.where(strength >= INK_FLOOR * peak, np.round(strength * 255 / peak), 0)
    return np.clip(table, 0, 255).astype(np.uint8).tolist()


def _fit_and_place(ink: Image.Image) -> np.ndarray | None:
    """Crop to the ink, scale its longer side to 20 px (aspect kept), place by mass."""
    box = ink.getbbox()
    if box is None:
        return None
    crop = ink.crop(box)
    factor = BOX / max(crop.size)
    size = (max(1, round(crop.width * factor)), max(1, round(crop.height * factor)))
    # Area averaging when shrinking is MNIST's anti-aliasing; bilinear when enlarging.
    resample = Image.Resampling.BOX if factor < 1 else Image.Resampling.BILINEAR
    fitted = crop.resize(size, resample)
    return _place_by_mass(np.asarray(fitted, dtype=np.float32) / 255)


def _place_by_mass(patch: np.ndarray) -> np.ndarray | None:
    """Put a <=20x20 patch into the 28x28 field with its centre of mass at the centre."""
    total = float(patch.sum())
    if total <= 0:
        return None
    height, width = patch.shape
    cy = float(patch.sum(axis=1) @ _PIXEL_CENTRES[:height]) / total
    cx = float(patch.sum(axis=0) @ _PIXEL_CENTRES[:width]) / total
    top = min(max(round(SIZE / 2 - cy), 0), SIZE - height)
    left = min(max(round(SIZE / 2 - cx), 0), SIZE - width)
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top : top + height, left : left + width] = patch
    return out
