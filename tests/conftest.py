"""Shared fixtures: in-process apps (Flask tutorial style) and real servers on 127.0.0.1,
started as a user would start them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from server.app import create_app, socketio

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 30.0
SLOW_EXAMPLES = 2000  # hypothesis examples per test with --slow (the default profile: 100)

settings.register_profile("slow", max_examples=SLOW_EXAMPLES)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help="also run @pytest.mark.slow tests and fuzz with many more examples (nightly)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Loaded before test modules are imported, so their @settings inherit the profile.
    if config.getoption("--slow"):
        settings.load_profile("slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="long-running: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, as an operator would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering /healthz")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer /healthz within {timeout} s")


def start_server(
    tmp_dir: Path, port: int | None = None, cwd: Path = ROOT, **env: str
) -> LiveServer:
    """Start `python -m server` on 127.0.0.1; extra keyword arguments become env vars.
    `cwd` is the tree whose server and model run (bench/ab_server.py runs an older one)."""
    port = port or free_port()
    log_path = tmp_dir / f"server-{port}-{time.monotonic_ns()}.log"
    full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), **env}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server"],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", port, proc, log_path)
    try:
        wait_healthy(server.url, proc)
    except RuntimeError as e:
        server.stop()
        raise RuntimeError(f"{e}\n--- server log ---\n{server.log()}") from e
    return server


@pytest.fixture
def live_server_factory(tmp_path: Path) -> Iterator:
    """Start any number of servers (per-test); all are stopped at the end."""
    started: list[LiveServer] = []

    def factory(**env: str) -> LiveServer:
        server = start_server(tmp_path, **env)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session", params=["eventlet", "threading"])
def live_server(request, tmp_path_factory) -> Iterator[LiveServer]:
    """One shared server per async mode; tests using it run in both modes."""
    server = start_server(tmp_path_factory.mktemp("live"), ASYNC_MODE=request.param)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def eventlet_server(tmp_path_factory) -> Iterator[LiveServer]:
    """One shared server in the production mode, for tests that need not run in both."""
    server = start_server(tmp_path_factory.mktemp("live"), ASYNC_MODE="eventlet")
    yield server
    server.stop()


# --- in-process apps (threading mode: no monkey-patching inside pytest) -------------------


@pytest.fixture
def app_factory() -> Iterator:
    """Build apps with config overrides, e.g. app_factory(MAX_STROKES=3); all closed after."""
    apps = []

    def factory(**overrides):
        app = create_app({"ASYNC_MODE": "threading", "LOG_LEVEL": "WARNING", **overrides})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["digits"].close()


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def socket_client(app):
    """A flask_socketio test client, connected; events handled synchronously in-process."""
    test_client = socketio.test_client(app)
    yield test_client
    if test_client.is_connected():
        test_client.disconnect()


class CountingClassifier:
    """A real classifier that records the batch size of every predict call: tests check
    that work is batched into ONE model call. No "not a digit" thresholds, so readings are
    plain argmax digits."""

    reject_threshold = None
    number_threshold = None

    def __init__(self, classifier) -> None:
        self.classifier = classifier
        self.calls: list[int] = []

    def predict(self, x):
        self.calls.append(len(x))
        return self.classifier.predict(x)
