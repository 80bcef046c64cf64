"""Every reach into the internals of eventlet, python-engineio, python-socketio and
simple-websocket, in one place.

Each patch names the pinned version it was written against (requirements.txt) and why it
exists; tests/test_library_contracts.py asserts that every private name used here still
exists, so a version bump fails one named test instead of surfacing as hostile-client
timeouts. `install` applies the server-wide ones; the transport helpers at the end are used
by server.pacing and server.shutdown.

Threading mode's WebSocket reads, bounded the way eventlet's already are: eventlet reads a
client's next message only when Engine.IO asks for it, so a client that sends faster than it
is served fills the kernel's buffers and TCP slows it down; the per-connection read rate
(MAX_MESSAGES_PER_S) and the slow-reader cap rely on that. In threading mode Engine.IO uses
simple-websocket, whose own thread reads the socket as fast as the client sends and keeps
every message in a list until it is handled (measured: one flooding client grew the server
to 780 MB in 15 s). It also held a message whole, at any size, before Engine.IO checked its
length. Here the reading thread waits while MAX_UNREAD messages wait to be handled, a message
over the transport's limit ends the connection while it arrives, and the socket gets the
timeout Engine.IO gives eventlet's, so a client that stops reading cannot hold threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import engineio
import simple_websocket
import socketio
from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI

log = logging.getLogger("server.patches")

# The versions every patch here was written and checked against (requirements.txt pins
# them). tests/test_library_contracts.py fails by name when an installed version differs:
# re-read the patches that name that library, then update this table.
TARGETS = {
    "eventlet": "0.41.3",
    "python-engineio": "4.15.1",
    "python-socketio": "5.18.1",
    "simple-websocket": "1.1.0",
}


def install(server: socketio.Server, json_module: Any, sid_prefix: str = "") -> None:
    """Apply every server-wide patch for this Socket.IO server (called by create_app)."""
    use_json(server, json_module)
    if server.async_mode == "eventlet":
        fast_websocket_unmask()
    elif server.async_mode == "threading":
        bound_reads(server.eio)
    if sid_prefix:
        prefix_session_ids(server.eio, sid_prefix)


def use_json(server: socketio.Server, json_module: Any) -> None:
    """Decode Socket.IO packets with `json_module` (server.wirejson.WireJson).

    python-socketio 5.18.1: `Server(json=...)` would do this, but it also replaces
    Engine.IO's packet JSON (engineio 4.15.1 `Packet.json`), whose decoder relies on
    `json.loads` raising for text that is not JSON; WireJson never raises. So only the
    Socket.IO packet class gets it (a class attribute: every server in the process).
    """
    server.packet_class.json = json_module


def fast_websocket_unmask() -> None:
    """Unmask client WebSocket frames with one big-integer XOR instead of per byte.

    eventlet 0.41.3: `RFC6455WebSocket._apply_mask` builds one bytes object per payload
    byte; with many drawers that was the largest single cost on the event loop (profiled:
    ~0.4 ms of a 5 kB snapshot). Same result (checked here against the original before it
    is replaced), ~100x faster.
    """
    from eventlet.websocket import RFC6455WebSocket

    original = RFC6455WebSocket._apply_mask  # a staticmethod: the plain function
    if getattr(original, "fast_unmask", False):
        return  # already replaced by an earlier app in this process

    def apply_mask(data: bytes, mask: tuple, length: int | None = None, offset: int = 0) -> bytes:
        length = len(data) if length is None else length
        key = bytes(mask[(offset + i) % 4] for i in range(4)) * (length // 4 + 1)
        value = int.from_bytes(data[:length], "little") ^ int.from_bytes(key[:length], "little")
        return value.to_bytes(length, "little")

    sample, mask = bytes(range(256)) * 3 + b"tail", (1, 80, 255, 7)
    for offset in (0, 3):
        if apply_mask(sample, mask, offset=offset) != original(sample, mask, None, offset):
            log.warning("event=websocket_unmask_check_failed; keeping eventlet's own")
            return
    apply_mask.fast_unmask = True
    RFC6455WebSocket._apply_mask = staticmethod(apply_mask)


def prefix_session_ids(eio: engineio.Server, prefix: str) -> None:
    """Cluster mode: every session id this worker makes starts with `prefix` (the worker's
    name), so nginx can route a session's requests to it. python-engineio 4.15.1
    `Server.generate_id` has no hook; it is replaced on this server only."""
    generate = eio.generate_id
    eio.generate_id = lambda: f"{prefix}{generate()}"


# --- Engine.IO transport helpers (server.pacing, server.shutdown) ----------------------------


def wrap_engineio_handler(
    eio: engineio.Server, event: str, wrap: Callable[[Callable[..., Any] | None], Callable]
) -> None:
    """Replace python-socketio's handler of an Engine.IO event with `wrap(original)`.

    python-engineio 4.15.1 keeps handlers in `Server.handlers`; python-socketio 5.18.1
    registers its own there ("message", "disconnect"), and only `on()` is public, which
    cannot hand back the handler it replaces.
    """
    eio.on(event, wrap(eio.handlers.get(event)))


def unsent_packets(server: socketio.Server, eio_sid: str) -> int:
    """Packets queued for this connection that the transport has not written yet
    (python-engineio 4.15.1 `Server.sockets`, `Socket.queue`)."""
    transport = server.eio.sockets.get(eio_sid)
    return transport.queue.qsize() if transport is not None else 0


def drop_transport(server: socketio.Server, eio_sid: str, wait: bool) -> None:
    """End a connection without an Engine.IO CLOSE packet: python-socketio clients take
    that packet as a goodbye and never reconnect, and for a client that stopped reading
    it would only join the queue. `wait` blocks until the queued packets are written,
    which a client that stopped reading never lets happen. (python-engineio 4.15.1:
    `Socket.close(abort=)` and popping `Server.sockets`, as its own disconnect does.)"""
    transport = server.eio.sockets.get(eio_sid)
    if transport is not None:
        transport.close(wait=wait, abort=True, reason=server.eio.reason.SERVER_DISCONNECT)
        server.eio.sockets.pop(eio_sid, None)


# --- threading mode: bounded WebSocket reads (simple-websocket 1.1.0) ------------------------

MAX_UNREAD = 16  # messages read from a connection and not yet handled
RECHECK_S = 1.0  # a waiting reader also wakes this often, to notice a close


def bound_reads(eio: engineio.Server) -> None:
    """Threading mode: serve this Engine.IO server's WebSockets with bounded reads.

    Targets python-engineio 4.15.1 (`Server._async`, `async_drivers._websocket_wsgi`) and
    simple-websocket 1.1.0 (`Server._handle_events`, `input_buffer`, `event`). Why: see
    "Threading mode's WebSocket reads" at the top of this module.
    """
    eio._async = {**eio._async, "websocket": BoundedWebSocketWSGI}


class BoundedWebSocket(simple_websocket.Server):
    def __init__(self, environ: dict, **kwargs: Any) -> None:
        self.space = threading.Condition()
        super().__init__(environ, **kwargs)

    def _handle_events(self) -> bool:
        # The reading thread queues the messages of each chunk it read, then waits here
        # for room before it reads the socket again.
        if not super()._handle_events():
            # On a message over max_message_size simple-websocket wakes the receiver before
            # it marks the connection closed; a receiver that woke in between went back to
            # waiting, for ever (the session then lived on until the ping timeout).
            self.connected = False
            self.event.set()
            return False
        with self.space:
            while self.connected and len(self.input_buffer) >= MAX_UNREAD:
                self.space.wait(RECHECK_S)
        return True

    def receive(self, timeout: float | None = None) -> Any:
        data = super().receive(timeout)
        with self.space:
            self.space.notify_all()
        return data

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        try:
            super().close(reason, message)
        except OSError:  # the goodbye could not be written (timed out, reset): it is over
            self.connected = False
        finally:
            with self.space:
                self.space.notify_all()


class BoundedWebSocketWSGI(SimpleWebSocketWSGI):
    """Engine.IO's threading WebSocket wrapper, with `BoundedWebSocket` underneath."""

    def __init__(self, handler: Any, server: engineio.Server, **kwargs: Any) -> None:
        kwargs.setdefault("max_message_size", server.max_http_buffer_size)
        super().__init__(handler, server, **kwargs)

    @property
    def socket(self) -> Any:
        # Engine.IO gives a WebSocket's `socket` a timeout of ping interval + ping timeout,
        # as it does under eventlet: a write to a client that stopped reading then fails
        # instead of holding this connection's threads for as long as that client wants.
        return self.ws.sock

    def __call__(self, environ: dict, start_response: Any) -> Any:
        # SimpleWebSocketWSGI.__call__ with the class swapped.
        self.ws = BoundedWebSocket(environ, **self.server_args)
        ret = self.app(self)
        if self.ws.mode == "gunicorn":
            raise StopIteration()
        elif self.ws.mode == "werkzeug":
            raise ConnectionError()
        return ret
