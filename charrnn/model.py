"""The language model: embedding -> stacked LSTM/GRU/RNN -> dropout -> linear. No I/O."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.data import IGNORE_INDEX

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


class SingleStep:
    """One character per stream through the model, for sampling: ids (B,) -> logits (B, V).

    nn.LSTM's per-call cost (argument checks, weight layout for its fused kernel)
    dominates when the sequence is one character long: for a 2x512 LSTM and one
    stream it measured 3.5 times slower than this. Here each layer is one matmul
    over [x, h] against weights transposed once, then the gate arithmetic. It is a
    snapshot of the weights for inference; build a new one after training more.
    The state has nn.LSTM's layout, (layers, B, H), so it mixes with `CharRNN`.
    """

    def __init__(self, model: CharRNN):
        c, rnn = model.config, model.rnn
        self.cell, self.layers = c.cell, c.layers
        self.embed = model.embed.weight.detach()
        self.head_w = model.head.weight.detach().t().contiguous()  # (H, V)
        self.head_b = model.head.bias.detach()
        self.w, self.b, self.w_hn, self.b_hn = [], [], [], []
        for layer in range(c.layers):
            w_ih = getattr(rnn, f"weight_ih_l{layer}").detach()
            w_hh = getattr(rnn, f"weight_hh_l{layer}").detach()
            b_ih = getattr(rnn, f"bias_ih_l{layer}").detach()
            b_hh = getattr(rnn, f"bias_hh_l{layer}").detach()
            if c.cell == "gru":  # the candidate gate applies r to (W_hn h + b_hn) alone
                h = c.hidden
                w_hh, w_hn = w_hh[: 2 * h], w_hh[2 * h :]
                b = torch.cat([b_ih[: 2 * h] + b_hh[: 2 * h], b_ih[2 * h :]])
                self.w_hn.append(w_hn.t().contiguous())
                self.b_hn.append(b_hh[2 * h :])
                w_ih_rz, w_ih_n = w_ih[: 2 * h], w_ih[2 * h :]
                w = torch.cat([torch.cat([w_ih_rz, w_hh], 1), F.pad(w_ih_n, (0, h))], 0)
            else:
                w, b = torch.cat([w_ih, w_hh], 1), b_ih + b_hh
            self.w.append(w.t().contiguous())  # (E or H) + H -> gates
            self.b.append(b)

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        lstm = self.cell == "lstm"
        hs, cs = (state[0], state[1]) if lstm else (state, None)
        x = self.embed[ids]  # (B, E)
        new_h, new_c = [], []
        for layer in range(self.layers):
            h = hs[layer]  # (B, H)
            gates = torch.addmm(self.b[layer], torch.cat([x, h], 1), self.w[layer])
            if lstm:
                i, f, g, o = gates.chunk(4, 1)
                c = torch.sigmoid(f) * cs[layer] + torch.sigmoid(i) * torch.tanh(g)
                x = torch.sigmoid(o) * torch.tanh(c)
                new_c.append(c)
            elif self.cell == "gru":
                r, z, n_x = gates.chunk(3, 1)
                r, z = torch.sigmoid(r), torch.sigmoid(z)
                n = torch.tanh(n_x + r * torch.addmm(self.b_hn[layer], h, self.w_hn[layer]))
                x = (1 - z) * n + z * h
            else:
                x = torch.tanh(gates)
            new_h.append(x)
        logits = torch.addmm(self.head_b, x, self.head_w)  # (B, V)
        h_out = torch.stack(new_h)
        return logits, ((h_out, torch.stack(new_c)) if lstm else h_out)


@contextmanager
def eval_mode(model: nn.Module):
    """The model in eval mode (no dropout) for a while, then back in whichever mode it
    was: sampling or validation from a training callback must not turn dropout off."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def zero_where(state: State | None, condition: torch.Tensor) -> State | None:
    """The state, or zeros (a fresh start) where `condition` () holds, decided on the
    device: NaN * 0 is NaN, so a multiply could not clear a poisoned state."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(torch.where(condition, 0.0, s) for s in state)
    return torch.where(condition, 0.0, state)


def detach_state(state: State | None) -> State | None:
    """Cut the graph between windows: the values carry on, the gradients stop (TBPTT).

    The state is kept in fp32 even when bf16 autocast made it, so a checkpoint's
    state resumes under any precision.
    """
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach().float() for s in state)
    return state.detach().float()
