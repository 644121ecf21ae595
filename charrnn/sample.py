"""Generation: prime on the seed in one forward call, then one step per character.

The recurrent state carries the whole context, so each new character costs one
single-step forward; the seed is never re-read.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from charrnn.errors import CharrnnError
from charrnn.model import CharRNN
from charrnn.tokenizers import CharVocab


def pick_next(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """logits (B, V) -> next ids (B, 1). Temperature 0 is greedy (argmax)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    # softmax subtracts the max, so even a tiny temperature cannot overflow to NaN
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


def make_generator(device: torch.device, rng_seed: int | None) -> torch.Generator:
    g = torch.Generator(device=device)
    if rng_seed is None:
        g.seed()  # fresh entropy from the OS
    else:
        g.manual_seed(rng_seed)
    return g


@torch.inference_mode()
def generate(
    model: CharRNN,
    vocab: CharVocab,
    seed: str,
    length: int,
    temperature: float = 1.0,
    rng_seed: int | None = None,
) -> Iterator[str]:
    """Yield `length` characters that continue `seed`, one at a time as they are made.

    Raises UnknownCharactersError (listing them) if the seed holds characters
    the model never saw.
    """
    if not seed:
        raise CharrnnError("the seed is empty; give at least one character")
    if temperature < 0:
        raise CharrnnError(f"temperature must be >= 0, not {temperature}")
    model.eval()
    device = next(model.parameters()).device
    generator = make_generator(device, rng_seed)
    ids = torch.from_numpy(vocab.encode(seed).astype(np.int64)).to(device)[None]  # (1, S)
    logits, state, _ = model(ids)  # the whole seed in one call
    for i in range(length):
        next_id = pick_next(logits[:, -1], temperature, generator)  # (1, 1)
        yield vocab.chars[int(next_id)]
        if i + 1 < length:
            logits, state, _ = model(next_id, state)  # (1, 1, V)
