"""What the model's outputs say about one drawing: a digit, "not a digit", or nothing.

An 11-output model (model/train.py) has a trained "not a digit" class after the ten digits.
Its probability is compared with a threshold picked on writers held out by contributor
(model/card.json `rejection`), not with the digits' softmax confidence: letters and
scribbles get confident digit softmaxes too, which is why a trained class is needed. The ten
digit probabilities are renormalised without it, so the bars always show the closest digits.
A 10-output model never says "not a digit".

A 22-output model has two such heads side by side (model/train.py): "final" (0-10) for
Predict and numbers, and "live" (11-21), which also learned part-drawn digits, for the
snapshots sent while the pen moves. Each has its own threshold; a `Head` says where a head's
columns start in a row of outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIGIT = "digit"
NOT_A_DIGIT = "not_a_digit"
EMPTY = "empty"
NUM_DIGITS = 10


@dataclass(frozen=True)
class Reading:
    verdict: str  # DIGIT, NOT_A_DIGIT or EMPTY
    digit: int | None  # the digit read; None unless the verdict is DIGIT
    # DIGIT: the digit's probability; NOT_A_DIGIT: the probability that it is not a digit
    confidence: float | None
    digits: np.ndarray | None  # the ten digit probabilities, summing to 1; None when EMPTY


NOTHING = Reading(EMPTY, None, None, None)
HEAD_WIDTH = NUM_DIGITS + 1


@dataclass(frozen=True)
class Head:
    first: int  # its first column in a row of model outputs
    threshold: float | None  # its "not a digit" threshold; None: it never says so

    def read(self, outputs: np.ndarray | None) -> Reading:
        if outputs is None:
            return NOTHING
        return read(outputs[self.first : self.first + HEAD_WIDTH], self.threshold)


def read(outputs: np.ndarray | None, reject_threshold: float | None) -> Reading:
    """One drawing's model outputs (None: no ink) → its Reading."""
    if outputs is None:
        return NOTHING
    outputs = np.asarray(outputs, dtype=np.float64)
    digits = outputs[:NUM_DIGITS]
    rest = float(digits.sum())
    digits = digits / rest if rest > 0 else np.full(NUM_DIGITS, 1.0 / NUM_DIGITS)
    if len(outputs) > NUM_DIGITS and reject_threshold is not None:
        not_a_digit = float(outputs[NUM_DIGITS])
        if not_a_digit >= reject_threshold:
            return Reading(NOT_A_DIGIT, None, not_a_digit, digits)
    digit = int(np.argmax(digits))
    return Reading(DIGIT, digit, float(digits[digit]), digits)
