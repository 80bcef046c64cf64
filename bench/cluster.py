"""Scale-out (issue 9): the load tool's --ramp against 1 worker vs 2 workers behind nginx.

    .venv/bin/python bench/cluster.py                         # ~10 minutes; prints a table
    .venv/bin/python bench/cluster.py --steps 10,50 --step-seconds 5 --configs 1,2

Every configuration is started exactly as `python -m scripts.cluster` starts it (Redis, N
`python -m server` workers, nginx), in turn, and gets the same crowd: drawers replaying real
UNIPEN strokes over WebSocket (scripts/loadtest.py). A direct single server (no nginx, no
Redis) is the baseline that shows what the proxy costs. Per step it records the answered
updates/s, round-trip percentiles and the CPU of every process (workers, nginx, Redis, and
the load generator itself: it shares this 2-core machine, so the ratio is a floor, not what
two machines would do).

It also weighs the wire format: JSON (what the server speaks) against msgpack (python-socketio's
`serializer='msgpack'`) for a typical snapshot and answer, when msgpack is installed.

Writes bench/results/cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repo's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.table import Table  # noqa: E402

from scripts.cluster import Cluster, free_port  # noqa: E402
from scripts.loadtest import ramp, results_table, run_load, stdout_console  # noqa: E402
from scripts.pen_replay import unipen_samples  # noqa: E402
from scripts.process_stats import ProcessSampler  # noqa: E402
from tests.conftest import start_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
STEPS = (25, 50, 100, 150, 200, 300, 400, 500)
DIRECT = "direct"  # one `python -m server`, clients connect to it without nginx


class Processes:
    """CPU% of a set of named processes over one load step (children included for nginx)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.samplers = {name: ProcessSampler(pid) for name, pid in pids.items()}

    def sample(self) -> None:
        for sampler in self.samplers.values():
            sampler.sample()

    def result(self) -> dict[str, dict[str, float]]:
        return {name: s.result() for name, s in self.samplers.items()}


def cluster_pids(cluster: Cluster) -> dict[str, int]:
    pids = {w.name: w.pid for w in cluster.workers}
    pids["nginx"] = nginx_worker_pid(cluster.nginx.pid)
    if cluster.redis is not None:
        pids["redis"] = cluster.redis.pid
    return pids


def nginx_worker_pid(master: int) -> int:
    """nginx's worker process does the proxying; its master only supervises."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            return int(stat.parent.name)
    return master


async def measured_load(
    url: str, clients: int, duration: float, pids: dict[str, int], **kwargs: Any
) -> dict[str, Any]:
    """run_load with the CPU of every process of the configuration sampled alongside."""
    processes = Processes(pids)
    sampler = asyncio.create_task(_sample_until_cancelled(processes))
    try:
        result = await run_load(url, clients, duration, **kwargs)
    finally:
        sampler.cancel()
    result["processes"] = processes.result()
    result["server_cpu_pct"] = sum(p["cpu_pct"] for p in result["processes"].values())
    return result


async def _sample_until_cancelled(processes: Processes) -> None:
    while True:
        processes.sample()
        await asyncio.sleep(0.5)


def run_config(name: str, steps: Sequence[int], step_s: float, bound: float, rate: float) -> dict:
    """Start one configuration, ramp it, stop it."""
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        cluster = server = None
        if name == DIRECT:
            server = start_server(Path(tmp), LOG_LEVEL="WARNING")
            url, pids = server.url, {"server": server.pid}
        else:
            cluster = Cluster(int(name), "127.0.0.1", free_port(), run_dir=Path(tmp))
            for worker in cluster.workers:
                worker.env["LOG_LEVEL"] = "WARNING"
            cluster.start()
            url, pids = cluster.url, cluster_pids(cluster)
        try:
            report = asyncio.run(
                ramp(
                    url,
                    steps,
                    step_s,
                    bound,
                    load=measured_load,
                    pids=pids,
                    rate=rate,
                    samples=unipen_samples(),
                )
            )
        finally:
            if cluster is not None:
                cluster.stop()
            if server is not None:
                server.stop()
    return {"config": name, **report, "peak_answered_per_s": peak(report["steps"])}


def peak(steps: Sequence[dict]) -> float:
    return max((s["answered_per_s"] for s in steps if s["within_bound"]), default=0.0)


def label(name: str) -> str:
    return "1 server, direct" if name == DIRECT else f"{name} worker(s) + nginx + Redis"


def summary_table(configs: Sequence[dict], bound: float) -> Table:
    table = Table(title=f"Scale-out: drawers served at p95 <= {bound:g} ms (WebSocket)")
    columns = (
        "configuration",
        "max drawers (median)",
        "per round",
        "answered/s at max",
        "server CPU ms/answer",
        "CPU per process at max",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for c in configs:
        within = [s for s in c["steps"] if s["within_bound"]]
        at_max = within[-1] if within else None
        cpu = "-"
        if at_max:
            parts = [f"{n} {p['cpu_pct']:.0f}%" for n, p in at_max["processes"].items()]
            cpu = ", ".join([*parts, f"load generator {at_max['client_cpu_pct']:.0f}%"])
        table.add_row(
            label(c["config"]),
            f"{c['max_drawers']:g}",
            ", ".join(str(r["max_drawers"]) for r in c["runs"]),
            f"{c['peak_answered_per_s']:.0f}",
            f"{cpu_ms_per_answer(at_max):.2f}" if at_max else "-",
            cpu,
        )
    return table


def cpu_ms_per_answer(step: dict) -> float:
    """Server-process CPU (workers, not nginx/Redis) per answered update: the cluster's
    per-message overhead, if any, shows here."""
    servers = [p for name, p in step["processes"].items() if name not in ("nginx", "redis")]
    return 10 * sum(p["cpu_pct"] for p in servers) / max(step["answered_per_s"], 1e-9)


def wire_messages() -> dict[str, dict]:
    """A typical snapshot (a median-size UNIPEN digit, 0.1 px coordinates) and its answer."""
    import numpy as np

    digits = sorted(unipen_samples()[:200], key=lambda s: sum(len(x) for x in s.strokes))
    p = np.round(np.random.default_rng(0).dirichlet(np.ones(10)), 6).tolist()
    return {
        "snapshot": {"seq": 123, "strokes": digits[len(digits) // 2].strokes},
        "probabilities": {
            "seq": 123,
            "digit": 3,
            "confidence": p[3],
            "probabilities": p,
            "empty": False,
            "latency_ms": 4.21,
        },
    }


def wire_formats() -> dict[str, Any]:
    """Bytes and encode+decode time of one snapshot and one answer, JSON vs msgpack."""
    import timeit

    messages = wire_messages()
    codecs: dict[str, tuple[Any, Any]] = {
        "json": (lambda m: json.dumps(m, separators=(",", ":")).encode(), json.loads)
    }
    try:
        import msgpack

        codecs["msgpack"] = (msgpack.packb, msgpack.unpackb)
    except ImportError:
        pass
    out: dict[str, Any] = {}
    for name, message in messages.items():
        out[name] = {}
        for codec, (encode, decode) in codecs.items():
            data = encode(message)
            n = 2000
            seconds = timeit.timeit(lambda: decode(encode(message)), number=n) / n  # noqa: B023
            out[name][codec] = {"bytes": len(data), "encode_decode_us": round(seconds * 1e6, 1)}
    if "msgpack" not in codecs:
        out["note"] = "msgpack is not installed: only JSON measured"
    return out


def queue_hop(messages: int = 2000) -> dict[str, Any]:
    """What routing answers through the message queue would add per answer (the design not
    taken: separate inference processes emitting via Redis): one JSON publish, Redis's
    fan-out to every subscribed worker, one decode in each. Measured as a sequential
    publish -> receive round trip on a private Redis, as python-socketio's RedisManager
    does it."""
    import threading

    import redis

    from scripts.cluster import Child, _binary

    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        port = free_port()
        server = Child(
            "redis",
            [_binary("redis-server", "apt-get install redis-server"), "--bind", "127.0.0.1",
             "--port", str(port), "--save", "", "--dir", tmp],
            Path(tmp) / "redis.log",
        )  # fmt: skip
        server.start()
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe("bench")
            received = threading.Event()

            def listen() -> None:
                for item in pubsub.listen():
                    json.loads(item["data"])
                    received.set()
                    if item["data"] == b'"stop"':
                        return

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            time.sleep(0.2)
            message = {
                "method": "emit",
                "event": "probabilities",
                "data": [wire_messages()["probabilities"]],
                "namespace": "/",
                "room": "w0.Xq3pYc0v4TnS7dVaAAAB",
                "skip_sid": None,
                "callback": None,
                "host_id": "0" * 32,
            }
            rtts = []
            cpu0 = time.process_time()
            for _ in range(messages):
                received.clear()
                start = time.perf_counter()
                client.publish("bench", json.dumps(message))
                received.wait(5)
                rtts.append(time.perf_counter() - start)
            cpu = time.process_time() - cpu0
            client.publish("bench", json.dumps("stop"))
            listener.join(5)
        finally:
            server.signal()
            server.wait(5)
    rtts.sort()
    return {
        "messages": messages,
        "round_trip_us_p50": round(statistics.median(rtts) * 1e6, 1),
        "round_trip_us_p95": round(rtts[int(0.95 * len(rtts))] * 1e6, 1),
        "bench_process_cpu_us_per_message": round(cpu / messages * 1e6, 1),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=f"{DIRECT},1,2", help="direct and/or worker counts")
    parser.add_argument("--steps", default=",".join(map(str, STEPS)))
    parser.add_argument("--step-seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=10.0, help="max snapshots/s per drawer")
    parser.add_argument("--p95-bound-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds; medians reported")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    names = args.configs.split(",")
    order = [n for r in range(args.rounds) for n in (names if r % 2 == 0 else names[::-1])]
    console = stdout_console()
    load_average = os.getloadavg()
    runs = []
    for name in order:  # ABBA order: slow drift of the shared machine hits all alike
        console.print(f"[bold]{label(name)}[/bold]: ramp {steps}, {args.step_seconds:g} s a step")
        run = run_config(name, steps, args.step_seconds, args.p95_bound_ms, args.rate)
        console.print(results_table(run["steps"], label(name)))
        runs.append(run)
    configs = [combine(name, [r for r in runs if r["config"] == name]) for name in names]
    console.print(summary_table(configs, args.p95_bound_ms))
    by_name = {c["config"]: c for c in configs}
    ratios = {}
    if "1" in by_name and "2" in by_name:
        one, two = by_name["1"], by_name["2"]
        best = {c: max(r["max_drawers"] for r in by_name[c]["runs"]) for c in ("1", "2")}
        ratios = {
            "best_round_max_drawers_2_vs_1": best["2"] / max(best["1"], 1),
            "max_drawers_2_vs_1": two["max_drawers"] / max(one["max_drawers"], 1),
            "answered_per_s_2_vs_1": two["peak_answered_per_s"]
            / max(one["peak_answered_per_s"], 1e-9),
        }
        console.print(
            f"2 workers vs 1 (medians): {ratios['max_drawers_2_vs_1']:.2f}x drawers within the "
            f"bound, {ratios['answered_per_s_2_vs_1']:.2f}x answered/s; best rounds "
            f"{ratios['best_round_max_drawers_2_vs_1']:.2f}x (target >= 1.5x)"
        )
    wire = wire_formats()
    hop = queue_hop()
    console.print(f"wire formats (bytes, encode+decode us): {json.dumps(wire)}")
    console.print(f"one extra hop through the Redis queue: {json.dumps(hop)}")
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": load_average,
        "load_average_at_end": os.getloadavg(),
        "step_seconds": args.step_seconds,
        "rate": args.rate,
        "rounds": args.rounds,
        "configs": configs,
        "ratios": ratios,
        "wire_formats": wire,
        "queue_hop": hop,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"saved {args.out / 'cluster.json'}")
    return 0


def combine(name: str, runs: list[dict]) -> dict:
    """One configuration over its rounds: medians of the headline figures, every run kept."""
    best = max(runs, key=lambda r: r["max_drawers"])
    return {
        "config": name,
        "max_drawers": statistics.median(r["max_drawers"] for r in runs),
        "peak_answered_per_s": statistics.median(r["peak_answered_per_s"] for r in runs),
        "steps": best["steps"],  # for the CPU-per-process column
        "runs": runs,
    }


if __name__ == "__main__":
    sys.exit(main())
