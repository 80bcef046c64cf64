"""Settings from environment variables, checked once at startup.

Every setting is a typed field with a default, so `Config.PORT` is the documented default and
`Config.from_env()` is what a running server uses. Parsing is strict: a typo in an env var
becomes one `ConfigError` sentence naming the variable, instead of a crash deep inside the
server minutes later. The table in docs/protocol.md lists every setting.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from server.drawing import Limits

ROOT = Path(__file__).resolve().parent.parent
ASYNC_MODES = ("eventlet", "threading")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting that cannot work; the message is one actionable sentence."""


@dataclass(frozen=True)
class Config:
    HOST: str = "0.0.0.0"
    PORT: int = 7860
    ASYNC_MODE: str = "eventlet"
    MODEL_PATH: str = "model/digits.tflite"  # relative paths are relative to the repo root
    CORS_ORIGINS: str = ""  # comma-separated origins allowed on top of the same origin
    LOG_LEVEL: str = "INFO"
    MAX_PAYLOAD_BYTES: int = 1_000_000  # one snapshot/predict/HTTP body, as JSON text
    MAX_STROKES: int = Limits.max_strokes
    MAX_POINTS: int = Limits.max_points
    MAX_IMAGE_BYTES: int = Limits.max_image_bytes
    MAX_IMAGE_PIXELS: int = Limits.max_image_pixels
    SNAPSHOT_MAX_HZ: float = 20.0  # per session; faster snapshots are coalesced (0 = no cap)
    MAX_BATCH: int = 128  # items per inference call
    INFERENCE_THREADS: int = 1  # LiteRT interpreter threads
    MAX_SESSIONS: int = 2000  # connected Socket.IO sessions; more are refused
    MAX_SESSIONS_PER_IP: int = 0  # 0 = no per-address cap (a proxy makes everyone one address)
    MAX_SESSION_PREDICTS: int = 4  # unanswered predicts one session may have queued
    MAX_PENDING_PREDICTS: int = 1000  # unanswered predicts in total (sockets + HTTP)
    MAX_MESSAGES_PER_S: float = 50.0  # read per connection; faster senders wait (0 = no cap)
    MAX_UNSENT_PACKETS: int = 64  # a client leaving more unread is dropped (0 = no cap)
    PREDICT_TIMEOUT_S: float = 30.0  # an HTTP predict / ack waits at most this long
    SHUTDOWN_TIMEOUT_S: float = 10.0  # SIGTERM: how long to finish queued predictions
    MESSAGE_QUEUE: str = ""  # cluster mode: redis://host:port/db shared by all workers
    WORKER_ID: str = ""  # cluster mode: this worker's name, the prefix of its session ids

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Defaults, then environment variables, then `overrides` (tests); all validated."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            if field.name in overrides:
                values[field.name] = overrides.pop(field.name)
            elif field.name in environ:
                values[field.name] = _parse(field.name, field.type, environ[field.name])
        if overrides:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(overrides))}")
        return cls(**values)

    def __post_init__(self) -> None:
        if self.ASYNC_MODE not in ASYNC_MODES:
            raise ConfigError(
                f"ASYNC_MODE must be one of {', '.join(ASYNC_MODES)}, not {self.ASYNC_MODE!r}"
            )
        if self.LOG_LEVEL.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {self.LOG_LEVEL!r}"
            )
        if not 0 <= self.PORT <= 65535:
            raise ConfigError(f"PORT must be from 0 to 65535, not {self.PORT}")
        positive = (
            "MAX_PAYLOAD_BYTES",
            "MAX_STROKES",
            "MAX_POINTS",
            "MAX_IMAGE_BYTES",
            "MAX_IMAGE_PIXELS",
            "MAX_BATCH",
            "INFERENCE_THREADS",
            "MAX_SESSIONS",
            "MAX_SESSION_PREDICTS",
            "MAX_PENDING_PREDICTS",
            "PREDICT_TIMEOUT_S",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be greater than 0, not {getattr(self, name)}")
        if self.WORKER_ID and not re.fullmatch(r"[a-z0-9]{1,16}", self.WORKER_ID):
            raise ConfigError(
                f"WORKER_ID must be 1-16 lowercase letters or digits, not {self.WORKER_ID!r}"
            )
        if self.MESSAGE_QUEUE and not self.MESSAGE_QUEUE.startswith(("redis://", "rediss://")):
            raise ConfigError(
                f"MESSAGE_QUEUE must be a redis:// or rediss:// URL, not {self.MESSAGE_QUEUE!r}"
            )
        if self.MESSAGE_QUEUE and not self.WORKER_ID:
            raise ConfigError("MESSAGE_QUEUE needs a WORKER_ID (unique per worker, e.g. w0)")
        for name in (
            "SNAPSHOT_MAX_HZ",
            "MAX_SESSIONS_PER_IP",
            "MAX_MESSAGES_PER_S",
            "MAX_UNSENT_PACKETS",
            "SHUTDOWN_TIMEOUT_S",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, not {getattr(self, name)}")

    @property
    def limits(self) -> Limits:
        return Limits(
            max_strokes=self.MAX_STROKES,
            max_points=self.MAX_POINTS,
            max_image_bytes=self.MAX_IMAGE_BYTES,
            max_image_pixels=self.MAX_IMAGE_PIXELS,
        )

    @property
    def model_path(self) -> Path:
        return ROOT / self.MODEL_PATH  # an absolute MODEL_PATH replaces ROOT

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.CORS_ORIGINS.split(",") if o.strip()]

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def _parse(name: str, kind: Any, text: str) -> Any:
    kind = {"int": int, "float": float, "str": str}.get(kind, kind)
    if kind is str:
        return text.strip()
    try:
        return kind(text.strip().replace("_", ""))
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {noun}, not {text!r}") from None
