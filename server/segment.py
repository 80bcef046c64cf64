"""Read a written number: group its strokes into digits, the way a person reads them.

A person reading "4510" does not cut the ink wherever there is white space: a 4 drawn in two
strokes, a 5 with its top bar lifted off, a 7 crossed late are one digit each, and two
digits that touch are still two. So the grouping is chosen by the recognizer itself, guided
by a few geometric priors:

1. `candidates(strokes)`: the strokes are sorted by the centre of their horizontal extent
   and cut into *blocks* wherever a clear horizontal gap (GAP_SPLIT of the line height)
   separates them; no digit spans such a gap. Inside a block, every run of up to MAX_RUN
   strokes that are adjacent in x order, or consecutive in writing order, is a candidate
   digit. x order keeps a late stroke (a 7's crossbar, a 5's top bar added after the next
   digit was begun) beside its digit; writing order keeps digits that were written on top
   of each other apart. Groups that cannot be one digit (too flat, too wide) are left out
   before any rendering; a single stroke is always a candidate, so a reading always exists.
2. `render(plan, strokes)`: each candidate through `server.preprocess.render_strokes`, the
   server's own renderer, so the model sees a candidate exactly as it sees a lone digit.
3. The caller classifies ALL candidates in one `Classifier.predict` call (the batcher merges
   every drawing of a batch into that call).
4. `best_partition(plan, outputs, reject_threshold)`: the exact cover of the strokes by
   candidates with the best total score, by dynamic programming over x order (a small
   bounded state: the next uncovered stroke and the later strokes already taken).

Bounded whatever the input: more than MAX_NUMBER_STROKES inked strokes is refused
(`too_many_strokes`), more than MAX_DIGITS blocks or digits is refused (`too_many_digits`),
and never more than MAX_CANDIDATES candidates are rendered (longer runs are dropped first).
Pure and fast: no I/O, no logging; the batcher runs it off the event loop.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from server.preprocess import SIZE, render_strokes
from server.protocol import PayloadError
from server.reading import NUM_DIGITS, Reading, read

# --- bounds (documented in `ready` limits) ------------------------------------------------
MAX_DIGITS = 20  # digits in one number
# Inked strokes in one number: 20 digits at the ~1.5 strokes a digit that writers use, with
# room to spare. More is scribbling, or a client sending points as strokes.
MAX_NUMBER_STROKES = 32
# Candidate digits rendered and classified for one drawing: the cost bound (each costs a
# render and one image of the batched model call, ~0.1-0.25 ms together on one core).
MAX_CANDIDATES = 32
MAX_STATES = 4096  # dynamic-programming states per block (never reached by real numbers)
MAX_RUN = 4  # strokes in one digit: writers use at most 3-4 (a 4, a 5, a crossed 7, a 1)

# --- geometric priors ---------------------------------------------------------------------
# Lengths are in line heights H (the tallest group of horizontally overlapping strokes: the
# size a reader takes the digits to be, whatever the scale). Scores are log-probabilities:
# a candidate's score is log(its best digit's probability) plus these (<= 0) costs. The
# figures quoted are from the dev numbers (model/evaluate_numbers.py); the weights were
# picked by model/tune_numbers.py on the writers held out from the model's training; moving
# any one weight a grid step costs at most 1.8% there.
#
# A horizontal gap wider than this between strokes is always a digit boundary: 0.3% of the
# gaps inside a digit exceed 0.2 H, ~70% of the gaps between digits do. Cutting there costs
# nearly nothing and keeps candidate counts (the work) small.
GAP_SPLIT = 0.2
# No group of strokes shorter than this is a digit (the shortest dev digits are 0.35 H): a
# 5's top bar or a 7's crossbar alone (~0.1 H) is part of a digit. Alone it stays a
# candidate at the cost NOT_ONE_DIGIT, so that every drawing has a reading.
MIN_HEIGHT = 0.3
NOT_ONE_DIGIT = 10.0
# Digits are nearly full height (95% of dev digits are over 0.57 H); half an 8 or the
# halves of a two-stroke 4 are not, though the model reads them confidently ("0", "1"):
# each H below FULL_HEIGHT costs HEIGHT_WEIGHT.
FULL_HEIGHT = 0.6
HEIGHT_WEIGHT = 2.0
# Digits are taller than wide (95% of dev digits are under 1.22 wide per unit of height);
# two digits side by side are not (90% over 1.09): each unit of width/height beyond 1 costs
# ASPECT_WEIGHT. Wider than MAX_WIDTH H, a group of strokes is never one digit (the widest
# dev digits are 1.2 H); one stroke always stays a candidate.
ASPECT_WEIGHT = 1.0
MAX_WIDTH = 1.6
# The strokes of a digit touch or overlap (97% of the gaps inside dev digits are <= 0);
# neighbouring digits mostly do not: each H of white space inside a group costs GAP_WEIGHT.
GAP_WEIGHT = 10.0
# A tie-break, not a prior: the model's float32 softmax saturates, so two digits and the
# pair merged into one are often both read with probability 1.0 (log 0) or nearly: then the
# reading with more digits wins (writers overlapping two digits is the usual cause). Tuned:
# 0.001 (+0.6% over none); 0.01 and more starts cutting multi-stroke digits in two.
DIGIT_BONUS = 0.001
_LOG_FLOOR = 1e-6  # the model's probabilities are floored here before taking logs


@dataclass(frozen=True)
class Candidate:
    """One possible digit: a set of strokes, its box and its geometric prior."""

    strokes: tuple[int, ...]  # indices into the drawing's strokes, in writing order
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in canvas pixels
    features: Features
    prior: float  # geometric log-score (<= 0) added to the model's


@dataclass(frozen=True)
class Plan:
    """Everything `best_partition` needs besides the model outputs."""

    candidates: tuple[Candidate, ...]
    # Each block: its stroke indices in x order, and per candidate (index into
    # `candidates`) the positions it covers within that x order.
    blocks: tuple[tuple[tuple[int, ...], tuple[tuple[int, frozenset[int]], ...]], ...]
    line_height: float


@dataclass(frozen=True)
class Part:
    """One digit of the number as read: which strokes, where, and what the model says."""

    strokes: tuple[int, ...]
    box: tuple[float, float, float, float]
    reading: Reading


EMPTY_PLAN = Plan((), (), 0.0)


def candidates(strokes: Sequence[ArrayLike]) -> Plan:
    """The candidate digits of a drawing (canvas px, y down); raises PayloadError when the
    drawing is beyond the number-mode bounds. Empty strokes are ignored."""
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    inked = [i for i, s in enumerate(arrays) if len(s)]
    if not inked:
        return EMPTY_PLAN
    if len(inked) > MAX_NUMBER_STROKES:
        raise PayloadError(
            "too_many_strokes",
            f"A number may have at most {MAX_NUMBER_STROKES} strokes; this one has {len(inked)}.",
        )
    boxes = _stroke_boxes([arrays[i] for i in inked])  # (n, 4): x0, y0, x1, y1
    height = _line_height(boxes)
    order = np.lexsort(((boxes[:, 0] + boxes[:, 2]) / 2,)).tolist()  # by x centre, stable
    blocks = _blocks(boxes, order, height)
    if len(blocks) > MAX_DIGITS:
        raise _too_many_digits(len(blocks))
    box_list = boxes.tolist()
    found: dict[frozenset[int], Candidate] = {}
    covers: list[list[tuple[int, frozenset[int]]]] = [[] for _ in blocks]
    # Shorter runs first, so the cap drops the longest; every stroke alone is always a
    # candidate (n <= MAX_NUMBER_STROKES <= MAX_CANDIDATES), so an exact cover always exists.
    for run in range(1, MAX_RUN + 1):
        for b, block in enumerate(blocks):
            position = {s: p for p, s in enumerate(block)}
            for members in _runs(block, run):
                key = frozenset(members)
                if key in found or (run > 1 and len(found) >= MAX_CANDIDATES):
                    continue
                box, features = _group(box_list, members, height)
                prior = geometric_prior(features)
                if prior is None:
                    continue
                strokes_of = tuple(sorted(inked[s] for s in members))
                found[key] = Candidate(strokes_of, box, features, prior)
                covers[b].append((len(found) - 1, frozenset(position[s] for s in members)))
    blocks_out = tuple(
        (tuple(inked[s] for s in block), tuple(covers[b])) for b, block in enumerate(blocks)
    )
    return Plan(tuple(found.values()), blocks_out, height)


def render(
    plan: Plan, strokes: Sequence[ArrayLike], which: Sequence[int] | None = None
) -> np.ndarray:
    """Model inputs (N, SIZE, SIZE) float32 of the candidates `which` (default: all)."""
    chosen = range(len(plan.candidates)) if which is None else which
    out = np.zeros((len(chosen), SIZE, SIZE), dtype=np.float32)
    for row, i in enumerate(chosen):
        image = render_strokes([strokes[s] for s in plan.candidates[i].strokes])
        if image is not None:
            out[row] = image
    return out


def candidate_keys(plan: Plan, strokes: Sequence[ArrayLike]) -> list[bytes]:
    """A content key per candidate: equal keys mean the same strokes, so the same model input
    and outputs. While a number is written, each live update changes only the stroke being
    drawn, so a caller that keeps outputs by key classifies only the few candidates that
    contain it (server.batcher keeps them per session)."""
    digests: dict[int, bytes] = {}
    keys = []
    for candidate in plan.candidates:
        key = hashlib.blake2b(digest_size=16)
        for s in candidate.strokes:
            if s not in digests:
                array = np.ascontiguousarray(strokes[s], dtype=np.float64)
                digests[s] = hashlib.blake2b(array.tobytes(), digest_size=16).digest()
            key.update(digests[s])
        keys.append(key.digest())
    return keys


def best_partition(
    plan: Plan, outputs: np.ndarray, reject_threshold: float | None = None
) -> list[Part]:
    """The digits, left to right: the exact cover of the strokes by candidates whose summed
    score (log of the best digit's probability + the geometric prior) is highest.

    `outputs` are the model's rows for `plan.candidates`, in order (10 or 11 columns: with
    an 11th "not a digit" column, its mass lowers every digit's probability, so ink that is
    no digit is read as one only when no other grouping is better). Raises PayloadError
    (`too_many_digits`) when the best reading has more than MAX_DIGITS digits.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if len(outputs) != len(plan.candidates):
        raise ValueError(f"{len(outputs)} outputs for {len(plan.candidates)} candidates")
    if not len(outputs):
        return []
    best_digit = outputs[:, :NUM_DIGITS].max(axis=1)
    scores = np.log(np.maximum(best_digit, _LOG_FLOOR))
    scores += [c.prior for c in plan.candidates]
    scores = scores.tolist()
    parts: list[Part] = []
    for _, covers in plan.blocks:
        for c in _exact_cover(covers, scores):
            candidate = plan.candidates[c]
            parts.append(Part(candidate.strokes, candidate.box, read(outputs[c], reject_threshold)))
    if len(parts) > MAX_DIGITS:
        raise _too_many_digits(len(parts))
    parts.sort(key=lambda p: (p.box[0] + p.box[2], p.strokes[0]))
    return parts


def read_number(strokes: Sequence[ArrayLike], classifier: object) -> list[Part]:
    """candidates → render → one predict → best_partition, for one drawing (tools, tests)."""
    plan = candidates(strokes)
    if not plan.candidates:
        return []
    outputs = classifier.predict(render(plan, strokes))  # type: ignore[attr-defined]
    return best_partition(plan, outputs, part_threshold(classifier))


def part_threshold(classifier: object) -> float | None:
    """The "not a digit" threshold for a number's parts: the classifier's own
    (server.inference), else its single-drawing one (a stand-in with only that)."""
    threshold = getattr(classifier, "reject_threshold", None)
    return getattr(classifier, "number_threshold", threshold)


def number_text(parts: Sequence[Part]) -> str:
    """The digits read, left to right ("?" for a part that is not a digit)."""
    return "".join(str(p.reading.digit) if p.reading.digit is not None else "?" for p in parts)


# --- geometry ---------------------------------------------------------------------------


def _stroke_boxes(arrays: list[np.ndarray]) -> np.ndarray:
    """(n, 4) boxes x0, y0, x1, y1, in two reduceat calls over all points."""
    points = np.concatenate(arrays)
    starts = np.cumsum([0] + [len(a) for a in arrays[:-1]])
    low = np.minimum.reduceat(points, starts, axis=0)
    high = np.maximum.reduceat(points, starts, axis=0)
    return np.concatenate((low, high), axis=1)


def _line_height(boxes: np.ndarray) -> float:
    """The tallest group of horizontally overlapping strokes: a digit's height, even when
    the number is written on a slope. Never zero (a dot-sized drawing is 1 px tall)."""
    order = np.argsort(boxes[:, 0], kind="stable").tolist()
    tallest = 0.0
    x1, y0, y1 = -math.inf, math.inf, -math.inf
    for s in order:
        bx0, by0, bx1, by1 = boxes[s].tolist()
        if bx0 > x1:  # a new group
            tallest = max(tallest, y1 - y0)
            y0, y1 = by0, by1
        else:
            y0, y1 = min(y0, by0), max(y1, by1)
        x1 = max(x1, bx1)
    return max(tallest, y1 - y0, 1.0)


def _blocks(boxes: np.ndarray, order: list[int], height: float) -> list[list[int]]:
    """Strokes in x-centre order, cut where the gap to all ink on the left exceeds
    GAP_SPLIT * height (so a wide stroke on the left keeps its overlappers with it).

    A block of nothing but bars (every stroke shorter than MIN_HEIGHT) is no digit: it is a
    lifted-off part of a neighbour (a 5's top bar, a 7's crossbar drawn wide), so it is
    joined to the blocks on both sides and the model decides which it belongs to.
    """
    blocks: list[list[int]] = []
    right = -math.inf
    for s in order:
        x0, x1 = float(boxes[s, 0]), float(boxes[s, 2])
        if x0 - right > GAP_SPLIT * height:
            blocks.append([])
        blocks[-1].append(s)
        right = max(right, x1)
    if len(blocks) == 1:
        return blocks
    short = (boxes[:, 3] - boxes[:, 1]) < MIN_HEIGHT * height
    bars = [all(short[s] for s in block) for block in blocks]
    joined = [blocks[0]]
    for k in range(1, len(blocks)):
        if bars[k] or bars[k - 1]:
            joined[-1] = joined[-1] + blocks[k]
        else:
            joined.append(blocks[k])
    return joined


def _runs(block: list[int], length: int) -> list[list[int]]:
    """Runs of `length` strokes adjacent in x order, then in writing order (strokes are
    indexed in writing order)."""
    if length > len(block):
        return []
    by_time = sorted(block)
    return [block[i : i + length] for i in range(len(block) - length + 1)] + [
        by_time[i : i + length] for i in range(len(block) - length + 1)
    ]


class Features(NamedTuple):
    """What the priors look at, lengths in line heights H."""

    strokes: int
    height: float  # the group's height / H
    width: float  # the group's width / H
    gap: float  # white space between its strokes, left to right / H


def geometric_prior(f: Features) -> float | None:
    """The geometric log-score of a group as one digit (<= 0), or None if it cannot be."""
    flat = 0.0
    if f.height < MIN_HEIGHT:  # a bar or a speck: part of a digit, not one
        if f.strokes > 1:
            return None
        flat = NOT_ONE_DIGIT  # alone, it stays a candidate at a cost: the cover must exist
    if f.strokes > 1 and f.width > MAX_WIDTH:
        return None
    aspect = f.width / max(f.height, 1e-9)
    return (
        DIGIT_BONUS
        - flat
        - GAP_WEIGHT * f.gap
        - ASPECT_WEIGHT * max(0.0, aspect - 1.0)
        - HEIGHT_WEIGHT * max(0.0, FULL_HEIGHT - f.height)
    )


def _group(
    boxes: list[list[float]], members: list[int], height: float
) -> tuple[tuple[float, float, float, float], Features]:
    """The box and features of strokes as one digit (plain Python: a few boxes each)."""
    chosen = [boxes[s] for s in members]
    x0, y0 = min(b[0] for b in chosen), min(b[1] for b in chosen)
    x1, y1 = max(b[2] for b in chosen), max(b[3] for b in chosen)
    gap = 0.0  # white space between the members, left to right
    right = math.inf
    for bx0, _, bx1, _ in sorted(chosen):
        gap += max(0.0, bx0 - right)
        right = bx1 if right == math.inf else max(right, bx1)
    features = Features(len(members), (y1 - y0) / height, (x1 - x0) / height, gap / height)
    return (x0, y0, x1, y1), features


def _exact_cover(covers: Sequence[tuple[int, frozenset[int]]], scores: list[float]) -> list[int]:
    """The best-scoring set of candidates covering positions 0..n-1 of a block exactly once.

    Dynamic programming over states (the first uncovered position, the later positions
    already covered): candidates are local runs, so few such states exist; the forward pass
    keeps the best path to each.
    """
    if not covers:
        return []
    n = 1 + max(max(c) for _, c in covers)
    starting: list[list[tuple[int, frozenset[int]]]] = [[] for _ in range(n)]
    for index, cover in covers:
        starting[min(cover)].append((index, cover))
    best: dict[tuple[int, frozenset[int]], tuple[float, tuple[int, ...]]] = {
        (0, frozenset()): (0.0, ())
    }
    # States by first uncovered position: every transition moves it right, so a state's
    # best path is final when it is popped.
    frontier: list[tuple[int, int, frozenset[int]]] = [(0, 0, frozenset())]
    tie = 0
    done: tuple[float, tuple[int, ...]] | None = None
    while frontier:
        position, _, taken = heapq.heappop(frontier)
        score, path = best[(position, taken)]
        for index, cover in starting[position]:
            if cover & taken:
                continue
            covered = taken | cover
            following = position + 1
            while following in covered:
                following += 1
            total = score + scores[index]
            if following >= n:
                if done is None or total > done[0]:
                    done = (total, (*path, index))
                continue
            key = (following, frozenset(p for p in covered if p > following))
            if key not in best:
                if len(best) >= MAX_STATES and len(cover) > 1:
                    continue  # bounded: beyond the cap only single strokes extend a path
                tie += 1
                heapq.heappush(frontier, (following, tie, key[1]))
            elif total <= best[key][0]:
                continue
            best[key] = (total, (*path, index))
    if done is None:  # cannot happen: every position has a singleton candidate
        raise RuntimeError("no exact cover of the strokes")
    return list(done[1])


def _too_many_digits(count: int) -> PayloadError:
    return PayloadError(
        "too_many_digits",
        f"A number may have at most {MAX_DIGITS} digits; this drawing has {count} or more.",
    )
