"""Number mode end to end: `mode: "number"` validated at the edge, every candidate digit of a
batch classified in the batcher's ONE model call, number answers on the wire (socket and
HTTP, through a real server in the production mode)."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import numpy as np
import pytest

from model.evaluate_numbers import load_numbers
from server import protocol, segment
from server.batcher import process
from server.config import Config
from server.drawing import Drawing, parse_drawing
from server.inference import Classifier
from server.protocol import PayloadError
from server.reading import NOTHING, Reading
from tests.conftest import CountingClassifier
from tests.test_live_server import WAIT_S, Recorder, as_lists

BAR = [[140.0, 40.0], [140.0, 240.0]]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(Config().model_path)


@pytest.fixture(scope="module")
def dev_numbers(classifier: Classifier) -> list[dict]:
    """Five dev numbers of 3-5 digits that the segmenter reads right offline."""
    chosen = []
    for number in load_numbers():
        if 3 <= len(number["label"]) <= 5 and len(chosen) < 5:
            parts = segment.read_number(number["strokes"], classifier)
            if segment.number_text(parts) == number["label"]:
                chosen.append(number)
    return chosen


# --- the edge -----------------------------------------------------------------------------


def test_mode_defaults_to_digit_and_accepts_number() -> None:
    assert parse_drawing({"seq": 1, "strokes": []}).mode == "digit"
    assert parse_drawing({"seq": 1, "strokes": [], "mode": "number"}).mode == "number"


@pytest.mark.parametrize("mode", ["Number", "", 1, None, ["number"]])
def test_other_modes_are_refused(mode: object) -> None:
    with pytest.raises(PayloadError) as refused:
        parse_drawing({"seq": 1, "strokes": [], "mode": mode})
    assert refused.value.code == "bad_payload"
    assert isinstance(refused.value.message, str) and "mode" in refused.value.message


def test_number_mode_reads_strokes_not_images() -> None:
    with pytest.raises(PayloadError, match="strokes, not images") as refused:
        parse_drawing({"seq": 1, "image": "AAAA", "mode": "number"})
    assert refused.value.code == "bad_payload"


def test_the_same_strokes_in_another_mode_are_another_picture() -> None:
    strokes = (np.array(BAR),)
    assert not Drawing(1, strokes).same_picture(Drawing(2, strokes, mode="number"))
    assert Drawing(1, strokes, mode="number").same_picture(Drawing(2, strokes, mode="number"))


# --- the batcher's pure work --------------------------------------------------------------


def test_one_model_call_for_digits_and_numbers_together(
    classifier: Classifier, dev_numbers: list[dict]
) -> None:
    counting = CountingClassifier(classifier)
    numbers = [Drawing(i, tuple(n["strokes"]), mode="number") for i, n in enumerate(dev_numbers)]
    drawings = [Drawing(10, (np.array(BAR),)), *numbers, Drawing(11, (), mode="number")]
    batch = process(drawings, [False, True] + [False] * len(dev_numbers), counting, 10**6)
    candidates = sum(len(segment.candidates(d.strokes).candidates) for d in numbers)
    assert counting.calls == [1 + candidates]
    assert batch.results[0].reading.digit == 1 and batch.results[0].parts is None
    for result, number in zip(batch.results[1:-1], dev_numbers, strict=True):
        assert segment.number_text(result.parts) == number["label"]
    assert batch.results[-1].parts == [] and batch.results[-1].error is None
    images = batch.results[1].part_images
    assert images is not None and len(images) == len(dev_numbers[0]["label"])
    assert images[0].startswith("data:image/png;base64,")


def test_a_live_update_classifies_only_the_candidates_it_changed(
    classifier: Classifier, dev_numbers: list[dict]
) -> None:
    """With the previous update's outputs, a new stroke costs only the candidates holding it;
    the reading is the same as computed from scratch."""
    counting = CountingClassifier(classifier)
    strokes = tuple(dev_numbers[0]["strokes"])
    before = Drawing(1, strokes[:-1], mode="number")
    after = Drawing(2, strokes, mode="number")
    first = process([before], [False], counting, 10**6).results[0]
    cached = process([after], [True], counting, 10**6, caches=[first.cache]).results[0]
    fresh = process([after], [True], counting, 10**6).results[0]
    calls = counting.calls
    total = len(segment.candidates(strokes).candidates)
    assert calls[1] < total == calls[2]
    assert calls[1] <= 2 * segment.MAX_RUN  # the runs that hold the newest stroke
    assert [(p.strokes, p.box, p.reading.digit) for p in cached.parts] == [
        (p.strokes, p.box, p.reading.digit) for p in fresh.parts
    ]
    assert cached.part_images == fresh.part_images
    assert len(cached.cache) == total


def test_a_number_over_the_limits_costs_only_its_own_answer(classifier: Classifier) -> None:
    many = tuple(np.array([[10.0 * i, 0.0], [10.0 * i, 1.0]]) for i in range(33))
    drawings = [Drawing(1, many, mode="number"), Drawing(2, (np.array(BAR),))]
    batch = process(drawings, [False, False], classifier, 10**6)
    assert batch.results[0].error.code == "too_many_strokes"
    assert batch.results[1].reading.digit == 1


# --- the wire -----------------------------------------------------------------------------


def _part(strokes: tuple[int, ...], box: tuple, reading: Reading) -> segment.Part:
    return segment.Part(strokes, box, reading)


def test_number_answers_on_the_wire() -> None:
    four = Reading("digit", 4, 0.9, np.eye(10)[4] * 0.9 + 0.01)
    blob = Reading("not_a_digit", None, 0.8, np.full(10, 0.1))
    parts = [_part((0, 1), (1.0, 2.0, 3.0, 4.0), four), _part((2,), (5.0, 2.0, 6.0, 4.0), four)]
    answer = protocol.number_probabilities(7, parts, 0.0012)
    assert answer["verdict"] == "digit" and answer["number"] == "44"
    assert answer["mode"] == "number" and answer["empty"] is False
    assert answer["digits"][0]["strokes"] == [0, 1] and answer["digits"][0]["box"] == [1, 2, 3, 4]
    assert answer["digits"][0]["digit"] == 4 and len(answer["digits"][0]["probabilities"]) == 10
    mixed = protocol.number_probabilities(8, [parts[0], _part((2,), (5, 2, 6, 4), blob)], 0)
    assert mixed["verdict"] == "not_a_digit" and mixed["number"] is None
    assert mixed["digits"][1]["verdict"] == "not_a_digit" and mixed["digits"][1]["digit"] is None
    empty = protocol.number_probabilities(9, [], 0)
    assert empty["verdict"] == "empty" and empty["number"] == "" and empty["digits"] == []
    assert NOTHING.verdict == "empty"
    predicted = protocol.number_prediction(7, parts, ["a", "b"], 0)
    assert [d["input"] for d in predicted["digits"]] == ["a", "b"]
    json.dumps(predicted)  # plain JSON


@pytest.mark.live
@pytest.mark.timeout(120)
def test_a_live_server_reads_numbers(eventlet_server, dev_numbers: list[dict]) -> None:
    """Snapshots and predicts in number mode, the limits in `ready`, a refusal, over a socket;
    then the same number over HTTP."""
    number = dev_numbers[0]

    async def main() -> tuple[Recorder, dict, dict]:
        recorder = Recorder(["websocket"])
        await recorder.connect(eventlet_server.url)
        strokes = as_lists(number["strokes"])
        await recorder.sio.emit("snapshot", {"seq": 1, "mode": "number", "strokes": strokes})
        live = await recorder.wait_for("probabilities", 1)
        ack = await recorder.sio.call(
            "predict", {"seq": 2, "mode": "number", "strokes": strokes}, timeout=WAIT_S
        )
        many = [[[10 * i, 0], [10 * i, 1]] for i in range(segment.MAX_NUMBER_STROKES + 1)]
        await recorder.sio.emit("snapshot", {"seq": 3, "mode": "number", "strokes": many})
        await recorder.wait_for("error", 3)
        await recorder.sio.emit("snapshot", {"seq": 4, "strokes": [BAR]})  # digit mode still
        await recorder.wait_for("probabilities", 4)
        await recorder.sio.disconnect()
        return recorder, live, ack

    recorder, live, ack = asyncio.run(main())
    ready = recorder.events[0][1]
    assert ready["limits"]["max_number_strokes"] == segment.MAX_NUMBER_STROKES
    assert ready["limits"]["max_number_digits"] == segment.MAX_DIGITS
    assert live["number"] == number["label"] and live["verdict"] == "digit"
    assert [d["digit"] for d in live["digits"]] == [int(c) for c in number["label"]]
    assert ack["number"] == number["label"] and ack["digits"][0]["input"].startswith("data:")
    errors = [d["code"] for e, d in recorder.events if e == "error"]
    assert errors == ["too_many_strokes"]
    assert recorder.seqs("probabilities") == [1, 4]

    body = json.dumps({"mode": "number", "strokes": as_lists(number["strokes"])}).encode()
    request = urllib.request.Request(
        f"{eventlet_server.url}/api/predict", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        answer = json.load(response)
    assert answer["number"] == number["label"]
    assert sorted(s for d in answer["digits"] for s in d["strokes"]) == list(
        range(len(number["strokes"]))
    )
