"""SentencePiece's trainer skips every sentence over its byte limit, so charrnn cuts long
lines for it: a one-line corpus trains, and a long line among short ones is learned."""

from __future__ import annotations

import random

import pytest

from charrnn.checkpoint import load_checkpoint, restore_tokenizer
from charrnn.text.sentencepiece import SP_SENTENCE_BYTES, cut_line, training_sentences
from tests.conftest import TINY_MODEL

SP_TRAIN = ["--tokenizer", "sentencepiece", *TINY_MODEL, "--max-steps", "2"]
PROSE = (
    "the king is come and all the lords attend him now what say you to this my good "
    "friend I would not have it so but since you will then let it be done and quickly"
)
HANGUL = "대한민국은 민주공화국이다 모든 국민은 인간으로서의 존엄과 가치를 가지며"
RARE_WORD = "zorblaxquint"  # made up, and only in the long line
# longer than a sentence SentencePiece takes, here (4,192 bytes) and before (65,536)
LONG_BYTES = 100_000


def words(n_bytes: int, vocabulary: list[str], seed: int = 0) -> str:
    """Words drawn at random, joined by spaces, until there are `n_bytes` UTF-8 bytes."""
    rng, out, size = random.Random(seed), [], 0
    while size < n_bytes:
        word = rng.choice(vocabulary)
        out.append(word)
        size += len(word.encode()) + 1
    return " ".join(out)


def trained_pieces(run_cli, tmp_path, corpus) -> set[str]:
    """Train through the CLI; the pieces of the SentencePiece model in its checkpoint."""
    out = tmp_path / "ck"
    run_cli("train", corpus, *SP_TRAIN, "--out", out, "--name", "sp")
    vocab = restore_tokenizer(load_checkpoint(out / "sp" / "last.pt"))
    assert vocab.kind == "sentencepiece"
    return {vocab.sp.id_to_piece(i) for i in range(len(vocab))}


def word_pieces(pieces: set[str]) -> set[str]:
    """Pieces that are a space and a word of three characters or more."""
    return {p for p in pieces if p.startswith("\u2581") and len(p) >= 4}


def test_a_one_line_english_corpus_trains(run_cli, tmp_path, write_corpus):
    line = words(LONG_BYTES, PROSE.split())
    assert "\n" not in line
    pieces = trained_pieces(run_cli, tmp_path, write_corpus(line))
    assert len(word_pieces(pieces)) >= 5, pieces


def test_a_long_line_among_short_ones_is_learned_from(run_cli, tmp_path, write_corpus):
    short = [words(60, PROSE.split(), seed) for seed in range(200)]
    # about one word in four, 15,000 times in all
    long = words(LONG_BYTES, PROSE.split() + [RARE_WORD] * 12, seed=1)
    assert long.count(RARE_WORD) > 3_000
    text = "\n".join(short[:100] + [long] + short[100:]) + "\n"
    pieces = trained_pieces(run_cli, tmp_path, write_corpus(text))
    assert "\u2581" + RARE_WORD in pieces or RARE_WORD in pieces


def test_a_one_line_korean_corpus_trains(run_cli, tmp_path, write_corpus):
    line = words(LONG_BYTES, HANGUL.split())
    assert "\n" not in line
    pieces = trained_pieces(run_cli, tmp_path, write_corpus(line))
    assert len(word_pieces(pieces)) >= 3, pieces


@pytest.mark.parametrize(
    "line, limit",
    [
        ("a " * 50, 7),
        ("word " * 30 + "x" * 40, 16),  # a stretch with no whitespace is cut anyway
        ("대한민국" * 20, 10),  # 3-byte characters, and no whitespace at all
        ("🌹👩‍👧e\u0301" * 20, 9),  # 4-byte, a ZWJ sequence, a combining mark
        ("한국어 문장 " * 40, 20),
    ],
)
def test_a_cut_line_is_whole_characters_under_the_limit(line, limit):
    pieces = list(cut_line(line, limit))
    assert "".join(pieces) == line
    assert all(0 < len(p.encode()) <= limit for p in pieces)


def test_a_line_is_cut_before_its_last_fitting_whitespace():
    # the space opens the next piece, where SentencePiece reads " ef" as "\u2581ef"
    assert list(cut_line("ab cd ef gh", 6)) == ["ab cd", " ef gh"]
    assert list(cut_line("ab\u3000cdefgh", 6)) == ["ab", "\u3000cde", "fgh"]


def test_lines_under_the_limit_pass_whole():
    lines = ["", "short", "é" * 100, "x" * SP_SENTENCE_BYTES]
    assert list(training_sentences(lines)) == lines
    long = ["y" * (SP_SENTENCE_BYTES + 1)]
    assert [len(p) for p in training_sentences(long)] == [SP_SENTENCE_BYTES, 1]
