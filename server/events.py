"""Socket.IO event handlers: validate at the edge, store, return. No CPU-heavy work here.

Handlers run on the event loop (eventlet) or one thread per event (threading), so they only
check the payload (bounded, ~1 ms at the limits) and hand it to the batcher, which keeps the
newest snapshot per session. Every refusal is an `error` event with a stable code
(server.protocol); the session stays connected and usable.

One `on_<event>` method per event: adding an event is adding a method. The namespace is
registered on the app's own python-socketio server, not through Flask-SocketIO's
`@socketio.on`: that wraps every event in a Flask request context (a werkzeug Request, URL
matching, a session object), which profiling showed to cost more than validating the
drawing, and nothing here needs it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import socketio

from server import protocol
from server.app import Service
from server.drawing import parse_drawing, parse_seq
from server.pacing import pace_messages
from server.protocol import PayloadError, Refusal
from server.wirejson import MAX_REENCODED_GROWTH, Undecodable

log = logging.getLogger("server.events")
INTERNAL = Refusal("internal", "The server failed to handle this message.")
# Events whose handler failing costs the message an `internal` error, never the session.
# connect/disconnect are not guarded: connect refuses by raising ConnectionRefusedError.
GUARDED = frozenset({"snapshot", "predict", "clear"})


def register(server: socketio.Server, service: Service) -> None:
    """Attach the handlers for one app to its Socket.IO server."""
    pace_messages(server, service.config, service.metrics)
    server.register_namespace(Events(service))


class Events(socketio.Namespace):
    def __init__(self, service: Service) -> None:
        super().__init__("/")
        self.service = service
        self.batcher = service.batcher

    def trigger_event(self, event: str, *args: Any) -> Any:
        if event not in GUARDED:
            return super().trigger_event(event, *args)
        try:
            return super().trigger_event(event, *args)
        except Exception:
            sid = args[0] if args else "?"
            log.exception("event=handler_failed sid=%s handler=%s", sid, event)
            payload = args[1] if len(args) > 1 else None
            return self._refuse(sid, payload, INTERNAL)

    def on_connect(self, sid: str, environ: dict, auth: Any = None) -> None:
        address = environ.get("REMOTE_ADDR") or "?"
        try:
            self.batcher.open(sid, address)
        except Refusal as e:
            self.service.metrics.count_error(e.code)
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

    def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.batcher.close(sid)
        log.info(
            "event=disconnect sid=%s reason=%s sessions=%d",
            sid,
            reason,
            self.batcher.stats()["sessions"],
        )

    def on_snapshot(self, sid: str, payload: Any = None, *_: Any) -> None:
        received = time.monotonic()
        try:
            drawing = parse_drawing(self._checked(payload), self.service.limits)
            self.batcher.submit_snapshot(sid, drawing, received)
        except Refusal as e:
            self._refuse(sid, payload, e)

    def on_predict(self, sid: str, payload: Any = None, *_: Any) -> dict:
        """Answered by a `prediction` event; the return value also answers an ack, if asked."""
        received = time.monotonic()
        try:
            drawing = parse_drawing(self._checked(payload), self.service.limits, require_seq=False)
            ticket = self.batcher.submit_predict(sid, drawing, received)
        except Refusal as e:
            return self._refuse(sid, payload, e)
        answer = ticket.wait(self.service.config.PREDICT_TIMEOUT_S)
        if answer is None:
            timeout = Refusal("timeout", "No answer in time; the prediction may still arrive.")
            return protocol.error(drawing.seq, timeout)
        return answer

    def on_clear(self, sid: str, payload: Any = None, *_: Any) -> None:
        try:
            if not isinstance(self._checked(payload), dict):
                raise PayloadError("bad_payload", "The payload must be a JSON object.")
            self.batcher.clear(sid, parse_seq(payload.get("seq")))
        except Refusal as e:
            self._refuse(sid, payload, e)

    def _refuse(self, sid: str, payload: Any, refusal: Refusal) -> dict:
        """An `error` to this session, the seq echoed when the payload carried a valid one."""
        metrics = self.service.metrics
        return protocol.refuse(
            self.service.emit, metrics.count_error, sid, protocol.seq_echo(payload), refusal
        )

    def _checked(self, payload: Any) -> Any:
        """Refuse a payload whose JSON is over MAX_PAYLOAD_BYTES (the transport allows more)."""
        if isinstance(payload, Undecodable):
            raise PayloadError("bad_payload", payload.message)
        limit = self.service.config.MAX_PAYLOAD_BYTES
        # Re-encoding costs more than decoding (~30 us for a typical snapshot, most of the
        # handler); a payload whose message text was short enough cannot be over the limit.
        text_chars = getattr(payload, "text_chars", None)
        if text_chars is not None and text_chars * MAX_REENCODED_GROWTH <= limit:
            return payload
        try:
            size = len(json.dumps(payload, separators=(",", ":"), default=_binary_size))
        except (TypeError, ValueError):
            return payload  # not JSON-shaped: parse_drawing says what is wrong
        if size > limit:
            raise PayloadError(
                "payload_too_large", f"The message is {size} bytes; the limit is {limit}."
            )
        return payload


def _binary_size(value: Any) -> str:
    # A Socket.IO binary attachment arrives as bytes; count it as its length in characters.
    if isinstance(value, (bytes, bytearray)):
        return "x" * len(value)
    raise TypeError(type(value).__name__)
