"""The served model's verdict on the drawings a new user tries first.

Through what production runs: server.preprocess renders the strokes, the committed
model/digits.tflite classifies them, and server.reading applies the card's threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from server.inference import Classifier
from server.preprocess import render_strokes
from server.reading import read
from tests.conftest import ROOT

MODEL = ROOT / "model" / "digits.tflite"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    classifier = Classifier.load(MODEL)
    if classifier.reject_threshold is None:
        pytest.skip("the committed model has no 'not a digit' output")
    return classifier


def verdict_of(classifier: Classifier, strokes: list[list[list[float]]]):
    x = render_strokes([np.asarray(s, dtype=np.float64) for s in strokes])
    outputs = None if x is None else classifier.predict(x[None])[0]
    return read(outputs, classifier.reject_threshold)


def scribble(seed: int) -> list[list[float]]:
    """A random walk of 80 points: what a bored hand does."""
    steps = np.random.default_rng(seed).normal(0.0, 22.0, (80, 2))
    return (np.cumsum(steps, axis=0) + 140.0).tolist()


def test_an_empty_canvas_is_empty(classifier):
    reading = verdict_of(classifier, [])
    assert reading.verdict == "empty" and reading.digit is None


def test_a_single_dot_is_not_a_digit(classifier):
    assert verdict_of(classifier, [[[140.0, 140.0]]]).verdict == "not_a_digit"


def test_a_lone_horizontal_line_is_not_a_digit(classifier):
    assert verdict_of(classifier, [[[60.0, 140.0], [220.0, 141.0]]]).verdict == "not_a_digit"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_scribble_is_not_a_digit(classifier, seed):
    assert verdict_of(classifier, [scribble(seed)]).verdict == "not_a_digit"


def test_a_lone_vertical_line_is_a_one(classifier):
    reading = verdict_of(classifier, [[[140.0, 40.0], [141.0, 240.0]]])
    assert (reading.verdict, reading.digit) == ("digit", 1)


def test_a_plain_seven_is_a_seven(classifier):
    reading = verdict_of(classifier, [[[70.0, 60.0], [210.0, 60.0], [120.0, 240.0]]])
    assert (reading.verdict, reading.digit) == ("digit", 7)
