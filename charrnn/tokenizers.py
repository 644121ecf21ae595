"""Vocabularies: text <-> integer ids.

`CharVocab` maps each Unicode code point seen in the corpus to its rank in sorted
order. Encoding is vectorised with numpy (the text becomes a uint32 array of code
points through UTF-32), so a 5 MB corpus encodes in milliseconds rather than the
seconds a per-character Python loop takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.errors import CharrnnError, UnknownCharactersError


def smallest_uint_dtype(n_values: int) -> np.dtype:
    """The narrowest unsigned integer dtype that can hold ids 0..n_values-1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n_values <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"vocabulary of {n_values} symbols is too large")


def code_points(text: str) -> np.ndarray:
    """The text's code points as a uint32 array, without a Python-level loop."""
    # surrogatepass: a lone surrogate (possible in argv) is still one code point
    raw = text.encode("utf-32-le", errors="surrogatepass")
    return np.frombuffer(raw, dtype="<u4")


@dataclass(frozen=True)
class CharVocab:
    """The sorted set of code points of a text; id i is the i-th smallest."""

    chars: str

    def __post_init__(self):
        if not self.chars:
            raise CharrnnError("a vocabulary needs at least one character")
        cps = code_points(self.chars)
        if np.any(np.diff(cps.astype(np.int64)) <= 0):
            raise CharrnnError("vocabulary characters must be unique and sorted")
        object.__setattr__(self, "_cps", cps)

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        return cls.from_code_points(code_points(text))

    @classmethod
    def from_code_points(cls, cps: np.ndarray) -> CharVocab:
        uniq = np.unique(cps).astype("<u4")
        return cls(uniq.tobytes().decode("utf-32-le", errors="surrogatepass"))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return self.unknown(ch) == []

    @property
    def dtype(self) -> np.dtype:
        return smallest_uint_dtype(len(self))

    def _lookup(self, cps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids, known mask) for an array of code points."""
        ids = np.searchsorted(self._cps, cps)
        ids_clipped = np.minimum(ids, len(self) - 1)
        known = self._cps[ids_clipped] == cps
        return ids_clipped, known

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` outside the vocabulary, sorted."""
        cps = code_points(text)
        _, known = self._lookup(cps)
        if known.all():
            return []
        return sorted(set(CharVocab.from_code_points(cps[~known]).chars))

    def encode_code_points(self, cps: np.ndarray) -> np.ndarray:
        ids, known = self._lookup(cps)
        if not known.all():
            missing = CharVocab.from_code_points(cps[~known]).chars
            raise UnknownCharactersError(sorted(missing))
        return ids.astype(self.dtype)

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text` in the smallest dtype; unseen characters raise."""
        return self.encode_code_points(code_points(text))

    def decode(self, ids) -> str:
        cps = self._cps[np.asarray(ids, dtype=np.int64)]
        return cps.astype("<u4").tobytes().decode("utf-32-le", errors="surrogatepass")

    def to_dict(self) -> dict:
        return {"kind": "char", "chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> CharVocab:
        if d.get("kind") != "char":
            raise CharrnnError(f"unknown tokenizer kind {d.get('kind')!r}")
        return cls(d["chars"])
