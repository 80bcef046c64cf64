"""How well the served model reads written numbers (python -m model.evaluate_numbers).

Data: the UNIPEN dev numbers (unipen_dev_numbers.jsonl.gz), as their writers wrote them.
Each number is put on a canvas the way a person writes it on a wide pad: tablet y flipped,
scaled so the number is NUMBER_HEIGHT px tall. Both readers run on the same canvas strokes
with the served model (model/digits.tflite through server.inference.Classifier):

- ours: server.segment (candidates → render → one predict → best partition);
- baseline: strokes split wherever their horizontal extents do not overlap, each group read
  alone (what the issue measured at 90.0% on other institutions' writers).

The true grouping of strokes into digits is rebuilt from the isolated digits
(unipen_dev.jsonl.gz): each isolated digit is cut from the same file and keeps its strokes
point for point, so every stroke of a number is matched to the digit record of the same
file holding an identical stroke (all 1,053 numbers match completely, and the digits' labels
in writing order spell the number). Stroke-partition accuracy is then exact: a number is
partitioned right when the groups read are exactly the true digits' stroke sets.

Writers: the served model was trained on the training writers' isolated digits
(model.data.unipen_split), i.e. on these very strokes; figures are given for all writers
and for the held-out writers alone, which behave like the unseen writers of acceptance.

Synthetic cases are built from the dev numbers' true digits: re-spaced so that digits touch
or overlap, a multi-stroke digit's last stroke written after the next digit (delayed), and
numbers concatenated to 10-12 digits. Writes model/numbers_card.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.data import unipen_path, unipen_split
from server import segment
from server.inference import Classifier
from server.preprocess import render_strokes
from server.protocol import PayloadError
from server.reading import read

ROOT = Path(__file__).resolve().parent.parent
NUMBERS_NAME = "unipen_dev_numbers.jsonl.gz"
NUMBER_HEIGHT = 170.0  # canvas px: a number written across a wide pad
MARGIN = 40.0
SEED = 20261205
CARD = ROOT / "model" / "numbers_card.json"
FOLDS = ROOT / "model" / "folds"  # <contributor>.tflite: trained without that contributor
LOCO = "dev numbers, each institution read by a fold model trained without it"


# --- data -------------------------------------------------------------------------------


def load_numbers(digits_path: str | Path | None = None) -> list[dict]:
    """Dev numbers with canvas strokes and their true digit groups (stroke indices)."""
    digits_file = Path(unipen_path(digits_path))
    owner: dict[tuple[str, str], int] = {}
    labels: dict[int, str] = {}
    with gzip.open(digits_file, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            record = json.loads(line)
            labels[n] = record["label"]
            for stroke in record["strokes"]:
                owner[(record["file"], json.dumps(stroke))] = n
    numbers = []
    with gzip.open(digits_file.with_name(NUMBERS_NAME), "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            owners = [owner.get((record["file"], json.dumps(s))) for s in record["strokes"]]
            groups: dict[int, list[int]] = {}
            for i, o in enumerate(owners):
                groups.setdefault(-1 - i if o is None else o, []).append(i)
            truth = list(groups.values())  # in writing order of each digit's first stroke
            complete = None not in owners and "".join(labels[o] for o in groups if o >= 0) == str(
                record["label"]
            )
            numbers.append(
                {
                    "label": str(record["label"]),
                    "writer": f"{record['contributor']}/{record['writer']}",
                    "contributor": record["contributor"],
                    "strokes": to_canvas(record["strokes"]),
                    "truth": truth if complete else None,
                }
            )
    return numbers


def to_canvas(strokes: Sequence[Sequence[Sequence[float]]]) -> list[np.ndarray]:
    """Tablet strokes (y up) → canvas strokes (y down), NUMBER_HEIGHT px tall."""
    arrays = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes]
    points = np.concatenate([a for a in arrays if len(a)])
    low, high = points.min(axis=0), points.max(axis=0)
    scale = NUMBER_HEIGHT / max(float(high[1] - low[1]), 1e-9)
    return [
        np.column_stack(((a[:, 0] - low[0]) * scale, (high[1] - a[:, 1]) * scale)) + MARGIN
        for a in arrays
    ]


def heldout_writers(numbers: Sequence[dict]) -> set[str]:
    """Writers the served model never saw (model.data.unipen_split over the digit writers)."""
    _, heldout = unipen_split([{"writer": n["writer"]} for n in numbers])
    return {s["writer"] for s in heldout}


# --- readers ----------------------------------------------------------------------------

Reading = tuple[str, list[tuple[int, ...]]]  # (digits read, stroke groups)


def read_ours(batch: Sequence[Sequence[np.ndarray]], classifier: Classifier) -> list[Reading]:
    """server.segment, with the candidates of the whole batch in one predict call."""
    plans, images, errors = [], [], {}
    for i, strokes in enumerate(batch):
        try:
            plan = segment.candidates(strokes)
        except PayloadError as e:
            errors[i] = e.code
            plan = segment.EMPTY_PLAN
        plans.append(plan)
        images.append(segment.render(plan, strokes))
    outputs = classifier.predict(np.concatenate(images)) if sum(map(len, images)) else None
    readings, start = [], 0
    for i, plan in enumerate(plans):
        rows = outputs[start : start + len(plan.candidates)] if outputs is not None else []
        start += len(plan.candidates)
        if i in errors:
            readings.append((f"<{errors[i]}>", []))
            continue
        parts = segment.best_partition(plan, rows, classifier.number_threshold)
        readings.append((segment.number_text(parts), [p.strokes for p in parts]))
    return readings


def baseline_groups(strokes: Sequence[np.ndarray]) -> list[tuple[int, ...]]:
    """Split wherever horizontal extents do not overlap (left to right)."""
    spans = sorted((float(s[:, 0].min()), float(s[:, 0].max()), i) for i, s in enumerate(strokes))
    groups: list[list[int]] = []
    right = -np.inf
    for x0, x1, i in spans:
        if x0 > right:
            groups.append([])
        groups[-1].append(i)
        right = max(right, x1)
    return [tuple(sorted(g)) for g in groups]


def read_baseline(batch: Sequence[Sequence[np.ndarray]], classifier: Classifier) -> list[Reading]:
    groups = [baseline_groups(strokes) for strokes in batch]
    images = [
        render_strokes([s[i] for i in g]) for s, gs in zip(batch, groups, strict=True) for g in gs
    ]
    outputs = classifier.predict(np.stack(images))
    readings, start = [], 0
    for gs in groups:
        rows = outputs[start : start + len(gs)]
        start += len(gs)
        text = ""
        for row in rows:
            r = read(row, classifier.reject_threshold)
            text += str(r.digit) if r.digit is not None else "?"
        readings.append((text, list(gs)))
    return readings


# --- synthetic cases --------------------------------------------------------------------


def digits_of(number: dict) -> list[list[np.ndarray]]:
    """The true digits' strokes, left to right (in writing order)."""
    return [[number["strokes"][i] for i in group] for group in number["truth"]]


def layout(digits: Sequence[Sequence[np.ndarray]], gap: float) -> list[np.ndarray]:
    """Digits side by side, `gap` * NUMBER_HEIGHT between boxes (negative: overlap), each
    keeping its own vertical place."""
    out, right = [], MARGIN
    for strokes in digits:
        x0 = min(float(s[:, 0].min()) for s in strokes)
        x1 = max(float(s[:, 0].max()) for s in strokes)
        shift = right - x0 if not out else right + gap * NUMBER_HEIGHT - x0
        out += [s + [shift, 0.0] for s in strokes]
        right = shift + x1
    return out


def synthetic_cases(numbers: Sequence[dict], rng: random.Random) -> dict[str, list[dict]]:
    """Named sets of {label, strokes, truth} built from the dev numbers' true digits."""
    usable = [n for n in numbers if n["truth"]]
    cases: dict[str, list[dict]] = defaultdict(list)
    for n in usable:
        digits = digits_of(n)
        sizes = [len(d) for d in digits]
        truth = _consecutive_groups(sizes)
        for name, gap in (("touching (gap 0)", 0.0), ("overlapping (gap -0.1 H)", -0.1)):
            cases[name].append(
                {"label": n["label"], "strokes": layout(digits, gap), "truth": truth}
            )
        # Delayed stroke: the last stroke of the first multi-stroke digit is written after
        # the next digit (a 7's crossbar or a 5's top bar added late).
        multi = [k for k, d in enumerate(digits[:-1]) if len(d) > 1]
        if multi:
            k = multi[0]
            strokes = n["strokes"]
            order = [i for g in n["truth"] for i in g]
            late = n["truth"][k][-1]
            after = n["truth"][k + 1][-1]
            order.remove(late)
            order.insert(order.index(after) + 1, late)
            position = {old: new for new, old in enumerate(order)}
            cases["delayed stroke"].append(
                {
                    "label": n["label"],
                    "strokes": [strokes[i] for i in order],
                    "truth": [sorted(position[i] for i in g) for g in n["truth"]],
                }
            )
    # Long numbers: dev numbers concatenated (each at its own natural spacing) to 10-12.
    for _ in range(200):
        digits, label = [], ""
        while len(label) < 10:
            n = rng.choice(usable)
            if len(label) + len(n["label"]) <= 12:
                digits += digits_of(n)
                label += n["label"]
        gap = rng.uniform(0.15, 0.45)  # a writer's own spacing between the parts
        cases["long (10-12 digits)"].append(
            {
                "label": label,
                "strokes": layout(digits, gap),
                "truth": _consecutive_groups([len(d) for d in digits]),
            }
        )
    return dict(cases)


def _consecutive_groups(sizes: Iterable[int]) -> list[list[int]]:
    groups, start = [], 0
    for size in sizes:
        groups.append(list(range(start, start + size)))
        start += size
    return groups


# --- scoring ----------------------------------------------------------------------------


def score(items: Sequence[dict], readings: Sequence[Reading]) -> dict[str, Any]:
    """Whole-number, digit-count and partition accuracy; multi-stroke digits split."""
    whole = count = partition = multi = multi_split = 0
    by_length: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for item, (text, groups) in zip(items, readings, strict=True):
        ok = text == item["label"]
        whole += ok
        count += len(text) == len(item["label"])
        by_length[len(item["label"])][0] += ok
        by_length[len(item["label"])][1] += 1
        truth = item.get("truth")
        if truth:
            read_sets = {frozenset(g) for g in groups}
            partition += read_sets == {frozenset(g) for g in truth}
            for g in truth:
                if len(g) > 1:
                    multi += 1
                    multi_split += frozenset(g) not in read_sets and not any(
                        frozenset(g) <= r for r in read_sets
                    )
    n = len(items)
    return {
        "n": n,
        "whole_number_accuracy": round(whole / n, 4),
        "digit_count_accuracy": round(count / n, 4),
        "partition_accuracy": round(partition / n, 4),
        "multi_stroke_digits": multi,
        "multi_stroke_split_wrongly": round(multi_split / multi, 4) if multi else None,
        "by_length": {
            str(k): {"n": v[1], "whole": round(v[0] / v[1], 4)}
            for k, v in sorted(by_length.items())
        },
    }


def by_contributor(items: Sequence[dict], run: dict) -> dict[str, dict]:
    """Whole-number accuracy per contributing institution: acceptance is on other
    institutions' writers, so the spread across these four says how much that may vary."""
    out: dict[str, dict] = {}
    for contributor in sorted({it["contributor"] for it in items}):
        mine = [k for k, it in enumerate(items) if it["contributor"] == contributor]
        out[contributor] = {"n": len(mine)}
        for reader, (readings, _) in run.items():
            right = sum(readings[k][0] == items[k]["label"] for k in mine)
            out[contributor][reader] = round(right / len(mine), 4)
    return out


def run_readers(
    items: Sequence[dict], classifier: Classifier, batch: int = 64
) -> dict[str, tuple[list[Reading], float]]:
    """Both readers over the items, in batches; returns readings and seconds per item."""
    results = {}
    readers: dict[str, Callable] = {"ours": read_ours, "baseline": read_baseline}
    for name, reader in readers.items():
        readings: list[Reading] = []
        start = time.perf_counter()
        for i in range(0, len(items), batch):
            readings += reader([it["strokes"] for it in items[i : i + batch]], classifier)
        results[name] = (readings, (time.perf_counter() - start) / max(1, len(items)))
    return results


def bad_inputs(numbers: Sequence[dict], rng: random.Random) -> dict[str, list[np.ndarray]]:
    """Drawings at and beyond the number-mode bounds, to time (segment's docstring)."""

    def speck(x: float, y: float) -> np.ndarray:
        return np.array([[x, y], [x + 1.0, y + 1.0]])

    def wave(x: float, points: int) -> np.ndarray:  # a dense tall zigzag
        t = np.linspace(0, 1, points)
        return np.column_stack((x + 30 * np.sin(t * 40), 40 + 170 * t))

    n = segment.MAX_NUMBER_STROKES
    usable = [d for number in numbers if number["truth"] for d in digits_of(number)]
    twenty: list[list[np.ndarray]] = []
    while sum(map(len, twenty)) + 3 <= n and len(twenty) < segment.MAX_DIGITS:
        twenty.append(rng.choice(usable))
    return {
        f"{n} specks in one place (at the stroke limit)": [
            speck(100 + rng.random() * 5, 100 + rng.random() * 5) for _ in range(n)
        ],
        f"{n} dense waves overlapping, 600 points each": [wave(100 + 3 * i, 600) for i in range(n)],
        f"{len(twenty)} digits touching ({sum(map(len, twenty))} strokes)": layout(twenty, -0.02),
        "300 specks (over the stroke limit)": [
            speck(rng.random() * 50, rng.random() * 50) for _ in range(300)
        ],
        "200 strokes spread wide": [wave(60 * i, 20) for i in range(200)],
        "30 digits in 30 strokes (over the digit limit)": [wave(80 * i, 50) for i in range(30)],
    }


def time_bad_inputs(cases: dict[str, list[np.ndarray]], classifier: Classifier) -> dict:
    """Median cost of candidates + render + predict + best_partition (or the refusal): CPU
    time of this process (the work; the machine is shared, so wall time also counts other
    processes' turns) and wall time."""
    out = {}
    for name, strokes in cases.items():
        cpu, wall, answer = [], [], ""
        for _ in range(7):
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                plan = segment.candidates(strokes)
                outputs = classifier.predict(segment.render(plan, strokes))
                parts = segment.best_partition(plan, outputs, classifier.number_threshold)
                answer = f"{len(parts)} digits from {len(plan.candidates)} candidates"
            except PayloadError as e:
                answer = f"refused: {e.code}"
            cpu.append(time.process_time() - start_cpu)
            wall.append(time.perf_counter() - start)
        out[name] = {
            "answer": answer,
            "cpu_ms": round(float(np.median(cpu)) * 1e3, 2),
            "wall_ms": round(float(np.median(wall)) * 1e3, 2),
        }
    return out


def leave_one_contributor_out(
    numbers: Sequence[dict], served: Classifier
) -> tuple[dict[str, Any], dict[str, dict]] | None:
    """Each institution's numbers read by the fold model that never saw its writers (the
    honest figure for "other institutions' writers" when the served model has seen every
    dev writer); None without fold models. The folds have a reduced training budget, so
    they understate the served model; they use the served model's rejection thresholds,
    which were picked on their out-of-fold scores."""
    contributors = sorted({n["contributor"] for n in numbers})
    paths = {c: FOLDS / f"{c}.tflite" for c in contributors}
    if not all(path.is_file() for path in paths.values()):
        return None
    items: list[dict] = []
    readings: dict[str, list[Reading]] = {"ours": [], "baseline": []}
    seconds: dict[str, float] = {"ours": 0.0, "baseline": 0.0}
    per: dict[str, dict] = {}
    for contributor, path in paths.items():
        fold = Classifier.load(path)
        fold.reject_threshold = served.reject_threshold
        fold.number_threshold = served.number_threshold
        mine = [n for n in numbers if n["contributor"] == contributor]
        run = run_readers(mine, fold)
        per[contributor] = by_contributor(mine, run)[contributor]
        items += mine
        for reader, (read_, per_item) in run.items():
            readings[reader] += read_
            seconds[reader] += per_item * len(mine)
    result = {
        reader: {
            **score(items, readings[reader]),
            "ms_per_number": round(seconds[reader] / len(items) * 1e3, 2),
        }
        for reader in readings
    }
    return result, per


def evaluate(model_path: Path, limit: int | None = None) -> dict[str, Any]:
    classifier = Classifier.load(model_path)
    numbers = load_numbers()[:limit]
    heldout = heldout_writers(numbers)
    card: dict[str, Any] = {
        "model": classifier.info,
        "data": {
            "numbers": len(numbers),
            "with_true_partition": sum(1 for n in numbers if n["truth"]),
            "number_height_px": NUMBER_HEIGHT,
            "heldout_writers": len(heldout),
        },
        "constants": {
            name: getattr(segment, name)
            for name in (
                "GAP_SPLIT",
                "MIN_HEIGHT",
                "MAX_WIDTH",
                "ASPECT_WEIGHT",
                "GAP_WEIGHT",
                "DIGIT_BONUS",
                "FULL_HEIGHT",
                "HEIGHT_WEIGHT",
                "MAX_RUN",
                "MAX_CANDIDATES",
                "MAX_NUMBER_STROKES",
                "MAX_DIGITS",
            )
        },
    }
    sets: dict[str, list[dict]] = {
        "dev numbers, all writers": numbers,
        "dev numbers, held-out writers": [n for n in numbers if n["writer"] in heldout],
    }
    sets.update(synthetic_cases(numbers, random.Random(SEED)))
    results: dict[str, Any] = {}
    for name, items in sets.items():
        run = run_readers(items, classifier)
        results[name] = {
            reader: {**score(items, readings), "ms_per_number": round(seconds * 1e3, 2)}
            for reader, (readings, seconds) in run.items()
        }
        if name.startswith("dev numbers, all"):
            ours = run["ours"][0]
            card["by_contributor"] = by_contributor(items, run)
            card["errors_sample"] = [
                {"label": it["label"], "read": r[0]}
                for it, r in zip(items, ours, strict=True)
                if r[0] != it["label"]
            ][:40]
    loco = leave_one_contributor_out(numbers, classifier)
    if loco is not None:
        results[LOCO], card["loco_by_contributor"] = loco
    card["results"] = results
    card["bad_inputs"] = time_bad_inputs(bad_inputs(numbers, random.Random(SEED)), classifier)
    return card


def print_table(card: dict[str, Any]) -> None:
    heads = ("n", "whole", "count", "partn", "multi-split", "ms")
    print(f"{'set':34} {'reader':9} " + " ".join(f"{h:>7}" for h in heads))
    for name, readers in card["results"].items():
        for reader, r in readers.items():
            split = r["multi_stroke_split_wrongly"]
            print(
                f"{name:34} {reader:9} {r['n']:5d} {r['whole_number_accuracy']:7.2%} "
                f"{r['digit_count_accuracy']:7.2%} {r['partition_accuracy']:7.2%} "
                f"{'-' if split is None else f'{split:.2%}':>11} {r['ms_per_number']:6.2f}"
            )
        lengths = readers["ours"]["by_length"]
        base = readers["baseline"]["by_length"]
        print(
            "    by length (ours / baseline): "
            + ", ".join(
                f"{k}: {v['whole']:.1%}/{base[k]['whole']:.1%} (n={v['n']})"
                for k, v in lengths.items()
            )
        )


def print_bad_inputs(card: dict[str, Any]) -> None:
    print("\nbad inputs: candidates + render + predict + best partition (median of 7)")
    for name, r in card["bad_inputs"].items():
        print(f"  {name:52} cpu {r['cpu_ms']:6.2f} ms  wall {r['wall_ms']:6.2f} ms  {r['answer']}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model" / "digits.tflite")
    parser.add_argument("--limit", type=int, default=None, help="first N dev numbers only")
    parser.add_argument("--out", type=Path, default=CARD)
    args = parser.parse_args(argv)
    card = evaluate(args.model, args.limit)
    print_table(card)
    for title, key in (("served model", "by_contributor"), ("fold models", "loco_by_contributor")):
        if key in card:
            figures = ", ".join(
                f"{c}: {v['ours']:.1%}/{v['baseline']:.1%} (n={v['n']})"
                for c, v in card[key].items()
            )
            print(f"\nby contributor, {title} (whole numbers, ours / baseline): {figures}")
    print_bad_inputs(card)
    args.out.write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
