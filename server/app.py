"""The Flask app with its Socket.IO extension, built by `create_app` (app-factory style).

`create_app` loads the model once and starts the one batching loop. Everything that belongs
to an app (config, classifier, metrics, batcher) lives in `app.extensions["digits"]`, never
in module globals, so tests can build several apps in one process. The one module global,
`socketio`, is the Flask-SocketIO extension object; it always points at the newest app's
Socket.IO server, which is why each app's handlers and batcher hold on to their own server.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app
from flask_socketio import SocketIO

from server import cluster, patches, protocol, segment
from server.batcher import Batcher, Hooks
from server.config import Config
from server.drawing import Limits
from server.inference import Classifier
from server.metrics import Metrics
from server.wirejson import WireJson

socketio = SocketIO()
log = logging.getLogger("server")


@dataclass
class Service:
    """Per-app state: Socket.IO handlers close over it, HTTP routes use `current_service()`."""

    config: Config
    classifier: Classifier
    metrics: Metrics
    batcher: Batcher
    emit: Any  # the app's own Socket.IO server's emit(event, data, to=sid)
    async_mode: str
    started: float = field(default_factory=time.monotonic)
    loop: Any = None  # the batcher's background task
    cluster: cluster.ClusterState | None = None  # cluster mode's shared figures

    @property
    def limits(self) -> Limits:
        return self.config.limits

    def ready_message(self) -> dict:
        limits = self.limits
        return protocol.ready(
            self.classifier.info,
            {
                "max_payload_bytes": self.config.MAX_PAYLOAD_BYTES,
                "max_strokes": limits.max_strokes,
                "max_points": limits.max_points,
                "max_image_bytes": limits.max_image_bytes,
                "max_image_pixels": limits.max_image_pixels,
                "max_coordinate": limits.max_coordinate,
                "snapshot_max_hz": self.config.SNAPSHOT_MAX_HZ,
                "max_session_predicts": self.config.MAX_SESSION_PREDICTS,
                "max_number_strokes": segment.MAX_NUMBER_STROKES,
                "max_number_digits": segment.MAX_DIGITS,
            },
        )

    def close(self) -> None:
        """Stop the batching loop (tests; the process exit does it otherwise)."""
        self.batcher.stop()
        if self.async_mode == "threading" and self.loop is not None:
            self.loop.join(5)


def current_service() -> Service:
    return current_app.extensions["digits"]


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the app; raises ConfigError / ModelLoadError with one-line reasons."""
    if config is None:
        config = Config.from_env()
    elif not isinstance(config, Config):
        config = Config.from_env(**dict(config))
    configure_logging(config.LOG_LEVEL)

    app = Flask(__name__, static_folder=None)
    # Flask answers a larger HTTP body with 413 before reading it.
    app.config.from_mapping(MAX_CONTENT_LENGTH=config.MAX_PAYLOAD_BYTES)
    app.json.sort_keys = False
    classifier = Classifier.load(config.model_path, num_threads=config.INFERENCE_THREADS)
    socketio.init_app(
        app,
        async_mode=config.ASYNC_MODE,
        # Above MAX_PAYLOAD_BYTES so that an oversized message gets a `payload_too_large`
        # error instead of the transport silently dropping the connection.
        max_http_buffer_size=2 * config.MAX_PAYLOAD_BYTES + 64 * 1024,
        cors_allowed_origins=_cors_policy(config.cors_origins),
        logger=False,
        engineio_logger=False,
        client_manager=cluster.client_manager(config.MESSAGE_QUEUE),
    )
    server = socketio.server
    patches.install(server, WireJson, sid_prefix=cluster.sid_prefix(config.WORKER_ID))
    # Answers always go to a session on this worker: never through the message queue.
    emit = functools.partial(server.emit, ignore_queue=True)
    metrics = Metrics()
    hooks = Hooks(
        emit=emit,
        create_event=server.eio.create_event,
        offload=_offload(server.async_mode),
        sleep=server.sleep,
    )
    batcher = Batcher(classifier, config, metrics, hooks)
    batcher.warm_up()
    service = Service(config, classifier, metrics, batcher, emit, server.async_mode)
    app.extensions["digits"] = service
    if config.MESSAGE_QUEUE:
        service.cluster = cluster.ClusterState(
            service, config.MESSAGE_QUEUE, config.WORKER_ID, server.sleep
        )
        socketio.start_background_task(service.cluster.run)

    from server import events, routes

    app.register_blueprint(routes.bp)
    events.register(server, service)
    service.loop = socketio.start_background_task(batcher.run)
    log.info(
        "event=started async_mode=%s model=%s version=%s",
        server.async_mode,
        classifier.info.get("name"),
        classifier.info.get("version"),
    )
    return app


def configure_logging(level: str) -> None:
    """One key=value line per event on stderr; payloads are never logged."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    logging.getLogger("server").setLevel(level.upper())
    # One werkzeug line per HTTP request (every long-poll) drowns the useful lines.
    if level.upper() != "DEBUG":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _offload(async_mode: str):
    """How the batching loop runs CPU work off the event loop."""
    if async_mode == "eventlet":
        from eventlet import tpool

        return tpool.execute  # only the one loop calls it: never two tpool calls at once
    return lambda fn, *args: fn(*args)  # threading: the loop is already a real thread


def _cors_policy(extra: list[str]):
    """Same origin always; CORS_ORIGINS on top. None is engineio's same-origin default."""
    if not extra:
        return None
    allowed = frozenset(extra)

    def allow(origin: str | None, environ: dict) -> bool:
        if origin is None or origin.rstrip("/") in allowed:
            return True
        host = environ.get("HTTP_X_FORWARDED_HOST") or environ.get("HTTP_HOST", "")
        scheme = environ.get("HTTP_X_FORWARDED_PROTO") or environ.get("wsgi.url_scheme", "")
        return origin == f"{scheme.split(',')[0].strip()}://{host.split(',')[0].strip()}"

    return allow


__all__ = [
    "Service",
    "create_app",
    "current_service",
    "socketio",
]
