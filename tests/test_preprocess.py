"""Preprocessing: strokes and images both end up as MNIST-style 28x28 inputs."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from server.drawing import Drawing, Limits, PayloadError, parse_drawing
from server.preprocess import (
    BOX,
    image_to_input,
    render_strokes,
    tiny_png,
    to_model_input,
    to_png_data_url,
)
from tests.images import STYLES, data_url, encode, ink_image, seven

ROOT = Path(__file__).resolve().parent.parent
MAX_PIXELS = Limits().max_image_pixels
SEVEN = [[[40.0, 40.0], [200.0, 40.0], [110.0, 250.0]], [[80.0, 150.0], [170.0, 150.0]]]


def assert_model_input(x: np.ndarray) -> None:
    assert x.shape == (28, 28) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


def ink_box(x: np.ndarray, threshold: float = 0.0) -> tuple[int, int]:
    """(height, width) of the pixels above threshold."""
    rows = np.flatnonzero((x > threshold).any(axis=1))
    cols = np.flatnonzero((x > threshold).any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    grid = np.arange(28) + 0.5
    return float(x.sum(axis=1) @ grid / x.sum()), float(x.sum(axis=0) @ grid / x.sum())


# --- strokes -----------------------------------------------------------------------------


def test_digit_follows_the_mnist_convention():
    x = render_strokes(SEVEN)
    assert_model_input(x)
    assert max(ink_box(x)) in (BOX, BOX + 1)  # longer side fills the 20 px box
    cy, cx = centre_of_mass(x)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    assert x.max() == 1.0  # the pen's core is full ink, as in MNIST


@pytest.mark.parametrize("strokes", [[], [[]], [np.empty((0, 2))]])
def test_no_points_is_empty(strokes):
    assert render_strokes(strokes) is None


@pytest.mark.parametrize("strokes", [[[[50, 60]]], [[[50, 60]] * 30], [[[1e6, -1e6]]]])
def test_a_single_point_is_a_small_dot(strokes):
    x = render_strokes(strokes)
    assert_model_input(x)
    height, width = ink_box(x)
    assert height <= 4 and width <= 4 and x.max() > 0.5


def test_a_one_point_stroke_counts_as_ink():
    without = render_strokes([[[0, 0], [0, 100]]])
    with_dot = render_strokes([[[0, 0], [0, 100]], [[60, 50]]])
    assert with_dot.sum() > without.sum()
    assert ink_box(with_dot)[1] > 10  # the dot widened the digit


def test_vertical_line_stays_a_thin_one():
    x = render_strokes([[[100, 20], [100, 260]]])
    height, width = ink_box(x, threshold=0.05)
    assert height >= BOX - 1 and width <= 4


def test_horizontal_line_stays_thin():
    height, width = ink_box(render_strokes([[[20, 100], [260, 100]]]), threshold=0.05)
    assert width >= BOX - 1 and height <= 4


def test_size_position_and_brush_do_not_matter():
    """The same shape tiny, huge, far away and negative gives the same input."""
    reference = render_strokes(SEVEN)
    for scale, shift in [(0.05, 0), (40.0, 0), (1.0, -5e5), (3.0, 9e5)]:
        moved = [np.asarray(s) * scale + shift for s in SEVEN]
        np.testing.assert_allclose(render_strokes(moved), reference, atol=0.02)


def test_duplicate_points_change_nothing():
    doubled = [np.repeat(np.asarray(s), 5, axis=0) for s in SEVEN]
    np.testing.assert_allclose(render_strokes(doubled), render_strokes(SEVEN), atol=1e-6)


def test_thousands_of_points():
    t = np.linspace(0, 2 * math.pi, 20_000)
    ring = np.column_stack((140 + 100 * np.cos(t), 140 + 120 * np.sin(t)))
    x = render_strokes([ring])
    assert_model_input(x)
    assert x[14, 14] == 0 and x[14, 5:23].max() == 1.0  # a hollow "0"


def test_wider_pen_for_training_augmentation():
    assert render_strokes(SEVEN, pen_width=3.5).sum() > render_strokes(SEVEN).sum()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)).map(list), max_size=30),
        max_size=6,
    )
)
def test_any_valid_stroke_drawing_gives_none_or_a_valid_input(strokes):
    x = to_model_input(parse_drawing({"seq": 0, "strokes": strokes}))
    if any(strokes):
        assert_model_input(x)
        assert x.max() > 0
    else:
        assert x is None


# --- images ------------------------------------------------------------------------------


def test_both_polarities_and_alpha_give_the_same_input():
    inputs = [
        image_to_input(encode(seven(p)), MAX_PIXELS)
        for p in ("dark_on_light", "light_on_dark", "alpha")
    ]
    for x in inputs:
        assert_model_input(x)
        assert max(ink_box(x)) in (BOX, BOX + 1)
        cy, cx = centre_of_mass(x)
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    np.testing.assert_allclose(inputs[0], inputs[1], atol=0.02)
    np.testing.assert_allclose(inputs[0], inputs[2], atol=0.02)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats(fmt):
    reference = image_to_input(encode(seven("dark_on_light")), MAX_PIXELS)
    x = image_to_input(encode(seven("dark_on_light"), fmt), MAX_PIXELS)
    assert_model_input(x)
    assert np.abs(x - reference).mean() < 0.05


def test_palette_and_greyscale_alpha_images():
    rgba = seven("alpha")
    reference = image_to_input(encode(rgba), MAX_PIXELS)
    palette = rgba.quantize(64, method=Image.Quantize.FASTOCTREE)  # P with an RGBA palette
    for image in (rgba.convert("LA"), palette):
        np.testing.assert_allclose(image_to_input(encode(image), MAX_PIXELS), reference, atol=0.1)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (280, 280), (0, 0, 0, 0)),  # an untouched browser canvas
        Image.new("RGB", (280, 280), "white"),
        Image.new("L", (50, 50), 128),
        Image.new("L", (1, 1), 0),
        Image.new("RGBA", (1, 1), (0, 0, 0, 0)),
        Image.new("RGBA", (9, 9), (0, 0, 0, 0)),
    ],
)
def test_blank_images_are_empty(image):
    """Empty without dividing by a zero peak (no NaN cast to a byte, so no warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_to_input(encode(image), MAX_PIXELS) is None


def test_one_pixel_of_ink():
    x = image_to_input(encode(Image.new("RGBA", (1, 1), (0, 0, 0, 255))), MAX_PIXELS)
    assert x is None  # an opaque 1x1 image is all background
    transparent = Image.new("RGBA", (3, 3), (0, 0, 0, 0))
    transparent.putpixel((1, 1), (0, 0, 0, 255))
    assert_model_input(image_to_input(encode(transparent), MAX_PIXELS))


def test_undecodable_image_data_is_bad_image():
    """Header checks pass a truncated JPEG/WebP; decoding must still fail cleanly."""
    noise = Image.effect_noise((64, 64), 50)
    truncated = [
        encode(noise, fmt)[: len(encode(noise, fmt)) // 2] for fmt in ("PNG", "JPEG", "WEBP")
    ]
    for broken in (*truncated, b"not an image", b""):
        with pytest.raises(PayloadError) as info:
            image_to_input(broken, MAX_PIXELS)
        assert info.value.code == "bad_image"


def test_pixel_limit_is_enforced_again_when_decoding():
    with pytest.raises(PayloadError) as info:
        image_to_input(encode(Image.new("L", (100, 100))), max_pixels=99 * 100)
    assert info.value.code == "image_too_many_pixels"


@settings(max_examples=100, deadline=None)
@given(
    mode=st.sampled_from(["L", "LA", "RGB", "RGBA", "P", "1"]),
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    seed=st.integers(0, 2**32 - 1),
    fmt=st.sampled_from(["PNG", "JPEG", "WEBP"]),
)
def test_any_valid_image_drawing_gives_none_or_a_valid_input(mode, size, seed, fmt):
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 1, "1": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels))
    image = Image.fromarray(
        pixels.astype(np.uint8).squeeze(axis=2) if channels == 1 else pixels.astype(np.uint8)
    )
    image = image.convert(mode) if mode in ("P", "1") else image
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        image = image.convert("RGB")
    data = encode(image, fmt)
    url = data_url(data, "image/x")
    x = to_model_input(parse_drawing({"seq": 0, "image": url}))
    if x is not None:
        assert_model_input(x)


# --- dispatch and display ----------------------------------------------------------------


def test_to_model_input_dispatches_on_the_kind_of_drawing():
    strokes = Drawing(seq=1, strokes=tuple(np.asarray(s) for s in SEVEN))
    np.testing.assert_array_equal(to_model_input(strokes), render_strokes(SEVEN))
    data = encode(seven("alpha"))
    np.testing.assert_array_equal(
        to_model_input(Drawing(seq=1, image=data)), image_to_input(data, MAX_PIXELS)
    )
    assert to_model_input(Drawing(seq=1, strokes=())) is None


def test_png_data_url_shows_what_the_model_sees():
    x = render_strokes(SEVEN)
    url = to_png_data_url(x)
    assert url.startswith("data:image/png;base64,") and len(url) < 2000
    shown = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert shown.size == (28, 28) and shown.mode == "L"
    np.testing.assert_allclose(np.asarray(shown) / 255, x, atol=1 / 255)


# --- the pen width is MNIST's -----------------------------------------------------------


def test_rendered_pen_digits_carry_as_much_ink_as_mnist():
    """PEN_WIDTH was chosen so that rendered real pen digits have MNIST's mean ink mass."""
    data = pytest.importorskip("model.data")
    try:
        (x_train, _), _ = data.load_mnist()
        samples = data.load_unipen()
    except FileNotFoundError:
        pytest.skip("MNIST or UNIPEN data not available")
    mnist_mass = float((x_train[:10_000] / 255).sum(axis=(1, 2)).mean())
    rng = np.random.default_rng(0)
    picked = rng.choice(len(samples), 1000, replace=False)
    pen_mass = float(np.mean([render_strokes(samples[i]["strokes"]).sum() for i in picked]))
    print(json.dumps({"mnist_mean_ink": mnist_mass, "rendered_pen_mean_ink": pen_mass}))
    assert abs(pen_mass / mnist_mass - 1) < 0.1


# --- corners found by mutation testing (docs/reliability.md) ----------------------------


def alpha_image(ink: np.ndarray, size: tuple[int, int] = (40, 40)) -> bytes:
    """A transparent PNG holding `ink` (alpha levels) at (10, 10): a browser canvas."""
    alpha = np.zeros((size[1], size[0]), np.uint8)
    alpha[10 : 10 + ink.shape[0], 10 : 10 + ink.shape[1]] = ink
    return encode(ink_image(Image.fromarray(alpha, "L"), "alpha", colour=(0, 0, 0)))


@pytest.mark.parametrize(
    "path",
    [
        [[0, 0], [120, 0], [120, 60], [200, 60]],  # right angles, segments of unequal length
        [[0, 0], [30, 0], [30, 200], [160, 275], [100, 379]],  # a 60-degree turn
    ],
)
def test_a_sharp_turn_is_as_round_as_two_strokes_meeting_there(path):
    """Every turn sharper than 40 degrees gets a round join: the stroke looks exactly like
    its segments drawn as separate strokes (each with round caps)."""
    segments = [np.array(path[i : i + 2], float) for i in range(len(path) - 1)]
    np.testing.assert_array_equal(render_strokes([np.array(path, float)]), render_strokes(segments))


@pytest.mark.parametrize(
    "points, is_a_dot",
    [
        ([[1e6, 1e6], [1e6 + 2.5e-10, 1e6]], True),  # float noise far from the origin
        ([[0.0, 0.0], [1e-12, 0.0]], True),  # ... and near it (relative to 1, not to 0)
        ([[0.0, 0.0], [0.9e-9, 0.0]], True),
        ([[0.0, 0.0], [1.5e-9, 0.0]], False),  # beyond 1e-9 it is a (tiny) stroke
    ],
)
def test_points_within_float_noise_of_each_other_are_one_dot(points, is_a_dot):
    dot = render_strokes([[[50.0, 60.0]]])
    assert np.array_equal(render_strokes([points]), dot) is is_a_dot


def test_ink_levels_are_stretched_linearly_above_the_floor():
    """The strongest ink becomes 1; every level is scaled by the same factor; levels at
    INK_FLOOR (10%) of the peak are ink, fainter ones are background. (A 20x20 crop is
    placed unscaled, so the levels reach the model input exactly.)"""
    ink = np.full((20, 20), 100, np.uint8)
    ink[5, 5], ink[5, 10], ink[10, 5] = 80, 10, 9
    x = image_to_input(alpha_image(ink), MAX_PIXELS)
    expected = np.float32([0, 26, 204, 255]) / np.float32(255)  # 10 -> 25.5, 80 -> 204
    np.testing.assert_array_equal(np.unique(x), expected)
    assert x[x > 0].size == 399  # the pixel at 9 (under the floor) is background


def test_the_faintest_ink_is_ink():
    ink = np.zeros((3, 3), np.uint8)
    ink[1, 1] = 1  # one alpha level: still drawn
    assert_model_input(image_to_input(alpha_image(ink), MAX_PIXELS))
    grey = Image.new("L", (30, 30), 255)
    grey.putpixel((15, 15), 254)
    assert_model_input(image_to_input(encode(grey), MAX_PIXELS))


@pytest.mark.parametrize("size", [(1, 100), (100, 1)])
def test_a_one_pixel_line_stays_one_pixel_thin(size):
    """Scaled down to fit the box, a one-pixel line keeps one row or column (not two)."""
    ink = np.full(size[::-1], 255, np.uint8)
    x = image_to_input(alpha_image(ink, (120, 120)), MAX_PIXELS)
    assert ink_box(x) == ((20, 1) if size == (1, 100) else (1, 20))


def test_a_mid_grey_background_is_light():
    """A border of exactly 128 is a light background: the dark mark on it is the ink."""
    marks = []
    for background in (128, 255):
        image = Image.new("L", (50, 50), background)
        ImageDraw.Draw(image).line([(10, 10), (30, 40)], fill=0, width=4)
        marks.append(image_to_input(encode(image), MAX_PIXELS))
    assert_model_input(marks[0])
    np.testing.assert_array_equal(marks[0], marks[1])


@pytest.mark.parametrize("mode, key", [("L", 0), ("RGB", (0, 0, 0))])
def test_a_transparent_colour_key_is_background(mode, key):
    """PNGs whose transparency is one colour (a tRNS key, no alpha channel) read like a
    canvas with alpha: the keyed colour is background."""
    coverage = Image.new("L", (60, 60))
    ImageDraw.Draw(coverage).line([(10, 10), (40, 50)], fill=255, width=5)
    keyed = coverage.convert(mode)
    reference = ink_image(coverage, "alpha", colour=(0, 0, 0))
    np.testing.assert_array_equal(
        image_to_input(encode(keyed, transparency=key), MAX_PIXELS),
        image_to_input(encode(reference), MAX_PIXELS),
    )


@pytest.mark.parametrize("heavy", ["top", "bottom", "left", "right"])
def test_ink_heaped_at_one_side_is_pushed_to_the_fields_edge_not_cut(heavy):
    """Centring by mass would move such a patch out of the field: it stops at the edge,
    every pixel of it kept."""
    ink = np.zeros((20, 20), np.uint8)
    bar, corner = {
        "top": ((0, slice(None)), (19, 0)),
        "bottom": ((19, slice(None)), (0, 0)),
        "left": ((slice(None), 0), (0, 19)),
        "right": ((slice(None), 19), (0, 0)),
    }[heavy]
    ink[bar] = 255
    ink[corner] = 255
    x = image_to_input(alpha_image(ink), MAX_PIXELS)
    assert x.sum() == 21  # the 20x20 patch is placed unscaled and whole
    edge = {"top": x[-1], "bottom": x[0], "left": x[:, -1], "right": x[:, 0]}[heavy]
    assert edge.sum() > 0  # the far side of the patch touches the field's edge


def test_ink_that_averages_away_when_shrunk_is_empty_and_a_faint_rest_is_not():
    """Two single pixels far apart: shrunk by 50 they average to nothing (empty, not an
    error); shrunk by 10 a faint trace of each is left, and that is an input."""
    for size, empty in ((1000, True), (200, False)):
        ink = np.zeros((size, size), np.uint8)
        ink[0, 0] = ink[-1, -1] = 255
        x = image_to_input(alpha_image(ink, (size + 20, size + 20)), MAX_PIXELS)
        if empty:
            assert x is None
        else:
            assert_model_input(x)
            assert 0 < x.sum() < 1


def test_decoding_accepts_exactly_the_pixel_limit_and_says_why_it_refuses():
    image = Image.new("L", (100, 100), 255)
    image.putpixel((50, 50), 0)
    assert_model_input(image_to_input(encode(image), max_pixels=100 * 100))
    with pytest.raises(PayloadError) as refused:
        image_to_input(encode(image), max_pixels=100 * 100 - 1)
    assert "100x100" in refused.value.message
    with pytest.raises(PayloadError) as refused:
        image_to_input(b"not an image", MAX_PIXELS)
    assert isinstance(refused.value.message, str) and refused.value.message


@pytest.mark.parametrize("fmt", ["GIF", "BMP"])
def test_decoding_reads_only_png_jpeg_and_webp(fmt):
    """Preprocessing refuses other formats itself too (not only the edge's header check)."""
    with pytest.raises(PayloadError) as refused:
        image_to_input(encode(seven("dark_on_light"), fmt), MAX_PIXELS)
    assert refused.value.code == "bad_image"


# --- exactly what the model sees ---------------------------------------------------------

# sha256 (first 16 hex digits) of the float32 bytes of each input. The checks above allow
# some slack (box size, centre of mass, tolerances between formats); these pin the exact
# pixels, so that any change to preprocessing (the pen, simplification, dots, polarity,
# resampling, placement) is deliberate: if it is, print the new digests and update them.
GOLDEN = {
    "strokes_turns": "b67b7ec423536e59",
    "strokes_dot_beside_a_stroke": "b8ae584d4f05c365",
    "strokes_heaped_in_a_corner": "c7af798117585db3",
    "image_half_ink_border": "bf89fee54027c368",
    "image_opaque_rgba": "bf89fee54027c368",
    "image_grey_alpha": "5e81c401685f990c",
    "strokes_seven": "14b90b359d7f40c4",
    "strokes_spiral_zigzag_dots": "5fd314a30e69de70",
    "strokes_tiny": "0cc530fee7b2e39e",
    "image_seven_dark_on_light": "5e81c401685f990c",
    "image_seven_light_on_dark": "5e81c401685f990c",
    "image_seven_alpha": "5e81c401685f990c",
    "image_small_grey": "d3395db9a1cefa5d",
    "image_big_palette": "39b55c834e9452c7",
    "image_enlarged_by_less_than_two": "e7b36e8a51173ad2",
    "image_border_exactly_half_ink": "cbe11dfce0b16e85",
    "strokes_sub_pixel_steps_three_points": "b30c674ffac2ce16",
    "strokes_sub_pixel_steps_first_step": "9920d06e09189b2c",
    "strokes_sub_pixel_steps_last_step": "50707d87985e2f93",
}
GOLDEN_PNG = {"to_png_data_url": "bcbbace199401c9d", "tiny_png": "a4403aa0fcde397f"}


def golden_inputs() -> dict[str, np.ndarray | None]:
    t = np.linspace(0, 2 * np.pi, 120)
    spiral = np.stack([140 + 90 * np.cos(t) * t / 7, 140 + 90 * np.sin(t) * t / 7], 1)
    zigzag = [[40 + 10 * i, 60 if i % 2 else 200] for i in range(20)]
    small = Image.new("L", (12, 9))  # enlarged to fit the box
    ImageDraw.Draw(small).line([(2, 1), (9, 7)], fill=200, width=2)
    big = Image.new("L", (900, 700))  # shrunk, from a palette image
    ImageDraw.Draw(big).ellipse((200, 100, 600, 650), outline=255, width=40)
    # Drawings that reach the numeric corners the ones above miss: sharp and gentle turns of
    # three-point strokes, points closer than a raster pixel, a dot beside a stroke (the
    # extent is the stroke's), ink heaped at one corner (placement clamps at the field's
    # edge), and images whose border is half ink (the background is the border's median).
    dense = [[100 + 0.05 * i, 100 + 0.03 * i * (i % 3)] for i in range(400)]
    heap = [[200 + 6 * (i % 7), 230 + 5 * (i // 7)] for i in range(49)]
    corner = Image.new("L", (40, 30), 230)
    ImageDraw.Draw(corner).line([(0, 0), (39, 0)], fill=20, width=3)
    ImageDraw.Draw(corner).line([(0, 0), (0, 29)], fill=20, width=3)
    ImageDraw.Draw(corner).line([(8, 8), (30, 22)], fill=60, width=2)
    inputs = {
        "strokes_turns": render_strokes(
            [[[40, 200], [140, 40], [240, 200]], [[40, 250], [140, 240], [240, 250]], dense]
        ),
        "strokes_dot_beside_a_stroke": render_strokes([[[50, 50], [50, 200]], [[120, 120]]]),
        "strokes_heaped_in_a_corner": render_strokes([[[20, 20], [250, 20], [250, 260]], heap]),
        "image_half_ink_border": image_to_input(encode(corner), MAX_PIXELS),
        "image_opaque_rgba": image_to_input(
            encode(ink_image(corner, "dark_on_light").convert("RGBA")), MAX_PIXELS
        ),
        "image_grey_alpha": image_to_input(encode(seven("alpha").convert("LA")), MAX_PIXELS),
        "strokes_seven": render_strokes(SEVEN),
        "strokes_spiral_zigzag_dots": render_strokes(
            [spiral, zigzag, [[30, 30]], [[250, 250], [250, 250]]]
        ),
        "strokes_tiny": render_strokes([[[10, 10], [10.4, 10.3], [10.9, 10.1]]]),
        "image_small_grey": image_to_input(encode(ink_image(small, "dark_on_light")), MAX_PIXELS),
        "image_big_palette": image_to_input(
            encode(ink_image(big, "alpha").quantize(32)), MAX_PIXELS
        ),
    }
    for style in STYLES:
        inputs[f"image_seven_{style}"] = image_to_input(encode(seven(style)), MAX_PIXELS)
    # Found by mutation testing: an ink crop enlarged by less than 2 (bilinear, not box), a
    # border exactly half ink (its median sits between the two shades, so every border
    # pixel counts; the side columns are ink, the top and bottom rows paper), and strokes
    # whose steps are about one raster pixel (what simplification keeps: a three-point
    # stroke, the first step, the last point).
    enlarged = Image.new("L", (30, 30), 255)
    ImageDraw.Draw(enlarged).line([(5, 5), (18, 16)], fill=0, width=2)
    inputs["image_enlarged_by_less_than_two"] = image_to_input(encode(enlarged), MAX_PIXELS)
    fence = Image.new("L", (30, 32), 230)
    ImageDraw.Draw(fence).line([(0, 1), (0, 30)], fill=20)
    ImageDraw.Draw(fence).line([(29, 1), (29, 30)], fill=20)
    ImageDraw.Draw(fence).line([(6, 6), (22, 25)], fill=20, width=3)
    ImageDraw.Draw(fence).rectangle((8, 18, 14, 26), fill=180)
    inputs["image_border_exactly_half_ink"] = image_to_input(encode(fence), MAX_PIXELS)
    long_stroke = [[8.446, -1.437], [87.872, 77.836]]
    inputs["strokes_sub_pixel_steps_three_points"] = render_strokes(
        [[[-1.091, -1.278], [-0.461, -0.697], [0.834, -1.451]], long_stroke]
    )
    wiggle = [[0.855, -0.489], [2.615, -0.29], [2.233, 2.263], [1.909, 1.041], [2.111, 1.003]]
    wiggle += [[3.177, 0.081], [3.982, 0.934], [3.314, 1.097], [2.483, 3.443]]
    inputs["strokes_sub_pixel_steps_first_step"] = render_strokes(
        [wiggle, [[-3.521, -2.265], [74.671, 78.269]]]
    )
    inputs["strokes_sub_pixel_steps_last_step"] = render_strokes(
        [[[0.395, 0.107], [0.032, 0.106], [0.229, -0.281]], [[1.976, 2.149], [83.48, 74.079]]]
    )
    return inputs


def short_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_model_inputs_are_exactly_the_recorded_ones():
    digests = {
        name: short_digest(np.ascontiguousarray(x, np.float32).tobytes())
        for name, x in golden_inputs().items()
    }
    assert digests == GOLDEN


def test_the_shown_input_and_the_warm_up_image_are_exactly_the_recorded_ones():
    shown = to_png_data_url(render_strokes(SEVEN[:1]))
    assert {
        "to_png_data_url": short_digest(shown.encode()),
        "tiny_png": short_digest(tiny_png()),
    } == (GOLDEN_PNG)
