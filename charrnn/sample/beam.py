"""Beam search: the most probable continuation a beam of K candidates finds.

With stop strings, a candidate that produces one ends there: it leaves the beam
as a finished text (the stop itself left out, its probability counted), and the
beam goes on with the others. A candidate's score only falls as it grows, so
once a finished text scores at least as high as every live candidate, nothing
left can beat it and the search ends. The answer is the best of the finished
texts and the candidates that reached `length` tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from charrnn.inference import select_rows
from charrnn.model.rnn import CharRNN
from charrnn.runtime import wide_float
from charrnn.sample.generate import Sample
from charrnn.sample.streams import ban, primed_streams
from charrnn.text.base import Tokenizer

BYTES_PER_CHAR = 4  # the most tokens (UTF-8 bytes) one character can take


@torch.inference_mode()
def beam_search(
    model: CharRNN,
    vocab: Tokenizer,
    seed: str,
    length: int,
    beam: int,
    stop: Iterable[str] = (),
) -> Sample:
    """The most probable continuation that a beam of `beam` candidates finds (beam 1 is
    greedy): `length` tokens (characters, with the char tokenizer), or fewer when it ends
    at one of the `stop` strings."""
    stops = [s for s in stop if s]
    streams = primed_streams(model, vocab, seed)
    device, vocab_size = streams.device, len(vocab)
    logits, state = ban(streams.logits, streams.banned), streams.state  # (1, V)
    wide = wide_float(device)  # float64 scores, but float32 on MPS, which has no float64
    scores = torch.zeros(1, dtype=wide, device=device)  # (K,)
    tokens = torch.zeros(1, 0, dtype=torch.long, device=device)  # (K, t)
    finished: Sample | None = None  # the best candidate that ended at a stop string
    for t in range(length):
        total = scores[:, None] + F.log_softmax(logits.to(wide), dim=-1)  # (K, V)
        best = total.flatten().topk(min(beam, total.numel()))
        rows, ids = best.indices // vocab_size, best.indices % vocab_size
        scores, state = best.values, select_rows(state, rows)
        tokens = torch.cat([tokens.index_select(0, rows), ids[:, None]], dim=1)
        if stops:
            live = []
            for k, row in enumerate(tokens.tolist()):
                if (text := stopped_text(vocab, row, stops)) is None:
                    live.append(k)
                elif finished is None or float(scores[k]) > finished.logprob:
                    finished = Sample(seed, text, float(scores[k]))
            if not live:
                return finished
            if len(live) < len(rows):
                keep = torch.tensor(live, dtype=torch.long, device=device)
                ids, scores, tokens = ids[keep], scores[keep], tokens[keep]
                state = select_rows(state, keep)
            if finished is not None and finished.logprob >= float(scores.max()):
                return finished
        if t + 1 < length:
            logits, state = streams.single_step(ids, state)  # (K, V)
            logits = ban(logits, streams.banned)
    reached = Sample(seed, vocab.decode(tokens[0].tolist()), float(scores[0]))
    return finished if finished is not None and finished.logprob > reached.logprob else reached


def stopped_text(vocab: Tokenizer, ids: list[int], stops: list[str]) -> str | None:
    """The text of `ids` up to its first stop string, if its newest token completed one
    (none could have appeared before: the candidate would have ended there); else None.
    Only the tail that could hold a new stop is decoded at each step."""
    tail = vocab.decode(ids[-BYTES_PER_CHAR * (max(map(len, stops)) + 1) :])
    if not any(s in tail for s in stops):
        return None
    text = vocab.decode(ids)
    return text[: min(i for i in (text.find(s) for s in stops) if i >= 0)]
