// echopulse live viewer: ECG samples from a source go to WS /v1/stream; beats, clips and skips come back.
//
// The trace is drawn DELAYED by the measured pipeline latency (R-peak → its clip on this page, smoothed),
// so when the trace reaches a beat's R-peak its clip is already here and the echo switches to it: each
// clip plays under the beat that made it, looping at frames / RR, i.e. beating with the heart.
//
// A sample source is any object with
//   fs, lead, units      what the samples are (units: "mV", "uV" or "V"), known once open() resolves
//   rate                 stream seconds per wall-clock second (1 for a live device; the replay speed)
//   open()               async: fetch / pair / ask for permission; may throw (shown as an error)
//   start(onSamples, onEnd, onError)   call onSamples(Float32Array) with new samples as they come, onEnd()
//                        when done, onError(error) when the source fails mid-stream (a strap gone quiet)
//   stop()               stop producing (idempotent)
// ReplaySource (the bundled sample from GET /v1/sample), PolarSource (a Polar H10 over Web Bluetooth) and
// SimulatedPolarSource (the server's simulated strap, through the same PMD decoder) are the three.
// No build step, no network beyond this server.

import { bluetoothAdapterProblem, PolarSource, SimulatedPolarSource, webBluetoothProblem } from "./polar.js";

const WINDOW_S = 10;              // trace width, seconds of ECG
const CHUNK_MS = 100;             // a source's sending period
const FRAME_MS = 1000 / 30;       // the trace is redrawn at most 30 times a second (phones, batteries)
const RING_S = 60;                // seconds of samples kept for drawing (bounded memory)
const BEATS_KEPT_S = 30;          // beats older than this (behind the drawn time) are forgotten
const MAX_PENDING_CLIPS = 32;     // clips waiting for the trace to reach their beat; older ones are dropped
const DELAY_SAMPLES = 12;         // recent R-peak → clip measurements the delay is taken from
const DELAY_MARGIN_S = 0.15;      // stream seconds added to the delay so a typical clip is early, not late
const TO_MV = { mV: 1, uV: 0.001, V: 1000 };
const SKIP_REASONS = ["busy", "late", "quality", "backpressure"];
const SKIP_MARKS = { busy: "B", late: "L", quality: "Q", backpressure: "P" };
const CLOSE_TEXT = {
  1001: "closed by the server (idle)",
  1006: "connection lost",
  1008: "refused",
  1009: "message too large",
  1011: "server error",
  1013: "server busy",
};

// ---- settings from the page's URL -------------------------------------------------------------------
const query = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
const TOKEN = query.get("token") || fragment.get("token") || null;
const SPEED = (() => {
  const value = Number.parseFloat(query.get("speed") ?? "1");
  return Number.isFinite(value) && value > 0 ? Math.min(Math.max(value, 0.1), 100) : 1;
})();
const LITTLE_ENDIAN = new Uint8Array(new Float32Array([1]).buffer)[3] === 0x3f;

function here(path) {
  return new URL(path, location.href);
}

function streamUrl() {
  const url = here("v1/stream");
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = url.hash = "";
  return url.href;
}

function authHeaders() {
  return TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
}

// ---- sources --------------------------------------------------------------------------------------------
export class ReplaySource {
  constructor({ url = "v1/sample", speed = 1, chunkMs = CHUNK_MS } = {}) {
    this.kind = "replay";
    this.url = url;
    this.rate = speed;
    this.chunkMs = chunkMs;
    this.timer = null;
    this.fs = this.lead = this.units = this.samples = null;
  }

  async open() {
    const response = await fetch(here(this.url), { headers: authHeaders() });
    if (!response.ok) throw new Error(`the sample ECG: HTTP ${response.status}`);
    const body = await response.json();
    if (!(body.fs > 0) || !Array.isArray(body.samples) || body.samples.length === 0) {
      throw new Error("the sample ECG: the server sent no samples");
    }
    this.fs = body.fs;
    this.lead = body.lead || "I";
    this.units = body.units || "mV";
    this.samples = Float32Array.from(body.samples);
    this.source = body.source || "";
  }

  start(onSamples, onEnd) {
    this.stop();
    const total = this.samples.length;
    const began = performance.now();
    let sent = 0;
    const tick = () => {
      // sized by the clock, not by the tick count, so a throttled timer catches up instead of drifting
      const due = Math.min(total, Math.floor(((performance.now() - began) / 1000) * this.fs * this.rate));
      if (due > sent) {
        onSamples(this.samples.subarray(sent, due));
        sent = due;
      }
      if (sent >= total) {
        this.stop();
        onEnd?.();
      }
    };
    this.timer = setInterval(tick, this.chunkMs);
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

export const SOURCES = {
  replay: () => new ReplaySource({ speed: SPEED }),
  polar: () => new PolarSource({ onNote: noteDevice }),
  polarDemo: () => new SimulatedPolarSource({ speed: SPEED, headers: authHeaders(), onNote: noteDevice }),
};

// What a device source reports that is not an error: frames refused, gaps held flat (counted, never silent).
const deviceNotes = new Map();
function noteDevice(text) {
  const kind = text.split(":")[0];
  deviceNotes.set(kind, (deviceNotes.get(kind) || 0) + 1);
  ui.deviceNote.hidden = false;
  ui.deviceNote.textContent = [...deviceNotes].map(([k, n]) => `${k} ×${n}`).join(" · ") + ` — last: ${text}`;
}

// ---- time: stream seconds now, and the drawn (delayed) time ----------------------------------------
class StreamClock {
  reset(fs, rate) {
    this.fs = fs;
    this.rate = rate;
    this.sent = 0;
    this.anchorWall = null;
    this.ended = false;
  }

  onSent(count) {
    this.sent += count;
    this.anchorWall = performance.now();
  }

  get last() {
    return this.fs ? this.sent / this.fs : 0;
  }

  // Stream seconds "now": the last sample sent, moved on smoothly by the wall clock between chunks.
  now() {
    if (this.anchorWall === null) return 0;
    const ahead = ((performance.now() - this.anchorWall) / 1000) * this.rate;
    return this.last + (this.ended ? ahead : Math.min(ahead, 0.25 * this.rate));
  }
}

// ---- samples kept for drawing -------------------------------------------------------------------------
class SampleRing {
  constructor(capacity) {
    this.data = new Float32Array(Math.max(1, capacity));
    this.total = 0;
  }

  push(values, scale) {
    const { data } = this;
    for (let i = 0; i < values.length; i++) data[(this.total + i) % data.length] = values[i] * scale;
    this.total += values.length;
  }

  get first() {
    return Math.max(0, this.total - this.data.length);
  }

  at(index) {
    return this.data[index % this.data.length];
  }
}

// ---- the ECG canvas ---------------------------------------------------------------------------------------
class TraceView {
  constructor(canvas, onResize) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d", { alpha: false });
    this.center = 0;
    this.gain = null; // px per mV, smoothed
    const resize = () => {
      const ratio = window.devicePixelRatio || 1;
      const box = canvas.getBoundingClientRect();
      canvas.width = Math.max(1, Math.round(box.width * ratio));
      canvas.height = Math.max(1, Math.round(box.height * ratio));
      this.ratio = ratio;
      onResize?.();
    };
    new ResizeObserver(resize).observe(canvas);
    resize();
  }

  draw(ring, fs, time, beats, shownBeat) {
    const { context: g, canvas } = this;
    const drawnT = Number.isFinite(time) ? time : 0;
    const width = canvas.width;
    const height = canvas.height;
    const ratio = this.ratio;
    const start = drawnT - WINDOW_S;
    const xOf = (t) => ((t - start) / WINDOW_S) * width;

    g.fillStyle = "#03100a";
    g.fillRect(0, 0, width, height);

    // the visible samples' range, for the vertical scale
    let low = Infinity;
    let high = -Infinity;
    let first = 0;
    let last = -1;
    if (fs && ring.total > 0) {
      first = Math.max(ring.first, Math.ceil(start * fs));
      last = Math.min(ring.total - 1, Math.floor(drawnT * fs));
      for (let i = first; i <= last; i++) {
        const v = ring.at(i);
        if (v < low) low = v;
        if (v > high) high = v;
      }
    }
    if (high >= low) {
      const target = (0.72 * height) / Math.max(high - low, 0.6);
      const middle = (high + low) / 2;
      const follow = this.gain === null ? 1 : 0.06; // the scale eases to the visible range
      this.gain = (this.gain ?? target) + (target - (this.gain ?? target)) * follow;
      this.center += (middle - this.center) * follow;
    }
    const gain = this.gain ?? (0.72 * height) / 1.2;
    const yOf = (v) => height * 0.54 - (v - this.center) * gain;

    this.grid(g, width, height, start, xOf, yOf, gain, ratio);

    // the trace: every sample when they are sparse, min/max per pixel column when dense
    if (last > first) {
      g.strokeStyle = "#3ee07a";
      g.lineWidth = 1.6 * ratio;
      g.lineJoin = "round";
      g.beginPath();
      const perPixel = (last - first) / Math.max(1, xOf(last / fs) - xOf(first / fs));
      if (perPixel <= 2) {
        for (let i = first; i <= last; i++) {
          const x = xOf(i / fs);
          const y = yOf(ring.at(i));
          if (i === first) g.moveTo(x, y);
          else g.lineTo(x, y);
        }
      } else {
        let i = first;
        let column = Math.floor(xOf(first / fs));
        let started = false;
        while (i <= last) {
          let lo = Infinity;
          let hi = -Infinity;
          while (i <= last && Math.floor(xOf(i / fs)) === column) {
            const v = ring.at(i++);
            if (v < lo) lo = v;
            if (v > hi) hi = v;
          }
          if (hi >= lo) {
            if (!started) g.moveTo(column, yOf(lo));
            started = true;
            g.lineTo(column, yOf(lo));
            g.lineTo(column, yOf(hi));
          }
          column += 1;
        }
      }
      g.stroke();
      // the head of the trace
      g.fillStyle = "#b9ffd2";
      g.beginPath();
      g.arc(xOf(last / fs), yOf(ring.at(last)), 2.6 * ratio, 0, Math.PI * 2);
      g.fill();
    }

    // beat marks at the R-peaks
    g.font = `${Math.round(10 * ratio)}px ui-monospace, "SF Mono", Menlo, Consolas, monospace`;
    g.textAlign = "center";
    for (const beat of beats) {
      if (beat.t < start || beat.t > drawnT) continue;
      const x = xOf(beat.t);
      const color = beat.clip ? "#5eead4" : beat.skipped ? "#f5a524" : "#8a9aa8";
      g.strokeStyle = color;
      g.globalAlpha = 0.35;
      g.lineWidth = ratio;
      g.setLineDash([3 * ratio, 3 * ratio]);
      g.beginPath();
      g.moveTo(x, 16 * ratio);
      g.lineTo(x, height);
      g.stroke();
      g.setLineDash([]);
      g.globalAlpha = 1;
      g.fillStyle = color;
      g.beginPath();
      g.moveTo(x - 5 * ratio, 4 * ratio);
      g.lineTo(x + 5 * ratio, 4 * ratio);
      g.lineTo(x, 12 * ratio);
      g.closePath();
      g.fill();
      if (beat.index === shownBeat) {
        g.lineWidth = 1.5 * ratio;
        g.strokeStyle = "#e6fffb";
        g.stroke();
      }
      const sample = fs ? Math.round(beat.t * fs) : -1;
      if (sample >= ring.first && sample < ring.total) {
        g.beginPath();
        g.arc(x, yOf(ring.at(sample)), 3.2 * ratio, 0, Math.PI * 2);
        g.fill();
      }
      const label = beat.skipped ? SKIP_MARKS[beat.skipped] || "?" : String(beat.index);
      g.fillText(label, x, 24 * ratio);
    }
    this.calibration(g, height, gain, ratio);
  }

  grid(g, width, height, start, xOf, yOf, gain, ratio) {
    // ECG paper: a line every 0.2 s, a stronger one every second; every 0.5 mV across
    const minorX = (0.2 / WINDOW_S) * width;
    g.lineWidth = Math.max(1, ratio * 0.75);
    for (let k = Math.ceil(start / 0.2); k * 0.2 <= start + WINDOW_S; k++) {
      const x = Math.round(xOf(k * 0.2)) + 0.5;
      const major = k % 5 === 0;
      if (!major && minorX < 5 * ratio) continue;
      g.strokeStyle = major ? "rgba(62, 224, 122, 0.20)" : "rgba(62, 224, 122, 0.08)";
      g.beginPath();
      g.moveTo(x, 0);
      g.lineTo(x, height);
      g.stroke();
      if (major && k % 10 === 0 && k >= 0) {
        g.fillStyle = "rgba(150, 220, 180, 0.55)";
        g.font = `${Math.round(9 * ratio)}px ui-monospace, Menlo, Consolas, monospace`;
        g.textAlign = "left";
        g.fillText(`${k / 5} s`, x + 3 * ratio, height - 4 * ratio);
      }
    }
    // across: 0.1 mV when that is at least 6 px apart, stronger every 0.5 mV
    const fine = gain * 0.1 >= 6 * ratio;
    const step = fine ? 0.1 : 0.5;
    const bottomLevel = Math.floor((this.center - (height * 0.46) / gain) / step);
    for (let k = bottomLevel; yOf(k * step) >= 0; k++) {
      const y = Math.round(yOf(k * step)) + 0.5;
      const major = !fine || k % 5 === 0;
      g.strokeStyle = major ? "rgba(62, 224, 122, 0.20)" : "rgba(62, 224, 122, 0.07)";
      g.beginPath();
      g.moveTo(0, y);
      g.lineTo(width, y);
      g.stroke();
    }
  }

  // a calibration bar, over the trace: 1 mV, or 0.5 mV when 1 mV does not fit
  calibration(g, height, gain, ratio) {
    const mv = gain < height * 0.7 ? 1 : 0.5;
    const bar = gain * mv;
    if (bar < height * 0.8) {
      const x = 10 * ratio;
      const bottom = height - 16 * ratio;
      g.strokeStyle = "rgba(190, 240, 210, 0.7)";
      g.lineWidth = 1.5 * ratio;
      g.beginPath();
      g.moveTo(x - 4 * ratio, bottom);
      g.lineTo(x, bottom);
      g.lineTo(x, bottom - bar);
      g.lineTo(x + 4 * ratio, bottom - bar);
      g.stroke();
      const text = `${mv} mV`;
      g.font = `${Math.round(9 * ratio)}px ui-monospace, Menlo, Consolas, monospace`;
      g.textAlign = "left";
      g.fillStyle = "rgba(3, 16, 10, 0.8)";
      g.fillRect(x + 5 * ratio, bottom - bar - 2 * ratio, g.measureText(text).width + 4 * ratio, 13 * ratio);
      g.fillStyle = "rgba(190, 240, 210, 0.75)";
      g.fillText(text, x + 7 * ratio, bottom - bar + 8 * ratio);
    }
  }
}

// ---- the page ------------------------------------------------------------------------------------------
const $ = (id) => document.getElementById(id);
const ui = {
  replay: $("replay"),
  polar: $("polar"),
  polarDemo: $("polar-demo"),
  deviceNote: $("device-note"),
  stop: $("stop"),
  status: $("status"),
  error: $("error"),
  model: document.querySelector("[data-testid=model]"),
  echo: $("echo"),
  echoEmpty: $("echo-empty"),
  clipInfo: $("clip-info"),
  hr: $("hr"),
  lead: $("lead"),
  delay: $("delay"),
  speed: $("speed"),
  latency: $("latency"),
  clips: $("clips"),
  beats: $("beats"),
  beatsDrawn: $("beats-drawn"),
  clipsShown: $("clips-shown"),
  acked: $("acked"),
  skips: $("skips"),
  skipsDetail: $("skips-detail"),
};

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showError(text) {
  ui.error.hidden = !text;
  ui.error.textContent = text || "";
}

function setText(element, value) {
  const text = String(value);
  if (element.textContent !== text) element.textContent = text;
}

class Viewer {
  constructor() {
    this.trace = new TraceView($("trace"), () => {
      if (!this.looping && this.ring) this.redraw();
    });
    this.clock = new StreamClock();
    this.socket = null;
    this.source = null;
    this.looping = false;
    this.current = null; // the clip on screen
    this.resetState(null, 1);
    ui.echo.addEventListener("load", () => {
      ui.echo.hidden = false;
      ui.echoEmpty.hidden = true;
    });
  }

  resetState(fs, rate) {
    this.clock.reset(fs, rate);
    this.ring = new SampleRing(Math.ceil((fs || 1) * RING_S));
    this.fs = fs;
    this.scale = 1;
    this.beats = [];            // received beats, oldest first (pruned)
    this.undrawn = [];          // beats the trace has not reached yet
    this.beatArrived = new Map(); // beat index → wall ms of its beat event
    this.pending = [];          // clips waiting for the trace, by R-peak time
    this.expect = null;         // the clip message whose bytes come next
    this.delays = [];           // recent R-peak → clip measurements, stream seconds
    this.delay = 1.5 + 0.6 * rate;
    this.targetDelay = this.delay;
    this.drawnT = -Infinity;
    this.lastFrame = performance.now();
    this.figures = { clips: 0, beats: 0, drawn: 0, shown: 0, acked: 0, latency: null, lastLatency: null };
    this.skips = Object.fromEntries(SKIP_REASONS.map((r) => [r, 0]));
    this.started = this.stopping = this.finished = false;
    if (this.current) URL.revokeObjectURL(this.current.url);
    this.current = null;
    ui.echo.hidden = true;
    ui.echo.removeAttribute("src");
    ui.echoEmpty.hidden = false;
    ui.echoEmpty.textContent = "no clip yet";
    setText(ui.clipInfo, "—");
    setText(ui.hr, "--");
    this.renderFigures();
  }

  // ---- a session -------------------------------------------------------------------------------------
  async run(makeSource) {
    this.dropPending();
    const source = makeSource();
    this.source = source;
    setStartButtons(true);
    ui.stop.disabled = false;
    showError("");
    deviceNotes.clear();
    ui.deviceNote.hidden = true;
    const opening = { replay: "loading the sample ECG…", polar: "choose your Polar H10 in the browser's list…",
                      "polar-demo": "loading the simulated strap…" };
    setStatus("loading", opening[source.kind] || "opening the source…");
    try {
      await source.open();
    } catch (error) {
      this.fail(`could not open the source: ${error.message || error}`);
      return;
    }
    if (this.source !== source) return; // stopped meanwhile
    this.resetState(source.fs, source.rate || 1);
    this.scale = TO_MV[source.units] ?? 1;
    setText(ui.lead, `lead ${source.lead} · ${source.fs} Hz`);
    ui.speed.hidden = (source.rate || 1) === 1;
    setText(ui.speed, `replay ×${source.rate}`);
    setStatus("connecting", "connecting…");
    const protocols = TOKEN ? ["echopulse", `token.${TOKEN}`] : ["echopulse"];
    let socket;
    try {
      socket = new WebSocket(streamUrl(), protocols);
    } catch (error) {
      this.fail(`could not connect: ${error.message || error}`);
      return;
    }
    socket.binaryType = "blob";
    this.socket = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "start", fs: source.fs, lead: source.lead, units: source.units,
                                   seed: 0, clip_format: "gif" }));
    };
    socket.onmessage = (event) => this.onMessage(socket, event.data);
    socket.onclose = (event) => this.onClose(socket, event);
    this.loop();
  }

  stop() {
    const { socket, source } = this;
    source?.stop();
    if (!socket || socket.readyState !== WebSocket.OPEN || !this.started) {
      socket?.close(1000, "stopped");
      this.end("stopped");
      return;
    }
    if (this.stopping) {
      socket.close(1000, "stopped"); // a second press: do not wait for the server
      return;
    }
    this.stopping = true;
    this.clock.ended = true;
    socket.send(JSON.stringify({ type: "stop" }));
    setStatus("finishing", "finishing: waiting for the last clips…");
  }

  send(samples) {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || this.stopping) return;
    const most = Math.max(1, Math.floor(this.maxBytes / 4));
    for (let at = 0; at < samples.length; at += most) {
      const part = samples.subarray(at, Math.min(samples.length, at + most));
      socket.send(LITTLE_ENDIAN ? part : littleEndian(part));
      this.ring.push(part, this.scale);
      this.clock.onSent(part.length);
    }
  }

  onMessage(socket, data) {
    if (socket !== this.socket) return;
    if (typeof data !== "string") {
      this.onClipBytes(data);
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      showError("the server sent a message that is not JSON");
      return;
    }
    switch (message.type) {
      case "ready":
        this.started = true;
        this.maxBytes = message.max_message_bytes || 65536;
        if (!ui.model.textContent.includes(message.model)) {
          setText(ui.model, `model: ${message.model} · ${message.frames} frames`);
        }
        setStatus("streaming", `streaming · session ${message.session}`);
        this.source.start((samples) => this.send(samples), () => this.stop(), (error) => {
          showError(`the source stopped: ${error.message || error}`);
          this.stop();
        });
        break;
      case "ack":
        this.figures.acked = message.received;
        break;
      case "beat":
        this.figures.beats += 1;
        this.beatArrived.set(message.index, performance.now());
        this.beats.push({ index: message.index, t: message.t, hr: message.hr, rr: message.rr,
                          clip: false, skipped: null });
        this.undrawn.push(this.beats[this.beats.length - 1]);
        break;
      case "clip":
        this.expect = message;
        break;
      case "skipped":
        this.skips[message.reason] = (this.skips[message.reason] || 0) + 1;
        this.beatArrived.delete(message.beat);
        for (const beat of this.beats) if (beat.index === message.beat) beat.skipped = message.reason;
        break;
      case "error":
        showError(`error ${message.code}: ${message.message}`);
        break;
      case "end":
        this.figures.acked = message.received;
        this.finished = true;
        this.summary = message;
        break;
      default:
        break;
    }
    this.renderFigures();
  }

  onClipBytes(blob) {
    const message = this.expect;
    this.expect = null;
    if (!message) return;
    if (blob.size !== message.bytes) {
      showError(`clip of beat ${message.beat}: ${blob.size} bytes, expected ${message.bytes}`);
      return;
    }
    const beat = this.beats.find((b) => b.index === message.beat);
    const arrived = this.beatArrived.get(message.beat);
    this.beatArrived.delete(message.beat);
    if (arrived !== undefined) {
      const latency = performance.now() - arrived;
      this.figures.lastLatency = latency;
      const smooth = this.figures.latency;
      this.figures.latency = smooth === null ? latency : 0.8 * smooth + 0.2 * latency;
    }
    this.figures.clips += 1;
    if (!beat) return;
    beat.clip = true;
    // how far behind "now" the trace must be for this clip to have been here at its R-peak
    this.delays.push(this.clock.now() - beat.t);
    if (this.delays.length > DELAY_SAMPLES) this.delays.shift();
    const sorted = [...this.delays].sort((a, b) => a - b);
    this.targetDelay = sorted[Math.floor(0.8 * (sorted.length - 1))] + DELAY_MARGIN_S * this.clock.rate;
    if (this.current && beat.t <= this.current.t) return; // a newer clip is on screen already
    if (message.format !== "gif") return; // the viewer asks for GIF; anything else is not shown
    const url = URL.createObjectURL(new Blob([blob], { type: "image/gif" }));
    const clip = { url, t: beat.t, beat: message.beat,
                   hr: beat.hr, message };
    this.pending.push(clip);
    this.pending.sort((a, b) => a.t - b.t);
    while (this.pending.length > MAX_PENDING_CLIPS) URL.revokeObjectURL(this.pending.shift().url);
    this.renderFigures();
  }

  onClose(socket, event) {
    if (socket !== this.socket) return;
    this.source?.stop();
    this.clock.ended = true;
    if (this.finished) {
      const s = this.summary;
      this.end(`ended: ${s.beats} beats, ${s.clips} clips, ${s.skipped} skipped, ${s.received} samples`);
      return;
    }
    const what = CLOSE_TEXT[event.code] || `closed (${event.code})`;
    const why = event.reason ? `: ${event.reason}` : "";
    if (event.code === 1000 && this.stopping) this.end("stopped");
    else this.fail(`${what}${why}`);
  }

  end(text) {
    this.socket = null;
    this.source = null;
    setStartButtons(false);
    ui.stop.disabled = true;
    this.clock.ended = true;
    setStatus("ended", text);
  }

  fail(text) {
    this.end(text);
    setStatus("error", text);
    showError(text);
  }

  // ---- drawing: the delayed trace, and the clip of the beat it has reached ---------------------------
  loop() {
    if (this.looping) return;
    this.looping = true;
    let drawn = 0;
    const frame = (now) => {
      if (now - drawn >= FRAME_MS - 2) {
        drawn = now;
        this.frame();
      }
      const caughtUp = this.clock.ended && this.drawnT >= this.clock.last && this.pending.length === 0;
      if (caughtUp && !this.socket) {
        this.looping = false;
        return;
      }
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  frame() {
    const now = performance.now();
    const wall = Math.min(0.25, (now - this.lastFrame) / 1000);
    this.lastFrame = now;
    // the delay follows its target at most half the stream's speed, so the trace never jumps
    const most = 0.5 * this.clock.rate * wall;
    this.delay += Math.max(-most, Math.min(most, this.targetDelay - this.delay));
    const drawnT = Math.min(this.clock.now() - this.delay, this.clock.last);
    this.drawnT = Math.max(this.drawnT, drawnT);

    // beats the trace has reached
    while (this.undrawn.length && this.undrawn[0].t <= this.drawnT) {
      const beat = this.undrawn.shift();
      this.figures.drawn += 1;
      if (beat.hr) setText(ui.hr, Math.round(beat.hr));
    }
    while (this.beats.length && this.beats[0].t < this.drawnT - BEATS_KEPT_S) this.beats.shift();

    // the latest clip whose R-peak the trace has reached goes on screen; those it passed are dropped
    let next = null;
    while (this.pending.length && this.pending[0].t <= this.drawnT) {
      if (next) URL.revokeObjectURL(next.url);
      next = this.pending.shift();
    }
    if (next) this.show(next);

    this.redraw();
    setText(ui.delay, this.started ? `delay ${this.delay.toFixed(1)} s` : "delay —");
    this.renderFigures();
  }

  redraw() {
    this.trace.draw(this.ring, this.fs, this.drawnT, this.beats, this.current?.beat);
  }

  show(clip) {
    const previous = this.current;
    this.current = clip;
    ui.echo.src = clip.url;
    // how far (stream ms) the trace was past this beat's R-peak when its clip went on screen: ~0 when the
    // delay holds, more while it is still adapting (the first clips of a session)
    ui.echo.dataset.beat = clip.beat;
    ui.echo.dataset.lateMs = Math.round((this.drawnT - clip.t) * 1000);
    if (previous) URL.revokeObjectURL(previous.url); // the <img> no longer needs it
    this.figures.shown += 1;
    const m = clip.message;
    const hr = clip.hr ? `${Math.round(clip.hr)} bpm · ` : "";
    setText(ui.clipInfo, `beat ${m.beat} · ${hr}${m.frames} frames @ ${m.fps.toFixed(1)} fps · ` +
            `gen ${Math.round(m.generate_ms)} ms`);
    ui.clipInfo.title = `seed ${m.seed} · queued ${Math.round(m.queue_ms)} ms · ${m.width}×${m.height} px`;
  }

  dropPending() {
    for (const clip of this.pending) URL.revokeObjectURL(clip.url);
    this.pending = [];
  }

  renderFigures() {
    const f = this.figures;
    setText(ui.latency, f.latency === null ? "--" : Math.round(f.latency));
    ui.latency.title = f.lastLatency === null ? "" : `last: ${Math.round(f.lastLatency)} ms`;
    setText(ui.clips, f.clips);
    setText(ui.beats, f.beats);
    setText(ui.beatsDrawn, f.drawn);
    setText(ui.clipsShown, f.shown);
    setText(ui.acked, f.acked);
    const skipped = SKIP_REASONS.reduce((sum, r) => sum + (this.skips[r] || 0), 0);
    setText(ui.skips, skipped);
    setText(ui.skipsDetail, SKIP_REASONS.map((r) => `${r} ${this.skips[r] || 0}`).join(" · "));
  }
}

function littleEndian(samples) {
  const view = new DataView(new ArrayBuffer(samples.length * 4));
  samples.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return view.buffer;
}

async function describeModel() {
  try {
    const response = await fetch(here("v1/model"), { headers: authHeaders() });
    if (response.status === 401) {
      setText(ui.model, "model: token needed (add #token=… to the address)");
      return;
    }
    if (!response.ok) return;
    const model = await response.json();
    setText(ui.model, `model: ${model.id} · ${model.frames} frames · ${model.image_size}px · ` +
            `${model.precision} on ${model.device}`);
  } catch {
    // the header keeps its placeholder; the ready message names the model too
  }
}

function setStartButtons(disabled) {
  for (const button of [ui.replay, ui.polar, ui.polarDemo]) button.disabled = disabled;
}

// Without Web Bluetooth (Firefox, Safari, a page not on localhost or HTTPS) or without an adapter, the
// button says why and how to get it, instead of failing.
async function connectPolar() {
  const problem = await bluetoothAdapterProblem();
  if (problem) {
    ui.deviceNote.hidden = false;
    ui.deviceNote.dataset.kind = "explain";
    ui.deviceNote.textContent = problem;
    setStatus("idle", "no Polar H10 from this browser: see the note below");
    return;
  }
  viewer.run(SOURCES.polar);
}

export const viewer = new Viewer();
ui.replay.addEventListener("click", () => viewer.run(SOURCES.replay));
ui.polar.addEventListener("click", connectPolar);
ui.polarDemo.addEventListener("click", () => viewer.run(SOURCES.polarDemo));
ui.polar.title = webBluetoothProblem() ?? ui.polar.title;
ui.stop.addEventListener("click", () => viewer.stop());
window.addEventListener("pagehide", () => viewer.socket?.close(1000, "page closed"));
if (SPEED !== 1) {
  ui.speed.hidden = false;
  setText(ui.speed, `replay ×${SPEED}`);
}
describeModel();
