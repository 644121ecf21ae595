"""How well a model predicts a text: cross-entropy with the state carried along.

`evaluate` is what training's validation runs; `score_text` prepares any text
the way the training text was and scores it (`charrnn eval`, `Model.score`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.data.batches import IGNORE_INDEX, eval_windows
from charrnn.distributed import Job
from charrnn.errors import CharrnnError
from charrnn.inference import eval_mode
from charrnn.model.rnn import CharRNN
from charrnn.runtime import autocast

LN2 = math.log(2)


def evaluate(
    model: CharRNN, ids: np.ndarray, device: torch.device, precision: str = "fp32"
) -> float:
    """Mean cross-entropy (nats/char) over every character of `ids` after the first,
    with the state carried along each evaluation stream."""
    loss_sum, count = evaluate_sums(model, ids, device, precision)
    if count == 0:
        raise CharrnnError("the validation split has no characters to evaluate")
    return loss_sum / count


def evaluate_shared(
    model: CharRNN, ids: np.ndarray, device: torch.device, precision: str, job: Job
) -> float:
    """`evaluate` with the streams shared out among a torchrun job's ranks and the sums
    added up, so every rank gets the number one process would."""
    loss_sum, count = evaluate_sums(model, ids, device, precision, job.rank, job.world)
    loss_sum, count = job.sum(loss_sum, count)
    if count == 0:
        raise CharrnnError("the validation split has no characters to evaluate")
    # rank 0's number, bit for bit, everywhere: best.pt and patience follow from it
    return job.share(loss_sum / count)


@torch.inference_mode()
def evaluate_sums(
    model: CharRNN,
    ids: np.ndarray,
    device: torch.device,
    precision: str = "fp32",
    part: int = 0,
    parts: int = 1,
) -> tuple[float, int]:
    """The summed cross-entropy (nats) and the number of targets scored, over part
    `part` of `parts` of the evaluation streams (contiguous ranges; the whole by
    default). The parts' sums add up to the whole's, so ranks can share the work."""
    sums = []  # float32 per window on the device (MPS has no float64); added up on the host
    count = 0
    state = None
    with eval_mode(model):
        for x, y in eval_windows(ids):
            rows = np.array_split(np.arange(len(x)), parts)[part]  # this part's streams
            if len(rows) == 0:
                break
            x, y = x[rows[0] : rows[-1] + 1], y[rows[0] : rows[-1] + 1]
            count += int((y != IGNORE_INDEX).sum())  # counted on the host, from numpy
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            with autocast(device, precision):
                logits, state, _ = model(x, state)  # (S, W, V)
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                y.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            sums.append(loss)
    return (math.fsum(torch.stack(sums).tolist()) if sums else 0.0), count


@dataclass
class TextScore:
    characters: int  # characters of the text kept for scoring
    tokens: int  # ids scored (the first is context only); = characters - 1 for char models
    loss: float  # nats per token (per character for char models)
    unknown: int  # characters outside the vocabulary, left out before scoring
    unknown_chars: list[str]

    @property
    def bits_per_char(self) -> float:
        """Bits per character: for bytes and pieces, the total over the characters."""
        if self.tokens == self.characters - 1:
            return self.loss / LN2
        return self.loss * self.tokens / max(self.characters, 1) / LN2

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)


def score_text(model: CharRNN, vocab, text: str) -> TextScore:
    """Cross-entropy of a whole text, computed as validation is (see `evaluate`).

    The text is prepared as the training text was. Characters the vocabulary
    lacks are left out and counted, rather than failing the whole text over
    one stray symbol.
    """
    text = vocab.prepare(text)
    unknown_chars = vocab.unknown(text)
    if unknown_chars:
        gone = set(unknown_chars)
        kept = "".join(c for c in text if c not in gone)
    else:
        kept = text
    ids = vocab.encode_prepared(kept).astype(np.int64)
    if len(ids) < 2:
        raise CharrnnError("the text needs at least two characters the model knows")
    device = next(model.parameters()).device
    return TextScore(
        characters=len(kept),
        tokens=len(ids) - 1,
        loss=evaluate(model, ids, device),
        unknown=len(text) - len(kept),
        unknown_chars=unknown_chars,
    )
