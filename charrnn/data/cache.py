"""Corpus files -> a cached, memory-mapped id array (EncodedCorpus), keyed by content.

The cache entry is `KEY.ids` (the ids), `KEY.json` (what a hit needs besides them;
written last, so it marks the entry complete) and, for SentencePiece, `KEY.model`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from charrnn.data.encode import (
    RareCharacters,
    build_char_vocab,
    lines_of,
    split_text,
    train_chars,
    write_ids,
    write_split_ids,
)
from charrnn.errors import CorpusError, WriteError
from charrnn.files import atomic_write, describe_os_error
from charrnn.text.base import Tokenizer
from charrnn.text.config import TextConfig, TokenizerConfig
from charrnn.text.sentencepiece import train_sentencepiece
from charrnn.text.sources import (
    corpus_files,
    corpus_text,
    describe_sources,
    sources_sha256,
    total_bytes,
)
from charrnn.text.tokenizers import ByteVocab, tokenizer_from_dict

CACHE_VERSION = 2


def default_cache_dir() -> Path:
    if env := os.environ.get("CHARRNN_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charrnn"


# ---------------------------------------------------------------- the encoded corpus


@dataclass(frozen=True)
class EncodedCorpus:
    """A corpus as ids: `ids` is a read-only memmap of the cache file."""

    path: str  # the corpus as given, for messages
    sha256: str  # identity of the source files (see `sources_sha256`)
    vocab: Tokenizer
    ids: np.ndarray
    from_cache: bool
    characters: int  # length of the prepared text
    text_config: TextConfig
    tokenizer_config: TokenizerConfig
    rare: RareCharacters | None  # with --min-count above 1
    sources: tuple[str, ...]  # the files and folders as given
    # sentencepiece: the ids before the train/validation boundary, which is a character
    # position (see `train_chars`), and the --val-frac it was placed with; None for char
    # and byte, whose ids are characters or bytes and are split by proportion
    train_ids: int | None = None
    val_frac: float | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def split_sizes(self, val_frac: float) -> tuple[int, int]:
        """(training ids, validation ids): the one place that says where the split is."""
        if self.train_ids is None:
            return split_sizes(len(self), val_frac)
        if val_frac != self.val_frac:  # the tokenizer was trained on another split
            raise ValueError(
                f"corpus {self.path} was encoded for --val-frac {self.val_frac:g}, "
                f"not {val_frac:g}: load it again with val_frac={val_frac:g}"
            )
        return self.train_ids, len(self) - self.train_ids

    def split(self, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
        """The training ids and the validation ids (the contiguous tail)."""
        if self.train_ids is None:
            return split_train_val(self.ids, val_frac)
        n_train, _ = self.split_sizes(val_frac)
        return self.ids[:n_train], self.ids[n_train:]

    @property
    def unit(self) -> str:
        return "characters" if self.vocab.kind == "char" else "tokens"


Progress = Callable[[str, int, int], None]  # (phase, bytes done, bytes in all)


def load_corpus(
    paths: str | os.PathLike | list,
    text: TextConfig | None = None,
    tokenizer: TokenizerConfig | None = None,
    *,
    existing: Tokenizer | None = None,
    expected_sha256: str | None = None,
    val_frac: float = 0.1,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> EncodedCorpus:
    """Read, prepare and encode a corpus into a memory-mapped id file, in bounded memory.

    The result is cached under a key made of the files' SHA-256 and every option
    that changes the ids, so an edited file is re-encoded and a renamed one is
    not. `existing` encodes with a given tokenizer (a resumed run's) instead of
    building one from the text; `expected_sha256` refuses any other corpus.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    text = text or TextConfig()
    tokenizer = tokenizer or TokenizerConfig()
    files = corpus_files(paths)
    shown = describe_sources(paths, files)
    size = total_bytes(files)
    sha = sources_sha256(files, _phase(progress, "hashing", size))
    if expected_sha256 is not None and sha != expected_sha256:
        raise CorpusError(
            f"cannot resume: {shown} is a different corpus from the one the run was trained on"
        )
    key = _cache_key(sha, text, tokenizer, existing, val_frac)
    cache = (cache_dir or default_cache_dir()) / f"v{CACHE_VERSION}"
    given = tuple(map(str, paths))
    if (hit := _read_cache(cache, key)) is not None:
        vocab, ids, meta = hit
        rare = RareCharacters(**meta["rare"]) if meta.get("rare") else None
        chars, train_ids = meta["characters"], meta.get("train_ids")
        split = _split_fields(train_ids, val_frac)
        return EncodedCorpus(
            shown, sha, vocab, ids, True, chars, text, tokenizer, rare, given, **split
        )

    def pieces(phase: str):
        return corpus_text(files, text, on_bytes=_phase(progress, phase, size))

    # sentencepiece pieces span characters, so its split is placed in the text itself
    kind = existing.kind if existing is not None else tokenizer.kind
    boundary = train_chars(pieces("counting"), val_frac) if kind == "sentencepiece" else None
    rare, retained = None, None
    if existing is not None:
        vocab = existing
    elif kind == "char":
        vocab, rare, retained = build_char_vocab(pieces("counting"), text, tokenizer.min_count)
    elif kind == "byte":
        vocab = ByteVocab(text.normalize, text.keep_line_ends)
    else:  # it learns from the training text only, not from the validation text
        head, _ = split_text(pieces("training tokenizer"), boundary)
        vocab = train_sentencepiece(lines_of(head), tokenizer, text.normalize, text.keep_line_ends)
    source = retained if retained is not None else pieces("encoding")
    with _id_file(cache, key) as (f, finish):
        if boundary is None:
            characters, train_ids = write_ids(vocab, source, f), None
        else:
            characters, train_ids = write_split_ids(vocab, source, boundary, f)
        ids = finish(vocab, characters, rare, train_ids)
    split = _split_fields(train_ids, val_frac)
    return EncodedCorpus(
        shown, sha, vocab, ids, False, characters, text, tokenizer, rare, given, **split
    )


def _split_fields(train_ids: int | None, val_frac: float) -> dict:
    """EncodedCorpus's split fields: val_frac is kept only to check a stored boundary."""
    return {} if train_ids is None else {"train_ids": train_ids, "val_frac": val_frac}


def _phase(progress: Progress | None, phase: str, total: int):
    if progress is None:
        return None
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(phase, done, total)

    progress(phase, 0, total)
    return advance


def _cache_key(sha, text, tokenizer, existing, val_frac) -> str:
    if existing is not None:
        tok = existing.to_dict()
        if "model" in tok:
            tok["model"] = hashlib.sha256(tok["model"]).hexdigest()
    else:
        tok = asdict(tokenizer)
    if tok["kind"] == "sentencepiece":
        # a new model is trained on the training split only, and the ids of either are
        # split at its character boundary (`train_ids`), which val_frac places
        tok["val_frac"] = val_frac
    key = {"sources": sha, "text": asdict(text), "tokenizer": tok}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------- the cache


def _read_cache(cache: Path, key: str):
    try:
        meta = json.loads((cache / f"{key}.json").read_text(encoding="utf-8"))
        tok = meta["tokenizer"]
        if tok["kind"] == "sentencepiece":
            tok = {**tok, "model": (cache / f"{key}.model").read_bytes()}
        vocab = tokenizer_from_dict(tok)
        ids = np.memmap(cache / f"{key}.ids", dtype=vocab.dtype, mode="r")
        if len(ids) != meta["length"]:
            return None
        # an entry from before the split was a character position has no boundary, and
        # its model may have seen the validation text: build it again
        if tok["kind"] == "sentencepiece" and not 0 <= meta.get("train_ids", -1) <= len(ids):
            return None
        return vocab, ids, meta
    except Exception:  # a missing or stale cache entry is simply rebuilt
        return None


@contextmanager
def _id_file(cache: Path, key: str):
    """A file to write ids into and a `finish` that maps it; in the cache when the
    cache folder is writable, else in a temp file that is unlinked once mapped."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-")
        cached = True
    except OSError:  # a read-only or missing cache only costs re-encoding next time
        fd, tmp = tempfile.mkstemp(prefix="charrnn-ids-")
        cached = False
    tmp = Path(tmp)

    def finish(vocab: Tokenizer, characters: int, rare: RareCharacters | None, train_ids=None):
        f.flush()
        length = f.tell() // vocab.dtype.itemsize
        if length == 0:
            raise CorpusError("the corpus is empty")
        if cached:
            try:
                meta = _meta(vocab, length, characters, rare, train_ids)
                return _commit_cache(cache, key, tmp, vocab, meta)
            except OSError:  # train on anyway; an entry without its .json is no entry
                moved = cache / f"{key}.ids"
                if not tmp.exists() and moved.exists():
                    os.replace(moved, tmp)
        ids = np.memmap(tmp, dtype=vocab.dtype, mode="r")
        tmp.unlink(missing_ok=True)  # the mapping keeps the data until it is dropped
        return ids

    try:
        with os.fdopen(fd, "wb") as f:
            yield f, finish
    except OSError as e:  # a full disk while encoding: say where, and how to move it
        where = "the encoding cache" if cached else "a temporary file"
        raise WriteError(
            e.errno,
            f"cannot write the encoded corpus to {where} ({tmp.parent}): "
            f"{describe_os_error(e)}; set CHARRNN_CACHE_DIR to a folder with room",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)  # gone already once committed or mapped


def _meta(vocab, length, characters, rare, train_ids) -> dict:
    """A cache entry's .json: what a cache hit needs besides the ids."""
    meta = {
        "tokenizer": vocab.to_dict(),
        "length": length,
        "characters": characters,
        "rare": asdict(rare) if rare else None,
    }
    if train_ids is not None:  # char and byte entries stay as they were
        meta["train_ids"] = train_ids
    return meta


def _commit_cache(cache, key, tmp, vocab, meta) -> np.ndarray:
    tok = meta["tokenizer"]
    if "model" in tok:
        atomic_write(cache / f"{key}.model", lambda f: f.write(tok.pop("model")))
        tok["model"] = None
    os.replace(tmp, cache / f"{key}.ids")
    # the json marks the entry complete, so it goes last
    payload = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    atomic_write(cache / f"{key}.json", lambda f: f.write(payload))
    return np.memmap(cache / f"{key}.ids", dtype=vocab.dtype, mode="r")


# ---------------------------------------------------------------- the split


def split_sizes(n: int, val_frac: float) -> tuple[int, int]:
    n_train = int(n * (1 - val_frac))
    return n_train, n - n_train


def split_train_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """The validation set is the contiguous tail, as in nanoGPT's shakespeare_char."""
    n_train, _ = split_sizes(len(ids), val_frac)
    return ids[:n_train], ids[n_train:]
