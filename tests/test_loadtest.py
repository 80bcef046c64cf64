"""The load generator against a real server, and the drawer pattern it replays."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from scripts.drawers import Throttle, draw_one
from scripts.loadtest import ramp, run_load
from scripts.pen_replay import PenReplay, unipen_samples
from scripts.request_stats import Stats
from tests.conftest import ROOT

LOADTEST = ROOT / "scripts" / "loadtest.py"


def assert_sane(result: dict) -> None:
    rtt = result["rtt_ms"]
    assert result["answered"] > 0
    assert 0 < rtt["p50"] <= rtt["p95"] <= rtt["p99"]
    assert result["answered"] + result["coalesced"] + result["unanswered"] <= result["sent"]
    assert result["errors"] == 0, result["errors_by_code"]
    assert result["disconnects"] == 0 and result["connect_failures"] == 0
    assert result["predictions_answered"] > 0
    assert result["predictions_sent"] == result["predictions_answered"]
    assert 0.0 <= result["accuracy"] <= 1.0


@pytest.mark.live
def test_five_drawers_for_three_seconds(eventlet_server):
    done = subprocess.run(
        [sys.executable, str(LOADTEST), "--url", eventlet_server.url, "--clients", "5"]
        + ["--duration", "3", "--server-pid", str(eventlet_server.pid), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["clients"] == 5
    assert_sane(result)
    assert result["server"]["cpu_pct"] > 0 and result["server"]["rss_mb"] > 0


@pytest.mark.live
def test_polling_transport(eventlet_server):
    result = asyncio.run(run_load(eventlet_server.url, 2, 2.0, transports=["polling"]))
    assert_sane(result)


@pytest.mark.live
def test_ramp_reports_the_largest_crowd_within_the_bound(eventlet_server):
    result = asyncio.run(ramp(eventlet_server.url, [1, 2], 1.5, p95_bound_ms=10_000))
    assert [s["clients"] for s in result["steps"]] == [1, 2]
    assert result["max_drawers"] == 2
    for step in result["steps"]:
        assert step["within_bound"] and step["answered"] > 0


def test_nothing_answered_is_a_failure():
    done = subprocess.run(
        [sys.executable, str(LOADTEST), "--url", "http://127.0.0.1:9", "--clients", "1"]
        + ["--duration", "0.5", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert "error: no snapshot was answered" in done.stderr


def test_pen_replay_grows_to_the_whole_digit_at_the_throttled_rate():
    strokes = unipen_samples()[0].strokes
    sent: list[list] = []

    class Recorder:
        connected = True

        async def update(self, snapshot):
            sent.append(snapshot)
            return {}

    async def replay() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        finished = await draw_one(Recorder(), strokes, Throttle(50.0), start + 60)
        return finished, loop.time() - start

    finished, took = asyncio.run(replay())
    counts = [sum(len(s) for s in snapshot) for snapshot in sent]
    assert finished and sent[-1] == strokes
    assert counts == sorted(set(counts))  # each snapshot strictly grows
    for snapshot in sent:  # and is a prefix of the drawing
        assert all(s == strokes[i][: len(s)] for i, s in enumerate(snapshot))
    assert len(sent) <= 1 + took * 50  # never faster than the throttle
    assert PenReplay(strokes).count_at(0.0) == 1


def test_stats_summary():
    stats = Stats(rtt_ms=[1.0, 2.0, 3.0], sent=4, answered=2, coalesced=1)
    stats.errors["bad_strokes"] += 3
    summary = stats.summary(elapsed_s=2.0)
    assert summary["rtt_ms"]["p50"] == 2.0
    assert summary["sent"] == 4 and summary["answered_per_s"] == 1.0
    assert summary["coalesced_share"] == 0.25
    assert summary["errors"] == 3 and summary["errors_by_code"] == {"bad_strokes": 3}


@pytest.mark.live
def test_number_mode_workload(eventlet_server):
    """Drawers writing the dev writers' whole numbers in number mode."""
    from scripts.pen_replay import number_samples

    result = asyncio.run(
        run_load(eventlet_server.url, 3, 3.0, mode="number", samples=number_samples())
    )
    assert result["mode"] == "number"
    assert_sane(result)
