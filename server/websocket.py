"""Threading mode's WebSocket reads, bounded the way eventlet's already are.

eventlet reads a client's next message only when Engine.IO asks for it, so a client that
sends faster than it is served fills the kernel's buffers and TCP slows it down; the
per-connection read rate (MAX_MESSAGES_PER_S) and the slow-reader cap rely on that. In
threading mode Engine.IO uses simple-websocket, whose own thread reads the socket as fast as
the client sends and keeps every message in a list until it is handled: one flooding client
grew the server by ~50 MB/s (measured: 780 MB after 15 s, 557,000 messages taken in, 864
handled). It also held a message whole, at any size, before Engine.IO checked its length.

Here the reading thread waits while MAX_UNREAD messages wait to be handled, a message over
the transport's limit ends the connection while it arrives, and the socket gets the timeout
Engine.IO gives eventlet's, so a client that stops reading cannot hold threads for ever.
"""

from __future__ import annotations

import threading
from typing import Any

import engineio
import simple_websocket
from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI

MAX_UNREAD = 16  # messages read from a connection and not yet handled
RECHECK_S = 1.0  # a waiting reader also wakes this often, to notice a close


def bound_reads(eio: engineio.Server) -> None:
    """Serve this (threading mode) Engine.IO server's WebSockets with bounded reads."""
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
