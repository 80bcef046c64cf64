"""Same-session A/B of the live server: an earlier commit against the working tree.

    .venv/bin/python bench/ab_server.py --base a6d895f --rounds 3

This machine is shared and noisy, so a figure from another day says little: both servers run
here, in alternating rounds (ABBA...), under the same load tool (one drawer, then a crowd),
and the table gives each side's median over the rounds and the ratio B/A. Each side runs its
own committed model, so the comparison is of what would be served.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from scripts.loadtest import run_load  # noqa: E402
from tests.conftest import start_server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ab_server.json"
FIGURES = ("rtt_p50", "rtt_p95", "server_p50", "answered_per_s")


def measure(url: str, clients: int, seconds: float) -> dict:
    result = asyncio.run(run_load(url, clients, seconds, rate=10.0))
    return {
        "rtt_p50": result["rtt_ms"]["p50"],
        "rtt_p95": result["rtt_ms"]["p95"],
        "server_p50": result["server_latency_ms"]["p50"],
        "answered_per_s": result["answered_per_s"],
        "errors": result["errors"],
        "disconnects": result["disconnects"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision of side A")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,100", help="comma-separated crowd sizes")
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    crowds = [int(c) for c in args.clients.split(",")]

    scratch = Path(tempfile.mkdtemp(prefix="ab-server-"))
    base = scratch / "base"
    add = ["git", "worktree", "add", "--detach", str(base), args.base]
    subprocess.run(add, cwd=ROOT, check=True)
    sides = {"A": base, "B": ROOT}
    runs: dict[str, dict[int, list[dict]]] = {s: {c: [] for c in crowds} for s in sides}
    try:
        for r in range(args.rounds):
            order = ("A", "B") if r % 2 == 0 else ("B", "A")
            for side in order:
                server = start_server(scratch, cwd=sides[side], LOG_LEVEL="WARNING")
                try:
                    measure(server.url, 1, 2.0)  # warm-up, not recorded
                    for clients in crowds:
                        figures = measure(server.url, clients, args.seconds)
                        runs[side][clients].append(figures)
                        print(f"round {r + 1} {side} {clients:>4} drawers: {figures}")
                finally:
                    server.stop()
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)

    summary = {}
    table = Table(title=f"A = {args.base}, B = working tree; medians of {args.rounds} rounds")
    for column in ("drawers", "figure", "A", "B", "B/A"):
        table.add_column(column, justify="right")
    for clients in crowds:
        for figure in FIGURES:
            a = statistics.median(run[figure] for run in runs["A"][clients])
            b = statistics.median(run[figure] for run in runs["B"][clients])
            summary[f"{clients}/{figure}"] = {"A": a, "B": b, "ratio": b / a if a else None}
            ratio = f"{b / a:.2f}" if a else "-"
            table.add_row(str(clients), figure, f"{a:.2f}", f"{b:.2f}", ratio)
    Console().print(table)
    record = {
        "base": args.base,
        "head": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": summary,
        "runs": runs,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
