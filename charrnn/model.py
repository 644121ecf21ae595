"""The language model: embedding -> stacked LSTM/GRU/RNN -> dropout -> linear. No I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.data import IGNORE_INDEX
from charrnn.errors import CharrnnError

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

# LSTM state is (h, c); GRU and RNN state is h alone. Each is (layers, B, hidden).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass
class ModelConfig:
    vocab_size: int
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 512
    embed: int = 64
    dropout: float = 0.0

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {self.cell!r}")

    def to_dict(self) -> dict:
        return asdict(self)


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
        logits = self.head(self.drop(out))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                targets.reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        return logits, state, loss


def detach_state(state: State | None) -> State | None:
    """Cut the graph between windows: the values carry on, the gradients stop (TBPTT)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def resolve_device(name: str = "auto") -> torch.device:
    """auto picks CUDA, then Apple's MPS, then the CPU. An unavailable choice is an error."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise CharrnnError("--device cuda: no CUDA GPU is available on this machine")
    if name == "mps" and not mps:
        raise CharrnnError("--device mps: Apple's MPS backend is not available on this machine")
    if name not in ("cpu", "cuda", "mps"):
        raise CharrnnError(f"--device must be auto, cpu, cuda or mps, not {name!r}")
    return torch.device(name)
