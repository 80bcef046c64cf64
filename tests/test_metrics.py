"""/metrics moves when traffic flows, and every app counts on its own."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from server.app import socketio

STROKES = [[[140, 40 + 4 * i] for i in range(50)]]


def samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: dict, name: str, **labels) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_metrics_move_with_traffic(app, client):
    before = samples(client)
    assert value(before, "digits_active_sessions") == 0
    sio = socketio.test_client(app)
    sio.emit("snapshot", {"seq": 1, "strokes": STROKES})
    wait_until(lambda: value(samples(client), "digits_snapshots_answered_total") == 1)
    sio.emit("predict", {"seq": 2, "strokes": STROKES}, callback=True)
    sio.emit("snapshot", {"seq": 3, "strokes": "bad"})
    client.post("/api/predict", json={"strokes": STROKES})
    client.post("/api/predict", json={"strokes": 1})
    after = samples(client)
    assert value(after, "digits_active_sessions") == 1
    assert value(after, "digits_snapshots_received_total") == 1
    assert value(after, "digits_snapshots_answered_total") == 1
    assert value(after, "digits_predictions_total", via="socket") == 1
    assert value(after, "digits_predictions_total", via="http") == 1
    assert value(after, "digits_errors_total", code="bad_strokes") == 2
    assert value(after, "digits_inference_seconds_count") >= 1
    assert value(after, "digits_batch_size_count") >= 1
    assert value(after, "digits_batch_size_sum") == 3
    assert value(after, "digits_end_to_end_seconds_count", kind="snapshot") == 1
    assert value(after, "digits_end_to_end_seconds_count", kind="predict") == 2
    sio.disconnect()
    assert value(samples(client), "digits_active_sessions") == 0


def test_each_app_has_its_own_registry(app_factory):
    first, second = app_factory(), app_factory()
    first.test_client().post("/api/predict", json={"strokes": STROKES})
    assert value(samples(first.test_client()), "digits_predictions_total", via="http") == 1
    assert value(samples(second.test_client()), "digits_predictions_total", via="http") == 0
