"""Drawing the next id for a batch whose rows each have their own settings.

A server steps streams from many requests together: one wants greedy text, another
temperature 1.2 with top-p 0.9. `RowSettings` holds each row's temperature, top-k
and top-p as tensors; `pick_rows` applies them all in a few batched operations and
draws with a uniform number per row, so each stream's own random generator (not a
shared one) decides its text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from charrnn.sample.config import SampleConfig

NO_TOP_P = 2.0  # above any cumulative mass, so nothing is cut


@dataclass
class RowSettings:
    temperature: torch.Tensor  # (B,) float, 0 for greedy rows
    top_k: torch.Tensor  # (B,) long, V where a row has none
    top_p: torch.Tensor  # (B,) float, NO_TOP_P where a row has none
    greedy: list[bool]
    filtered: bool  # some row has a top-k or a top-p

    @classmethod
    def of(cls, configs: list[SampleConfig], vocab_size: int, device) -> RowSettings:
        def tensor(values, dtype):
            return torch.tensor(values, dtype=dtype, device=device)

        top_k = [min(c.top_k or vocab_size, vocab_size) for c in configs]
        top_p = [c.top_p if c.top_p is not None and c.top_p < 1 else NO_TOP_P for c in configs]
        return cls(
            temperature=tensor([c.temperature for c in configs], torch.float32),
            top_k=tensor(top_k, torch.long),
            top_p=tensor(top_p, torch.float32),
            greedy=[c.temperature == 0 for c in configs],
            filtered=any(k < vocab_size for k in top_k) or any(p != NO_TOP_P for p in top_p),
        )


def pick_rows(logits: torch.Tensor, settings: RowSettings, uniform: torch.Tensor) -> torch.Tensor:
    """logits (B, V), one uniform number in [0, 1) per row (B,) -> next ids (B,).

    A row with temperature 0 takes its most likely id whatever else is in the batch,
    so greedy text does not depend on the company it is generated in.
    """
    logits = logits.float()
    best = logits.argmax(dim=-1)  # (B,)
    if all(settings.greedy):
        return best
    temperature = torch.where(settings.temperature > 0, settings.temperature, 1.0)
    scaled = logits / temperature[:, None]  # (B, V)
    if settings.filtered:
        scaled, order = scaled.sort(dim=-1, descending=True)
        rank = torch.arange(scaled.size(-1), device=scaled.device)
        scaled = scaled.masked_fill(rank[None] >= settings.top_k[:, None], -torch.inf)
        probs = scaled.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # of the ids ranked above
        probs = probs.masked_fill(mass_before >= settings.top_p[:, None], 0.0)
    else:
        order, probs = None, scaled.softmax(dim=-1)
    cdf = probs.cumsum(dim=-1)  # (B, V); its last column is the kept mass
    chosen = (cdf < uniform[:, None] * cdf[:, -1:]).sum(dim=-1).clamp_(max=cdf.size(-1) - 1)
    if order is not None:
        chosen = order.gather(1, chosen[:, None])[:, 0]
    return torch.where(settings.temperature > 0, chosen, best)
