"""server/protocol.py and docs/protocol.md describe the same wire format."""

from __future__ import annotations

import re

import numpy as np
import pytest

from server import protocol
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
    answer = protocol.probabilities(5, outputs, 0.00123)
    assert answer["digit"] == 1
    assert all(round(p, 6) == p for p in answer["probabilities"])
    assert answer["latency_ms"] == 1.23
    empty = protocol.probabilities(6, None, 0.0)
    assert empty["empty"] is True and empty["digit"] is None


@pytest.mark.parametrize(
    ("payload", "seq"),
    [({"seq": 4}, 4), ({"seq": True}, None), ({"seq": 1.0}, None), ([], None), (None, None)],
)
def test_seq_echo_only_echoes_integers(payload, seq):
    assert protocol.seq_echo(payload) == seq
