"""The train/validation split: SentencePiece learns from the training text alone, and
its ids are split at the character boundary of the prepared text."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from charrnn.data.batches import check_corpus_size
from charrnn.data.cache import load_corpus, split_sizes, split_train_val
from charrnn.errors import CorpusError
from charrnn.text.config import TokenizerConfig
from tests.conftest import MIXED_TEXT, TINY_MODEL

TAIL_WORD = "xylophonequartz"  # in the validation tail only
OMEGA = "\u03a9"


def varied_words(size: int, seed: int = 0) -> str:
    """Lines of random words over 19 letters (no j, k, q, w, x, y, z): no pair of
    characters is frequent, so a repeated word elsewhere wins every BPE merge."""
    rng = random.Random(seed)
    letters = "abcdefghilmnoprstuv"
    lines, n = [], 0
    while n < size:
        count = rng.randint(5, 9)
        words = ("".join(rng.choices(letters, k=rng.randint(8, 14))) for _ in range(count))
        line = " ".join(words) + "\n"
        lines.append(line)
        n += len(line)
    return "".join(lines)


def with_tail(train: str, line: str) -> str:
    """`train`, then `line` repeated so it is about the last tenth of the text."""
    return train + line * (len(train) // 9 // len(line))


def sp_config(sp_type: str = "bpe", vocab_size: int | None = None) -> TokenizerConfig:
    return TokenizerConfig(
        kind="sentencepiece", sp_type=sp_type, vocab_size=vocab_size, coverage=1.0
    )


def test_a_word_only_in_the_validation_text_is_not_learned(tmp_path, run_cli, write_corpus):
    # before the split was a character position, a corpus under one 8 MB read chunk
    # went to SentencePiece whole, and the tail word became a single piece
    corpus = write_corpus(with_tail(varied_words(117_000), " ".join([TAIL_WORD] * 10) + "\n"))
    out = tmp_path / "ck"
    sp = ["--tokenizer", "sentencepiece", "--sp-type", "bpe", "--vocab-size", "300"]
    run_cli("train", corpus, *sp, *TINY_MODEL, "--max-steps", "2", "--out", out, "--name", "sp")
    words = write_corpus((" " + TAIL_WORD) * 300, "words.txt")
    result = run_cli("eval", words, "--checkpoint", out / "sp" / "last.pt", "--json")
    report = json.loads(result.stdout)
    assert report["tokens"] >= 2 * 300, report


def pieces_of(vocab) -> set[str]:
    sp = vocab.sp
    return {sp.id_to_piece(i) for i in range(len(vocab)) if not sp.is_byte(i)}


@pytest.mark.parametrize("sp_type", ["char", "bpe"])
def test_sentencepiece_sees_exactly_the_training_characters(write_corpus, sp_type):
    text = with_tail(MIXED_TEXT * 40, "\u03a9 omega\n")
    path = write_corpus(text)
    held_out = load_corpus(path, tokenizer=sp_config(sp_type), val_frac=0.1)
    assert OMEGA not in text[: int(len(text) * 0.9)]
    assert OMEGA not in pieces_of(held_out.vocab)  # it is spelled by byte fallback
    assert held_out.vocab.decode(held_out.vocab.encode_prepared(OMEGA)) == OMEGA
    everything = load_corpus(path, tokenizer=sp_config(sp_type), val_frac=0)
    assert OMEGA in pieces_of(everything.vocab)
    assert everything.train_ids == len(everything)


@pytest.mark.parametrize("val_frac", [0.1, 0.37, 0.5])
def test_the_ids_split_at_the_character_boundary(write_corpus, val_frac):
    text = varied_words(20_000, seed=1) + MIXED_TEXT * 5
    corpus = load_corpus(write_corpus(text), tokenizer=sp_config(), val_frac=val_frac)
    n_train = int(len(text) * (1 - val_frac))
    train, val = corpus.split(val_frac)
    assert corpus.vocab.decode(train) == text[:n_train]
    assert corpus.vocab.decode(val) == text[n_train:]
    assert len(train) == corpus.train_ids and len(train) + len(val) == len(corpus)
    assert corpus.split_sizes(val_frac) == (len(train), len(val))
    assert corpus.characters == len(text)
    with pytest.raises(ValueError, match="--val-frac"):
        corpus.split(0.2)


def test_a_resumed_tokenizer_splits_at_the_boundary_too(write_corpus):
    text = varied_words(20_000, seed=2)
    path = write_corpus(text)
    first = load_corpus(path, tokenizer=sp_config(vocab_size=400), val_frac=0.25)
    resumed = load_corpus(path, existing=first.vocab, val_frac=0.25)
    assert not resumed.from_cache  # another cache key: the tokenizer is given
    assert resumed.train_ids == first.train_ids
    assert np.array_equal(resumed.ids, first.ids)
    other = load_corpus(path, existing=first.vocab, val_frac=0.1)
    assert not other.from_cache  # val_frac is part of the key
    n_train = int(len(text) * 0.9)
    assert other.vocab.decode(other.split(0.1)[0]) == text[:n_train]


def test_the_boundary_survives_a_cache_hit(write_corpus, tmp_path):
    path = write_corpus(varied_words(20_000, seed=3))
    first = load_corpus(path, tokenizer=sp_config(), val_frac=0.2)
    second = load_corpus(path, tokenizer=sp_config(), val_frac=0.2)
    assert second.from_cache and not first.from_cache
    assert second.train_ids == first.train_ids is not None
    for a, b in zip(first.split(0.2), second.split(0.2), strict=True):
        assert np.array_equal(a, b)
    # an entry written before the boundary was stored is built again
    (meta_path,) = (tmp_path / "cache").rglob("*.json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    del meta["train_ids"]
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    third = load_corpus(path, tokenizer=sp_config(), val_frac=0.2)
    assert not third.from_cache and third.train_ids == first.train_ids


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_char_and_byte_corpora_split_by_proportion(write_corpus, kind):
    corpus = load_corpus(write_corpus(MIXED_TEXT * 7), tokenizer=TokenizerConfig(kind=kind))
    assert corpus.train_ids is None and corpus.val_frac is None
    for val_frac in (0, 0.1, 0.37, 0.5):
        assert corpus.split_sizes(val_frac) == split_sizes(len(corpus), val_frac)
        for a, b in zip(corpus.split(val_frac), split_train_val(corpus.ids, val_frac), strict=True):
            assert np.array_equal(a, b)
    assert load_corpus(
        write_corpus(MIXED_TEXT * 7), tokenizer=TokenizerConfig(kind=kind)
    ).from_cache


def test_the_size_check_uses_the_corpus_split(write_corpus):
    corpus = load_corpus(write_corpus(varied_words(3_000, seed=4)), tokenizer=sp_config())
    n_train, n_val = corpus.split_sizes(0.1)
    check_corpus_size(corpus, 1, n_train - 1, 0.1)
    with pytest.raises(CorpusError, match=f"needs at least {n_train + 1:,} for training"):
        check_corpus_size(corpus, 1, n_train, 0.1)
    with pytest.raises(ValueError, match="--val-frac"):
        check_corpus_size(corpus, 1, 1, 0.2)


def test_resuming_a_run_whose_split_an_older_charrnn_placed_says_so(
    tmp_path, run_cli, write_corpus
):
    """An older charrnn split SentencePiece ids by proportion (and trained the model on
    the validation text too); its checkpoints carry no `train_ids`."""
    from charrnn.checkpoint import load_checkpoint, save_checkpoint

    corpus = write_corpus(varied_words(20_000))
    out = tmp_path / "ck"
    sp = ["--tokenizer", "sentencepiece", "--sp-type", "bpe", "--vocab-size", "300"]
    run_cli("train", corpus, *sp, *TINY_MODEL, "--max-steps", 2, "--out", out, "--name", "sp")
    again = run_cli("train", corpus, "--resume", "sp", "--out", out, "--max-steps", 3)
    assert "note:" not in again.stderr  # this version's own checkpoint: the same split
    ckpt = load_checkpoint(out / "sp" / "last.pt")
    for key in ("path", "format", "format_version", "train_ids"):
        del ckpt[key]
    save_checkpoint(ckpt, out / "sp" / "last.pt")
    old = run_cli("train", corpus, "--resume", "sp", "--out", out, "--max-steps", 4)
    assert "note: an older charrnn split this run's SentencePiece ids elsewhere" in old.stderr
