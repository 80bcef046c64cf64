"""The wire format: every message the server sends, and every error code it may answer with.

One home, so that a change to what clients see is made (and reviewed) in one place; the
docs/protocol.md tables are checked against `ERRORS` by tests/test_protocol.py. Handlers and
the batcher decide *what* to say; this module decides *how it looks on the wire*.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from server.reading import DIGIT, EMPTY, NOT_A_DIGIT, Reading

if TYPE_CHECKING:  # server.segment imports this module (PayloadError)
    from server.segment import Part

PROTOCOL_VERSION = 2  # 2: every answer carries a `verdict` (digit, not_a_digit, empty)
PROBABILITY_DIGITS = 6  # decimals sent: plenty for bars, a third of the JSON of full floats
TOP_K = 3  # guesses in a `prediction`

log = logging.getLogger("server.protocol")

# code -> HTTP status of an /api/predict (or any HTTP) answer carrying it. Codes that never
# reach HTTP still have one, so that every code maps somewhere.
ERRORS: Mapping[str, int] = {
    # validation of a payload (PayloadError)
    "bad_payload": 400,
    "bad_seq": 400,
    "bad_strokes": 400,
    "bad_coordinate": 400,
    "too_many_strokes": 400,
    "too_many_points": 400,
    "too_many_digits": 400,
    "bad_image": 400,
    "image_too_large": 400,
    "image_too_many_pixels": 400,
    "payload_too_large": 413,
    # refusals of work
    "too_many_predicts": 429,
    "busy": 503,
    "timeout": 504,
    "shutting_down": 503,
    "disconnected": 410,
    "internal": 500,
    # refused connections (connect_error), never HTTP answers
    "server_full": 503,
    "too_many_sessions": 429,
    # counted in digits_errors_total only: the connection is dropped, nothing is sent
    "slow_reader": 429,
    # HTTP routing
    "not_found": 404,
}


class Refusal(Exception):
    """Work the server will not do; `code` is stable protocol, `message` is for humans."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown error code {code!r}: add it to protocol.ERRORS")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class PayloadError(Refusal):
    """A client payload that failed validation (server.drawing), or an image that failed to
    decode later (server.preprocess)."""


def http_status(code: str) -> int:
    return ERRORS.get(code, 400)


def seq_echo(payload: Any) -> int | None:
    """The seq to echo in an answer about `payload`: its own when it is an int, else None."""
    seq = payload.get("seq") if isinstance(payload, dict) else None
    return seq if type(seq) is int else None


# --- messages, server -> client -------------------------------------------------------------


def ready(model: Mapping[str, Any], limits: Mapping[str, Any]) -> dict:
    return {"protocol": PROTOCOL_VERSION, "model": dict(model), "limits": dict(limits)}


def probabilities(seq: int | None, reading: Reading, latency_s: float) -> dict:
    """The live answer to a snapshot: the verdict, the digit read (null unless the verdict
    is "digit"), its confidence, and the ten digit probabilities for the bars."""
    return {
        "seq": seq,
        **_reading(reading),
        "empty": reading.digits is None,
        "latency_ms": round(latency_s * 1000, 2),
    }


def _reading(reading: Reading) -> dict[str, Any]:
    """A Reading on the wire, the same for a whole drawing and for one digit of a number."""
    if reading.digits is None:
        nothing = {"digit": None, "confidence": None, "probabilities": None}
        return {"verdict": reading.verdict, **nothing}
    return {
        "verdict": reading.verdict,
        "digit": reading.digit,
        "confidence": round(reading.confidence, PROBABILITY_DIGITS),
        "probabilities": np.round(reading.digits, PROBABILITY_DIGITS).tolist(),
    }


def prediction(seq: int | None, reading: Reading, image: str | None, latency_s: float) -> dict:
    """The final answer: `probabilities` plus the closest digits and the model's input image
    (also for "not a digit": the user sees what the model saw)."""
    answer = probabilities(seq, reading, latency_s)
    if reading.digits is None:
        answer.update(top=[], input=None)
    else:
        p = answer["probabilities"]
        top = np.argsort(-reading.digits, kind="stable")[:TOP_K]
        answer["top"] = [{"digit": int(d), "p": p[d]} for d in top]
        answer["input"] = image
    return answer


def number_probabilities(seq: int | None, parts: Sequence[Part], latency_s: float) -> dict:
    """The live answer to a number-mode snapshot: the number read left to right and each
    digit's strokes, box and reading. The verdict is "digit" when every part is a digit,
    "not_a_digit" when one is not (then `number` is null), "empty" without ink."""
    verdicts = {part.reading.verdict for part in parts}
    verdict = EMPTY if not parts else DIGIT if verdicts == {DIGIT} else NOT_A_DIGIT
    number = None if verdict == NOT_A_DIGIT else "".join(str(p.reading.digit) for p in parts)
    return {
        "seq": seq,
        "mode": "number",
        "verdict": verdict,
        "number": number,
        "digits": [_number_part(part) for part in parts],
        "empty": not parts,
        "latency_ms": round(latency_s * 1000, 2),
    }


def number_prediction(
    seq: int | None, parts: Sequence[Part], images: Sequence[str], latency_s: float
) -> dict:
    """The final number-mode answer: `number_probabilities` plus, per digit, the 28x28 image
    the model saw of it."""
    answer = number_probabilities(seq, parts, latency_s)
    for digit, image in zip(answer["digits"], images, strict=True):
        digit["input"] = image
    return answer


def _number_part(part: Part) -> dict:
    return {
        "box": [round(v, 1) for v in part.box],
        "strokes": list(part.strokes),
        **_reading(part.reading),
    }


def cleared(seq: int) -> dict:
    return {"seq": seq}


def error(seq: int | None, refusal: Refusal) -> dict:
    return {"seq": seq, "code": refusal.code, "message": refusal.message}


def refuse(
    emit: Callable[..., Any],
    count: Callable[[str], Any],
    sid: str,
    seq: int | None,
    refusal: Refusal,
) -> dict:
    """Log, count and emit one refusal to one session; returns the `error` message (an ack
    answers with it too). `count(code)` adds it to digits_errors_total."""
    answer = error(seq, refusal)
    count(refusal.code)
    log.info("event=error sid=%s seq=%s code=%s", sid, seq, refusal.code)
    emit("error", answer, to=sid)
    return answer
