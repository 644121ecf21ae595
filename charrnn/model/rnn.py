"""The language model: embedding -> stacked LSTM/GRU/RNN -> dropout -> linear. No I/O."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.data.batches import IGNORE_INDEX
from charrnn.model.config import ModelConfig

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

# LSTM state is (h, c); GRU and RNN state is h alone. Each is (layers, B, hidden).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed)
        # nn.LSTM/GRU/RNN apply their dropout between stacked layers only
        self.rnn = CELLS[c.cell](
            c.embed,
            c.hidden,
            num_layers=c.layers,
            batch_first=True,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden, c.vocab_size)
        self._init_weights()

    def _init_weights(self):
        # Small output weights make the first prediction near uniform, so the
        # initial loss is ln(vocab_size) rather than a confident wrong guess.
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def dropout(self, out: torch.Tensor) -> torch.Tensor:
        """Dropout before the head. A locked mask is drawn once per stream and unit, and
        holds for every step of the window (Gal and Ghahramani 2016): B*H random numbers
        a step instead of B*T*H, which at dropout 0.25 cost 14% of a 1x768 LSTM step on a CPU."""
        p = self.config.dropout
        if self.config.dropout_kind != "locked" or not self.training or p == 0:
            return self.drop(out)
        keep = out.new_empty(out.size(0), 1, out.size(2)).bernoulli_(1 - p)  # (B, 1, H)
        return out * keep / (1 - p)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        ids: torch.Tensor,
        state: State | None = None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """ids (B, T) -> logits (B, T, V), new state, and the mean cross-entropy
        over targets (B, T) when given (IGNORE_INDEX targets are skipped)."""
        x = self.embed(ids)  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H)
        logits = self.head(self.dropout(out))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return logits, state, loss
