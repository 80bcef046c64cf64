"""A simulated person at the page, drawing digits over any channel to a server.

The page sends the strokes drawn so far as a growing snapshot at most `rate` times a second
with at most one snapshot in flight, then asks for the final prediction and clears the
canvas. Keeping that pattern in one place means the client, the load test and the benchmark
measure the same thing, over Socket.IO or the benchmark's HTTP baseline alike.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Protocol

from scripts.pen_replay import PenReplay, Sample, Strokes
from scripts.request_stats import Stats


class Channel(Protocol):
    """What a drawer needs from a server; the benchmark's HTTP baseline implements it too."""

    @property
    def connected(self) -> bool: ...
    async def update(self, strokes: Strokes) -> dict | None: ...
    async def predict(self, strokes: Strokes, label: int | str | None = None) -> dict: ...
    async def clear(self) -> None: ...
    async def close(self) -> None: ...


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
