"""Shared fixtures. Every test writes its own text; nothing is downloaded."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from charrnn.cli import cli

# English, Korean and emoji (an astral code point and a ZWJ sequence), repeated
# so a tiny model can learn it in a few steps.
MIXED_TEXT = (
    "ROMEO: But soft, what light through yonder window breaks?\n"
    "줄리엣: 이름이 무슨 상관이에요? 🌹 장미는 다른 이름이라도 향기로울 거예요.\n"
    "NURSE: 👩‍👧 Madam! Your lady mother is coming to your chamber.\n\n"
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Keep the encoding cache inside the test's own folder."""
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def write_corpus(tmp_path):
    def write(text: str | bytes, name: str = "corpus.txt"):
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_cli():
    """Run a charrnn command in-process, like a user would from the shell."""

    def run(*args, expect: int | None = 0):
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, result.output
        return result

    return run


TINY_MODEL = ["--hidden", "32", "--embed", "8", "--batch-size", "4", "--seq-len", "16"]
