"""What the socket test client, the load generator and the benchmark share.

A simulated drawer behaves like the web page: the pen moves in real time, the page sends the
strokes drawn so far as a growing snapshot at most `rate` times a second with at most one
snapshot in flight, then asks for the final prediction and clears the canvas. Keeping that
pattern in one place means the client, the load test and the benchmark measure the same
thing. Only the public protocol (docs/protocol.md) is used, as a third party would.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import socketio

CANVAS = 280  # the web page's canvas, in px; UNIPEN digits are fitted to it by model.data
PEN_POINTS_PER_SECOND = 100.0  # UNIPEN tablets sample at 60-200 Hz
PEN_SECONDS = (0.3, 3.0)  # how long drawing one digit may take, whatever its point count

Strokes = list[list[list[float]]]


class SessionError(Exception):
    """A request failed: connection refused or lost, an `error` event, or a timeout."""


class RequestTimeout(SessionError):
    """No answer in time; for a snapshot that is the server's right (latest wins)."""


def root_cause(error: BaseException) -> str:
    """The innermost message: python-socketio reports a refused connection as just
    'Connection error' and keeps aiohttp's useful one in the exception chain."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return str(error) or type(error).__name__


# --- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One digit to draw: canvas strokes (y down) and its label when known."""

    strokes: Strokes
    label: int | None = None


def as_strokes(strokes: Sequence[Any]) -> Strokes:
    """Plain JSON lists rounded to 0.1 px: a canvas reports no finer, and it keeps frames small."""
    return [[[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(s)] for s in strokes]


@functools.cache
def unipen_samples(
    path: str | os.PathLike | None = None, heldout_only: bool = True
) -> list[Sample]:
    """UNIPEN digits on the canvas; by default only the writers the model never trained on."""
    from model.data import load_unipen, unipen_split

    records = load_unipen(path)
    if heldout_only:
        records = unipen_split(records)[1]
    return [Sample(as_strokes(r["strokes"]), int(r["label"])) for r in records]


def png_data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def canvas_png(image: np.ndarray, size: int = CANVAS) -> bytes:
    """A 28x28 MNIST digit (ink = 255) as the canvas exports it: black ink in the alpha channel."""
    from PIL import Image

    alpha = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    return transparent_png(alpha)


def transparent_png(ink: Any) -> bytes:
    """A PIL "L" image of ink coverage as a browser canvas PNG: transparent, ink in alpha."""
    from PIL import Image

    rgba = Image.new("RGBA", ink.size, (0, 0, 0, 0))
    rgba.putalpha(ink)
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    return buf.getvalue()


# --- pen replay -----------------------------------------------------------------------


class PenReplay:
    """The strokes drawn after t seconds, with the pen moving at a steady point rate."""

    def __init__(self, strokes: Strokes, points_per_second: float = PEN_POINTS_PER_SECOND):
        self.strokes = strokes
        self.total = sum(len(s) for s in strokes)
        low, high = PEN_SECONDS
        self.duration = min(max(self.total / points_per_second, low), high)

    def count_at(self, t: float) -> int:
        """Points on the canvas t seconds after pen-down (at least one: the pen touched)."""
        if t >= self.duration:
            return self.total
        return max(1, min(self.total, int(self.total * t / self.duration)))

    def time_of(self, count: int) -> float:
        """When the count-th point appears."""
        return self.duration * count / self.total

    def prefix(self, count: int) -> Strokes:
        out: Strokes = []
        for stroke in self.strokes:
            if count <= 0:
                break
            out.append(stroke[:count])
            count -= len(stroke)
        return out


# --- stats ----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


@dataclass
class Stats:
    """Raw counts and latencies; merged across drawers and processes before summarising."""

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
    labelled: int = 0
    correct: int = 0

    def merge(self, other: Stats) -> Stats:
        for name, value in vars(other).items():
            mine = getattr(self, name)
            if isinstance(mine, list):
                mine.extend(value)
            elif isinstance(mine, Counter):
                mine.update(value)
            else:
                setattr(self, name, mine + value)
        return self

    def summary(self, elapsed_s: float) -> dict[str, Any]:
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
            "accuracy": self.correct / self.labelled if self.labelled else None,
        }


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may contain spaces and parentheses)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


class ProcessSampler:
    """CPU% and RSS of a server process and its descendants (a cluster supervisor's workers,
    Redis and nginx) from /proc, without psutil. Linux only.

    CPU% is over the whole window and counts every thread, so 200% means both cores.
    """

    def __init__(self, pid: int):
        self.pid = pid
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.peak_rss_kb = 0
        self._start = (time.monotonic(), self._cpu_ticks())

    def pids(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    children.setdefault(int(_stat_fields(int(entry))[1]), []).append(int(entry))
                except (OSError, IndexError, ValueError):
                    continue  # exited meanwhile
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def _cpu_ticks(self) -> dict[int, int]:
        ticks = {}
        for pid in self.pids():
            try:
                fields = _stat_fields(pid)
            except OSError:
                continue
            ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
        return ticks

    def rss_kb(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next((int(x.split()[1]) for x in f if x.startswith("VmRSS:")), 0)
            except OSError:
                continue
        return total

    def sample(self) -> None:
        """Call now and then during the run to catch the peak RSS."""
        self.peak_rss_kb = max(self.peak_rss_kb, self.rss_kb())

    def result(self) -> dict[str, float]:
        t0, ticks0 = self._start
        wall = time.monotonic() - t0
        rss = self.rss_kb()
        self.peak_rss_kb = max(self.peak_rss_kb, rss)
        now = self._cpu_ticks()
        cpu = sum(t - ticks0.get(pid, 0) for pid, t in now.items()) / self.ticks
        return {
            "cpu_pct": 100.0 * cpu / wall if wall > 0 else 0.0,
            "rss_mb": rss / 1024,
            "peak_rss_mb": self.peak_rss_kb / 1024,
            "processes": len(now),
        }


# --- the protocol session -------------------------------------------------------------


class Channel(Protocol):
    """What a drawer needs from a server; the benchmark's HTTP baseline implements it too."""

    @property
    def connected(self) -> bool: ...
    async def update(self, strokes: Strokes) -> dict | None: ...
    async def predict(self, strokes: Strokes, label: int | None = None) -> dict: ...
    async def clear(self) -> None: ...
    async def close(self) -> None: ...


class SocketSession:
    """One drawer's Socket.IO session speaking protocol v1, one snapshot in flight.

    The server answers only the newest snapshot of a session (latest wins), so an answer for
    seq s also settles every older snapshot still in flight: those count as coalesced.
    """

    def __init__(
        self,
        stats: Stats | None = None,
        on_answer: Callable[[str, dict], None] | None = None,
        stall_timeout: float = 5.0,
        request_timeout: float = 10.0,
    ):
        self.stats = stats or Stats()
        self.on_answer = on_answer
        self.stall_timeout = stall_timeout
        self.request_timeout = request_timeout
        self.ready: dict | None = None
        self.closing = False
        self._seq = 0
        self._in_flight: dict[int, float] = {}  # snapshot seq -> perf_counter at send
        self._waiters: dict[tuple[str, int], asyncio.Future] = {}
        self._ready = asyncio.Event()
        self.sio = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        self._refused: Any = None
        for event in ("ready", "probabilities", "prediction", "cleared", "error", "disconnect"):
            self.sio.on(event, getattr(self, f"_on_{event}"))
        self.sio.on("connect_error", self._on_connect_error)

    async def connect(self, url: str, transports: Sequence[str] | None = ("websocket",)) -> None:
        try:
            await self.sio.connect(
                url,
                transports=list(transports) if transports else None,
                wait_timeout=self.request_timeout,
            )
            await asyncio.wait_for(self._ready.wait(), self.request_timeout)
        except (socketio.exceptions.ConnectionError, OSError) as e:
            self.stats.connect_failures += 1
            await self.close()
            reason = root_cause(e)
            if isinstance(self._refused, dict):  # refused: {"message", "data": {"code", ...}}
                refusal = self._refused.get("data") or self._refused
                reason = f"refused ({refusal.get('code')}): {refusal.get('message')}"
            raise SessionError(f"cannot connect to {url}: {reason}") from e
        except TimeoutError as e:
            self.stats.connect_failures += 1
            await self.close()
            raise SessionError(f"{url} sent no 'ready' within {self.request_timeout:g} s") from e

    @property
    def connected(self) -> bool:
        return self.sio.connected

    def max_rate(self, rate: float) -> float:
        """`rate`, capped at the snapshot rate the server's `ready` says it will answer."""
        cap = ((self.ready or {}).get("limits") or {}).get("snapshot_max_hz")
        return min(rate, cap) if isinstance(cap, int | float) and cap > 0 else rate

    async def close(self) -> None:
        self.closing = True
        self.stats.unanswered += len(self._in_flight)
        self._in_flight.clear()
        await self.sio.disconnect()  # also closes the HTTP session after a failed connect

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _wait_for(self, event: str, seq: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters[(event, seq)] = future
        return future

    async def _request(self, event: str, answer: str, payload: dict, timeout: float) -> dict:
        future = self._wait_for(answer, payload["seq"])
        try:
            await self.sio.emit(event, payload)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as e:
            raise RequestTimeout(
                f"no '{answer}' for {event} seq {payload['seq']} within {timeout:g} s"
            ) from e
        except socketio.exceptions.BadNamespaceError as e:
            raise SessionError(f"not connected: {event} seq {payload['seq']} not sent") from e
        finally:
            self._waiters.pop((answer, payload["seq"]), None)

    async def update(self, strokes: Strokes, image: str | None = None) -> dict | None:
        """Send one snapshot; its probabilities, or None when a newer one must go instead."""
        seq = self._next_seq()
        payload: dict[str, Any] = {"seq": seq}
        if image is not None:
            payload["image"] = image
        else:
            payload.update(strokes=strokes, width=CANVAS, height=CANVAS)
        self._in_flight[seq] = time.perf_counter()
        self.stats.sent += 1
        try:
            return await self._request("snapshot", "probabilities", payload, self.stall_timeout)
        except RequestTimeout:
            self.stats.stalled += 1
            return None

    async def predict(
        self, strokes: Strokes, label: int | None = None, image: str | None = None
    ) -> dict:
        seq = self._next_seq()
        payload: dict[str, Any] = {"seq": seq}
        if image is not None:
            payload["image"] = image
        else:
            payload.update(strokes=strokes, width=CANVAS, height=CANVAS)
        self.stats.predictions_sent += 1
        start = time.perf_counter()
        answer = await self._request("predict", "prediction", payload, self.request_timeout)
        answer["rtt_ms"] = (time.perf_counter() - start) * 1000
        self._supersede(seq)  # the server drops snapshots older than a predict
        self.stats.predict_ms.append(answer["rtt_ms"])
        self.stats.predictions_answered += 1
        if label is not None:
            self.stats.labelled += 1
            self.stats.correct += int(answer.get("digit") == label)
        return answer

    async def clear(self) -> None:
        await self._request("clear", "cleared", {"seq": self._next_seq()}, self.request_timeout)
        self._supersede(self._seq)

    # --- server events (run on the client's event loop) ---

    def _supersede(self, seq: int) -> None:
        """Every snapshot older than seq is settled: the server will not answer it any more."""
        for old in [s for s in self._in_flight if s < seq]:
            del self._in_flight[old]
            self.stats.coalesced += 1

    def _settle(self, event: str, data: Any) -> None:
        seq = data.get("seq") if isinstance(data, dict) else None
        future = self._waiters.get((event, seq))
        if future is None and seq is None:  # an answer without seq settles the oldest waiter
            future = next((f for (e, _), f in self._waiters.items() if e == event), None)
        if future is not None and not future.done():
            future.set_result(data)
        if self.on_answer is not None:
            self.on_answer(event, data)

    async def _on_connect_error(self, data: Any = None) -> None:
        self._refused = data

    async def _on_ready(self, data: Any = None) -> None:
        self.ready = data if isinstance(data, dict) else {}
        self._ready.set()

    async def _on_probabilities(self, data: dict) -> None:
        now = time.perf_counter()
        seq = data.get("seq")
        sent_at = self._in_flight.pop(seq, None)
        if sent_at is None:
            self.stats.late += 1
        else:
            rtt = (now - sent_at) * 1000
            data["rtt_ms"] = rtt
            self.stats.rtt_ms.append(rtt)
            self.stats.answered += 1
            if isinstance(data.get("latency_ms"), int | float):
                self.stats.server_ms.append(float(data["latency_ms"]))
            self._supersede(seq)
        # an older waiter (stalled) is also settled by a newer answer
        for (event, waiting), future in list(self._waiters.items()):
            if event == "probabilities" and waiting <= (seq or 0) and not future.done():
                future.set_result(data)
        self._settle("probabilities", data)

    async def _on_prediction(self, data: dict) -> None:
        self._settle("prediction", data)

    async def _on_cleared(self, data: Any = None) -> None:
        self._settle("cleared", data if isinstance(data, dict) else {})

    async def _on_error(self, data: Any) -> None:
        data = data if isinstance(data, dict) else {"code": "unknown", "message": str(data)}
        self.stats.errors[str(data.get("code", "unknown"))] += 1
        seq = data.get("seq")
        self._in_flight.pop(seq, None)
        error = SessionError(f"server error {data.get('code')}: {data.get('message')}")
        for (_, waiting), future in list(self._waiters.items()):
            if (seq is None or waiting == seq) and not future.done():
                future.set_exception(error)
        if self.on_answer is not None:
            self.on_answer("error", data)

    async def _on_disconnect(self, reason: Any = None) -> None:
        if not self.closing:
            self.stats.disconnects += 1
        lost = SessionError(f"disconnected by the server ({reason})")
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(lost)


# --- the drawer -----------------------------------------------------------------------


class Throttle:
    """At most `rate` snapshots a second for one drawer, across digits too."""

    def __init__(self, rate: float):
        self.period = 1.0 / rate
        self.next_send = 0.0  # loop.time() of the earliest allowed send

    def sent(self, now: float) -> None:
        self.next_send = now + self.period


async def draw_one(channel: Channel, strokes: Strokes, throttle: Throttle, deadline: float) -> bool:
    """Replay the pen in real time as growing snapshots, one in flight, throttled.

    False when the deadline (loop.time()) cut the digit off before the pen lifted.
    """
    loop = asyncio.get_running_loop()
    pen = PenReplay(strokes)
    start = loop.time()
    sent = 0
    while sent < pen.total:
        ready_at = max(throttle.next_send, start + pen.time_of(sent + 1))
        if ready_at >= deadline:
            return False
        now = loop.time()
        if ready_at > now:
            await asyncio.sleep(ready_at - now)
            now = loop.time()
        count = max(sent + 1, pen.count_at(now - start))
        throttle.sent(now)
        await channel.update(pen.prefix(count))
        sent = count
    return True


async def draw_digits(
    channel: Channel,
    samples: Sequence[Sample],
    throttle: Throttle,
    deadline: float,
    stats: Stats,
    rng: random.Random,
) -> None:
    """Draw random samples until the deadline, each then predicted and cleared, like a person.

    A digit cut off by the deadline is abandoned without a prediction, so every prediction
    sent is one the drawer waits for.
    """
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        sample = rng.choice(samples)
        stats.digits += 1
        if not await draw_one(channel, sample.strokes, throttle, deadline):
            return
        await channel.predict(sample.strokes, sample.label)
        await channel.clear()
