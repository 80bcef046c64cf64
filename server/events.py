"""Socket.IO handlers: validate at the edge, store, return. No CPU-heavy work here.

Handlers run on the event loop (eventlet) or one thread per event (threading), so they only
check the payload (bounded, ~1 ms at the limits) and hand it to the batcher, which keeps the
newest snapshot per session. Every refusal is an `error` event with a stable code; the
session stays connected and usable.

They are registered on the app's own python-socketio server, not through Flask-SocketIO's
`@socketio.on`: that wraps every event in a Flask request context (a werkzeug Request, URL
matching, a session object), which profiling showed to cost more than validating the
drawing, and nothing here needs it. Each handler closes over its app's `Service`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import socketio

from server import Service
from server.batcher import error_answer
from server.drawing import PayloadError, _parse_seq, parse_drawing

log = logging.getLogger("server.events")
INTERNAL = PayloadError("internal", "The server failed to handle this message.")


def register(server: socketio.Server, service: Service) -> None:
    """Attach the handlers for one app to its Socket.IO server."""
    handlers = Handlers(service)
    server.on("connect", handlers.connect)
    server.on("disconnect", handlers.disconnect)
    server.on("snapshot", _guarded(service, handlers.snapshot))
    server.on("predict", _guarded(service, handlers.predict))
    server.on("clear", _guarded(service, handlers.clear))


class Handlers:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.batcher = service.batcher

    def connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        address = environ.get("REMOTE_ADDR") or "?"
        try:
            self.batcher.open(sid, address)
        except PayloadError as e:
            self.service.metrics.errors.labels(e.code).inc()
            log.warning("event=refused sid=%s address=%s code=%s", sid, address, e.code)
            raise socketio.exceptions.ConnectionRefusedError(
                e.message, {"code": e.code, "message": e.message}
            ) from None
        log.info(
            "event=connect sid=%s address=%s sessions=%d",
            sid,
            address,
            self.batcher.stats()["sessions"],
        )
        self.service.emit("ready", self.service.ready_message(), to=sid)

    def disconnect(self, sid: str, reason: Any = None) -> None:
        self.batcher.close(sid)
        log.info(
            "event=disconnect sid=%s reason=%s sessions=%d",
            sid,
            reason,
            self.batcher.stats()["sessions"],
        )

    def snapshot(self, sid: str, payload: Any = None, *_: Any) -> None:
        received = time.monotonic()
        try:
            drawing = parse_drawing(self._checked(payload), self.service.limits)
            self.batcher.submit_snapshot(sid, drawing, received)
        except PayloadError as e:
            refuse(self.service, sid, payload, e)

    def predict(self, sid: str, payload: Any = None, *_: Any) -> dict:
        """Answered by a `prediction` event; the return value also answers an ack, if asked."""
        received = time.monotonic()
        try:
            drawing = parse_drawing(self._checked(payload), self.service.limits, require_seq=False)
            ticket = self.batcher.submit_predict(sid, drawing, received)
        except PayloadError as e:
            return refuse(self.service, sid, payload, e)
        answer = ticket.wait(self.service.config.PREDICT_TIMEOUT_S)
        if answer is None:
            timeout = PayloadError("timeout", "No answer in time; the prediction may still arrive.")
            return error_answer(drawing.seq, timeout)
        return answer

    def clear(self, sid: str, payload: Any = None, *_: Any) -> None:
        try:
            if not isinstance(payload, dict):
                raise PayloadError("bad_payload", "The payload must be a JSON object.")
            self.batcher.clear(sid, _parse_seq(payload.get("seq"), required=True))
        except PayloadError as e:
            refuse(self.service, sid, payload, e)

    def _checked(self, payload: Any) -> Any:
        """Refuse a payload whose JSON is over MAX_PAYLOAD_BYTES (the transport allows more)."""
        limit = self.service.config.MAX_PAYLOAD_BYTES
        try:
            size = len(json.dumps(payload, separators=(",", ":"), default=_binary_size))
        except (TypeError, ValueError):
            return payload  # not JSON-shaped: parse_drawing says what is wrong
        if size > limit:
            raise PayloadError(
                "payload_too_large", f"The message is {size} bytes; the limit is {limit}."
            )
        return payload


def refuse(service: Service, sid: str, payload: Any, error: PayloadError) -> dict:
    """Emit an `error` to this session (the seq echoed when it was valid) and return it."""
    seq = payload.get("seq") if isinstance(payload, dict) else None
    answer = error_answer(seq if type(seq) is int else None, error)
    service.metrics.errors.labels(error.code).inc()
    log.info("event=error sid=%s seq=%s code=%s", sid, answer["seq"], error.code)
    service.emit("error", answer, to=sid)
    return answer


def _guarded(service: Service, handler: Callable[..., Any]) -> Callable[..., Any]:
    """A bug in a handler costs that message an `internal` error, never the session."""

    @functools.wraps(handler)
    def guarded(sid: str, *args: Any) -> Any:
        try:
            return handler(sid, *args)
        except Exception:
            log.exception("event=handler_failed sid=%s handler=%s", sid, handler.__name__)
            return refuse(service, sid, args[0] if args else None, INTERNAL)

    return guarded


def _binary_size(value: Any) -> str:
    # A Socket.IO binary attachment arrives as bytes; count it as its length in characters.
    if isinstance(value, (bytes, bytearray)):
        return "x" * len(value)
    raise TypeError(type(value).__name__)
