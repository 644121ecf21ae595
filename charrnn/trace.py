"""What one layer of the model holds at each step of a text: its hidden state, an
LSTM's cell state, or a gate's values. The reference for the browser runtime's
`trace`, and what its neuron view shows.

nn.LSTM/GRU/RNN give only the last layer's outputs, so the layers are stepped
here one character at a time, in PyTorch's gate order (LSTM i, f, g, o; GRU r, z, n).
"""

from __future__ import annotations

import numpy as np
import torch

from charrnn.errors import CharrnnError
from charrnn.model.rnn import CharRNN

KINDS = {
    "lstm": ("hidden", "cell", "input", "forget", "output"),
    "gru": ("hidden", "cell", "reset", "update"),  # "cell" of a GRU or RNN is its hidden state
    "rnn": ("hidden", "cell"),
}


def check_trace(model: CharRNN, layer: int, kind: str) -> None:
    c = model.config
    if not 0 <= layer < c.layers:
        raise CharrnnError(f"layer {layer} does not exist; the model has {c.layers} (0-based)")
    if kind not in KINDS[c.cell]:
        raise CharrnnError(
            f"a {c.cell.upper()} has no {kind} values; choose one of {', '.join(KINDS[c.cell])}"
        )


@torch.inference_mode()
def trace_ids(model: CharRNN, ids, layer: int = 0, kind: str = "hidden") -> np.ndarray:
    """(T, H) float32: the values of `kind` in `layer` after each of the ids."""
    check_trace(model, layer, kind)
    if len(ids) == 0:
        raise CharrnnError("the text is empty; give at least one character to trace")
    c, rnn = model.config, model.rnn
    weight = model.embed.weight.detach().float()
    x = weight[torch.as_tensor(np.asarray(ids, dtype=np.int64), device=weight.device)]
    for at in range(layer + 1):
        w_ih, w_hh, b_ih, b_hh = (
            getattr(rnn, f"{name}_l{at}").detach().float()
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )
        x, picked = run_layer(c.cell, x, w_ih, w_hh, b_ih, b_hh, kind if at == layer else "hidden")
    return picked.cpu().numpy()


def run_layer(cell: str, xs, w_ih, w_hh, b_ih, b_hh, kind: str):
    """Step one layer over inputs xs (T, I): its outputs (T, H) and the `kind` values."""
    hidden = w_hh.size(1)
    h = xs.new_zeros(hidden)
    c = xs.new_zeros(hidden)
    gx = xs @ w_ih.t() + b_ih  # (T, G*H): the input's part of every gate, all steps at once
    outs, picked = [], []
    for t in range(xs.size(0)):
        gh = w_hh @ h + b_hh  # (G*H,)
        if cell == "lstm":
            i, f, g, o = (gx[t] + gh).chunk(4)
            i, f, o = i.sigmoid(), f.sigmoid(), o.sigmoid()
            c = f * c + i * g.tanh()
            h = o * c.tanh()
            values = {"hidden": h, "cell": c, "input": i, "forget": f, "output": o}
        elif cell == "gru":
            rx, zx, nx = gx[t].chunk(3)
            rh, zh, nh = gh.chunk(3)
            r, z = (rx + rh).sigmoid(), (zx + zh).sigmoid()
            h = (1 - z) * (nx + r * nh).tanh() + z * h
            values = {"hidden": h, "cell": h, "reset": r, "update": z}
        else:
            h = (gx[t] + gh).tanh()
            values = {"hidden": h, "cell": h}
        outs.append(h)
        picked.append(values[kind])
    return torch.stack(outs), torch.stack(picked)
