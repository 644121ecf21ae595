// charrnn's browser runtime: a trained charrnn model, run in plain JavaScript.
//
// One classic script (no modules, no fetch), so a page opened from file:// can use it,
// and the same source runs in a Web Worker: `charrnnRuntime` is the whole runtime, and
// its own source text (Function.prototype.toString) is what the worker is made from.
// It defines one global, `charrnn`. The weights come from `charrnn export` (model.js)
// or from `charrnn serve`; see docs/export.md for the format and the API.
//
// The forward step follows charrnn/inference.py's SingleStep and PyTorch's gate order:
// LSTM i, f, g, o; GRU r, z, n. Weights are float32 typed arrays, one row per output
// unit, allocated once; the step reuses its buffers.
"use strict";

function charrnnRuntime(scope) {
  const FORMAT = "charrnn-web";
  const META = "\u2581"; // SentencePiece's stand-in for a space
  const REPLACEMENT = "\ufffd";
  const PIECE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 };
  const UNK_PENALTY = 10; // SentencePiece: an unknown piece scores 10 below the worst piece
  const PACK_BASE = 0x3000; // weights in a script: 15 bits per UTF-16 unit, from U+3000
  const YIELD_MS = 25; // long work gives the event loop a turn this often, so Stop is heard

  class CharrnnError extends Error {}

  // ------------------------------------------------------------------ weights

  /** The bytes packed by charrnn/export/pack.py: each UTF-16 unit holds 15 bits. */
  function unpackText(text, byteLength) {
    const out = new Uint8Array(byteLength);
    let acc = 0, bits = 0, n = 0;
    for (let i = 0; i < text.length && n < byteLength; i++) {
      acc = (acc << 15) | (text.charCodeAt(i) - PACK_BASE);
      bits += 15;
      while (bits >= 8 && n < byteLength) {
        bits -= 8;
        out[n++] = (acc >>> bits) & 255;
      }
      acc &= (1 << bits) - 1;
    }
    if (n !== byteLength) throw new CharrnnError("the weights are cut short");
    return out;
  }

  function halfToFloat(h) {
    const sign = h & 0x8000 ? -1 : 1, exp = (h >> 10) & 31, frac = h & 1023;
    if (exp === 0) return sign * frac * 2 ** -24;
    if (exp === 31) return frac ? NaN : sign * Infinity;
    return sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }

  /** A tensor of the manifest as float32, dequantised exactly as export/weights.py does. */
  function readTensor(bytes, t) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = new Float32Array(count);
    if (t.dtype === "f32") {
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(t.offset + 4 * i, true);
    } else if (t.dtype === "f16") {
      for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(t.offset + 2 * i, true));
    } else if (t.dtype === "i8") {
      const cols = t.shape[t.shape.length - 1];
      for (let r = 0; r < count / cols; r++) {
        const scale = view.getFloat32(t.scales + 4 * r, true);
        for (let c = 0; c < cols; c++) out[r * cols + c] = view.getInt8(t.offset + r * cols + c) * scale;
      }
    } else {
      throw new CharrnnError(`unknown weight type ${t.dtype}`);
    }
    return out;
  }

  // ------------------------------------------------------------------ text

  function prepare(text, vocab) {
    if (!vocab.keep_line_ends) text = text.replace(/\r\n?/g, "\n");
    if (vocab.normalize && vocab.normalize !== "none") text = text.normalize(vocab.normalize.toUpperCase());
    return text;
  }

  const utf8 = (text) => new TextEncoder().encode(text);
  const codePoints = (text) => Array.from(text);
  const show = (c) => JSON.stringify(c);

  class CharTokenizer {
    constructor(vocab) {
      this.symbols = codePoints(vocab.chars);
      this.ids = new Map(this.symbols.map((c, i) => [c, i]));
      this.unkId = vocab.unk ? this.symbols.length : -1;
      if (vocab.unk) this.symbols.push(REPLACEMENT);
      this.special = vocab.unk ? [this.unkId] : [];
      this.tokenBytes = this.symbols.map(utf8);
    }
    unknown(text) {
      if (this.unkId >= 0) return [];
      return [...new Set(codePoints(text).filter((c) => !this.ids.has(c)))].sort();
    }
    encode(text) {
      return codePoints(text).map((c) => (this.ids.has(c) ? this.ids.get(c) : this.unkId));
    }
  }

  class ByteTokenizer {
    constructor() {
      this.special = [];
      this.tokenBytes = Array.from({ length: 256 }, (_, i) => Uint8Array.of(i));
    }
    unknown() { return []; }
    encode(text) { return Array.from(utf8(text)); }
  }

  /** SentencePiece, unigram (Viterbi over the pieces' scores) or BPE (merges by score),
   * with byte fallback, as the sentencepiece library encodes. */
  class PieceTokenizer {
    constructor(vocab) {
      this.type = vocab.sp_type;
      this.dummyPrefix = vocab.dummy_prefix;
      this.byteFallback = vocab.byte_fallback;
      this.pieces = new Map();
      this.byteIds = new Array(256).fill(-1);
      this.special = [];
      this.unkId = 0;
      let maxScore = -Infinity, minScore = Infinity;
      vocab.pieces.forEach(([piece, score, type], id) => {
        if (type === PIECE.normal) [maxScore, minScore] = [Math.max(maxScore, score), Math.min(minScore, score)];
        if (type === PIECE.byte) this.byteIds[parseInt(piece.slice(3, 5), 16)] = id;
        if (type === PIECE.unknown) this.unkId = id;
        if (type === PIECE.unknown || type === PIECE.control) this.special.push(id);
      });
      vocab.pieces.forEach(([piece, score, type], id) => {
        if (type !== PIECE.normal && type !== PIECE.userDefined) return;
        const user = type === PIECE.userDefined;
        // the lattice scores a user-defined piece above any split of it (unigram_model.cc)
        const length = codePoints(piece).length;
        this.pieces.set(piece, { id, user, score: user ? length * maxScore - 0.1 : score });
      });
      this.unkScore = minScore - UNK_PENALTY;
      this.maxLength = Math.max(...[...this.pieces.keys()].map((p) => p.length));
      this.tokenBytes = vocab.pieces.map(([piece, , type]) => {
        if (type === PIECE.byte) return Uint8Array.of(parseInt(piece.slice(3, 5), 16));
        if (type === PIECE.unknown) return utf8(REPLACEMENT);
        if (type === PIECE.control) return new Uint8Array(0);
        return utf8(piece.replaceAll(META, " "));
      });
    }
    unknown() { return []; }
    encode(text) {
      // a META in the text would read as a space: it goes in as its UTF-8 byte pieces,
      // as SentencePieceVocab.encode_around_meta does
      const meta = Array.from(utf8(META), (b) => this.byteIds[b]);
      return text.split(META).flatMap((part, i) => [...(i ? meta : []), ...this.encodePart(part)]);
    }
    encodePart(text) {
      if (!text) return [];
      let s = text.replaceAll(" ", META);
      if (this.dummyPrefix) s = META + s;
      const units = this.type === "bpe" ? this.mergePairs(s) : this.viterbi(s);
      if (!this.byteFallback) {
        // without byte fallback, SentencePiece makes a run of unknown characters one <unk>
        return units.filter((u, i) => u.id >= 0 || i === 0 || units[i - 1].id >= 0).map((u) => (u.id >= 0 ? u.id : this.unkId));
      }
      return units.flatMap((u) => (u.id >= 0 ? [u.id] : this.fallback(u.text)));
    }
    fallback(text) {
      if (!this.byteFallback) return [this.unkId];
      return Array.from(utf8(text), (b) => this.byteIds[b]);
    }
    /** Unigram: the best-scoring split; an uncovered character is one <unk> node. */
    viterbi(s) {
      const n = s.length, best = new Float64Array(n + 1).fill(-Infinity), from = new Array(n + 1);
      best[0] = 0;
      for (let start = 0; start < n; start = nextStart(s, start)) {
        if (best[start] === -Infinity) continue;
        const charEnd = nextStart(s, start);
        let single = false;
        for (let end = start + 1; end <= Math.min(n, start + this.maxLength); end++) {
          const hit = this.pieces.get(s.slice(start, end));
          if (!hit) continue;
          if (end === charEnd) single = true;
          const score = best[start] + hit.score;
          if (score > best[end]) [best[end], from[end]] = [score, { start, id: hit.id }];
        }
        if (!single) {
          const score = best[start] + this.unkScore;
          if (score > best[charEnd]) [best[charEnd], from[charEnd]] = [score, { start, id: -1 }];
        }
      }
      const units = [];
      for (let end = n; end > 0; end = from[end].start) {
        units.push({ id: from[end].id, text: s.slice(from[end].start, end) });
      }
      return units.reverse();
    }
    /** BPE: characters (user-defined pieces whole), then the best-scoring merge, leftmost
     * first among equals, until no neighbours make a piece. */
    mergePairs(s) {
      const symbols = [];
      for (let i = 0; i < s.length; ) {
        let user = "";
        for (let end = i + 1; end <= Math.min(s.length, i + this.maxLength); end++) {
          const hit = this.pieces.get(s.slice(i, end));
          if (hit && hit.user) user = s.slice(i, end);
        }
        const piece = user || s.slice(i, nextStart(s, i));
        symbols.push(piece);
        i += piece.length;
      }
      for (;;) {
        let at = -1, bestScore = -Infinity;
        for (let i = 0; i + 1 < symbols.length; i++) {
          const hit = this.pieces.get(symbols[i] + symbols[i + 1]);
          if (hit && !hit.user && hit.score > bestScore) [at, bestScore] = [i, hit.score];
        }
        if (at < 0) break;
        symbols.splice(at, 2, symbols[at] + symbols[at + 1]);
      }
      return symbols.map((text) => ({ text, id: this.pieces.has(text) ? this.pieces.get(text).id : -1 }));
    }
  }

  function nextStart(s, i) {
    const c = s.charCodeAt(i);
    return c >= 0xd800 && c < 0xdc00 && i + 1 < s.length ? i + 2 : i + 1;
  }

  function makeTokenizer(vocab) {
    if (vocab.kind === "char") return new CharTokenizer(vocab);
    if (vocab.kind === "byte") return new ByteTokenizer(vocab);
    if (vocab.kind === "sentencepiece") return new PieceTokenizer(vocab);
    throw new CharrnnError(`this runtime cannot read a ${vocab.kind} tokenizer`);
  }

  /** Ids to text as they come: bytes of an unfinished character wait (U+FFFD at the end). */
  class Decoder {
    constructor(tokenBytes) {
      this.tokenBytes = tokenBytes;
      this.utf8 = new TextDecoder("utf-8");
    }
    push(id) { return this.utf8.decode(this.tokenBytes[id], { stream: true }); }
    flush() { return this.utf8.decode(); }
  }

  // ------------------------------------------------------------------ the network

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
      this.module = useWasm ? simdModule() : null;
      this.used = 0;
      if (this.module) {
        this.memory = new WebAssembly.Memory({ initial: Math.ceil((4 * floats) / 65536) + 1 });
        const instance = new WebAssembly.Instance(this.module, { env: { mem: this.memory } });
        this.kernel = instance.exports.matvec;
      }
      this.kind = this.module ? "wasm-simd" : "js";
    }
    alloc(n) {
      const a = this.module ? new Float32Array(this.memory.buffer, 4 * this.used, n) : new Float32Array(n);
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
      if (this.cell === "lstm") {
        for (let u = 0; u < H; u++) {
          const gate = (k) => bx[k * H + u] + gx[k * H + u] + (bh[k * H + u] + gh[k * H + u]);
          const i = sigmoid(gate(0)), f = sigmoid(gate(1)), g = Math.tanh(gate(2)), o = sigmoid(gate(3));
          c[u] = f * c[u] + i * g;
          h[u] = o * Math.tanh(c[u]);
          [gates[u], gates[H + u], gates[2 * H + u], gates[3 * H + u]] = [i, f, g, o];
        }
      } else if (this.cell === "gru") {
        for (let u = 0; u < H; u++) {
          const r = sigmoid(bx[u] + gx[u] + (bh[u] + gh[u]));
          const z = sigmoid(bx[H + u] + gx[H + u] + (bh[H + u] + gh[H + u]));
          const n = Math.tanh(bx[2 * H + u] + gx[2 * H + u] + r * (bh[2 * H + u] + gh[2 * H + u]));
          [gates[u], gates[H + u]] = [r, z];
          h[u] = (1 - z) * n + z * h[u];
        }
      } else {
        for (let u = 0; u < H; u++) h[u] = Math.tanh(bx[u] + gx[u] + (bh[u] + gh[u]));
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

  // ------------------------------------------------------------------ sampling

  /** xoshiro128** seeded by splitmix32 from a 32-bit seed: the documented sampling PRNG. */
  function makeRandom(seed) {
    let x = seed >>> 0;
    const split = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    const s = [split(), split(), split(), split()];
    return () => {
      const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
      const t = s[1] << 9;
      s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
      s[2] ^= t; s[3] = rotl(s[3], 11);
      return result / 4294967296; // [0, 1)
    };
  }
  const rotl = (v, k) => (v << k) | (v >>> (32 - k));

  function freshSeed() {
    const a = new Uint32Array(1);
    (scope.crypto || crypto).getRandomValues(a);
    return a[0];
  }

  /** The next id from logits: greedy at temperature 0, else temperature, top-k, top-p
   * (the nucleus: drop what ranks below the first p of the mass), then a draw. */
  function pick(logits, banned, o, random) {
    const V = logits.length, z = Float64Array.from(logits);
    for (const id of banned) z[id] = -Infinity;
    if (!o.temperature) {
      let best = 0;
      for (let v = 1; v < V; v++) if (z[v] > z[best]) best = v;
      return best;
    }
    for (let v = 0; v < V; v++) z[v] /= o.temperature;
    if (o.topK && o.topK < V) {
      const kth = Array.from(z).sort((a, b) => b - a)[o.topK - 1];
      for (let v = 0; v < V; v++) if (z[v] < kth) z[v] = -Infinity;
    }
    const p = softmax(z);
    if (o.topP && o.topP < 1) {
      const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a]);
      let before = 0;
      for (const v of order) {
        const mine = p[v];
        if (before >= o.topP) p[v] = 0;
        before += mine;
      }
    }
    let total = 0;
    for (let v = 0; v < V; v++) total += p[v];
    let u = random() * total;
    for (let v = 0; v < V; v++) if (p[v] > 0 && (u -= p[v]) < 0) return v;
    return p.findLastIndex((q) => q > 0);
  }

  function softmax(z) {
    let max = -Infinity, sum = 0;
    for (const v of z) if (v > max) max = v;
    const p = new Float64Array(z.length);
    for (let v = 0; v < z.length; v++) sum += p[v] = Math.exp(z[v] - max);
    for (let v = 0; v < z.length; v++) p[v] /= sum;
    return p;
  }

  /** Text that might begin a stop string waits; the stop string itself is never shown. */
  class StopMatcher {
    constructor(stops) {
      this.stops = (stops || []).filter(Boolean);
      this.held = "";
      this.done = false;
    }
    push(text) {
      if (this.done) return "";
      this.held += text;
      const hits = this.stops.map((s) => this.held.indexOf(s)).filter((i) => i >= 0);
      if (hits.length) {
        this.done = true;
        return this.held.slice(0, Math.min(...hits));
      }
      let keep = 0;
      for (const s of this.stops) {
        for (let n = 1; n < Math.min(s.length, this.held.length + 1); n++) {
          if (this.held.endsWith(s.slice(0, n))) keep = Math.max(keep, n);
        }
      }
      const out = this.held.slice(0, this.held.length - keep);
      this.held = this.held.slice(this.held.length - keep);
      return out;
    }
    flush() {
      const out = this.done ? "" : this.held;
      this.held = "";
      return out;
    }
  }

  const pause = () => new Promise((resolve) => setTimeout(resolve, 0));
  const now = () => (scope.performance || Date).now();

  // ------------------------------------------------------------------ the model

  class Model {
    constructor(manifest, bytes, options = {}) {
      if (!manifest || manifest.format !== FORMAT) throw new CharrnnError("this is not a charrnn export");
      if (manifest.version > 1) throw new CharrnnError(`export version ${manifest.version} is newer than this runtime reads`);
      this.manifest = manifest;
      const tensors = {};
      for (const t of manifest.tensors) tensors[t.name] = readTensor(bytes, t);
      this.net = new Network(manifest.model, tensors, options);
      this.vocab = manifest.vocab;
      this.tokenizer = makeTokenizer(manifest.vocab);
      const m = manifest.model;
      this.info = {
        name: manifest.name, cell: m.cell, layers: m.layers, hidden: m.hidden, embed: m.embed,
        vocabSize: m.vocab_size, tokenizer: manifest.vocab.kind, dtype: manifest.dtype,
        unit: { char: "char", byte: "byte" }[manifest.vocab.kind] || "token",
        kinds: KINDS[m.cell], runsIn: "page", kernel: this.net.arena.kind,
      };
    }

    /** Prepared text -> ids; characters the model never saw are an error. */
    encode(text) {
      const prepared = prepare(text, this.vocab);
      const missing = this.tokenizer.unknown(prepared);
      if (missing.length) {
        throw new CharrnnError(`characters the model never saw: ${missing.slice(0, 10).map(show).join(", ")}`);
      }
      return this.tokenizer.encode(prepared);
    }

    /** Each id read from a fresh state; `visit(i, logits)` sees the logits after id i. */
    async read(ids, visit, signal) {
      this.net.reset();
      let since = now();
      for (let i = 0; i < ids.length; i++) {
        visit(i, this.net.step(ids[i]));
        if (now() - since > YIELD_MS) {
          await pause();
          if (signal && signal.aborted) throw new CharrnnError("stopped");
          since = now();
        }
      }
    }

    async generate(seed = "\n", options = {}) {
      const o = { length: 200, temperature: 0.8, topK: null, topP: null, rngSeed: null, stop: [], ...options };
      const ids = this.encode(seed);
      if (!ids.length) throw new CharrnnError("the seed is empty; give at least one character");
      const random = makeRandom(o.rngSeed == null ? freshSeed() : o.rngSeed);
      let logits = null;
      await this.read(ids, (i, l) => { logits = l; }, o.signal);
      const decoder = new Decoder(this.tokenizer.tokenBytes), stops = new StopMatcher(o.stop);
      let text = "", made = 0, since = now();
      const emit = (piece) => {
        if (piece) { text += piece; if (o.onText) o.onText(piece); }
      };
      while (made < o.length && !stops.done) {
        const id = pick(logits, this.tokenizer.special, o, random);
        let piece = codePoints(decoder.push(id)).slice(0, o.length - made);
        made += piece.length;
        emit(stops.push(piece.join("")));
        if (made >= o.length && !stops.done) {
          emit(stops.push(codePoints(decoder.flush()).slice(0, o.length - made).join("")) + stops.flush());
        }
        if (made >= o.length || stops.done) break;
        logits = this.net.step(id);
        if (now() - since > YIELD_MS) {
          await pause();
          if (o.signal && o.signal.aborted) break;
          since = now();
        }
      }
      return text;
    }

    /** Pieces of the text as the model reads them, with their spans in the decoded text. */
    pieces(ids) {
      const decoder = new Decoder(this.tokenizer.tokenBytes), out = [];
      let at = 0;
      ids.forEach((id, i) => {
        let text = decoder.push(id);
        if (i === ids.length - 1) text += decoder.flush();
        out.push({ id, text, start: at, end: at + text.length });
        at += text.length;
      });
      return out;
    }

    async score(text, options = {}) {
      const top = options.top || 0, ids = this.encode(text);
      if (ids.length < 2) throw new CharrnnError("the text needs at least two characters the model knows");
      const pieces = this.pieces(ids), tokenBytes = this.tokenizer.tokenBytes;
      const label = (id) => new TextDecoder().decode(tokenBytes[id]);
      pieces[0].nats = null;
      pieces[0].top = [];
      let total = 0;
      await this.read(ids, (i, logits) => {
        if (i + 1 >= ids.length) return;
        const p = softmax(logits);
        const next = pieces[i + 1];
        next.nats = -Math.log(p[ids[i + 1]]);
        total += next.nats;
        next.top = top ? topOf(p, top).map((v) => ({ id: v, text: label(v), p: p[v] })) : [];
      }, options.signal);
      const decoded = pieces.map((p) => p.text).join("");
      const characters = codePoints(decoded).length, tokens = ids.length - 1;
      return {
        text: decoded, characters, tokens, pieces,
        natsPerToken: total / tokens,
        // as `charrnn eval` counts bits/char: for bytes and pieces, the total over the characters
        natsPerChar: this.vocab.kind === "char" ? total / tokens : total / characters,
        surprisal: spread(pieces, decoded.length),
      };
    }

    async trace(text, options = {}) {
      const layer = options.layer || 0, kind = options.kind || "hidden";
      if (!(layer >= 0 && layer < this.net.layers.length)) {
        throw new CharrnnError(`layer ${layer} does not exist; the model has ${this.net.layers.length} (0-based)`);
      }
      const ids = this.encode(text), values = [];
      this.net.layers[layer].values(kind); // an unknown kind fails before any work
      await this.read(ids, () => values.push(Float32Array.from(this.net.layers[layer].values(kind))), options.signal);
      const pieces = this.pieces(ids).map(({ text: t, start, end }) => ({ text: t, start, end }));
      return { text: pieces.map((p) => p.text).join(""), pieces, units: this.net.hidden, values };
    }
  }

  function topOf(p, k) {
    return Array.from(p.keys()).sort((a, b) => p[b] - p[a]).slice(0, k);
  }

  /** One surprisal per UTF-16 index: each piece's nats shared by its characters; the nats
   * of a piece with no text of its own (a byte inside a character) go to the next one. */
  function spread(pieces, length) {
    const out = new Array(length).fill(null);
    let carried = 0;
    for (const piece of pieces) {
      if (piece.nats == null) continue;
      carried += piece.nats;
      const chars = codePoints(piece.text);
      if (!chars.length) continue;
      let at = piece.start;
      for (const c of chars) {
        out[at] = carried / chars.length;
        at += c.length;
      }
      carried = 0;
    }
    return out;
  }

  // ------------------------------------------------------------------ loading

  async function sha256Hex(bytes) {
    const subtle = scope.crypto && scope.crypto.subtle;
    if (!subtle) return null; // not a secure context: the check is skipped
    const digest = new Uint8Array(await subtle.digest("SHA-256", bytes));
    return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** A Model from a manifest and its weight bytes, checked against the manifest's sha256. */
  async function open(manifest, bytes, options) {
    if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
    if (manifest.bytes !== bytes.length) throw new CharrnnError("the weights are damaged: their size is not the manifest's");
    const digest = await sha256Hex(bytes);
    if (digest && digest !== manifest.sha256) throw new CharrnnError("the weights are damaged: their sha256 is not the manifest's");
    return new Model(manifest, bytes, options);
  }

  // ------------------------------------------------------------------ the worker

  /** In a worker: open the model it is sent, then answer calls, streaming generate's text. */
  function serveWorker(port) {
    let model = null;
    const running = new Map();
    port.onmessage = async ({ data }) => {
      const { op, id } = data;
      if (op === "abort") return running.get(id) && running.get(id).abort();
      try {
        if (op === "open") {
          model = await open(data.manifest, data.bytes, data.options);
          return port.postMessage({ id, result: model.info });
        }
        const [first, options = {}] = data.args, abort = new AbortController();
        running.set(id, abort);
        const extra = { signal: abort.signal };
        if (data.method === "generate") extra.onText = (text) => port.postMessage({ id, text });
        const result = await model[data.method](first, { ...options, ...extra });
        port.postMessage({ id, result });
      } catch (e) {
        port.postMessage({ id, error: e.message || String(e) });
      } finally {
        running.delete(id);
      }
    };
  }

  /** The Model's API, run in a Web Worker so the page stays responsive. */
  class WorkerModel {
    constructor(worker) {
      this.worker = worker;
      this.calls = new Map();
      this.next = 0;
      worker.onmessage = ({ data }) => {
        const call = this.calls.get(data.id);
        if (!call) return;
        if (data.text !== undefined) return call.onText && call.onText(data.text);
        this.calls.delete(data.id);
        if (data.error !== undefined) call.reject(new CharrnnError(data.error));
        else call.resolve(data.result);
      };
      worker.onerror = (event) => {
        event.preventDefault();
        for (const call of this.calls.values()) call.reject(new CharrnnError(event.message || "the worker failed"));
        this.calls.clear();
      };
    }
    call(message, onText, signal, transfer = []) {
      const id = ++this.next;
      return new Promise((resolve, reject) => {
        this.calls.set(id, { resolve, reject, onText });
        if (signal) signal.addEventListener("abort", () => this.worker.postMessage({ op: "abort", id }));
        this.worker.postMessage({ ...message, id }, transfer);
      });
    }
    async open(manifest, bytes, options) {
      const message = { op: "open", manifest, bytes, options };
      this.info = { ...(await this.call(message, null, null, [bytes.buffer])), runsIn: "worker" };
      return this;
    }
    method(name, first, options = {}) {
      const { onText, signal, ...rest } = options;
      return this.call({ op: "call", method: name, args: [first, rest] }, onText, signal);
    }
    generate(seed, options) { return this.method("generate", seed, options); }
    score(text, options) { return this.method("score", text, options); }
    trace(text, options) { return this.method("trace", text, options); }
  }

  /** A worker made from this runtime's own source: a blob URL, which Chromium allows
   * from file:// where a worker script file would be refused. */
  function makeWorker() {
    const source = `"use strict";\n${charrnnRuntime.toString()}\ncharrnnRuntime(self);\nself.charrnn.serveWorker(self);\n`;
    const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
    try {
      return new Worker(url);
    } finally {
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    }
  }

  /** The model in a worker where the browser allows one, else in the page (which then
   * gives the event loop a turn every YIELD_MS, so Stop still works). */
  async function openAnywhere(manifest, bytes, options = {}) {
    const { worker = true, ...modelOptions } = options;
    if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
    if (worker && typeof Worker !== "undefined") {
      try {
        return await new WorkerModel(makeWorker()).open(manifest, bytes.slice(), modelOptions);
      } catch (e) {
        if (e instanceof CharrnnError && !/worker/.test(e.message)) throw e; // the model itself is bad
        if (scope.console) console.warn(`charrnn: no worker (${e.message}); running in the page`);
      }
    }
    return open(manifest, bytes, modelOptions);
  }

  /** The model an exported model.js carries ({manifest, weights}), in a worker if it can. */
  function openExport(data, options) {
    if (!data || !data.manifest) throw new CharrnnError("no model: model.js is missing or damaged");
    return openAnywhere(data.manifest, unpackText(data.weights, data.manifest.bytes), options);
  }

  scope.charrnn = {
    Model, CharrnnError, open, openAnywhere, openExport, serveWorker, unpackText, makeRandom, prepare, KINDS,
  };
}

charrnnRuntime(typeof self !== "undefined" ? self : globalThis);
