"""Hypothesis fuzzing of the tokenizers and of the sampler's parameters.

Whatever the text, ids or settings: no crash, no NaN, and exactly the length asked for.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.sample.beam import beam_search
from charrnn.sample.config import SampleConfig
from charrnn.sample.generate import generate, sample_batch
from charrnn.text.base import REPLACEMENT, prepare_text
from charrnn.text.config import TokenizerConfig
from charrnn.text.sentencepiece import train_sentencepiece
from charrnn.text.tokenizers import ByteVocab, CharVocab
from tests.conftest import MIXED_TEXT, TINY_MODEL, examples, no_loss_plot

# the tokenizer properties cost microseconds an example: three times the profile's
CHEAP = settings(max_examples=examples(3))


@pytest.fixture(scope="module")
def tokenizers():
    sp = train_sentencepiece(
        MIXED_TEXT.splitlines() * 20,
        TokenizerConfig(kind="sentencepiece", sp_type="bpe", vocab_size=400, coverage=1.0),
        normalize="none",
        keep_line_ends=True,
    )
    return {
        "char": CharVocab.from_text(MIXED_TEXT),
        "char+unk": CharVocab(CharVocab.from_text(MIXED_TEXT).chars, unk=True),
        "byte": ByteVocab(normalize="none", keep_line_ends=True),
        "sentencepiece": sp,
    }


# ------------------------------------------------------------------ tokenizers


@CHEAP
@given(ids=st.lists(st.integers(0, 255), max_size=200))
def test_byte_decoding_matches_pythons_utf8_decoder(tokenizers, ids):
    assert tokenizers["byte"].decode(ids) == bytes(ids).decode("utf-8", errors="replace")


@CHEAP
@given(data=st.data())
def test_any_ids_decode_to_text_that_encodes_back_to_itself(tokenizers, data):
    """Sampled ids can be anything; their text must survive a round trip."""
    for name in ("char", "byte", "sentencepiece"):
        vocab = tokenizers[name]
        ids = data.draw(st.lists(st.integers(0, len(vocab) - 1), max_size=60), label=name)
        text = vocab.decode(ids)
        assert isinstance(text, str)
        assert vocab.decode(vocab.encode(text)) == text


@CHEAP
@given(text=st.text(max_size=200))
def test_unknown_characters_become_unk_and_nothing_else_changes(tokenizers, text):
    vocab = tokenizers["char+unk"]
    ids = vocab.encode(text)
    assert ids.size == 0 or int(ids.max()) < len(vocab)
    expected = "".join(c if c in vocab.chars else REPLACEMENT for c in vocab.prepare(text))
    assert vocab.decode(ids) == expected


@CHEAP
@given(text=st.text(max_size=200), normalize=st.sampled_from(["nfc", "nfkc", "none"]))
def test_text_is_prepared_the_same_way_twice(text, normalize):
    once = prepare_text(text, normalize, keep_line_ends=False)
    assert prepare_text(once, normalize, keep_line_ends=False) == once
    assert "\r" not in once


# ------------------------------------------------------------------ the sampler


@pytest.fixture(scope="module")
def models(tokenizers):
    """Untrained two-layer models, one per tokenizer, with sharp and flat outputs."""
    out = {}
    for name, vocab in tokenizers.items():
        torch.manual_seed(0)
        model = CharRNN(ModelConfig(vocab_size=len(vocab), hidden=24, embed=8, layers=2)).eval()
        out[name] = (model, vocab)
    return out


def seed_for(vocab) -> str:
    return "ROMEO: " if vocab.kind != "char" or "R" in vocab.chars else MIXED_TEXT[:5]


temperatures = st.one_of(
    st.just(0.0),
    st.floats(1e-6, 1e-3),
    st.floats(1e-3, 5.0),
    st.floats(5.0, 1e6),
)
top_ks = st.one_of(st.none(), st.integers(1, 400))
top_ps = st.one_of(st.none(), st.floats(1e-9, 1.0, exclude_min=False), st.just(1.0))


@settings()  # the profile's examples: each one samples from four models
@given(
    name=st.sampled_from(["char", "char+unk", "byte", "sentencepiece"]),
    temperature=temperatures,
    top_k=top_ks,
    top_p=top_ps,
    length=st.integers(1, 80),
    num_samples=st.integers(1, 5),
    sharpness=st.sampled_from([1.0, 1e3]),
    rng_seed=st.integers(0, 2**32 - 1),
)
def test_any_sampling_settings_give_the_length_asked_and_finite_scores(
    models, name, temperature, top_k, top_p, length, num_samples, sharpness, rng_seed
):
    model, vocab = models[name]
    config = SampleConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    with torch.no_grad():
        original = model.head.weight.clone()
        model.head.weight.mul_(sharpness)  # logits in the thousands: softmax must not overflow
        try:
            samples = sample_batch(
                model, vocab, seed_for(vocab), length, num_samples, config, rng_seed
            )
            again = sample_batch(
                model, vocab, seed_for(vocab), length, num_samples, config, rng_seed
            )
            streamed = "".join(generate(model, vocab, seed_for(vocab), length, config, rng_seed))
        finally:
            model.head.weight.copy_(original)
    assert len(samples) == num_samples
    for s in samples:
        assert len(s.text) == length
        assert math.isfinite(s.logprob) and s.logprob <= 1e-6
        if vocab.kind == "char":  # never <unk>, never a character outside the vocabulary
            assert set(s.text) <= set(vocab.chars)
    assert [s.text for s in again] == [s.text for s in samples]  # the same seed, the same text
    assert len(streamed) == length


@settings()  # the profile's examples
@given(
    name=st.sampled_from(["char", "byte", "sentencepiece"]),
    length=st.integers(1, 30),
    beam=st.integers(1, 6),
)
def test_beam_search_gives_the_tokens_asked_and_a_finite_score(models, name, length, beam):
    model, vocab = models[name]
    sample = beam_search(model, vocab, seed_for(vocab), length, beam)
    assert math.isfinite(sample.logprob) and sample.logprob <= 1e-6
    if vocab.kind == "char":
        assert len(sample.text) == length


# ------------------------------------------------------------------ the same through the CLI


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from click.testing import CliRunner

    from charrnn.cli import cli

    work = tmp_path_factory.mktemp("fuzz")
    corpus = work / "corpus.txt"
    corpus.write_text(MIXED_TEXT * 30, encoding="utf-8")
    args = [
        "train",
        str(corpus),
        *TINY_MODEL,
        "--max-steps",
        "20",
        "--out",
        str(work),
        "--name",
        "t",
    ]
    with no_loss_plot():
        result = CliRunner().invoke(
            cli, args, catch_exceptions=False, env={"CHARRNN_CACHE_DIR": str(work / "c")}
        )
    assert result.exit_code == 0, result.output
    return work / "t" / "last.pt"


@settings(  # each example runs a command: fewer than the profile's
    max_examples=examples(0.6), suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    temperature=st.one_of(st.just(0.0), st.floats(1e-4, 50.0)),
    top_k=st.one_of(st.none(), st.integers(1, 100)),
    top_p=st.one_of(st.none(), st.floats(1e-6, 1.0)),
    length=st.integers(1, 120),
    num_samples=st.integers(1, 4),
)
def test_sample_command_prints_the_length_asked(
    tiny_checkpoint, temperature, top_k, top_p, length, num_samples
):
    from click.testing import CliRunner

    from charrnn.cli import cli

    args = ["sample", "--checkpoint", str(tiny_checkpoint), "--seed", "ROMEO:"]
    args += ["--temperature", repr(temperature), "--length", str(length)]
    args += ["--num-samples", str(num_samples), "--format", "jsonl", "--rng-seed", "1"]
    if top_k is not None:
        args += ["--top-k", str(top_k)]
    if top_p is not None:
        args += ["--top-p", repr(top_p)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == num_samples
    for r in records:
        assert len(r["text"]) == r["characters"] == length
        assert math.isfinite(r["mean_logprob"]) and r["mean_logprob"] <= 0
