"""Sampling text: one stream streamed piece by piece (`generate`), or many drawn together
as one batch (`sample_batch`); each ends at `length` characters or at a stop string."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from charrnn.model.rnn import CharRNN
from charrnn.sample.config import SampleConfig
from charrnn.sample.streams import Streams, StreamText, primed_streams
from charrnn.text.base import Tokenizer


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
    out = StreamText(streams.vocab, length, stop)
    while out.finish is None:
        ids, _ = streams.step(config)
        if text := out.push(int(ids[0])):
            yield text


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
    outs = [StreamText(vocab, length, stop) for _ in range(num_samples)]
    texts = [[] for _ in range(num_samples)]
    logprob = [0.0] * num_samples
    while not all(out.finish for out in outs):
        ids, lps = streams.step(config)
        for i, (token_id, lp) in enumerate(zip(ids.tolist(), lps.tolist(), strict=True)):
            if outs[i].finish is None:
                texts[i].append(outs[i].push(token_id))
                logprob[i] += lp
    return [Sample(seed, "".join(t), lp) for t, lp in zip(texts, logprob, strict=True)]
