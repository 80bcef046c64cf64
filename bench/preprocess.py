"""Benchmark: edge validation and preprocessing per drawing, against naive baselines.

Both run in the same process on the same inputs, so the ratios hold across machines even
though the absolute medians do not. The baselines are what a minimal implementation does:
draw the client's strokes at canvas size with a fixed brush and shrink the canvas, or decode
the PNG and shrink the whole canvas to 28x28. If the served model is present, one
single-image inference is timed too, to show how preprocessing compares with it.

    .venv/bin/python bench/preprocess.py [--repeat 2000]

Prints a table and writes bench/results/preprocess.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.pen_replay import CANVAS, png_data_url, strokes_png  # noqa: E402
from server.drawing import parse_drawing  # noqa: E402
from server.preprocess import image_to_input, render_strokes, to_png_data_url  # noqa: E402

BRUSH = 16  # a typical client brush on a 280 px canvas
RESULT = ROOT / "bench" / "results" / "preprocess.json"


def typical_strokes(points_per_stroke: int = 60) -> list[list[list[float]]]:
    """A "5" as a browser sends it: ~one point per pointer event, two strokes."""
    t = np.linspace(0, 1, points_per_stroke)
    top = np.column_stack((90 + 110 * t, 60 + 3 * np.sin(9 * t)))
    angle = np.linspace(-0.6 * np.pi, 0.75 * np.pi, points_per_stroke)
    body = np.vstack(
        (
            np.column_stack((90 - 5 * t[:20], 60 + 80 * t[:20] * 3)),
            np.column_stack((130 + 60 * np.cos(angle[20:]), 190 + 55 * np.sin(angle[20:]))),
        )
    )
    return [np.round(top, 1).tolist(), np.round(body, 1).tolist()]


def dense_strokes(points: int = 5000) -> list[list[list[float]]]:
    """A long scribble: the heaviest kind of payload within the point limit."""
    t = np.linspace(0, 12 * np.pi, points)
    xy = np.column_stack((140 + 110 * np.sin(t), 140 + 100 * np.sin(1.3 * t + 0.5)))
    return [np.round(xy, 2).tolist()]


def naive_strokes(strokes: list) -> np.ndarray:
    """Baseline: fixed brush at canvas size, whole canvas shrunk to 28x28."""
    image = Image.new("L", (CANVAS, CANVAS))
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line([tuple(p) for p in stroke], fill=255, width=BRUSH)
    return np.asarray(image.resize((28, 28), Image.Resampling.BOX), dtype=np.float32) / 255


def naive_image(data: bytes) -> np.ndarray:
    """Baseline: decode, take the alpha channel, shrink the whole canvas to 28x28."""
    with Image.open(io.BytesIO(data)) as image:
        alpha = image.getchannel("A").resize((28, 28), Image.Resampling.BOX)
    return np.asarray(alpha, dtype=np.float32) / 255


def measure(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    for _ in range(min(50, repeat)):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    times.sort()
    return {
        "median_us": statistics.median(times) / 1000,
        "p90_us": times[int(0.9 * (len(times) - 1))] / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()

    typical, dense = typical_strokes(), dense_strokes()
    png = strokes_png(typical, pen_px=BRUSH)
    url = png_data_url(png)
    typical_payload = {"seq": 1, "strokes": typical}
    dense_payload = {"seq": 1, "strokes": dense}
    typical_drawing = parse_drawing(typical_payload)
    dense_drawing = parse_drawing(dense_payload)
    x = render_strokes(typical_drawing.strokes)

    cases: dict[str, tuple[Callable[[], object], str | None]] = {
        "parse strokes (typical)": (lambda: parse_drawing(typical_payload), None),
        "parse strokes (5000 pts)": (lambda: parse_drawing(dense_payload), None),
        "parse image (280x280 PNG)": (lambda: parse_drawing({"seq": 1, "image": url}), None),
        "naive strokes (baseline)": (lambda: naive_strokes(typical), None),
        "render strokes (typical)": (
            lambda: render_strokes(typical_drawing.strokes),
            "naive strokes (baseline)",
        ),
        "render strokes (5000 pts)": (
            lambda: render_strokes(dense_drawing.strokes),
            "naive strokes (baseline)",
        ),
        "naive image (baseline)": (lambda: naive_image(png), None),
        "image_to_input (280x280 PNG)": (
            lambda: image_to_input(png, CANVAS * CANVAS),
            "naive image (baseline)",
        ),
        "to_png_data_url": (lambda: to_png_data_url(x), None),
    }
    model = ROOT / "model" / "digits.tflite"
    if model.exists():
        from server.inference import Classifier

        classifier = Classifier.load(model)
        batch = x[None]
        cases["model predict, 1 image (reference)"] = (lambda: classifier.predict(batch), None)

    results = {}
    for name, (fn, baseline) in cases.items():
        results[name] = measure(fn, args.repeat)
        if baseline:
            results[name]["ratio_to_baseline"] = (
                results[name]["median_us"] / results[baseline]["median_us"]
            )
            results[name]["baseline"] = baseline

    print(f"{'case':40} {'median µs':>10} {'p90 µs':>10} {'vs baseline':>12}")
    for name, r in results.items():
        ratio = f"{r['ratio_to_baseline']:.2f}x" if "ratio_to_baseline" in r else ""
        print(f"{name:40} {r['median_us']:10.1f} {r['p90_us']:10.1f} {ratio:>12}")

    RESULT.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "preprocess",
        "repeat": args.repeat,
        "inputs": {
            "typical_points": sum(len(s) for s in typical),
            "dense_points": sum(len(s) for s in dense),
            "png_bytes": len(png),
        },
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "results": results,
    }
    RESULT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
