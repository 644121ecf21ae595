"""Tokenizers: text <-> integer ids, for characters, UTF-8 bytes or SentencePiece.

Every tokenizer shares one small interface (`Tokenizer`): `encode`, `decode`,
`unknown`, a streaming `decoder()`, `to_dict` / `tokenizer_from_dict` for the
checkpoint. Each also carries the text preparation it was built with
(Unicode normalisation, line ends), so a seed typed in NFD on macOS or a file
with CRLF line ends reads exactly as the training text did.

Decoding goes through the UTF-8 bytes of each token and one incremental UTF-8
decoder, so the byte tokenizer (and SentencePiece's byte fallback) can stop in
the middle of a character without a crash: the incomplete tail becomes U+FFFD.
"""

from __future__ import annotations

import codecs
import io
import os
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from charrnn.errors import CharrnnError, UnknownCharactersError

TOKENIZERS = ("char", "byte", "sentencepiece")
SP_TYPES = ("char", "unigram", "bpe")
NORMALIZE = ("nfc", "nfkc", "none")
UNK = "<unk>"
REPLACEMENT = "\ufffd"
MAX_CODE_POINT = 0x10FFFF
# how a checkpoint from before text preparation was an option read its text
LEGACY_TEXT = {"normalize": "none", "keep_line_ends": True}
SP_SENTENCES = 1_000_000  # lines SentencePiece trains on at most (sampled); bounds its memory
SP_RANDOM_SEED = 1  # SentencePiece samples and shuffles lines of large corpora
SP_PARALLEL_CHARS = 1 << 20  # texts longer than this are encoded on several threads


@dataclass(frozen=True)
class TokenizerConfig:
    """How to build a tokenizer from a training text (saved in the checkpoint)."""

    kind: str = "char"
    min_count: int = 1  # char: rarer characters share one <unk> id
    sp_type: str = "unigram"  # sentencepiece: char, unigram or bpe
    vocab_size: int | None = None  # sentencepiece; None: all kept characters (char) or 1000
    coverage: float = 0.9995  # sentencepiece character_coverage

    def __post_init__(self):
        if self.kind not in TOKENIZERS:
            raise CharrnnError(
                f"unknown tokenizer {self.kind!r}; use one of {', '.join(TOKENIZERS)}"
            )
        if self.sp_type not in SP_TYPES:
            raise CharrnnError(
                f"unknown sp-type {self.sp_type!r}; use one of {', '.join(SP_TYPES)}"
            )
        if self.min_count < 1:
            raise CharrnnError(f"min-count must be at least 1, not {self.min_count}")
        if not 0 < self.coverage <= 1:
            raise CharrnnError(f"coverage must be in (0, 1], not {self.coverage}")


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


def code_points(text: str) -> np.ndarray:
    """The text's code points as a uint8 (ASCII text) or uint32 array, without a
    Python-level loop."""
    if text.isascii():  # O(1) in CPython, and a quarter of the bytes to touch
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    # surrogatepass: a lone surrogate (possible in argv) is still one code point
    raw = text.encode("utf-32-le", errors="surrogatepass")
    return np.frombuffer(raw, dtype="<u4")


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


class CharDecoder(StreamDecoder):
    """Every char id is a whole character, so nothing ever waits."""

    def __init__(self, symbols: list[str]):
        self.symbols = symbols

    def push(self, token_id: int) -> str:
        return self.symbols[token_id]

    def flush(self) -> str:
        return ""


# ---------------------------------------------------------------- the interface


class Tokenizer:
    """Shared behaviour; subclasses define `kind`, `__len__`, `encode_prepared`,
    `token_bytes`, `to_dict` and `describe`."""

    kind = "?"
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


# ---------------------------------------------------------------- char


class CharVocab(Tokenizer):
    """The sorted code points of a text; id i is the i-th smallest.

    With `unk`, one more id (the last) stands for every other character, so
    nothing is unknown; `<unk>` decodes as U+FFFD.
    """

    kind = "char"

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


# ---------------------------------------------------------------- sentencepiece


def sentencepiece_processor(model: bytes):
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_proto=model)
    except Exception as e:
        raise CharrnnError(f"the stored SentencePiece model is damaged ({e})") from None


class SentencePieceVocab(Tokenizer):
    """A SentencePiece model trained on the corpus, kept as its serialized bytes.

    It is trained to be lossless: no extra normalisation or whitespace folding,
    no dummy prefix, "\\n" as a piece of its own, and byte fallback so that a
    character outside the model's coverage becomes its UTF-8 bytes, not <unk>.
    """

    kind = "sentencepiece"

    def __init__(self, model: bytes, normalize="nfc", keep_line_ends=False):
        self.model = bytes(model)
        self.normalize, self.keep_line_ends = normalize, bool(keep_line_ends)
        self.sp = sentencepiece_processor(self.model)

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    @cached_property
    def special_ids(self) -> list[int]:
        sp = self.sp
        return [i for i in range(len(self)) if sp.is_unknown(i) or sp.is_control(i)]

    def encode_prepared(self, text: str) -> np.ndarray:
        threads = min(os.cpu_count() or 1, 8)
        if len(text) < SP_PARALLEL_CHARS or threads == 1:
            return np.asarray(self.sp.encode(text), dtype=self.dtype)
        # "\n" is a piece of its own, so no piece spans a line end: cutting after one
        # gives the same ids, and SentencePiece encodes the parts on its own threads
        parts = cut_after_newlines(text, 4 * threads)
        encoded = self.sp.encode(parts, num_threads=threads)
        return np.concatenate([np.asarray(ids, dtype=self.dtype) for ids in encoded])

    @cached_property
    def token_bytes(self) -> list[bytes]:
        sp, out = self.sp, []
        for i in range(len(self)):
            piece = sp.id_to_piece(i)
            if sp.is_byte(i):  # "<0xE3>"
                out.append(bytes([int(piece[3:5], 16)]))
            elif sp.is_unknown(i):
                out.append(utf8(REPLACEMENT))
            elif sp.is_control(i):
                out.append(b"")
            else:
                out.append(utf8(piece.replace("\u2581", " ")))
        return out

    def to_dict(self) -> dict:
        return {"kind": "sentencepiece", "model": self.model, **self._text_dict()}

    def describe(self) -> str:
        return f"{len(self)} SentencePiece pieces"


def cut_after_newlines(text: str, parts: int) -> list[str]:
    """`text` in about `parts` pieces, each ending just after a newline (the last may not)."""
    size, pieces, start = max(1, len(text) // parts), [], 0
    while start < len(text):
        cut = text.find("\n", start + size)
        end = len(text) if cut < 0 else cut + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def train_sentencepiece(
    lines, config: TokenizerConfig, normalize: str, keep_line_ends: bool
) -> SentencePieceVocab:
    """Train a SentencePiece model on an iterator of lines (without their "\\n")."""
    import sentencepiece as spm

    vocab_size = config.vocab_size
    if vocab_size is None:
        # char: every kept character; a soft limit lets SentencePiece use fewer
        vocab_size = 1_000_000 if config.sp_type == "char" else 1000
    model = io.BytesIO()
    spm.set_random_generator_seed(SP_RANDOM_SEED)  # the same text gives the same model
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            model_type=config.sp_type,
            vocab_size=vocab_size,
            hard_vocab_limit=config.vocab_size is not None and config.sp_type != "char",
            character_coverage=config.coverage,
            normalization_rule_name="identity",  # we normalise ourselves (--normalize)
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            split_digits=False,
            byte_fallback=True,
            user_defined_symbols=["\n"],
            bos_id=-1,
            eos_id=-1,
            input_sentence_size=SP_SENTENCES,
            shuffle_input_sentence=True,
            max_sentence_length=1 << 16,
            num_threads=1,  # one thread, so the same text always gives the same model
            minloglevel=2,
        )
    except Exception as e:
        raise CharrnnError(
            f"SentencePiece could not be trained: {sentencepiece_message(e)}"
        ) from None
    return SentencePieceVocab(model.getvalue(), normalize, keep_line_ends)


def sentencepiece_message(e: Exception) -> str:
    """SentencePiece's errors are C++ assertions; say what to change instead."""
    text = str(e)
    if m := re.search(r"smaller than required_chars\. (\d+) vs (\d+)", text):
        return (
            f"--vocab-size {m[1]} is too small: the text's characters and the 256 byte pieces "
            f"need {m[2]}; give a larger --vocab-size or a lower --coverage"
        )
    if m := re.search(
        r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", text
    ):
        return f"--vocab-size {m[1]} is too large for this text; use {m[2]} or less"
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


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
