"""server.inference.Classifier on the committed model: shapes, batching, info, load errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from server.inference import DEFAULT_REJECT_THRESHOLD, MAX_CHUNK, Classifier, ModelLoadError
from server.reading import HEAD_WIDTH, Head

MODEL = Path(__file__).resolve().parent.parent / "model" / "digits.tflite"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(MODEL)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).random((2 * MAX_CHUNK + 5, 28, 28), dtype=np.float32)


@pytest.mark.parametrize("n", [0, 1, 3, MAX_CHUNK, 2 * MAX_CHUNK + 5])
@pytest.mark.parametrize("channel", [False, True])
def test_predict_returns_probabilities(classifier, images, n, channel):
    x = images[:n, ..., None] if channel else images[:n]
    p = classifier.predict(x)
    assert p.shape == (n, classifier.num_outputs) and classifier.num_outputs in (10, 11, 22)
    assert p.dtype == np.float32
    assert np.all(p >= 0)
    width = HEAD_WIDTH if classifier.num_outputs == 2 * HEAD_WIDTH else classifier.num_outputs
    heads = p.reshape(n, classifier.num_outputs // width, width)
    np.testing.assert_allclose(heads.sum(axis=2), 1.0, atol=1e-5)  # each head is a softmax


def test_batching_does_not_change_answers(classifier, images):
    """Resizing between calls and chunking big batches must give per-image results."""
    one_by_one = np.concatenate([classifier.predict(images[i : i + 1]) for i in range(12)])
    for batch in (classifier.predict(images[:12]), classifier.predict(images)[:12]):
        np.testing.assert_allclose(batch, one_by_one, atol=1e-5)
    np.testing.assert_allclose(classifier.predict(images[:1]), one_by_one[:1], atol=1e-5)


def test_accepts_other_dtypes_and_threads(images):
    classifier = Classifier.load(MODEL, num_threads=2)
    as_float64 = classifier.predict(images[:4].astype(np.float64))
    np.testing.assert_allclose(as_float64, classifier.predict(images[:4]), atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 28, 27), (28, 28), (2, 28, 28, 3), (2, 784)])
def test_rejects_wrong_shapes(classifier, shape):
    with pytest.raises(ValueError, match="expected"):
        classifier.predict(np.zeros(shape, np.float32))


def test_info_names_the_exact_model(classifier):
    card = json.loads((MODEL.parent / "card.json").read_text())
    assert classifier.info == {
        "name": card["name"],
        "version": hashlib.sha256(MODEL.read_bytes()).hexdigest()[:12],
        "test_accuracy": card["mnist_test"]["accuracy"],
        "not_a_digit_threshold": card["rejection"]["threshold"],
        "live_not_a_digit_threshold": card["rejection"]["live_threshold"],
        "number_not_a_digit_threshold": card["rejection"]["number_threshold"],
    }
    assert classifier.reject_threshold == card["rejection"]["threshold"]
    assert classifier.number_threshold == card["rejection"]["number_threshold"]
    assert classifier.live == Head(HEAD_WIDTH, card["rejection"]["live_threshold"])


def test_info_without_a_card(tmp_path):
    lone = tmp_path / "other.tflite"
    shutil.copy(MODEL, lone)
    assert Classifier.load(lone).info["name"] == "other"
    assert Classifier.load(lone).info["test_accuracy"] is None
    without = Classifier.load(lone)  # a number's parts fall back to the one threshold
    assert without.number_threshold == without.reject_threshold == DEFAULT_REJECT_THRESHOLD


@pytest.mark.parametrize(
    "make",
    [
        lambda d: d / "missing.tflite",
        lambda d: d,
        lambda d: _write(d / "garbage.tflite", b"not a model at all" * 100),
        lambda d: _write(d / "empty.tflite", b""),
        lambda d: _write(d / "truncated.tflite", MODEL.read_bytes()[:4096]),
    ],
    ids=["missing", "directory", "garbage", "empty", "truncated"],
)
def test_bad_model_file_is_a_one_line_error(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(ModelLoadError) as info:
        Classifier.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path
