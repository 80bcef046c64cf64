"""What a crowd of drawers measured, counted one way whichever channel carried it.

The Socket.IO session and the benchmark's HTTP baseline record into the same counters, so
the load test's table and the benchmark's comparison read the same figures for both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def percentile(values: Sequence[float], q: float) -> float | None:
    """None rather than an error when nothing was measured (a step where nothing answered)."""
    return float(np.percentile(values, q)) if len(values) else None


@dataclass
class Stats:
    """Raw counts and latencies, shared by every drawer of a run and summarised at the end."""

    rtt_ms: list[float] = field(default_factory=list)  # snapshot sent -> its probabilities
    server_ms: list[float] = field(default_factory=list)  # the server's own latency_ms
    predict_ms: list[float] = field(default_factory=list)
    sent: int = 0
    answered: int = 0
    coalesced: int = 0  # superseded: a newer snapshot of the same session was answered first
    late: int = 0  # answers to snapshots already counted as superseded
    unanswered: int = 0  # still in flight when the drawer stopped
    stalled: int = 0  # one-in-flight waits that gave up and sent a newer snapshot
    errors: Counter = field(default_factory=Counter)  # by error code
    disconnects: int = 0
    connect_failures: int = 0
    digits: int = 0
    predictions_sent: int = 0
    predictions_answered: int = 0
    not_a_digit: int = 0  # predictions answered with the verdict "not a digit"
    labelled: int = 0
    correct: int = 0

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        """JSON-ready figures; rates are over elapsed_s, the measured window."""

        def pct(values: list[float]) -> dict[str, float | None]:
            return {f"p{q}": percentile(values, q) for q in (50, 95, 99)}

        return {
            "elapsed_s": elapsed_s,
            "rtt_ms": pct(self.rtt_ms),
            "server_latency_ms": pct(self.server_ms),
            "predict_rtt_ms": pct(self.predict_ms),
            "sent": self.sent,
            "answered": self.answered,
            "answered_per_s": self.answered / elapsed_s if elapsed_s > 0 else 0.0,
            "coalesced": self.coalesced,
            "coalesced_share": self.coalesced / self.sent if self.sent else 0.0,
            "late": self.late,
            "unanswered": self.unanswered,
            "stalled": self.stalled,
            "errors": sum(self.errors.values()),
            "errors_by_code": dict(self.errors),
            "disconnects": self.disconnects,
            "connect_failures": self.connect_failures,
            "digits": self.digits,
            "predictions_sent": self.predictions_sent,
            "predictions_answered": self.predictions_answered,
            "not_a_digit": self.not_a_digit,
            "accuracy": self.correct / self.labelled if self.labelled else None,
        }
