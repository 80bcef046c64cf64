"""Every Socket.IO event and error code, in-process with flask_socketio's test client.

Handlers run synchronously in the test; answers come from the app's real batching thread,
so waits poll the client's queue with a deadline (never a fixed sleep, never a speed check).
"""

from __future__ import annotations

import base64
import io
import json
import time

import numpy as np
import pytest
import socketio as socketio_module
from PIL import Image

from server.app import socketio
from server.batcher import process
from server.config import Config
from server.drawing import Drawing, PayloadError, parse_drawing
from server.preprocess import to_model_input
from tests.images import canvas_data_url, corrupt_png, data_url

WAIT_S = 15.0
ONE = [[[140, 40 + 4 * i] for i in range(50)]]  # a vertical bar: a "1" on a 280 px canvas


def packets(client, name: str) -> list[dict]:
    """What arrived so far, without consuming (the batcher thread appends concurrently)."""
    return [p["args"][0] for p in list(client.queue) if p["name"] == name]


def wait_for(client, name: str, seq=..., timeout: float = WAIT_S) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in packets(client, name):
            if seq is ... or message.get("seq") == seq:
                return message
        time.sleep(0.005)
    raise AssertionError(f"no {name!r} (seq {seq}) within {timeout} s; got {list(client.queue)}")


def sid_of(client) -> str:
    return socketio.server.manager.sid_from_eio_sid(client.eio_sid, "/")


def check_probabilities(message: dict) -> None:
    assert message["empty"] is False
    p = message["probabilities"]
    assert len(p) == 10 and all(0.0 <= v <= 1.0 for v in p)
    assert sum(p) == pytest.approx(1.0, abs=1e-3)
    assert message["digit"] == int(np.argmax(p))
    assert message["confidence"] == p[message["digit"]]
    assert message["latency_ms"] >= 0


# --- connect -------------------------------------------------------------------------------


def test_connect_sends_ready(socket_client, app):
    ready = wait_for(socket_client, "ready")
    assert ready["protocol"] == 2
    assert {"name", "version", "test_accuracy"} <= set(ready["model"])
    if len(ready["model"]) > 3:  # a model with a "not a digit" output says from when
        assert 0 < ready["model"]["not_a_digit_threshold"] < 1
    limits = ready["limits"]
    config = app.extensions["digits"].config
    assert limits["max_strokes"] == config.MAX_STROKES
    assert limits["max_payload_bytes"] == config.MAX_PAYLOAD_BYTES
    assert limits["snapshot_max_hz"] == config.SNAPSHOT_MAX_HZ


def test_ready_goes_only_to_the_session_that_connected(socket_client, app):
    wait_for(socket_client, "ready")
    other = socketio.test_client(app)
    assert len(packets(other, "ready")) == 1
    assert len(packets(socket_client, "ready")) == 1  # not sent again when another connects
    other.disconnect()


def test_disconnect_forgets_the_session_its_pending_snapshot_and_queued_predicts(app_factory):
    """Pending work exists when the session goes: a snapshot held by the rate cap and a
    predict the (stopped) loop has not taken. Its snapshot is forgotten at once, its predict
    is settled `disconnected` by the loop's next batch, and another session's predict in
    that same batch is answered normally."""
    app = app_factory(SNAPSHOT_MAX_HZ=0.5, PREDICT_TIMEOUT_S=0.05)
    service = app.extensions["digits"]
    service.close()  # no loop: the test runs its iterations
    http = app.test_client()
    first, second = socketio.test_client(app), socketio.test_client(app)
    assert http.get("/healthz").json["sessions"] == 2
    first.emit("snapshot", {"seq": 1, "strokes": ONE})
    assert first.emit("predict", {"seq": 2, "strokes": ONE}, callback=True)["code"] == "timeout"
    second.emit("snapshot", {"seq": 1, "strokes": ONE})
    assert second.emit("predict", {"seq": 2, "strokes": ONE}, callback=True)["code"] == "timeout"
    assert http.get("/healthz").json["pending"] == 4
    first.disconnect()
    # The snapshot is forgotten; the predict stays queued until the loop settles it.
    health = http.get("/healthz").json
    assert (health["sessions"], health["pending"]) == (1, 3)
    batcher = service.batcher
    batch, _ = batcher._take(time.monotonic())
    assert [(item.kind, item.session.sid) for item in batch] == [
        ("predict", sid_of(second)),
        ("snapshot", sid_of(second)),
    ]
    batcher._run_batch(batch)
    assert [m["seq"] for m in packets(second, "prediction")] == [2]
    assert packets(second, "error") == []
    assert http.get("/healthz").json["pending"] == 0
    second.disconnect()
    assert http.get("/healthz").json["sessions"] == 0


def refusal_code(app) -> str:
    """The code the connect handler refuses a new session with (what connect_error carries
    as its `data`; the test client drops it, so the handler is asked directly)."""
    from server.events import Events

    with pytest.raises(socketio_module.exceptions.ConnectionRefusedError) as refused:
        Events(app.extensions["digits"]).on_connect("probe", {})  # the test client has no address
    data = refused.value.error_args["data"]
    assert data["message"] == refused.value.error_args["message"]
    return data["code"]


def errors_counted(app, code: str) -> float:
    registry = app.extensions["digits"].metrics.registry
    return registry.get_sample_value("digits_errors_total", {"code": code}) or 0.0


def test_server_full_refuses_connection(app_factory):
    app = app_factory(MAX_SESSIONS=1)
    first = socketio.test_client(app)
    assert first.is_connected()
    assert not socketio.test_client(app).is_connected()
    assert errors_counted(app, "server_full") == 1
    assert refusal_code(app) == "server_full"
    first.disconnect()
    assert socketio.test_client(app).is_connected()  # the session was released


def test_sessions_are_counted_per_client_address(app_factory):
    app = app_factory(MAX_SESSIONS_PER_IP=1)
    from server.events import Events

    events = Events(app.extensions["digits"])
    events.on_connect("first", {"REMOTE_ADDR": "10.0.0.1"})
    events.on_connect("second", {"REMOTE_ADDR": "10.0.0.2"})  # another address: admitted
    with pytest.raises(socketio_module.exceptions.ConnectionRefusedError) as refused:
        events.on_connect("third", {"REMOTE_ADDR": "10.0.0.1"})
    assert refused.value.error_args["data"]["code"] == "too_many_sessions"
    events.on_disconnect("first")
    events.on_connect("third", {"REMOTE_ADDR": "10.0.0.1"})  # released on disconnect
    assert app.test_client().get("/healthz").json["sessions"] == 2


def test_sessions_per_address_cap(app_factory):
    app = app_factory(MAX_SESSIONS_PER_IP=1)
    assert socketio.test_client(app).is_connected()
    assert not socketio.test_client(app).is_connected()
    assert errors_counted(app, "too_many_sessions") == 1
    assert refusal_code(app) == "too_many_sessions"


# --- snapshot ------------------------------------------------------------------------------


def test_snapshot_gets_probabilities(socket_client):
    socket_client.emit("snapshot", {"seq": 1, "strokes": ONE, "width": 280, "height": 280})
    message = wait_for(socket_client, "probabilities", 1)
    check_probabilities(message)
    assert message["digit"] == 1
    assert set(message) == {
        "seq",
        "verdict",
        "digit",
        "confidence",
        "probabilities",
        "empty",
        "latency_ms",
    }
    assert message["verdict"] == "digit"


def test_image_snapshot(socket_client):
    socket_client.emit("snapshot", {"seq": 7, "image": canvas_data_url()})
    message = wait_for(socket_client, "probabilities", 7)
    check_probabilities(message)
    assert message["digit"] == 1


@pytest.mark.parametrize("strokes", [[], [[]], [[], []]])
def test_empty_snapshot(socket_client, strokes):
    socket_client.emit("snapshot", {"seq": 3, "strokes": strokes})
    message = wait_for(socket_client, "probabilities", 3)
    assert message["empty"] is True
    assert message["digit"] is None and message["confidence"] is None
    assert message["probabilities"] is None


def test_blank_image_is_empty(socket_client):
    socket_client.emit("snapshot", {"seq": 4, "image": canvas_data_url(((0, 0), (0, 0)))})
    socket_client.emit("snapshot", {"seq": 5, "image": canvas_data_url(((-50, -50),) * 2)})
    assert wait_for(socket_client, "probabilities", 5)["empty"] is True


def test_latest_snapshot_wins(app_factory):
    # At 0.5 Hz a session's second snapshot waits 2 s: everything sent meanwhile coalesces.
    app = app_factory(SNAPSHOT_MAX_HZ=0.5)
    client = socketio.test_client(app)
    client.emit("snapshot", {"seq": 1, "strokes": ONE})
    wait_for(client, "probabilities", 1)
    for seq in (2, 3, 4):
        client.emit("snapshot", {"seq": seq, "strokes": ONE})
    wait_for(client, "probabilities", 4)
    assert [m["seq"] for m in packets(client, "probabilities")] == [1, 4]
    metrics = app.test_client().get("/metrics").text
    assert "digits_snapshots_coalesced_total 2.0" in metrics


def test_older_snapshot_is_ignored(app_factory):
    app = app_factory(SNAPSHOT_MAX_HZ=0.5)
    client = socketio.test_client(app)
    client.emit("snapshot", {"seq": 10, "strokes": ONE})
    wait_for(client, "probabilities", 10)
    client.emit("snapshot", {"seq": 9, "strokes": ONE})  # older than what was answered
    client.emit("snapshot", {"seq": 12, "strokes": ONE})
    client.emit("snapshot", {"seq": 11, "strokes": ONE})  # older than what is pending
    wait_for(client, "probabilities", 12)
    assert [m["seq"] for m in packets(client, "probabilities")] == [10, 12]


# --- clear ---------------------------------------------------------------------------------


def test_clear_drops_pending_snapshot(app_factory):
    app = app_factory(SNAPSHOT_MAX_HZ=0.5)
    client = socketio.test_client(app)
    client.emit("snapshot", {"seq": 1, "strokes": ONE})
    wait_for(client, "probabilities", 1)
    client.emit("snapshot", {"seq": 2, "strokes": ONE})  # pending behind the rate cap
    client.emit("clear", {"seq": 3})
    assert wait_for(client, "cleared", 3) == {"seq": 3}
    client.emit("snapshot", {"seq": 4, "strokes": ONE})
    wait_for(client, "probabilities", 4)
    assert [m["seq"] for m in packets(client, "probabilities")] == [1, 4]


def test_clear_then_older_snapshot_is_never_answered(socket_client):
    socket_client.emit("clear", {"seq": 5})
    wait_for(socket_client, "cleared", 5)
    socket_client.emit("snapshot", {"seq": 4, "strokes": ONE})
    socket_client.emit("snapshot", {"seq": 6, "strokes": ONE})
    wait_for(socket_client, "probabilities", 6)
    assert [m["seq"] for m in packets(socket_client, "probabilities")] == [6]


# --- predict -------------------------------------------------------------------------------


def test_predict_answers_event_and_ack(socket_client):
    ack = socket_client.emit("predict", {"seq": 8, "strokes": ONE}, callback=True)
    message = wait_for(socket_client, "prediction", 8)
    assert ack == message
    check_probabilities(message)
    assert message["digit"] == 1
    top = message["top"]
    assert [t["digit"] for t in top][0] == message["digit"]
    assert len(top) == 3 and top == sorted(top, key=lambda t: -t["p"])
    assert message["input"].startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(message["input"].split(",", 1)[1])))
    assert image.size == (28, 28)


def test_predict_without_seq_and_without_ack(socket_client):
    assert socket_client.emit("predict", {"image": canvas_data_url()}) is None
    message = wait_for(socket_client, "prediction", None)
    check_probabilities(message)


def test_empty_predict(socket_client):
    ack = socket_client.emit("predict", {"seq": 2, "strokes": []}, callback=True)
    assert ack["empty"] is True
    assert ack["digit"] is None and ack["probabilities"] is None
    assert ack["top"] == [] and ack["input"] is None


def test_predict_of_the_last_answered_picture_reuses_its_result(socket_client, monkeypatch):
    """A client predicts what it last sent: that answer is reused, not computed again."""
    import server.batcher

    preprocessed = []

    def counting(drawing, *args):
        preprocessed.append(drawing.seq)
        return to_model_input(drawing, *args)

    monkeypatch.setattr(server.batcher, "to_model_input", counting)
    strokes = [[[140, 40 + 4 * i] for i in range(50)], [[120, 60], [160, 60]]]
    socket_client.emit("snapshot", {"seq": 1, "strokes": strokes})
    wait_for(socket_client, "probabilities", 1)
    same = socket_client.emit("predict", {"seq": 2, "strokes": strokes}, callback=True)
    assert same["input"].startswith("data:image/png;base64,")
    other = socket_client.emit("predict", {"seq": 3, "strokes": strokes[:1]}, callback=True)
    assert other["probabilities"] != same["probabilities"]
    socket_client.emit("clear", {"seq": 4})
    wait_for(socket_client, "cleared", 4)
    again = socket_client.emit("predict", {"seq": 5, "strokes": strokes}, callback=True)
    assert again["probabilities"] == same["probabilities"]  # reused = computed again
    assert again["input"] == same["input"]
    assert preprocessed == [1, 3, 5]  # 2 reused 1's result; a clear forgets it


def test_same_picture():
    a = parse_drawing({"seq": 1, "strokes": [[[1, 2], [3, 4]], [[5, 6]]]})
    assert a.same_picture(parse_drawing({"seq": 9, "strokes": [[[1, 2], [3, 4.0]], [[5, 6]]]}))
    assert not a.same_picture(parse_drawing({"seq": 1, "strokes": [[[1, 2], [3, 4]]]}))
    assert not a.same_picture(parse_drawing({"seq": 1, "strokes": [[[1, 2], [3, 5]], [[5, 6]]]}))
    image = parse_drawing({"seq": 1, "image": canvas_data_url()})
    assert image.same_picture(parse_drawing({"seq": 2, "image": canvas_data_url()}))
    assert not image.same_picture(a) and not a.same_picture(image)
    blank = parse_drawing({"seq": 1, "strokes": []})
    assert not image.same_picture(blank) and not blank.same_picture(image)
    assert parse_drawing({"seq": 1, "strokes": []}).same_picture(Drawing(seq=None))


def dropped(app) -> float:
    registry = app.extensions["digits"].metrics.registry
    return registry.get_sample_value("digits_snapshots_dropped_total") or 0.0


def test_a_predict_makes_the_older_pending_snapshot_stale(app_factory):
    """Snapshot 2 waits behind the rate cap while predict 3 is answered: when 2's turn comes
    it is computed, found stale and dropped (digits_snapshots_dropped_total), never sent."""
    app = app_factory(SNAPSHOT_MAX_HZ=1)
    client = socketio.test_client(app)
    client.emit("snapshot", {"seq": 1, "strokes": ONE})
    wait_for(client, "probabilities", 1)
    client.emit("snapshot", {"seq": 2, "strokes": ONE})  # pending behind the rate cap
    assert client.emit("predict", {"seq": 3, "strokes": ONE}, callback=True)["seq"] == 3
    deadline = time.monotonic() + WAIT_S
    while dropped(app) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert dropped(app) == 1
    client.emit("snapshot", {"seq": 4, "strokes": ONE})
    wait_for(client, "probabilities", 4)
    assert [m["seq"] for m in packets(client, "probabilities")] == [1, 4]


def test_too_many_predicts_and_timeout(app_factory):
    app = app_factory(MAX_SESSION_PREDICTS=2, PREDICT_TIMEOUT_S=0.1)
    app.extensions["digits"].close()  # no loop: predicts stay queued
    client = socketio.test_client(app)
    for seq in (1, 2):
        answer = client.emit("predict", {"seq": seq, "strokes": ONE}, callback=True)
        assert (answer["code"], answer["seq"]) == ("timeout", seq)
        assert isinstance(answer["message"], str) and answer["message"]
    refused = client.emit("predict", {"seq": 3, "strokes": ONE}, callback=True)
    assert refused["code"] == "too_many_predicts"
    assert isinstance(refused["message"], str) and refused["message"]
    assert wait_for(client, "error", 3) == refused


def test_draining_server_refuses_new_work(app):
    client = socketio.test_client(app)
    assert app.extensions["digits"].batcher.drain(timeout=1.0)
    answer = client.emit("predict", {"seq": 1, "strokes": ONE}, callback=True)
    assert answer["code"] == "shutting_down"
    assert not socketio.test_client(app).is_connected()
    assert refusal_code(app) == "shutting_down"
    assert app.test_client().get("/healthz").status_code == 503


# --- errors --------------------------------------------------------------------------------

BAD = [
    ({}, "snapshot", "not a dict", "bad_payload"),
    ({}, "snapshot", {"seq": 1}, "bad_payload"),
    ({}, "snapshot", {"seq": 1, "strokes": [], "image": "x"}, "bad_payload"),
    ({}, "snapshot", {"strokes": ONE}, "bad_seq"),
    ({}, "snapshot", {"seq": -1, "strokes": ONE}, "bad_seq"),
    ({}, "snapshot", {"seq": "1", "strokes": ONE}, "bad_seq"),
    ({}, "snapshot", {"seq": 1, "strokes": "line"}, "bad_strokes"),
    ({}, "snapshot", {"seq": 1, "strokes": [[[1, 2, 3]]]}, "bad_strokes"),
    ({}, "snapshot", {"seq": 1, "strokes": [[["a", 2]]]}, "bad_coordinate"),
    ({}, "snapshot", {"seq": 1, "strokes": [[[1e300, 2]]]}, "bad_coordinate"),
    ({"MAX_STROKES": 2}, "snapshot", {"seq": 1, "strokes": [[[1, 1]]] * 3}, "too_many_strokes"),
    ({"MAX_POINTS": 10}, "snapshot", {"seq": 1, "strokes": [[[1, 1]] * 11]}, "too_many_points"),
    ({}, "snapshot", {"seq": 1, "image": "not base64!"}, "bad_image"),
    ({}, "snapshot", {"seq": 1, "image": base64.b64encode(b"hello").decode()}, "bad_image"),
    (
        {"MAX_IMAGE_BYTES": 100},
        "snapshot",
        {"seq": 1, "image": canvas_data_url()},
        "image_too_large",
    ),
    (
        {"MAX_IMAGE_PIXELS": 100},
        "snapshot",
        {"seq": 1, "image": canvas_data_url()},
        "image_too_many_pixels",
    ),
    (
        {"MAX_PAYLOAD_BYTES": 1000},
        "snapshot",
        {"seq": 1, "strokes": [[[100, 100]] * 200]},
        "payload_too_large",
    ),
    ({}, "predict", [], "bad_payload"),
    ({}, "predict", {"seq": 1.5, "strokes": ONE}, "bad_seq"),
    ({"MAX_POINTS": 10}, "predict", {"seq": 1, "strokes": [[[1, 1]] * 11]}, "too_many_points"),
    ({}, "clear", {}, "bad_seq"),
    ({}, "clear", {"seq": "x"}, "bad_seq"),
    ({}, "clear", {"seq": -1}, "bad_seq"),  # an integer seq is echoed, even a bad one
    ({}, "clear", None, "bad_payload"),
]


@pytest.mark.parametrize(("overrides", "event", "payload", "code"), BAD)
def test_error_codes_keep_the_session_usable(app_factory, overrides, event, payload, code):
    app = app_factory(**overrides)
    client = socketio.test_client(app)
    answer = client.emit(event, payload, callback=True)
    error = wait_for(client, "error")
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    expected_seq = payload.get("seq") if isinstance(payload, dict) else None
    assert error["seq"] == (expected_seq if type(expected_seq) is int else None)
    if event == "predict":
        assert answer == error
    assert client.is_connected()
    client.emit("snapshot", {"seq": 100, "strokes": [[[1, 1], [1, 9]]]})
    check_probabilities(wait_for(client, "probabilities", 100))


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("snapshot", {"seq": 1, "strokes": "x"}),
        ("predict", {"seq": 1, "strokes": "x"}),
        ("clear", {"seq": "x"}),
        ("snapshot", {"seq": 1, "image": data_url(corrupt_png())}),  # refused by the batcher
        ("predict", {"seq": 1, "image": data_url(corrupt_png())}),
    ],
)
def test_an_error_goes_to_its_own_session_only(app, event, payload):
    bystander, client = socketio.test_client(app), socketio.test_client(app)
    client.emit(event, payload)
    wait_for(client, "error")
    bystander.emit("predict", {"seq": 5, "strokes": ONE}, callback=True)  # a barrier
    assert packets(bystander, "error") == []


@pytest.mark.parametrize("event", ["snapshot", "predict", "clear"])
def test_an_undecodable_message_is_bad_payload(app, event):
    """Text that is not JSON reaches the handler as an answerable event (server.wirejson)."""
    client = socketio.test_client(app)
    raw = f'2["{event}",{{"seq":1,"strokes":[[[1,2]]'  # a Socket.IO EVENT packet, cut short
    socketio.server._handle_eio_message(client.eio_sid, raw + ", }]")
    error = wait_for(client, "error")
    assert error["code"] == "bad_payload" and error["message"] and error["seq"] is None
    assert client.emit("predict", {"seq": 2, "strokes": ONE}, callback=True)["digit"] == 1


@pytest.mark.parametrize("event", ["snapshot", "predict", "clear"])
def test_a_handler_bug_answers_internal_with_the_seq(app, monkeypatch, event):
    """A bug in a guarded handler costs that message an `internal` error, not the session."""
    import server.events

    def broken(*args, **kwargs):
        raise RuntimeError("handler bug")

    client, bystander = socketio.test_client(app), socketio.test_client(app)
    bystander.get_received()
    with monkeypatch.context() as patch:
        patch.setattr(server.events, "parse_drawing", broken)
        patch.setattr(server.events, "parse_seq", broken)
        client.emit(event, {"seq": 7, "strokes": ONE})
        error = wait_for(client, "error", 7)
        client.emit(event)  # no payload at all: still an answer, without a seq
        wait_for(client, "error", None)
    assert error["code"] == "internal" and error["message"]
    assert "handler bug" not in error["message"]
    assert client.emit("predict", {"seq": 8, "strokes": ONE}, callback=True)["digit"] == 1
    assert bystander.get_received() == []  # the error went to its session only


def padded(size: int) -> dict:
    """An empty drawing whose JSON (compact, as the server measures it) is `size` bytes."""
    payload = {"seq": 1, "strokes": [], "pad": ""}
    payload["pad"] = "x" * (size - len(json.dumps(payload, separators=(",", ":"))))
    assert len(json.dumps(payload, separators=(",", ":"))) == size
    return payload


@pytest.mark.parametrize("event", ["snapshot", "predict"])
def test_payload_limit_is_exact(app_factory, event):
    """A payload of exactly MAX_PAYLOAD_BYTES is accepted; one byte more is refused."""
    app = app_factory(MAX_PAYLOAD_BYTES=1000)
    client = socketio.test_client(app)
    client.emit(event, padded(1001))
    assert wait_for(client, "error", 1)["code"] == "payload_too_large"
    client.emit(event, padded(1000))
    answer = wait_for(client, "probabilities" if event == "snapshot" else "prediction", 1)
    assert answer["empty"] is True
    assert len(packets(client, "error")) == 1


def test_binary_attachments_count_against_the_payload_limit(app_factory):
    """A Socket.IO binary attachment counts as its length: it cannot slip past the limit."""
    client = socketio.test_client(app_factory(MAX_PAYLOAD_BYTES=1000))
    small = client.emit("predict", {"seq": 1, "strokes": [], "pad": b"x" * 900}, callback=True)
    assert small["empty"] is True
    big = client.emit("predict", {"seq": 2, "strokes": [], "pad": b"x" * 1001}, callback=True)
    assert big["code"] == "payload_too_large"


def test_undecodable_image_is_an_error_for_that_item_only(socket_client):
    socket_client.emit("snapshot", {"seq": 1, "image": data_url(corrupt_png())})
    assert wait_for(socket_client, "error", 1)["code"] == "bad_image"
    ack = socket_client.emit("predict", {"seq": 2, "image": data_url(corrupt_png())}, callback=True)
    assert ack["code"] == "bad_image" and ack["seq"] == 2
    socket_client.emit("snapshot", {"seq": 3, "strokes": ONE})
    check_probabilities(wait_for(socket_client, "probabilities", 3))


def test_process_isolates_per_item_errors(app):
    """One batch with a good, an empty and an undecodable drawing: each gets its own result."""
    classifier = app.extensions["digits"].classifier
    drawings = [
        parse_drawing({"seq": 1, "strokes": ONE}),
        parse_drawing({"seq": 2, "strokes": []}),
        parse_drawing({"seq": 3, "image": data_url(corrupt_png())}),
        parse_drawing({"seq": 4, "image": canvas_data_url()}),
    ]
    batch = process(drawings, [False, False, True, True], classifier, Config.MAX_IMAGE_PIXELS)
    good, empty, bad, image = batch.results
    assert good.reading.digits.shape == (10,) and good.error is None and good.image is None
    assert empty.x is None and empty.reading.digits is None and empty.error is None
    assert isinstance(bad.error, PayloadError) and bad.error.code == "bad_image"
    assert image.image.startswith("data:image/png;base64,")
    assert batch.inference_s > 0


class BrokenClassifier:
    """The only fake here: a real model cannot be made to fail on demand."""

    info = {"name": "broken", "version": "0", "test_accuracy": None}

    def predict(self, x):
        raise RuntimeError("interpreter exploded")


def test_inference_failure_is_internal_error_and_loop_survives(app):
    service = app.extensions["digits"]
    real = service.batcher._classifier
    client = socketio.test_client(app)
    service.batcher._classifier = BrokenClassifier()
    answer = client.emit("predict", {"seq": 1, "strokes": ONE}, callback=True)
    assert answer["code"] == "internal"
    assert "exploded" not in answer["message"]  # internals stay in the log
    service.batcher._classifier = real
    client.emit("snapshot", {"seq": 2, "strokes": ONE})
    check_probabilities(wait_for(client, "probabilities", 2))
