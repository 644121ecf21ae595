"""The interface every tokenizer shares, and the text preparation it carries.

`Tokenizer` gives `encode`, `decode`, `unknown`, a streaming `decoder()` and
`to_dict` for the checkpoint; each carries the text preparation it was built with
(Unicode normalisation, line ends), so a seed typed in NFD on macOS or a file with
CRLF line ends reads exactly as the training text did.

Decoding goes through the UTF-8 bytes of each token and one incremental UTF-8
decoder, so the byte tokenizer (and SentencePiece's byte fallback) can stop in
the middle of a character without a crash: the incomplete tail becomes U+FFFD.
The tokenizers themselves, and the choice among them, are in tokenizers.py.
"""

from __future__ import annotations

import codecs
import unicodedata
from functools import cached_property

import numpy as np

REPLACEMENT = "\ufffd"


# ---------------------------------------------------------------- text preparation


def prepare_text(text: str, normalize: str = "nfc", keep_line_ends: bool = False) -> str:
    """CRLF and CR -> LF (unless kept), then Unicode normalisation (unless "none")."""
    if not keep_line_ends and "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if normalize != "none":
        form = normalize.upper()
        if not unicodedata.is_normalized(form, text):
            text = unicodedata.normalize(form, text)
    return text


def smallest_uint_dtype(n_values: int) -> np.dtype:
    """The narrowest unsigned integer dtype that can hold ids 0..n_values-1."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n_values <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise ValueError(f"vocabulary of {n_values} symbols is too large")


def utf8(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


# ---------------------------------------------------------------- streaming decode


class StreamDecoder:
    """Turns ids, one at a time, into text; bytes of an unfinished character wait."""

    def __init__(self, token_bytes: list[bytes]):
        self.token_bytes = token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._utf8.decode(self.token_bytes[token_id])

    def flush(self) -> str:
        """What an unfinished character at the end becomes (U+FFFD), or ""."""
        return self._utf8.decode(b"", final=True)


# ---------------------------------------------------------------- the interface


class Tokenizer:
    """Shared behaviour; subclasses define `kind`, `__len__`, `encode_prepared`,
    `token_bytes`, `to_dict` and `describe`."""

    kind = "?"
    unit = "token"  # what a loss is per: char and byte models name theirs
    normalize = "none"
    keep_line_ends = True

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def dtype(self) -> np.dtype:
        return smallest_uint_dtype(len(self))

    @cached_property
    def special_ids(self) -> list[int]:
        """Ids that are not text (<unk>, control pieces); sampling never draws them."""
        return []

    def prepare(self, text: str) -> str:
        return prepare_text(text, self.normalize, self.keep_line_ends)

    def encode(self, text: str) -> np.ndarray:
        """Ids of `text` (prepared as the training text was) in the smallest dtype."""
        return self.encode_prepared(self.prepare(text))

    def encode_prepared(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` this tokenizer cannot encode, sorted."""
        return []

    @cached_property
    def token_bytes(self) -> list[bytes]:
        raise NotImplementedError

    def decoder(self) -> StreamDecoder:
        return StreamDecoder(self.token_bytes)

    def decode(self, ids) -> str:
        d = self.decoder()
        return "".join(d.push(int(i)) for i in np.asarray(ids).ravel()) + d.flush()

    def _text_dict(self) -> dict:
        return {"normalize": self.normalize, "keep_line_ends": self.keep_line_ends}

    def to_dict(self) -> dict:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError
