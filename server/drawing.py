"""Validate a client drawing payload at the edge.

Everything here runs on the event loop for every throttled stroke update, so the work is
bounded by `Limits` *before* it is done: sizes are checked before conversion, images are
base64-decoded and opened header-only (full decoding happens later, off the hub, in
`server.preprocess`). Every rejection is a `PayloadError` with a stable `code` that the
protocol exposes, and a sentence that tells the client what was wrong and the limit.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from server.protocol import PayloadError

MAX_SEQ = 2**53  # largest integer a JavaScript number carries exactly
DIGIT = "digit"  # mode: the drawing is one digit (the default)
NUMBER = "number"  # mode: the drawing is a number, read digit by digit (server.segment)
MODES = (DIGIT, NUMBER)
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
_POINT_TYPES = frozenset({list, tuple})
_CONTAINER_TYPES = frozenset({list, tuple, dict})
_NUMBER_TYPES = frozenset({int, float})  # exact types: bool is a subclass of int, not a number
_DATA_URL_PREFIX = "data:image/"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the fixed, empty IEND chunk
_PNG_TAIL = 4096  # tolerate a little trailing junk after IEND, as decoders do


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one payload may make the server do."""

    max_strokes: int = 200
    max_points: int = 20_000  # total over all strokes
    max_image_bytes: int = 2_000_000  # after base64 decoding
    # From the header, before decoding. 4096x4096 would cost ~250 ms of decoding (blocking
    # every live update in that batch) and ~235 MB; 2048x2048 costs ~50 ms.
    max_image_pixels: int = 2048 * 2048
    max_coordinate: float = 1e6  # absolute value


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Drawing:
    """A validated drawing: exactly one of `strokes` and `image` is set.

    `strokes` are float64 arrays of shape (n, 2) in canvas pixels, y pointing down; an empty
    tuple is a valid, empty drawing. `image` is the encoded image (PNG/JPEG/WebP) whose
    header has been checked; `width`/`height` are its header dimensions. `mode` is DIGIT
    (one digit) or NUMBER (strokes only: a number read digit by digit).
    """

    seq: int | None
    strokes: tuple[np.ndarray, ...] | None = None
    image: bytes | None = None
    width: int | None = None
    height: int | None = None
    mode: str = DIGIT

    def same_picture(self, other: Drawing) -> bool:
        """Whether both are exactly the same strokes or image bytes (seq aside), so that
        preprocessing and inference give the same answer for both."""
        if self.mode != other.mode:
            return False
        if self.image is not None or other.image is not None:
            return self.image == other.image
        mine, theirs = self.strokes or (), other.strokes or ()
        return len(mine) == len(theirs) and all(map(np.array_equal, mine, theirs))


def parse_drawing(
    payload: Any, limits: Limits = DEFAULT_LIMITS, require_seq: bool = True
) -> Drawing:
    """Turn an untrusted JSON-decoded payload into a `Drawing` or raise `PayloadError`."""
    if not isinstance(payload, Mapping):
        raise PayloadError("bad_payload", "The payload must be a JSON object.")
    seq = parse_seq(payload.get("seq"), require_seq)
    mode = payload.get("mode", DIGIT)
    if type(mode) is not str or mode not in MODES:
        raise PayloadError("bad_payload", '\'mode\' must be "digit" (the default) or "number".')
    strokes = payload.get("strokes")
    image = payload.get("image")
    if (strokes is None) == (image is None):
        raise PayloadError(
            "bad_payload", "The payload must have exactly one of 'strokes' and 'image'."
        )
    if strokes is not None:
        return Drawing(seq=seq, strokes=_parse_strokes(strokes, limits), mode=mode)
    if mode == NUMBER:
        raise PayloadError("bad_payload", "Number mode reads strokes, not images.")
    data, width, height = _parse_image(image, limits)
    return Drawing(seq=seq, image=data, width=width, height=height)


def parse_seq(seq: Any, required: bool = True) -> int | None:
    """Validate a client sequence number (also used alone, e.g. by the `clear` event)."""
    if seq is None:
        if required:
            raise PayloadError("bad_seq", "The payload must carry an integer 'seq'.")
        return None
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise PayloadError("bad_seq", f"'seq' must be an integer from 0 to {MAX_SEQ}.")
    return seq


def _parse_strokes(strokes: Any, limits: Limits) -> tuple[np.ndarray, ...]:
    # Type checks use map/set so the per-point work stays in C: 20k points cost ~1 ms.
    if not isinstance(strokes, list):
        raise PayloadError("bad_strokes", "'strokes' must be a list of strokes.")
    if len(strokes) > limits.max_strokes:
        raise PayloadError(
            "too_many_strokes",
            f"The drawing has {len(strokes)} strokes; the limit is {limits.max_strokes}.",
        )
    if not set(map(type, strokes)) <= _POINT_TYPES:
        raise PayloadError("bad_strokes", "Each stroke must be a list of [x, y] points.")
    total = sum(map(len, strokes))
    if total > limits.max_points:
        raise PayloadError(
            "too_many_points",
            f"The drawing has {total} points; the limit is {limits.max_points} in total.",
        )
    return tuple(_parse_stroke(stroke, limits.max_coordinate) for stroke in strokes)


def _parse_stroke(stroke: list | tuple, max_coordinate: float) -> np.ndarray:
    if not stroke:
        return np.empty((0, 2), dtype=np.float64)
    if not set(map(type, stroke)) <= _POINT_TYPES or set(map(len, stroke)) != {2}:
        raise PayloadError("bad_strokes", "Each point must be a pair [x, y] of numbers.")
    flat = list(chain.from_iterable(stroke))
    kinds = set(map(type, flat))
    if not kinds <= _NUMBER_TYPES:
        if kinds & _CONTAINER_TYPES:  # a pair of lists: nested one level too deep
            raise PayloadError("bad_strokes", "Each point must be a pair [x, y] of numbers.")
        raise PayloadError("bad_coordinate", "Each coordinate must be a number.")
    try:  # fromiter over a flat list is ~4x faster than np.array over nested lists
        points = np.fromiter(flat, dtype=np.float64, count=len(flat)).reshape(-1, 2)
    except OverflowError:  # a JSON integer too large for a float
        points = np.array([[math.inf, math.inf]])
    if not np.isfinite(points).all() or np.abs(points).max() > max_coordinate:
        raise PayloadError(
            "bad_coordinate",
            f"Coordinates must be finite numbers within ±{max_coordinate:g}.",
        )
    return points


def _parse_image(image: Any, limits: Limits) -> tuple[bytes, int, int]:
    if not isinstance(image, str):
        raise PayloadError("bad_image", "'image' must be a base64 string or a data URL.")
    text = image
    if text.startswith("data:"):
        head, sep, text = text.partition(",")
        if not (sep and head.startswith(_DATA_URL_PREFIX) and head.endswith(";base64")):
            raise PayloadError(
                "bad_image", "'image' must be a base64 data URL of an image (data:image/...)."
            )
    # Refuse oversized text before decoding it: 4 base64 characters carry 3 bytes.
    if len(text) > 4 * (limits.max_image_bytes // 3 + 1):
        raise PayloadError(
            "image_too_large", f"The image is larger than {limits.max_image_bytes} bytes."
        )
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError("bad_image", "'image' is not valid base64.") from None
    if len(data) > limits.max_image_bytes:
        raise PayloadError(
            "image_too_large",
            f"The image is {len(data)} bytes; the limit is {limits.max_image_bytes}.",
        )
    width, height = _image_size(data)
    if width * height > limits.max_image_pixels:
        raise PayloadError(
            "image_too_many_pixels",
            f"The image is {width}x{height} pixels; the limit is {limits.max_image_pixels} pixels.",
        )
    return data, width, height


def _image_size(data: bytes) -> tuple[int, int]:
    """Read the dimensions from the header only: a bomb is refused before it is decoded."""
    if data.startswith(_PNG_SIGNATURE) and _PNG_END not in data[-_PNG_TAIL:]:
        raise PayloadError("bad_image", "The PNG image is truncated (no IEND chunk at the end).")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
            return im.size
    except Image.DecompressionBombError:
        raise PayloadError(
            "image_too_many_pixels", "The image has far too many pixels to decode."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise PayloadError(
            "bad_image", "'image' is not a readable PNG, JPEG or WebP image."
        ) from None
