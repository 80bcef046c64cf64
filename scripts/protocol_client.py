"""A third party's Socket.IO client for protocol v1 (docs/protocol.md), and nothing more.

It counts what it sees (answers, coalesced and late snapshots, errors, drops) into a Stats,
so that the client, the load test and the soak test report the same figures; how a person
draws is in scripts/drawers.py, what is drawn in scripts/pen_replay.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import socketio

from scripts.pen_replay import CANVAS, Strokes
from scripts.request_stats import Stats


class SessionError(Exception):
    """A request failed: connection refused or lost, an `error` event, or a timeout."""


class RequestTimeout(SessionError):
    """No answer in time; for a snapshot that is the server's right (latest wins)."""


def answer_of(message: dict) -> int | str | None:
    """What an answer read: the digit, or in number mode the number (a string)."""
    return message.get("number") if message.get("mode") == "number" else message.get("digit")


def root_cause(error: BaseException) -> str:
    """The innermost message: python-socketio reports a refused connection as just
    'Connection error' and keeps aiohttp's useful one in the exception chain."""
    while (inner := error.__cause__ or error.__context__) is not None:
        error = inner
    return str(error) or type(error).__name__


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
        mode: str = "digit",
    ):
        self.stats = stats or Stats()
        self.mode = mode  # "digit", or "number": every drawing is read as a whole number
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
        """Returns once `ready` arrived: it carries the limits (max_rate) to draw within."""
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
        """Snapshots still in flight count as unanswered; this drop is not a disconnect."""
        self.closing = True
        self.stats.unanswered += len(self._in_flight)
        self._in_flight.clear()
        await self.sio.disconnect()  # also closes the HTTP session after a failed connect

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _drawing(self, seq: int, strokes: Strokes, image: str | None) -> dict[str, Any]:
        """An image, when given, goes instead of the strokes: a drawing is one or the other."""
        if image is not None:
            return {"seq": seq, "image": image}
        payload = {"seq": seq, "strokes": strokes, "width": CANVAS, "height": CANVAS}
        if self.mode != "digit":
            payload["mode"] = self.mode
        return payload

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
        payload = self._drawing(seq, strokes, image)
        self._in_flight[seq] = time.perf_counter()
        self.stats.sent += 1
        try:
            return await self._request("snapshot", "probabilities", payload, self.stall_timeout)
        except RequestTimeout:
            self.stats.stalled += 1
            return None

    async def predict(
        self, strokes: Strokes, label: int | str | None = None, image: str | None = None
    ) -> dict:
        """Waits as long as it takes: the server never drops a predict, unlike a snapshot."""
        seq = self._next_seq()
        payload = self._drawing(seq, strokes, image)
        self.stats.predictions_sent += 1
        start = time.perf_counter()
        answer = await self._request("predict", "prediction", payload, self.request_timeout)
        answer["rtt_ms"] = (time.perf_counter() - start) * 1000
        self._supersede(seq)  # the server drops snapshots older than a predict
        self.stats.predict_ms.append(answer["rtt_ms"])
        self.stats.predictions_answered += 1
        self.stats.not_a_digit += int(answer.get("verdict") == "not_a_digit")
        if label is not None:
            self.stats.labelled += 1
            self.stats.correct += int(answer_of(answer) == label)
        return answer

    async def clear(self) -> None:
        """Settles every snapshot still in flight too: the server drops them on a clear."""
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
