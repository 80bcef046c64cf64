"""Socket.IO handlers: validate at the edge, store, return. No CPU-heavy work here.

Handlers run on the event loop (eventlet) or one thread per event (threading), so they only
check the payload (bounded, ~1 ms at the limits) and hand it to the batcher, which keeps the
newest snapshot per session. Every refusal is an `error` event with a stable code; the
session stays connected and usable.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import request
from flask_socketio import ConnectionRefusedError, SocketIO

from server import Service, current_service
from server.batcher import error_answer
from server.drawing import PayloadError, _parse_seq, parse_drawing

log = logging.getLogger("server.events")


def register(socketio: SocketIO) -> None:
    """Attach the handlers to the newest Socket.IO server (one per app)."""
    socketio.on_event("connect", on_connect)
    socketio.on_event("disconnect", on_disconnect)
    socketio.on_event("snapshot", on_snapshot)
    socketio.on_event("predict", on_predict)
    socketio.on_event("clear", on_clear)


def on_connect(auth: Any = None) -> None:
    service = current_service()
    sid, address = request.sid, request.remote_addr or "?"
    try:
        service.batcher.open(sid, address)
    except PayloadError as e:
        service.metrics.errors.labels(e.code).inc()
        log.warning("event=refused sid=%s address=%s code=%s", sid, address, e.code)
        raise ConnectionRefusedError(e.message, {"code": e.code, "message": e.message}) from None
    log.info(
        "event=connect sid=%s address=%s sessions=%d",
        sid,
        address,
        service.batcher.stats()["sessions"],
    )
    service.emit("ready", service.ready_message(), to=sid)


def on_disconnect(reason: Any = None) -> None:
    service = current_service()
    service.batcher.close(request.sid)
    log.info(
        "event=disconnect sid=%s reason=%s sessions=%d",
        request.sid,
        reason,
        service.batcher.stats()["sessions"],
    )


def on_snapshot(payload: Any = None) -> None:
    received = time.monotonic()
    service = current_service()
    try:
        drawing = parse_drawing(check_size(payload, service), service.limits)
        service.batcher.submit_snapshot(request.sid, drawing, received)
    except PayloadError as e:
        refuse(service, payload, e)


def on_predict(payload: Any = None) -> dict:
    """Answered by a `prediction` event; the return value also answers an ack, if asked."""
    received = time.monotonic()
    service = current_service()
    try:
        drawing = parse_drawing(check_size(payload, service), service.limits, require_seq=False)
        ticket = service.batcher.submit_predict(request.sid, drawing, received)
    except PayloadError as e:
        return refuse(service, payload, e)
    answer = ticket.wait(service.config.PREDICT_TIMEOUT_S)
    if answer is None:
        timeout = PayloadError("timeout", "No answer in time; the prediction may still arrive.")
        return error_answer(drawing.seq, timeout)
    return answer


def on_clear(payload: Any = None) -> None:
    service = current_service()
    try:
        if not isinstance(payload, dict):
            raise PayloadError("bad_payload", "The payload must be a JSON object.")
        service.batcher.clear(request.sid, _parse_seq(payload.get("seq"), required=True))
    except PayloadError as e:
        refuse(service, payload, e)


def check_size(payload: Any, service: Service) -> Any:
    """Refuse a payload whose JSON is over MAX_PAYLOAD_BYTES (the transport allows more)."""
    limit = service.config.MAX_PAYLOAD_BYTES
    try:
        size = len(json.dumps(payload, separators=(",", ":"), default=_binary_size))
    except (TypeError, ValueError):
        return payload  # not JSON-shaped: parse_drawing says what is wrong
    if size > limit:
        raise PayloadError(
            "payload_too_large", f"The message is {size} bytes; the limit is {limit}."
        )
    return payload


def refuse(service: Service, payload: Any, error: PayloadError) -> dict:
    """Emit an `error` to this session (the seq echoed when it was valid) and return it."""
    seq = payload.get("seq") if isinstance(payload, dict) else None
    answer = error_answer(seq if type(seq) is int else None, error)
    service.metrics.errors.labels(error.code).inc()
    log.info("event=error sid=%s seq=%s code=%s", request.sid, answer["seq"], error.code)
    service.emit("error", answer, to=request.sid)
    return answer


def _binary_size(value: Any) -> str:
    # A Socket.IO binary attachment arrives as bytes; count it as its length in characters.
    if isinstance(value, (bytes, bytearray)):
        return "x" * len(value)
    raise TypeError(type(value).__name__)
