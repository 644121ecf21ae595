"""Corpus files -> prepared text, in chunks of bounded size.

CORPUS may be files, directories (every `*.txt` below, sorted) and `.gz`,
`.bz2` or `.xz` files. Each is read in chunks through an incremental decoder,
so a gigabyte corpus never sits in memory as one string. Files are joined by a
blank line.

A chunk boundary must not change the text: a CR at the end of a chunk waits
for a possible LF, and the tail after the chunk's last ASCII character waits
for the next chunk, because normalisation can combine a character with the
marks that follow it, but nothing combines with a following ASCII character.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import io
import lzma
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from charrnn.errors import CorpusError
from charrnn.text.base import prepare_text
from charrnn.text.config import TextConfig

CHUNK_BYTES = 8 << 20
SNIFF_BYTES = 8192  # a NUL in the first block marks a binary file
HOLD_LIMIT = 1 << 20  # characters kept back waiting for an ASCII character at most
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
DECOMPRESSORS = {
    ".gz": lambda f: gzip.GzipFile(fileobj=f),
    ".bz2": bz2.BZ2File,
    ".xz": lzma.LZMAFile,
}
FILE_SEPARATOR = "\n\n"


# ---------------------------------------------------------------- which files


def corpus_files(paths: list[Path]) -> list[Path]:
    """The files that make up CORPUS, in reading order."""
    if not paths:
        raise CorpusError("give at least one corpus file or directory")
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise CorpusError(f"corpus {path}: the directory holds no *.txt files")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise CorpusError(f"corpus {path}: no such file")
    return files


def describe_sources(paths: list[Path], files: list[Path]) -> str:
    if len(paths) == 1 and len(files) == 1:
        return str(files[0])
    return f"{', '.join(map(str, paths))} ({len(files)} files)"


@contextmanager
def _reading_errors(path: Path, what: str):
    """OSError -> CorpusError naming the file; decompression errors too."""
    try:
        yield
    except FileNotFoundError:
        raise CorpusError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise CorpusError(f"{what} {path}: is a directory, not a text file") from None
    except PermissionError:
        raise CorpusError(f"{what} {path}: permission denied") from None
    except (EOFError, gzip.BadGzipFile, lzma.LZMAError) as e:
        raise CorpusError(f"{what} {path}: the compressed file is damaged ({e})") from None
    except OSError as e:
        if "Invalid data stream" in str(e):  # bz2
            raise CorpusError(f"{what} {path}: the compressed file is damaged ({e})") from None
        raise CorpusError(f"{what} {path}: cannot read ({e.strerror or e})") from None


def open_bytes(path: Path) -> tuple[io.BufferedIOBase, io.BufferedIOBase]:
    """(the file as stored, its content decompressed when its suffix says so)."""
    raw = open(path, "rb")  # noqa: SIM115 - handed to the caller
    opener = DECOMPRESSORS.get(path.suffix.lower())
    return raw, (opener(raw) if opener else raw)


def sources_sha256(files: list[Path], on_bytes: Callable[[int], None] | None = None) -> str:
    """The corpus's identity: a single file's SHA-256, or the SHA-256 of the
    files' SHA-256s in reading order (the file bytes as stored, not decompressed)."""
    digests = []
    for path in files:
        h = hashlib.sha256()
        with _reading_errors(path, "corpus"), open(path, "rb") as f:
            while block := f.read(CHUNK_BYTES):
                h.update(block)
                if on_bytes:
                    on_bytes(len(block))
        digests.append(h.hexdigest())
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def total_bytes(files: list[Path]) -> int:
    return sum(os.path.getsize(p) for p in files)


# ---------------------------------------------------------------- decoding


def check_not_binary(head: bytes, path: Path, config: TextConfig, what: str) -> None:
    wide = codecs.lookup(config.encoding).name.startswith(("utf-16", "utf-32"))
    if wide:
        return
    if head.startswith(UTF16_BOMS):
        raise CorpusError(
            f"{what} {path}: looks like UTF-16 (it starts with a byte-order mark); "
            f"pass --encoding utf-16"
        )
    if b"\0" in head:
        raise CorpusError(
            f"{what} {path}: looks like a binary file (NUL bytes at byte offset "
            f"{head.index(0)}), not text"
        )


def decode_error(path: Path, config: TextConfig, offset: int, bad: bytes, what: str) -> CorpusError:
    hint = "name its encoding with --encoding (e.g. latin-1), or pass --errors replace"
    name = "UTF-8" if config.is_utf8 else config.encoding
    return CorpusError(
        f"{what} {path}: not valid {name} at byte offset {offset} "
        f"(bytes {bad[:4].hex(' ')}); {hint}"
    )


def file_text(
    path: Path,
    config: TextConfig,
    what: str = "corpus",
    chunk_bytes: int = CHUNK_BYTES,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """The prepared text of one file, piece by piece (each piece ends on a safe cut)."""
    with _reading_errors(path, what):
        raw, f = open_bytes(path)
        with raw, f:
            held = ""
            for text, final in _decoded_chunks(raw, f, path, config, what, chunk_bytes, on_bytes):
                ready, held = safe_cut(held + text, final)
                if ready:
                    yield prepare_text(ready, config.normalize, config.keep_line_ends)


def _decoded_chunks(raw, f, path: Path, config: TextConfig, what: str, chunk_bytes, on_bytes):
    """(text, is it the last) for each chunk of `f`, the file's content; `raw` is the
    file as stored, for progress. A decoding error names its byte offset."""
    data = f.read(max(chunk_bytes, SNIFF_BYTES))
    check_not_binary(data[:SNIFF_BYTES], path, config, what)
    offset = 0
    if config.is_utf8 and data.startswith(UTF8_BOM):
        data, offset = data[len(UTF8_BOM) :], len(UTF8_BOM)
    decoder = codecs.getincrementaldecoder(config.encoding)(errors=config.errors)
    read_so_far = 0
    while True:
        final = not data
        waiting = len(decoder.getstate()[0])  # bytes of a character split by the chunk
        try:
            text = decoder.decode(data, final=final)
        except UnicodeDecodeError as e:
            start = offset - waiting + e.start
            raise decode_error(path, config, start, e.object[e.start :], what) from None
        offset += len(data)
        if on_bytes:  # progress in stored (compressed) bytes, which is what the total is
            on_bytes(raw.tell() - read_so_far)
            read_so_far = raw.tell()
        yield text, final
        if final:
            return
        data = f.read(chunk_bytes)


def safe_cut(text: str, final: bool) -> tuple[str, str]:
    """(text that can be prepared now, tail that waits for more text)."""
    if final:
        return text, ""
    stop = max(0, len(text) - HOLD_LIMIT)
    for i in range(len(text) - 1, stop - 1, -1):
        # never between CR and LF, and never after a CR (an LF may follow)
        if text[i] < "\x80" and text[i] != "\r" and (i == 0 or text[i - 1] != "\r"):
            return text[:i], text[i:]
    if len(text) > HOLD_LIMIT:  # no ASCII in a megabyte: cut anyway (rare, e.g. a huge CJK line)
        return text[:-1], text[-1:]
    return "", text


def corpus_text(
    files: list[Path],
    config: TextConfig,
    chunk_bytes: int = CHUNK_BYTES,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """All files' prepared text, in pieces, with a blank line between files."""
    tail = ""  # the last two characters written, to make the blank line exact
    written = visible = False
    for path in files:
        first = True
        for piece in file_text(path, config, "corpus", chunk_bytes, on_bytes):
            if not piece:
                continue
            if first and written:
                newlines = len(tail) - len(tail.rstrip("\n"))
                yield FILE_SEPARATOR[: max(0, 2 - newlines)]
            first, written = False, True
            visible = visible or not piece.isspace()  # stops at the first letter
            tail = (tail + piece[-2:])[-2:]
            yield piece
    names = files[0] if len(files) == 1 else f"{len(files)} files"
    if not written:
        raise CorpusError(f"corpus {names}: the file is empty")
    if not visible:
        raise CorpusError(f"corpus {names}: the text is only whitespace")


def read_text(path: str | os.PathLike, what: str = "file", config: TextConfig | None = None) -> str:
    """A whole (small) text file, e.g. a seed, with the same clear errors as a corpus.

    The text is not prepared (normalised) here; the tokenizer does that.
    """
    path = Path(path)
    config = config or TextConfig(normalize="none", keep_line_ends=True)
    text = "".join(file_text(path, config, what))
    if not text:
        raise CorpusError(f"{what} {path}: the file is empty")
    return text
