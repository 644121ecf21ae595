"""Weights in a classic script, and the manifest that describes them.

A page opened from file:// may not fetch() and may not load ES modules, so the model
travels as a script: `model.js` sets `self.charrnnExport = {manifest, weights}`. The
file is UTF-16 (with a byte-order mark, which browsers honour for scripts), and the
weights string holds 15 bits in each UTF-16 unit, as code points U+3000..U+AFFF: no
surrogates, quotes, backslashes or line ends, so nothing needs escaping. That costs
6.7% over raw bytes, where base64 in a UTF-8 script would cost 33%.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.export.weights import Packed, pack_weights
from charrnn.model.config import ModelConfig
from charrnn.text.base import Tokenizer
from charrnn.text.spmodel import read_sp_model

FORMAT, VERSION = "charrnn-web", 1
PACK_BITS, PACK_BASE = 15, 0x3000
PACK_BLOCK = 15 << 16  # bytes packed at a time: whole groups of 15, about a megabyte
BOM = "\ufeff"


def pack_text(data: bytes) -> str:
    """`data` as UTF-16 units of 15 bits each, most significant bit first (runtime.js
    unpackText reads it back). 15 bytes make 8 units exactly, so the work goes in
    blocks of such groups, each unpacked to bits (a byte each) in bounded memory."""
    return "".join(pack_block(data[at : at + PACK_BLOCK]) for at in range(0, len(data), PACK_BLOCK))


def pack_block(data: bytes) -> str:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    bits = np.concatenate([bits, np.zeros(-len(bits) % PACK_BITS, dtype=np.uint8)])
    weights = 1 << np.arange(PACK_BITS - 1, -1, -1, dtype=np.uint32)
    codes = bits.reshape(-1, PACK_BITS).astype(np.uint32) @ weights + PACK_BASE
    return codes.astype("<u2").tobytes().decode("utf-16-le")


def unpack_text(text: str, size: int) -> bytes:
    """The inverse of `pack_text`, for tests and for reading an export back."""
    codes = np.frombuffer(text.encode("utf-16-le"), dtype="<u2").astype(np.uint32) - PACK_BASE
    bits = ((codes[:, None] >> np.arange(PACK_BITS - 1, -1, -1)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel())[:size].tobytes()


def vocab_manifest(vocab: Tokenizer) -> dict:
    """What the runtime's tokenizers need: the char list, or SentencePiece's pieces."""
    d = {"kind": vocab.kind, "normalize": vocab.normalize, "keep_line_ends": vocab.keep_line_ends}
    if vocab.kind == "char":
        d.update(chars=vocab.chars, unk=vocab.unk)
    elif vocab.kind == "sentencepiece":
        sp = read_sp_model(vocab.model)
        check_mirrored(sp)
        d.update(
            sp_type=sp.model_type,
            pieces=[[piece, score, kind] for piece, score, kind in sp.pieces],
            dummy_prefix=sp.add_dummy_prefix,
            byte_fallback=sp.byte_fallback,
        )
    return d


def check_mirrored(sp) -> None:
    """The runtime mirrors SentencePiece as charrnn trains it: the identity rule (charrnn
    normalises itself), spaces kept; a model that folds text some other way is refused."""
    if sp.normalizer_rules or sp.normalizer not in ("identity", ""):
        raise CharrnnError(
            f"the browser runtime cannot mirror this SentencePiece model's "
            f"{sp.normalizer or 'custom'} normalisation; it runs models trained with the "
            f"identity rule, as charrnn trains them"
        )
    if sp.remove_extra_whitespaces or not sp.escape_whitespaces:
        raise CharrnnError(
            "the browser runtime cannot mirror this SentencePiece model's whitespace "
            "folding; it runs models that keep every space, as charrnn trains them"
        )
    if sp.model_type not in ("unigram", "bpe", "char"):
        raise CharrnnError(f"the browser runtime cannot run a SentencePiece {sp.model_type} model")


def manifest(
    name: str, config: ModelConfig, vocab: Tokenizer, dtype: str, packed: Packed, about: dict
) -> dict:
    """The description of one export: model, vocabulary, tensors, size, checksum."""
    model = {k: getattr(config, k) for k in ("cell", "layers", "hidden", "embed", "vocab_size")}
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": name,
        "dtype": dtype,
        "model": model,
        "vocab": vocab_manifest(vocab),
        "tensors": packed.tensors,
        "bytes": len(packed.data),
        "sha256": hashlib.sha256(packed.data).hexdigest(),
        **about,
    }


def model_script(meta: dict, packed: Packed) -> bytes:
    """model.js: the manifest and the packed weights, as UTF-16 with a byte-order mark."""
    body = json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
    weights = pack_text(packed.data)
    text = f'{BOM}self.charrnnExport = {{"manifest":{body},"weights":"{weights}"}};\n'
    return text.encode("utf-16-le")


def web_model(model, vocab: Tokenizer, name: str, dtype: str = "fp32") -> tuple[dict, bytes]:
    """The manifest and weight bytes the runtime opens (charrnn.openAnywhere): what
    `charrnn serve` hands its playground, so the page runs the served model itself."""
    packed = pack_weights(model, dtype)
    return manifest(name, model.config, vocab, dtype, packed, {"unit": vocab.unit}), packed.data
