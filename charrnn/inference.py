"""Inference helpers: one character per stream through a trained model (SingleStep),
and the carried state's small operations (detach, reset, select and join rows).

The state has nn.LSTM's layout, (layers, B, H), or a pair (h, c) of those for an
LSTM, so states from `CharRNN` and from `SingleStep` mix freely.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.model.rnn import CharRNN, State


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


def map_state(fn, state: State | None) -> State | None:
    """`fn` applied to each tensor of a state (an LSTM's is a pair); None stays None."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(fn(s) for s in state)
    return fn(state)


def zero_where(state: State | None, condition: torch.Tensor) -> State | None:
    """The state, or zeros (a fresh start) where `condition` () holds, decided on the
    device: NaN * 0 is NaN, so a multiply could not clear a poisoned state."""
    return map_state(lambda s: torch.where(condition, 0.0, s), state)


def detach_state(state: State | None) -> State | None:
    """Cut the graph between windows: the values carry on, the gradients stop (TBPTT).

    The state is kept in fp32 even when bf16 autocast made it, so a checkpoint's
    state resumes under any precision.
    """
    return map_state(lambda s: s.detach().float(), state)


def select_rows(state: State, index: torch.Tensor) -> State:
    """Pick (or repeat) batch rows of a state; each tensor is (layers, B, H)."""
    return map_state(lambda s: s.index_select(1, index), state)


def concat_rows(states: list[State]) -> State:
    """The batch rows of several states, one after another; each tensor is (layers, B, H)."""
    if isinstance(states[0], (tuple, list)):
        return tuple(torch.cat(parts, dim=1) for parts in zip(*states, strict=True))
    return torch.cat(states, dim=1)
