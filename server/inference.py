"""The served CNN, through LiteRT (ai_edge_litert): never tensorflow in the server.

Threading contract: a LiteRT interpreter is not thread-safe, so a Classifier must be
called from ONE thread at a time (the batcher's worker). It holds no lock of its own on
purpose: a lock created after eventlet's monkey-patching would be a green lock, and taking
it from a native tpool thread can deadlock.

Batching: one interpreter, resized only when the batch size changes. With the XNNPACK
delegate in ai-edge-litert 2.3 a resize costs microseconds (measured: alternating batches
of 1 and 3 adds ~7 us to a ~120 us call), and per-image cost is flat from N=1 to N=128, so
padding to fixed sizes would only waste work. Calls with more than MAX_CHUNK images are
split into chunks, which bounds the interpreter's activation memory (Config.MAX_BATCH, the
batcher's items per batch, is a separate setting).

Shapes come from the model file: the input field must be what server.preprocess renders
(SIZE x SIZE), and the output is ten digits, optionally followed by "not a digit", or two
such heads of eleven side by side: "final" then "live" (server.reading.Head).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from server.preprocess import SIZE
from server.reading import HEAD_WIDTH, NUM_DIGITS, Head

# A model may add one more output after the ten digits, "not a digit", and a second such
# head for live updates (model/train.py).
OUTPUT_WIDTHS = (NUM_DIGITS, HEAD_WIDTH, 2 * HEAD_WIDTH)
MAX_CHUNK = 128
# Used when an 11-output model's card gives no threshold of its own (model/card.json
# `rejection.threshold`, picked on writers held out by contributor).
DEFAULT_REJECT_THRESHOLD = 0.5


class ModelLoadError(Exception):
    """The model file is missing or unreadable; the message is one line for the log."""


class Classifier:
    """Softmax outputs for batches of 28x28 float32 images in [0, 1], ink = 1.

    Columns 0-9 are the digits; an 11-output model's column 10 is "not a digit"; a 22-output
    model's columns 11-21 are its live head (`live`), which answers snapshots.
    """

    def __init__(self, interpreter: Interpreter, info: dict[str, Any]) -> None:
        self._interpreter = interpreter
        source = interpreter.get_input_details()[0]
        self._input = source["index"]
        self.image_shape = tuple(int(n) for n in source["shape"][1:3])
        output = interpreter.get_output_details()[0]
        self._output = output["index"]
        self.num_outputs = int(output["shape"][-1])
        self._batch = 0
        self.info = info
        # Probability of "not a digit" from which a drawing is answered as one; None when the
        # model has no such output.
        self.reject_threshold: float | None = None
        # The same for one part of a number: higher, since a number is read wrong when any
        # one of its parts is rejected (model/card.json `rejection.number_threshold`).
        self.number_threshold: float | None = None
        # The head that reads live updates: the final one (columns 0-10) unless the model
        # has a live head of its own.
        self.live = Head(0, None)

    @classmethod
    def load(cls, path: str | os.PathLike, num_threads: int = 1) -> Classifier:
        """Load and warm up the model; raises ModelLoadError with a one-line reason.

        num_threads is explicit because LiteRT otherwise picks its own count, and the
        server already runs one inference worker per core.
        """
        path = Path(path)
        try:
            content = path.read_bytes()
        except OSError as e:
            raise ModelLoadError(f"cannot read model {path}: {e.strerror or e}") from None
        try:
            interpreter = Interpreter(model_content=content, num_threads=num_threads)
            card = read_card(path)
            classifier = cls(interpreter, model_info(path, content, card))
        except (ValueError, RuntimeError, IndexError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"cannot load model {path}: {reason}") from None
        if classifier.image_shape != (SIZE, SIZE):
            raise ModelLoadError(
                f"cannot load model {path}: input {classifier.image_shape}, but the server "
                f"renders drawings at ({SIZE}, {SIZE})"
            )
        try:
            probabilities = classifier.predict(np.zeros((1, SIZE, SIZE), np.float32))
        except (ValueError, RuntimeError, IndexError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelLoadError(f"cannot load model {path}: {reason}") from None
        if probabilities.ndim != 2 or probabilities.shape[1] not in OUTPUT_WIDTHS:
            raise ModelLoadError(
                f"cannot load model {path}: output shape {probabilities.shape[1:]}, "
                f"expected one of {[(w,) for w in OUTPUT_WIDTHS]}"
            )
        if classifier.num_outputs > NUM_DIGITS:
            rejection = card.get("rejection", {})
            threshold = float(rejection.get("threshold") or DEFAULT_REJECT_THRESHOLD)
            classifier.reject_threshold = threshold
            classifier.info["not_a_digit_threshold"] = threshold
            classifier.live = Head(0, threshold)
            number_threshold = float(rejection.get("number_threshold") or threshold)
            classifier.number_threshold = number_threshold
            classifier.info["number_not_a_digit_threshold"] = number_threshold
            if classifier.num_outputs == 2 * HEAD_WIDTH:
                live_threshold = float(rejection.get("live_threshold") or threshold)
                classifier.live = Head(HEAD_WIDTH, live_threshold)
                classifier.info["live_not_a_digit_threshold"] = live_threshold
        return classifier

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W) or (N, H, W, 1) float32 → (N, num_outputs) float32 softmax."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] not in (self.image_shape, (*self.image_shape, 1)):
            h, w = self.image_shape
            raise ValueError(f"expected (N, {h}, {w}) or (N, {h}, {w}, 1), got {x.shape}")
        x = x.reshape(-1, *self.image_shape, 1)
        if len(x) <= MAX_CHUNK:
            return self._invoke(x)
        chunks = [self._invoke(x[i : i + MAX_CHUNK]) for i in range(0, len(x), MAX_CHUNK)]
        return np.concatenate(chunks)

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, self.num_outputs), np.float32)
        if len(x) != self._batch:
            self._interpreter.resize_tensor_input(self._input, x.shape, strict=True)
            self._interpreter.allocate_tensors()
            self._batch = len(x)
        self._interpreter.set_tensor(self._input, x)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)


def read_card(path: Path) -> dict[str, Any]:
    """The model card beside the model file (model.evaluate writes it), or {} without one."""
    try:
        card = json.loads(path.with_name("card.json").read_text())
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


def model_info(path: Path, content: bytes, card: dict[str, Any]) -> dict[str, Any]:
    """name/version/test_accuracy: version is the model's short sha256 so clients and
    logs can tell exactly which file answered; accuracy comes from the card."""
    return {
        "name": card.get("name", path.stem),
        "version": hashlib.sha256(content).hexdigest()[:12],
        "test_accuracy": card.get("mnist_test", {}).get("accuracy"),
    }
