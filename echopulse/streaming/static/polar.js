// Polar H10 in the browser: Web Bluetooth, Polar's Measurement Data (PMD) ECG frames, and two sample sources
// for the viewer (the strap itself, and a demo that plays the server's simulated strap through the same
// decoder). The decoder mirrors echopulse/ingest/polar.py outcome for outcome; a test holds them together.
//
// An ECG data frame: byte 0 measurement type (low 6 bits, 0 = ECG); bytes 1-8 the timestamp of the frame's
// last sample (uint64 LE, ns since 2000-01-01); byte 9 frame type (top bit: compressed); then frame type 0:
// signed 24-bit LE samples in µV. The H10 sends 73 of them per frame at 130 Hz.

export const PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8";
export const PMD_CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8";
export const PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8";
export const H10_ECG_FS = 130;
export const H10_LEAD = "I";
export const MAX_GAP_S = 2; // a longer silence ends the stream; a shorter one is held flat and reported
const SILENCE_MS = 5000; // a connected strap that sends nothing this long has stopped
const H10_RESOLUTION_BITS = 14;
const HEADER_BYTES = 10;
const SAMPLE_BYTES = 3;
const GAP_TOLERANCE_SAMPLES = 2;
const OP_START = 0x02;
const OP_STOP = 0x03;
const CONTROL_STATUS = [
  "success", "invalid op code", "invalid measurement type", "not supported", "invalid length",
  "invalid parameter", "already in state", "invalid resolution", "invalid sample rate", "invalid range",
  "invalid MTU", "invalid number of channels", "invalid state", "device in charger", "disk full",
];

export class PmdFrameError extends Error {
  constructor(code, problem) {
    super(`PMD frame: ${problem}`); // the words echopulse/ingest/polar.py uses
    this.name = "PmdFrameError";
    this.code = code;
  }
}

// One PMD data notification → { timestampNs (BigInt), samples (Int32Array of µV), frameType }.
export function decodeFrame(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0,
                                                                    data.byteLength);
  if (bytes.length < HEADER_BYTES) {
    throw new PmdFrameError("short", `${bytes.length} bytes, shorter than its ${HEADER_BYTES}-byte header`);
  }
  const kind = bytes[0] & 0x3f;
  if (kind !== 0) throw new PmdFrameError("not_ecg", `measurement type ${kind}, not ECG (0)`);
  const frameType = bytes[9];
  if (frameType & 0x80) {
    throw new PmdFrameError("compressed", `compressed (type byte 0x${frameType.toString(16).padStart(2, "0")}); the H10 sends raw ECG frames only`);
  }
  if (frameType !== 0) {
    throw new PmdFrameError("frame_type", `ECG frame type ${frameType}; only type 0 (24-bit µV, the H10's) is read`);
  }
  const payload = bytes.length - HEADER_BYTES;
  if (payload === 0) throw new PmdFrameError("empty", "ECG frame without samples");
  if (payload % SAMPLE_BYTES) {
    throw new PmdFrameError("length", `${payload} sample bytes, not a multiple of ${SAMPLE_BYTES}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const timestampNs = view.getBigUint64(1, true);
  const samples = new Int32Array(payload / SAMPLE_BYTES);
  for (let i = 0, at = HEADER_BYTES; i < samples.length; i++, at += SAMPLE_BYTES) {
    const value = bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16);
    samples[i] = value >= 0x800000 ? value - 0x1000000 : value;
  }
  return { timestampNs, samples, frameType };
}

// Frames in arrival order → { samples, gap, timestampNs }; timestamps checked against the sample count.
// A refused frame leaves the stream as it was (its samples then count in the next good frame's gap).
export class EcgFrameStream {
  constructor(fs = H10_ECG_FS) {
    this.fs = fs;
    this.lastTimestampNs = null;
    this.samples = 0;
    this.gaps = 0;
    this.missing = 0;
    this.refused = {};
  }

  push(data) {
    let frame;
    let gap;
    try {
      frame = decodeFrame(data);
      gap = this.gapBefore(frame);
    } catch (error) {
      if (error instanceof PmdFrameError) this.refused[error.code] = (this.refused[error.code] || 0) + 1;
      throw error;
    }
    this.lastTimestampNs = frame.timestampNs;
    this.samples += frame.samples.length;
    if (gap) {
      this.gaps += 1;
      this.missing += gap;
    }
    return { samples: frame.samples, gap, timestampNs: frame.timestampNs };
  }

  gapBefore(frame) {
    if (this.lastTimestampNs === null) return 0;
    const elapsed = frame.timestampNs - this.lastTimestampNs;
    if (elapsed <= 0n) {
      throw new PmdFrameError("backwards", `timestamp ${frame.timestampNs} ns does not follow the previous frame's ${this.lastTimestampNs} ns`);
    }
    const implied = (Number(elapsed) * this.fs) / 1e9;
    const extra = implied - frame.samples.length;
    if (extra < -GAP_TOLERANCE_SAMPLES) {
      throw new PmdFrameError("overlap", `${frame.samples.length} samples stamped only ${implied.toFixed(1)} samples after the previous frame`);
    }
    return extra > GAP_TOLERANCE_SAMPLES ? roundHalfEven(extra) : 0;
  }
}

// Python's round(): halves go to the even neighbour, so both decoders report the same gap.
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const rest = x - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

export function ecgStartCommand(fs = H10_ECG_FS, bits = H10_RESOLUTION_BITS) {
  return new Uint8Array([OP_START, 0x00, 0x00, 0x01, fs & 0xff, fs >> 8, 0x01, 0x01, bits & 0xff, bits >> 8]);
}

export const ECG_STOP_COMMAND = new Uint8Array([OP_STOP, 0x00]);

// The control point's indication for command `op`: throws with the strap's reason unless it succeeded.
export function checkControlResponse(data, op) {
  const bytes = new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength);
  if (bytes.length < 4 || bytes[0] !== 0xf0 || bytes[1] !== op) {
    throw new Error(`the strap answered command ${op} with something that is not a PMD response`);
  }
  const status = bytes[3];
  if (status !== 0) {
    throw new Error(`the strap refused PMD command ${op}: ${CONTROL_STATUS[status] ?? `status ${status}`}`);
  }
}

// Why this page cannot reach a strap, in words a person can act on; null when Web Bluetooth is here.
export function webBluetoothProblem(nav = navigator, secure = window.isSecureContext) {
  if (!secure) {
    return "Web Bluetooth needs a secure page: open the viewer on http://localhost (on this computer) or " +
      "over HTTPS, in Chrome or Edge.";
  }
  if (!nav.bluetooth || typeof nav.bluetooth.requestDevice !== "function") {
    return "This browser has no Web Bluetooth (Firefox and Safari do not offer it): use Chrome or Edge on a " +
      "computer or Android phone to connect a Polar H10, or press “Polar demo” to see a simulated strap.";
  }
  return null;
}

// The same, once the API is here: whether the browser can reach a Bluetooth adapter at all.
export async function bluetoothAdapterProblem(nav = navigator) {
  const problem = webBluetoothProblem(nav);
  if (problem) return problem;
  try {
    if (typeof nav.bluetooth.getAvailability === "function" && !(await nav.bluetooth.getAvailability())) {
      return "This browser has Web Bluetooth but no Bluetooth adapter it can use: turn Bluetooth on (or " +
        "plug in an adapter) and try again.";
    }
  } catch {
    // no answer is not a refusal: requestDevice will say what is wrong
  }
  return null;
}

// Turns decoded blocks into the samples sent on: a short gap is held at the last value (and counted, so it
// is never silent), a long one ends the stream.
class GapFiller {
  constructor(fs, onGap) {
    this.fs = fs;
    this.last = 0;
    this.onGap = onGap;
  }

  samples(block) {
    let out;
    if (block.gap > 0) {
      if (block.gap > MAX_GAP_S * this.fs) {
        throw new Error(`the strap's ECG stopped for ${(block.gap / this.fs).toFixed(1)} s (more than ${MAX_GAP_S} s)`);
      }
      out = new Float32Array(block.gap + block.samples.length);
      out.fill(this.last, 0, block.gap);
      out.set(block.samples, block.gap);
      this.onGap?.(block.gap);
    } else {
      out = Float32Array.from(block.samples);
    }
    if (block.samples.length) this.last = block.samples[block.samples.length - 1];
    return out;
  }
}

// The strap itself, over Web Bluetooth.
export class PolarSource {
  constructor({ onNote } = {}) {
    this.kind = "polar";
    this.fs = H10_ECG_FS;
    this.lead = H10_LEAD;
    this.units = "uV";
    this.rate = 1;
    this.onNote = onNote;
    this.device = this.control = this.data = null;
    this.stream = new EcgFrameStream(this.fs);
    this.listening = null;
  }

  async open() {
    const problem = webBluetoothProblem();
    if (problem) throw new Error(problem);
    this.device = await navigator.bluetooth.requestDevice({
      filters: [{ services: [PMD_SERVICE] }, { namePrefix: "Polar H10" }],
      optionalServices: [PMD_SERVICE],
    });
    const server = await this.device.gatt.connect();
    const service = await server.getPrimaryService(PMD_SERVICE);
    this.control = await service.getCharacteristic(PMD_CONTROL);
    this.data = await service.getCharacteristic(PMD_DATA);
    await this.control.startNotifications(); // indications: the strap's answers to commands
  }

  async command(bytes) {
    const op = bytes[0];
    const answer = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("the strap did not answer within 5 s")), 5000);
      const listener = (event) => {
        clearTimeout(timer);
        this.control.removeEventListener("characteristicvaluechanged", listener);
        try {
          checkControlResponse(event.target.value, op);
          resolve();
        } catch (error) {
          reject(error);
        }
      };
      this.control.addEventListener("characteristicvaluechanged", listener);
    });
    await this.control.writeValueWithResponse(bytes);
    return answer;
  }

  start(onSamples, onEnd, onError) {
    const filler = new GapFiller(this.fs, (n) => this.onNote?.(`gap: ${n} samples lost, held flat`));
    let lastFrame = performance.now();
    this.watchdog = setInterval(() => {
      if (performance.now() - lastFrame > SILENCE_MS) {
        this.stop();
        onError?.(new Error(`the strap sent no ECG for ${SILENCE_MS / 1000} s: check the electrodes' contact`));
      }
    }, 1000);
    this.listening = (event) => {
      lastFrame = performance.now();
      let block;
      try {
        block = this.stream.push(event.target.value);
      } catch (error) {
        this.onNote?.(`frame refused: ${error.message}`);
        return;
      }
      try {
        onSamples(filler.samples(block));
      } catch (error) {
        this.stop();
        onError?.(error);
      }
    };
    this.data.addEventListener("characteristicvaluechanged", this.listening);
    this.onDisconnect = () => onError?.(new Error("the strap disconnected"));
    this.device.addEventListener("gattserverdisconnected", this.onDisconnect);
    const begin = async () => {
      await this.data.startNotifications();
      try {
        await this.command(ecgStartCommand());
      } catch (error) {
        // a strap still streaming from an earlier session: stop it, then start again
        if (!String(error.message).includes("already in state")) throw error;
        this.onNote?.("restart: the strap was already streaming, stopped and started again");
        await this.command(ECG_STOP_COMMAND);
        await this.command(ecgStartCommand());
      }
    };
    begin().catch((error) => onError?.(error));
  }

  stop() {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    if (this.device && this.onDisconnect) this.device.removeEventListener("gattserverdisconnected", this.onDisconnect);
    if (this.data && this.listening) this.data.removeEventListener("characteristicvaluechanged", this.listening);
    this.listening = null;
    if (this.device?.gatt?.connected) {
      this.control?.writeValueWithResponse(ECG_STOP_COMMAND).catch(() => {})
        .finally(() => this.device.gatt.disconnect());
    }
  }
}

// The server's simulated strap (GET v1/sample/pmd): the frames an H10 would send for the bundled sample,
// paced at their own timestamps and read by the same decoder as the real thing.
export class SimulatedPolarSource {
  constructor({ url = "v1/sample/pmd", speed = 1, headers = {}, onNote } = {}) {
    this.kind = "polar-demo";
    this.url = url;
    this.fs = H10_ECG_FS;
    this.lead = H10_LEAD;
    this.units = "uV";
    this.rate = speed;
    this.headers = headers;
    this.onNote = onNote;
    this.frames = [];
    this.timer = null;
  }

  async open() {
    const response = await fetch(new URL(this.url, location.href), { headers: this.headers });
    if (!response.ok) throw new Error(`the simulated strap: HTTP ${response.status}`);
    this.frames = splitFrames(new Uint8Array(await response.arrayBuffer()));
    if (!this.frames.length) throw new Error("the simulated strap sent no frames");
  }

  start(onSamples, onEnd, onError) {
    this.stop();
    const stream = new EcgFrameStream(this.fs);
    const filler = new GapFiller(this.fs, (n) => this.onNote?.(`gap: ${n} samples lost, held flat`));
    const first = decodeFrame(this.frames[0]);
    const startNs = first.timestampNs - BigInt(Math.round(((first.samples.length - 1) * 1e9) / this.fs));
    const began = performance.now();
    let next = 0;
    const tick = () => {
      const streamNs = BigInt(Math.floor(((performance.now() - began) / 1000) * this.rate * 1e9));
      while (next < this.frames.length) {
        const frame = this.frames[next];
        const stamp = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getBigUint64(1, true);
        if (stamp - startNs > streamNs) break;
        next += 1;
        try {
          onSamples(filler.samples(stream.push(frame)));
        } catch (error) {
          if (error instanceof PmdFrameError) {
            this.onNote?.(`frame refused: ${error.message}`);
            continue;
          }
          this.stop();
          onError?.(error);
          return;
        }
      }
      if (next >= this.frames.length) {
        this.stop();
        onEnd?.();
      }
    };
    this.timer = setInterval(tick, 50);
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

// The demo's body: per frame a uint16 LE length, then the frame.
export function splitFrames(body) {
  const frames = [];
  for (let at = 0; at + 2 <= body.length;) {
    const length = body[at] | (body[at + 1] << 8);
    at += 2;
    if (at + length > body.length) break;
    frames.push(body.subarray(at, at + length));
    at += length;
  }
  return frames;
}
