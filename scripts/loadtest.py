"""Many simulated drawers against one server, over the public Socket.IO protocol.

    python scripts/loadtest.py --clients 100 --duration 20 --server-pid "$(pgrep -f 'm server')"
    python scripts/loadtest.py --ramp --p95-bound-ms 100      # largest crowd within the bound

Each drawer replays real UNIPEN pen strokes (writers the model never trained on) as growing
snapshots, one in flight and at most --rate a second, then predicts, clears and starts the
next digit: the web page's pattern. Reports round-trip percentiles (snapshot sent -> its
probabilities), answered updates per second, the coalesced share, errors, disconnects,
final-prediction accuracy and, with --server-pid, the server's CPU and RSS.

Everything is bounded: --clients drawers for --duration seconds (plus one answer timeout to
finish a started prediction), against --url only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repo's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from scripts.drawers import Channel, Throttle, draw_digits  # noqa: E402
from scripts.pen_replay import Sample, number_samples, unipen_samples  # noqa: E402
from scripts.process_stats import ProcessSampler  # noqa: E402
from scripts.protocol_client import SessionError, SocketSession  # noqa: E402
from scripts.request_stats import Stats, percentile  # noqa: E402

DEFAULT_RAMP = (1, 10, 25, 50, 100, 150, 200, 300, 400)
CONNECT_CONCURRENCY = 25  # connection storms are not what this measures
RECONNECT_DELAY_S = 1.0  # socket.io's default first reconnection delay

Progress_ = Callable[[Stats, float], None]  # (stats so far, fraction of the duration done)


OpenChannel = Callable[[Stats], Awaitable[Channel]]


async def _drawer(
    channel: Channel | None,
    open_channel: Callable[[], Awaitable[Channel]],
    samples: Sequence[Sample],
    rate: float,
    deadline: float,
    stats: Stats,
    rng: random.Random,
) -> None:
    """One person at the page until the deadline; reconnects like socket.io after a drop."""
    loop = asyncio.get_running_loop()
    throttle = Throttle(rate)
    try:
        await asyncio.sleep(rng.random() / rate)  # drawers do not start in lockstep
        while loop.time() < deadline:
            if channel is None or not channel.connected:
                if channel is not None:
                    await channel.close()
                try:
                    channel = await open_channel()
                except SessionError:
                    channel = None
                    await asyncio.sleep(min(RECONNECT_DELAY_S, max(0, deadline - loop.time())))
                    continue
            try:
                await draw_digits(channel, samples, throttle, deadline, stats, rng)
                return
            except SessionError:
                continue  # counted where it happened; an error event leaves the session usable
    finally:
        if channel is not None:
            await channel.close()


async def run_drawers(
    open_channel: OpenChannel,
    clients: int,
    duration: float,
    rate: float = 10.0,
    samples: Sequence[Sample] | None = None,
    server_pid: int | None = None,
    seed: int = 0,
    request_timeout: float = 10.0,
    on_progress: Progress_ | None = None,
) -> dict[str, Any]:
    """Open `clients` channels, let them draw for `duration` seconds, summarise.

    Opening (connecting) is not part of the measured window. The result has the
    Stats.summary() keys plus clients, rate, client_cpu_pct and, with server_pid, server.
    """
    samples = samples or unipen_samples()
    stats = Stats()
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> Channel:
        async with gate:
            return await open_channel(stats)

    async def try_connect() -> Channel | None:
        try:
            return await connect()
        except SessionError:
            return None

    channels = await asyncio.gather(*(try_connect() for _ in range(clients)))
    sampler = ProcessSampler(server_pid) if server_pid else None
    cpu0, start = time.process_time(), loop.time()
    deadline = start + duration
    rngs = [random.Random(seed * 100_003 + i) for i in range(clients)]
    tasks = [
        asyncio.create_task(_drawer(c, connect, samples, rate, deadline, stats, rng))
        for c, rng in zip(channels, rngs, strict=True)
    ]
    hard_stop = deadline + request_timeout * 2 + 5
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.5)
        if sampler is not None:
            sampler.sample()
        if on_progress is not None:
            on_progress(stats, min(1.0, (loop.time() - start) / duration))
        if loop.time() > hard_stop:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            break
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()
    elapsed = max(loop.time() - start, duration)  # drawers stop early rather than overrun
    result = {
        "clients": clients,
        "rate": rate,
        **stats.summary(elapsed),
        "client_cpu_pct": 100 * (time.process_time() - cpu0) / elapsed,
    }
    if sampler is not None:
        result["server"] = sampler.result()
    return result


async def run_load(
    url: str,
    clients: int,
    duration: float,
    rate: float = 10.0,
    transports: Sequence[str] | None = ("websocket",),
    stall_timeout: float = 5.0,
    request_timeout: float = 10.0,
    mode: str = "digit",
    **kwargs: Any,
) -> dict[str, Any]:
    """run_drawers over Socket.IO: the load test proper (kwargs go to run_drawers). In
    `mode` "number" every drawer writes whole numbers (give number samples)."""

    async def open_session(stats: Stats) -> SocketSession:
        session = SocketSession(
            stats, stall_timeout=stall_timeout, request_timeout=request_timeout, mode=mode
        )
        await session.connect(url, transports)
        return session

    result = await run_drawers(
        open_session, clients, duration, rate, request_timeout=request_timeout, **kwargs
    )
    return {**result, "mode": mode, "transports": list(transports or ("polling", "websocket"))}


async def ramp(
    url: str,
    steps: Sequence[int] = DEFAULT_RAMP,
    step_duration: float = 10.0,
    p95_bound_ms: float = 100.0,
    load: Callable[..., Awaitable[dict[str, Any]]] = run_load,
    **kwargs: Any,
) -> dict[str, Any]:
    """Step the crowd up until p95 passes the bound (or anything fails).

    max_drawers is the largest step served cleanly within the bound: no errors, drops or
    refused connections, and every snapshot answered. `load` is run_load or any function
    with its (url, clients, duration, **kwargs) signature.
    """
    kwargs.setdefault("samples", unipen_samples())
    results, best = [], 0
    for clients in steps:
        result = await load(url, clients, step_duration, **kwargs)
        result["within_bound"] = within_bound(result, p95_bound_ms)
        results.append(result)
        if not result["within_bound"]:
            break
        best = clients
        await asyncio.sleep(1.0)  # let the server drain before the next step
    return {"p95_bound_ms": p95_bound_ms, "max_drawers": best, "steps": results}


def within_bound(result: dict[str, Any], p95_bound_ms: float) -> bool:
    p95 = result["rtt_ms"]["p95"]
    failures = result["errors"] + result["disconnects"] + result["connect_failures"]
    return p95 is not None and p95 <= p95_bound_ms and failures == 0 and not result["stalled"]


# --- command line ----------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def stdout_console() -> Console:
    """Wide enough for the results table when stdout is a file or pipe (rich assumes 80)."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def results_table(results: Sequence[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for column in (
        "drawers",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "server p50/p95",
        "answered/s",
        "coalesced",
        "errors",
        "drops",
        "accuracy",
        "not a digit",
        "server CPU",
        "server RSS",
        "client CPU",
    ):
        table.add_column(column, justify="right")
    for r in results:
        server = r.get("server", {})
        accuracy = r["accuracy"]
        table.add_row(
            str(r["clients"]),
            _ms(r["rtt_ms"]["p50"]),
            _ms(r["rtt_ms"]["p95"]),
            _ms(r["rtt_ms"]["p99"]),
            f"{_ms(r['server_latency_ms']['p50'])}/{_ms(r['server_latency_ms']['p95'])}",
            f"{r['answered_per_s']:.0f}",
            f"{r['coalesced_share']:.1%}",
            str(r["errors"]),
            str(r["disconnects"] + r["connect_failures"]),
            "-" if accuracy is None else f"{accuracy:.1%} ({r['predictions_answered']})",
            str(r.get("not_a_digit", 0)),
            f"{server['cpu_pct']:.0f}%" if server else "-",
            f"{server['peak_rss_mb']:.0f} MB" if server else "-",
            f"{r['client_cpu_pct']:.0f}%",
        )
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://localhost:7860")
    parser.add_argument("--clients", type=int, default=10, help="simulated drawers")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (per ramp step)")
    parser.add_argument("--rate", type=float, default=10.0, help="max snapshots/s per drawer")
    parser.add_argument(
        "--transports",
        default="websocket",
        choices=("websocket", "polling", "polling,websocket"),
        help="polling,websocket = start polling and upgrade, as browsers do",
    )
    parser.add_argument(
        "--server-pid", type=int, help="report CPU%% and RSS of this process and its children"
    )
    parser.add_argument("--ramp", action="store_true", help="step drawers up to the p95 bound")
    parser.add_argument("--steps", default=",".join(map(str, DEFAULT_RAMP)), help="ramp steps")
    parser.add_argument("--p95-bound-ms", type=float, default=100.0)
    parser.add_argument("--unipen", help="UNIPEN .jsonl.gz (default: $UNIPEN_PATH or shared)")
    parser.add_argument(
        "--mode",
        choices=("digit", "number"),
        default="digit",
        help="number: every drawer writes the dev writers' whole numbers in number mode",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.rate <= 0:
        parser.error("--clients, --duration and --rate must be positive")
    try:
        args.steps = [int(s) for s in args.steps.split(",")]
    except ValueError:
        parser.error("--steps must be comma-separated integers")
    return args


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    samples = number_samples(args.unipen) if args.mode == "number" else unipen_samples(args.unipen)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=args.quiet or not sys.stderr.isatty(),
    )
    task = progress.add_task("connecting", total=1.0)

    def on_progress(stats: Stats, done: float) -> None:
        p95 = percentile(stats.rtt_ms[-2000:], 95)
        progress.update(
            task,
            completed=done,
            description=f"{stats.answered} answered · recent p95 {_ms(p95)} ms · "
            f"{sum(stats.errors.values())} errors · {stats.disconnects} drops",
        )

    load = {
        "rate": args.rate,
        "transports": args.transports.split(","),
        "samples": samples,
        "server_pid": args.server_pid,
        "seed": args.seed,
        "on_progress": on_progress,
        "mode": args.mode,
    }
    with progress:
        if args.ramp:
            return await ramp(args.url, args.steps, args.duration, args.p95_bound_ms, **load)
        return await run_load(args.url, args.clients, args.duration, **load)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = asyncio.run(_main(args))
    except (OSError, SessionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    steps = result["steps"] if args.ramp else [result]
    if args.json:
        print(json.dumps(result))
    else:
        stdout_console().print(results_table(steps, f"{args.url} · {args.rate:g} snapshots/s max"))
        if args.ramp:
            print(f"largest crowd with p95 <= {args.p95_bound_ms:g} ms: {result['max_drawers']}")
    if all(s["answered"] == 0 for s in steps):
        failures = sum(s["connect_failures"] for s in steps)
        print(
            f"error: no snapshot was answered by {args.url} ({failures} failed connections)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
