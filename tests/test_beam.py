"""Beam search with stop strings: a candidate that makes a stop ends there, inside the
search, so the answer is the most probable text among those that end at a stop or run
the whole length (not the most probable full-length text, cut afterwards)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.sample.beam import beam_search
from charrnn.text.tokenizers import CharVocab

SEED = "a"


def sharp_model(vocab_size: int, seed: int) -> CharRNN:
    """An untrained model with confident, uneven predictions (std-2 output weights)."""
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig(vocab_size, hidden=8, embed=4)).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 2.0)
        model.head.bias.normal_(0, 1.0)
    return model


def logprob(model, vocab, text: str) -> float:
    """log P(text | SEED), teacher-forced through the whole model."""
    ids = torch.tensor(vocab.encode(SEED + text).astype("int64"))[None]  # (1, S)
    with torch.no_grad():
        logits, _, _ = model(ids)
    logp = torch.log_softmax(logits[0].double(), -1)
    n = len(SEED)
    return sum(float(logp[n - 1 + i, ids[0, n + i]]) for i in range(len(text)))


def brute_force(model, vocab, length: int, stops: list[str]) -> tuple[str, float]:
    """Every continuation of `length` characters; those holding a stop end at its first
    occurrence (the stop itself scored, not shown). The most probable wins."""
    best = ("", -math.inf)
    for chars in itertools.product(vocab.chars, repeat=length):
        text = "".join(chars)
        hits = [(text.find(s), s) for s in stops if s in text]
        if hits:
            at, stop = min(hits)
            text, shown = text[: at + len(stop)], text[:at]
        else:
            shown = text
        score = logprob(model, vocab, text)
        if score > best[1]:
            best = (shown, score)
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("stops", [["\n"], ["ba"], ["\n", "bb"]])
def test_an_exhaustive_beam_finds_the_most_probable_text_with_its_stops(seed, stops):
    vocab = CharVocab("\nab")
    model = sharp_model(len(vocab), seed)
    length = 4
    found = beam_search(model, vocab, SEED, length, beam=3**length, stop=stops)
    text, score = brute_force(model, vocab, length, stops)
    assert found.text == text
    assert found.logprob == pytest.approx(score, abs=1e-4)
    assert not any(s in found.text for s in stops)


def test_without_stops_a_beam_runs_the_whole_length():
    vocab = CharVocab("\nab")
    model = sharp_model(len(vocab), 0)
    found = beam_search(model, vocab, SEED, 6, beam=4)
    assert len(found.text) == 6
    assert found.logprob == pytest.approx(logprob(model, vocab, found.text), abs=1e-4)
