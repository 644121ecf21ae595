"""Ids -> truncated-BPTT stream batches for training and evaluation windows for validation,
and the check that a corpus is long enough for them (the split itself is the corpus's:
see charrnn.data.cache.EncodedCorpus.split)."""

from __future__ import annotations

import math

import numpy as np

from charrnn.data.cache import EncodedCorpus, split_sizes
from charrnn.errors import CorpusError

IGNORE_INDEX = -100  # targets with this id add nothing to the loss (padding)


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

    `rows` keeps a contiguous range of the streams (one rank's share under torchrun);
    the streams themselves, and `chars_per_step`, stay those of the whole batch.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, rows: slice = slice(None)):
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
        self.inputs = ids[:used].reshape(batch_size, stream_len)[rows]  # (B, L) or rows of it
        self.targets = ids[1 : used + 1].reshape(batch_size, stream_len)[rows]

    @property
    def chars_per_step(self) -> int:
        return self.batch_size * self.seq_len

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets of window k, each (B, T) int64 (the kept rows of B)."""
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
