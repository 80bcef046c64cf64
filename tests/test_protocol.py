"""server/protocol.py and docs/protocol.md describe the same wire format."""

from __future__ import annotations

import re

import numpy as np
import pytest

from server import protocol
from server.reading import read
from tests.conftest import ROOT

DOCS = ROOT / "docs" / "protocol.md"


def documented_codes() -> set[str]:
    text = DOCS.read_text()
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


def test_every_documented_code_exists_and_every_code_is_documented():
    documented = documented_codes()
    assert documented, "no error-code table found in docs/protocol.md"
    assert documented - set(protocol.ERRORS) == set(), "documented but not in protocol.ERRORS"
    assert set(protocol.ERRORS) - documented == set(), "in protocol.ERRORS but not documented"


def test_a_refusal_needs_a_known_code():
    with pytest.raises(ValueError, match="unknown error code"):
        protocol.Refusal("no_such_code", "?")
    assert protocol.error(3, protocol.Refusal("busy", "later")) == {
        "seq": 3,
        "code": "busy",
        "message": "later",
    }


def test_probabilities_are_rounded_to_six_decimals_and_empty_is_explicit():
    outputs = np.array([0.1234567891, 0.8765432109] + [0.0] * 8, np.float32)
    answer = protocol.probabilities(5, read(outputs, None), 0.00123)
    assert answer["digit"] == 1 and answer["verdict"] == "digit"
    assert all(round(p, 6) == p for p in answer["probabilities"])
    assert round(answer["confidence"], 6) == answer["confidence"]
    assert answer["latency_ms"] == 1.23
    empty = protocol.probabilities(6, read(None, 0.5), 0.0)
    assert empty["empty"] is True and empty["digit"] is None and empty["verdict"] == "empty"


def test_not_a_digit_keeps_the_renormalised_digit_bars():
    outputs = np.array([0.02, 0.0, 0.0, 0.0, 0.06, 0.0, 0.0, 0.02, 0.0, 0.0, 0.9], np.float32)
    answer = protocol.prediction(7, read(outputs, 0.5), "data:image/png;base64,", 0.0)
    assert answer["verdict"] == "not_a_digit" and answer["digit"] is None
    assert answer["confidence"] == pytest.approx(0.9)
    assert sum(answer["probabilities"]) == pytest.approx(1.0)
    assert answer["top"][0]["digit"] == 4 and answer["input"]
    kept = protocol.probabilities(8, read(outputs, 0.95), 0.0)
    assert kept["verdict"] == "digit" and kept["digit"] == 4
    assert kept["confidence"] == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("payload", "seq"),
    [({"seq": 4}, 4), ({"seq": True}, None), ({"seq": 1.0}, None), ([], None), (None, None)],
)
def test_seq_echo_only_echoes_integers(payload, seq):
    assert protocol.seq_echo(payload) == seq
