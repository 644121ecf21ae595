// The model: generate, score and trace, and opening it from a manifest and bytes.

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

  /** Give the event loop a turn, keeping this call's state through whatever runs in it. */
  async pause() {
    const saved = this.net.save();
    await pause();
    this.net.restore(saved);
  }

  /** Each id read from a fresh state; `visit(i, logits)` sees the logits after id i. */
  async read(ids, visit, signal) {
    this.net.reset();
    let since = now();
    for (let i = 0; i < ids.length; i++) {
      visit(i, this.net.step(ids[i]));
      if (now() - since > YIELD_MS) {
        await this.pause();
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
      const piece = codePoints(decoder.push(id)).slice(0, o.length - made);
      made += piece.length;
      emit(stops.push(piece.join("")));
      if (made >= o.length && !stops.done) {
        emit(stops.push(codePoints(decoder.flush()).slice(0, o.length - made).join("")) + stops.flush());
      }
      if (made >= o.length || stops.done) break;
      logits = this.net.step(id);
      if (now() - since > YIELD_MS) {
        await this.pause();
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
    const pieces = this.pieces(ids), tokenBytes = this.tokenizer.tokenBytes, labels = new TextDecoder();
    const label = (id) => labels.decode(tokenBytes[id]);
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
      // as `charrnn eval` counts bits/char (TextScore.bits_per_char): where there is one
      // token a character, per token; else the total over the characters
      natsPerChar: tokens === characters - 1 ? total / tokens : total / characters,
      surprisal: spread(foldBytes(pieces), decoded.length),
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

/** Each piece that shows text gets `shown`: its nats, plus those of the pieces before
 * it that have no text of their own (the bytes inside a character); the rest get null. */
function foldBytes(pieces) {
  let carried = 0;
  for (const piece of pieces) {
    piece.shown = null;
    if (piece.nats == null) continue;
    carried += piece.nats;
    if (piece.end > piece.start) [piece.shown, carried] = [carried, 0];
  }
  return pieces;
}

/** One surprisal per UTF-16 index: each piece's shown nats shared by its characters. */
function spread(pieces, length) {
  const out = new Array(length).fill(null);
  for (const piece of pieces) {
    if (piece.shown == null) continue;
    const chars = codePoints(piece.text);
    let at = piece.start;
    for (const c of chars) {
      out[at] = piece.shown / chars.length;
      at += c.length;
    }
  }
  return out;
}


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
