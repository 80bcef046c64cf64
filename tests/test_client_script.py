"""scripts/client.py run as a user runs it: a subprocess against a real server."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from model.data import load_mnist, load_unipen, unipen_path
from scripts.pen_replay import as_strokes, digit_image_png
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.live

CLIENT = ROOT / "scripts" / "client.py"


def run_client(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLIENT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def run_json(server, *args: str) -> dict:
    done = run_client("--url", server.url, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_prediction(result: dict) -> None:
    prediction = result["prediction"]
    assert prediction["digit"] in range(10)
    assert len(prediction["probabilities"]) == 10
    assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-3)
    assert prediction["input"].startswith("data:image/png;base64,")
    assert result["updates"], "no live update was answered"


def test_image_file(eventlet_server, tmp_path):
    (_, _), (x_test, y_test) = load_mnist()
    image = tmp_path / "digit.png"
    image.write_bytes(digit_image_png(x_test[1]))
    result = run_json(eventlet_server, str(image))
    assert result["input"]["kind"] == "image"
    assert_prediction(result)


def test_mnist_index_is_recognised(eventlet_server):
    result = run_json(eventlet_server, "--mnist-index", "0")
    assert result["label"] == 7
    assert_prediction(result)
    assert result["correct"] is True


def test_protocol_stroke_file_is_replayed_as_growing_snapshots(eventlet_server, tmp_path):
    sample = max(load_unipen()[:50], key=lambda s: sum(len(x) for x in s["strokes"]))
    path = tmp_path / "strokes.json"
    path.write_text(json.dumps({"strokes": as_strokes(sample["strokes"]), "label": 3}))
    result = run_json(eventlet_server, str(path), "--rate", "20")
    assert_prediction(result)
    seqs = [u["seq"] for u in result["updates"]]
    assert len(seqs) >= 2 and seqs == sorted(set(seqs))
    assert result["prediction"]["seq"] > seqs[-1]


def test_unipen_line(eventlet_server, tmp_path):
    with gzip.open(unipen_path(), "rt") as f:
        line = next(f)
    path = tmp_path / "unipen.jsonl"
    path.write_text(line)
    result = run_json(eventlet_server, str(path))
    assert result["label"] == int(json.loads(line)["label"])
    assert_prediction(result)


def test_human_output_shows_the_prediction(eventlet_server):
    done = run_client("--url", eventlet_server.url, "--mnist-index", "0")
    assert done.returncode == 0, done.stderr
    assert "prediction: 7" in done.stdout


def test_server_down_is_one_clear_line(tmp_path):
    done = run_client("--url", f"http://127.0.0.1:{free_port()}", "--mnist-index", "0")
    assert done.returncode == 1
    assert done.stderr.startswith("error: cannot connect to http://127.0.0.1:")
    assert len(done.stderr.strip().splitlines()) == 1


def test_error_event_fails_the_run(eventlet_server, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(digit_image_png(load_mnist()[1][0][0])[:60])  # a truncated PNG
    done = run_client("--url", eventlet_server.url, str(broken))
    assert done.returncode == 1
    assert done.stderr.startswith("error: server error ")
    assert len(done.stderr.strip().splitlines()) == 1


def test_unusable_input_is_a_usage_error(tmp_path):
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    done = run_client("--url", "http://127.0.0.1:9", str(junk))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ")


def test_number_index_is_read_in_number_mode(eventlet_server):
    result = run_json(eventlet_server, "--number-index", "3")
    prediction = result["prediction"]
    assert prediction["mode"] == "number" and prediction["verdict"] in ("digit", "not_a_digit")
    assert isinstance(result["label"], str) and result["label"].isdigit()
    assert result["correct"] == (prediction["number"] == result["label"])
    assert all(len(d["probabilities"]) == 10 for d in prediction["digits"])
    assert result["updates"], "no live update was answered"


def test_number_mode_refuses_an_image_source():
    done = run_client("--mnist-index", "0", "--mode", "number")
    assert done.returncode == 2 and "number mode reads strokes" in done.stderr
