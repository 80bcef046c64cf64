"""Restart: python-socketio clients stay connected across a server stop and start on the
same port. They reconnect by themselves (Socket.IO's own reconnection, as browsers do) and
their next predict is answered. Both a graceful stop (SIGTERM) and a crash (SIGKILL), in
both async modes. Only 127.0.0.1; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
import socketio

from tests.conftest import start_server

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

WAIT_S = 30.0
CLIENTS = 5
ONE = [[[140, 40 + 4 * i] for i in range(50)]]


class Reconnecting:
    """A client with Socket.IO's default reconnection (delays 1 s, 2 s, ... up to 5 s)."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection_delay_max=2, handle_sigint=False)
        self.connects = 0
        self.disconnects = 0
        self.ready = asyncio.Event()
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("ready", self._on_ready)

    async def _on_connect(self) -> None:
        self.connects += 1

    async def _on_disconnect(self, *reason) -> None:
        self.disconnects += 1
        self.ready.clear()

    async def _on_ready(self, data: dict) -> None:
        self.ready.set()

    async def predict(self, seq: int) -> dict:
        return await self.sio.call("predict", {"seq": seq, "strokes": ONE}, timeout=WAIT_S)


async def until(condition, what: str) -> None:
    for _ in range(int(WAIT_S / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_clients_reconnect_after_restart_on_the_same_port(tmp_path, mode, how):
    server = start_server(tmp_path, ASYNC_MODE=mode)
    restarted = None

    async def main() -> list[Reconnecting]:
        nonlocal restarted
        clients = [Reconnecting() for _ in range(CLIENTS)]
        transports = [["websocket"], None]  # None: long-polling first, then upgrade
        for i, client in enumerate(clients):
            await client.sio.connect(server.url, transports=transports[i % 2], wait_timeout=WAIT_S)
        for client in clients:
            await asyncio.wait_for(client.ready.wait(), WAIT_S)
            assert (await client.predict(1))["digit"] == 1

        server.proc.send_signal(how)
        assert server.proc.wait(WAIT_S) == (0 if how == signal.SIGTERM else -signal.SIGKILL)
        await until(lambda: all(c.disconnects for c in clients), "every client saw the drop")
        await asyncio.sleep(1.5)  # a few reconnection attempts fail against the closed port
        restarted = await asyncio.to_thread(start_server, tmp_path, server.port, ASYNC_MODE=mode)
        await until(lambda: all(c.connects >= 2 for c in clients), "every client reconnected")
        for client in clients:
            await asyncio.wait_for(client.ready.wait(), WAIT_S)
            answer = await client.predict(2)
            assert answer["seq"] == 2 and answer["digit"] == 1
        for client in clients:
            await client.sio.disconnect()
        return clients

    try:
        asyncio.run(main())
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
            assert "Traceback" not in restarted.log(), restarted.log()
