"""Fuzzing every entry point with hypothesis: the Socket.IO events (in-process, and a smaller
run against a live server) and POST /api/predict.

Whatever arrives (any JSON shape, wrong types at every field, NaN and infinities, huge
numbers, deep nesting, empty and giant strings, invalid base64, images that are not images,
truncated images, crafted 1x1 and 20000x20000 headers, decompression bombs, sizes on both
sides of every limit), the answer is either a valid one or an error with a stable code, in
bounded time (every wait has a deadline), and the SAME session then still reads a valid
digit correctly. The CI profile runs ~100 examples per test; `--slow` runs 2000.
"""

from __future__ import annotations

import json
import time

import pytest
import socketio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from server.app import create_app
from server.app import socketio as flask_socketio
from server.drawing import MAX_SEQ
from tests.images import (
    base64_text,
    crafted_png,
    encode,
    jpeg_claiming,
    png_bomb,
    strokes_png,
)

pytestmark = pytest.mark.timeout(600)

# Every code in docs/protocol.md that a client payload can cause.
CODES = {
    "bad_payload",
    "bad_seq",
    "bad_strokes",
    "bad_coordinate",
    "too_many_strokes",
    "too_many_points",
    "bad_image",
    "image_too_large",
    "image_too_many_pixels",
    "payload_too_large",
    "too_many_predicts",
}
# Small limits, so random payloads cross them often; the probe digit fits easily.
LIMITS = {
    "MAX_PAYLOAD_BYTES": 60_000,
    "MAX_STROKES": 8,
    "MAX_POINTS": 400,
    "MAX_IMAGE_BYTES": 30_000,
    "MAX_IMAGE_PIXELS": 1_000_000,
}
ONE = [[[140, 40 + 4 * i] for i in range(50)]]  # a vertical bar: a "1" on a 280 px canvas
WAIT_S = 10.0  # PREDICT_TIMEOUT_S of the fuzzed apps: a hang becomes a `timeout` answer
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- images ----------------------------------------------------------------------------


def image_samples() -> dict[str, bytes]:
    webp = encode(Image.new("RGB", (64, 64), "white"), "WEBP")
    png = strokes_png([[[32, 9], [32, 54]]], pen_px=4, size=64)
    return {
        "png_1x1": encode(Image.new("LA", (1, 1), (0, 255)), "PNG"),
        "jpeg_1x1": encode(Image.new("L", (1, 1), 0), "JPEG"),
        "canvas_png": png,
        "png_20000x20000_header": crafted_png(20000, 20000),
        "png_1000x1000_no_pixels": crafted_png(1000, 1000),
        "png_0x0_header": crafted_png(0, 0),
        "png_2pow31_header": crafted_png(2**31 - 1, 2**31 - 1),
        "png_bomb_within_limit": png_bomb(1000, 1000),
        "png_bomb_over_limit": png_bomb(1001, 1000),
        "jpeg_20000x20000_header": jpeg_claiming(20000, 20000),
        "jpeg_1000x1000_header": jpeg_claiming(1000, 1000),
        "truncated_png": png[: len(png) // 2],
        "truncated_png_with_iend": png[:40] + png[-12:],
        "truncated_jpeg": encode(Image.new("L", (64, 64), 0), "JPEG")[:200],
        "truncated_webp": webp[: len(webp) // 2],
        "gif": encode(Image.new("L", (16, 16), 0), "GIF"),
        "bmp": encode(Image.new("L", (16, 16), 0), "BMP"),
        "text": b"this is not an image",
        "empty": b"",
        "zeros": bytes(1000),
        "png_signature_only": b"\x89PNG\r\n\x1a\n",
    }


IMAGES = image_samples()


# --- strategies --------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, MAX_SEQ, MAX_SEQ + 1, 1e6, 1e6 + 1, -1e6 - 1, 1e308, -0.0]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    st.text(max_size=20),
    st.sampled_from(["", "data:", "data:image/png;base64,", "[[[1,2]]]"]),
    st.sampled_from([59_000, 70_000]).map(lambda n: "x" * n),  # giant strings
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=40,
)


def nested(depth: int) -> list:
    value: list = [[1, 2]]
    for _ in range(depth):
        value = [value]
    return value


points = st.one_of(
    st.tuples(numbers, numbers).map(list),
    st.lists(json_values, max_size=3),
    json_values,
)
strokes = st.one_of(
    st.lists(st.lists(points, max_size=60), max_size=10),
    st.lists(
        st.lists(st.tuples(st.floats(0, 280), st.floats(0, 280)).map(list), max_size=80),
        max_size=10,
    ),
    # just under and over MAX_POINTS / MAX_STROKES
    st.sampled_from([399, 400, 401]).map(lambda n: [[[1.0, float(i)] for i in range(n)]]),
    st.sampled_from([8, 9]).map(lambda n: [[[1, 2]] for _ in range(n)]),
    st.integers(1, 200).map(nested),
    json_values,
)


images = st.one_of(
    st.sampled_from(sorted(IMAGES)).map(lambda name: base64_text(IMAGES[name])),
    st.sampled_from(sorted(IMAGES)).map(
        lambda name: "data:image/png;base64," + base64_text(IMAGES[name])
    ),
    st.binary(max_size=300).map(base64_text),
    st.binary(max_size=300).map(lambda b: "data:image/jpeg;base64," + base64_text(b)),
    st.text(max_size=50),
    st.sampled_from(["data:text/plain;base64,aGk=", "data:image/png,raw", "!!!!", "QQ="]),
    # just under and over MAX_IMAGE_BYTES (base64 of 30000 / 30001 bytes)
    st.sampled_from([29_999, 30_000, 30_001, 60_000]).map(lambda n: base64_text(bytes(n))),
    json_values,
)
seqs = st.one_of(st.none(), st.integers(0, 1000), numbers, json_values)


@st.composite
def payloads(draw) -> object:
    """A dict with seq/strokes/image of any type (each may be missing), or any JSON value."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    payload: dict = {}
    if draw(st.booleans()):
        payload["seq"] = draw(seqs)
    kind = draw(st.sampled_from(["strokes", "image", "both", "neither"]))
    if kind in ("strokes", "both"):
        payload["strokes"] = draw(strokes)
    if kind in ("image", "both"):
        payload["image"] = draw(images)
    if draw(st.integers(0, 4)) == 0:
        payload[draw(st.text(max_size=8))] = draw(json_values)  # extra fields are ignored
    return payload


# --- checks ------------------------------------------------------------------------------


def check_answer(answer: object, kind: str) -> None:
    """A valid `probabilities`/`prediction` or an error with a stable code, nothing else."""
    assert isinstance(answer, dict), answer
    if "code" in answer:
        assert answer["code"] in CODES, answer
        assert isinstance(answer["message"], str) and answer["message"]
        assert answer["seq"] is None or type(answer["seq"]) is int
        return
    if answer["empty"]:
        assert answer["digit"] is None and answer["probabilities"] is None
    else:
        assert len(answer["probabilities"]) == 10
        if answer.get("verdict") == "not_a_digit":  # an 11-output model may say so
            assert answer["digit"] is None
        else:
            assert 0 <= answer["digit"] <= 9
    if kind == "prediction":
        assert "top" in answer and "input" in answer


def check_errors(client) -> None:
    """Every event queued for this test client so far is well-formed; then forget them."""
    for packet in client.get_received():
        if packet["name"] == "error":
            check_answer(packet["args"][0], "error")


def check_reads_a_one(answer: dict) -> None:
    assert "code" not in answer, answer
    assert answer["digit"] == 1, answer


# --- in-process Socket.IO ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_app():
    app = create_app(
        {"ASYNC_MODE": "threading", "LOG_LEVEL": "ERROR", "PREDICT_TIMEOUT_S": WAIT_S, **LIMITS}
    )
    yield app
    app.extensions["digits"].close()


@pytest.fixture(scope="module")
def fuzz_client(fuzz_app):
    client = flask_socketio.test_client(fuzz_app)
    assert client.is_connected()
    yield client
    client.disconnect()


# What answers each event, besides `error`.
ANSWERED_BY = {"snapshot": "probabilities", "predict": "prediction", "clear": "cleared"}


def wait_for_answer(client, event: str, seq=...) -> dict:
    """The first answer to `event` (its own event or an `error`), with `seq` when given."""
    names = {ANSWERED_BY[event], "error"}
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for packet in list(client.queue):
            answer = packet["args"][0] if packet["args"] else None
            if packet["name"] in names and (seq is ... or answer.get("seq") == seq):
                return answer
        time.sleep(0.005)
    raise AssertionError(f"no answer to {event} (seq {seq}) in {WAIT_S} s: {client.queue}")


@FUZZ
@given(event=st.sampled_from(["snapshot", "predict", "clear"]), payload=payloads())
def test_socket_events_answer_or_refuse_and_the_session_lives_on(fuzz_app, event, payload):
    """Every example on a fresh session, so that no earlier seq makes it stale: whatever was
    sent, an answer (or an error) must arrive."""
    client = flask_socketio.test_client(fuzz_app)
    try:
        ack = client.emit(event, payload, callback=True)
        answer = wait_for_answer(client, event)
        if event == "predict":
            assert ack == answer
        if event == "clear" and "code" not in answer:
            assert answer == {"seq": payload["seq"]}
        else:
            check_answer(answer, ANSWERED_BY[event])
        check_errors(client)
        check_reads_a_one(client.emit("predict", {"strokes": ONE}, callback=True))
        assert client.is_connected()
    finally:
        client.disconnect()


@FUZZ
@given(args=st.lists(json_values, max_size=4))
def test_any_number_of_arguments(fuzz_client, args):
    """Socket.IO events may carry any number of arguments of any type."""
    for event in ("snapshot", "predict", "clear", "unknown"):
        fuzz_client.emit(event, *args)
    check_errors(fuzz_client)
    check_reads_a_one(fuzz_client.emit("predict", {"strokes": ONE}, callback=True))


EMPTY, INKED = "an empty answer", "an answer with ink"
# What each crafted image gets on either event: its error code, or an answer.
CRAFTED = {
    "bmp": "bad_image",
    "canvas_png": INKED,
    "empty": "bad_image",
    "gif": "bad_image",
    "jpeg_1000x1000_header": INKED,  # decoded: the 8x8 JPEG's data, stretched
    "jpeg_1x1": EMPTY,
    "jpeg_20000x20000_header": "image_too_many_pixels",
    "png_0x0_header": "bad_image",
    "png_1000x1000_no_pixels": "bad_image",  # when decoded, off the hub
    "png_1x1": EMPTY,
    "png_20000x20000_header": "image_too_many_pixels",
    "png_2pow31_header": "image_too_many_pixels",
    "png_bomb_over_limit": "image_too_many_pixels",
    "png_bomb_within_limit": EMPTY,  # decoded: 1,000,000 pixels of background
    "png_signature_only": "bad_image",
    "text": "bad_image",
    "truncated_jpeg": "bad_image",
    "truncated_png": "bad_image",
    "truncated_png_with_iend": "bad_image",
    "truncated_webp": "bad_image",
    "zeros": "bad_image",
}


def test_every_crafted_image_has_its_expected_outcome():
    assert set(CRAFTED) == set(IMAGES)


@pytest.mark.parametrize("name", sorted(IMAGES))
@pytest.mark.parametrize("event", ["snapshot", "predict"])
def test_every_crafted_image(fuzz_app, name, event):
    """Each crafted image by name, on a fresh session (no earlier seq makes it stale): the
    answer it must get, from the edge or from the batcher after decoding; then a correct
    reading on the same session."""
    client = flask_socketio.test_client(fuzz_app)
    try:
        payload = {"seq": 1, "image": "data:image/png;base64," + base64_text(IMAGES[name])}
        ack = client.emit(event, payload, callback=True)
        answer = wait_for_answer(client, event, seq=1)
        check_answer(answer, ANSWERED_BY[event])
        if event == "predict":
            assert ack == answer
        if CRAFTED[name] in (EMPTY, INKED):
            assert "code" not in answer, answer
            assert answer["empty"] is (CRAFTED[name] == EMPTY), answer
        else:
            assert answer.get("code") == CRAFTED[name], answer
        check_reads_a_one(client.emit("predict", {"strokes": ONE}, callback=True))
        check_errors(client)
    finally:
        client.disconnect()


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("png_20000x20000_header", "image_too_many_pixels"),
        ("jpeg_20000x20000_header", "image_too_many_pixels"),
        ("png_2pow31_header", "image_too_many_pixels"),
        ("png_bomb_over_limit", "image_too_many_pixels"),
        ("truncated_png", "bad_image"),
        ("text", "bad_image"),
        ("gif", "bad_image"),
        ("png_1000x1000_no_pixels", "bad_image"),  # refused when decoded, off the hub
    ],
)
def test_hostile_images_are_refused_with_their_code(fuzz_client, name, code):
    payload = {"seq": 1, "image": base64_text(IMAGES[name])}
    assert fuzz_client.emit("predict", payload, callback=True)["code"] == code
    check_reads_a_one(fuzz_client.emit("predict", {"strokes": ONE}, callback=True))


def test_bomb_within_the_pixel_limit_is_decoded(fuzz_client):
    payload = {"seq": 1, "image": base64_text(IMAGES["png_bomb_within_limit"])}
    answer = fuzz_client.emit("predict", payload, callback=True)
    assert answer["empty"] is True  # all background: decoded, and nothing drawn


def padded(size: int) -> dict:
    """An empty drawing whose JSON (compact, as the server measures it) is `size` bytes."""
    payload = {"seq": 1, "strokes": [], "pad": ""}
    payload["pad"] = "x" * (size - len(json.dumps(payload, separators=(",", ":"))))
    assert len(json.dumps(payload, separators=(",", ":"))) == size
    return payload


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"seq": 1, "strokes": [[[1.0, float(i)] for i in range(400)]]}, None),
        ({"seq": 1, "strokes": [[[1.0, float(i)] for i in range(401)]]}, "too_many_points"),
        ({"seq": 1, "strokes": [[[1, 2]]] * 8}, None),
        ({"seq": 1, "strokes": [[[1, 2]]] * 9}, "too_many_strokes"),
        ({"seq": 1, "strokes": [[[1e6, -1e6]]]}, None),
        ({"seq": 1, "strokes": [[[1e6 + 1, 0]]]}, "bad_coordinate"),
        ({"seq": MAX_SEQ, "strokes": []}, None),
        ({"seq": MAX_SEQ + 1, "strokes": []}, "bad_seq"),
        ({"seq": 1, "image": base64_text(crafted_png(1000, 1000))}, "bad_image"),
        ({"seq": 1, "image": base64_text(crafted_png(1001, 1000))}, "image_too_many_pixels"),
        ({"seq": 1, "image": base64_text(bytes(30_000))}, "bad_image"),
        ({"seq": 1, "image": base64_text(bytes(30_001))}, "image_too_large"),
        (padded(LIMITS["MAX_PAYLOAD_BYTES"]), None),
        (padded(LIMITS["MAX_PAYLOAD_BYTES"] + 1), "payload_too_large"),
    ],
)
def test_just_under_and_over_every_limit(fuzz_client, payload, code):
    answer = fuzz_client.emit("predict", payload, callback=True)
    assert answer.get("code") == code, answer
    check_reads_a_one(fuzz_client.emit("predict", {"strokes": ONE}, callback=True))


# --- HTTP --------------------------------------------------------------------------------


bodies = st.one_of(
    payloads().map(lambda p: json.dumps(p).encode()),  # NaN / Infinity tokens included
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b"", b"{", b"[" * 5000 + b"]" * 5000, b"1" * 5000, b'{"strokes": NaN}']),
)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "", "multipart/form-data"]
)


@FUZZ
@given(body=bodies, content_type=content_types)
def test_http_predict_answers_or_refuses_with_json(fuzz_app, body, content_type):
    client = fuzz_app.test_client()
    response = client.post("/api/predict", data=body, content_type=content_type)
    assert response.is_json, response.data[:200]
    if response.status_code == 200:
        check_answer(response.json, "prediction")
    else:
        assert 400 <= response.status_code < 500, response.json
        assert response.json["code"] in CODES, response.json
    probe = client.post("/api/predict", json={"strokes": ONE})
    check_reads_a_one(probe.json)


def test_http_body_over_the_limit_is_413(fuzz_app):
    client = fuzz_app.test_client()
    body = json.dumps({"strokes": [], "pad": "x" * LIMITS["MAX_PAYLOAD_BYTES"]})
    response = client.post("/api/predict", data=body, content_type="application/json")
    assert response.status_code == 413 and response.json["code"] == "payload_too_large"


# --- a live server, over the wire ------------------------------------------------------

LIVE_EXAMPLES = max(25, settings.default.max_examples // 4)


@pytest.mark.live
def test_live_server_answers_fuzzed_events(live_server_factory):
    """A smaller run through the real transport (eventlet, JSON over a WebSocket)."""
    server = live_server_factory(
        ASYNC_MODE="eventlet",
        LOG_LEVEL="WARNING",
        PREDICT_TIMEOUT_S=str(WAIT_S),
        **{k: str(v) for k, v in LIMITS.items()},
    )
    client = socketio.Client(reconnection=False)
    errors: list[dict] = []
    client.on("error", errors.append)
    client.connect(server.url, transports=["websocket"], wait_timeout=WAIT_S)

    @settings(FUZZ, max_examples=LIVE_EXAMPLES)
    @given(event=st.sampled_from(["snapshot", "predict", "clear"]), payload=payloads())
    def fuzz(event, payload):
        # Over about twice MAX_PAYLOAD_BYTES the transport closes the connection (by
        # design, tested in test_hostile_clients.py); stay under it here.
        assume(len(json.dumps(payload)) < 2 * LIMITS["MAX_PAYLOAD_BYTES"])
        if event == "predict":
            check_answer(client.call(event, payload, timeout=WAIT_S * 2), "prediction")
        else:
            client.emit(event, payload)
        check_reads_a_one(client.call("predict", {"strokes": ONE}, timeout=WAIT_S * 2))
        assert client.connected

    try:
        fuzz()
        for error in errors:
            check_answer(error, "error")
    finally:
        client.disconnect()
    assert server.proc.poll() is None, server.log()
    assert "Traceback" not in server.log()


# --- the payload size shortcut -----------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)
NUMBER_TEXTS = st.sampled_from(["1e15", "9e15", "1E9", "-0", "1e400", "-1e400", "1e-7", "5e5"])


@FUZZ
@given(value=JSON_VALUES, number=NUMBER_TEXTS, spaces=st.booleans())
def test_compact_reencoding_stays_within_the_size_shortcuts_bound(value, number, spaces):
    """`Handlers._checked` skips measuring a payload whose message text was at most
    MAX_PAYLOAD_BYTES / MAX_REENCODED_GROWTH characters: re-encoding never grows more."""
    from server.wirejson import MAX_REENCODED_GROWTH, JsonObject, WireJson

    separators = (", ", ": ") if spaces else (",", ":")
    body = json.dumps({"v": value}, ensure_ascii=False, separators=separators)
    text = f'["snapshot",{{"n":{number},"p":{body}}}]'
    event, payload = WireJson.loads(text)
    assert event == "snapshot" and type(payload) is JsonObject
    assert payload.text_chars == len(text)
    size = len(json.dumps(payload, separators=(",", ":")))
    assert size <= MAX_REENCODED_GROWTH * len(text)
