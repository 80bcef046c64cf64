"""Training and evaluation data: MNIST IDX files and UNIPEN pen strokes.

Nothing here imports tensorflow at module import time: the socket load generator, the
browser tests and the evaluation script reuse the UNIPEN helpers without it. Keras is
imported only in the fallback that downloads MNIST when no local copy exists.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
DEFAULT_UNIPEN_PATH = ROOT.parent / "shared" / "data" / "unipen-dev" / "unipen_dev.jsonl.gz"
NONDIGITS_NAME = "unipen_dev_nondigits.jsonl.gz"  # letters and symbols, beside the digits

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

# Replayed UNIPEN digits are drawn the way a person fills the web page's canvas.
CANVAS_SIZE = 280.0
CANVAS_FILL = 0.6  # longer side of the digit's bounding box, as a fraction of the canvas
MIN_POINTS = 10  # fewer pen points than this is a mis-segmented (noisy) sample
UNIPEN_HELDOUT_FRACTION = 0.3
UNIPEN_SPLIT_SEED = 20260528


def mnist_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Where the MNIST IDX files are: argument > $MNIST_DIR > ../shared/data/mnist > None.

    None means "no local copy": load_mnist then falls back to keras.datasets.
    """
    for candidate in (data_dir, os.environ.get("MNIST_DIR"), DEFAULT_MNIST_DIR):
        if candidate and all((Path(candidate) / f).is_file() for f in MNIST_FILES.values()):
            return Path(candidate)
    if data_dir is not None:
        raise FileNotFoundError(f"MNIST IDX .gz files not found in {data_dir}")
    return None


def read_idx(path: Path) -> np.ndarray:
    """Parse one gzipped IDX file (big-endian header: magic, dims, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(
    data_dir: str | os.PathLike | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((x_train, y_train), (x_test, y_test)) as uint8; images (N, 28, 28), ink = 255."""
    directory = mnist_dir(data_dir)
    if directory is None:
        import keras  # only when there is no local copy: downloads and caches MNIST

        return keras.datasets.mnist.load_data()
    arrays = {key: read_idx(directory / name) for key, name in MNIST_FILES.items()}
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mnist_sha256(data_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """sha256 of each IDX file, so the model card pins exactly what it was trained on."""
    directory = mnist_dir(data_dir)
    if directory is None:
        return {}
    return {name: file_sha256(directory / name) for name in MNIST_FILES.values()}


def unipen_path(path: str | os.PathLike | None = None) -> Path:
    """argument > $UNIPEN_PATH > ../shared/data/unipen-dev/unipen_dev.jsonl.gz."""
    return Path(path or os.environ.get("UNIPEN_PATH") or DEFAULT_UNIPEN_PATH)


def record_to_strokes(record: dict) -> list[np.ndarray] | None:
    """One raw UNIPEN record → canvas strokes, or None for a noisy sample.

    Tablets report y up and in device units that vary by contributor, so the digit is
    flipped, then uniformly scaled and centred so its longer side spans CANVAS_FILL of a
    280x280 canvas: the same size a person draws at on the web page.
    """
    strokes = [np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in record["strokes"]]
    strokes = [s for s in strokes if len(s)]
    if sum(len(s) for s in strokes) < MIN_POINTS:
        return None
    points = np.concatenate(strokes)
    low, high = points.min(axis=0), points.max(axis=0)
    extent = float((high - low).max())
    if extent <= 0:
        return None
    scale = CANVAS_FILL * CANVAS_SIZE / extent
    centre = (low + high) / 2
    out = []
    for s in strokes:
        xy = (s - centre) * scale
        xy[:, 1] = -xy[:, 1]  # tablet y points up, canvas y points down
        out.append(xy + CANVAS_SIZE / 2)
    return out


def _load_pen_records(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """Records of a UNIPEN .jsonl.gz as canvas strokes (noisy ones dropped), keeping `fields`
    and a writer id qualified by contributor (names repeat across sites)."""
    samples = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            strokes = record_to_strokes(record)
            if strokes is None:
                continue
            sample = {key: record[key] for key in fields}
            sample["writer"] = f"{record['contributor']}/{record['writer']}"
            sample["strokes"] = strokes
            samples.append(sample)
    return samples


def load_unipen(path: str | os.PathLike | None = None) -> list[dict]:
    """UNIPEN digits as canvas strokes: dicts with label, writer, contributor, strokes."""
    samples = _load_pen_records(unipen_path(path), ("label", "contributor"))
    for sample in samples:
        sample["label"] = int(sample["label"])
    return samples


def nondigits_path(path: str | os.PathLike | None = None) -> Path:
    """argument > $UNIPEN_NONDIGITS_PATH > beside the UNIPEN digits file."""
    env = os.environ.get("UNIPEN_NONDIGITS_PATH")
    return Path(path or env or unipen_path().with_name(NONDIGITS_NAME))


def load_nondigits(path: str | os.PathLike | None = None) -> list[dict]:
    """UNIPEN letters and symbols as canvas strokes, drawn like the digits.

    Same transform as the digits (record_to_strokes), so a letter reaches the model the
    way it would if a user drew it on the page. Dicts: label, category, writer,
    contributor, strokes.
    """
    return _load_pen_records(nondigits_path(path), ("label", "category", "contributor"))


def unipen_split(
    samples: Sequence[dict],
    seed: int = UNIPEN_SPLIT_SEED,
    heldout_fraction: float = UNIPEN_HELDOUT_FRACTION,
) -> tuple[list[dict], list[dict]]:
    """(train, heldout) split BY WRITER: held-out writers never appear in training.

    Acceptance uses writers we do not have, so only a writer-disjoint split gives an
    honest estimate. Writer ids are qualified by contributor (names repeat across sites).
    """
    writers = sorted({s["writer"] for s in samples})
    random.Random(seed).shuffle(writers)
    heldout = set(writers[: round(len(writers) * heldout_fraction)])
    train = [s for s in samples if s["writer"] not in heldout]
    return train, [s for s in samples if s["writer"] in heldout]
