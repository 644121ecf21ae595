import pytest
import torch

from charrnn.errors import CharrnnError, UnknownCharactersError
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.sample.config import SampleConfig
from charrnn.sample.generate import generate
from charrnn.text.tokenizers import CharVocab
from tests.conftest import MIXED_TEXT


@pytest.fixture(scope="module")
def model_and_vocab():
    torch.manual_seed(0)
    vocab = CharVocab.from_text(MIXED_TEXT)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=2, hidden=32, embed=8))
    # larger output weights than the near-uniform init, so samples have structure
    torch.nn.init.normal_(model.head.weight, std=1.0)
    return model.eval(), vocab


def sample(model_and_vocab, seed="ROMEO:", length=200, rng_seed=None, **settings):
    model, vocab = model_and_vocab
    config = SampleConfig(**settings)
    return "".join(generate(model, vocab, seed, length, config, rng_seed))


def test_length_is_exact_in_characters(model_and_vocab):
    for n in (1, 7, 300):
        text = sample(model_and_vocab, length=n, rng_seed=1)
        assert len(text) == n
        assert set(text) <= set(model_and_vocab[1].chars)


def test_same_rng_seed_same_text(model_and_vocab):
    a = sample(model_and_vocab, temperature=1.0, rng_seed=42)
    b = sample(model_and_vocab, temperature=1.0, rng_seed=42)
    c = sample(model_and_vocab, temperature=1.0, rng_seed=43)
    assert a == b
    assert a != c


def test_greedy_is_deterministic_and_matches_rereading_the_context(model_and_vocab):
    model, vocab = model_and_vocab
    greedy = sample(model_and_vocab, length=40, temperature=0, rng_seed=1)
    assert greedy == sample(model_and_vocab, length=40, temperature=0, rng_seed=2)
    # the slow way: re-run the whole text each step and take the argmax
    text = "ROMEO:"
    with torch.no_grad():
        for _ in range(40):
            ids = torch.tensor(vocab.encode(text), dtype=torch.long)[None]
            logits, _, _ = model(ids)
            text += vocab.chars[int(logits[0, -1].argmax())]
    assert greedy == text[len("ROMEO:") :]


def test_extreme_temperatures_never_crash(model_and_vocab):
    model, vocab = model_and_vocab
    cold = sample(model_and_vocab, length=50, temperature=1e-4, rng_seed=0)
    # at T=1e-4 a character whose logit is 0.01 below the best has odds of e^-100:
    # every pick must be (within rounding) a most likely character
    ids = torch.tensor(vocab.encode("ROMEO:" + cold), dtype=torch.long)[None]
    with torch.no_grad():
        logits, _, _ = model(ids[:, :-1])
    picked = logits[0, 5:].gather(1, ids[0, 6:, None]).squeeze(1)
    assert torch.all(picked >= logits[0, 5:].max(dim=1).values - 0.01)
    hot = sample(model_and_vocab, length=50, temperature=100, rng_seed=0)
    assert len(hot) == 50 and set(hot) <= set(vocab.chars)
    assert len(set(hot)) > 10  # close to uniform


def test_unseen_seed_characters_are_listed(model_and_vocab):
    with pytest.raises(UnknownCharactersError, match="'Z'.*'ß'|'ß'.*'Z'"):
        sample(model_and_vocab, seed="ZROMEOß")


def test_bad_arguments(model_and_vocab):
    with pytest.raises(CharrnnError, match="seed is empty"):
        sample(model_and_vocab, seed="")
    with pytest.raises(CharrnnError, match="temperature"):
        sample(model_and_vocab, temperature=-1)
