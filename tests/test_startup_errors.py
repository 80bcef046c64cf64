"""Startup errors: one actionable line on stderr, no traceback, a non-zero exit code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.live

MODEL = ROOT / "model" / "digits.tflite"


def start(**env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(free_port()), **env}
    return subprocess.run(
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("server: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(params=["eventlet", "threading"])
def mode(request) -> str:
    return request.param


def test_missing_model(mode):
    result = start(ASYNC_MODE=mode, MODEL_PATH="/nonexistent/digits.tflite")
    assert result.returncode == 1
    line = error_line(result)
    assert "/nonexistent/digits.tflite" in line and "MODEL_PATH" in line


@pytest.mark.parametrize("content", [b"not a model", b"truncated"])
def test_corrupt_model(mode, tmp_path: Path, content: bytes):
    path = tmp_path / "digits.tflite"
    path.write_bytes(MODEL.read_bytes()[:4096] if content == b"truncated" else content)
    result = start(ASYNC_MODE=mode, MODEL_PATH=str(path))
    assert result.returncode == 1
    assert str(path) in error_line(result)


@pytest.mark.parametrize("kind", ["directory", "empty"])
def test_model_path_that_is_not_a_model_file(mode, tmp_path: Path, kind: str):
    path = tmp_path if kind == "directory" else tmp_path / "empty.tflite"
    if kind == "empty":
        path.write_bytes(b"")
    result = start(ASYNC_MODE=mode, MODEL_PATH=str(path))
    assert result.returncode == 1
    assert str(path) in error_line(result)


def test_host_that_cannot_be_listened_on():
    result = start(HOST="256.1.1.1")
    assert result.returncode == 1
    assert "256.1.1.1" in error_line(result) and "HOST" in error_line(result)


def test_port_in_use(mode):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start(ASYNC_MODE=mode, PORT=str(port))
    assert result.returncode == 1
    line = error_line(result)
    assert f"port {port}" in line and "already in use" in line


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PORT": "abc"}, "PORT must be an integer"),
        ({"PORT": "70000"}, "PORT must be from 0 to 65535"),
        ({"ASYNC_MODE": "gevent"}, "ASYNC_MODE must be one of"),
        ({"MAX_BATCH": "0"}, "MAX_BATCH must be greater than 0"),
        ({"SNAPSHOT_MAX_HZ": "fast"}, "SNAPSHOT_MAX_HZ must be a number"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
    ],
)
def test_bad_setting(env: dict, words: str):
    result = start(**env)
    assert result.returncode == 2
    assert words in error_line(result)
