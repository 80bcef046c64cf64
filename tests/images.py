"""Every image the tests send, built in one place.

Canvas-like PNGs (transparent, ink in the alpha channel, as the page exports them), digits
drawn in each polarity, and hostile files: headers claiming any size, decompression bombs,
corrupt pixel data. What a real client sends (the socket tools' canvas PNGs) comes from
`scripts.pen_replay` and is re-exported here, so that a test imports its images from one
module.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image, ImageDraw

from scripts.pen_replay import png_data_url, strokes_png

__all__ = [
    "STYLES",
    "base64_text",
    "canvas_data_url",
    "canvas_png",
    "corrupt_png",
    "crafted_png",
    "data_url",
    "encode",
    "ink_image",
    "jpeg_claiming",
    "large_canvas_data_url",
    "png_bomb",
    "png_chunk",
    "png_data_url",
    "seven",
    "strokes_png",
    "zero_rows",
]

CANVAS = 280  # the page's canvas, in px
STYLES = ("dark_on_light", "light_on_dark", "alpha")  # how a client may colour its ink


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    """The image as a file of format `fmt` (PNG, JPEG, WEBP, GIF, ...)."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def base64_text(data: bytes) -> str:
    """Bare base64, which the `image` field accepts as well as a data URL."""
    return base64.b64encode(data).decode()


def data_url(data: bytes, mime: str = "image/png") -> str:
    """The `image` field of a snapshot or predict."""
    return png_data_url(data, mime)


# --- what the page sends ---------------------------------------------------------------


def canvas_png(
    line: tuple[tuple[float, float], ...] = ((140, 40), (140, 240)),
    size: tuple[int, int] = (CANVAS, CANVAS),
    width: int = 16,
) -> bytes:
    """A transparent canvas with one black line (default: a vertical bar, read as a 1)."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).line(line, fill=(0, 0, 0, 255), width=width)
    return encode(image)


def canvas_data_url(line: tuple[tuple[float, float], ...] = ((140, 40), (140, 240))) -> str:
    return data_url(canvas_png(line))


def large_canvas_data_url(size: int) -> str:
    """A size x size canvas with one vertical line: every pixel is decoded, so it costs the
    server real work (~0.1 s at 2048 px), as a big phone screen's canvas would."""
    line = [[size // 2, size // 8], [size // 2, size * 7 // 8]]
    return png_data_url(strokes_png([line], pen_px=size // 16, size=size))


def corrupt_png(data: bytes | None = None) -> bytes:
    """Header and IEND intact (passes edge validation), pixel data garbage: fails decoding."""
    broken = bytearray(data if data is not None else canvas_png())
    start = broken.index(b"IDAT") + 8
    broken[start : start + 200] = bytes(range(200))
    return bytes(broken)


def ink_image(
    coverage: Image.Image,
    style: str,
    pen: tuple[int, int, int] = (10, 10, 10),
    paper: tuple[int, int, int] = (245, 245, 245),
    colour: tuple[int, int, int] = (30, 30, 200),
) -> Image.Image:
    """Ink coverage (an "L" image, 255 = full ink) as a client may send it: dark pen on light
    paper, light pen on dark paper (pen and paper swapped), or `colour` in the alpha channel
    of a transparent canvas."""
    if style == "alpha":
        image = Image.new("RGBA", coverage.size, (*colour, 0))
        image.putalpha(coverage)
        return image
    if style == "light_on_dark":
        pen, paper = paper, pen
    elif style != "dark_on_light":
        raise ValueError(f"unknown style {style!r}")
    return Image.composite(
        Image.new("RGB", coverage.size, pen), Image.new("RGB", coverage.size, paper), coverage
    )


def seven(style: str) -> Image.Image:
    """A thick "7" on a 200x160 canvas, drawn off-centre, in `style`."""
    coverage = Image.new("L", (200, 160))
    ImageDraw.Draw(coverage).line([(20, 20), (90, 20), (50, 120)], fill=255, width=9)
    return ink_image(coverage, style)


# --- hostile files ---------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def crafted_png(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A valid 8-bit grayscale PNG header of any size, built without the pixels in memory;
    the IDAT chunk holds `idat` (default: an empty zlib stream, i.e. no pixels at all)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"") if idat is None else idat)
        + png_chunk(b"IEND", b"")
    )


def zero_rows(width: int, height: int) -> bytes:
    """A zlib stream of `height` all-zero filtered rows, compressed row by row (small memory)."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    return b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()


def png_bomb(width: int, height: int) -> bytes:
    """Real, all-zero pixel rows: a few kB that decode to width x height bytes."""
    return crafted_png(width, height, zero_rows(width, height))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose frame header is rewritten to claim width x height."""
    data = bytearray(encode(Image.new("L", (8, 8), 255), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
