"""A model's weights as the browser runtime reads them, and back again.

Every tensor keeps PyTorch's layout (one row per output unit). Matrices are stored
as float32, float16, or int8 with one float32 scale per row (max |w| / 127, rounded
to nearest); biases stay float32. `dequantize` computes exactly what runtime.js
computes from the bytes (q * scale in float32; float16 widened), so the loss of a
dequantised model here is the loss of the page's model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from charrnn.errors import CharrnnError
from charrnn.export.config import DTYPES
from charrnn.model.rnn import CharRNN

CODES = {"fp32": "f32", "fp16": "f16", "int8": "i8"}
INT8_MAX = 127
ALIGN = 4
# the runtime holds every weight as float32 in one WebAssembly memory, and an fp32
# model.js is one string, which V8 keeps under 2^29 units (about 1 GB of weights):
# a model past 512 MiB of float32 is refused up front
MAX_PARAMETERS = 1 << 27


@dataclass
class Packed:
    data: bytes
    tensors: list[dict]  # {name, shape, dtype, offset[, scales]} as the manifest lists them


def parameters_by_name(model: CharRNN) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters the runtime needs, by the names the manifest gives them."""
    rnn, out = model.rnn, [("embed", model.embed.weight)]
    for layer in range(model.config.layers):
        for part, name in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"),
                           ("b_ih", "bias_ih"), ("b_hh", "bias_hh")):  # fmt: skip
            out.append((f"l{layer}.{part}", getattr(rnn, f"{name}_l{layer}")))
    return [*out, ("head.w", model.head.weight), ("head.b", model.head.bias)]


def named_tensors(model: CharRNN) -> list[tuple[str, torch.Tensor]]:
    return [(name, p.detach().float().cpu()) for name, p in parameters_by_name(model)]


def check_runnable(model: CharRNN) -> None:
    """Refuse, with the reason, a model the runtime cannot run."""
    rnn = model.rnn
    if getattr(rnn, "bidirectional", False) or getattr(rnn, "proj_size", 0):
        raise CharrnnError("the browser runtime runs one-way cells without projections only")
    if model.config.cell == "rnn" and getattr(rnn, "nonlinearity", "tanh") != "tanh":
        raise CharrnnError("the browser runtime runs RNN cells with tanh only")
    if not getattr(rnn, "bias", True):
        raise CharrnnError("the browser runtime needs cells with biases")
    if (n := model.num_parameters()) > MAX_PARAMETERS:
        raise CharrnnError(
            f"the model has {n:,} parameters; a browser page holds at most {MAX_PARAMETERS:,} "
            f"(512 MiB of float32), so it cannot run there"
        )


def quantize(t: torch.Tensor, dtype: str) -> tuple[bytes, bytes | None]:
    """The bytes of one tensor, and for int8 its row scales' bytes."""
    if dtype == "fp32" or t.dim() < 2:
        return t.numpy().astype("<f4").tobytes(), None
    if dtype == "fp16":
        return t.half().numpy().astype("<f2").tobytes(), None
    q, scales = int8_rows(t)
    return q.numpy().astype(np.int8).tobytes(), scales.numpy().astype("<f4").tobytes()


def int8_rows(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes and one float32 scale per row (a row of zeros gets scale 1)."""
    peak = t.abs().amax(dim=1)
    scales = torch.where(peak > 0, peak / INT8_MAX, torch.ones_like(peak)).float()
    q = torch.round(t / scales[:, None]).clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, scales


def pack_weights(model: CharRNN, dtype: str) -> Packed:
    """All the tensors in one buffer, each at a 4-byte aligned offset."""
    if dtype not in DTYPES:
        raise CharrnnError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    check_runnable(model)
    data, tensors = bytearray(), []
    for name, t in named_tensors(model):
        values, scales = quantize(t, dtype)
        entry = {
            "name": name,
            "shape": list(t.shape),
            "dtype": CODES[dtype] if t.dim() >= 2 else "f32",
            "offset": len(data),
        }
        data += values + bytes(-len(data + values) % ALIGN)
        if scales is not None:
            entry["scales"] = len(data)
            data += scales
        tensors.append(entry)
    return Packed(bytes(data), tensors)


def dequantize(packed: Packed) -> dict[str, torch.Tensor]:
    """The float32 tensors the runtime reads from the bytes (the same arithmetic)."""
    out, data = {}, packed.data
    for t in packed.tensors:
        count = int(np.prod(t["shape"]))
        at = t["offset"]
        if t["dtype"] == "f32":
            values = np.frombuffer(data, "<f4", count, at)
        elif t["dtype"] == "f16":
            values = np.frombuffer(data, "<f2", count, at).astype(np.float32)
        else:
            rows = t["shape"][0]
            q = np.frombuffer(data, np.int8, count, at).reshape(rows, -1).astype(np.float32)
            scales = np.frombuffer(data, "<f4", rows, t["scales"])
            values = q * scales[:, None]  # float32 products, as Math.fround(q * s)
        out[t["name"]] = torch.from_numpy(np.array(values, dtype=np.float32)).reshape(t["shape"])
    return out


def dequantized_model(model: CharRNN, packed: Packed) -> CharRNN:
    """A copy of `model` with the weights the page will compute with."""
    tensors = dequantize(packed)
    twin = copy.deepcopy(model).cpu().float().eval()
    with torch.no_grad():
        for name, param in parameters_by_name(twin):
            param.copy_(tensors[name])
    return twin
