"""Corpus files -> cached id array (memmap) -> train/val split -> TBPTT stream batches."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import CorpusError, UnknownCharactersError, WriteError
from charrnn.files import atomic_write, describe_os_error
from charrnn.sources import (
    TextConfig,
    corpus_files,
    corpus_text,
    describe_sources,
    sources_sha256,
    total_bytes,
)
from charrnn.tokenizers import (
    MAX_CODE_POINT,
    ByteVocab,
    CharVocab,
    SentencePieceVocab,
    Tokenizer,
    TokenizerConfig,
    code_points,
    tokenizer_from_dict,
    train_sentencepiece,
)

CACHE_VERSION = 2
IGNORE_INDEX = -100  # targets with this id add nothing to the loss (padding)
RETAIN_BYTES = 256 << 20  # code points kept between the counting and encoding passes


def default_cache_dir() -> Path:
    if env := os.environ.get("CHARRNN_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charrnn"


# ---------------------------------------------------------------- the encoded corpus


@dataclass(frozen=True)
class RareCharacters:
    """--min-count accounting: the characters that were mapped to <unk>."""

    distinct: int  # how many different characters
    occurrences: int  # how often they occur in the corpus
    characters: int  # corpus length in characters

    @property
    def share(self) -> float:
        return self.occurrences / max(self.characters, 1)


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


# ---------------------------------------------------------------- building and encoding


def build_char_vocab(pieces, text: TextConfig, min_count: int):
    """Count every code point; characters seen fewer than `min_count` times share <unk>.

    Returns (vocab, rare-character report, code point arrays to encode from, or
    None when they outgrew RETAIN_BYTES and the text must be read again).
    """
    counts = np.zeros(MAX_CODE_POINT + 1, dtype=np.int64)
    retained, kept_bytes = [], 0
    for piece in pieces:
        cps = code_points(piece)
        found = np.bincount(cps)  # only as long as the largest code point in the piece
        counts[: len(found)] += found
        if retained is not None:
            retained.append(cps)
            kept_bytes += cps.nbytes
            if kept_bytes > RETAIN_BYTES:
                retained = None
    seen = counts > 0
    kept = counts >= min_count
    if not kept.any():
        raise CorpusError(f"no character occurs {min_count} times or more; lower --min-count")
    rare_mask = seen & ~kept
    rare = RareCharacters(
        distinct=int(rare_mask.sum()),
        occurrences=int(counts[rare_mask].sum()),
        characters=int(counts.sum()),
    )
    vocab = CharVocab.from_code_points(
        np.flatnonzero(kept),
        unk=rare.distinct > 0,
        normalize=text.normalize,
        keep_line_ends=text.keep_line_ends,
    )
    return vocab, (rare if min_count > 1 else None), retained


def write_ids(vocab: Tokenizer, source, f) -> int:
    """Encode prepared text (pieces, or code point arrays) into file `f`; returns
    the number of characters."""
    characters = 0
    if isinstance(vocab, CharVocab):
        table = vocab.lookup_table()
        for piece in source:
            cps = piece if isinstance(piece, np.ndarray) else code_points(piece)
            ids = table[cps]
            if not vocab.unk and (ids == len(vocab)).any():
                missing = CharVocab.from_code_points(cps[ids == len(vocab)]).chars
                raise UnknownCharactersError(sorted(missing), what="the corpus")
            f.write(ids.astype(vocab.dtype, copy=False).tobytes())
            characters += len(cps)
        return characters
    if isinstance(vocab, SentencePieceVocab):  # it should see whole lines; bytes need not
        source = whole_lines(source)
    for block in source:
        f.write(vocab.encode_prepared(block).tobytes())
        characters += len(block)
    return characters


def whole_lines(pieces, limit: int = 1 << 24):
    """Re-cut text pieces so each ends with a newline (the last may not), unless a
    line runs past `limit` characters: memory stays bounded on one-line corpora."""
    held = ""
    for piece in pieces:
        held += piece
        cut = held.rfind("\n") + 1
        if not cut and len(held) > limit:
            cut = len(held)
        if cut:
            yield held[:cut]
            held = held[cut:]
    if held:
        yield held


def lines_of(pieces):
    for block in whole_lines(pieces):
        yield from block.split("\n")


def train_chars(pieces, val_frac: float) -> int:
    """Characters of the prepared text before the validation split, the same rule as
    `split_sizes` applied to characters. It takes a pass of its own: the boundary must
    be known before the tokenizer is trained, and the text is not kept in memory."""
    total = sum(len(piece) for piece in pieces)
    return int(total * (1 - val_frac))


def split_text(pieces, n: int):
    """Text pieces as two iterators: the first `n` characters, and the rest. The piece
    the boundary falls in is cut there; the second is read only after the first."""
    pieces, rest = iter(pieces), []

    def head():
        left = n
        for piece in pieces:
            if len(piece) >= left:
                yield piece[:left]
                rest.append(piece[left:])
                return
            left -= len(piece)
            yield piece

    def tail():
        yield from rest
        yield from pieces

    return head(), tail()


def write_split_ids(vocab: Tokenizer, pieces, boundary: int, f) -> tuple[int, int]:
    """Encode the text before character `boundary` and the text after it separately, so
    no token spans the train/validation boundary. Returns (characters, training ids)."""
    head, tail = split_text(pieces, boundary)
    characters = write_ids(vocab, head, f)
    train_ids = f.tell() // vocab.dtype.itemsize  # f holds this corpus's ids alone
    return characters + write_ids(vocab, tail, f), train_ids


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


# ---------------------------------------------------------------- split


def split_sizes(n: int, val_frac: float) -> tuple[int, int]:
    n_train = int(n * (1 - val_frac))
    return n_train, n - n_train


def split_train_val(ids: np.ndarray, val_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """The validation set is the contiguous tail, as in nanoGPT's shakespeare_char."""
    n_train, _ = split_sizes(len(ids), val_frac)
    return ids[:n_train], ids[n_train:]


def chars_needed(batch_size: int, seq_len: int, val_frac: float) -> int:
    """The shortest corpus whose training split fills one batch (B*T + 1 characters)
    and whose validation split, if any, holds at least one target (2 characters)."""
    need_train = batch_size * seq_len + 1
    need_val = 2 if val_frac > 0 else 0
    total = max(need_train + need_val, math.ceil(need_train / (1 - val_frac)))
    while True:  # int() truncation can leave the first guess a character or two short
        n_train, n_val = split_sizes(total, val_frac)
        if n_train >= need_train and n_val >= need_val:
            return total
        total += 1


def check_corpus_size(corpus: EncodedCorpus, batch_size: int, seq_len: int, val_frac: float):
    """Refuse a corpus whose own split (see `EncodedCorpus.split_sizes`) cannot fill one
    training batch, or holds no validation target when there is validation."""
    n_train, n_val = corpus.split_sizes(val_frac)
    need_train, need_val = batch_size * seq_len + 1, 2 if val_frac > 0 else 0
    if n_train >= need_train and n_val >= need_val:
        return
    options = f"--batch-size {batch_size} x --seq-len {seq_len} with --val-frac {val_frac:g}"
    if corpus.train_ids is None:  # a proportional split: one total says it all
        need = chars_needed(batch_size, seq_len, val_frac)
        raise CorpusError(
            f"corpus {corpus.path} is too short: {len(corpus):,} {corpus.unit}, but "
            f"{options} needs at least {need:,}"
        )
    val = f" and {need_val} for validation" if need_val else ""
    raise CorpusError(
        f"corpus {corpus.path} is too short: {n_train:,} {corpus.unit} for training and "
        f"{n_val:,} for validation, but {options} needs at least {need_train:,} for training{val}"
    )


# ---------------------------------------------------------------- batches


class StreamBatches:
    """Truncated-BPTT batches: the ids cut into `batch_size` contiguous streams.

    ids:  a b c d e f g h i j k l m n o p q r s t u v w x y
    batch_size B=3 streams of length L=8, seq_len T=4 (n_windows = L // T = 2):

              window 0   window 1
      row 0:  a b c d  | e f g h
      row 1:  i j k l  | m n o p
      row 2:  q r s t  | u v w x      (y is only ever a target)

    Step k feeds window k of every row; its targets are the same positions
    shifted one character right (row 0, window 0 -> b c d e). Row r's window k+1
    continues its window k, so the hidden state carried from one step to the
    next belongs to the text that comes before. At the end of a pass the state
    is reset. The tail that does not fill a whole window is left out.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int):
        stream_len = (len(ids) - 1) // batch_size
        self.n_windows = stream_len // seq_len
        if self.n_windows < 1:
            raise CorpusError(
                f"the training split has {len(ids)} characters; batch size {batch_size} "
                f"x seq-len {seq_len} needs at least {batch_size * seq_len + 1}"
            )
        self.batch_size = batch_size
        self.seq_len = seq_len
        used = batch_size * stream_len
        self.inputs = ids[:used].reshape(batch_size, stream_len)  # (B, L)
        self.targets = ids[1 : used + 1].reshape(batch_size, stream_len)  # (B, L)

    @property
    def chars_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of window k, each (B, T) int64."""
        t = k * self.seq_len
        x = self.inputs[:, t : t + self.seq_len]
        y = self.targets[:, t : t + self.seq_len]
        return x.astype(np.int64), y.astype(np.int64)


EVAL_STREAMS = 32
EVAL_MIN_STREAM = 1024
EVAL_WINDOW = 512


def eval_windows(
    ids: np.ndarray,
    n_streams: int = EVAL_STREAMS,
    window: int = EVAL_WINDOW,
    min_stream: int = EVAL_MIN_STREAM,
):
    """Cover every target of `ids` once, with a state carried along each stream.

    The text is cut into at most `n_streams` contiguous streams so evaluation
    runs as a batch, but no shorter than `min_stream` characters: each stream
    starts from a zero state, and on a short text many cold starts would
    overstate the loss. The last stream is padded with IGNORE_INDEX targets.
    Yields (x, y) windows, each (S, <=window) int64.
    """
    n_targets = len(ids) - 1
    if n_targets < 1:
        return
    n_streams = max(1, min(n_streams, n_targets // min_stream))
    stream_len = -(-n_targets // n_streams)  # ceil
    for t in range(0, stream_len, window):
        width = min(window, stream_len - t)
        # built window by window from `ids` (perhaps a memmap), never the whole split at once
        x = np.zeros((n_streams, width), dtype=np.int64)
        y = np.full((n_streams, width), IGNORE_INDEX, dtype=np.int64)
        for s in range(n_streams):
            start = s * stream_len + t
            stop = min(start + width, s * stream_len + stream_len, n_targets)
            if stop > start:
                x[s, : stop - start] = ids[start:stop]
                y[s, : stop - start] = ids[start + 1 : stop + 1]
        yield x, y
