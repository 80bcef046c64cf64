"""SIGTERM drains: queued and running predictions are answered, then the process exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import urllib.request

import pytest
import socketio

from tests.images import large_canvas_data_url

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

WAIT_S = 30.0
PREDICTS = 20


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/healthz", timeout=WAIT_S) as response:
        return json.load(response)


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_sigterm_during_predictions_answers_them_and_exits_0(live_server_factory, mode):
    # One slow item per batch, so most predictions are still queued when the signal lands.
    server = live_server_factory(ASYNC_MODE=mode, MAX_BATCH="1", MAX_SESSION_PREDICTS="100")
    # a large canvas image: decoding it makes each prediction take a while (~0.1 s)
    image = large_canvas_data_url(2048)

    async def all_received(answered) -> None:
        """Until the server holds every predict (answered or pending): none comes too late."""
        while True:
            pending = (await asyncio.to_thread(health, server.url))["pending"]
            if pending + answered() >= PREDICTS:
                return
            await asyncio.sleep(0.02)

    async def main() -> tuple[list[dict], list[str]]:
        sio = socketio.AsyncClient(reconnection=False)
        answers: list[dict] = []
        first = asyncio.Event()
        done = asyncio.Event()
        disconnected: list[str] = []

        async def on_prediction(data: dict) -> None:
            answers.append(data)
            first.set()
            if len(answers) == PREDICTS:
                done.set()

        sio.on("prediction", on_prediction)
        sio.on("disconnect", lambda *reason: disconnected.append("yes"))
        await sio.connect(server.url, transports=["websocket"], wait_timeout=WAIT_S)
        for seq in range(1, PREDICTS + 1):
            await sio.emit("predict", {"seq": seq, "image": image})
        await asyncio.wait_for(first.wait(), WAIT_S)
        await asyncio.wait_for(all_received(lambda: len(answers)), WAIT_S)
        server.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):  # the assertions below say what is missing
            await asyncio.wait_for(done.wait(), WAIT_S)
        for _ in range(int(WAIT_S / 0.05)):  # the server then closes the connection
            if disconnected:
                break
            await asyncio.sleep(0.05)
        if sio.connected:
            await sio.disconnect()
        return answers, disconnected

    answers, disconnected = asyncio.run(main())
    assert sorted(a["seq"] for a in answers) == list(range(1, PREDICTS + 1)), server.log()
    assert all(a["empty"] is False for a in answers)
    assert disconnected
    assert server.proc.wait(WAIT_S) == 0, server.log()
    log = server.log()
    assert "event=stopped" in log, log
    draining = re.search(r"event=draining signal=SIGTERM sessions=\d+ pending=(\d+)", log)
    assert draining and int(draining[1]) > 0, "the signal landed after the work was done"
    assert "Traceback" not in log


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_sigterm_with_idle_clients_exits_0(live_server_factory, mode, transport):
    server = live_server_factory(ASYNC_MODE=mode)

    async def main() -> None:
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(server.url, transports=[transport], wait_timeout=WAIT_S)
        server.proc.send_signal(signal.SIGTERM)
        for _ in range(int(WAIT_S / 0.05)):
            if not sio.connected:
                break
            await asyncio.sleep(0.05)
        connected = sio.connected
        if connected:
            await sio.disconnect()
        assert not connected, "the server did not close the session"

    asyncio.run(main())
    assert server.proc.wait(WAIT_S) == 0, server.log()
