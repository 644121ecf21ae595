"""Generation: prime on the seed in one forward call, then one step per character.

The recurrent state carries the whole context, so each new character costs one
single-step forward; the seed is never re-read. `Streams` runs B samples side
by side as one batch; the seed is primed once and its state copied to every
stream. Each step: temperature -> top-k -> top-p (nucleus) -> draw.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.errors import CharrnnError, UnknownCharactersError
from charrnn.inference import SingleStep, eval_mode, select_rows
from charrnn.model.rnn import CharRNN, State
from charrnn.sample.config import SampleConfig
from charrnn.text.base import Tokenizer

FEED_WINDOW = 4096  # seed ids per forward pass while priming


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """logits (B, V) with every character outside the top-k and the top-p nucleus
    set to -inf. The most likely character always survives."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # of the characters ranked above
        drop_sorted = mass_before >= top_p  # the set already reached p without it
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, -math.inf)
    return logits


def pick_next(
    logits: torch.Tensor, config: SampleConfig, generator: torch.Generator
) -> torch.Tensor:
    """logits (B, V) -> next ids (B,)."""
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    # softmax subtracts the max, so even temperature 1e-4 cannot overflow to NaN
    scaled = filter_logits(logits.float() / config.temperature, config.top_k, config.top_p)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def make_generator(device: torch.device, rng_seed: int | None) -> torch.Generator:
    g = torch.Generator(device=device)
    if rng_seed is None:
        g.seed()  # fresh entropy from the OS
    else:
        g.manual_seed(rng_seed)
    return g


def encode_seed(vocab: Tokenizer, seed: str, unknown: str = "error") -> tuple[str, list[str]]:
    """The seed the model can read, and the characters dropped from it.

    The seed is prepared as the training text was (normalisation, line ends).
    unknown="error" raises UnknownCharactersError listing characters the model
    never saw; "drop" removes them.
    """
    seed = vocab.prepare(seed)
    missing = vocab.unknown(seed)
    if not missing:
        return seed, []
    if unknown != "drop":
        raise UnknownCharactersError(missing)
    gone = set(missing)
    return "".join(c for c in seed if c not in gone), missing


def ban(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """logits (B, V) with the given ids (<unk>, control pieces) made impossible."""
    if ids.numel() == 0:
        return logits
    return logits.index_fill(-1, ids, -math.inf)


@torch.inference_mode()
def read_ids(model: CharRNN, ids: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
    """Run the model over ids (B, S), S >= 1, from `state`: the logits for the next id
    (B, V) and the state after the last one."""
    # in windows, so a megabyte seed never holds (B, S, V) logits at once
    with eval_mode(model):  # no dropout, even when a training callback samples
        for window in ids.split(FEED_WINDOW, dim=1):
            logits, state, _ = model(window, state)  # (B, W, V)
    return logits[:, -1], state


class Streams:
    """B generation streams that share a model: feed text, then step.

    The character drawn at one step is fed to the model at the start of the
    next, so a caller that stops after n characters pays for n forwards.
    """

    def __init__(self, model: CharRNN, vocab: Tokenizer, rng_seed: int | None = None):
        self.model = model  # its mode is left as it is: see `feed`
        self.vocab = vocab
        self.device = next(model.parameters()).device
        self.generator = make_generator(self.device, rng_seed)
        self.state: State | None = None
        self.logits: torch.Tensor | None = None  # (B, V) for the next character
        self.pending: torch.Tensor | None = None  # (B, 1) drawn but not yet fed
        self.banned = torch.tensor(vocab.special_ids, dtype=torch.long, device=self.device)
        self.single_step = SingleStep(self.model)

    @property
    def batch(self) -> int:
        return 1 if self.logits is None else self.logits.size(0)

    @torch.inference_mode()
    def feed(self, text: str) -> None:
        """Run the model over `text` (the same for every stream) from where it is."""
        ids = torch.from_numpy(self.vocab.encode(text).astype(np.int64)).to(self.device)
        ids = ids[None].expand(self.batch, -1)  # (B, S)
        if self.pending is not None:
            ids = torch.cat([self.pending, ids], dim=1)
            self.pending = None
        if ids.size(1) == 0:
            return
        self.logits, self.state = read_ids(self.model, ids, self.state)

    def expand(self, n: int) -> None:
        """Copy the one stream primed so far into n identical streams."""
        if self.batch != 1 or self.logits is None:
            raise CharrnnError("expand() needs exactly one primed stream")
        rows = torch.zeros(n, dtype=torch.long, device=self.device)
        self.logits = self.logits.index_select(0, rows)
        self.state = select_rows(self.state, rows)
        if self.pending is not None:
            self.pending = self.pending.index_select(0, rows)

    @torch.inference_mode()
    def step(self, config: SampleConfig) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one character per stream: ids (B,) and their log-probabilities (B,)."""
        if self.logits is None:
            raise CharrnnError("feed a seed before sampling")
        if self.pending is not None:
            self.logits, self.state = self.single_step(self.pending[:, 0], self.state)  # (B, V)
        logits = ban(self.logits, self.banned)
        ids = pick_next(logits, config, self.generator)  # (B,)
        logprobs = F.log_softmax(logits.float(), dim=-1).gather(1, ids[:, None])[:, 0]
        self.pending = ids[:, None]
        return ids, logprobs


class StopMatcher:
    """Holds back text that might be the start of a stop string.

    `push(ch)` returns the text that is now safe to show; once a stop string
    appears, `done` is set and the stop string itself is never shown.
    """

    def __init__(self, stops: Iterable[str] = ()):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.done = False

    def push(self, ch: str) -> str:
        if self.done:
            return ""
        self.held += ch
        if not self.stops:
            out, self.held = self.held, ""
            return out
        hits = [i for i in (self.held.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.done = True
            out, self.held = self.held[: min(hits)], ""
            return out
        # the longest end of the held text that could begin a stop string (held text is
        # never longer than the longest stop, so this stays short)
        longest = len(self.held)
        keep = max(
            (n for s in self.stops for n in range(1, min(len(s), longest + 1))
             if self.held.endswith(s[:n])),
            default=0,
        )  # fmt: skip
        cut = len(self.held) - keep
        out, self.held = self.held[:cut], self.held[cut:]
        return out

    def flush(self) -> str:
        out, self.held = ("" if self.done else self.held), ""
        return out


class StreamText:
    """One stream's text as its ids arrive: decoded, cut at `length` characters, with
    stop strings held back (StopMatcher). `finish` says how it ended: "stop" or
    "length", None while it goes on. `sample`'s streams and the server's rows use it."""

    def __init__(self, vocab: Tokenizer, length: int, stops: Iterable[str] = ()):
        self.decoder = vocab.decoder()
        self.matcher = StopMatcher(stops)
        self.length = length
        self.made = 0
        self.finish: str | None = None if length > 0 else "length"

    def push(self, token_id: int) -> str:
        """The text now safe to show, once this id is added."""
        piece = self.decoder.push(token_id)[: self.length - self.made]  # a piece may be long
        self.made += len(piece)
        text = self.matcher.push(piece)
        if self.matcher.done:
            self.finish = "stop"
        elif self.made >= self.length:  # what an unfinished character became, and held text
            text += self.matcher.push(self.decoder.flush()[: self.length - self.made])
            text += self.matcher.flush()
            self.finish = "stop" if self.matcher.done else "length"
        return text


def primed_streams(
    model: CharRNN, vocab: Tokenizer, seed: str, rng_seed: int | None = None
) -> Streams:
    """One stream that has read `seed` (which must be non-empty and known to the model)."""
    if not seed:
        raise CharrnnError("the seed is empty; give at least one character")
    streams = Streams(model, vocab, rng_seed)  # feed's encode refuses unseen characters
    streams.feed(seed)
    return streams
