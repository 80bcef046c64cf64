"""Number mode's segmentation (server/segment.py) on synthetic and UNIPEN dev numbers.

Real writers' digits come from the dev numbers with their true stroke groups
(model.evaluate_numbers.load_numbers); the served model reads them. Fast: one load of the
dev data per module, a few hundred candidates classified in all.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from model.evaluate_numbers import FOLDS, digits_of, layout, load_numbers, read_ours
from server import segment
from server.inference import Classifier
from server.protocol import PayloadError
from tests.conftest import CountingClassifier

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(ROOT / "model" / "digits.tflite")


@pytest.fixture(scope="module")
def numbers() -> list[dict]:
    return [n for n in load_numbers() if n["truth"]]


def _digits(numbers: list[dict], label: str, strokes: int) -> list[list[np.ndarray]]:
    """Real writers' `label` digits drawn in exactly `strokes` strokes."""
    found = []
    for n in numbers:
        for digit, strokes_of in zip(n["label"], digits_of(n), strict=True):
            if digit == label and len(strokes_of) == strokes:
                found.append(strokes_of)
    return found


def _read(strokes: list[np.ndarray], classifier: Classifier) -> tuple[str, list[tuple]]:
    parts = segment.read_number(strokes, classifier)
    return segment.number_text(parts), [p.strokes for p in parts]


def _one(numbers: list[dict], label: str) -> list[np.ndarray]:
    """A clean one-stroke digit of a real writer (the first that reads right alone)."""
    return _digits(numbers, label, 1)[0]


def test_empty_drawing_reads_as_no_digits(classifier: Classifier) -> None:
    assert segment.read_number([], classifier) == []
    assert segment.read_number([np.empty((0, 2))], classifier) == []
    assert segment.candidates([]) is segment.EMPTY_PLAN


def test_a_lone_digit_is_one_part_with_its_box(classifier: Classifier) -> None:
    stroke = np.array([[100.0, 40.0], [102.0, 120.0], [101.0, 210.0]])
    parts = segment.read_number([stroke], classifier)
    assert len(parts) == 1
    assert parts[0].strokes == (0,)
    assert parts[0].box == (100.0, 40.0, 102.0, 210.0)
    assert parts[0].reading.digit == 1


@pytest.mark.parametrize(
    ("label", "strokes", "least"),
    [("4", 2, 0.9), ("5", 2, 0.9), ("7", 2, 0.9)],
    ids=["two-stroke 4", "5 with a separate top bar", "crossed 7"],
)
def test_multi_stroke_digits_stay_whole(
    numbers: list[dict], classifier: Classifier, label: str, strokes: int, least: float
) -> None:
    """Each real multi-stroke digit, followed by a one-stroke 1 at a writer's spacing, is
    read as that digit and a 1, its strokes in one group."""
    one = _one(numbers, "1")
    samples = _digits(numbers, label, strokes)[:40]
    assert len(samples) >= 10
    right = 0
    for digit in samples:
        drawing = layout([digit, one], 0.3)
        text, groups = _read(drawing, classifier)
        right += text == label + "1" and tuple(range(strokes)) in groups
    assert right / len(samples) >= least


def test_a_crossbar_added_after_the_next_digit_joins_its_7(
    numbers: list[dict], classifier: Classifier
) -> None:
    """Delayed stroke: the 7's last stroke is drawn after the next digit was written."""
    one = _one(numbers, "1")
    samples = _digits(numbers, "7", 2)[:40]
    right = 0
    for digit in samples:
        stem, bar, after = layout([digit, one], 0.3)
        text, groups = _read([stem, after, bar], classifier)  # writing order: 7, 1, bar
        right += text == "71" and (0, 2) in groups
    assert right / len(samples) >= 0.9


def test_touching_digits_are_split(numbers: list[dict], classifier: Classifier) -> None:
    """Two-digit dev numbers re-spaced so that the digits' boxes touch (gap 0): the
    baseline that cuts at white space reads each as one digit; we read most whole."""
    twos = [n for n in numbers if len(n["label"]) == 2][:100]
    right = sum(_read(layout(digits_of(n), 0.0), classifier)[0] == n["label"] for n in twos)
    assert right / len(twos) >= 0.85


def test_dev_numbers_of_an_institution_the_model_never_saw(
    numbers: list[dict], classifier: Classifier
) -> None:
    """Whole-number and stroke-partition accuracy on the first 150 apb numbers, read by the
    fold model trained without apb (the served model has seen every dev writer; the full
    figures are in model/numbers_card.json)."""
    fold_path = FOLDS / "apb.tflite"
    if not fold_path.is_file():
        pytest.skip("no fold models (model/folds/)")
    fold = Classifier.load(fold_path)
    fold.reject_threshold = classifier.reject_threshold
    fold.number_threshold = classifier.number_threshold
    items = [n for n in numbers if n["contributor"] == "apb"][:150]
    readings = read_ours([n["strokes"] for n in items], fold)
    whole = np.mean([text == n["label"] for (text, _), n in zip(readings, items, strict=True)])
    partition = np.mean(
        [
            {frozenset(g) for g in groups} == {frozenset(g) for g in n["truth"]}
            for (_, groups), n in zip(readings, items, strict=True)
        ]
    )
    assert whole >= 0.88  # 92.0% over all 547 apb numbers
    assert partition >= 0.94


def test_parts_come_left_to_right_with_canvas_boxes(
    numbers: list[dict], classifier: Classifier
) -> None:
    one, seven = _one(numbers, "1"), _digits(numbers, "7", 1)[0]
    drawing = layout([seven, one], 0.4)
    parts = segment.read_number(drawing[::-1], classifier)  # the 1 written first
    assert segment.number_text(parts) == "71"
    assert [p.strokes for p in parts] == [(1,), (0,)]
    assert parts[0].box[2] < parts[1].box[0]
    assert parts[0].box == pytest.approx(
        (*drawing[0].min(axis=0).tolist(), *drawing[0].max(axis=0).tolist())
    )


def test_one_model_call_for_a_batch_of_drawings(
    numbers: list[dict], classifier: Classifier
) -> None:
    """Candidates of every drawing go through ONE predict call; segment never calls it."""
    counting = CountingClassifier(classifier)
    batch = [n["strokes"] for n in numbers[:8]]
    readings = read_ours(batch, counting)  # type: ignore[arg-type]
    assert len(counting.calls) == 1
    assert counting.calls[0] == sum(len(segment.candidates(s).candidates) for s in batch)
    assert [text for text, _ in readings] == [text for text, _ in read_ours(batch, classifier)]


def test_outputs_must_match_the_candidates() -> None:
    plan = segment.candidates([np.array([[0.0, 0.0], [0.0, 50.0]])])
    with pytest.raises(ValueError, match="outputs for"):
        segment.best_partition(plan, np.zeros((3, 10)))


def test_an_eleven_output_models_not_a_digit_is_read(classifier: Classifier) -> None:
    """With an 11th column, a group whose 'not a digit' mass passes the threshold is read as
    not a digit, and the number text shows it as '?'."""
    plan = segment.candidates([np.array([[0.0, 0.0], [0.0, 50.0]])])
    outputs = np.array([[0.05, 0.05] + [0.0] * 8 + [0.9]])
    parts = segment.best_partition(plan, outputs, reject_threshold=0.5)
    assert parts[0].reading.verdict == "not_a_digit"
    assert segment.number_text(parts) == "?"


# --- bounds -----------------------------------------------------------------------------


def _wave(x: float, points: int) -> np.ndarray:
    t = np.linspace(0, 1, points)
    return np.column_stack((x + 30 * np.sin(t * 40), 40 + 170 * t))


def _speck(x: float, y: float) -> np.ndarray:
    return np.array([[x, y], [x + 1.0, y + 1.0]])


def test_hundreds_of_tiny_strokes_are_refused_before_any_work() -> None:
    rng = np.random.default_rng(0)
    specks = [_speck(*rng.random(2) * 50) for _ in range(300)]
    start = time.perf_counter()
    with pytest.raises(PayloadError) as refused:
        segment.candidates(specks)
    assert refused.value.code == "too_many_strokes"
    assert time.perf_counter() - start < 0.01


def test_a_number_far_longer_than_max_digits_is_refused_before_rendering() -> None:
    strokes = [np.array([[100.0 * i, 0.0], [100.0 * i, 80.0]]) for i in range(30)]
    with pytest.raises(PayloadError) as refused:
        segment.candidates(strokes)
    assert refused.value.code == "too_many_digits"


def test_200_strokes_spread_wide_are_refused() -> None:
    with pytest.raises(PayloadError) as refused:
        segment.candidates([_wave(60 * i, 20) for i in range(200)])
    assert refused.value.code == "too_many_strokes"


@pytest.mark.parametrize(
    "strokes",
    [
        [_wave(100 + 3 * i, 600) for i in range(segment.MAX_NUMBER_STROKES)],
        [_speck(100 + i % 3, 100 + i % 5) for i in range(segment.MAX_NUMBER_STROKES)],
        [_wave(80 * i, 50) for i in range(segment.MAX_NUMBER_STROKES)],
    ],
    ids=["dense waves overlapping", "specks in one place", "touching strokes in a row"],
)
def test_the_worst_drawings_within_the_limits_are_bounded(
    strokes: list[np.ndarray], classifier: Classifier
) -> None:
    """At the stroke limit: at most MAX_CANDIDATES candidates (one predict of that many
    images), then either a reading of at most MAX_DIGITS digits or `too_many_digits`."""
    start = time.perf_counter()
    plan = segment.candidates(strokes)
    assert len(plan.candidates) <= segment.MAX_CANDIDATES
    outputs = classifier.predict(segment.render(plan, strokes))
    try:
        parts = segment.best_partition(plan, outputs)
    except PayloadError as e:
        assert e.code == "too_many_digits"
    else:
        assert len(parts) <= segment.MAX_DIGITS
        assert sorted(s for p in parts for s in p.strokes) == list(range(len(strokes)))
    assert time.perf_counter() - start < 0.25  # ~6-13 ms measured; generous on a busy CI


def _brute_force(covers: list[tuple[int, frozenset[int]]], scores: list[float], n: int) -> float:
    """The best exact cover's score, by trying every subset of candidates."""
    best = -np.inf
    for mask in range(1, 1 << len(covers)):
        chosen = [covers[k] for k in range(len(covers)) if mask >> k & 1]
        cells = [p for _, c in chosen for p in c]
        if sorted(cells) == list(range(n)):
            best = max(best, sum(scores[i] for i, _ in chosen))
    return best


def test_the_dynamic_programme_finds_the_best_exact_cover() -> None:
    """Against brute force, on random candidate sets of runs and scattered groups."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 7))
        sets = {frozenset((p,)) for p in range(n)}  # singletons always exist
        while len(sets) < min(12, 2**n - 1):
            size = int(rng.integers(2, min(n, 4) + 1)) if n > 1 else 1
            sets.add(frozenset(rng.choice(n, size=size, replace=False).tolist()))
        covers = list(enumerate(sorted(sets, key=sorted)))
        scores = rng.normal(size=len(covers)).tolist()
        chosen = segment._exact_cover(covers, scores)
        cells = sorted(p for i in chosen for p in covers[i][1])
        assert cells == list(range(n))
        assert sum(scores[i] for i in chosen) == pytest.approx(_brute_force(covers, scores, n))
