// Digit Live browser client: pointer drawing, throttled snapshot streaming, live bars.
// Vanilla JS, no build step. The Socket.IO client is served by the app at /vendor/.
"use strict";

(() => {
  // Send at most one snapshot every THROTTLE_MS while the pen moves (protocol asks for 80-100 ms).
  // The server's snapshot_max_hz (from `ready`) can only make the gaps longer.
  const THROTTLE_MS = 90;
  // Backpressure: the next snapshot waits for the answer to the previous one, but never longer.
  const ANSWER_TIMEOUT_MS = 1000;
  const PREDICT_TIMEOUT_MS = 5000;
  // Below this confidence the page says "not sure" instead of pretending to know.
  const UNSURE_BELOW = 0.6;
  // A reconnect that has not succeeded after this long is shown as offline (it keeps retrying).
  const OFFLINE_AFTER_MS = 8000;
  // Points closer than this (CSS px) to the previous one add payload but no shape.
  const MIN_STEP_PX = 1.5;
  // Number mode: at most this many parts are shown (the server bounds them too).
  const MAX_PARTS = 32;
  // Used until the server's `ready` tells the real limits; conservative on purpose.
  const DEFAULT_LIMITS = { max_strokes: 64, max_points: 2048 };

  const $ = (sel) => document.querySelector(sel);
  const canvas = $("#pad");
  const frame = $("#pad-frame");
  const ctx = canvas.getContext("2d");
  const els = {
    conn: $("#conn"),
    connLabel: $("#conn-label"),
    rtt: $("#rtt"),
    undo: $("#undo"),
    clear: $("#clear"),
    predict: $("#predict"),
    guess: $("#guess"),
    guessDigit: $("#guess-digit"),
    guessText: $("#guess-text"),
    guessConf: $("#guess-conf"),
    bars: $("#bars"),
    result: $("#result"),
    resultLabel: $("#result-label"),
    resultNote: $("#result-note"),
    resultParts: $("#result-parts"),
    parts: $("#parts"),
    modes: document.querySelectorAll(".mode"),
    canvas,
    resultDigit: $("#result-digit"),
    resultConfidence: $("#result-confidence"),
    resultTop: $("#result-top"),
    resultInput: $("#result-input"),
    resultHint: $("#result-hint"),
    announce: $("#announce"),
    notice: $("#notice"),
    modelInfo: $("#model-info"),
  };

  // ---------------------------------------------------------------- drawing state
  /** Strokes in CSS pixels of the canvas (x right, y down): exactly what the server receives. */
  let strokes = [];
  let active = null; // { id, points } of the one pointer that is drawing
  let cssW = 0;
  let cssH = 0;
  let limits = { ...DEFAULT_LIMITS };
  let minGapMs = 0; // the server's per-session snapshot rate cap, as a gap; stroke ends respect it
  let mode = "digit"; // "digit": one digit; "number": a whole number, read digit by digit
  let parts = []; // number mode: the digits the server found, left to right (validated)
  let selectedPart = -1; // number mode: whose bars are shown (-1: the last one)

  /** A colour of the current theme (style.css custom properties). */
  function themeColor(name, fallback) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
  }

  function inkColor() {
    return themeColor("--ink", "#111");
  }

  function lineWidth() {
    return Math.max(6, Math.min(cssW, cssH) * 0.045);
  }

  /** Size the backing store by devicePixelRatio (crisp ink) and keep strokes in CSS px. */
  function resizeCanvas() {
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    if (cssW && cssH && (w !== cssW || h !== cssH)) {
      const sx = w / cssW;
      const sy = h / cssH;
      strokes = strokes.map((s) => s.map(([x, y]) => [round1(x * sx), round1(y * sy)]));
      if (active) active.points = strokes[strokes.length - 1];
    }
    cssW = w;
    cssH = h;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    ctx.setTransform(canvas.width / w, 0, 0, canvas.height / h, 0, 0);
    redraw();
  }

  function styleContext() {
    ctx.strokeStyle = ctx.fillStyle = inkColor();
    ctx.lineWidth = lineWidth();
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
  }

  function redraw() {
    ctx.clearRect(0, 0, cssW, cssH);
    styleContext();
    for (const s of strokes) drawStroke(s);
    drawBoxes();
  }

  /** Number mode: a faint box around each group of strokes the server read as one digit. */
  function drawBoxes() {
    if (mode !== "number" || !parts.length) return;
    const accent = themeColor("--accent", "#5b5bd6");
    const bad = themeColor("--bad", "#d0463b");
    ctx.save();
    ctx.lineWidth = 1.5;
    ctx.setLineDash([5, 4]);
    parts.forEach((part, i) => {
      const [x0, y0, x1, y1] = part.box;
      const pad = lineWidth() / 2 + 3;
      ctx.globalAlpha = i === shownPart() ? 0.8 : 0.35;
      ctx.strokeStyle = part.verdict === "not_a_digit" ? bad : accent;
      ctx.strokeRect(x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad);
    });
    ctx.restore();
    styleContext();
  }

  /** Quadratic curves through the midpoints: smooth ink without extra points on the wire. */
  function drawStroke(pts) {
    if (pts.length === 1) return drawDot(pts[0]);
    ctx.beginPath();
    ctx.moveTo(pts[0][0], pts[0][1]);
    for (let i = 1; i < pts.length - 1; i++) {
      const mx = (pts[i][0] + pts[i + 1][0]) / 2;
      const my = (pts[i][1] + pts[i + 1][1]) / 2;
      ctx.quadraticCurveTo(pts[i][0], pts[i][1], mx, my);
    }
    const last = pts[pts.length - 1];
    ctx.lineTo(last[0], last[1]);
    ctx.stroke();
  }

  function drawDot([x, y]) {
    ctx.beginPath();
    ctx.arc(x, y, ctx.lineWidth / 2, 0, Math.PI * 2);
    ctx.fill();
  }

  /** Draw only the newest piece of a stroke; opaque ink makes the small overlap invisible. */
  function drawTail(pts) {
    const n = pts.length;
    if (n < 2) return;
    const mid = (a, b) => [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
    const start = n > 2 ? mid(pts[n - 3], pts[n - 2]) : pts[0];
    const end = mid(pts[n - 2], pts[n - 1]);
    ctx.beginPath();
    ctx.moveTo(start[0], start[1]);
    ctx.quadraticCurveTo(pts[n - 2][0], pts[n - 2][1], end[0], end[1]);
    ctx.lineTo(pts[n - 1][0], pts[n - 1][1]);
    ctx.stroke();
  }

  function round1(v) {
    return Math.round(v * 10) / 10;
  }

  /** Pointer position in canvas CSS px, correct under CSS transforms/zoom of the page. */
  function pointOf(e) {
    const r = canvas.getBoundingClientRect();
    const x = ((e.clientX - r.left) * cssW) / r.width;
    const y = ((e.clientY - r.top) * cssH) / r.height;
    return [round1(Math.min(Math.max(x, 0), cssW)), round1(Math.min(Math.max(y, 0), cssH))];
  }

  function totalPoints() {
    let n = 0;
    for (const s of strokes) n += s.length;
    return n;
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (active || (e.pointerType === "mouse" && e.button !== 0)) return;
    if (strokes.length >= limits.max_strokes) {
      showNotice(`That is ${limits.max_strokes} strokes, the most one drawing may have. Undo or clear.`);
      return;
    }
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    const points = [pointOf(e)];
    active = { id: e.pointerId, points };
    strokes.push(points);
    frame.classList.add("drawing");
    styleContext();
    drawDot(points[0]);
    drawingChanged();
    markDirty(false);
  });

  canvas.addEventListener("pointermove", (e) => {
    if (!active || e.pointerId !== active.id) return;
    const batch = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    let added = false;
    for (const ev of batch.length ? batch : [e]) {
      if (totalPoints() >= limits.max_points) break;
      const p = pointOf(ev);
      const last = active.points[active.points.length - 1];
      if (Math.hypot(p[0] - last[0], p[1] - last[1]) < MIN_STEP_PX) continue;
      active.points.push(p);
      drawTail(active.points);
      added = true;
    }
    if (added) markDirty(false);
  });

  function endStroke(e) {
    if (!active || e.pointerId !== active.id) return;
    active = null;
    frame.classList.remove("drawing");
    markDirty(true); // every stroke end is sent without waiting for the throttle
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("lostpointercapture", endStroke);
  // A finger resting mid-stroke is a long press: no context menu over the drawing.
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());

  new ResizeObserver(resizeCanvas).observe(canvas);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redraw);
  // devicePixelRatio changes (browser zoom, moving the window to another screen) resize the store.
  (function watchDpr() {
    const mq = window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`);
    mq.addEventListener("change", () => (resizeCanvas(), watchDpr()), { once: true });
  })();

  // ---------------------------------------------------------------- actions
  function drawingChanged() {
    const has = strokes.length > 0;
    canvas.dataset.strokes = String(strokes.length);
    frame.classList.toggle("has-ink", has);
    els.undo.disabled = !has;
    els.clear.disabled = !has;
    updatePredictButton();
    hideResult();
    settlePredict(); // an answer about the previous drawing must not show up now
    if (!has) resetReading();
    else if (!socket.connected) showWaiting();
  }

  function updatePredictButton() {
    els.predict.disabled = strokes.length === 0 || !socket.connected;
  }

  function undo() {
    if (!strokes.length || active) return;
    strokes.pop();
    redraw();
    drawingChanged();
    markDirty(true); // the server re-reads the drawing without its last stroke
  }

  function clearAll() {
    if (active) return;
    strokes = [];
    parts = [];
    selectedPart = -1;
    redraw();
    drawingChanged();
    dirty = false;
    const seq = nextSeq();
    shownSeq = seq; // answers about the old drawing are now stale
    if (socket.connected) socket.emit("clear", { seq });
    announce("Cleared");
  }

  function predict() {
    if (!strokes.length) return showNotice("Draw a digit first.");
    if (!socket.connected) return showNotice("Not connected yet; try again in a moment.");
    if (pendingPredict) return; // one at a time: the answer is on its way
    const seq = nextSeq();
    pendingPredict = { seq, timer: setTimeout(predictTimedOut, PREDICT_TIMEOUT_MS) };
    els.predict.setAttribute("aria-busy", "true");
    socket.emit("predict", payload(seq));
  }

  function predictTimedOut() {
    settlePredict();
    showNotice("No answer from the server. Try Predict again.");
  }

  /** Forget the pending predict (answered, failed, timed out, or about an old drawing). */
  function settlePredict() {
    if (!pendingPredict) return;
    clearTimeout(pendingPredict.timer);
    pendingPredict = null;
    els.predict.removeAttribute("aria-busy");
  }

  /** Digit or Number: a new kind of drawing, so the pad starts empty (its shape changes). */
  function setMode(next) {
    if (next === mode || active) return;
    clearAll();
    mode = next;
    document.body.dataset.mode = mode;
    els.modes.forEach((b) => b.setAttribute("aria-checked", String(b.dataset.mode === mode)));
    els.parts.hidden = mode !== "number";
    els.canvas.setAttribute(
      "aria-label",
      mode === "number"
        ? "Drawing area: write a whole number, digit after digit, left to right"
        : "Drawing area: draw one digit from 0 to 9 with a mouse, finger or pen",
    );
    frame.querySelector(".pad-hint").textContent =
      mode === "number" ? "Write a number here" : "Draw a digit here";
    resetReading();
  }
  els.modes.forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));

  els.undo.addEventListener("click", undo);
  els.clear.addEventListener("click", clearAll);
  els.predict.addEventListener("click", predict);

  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || e.isComposing || e.repeat) return;
    if (e.key === "Enter") {
      // A focused button already handles Enter as its own click.
      if (e.target.closest && e.target.closest("button, a, input, textarea, select")) return;
      e.preventDefault();
      predict();
    } else if (e.key === "Escape") {
      clearAll();
    } else if ((e.ctrlKey || e.metaKey) && !e.shiftKey && !e.altKey && e.key.toLowerCase() === "z") {
      e.preventDefault();
      undo();
    }
  });

  // ---------------------------------------------------------------- streaming
  let seqCounter = 0;
  let shownSeq = 0; // newest seq whose answer is on screen (or that reset the screen)
  let dirty = false; // drawing changed since the last snapshot sent
  let urgent = false; // a stroke ended: send without waiting for the throttle
  let inFlight = null; // { seq, timer } of the one unanswered snapshot
  let lastSendAt = -Infinity;
  let throttleTimer = null;
  let pendingPredict = null;
  const sentAt = new Map(); // seq -> performance.now(), for the round-trip display

  function nextSeq() {
    seqCounter += 1;
    sentAt.set(seqCounter, performance.now());
    if (sentAt.size > 64) sentAt.delete(sentAt.keys().next().value);
    return seqCounter;
  }

  function payload(seq) {
    const message = { seq, strokes, width: cssW, height: cssH };
    if (mode === "number") message.mode = "number";
    return message;
  }

  function markDirty(isUrgent) {
    dirty = true;
    urgent = urgent || isUrgent;
    pump();
  }

  /** Send the newest drawing if nothing is in flight and the throttle allows it. */
  function pump() {
    if (!dirty || inFlight || !socket.connected) return;
    const gap = urgent ? minGapMs : Math.max(THROTTLE_MS, minGapMs);
    const wait = lastSendAt + gap - performance.now();
    if (wait > 0) {
      if (!throttleTimer) throttleTimer = setTimeout(() => ((throttleTimer = null), pump()), wait);
      return;
    }
    clearTimeout(throttleTimer);
    throttleTimer = null;
    const seq = nextSeq();
    dirty = false;
    urgent = false;
    lastSendAt = performance.now();
    inFlight = { seq, timer: setTimeout(() => release(seq), ANSWER_TIMEOUT_MS) };
    socket.emit("snapshot", payload(seq));
  }

  /** The answer (or error, or timeout) for `seq` frees the single in-flight slot. */
  function release(seq) {
    if (!inFlight || seq < inFlight.seq) return;
    clearTimeout(inFlight.timer);
    inFlight = null;
    pump();
  }

  function showRtt(seq) {
    const t0 = sentAt.get(seq);
    if (t0 === undefined) return;
    sentAt.delete(seq);
    els.rtt.textContent = `${Math.max(1, Math.round(performance.now() - t0))} ms`;
  }

  // ---------------------------------------------------------------- rendering answers
  const bars = [];
  for (let d = 0; d < 10; d++) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-label", `Digit ${d}`);
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "100");
    bar.setAttribute("aria-valuenow", "0");
    bar.dataset.digit = String(d);
    bar.innerHTML =
      '<span class="bar-pct"></span><span class="bar-track"><span class="bar-fill"></span></span>' +
      `<span class="bar-digit" aria-hidden="true">${d}</span>`;
    els.bars.appendChild(bar);
    bars.push({
      el: bar,
      pct: bar.querySelector(".bar-pct"),
      fill: bar.querySelector(".bar-fill"),
    });
  }

  function pctText(p) {
    return p >= 0.995 ? "100%" : p < 0.005 ? "" : `${Math.round(p * 100)}%`;
  }

  /** Validated copy of the ten probabilities, or null: never trust what arrives over the wire. */
  function probsOf(msg) {
    const probs = msg && msg.probabilities;
    if (msg.empty || msg.verdict === "empty" || !Array.isArray(probs) || probs.length !== 10) {
      return null;
    }
    return probs.map((p) => (Number.isFinite(p) ? Math.min(Math.max(p, 0), 1) : 0));
  }

  /** The server's "not a digit" verdict, with how sure it is (0..1). */
  function rejectionOf(msg) {
    if (msg.verdict !== "not_a_digit") return null;
    const c = Number.isFinite(msg.confidence) ? Math.min(Math.max(msg.confidence, 0), 1) : 0;
    return { confidence: c };
  }

  function argmax(a) {
    let best = 0;
    for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
    return best;
  }

  function setBars(probs, lead) {
    bars.forEach((b, d) => {
      const p = probs ? probs[d] : 0;
      b.fill.style.transform = `scaleY(${p})`;
      b.pct.textContent = probs ? pctText(p) : "";
      b.el.setAttribute("aria-valuenow", String(Math.round(p * 100)));
      b.el.classList.toggle("lead", d === lead);
    });
  }

  function resetReading() {
    parts = [];
    els.parts.replaceChildren();
    setBars(null, -1);
    els.bars.dataset.state = "empty";
    delete els.bars.dataset.digit;
    els.guess.dataset.state = "empty";
    els.guessDigit.textContent = "–";
    els.guessConf.textContent = "";
    els.guessText.textContent = strokes.length ? "Reading…" : "Nothing drawn yet";
    if (strokes.length && !socket.connected) showWaiting();
  }

  /** Ink but no server: say that the reading comes back by itself, instead of a stale one. */
  function showWaiting() {
    els.guess.dataset.state = "waiting";
    els.bars.dataset.state = "waiting";
    els.guessDigit.textContent = "…";
    els.guessConf.textContent = "";
    els.guessText.textContent =
      els.conn.dataset.state === "offline"
        ? "Offline. Read when back online"
        : "Reconnecting. Read again soon";
  }

  /** "a 7" but "an 8". */
  function withArticle(d) {
    return `${d === 8 ? "an" : "a"} ${d}`;
  }

  /** Live reading: bars plus the short verdict next to them. Returns the shown probabilities. */
  function showReading(msg) {
    els.bars.dataset.seq = String(msg.seq);
    if (msg.mode === "number") return showNumberReading(msg);
    const probs = probsOf(msg);
    if (!probs) {
      resetReading();
      return null;
    }
    const rejected = rejectionOf(msg);
    if (rejected) {
      // The bars stay, dimmed: the closest digits are still worth seeing.
      setBars(probs, -1);
      els.bars.dataset.state = "reject";
      delete els.bars.dataset.digit;
      els.guess.dataset.state = "reject";
      els.guessDigit.textContent = "✕";
      els.guessConf.textContent = `${Math.round(rejected.confidence * 100)}%`;
      els.guessText.textContent = "Not a digit";
      return probs;
    }
    const lead = argmax(probs);
    const conf = probs[lead];
    const sure = conf >= UNSURE_BELOW;
    setBars(probs, lead);
    els.bars.dataset.state = sure ? "sure" : "unsure";
    els.bars.dataset.digit = String(lead);
    els.guess.dataset.state = sure ? "sure" : "unsure";
    els.guessConf.textContent = `${Math.round(conf * 100)}%`;
    if (sure) {
      els.guessDigit.textContent = String(lead);
      els.guessText.textContent = `Looks like ${withArticle(lead)}`;
    } else {
      const second = argmax(probs.map((p, i) => (i === lead ? -1 : p)));
      els.guessDigit.textContent = "?";
      els.guessText.textContent = `Not sure: ${lead} or ${second}?`;
    }
    return probs;
  }

  /** Validated parts of a number-mode answer, or null: never trust what arrives. */
  function partsOf(msg) {
    if (!Array.isArray(msg.digits) || msg.digits.length > MAX_PARTS) return null;
    const out = [];
    for (const d of msg.digits) {
      if (!d || typeof d !== "object") return null;
      const box = Array.isArray(d.box) && d.box.length === 4 && d.box.every(Number.isFinite);
      const probs = probsOf(d);
      if (!box || !probs) return null;
      const verdict = d.verdict === "not_a_digit" ? "not_a_digit" : "digit";
      const digit = Number.isInteger(d.digit) && d.digit >= 0 && d.digit <= 9 ? d.digit : null;
      const c = Number.isFinite(d.confidence) ? Math.min(Math.max(d.confidence, 0), 1) : 0;
      const input =
        typeof d.input === "string" && d.input.startsWith("data:image/png;base64,")
          ? d.input
          : null;
      out.push({ box: d.box, probs, verdict, digit, confidence: c, input });
    }
    return out;
  }

  function shownPart() {
    return selectedPart >= 0 && selectedPart < parts.length ? selectedPart : parts.length - 1;
  }

  function partLabel(part) {
    return part.verdict === "digit" && part.digit !== null ? String(part.digit) : "✕";
  }

  /** Number mode: the number so far, one chip per digit, the selected digit's bars, and the
   * boxes on the pad. Returns the parts shown, or null when there is nothing to show. */
  function showNumberReading(msg) {
    const found = partsOf(msg);
    if (!found || !found.length) {
      resetReading();
      redraw();
      return null;
    }
    parts = found;
    const text = parts.map(partLabel).join("");
    const complete = parts.every((p) => p.verdict === "digit" && p.digit !== null);
    els.guess.dataset.state = complete ? "sure" : "reject";
    els.guessDigit.textContent = text;
    els.guessConf.textContent = "";
    els.guessText.textContent = complete
      ? `${parts.length} digit${parts.length === 1 ? "" : "s"}`
      : "A part is not a digit";
    els.parts.replaceChildren(
      ...parts.map((part, i) => {
        const chip = document.createElement("button");
        chip.type = "button";
        chip.className = "part";
        chip.setAttribute("role", "radio");
        chip.dataset.verdict = part.verdict;
        chip.innerHTML = '<span class="part-digit"></span><span class="part-pct"></span>';
        chip.querySelector(".part-digit").textContent = partLabel(part);
        chip.querySelector(".part-pct").textContent = `${Math.round(part.confidence * 100)}%`;
        chip.setAttribute(
          "aria-label",
          `Digit ${i + 1}: ${part.verdict === "digit" ? part.digit : "not a digit"}`,
        );
        chip.addEventListener("click", () => {
          selectedPart = i;
          showPart();
        });
        return chip;
      }),
    );
    showPart();
    return parts;
  }

  /** The selected (or last) part's bars, its chip marked, its box stronger. */
  function showPart() {
    const i = shownPart();
    const part = parts[i];
    if (!part) return;
    els.parts.querySelectorAll(".part").forEach((chip, j) => {
      chip.setAttribute("aria-checked", String(j === i));
    });
    const rejected = part.verdict !== "digit";
    setBars(part.probs, rejected ? -1 : argmax(part.probs));
    els.bars.dataset.state = rejected
      ? "reject"
      : part.confidence >= UNSURE_BELOW
        ? "sure"
        : "unsure";
    redraw();
  }

  function showNumberResult(found) {
    const complete = found.every((p) => p.verdict === "digit" && p.digit !== null);
    const weakest = Math.min(...found.map((p) => (p.verdict === "digit" ? p.confidence : 0)));
    els.result.dataset.state = complete ? (weakest >= UNSURE_BELOW ? "sure" : "unsure") : "reject";
    els.result.dataset.number = found.map(partLabel).join("");
    delete els.result.dataset.digit;
    els.resultNote.hidden = complete;
    els.resultNote.textContent = "A part of it doesn't look like a digit (marked ✕).";
    els.resultLabel.textContent = complete ? "Number" : "Not a number";
    els.resultDigit.textContent = found.map(partLabel).join("");
    els.resultConfidence.textContent = complete
      ? `${found.length} digits, least sure ${Math.round(weakest * 100)}%`
      : "";
    els.resultParts.replaceChildren(
      ...found.map((part) => {
        const li = document.createElement("li");
        li.dataset.verdict = part.verdict;
        li.innerHTML =
          '<img class="seen-img" width="28" height="28" alt="" /><span class="rp-digit"></span>' +
          '<span class="rp-pct"></span>';
        const img = li.querySelector("img");
        if (part.input) {
          img.src = part.input;
          img.alt = `What the model saw of digit ${partLabel(part)}`;
        } else img.hidden = true;
        li.querySelector(".rp-digit").textContent = partLabel(part);
        li.querySelector(".rp-pct").textContent = `${Math.round(part.confidence * 100)}%`;
        return li;
      }),
    );
    els.resultParts.hidden = false;
    els.result.hidden = false;
    els.resultHint.hidden = true;
    announce(
      complete
        ? `Number: ${found.map(partLabel).join(" ")}.`
        : "A part of that doesn't look like a digit.",
    );
  }

  function showResult(msg, probs) {
    if (msg.mode === "number") return showNumberResult(probs);
    const rejected = rejectionOf(msg);
    const lead = argmax(probs);
    const conf = probs[lead];
    const sure = conf >= UNSURE_BELOW;
    delete els.result.dataset.number;
    els.resultParts.hidden = true;
    els.resultNote.textContent =
      "That doesn't look like a digit. The closest digits, and what the model saw:";
    els.result.dataset.state = rejected ? "reject" : sure ? "sure" : "unsure";
    if (rejected) delete els.result.dataset.digit;
    else els.result.dataset.digit = String(lead);
    els.resultNote.hidden = !rejected;
    els.resultTop.setAttribute("aria-label", rejected ? "Closest digits" : "Top three guesses");
    if (rejected) {
      const pct = Math.round(rejected.confidence * 100);
      els.resultLabel.textContent = "Not a digit";
      els.resultDigit.textContent = "✕";
      els.resultConfidence.textContent = `${pct}% sure`;
    } else {
      els.resultLabel.textContent = sure ? "Prediction" : "Best guess";
      els.resultDigit.textContent = String(lead);
      els.resultConfidence.textContent = sure
        ? `${Math.round(conf * 100)}% sure`
        : `Not sure (${Math.round(conf * 100)}%)`;
    }
    const top = probs
      .map((p, d) => ({ d, p }))
      .sort((a, b) => b.p - a.p)
      .slice(0, 3);
    els.resultTop.replaceChildren(
      ...top.map(({ d, p }) => {
        const li = document.createElement("li");
        li.innerHTML =
          '<span class="t-digit"></span><span class="t-track"><span class="t-fill"></span></span>' +
          '<span class="t-pct"></span>';
        li.querySelector(".t-digit").textContent = String(d);
        li.querySelector(".t-fill").style.width = `${(p * 100).toFixed(1)}%`;
        li.querySelector(".t-pct").textContent =
          p < 0.001 ? "<0.1%" : `${(p * 100).toFixed(p < 0.1 ? 1 : 0)}%`;
        return li;
      }),
    );
    const input = typeof msg.input === "string" && msg.input.startsWith("data:image/png;base64,");
    els.resultInput.hidden = !input;
    if (input) els.resultInput.src = msg.input;
    // No scrolling to the result: on a phone that would move the pad away from the finger.
    // The live strip above the pad already shows the final digit.
    els.result.hidden = false;
    els.resultHint.hidden = true;
    announce(
      rejected
        ? `That doesn't look like a digit (${Math.round(rejected.confidence * 100)} percent sure).`
        : sure
          ? `Prediction: ${lead}, ${Math.round(conf * 100)} percent confident.`
          : `Not sure. Best guess ${lead}, ${Math.round(conf * 100)} percent.`,
    );
  }

  function hideResult() {
    els.result.hidden = true;
    els.resultHint.hidden = false;
  }

  function announce(text) {
    els.announce.textContent = text;
  }

  let noticeTimer = null;
  function showNotice(text) {
    els.notice.textContent = text;
    els.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => (els.notice.hidden = true), 4000);
  }

  // ---------------------------------------------------------------- connection
  // WebSocket first (no sticky sessions needed behind a proxy); fall back to polling if blocked.
  const socket = io({
    transports: ["websocket", "polling"],
    tryAllTransports: true,
    reconnectionDelay: 300,
    reconnectionDelayMax: 2000,
    timeout: 5000,
  });
  let everConnected = false;
  let downSince = null; // when the connection was lost; long enough ago means "offline"
  let offlineTimer = null;

  function setConn(state) {
    const labels = {
      connecting: "Connecting…",
      live: "Live",
      reconnecting: "Reconnecting…",
      offline: "Offline",
    };
    els.conn.dataset.state = state;
    els.connLabel.textContent = labels[state];
    if (state !== "live") els.rtt.textContent = "";
    updatePredictButton();
    if (state !== "live" && strokes.length) showWaiting();
  }

  function connectionLost(firstState) {
    if (downSince === null) downSince = performance.now();
    const stale = performance.now() - downSince >= OFFLINE_AFTER_MS || !navigator.onLine;
    setConn(stale ? "offline" : firstState);
    if (!offlineTimer && !stale) {
      offlineTimer = setTimeout(() => {
        offlineTimer = null;
        if (!socket.connected) setConn("offline");
      }, OFFLINE_AFTER_MS);
    }
  }

  /** Answers for the old connection will never come: free the in-flight slot and pending predict. */
  function dropOutstanding() {
    if (inFlight) clearTimeout(inFlight.timer);
    inFlight = null;
    settlePredict();
  }

  socket.on("connect", () => {
    everConnected = true;
    downSince = null;
    clearTimeout(offlineTimer);
    offlineTimer = null;
    setConn("live");
    dropOutstanding();
    if (strokes.length) markDirty(true); // the new server session starts from our drawing
  });

  socket.on("disconnect", (reason) => {
    dropOutstanding();
    connectionLost("reconnecting");
    // The server closing the session on purpose stops auto-reconnect; come back anyway.
    if (!socket.active && reason !== "io client disconnect") setTimeout(() => socket.connect(), 1000);
  });

  socket.on("connect_error", (err) => {
    connectionLost(everConnected ? "reconnecting" : "connecting");
    // A refusal by the server (server_full, shutting_down...) stops auto-reconnect: retry
    // later, with jitter so that a full server is not hit by everyone at the same moment.
    if (!socket.active) {
      if (err && err.data && typeof err.data.message === "string") showNotice(err.data.message);
      setTimeout(() => socket.connect(), 2000 + Math.random() * 3000);
    }
  });
  socket.io.on("reconnect_attempt", () => connectionLost("reconnecting"));
  // The browser knows about a lost network long before the socket's ping times out.
  window.addEventListener("offline", () => setConn("offline"));
  window.addEventListener("online", () => {
    if (socket.connected) setConn("live");
    else socket.connect();
  });

  socket.on("ready", (msg) => {
    if (msg && msg.limits && typeof msg.limits === "object") {
      for (const key of Object.keys(DEFAULT_LIMITS)) {
        const v = msg.limits[key];
        if (Number.isInteger(v) && v > 0) limits[key] = v;
      }
      const hz = msg.limits.snapshot_max_hz;
      minGapMs = Number.isFinite(hz) && hz > 0 ? 1000 / hz : 0;
    }
    const m = msg && msg.model;
    if (m && m.name) {
      const acc = Number.isFinite(m.test_accuracy)
        ? ` · ${(m.test_accuracy * 100).toFixed(2)}% on MNIST test`
        : "";
      const version = m.version ? ` (${String(m.version).slice(0, 12)})` : "";
      els.modelInfo.textContent = `Model ${m.name}${version}${acc}`;
    }
  });

  socket.on("probabilities", (msg) => {
    if (!msg || !Number.isInteger(msg.seq)) return;
    release(msg.seq);
    showRtt(msg.seq);
    if (msg.seq < shownSeq) return; // an older drawing's answer arrived late
    shownSeq = msg.seq;
    showReading(msg);
  });

  socket.on("prediction", (msg) => {
    if (!msg || !Number.isInteger(msg.seq)) return;
    release(msg.seq); // the server never answers snapshots older than an answered predict
    showRtt(msg.seq);
    if (!pendingPredict || msg.seq !== pendingPredict.seq) return; // not for this drawing
    settlePredict();
    shownSeq = msg.seq;
    const shown = showReading(msg);
    if (shown) showResult(msg, shown);
    else showNotice("The canvas is empty: draw a digit first.");
  });

  socket.on("cleared", (msg) => {
    if (!msg || !Number.isInteger(msg.seq)) return;
    release(msg.seq); // snapshots older than a clear are dropped, never answered
    showRtt(msg.seq);
  });

  socket.on("error", (msg) => {
    if (!msg || typeof msg !== "object") return;
    if (Number.isInteger(msg.seq)) {
      release(msg.seq);
      sentAt.delete(msg.seq);
      if (pendingPredict && msg.seq === pendingPredict.seq) settlePredict();
    }
    showNotice(typeof msg.message === "string" ? msg.message : "The server could not read that.");
  });

  resizeCanvas();
  drawingChanged();
  setConn("connecting");
})();
