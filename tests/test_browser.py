"""Acceptance for the browser client: the real page in Debian Chromium against a real server.

Real pen data (UNIPEN digits) is replayed as mouse movements and as CDP touch sequences, so
the whole path runs as a person would use it: Pointer Events → throttled `snapshot`s over
Socket.IO → live bars → Predict. Nothing is mocked. Screenshots land in
artifacts/screenshots/ for a human to look at.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from model.data import CANVAS_SIZE, load_unipen
from tests.conftest import ROOT, LiveServer, start_server

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MODEL = ROOT / os.environ.get("MODEL_PATH", "model/digits.tflite")  # the one the server runs
SHOTS = ROOT / "artifacts" / "screenshots"
DESKTOP = {"viewport": {"width": 1200, "height": 800}}
MOBILE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
    "color_scheme": "dark",  # the phone run also covers the dark theme
}
# Common phone screens (portrait) and a phone in landscape: the live reading must stay in view.
PHONES = {
    "320x568": (320, 568),
    "360x800": (360, 800),
    "375x667": (375, 667),
    "390x844": (390, 844),
    "landscape-844x390": (844, 390),
}
AXE = ROOT / "client" / "node_modules" / "axe-core" / "axe.min.js"
CLEAR_CONFIDENCE = 0.95  # "clearly written": the served model reads the raw sample this surely
CHECKPOINTS = 4  # the drawing is split into this many parts, each followed by a live answer
TIMEOUT_MS = 15_000  # generous upper bound for one wait; never a speed assertion

pytestmark = [
    pytest.mark.browser,
    pytest.mark.live,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="!!! BROWSER TESTS NOT RUN: /usr/bin/chromium is missing "
        "(apt-get install chromium) — the client is UNTESTED !!!",
    ),
]

# In-page probes, run by the test (not globals in the app): they read the DOM and canvas.
WATCH_SEQS = """() => {
  window.__seqs = [];
  const bars = document.querySelector('#bars');
  new MutationObserver(() => window.__seqs.push(Number(bars.dataset.seq)))
    .observe(bars, {attributes: true, attributeFilter: ['data-seq']});
}"""
INK_PIXELS = """([top, bottom]) => {
  const c = document.querySelector('#pad');
  const y0 = Math.floor(top * c.height), y1 = Math.ceil(bottom * c.height);
  if (y1 <= y0) return 0;
  const d = c.getContext('2d').getImageData(0, y0, c.width, y1 - y0).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
  return n;
}"""
# The page's promises to a finger on a phone, read at any moment: where it is scrolled, whether
# anything sticks out sideways, and whether the ten live bars are on screen.
STEADY = """() => {
  const bars = document.querySelector('#bars').getBoundingClientRect();
  return {
    scrollY: scrollY,
    overflow: document.documentElement.scrollWidth - innerWidth,
    barsOnScreen: bars.top >= 0 && bars.bottom <= innerHeight && bars.left >= 0
      && bars.right <= innerWidth,
  };
}"""
AXE_SERIOUS = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ') + ' (' + n.failureSummary
      .replace(/\\s+/g, ' ') + ')').join('; '));
}"""
INK_BOX = """() => {
  const c = document.querySelector('#pad'), ctx = c.getContext('2d');
  const w = c.width, h = c.height, d = ctx.getImageData(0, 0, w, h).data;
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    if (d[(y * w + x) * 4 + 3] > 127) {
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
  }
  return {box: [x0 / w, y0 / h, (x1 + 1) / w, (y1 + 1) / h], pen: ctx.lineWidth / c.clientWidth};
}"""


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def digits() -> dict[int, list[np.ndarray]]:
    """One clearly written UNIPEN sample per digit (canvas strokes on a 280x280 canvas).

    "Clearly written" is decided by the served model on the raw sample, so these tests check
    that the browser delivers the drawing faithfully, not how good the model is (other tests
    measure accuracy, on writers kept out of training).
    """
    if not MODEL.exists():
        pytest.skip("model/digits.tflite has not been built")
    from server.inference import Classifier
    from server.preprocess import render_strokes
    from server.reading import NUM_DIGITS

    classifier = Classifier.load(MODEL)
    candidates: dict[int, list[list[np.ndarray]]] = {d: [] for d in range(10)}
    for sample in load_unipen():
        bucket = candidates[sample["label"]]
        if len(bucket) < 30 and len(sample["strokes"]) <= 2:
            bucket.append(sample["strokes"])
    picks = {}
    for digit, bucket in candidates.items():
        probabilities = classifier.predict(np.stack([render_strokes(s) for s in bucket]))
        clear = np.flatnonzero(probabilities[:, :NUM_DIGITS].argmax(axis=1) == digit)
        best = max(clear, key=lambda i: probabilities[i, digit], default=None)
        first = next((i for i in clear if probabilities[i, digit] >= CLEAR_CONFIDENCE), best)
        if first is not None:
            picks[digit] = bucket[first]
    return picks


@pytest.fixture
def pick(digits):
    def pick(*wanted: int) -> tuple[int, list[np.ndarray]]:
        for digit in wanted:
            if digit in digits:
                return digit, digits[digit]
        pytest.skip(f"the model reads none of the UNIPEN samples of {wanted} correctly")

    return pick


@pytest.fixture(scope="module")
def unsure_drawing() -> list[np.ndarray]:
    """A real UNIPEN drawing that the served model reads as a digit with low confidence."""
    from server.inference import Classifier
    from server.preprocess import render_strokes
    from server.reading import read

    classifier = Classifier.load(MODEL)
    samples = [s["strokes"] for s in load_unipen()[:1500] if len(s["strokes"]) <= 3]
    outputs = classifier.predict(np.stack([render_strokes(s) for s in samples]))
    for strokes, row in zip(samples, outputs, strict=True):
        reading = read(row, classifier.reject_threshold)
        if reading.verdict == "digit" and 0.35 <= reading.confidence < 0.55:
            return strokes
    pytest.skip("the model reads every sample surely: no 'not sure' drawing to show")


@pytest.fixture(scope="module")
def scribble_drawing() -> list[np.ndarray]:
    """A random scribble that the served model answers "not a digit" (tests/test_verdict.py)."""
    from server.inference import Classifier
    from tests.test_verdict import scribble

    if Classifier.load(MODEL).reject_threshold is None:
        pytest.skip("the served model has no 'not a digit' output")

    return [np.clip(np.array(scribble(2)), 5, CANVAS_SIZE - 5)]


@pytest.fixture(scope="module")
def number_drawing() -> tuple[str, list[np.ndarray]]:
    """A real dev number of 3-5 digits that the served model and segmenter read right."""
    from model.evaluate_numbers import load_numbers
    from server import segment
    from server.inference import Classifier

    classifier = Classifier.load(MODEL)
    for number in load_numbers():
        if 3 <= len(number["label"]) <= 5:
            parts = segment.read_number(number["strokes"], classifier)
            if segment.number_text(parts) == number["label"]:
                return number["label"], [np.asarray(s, dtype=float) for s in number["strokes"]]
    pytest.skip("no dev number is read right offline")


# ------------------------------------------------------------------------------- helpers


class Client:
    """One open page on the app, with its console errors collected."""

    def __init__(self, browser, url: str, live: bool = True, **context_options) -> None:
        self.context = browser.new_context(**context_options)
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        if live:
            self.wait_live()

    def wait_live(self) -> None:
        self.expect_state("live")
        self.page.evaluate(WATCH_SEQS)

    def close(self) -> None:
        self.context.close()

    def expect_state(self, state: str) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator("#conn")).to_have_attribute(
            "data-state", state, timeout=TIMEOUT_MS
        )

    def attr(self, selector: str, name: str) -> str | None:
        return self.page.locator(selector).get_attribute(name)

    def shown_seq(self) -> int:
        return int(self.attr("#bars", "data-seq") or 0)

    def seqs(self) -> list[int]:
        return self.page.evaluate("window.__seqs")

    def wait_for_answer_after(self, seq: int) -> int:
        """Wait for the bars to show an answer newer than `seq` (a real live update)."""
        self.page.wait_for_function(
            "s => Number(document.querySelector('#bars').dataset.seq) > s", arg=seq
        )
        return self.shown_seq()

    def strokes(self) -> int:
        return int(self.attr("#pad", "data-strokes"))

    def ink(self, top: float = 0.0, bottom: float = 1.0) -> int:
        """Inked pixels of the canvas backing store between two fractions of its height."""
        return self.page.evaluate(INK_PIXELS, [top, bottom])

    def fit_to_pad(self, strokes: list[np.ndarray]) -> list[np.ndarray]:
        """Strokes of any size → page coordinates, centred in the pad with a margin (a
        number written across a wide pad)."""
        box = self.page.locator("#pad").bounding_box()
        points = np.concatenate(strokes)
        low, size = points.min(axis=0), np.ptp(points, axis=0)
        scale = min(0.85 * box["width"] / size[0], 0.7 * box["height"] / size[1])
        offset = (
            np.array([box["x"], box["y"]])
            + (np.array([box["width"], box["height"]]) - size * scale) / 2
        )
        return [(np.asarray(s) - low) * scale + offset for s in strokes]

    def pad_to_page(self, strokes: list[np.ndarray]) -> list[np.ndarray]:
        """280x280 canvas strokes → page coordinates inside the on-page canvas box."""
        box = self.page.locator("#pad").bounding_box()
        scale = np.array([box["width"], box["height"]]) / CANVAS_SIZE
        return [np.asarray(s) * scale + (box["x"], box["y"]) for s in strokes]

    def predict_and_read(self) -> int:
        self.page.keyboard.press("Enter")
        return self.read_result()

    def read_result(self) -> int:
        result = self.page.locator("#result")
        result.wait_for(state="visible")
        return int(result.get_attribute("data-digit"))

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.page.screenshot(path=path, full_page=True, animations="disabled")
        return path


def mouse_replay(
    client: Client, strokes: list[np.ndarray], place: Callable | None = None
) -> Iterator[int]:
    """Draw with the mouse in small steps; yields the count of points drawn after each.
    `place` maps the strokes to page coordinates (default: a 280x280 canvas on the pad)."""
    mouse, page = client.page.mouse, client.page
    drawn = 0
    for stroke in (place or client.pad_to_page)(strokes):
        mouse.move(*stroke[0])
        mouse.down()
        for i, (x, y) in enumerate(stroke[1:]):
            mouse.move(x, y, steps=2)
            if i % 3 == 0:
                page.wait_for_timeout(8)  # a hand needs time; lets the throttle fire mid-stroke
            drawn += 1
            yield drawn
        mouse.up()
        drawn += 1
        yield drawn


def touch_replay(
    client: Client,
    strokes: list[np.ndarray],
    during: Callable[[], None] | None = None,
    place: Callable | None = None,
) -> Iterator[int]:
    """Real touch sequences through CDP (touchStart/Move/End), like a finger on a phone.

    `during` runs every few moves while the finger is down: the checks a phone user would
    make by eye, made while the stroke is still being drawn.
    """
    cdp = client.context.new_cdp_session(client.page)
    drawn = 0
    for stroke in (place or client.pad_to_page)(strokes):
        x, y = stroke[0]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point(x, y)]})
        for i, (x, y) in enumerate(stroke[1:]):
            cdp.send(
                "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point(x, y)]}
            )
            if i % 3 == 0:
                client.page.wait_for_timeout(8)
                if during is not None:
                    during()
            drawn += 1
            yield drawn
        # A finger comes to rest before it lifts. Lifting mid-motion starts a fling, and
        # Chromium then swallows the next tap as "stop the fling" (no click on Predict).
        for _ in range(3):
            client.page.wait_for_timeout(40)
            cdp.send(
                "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point(x, y)]}
            )
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        drawn += 1
        yield drawn
    cdp.detach()


def expect_text(page, selector: str, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(text, timeout=TIMEOUT_MS)


def point(x: float, y: float) -> dict:
    return {"x": float(x), "y": float(y), "radiusX": 4, "radiusY": 4, "force": 0.5, "id": 1}


def touch_swipe(client: Client, x: float, y0: float, y1: float, steps: int = 12) -> None:
    cdp = client.context.new_cdp_session(client.page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [point(x, y0)]})
    for y in np.linspace(y0, y1, steps)[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point(x, y)]})
        client.page.wait_for_timeout(10)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def draw_with_live_answers(
    client: Client, replay: Iterator[int], total: int, shot: str | None = None
) -> list[int]:
    """Run a replay, waiting at CHECKPOINTS for a live answer while the pen is still moving.

    Waiting (rather than sleeping) makes "the bars update while drawing" a behaviour check
    that does not depend on the machine's speed. Returns the seqs the bars showed.
    """
    marks = {max(1, total * k // CHECKPOINTS) for k in range(1, CHECKPOINTS)}
    seq = client.shown_seq()
    for drawn in replay:
        if drawn in marks:
            seq = client.wait_for_answer_after(seq)
            if shot and drawn == max(marks):
                client.shot(shot)
    client.page.wait_for_function("document.querySelector('#bars').dataset.state !== 'empty'")
    return client.seqs()


def point_count(strokes: list[np.ndarray]) -> int:
    return sum(len(s) for s in strokes)


def assert_ink_under_pointer(client: Client, strokes: list[np.ndarray]) -> None:
    """The ink's bounding box is where the pointer went (as fractions of the canvas).

    Predictions cannot catch a wrong coordinate mapping (the server normalises position and
    size), so this compares the canvas pixels with the replayed points directly.
    """
    ink = client.page.evaluate(INK_BOX)
    points = np.concatenate(strokes) / CANVAS_SIZE
    half = ink["pen"] / 2
    expected = np.concatenate([points.min(axis=0) - half, points.max(axis=0) + half])
    assert np.allclose(ink["box"], expected, atol=0.02), (ink, expected.tolist())


def assert_empty_reading(client: Client) -> None:
    assert client.attr("#bars", "data-state") == "empty"
    values = client.page.eval_on_selector_all(
        "#bars [role=progressbar]", "bars => bars.map(b => b.getAttribute('aria-valuenow'))"
    )
    assert values == ["0"] * 10
    assert client.page.locator("#result").is_hidden()


# ------------------------------------------------------------------------------- tests


def test_mouse_drawing_streams_predicts_undoes_and_clears(browser, eventlet_server, pick):
    digit, strokes = pick(3, 2, 5, 8, 0)
    client = Client(browser, eventlet_server.url, **DESKTOP)
    page = client.page
    try:
        # Empty canvas: nothing recognised (never a default digit).
        assert_empty_reading(client)
        assert client.page.locator("#guess-text").inner_text() == "Nothing drawn yet"
        assert page.locator("#predict").is_disabled()

        total = point_count(strokes) + len(strokes)
        replay = mouse_replay(client, strokes)
        seqs = draw_with_live_answers(client, replay, total, shot="desktop-drawing")
        distinct = [s for s, _ in itertools.groupby(seqs)]
        assert len(distinct) >= 3, f"bars updated only for seqs {distinct} while drawing"
        assert distinct == sorted(set(distinct)), f"bars went back in time: {distinct}"
        assert client.strokes() == len(strokes)
        assert_ink_under_pointer(client, strokes)
        assert page.locator("[role=progressbar][aria-valuenow]").count() == 10

        assert client.predict_and_read() == digit
        assert page.locator("#result-top li").count() == 3
        preview = page.locator("#result-input")
        assert preview.get_attribute("src").startswith("data:image/png;base64,")
        size = page.eval_on_selector("#result-input", "i => [i.naturalWidth, i.naturalHeight]")
        assert size == [28, 28]
        assert page.locator("#announce").inner_text().startswith(f"Prediction: {digit}")
        client.shot("desktop-predicted")

        # Undo: an extra stroke along the empty bottom band, then Ctrl+Z removes exactly it.
        band = (0.88, 1.0)
        assert client.ink(*band) == 0
        seq = client.shown_seq()
        extra = [np.array([[60.0, 262.0], [140.0, 263.0], [220.0, 262.0]])]
        list(mouse_replay(client, extra))
        assert client.strokes() == len(strokes) + 1 and client.ink(*band) > 0
        assert page.locator("#result").is_hidden()  # the drawing changed: old answer gone
        seq = client.wait_for_answer_after(seq)
        page.keyboard.press("Control+z")
        assert client.strokes() == len(strokes) and client.ink(*band) == 0
        assert client.ink() > 0
        client.wait_for_answer_after(seq)  # undo re-sends the snapshot
        assert client.predict_and_read() == digit

        # Clear (Esc): canvas pixels, bars and result all empty, and stale answers ignored.
        page.keyboard.press("Escape")
        assert client.strokes() == 0 and client.ink() == 0
        assert_empty_reading(client)
        page.wait_for_timeout(300)  # any answer still in flight must not repaint the bars
        assert_empty_reading(client)
        page.keyboard.press("Enter")  # nothing to predict
        assert page.locator("#result").is_hidden()
        assert client.errors == []
    finally:
        client.close()


def phone(width: int, height: int, scheme: str = "dark") -> dict:
    return {
        "viewport": {"width": width, "height": height},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
        "color_scheme": scheme,
    }


def steady_check(client: Client, scroll_y: float) -> Callable[[], None]:
    """A check for touch_replay: the page has not moved and the live bars are in view."""

    def check() -> None:
        state = client.page.evaluate(STEADY)
        assert state["scrollY"] == scroll_y, f"a stroke scrolled the page: {state}"
        assert state["overflow"] <= 0, f"the page sticks out sideways: {state}"
        assert state["barsOnScreen"], f"the live bars are off screen while drawing: {state}"

    return check


def test_touch_drawing_on_a_phone_does_not_scroll_the_page(browser, eventlet_server, pick):
    """Predict, Clear, Undo and a new stroke never move the page under the finger."""
    digit, strokes = pick(7, 4, 1, 9, 6)
    client = Client(browser, eventlet_server.url, **MOBILE)
    page = client.page
    try:
        crisp = page.eval_on_selector(
            "#pad", "c => [c.width, c.height, Math.round(c.clientWidth * devicePixelRatio)]"
        )
        assert crisp[0] == crisp[2] == crisp[1], f"backing store not sized by DPR: {crisp}"
        assert page.evaluate("document.documentElement.scrollHeight > innerHeight")
        page.evaluate("window.scrollTo(0, 30)")  # a page someone has scrolled a little
        before = page.evaluate("scrollY")
        assert before == 30
        check = steady_check(client, before)

        total = point_count(strokes) + len(strokes)
        seqs = draw_with_live_answers(
            client, touch_replay(client, strokes, check), total, shot="mobile-drawing"
        )
        assert len(set(seqs)) >= 3
        assert client.strokes() == len(strokes)
        assert_ink_under_pointer(client, strokes)

        page.tap("#predict")
        assert client.read_result() == digit
        check()  # Predict shows the answer without scrolling to it
        client.shot("mobile-predicted")
        page.tap("#undo")
        check()
        if client.strokes():
            page.tap("#clear")
            check()
        assert client.strokes() == 0
        assert_empty_reading(client)

        # The stroke right after Clear is where the page used to jump under the finger.
        seq = client.shown_seq()
        list(touch_replay(client, strokes, check))
        client.wait_for_answer_after(seq)
        check()
        page.tap("#predict")
        assert client.read_result() == digit
        check()

        # The rest of the page still scrolls by touch: only the canvas swallows gestures.
        page.evaluate("window.scrollTo(0, 0)")
        footer = page.locator(".foot").bounding_box()
        y = min(footer["y"] + 5, 820)
        touch_swipe(client, 195, y, y - 300)
        page.wait_for_function("scrollY > 0")
        assert client.errors == []
    finally:
        client.close()


@pytest.mark.parametrize("screen", PHONES)
def test_phone_screens_keep_the_live_reading_in_view(browser, eventlet_server, digits, screen):
    """Digit after digit, each with Predict then Clear, no scrolling back by hand: the ten
    bars stay on screen during every stroke, the page never scrolls, nothing sticks out."""
    client = Client(browser, eventlet_server.url, **phone(*PHONES[screen], scheme="light"))
    page = client.page
    try:
        check = steady_check(client, 0)
        check()
        for digit in sorted(digits)[:3]:
            seq = client.shown_seq()
            list(touch_replay(client, digits[digit], check))
            client.wait_for_answer_after(seq)
            check()
            page.tap("#predict")
            assert client.read_result() == digit
            check()
            page.tap("#clear")
            check()
        client.shot(f"phone-{screen}")
        assert client.errors == []
    finally:
        client.close()


def test_a_scribble_is_shown_as_not_a_digit(browser, eventlet_server, scribble_drawing):
    """The live reading and Predict say "not a digit", the bars stay (dimmed), and the
    model's view is still shown."""
    client = Client(browser, eventlet_server.url, **DESKTOP)
    page = client.page
    try:
        list(mouse_replay(client, scribble_drawing))
        page.wait_for_function("document.querySelector('#bars').dataset.state === 'reject'")
        assert page.locator("#guess").get_attribute("data-state") == "reject"
        assert page.locator("#guess-text").inner_text() == "Not a digit"
        shown = page.eval_on_selector_all(
            "#bars [role=progressbar]", "bars => bars.map(b => Number(b.ariaValueNow))"
        )
        assert sum(shown) > 0, "the closest digits' bars should stay visible"
        page.keyboard.press("Enter")
        page.wait_for_function("document.querySelector('#result').dataset.state === 'reject'")
        assert page.locator("#result-note").is_visible()
        assert "doesn't look like a digit" in page.locator("#result-note").inner_text()
        assert page.locator("#result-label").inner_text().lower() == "not a digit"
        src = page.locator("#result-input").get_attribute("src")
        assert src.startswith("data:image/png;base64,")
        assert page.locator("#announce").inner_text().startswith("That doesn't look like a digit")
        client.shot("desktop-not-a-digit")
        page.keyboard.press("Escape")
        assert page.locator("#guess-text").inner_text() == "Nothing drawn yet"
        assert client.errors == []
    finally:
        client.close()


def test_number_mode_reads_a_written_number_live_and_on_predict(
    browser, eventlet_server, number_drawing
):
    label, strokes = number_drawing
    client = Client(browser, eventlet_server.url, **DESKTOP)
    page = client.page
    try:
        page.click(".mode[data-mode=number]")
        assert page.locator(".mode[data-mode=number]").get_attribute("aria-checked") == "true"
        wide = page.locator("#pad").bounding_box()
        assert wide["width"] > 2 * wide["height"], f"number mode has no wide pad: {wide}"
        list(mouse_replay(client, strokes, place=client.fit_to_pad))
        expect_text(page, "#guess-digit", label)  # the number, live, before Predict
        assert page.locator("#parts .part").count() == len(label)
        page.locator("#parts .part").first.click()  # a digit's own bars
        assert page.locator("#parts .part").first.get_attribute("aria-checked") == "true"
        assert page.locator("#bars").get_attribute("data-state") in ("sure", "unsure")
        page.click("#predict")  # Enter would press the focused digit chip
        page.wait_for_function(
            "n => document.querySelector('#result').dataset.number === n", arg=label
        )
        views = page.locator("#result-parts li img")
        assert views.count() == len(label)
        assert all(
            views.nth(i).get_attribute("src").startswith("data:image/png;base64,")
            for i in range(len(label))
        )
        assert page.locator("#announce").inner_text().startswith("Number:")
        client.shot("desktop-number")
        page.click(".mode[data-mode=digit]")  # back to one digit: a fresh, square pad
        assert client.strokes() == 0
        square = page.locator("#pad").bounding_box()
        assert abs(square["width"] - square["height"]) < 2
        assert client.errors == []
    finally:
        client.close()


def test_number_mode_on_a_phone_keeps_the_reading_in_view(browser, eventlet_server, number_drawing):
    label, strokes = number_drawing
    client = Client(browser, eventlet_server.url, **phone(360, 800, scheme="light"))
    page = client.page
    try:
        page.tap(".mode[data-mode=number]")
        check = steady_check(client, 0)
        list(touch_replay(client, strokes, check, place=client.fit_to_pad))
        expect_text(page, "#guess-digit", label)
        check()
        page.tap("#predict")
        page.wait_for_function(
            "n => document.querySelector('#result').dataset.number === n", arg=label
        )
        check()
        client.shot("phone-number")
        assert client.errors == []
    finally:
        client.close()


@pytest.mark.skipif(not AXE.exists(), reason="axe-core missing: run scripts/setup.sh dev")
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violations_in_any_state(
    browser, eventlet_server, digits, unsure_drawing, scribble_drawing, scheme
):
    """axe-core (from npm, injected by the test) in each state the page can be in."""
    digit = sorted(digits)[0]
    failures = {}
    for name, options in (("desktop", DESKTOP), ("phone", phone(390, 844))):
        options = {**options, "color_scheme": scheme, "reduced_motion": "reduce"}
        client = Client(browser, eventlet_server.url, **options)
        page = client.page

        def audit(state: str, client: Client = client, name: str = name) -> None:
            client.page.add_script_tag(path=str(AXE))
            found = client.page.evaluate(AXE_SERIOUS)
            if found:
                failures[f"{name}/{state}"] = found

        try:
            audit("empty")
            replay = (touch_replay if name == "phone" else mouse_replay)(client, digits[digit])
            for drawn in replay:  # audit mid-stroke, with the pad in its drawing state
                if drawn == 8:
                    page.wait_for_function(
                        "document.querySelector('#bars').dataset.state !== 'empty'"
                    )
                    audit("drawing")
            page.keyboard.press("Enter")
            client.read_result()
            audit("predicted")
            page.keyboard.press("Escape")
            list(mouse_replay(client, unsure_drawing))
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelector('#result').dataset.state === 'unsure'")
            audit("unsure")
            page.keyboard.press("Escape")
            list(mouse_replay(client, scribble_drawing))
            page.keyboard.press("Enter")
            page.wait_for_function("document.querySelector('#result').dataset.state === 'reject'")
            assert page.locator("#bars").get_attribute("data-state") == "reject"
            audit("not a digit")
            client.context.set_offline(True)
            client.expect_state("offline")
            list(mouse_replay(client, digits[digit]))
            assert page.locator("#guess").get_attribute("data-state") == "waiting"
            audit("offline")
            client.shot(f"axe-{name}-{scheme}-offline")
        finally:
            client.close()
    assert not failures, failures


def test_ink_follows_the_pointer_when_css_scales_the_canvas(browser, eventlet_server, pick):
    digit, strokes = pick(4, 6, 9, 0)
    client = Client(browser, eventlet_server.url, **DESKTOP)
    try:
        client.page.eval_on_selector(
            ".pad-frame",
            "f => { f.style.transformOrigin = '0 0'; f.style.transform = 'scale(0.6)'; }",
        )
        box = client.page.locator("#pad").bounding_box()
        assert box["width"] < 0.7 * client.page.eval_on_selector("#pad", "c => c.clientWidth")
        list(mouse_replay(client, strokes))  # aimed at the on-screen (scaled) box
        assert_ink_under_pointer(client, strokes)
        assert client.predict_and_read() == digit
        assert client.errors == []
    finally:
        client.close()


def test_two_people_drawing_at_once_get_their_own_answers(browser, eventlet_server, pick):
    first, first_strokes = pick(2, 3, 8)
    second, second_strokes = pick(7, 1, 4)
    assert first != second
    alice = Client(browser, eventlet_server.url, **DESKTOP)
    bob = Client(browser, eventlet_server.url, **DESKTOP)
    try:
        # Interleave the two hands point by point: both sessions stream at the same time.
        for _ in itertools.zip_longest(
            mouse_replay(alice, first_strokes), mouse_replay(bob, second_strokes)
        ):
            pass
        for client, digit in ((alice, first), (bob, second)):
            client.page.wait_for_function(
                "d => document.querySelector('#bars').dataset.digit === String(d)", arg=digit
            )
        alice.page.keyboard.press("Enter")
        bob.page.keyboard.press("Enter")
        assert (alice.read_result(), bob.read_result()) == (first, second)
        assert alice.errors == [] and bob.errors == []
    finally:
        alice.close()
        bob.close()


def test_page_reconnects_after_server_restart_and_predicts_again(
    browser, live_server_factory, tmp_path, pick
):
    digit, strokes = pick(5, 3, 2, 0)
    server: LiveServer = live_server_factory(ASYNC_MODE="eventlet")
    client = Client(browser, server.url, **DESKTOP)
    restarted: LiveServer | None = None
    try:
        list(mouse_replay(client, strokes))
        client.page.wait_for_function("document.querySelector('#bars').dataset.state !== 'empty'")
        seq = client.shown_seq()

        server.stop()  # SIGTERM, as an operator or orchestrator would
        client.expect_state("reconnecting")
        assert client.page.locator("#predict").is_disabled()

        restarted = start_server(tmp_path, port=server.port, ASYNC_MODE="eventlet")
        client.expect_state("live")
        # The drawing is re-sent to the new server without any user action.
        client.wait_for_answer_after(seq)
        assert client.strokes() == len(strokes)
        assert client.predict_and_read() == digit
        assert client.errors == []
    finally:
        client.close()
        if restarted is not None:
            restarted.stop()


def test_page_refused_by_a_full_server_joins_when_a_place_frees(browser, live_server_factory, pick):
    digit, strokes = pick(0, 6, 8)
    server = live_server_factory(ASYNC_MODE="eventlet", MAX_SESSIONS="1")
    first = Client(browser, server.url, **DESKTOP)
    second = Client(browser, server.url, live=False, **DESKTOP)
    try:
        notice = second.page.locator("#notice")
        notice.wait_for(state="visible")  # the server's refusal, in words
        assert "too many sessions" in notice.inner_text()
        assert second.attr("#conn", "data-state") in ("connecting", "offline")
        assert second.page.locator("#predict").is_disabled()
        first.close()  # a place frees up: the refused page retries by itself
        second.wait_live()
        list(mouse_replay(second, strokes))
        assert second.predict_and_read() == digit
        assert second.errors == []
    finally:
        first.close()
        second.close()
