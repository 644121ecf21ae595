"""Every command line in the READMEs parses: a renamed option breaks this test, not the reader.

The command lines are taken from the fenced code blocks of README.md, README.ko.md
and docs/*.md (```sh, ```bash, ```shell and plain ``` blocks: every line; ```console
blocks: only the lines after `$ `), with continuation lines (a trailing `\\`) joined,
`# comments` dropped and the command cut at the first shell operator (`>`, `|`, `&&`).
Each line that runs charrnn (`charrnn`, `.venv/bin/charrnn`, `python -m charrnn`, or
`torchrun ... -m charrnn` after torchrun's own options, which torchrun's real parser
reads) is parsed by the real click commands, without running them: unknown options,
missing values, bad choices and values out of range fail, naming the line. A
`make` line must name targets the Makefile has, and variables it uses.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from charrnn.cli import cli

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"
# the two READMEs must exist and show at least this many checked commands each, so
# the test can never pass by finding none; the docs pages are checked when present
REQUIRED = {"README.md": 3, "README.ko.md": 5}
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "zsh"}
CONSOLE_LANGUAGES = {"console", "shell-session"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
SHELL_OPERATOR = set("();<>|&")
# what a --config file stands in with when a README names one (see stand_in_configs)
STAND_IN_CORPUS = "corpus-named-by-the-config-file.txt"


class CommandError(Exception):
    """A README command that would not parse; the message says why."""


@dataclass(frozen=True)
class CommandLine:
    document: str  # relative to ROOT
    lineno: int  # of the line the command starts on
    text: str  # continuation lines joined

    @property
    def id(self) -> str:
        return f"{self.document}:{self.lineno}"


# ------------------------------------------------------------------ finding the lines


def command_lines(markdown: str, document: str = "<text>") -> list[CommandLine]:
    """The command lines of the shell and console code blocks of a Markdown text."""
    found: list[CommandLine] = []
    fence, language, pending = None, "", None  # pending: [lineno, text] of a `\` line
    for lineno, raw in enumerate(markdown.splitlines(), start=1):
        if fence is None:
            m = FENCE.match(raw)
            if m:
                fence, language = m[1], m[2].lower()
            continue
        stripped = raw.strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            fence, pending = None, None
            continue
        if pending is not None:  # a continuation of the line before
            part = stripped.removeprefix("> ") if language in CONSOLE_LANGUAGES else stripped
            pending[1] = pending[1] + " " + part
        elif language in CONSOLE_LANGUAGES:
            if not stripped.startswith("$ "):
                continue  # the command's output
            pending = [lineno, stripped[2:]]
        elif language in SHELL_LANGUAGES:
            if not stripped or stripped.startswith("#"):
                continue
            pending = [lineno, stripped]
        else:
            continue  # python, toml, ...
        if pending[1].endswith("\\"):
            pending[1] = pending[1][:-1].rstrip()
        else:
            found.append(CommandLine(document, pending[0], pending[1]))
            pending = None
    return found


def strip_comment(line: str) -> str:
    """The line without a shell comment: an unquoted `#` that starts a word, to the end."""
    quote, escaped = None, False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def shell_words(line: str) -> list[str]:
    """The words of the first simple command of `line`: quotes removed, the comment
    dropped, and cut at the first operator (`>`, `>>`, `|`, `&&`, `;`, ...)."""
    lexer = shlex.shlex(strip_comment(line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # strip_comment did it, as the shell does (`x#y` is one word)
    try:
        words = list(lexer)
    except ValueError as e:  # "No closing quotation"
        raise CommandError(f"cannot split the line as the shell would: {e}") from None
    for i, word in enumerate(words):
        if set(word) <= SHELL_OPERATOR:
            return words[:i]
    return words


def without_environment(words: list[str]) -> list[str]:
    """The command after `NAME=value` prefixes (and an `env` in front of them)."""
    if words[:1] == ["env"]:
        words = words[1:]
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    return words


# ------------------------------------------------------------------ charrnn lines


def charrnn_arguments(words: list[str]) -> list[str] | None:
    """charrnn's own arguments if the command runs charrnn, else None."""
    words = without_environment(words)
    if not words:
        return None
    program = program_of(words)
    if program == "charrnn":
        return words[1:]
    if PYTHON.match(program) and words[1:2] == ["-m"]:
        if words[2:3] == ["charrnn"]:
            return words[3:]
        if words[2:3] == ["torch.distributed.run"]:
            return torchrun_script_arguments(words[3:])
        return None
    if program == "torchrun":
        return torchrun_script_arguments(words[1:])
    return None


def torchrun_script_arguments(arguments: list[str]) -> list[str] | None:
    """What torchrun hands to `-m charrnn`, as torchrun's own parser splits the line
    (so a torchrun option it does not know fails too); None if it runs something else."""
    from torch.distributed.run import get_args_parser

    try:
        parsed = get_args_parser().parse_args(arguments)
    except SystemExit:  # argparse has printed why to stderr
        raise CommandError(f"torchrun refuses its arguments {arguments}") from None
    if not parsed.module or parsed.training_script != "charrnn":
        return None
    return list(parsed.training_script_args)


def stand_in_configs(arguments: list[str], folder: Path) -> None:
    """Write a stand-in for each file `--config` names.

    Parsing runs in an empty folder, so no placeholder path (CORPUS, notes.txt) can
    exist there, and click's checks that do not need a file (`dir_okay=False`) behave
    the same on every checkout. `--config` is the one option read while parsing (its
    callback turns the file into defaults, and may supply CORPUS), so each file it
    names is written here holding just a corpus: the real callback then reads it, and
    the rest of the line parses as it would with the reader's own file.
    """
    for i, word in enumerate(arguments):
        if word == "--config" and i + 1 < len(arguments):
            name = arguments[i + 1]
        elif word.startswith("--config="):
            name = word.split("=", 1)[1]
        else:
            continue
        path = Path(name)
        if path.is_absolute() or ".." in path.parts:
            raise CommandError(f"--config {name}: use a relative path in the README")
        path = folder / path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps({"corpus": [STAND_IN_CORPUS]}), encoding="utf-8")
        else:
            path.write_text(f'corpus = ["{STAND_IN_CORPUS}"]\n', encoding="utf-8")


def parse_charrnn(arguments: list[str]) -> None:
    """Parse `charrnn ARGUMENTS` with the real commands, as `charrnn` would before running.

    The group is parsed, the subcommand resolved, and its context made: conversions,
    ranges, choices and required arguments are all checked there, and nothing runs
    (the commands import torch only inside their bodies). `--help` and `--version`
    stop the parse early with click's Exit, as they stop the program.
    """
    try:
        with cli.make_context("charrnn", list(arguments)) as ctx:
            protected = getattr(ctx, "_protected_args", None)
            if protected is None:  # click before 8.2
                protected = ctx.protected_args
            rest = [*protected, *ctx.args]
            if not rest:
                return  # plain `charrnn`: the group's help
            name, command, rest = cli.resolve_command(ctx, rest)
            with command.make_context(name, rest, parent=ctx):
                pass
    except click.exceptions.Exit:
        return
    except click.UsageError as e:  # NoSuchOption, BadParameter, MissingParameter, ...
        where = f" ({e.ctx.command_path})" if e.ctx is not None else ""
        raise CommandError(f"{e.format_message()}{where}") from None


# ------------------------------------------------------------------ make lines


def makefile_targets_and_variables() -> tuple[set[str], set[str]]:
    text = MAKEFILE.read_text(encoding="utf-8")
    targets = set()
    for line in text.splitlines():
        m = re.match(r"^([^\s#=:][^#=:]*?)\s*::?(?!=)", line)
        if m:
            targets.update(t for t in m[1].split() if "$" not in t and t != ".PHONY")
    variables = set(re.findall(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]", text))
    return targets, variables


def check_make(arguments: list[str]) -> None:
    targets, variables = makefile_targets_and_variables()
    for word in arguments:
        if word.startswith("-"):
            continue
        if "=" in word:
            name = word.split("=", 1)[0]
            if name not in variables:
                raise CommandError(f"the Makefile uses no variable {name}")
        elif word not in targets:
            raise CommandError(f"the Makefile has no target {word!r}")


# ------------------------------------------------------------------ one line


def check_command(line: str, folder: Path) -> str | None:
    """Check one README command line; what kind it was ("charrnn", "make"), or None
    for a command this test does not check (curl, pip, ...)."""
    words = shell_words(line)
    arguments = charrnn_arguments(words)
    if arguments is not None:
        stand_in_configs(arguments, folder)
        parse_charrnn(arguments)
        return "charrnn"
    words = without_environment(words)
    if words[:1] == ["make"]:
        check_make(words[1:])
        return "make"
    return None


def documents() -> list[str]:
    docs = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
    return [*REQUIRED, *docs]


def lines_of(document: str) -> list[CommandLine]:
    path = ROOT / document
    if not path.is_file():
        return []  # test_each_readme_shows_commands says so
    return command_lines(path.read_text(encoding="utf-8"), document)


def program_of(words: list[str]) -> str:
    """The program a command runs: `charrnn` for `.venv/bin/charrnn`, but not for a
    folder (`charrnn/` in a layout block)."""
    return Path(words[0]).name if words and not words[0].endswith("/") else ""


def is_checked(line: str) -> bool:
    """Whether the line runs charrnn, torchrun or make (the lines this test checks)."""
    try:
        words = without_environment(shell_words(line))
    except CommandError:  # a plain block's prose (an apostrophe): decide by the first word
        words = without_environment(line.split())
    program = program_of(words)
    python_module = words[1:3] in (["-m", "charrnn"], ["-m", "torch.distributed.run"])
    return program in ("charrnn", "make", "torchrun") or (
        bool(PYTHON.match(program)) and python_module
    )


CASES = [c for document in documents() for c in lines_of(document) if is_checked(c.text)]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_readme_command_parses(case: CommandLine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # see stand_in_configs: placeholder paths never exist
    kind, error = None, None
    try:
        kind = check_command(case.text, tmp_path)
    except CommandError as e:
        error = str(e)
    if error is not None:  # failed outside the except, so no chained traceback
        pytest.fail(f"{case.id}: `{case.text}`\n    {error}", pytrace=False)
    assert kind is not None, f"{case.id}: `{case.text}` was not recognised"


@pytest.mark.parametrize("document", list(REQUIRED))
def test_each_readme_shows_commands(document):
    assert (ROOT / document).is_file(), f"{document} is missing"
    found = [c for c in CASES if c.document == document]
    assert len(found) >= REQUIRED[document], (
        f"{document}: only {len(found)} command lines found in its code blocks"
    )


# ------------------------------------------------------------------ the checker itself


@pytest.mark.parametrize(
    "line, says",
    [
        ("charrnn train x.txt --no-such-option", "--no-such-option"),
        ("charrnn train x.txt --cell transformer", "--cell"),
        ("charrnn sample --length", "--length"),
        ("charrnn sample --temperature -1", "--temperature"),
        ("charrnn train --time 5m", "CORPUS"),
        ("charrnn trian x.txt", "trian"),
        (".venv/bin/charrnn serve --port 70000", "--port"),
        ("python -m charrnn runs --jsn", "--jsn"),
        ("torchrun --standalone --nproc-per-node 2 -m charrnn train x.txt --hiden 8", "--hiden"),
        ("torchrun --no-such-torchrun-option 2 -m charrnn train x.txt", "torchrun"),
        ("make no-such-target", "no-such-target"),
        ("make bench NO_SUCH_VARIABLE=1", "NO_SUCH_VARIABLE"),
    ],
)
def test_a_bad_line_fails(line, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match=re.escape(says)):
        check_command(line, tmp_path)


@pytest.mark.parametrize(
    "line, kind",
    [
        ('CHARRNN_CACHE_DIR=/tmp/c charrnn sample --seed "# x" --length 5 > out.txt', "charrnn"),
        ("charrnn train --config checkpoints/mine/config.json --name again", "charrnn"),
        ("charrnn train --config my.toml --time 1m", "charrnn"),
        ("charrnn sample --stop $'\\n\\n' --format jsonl | head", "charrnn"),
        ("charrnn train --help", "charrnn"),
        ("OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m charrnn runs", "charrnn"),
        ("make bench CORPUS=x.txt RUNS=3", "make"),
        ("curl -s localhost:8000/v1/models", None),
    ],
)
def test_a_good_line_passes(line, kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_command(line, tmp_path) == kind


def test_lines_are_found_in_code_blocks():
    markdown = "\n".join(
        [
            "Prose: charrnn train not-in-a-block.txt --bogus",
            "```sh",
            "# a comment line",
            "charrnn train a.txt --time 1m   # trailing comment",
            "torchrun --standalone --nproc-per-node 2 \\",
            "    -m charrnn train a.txt",
            "```",
            "```console",
            "$ charrnn sample --seed 'x' \\",
            "> --length 3",
            "charrnn output, not a command",
            "```",
            "```python",
            'charrnn = "not shell"',
            "```",
            "````",
            "charrnn runs",
            "````",
        ]
    )
    found = [(c.lineno, c.text) for c in command_lines(markdown)]
    assert found == [
        (4, "charrnn train a.txt --time 1m   # trailing comment"),
        (5, "torchrun --standalone --nproc-per-node 2 -m charrnn train a.txt"),
        (9, "charrnn sample --seed 'x' --length 3"),
        (17, "charrnn runs"),
    ]
    assert shell_words(found[0][1]) == ["charrnn", "train", "a.txt", "--time", "1m"]
