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
import re
import time
from collections.abc import Callable
from typing import Any

import socketio

from server.app import Service
from server.batcher import error_answer
from server.drawing import PayloadError, parse_drawing, parse_seq

log = logging.getLogger("server.events")
INTERNAL = PayloadError("internal", "The server failed to handle this message.")


def register(server: socketio.Server, service: Service) -> None:
    """Attach the handlers for one app to its Socket.IO server."""
    server.packet_class.json = WireJson
    pace_messages(server, service)
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
            if not isinstance(self._checked(payload), dict):
                raise PayloadError("bad_payload", "The payload must be a JSON object.")
            self.batcher.clear(sid, parse_seq(payload.get("seq")))
        except PayloadError as e:
            refuse(self.service, sid, payload, e)

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


class Undecodable:
    """Stands in for a message whose JSON the server cannot decode (see `WireJson`)."""

    def __init__(self, message: str) -> None:
        self.message = message


_EVENT_NAME = re.compile(r'\s*\[\s*"([A-Za-z_]{1,32})"')

# The most compact JSON re-encoding of a decoded text has at most this many characters per
# character of that text: an astral character (1) becomes a \uXXXX\uXXXX pair (12) under
# ensure_ascii; a number grows at most 4.5x ("1e15" -> "1000000000000000.0"); anything else
# re-encodes to at most its own length (whitespace and redundant escapes only shrink).
MAX_REENCODED_GROWTH = 12


class JsonObject(dict):
    """An event's JSON object payload that remembers the length of the message text it was
    decoded from (the whole Socket.IO packet, so an upper bound for the payload alone).

    `Handlers._checked` uses it to skip re-encoding payloads that are far below
    MAX_PAYLOAD_BYTES, which was the largest cost of a snapshot handler. Payloads with
    binary attachments are rebuilt as plain dicts by python-socketio, and are measured.
    """

    __slots__ = ("text_chars",)

    def __init__(self, items: dict, text_chars: int) -> None:
        super().__init__(items)
        self.text_chars = text_chars


class WireJson:
    """The JSON module of the Socket.IO packets: `json`, except that undecodable text
    (invalid, nested deeper than Python's recursion limit, integers over 4300 digits)
    becomes the event with an `Undecodable` payload, so the client gets a `bad_payload`
    error. With plain `json` python-socketio drops such a message without an answer and
    logs a traceback for each one, which a hostile client can repeat at will. An object
    payload comes back as a `JsonObject` that knows how long the message text was."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(text: str | bytes, *args: Any, **kwargs: Any) -> Any:
        try:
            value = json.loads(text, *args, **kwargs)
        except (ValueError, RecursionError) as e:
            reason = "nests too deeply" if isinstance(e, RecursionError) else "is not valid JSON"
            head = text[:64].decode(errors="replace") if isinstance(text, bytes) else text[:64]
            name = _EVENT_NAME.match(head)
            # An unknown event name is ignored by python-socketio, without a log line.
            event = name[1] if name else "undecodable"
            return [event, Undecodable(f"The message {reason}.")]
        # An event is [name, payload, ...]: tag an object payload with the text's length.
        if type(value) is list and len(value) > 1 and type(value[1]) is dict:
            value[1] = JsonObject(value[1], len(text))
        return value


def pace_messages(server: socketio.Server, service: Service) -> None:
    """Read at most MAX_MESSAGES_PER_S messages a second from each connection (bursts of
    as many), and none from a connection that stopped reading its answers.

    Engine.IO reads a connection's messages in one loop that only yields when the socket
    has no data, and python-socketio hands each event to a new task: one client sending
    as fast as it can starved every other client (eventlet) and piled up tasks holding
    its messages. After each message this yields, and once a connection is over the rate
    it sleeps, so the kernel's buffers fill and the sender is slowed by TCP itself:
    nothing is dropped and no error is sent, that client just waits. 0 = only yield.
    (In threading mode that holds because server/websocket.py bounds what is read ahead.)

    Every answer is caused by a message, and a client that never reads (but keeps its
    connection open, e.g. by answering pings blindly) would make its answers pile up in
    the server's per-connection send queue without end. So a message arriving while
    MAX_UNSENT_PACKETS packets still wait to be written to that client drops the
    connection instead of being handled: the queue stays bounded, and a real client (one
    answer in flight) never comes near the cap.
    """
    handle = server.eio.handlers["message"]
    budgets: dict[str, tuple[float, float]] = {}  # eio sid -> (tokens, monotonic time)
    forget = server.eio.handlers.get("disconnect")
    rate = service.config.MAX_MESSAGES_PER_S
    max_unsent = service.config.MAX_UNSENT_PACKETS

    def on_message(eio_sid: str, data: Any) -> None:
        if max_unsent:
            unsent = unsent_packets(server, eio_sid)
            if unsent >= max_unsent:
                service.metrics.errors.labels("slow_reader").inc()
                log.warning("event=slow_reader eio_sid=%s unsent=%d", eio_sid, unsent)
                drop_transport(server, eio_sid, wait=False)
                return
        try:
            handle(eio_sid, data)
        finally:
            delay = 0.0
            if rate:
                now = time.monotonic()
                tokens, last = budgets.get(eio_sid, (rate, now))
                tokens = min(rate, tokens + (now - last) * rate) - 1.0
                budgets[eio_sid] = (tokens, now)
                delay = -tokens / rate if tokens < 0 else 0.0
            server.sleep(delay)

    def on_disconnect(eio_sid: str, *args: Any) -> Any:
        budgets.pop(eio_sid, None)
        return forget(eio_sid, *args) if forget else None

    server.eio.on("message", on_message)
    server.eio.on("disconnect", on_disconnect)


def unsent_packets(server: socketio.Server, eio_sid: str) -> int:
    """Packets queued for this connection that the transport has not written yet."""
    transport = server.eio.sockets.get(eio_sid)
    return transport.queue.qsize() if transport is not None else 0


def drop_transport(server: socketio.Server, eio_sid: str, wait: bool) -> None:
    """End a connection without an Engine.IO CLOSE packet: python-socketio clients take
    that packet as a goodbye and never reconnect, and for a client that stopped reading
    it would only join the queue. `wait` blocks until the queued packets are written,
    which a client that stopped reading never lets happen."""
    transport = server.eio.sockets.get(eio_sid)
    if transport is not None:
        transport.close(wait=wait, abort=True, reason=server.eio.reason.SERVER_DISCONNECT)
        server.eio.sockets.pop(eio_sid, None)
