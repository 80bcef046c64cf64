"""Cluster mode: several single-process workers behind one load balancer, sharing Redis.

Each worker still runs its own batcher: a session lives on exactly one worker (the balancer
routes every request of a session there), so latest-wins, never-dropped predicts and
answers-only-to-the-asking-sid stay local and need nothing from Redis. Redis carries two
things a single process cannot know on its own:

- the Socket.IO message queue (Flask-SocketIO's documented `message_queue`), so that an emit
  addressed to a sid or room anywhere reaches it (e.g. from an admin script with a
  write-only manager). The batcher's own answers bypass it (`ignore_queue`): they always go
  to a local sid, and publishing them would make every worker decode every answer;
- cluster figures: every worker writes its own figures to a key with a short expiry once a
  second and reads everyone's back, so any worker's /healthz and /metrics show the whole
  cluster (a dead worker drops out when its key expires).

Stickiness: in cluster mode every Engine.IO session id starts with `<WORKER_ID>.`, and the
balancer routes any request carrying `sid=<id>.…` to that worker (scripts/cluster.py writes
the nginx map). This needs no cookies (python clients, curl and browsers alike), works when
every client shares one address (ip_hash would not), and a request whose worker died fails
fast, so the client reconnects through the balancer to a live worker.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import socketio
from prometheus_client import Gauge

if TYPE_CHECKING:
    from server.app import Service

log = logging.getLogger("server.cluster")

CHANNEL = "digits"  # the Socket.IO message-queue channel (one per cluster sharing a Redis)
KEY_PREFIX = "digits:worker:"  # one key per live worker: its figures as JSON
HEARTBEAT_S = 1.0
EXPIRY_S = 3.0  # a worker missing this long no longer counts
SID_SEPARATOR = "."  # never in an Engine.IO id (URL-safe base64), safe in a query string


def client_manager(url: str) -> socketio.Manager:
    """The Socket.IO client manager for one app: Redis-backed when a queue URL is set.

    Passed explicitly (not as Flask-SocketIO's `message_queue=`), because the extension keeps
    its options between init_app calls and a queue-less app would inherit the last one.
    """
    if not url:
        return socketio.Manager()
    return socketio.RedisManager(url, channel=CHANNEL)


def sid_prefix(worker_id: str) -> str:
    """What every session id made by this worker starts with ("" outside cluster mode)."""
    return f"{worker_id}{SID_SEPARATOR}" if worker_id else ""


def worker_of(sid: str) -> str | None:
    """The worker id a session id was made by, or None outside cluster mode."""
    head, separator, _ = sid.partition(SID_SEPARATOR)
    return head if separator else None


class ClusterState:
    """This worker's heartbeat in Redis and the cluster-wide view it reads back."""

    def __init__(
        self, service: Service, url: str, worker_id: str, sleep: Callable[[float], Any]
    ) -> None:
        import redis  # only cluster mode needs the client

        self.service = service
        self._sleep = sleep
        self.worker_id = worker_id
        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._view: dict[str, Any] = {"workers": 0, "stale": True}
        self._last: tuple[float, float] | None = None  # (monotonic, answered) at the last beat
        self._healthy = True
        registry = service.metrics.registry
        self.gauges = {
            "workers": Gauge("digits_cluster_workers", "Live workers.", registry=registry),
            "sessions": Gauge(
                "digits_cluster_sessions", "Sessions on all live workers.", registry=registry
            ),
            "pending": Gauge(
                "digits_cluster_pending", "Queued work on all live workers.", registry=registry
            ),
            "answered_per_s": Gauge(
                "digits_cluster_answered_per_second",
                "Snapshots and predicts answered per second by all live workers.",
                registry=registry,
            ),
        }

    def run(self) -> None:
        """The heartbeat loop (a background task); Redis trouble is logged, never fatal."""
        while True:
            try:
                self.beat()
                if not self._healthy:
                    log.info("event=cluster_redis_back")
                self._healthy = True
            except Exception as e:  # Redis down or slow: serve on, figures go stale
                if self._healthy:
                    log.warning("event=cluster_redis_error error=%r", f"{e!r}")
                self._healthy = False
                self._view = {**self._view, "stale": True}
            self._sleep(HEARTBEAT_S)

    def beat(self) -> None:
        """Publish this worker's figures, then aggregate everyone's."""
        mine = self.figures()
        self._redis.set(KEY_PREFIX + self.worker_id, json.dumps(mine), px=int(EXPIRY_S * 1000))
        keys = sorted(self._redis.scan_iter(match=KEY_PREFIX + "*", count=1000))
        workers = {}
        for key, raw in zip(keys, self._redis.mget(keys) if keys else [], strict=True):
            if raw is not None:
                workers[key.decode()[len(KEY_PREFIX) :]] = json.loads(raw)
        self._view = aggregate(workers)
        for name, gauge in self.gauges.items():
            gauge.set(self._view[name])

    def figures(self) -> dict[str, Any]:
        now = time.monotonic()
        answered = self._answered()
        rate = 0.0
        if self._last is not None and now > self._last[0]:
            rate = (answered - self._last[1]) / (now - self._last[0])
        self._last = (now, answered)
        batcher = self.service.batcher
        return {
            "pid": os.getpid(),
            **batcher.stats(),
            "answered": int(answered),
            "answered_per_s": round(rate, 2),
            "draining": batcher.draining,
        }

    def view(self) -> dict[str, Any]:
        """The last cluster-wide view (no Redis round trip: /healthz stays cheap and up)."""
        return {"worker": self.worker_id, **self._view}

    def _answered(self) -> float:
        registry = self.service.metrics.registry
        total = registry.get_sample_value("digits_snapshots_answered_total") or 0.0
        for via in ("socket", "http"):
            total += registry.get_sample_value("digits_predictions_total", {"via": via}) or 0.0
        return total


def aggregate(workers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Cluster totals from each worker's figures."""
    return {
        "workers": len(workers),
        "sessions": sum(w["sessions"] for w in workers.values()),
        "pending": sum(w["pending"] for w in workers.values()),
        "answered_per_s": round(sum(w["answered_per_s"] for w in workers.values()), 2),
        "stale": False,
        "per_worker": workers,
    }
