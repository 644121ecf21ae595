"""Corpus file -> cached id array -> train/val split -> TBPTT stream batches."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.errors import CorpusError
from charrnn.tokenizers import CharVocab, code_points

CACHE_VERSION = 1
UTF8_BOM = b"\xef\xbb\xbf"
IGNORE_INDEX = -100  # targets with this id add nothing to the loss (padding)


def default_cache_dir() -> Path:
    if env := os.environ.get("CHARRNN_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charrnn"


# ---------------------------------------------------------------- reading


def read_bytes(path: Path, what: str = "corpus") -> bytes:
    """The file's bytes, or a CorpusError that names the file (as `what`) and the reason."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise CorpusError(f"{what} {path}: is a directory, not a text file") from None
    except PermissionError:
        raise CorpusError(f"{what} {path}: permission denied") from None
    except OSError as e:
        raise CorpusError(f"{what} {path}: cannot read ({e.strerror or e})") from None
    if not data:
        raise CorpusError(f"{what} {path}: the file is empty")
    return data


def decode_utf8(data: bytes, path: Path, what: str = "corpus") -> str:
    """Strict UTF-8 decoding; the error gives the byte offset of the first bad byte."""
    skip = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = e.start + skip
        bad = data[offset : offset + 4].hex(" ")
        raise CorpusError(
            f"{what} {path}: not valid UTF-8 at byte offset {offset} (bytes {bad})"
        ) from None
    if not text:
        raise CorpusError(f"{what} {path}: the file is empty")
    return text


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A whole UTF-8 text file, with the same clear errors as a corpus."""
    path = Path(path)
    return decode_utf8(read_bytes(path, what), path, what)


# ---------------------------------------------------------------- encoding + cache


@dataclass(frozen=True)
class EncodedCorpus:
    """A corpus as ids. `ids` may be a read-only memmap of the cache file."""

    path: Path
    sha256: str
    vocab: CharVocab
    ids: np.ndarray
    from_cache: bool

    def __len__(self) -> int:
        return len(self.ids)


def encode_text(text: str) -> tuple[CharVocab, np.ndarray]:
    cps = code_points(text)
    vocab = CharVocab.from_code_points(cps)
    return vocab, vocab.encode_code_points(cps)


def load_corpus(path: str | os.PathLike, cache_dir: Path | None = None) -> EncodedCorpus:
    """Read, decode and encode a UTF-8 corpus, reusing the cache when its hash matches.

    The cache key is the SHA-256 of the file's bytes, so an edited file is
    re-encoded and a renamed or copied one is not.
    """
    path = Path(path)
    data = read_bytes(path)
    sha = hashlib.sha256(data).hexdigest()
    cache = (cache_dir or default_cache_dir()) / f"v{CACHE_VERSION}"
    cached = _read_cache(cache, sha)
    if cached is not None:
        vocab, ids = cached
        return EncodedCorpus(path, sha, vocab, ids, from_cache=True)
    vocab, ids = encode_text(decode_utf8(data, path))
    _write_cache(cache, sha, vocab, ids)
    return EncodedCorpus(path, sha, vocab, ids, from_cache=False)


def _read_cache(cache: Path, sha: str) -> tuple[CharVocab, np.ndarray] | None:
    try:
        meta = json.loads((cache / f"{sha}.json").read_text(encoding="utf-8"))
        ids = np.load(cache / f"{sha}.npy", mmap_mode="r")
        vocab = CharVocab.from_dict(meta["vocab"])
        if len(ids) != meta["length"] or ids.dtype != vocab.dtype:
            return None
        return vocab, ids
    except Exception:  # a missing or stale cache entry is simply rebuilt
        return None


def _write_cache(cache: Path, sha: str, vocab: CharVocab, ids: np.ndarray) -> None:
    """Best effort: a read-only or full cache directory only costs re-encoding."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # ids first, then the json that marks the entry complete; both renamed into place
        for name, write in (
            (f"{sha}.npy", lambda f: np.save(f, ids)),
            (f"{sha}.json", lambda f: f.write(_cache_meta(vocab, ids))),
        ):
            fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, cache / name)
    except OSError:
        pass


def _cache_meta(vocab: CharVocab, ids: np.ndarray) -> bytes:
    meta = {"vocab": vocab.to_dict(), "length": int(len(ids))}
    return json.dumps(meta, ensure_ascii=False).encode("utf-8")


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
    need = chars_needed(batch_size, seq_len, val_frac)
    if len(corpus) < need:
        raise CorpusError(
            f"corpus {corpus.path} is too short: {len(corpus):,} characters, but "
            f"--batch-size {batch_size} x --seq-len {seq_len} with --val-frac {val_frac:g} "
            f"needs at least {need:,}"
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
    padded = n_streams * stream_len
    x = np.zeros(padded, dtype=np.int64)
    y = np.full(padded, IGNORE_INDEX, dtype=np.int64)
    x[:n_targets] = ids[:-1]
    y[:n_targets] = ids[1:]
    x, y = x.reshape(n_streams, stream_len), y.reshape(n_streams, stream_len)
    for t in range(0, stream_len, window):
        yield x[:, t : t + window], y[:, t : t + window]
