"""Prometheus metrics, one registry per app.

A registry per app (not prometheus_client's global one) lets tests build several apps in one
process without "duplicated timeseries" errors or counts leaking between them. Metrics are
only touched from the event loop / handler side, never from the inference worker thread:
their locks are green locks in eventlet mode.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Latencies from sub-millisecond (one small batch) to seconds (an overloaded server).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.inference_seconds = Histogram(
            "digits_inference_seconds",
            "Time of one batched Classifier.predict call.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.work_seconds = Histogram(
            "digits_batch_work_seconds",
            "Time of one batch off the event loop: preprocessing, inference and PNG encoding.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "digits_end_to_end_seconds",
            "From receiving a snapshot or predict to emitting its answer.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "digits_batch_size", "Items per batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.sessions = Gauge("digits_active_sessions", "Connected Socket.IO sessions.", registry=r)
        self.snapshots_received = Counter(
            "digits_snapshots_received", "Valid snapshots received.", registry=r
        )
        self.snapshots_coalesced = Counter(
            "digits_snapshots_coalesced",
            "Snapshots replaced by a newer one of the same session before being started.",
            registry=r,
        )
        self.snapshots_answered = Counter(
            "digits_snapshots_answered", "Snapshots answered with probabilities.", registry=r
        )
        self.snapshots_dropped = Counter(
            "digits_snapshots_dropped",
            "Snapshots computed but not delivered: cleared, superseded or disconnected.",
            registry=r,
        )
        self.predictions = Counter(
            "digits_predictions", "Predicts answered (socket and HTTP).", ["via"], registry=r
        )
        self.errors = Counter(
            "digits_errors", "Error answers by protocol error code.", ["code"], registry=r
        )

    def count_error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type, for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
