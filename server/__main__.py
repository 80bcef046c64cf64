"""`python -m server`: the production entry point.

In eventlet mode the standard library is monkey-patched first, before anything else is
imported, so every lock and socket made afterwards is green. Startup errors (bad setting,
missing or corrupt model, busy port) end in ONE actionable line on stderr and a non-zero
exit code. SIGTERM/SIGINT drain: no new sessions or predicts, queued predictions are
answered, clients are disconnected (they reconnect elsewhere), then the process exits 0.
"""

import os

if os.environ.get("ASYNC_MODE", "eventlet").strip() == "eventlet":
    import warnings

    # Chosen deliberately (see docs/architecture.md); its deprecation notice is noise here.
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()


import errno  # noqa: E402
import faulthandler  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from server.app import Service, create_app, socketio  # noqa: E402
from server.config import Config, ConfigError  # noqa: E402
from server.events import drop_transport  # noqa: E402
from server.inference import ModelLoadError  # noqa: E402

EXIT_CONFIG = 2
EXIT_STARTUP = 1
SIGNAL_POLL_S = 0.05
HTTP_HEADROOM = 100  # connections beyond MAX_SESSIONS for HTTP requests
CLOSE_GRACE_S = 3.0  # after draining, how long flushing answers to clients may take
EXIT_GRACE_S = 5.0  # then how long the web server may take to stop

log = logging.getLogger("server")


def main() -> int:
    try:
        config = Config.from_env()
        check_port(config.HOST, config.PORT)
        app = create_app(config)
    except ConfigError as e:
        return fail(f"bad setting: {e}", EXIT_CONFIG)
    except ModelLoadError as e:
        return fail(f"{e}; train one (python -m model.train) or set MODEL_PATH", EXIT_STARTUP)
    except OSError as e:
        return fail(str(e), EXIT_STARTUP)
    Shutdown(app.extensions["digits"]).install()
    log.info("event=listening host=%s port=%d", config.HOST, config.PORT)
    options = {"allow_unsafe_werkzeug": True}  # threading mode: werkzeug, stdin not a tty
    if config.ASYNC_MODE == "eventlet":
        # eventlet.wsgi serves at most max_size connections at once (default 1024); every
        # Socket.IO session holds one, plus a few for HTTP.
        options["max_size"] = config.MAX_SESSIONS + HTTP_HEADROOM
    socketio.run(app, host=config.HOST, port=config.PORT, **options)
    log.info("event=stopped")
    return 0


def fail(message: str, code: int) -> int:
    print(f"server: error: {message}", file=sys.stderr)
    return code


def check_port(host: str, port: int) -> None:
    """Bind once before loading anything, so a busy port is one clear line, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise OSError(
                    f"port {port} on {host} is already in use; stop the other server or set PORT"
                ) from None
            raise OSError(
                f"cannot listen on {host}:{port}: {e.strerror}; check HOST and PORT"
            ) from None


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


if __name__ == "__main__":
    sys.exit(main())
