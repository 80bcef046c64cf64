"""HTTP routes in-process: the page and its assets, /healthz, POST /api/predict, JSON errors."""

from __future__ import annotations

import json

import pytest

from server.routes import SOCKET_IO_CLIENT

STROKES = [[[140, 40 + 4 * i] for i in range(50)]]


def test_index_serves_the_page(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b"/vendor/socket.io.min.js" in response.data


@pytest.mark.parametrize(
    ("path", "mimetype"), [("app.js", "text/javascript"), ("style.css", "text/css")]
)
def test_static_client_files(client, path, mimetype):
    response = client.get(f"/static/{path}")
    assert response.status_code == 200
    assert response.mimetype == mimetype


@pytest.mark.parametrize(
    "path",
    [
        "/static/package.json",
        "/static/node_modules/socket.io-client/package.json",
        "/static/../server/config.py",
        "/static/%2e%2e%2fREADME.md",
        "/static/missing.js",
    ],
)
def test_only_client_assets_are_served(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.is_json and response.json["code"] == "not_found"


def test_vendor_socket_io_client(client):
    response = client.get("/vendor/socket.io.min.js")
    assert response.status_code == 200
    assert response.data == SOCKET_IO_CLIENT.read_bytes()


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok"
    assert {"name", "version", "test_accuracy"} <= set(body["model"])
    assert body["uptime_s"] >= 0
    assert body["sessions"] == 0 and body["pending"] == 0
    assert body["async_mode"] == "threading"


def test_predict(client):
    response = client.post("/api/predict", json={"seq": 5, "strokes": STROKES})
    assert response.status_code == 200
    body = response.json
    assert body["seq"] == 5 and body["digit"] == 1 and body["empty"] is False
    assert len(body["probabilities"]) == 10 and len(body["top"]) == 3
    assert body["input"].startswith("data:image/png;base64,")


def test_predict_seq_is_optional_and_empty_drawing(client):
    body = client.post("/api/predict", json={"strokes": []}).json
    assert body["seq"] is None and body["empty"] is True and body["input"] is None


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"data": "{not json", "content_type": "application/json"}, 400, "bad_payload"),
        ({"data": json.dumps({"strokes": []}), "content_type": "text/plain"}, 400, "bad_payload"),
        ({"data": "", "content_type": "application/json"}, 400, "bad_payload"),
        ({"json": [1, 2]}, 400, "bad_payload"),
        ({"json": {"seq": 3, "strokes": [[["x", 1]]]}}, 400, "bad_coordinate"),
        ({"json": {"seq": "3", "strokes": []}}, 400, "bad_seq"),
        ({"json": {"image": "%%%"}}, 400, "bad_image"),
    ],
)
def test_predict_bad_input_is_json(client, kwargs, status, code):
    response = client.post("/api/predict", **kwargs)
    assert response.status_code == status
    assert response.is_json
    assert response.json["code"] == code and response.json["message"]


def test_predict_echoes_valid_seq_in_errors(client):
    body = client.post("/api/predict", json={"seq": 9, "strokes": "no"}).json
    assert body == {"seq": 9, "code": "bad_strokes", "message": body["message"]}


def test_oversized_body_is_413_json(app_factory):
    client = app_factory(MAX_PAYLOAD_BYTES=2000).test_client()
    response = client.post("/api/predict", json={"strokes": [[[100, 100]] * 400]})
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"


def test_busy_server_is_503(app_factory):
    app = app_factory(MAX_PENDING_PREDICTS=1, PREDICT_TIMEOUT_S=0.1)
    app.extensions["digits"].close()  # no loop: the first predict stays queued
    client = app.test_client()
    first = client.post("/api/predict", json={"strokes": STROKES})
    assert first.status_code == 504 and first.json["code"] == "timeout"
    second = client.post("/api/predict", json={"strokes": STROKES})
    assert second.status_code == 503 and second.json["code"] == "busy"


def test_draining_server_is_503_shutting_down(app):
    client = app.test_client()
    assert app.extensions["digits"].batcher.drain(timeout=1.0)
    response = client.post("/api/predict", json={"seq": 4, "strokes": STROKES})
    assert response.status_code == 503
    assert response.json["code"] == "shutting_down" and response.json["seq"] == 4


class BrokenClassifier:
    def predict(self, x):
        raise RuntimeError("interpreter exploded")


def test_failed_inference_is_500_internal_and_the_next_predict_works(app):
    client = app.test_client()
    batcher = app.extensions["digits"].batcher
    real, batcher._classifier = batcher._classifier, BrokenClassifier()
    try:
        response = client.post("/api/predict", json={"seq": 6, "strokes": STROKES})
    finally:
        batcher._classifier = real
    assert response.status_code == 500
    assert response.json["code"] == "internal" and response.json["seq"] == 6
    assert "exploded" not in response.json["message"]
    assert client.post("/api/predict", json={"strokes": STROKES}).json["digit"] == 1


def test_a_handler_bug_is_500_internal_json(app, monkeypatch):
    import server.routes

    def broken(*args, **kwargs):
        raise RuntimeError("handler bug")

    monkeypatch.setattr(server.routes, "parse_drawing", broken)
    response = app.test_client().post("/api/predict", json={"strokes": STROKES})
    assert response.status_code == 500
    assert response.is_json and response.json["code"] == "internal"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/nope", 404, "not_found"),
        ("get", "/api/predict", 405, "method_not_allowed"),
        ("post", "/healthz", 405, "method_not_allowed"),
    ],
)
def test_http_errors_are_json(client, method, path, status, code):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.is_json and response.json["code"] == code


HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


@pytest.mark.parametrize(
    ("cors_origins", "origin", "allowed"),
    [
        ("", "http://localhost", True),  # the page's own origin (test client host: localhost)
        ("", "http://evil.example", False),
        ("https://app.example, https://other.example", "https://app.example", True),
        ("https://app.example", "http://localhost", True),
        ("https://app.example", "http://evil.example", False),
    ],
)
def test_socket_io_origins(app_factory, cors_origins, origin, allowed):
    client = app_factory(CORS_ORIGINS=cors_origins).test_client()
    response = client.get(HANDSHAKE, headers={"Origin": origin})
    assert (response.status_code == 200) == allowed
    if allowed:
        assert response.headers["Access-Control-Allow-Origin"] == origin


def test_socket_io_without_origin_header_is_allowed(client):
    """Non-browser clients (python-socketio, curl) send no Origin."""
    assert client.get(HANDSHAKE).status_code == 200
