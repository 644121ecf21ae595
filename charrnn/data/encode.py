"""Prepared text -> ids written to a file: the char vocabulary's counting pass, the
encoding pass, and the SentencePiece split placed at a character position.

Text arrives as an iterator of pieces (see charrnn.text.sources) and is never
held whole, so a gigabyte corpus encodes in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.errors import CorpusError, UnknownCharactersError
from charrnn.text.base import Tokenizer
from charrnn.text.config import TextConfig
from charrnn.text.sentencepiece import SentencePieceVocab
from charrnn.text.tokenizers import MAX_CODE_POINT, CharVocab, code_points

RETAIN_BYTES = 256 << 20  # code points kept between the counting and encoding passes


@dataclass(frozen=True)
class RareCharacters:
    """--min-count accounting: the characters that were mapped to <unk>."""

    distinct: int  # how many different characters
    occurrences: int  # how often they occur in the corpus
    characters: int  # corpus length in characters

    @property
    def share(self) -> float:
        return self.occurrences / max(self.characters, 1)


def build_char_vocab(pieces, text: TextConfig, min_count: int):
    """Count every code point; characters seen fewer than `min_count` times share <unk>.

    Returns (vocab, rare-character report, code point arrays to encode from, or
    None when they outgrew RETAIN_BYTES and the text must be read again).
    """
    counts = np.zeros(MAX_CODE_POINT + 1, dtype=np.int64)
    retained, kept_bytes = [], 0
    for piece in pieces:
        cps = code_points(piece)
        found = np.bincount(cps)  # only as long as the largest code point in the piece
        counts[: len(found)] += found
        if retained is not None:
            retained.append(cps)
            kept_bytes += cps.nbytes
            if kept_bytes > RETAIN_BYTES:
                retained = None
    seen = counts > 0
    kept = counts >= min_count
    if not kept.any():
        raise CorpusError(f"no character occurs {min_count} times or more; lower --min-count")
    rare_mask = seen & ~kept
    rare = RareCharacters(
        distinct=int(rare_mask.sum()),
        occurrences=int(counts[rare_mask].sum()),
        characters=int(counts.sum()),
    )
    vocab = CharVocab.from_code_points(
        np.flatnonzero(kept),
        unk=rare.distinct > 0,
        normalize=text.normalize,
        keep_line_ends=text.keep_line_ends,
    )
    return vocab, (rare if min_count > 1 else None), retained


def write_ids(vocab: Tokenizer, source, f) -> int:
    """Encode prepared text (pieces, or code point arrays) into file `f`; returns
    the number of characters."""
    characters = 0
    if isinstance(vocab, CharVocab):
        table = vocab.lookup_table()
        for piece in source:
            cps = piece if isinstance(piece, np.ndarray) else code_points(piece)
            ids = table[cps]
            if not vocab.unk and (ids == len(vocab)).any():
                missing = CharVocab.from_code_points(cps[ids == len(vocab)]).chars
                raise UnknownCharactersError(sorted(missing), what="the corpus")
            f.write(ids.astype(vocab.dtype, copy=False).tobytes())
            characters += len(cps)
        return characters
    if isinstance(vocab, SentencePieceVocab):  # it should see whole lines; bytes need not
        source = whole_lines(source)
    for block in source:
        f.write(vocab.encode_prepared(block).tobytes())
        characters += len(block)
    return characters


def whole_lines(pieces, limit: int = 1 << 24):
    """Re-cut text pieces so each ends with a newline (the last may not), unless a
    line runs past `limit` characters: memory stays bounded on one-line corpora."""
    held = ""
    for piece in pieces:
        held += piece
        cut = held.rfind("\n") + 1
        if not cut and len(held) > limit:
            cut = len(held)
        if cut:
            yield held[:cut]
            held = held[cut:]
    if held:
        yield held


def lines_of(pieces):
    for block in whole_lines(pieces):
        yield from block.split("\n")


def train_chars(pieces, val_frac: float) -> int:
    """Characters of the prepared text before the validation split, the same rule as
    `split_sizes` applied to characters. It takes a pass of its own: the boundary must
    be known before the tokenizer is trained, and the text is not kept in memory."""
    total = sum(len(piece) for piece in pieces)
    return int(total * (1 - val_frac))


def split_text(pieces, n: int):
    """Text pieces as two iterators: the first `n` characters, and the rest. The piece
    the boundary falls in is cut there; the second is read only after the first."""
    pieces, rest = iter(pieces), []

    def head():
        left = n
        for piece in pieces:
            if len(piece) >= left:
                yield piece[:left]
                rest.append(piece[left:])
                return
            left -= len(piece)
            yield piece

    def tail():
        yield from rest
        yield from pieces

    return head(), tail()


def write_split_ids(vocab: Tokenizer, pieces, boundary: int, f) -> tuple[int, int]:
    """Encode the text before character `boundary` and the text after it separately, so
    no token spans the train/validation boundary. Returns (characters, training ids)."""
    head, tail = split_text(pieces, boundary)
    characters = write_ids(vocab, head, f)
    train_ids = f.tell() // vocab.dtype.itemsize  # f holds this corpus's ids alone
    return characters + write_ids(vocab, tail, f), train_ids
