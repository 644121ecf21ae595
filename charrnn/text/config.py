"""How corpus bytes become text (TextConfig) and text becomes ids (TokenizerConfig).

Both are saved in every checkpoint, and each field is also the command-line
option that sets it (see charrnn.options). Nothing heavy is imported here.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from charrnn.errors import CharrnnError, CorpusError
from charrnn.options import option

TOKENIZERS = ("char", "byte", "sentencepiece")
SP_TYPES = ("char", "unigram", "bpe")
NORMALIZE = ("nfc", "nfkc", "none")
ERRORS = ("strict", "replace")
# how a checkpoint from before text preparation was an option read its text
LEGACY_TEXT = {"normalize": "none", "keep_line_ends": True}


@dataclass(frozen=True)
class TokenizerConfig:
    """How to build a tokenizer from a training text (saved in the checkpoint)."""

    kind: str = option(
        "char",
        "Unicode characters; UTF-8 bytes (256 ids, nothing unknown); or a SentencePiece "
        "model trained on the training text.",
        flag="tokenizer",
        choices=TOKENIZERS,
        section="text",
    )
    min_count: int = option(
        1,
        "char: characters seen fewer than N times share one <unk> id.",
        metavar="N",
        min=1,
        section="text",
    )
    sp_type: str = option(
        "unigram", "sentencepiece: the model type.", choices=SP_TYPES, section="text"
    )
    vocab_size: int | None = option(
        None,
        "sentencepiece: pieces in the model.",
        metavar="N",
        min=2,
        default_text="1000; with --sp-type char, every character --coverage keeps",
        section="text",
    )
    coverage: float = option(
        0.9995,
        "sentencepiece: share of characters the model covers; the rest are spelled as "
        "UTF-8 bytes. 0.9995 suits Korean, Japanese or Chinese; 1.0 small alphabets.",
        metavar="F",
        min=0,
        max=1,
        min_open=True,
        section="text",
    )

    def __post_init__(self):
        if self.kind not in TOKENIZERS:
            raise CharrnnError(
                f"unknown tokenizer {self.kind!r}; use one of {', '.join(TOKENIZERS)}"
            )
        if self.sp_type not in SP_TYPES:
            raise CharrnnError(
                f"unknown sp-type {self.sp_type!r}; use one of {', '.join(SP_TYPES)}"
            )
        if self.min_count < 1:
            raise CharrnnError(f"min-count must be at least 1, not {self.min_count}")
        if not 0 < self.coverage <= 1:
            raise CharrnnError(f"coverage must be in (0, 1], not {self.coverage}")


@dataclass(frozen=True)
class TextConfig:
    """How corpus bytes become text (saved in the checkpoint)."""

    encoding: str = option(
        "utf-8",
        "Text encoding of the corpus files, e.g. latin-1, utf-16, cp1252.",
        metavar="NAME",
        section="text",
    )
    errors: str = option(
        "strict",
        "strict: stop at the first invalid byte, naming its offset; replace: make it U+FFFD.",
        choices=ERRORS,
        section="text",
    )
    normalize: str = option(
        "nfc",
        "Unicode normalisation of the corpus, and later of seeds and scored text.",
        choices=NORMALIZE,
        section="text",
    )
    keep_line_ends: bool = option(
        False, "Keep CRLF and CR line ends; by default they become LF.", section="text"
    )

    def __post_init__(self):
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise CorpusError(f"unknown encoding {self.encoding!r}") from None
        if self.errors not in ERRORS:
            raise CorpusError(f"--errors must be strict or replace, not {self.errors!r}")
        if self.normalize not in NORMALIZE:
            raise CorpusError(f"--normalize must be one of {', '.join(NORMALIZE)}")

    @property
    def is_utf8(self) -> bool:
        return codecs.lookup(self.encoding).name == "utf-8"
