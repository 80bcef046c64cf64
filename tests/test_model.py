"""The committed model: accuracy of the served .tflite (a "not a digit" answer counts as an
error), Keras/LiteRT agreement, the card's rejection threshold, a training smoke run, and a
server import graph free of tensorflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from model import data
from model.strokes import point_prefix
from server.inference import Classifier
from server.preprocess import render_strokes
from server.reading import Head, read

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "model"
# Regression floors for the committed model, not the issues' targets: the 20/40/64 model
# measures 99.49% served (a reject is an error; 20 rejected at the threshold that keeps 99% of
# held-out contributors' digits), one error short of the 99.5% target, and 99.64% argmax over
# the digits (model/card.json, README); a model below these floors is worse than the one
# shipped.
MNIST_TARGET = 0.994  # served verdicts of the final head: a reject is an error
MNIST_DIGIT_TARGET = 0.996  # argmax over the final head's ten digit columns
NOT_A_DIGIT = 10


@pytest.fixture(scope="module")
def threshold() -> float:
    return json.loads((MODEL_DIR / "card.json").read_text())["rejection"]["threshold"]


@pytest.fixture(scope="module")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    if data.mnist_dir() is None:
        pytest.skip(f"MNIST IDX files not found ($MNIST_DIR or {data.DEFAULT_MNIST_DIR})")
    _, (x, y) = data.load_mnist()
    return x.astype(np.float32) / 255.0, y


@pytest.fixture(scope="module")
def tflite_probabilities(mnist_test) -> np.ndarray:
    return Classifier.load(MODEL_DIR / "digits.tflite").predict(mnist_test[0])


def test_served_model_reaches_target_on_official_test_set(
    mnist_test, tflite_probabilities, threshold
):
    x, y = mnist_test
    p = tflite_probabilities
    assert len(y) == 10_000
    assert p.shape == (10_000, 22)  # the final head, then the live head
    # What the server answers (server.reading): "not a digit" exactly when p[10] >= threshold.
    readings = [read(row, threshold) for row in p]
    served = float(np.mean([r.digit == label for r, label in zip(readings, y, strict=True)]))
    assert served >= MNIST_TARGET
    digit_accuracy = float((p[:, :NOT_A_DIGIT].argmax(axis=1) == y).mean())
    assert digit_accuracy >= MNIST_DIGIT_TARGET


def test_card_has_a_rejection_threshold(threshold):
    assert 0 < threshold < 1


def test_the_live_head_reads_part_drawn_digits_better_than_the_final_head():
    """What the second head is for: the drawing cut after 5/8 of its points (what a live
    update sends) is read right more often by the live head, and the drawing whole by both.
    Dev writers (training data of the served model): a contract of the heads, not a figure."""
    try:
        samples = data.load_unipen()[::20]
    except FileNotFoundError:
        pytest.skip("UNIPEN data not available")
    classifier = Classifier.load(MODEL_DIR / "digits.tflite")
    labels = np.array([s["label"] for s in samples])

    def right(share: float, head) -> float:
        x = np.stack([render_strokes(point_prefix(s["strokes"], share)) for s in samples])
        digits = [head.read(row).digit for row in classifier.predict(x)]
        return float(np.mean(np.array(digits) == labels))

    final = Head(0, classifier.reject_threshold)
    assert right(5 / 8, classifier.live) > right(5 / 8, final) + 0.05
    assert min(right(1.0, classifier.live), right(1.0, final)) > 0.95


def test_keras_and_tflite_agree(mnist_test, tflite_probabilities):
    keras = pytest.importorskip("keras")
    model = keras.saving.load_model(MODEL_DIR / "digits.keras", compile=False)
    keras_probabilities = model.predict(mnist_test[0][..., None], batch_size=500, verbose=0)
    np.testing.assert_array_equal(
        keras_probabilities.argmax(axis=1), tflite_probabilities.argmax(axis=1)
    )
    np.testing.assert_allclose(keras_probabilities, tflite_probabilities, atol=1e-4)


def test_training_smoke_run_writes_a_servable_model(tmp_path):
    pytest.importorskip("tensorflow")
    if data.mnist_dir() is None:
        pytest.skip("MNIST IDX files not found: the smoke run would download MNIST")
    result = subprocess.run(
        [sys.executable, "-m", "model.train", "--epochs", "1", "--limit", "2000"]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["epochs_run"] == 1
    assert log["data_sha256"]
    probabilities = Classifier.load(tmp_path / "digits.tflite").predict(np.zeros((2, 28, 28)))
    assert probabilities.shape == (2, 22)


def test_server_import_graph_has_no_tensorflow():
    """Import every server module (and the app factory) plus model.data in a clean process."""
    code = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import server, model.data
        for module in pkgutil.iter_modules(server.__path__):
            if module.name != "__main__":
                importlib.import_module(f"server.{module.name}")
        importlib.import_module("server.app").create_app()
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print(leaked)
        assert not leaked, leaked
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
