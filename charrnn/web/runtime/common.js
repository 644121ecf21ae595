// What every part of the runtime shares: the format's constants and its error.

const FORMAT = "charrnn-web";
const META = "\u2581"; // SentencePiece's stand-in for a space
const REPLACEMENT = "\ufffd";
const PIECE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 };
const UNK_PENALTY = 10; // SentencePiece: an unknown piece scores 10 below the worst piece
const PACK_BASE = 0x3000; // weights in a script: 15 bits per UTF-16 unit, from U+3000
const YIELD_MS = 25; // long work gives the event loop a turn this often, so Stop is heard
const FLUSH_MS = 30; // a worker sends generated text this often at most

class CharrnnError extends Error {}
