"""Sampling text: one stream streamed piece by piece (`generate`), or many drawn together
as one batch (`sample_batch`); each ends at `length` characters or at a stop string."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from charrnn.model.rnn import CharRNN
from charrnn.sample.config import SampleConfig
from charrnn.sample.streams import StopMatcher, Streams, primed_streams
from charrnn.text.tokenizers import Tokenizer


@dataclass
class Sample:
    seed: str
    text: str  # the continuation, without the seed (and without a stop text)
    logprob: float  # summed log-probability of `text` under the model (nats)

    @property
    def characters(self) -> int:
        return len(self.text)

    @property
    def mean_logprob(self) -> float | None:
        return self.logprob / len(self.text) if self.text else None


def generate(
    model: CharRNN,
    vocab: Tokenizer,
    seed: str,
    length: int,
    config: SampleConfig | None = None,
    rng_seed: int | None = None,
    stop: Iterable[str] = (),
) -> Iterator[str]:
    """Yield up to `length` characters that continue `seed`, as they are made.

    Ends early at a stop string (which is not yielded). Raises
    UnknownCharactersError if the seed holds characters the model never saw.
    """
    config = config or SampleConfig()
    streams = primed_streams(model, vocab, seed, rng_seed)
    yield from continue_stream(streams, length, config, stop)


def continue_stream(
    streams: Streams, length: int, config: SampleConfig, stop: Iterable[str] = ()
) -> Iterator[str]:
    """Yield up to `length` more characters of a single primed stream."""
    matcher = StopMatcher(stop)
    decoder = streams.vocab.decoder()
    made = 0
    while made < length:
        ids, _ = streams.step(config)
        text = decoder.push(int(ids[0]))[: length - made]  # a piece may be several characters
        made += len(text)
        if shown := matcher.push(text):
            yield shown
        if matcher.done:
            return
    if tail := matcher.push(decoder.flush()[: length - made]) + matcher.flush():
        yield tail


def sample_batch(
    model: CharRNN,
    vocab: Tokenizer,
    seed: str,
    length: int,
    num_samples: int,
    config: SampleConfig | None = None,
    rng_seed: int | None = None,
    stop: Iterable[str] = (),
) -> list[Sample]:
    """`num_samples` continuations of `seed`, generated together as one batch."""
    config = config or SampleConfig()
    streams = primed_streams(model, vocab, seed, rng_seed)
    streams.expand(num_samples)
    matchers = [StopMatcher(stop) for _ in range(num_samples)]
    decoders = [vocab.decoder() for _ in range(num_samples)]
    texts = [[] for _ in range(num_samples)]
    made = [0] * num_samples
    logprob = [0.0] * num_samples
    while not all(m.done or n >= length for m, n in zip(matchers, made, strict=True)):
        ids, lps = streams.step(config)
        for i, (token_id, lp) in enumerate(zip(ids.tolist(), lps.tolist(), strict=True)):
            if not matchers[i].done and made[i] < length:
                piece = decoders[i].push(token_id)[: length - made[i]]
                made[i] += len(piece)
                texts[i].append(matchers[i].push(piece))
                logprob[i] += lp
    samples = []
    for i, m in enumerate(matchers):
        tail = m.push(decoders[i].flush()[: length - made[i]]) + m.flush()
        samples.append(Sample(seed, "".join(texts[i]) + tail, logprob[i]))
    return samples
