"""Edge validation: every bad payload is a PayloadError with the right stable code."""

from __future__ import annotations

import base64
import math
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from server.drawing import MAX_SEQ, Drawing, Limits, PayloadError, parse_drawing
from tests.images import base64_text, crafted_png, data_url, encode, zero_rows

LINE = [[[10, 10], [10.5, 200]]]


def error_code(payload, **kwargs) -> str:
    with pytest.raises(PayloadError) as info:
        parse_drawing(payload, **kwargs)
    assert info.value.message, "a rejection must say what was wrong"
    return info.value.code


# --- the envelope ------------------------------------------------------------------------


def test_strokes_payload_becomes_float_arrays():
    drawing = parse_drawing({"seq": 3, "strokes": [[[1, 2], [3.5, 4]], [[5, 6]]]})
    assert drawing.seq == 3 and drawing.image is None
    assert [s.shape for s in drawing.strokes] == [(2, 2), (1, 2)]
    assert all(s.dtype == np.float64 for s in drawing.strokes)
    np.testing.assert_array_equal(drawing.strokes[0], [[1, 2], [3.5, 4]])


def test_points_and_strokes_may_mix_lists_and_tuples():
    """A Python caller may pass tuples; mixing them with lists is accepted too (the type
    check is a subset test, not equality with the set of point types)."""
    drawing = parse_drawing({"seq": 1, "strokes": [[(1, 2), [3, 4]], ([5, 6],)]})
    assert [s.tolist() for s in drawing.strokes] == [[[1, 2], [3, 4]], [[5, 6]]]


def test_empty_drawing_is_valid():
    assert parse_drawing({"seq": 0, "strokes": []}).strokes == ()
    (stroke,) = parse_drawing({"seq": 0, "strokes": [[]]}).strokes
    assert stroke.shape == (0, 2)


@pytest.mark.parametrize("payload", [None, [], "strokes", 7, b"{}"])
def test_non_object_payload(payload):
    assert error_code(payload) == "bad_payload"


@pytest.mark.parametrize(
    "payload",
    [{"seq": 1}, {"seq": 1, "strokes": None}, {"seq": 1, "strokes": [], "image": "x"}],
)
def test_exactly_one_of_strokes_and_image(payload):
    assert error_code(payload) == "bad_payload"


@pytest.mark.parametrize("seq", [None, True, False, 1.0, "1", -1, MAX_SEQ + 1, [1]])
def test_bad_seq(seq):
    payload = {"strokes": []} if seq is None else {"seq": seq, "strokes": []}
    assert error_code(payload) == "bad_seq"


@pytest.mark.parametrize("seq", [0, 1, MAX_SEQ])
def test_seq_bounds_accepted(seq):
    assert parse_drawing({"seq": seq, "strokes": []}).seq == seq


def test_seq_optional_when_not_required():
    assert parse_drawing({"strokes": []}, require_seq=False).seq is None
    assert error_code({"seq": -1, "strokes": []}, require_seq=False) == "bad_seq"


# --- strokes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "strokes",
    [
        {"0": [[1, 2]]},  # not a list
        "[[1, 2]]",  # JSON in a string
        [[1, 2]],  # a stroke of numbers: one nesting level missing
        [[[[1, 2]]]],  # a point that is a list of lists: one level too many
        [[[[1, 2], [3, 4]]]],  # ... even when it holds two of them
        [[[1]]],  # a point that is not a pair
        [[[1, 2, 3]]],
        [[["ab"]]],
        [[{"x": 1, "y": 2}]],
        [[[1, 2], None]],
        [None],
        [7],
    ],
)
def test_bad_strokes(strokes):
    assert error_code({"seq": 1, "strokes": strokes}) == "bad_strokes"


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, "1", None, True, False, 1e7, -1e7, 10**400]
)
def test_bad_coordinate(value):
    assert error_code({"seq": 1, "strokes": [[[1, 2], [value, 3]]]}) == "bad_coordinate"


def test_coordinate_limit_is_in_the_message():
    with pytest.raises(PayloadError) as info:
        parse_drawing({"seq": 1, "strokes": [[[2e6, 0]]]})
    assert "1e+06" in info.value.message


def test_huge_and_negative_coordinates_within_the_limit():
    (stroke,) = parse_drawing({"seq": 1, "strokes": [[[-1e6, 1e6], [999_999, -5]]]}).strokes
    np.testing.assert_array_equal(stroke, [[-1e6, 1e6], [999_999, -5]])


def test_too_many_strokes():
    limits = Limits()
    strokes = [[[0, 0]]] * (limits.max_strokes + 1)
    with pytest.raises(PayloadError) as info:
        parse_drawing({"seq": 1, "strokes": strokes})
    assert info.value.code == "too_many_strokes"
    assert str(limits.max_strokes) in info.value.message
    assert len(parse_drawing({"seq": 1, "strokes": strokes[:-1]}).strokes) == 200


def test_too_many_points_counts_all_strokes():
    limits = Limits(max_points=10)
    assert len(parse_drawing({"seq": 1, "strokes": [[[0, 0]] * 5] * 2}, limits).strokes) == 2
    assert error_code({"seq": 1, "strokes": [[[0, 0]] * 5] * 2 + [[[1, 1]]]}, limits=limits) == (
        "too_many_points"
    )


def test_thousands_of_points_default_limit():
    stroke = [[i % 280, i // 280] for i in range(Limits().max_points)]
    (points,) = parse_drawing({"seq": 1, "strokes": [stroke]}).strokes
    assert points.shape == (20_000, 2)
    assert error_code({"seq": 1, "strokes": [stroke, [[0, 0]]]}) == "too_many_points"


# --- images ------------------------------------------------------------------------------


def small_png() -> bytes:
    image = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (20, 10, 30, 40))
    return encode(image)


def test_png_data_url_is_accepted_header_only():
    data = small_png()
    drawing = parse_drawing({"seq": 1, "image": data_url(data)})
    assert drawing == Drawing(seq=1, image=data, width=64, height=48)


def test_bare_base64_is_accepted():
    assert parse_drawing({"seq": 1, "image": base64.b64encode(small_png()).decode()}).width == 64


@pytest.mark.parametrize("fmt, mime", [("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_jpeg_and_webp(fmt, mime):
    data = encode(Image.new("RGB", (30, 20), "white"), fmt)
    assert parse_drawing({"seq": 1, "image": data_url(data, mime)}).height == 20


def test_one_pixel_image():
    assert parse_drawing({"seq": 1, "image": data_url(encode(Image.new("L", (1, 1))))}).width == 1


@pytest.mark.parametrize(
    "image",
    [
        7,
        ["data:image/png;base64,"],
        "not base64!",
        "data:image/png;base64,@@@@",
        "data:text/plain;base64," + base64.b64encode(b"hello").decode(),
        "data:image/png," + base64.b64encode(b"x").decode(),  # not base64-encoded
        base64.b64encode(b"just some bytes, not an image").decode(),
        "",
    ],
)
def test_bad_image(image):
    assert error_code({"seq": 1, "image": image}) == "bad_image"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_unsupported_format(fmt):
    data = encode(Image.new("L", (8, 8)), fmt)
    assert error_code({"seq": 1, "image": data_url(data)}) == "bad_image"


def test_truncated_png():
    data = encode(Image.effect_noise((64, 64), 50))
    assert error_code({"seq": 1, "image": data_url(data[: len(data) // 2])}) == "bad_image"


def test_image_bytes_limit():
    data = encode(Image.effect_noise((256, 256), 100))
    limits = Limits(max_image_bytes=len(data) - 1)
    assert error_code({"seq": 1, "image": data_url(data)}, limits=limits) == "image_too_large"
    assert parse_drawing({"seq": 1, "image": data_url(data)}, Limits(max_image_bytes=len(data)))


def test_oversized_base64_refused_before_decoding():
    """Text longer than the base64 of MAX_IMAGE_BYTES is refused by its length alone: even
    text that is not base64 at all is `image_too_large`, never decoded into `bad_image`."""
    limits = Limits(max_image_bytes=31)  # base64 of 31 bytes: at most 4 * (31 // 3 + 1) = 44
    assert error_code({"seq": 1, "image": "!" * 45}, limits=limits) == "image_too_large"
    assert error_code({"seq": 1, "image": "!" * 44}, limits=limits) == "bad_image"  # decoded
    assert error_code({"seq": 1, "image": "A" * (4 * Limits().max_image_bytes)}) == (
        "image_too_large"
    )


def test_image_bytes_limit_after_decoding():
    """Text within the length bound that decodes to one byte too many is refused too."""
    limits = Limits(max_image_bytes=30)
    assert error_code({"seq": 1, "image": "A" * 44}, limits=limits) == "image_too_large"  # 33
    assert error_code({"seq": 1, "image": "A" * 40}, limits=limits) == "bad_image"  # 30 bytes


def test_base64_with_stray_characters_is_bad_image():
    """Strict base64: characters outside the alphabet are refused, not skipped."""
    text = base64_text(small_png())
    assert parse_drawing({"seq": 1, "image": text}).width == 64
    for broken in (text[:8] + "!" + text[8:], text[:8] + "\n" + text[8:], " " + text):
        assert error_code({"seq": 1, "image": broken}) == "bad_image"


def test_a_data_url_of_another_type_is_refused_even_holding_an_image():
    for head in ("data:text/plain;base64", "data:application/octet-stream;base64"):
        assert error_code({"seq": 1, "image": f"{head},{base64_text(small_png())}"}) == (
            "bad_image"
        )


def test_a_data_url_ends_its_header_at_the_first_comma():
    """RFC 2397: the first comma ends the header. A media type holding a comma is refused,
    even when the text after the last comma is a valid image."""
    text = base64_text(small_png())
    assert error_code({"seq": 1, "image": f"data:image/x,y;base64,{text}"}) == "bad_image"


def test_pixel_limit_is_exact():
    """width x height at the limit passes the header check; one pixel more is refused."""
    data = encode(Image.new("L", (10, 10)))
    assert parse_drawing({"seq": 1, "image": data_url(data)}, Limits(max_image_pixels=100))
    assert error_code({"seq": 1, "image": data_url(data)}, limits=Limits(max_image_pixels=99)) == (
        "image_too_many_pixels"
    )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_dimensions_refused_from_the_header():
    """10000x10000 (100 M pixels) costs a few bytes to claim and is refused undecoded."""
    data = crafted_png(10_000, 10_000, zlib.compress(bytes(10_001)))
    with pytest.raises(PayloadError) as info:
        parse_drawing({"seq": 1, "image": data_url(data)})
    assert info.value.code == "image_too_many_pixels"
    assert "10000x10000" in info.value.message


def test_dimensions_beyond_pillows_own_bomb_limit():
    data = crafted_png(60_000, 60_000, zlib.compress(bytes(60_001)))
    assert error_code({"seq": 1, "image": data_url(data)}) == "image_too_many_pixels"


def test_png_decompression_bomb():
    """A valid 25 MB PNG in ~25 kB: over the pixel limit, so it is never decoded."""
    data = crafted_png(5000, 5000, zero_rows(5000, 5000))
    assert len(data) < 100_000
    assert error_code({"seq": 1, "image": data_url(data)}) == "image_too_many_pixels"


# --- properties --------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=20,
)
coordinates = st.one_of(
    st.integers(-(10**7), 10**7), st.floats(allow_nan=True, allow_infinity=True), json_scalars
)
points = st.lists(coordinates, min_size=0, max_size=3) | json_values
stroke_lists = st.lists(st.lists(points, max_size=6) | json_values, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.one_of(
        json_values,
        st.fixed_dictionaries({"seq": json_values, "strokes": stroke_lists}),
        st.fixed_dictionaries({"seq": st.integers(0, 9), "strokes": stroke_lists}),
        st.fixed_dictionaries({"seq": st.integers(0, 9), "image": json_values}),
        st.fixed_dictionaries(
            {"seq": st.integers(0, 9), "image": st.binary(max_size=64).map(data_url)}
        ),
    )
)
def test_parse_drawing_only_ever_raises_payload_error(payload):
    try:
        drawing = parse_drawing(payload)
    except PayloadError as e:
        assert e.code in {
            "bad_payload",
            "bad_seq",
            "bad_strokes",
            "bad_coordinate",
            "too_many_strokes",
            "too_many_points",
            "bad_image",
            "image_too_large",
            "image_too_many_pixels",
        }
        return
    assert (drawing.strokes is None) != (drawing.image is None)
    for stroke in drawing.strokes or ():
        assert stroke.ndim == 2 and stroke.shape[1] == 2 and np.isfinite(stroke).all()
