"""Draw one digit on a running server from the terminal, over the public Socket.IO protocol.

    python scripts/client.py digit.png                 # an image, sent as the canvas would
    python scripts/client.py --mnist-index 0           # an MNIST test digit
    python scripts/client.py --unipen-index 12         # a real pen-stroke digit (UNIPEN)
    python scripts/client.py strokes.json --rate 10    # {"strokes": ...} or one UNIPEN line
    python scripts/client.py --number-index 3          # a real written number, number mode
    python scripts/client.py number.json --mode number # any strokes, read as a whole number

Strokes are replayed as growing snapshots, like a person drawing, and the live probabilities
are shown as they arrive; then the final prediction. --json prints one JSON document instead.
Any failure (server down, an `error` event, a timeout) exits 1 with a one-line message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make the repo's packages importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console, Group  # noqa: E402
from rich.live import Live  # noqa: E402
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from scripts.drawers import Throttle, draw_one  # noqa: E402
from scripts.pen_replay import (  # noqa: E402
    PEN_SECONDS,
    Sample,
    as_strokes,
    digit_image_png,
    number_samples,
    png_data_url,
    unipen_samples,
)
from scripts.protocol_client import SessionError, SocketSession, answer_of  # noqa: E402
from scripts.request_stats import Stats  # noqa: E402

IMAGE_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


class InputError(Exception):
    """The input file or index cannot be used (exit 2, nothing was sent)."""


def read_stroke_file(path: Path) -> Sample:
    """Protocol JSON ({"strokes": [[[x, y], ...], ...]}) or one raw UNIPEN dev line."""
    from model.data import record_to_strokes

    text = path.read_text()
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            record = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: neither an image nor JSON strokes ({e})") from e
    if not isinstance(record, dict) or not isinstance(record.get("strokes"), list):
        raise InputError(f'{path}: expected a JSON object with "strokes"')
    label = record.get("label")
    label = int(label) if isinstance(label, int | str) and str(label).isdigit() else None
    if "contributor" in record or "points_per_second" in record:  # UNIPEN: tablet units, y up
        strokes = record_to_strokes(record)
        if strokes is None:
            raise InputError(f"{path}: UNIPEN sample too small to draw (noisy)")
        return Sample(as_strokes(strokes), label)
    try:
        return Sample(as_strokes(record["strokes"]), label)
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: strokes must be lists of [x, y] points ({e})") from e


def read_image_file(path: Path) -> str | None:
    """An image file as a data URL, untouched (the server preprocesses); None if not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            kind = im.format
    except (UnidentifiedImageError, OSError):
        return None
    return png_data_url(path.read_bytes(), IMAGE_MIME.get(kind, "image/png"))


def load_input(args: argparse.Namespace) -> tuple[dict[str, Any], Sample | None, str | None]:
    """(description, strokes sample or None, image data URL or None)."""
    if args.mnist_index is not None:
        from model.data import load_mnist

        try:
            _, (x_test, y_test) = load_mnist()
            image, label = x_test[args.mnist_index], int(y_test[args.mnist_index])
        except (FileNotFoundError, IndexError) as e:
            raise InputError(f"MNIST test digit {args.mnist_index}: {e}") from e
        info = {"kind": "image", "source": f"mnist-test[{args.mnist_index}]", "label": label}
        return info, None, png_data_url(digit_image_png(image))
    if args.number_index is not None:
        try:
            sample = number_samples()[args.number_index]
        except (FileNotFoundError, IndexError) as e:
            raise InputError(f"UNIPEN number {args.number_index}: {e}") from e
        info = {"kind": "strokes", "source": f"unipen-numbers[{args.number_index}]"}
        return {**info, "label": sample.label}, sample, None
    if args.unipen_index is not None:
        try:
            sample = unipen_samples(heldout_only=False)[args.unipen_index]
        except (FileNotFoundError, IndexError) as e:
            raise InputError(f"UNIPEN digit {args.unipen_index}: {e}") from e
        info = {"kind": "strokes", "source": f"unipen[{args.unipen_index}]"}
        return {**info, "label": sample.label}, sample, None
    path = Path(args.input)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    image = read_image_file(path)
    if image is not None:
        return {"kind": "image", "source": str(path), "label": None}, None, image
    sample = read_stroke_file(path)
    return {"kind": "strokes", "source": str(path), "label": sample.label}, sample, None


def reading(answer: dict) -> str:
    """The verdict in words: "7 (98.1%)", "not a digit (91.0%)", "empty drawing", or in
    number mode "number 4810 (4 digits)"."""
    if answer.get("mode") == "number":
        parts = answer.get("digits") or []
        if answer.get("verdict") == "not_a_digit":
            return f"not a number: {len(parts)} parts, one is not a digit"
        if answer.get("empty"):
            return "empty drawing"
        return f"number {answer.get('number')} ({len(parts)} digits)"
    confidence = answer.get("confidence") or 0
    if answer.get("verdict") == "not_a_digit":
        return f"not a digit ({confidence:.1%})"
    if answer.get("empty") or answer.get("verdict") == "empty":
        return "empty drawing"
    return f"{answer.get('digit')} ({confidence:.1%})"


def bars(answer: dict | None, title: str) -> Group:
    """The ten bars of the answer (in number mode: of its last digit so far)."""
    table = Table(show_header=False, box=None, pad_edge=False)
    answer = answer or {}
    if answer.get("mode") == "number":
        answer = (answer.get("digits") or [{}])[-1]
    probabilities = answer.get("probabilities") or [0.0] * 10
    best = answer.get("digit")
    for digit, p in enumerate(probabilities):
        style = "bold green" if digit == best else ""
        table.add_row(Text(str(digit), style), Text("█" * round(p * 40), style), f"{p:6.1%}")
    return Group(Text(title, "bold"), table)


async def run(args: argparse.Namespace, info: dict, sample: Sample | None, image: str | None):
    updates: list[dict] = []
    console = Console()
    live = None if args.json else Live(bars(None, "connecting…"), console=console)

    def on_answer(event: str, data: dict) -> None:
        if event != "probabilities":
            return
        keys = ("seq", "verdict", "digit", "confidence", "latency_ms", "rtt_ms")
        updates.append({key: data.get(key) for key in keys})
        if live is not None:
            title = (
                f"live · seq {data.get('seq')} · {reading(data)} · "
                f"{data.get('rtt_ms', 0):.1f} ms round trip"
            )
            live.update(bars(data, title))

    session = SocketSession(Stats(), on_answer, args.timeout, args.timeout, mode=args.mode)
    await session.connect(args.url, [args.transport])
    try:
        if live is not None:
            live.start()
        if sample is not None:  # replay the pen, then predict and clear, as the page does
            deadline = asyncio.get_running_loop().time() + PEN_SECONDS[1] + 60
            await draw_one(session, sample.strokes, Throttle(session.max_rate(args.rate)), deadline)
            prediction = await session.predict(sample.strokes, sample.label)
        else:
            await session.update([], image=image)
            prediction = await session.predict([], info["label"], image=image)
        if session.stats.stalled:
            raise SessionError(f"{session.stats.stalled} snapshot(s) got no answer in time")
        if live is not None:
            verdict = ""
            if info["label"] is not None:
                verdict = " ✓" if answer_of(prediction) == info["label"] else " ✗"
                verdict = f" · label {info['label']}{verdict}"
            title = (
                f"prediction: {reading(prediction)} · "
                f"{prediction['rtt_ms']:.1f} ms round trip · {len(updates)} live updates{verdict}"
            )
            live.update(bars(prediction, title))
    finally:
        if live is not None:
            live.stop()
            if not console.is_terminal:
                console.print()  # Live leaves the last frame unterminated in a pipe
        await session.close()
    return {
        "url": args.url,
        "input": info,
        "ready": session.ready,
        "updates": updates,
        "prediction": prediction,
        "label": info["label"],
        "correct": None if info["label"] is None else answer_of(prediction) == info["label"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("input", nargs="?", help="image file (PNG/JPEG) or JSON stroke file")
    source.add_argument("--mnist-index", type=int, metavar="N", help="MNIST test digit N")
    source.add_argument("--unipen-index", type=int, metavar="N", help="UNIPEN dev digit N")
    source.add_argument(
        "--number-index", type=int, metavar="N", help="UNIPEN dev number N (number mode)"
    )
    parser.add_argument(
        "--mode",
        choices=("digit", "number"),
        help="read the drawing as one digit or a whole number (default: digit; number for "
        "--number-index)",
    )
    parser.add_argument("--url", default="http://localhost:7860")
    parser.add_argument("--rate", type=float, default=10.0, help="snapshots per second (max)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per answer")
    parser.add_argument("--transport", choices=("websocket", "polling"), default="websocket")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    args.mode = args.mode or ("number" if args.number_index is not None else "digit")
    if args.mode == "number" and args.mnist_index is not None:
        parser.error("number mode reads strokes, not images (--mnist-index)")
    if args.rate <= 0:
        parser.error("--rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        info, sample, image = load_input(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run(args, info, sample, image))
    except SessionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
