"""Tokenizers: text <-> integer ids, for characters, UTF-8 bytes or SentencePiece.

The char and byte tokenizers are here, SentencePiece in sentencepiece.py, and the
interface they share in base.py. `tokenizer_from_dict` picks one by its kind, to
rebuild what a checkpoint stores.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from charrnn.errors import CharrnnError, UnknownCharactersError
from charrnn.text.base import REPLACEMENT, StreamDecoder, Tokenizer, smallest_uint_dtype, utf8
from charrnn.text.config import LEGACY_TEXT, NORMALIZE
from charrnn.text.sentencepiece import SentencePieceVocab

UNK = "<unk>"
MAX_CODE_POINT = 0x10FFFF


def code_points(text: str) -> np.ndarray:
    """The text's code points as a uint8 (ASCII text) or uint32 array, without a
    Python-level loop."""
    if text.isascii():  # O(1) in CPython, and a quarter of the bytes to touch
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    # surrogatepass: a lone surrogate (possible in argv) is still one code point
    raw = text.encode("utf-32-le", errors="surrogatepass")
    return np.frombuffer(raw, dtype="<u4")


# ---------------------------------------------------------------- char


class CharDecoder(StreamDecoder):
    """Every char id is a whole character, so nothing ever waits."""

    def __init__(self, symbols: list[str]):
        self.symbols = symbols

    def push(self, token_id: int) -> str:
        return self.symbols[token_id]

    def flush(self) -> str:
        return ""


class CharVocab(Tokenizer):
    """The sorted code points of a text; id i is the i-th smallest.

    With `unk`, one more id (the last) stands for every other character, so
    nothing is unknown; `<unk>` decodes as U+FFFD.
    """

    kind = "char"
    unit = "char"

    def __init__(self, chars: str, unk: bool = False, normalize="none", keep_line_ends=True):
        if not chars:
            raise CharrnnError("a vocabulary needs at least one character")
        cps = code_points(chars)
        if np.any(np.diff(cps.astype(np.int64)) <= 0):
            raise CharrnnError("vocabulary characters must be unique and sorted")
        self.chars, self.unk = chars, bool(unk)
        self.normalize, self.keep_line_ends = normalize, bool(keep_line_ends)
        self._cps = cps

    @classmethod
    def from_text(cls, text: str, **kwargs) -> CharVocab:
        return cls.from_code_points(code_points(text), **kwargs)

    @classmethod
    def from_code_points(cls, cps: np.ndarray, **kwargs) -> CharVocab:
        uniq = np.unique(cps).astype("<u4")
        return cls(uniq.tobytes().decode("utf-32-le", errors="surrogatepass"), **kwargs)

    def __len__(self) -> int:
        return len(self.chars) + self.unk

    def __contains__(self, text: str) -> bool:
        return not self.unknown(text)

    def __eq__(self, other) -> bool:
        return isinstance(other, CharVocab) and self.to_dict() == other.to_dict()

    @property
    def unk_id(self) -> int | None:
        return len(self.chars) if self.unk else None

    @cached_property
    def special_ids(self) -> list[int]:
        return [self.unk_id] if self.unk else []

    def _lookup(self, cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, known mask) for an array of code points."""
        ids = np.searchsorted(self._cps, cps)
        ids_clipped = np.minimum(ids, len(self.chars) - 1)
        known = self._cps[ids_clipped] == cps
        return ids_clipped, known

    def unknown(self, text: str) -> list[str]:
        if self.unk:
            return []
        cps = code_points(self.prepare(text))
        _, known = self._lookup(cps)
        if known.all():
            return []
        return sorted(set(CharVocab.from_code_points(cps[~known]).chars))

    def encode_code_points(self, cps: np.ndarray) -> np.ndarray:
        ids, known = self._lookup(cps)
        if not known.all():
            if not self.unk:
                missing = CharVocab.from_code_points(cps[~known]).chars
                raise UnknownCharactersError(sorted(missing))
            ids = np.where(known, ids, self.unk_id)
        return ids.astype(self.dtype)

    def encode_prepared(self, text: str) -> np.ndarray:
        return self.encode_code_points(code_points(text))

    def lookup_table(self) -> np.ndarray:
        """Code point -> id for every code point (unknown ones -> <unk>, or len(self) as
        a marker); one fancy-index `table[cps]` then encodes a chunk of any size."""
        fill = self.unk_id if self.unk else len(self)
        table = np.full(MAX_CODE_POINT + 1, fill, dtype=smallest_uint_dtype(len(self) + 1))
        table[self._cps] = np.arange(len(self.chars))
        return table

    @cached_property
    def symbols(self) -> list[str]:
        return list(self.chars) + ([REPLACEMENT] if self.unk else [])

    @cached_property
    def token_bytes(self) -> list[bytes]:
        return [utf8(s) for s in self.symbols]

    def decoder(self) -> StreamDecoder:
        return CharDecoder(self.symbols)

    def decode(self, ids) -> str:
        ids = np.asarray(ids, dtype=np.int64)
        table = np.append(self._cps, np.uint32(ord(REPLACEMENT)))
        return table[ids].astype("<u4").tobytes().decode("utf-32-le", errors="surrogatepass")

    def to_dict(self) -> dict:
        return {"kind": "char", "chars": self.chars, "unk": self.unk, **self._text_dict()}

    def describe(self) -> str:
        return f"{len(self)} distinct characters" + (f" (with {UNK})" if self.unk else "")


# ---------------------------------------------------------------- byte


class ByteVocab(Tokenizer):
    """UTF-8 bytes: 256 ids, and no text is ever unknown."""

    kind = "byte"
    unit = "byte"

    def __init__(self, normalize="nfc", keep_line_ends=False):
        self.normalize, self.keep_line_ends = normalize, bool(keep_line_ends)

    def __len__(self) -> int:
        return 256

    def encode_prepared(self, text: str) -> np.ndarray:
        return np.frombuffer(utf8(text), dtype=np.uint8)

    @cached_property
    def token_bytes(self) -> list[bytes]:
        return [bytes([i]) for i in range(256)]

    def to_dict(self) -> dict:
        return {"kind": "byte", **self._text_dict()}

    def describe(self) -> str:
        return "256 bytes (UTF-8)"


# ---------------------------------------------------------------- (de)serialisation


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """The tokenizer a checkpoint stores. Checkpoints from before tokenizers had
    options hold a bare {"kind": "char", "chars"}: their text was not prepared."""
    kind = d.get("kind")
    text = {key: d.get(key, default) for key, default in LEGACY_TEXT.items()}
    if text["normalize"] not in NORMALIZE:
        raise CharrnnError(f"unknown normalisation {text['normalize']!r}")
    if kind == "char":
        return CharVocab(d["chars"], unk=d.get("unk", False), **text)
    if kind == "byte":
        return ByteVocab(**text)
    if kind == "sentencepiece":
        return SentencePieceVocab(d["model"], **text)
    raise CharrnnError(f"unknown tokenizer kind {kind!r}")
