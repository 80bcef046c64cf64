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
import logging  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

from server.app import create_app, socketio  # noqa: E402
from server.config import Config, ConfigError  # noqa: E402
from server.inference import ModelLoadError  # noqa: E402
from server.shutdown import Shutdown  # noqa: E402

EXIT_CONFIG = 2
EXIT_STARTUP = 1
HTTP_HEADROOM = 100  # connections beyond MAX_SESSIONS for HTTP requests

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


if __name__ == "__main__":
    sys.exit(main())
