"""What a SentencePiece model holds that its processor does not say: each piece's type,
the model type, the dummy prefix and byte fallback. Read from the serialized model.

The model is a protocol buffer (sentencepiece_model.proto). Its generated Python
module needs the protobuf package, which charrnn does not otherwise depend on, so the
few fields wanted are read from the wire format here: varints, fixed 32-bit floats and
length-delimited messages, nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from charrnn.errors import CharrnnError

MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
NORMAL = 1  # the piece types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte


@dataclass
class SpModelInfo:
    pieces: list[tuple[str, float, int]] = field(default_factory=list)  # (piece, score, type)
    model_type: str = "unigram"
    byte_fallback: bool = False
    add_dummy_prefix: bool = True  # proto2 defaults, for fields the model leaves out
    escape_whitespaces: bool = True
    remove_extra_whitespaces: bool = True
    normalizer: str = ""  # the rule's name: charrnn trains with "identity"
    normalizer_rules: bool = False  # whether the model carries a character map


def read_sp_model(data: bytes) -> SpModelInfo:
    """The pieces and settings of a serialized SentencePiece ModelProto."""
    info = SpModelInfo()
    try:
        for number, value in fields(data):
            if number == 1:  # repeated SentencePiece {1: piece, 2: score, 3: type}
                piece = dict(fields(value))
                score = struct.unpack("<f", piece.get(2, b"\0\0\0\0"))[0]
                info.pieces.append((piece[1].decode("utf-8"), score, piece.get(3, NORMAL)))
            elif number == 2:  # TrainerSpec {3: model_type, 35: byte_fallback}
                trainer = dict(fields(value))
                info.model_type = MODEL_TYPES.get(trainer.get(3, 1), "unigram")
                info.byte_fallback = bool(trainer.get(35, 0))
            elif number == 3:  # NormalizerSpec {1: name, 2: charsmap, 3: add_dummy_prefix,
                normalizer = dict(fields(value))  # 4: remove_extra_whitespaces, 5: escape_...}
                info.normalizer = normalizer.get(1, b"").decode("utf-8")
                info.normalizer_rules = bool(normalizer.get(2))
                info.add_dummy_prefix = bool(normalizer.get(3, 1))
                info.remove_extra_whitespaces = bool(normalizer.get(4, 1))
                info.escape_whitespaces = bool(normalizer.get(5, 1))
    except (IndexError, KeyError, UnicodeDecodeError, struct.error) as e:
        raise CharrnnError(f"the stored SentencePiece model is damaged ({e!r})") from None
    return info


def fields(data: bytes):
    """(field number, value) of each field of one message: an int, or bytes for a
    length-delimited or fixed-width field."""
    at = 0
    while at < len(data):
        key, at = varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = varint(data, at)
        elif wire == 1:
            value, at = data[at : at + 8], at + 8
        elif wire == 2:
            size, at = varint(data, at)
            if at + size > len(data):
                raise IndexError("a field runs past the end of the model")
            value, at = data[at : at + size], at + size
        elif wire == 5:
            value, at = data[at : at + 4], at + 4
        else:
            raise IndexError(f"wire type {wire}")
        yield number, value


def varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at
