// Text to ids and back: preparation, the char, byte and SentencePiece tokenizers, and
// a streaming decoder.

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
    // no piece has a META inside it (SentencePiece's split_by_whitespace): a merge never
    // crosses the start of a word, so BPE can merge word by word, not over the whole text
    this.wordsApart = ![...this.pieces.keys()].some((p) => p.indexOf(META, 1) > 0);
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
    const meta = Array.from(utf8(META), (b) => (this.byteIds[b] >= 0 ? this.byteIds[b] : this.unkId));
    return text.split(META).flatMap((part, i) => [...(i ? meta : []), ...this.encodePart(part)]);
  }
  encodePart(text) {
    if (!text) return [];
    let s = text.replaceAll(" ", META);
    if (this.dummyPrefix) s = META + s;
    const units = this.type !== "bpe" ? this.viterbi(s)
      : (this.wordsApart ? s.split(/(?=\u2581)/) : [s]).flatMap((word) => this.mergePairs(word));
    if (this.byteFallback) return units.flatMap((u) => (u.id >= 0 ? [u.id] : Array.from(utf8(u.text), (b) => this.byteIds[b])));
    // without byte fallback, SentencePiece makes a run of unknown characters one <unk>
    const kept = units.filter((u, i) => u.id >= 0 || i === 0 || units[i - 1].id >= 0);
    return kept.map((u) => (u.id >= 0 ? u.id : this.unkId));
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
