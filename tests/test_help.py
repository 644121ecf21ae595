"""Help people can scan: `charrnn train --help` lists its options under sections, each
option where its config field says, and help never loads torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from charrnn.options import SECTIONS


def sections(help_text: str) -> dict[str, str]:
    """Each heading of a help page (a line like `Model:`) and the text under it."""
    found, current = {}, None
    for line in help_text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
            found[current] = ""
        elif current:
            found[current] += line + "\n"
    return found


def test_train_help_is_grouped_into_sections_in_pipeline_order(run_cli):
    found = sections(run_cli("train", "--help").stdout)
    headings = [h for h in found if h.lower() in SECTIONS]
    training = SECTIONS[: SECTIONS.index("machine") + 1]  # the rest are serve's
    assert headings == [s.capitalize() for s in training]
    where = {
        "--tokenizer": "Text",
        "--normalize": "Text",
        "--hidden": "Model",
        "--seq-len": "Batching",
        "--lr": "Optimisation",
        "--time": "Length and evaluation",
        "--patience": "Length and evaluation",
        "--resume": "Run control",
        "--config": "Run control",
        "--precision": "Machine",
    }
    for option, heading in where.items():
        assert f"  {option} " in found[heading], (option, heading)


def test_serve_help_has_its_own_sections(run_cli):
    found = sections(run_cli("serve", "--help").stdout)
    assert "  --port " in found["Server"] and "  --api-key " in found["Server"]
    assert "  --max-queue " in found["Limits"] and "  --device " in found["Machine"]


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["sample", "--help"], ["serve", "--help"]]
)
def test_help_imports_neither_torch_nor_numpy(argv):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['charrnn', *{argv!r}]\n"
        "try:\n    runpy.run_module('charrnn', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = {'torch', 'numpy', 'sentencepiece', 'fastapi', 'uvicorn'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
