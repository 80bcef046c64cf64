"""Per-connection read pacing, and dropping clients that stopped reading their answers.

Transport policy, below the Socket.IO events: it sees Engine.IO messages, not drawings.
Hooked in through server.patches, which owns every reach into the libraries' internals.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import socketio

from server.config import Config
from server.metrics import Metrics
from server.patches import drop_transport, unsent_packets, wrap_engineio_handler

log = logging.getLogger("server.pacing")


def pace_messages(server: socketio.Server, config: Config, metrics: Metrics) -> None:
    """Read at most MAX_MESSAGES_PER_S messages a second from each connection (bursts of
    as many), and none from a connection that stopped reading its answers.

    Engine.IO reads a connection's messages in one loop that only yields when the socket
    has no data, and python-socketio hands each event to a new task: one client sending
    as fast as it can starved every other client (eventlet) and piled up tasks holding
    its messages. After each message this yields, and once a connection is over the rate
    it sleeps, so the kernel's buffers fill and the sender is slowed by TCP itself:
    nothing is dropped and no error is sent, that client just waits. 0 = only yield.
    (In threading mode that holds because server/patches.py bounds what is read ahead.)

    Every answer is caused by a message, and a client that never reads (but keeps its
    connection open, e.g. by answering pings blindly) would make its answers pile up in
    the server's per-connection send queue without end. So a message arriving while
    MAX_UNSENT_PACKETS packets still wait to be written to that client drops the
    connection instead of being handled: the queue stays bounded, and a real client (one
    answer in flight) never comes near the cap.
    """
    budgets: dict[str, tuple[float, float]] = {}  # eio sid -> (tokens, monotonic time)
    rate = config.MAX_MESSAGES_PER_S
    max_unsent = config.MAX_UNSENT_PACKETS

    def paced(handle: Any) -> Any:
        def on_message(eio_sid: str, data: Any) -> None:
            if max_unsent:
                unsent = unsent_packets(server, eio_sid)
                if unsent >= max_unsent:
                    metrics.count_error("slow_reader")
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

        return on_message

    def forgetting(forget: Any) -> Any:
        def on_disconnect(eio_sid: str, *args: Any) -> Any:
            budgets.pop(eio_sid, None)
            return forget(eio_sid, *args) if forget else None

        return on_disconnect

    wrap_engineio_handler(server.eio, "message", paced)
    wrap_engineio_handler(server.eio, "disconnect", forgetting)
