"""The README and the pages under docs/ link only to files that exist.

Every relative link or image, `[text](path)` or `![text](path)`, in README.md,
README.ko.md (when there is one) and docs/*.md must name a file or folder of the
checkout, resolved from the file that holds the link. `#anchors` are cut off;
web and mail links are not followed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# [text](target) and ![alt](target); the text may hold `code` but no brackets,
# the target may be followed by a "title"
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def pages() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "README.ko.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [p for p in found if p.is_file()]


def relative_links(text: str) -> list[str]:
    """The link targets of a markdown text that name a file here, anchors cut off."""
    targets = []
    for m in LINK.finditer(CODE.sub("", text)):
        target = m[1]
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # http:, https:, mailto: and the like
        path = target.split("#", 1)[0]
        if path:
            targets.append(path)
    return targets


def broken_links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return [t for t in relative_links(text) if not (page.parent / t).exists()]


def test_the_pages_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in pages()}
    assert "README.md" in names
    assert {"docs/options.md", "docs/training.md", "docs/reliability.md"} <= names


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_a_file(page):
    broken = broken_links(page)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_links_are_read_as_markdown_reads_them(tmp_path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    (tmp_path / "README.md").write_text("x", encoding="utf-8")
    (page.parent / "here.png").write_bytes(b"")
    page.write_text(
        "See [the README](../README.md#set-up), ![a picture](here.png),\n"
        "[the web](https://example.com/x.md), [mail](mailto:a@b.c), [top](#top),\n"
        '[titled](../README.md "the README"), `[not a link](code.md)` and\n'
        "[gone](missing.md#part), ![gone too](img/none.png).\n"
        "```\n[in a code block](block.md)\n```\n",
        encoding="utf-8",
    )
    assert relative_links(page.read_text(encoding="utf-8")) == [
        "../README.md",
        "here.png",
        "../README.md",
        "missing.md",
        "img/none.png",
    ]
    assert broken_links(page) == ["missing.md", "img/none.png"]
