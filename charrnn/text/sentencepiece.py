"""SentencePiece as a charrnn tokenizer: a model trained on the training text, kept as bytes.

The model is trained to be lossless (no extra normalisation or whitespace folding,
"\\n" a piece of its own, byte fallback), so decoding gives back the prepared text.
`sentencepiece` itself is imported only when a model is built or loaded.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from functools import cached_property

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.text.base import REPLACEMENT, Tokenizer, utf8
from charrnn.text.config import TokenizerConfig

SP_SENTENCES = 1_000_000  # lines SentencePiece trains on at most (sampled); bounds its memory
SP_RANDOM_SEED = 1  # SentencePiece samples and shuffles lines of large corpora
SP_PARALLEL_CHARS = 1 << 20  # texts longer than this are encoded on several threads
# the trainer skips longer sentences, so longer lines are cut. Its own default: its unigram
# EM learns worse from long sentences (a word seen 3,600 times in 64 KB sentences was not
# learned; in 4 KB pieces of the same text it was)
SP_SENTENCE_BYTES = 4192
META = "\u2581"  # SentencePiece's own stand-in for a space
LAST_SPACE = re.compile(r".*\s", re.DOTALL)  # greedy, so it ends at the last whitespace


def sentencepiece_processor(model: bytes):
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_proto=model)
    except Exception as e:
        raise CharrnnError(f"the stored SentencePiece model is damaged ({e})") from None


class SentencePieceVocab(Tokenizer):
    """A SentencePiece model trained on the corpus, kept as its serialized bytes.

    It is trained to be lossless: no extra normalisation or whitespace folding,
    no dummy prefix, "\\n" as a piece of its own, and byte fallback so that a
    character outside the model's coverage becomes its UTF-8 bytes, not <unk>.
    """

    kind = "sentencepiece"

    def __init__(self, model: bytes, normalize="nfc", keep_line_ends=False):
        self.model = bytes(model)
        self.normalize, self.keep_line_ends = normalize, bool(keep_line_ends)
        self.sp = sentencepiece_processor(self.model)

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    @cached_property
    def special_ids(self) -> list[int]:
        sp = self.sp
        return [i for i in range(len(self)) if sp.is_unknown(i) or sp.is_control(i)]

    def encode_prepared(self, text: str) -> np.ndarray:
        threads = min(os.cpu_count() or 1, 8)
        if META in text:
            return self.encode_around_meta(text, threads)
        if len(text) < SP_PARALLEL_CHARS or threads == 1:
            return np.asarray(self.sp.encode(text), dtype=self.dtype)
        # "\n" is a piece of its own, so no piece spans a line end: cutting after one
        # gives the same ids, and SentencePiece encodes the parts on its own threads
        parts = cut_after_newlines(text, 4 * threads)
        encoded = self.sp.encode(parts, num_threads=threads)
        return np.concatenate([np.asarray(ids, dtype=self.dtype) for ids in encoded])

    def encode_around_meta(self, text: str, threads: int) -> np.ndarray:
        # SentencePiece reads a "\u2581" in the text as a space, so it would come back
        # as " ": encode the text between them and put each back as its UTF-8 byte pieces
        segments = self.sp.encode(text.split(META), num_threads=threads)
        meta = np.asarray(self.meta_byte_ids, dtype=self.dtype)
        out = [np.asarray(segments[0], dtype=self.dtype)]
        for ids in segments[1:]:
            out += [meta, np.asarray(ids, dtype=self.dtype)]
        return np.concatenate(out)

    @cached_property
    def meta_byte_ids(self) -> list[int]:
        return [self.sp.piece_to_id(f"<0x{b:02X}>") for b in utf8(META)]

    @cached_property
    def token_bytes(self) -> list[bytes]:
        sp, out = self.sp, []
        for i in range(len(self)):
            piece = sp.id_to_piece(i)
            if sp.is_byte(i):  # "<0xE3>"
                out.append(bytes([int(piece[3:5], 16)]))
            elif sp.is_unknown(i):
                out.append(utf8(REPLACEMENT))
            elif sp.is_control(i):
                out.append(b"")
            else:
                out.append(utf8(piece.replace("\u2581", " ")))
        return out

    def to_dict(self) -> dict:
        return {"kind": "sentencepiece", "model": self.model, **self._text_dict()}

    def describe(self) -> str:
        return f"{len(self)} SentencePiece pieces"


def cut_after_newlines(text: str, parts: int) -> list[str]:
    """`text` in about `parts` pieces, each ending just after a newline (the last may not)."""
    size, pieces, start = max(1, len(text) // parts), [], 0
    while start < len(text):
        cut = text.find("\n", start + size)
        end = len(text) if cut < 0 else cut + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def train_sentencepiece(
    lines, config: TokenizerConfig, normalize: str, keep_line_ends: bool
) -> SentencePieceVocab:
    """Train a SentencePiece model on an iterator of lines (without their "\\n")."""
    import sentencepiece as spm

    vocab_size = config.vocab_size
    if vocab_size is None:
        # char: every kept character; a soft limit lets SentencePiece use fewer
        vocab_size = 1_000_000 if config.sp_type == "char" else 1000
    model = io.BytesIO()
    spm.set_random_generator_seed(SP_RANDOM_SEED)  # the same text gives the same model
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=training_sentences(lines),
            model_writer=model,
            model_type=config.sp_type,
            vocab_size=vocab_size,
            hard_vocab_limit=config.vocab_size is not None and config.sp_type != "char",
            character_coverage=config.coverage,
            normalization_rule_name="identity",  # we normalise ourselves (--normalize)
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            split_digits=False,
            byte_fallback=True,
            user_defined_symbols=["\n"],
            bos_id=-1,
            eos_id=-1,
            input_sentence_size=SP_SENTENCES,
            shuffle_input_sentence=True,
            max_sentence_length=SP_SENTENCE_BYTES,
            num_threads=1,  # one thread, so the same text always gives the same model
            minloglevel=2,
        )
    except Exception as e:
        raise CharrnnError(
            f"SentencePiece could not be trained: {sentencepiece_message(e)}"
        ) from None
    return SentencePieceVocab(model.getvalue(), normalize, keep_line_ends)


def training_sentences(lines, limit: int = SP_SENTENCE_BYTES) -> Iterator[str]:
    """The lines, each one over `limit` UTF-8 bytes cut in pieces: the trainer would
    skip it, and a one-line corpus would leave it nothing to learn from."""
    for line in lines:
        if len(line) <= limit // 4:  # no character is longer than 4 bytes
            yield line
        else:
            yield from cut_line(line, limit)


def cut_line(line: str, limit: int) -> Iterator[str]:
    """`line` in pieces of at most `limit` UTF-8 bytes, each cut just before a
    whitespace character where it holds one (so " word" stays whole, as "\\u2581word"),
    else between two characters."""
    start = 0
    while start < len(line):
        end = fitting_end(line, start, limit)
        if end < len(line) and (space := LAST_SPACE.match(line, start + 1, end)):
            end = space.end() - 1
        yield line[start:end]
        start = end


def fitting_end(line: str, start: int, limit: int) -> int:
    """The furthest `end` for which line[start:end] is at most `limit` UTF-8 bytes."""
    window = line[start : start + limit]  # as many characters are at least as many bytes
    raw = utf8(window)
    if len(raw) <= limit:
        return start + len(window)
    cut = limit
    while raw[cut] & 0xC0 == 0x80:  # a continuation byte: back to where its character starts
        cut -= 1
    return start + len(raw[:cut].decode("utf-8", errors="surrogatepass"))


def sentencepiece_message(e: Exception) -> str:
    """SentencePiece's errors are C++ assertions; say what to change instead."""
    text = str(e)
    if m := re.search(r"smaller than required_chars\. (\d+) vs (\d+)", text):
        return (
            f"--vocab-size {m[1]} is too small: the text's characters and the 256 byte pieces "
            f"need {m[2]}; give a larger --vocab-size or a lower --coverage"
        )
    if m := re.search(
        r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", text
    ):
        return f"--vocab-size {m[1]} is too large for this text; use {m[2]} or less"
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__
