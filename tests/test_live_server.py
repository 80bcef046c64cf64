"""A real `python -m server` (both async modes) driven by real python-socketio clients.

Only 127.0.0.1; every loop is bounded in count and every wait in time; nothing asserts speed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from collections import defaultdict

import numpy as np
import pytest
import socketio

from model.data import load_unipen
from model.strokes import point_prefix
from server.config import Config
from server.inference import Classifier
from server.preprocess import render_strokes
from server.reading import NUM_DIGITS

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

WAIT_S = 30.0
CLIENTS = 20
STEPS = 8  # growing snapshots per replayed digit
CONFIDENT = 0.9


class Recorder:
    """An AsyncClient that keeps every server event in arrival order."""

    def __init__(self, transports: list[str] | None = None) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.transports = transports
        self.events: list[tuple[str, dict]] = []
        self._changed = asyncio.Event()
        for name in ("ready", "probabilities", "prediction", "cleared", "error"):
            self.sio.on(name, self._recorder(name))

    def _recorder(self, name: str):
        async def record(data: dict) -> None:
            self.events.append((name, data))
            self._changed.set()

        return record

    async def connect(self, url: str) -> None:
        await self.sio.connect(url, transports=self.transports, wait_timeout=WAIT_S)
        await self.wait_for("ready")

    def seqs(self, name: str) -> list[int]:
        return [data["seq"] for event, data in self.events if event == name]

    async def wait_for(self, name: str, seq=...) -> dict:
        async def found() -> dict:
            while True:
                for event, data in self.events:
                    if event == name and (seq is ... or data.get("seq") == seq):
                        return data
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(found(), WAIT_S)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=WAIT_S) as response:
        return json.load(response)


def as_lists(strokes: list[np.ndarray]) -> list[list[list[float]]]:
    return [np.round(s, 1).tolist() for s in strokes]


@pytest.fixture(scope="module")
def clear_digits() -> list[dict]:
    """Two real UNIPEN digits per class that the served model reads confidently offline."""
    samples = load_unipen()
    random.Random(4).shuffle(samples)
    classifier = Classifier.load(Config().model_path)
    chosen: dict[int, list[dict]] = defaultdict(list)
    for start in range(0, len(samples), 200):
        chunk = samples[start : start + 200]
        inputs = [render_strokes(s["strokes"]) for s in chunk]
        keep = [(s, x) for s, x in zip(chunk, inputs, strict=True) if x is not None]
        probabilities = classifier.predict(np.stack([x for _, x in keep]))
        for (sample, _), p in zip(keep, probabilities, strict=True):
            label = sample["label"]
            digits = p[:NUM_DIGITS]  # the final head's
            if int(np.argmax(digits)) == label and p[label] >= CONFIDENT and len(chosen[label]) < 2:
                chosen[label].append(sample)
        if all(len(chosen[d]) == 2 for d in range(10)):
            break
    digits = [s for d in range(10) for s in chosen[d]]
    assert len(digits) == CLIENTS, "not enough confidently-read UNIPEN digits"
    return digits


async def replay(url: str, index: int, sample: dict) -> tuple[Recorder, dict]:
    """Draw one digit as growing snapshots (faster than the rate cap), then predict."""
    recorder = Recorder(["websocket"] if index % 2 else None)  # half start on long-polling
    await recorder.connect(url)
    base = (index + 1) * 1000  # every client's seqs are distinct: cross-talk would show
    for step in range(1, STEPS + 1):
        strokes = point_prefix(sample["strokes"], step / STEPS)
        await recorder.sio.emit("snapshot", {"seq": base + step, "strokes": as_lists(strokes)})
        await asyncio.sleep(0.02)
    await recorder.wait_for("probabilities", base + STEPS)  # the newest is always answered
    payload = {"seq": base + STEPS + 1, "strokes": as_lists(sample["strokes"])}
    ack = await recorder.sio.call("predict", payload, timeout=WAIT_S)
    await recorder.wait_for("prediction", base + STEPS + 1)
    await recorder.sio.disconnect()
    return recorder, ack


def test_concurrent_sessions_get_their_own_answers(live_server, clear_digits):
    async def main():
        return await asyncio.gather(
            *(replay(live_server.url, i, s) for i, s in enumerate(clear_digits))
        )

    results = asyncio.run(main())
    for index, ((recorder, ack), sample) in enumerate(zip(results, clear_digits, strict=True)):
        base = (index + 1) * 1000
        seqs = recorder.seqs("probabilities")
        assert seqs, f"client {index} got no probabilities"
        assert set(seqs) <= {base + step for step in range(1, STEPS + 1)}
        assert seqs == sorted(set(seqs)), f"client {index}: answers out of order {seqs}"
        assert seqs[-1] == base + STEPS
        assert recorder.seqs("prediction") == [base + STEPS + 1]
        assert not recorder.seqs("error")
        prediction = next(d for e, d in recorder.events if e == "prediction")
        assert ack == prediction
        assert prediction["digit"] == sample["label"], f"client {index} drew {sample['label']}"
    # Disconnects leave no per-session state behind.
    assert_idle(live_server.url)


def assert_idle(url: str) -> None:
    """Within WAIT_S, /healthz reports no session and no pending work: disconnects leave no
    per-session state behind."""
    for _ in range(int(WAIT_S / 0.05)):
        health = get_json(f"{url}/healthz")
        if health["sessions"] == 0 and health["pending"] == 0:
            break
        time.sleep(0.05)
    assert (health["sessions"], health["pending"]) == (0, 0)


def test_flood_is_coalesced(live_server):
    stroke = [[140.0, 40.0 + i] for i in range(200)]

    async def main() -> Recorder:
        recorder = Recorder(["websocket"])
        await recorder.connect(live_server.url)
        for seq in range(1, 201):
            await recorder.sio.emit("snapshot", {"seq": seq, "strokes": [stroke[:seq]]})
        await recorder.wait_for("probabilities", 200)
        await recorder.sio.call("predict", {"seq": 201, "strokes": [stroke]}, timeout=WAIT_S)
        await recorder.wait_for("prediction", 201)
        await recorder.sio.disconnect()
        return recorder

    recorder = asyncio.run(main())
    seqs = recorder.seqs("probabilities")
    assert len(seqs) < 200
    assert seqs == sorted(set(seqs)) and seqs[-1] == 200
    assert not recorder.seqs("error")


def test_nothing_older_arrives_after_cleared(live_server):
    stroke = [[140.0, 40.0 + i] for i in range(100)]

    async def main() -> Recorder:
        recorder = Recorder(["websocket"])
        await recorder.connect(live_server.url)
        for seq in range(1, 51):
            await recorder.sio.emit("snapshot", {"seq": seq, "strokes": [stroke[: seq * 2]]})
        await recorder.sio.emit("clear", {"seq": 51})
        await recorder.wait_for("cleared", 51)
        await recorder.sio.emit("snapshot", {"seq": 52, "strokes": [stroke]})
        await recorder.wait_for("probabilities", 52)  # a barrier: answers arrive in order
        await recorder.sio.disconnect()
        return recorder

    recorder = asyncio.run(main())
    names = [event for event, _ in recorder.events]
    after_clear = recorder.events[names.index("cleared") + 1 :]
    assert [d["seq"] for e, d in after_clear if e == "probabilities"] == [52]


def test_errors_keep_a_live_session_usable(live_server):
    async def main() -> Recorder:
        recorder = Recorder(["websocket"])
        await recorder.connect(live_server.url)
        await recorder.sio.emit("snapshot", {"seq": 1, "strokes": [[["x", 1]]]})
        await recorder.wait_for("error", 1)
        await recorder.sio.emit("snapshot", {"seq": 2, "image": "data:image/png;base64,AAAA"})
        await recorder.wait_for("error", 2)
        await recorder.sio.emit("snapshot", {"seq": 3, "strokes": [[[1, 1], [1, 30]]]})
        await recorder.wait_for("probabilities", 3)
        await recorder.sio.disconnect()
        return recorder

    recorder = asyncio.run(main())
    codes = [d["code"] for e, d in recorder.events if e == "error"]
    assert codes == ["bad_coordinate", "bad_image"]


def test_http_predict_and_health(live_server):
    body = json.dumps({"seq": 1, "strokes": [[[140, 40], [140, 240]]]}).encode()
    request = urllib.request.Request(
        f"{live_server.url}/api/predict", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        answer = json.load(response)
    assert answer["seq"] == 1 and answer["empty"] is False and len(answer["top"]) == 3
    health = get_json(f"{live_server.url}/healthz")
    assert health["status"] == "ok"
    assert health["async_mode"] in ("eventlet", "threading")
    with urllib.request.urlopen(f"{live_server.url}/metrics", timeout=WAIT_S) as response:
        assert b"digits_predictions_total" in response.read()


# --- racing snapshots, predicts and clears: never a stale answer ---------------------------

RACE_OPS = 60  # events each racer sends before its final snapshot
BAR = [[[140.0, 40.0 + 4 * i] for i in range(50)]]  # a vertical bar: a "1"
MAX_SESSION_PREDICTS = Config().MAX_SESSION_PREDICTS


def racing_drawing(seq: int) -> list:
    """What a racer draws at `seq`: every third one is blank, so an answer meant for another
    seq (or another session) shows as the wrong `empty`."""
    return [] if seq % 3 == 0 else BAR


async def race(url: str, index: int) -> tuple[Recorder, list[int], list[int], int]:
    """Snapshots, predicts and clears in a random order, without waiting for any answer
    (at most MAX_SESSION_PREDICTS predicts unanswered); then, once every predict and clear
    is answered, a final snapshot."""
    rng = random.Random(index)
    recorder = Recorder(["websocket"] if index % 2 else None)  # half start on long-polling
    await recorder.connect(url)
    seq = (index + 1) * 100_000  # every racer's seqs are its own: cross-talk would show
    predicted: list[int] = []
    cleared: list[int] = []
    for _ in range(RACE_OPS):
        seq += 1
        roll = rng.random()
        unanswered = len(predicted) - len(recorder.seqs("prediction"))
        if roll < 0.15 and unanswered < MAX_SESSION_PREDICTS:
            predicted.append(seq)
            await recorder.sio.emit("predict", {"seq": seq, "strokes": racing_drawing(seq)})
        elif roll < 0.25:
            cleared.append(seq)
            await recorder.sio.emit("clear", {"seq": seq})
        else:
            await recorder.sio.emit("snapshot", {"seq": seq, "strokes": racing_drawing(seq)})
        if rng.random() < 0.3:
            await asyncio.sleep(rng.uniform(0.0, 0.01))
    for predict_seq in predicted:  # every predict is answered
        await recorder.wait_for("prediction", predict_seq)
    for clear_seq in cleared:  # and every clear
        await recorder.wait_for("cleared", clear_seq)
    seq += 1
    await recorder.sio.emit("snapshot", {"seq": seq, "strokes": racing_drawing(seq)})
    await recorder.wait_for("probabilities", seq)  # the newest snapshot is answered
    await recorder.sio.disconnect()
    return recorder, predicted, cleared, seq


def test_racing_sessions_never_get_a_stale_answer(live_server):
    """20 sessions race snapshots, predicts and clears through the real protocol. Per
    session, in arrival order: `probabilities` only for a seq newer than every answer and
    `cleared` before it; every predict and clear answered once; each answer about its own
    seq's drawing; nothing refused."""

    async def main():
        return await asyncio.gather(*(race(live_server.url, i) for i in range(CLIENTS)))

    mode = get_json(f"{live_server.url}/healthz")["async_mode"]
    results = asyncio.run(main())
    for index, (recorder, predicted, cleared, final) in enumerate(results):
        assert not recorder.seqs("error"), [d for e, d in recorder.events if e == "error"]
        assert sorted(recorder.seqs("prediction")) == predicted, index
        assert sorted(recorder.seqs("cleared")) == cleared, index
        if mode == "eventlet":
            # Predicts are queued in the order they were sent. (Not in threading mode,
            # where python-socketio runs each event's handler in a thread of its own: two
            # events of one session can reach the batcher in either order.)
            assert recorder.seqs("prediction") == predicted, index
        floor = -1
        for event, data in recorder.events:
            if event not in ("probabilities", "prediction", "cleared"):
                continue
            seq = data["seq"]
            if event == "probabilities":
                assert seq > floor, f"racer {index}: stale probabilities {seq} after {floor}"
            if event != "cleared":
                assert data["empty"] is (racing_drawing(seq) == []), (index, event, data)
            floor = max(floor, seq)
        assert recorder.seqs("probabilities")[-1] == final
    assert_idle(live_server.url)


def test_a_refused_connection_says_why(live_server_factory):
    """connect_error carries `data` {"code", "message"} on the wire (here: server_full)."""
    server = live_server_factory(ASYNC_MODE="eventlet", MAX_SESSIONS="1")
    first = socketio.Client(reconnection=False)
    first.connect(server.url, transports=["websocket"], wait_timeout=WAIT_S)
    refused: list = []
    second = socketio.Client(reconnection=False)
    second.on("connect_error", refused.append)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            second.connect(server.url, transports=["websocket"], wait_timeout=WAIT_S)
    finally:
        first.disconnect()
    assert len(refused) == 1, refused
    assert refused[0]["data"]["code"] == "server_full"
    assert refused[0]["data"]["message"] == refused[0]["message"]
