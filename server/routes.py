"""HTTP: the page, its static files, health, metrics and a one-shot predict API.

Every error answer is JSON `{"code", "message"}` with the same stable codes as the Socket.IO
protocol, never an HTML error page: API clients and load balancers parse it.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from server import protocol
from server.app import current_service
from server.config import ROOT
from server.drawing import parse_drawing
from server.protocol import PayloadError, Refusal

CLIENT_DIR = ROOT / "client"
SOCKET_IO_CLIENT = CLIENT_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
STATIC_SUFFIXES = (".js", ".css", ".svg", ".png", ".ico", ".webmanifest")

bp = Blueprint("digits", __name__)
log = logging.getLogger("server.routes")


@bp.get("/")
def index() -> Response:
    return send_from_directory(CLIENT_DIR, "index.html", max_age=0)


@bp.get("/static/<name>")
def static(name: str) -> Response:
    """Only top-level client files: node_modules and package files are not served."""
    if "/" in name or not name.endswith(STATIC_SUFFIXES):
        return problem("not_found", "No such file.", 404)
    return send_from_directory(CLIENT_DIR, name, max_age=0)


@bp.get("/vendor/socket.io.min.js")
def socket_io_client() -> Response:
    if not SOCKET_IO_CLIENT.is_file():
        log.error(
            "event=missing_asset path=%s fix='run scripts/run.sh or npm ci --prefix client'",
            SOCKET_IO_CLIENT.relative_to(ROOT),
        )
        return problem(
            "internal",
            "The Socket.IO browser client is not installed: run `npm ci --prefix client`.",
            500,
        )
    return send_from_directory(SOCKET_IO_CLIENT.parent, SOCKET_IO_CLIENT.name, max_age=3600)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    service = current_service()
    draining = service.batcher.draining
    body = {
        "status": "draining" if draining else "ok",
        "model": service.classifier.info,
        "uptime_s": round(time.monotonic() - service.started, 3),
        **service.batcher.stats(),
        "async_mode": service.async_mode,
    }
    if service.cluster is not None:
        body["cluster"] = service.cluster.view()
    return jsonify(body), 503 if draining else 200


@bp.get("/metrics")
def metrics() -> Response:
    body, content_type = current_service().metrics.render()
    return Response(body, content_type=content_type)


@bp.post("/api/predict")
def predict() -> tuple[Response, int]:
    """The `predict` event over HTTP: same JSON in (seq optional), same `prediction` out."""
    received = time.monotonic()
    service = current_service()
    payload = None
    try:
        if not request.is_json:
            raise PayloadError("bad_payload", "Send the drawing as application/json.")
        try:
            payload = request.get_json(silent=True)
        except RecursionError:  # nested deeper than the decoder goes; `silent` misses it
            payload = None
        if payload is None:
            raise PayloadError("bad_payload", "The body is not valid JSON.")
        drawing = parse_drawing(payload, service.limits, require_seq=False)
        ticket = service.batcher.submit_predict(None, drawing, received)
    except Refusal as e:
        return _refused(protocol.error(protocol.seq_echo(payload), e))
    answer = ticket.wait(service.config.PREDICT_TIMEOUT_S)
    if answer is None:
        answer = protocol.error(drawing.seq, Refusal("timeout", "No answer in time."))
    if "code" in answer:
        return _refused(answer)
    return jsonify(answer), 200


@bp.app_errorhandler(HTTPException)
def http_error(e: HTTPException) -> tuple[Response, int]:
    if e.code == 413:
        limit = current_service().config.MAX_PAYLOAD_BYTES
        return problem("payload_too_large", f"The body is larger than {limit} bytes.", 413)
    code = (e.name or "error").lower().replace(" ", "_")
    return problem(code, e.description or e.name, e.code or 500)


@bp.app_errorhandler(Exception)
def unexpected_error(e: Exception) -> tuple[Response, int]:
    log.exception("event=http_error path=%s", request.path)
    return problem("internal", "The server failed to answer this request.", 500)


def problem(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"code": code, "message": message}), status


def _refused(answer: dict) -> tuple[Response, int]:
    current_service().metrics.count_error(answer["code"])
    return jsonify(answer), protocol.http_status(answer["code"])
