"""Tune server.segment's few prior weights on the dev numbers (python -m model.tune_numbers).

The model's outputs do not depend on the weights, so every dev number's candidates are
classified once (with the loosest candidate settings of the grid) and each setting of the
grid only re-runs the cheap part: priors and the exact-cover search. The score is
whole-number accuracy on writers the model never saw: with fold models (model/folds/, one
per institution, trained without it) each institution's numbers are read by its fold;
without them, the writers held out by model.data.unipen_split. On writers it has seen, a
model is overconfident on these very strokes, which would tune the priors too weak. The
served model's accuracy on all numbers is printed beside it as a check.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model.evaluate_numbers import FOLDS, ROOT, heldout_writers, load_numbers
from server import segment
from server.inference import Classifier
from server.reading import read

PART_THRESHOLDS = (0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 1.0)  # 1.0: parts are always digits
GRID = {  # each around server.segment's pick
    "DIGIT_BONUS": (0.0, 0.001, 0.01),
    "HEIGHT_WEIGHT": (0.0, 1.0, 2.0, 5.0),
    "GAP_WEIGHT": (2.0, 5.0, 10.0, 20.0),
    "ASPECT_WEIGHT": (0.5, 1.0, 2.0),
    "MAX_WIDTH": (1.3, 1.6, 2.0),
}


def _classified(numbers: Sequence[dict], classifier: Classifier) -> list[tuple]:
    """(plan, log-probability of the best digit, model outputs) per candidate of each
    number, at the loosest settings."""
    saved = segment.MAX_WIDTH
    segment.MAX_WIDTH = max(GRID["MAX_WIDTH"])
    try:
        out = []
        for n in numbers:
            plan = segment.candidates(n["strokes"])
            rows = classifier.predict(segment.render(plan, n["strokes"]))
            best = np.log(np.maximum(rows[:, : segment.NUM_DIGITS].max(axis=1), 1e-6))
            out.append((plan, best.tolist(), rows))
        return out
    finally:
        segment.MAX_WIDTH = saved


def _read(plan: segment.Plan, logp: list[float], rows: np.ndarray, threshold: float | None) -> str:
    """The number read at the grid's current priors, each part as the server reads it
    with `threshold` (server.reading)."""
    priors = [segment.geometric_prior(c.features) for c in plan.candidates]
    scores = [lp + (p or 0.0) for lp, p in zip(logp, priors, strict=True)]
    chosen = []
    for _, covers in plan.blocks:
        allowed = [(i, cover) for i, cover in covers if priors[i] is not None]
        chosen += segment._exact_cover(allowed, scores)
    chosen.sort(key=lambda i: plan.candidates[i].box[0] + plan.candidates[i].box[2])
    parts = [
        segment.Part(plan.candidates[i].strokes, plan.candidates[i].box, read(rows[i], threshold))
        for i in chosen
    ]
    return segment.number_text(parts)


def _unseen(numbers: Sequence[dict], served: Classifier) -> tuple[list[tuple], list[bool]]:
    """Each number classified by a model that never saw its writer, and which numbers count:
    all of them with fold models, else only the held-out writers' (read by `served`)."""
    contributors = sorted({n["contributor"] for n in numbers})
    if not all((FOLDS / f"{c}.tflite").is_file() for c in contributors):
        heldout = heldout_writers(numbers)
        return _classified(numbers, served), [n["writer"] in heldout for n in numbers]
    out: list[tuple | None] = [None] * len(numbers)
    for contributor in contributors:
        fold = Classifier.load(FOLDS / f"{contributor}.tflite")
        fold.number_threshold = served.number_threshold
        mine = [k for k, n in enumerate(numbers) if n["contributor"] == contributor]
        for k, c in zip(mine, _classified([numbers[k] for k in mine], fold), strict=True):
            out[k] = c
    return out, [True] * len(numbers)  # type: ignore[return-value]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model" / "digits.tflite")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    classifier = Classifier.load(args.model)
    numbers = load_numbers()
    served = _classified(numbers, classifier)
    unseen, counted = _unseen(numbers, classifier)
    threshold = classifier.number_threshold
    names = list(GRID)
    saved = {name: getattr(segment, name) for name in names}
    rows = []
    try:
        for values in itertools.product(*GRID.values()):
            for name, value in zip(names, values, strict=True):
                setattr(segment, name, value)
            rows.append((*_scores(numbers, served, unseen, counted, threshold), values))
    finally:
        for name, value in saved.items():
            setattr(segment, name, value)
    rows.sort(key=lambda r: -r[0])
    print("unseen  served  " + " ".join(names))
    for held, everyone, values in rows[: args.top]:
        print(f"{held:.4f} {everyone:.4f} {values}")
    current = tuple(saved[name] for name in names)
    print("the current setting and its neighbours (one weight changed):")
    for held, everyone, values in rows:
        if sum(a != b for a, b in zip(values, current, strict=True)) <= 1:
            print(
                f"{held:.4f} {everyone:.4f} {values}{'  <- current' if values == current else ''}"
            )
    print(f"at the current setting, by the parts' 'not a digit' threshold (now {threshold}):")
    for t in sorted({*PART_THRESHOLDS, classifier.reject_threshold, threshold} - {None}):
        held, everyone = _scores(numbers, served, unseen, counted, t)
        print(f"{held:.4f} {everyone:.4f} threshold {t:.4g}")


def _scores(
    numbers: Sequence[dict],
    served: list[tuple],
    unseen: list[tuple],
    counted: list[bool],
    threshold: float | None,
) -> tuple[float, float]:
    """Whole-number accuracy on unseen writers and, by the served model, on all."""
    right = [_read(*c, threshold) == n["label"] for n, c in zip(numbers, served, strict=True)]
    fresh = [
        _read(*c, threshold) == n["label"]
        for n, c, k in zip(numbers, unseen, counted, strict=True)
        if k
    ]
    return float(np.mean(fresh)), float(np.mean(right))


if __name__ == "__main__":
    main()
