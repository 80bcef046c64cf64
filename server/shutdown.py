"""Graceful stop on SIGTERM/SIGINT: drain, answer, hand clients over, exit 0.

No new sessions or predicts are taken, queued predictions are answered, every connection is
dropped once its answers are flushed (clients then reconnect, to the next server), and the
web server is stopped. A watchdog ends the process if any step hangs.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import time

from server.app import Service, socketio
from server.patches import drop_transport

SIGNAL_POLL_S = 0.05
CLOSE_GRACE_S = 3.0  # after draining, how long flushing answers to clients may take
EXIT_GRACE_S = 5.0  # then how long the web server may take to stop

log = logging.getLogger("server")


class Shutdown:
    """Graceful stop on SIGTERM/SIGINT.

    The signal handler only sets a flag: it can interrupt the event loop at any bytecode,
    so scheduling work from it is unsafe. A background task polls the flag and does the
    work as ordinary async-mode code.
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        self.requested: int | None = None
        self.stopping = False
        # eventlet: the accept loop runs in the calling (main) greenlet.
        self.main_greenlet = None
        if service.async_mode == "eventlet":
            import greenlet

            self.main_greenlet = greenlet.getcurrent()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        socketio.start_background_task(self._watch)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping:  # our own interrupt_main(), threading mode: end serve_forever
            raise KeyboardInterrupt
        self.requested = self.requested or signum

    def _watch(self) -> None:
        while self.requested is None:
            socketio.sleep(SIGNAL_POLL_S)
        name = signal.Signals(self.requested).name
        stats = self.service.batcher.stats()
        log.info("event=draining signal=%s sessions=%d pending=%d", name, *stats.values())
        drained = self.service.batcher.drain(self.service.config.SHUTDOWN_TIMEOUT_S)
        if not drained:
            log.warning("event=drain_timeout pending=%d", self.service.batcher.stats()["pending"])
        socketio.start_background_task(self._exit_after, CLOSE_GRACE_S + EXIT_GRACE_S)
        self._close_transports(CLOSE_GRACE_S)
        self.service.batcher.stop()
        self._stop_server()

    @staticmethod
    def _close_transports(timeout: float) -> None:
        """Close every Engine.IO connection once its queued packets (the answers) are sent.

        Dropping the transport, not a Socket.IO disconnect, makes clients reconnect (to the
        next server). Each close waits for its own flush in its own task, so one client that
        stopped reading cannot hold up the others or the exit.
        """
        server = socketio.server
        sids = list(server.eio.sockets)
        closed: list[str] = []

        def close(sid: str) -> None:
            try:
                drop_transport(server, sid, wait=True)
            finally:
                closed.append(sid)

        for sid in sids:
            socketio.start_background_task(close, sid)
        deadline = time.monotonic() + timeout
        while len(closed) < len(sids) and time.monotonic() < deadline:
            socketio.sleep(0.02)
        if len(closed) < len(sids):
            log.warning("event=close_timeout unflushed=%d", len(sids) - len(closed))

    def _stop_server(self) -> None:
        self.stopping = True
        if self.main_greenlet is not None:
            from eventlet import hubs

            # eventlet.wsgi.server's accept loop ends on SystemExit.
            hubs.get_hub().schedule_call_global(0, self.main_greenlet.throw, SystemExit(0))
        else:
            import _thread

            # Runs _on_signal in the main thread, whose KeyboardInterrupt ends werkzeug's
            # serve_forever.
            _thread.interrupt_main()

    @staticmethod
    def _exit_after(seconds: float) -> None:
        socketio.sleep(seconds)
        log.warning("event=forced_exit after_s=%g", seconds)
        faulthandler.dump_traceback(all_threads=True)  # what was still stuck, for the log
        logging.shutdown()
        os._exit(0)
