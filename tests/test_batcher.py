"""The batcher's contracts, deterministically: no loop thread, no clock, no sleeps.

The `Hooks` seam runs the batcher synchronously: answers are appended to a list, the offload
runs `process` right there (after running whatever the test scheduled "while the batch
runs"), and the test drives the loop one iteration at a time with `step()` (the loop's own
`_take` then `_run_batch`), at a `now` it chooses. The classifier is the served model.

Each test names the promise it pins; docs/reliability.md lists the mutants they kill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from server import segment
from server.batcher import Batcher, Hooks, Ticket, process
from server.config import Config
from server.drawing import Drawing
from server.inference import Classifier
from server.metrics import Metrics
from server.protocol import Refusal
from server.reading import HEAD_WIDTH, Head
from tests.conftest import CountingClassifier
from tests.images import encode, seven

ONE = (np.array([[140.0, 40.0 + 4 * i] for i in range(50)]),)  # a vertical bar: a "1"
SEVEN = (
    np.array([[40.0, 40.0], [200.0, 40.0], [110.0, 250.0]]),
    np.array([[80.0, 150.0], [170.0, 150.0]]),
)
T0 = 1000.0  # the loop's clock in these tests (time.monotonic() values)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(Config().model_path)


def drawing(seq: int | None, strokes: tuple = ONE, mode: str = "digit") -> Drawing:
    return Drawing(seq=seq, strokes=strokes, mode=mode)


class Harness:
    """One batcher, driven by hand. `answers` holds every emit: (sid, event, data)."""

    def __init__(self, classifier, **config) -> None:
        self.config = Config(**{"SNAPSHOT_MAX_HZ": 0, **config})
        self.metrics = Metrics()
        self.answers: list[tuple[str, str, dict]] = []
        self.batches: list[list[Drawing]] = []  # what each offload was given
        self.known: list[list] = []  # ... and the reused results it was given
        self.while_running: list[Callable[[], None]] = []  # run inside the next offload
        self.emit_hook: Callable[[str, str], None] | None = None
        hooks = Hooks(self._emit, threading.Event, self._offload, lambda seconds: None)
        self.batcher = Batcher(classifier, self.config, self.metrics, hooks)

    def _emit(self, event: str, data: dict, to: str) -> None:
        self.answers.append((to, event, data))
        if self.emit_hook is not None:
            self.emit_hook(event, to)

    def _offload(self, fn, drawings, final, classifier, max_pixels, known):
        self.batches.append(list(drawings))
        self.known.append(list(known))
        scheduled, self.while_running = self.while_running, []
        for action in scheduled:  # the batch is "running": other handlers get the lock
            action()
        return fn(drawings, final, classifier, max_pixels, known)

    def open(self, *sids: str) -> None:
        for sid in sids:
            self.batcher.open(sid, "127.0.0.1")

    def snapshot(self, sid: str, seq: int, strokes: tuple = ONE, mode: str = "digit") -> None:
        self.batcher.submit_snapshot(sid, drawing(seq, strokes, mode), time.monotonic())

    def predict(
        self, sid: str | None, seq: int | None, strokes: tuple = ONE, mode: str = "digit"
    ) -> Ticket:
        return self.batcher.submit_predict(sid, drawing(seq, strokes, mode), time.monotonic())

    def step(self, now: float = T0) -> list:
        """One iteration of the loop at time `now`: take what is due, run it, deliver."""
        batch, _ = self.batcher._take(now)
        if batch:
            self.batcher._run_batch(batch)
        return batch

    def seen(self, sid: str, *events: str) -> list[tuple[str, int | None]]:
        """(event, seq) of what `sid` received, in order; only `events` when given."""
        return [
            (event, data["seq"])
            for to, event, data in self.answers
            if to == sid and (not events or event in events)
        ]

    def last(self, sid: str, event: str) -> dict:
        return [data for to, name, data in self.answers if to == sid and name == event][-1]

    def counter(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(f"digits_{name}_total", labels)
        return value or 0.0

    def stats(self) -> dict:
        return self.batcher.stats()


@pytest.fixture
def harness(classifier) -> Harness:
    h = Harness(classifier)
    h.open("a")
    return h


# --- latest wins -----------------------------------------------------------------------------


def test_only_the_newest_unstarted_snapshot_is_computed(harness):
    for seq in (1, 2, 3):
        harness.snapshot("a", seq)
    assert harness.stats()["pending"] == 1
    harness.step()
    assert harness.seen("a") == [("probabilities", 3)]
    assert [[d.seq for d in batch] for batch in harness.batches] == [[3]]
    assert harness.counter("snapshots_coalesced") == 2
    assert harness.last("a", "probabilities")["digit"] == 1


def test_a_snapshot_with_the_pending_ones_seq_does_not_replace_it(harness):
    harness.snapshot("a", 5, ONE)
    harness.snapshot("a", 5, SEVEN)
    harness.step()
    assert harness.last("a", "probabilities")["digit"] == 1


def test_a_snapshot_not_newer_than_the_pending_one_or_the_floor_is_ignored(harness):
    harness.snapshot("a", 5)
    harness.step()
    harness.snapshot("a", 5)  # at the floor
    harness.snapshot("a", 4)  # below it
    assert harness.stats()["pending"] == 0
    harness.snapshot("a", 8)
    harness.snapshot("a", 7)  # older than the pending one: the pending one stays
    harness.step()
    assert harness.seen("a") == [("probabilities", 5), ("probabilities", 8)]


def test_each_session_keeps_its_own_newest_snapshot(classifier):
    h = Harness(classifier)
    h.open("a", "b")
    h.snapshot("a", 10)
    h.snapshot("b", 3, SEVEN)
    h.snapshot("a", 11, ())
    h.step()
    assert h.seen("a") == [("probabilities", 11)] and h.last("a", "probabilities")["empty"]
    assert h.seen("b") == [("probabilities", 3)] and h.last("b", "probabilities")["digit"] == 7


# --- the seq floor: nothing older than an answered, predicted or cleared seq -----------------


def test_a_snapshot_and_a_newer_predict_in_one_batch(harness):
    """Predicts are delivered first; the older snapshot of the same batch is then stale."""
    harness.snapshot("a", 1)
    ticket = harness.predict("a", 2)
    batch = harness.step()
    assert [item.kind for item in batch] == ["predict", "snapshot"]  # one batch, both
    assert harness.seen("a") == [("prediction", 2)]
    assert ticket.answer["seq"] == 2 and ticket.answer["digit"] == 1
    assert harness.counter("snapshots_dropped") == 1
    assert harness.stats() == {"sessions": 1, "pending": 0}


def test_a_snapshot_and_an_older_predict_in_one_batch_are_both_answered(harness):
    harness.predict("a", 1)
    harness.snapshot("a", 2)
    harness.step()
    assert harness.seen("a") == [("prediction", 1), ("probabilities", 2)]


def test_a_predict_that_overtakes_a_running_snapshot(harness):
    """The snapshot's batch is running when a newer predict is taken and answered (a second
    iteration of the loop, run here inside the first batch's offload): when the snapshot's
    batch is delivered, its answer is older than the prediction and is dropped."""
    harness.snapshot("a", 1)
    ticket: list[Ticket] = []

    def overtake() -> None:
        ticket.append(harness.predict("a", 2))
        harness.step()

    harness.while_running.append(overtake)
    harness.step()
    assert harness.seen("a") == [("prediction", 2)]
    assert ticket[0].answer["seq"] == 2
    assert harness.counter("snapshots_dropped") == 1


def test_a_predict_raises_the_floor_for_the_pending_snapshot(classifier):
    """A snapshot pending (rate-capped) when a newer predict is answered is never answered."""
    h = Harness(classifier, SNAPSHOT_MAX_HZ=1)
    h.open("a")
    h.snapshot("a", 1)
    h.step(T0)
    h.snapshot("a", 2)  # behind the rate cap until T0 + 1
    h.predict("a", 3)
    assert [item.kind for item in h.step(T0 + 0.1)] == ["predict"]
    h.step(T0 + 1.0)  # the snapshot is due now: computed, stale, dropped
    assert h.seen("a") == [("probabilities", 1), ("prediction", 3)]
    assert h.counter("snapshots_dropped") == 1
    h.snapshot("a", 3)  # at the predicted seq: ignored on arrival
    assert h.stats()["pending"] == 0


def test_a_clear_during_a_running_batch(harness):
    """`cleared` is emitted at once; the running snapshot, older, is never delivered."""
    harness.snapshot("a", 1)
    harness.while_running.append(lambda: harness.batcher.clear("a", 2))
    harness.step()
    assert harness.seen("a") == [("cleared", 2)]
    assert harness.counter("snapshots_dropped") == 1
    harness.snapshot("a", 2)  # not newer than the clear
    harness.snapshot("a", 3)
    harness.step()
    assert harness.seen("a") == [("cleared", 2), ("probabilities", 3)]


def test_a_clear_of_the_running_snapshots_own_seq(harness):
    """After `cleared` N, nothing for seq N either."""
    harness.snapshot("a", 2)
    harness.while_running.append(lambda: harness.batcher.clear("a", 2))
    harness.step()
    assert harness.seen("a") == [("cleared", 2)]


def test_an_answer_carries_its_latency_and_is_measured(harness):
    harness.predict("a", 1, SEVEN)
    harness.snapshot("a", 2)
    harness.step()
    for event in ("probabilities", "prediction"):
        assert 0 <= harness.last("a", event)["latency_ms"] < 10_000
    registry = harness.metrics.registry
    for kind in ("snapshot", "predict"):
        count = registry.get_sample_value("digits_end_to_end_seconds_count", {"kind": kind})
        assert count == 1, kind


def test_a_clear_drops_the_pending_snapshot(harness):
    harness.snapshot("a", 1)
    harness.batcher.clear("a", 2)
    assert harness.stats()["pending"] == 0
    assert harness.counter("snapshots_coalesced") == 1  # the dropped one
    assert harness.step() == []
    assert harness.seen("a") == [("cleared", 2)]
    harness.batcher.clear("a", 3)  # nothing pending: nothing dropped
    harness.snapshot("a", 4)  # a fresh start: replaces nothing
    assert harness.counter("snapshots_coalesced") == 1
    harness.step()
    assert harness.seen("a") == [("cleared", 2), ("cleared", 3), ("probabilities", 4)]


def test_a_clear_of_the_pending_snapshots_own_seq_drops_it(harness):
    harness.snapshot("a", 3)
    harness.batcher.clear("a", 3)
    assert harness.stats()["pending"] == 0 and harness.step() == []


def test_an_older_clear_does_not_lower_the_floor(harness):
    harness.snapshot("a", 5)
    harness.step()
    harness.batcher.clear("a", 3)
    harness.snapshot("a", 4)
    assert harness.stats()["pending"] == 0


# --- a predict of the last answered picture reuses its result --------------------------------


def test_a_predict_of_the_last_answered_picture_reuses_its_result(harness):
    harness.open("b")
    harness.snapshot("a", 1, SEVEN)
    harness.step()
    harness.predict("a", 2, SEVEN)
    harness.step()
    assert harness.known[-1][0] is not None  # the snapshot's input and output, reused
    harness.predict("b", 1, SEVEN)  # the same picture in another session: computed
    harness.step()
    assert harness.known[-1] == [None]
    reused, computed = harness.last("a", "prediction"), harness.last("b", "prediction")
    assert {**reused, "seq": 0, "latency_ms": 0} == {**computed, "seq": 0, "latency_ms": 0}
    assert reused["input"].startswith("data:image/png;base64,")
    harness.predict("a", 3, ONE)  # another picture: computed
    harness.step()
    assert harness.known[-1] == [None]
    assert harness.last("a", "prediction")["digit"] == 1


def test_a_predict_after_a_clear_or_of_an_older_picture_is_computed(harness):
    harness.snapshot("a", 1, SEVEN)
    harness.step()
    harness.snapshot("a", 2, ONE)
    harness.step()
    harness.predict("a", 3, SEVEN)  # the picture answered before last: not reused
    harness.step()
    assert harness.known[-1] == [None]
    harness.batcher.clear("a", 4)
    harness.predict("a", 5, ONE)  # the last answered picture, but the canvas was cleared
    harness.step()
    assert harness.known[-1] == [None]
    assert [harness.last("a", "prediction")["digit"]] == [1]


def test_an_image_is_never_the_same_picture_as_strokes(harness):
    harness.snapshot("a", 1, ())  # an empty canvas, answered
    harness.step()
    image = Drawing(seq=2, image=encode(seven("alpha")))
    ticket = harness.batcher.submit_predict("a", image, time.monotonic())
    harness.step()
    assert harness.known[-1] == [None]
    assert ticket.answer["empty"] is False and ticket.answer["digit"] == 7


def test_a_reused_answer_does_not_stop_the_rest_of_its_batch(harness):
    harness.open("b")
    harness.snapshot("a", 1, SEVEN)
    harness.step()
    harness.predict("a", 2, SEVEN)  # reused
    harness.snapshot("b", 1, ONE)  # computed, in the same batch
    harness.step()
    assert harness.known[-1][0] is not None and harness.known[-1][1] is None
    assert harness.last("b", "probabilities")["digit"] == 1


def test_a_preprocessing_bug_costs_only_its_own_answer(harness, monkeypatch):
    import server.batcher

    real = server.batcher.to_model_input

    def buggy(drawing, *args):
        if drawing.seq == 13:
            raise RuntimeError("preprocessing bug")
        return real(drawing, *args)

    monkeypatch.setattr(server.batcher, "to_model_input", buggy)
    harness.open("b")
    harness.snapshot("a", 13)
    harness.snapshot("b", 1)
    harness.step()
    error = harness.last("a", "error")
    assert error["code"] == "internal" and "preprocessing bug" not in error["message"]
    assert harness.last("b", "probabilities")["digit"] == 1


def test_an_empty_picture_is_reused_as_empty(harness):
    harness.snapshot("a", 1, ())
    harness.step()
    ticket = harness.predict("a", 2, ())
    harness.step()
    assert harness.known[-1] != [None]
    assert ticket.answer["empty"] is True and ticket.answer["input"] is None


# --- the verdict and number mode, through the loop -----------------------------------------

LINE = (np.array([[60.0, 140.0], [220.0, 141.0]]),)  # a lone dash: not a digit
# "17" written left to right: a bar at x=60, then a seven at x=300-460
SEVENTEEN = (ONE[0] - [80.0, 0.0], *(stroke + [260.0, 0.0] for stroke in SEVEN))


def test_the_classifiers_threshold_gives_the_verdict(classifier, harness):
    """The served model's threshold (from its card) reaches the batch: no second pass."""
    assert classifier.reject_threshold is not None
    harness.snapshot("a", 1, LINE)
    harness.step()
    answer = harness.last("a", "probabilities")
    assert (answer["verdict"], answer["digit"]) == ("not_a_digit", None)
    assert len(answer["probabilities"]) == 10
    ticket = harness.predict("a", 2, LINE)
    harness.step()
    assert (ticket.answer["verdict"], ticket.answer["digit"]) == ("not_a_digit", None)
    assert ticket.answer["input"].startswith("data:image/png;base64,")


class TwoHeads:
    """A two-head model's row for every drawing (model/train.py): the final head reads a 7,
    the live head, which learned part-drawn digits, a 2. Only what the batcher does with the
    columns is under test, so the rows are fixed."""

    reject_threshold = 0.9
    live = Head(HEAD_WIDTH, 0.9)

    def predict(self, x):
        final, live = np.full(HEAD_WIDTH, 0.01), np.full(HEAD_WIDTH, 0.01)
        final[7], live[2] = 0.9, 0.9
        return np.tile(np.concatenate([final, live]), (len(x), 1)).astype(np.float32)


def test_snapshots_are_read_by_the_live_head_and_predicts_by_the_final_head():
    h = Harness(TwoHeads())
    h.open("a")
    h.snapshot("a", 1)
    h.step()
    assert h.last("a", "probabilities")["digit"] == 2
    reused = h.predict("a", 2)  # the same picture: the snapshot's row, read by the final head
    h.step()
    assert h.known[-1][0] is not None and reused.answer["digit"] == 7
    fresh = h.predict("a", 3, SEVEN)
    h.step()
    assert h.known[-1] == [None] and fresh.answer["digit"] == 7


class UnsureOfEverything:
    """A row with p("not a digit") 0.95 (and a 4 next) for every drawing: over the threshold
    of a lone drawing, under that of a number's part."""

    reject_threshold = 0.9
    number_threshold = 0.99

    def predict(self, x):
        row = np.zeros(HEAD_WIDTH, np.float32)
        row[4], row[10] = 0.05, 0.95
        return np.tile(row, (len(x), 1))


def test_a_numbers_parts_are_read_with_the_number_threshold():
    drawings = [Drawing(1, SEVEN), Drawing(2, SEVENTEEN, mode="number")]
    single, number = process(drawings, [True, True], UnsureOfEverything(), 10**6).results
    assert single.reading.verdict == "not_a_digit"
    assert [p.reading.verdict for p in number.parts] == ["digit"] * len(number.parts)
    assert segment.number_text(number.parts) == "4" * len(number.parts)


def test_a_number_snapshot_then_its_predict(harness):
    harness.snapshot("a", 1, SEVENTEEN, "number")
    harness.step()
    live = harness.last("a", "probabilities")
    assert (live["seq"], live["mode"], live["number"], live["verdict"]) == (
        1,
        "number",
        "17",
        "digit",
    )
    assert [d["strokes"] for d in live["digits"]] == [[0], [1, 2]]
    assert "input" not in live["digits"][0]
    ticket = harness.predict("a", 2, SEVENTEEN, "number")
    harness.step()
    assert harness.known[-1][0] is not None  # the live answer's reading, reused
    final = ticket.answer
    assert final == harness.last("a", "prediction")
    assert (final["seq"], final["number"]) == (2, "17")
    assert [d["strokes"] for d in final["digits"]] == [[0], [1, 2]]
    assert all(d["input"].startswith("data:image/png;base64,") for d in final["digits"])
    assert final["digits"][0]["input"] != final["digits"][1]["input"]


def test_a_number_part_that_is_not_a_digit_makes_the_number_null(harness):
    harness.predict("a", 1, (ONE[0] - [80.0, 0.0], LINE[0] + [260.0, 0.0]), "number")
    harness.step()
    answer = harness.last("a", "prediction")
    assert (answer["verdict"], answer["number"]) == ("not_a_digit", None)
    assert [d["verdict"] for d in answer["digits"]] == ["digit", "not_a_digit"]


def test_a_sessions_next_number_update_classifies_only_its_new_candidates(classifier):
    counting = CountingClassifier(classifier)
    h = Harness(counting)
    h.open("a", "b")
    h.snapshot("a", 1, SEVENTEEN[:2], "number")
    h.step()
    h.snapshot("a", 2, SEVENTEEN, "number")
    h.snapshot("b", 1, SEVENTEEN, "number")  # another session: its own, empty cache
    h.step()
    everything = len(segment.candidates(SEVENTEEN).candidates)
    with_cache = everything - len(segment.candidates(SEVENTEEN[:2]).candidates)
    assert counting.calls[1] == with_cache + everything
    assert h.last("a", "probabilities")["number"] == h.last("b", "probabilities")["number"]


def test_a_closed_sessions_number_leaves_no_cache(harness):
    session = harness.batcher._sessions["a"]
    harness.snapshot("a", 1, SEVENTEEN, "number")
    harness.while_running.append(lambda: harness.batcher.close("a"))
    harness.step()
    assert session.number_outputs is None and harness.answers == []


def test_a_digit_snapshot_keeps_the_sessions_number_cache(harness):
    harness.snapshot("a", 1, SEVENTEEN, "number")
    harness.step()
    cache = harness.batcher._sessions["a"].number_outputs
    assert cache
    harness.snapshot("a", 2)
    harness.step()
    assert harness.batcher._sessions["a"].number_outputs is cache


def test_a_number_over_the_limits_is_refused_by_code(harness):
    many = tuple(np.array([[10.0 * i, 0.0], [10.0 * i, 1.0]]) for i in range(33))
    harness.snapshot("a", 1, many, "number")
    harness.step()
    assert harness.last("a", "error")["code"] == "too_many_strokes"
    ticket = harness.predict("a", 2, many, "number")
    harness.step()
    assert ticket.answer["code"] == "too_many_strokes"
    assert harness.stats()["pending"] == 0


# --- predicts: always answered, in order, within limits ---------------------------------------


def test_predicts_are_answered_in_order_and_never_coalesced(harness):
    tickets = [harness.predict("a", seq) for seq in (1, 2, 3)]
    harness.step()
    assert harness.seen("a") == [("prediction", 1), ("prediction", 2), ("prediction", 3)]
    assert [t.answer["seq"] for t in tickets] == [1, 2, 3]
    via = {"via": "socket"}
    assert harness.metrics.registry.get_sample_value("digits_predictions_total", via) == 3


def test_an_http_predict_has_no_session_and_no_emit(harness):
    ticket = harness.predict(None, None)
    harness.step()
    assert ticket.answer["seq"] is None and ticket.answer["digit"] == 1
    assert 0 <= ticket.answer["latency_ms"] < 10_000
    assert harness.answers == []
    assert harness.counter("predictions", via="http") == 1
    assert harness.counter("predictions", via="socket") == 0
    registry = harness.metrics.registry
    assert registry.get_sample_value("digits_end_to_end_seconds_count", {"kind": "predict"}) == 1


def test_an_http_predict_refused_after_decoding_is_counted(harness):
    ticket = harness.batcher.submit_predict(
        None, Drawing(seq=3, image=b"\x89PNG garbage"), time.monotonic()
    )
    harness.step()
    assert (ticket.answer["code"], ticket.answer["seq"]) == ("bad_image", 3)
    assert harness.counter("errors", code="bad_image") == 1
    assert harness.answers == []


def test_answered_predicts_free_the_sessions_places(classifier):
    h = Harness(classifier, MAX_SESSION_PREDICTS=3)
    h.open("a")
    for seq in (1, 2, 3):
        h.predict("a", seq)
    h.step()
    for seq in (4, 5, 6):  # all three places are free again, and no more
        h.predict("a", seq)
    with pytest.raises(Refusal) as refused:
        h.predict("a", 7)
    assert refused.value.code == "too_many_predicts"


def test_running_predicts_count_against_the_server_wide_cap(classifier):
    h = Harness(classifier, MAX_PENDING_PREDICTS=2)
    h.open("a")
    h.predict("a", 1)
    refusals = []

    def while_one_runs() -> None:
        h.predict(None, None)  # one running, one queued: at the cap
        try:
            h.predict(None, None)
        except Refusal as e:
            refusals.append(e.code)

    h.while_running.append(while_one_runs)
    h.step()
    assert refusals == ["busy"]


def test_predict_limits(classifier):
    h = Harness(classifier, MAX_SESSION_PREDICTS=2, MAX_PENDING_PREDICTS=3)
    h.open("a", "b")
    h.predict("a", 1)
    h.predict("a", 2)
    h.predict("b", 1)
    for attempt, code in [
        (lambda: h.predict("a", 3), "too_many_predicts"),
        (lambda: h.predict(None, None), "busy"),
        (lambda: h.predict("gone", 1), "internal"),
    ]:
        with pytest.raises(Refusal) as refused:
            attempt()
        assert refused.value.code == code
        assert isinstance(refused.value.message, str) and refused.value.message
    h.step()
    assert h.stats()["pending"] == 0
    h.predict("a", 3)  # answered predicts no longer count
    h.predict(None, None)


def test_a_failed_batch_answers_every_item_internal_and_the_next_works(harness):
    real = harness.batcher._classifier

    class Broken:
        def predict(self, x):
            raise RuntimeError("interpreter exploded")

    harness.open("b")
    harness.batcher._classifier = Broken()
    ticket = harness.predict("a", 1)
    harness.snapshot("b", 1)
    harness.step()
    assert ticket.answer["code"] == "internal" and "exploded" not in ticket.answer["message"]
    assert harness.seen("a") == [("error", 1)] and harness.seen("b") == [("error", 1)]
    harness.batcher._classifier = real
    harness.snapshot("b", 2)
    harness.step()
    assert harness.seen("b") == [("error", 1), ("probabilities", 2)]


def test_one_undecodable_image_costs_only_its_own_answer(harness):
    harness.open("b")
    harness.batcher.submit_snapshot("b", Drawing(seq=1, image=b"\x89PNG garbage"), T0)
    ticket = harness.predict("a", 1)
    harness.step()
    assert harness.last("b", "error")["code"] == "bad_image"
    assert ticket.answer["digit"] == 1


# --- disconnects ------------------------------------------------------------------------------


def test_a_disconnect_with_a_pending_snapshot_and_a_pending_predict(harness):
    harness.snapshot("a", 1)
    ticket = harness.predict("a", 2)
    assert harness.stats() == {"sessions": 1, "pending": 2}
    harness.batcher.close("a")
    # The snapshot is forgotten at once; the queued predict waits to be settled by the loop.
    assert harness.stats() == {"sessions": 0, "pending": 1}
    assert harness.step() == []
    assert ticket.answer["code"] == "disconnected" and ticket.answer["seq"] == 2
    assert harness.answers == []
    assert harness.stats() == {"sessions": 0, "pending": 0}


def test_a_predict_batched_with_a_closed_sessions_leftovers(harness):
    """Another session's work in the loop's next batch is answered normally."""
    harness.open("b")
    harness.snapshot("a", 1)
    harness.snapshot("b", 1)
    ticket = harness.predict("b", 2, SEVEN)
    harness.batcher.close("a")
    harness.step()
    assert "code" not in ticket.answer, ticket.answer
    assert ticket.answer["digit"] == 7
    assert harness.seen("b") == [("prediction", 2)]
    assert harness.seen("a") == []
    assert harness.stats() == {"sessions": 1, "pending": 0}


def test_a_disconnect_during_a_running_batch(harness):
    """Work running for a closed session is computed but never delivered; its predict's
    waiter still gets an answer, and a new session reusing the sid gets nothing old."""
    harness.snapshot("a", 1)
    ticket = harness.predict("a", 2)

    def reconnect() -> None:
        harness.batcher.close("a")
        harness.open("a")

    harness.while_running.append(reconnect)
    harness.step()
    assert harness.answers == []
    assert ticket.answer["seq"] == 2 and ticket.answer["digit"] == 1
    assert harness.counter("snapshots_dropped") == 1
    assert harness.stats() == {"sessions": 1, "pending": 0}
    harness.predict("a", 1)  # the new session's own limits and floor start afresh
    harness.snapshot("a", 1)


def test_close_during_an_emit_does_not_deadlock(harness):
    """Engine.IO's send() may close a socket whose ping timed out, which runs the disconnect
    handler (close) inside the batcher's emit, under its lock."""
    harness.open("b")
    harness.emit_hook = lambda event, sid: harness.batcher.close(sid)
    harness.snapshot("a", 1)
    harness.snapshot("b", 1)
    runner = threading.Thread(target=harness.step, daemon=True)
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), "the batcher's lock is stuck"
    assert sorted(sid for sid, _, _ in harness.answers) == ["a", "b"]
    assert harness.stats() == {"sessions": 0, "pending": 0}


def test_sessions_are_admitted_and_released(classifier):
    h = Harness(classifier, MAX_SESSIONS=2, MAX_SESSIONS_PER_IP=1)
    h.batcher.open("a", "10.0.0.1")
    with pytest.raises(Refusal) as refused:
        h.batcher.open("b", "10.0.0.1")
    assert refused.value.code == "too_many_sessions"
    h.batcher.open("b", "10.0.0.2")
    with pytest.raises(Refusal) as refused:
        h.batcher.open("c", "10.0.0.3")
    assert refused.value.code == "server_full"
    h.batcher.close("a")
    h.batcher.close("a")  # twice: nothing more is released
    h.batcher.open("c", "10.0.0.1")
    with pytest.raises(Refusal) as refused:
        h.batcher.open("d", "10.0.0.4")
    assert refused.value.code == "server_full"
    assert h.metrics.registry.get_sample_value("digits_active_sessions") == 2


# --- the rate cap --------------------------------------------------------------------------


def test_snapshots_start_at_most_snapshot_max_hz_per_session(classifier):
    h = Harness(classifier, SNAPSHOT_MAX_HZ=10)  # one every 0.1 s
    h.open("a", "b")
    h.snapshot("a", 1)
    assert len(h.step(T0)) == 1
    h.snapshot("a", 2)
    h.snapshot("b", 1)  # another session is not held back
    batch, delay = h.batcher._take(T0 + 0.04)
    assert [item.session.sid for item in batch] == ["b"]
    assert delay == pytest.approx(0.06)
    h.batcher._run_batch(batch)
    h.snapshot("b", 2)  # now both wait: the loop sleeps until the sooner one is due
    assert h.batcher._take(T0 + 0.07)[1] == pytest.approx(0.03)
    h.snapshot("a", 3)  # coalesced with 2 while it waits
    assert h.step(T0 + 0.0999) == []
    assert [item.drawing.seq for item in h.step(T0 + 0.1)] == [3]
    assert h.seen("a") == [("probabilities", 1), ("probabilities", 3)]


def test_without_a_cap_every_step_takes_the_newest(harness):
    for seq in range(1, 6):
        harness.snapshot("a", seq)
        assert len(harness.step(T0)) == 1
    assert [seq for _, seq in harness.seen("a")] == [1, 2, 3, 4, 5]


# --- drain ------------------------------------------------------------------------------------


def test_drain_answers_queued_predicts_then_refuses_new_work(classifier):
    h = Harness(classifier)
    h.open("a")
    tickets = [h.predict("a", 1), h.predict(None, None)]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the loop runs while drain waits: one iteration
        sleeps.append(seconds)
        h.step()

    h.batcher._hooks.sleep = sleep
    assert h.batcher.draining is False  # a bool: the cluster publishes it as JSON
    assert h.batcher.drain(timeout=10.0)
    assert sleeps and all(0 < s <= 0.1 for s in sleeps)  # it notices promptly
    assert [t.answer["digit"] for t in tickets] == [1, 1]
    assert h.batcher.draining is True
    for attempt in (lambda: h.predict("a", 2), lambda: h.batcher.open("b", "127.0.0.1")):
        with pytest.raises(Refusal) as refused:
            attempt()
        assert refused.value.code == "shutting_down"


def test_drain_gives_up_after_its_timeout(classifier):
    h = Harness(classifier)
    h.open("a")
    ticket = h.predict("a", 1)
    assert h.batcher.drain(timeout=0.05) is False  # nothing runs the loop
    assert ticket.answer is None
    assert ticket.wait(0.01) is None  # a waiter gives up at its timeout
    h.step()
    assert ticket.answer["seq"] == 1
    assert h.batcher.drain(timeout=0.05) is True


# --- the loop itself --------------------------------------------------------------------------


def test_the_loop_survives_an_error_outside_any_batch(classifier):
    h = Harness(classifier)
    h.open("a")
    calls = []

    def take(now):
        calls.append(now)
        if len(calls) == 1:
            raise RuntimeError("bug in the loop")
        h.batcher.stop()
        return [], None

    h.batcher._take = take
    h.batcher._hooks.sleep = lambda seconds: calls.append(("slept", seconds))
    h.batcher.run()
    assert len(calls) == 3 and calls[1][0] == "slept"
    assert 0 < calls[1][1] <= 1  # a short pause, then the loop goes on


def test_a_late_older_clear_keeps_the_newer_pending_snapshot(harness):
    """In threading mode each event's handler runs in its own thread, so a clear can reach
    the batcher after a newer snapshot: that snapshot, the newest, must still be answered."""
    harness.snapshot("a", 7)
    harness.batcher.clear("a", 5)  # its handler ran after snapshot 7's
    harness.step()
    assert harness.seen("a") == [("cleared", 5), ("probabilities", 7)]


def test_stop_ends_the_loop(classifier):
    h = Harness(classifier)
    loop = threading.Thread(target=h.batcher.run, daemon=True)
    loop.start()
    h.batcher.stop()
    loop.join(10)
    assert not loop.is_alive()


# --- found by mutation testing (docs/reliability.md) ------------------------------------------


def test_a_batch_holds_at_most_max_batch_items(classifier):
    """Predicts first, then snapshots, never more than MAX_BATCH in one model call; the rest
    waits for the next iteration (a full batch with snapshots waiting is not an error)."""
    h = Harness(classifier, MAX_BATCH=2)
    h.open("a", "b", "c")
    tickets = [h.predict("a", seq) for seq in (1, 2, 3)]
    assert [item.drawing.seq for item in h.step()] == [1, 2]
    for sid in ("a", "b", "c"):
        h.snapshot(sid, 10)
    assert [(item.kind, item.session.sid) for item in h.step()] == [
        ("predict", "a"),
        ("snapshot", "a"),
    ]
    assert [item.session.sid for item in h.step()] == ["b", "c"]
    assert h.step() == []
    assert [t.answer["seq"] for t in tickets] == [1, 2, 3]


def test_pending_counts_the_running_predicts(harness):
    seen = []
    harness.predict("a", 1)
    harness.snapshot("a", 2)
    harness.while_running.append(lambda: seen.append(harness.stats()["pending"]))
    harness.step()
    assert seen == [1]  # the running predict is still pending (a started snapshot is not)
    assert harness.stats()["pending"] == 0


def test_the_loop_waits_until_the_next_snapshot_is_due(classifier):
    """An idle loop sleeps exactly until the rate cap lets the soonest snapshot start, and
    with nothing pending it still wakes now and then (a safety net behind every submit's
    wake-up)."""
    h = Harness(classifier)
    waits: list[float | None] = []
    due = iter([([], 0.03), ([], None)])

    class Wake(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout)
            return False

    def take(now):
        step = next(due, None)
        if step is None:
            h.batcher.stop()
            return [], None
        return step

    h.batcher._wake = Wake()
    h.batcher._take = take
    h.batcher.run()
    assert waits[0] == pytest.approx(0.03)
    assert waits[1] is not None and waits[1] > 0


def test_process_measures_its_work_and_its_model_call(classifier):
    started = time.perf_counter()
    batch = process([drawing(1)], [True], classifier, Config().MAX_IMAGE_PIXELS)
    elapsed = time.perf_counter() - started
    assert 0 < batch.inference_s <= batch.work_s <= elapsed


def test_decoding_keeps_the_configured_pixel_limit(classifier):
    """The pixel limit is checked again when the image is decoded: the configured one."""
    h = Harness(classifier, MAX_IMAGE_PIXELS=99 * 100)
    h.open("a")
    data = encode(seven("alpha").resize((100, 100)))
    image = Drawing(seq=1, image=data, width=100, height=100)
    ticket = h.batcher.submit_predict("a", image, time.monotonic())
    h.step()
    assert ticket.answer["code"] == "image_too_many_pixels"


def test_a_classifier_with_only_predict_reads_plain_digits(classifier):
    """A classifier without a threshold or a live head: argmax digits, no error."""

    class OnlyPredict:
        def predict(self, x: np.ndarray) -> np.ndarray:
            return classifier.predict(x)

    batch = process([drawing(1), drawing(2)], [True, False], OnlyPredict(), 10**6)
    assert [r.error for r in batch.results] == [None, None]
    assert [r.reading.digit for r in batch.results] == [1, 1]


def test_a_number_read_as_too_many_digits_is_refused_by_code(harness):
    """Touching waves in a row: few enough blocks for the candidates, but the best reading
    has more than MAX_DIGITS digits (refused by the partition, not by the plan)."""
    t = np.linspace(0, 1, 50)
    waves = tuple(
        np.column_stack((80.0 * i + 30 * np.sin(t * 40), 40 + 170 * t))
        for i in range(segment.MAX_DIGITS + 1)
    )
    segment.candidates(waves)  # within the plan's bounds
    harness.snapshot("a", 1, waves, "number")
    harness.step()
    assert harness.last("a", "error")["code"] == "too_many_digits"
