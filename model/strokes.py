"""Stroke-space training data: writing styles MNIST lacks, live prefixes, "not a digit".

Everything here works on pen trajectories (lists of (n, 2) float arrays in canvas pixels,
y down, in pen order, as data.record_to_strokes gives them), so the server's own renderer
turns them into model inputs exactly as it turns a browser drawing (train = serve).
Randomness comes only from the numpy Generator passed in: a seed reproduces the data.

Styles. MNIST's American writers never slash a zero, lead a 1 in with a long upstroke or
cross a 7, and the UNIPEN dev writers do so rarely. The style functions add those features
to real dev strokes; the per-stroke jitter and smooth warp of `distort` open and close 4s
and 9 loops and bend or straighten tails.

Prefixes. The page answers while the digit is drawn, so the model also learns the drawing
cut part way along its ink, labelled with the digit being drawn. A prefix that is still a
straight line is skipped: it could become a 1, a 4, a 7 or a lone dash.

Lookalike policy for "not a digit". A letter or symbol that people read as a digit must not
be taught as "not a digit" (the user may well have meant the digit), nor as that digit (it
is not one either): it is left out of training and out of the false-accept measurement. The
list is by how the shape reads, not by what any model confuses: O o D Q read as 0; l I i
| ! ' ` , / \\ ( ) [ ] { } are single vertical-ish marks that scale up to a 1; Z z read as
2; S s as 5; b G as 6; B as 8; g q as 9; y as 4; T L as 7 (L is a 7 turned round, T a 7
with a long bar). Everything else (A, C, E, J, u, h, -, _, ., =, ~, ...) is taught as
"not a digit"; in particular a lone horizontal line and a dot are not digits, while a lone
vertical line is a 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Strokes = list[np.ndarray]

NOT_A_DIGIT = 10
LOOKALIKES: dict[str, int] = {
    **dict.fromkeys("OoDQ", 0),
    **dict.fromkeys("lIi|!'`,/\\()[]{}", 1),
    **dict.fromkeys("Zz", 2),
    **dict.fromkeys("Ss", 5),
    **dict.fromkeys("bG", 6),
    "B": 8,
    **dict.fromkeys("gq", 9),
    "y": 4,
    **dict.fromkeys("TL", 7),
}

CANVAS_CENTRE = 140.0
CANVAS_HALF = 84.0  # generated shapes span +-1 unit = 60% of the 280 px canvas, like digits
STRAIGHT_RATIO = 0.12  # minor/major spread below this: a straight line
PIECE_STRAIGHT_RATIO = 0.3  # letter pieces must be clearly curved or bent: not a 1
PIECE_CLOSED = 0.3  # ends closer than this share of the size: a loop, maybe a 0
PREFIX_RANGE = (0.35, 0.95)  # share of the points kept in a training prefix (the live head)
# Writer-to-writer variation, in pen space.
MAX_ROTATION_DEG = 12.0
MAX_SHEAR = 0.3  # slant
MAX_LOG_ASPECT = 0.15  # narrow / wide handwriting
STROKE_JITTER = 0.04  # per-stroke shift, share of the drawing's size: opens/closes 4s
STROKE_MAX_TURN_DEG = 6.0
WARP_AMPLITUDE = 0.035  # smooth displacement, share of size: bends and straightens tails


def label_char(label: str) -> str:
    """The nondigits file escapes quote and backslash (`\\"`, `\\\\`); undo that."""
    return label[1:] if len(label) == 2 and label[0] == "\\" else label


def is_lookalike(label: str) -> bool:
    return label_char(label) in LOOKALIKES


def _points(strokes: Strokes) -> np.ndarray:
    return np.concatenate(strokes)


def _extent(strokes: Strokes) -> tuple[np.ndarray, np.ndarray, float]:
    points = _points(strokes)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return lo, hi, max(float((hi - lo).max()), 1e-6)


def is_straight(strokes: Strokes, ratio: float = STRAIGHT_RATIO) -> bool:
    """True if all ink lies close to one line (or is one point)."""
    points = _points(strokes)
    if len(points) < 2:
        return True
    spread = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    return spread[0] <= 1e-9 or spread[1] / spread[0] < ratio


def pen_transform(rng: np.random.Generator) -> np.ndarray:
    """A 2x2 slant/rotation/aspect change, as differs between writers."""
    angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shear = np.array([[1.0, rng.uniform(-MAX_SHEAR, MAX_SHEAR)], [0.0, 1.0]])
    aspect = np.diag([np.exp(rng.uniform(-MAX_LOG_ASPECT, MAX_LOG_ASPECT)), 1.0])
    return rotation @ shear @ aspect


def distort(strokes: Strokes, rng: np.random.Generator) -> Strokes:
    """Writer variation: global slant/rotation/aspect, per-stroke jitter, smooth warp.

    Moving strokes against each other opens a closed 4 or closes an open one and detaches
    or crosses a 5's bar; the low-frequency warp curves a straight 9 tail or straightens
    a curved one, without tearing the trajectory.
    """
    lo, hi, size = _extent(strokes)
    centre = (lo + hi) / 2
    matrix = pen_transform(rng)
    phase = rng.uniform(0, 2 * np.pi, 2)
    frequency = rng.uniform(0.5, 1.5, 2) * np.pi / size
    out = []
    for stroke in strokes:
        xy = (stroke - centre) @ matrix.T
        if len(strokes) > 1:
            turn = np.deg2rad(rng.uniform(-STROKE_MAX_TURN_DEG, STROKE_MAX_TURN_DEG))
            c, s = np.cos(turn), np.sin(turn)
            mid = xy.mean(axis=0)
            xy = (xy - mid) @ np.array([[c, s], [-s, c]]) + mid
            xy = xy + rng.normal(0, STROKE_JITTER * size, 2)
        warp = (
            WARP_AMPLITUDE
            * size
            * np.stack(
                [
                    np.sin(frequency[0] * xy[:, 1] + phase[0]),
                    np.sin(frequency[1] * xy[:, 0] + phase[1]),
                ],
                axis=1,
            )
        )
        out.append(xy + warp + centre)
    return out


def prefix(strokes: Strokes, share: float) -> Strokes:
    """The drawing cut after `share` of its ink length, in pen order."""
    lengths = [np.hypot(*np.diff(s, axis=0).T).sum() if len(s) > 1 else 0.0 for s in strokes]
    budget = share * sum(lengths)
    out = []
    for stroke, length in zip(strokes, lengths, strict=True):
        if budget >= length:
            out.append(stroke)
            budget -= length
            continue
        steps = np.hypot(*np.diff(stroke, axis=0).T)
        arc = np.concatenate([[0.0], np.cumsum(steps)])
        n = int(np.searchsorted(arc, budget, side="right"))
        if n > 0:
            out.append(stroke[:n])
        break
    return out


def point_prefix(strokes: Strokes, share: float) -> Strokes:
    """The drawing cut after `share` of its points, in pen order (what a live page sends)."""
    budget = max(1, round(share * sum(len(s) for s in strokes)))
    out = []
    for stroke in strokes:
        if budget <= 0:
            break
        out.append(stroke[:budget])
        budget -= len(stroke)
    return out


def training_prefix(strokes: Strokes, rng: np.random.Generator) -> Strokes | None:
    """A random PREFIX_RANGE prefix by points, as the page's live updates cut a drawing (a
    pen samples in time), or None while it is still a straight line (ambiguous)."""
    cut = point_prefix(strokes, rng.uniform(*PREFIX_RANGE))
    return None if not cut or is_straight(cut) else cut


def _line(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    t = np.linspace(0, 1, 12)[:, None]
    return a + t * (b - a) + rng.normal(0, noise, (12, 2))


# --- writing styles applied to real digits -------------------------------------------


def slashed_zero(strokes: Strokes, rng: np.random.Generator) -> Strokes:
    """A 0 with a diagonal stroke through it, corner to corner (either diagonal)."""
    lo, hi, size = _extent(strokes)
    over = rng.uniform(-0.05, 0.12, 2) * size
    if rng.random() < 0.7:  # top right to bottom left, the usual direction
        a, b = (
            np.array([hi[0] + over[0], lo[1] - over[1]]),
            np.array([lo[0] - over[0], hi[1] + over[1]]),
        )
    else:
        a, b = lo - over, hi + over
    return [*strokes, _line(a, b, rng, 0.005 * size)]


def hooked_zero(strokes: Strokes, rng: np.random.Generator) -> Strokes:
    """A 0 whose pen runs on past the start into a small closing hook."""
    lo, hi, size = _extent(strokes)
    last = strokes[-1]
    if len(last) < 6:
        return strokes
    direction = last[-1] - last[-5]
    direction = direction / max(np.hypot(*direction), 1e-9)
    inward = (lo + hi) / 2 - last[-1]
    inward = inward / max(np.hypot(*inward), 1e-9)
    t = np.linspace(0, 1, 8)[:, None]
    run = rng.uniform(0.08, 0.18) * size
    curl = rng.uniform(0.05, 0.15) * size
    hook = last[-1] + t * run * direction + t**2 * curl * inward
    return [*strokes[:-1], np.concatenate([last, hook[1:]])]


def _top_bottom(strokes: Strokes) -> tuple[np.ndarray, np.ndarray, float]:
    points = _points(strokes)
    top, bottom = points[points[:, 1].argmin()], points[points[:, 1].argmax()]
    return top, bottom, max(float(bottom[1] - top[1]), 1e-6)


def continental_one(strokes: Strokes, rng: np.random.Generator) -> Strokes:
    """A 1 led in by a long diagonal upstroke to the top, then down the stem."""
    top, _, height = _top_bottom(strokes)
    start = top + np.array([-rng.uniform(0.2, 0.45), rng.uniform(0.25, 0.55)]) * height
    return [_line(start, top, rng, 0.004 * height), *strokes]


def serif_one(strokes: Strokes, rng: np.random.Generator) -> Strokes:
    """A 1 standing on a horizontal base serif."""
    _, bottom, height = _top_bottom(strokes)
    half = rng.uniform(0.15, 0.35) * height
    tilt = rng.uniform(-0.04, 0.04) * height
    a, b = bottom + np.array([-half, tilt]), bottom + np.array([half, -tilt])
    return [*strokes, _line(a, b, rng, 0.004 * height)]


def crossed_seven(strokes: Strokes, rng: np.random.Generator) -> Strokes:
    """A 7 with a short bar through the middle of its stem."""
    top, _, height = _top_bottom(strokes)
    points = _points(strokes)
    y = top[1] + rng.uniform(0.45, 0.65) * height
    near = points[np.abs(points[:, 1] - y) < 0.08 * height]
    if not len(near):
        return strokes
    x = float(near[:, 0].mean())
    half = rng.uniform(0.15, 0.3) * height
    tilt = rng.uniform(-0.05, 0.05) * height
    bar = _line(np.array([x - half, y + tilt]), np.array([x + half, y - tilt]), rng, 0.004 * height)
    return [*strokes, bar]


def open_loop_nine(strokes: Strokes, rng: np.random.Generator) -> Strokes:
    """A 9 whose loop is left open: the start of the first stroke is missing."""
    first = strokes[0]
    if len(first) < 12:
        return strokes
    return [first[int(len(first) * rng.uniform(0.08, 0.22)) :], *strokes[1:]]


STYLES: dict[int, tuple[Callable[[Strokes, np.random.Generator], Strokes], ...]] = {
    0: (slashed_zero, hooked_zero),
    1: (continental_one, serif_one),
    7: (crossed_seven,),
    9: (open_loop_nine,),
}


# --- generated negatives -------------------------------------------------------------


def _circle(rng: np.random.Generator, radius: float = 1.0, centre=(0.0, 0.0), arc=2 * np.pi):
    start = rng.uniform(0, 2 * np.pi)
    theta = start + np.linspace(0, arc, 40)
    wobble = 1 + rng.normal(0, 0.02, 40)
    return np.stack([np.cos(theta), np.sin(theta)], axis=1) * radius * wobble[:, None] + centre


def scribble(rng: np.random.Generator) -> Strokes:
    """A tangle: a random walk whose heading drifts."""
    n = int(rng.integers(25, 80))
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.9, n))
    steps = rng.uniform(0.05, 0.25, n)[:, None] * np.stack([np.cos(heading), np.sin(heading)], 1)
    return [np.cumsum(steps, axis=0)]


def spiral(rng: np.random.Generator) -> Strokes:
    turns = rng.uniform(1.5, 4.0)
    theta = np.linspace(0, 2 * np.pi * turns, 150) * rng.choice([-1, 1])
    radius = np.linspace(rng.uniform(0.0, 0.2), 1.0, 150)
    points = np.stack([np.cos(theta), np.sin(theta)], axis=1) * radius[:, None]
    return [points[::-1] if rng.random() < 0.5 else points]


def zigzag(rng: np.random.Generator) -> Strokes:
    """Four or more teeth: three could be a Z or an N."""
    teeth = int(rng.integers(4, 10))
    x = np.linspace(-1, 1, teeth + 1)
    y = np.where(np.arange(teeth + 1) % 2, 1, -1) * rng.uniform(0.15, 0.8)
    return [_rotate(np.stack([x, y + rng.normal(0, 0.05, teeth + 1)], 1), rng)]


def smiley(rng: np.random.Generator) -> Strokes:
    face = _circle(rng)
    eyes = [np.array([[x, -0.35]]) + rng.normal(0, 0.04, 2) for x in (-0.35, 0.35)]
    if rng.random() < 0.5:  # eyes as small circles rather than dots
        eyes = [_circle(rng, 0.08, e[0]) for e in eyes]
    theta = np.linspace(np.pi * 0.2, np.pi * 0.8, 20)
    mouth = np.stack([np.cos(theta), np.sin(theta)], 1) * 0.5 + [0, 0.05]
    parts = [face, *eyes, mouth[:: rng.choice([-1, 1])]]
    return parts if rng.random() < 0.7 else parts[1:] + parts[:1]


def sun(rng: np.random.Generator) -> Strokes:
    """A circle with rays: a circle with features outside, not a 0."""
    rays = int(rng.integers(5, 11))
    angles = rng.uniform(0, 2 * np.pi) + np.arange(rays) * 2 * np.pi / rays
    unit = np.stack([np.cos(angles), np.sin(angles)], 1)
    return [_circle(rng, 0.55)] + [np.stack([u * 0.7, u * 1.0]) for u in unit]


def star(rng: np.random.Generator) -> Strokes:
    if rng.random() < 0.5:  # five-pointed, one stroke
        angles = -np.pi / 2 + np.arange(6) * 4 * np.pi / 5 + rng.normal(0, 0.05, 6)
        return [np.stack([np.cos(angles), np.sin(angles)], 1)]
    lines = int(rng.integers(3, 5))  # asterisk
    angles = rng.uniform(0, np.pi) + np.arange(lines) * np.pi / lines
    return [np.stack([[np.cos(a), np.sin(a)], [-np.cos(a), -np.sin(a)]]) for a in angles]


def polygon(rng: np.random.Generator) -> Strokes:
    """A box or a triangle, closed, in one stroke."""
    if rng.random() < 0.5:
        w, h = np.exp(rng.uniform(-0.7, 0.7, 2))
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    else:
        corners = rng.uniform(-1, 1, (3, 2))
        if abs(np.cross(corners[1] - corners[0], corners[2] - corners[0])) < 0.5:
            corners = np.array([[0.0, -1.0], [1.0, 0.8], [-1.0, 0.8]])
    corners = np.roll(corners + rng.normal(0, 0.04, corners.shape), int(rng.integers(3)), 0)
    return [np.concatenate([corners, corners[:1]])]


def dot(rng: np.random.Generator) -> Strokes:
    """One tap, or a few points a pixel apart."""
    if rng.random() < 0.5:
        return [np.zeros((1, 2))]
    return [rng.normal(0, 0.01, (int(rng.integers(2, 6)), 2))]


def horizontal_line(rng: np.random.Generator) -> Strokes:
    """A lone dash of any length; within 12 degrees of horizontal."""
    angle = np.deg2rad(rng.uniform(-12, 12))
    length = rng.uniform(0.2, 1.0)
    t = np.linspace(-length, length, int(rng.integers(2, 25)))
    line = np.stack([t * np.cos(angle), t * np.sin(angle)], 1)
    return [line + rng.normal(0, 0.004, line.shape)]


def hatching(rng: np.random.Generator) -> Strokes:
    lines = int(rng.integers(3, 8))
    angle = rng.uniform(0, np.pi)
    along = np.array([np.cos(angle), np.sin(angle)])
    across = np.array([-along[1], along[0]])
    offsets = np.linspace(-0.8, 0.8, lines)
    return [np.stack([o * across - along, o * across + along]) for o in offsets]


def _rotate(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, 2 * np.pi)
    return points @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


def letter_piece(strokes: Strokes, rng: np.random.Generator) -> Strokes | None:
    """A stretch of 40-75% of a (non-lookalike) letter's ink.

    None when the piece could be a digit: nearly straight (a 1) or closed on itself (a 0).
    """
    share = rng.uniform(0.4, 0.75)
    start = rng.uniform(0, 1 - share)
    head = prefix(strokes, start + share)
    skip = prefix(strokes, start)
    cut = [s[len(skip[i]) :] if i < len(skip) else s for i, s in enumerate(head)]
    cut = [s for s in cut if len(s)]
    if not cut or is_straight(cut, PIECE_STRAIGHT_RATIO):
        return None
    _, _, size = _extent(cut)
    return None if np.hypot(*(cut[-1][-1] - cut[0][0])) < PIECE_CLOSED * size else cut


SHAPES: tuple[Callable[[np.random.Generator], Strokes], ...] = (
    scribble,
    spiral,
    zigzag,
    smiley,
    sun,
    star,
    polygon,
    dot,
    horizontal_line,
    hatching,
)


def generated_negatives(
    n: int, rng: np.random.Generator, letters: list[Strokes] = ()
) -> list[tuple[str, Strokes]]:
    """n (kind, strokes) shapes that are not digits, cycling through the kinds.

    Given letter strokes, pieces cut from them are one more kind. Shapes are made in
    unit coordinates, lightly distorted, and placed on the canvas like a digit.
    """
    kinds = [(f.__name__, f) for f in SHAPES]
    if len(letters):
        kinds.append(("letter_piece", None))
    out = []
    while len(out) < n:
        name, make = kinds[len(out) % len(kinds)]
        if make is None:
            strokes = letter_piece(letters[int(rng.integers(len(letters)))], rng)
            if strokes is None:
                continue
            out.append((name, distort(strokes, rng)))
            continue
        strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in make(rng)]
        points = _points(strokes)
        lo, hi = points.min(axis=0), points.max(axis=0)
        extent = float((hi - lo).max())
        scale = CANVAS_HALF * 2 / extent if extent > 0.1 else CANVAS_HALF  # a dot stays small
        placed = [(s - (lo + hi) / 2) * scale + CANVAS_CENTRE for s in strokes]
        out.append((name, distort(placed, rng) if len(points) > 1 else placed))
    return out
