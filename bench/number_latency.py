"""Live-update latency of number mode vs a single digit, on one server (issue: number mode).

    .venv/bin/python bench/number_latency.py            # ~1 minute; prints a table

One drawer on a real server (python -m server, eventlet) writes real writers' 6-digit numbers
(UNIPEN dev digits, laid out at a writer's spacing) as growing snapshots, one in flight,
`mode: "number"`; then writes the same digits one at a time in digit mode (a clear between),
which is the single-digit reference. The server's own `latency_ms` (receive → emit) of every
answer is collected. Both runs share the machine's load at the same time of the run, so only
their ratio is meaningful. Acceptance: number p50 <= 2x digit p50.

Writes bench/results/number_latency.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import socketio  # noqa: E402

from model.evaluate_numbers import digits_of, layout, load_numbers  # noqa: E402
from tests.conftest import start_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
POINTS_PER_UPDATE = 8  # pen points between snapshots: ~80-100 ms of writing


def six_digit_numbers(count: int, seed: int = 20261205) -> list[list[list[np.ndarray]]]:
    """`count` numbers of six real digits each (their strokes, digit by digit)."""
    digits = [d for n in load_numbers() if n["truth"] for d in digits_of(n)]
    rng = random.Random(seed)
    return [[rng.choice(digits) for _ in range(6)] for _ in range(count)]


def growing(strokes: list[np.ndarray]) -> list[list[list[list[float]]]]:
    """Snapshots of the drawing as the pen writes it, POINTS_PER_UPDATE points apart."""
    total = sum(len(s) for s in strokes)
    snapshots = []
    for budget in range(POINTS_PER_UPDATE, total + POINTS_PER_UPDATE, POINTS_PER_UPDATE):
        out, left = [], budget
        for stroke in strokes:
            if left <= 0:
                break
            out.append(np.round(stroke[:left], 1).tolist())
            left -= len(stroke)
        snapshots.append(out)
    return snapshots


class Drawer:
    """One synchronous Socket.IO client, one snapshot in flight."""

    def __init__(self, url: str) -> None:
        self.sio = socketio.Client(reconnection=False)
        self.answers: dict[int, dict] = {}
        self.sio.on("probabilities", lambda data: self.answers.__setitem__(data["seq"], data))
        self.sio.on("cleared", lambda data: self.answers.__setitem__(data["seq"], data))
        self.sio.connect(url, transports=["websocket"], wait_timeout=30)
        self.seq = 0

    def send(self, event: str, payload: dict) -> dict:
        self.seq += 1
        self.sio.emit(event, {"seq": self.seq, **payload})
        deadline = time.monotonic() + 30
        while self.seq not in self.answers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {event} {self.seq}")
            time.sleep(0.0005)
        return self.answers.pop(self.seq)


def run(count: int) -> dict:
    numbers = six_digit_numbers(count)
    # No rate cap: one snapshot in flight, sent as soon as the last is answered, so that the
    # latency is the server's work and not the wait for the next 50 ms slot.
    server = start_server(Path(tempfile.mkdtemp()), ASYNC_MODE="eventlet", SNAPSHOT_MAX_HZ="0")
    try:
        drawer = Drawer(server.url)
        latencies: dict[str, list[float]] = {"number": [], "digit": []}
        read_right = 0
        for digits in numbers:
            strokes = layout(digits, 0.3)
            answer = {}
            for snapshot in growing(strokes):
                answer = drawer.send("snapshot", {"mode": "number", "strokes": snapshot})
                latencies["number"].append(answer["latency_ms"])
            read_right += len(answer.get("digits", [])) == 6
            drawer.send("clear", {})
            for digit in digits:
                for snapshot in growing(digit):
                    answer = drawer.send("snapshot", {"strokes": snapshot})
                    latencies["digit"].append(answer["latency_ms"])
                drawer.send("clear", {})
        drawer.sio.disconnect()
    finally:
        server.stop()
    summary = {
        kind: {
            "n": len(values),
            "p50_ms": round(statistics.median(values), 3),
            "p95_ms": round(float(np.percentile(values, 95)), 3),
        }
        for kind, values in latencies.items()
    }
    ratio = summary["number"]["p50_ms"] / summary["digit"]["p50_ms"]
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "numbers": count,
        "read_as_six_digits": read_right,
        "server_latency": summary,
        "p50_ratio_number_over_digit": round(ratio, 2),
        "within_bound_2x": ratio <= 2.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=20)
    args = parser.parse_args()
    result = run(args.numbers)
    for kind, figures in result["server_latency"].items():
        print(
            f"{kind:7} n={figures['n']:5d}  p50 {figures['p50_ms']:6.2f} ms  "
            f"p95 {figures['p95_ms']:6.2f} ms"
        )
    print(
        f"p50 ratio number/digit: {result['p50_ratio_number_over_digit']} "
        f"(bound 2x: {'ok' if result['within_bound_2x'] else 'OVER'})"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "number_latency.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS / 'number_latency.json'}")


if __name__ == "__main__":
    main()
