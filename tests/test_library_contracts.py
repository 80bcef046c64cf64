"""The library internals server/patches.py relies on still exist, one named test each.

A version bump that renames or removes one of them fails here, by name, instead of showing
up as hostile-client timeouts in the live tests.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import engineio
import pytest
import simple_websocket
import socketio

from server import patches


@pytest.mark.parametrize("package", sorted(patches.TARGETS))
def test_installed_version_is_the_one_the_patches_target(package):
    assert version(package) == patches.TARGETS[package], (
        f"{package} {version(package)} is installed; server/patches.py was written for "
        f"{patches.TARGETS[package]}: re-check its patches of {package}, then update TARGETS"
    )


def test_eventlet_websocket_apply_mask():
    from eventlet.websocket import RFC6455WebSocket

    params = list(inspect.signature(RFC6455WebSocket._apply_mask).parameters)
    assert params[:4] == ["data", "mask", "length", "offset"]


def test_socketio_packet_class_has_a_json_module():
    server = socketio.Server()
    assert hasattr(server.packet_class, "json")
    assert callable(server.packet_class.json.loads)


def test_engineio_async_drivers_and_websocket_wrapper():
    server = engineio.Server(async_mode="threading")
    assert isinstance(server._async, dict) and "websocket" in server._async
    from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI

    assert callable(SimpleWebSocketWSGI.__call__)
    init = inspect.signature(SimpleWebSocketWSGI.__init__).parameters
    assert list(init)[1:3] == ["handler", "server"]


def test_engineio_handlers_sockets_and_generate_id():
    server = engineio.Server(async_mode="threading")
    assert isinstance(server.handlers, dict)
    assert isinstance(server.sockets, dict)
    assert callable(server.generate_id)
    assert hasattr(server.reason, "SERVER_DISCONNECT")
    sio = socketio.Server(async_mode="threading")
    assert {"message", "disconnect"} <= set(sio.eio.handlers)


def test_engineio_socket_queue_and_abort_close():
    from engineio.socket import Socket

    assert "abort" in inspect.signature(Socket.close).parameters
    assert "wait" in inspect.signature(Socket.close).parameters
    assert "queue" in inspect.getsource(Socket.__init__)


def test_simple_websocket_reader_internals():
    assert callable(simple_websocket.Server._handle_events)
    base = inspect.getsource(simple_websocket.ws.Base)
    for name in ("self.input_buffer", "self.event", "self.connected", "self.sock"):
        assert name in base, name
    assert "self.mode" in inspect.getsource(simple_websocket.Server)
