"""Benchmark: micro-batching K pending snapshots vs one call per snapshot.

Both sides run in the same process on the same real pen drawings (UNIPEN, replayed as the
canvas sends them; a synthetic scribble set if the data is missing), so the ratios hold
across machines even though the absolute medians do not. Three levels:

- `inference`: Classifier.predict on K inputs at once vs K calls of one input;
- `process`: the batcher's off-loop work (preprocessing + inference) for K drawings as one
  batch vs K batches of one;
- `batcher/threading` and `batcher/eventlet`: K sessions each submit a snapshot to a real
  Batcher (emits counted) and we wait for all K answers; MAX_BATCH=128 vs MAX_BATCH=1 (the
  loop then makes one inference call per snapshot, everything else equal). The eventlet
  variant runs the loop as a greenlet that offloads through eventlet.tpool, as in production,
  so each batch also pays one tpool round trip.

    .venv/bin/python bench/batching.py [--repeat 30] [--sizes 1,8,32,128]

Prints a table and writes bench/results/batching.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.batcher import Batcher, Hooks, process  # noqa: E402
from server.config import Config  # noqa: E402
from server.drawing import Drawing, parse_drawing  # noqa: E402
from server.inference import Classifier  # noqa: E402
from server.metrics import Metrics  # noqa: E402
from server.preprocess import to_model_input  # noqa: E402

RESULT = ROOT / "bench" / "results" / "batching.json"
WAIT_S = 60.0


def drawings(count: int) -> tuple[list[Drawing], str]:
    """`count` validated drawings, as the server holds them after the edge checks."""
    try:
        from model.data import load_unipen

        samples = load_unipen()[:count]
        source = "unipen"
        payloads = [[np.round(s, 1).tolist() for s in sample["strokes"]] for sample in samples]
    except (OSError, ImportError):
        rng = np.random.default_rng(0)
        source = "synthetic"
        payloads = [
            [np.round(np.cumsum(rng.normal(0, 4, (80, 2)), axis=0) + 140, 1).tolist()]
            for _ in range(count)
        ]
    return [parse_drawing({"seq": i + 1, "strokes": p}) for i, p in enumerate(payloads)], source


def compare(batched: Callable[[], object], single: Callable[[], object], repeat: int):
    """Median seconds of each; runs alternate so that load from elsewhere hits both alike."""
    batched(), single()  # warm-up: interpreter resize, caches, tpool threads
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for fn, out in ((batched, times[0]), (single, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


class Harness:
    """A real Batcher running its loop; emits only counted, like a server with K clients."""

    def __init__(self, classifier: Classifier, max_batch: int, sessions: int, mode: str) -> None:
        config = Config(ASYNC_MODE=mode, MAX_BATCH=max_batch, SNAPSHOT_MAX_HZ=0)
        self.answered = 0
        self.expected = 0
        self._count_lock = threading.Lock()  # only ever taken by one thread in eventlet mode
        if mode == "eventlet":
            import eventlet
            from eventlet import tpool
            from eventlet.green.threading import Event

            hooks = Hooks(self._emit, Event, tpool.execute, eventlet.sleep)
        else:
            hooks = Hooks(self._emit, threading.Event, lambda fn, *a: fn(*a), time.sleep)
        self.done = hooks.create_event()
        self.batcher = Batcher(classifier, config, Metrics(), hooks)
        self.sids = [f"s{i}" for i in range(sessions)]
        for sid in self.sids:
            self.batcher.open(sid, "127.0.0.1")
        if mode == "eventlet":
            self.loop = eventlet.spawn(self.batcher.run)
            self._join = self.loop.wait
        else:
            self.loop = threading.Thread(target=self.batcher.run, daemon=True)
            self.loop.start()
            self._join = lambda: self.loop.join(5)
        self.seq = 0

    def _emit(self, event: str, data: dict, to: str) -> None:
        with self._count_lock:
            self.answered += 1
            if self.answered >= self.expected:
                self.done.set()

    def round(self, items: list[Drawing]) -> None:
        """Every session submits one snapshot at once; wait for every answer."""
        self.seq += 1
        with self._count_lock:
            self.answered, self.expected = 0, len(items)
            self.done.clear()
        now = time.monotonic()
        for sid, drawing in zip(self.sids, items, strict=True):
            self.batcher.submit_snapshot(sid, Drawing(self.seq, drawing.strokes), now)
        if not self.done.wait(WAIT_S):
            raise RuntimeError("the batcher did not answer every snapshot")

    def close(self) -> None:
        self.batcher.stop()
        self._join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--sizes", default="1,8,32,128")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    config = Config()
    classifier = Classifier.load(config.model_path, num_threads=config.INFERENCE_THREADS)
    items, source = drawings(max(sizes))
    inputs = np.stack([to_model_input(d) for d in items])

    max_pixels = config.MAX_IMAGE_PIXELS
    rows = []
    for k in sizes:
        batch, x = items[:k], inputs[:k]
        flags = [False] * k
        timings = {
            "inference": compare(
                lambda x=x: classifier.predict(x),
                lambda x=x: [classifier.predict(x[i : i + 1]) for i in range(len(x))],
                args.repeat,
            ),
            "process": compare(
                lambda b=batch, f=flags: process(b, f, classifier, max_pixels),
                lambda b=batch: [process([d], [False], classifier, max_pixels) for d in b],
                args.repeat,
            ),
        }
        for mode in ("threading", "eventlet"):
            batched, single = Harness(classifier, 128, k, mode), Harness(classifier, 1, k, mode)
            try:
                timings[f"batcher/{mode}"] = compare(
                    lambda h=batched, b=batch: h.round(b),
                    lambda h=single, b=batch: h.round(b),
                    args.repeat,
                )
            finally:
                batched.close()
                single.close()
        for level, (batched_s, single_s) in timings.items():
            rows.append(
                {
                    "level": level,
                    "k": k,
                    "batched_median_ms": round(batched_s * 1000, 4),
                    "single_median_ms": round(single_s * 1000, 4),
                    "batched_us_per_snapshot": round(batched_s / k * 1e6, 2),
                    "single_us_per_snapshot": round(single_s / k * 1e6, 2),
                    "speedup": round(single_s / batched_s, 2),
                }
            )

    print(
        f"{'level':<18} {'K':>4} {'batched ms':>11} {'single ms':>10} "
        f"{'µs/snap batched':>16} {'µs/snap single':>15} {'speedup':>8}"
    )
    for r in rows:
        print(
            f"{r['level']:<18} {r['k']:>4} {r['batched_median_ms']:>11.3f} "
            f"{r['single_median_ms']:>10.3f} {r['batched_us_per_snapshot']:>16.1f} "
            f"{r['single_us_per_snapshot']:>15.1f} {r['speedup']:>7.2f}x"
        )

    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(
        json.dumps(
            {
                "benchmark": "batching",
                "drawings": source,
                "repeat": args.repeat,
                "model": classifier.info,
                "inference_threads": config.INFERENCE_THREADS,
                "machine": {
                    "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "load_1min": os.getloadavg()[0],
                },
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
