"""Latest-wins snapshots, never-dropped predicts, one batched inference loop.

Answering every snapshot collapses at ~50 drawers, so handlers only *store* work here: each
session keeps just its newest unstarted snapshot (a newer one replaces it), and predicts wait
in one FIFO. A single loop (a Socket.IO background task: a greenlet in eventlet mode, a
thread in threading mode) takes everything pending at once, runs preprocessing and one
`Classifier.predict` for the whole batch off the event loop, and emits each answer to its own
session. One loop means one inference call at a time: the LiteRT interpreter is not
thread-safe, and in eventlet mode it is never more than one `tpool.execute` in flight.

Ordering: a session's `floor` is the newest seq it was answered (or cleared) for. A snapshot
at or below the floor is stale and never delivered, so `probabilities` never go backwards and
nothing older than a `cleared` arrives after it. Predicts are always answered; one of exactly
the picture of the session's newest answered snapshot (clients predict what they last sent)
reuses that snapshot's input and probabilities instead of computing them again.

Everything that runs off the loop (`process`) is pure: no locks, no logging, no metrics.
Those are green in eventlet mode and must not be touched from a native thread.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server import protocol, segment
from server.admission import Admission
from server.config import Config
from server.drawing import NUMBER, Drawing
from server.metrics import Metrics
from server.preprocess import render_strokes, tiny_png, to_model_input, to_png_data_url
from server.protocol import PayloadError, Refusal
from server.reading import NOTHING, Head, Reading

log = logging.getLogger("server.batcher")

SNAPSHOT = "snapshot"
PREDICT = "predict"


class Ticket:
    """The answer to one predict, for whoever waits for it (a Socket.IO ack, an HTTP call)."""

    def __init__(self, event: Any) -> None:
        self._event = event
        self.answer: dict | None = None

    def settle(self, answer: dict) -> None:
        self.answer = answer
        self._event.set()

    def wait(self, timeout: float) -> dict | None:
        self._event.wait(timeout)
        return self.answer


@dataclass(eq=False)
class Session:
    sid: str
    address: str
    floor: int = -1  # newest seq answered or cleared
    pending: Item | None = None  # the newest unstarted snapshot
    predicts: int = 0  # this session's queued or running predicts
    next_start: float = 0.0  # monotonic time its next snapshot may start (rate cap)
    # The newest answered snapshot and its result: a predict of the same picture (a client
    # predicts what it last sent) reuses it instead of preprocessing and classifying again.
    answered: tuple[Drawing, Result] | None = None
    # Number mode: model outputs of the candidate digits of its latest number, by content
    # key (at most segment.MAX_CANDIDATES rows of 10-11 floats); see `process`.
    number_outputs: dict[bytes, np.ndarray] | None = None


@dataclass(eq=False)
class Item:
    kind: str
    drawing: Drawing
    received: float  # time.monotonic() when the handler got it
    session: Session | None = None  # None for an HTTP predict
    ticket: Ticket | None = None  # predicts only
    known: Result | None = None  # already computed for this very picture (see Session)


@dataclass
class Result:
    """What `process` made of one item: an answer, or a protocol error."""

    x: np.ndarray | None = None  # the 28x28 model input; None for an empty drawing
    outputs: np.ndarray | None = None  # the model's row for it (digit mode): every head
    reading: Reading = NOTHING  # what the model says about it
    image: str | None = None  # PNG data URL of `x`, predicts only
    error: Refusal | None = None
    # Number mode: the digits read, left to right (None in digit mode); for predicts, the
    # PNG data URL of each one's model input; the candidates' outputs, for the session's next
    # number (see `process`).
    parts: list[segment.Part] | None = None
    part_images: list[str] | None = None
    cache: dict[bytes, np.ndarray] | None = None


@dataclass
class Batch:
    results: list[Result]
    inference_s: float = 0.0
    work_s: float = 0.0
    failure: str | None = None  # why the whole batch failed (logged on the loop)


def process(
    drawings: Sequence[Drawing],
    final: Sequence[bool],
    classifier: Any,
    max_pixels: int,
    known: Sequence[Result | None] | None = None,
    caches: Sequence[Mapping[bytes, np.ndarray] | None] | None = None,
) -> Batch:
    """Preprocess every drawing and classify all inked ones in ONE call. Runs off the hub.

    `final[i]` marks a predict: its reading is the model's final head, and it gets the
    model's input as a PNG; snapshots are read by the live head (the same call: a model with
    two heads answers both in one row). `known[i]`, when given, is an earlier result for the
    same picture as `drawings[i]`: its input and outputs are taken as they are. The verdict
    ("not a digit") comes from the same single model call, never a second pass.

    A number-mode drawing adds its candidate digits (server.segment) to that same call, but
    only those whose strokes are not in `caches[i]` (the model outputs of the session's
    previous number, by candidate content key): while a number is written only the stroke
    being drawn changes, so a live update classifies a few candidates, not the whole
    number. Its result's `cache` holds the outputs of its own candidates, for the next one.
    """
    start = time.perf_counter()
    results = [Result() for _ in drawings]
    threshold = getattr(classifier, "reject_threshold", None)
    final_head = Head(0, threshold)
    number_threshold = segment.part_threshold(classifier)
    heads = {True: final_head, False: getattr(classifier, "live", None) or final_head}
    inputs: list[np.ndarray] = []  # every image of the one model call, in order
    singles: list[tuple[int, int]] = []  # (item, row) of digit-mode drawings
    numbers: list[_Number] = []
    for i, drawing in enumerate(drawings):
        if known is not None and known[i] is not None:
            _copy_known(results[i], known[i])
            if results[i].outputs is not None:  # a predict of what a snapshot answered
                results[i].reading = heads[final[i]].read(results[i].outputs)
            continue
        try:
            if drawing.mode == NUMBER:
                cache = caches[i] if caches is not None else None
                numbers.append(_Number.start(i, drawing.strokes or (), cache, inputs))
                continue
            results[i].x = to_model_input(drawing, max_pixels)
        except PayloadError as e:
            results[i].error = e
        except Exception as e:  # a preprocessing bug must cost one answer, not the batch
            results[i].error = Refusal("internal", f"Preprocessing failed: {type(e).__name__}")
        else:
            if results[i].x is not None:
                singles.append((i, len(inputs)))
                inputs.append(results[i].x)
    batch = Batch(results)
    outputs = np.zeros((0, 0), np.float32)
    if inputs:
        t = time.perf_counter()
        outputs = classifier.predict(np.stack(inputs))
        batch.inference_s = time.perf_counter() - t
    for i, row in singles:
        results[i].outputs = outputs[row]
        results[i].reading = heads[final[i]].read(outputs[row])
    for number in numbers:
        number.finish(results[number.item], outputs, number_threshold)
    rendered_by_item = {number.item: number.images for number in numbers}
    for i, (result, image) in enumerate(zip(results, final, strict=True)):
        if image and result.x is not None:
            result.image = to_png_data_url(result.x)
        if image and result.parts:
            rendered = rendered_by_item.get(i, {})
            strokes = drawings[i].strokes or ()
            result.part_images = [
                to_png_data_url(_part_input(part, strokes, rendered)) for part in result.parts
            ]
    batch.work_s = time.perf_counter() - start
    return batch


@dataclass
class _Number:
    """One number-mode drawing's share of a batch: its candidates, which of them are sent
    to the model (rows `first`... of the batch), and what its cache already knew."""

    item: int
    plan: segment.Plan
    keys: list[bytes]
    known: dict[int, np.ndarray]  # candidate -> cached output row
    missing: list[int]  # candidates classified in this batch, in order
    first: int
    images: dict[tuple[int, ...], np.ndarray]  # model inputs rendered, by candidate strokes

    @classmethod
    def start(
        cls,
        item: int,
        strokes: Sequence[np.ndarray],
        cache: Mapping[bytes, np.ndarray] | None,
        inputs: list[np.ndarray],
    ) -> _Number:
        """Plan the candidates and append the uncached ones' inputs to the batch's."""
        plan = segment.candidates(strokes)
        keys = segment.candidate_keys(plan, strokes)
        cache = cache or {}
        known = {k: cache[key] for k, key in enumerate(keys) if key in cache}
        missing = [k for k in range(len(keys)) if k not in known]
        rendered = segment.render(plan, strokes, missing)
        number = cls(item, plan, keys, known, missing, len(inputs), {})
        for k, image in zip(missing, rendered, strict=True):
            number.images[plan.candidates[k].strokes] = image
            inputs.append(image)
        return number

    def finish(self, result: Result, outputs: np.ndarray, threshold: float | None) -> None:
        """Choose the digits from the candidates' rows (this batch's or the cache's)."""
        rows = dict(self.known)
        for offset, k in enumerate(self.missing):
            rows[k] = outputs[self.first + offset]
        result.cache = {self.keys[k]: np.array(row) for k, row in rows.items()}
        table = np.stack([rows[k] for k in range(len(self.keys))]) if rows else np.zeros((0, 10))
        try:
            result.parts = segment.best_partition(self.plan, table, threshold)
        except PayloadError as e:
            result.error = e


def _part_input(
    part: segment.Part, strokes: Sequence[np.ndarray], rendered: Mapping[tuple, np.ndarray]
) -> np.ndarray:
    """The model input of one digit read: rendered in this batch, or rendered again."""
    if part.strokes in rendered:
        return rendered[part.strokes]
    image = render_strokes([strokes[s] for s in part.strokes])
    return image if image is not None else np.zeros((1, 1), np.float32)


def _copy_known(result: Result, known: Result) -> None:
    result.x, result.outputs, result.reading = known.x, known.outputs, known.reading
    result.parts = known.parts


@dataclass
class Hooks:
    """How the batcher reaches its async mode and the wire; all set by create_app."""

    emit: Callable[..., Any]  # emit(event, data, to=sid)
    create_event: Callable[[], Any]  # an Event of the async mode
    offload: Callable[..., Any]  # offload(fn, *args): run fn off the event loop
    sleep: Callable[[float], Any]


class Batcher:
    def __init__(self, classifier: Any, config: Config, metrics: Metrics, hooks: Hooks) -> None:
        self._classifier = classifier
        self._config = config
        self._metrics = metrics
        self._hooks = hooks
        self._interval = 1.0 / config.SNAPSHOT_MAX_HZ if config.SNAPSHOT_MAX_HZ else 0.0
        # A green lock in eventlet mode (created after monkey-patching): only the loop and
        # handlers take it, never the offloaded work. Re-entrant because answers are
        # emitted under it, and Engine.IO's send() closes a socket whose ping timed out
        # right there, which runs the disconnect handler, which calls close(): with a plain
        # Lock that deadlocked the whole server (a client that stopped answering pings).
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._admission = Admission(config)
        self._waiting: dict[str, Session] = {}  # sessions with a pending snapshot, oldest first
        self._predicts: deque[Item] = deque()
        self._predicts_running = 0
        self._wake = hooks.create_event()
        self._running = True
        self._draining = False

    # --- sessions -------------------------------------------------------------------------

    def open(self, sid: str, address: str) -> None:
        """Track a new session or refuse it (a Refusal with a stable code)."""
        with self._lock:
            if self._draining:
                raise _SHUTTING_DOWN
            self._admission.admit(address)
            self._sessions[sid] = Session(sid, address)
            self._metrics.sessions.set(len(self._sessions))

    def close(self, sid: str) -> None:
        """Forget everything about a session; work already running for it is never delivered."""
        with self._lock:
            session = self._sessions.pop(sid, None)
            if session is None:
                return
            self._waiting.pop(sid, None)
            session.pending = None
            self._admission.release(session.address)
            self._metrics.sessions.set(len(self._sessions))

    # --- work in ----------------------------------------------------------------------------

    def submit_snapshot(self, sid: str, drawing: Drawing, received: float) -> None:
        """Keep this snapshot if it is the session's newest; replaces an unstarted older one."""
        assert drawing.seq is not None
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return
            self._metrics.snapshots_received.inc()
            pending = session.pending
            if drawing.seq <= session.floor or (pending and pending.drawing.seq >= drawing.seq):
                self._metrics.snapshots_coalesced.inc()  # handlers ran out of order: older
                return
            if pending is not None:
                self._metrics.snapshots_coalesced.inc()
            session.pending = Item(SNAPSHOT, drawing, received, session)
            self._waiting.setdefault(sid, session)  # a replaced snapshot keeps its place
        self._wake.set()

    def submit_predict(self, sid: str | None, drawing: Drawing, received: float) -> Ticket:
        """Queue a predict (sid None: HTTP); refused with a Refusal when over a limit."""
        with self._lock:
            session = None
            if sid is not None:
                session = self._sessions.get(sid)
                if session is None:
                    raise Refusal("internal", "This session is not connected.")
                if session.predicts >= self._config.MAX_SESSION_PREDICTS:
                    raise Refusal(
                        "too_many_predicts",
                        f"At most {self._config.MAX_SESSION_PREDICTS} predicts may wait "
                        "for an answer at once; wait for one.",
                    )
            if self._draining:
                raise _SHUTTING_DOWN
            if len(self._predicts) + self._predicts_running >= self._config.MAX_PENDING_PREDICTS:
                raise Refusal("busy", "The server is too busy; try again in a moment.")
            ticket = Ticket(self._hooks.create_event())
            item = Item(PREDICT, drawing, received, session, ticket)
            if session is not None:
                session.predicts += 1
                if session.answered is not None and session.answered[0].same_picture(drawing):
                    item.known = session.answered[1]
            self._predicts.append(item)
        self._wake.set()
        return ticket

    def clear(self, sid: str, seq: int) -> None:
        """Drop the pending snapshot if it is older than the clear; emit `cleared` so that
        nothing older follows it.

        A pending snapshot NEWER than the clear stays: in threading mode each event's handler
        runs in its own thread, so a clear can reach the batcher after the next drawing's
        first snapshot, which is then the newest and must still be answered.
        """
        with self._lock:
            session = self._sessions.get(sid)
            if session is None:
                return
            pending = session.pending
            if pending is not None and pending.drawing.seq <= seq:
                self._metrics.snapshots_coalesced.inc()
                session.pending = None
                self._waiting.pop(sid, None)
            session.answered = None  # the canvas was blank: no predict will match it
            session.number_outputs = None
            session.floor = max(session.floor, seq)
            # Emitted under the lock: a running batch cannot slip an older answer in between.
            self._hooks.emit("cleared", protocol.cleared(seq), to=sid)

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """The background task: forever take everything pending, process, deliver."""
        while self._running:
            self._wake.clear()
            try:
                batch, delay = self._take(time.monotonic())
                if batch:
                    self._run_batch(batch)
                else:
                    self._wake.wait(delay if delay is not None else 1.0)
            except Exception:  # the loop must survive anything; answers are settled below
                log.exception("event=batcher_error")
                self._hooks.sleep(0.1)

    def stop(self) -> None:
        self._running = False
        self._wake.set()

    def warm_up(self) -> None:
        """Run one stroke and one image drawing through `process`, before serving.

        Besides making the first answer as fast as the rest, this primes the logging level
        caches of the libraries `process` uses (Pillow logs at DEBUG while decoding PNGs): a
        cache miss takes logging's lock, which eventlet turned green, and a green lock must
        not be contended from the native worker thread.
        """
        bar = np.array([[0.0, 0.0], [0.0, 9.0]])
        drawings = [
            Drawing(seq=0, strokes=(bar,)),
            Drawing(seq=0, image=tiny_png(), width=8, height=8),
            Drawing(seq=0, strokes=(bar, bar + [9.0, 0.0]), mode=NUMBER),
        ]
        process(drawings, [True, True, True], self._classifier, self._config.MAX_IMAGE_PIXELS)

    def drain(self, timeout: float) -> bool:
        """Refuse new work and wait for every queued predict to be answered (SIGTERM)."""
        with self._lock:
            self._draining = True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._predicts and not self._predicts_running:
                    return True
            self._hooks.sleep(0.02)
        return False

    @property
    def draining(self) -> bool:
        return self._draining

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "sessions": len(self._sessions),
                "pending": len(self._waiting) + len(self._predicts) + self._predicts_running,
            }

    def _take(self, now: float) -> tuple[list[Item], float | None]:
        """Everything due now (predicts first, then snapshots oldest first), up to MAX_BATCH;
        and how long until a rate-capped snapshot becomes due."""
        room = self._config.MAX_BATCH
        batch: list[Item] = []
        delay = None
        with self._lock:
            while self._predicts and len(batch) < room:
                item = self._predicts.popleft()
                if item.session is not None and not self._is_live(item.session):
                    item.ticket.settle(protocol.error(item.drawing.seq, _GONE))
                    continue
                batch.append(item)
                self._predicts_running += 1
            for sid, session in list(self._waiting.items()):
                if len(batch) >= room:
                    break
                if session.next_start > now:
                    wait = session.next_start - now
                    delay = wait if delay is None else min(delay, wait)
                    continue
                del self._waiting[sid]
                batch.append(session.pending)
                session.pending = None
                session.next_start = now + self._interval
        return batch, delay

    def _run_batch(self, items: list[Item]) -> None:
        # The sessions' cached number outputs ride in the function, so that offload keeps
        # its five arguments (tests/test_batcher.py's harness stands in for it).
        caches = [item.session.number_outputs if item.session else None for item in items]
        try:
            batch = self._hooks.offload(
                functools.partial(process, caches=caches),
                [item.drawing for item in items],
                [item.kind == PREDICT for item in items],
                self._classifier,
                self._config.MAX_IMAGE_PIXELS,
                [item.known for item in items],
            )
        except Exception as e:  # the classifier failed: every item gets an `internal` error
            log.error("event=inference_failed error=%r items=%d", f"{e!r}", len(items))
            internal = Refusal("internal", "The server could not process this drawing.")
            batch = Batch([Result(error=internal) for _ in items])
        else:
            self._metrics.batch_size.observe(len(items))
            self._metrics.work_seconds.observe(batch.work_s)
            if batch.inference_s:
                self._metrics.inference_seconds.observe(batch.inference_s)
        self._deliver(items, batch.results)

    def _deliver(self, items: list[Item], results: list[Result]) -> None:
        with self._lock:
            for item, result in zip(items, results, strict=True):
                if result.cache is not None and self._is_live(item.session):
                    item.session.number_outputs = result.cache  # content-keyed: never stale
                try:
                    if item.kind == PREDICT:
                        self._deliver_predict(item, result)
                    else:
                        self._deliver_snapshot(item, result)
                except Exception:  # one unsendable answer must not lose the others
                    log.exception("event=deliver_failed kind=%s", item.kind)

    def _deliver_snapshot(self, item: Item, result: Result) -> None:
        session, seq = item.session, item.drawing.seq
        if not self._is_live(session) or seq <= session.floor:
            self._metrics.snapshots_dropped.inc()
            return
        session.floor = seq
        if result.error is not None:
            self._emit_error(session.sid, seq, result.error)
            return
        latency = time.monotonic() - item.received
        if result.parts is not None:
            answer = protocol.number_probabilities(seq, result.parts, latency)
        else:
            answer = protocol.probabilities(seq, result.reading, latency)
        self._hooks.emit("probabilities", answer, to=session.sid)
        session.answered = (item.drawing, result)
        self._metrics.snapshots_answered.inc()
        self._metrics.end_to_end_seconds.labels(SNAPSHOT).observe(latency)

    def _deliver_predict(self, item: Item, result: Result) -> None:
        self._predicts_running -= 1
        session, seq = item.session, item.drawing.seq
        if session is not None:
            session.predicts -= 1
            if seq is not None:
                session.floor = max(session.floor, seq)
        live = session is not None and self._is_live(session)
        if result.error is not None:
            if live:
                answer = self._emit_error(session.sid, seq, result.error)
            else:
                answer = protocol.error(seq, result.error)
                self._metrics.count_error(result.error.code)
        else:
            latency = time.monotonic() - item.received
            if result.parts is not None:
                answer = protocol.number_prediction(
                    seq, result.parts, result.part_images or [], latency
                )
            else:
                answer = protocol.prediction(seq, result.reading, result.image, latency)
            if live:
                self._hooks.emit("prediction", answer, to=session.sid)
            self._metrics.predictions.labels("http" if session is None else "socket").inc()
            self._metrics.end_to_end_seconds.labels(PREDICT).observe(latency)
        item.ticket.settle(answer)

    def _emit_error(self, sid: str, seq: int | None, error: Refusal) -> dict:
        return protocol.refuse(self._hooks.emit, self._metrics.count_error, sid, seq, error)

    def _is_live(self, session: Session | None) -> bool:
        return session is not None and self._sessions.get(session.sid) is session


_GONE = Refusal("disconnected", "The session disconnected before the answer was ready.")
_SHUTTING_DOWN = Refusal("shutting_down", "The server is shutting down; try again.")
