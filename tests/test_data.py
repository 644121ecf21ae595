from dataclasses import replace

import numpy as np
import pytest

from charrnn.data.batches import (
    IGNORE_INDEX,
    StreamBatches,
    chars_needed,
    check_corpus_size,
    eval_windows,
)
from charrnn.data.cache import load_corpus, split_train_val
from charrnn.errors import CorpusError
from tests.conftest import MIXED_TEXT


def test_load_corpus_encodes_and_caches(write_corpus, tmp_path):
    path = write_corpus(MIXED_TEXT * 3)
    first = load_corpus(path)
    assert not first.from_cache
    assert first.vocab.decode(first.ids) == MIXED_TEXT * 3
    assert first.ids.dtype == np.uint8

    second = load_corpus(path)
    assert second.from_cache
    assert second.sha256 == first.sha256
    assert np.array_equal(second.ids, first.ids)
    assert second.vocab == first.vocab

    path.write_text(MIXED_TEXT + "changed", encoding="utf-8")
    third = load_corpus(path)
    assert not third.from_cache
    assert third.vocab.decode(third.ids) == MIXED_TEXT + "changed"


def test_a_damaged_cache_entry_is_rebuilt(write_corpus, tmp_path):
    path = write_corpus("abcabc")
    load_corpus(path)
    damaged = list((tmp_path / "cache").rglob("*.ids"))
    assert len(damaged) == 1
    damaged[0].write_bytes(b"garbage")
    again = load_corpus(path)
    assert not again.from_cache
    assert again.vocab.decode(again.ids) == "abcabc"


def test_utf8_bom_is_skipped(write_corpus):
    corpus = load_corpus(write_corpus(b"\xef\xbb\xbfhi there"))
    assert corpus.vocab.decode(corpus.ids) == "hi there"


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "the file is empty"),
        (b"caf\xc3\xa9 ok \xff\xfe bad", "not valid UTF-8 at byte offset 9"),
        (b"\xef\xbb\xbfab\x80", "not valid UTF-8 at byte offset 5"),
    ],
)
def test_unreadable_text_is_a_corpus_error(write_corpus, content, message):
    with pytest.raises(CorpusError, match=message):
        load_corpus(write_corpus(content))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        load_corpus(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match=r"holds no \*.txt files"):
        load_corpus(tmp_path)


def test_validation_is_the_contiguous_tail_like_nanogpt():
    ids = np.arange(1_115_394)
    train, val = split_train_val(ids, 0.1)
    n = int(len(ids) * 0.9)  # nanoGPT's shakespeare_char prepare.py
    assert len(train) == n == 1_003_854
    assert np.array_equal(np.concatenate([train, val]), ids)


def test_every_stream_window_continues_the_previous_one():
    ids = np.arange(1000, dtype=np.uint16)
    batches = StreamBatches(ids, batch_size=4, seq_len=7)
    stream_len = (len(ids) - 1) // 4
    assert batches.n_windows == stream_len // 7
    for k in range(batches.n_windows):
        x, y = batches.window(k)
        assert x.shape == y.shape == (4, 7)
        assert x.dtype == np.int64
        for row in range(4):
            start = row * stream_len + k * 7
            assert x[row].tolist() == ids[start : start + 7].tolist()
            # targets are the inputs shifted by one character
            assert y[row].tolist() == ids[start + 1 : start + 8].tolist()
        if k + 1 < batches.n_windows:
            nxt, _ = batches.window(k + 1)
            assert np.array_equal(nxt[:, 0], y[:, -1])


def test_corpus_size_check_matches_what_batching_needs(write_corpus):
    for batch, seq, frac in [(4, 16, 0.1), (64, 100, 0.1), (3, 5, 0.0), (1, 1, 0.5)]:
        need = chars_needed(batch, seq, frac)
        corpus = load_corpus(write_corpus("ab" * need, "a.txt"))
        enough = replace(corpus, ids=corpus.ids[:need])
        check_corpus_size(enough, batch, seq, frac)
        train, val = split_train_val(enough.ids, frac)
        StreamBatches(train, batch, seq)  # must not raise
        assert frac == 0 or len(val) >= 2
        short = replace(corpus, ids=corpus.ids[: need - 1])
        with pytest.raises(CorpusError, match=f"needs at least {need:,}"):
            check_corpus_size(short, batch, seq, frac)


@pytest.mark.parametrize(
    "n,streams,window,min_stream",
    [(2, 32, 512, 1), (100, 7, 9, 1), (1001, 32, 16, 1), (64, 64, 1, 1), (5000, 32, 100, 1024)],
)
def test_eval_windows_cover_every_target_once(n, streams, window, min_stream):
    ids = np.random.default_rng(n).integers(0, 50, size=n).astype(np.uint8)
    xs, ys = [], []
    for x, y in eval_windows(ids, streams, window, min_stream):
        assert x.shape[0] == min(streams, max(1, (n - 1) // min_stream))
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs, axis=1), np.concatenate(ys, axis=1)  # (S, L)
    keep = y != IGNORE_INDEX
    assert keep.sum() == n - 1
    # read stream by stream, the kept pairs are exactly (ids[i], ids[i+1]) in order
    assert x[keep].tolist() == ids[:-1].tolist()
    assert y[keep].tolist() == ids[1:].tolist()


def test_a_cache_that_fails_half_way_still_trains_and_leaves_no_entry(
    write_corpus, tmp_path, monkeypatch
):
    """The ids are moved into the cache before its .json is written; if that write
    fails, the corpus is still served and no .ids file is left without its .json."""
    import charrnn.data.cache
    from charrnn.errors import WriteError

    real_write = charrnn.data.cache.atomic_write

    def failing_json(path, write):
        if str(path).endswith(".json"):
            raise WriteError(28, f"cannot write {path}: no space left on device")
        real_write(path, write)

    monkeypatch.setattr(charrnn.data.cache, "atomic_write", failing_json)
    cache = tmp_path / "c"
    corpus = load_corpus(write_corpus(MIXED_TEXT * 3), cache_dir=cache)
    assert len(corpus) == len(MIXED_TEXT * 3) and not corpus.from_cache
    assert corpus.vocab.decode(corpus.ids[:20]) == MIXED_TEXT[:20]
    assert [p.name for p in cache.rglob("*") if p.is_file()] == []
