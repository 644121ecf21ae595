// The network: LSTM/GRU/RNN layers and the head, with the matrix-vector kernel.

const GATES = { lstm: 4, gru: 3, rnn: 1 };
const KINDS = {
  lstm: ["hidden", "cell", "input", "forget", "output"],
  gru: ["hidden", "cell", "reset", "update"],
  rnn: ["hidden", "cell"],
};
const sigmoid = (x) => 1 / (1 + Math.exp(-x));
const pad8 = (n) => (n + 7) & ~7; // rows are padded with zeros to whole SIMD steps

function dot(w, wo, v, n) {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (let i = 0; i < n; i += 4) {
    s0 += w[wo + i] * v[i];
    s1 += w[wo + i + 1] * v[i + 1];
    s2 += w[wo + i + 2] * v[i + 2];
    s3 += w[wo + i + 3] * v[i + 3];
  }
  return s0 + s1 + (s2 + s3);
}

/** Where the float32 arrays live and how a matrix meets a vector: WebAssembly SIMD
 * (a kernel this file assembles, 4 lanes, float32 sums) where the browser has it,
 * else plain JavaScript (float64 sums). Arrays are allocated once, up front. */
class Arena {
  constructor(floats, useWasm) {
    this.used = 0;
    this.kernel = null;
    try { // a page's Content-Security-Policy may forbid WebAssembly, or memory run short
      const module = useWasm ? simdModule() : null;
      if (module) {
        this.memory = new WebAssembly.Memory({ initial: Math.ceil((4 * floats) / 65536) + 1 });
        this.kernel = new WebAssembly.Instance(module, { env: { mem: this.memory } }).exports.matvec;
      }
    } catch (e) {
      this.kernel = null;
    }
    this.kind = this.kernel ? "wasm-simd" : "js";
  }
  alloc(n) {
    const a = this.kernel ? new Float32Array(this.memory.buffer, 4 * this.used, n) : new Float32Array(n);
    this.used += pad8(n);
    return a;
  }
  /** out (rows) = W (rows × cols, row-major, cols a multiple of 8) · x (cols) */
  matvec(w, x, out) {
    const rows = out.length, cols = x.length;
    if (this.kernel) return this.kernel(w.byteOffset, x.byteOffset, out.byteOffset, rows, cols);
    for (let r = 0; r < rows; r++) out[r] = dot(w, r * cols, x, cols);
  }
}

function leb(n) {
  const out = [];
  do {
    let b = n & 127;
    n >>>= 7;
    if (n) b |= 128;
    out.push(b);
  } while (n);
  return out;
}

/** A WebAssembly module with one function, matvec(w, x, out, rows, cols) over byte
 * offsets into the imported memory: two f32x4 sums per row, 8 columns a turn. Written
 * out here as bytes, so the page needs no compiler and downloads nothing. */
function simdModule() {
  if (typeof WebAssembly !== "object") return null;
  const list = (items) => [...leb(items.length), ...items.flat()];
  const sized = (a) => [...leb(a.length), ...a];
  const name = (s) => sized(Array.from(s, (c) => c.charCodeAt(0)));
  const get = (i) => [0x20, i], set = (i) => [0x21, i], tee = (i) => [0x22, i], i32 = (n) => [0x41, n];
  const simd = (op) => [0xfd, ...leb(op)], load = (offset) => [...simd(0x00), 2, offset];
  const zero = [...simd(0x0c), ...new Array(16).fill(0)];
  const add4 = simd(0xe4), mul4 = simd(0xe6), lane = (k) => [...simd(0x1f), k];
  const [W, X, OUT, ROWS, COLS, XP, END, A0, A1] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const code = [
    0x02, 0x40, 0x03, 0x40, // block, loop over rows
    ...get(ROWS), 0x45, 0x0d, 1, // no rows left: out
    ...zero, ...set(A0), ...zero, ...set(A1),
    ...get(X), ...set(XP),
    ...get(X), ...get(COLS), ...i32(2), 0x74, 0x6a, ...set(END), // end = x + 4 cols
    0x03, 0x40, // loop over columns, 8 a turn
    ...get(A0), ...get(W), ...load(0), ...get(XP), ...load(0), ...mul4, ...add4, ...set(A0),
    ...get(A1), ...get(W), ...load(16), ...get(XP), ...load(16), ...mul4, ...add4, ...set(A1),
    ...get(W), ...i32(32), 0x6a, ...set(W),
    ...get(XP), ...i32(32), 0x6a, ...tee(XP), ...get(END), 0x49, 0x0d, 0,
    0x0b,
    ...get(OUT), // out[r] = the 8 partial sums added up
    ...get(A0), ...get(A1), ...add4, ...tee(A0), ...lane(0), ...get(A0), ...lane(1), 0x92,
    ...get(A0), ...lane(2), ...get(A0), ...lane(3), 0x92, 0x92,
    0x38, 2, 0,
    ...get(OUT), ...i32(4), 0x6a, ...set(OUT),
    ...get(ROWS), ...i32(1), 0x6b, ...set(ROWS),
    0x0c, 0, 0x0b, 0x0b, 0x0b,
  ];
  const body = [...list([[2, 0x7f], [2, 0x7b]]), ...code];
  const section = (id, items) => [id, ...sized(list(items))];
  const bytes = Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [[0x60, 5, 0x7f, 0x7f, 0x7f, 0x7f, 0x7f, 0]]),
    ...section(2, [[...name("env"), ...name("mem"), 0x02, 0x00, 1]]),
    ...section(3, [[0]]),
    ...section(7, [[...name("matvec"), 0x00, 0]]),
    ...section(10, [sized(body)]),
  ]);
  return WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
}

/** A padded copy of a (rows × cols) matrix, cols rounded up to a multiple of 8. */
function padRows(arena, m, rows, cols) {
  const width = pad8(cols), out = arena.alloc(rows * width);
  for (let r = 0; r < rows; r++) out.set(m.subarray(r * cols, (r + 1) * cols), r * width);
  return out;
}

class Layer {
  constructor(arena, cell, inputs, hidden, t) {
    const rows = GATES[cell] * hidden;
    Object.assign(this, { arena, cell, hidden });
    this.wx = padRows(arena, t.w_ih, rows, inputs);
    this.wh = padRows(arena, t.w_hh, rows, hidden);
    [this.bx, this.bh] = [t.b_ih, t.b_hh];
    this.gx = arena.alloc(rows); // W_ih x
    this.gh = arena.alloc(rows); // W_hh h
    this.gates = new Float32Array(rows); // after their nonlinearity, for a trace
    this.hPad = arena.alloc(pad8(hidden)); // h, and zeros up to a multiple of 8
    this.h = this.hPad.subarray(0, hidden);
    this.c = new Float32Array(cell === "lstm" ? hidden : 0);
  }
  reset() { this.hPad.fill(0); this.c.fill(0); }
  /** Read x (padded); h (and c) move on. */
  step(x) {
    const { hidden: H, gx, gh, bx, bh, gates, h, c } = this;
    this.arena.matvec(this.wx, x, gx);
    this.arena.matvec(this.wh, this.hPad, gh);
    const pre = (k) => bx[k] + gx[k] + (bh[k] + gh[k]); // gate row k before its nonlinearity
    if (this.cell === "lstm") {
      for (let u = 0; u < H; u++) {
        const i = (gates[u] = sigmoid(pre(u))), f = (gates[H + u] = sigmoid(pre(H + u)));
        const g = (gates[2 * H + u] = Math.tanh(pre(2 * H + u))), o = (gates[3 * H + u] = sigmoid(pre(3 * H + u)));
        c[u] = f * c[u] + i * g;
        h[u] = o * Math.tanh(c[u]);
      }
    } else if (this.cell === "gru") {
      for (let u = 0; u < H; u++) {
        const r = (gates[u] = sigmoid(pre(u))), z = (gates[H + u] = sigmoid(pre(H + u)));
        const n = Math.tanh(bx[2 * H + u] + gx[2 * H + u] + r * (bh[2 * H + u] + gh[2 * H + u]));
        h[u] = (1 - z) * n + z * h[u];
      }
    } else {
      for (let u = 0; u < H; u++) h[u] = Math.tanh(pre(u));
    }
  }
  /** The values a trace asks for, after this step. */
  values(kind) {
    const H = this.hidden;
    const at = { input: 0, forget: 1, output: 3, reset: 0, update: 1 }[kind];
    if (kind === "hidden" || (kind === "cell" && this.cell !== "lstm")) return this.h;
    if (kind === "cell") return this.c;
    if (at === undefined || !KINDS[this.cell].includes(kind)) {
      throw new CharrnnError(`a ${this.cell.toUpperCase()} has no ${kind} values; choose one of ${KINDS[this.cell].join(", ")}`);
    }
    return this.gates.subarray(at * H, (at + 1) * H);
  }
}

class Network {
  constructor(config, tensors, { wasm = true } = {}) {
    const { cell, layers, hidden, embed, vocab_size: V } = config;
    if (!GATES[cell]) throw new CharrnnError(`this runtime cannot run a ${cell} cell`);
    Object.assign(this, { cell, hidden, embed, vocabSize: V });
    const rows = GATES[cell] * hidden, hp = pad8(hidden);
    // every array below, each rounded up to a multiple of 8
    const perLayer = rows * (pad8(Math.max(embed, hidden)) + hp) + 2 * pad8(rows) + hp;
    const floats = layers * perLayer + V * hp + pad8(V) + pad8(embed);
    this.arena = new Arena(floats, wasm);
    this.embedding = tensors.embed;
    this.x = this.arena.alloc(pad8(embed));
    this.layers = Array.from({ length: layers }, (_, l) => new Layer(this.arena, cell, l ? hidden : embed, hidden, {
      w_ih: tensors[`l${l}.w_ih`], w_hh: tensors[`l${l}.w_hh`],
      b_ih: tensors[`l${l}.b_ih`], b_hh: tensors[`l${l}.b_hh`],
    }));
    this.headW = padRows(this.arena, tensors["head.w"], V, hidden);
    this.headB = tensors["head.b"];
    this.logits = this.arena.alloc(V);
  }
  reset() { this.layers.forEach((l) => l.reset()); }
  /** A copy of the state (every layer's h and c, and the logits), and back: a call
   * that pauses keeps its own state while another call runs in the pause. */
  save() {
    return { layers: this.layers.map((l) => [l.h.slice(), l.c.slice()]), logits: this.logits.slice() };
  }
  restore(saved) {
    this.layers.forEach((l, i) => { l.h.set(saved.layers[i][0]); l.c.set(saved.layers[i][1]); });
    this.logits.set(saved.logits);
  }
  /** Read one id; the logits (V) for the next one. */
  step(id) {
    this.x.set(this.embedding.subarray(id * this.embed, (id + 1) * this.embed));
    let x = this.x;
    for (const layer of this.layers) {
      layer.step(x);
      x = layer.hPad;
    }
    this.arena.matvec(this.headW, x, this.logits);
    for (let v = 0; v < this.vocabSize; v++) this.logits[v] += this.headB[v];
    return this.logits;
  }
}
