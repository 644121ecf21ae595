"""The Python API: load a checkpoint, then generate, sample, search or score.

import charrnn
m = charrnn.load("checkpoints/shakespeare/best.pt")
for ch in m.generate("ROMEO:", length=200, temperature=0.8): ...
m.sample("ROMEO:", length=200, num_samples=4)   # list[str]
m.score("some text")                            # nats/char
m.trace("some text", layer=0, kind="cell")      # (tokens, hidden) values
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from charrnn.checkpoint import open_model
from charrnn.errors import CharrnnError, UnknownCharactersError
from charrnn.evaluate import score_text
from charrnn.sample.beam import beam_search
from charrnn.sample.config import SampleConfig
from charrnn.sample.generate import generate, sample_batch
from charrnn.sample.streams import encode_seed
from charrnn.trace import trace_ids


def load(
    path: str | os.PathLike | None = None,
    device: str = "auto",
    out: str | os.PathLike = "checkpoints",
) -> Model:
    """A checkpoint file or run folder (default: the newest run's best.pt under `out`)."""
    return Model(*open_model(path, device, out))


class Model:
    """A trained model and its tokenizer, ready to generate text."""

    def __init__(self, model, vocab, checkpoint: dict):
        self.model = model
        self.vocab = vocab
        self.path = checkpoint["path"]
        self.step = checkpoint.get("step", 0)
        self.val_loss = checkpoint.get("val_loss")
        self.config = model.config

    def __repr__(self) -> str:
        c = self.config
        return f"<charrnn.Model {c.cell} {c.layers}x{c.hidden} from {self.path}>"

    def generate(
        self,
        seed: str = "\n",
        length: int = 200,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        rng_seed: int | None = None,
        stop: Iterable[str] = (),
        unknown: str = "error",
    ) -> Iterator[str]:
        """Yield the continuation of `seed` piece by piece as it is made."""
        seed = self._seed(seed, unknown)
        config = SampleConfig(temperature, top_k, top_p)
        return generate(self.model, self.vocab, seed, length, config, rng_seed, stop)

    def sample(
        self,
        seed: str = "\n",
        length: int = 200,
        num_samples: int = 1,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        rng_seed: int | None = None,
        stop: Iterable[str] = (),
        unknown: str = "error",
    ) -> list[str]:
        """`num_samples` continuations of `seed`, generated together as one batch."""
        seed = self._seed(seed, unknown)
        config = SampleConfig(temperature, top_k, top_p)
        samples = sample_batch(
            self.model, self.vocab, seed, length, num_samples, config, rng_seed, stop
        )
        return [s.text for s in samples]

    def beam(
        self, seed: str = "\n", length: int = 200, beam: int = 4, stop: Iterable[str] = ()
    ) -> str:
        """The most probable continuation of `length` tokens (characters, for a char
        model), or of fewer that end at a `stop` string, that beam search finds."""
        seed = self._seed(seed, "error")
        return beam_search(self.model, self.vocab, seed, length, beam, stop).text

    def score(self, text: str) -> float:
        """Cross-entropy of `text` in nats per token (per character for a char model),
        with the state carried through it, as `charrnn eval` and validation compute it.
        Unknown characters raise an error."""
        if unknown := self.vocab.unknown(text):
            raise UnknownCharactersError(unknown, "the text")
        return score_text(self.model, self.vocab, text).loss

    def trace(self, text: str, layer: int = 0, kind: str = "hidden"):
        """The values of `kind` (hidden, cell, or a gate: input, forget, output for an
        LSTM; reset, update for a GRU) in `layer` (0-based) after each token of `text`,
        as a (tokens, hidden) float32 array: what the exported page's neuron view shows."""
        if unknown := self.vocab.unknown(text):
            raise UnknownCharactersError(unknown, "the text")
        return trace_ids(self.model, self.vocab.encode(text), layer, kind)

    def _seed(self, seed: str, unknown: str) -> str:
        kept, _ = encode_seed(self.vocab, seed, unknown)
        if not kept:
            raise CharrnnError("the seed is empty; give at least one character")
        return kept
