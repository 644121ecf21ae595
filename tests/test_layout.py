"""The package's shape: imports run one way down the pipeline, only the CLI talks to the
terminal, modules and classes stay small, and the public names all resolve."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import charrnn

PACKAGE = Path(charrnn.__file__).parent

# The pipeline, top to bottom: a module may import from its own layer and the layers
# above it, never from one below. checkpoint.py is the file format that training writes
# and sampling reads, so it comes before both.
LAYERS = [
    ["errors", "files", "options"],
    ["text"],
    ["data"],
    ["model"],
    ["inference", "runtime", "distributed"],
    ["evaluate", "trace"],
    ["checkpoint"],
    ["train"],
    ["runs", "plot"],
    ["sample"],
    ["api"],
    ["web", "export"],
    ["serve"],
    ["cli", "__main__"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250


def modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE
    )


def top(path: Path) -> str:
    """The pipeline unit a file belongs to: `data` for charrnn/data/cache.py."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def module_name(path: Path) -> str:
    """`charrnn.text.base` for charrnn/text/base.py; `charrnn.text` for its __init__.py."""
    parts = ("charrnn", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, type-only imports included (`from
    charrnn.text import tokenizers` names the module charrnn.text.tokenizers)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of two or more modules that import each other, round a loop."""
    found, done = [], set()
    for start in sorted(graph):
        if start not in done and start in (reach := reachable(graph, start)):
            group = sorted(m for m in reach if start in reachable(graph, m))
            done.update(group)
            found.append(group)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules `start` leads to, through one import or more."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_circles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]


def test_imports_run_one_way_with_no_circles():
    """A package's __init__ re-exporting its modules is no circle: only a module that
    imports the package back, or two modules that import each other, would make one."""
    graph = {
        name: {t for t in edges if not name.startswith(t + ".")}  # a module's own package
        for name, edges in import_graph().items()
    }
    assert circles(graph) == []


def test_every_module_has_a_layer():
    assert {top(p) for p in modules()} <= set(LAYER)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_run_down_the_pipeline(path):
    own = LAYER[top(path)]
    for name in imported(path):
        parts = name.split(".")
        if parts[0] != "charrnn" or len(parts) == 1:
            continue  # a third-party module, or the package's own __version__
        assert LAYER[parts[1]] <= own, f"{path.name} imports {name}, which is further down"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_cli_talks_to_the_terminal(path):
    if top(path) == "cli":
        return
    ui = {n for n in imported(path) if n.split(".")[0] in ("click", "rich")}
    assert not ui, f"{path.name} imports {ui}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_classes_stay_small(path):
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = node.end_lineno - node.lineno + 1
            assert size <= MAX_CLASS_LINES, f"class {node.name} has {size} lines"


def test_configs_import_nothing_heavy():
    """`charrnn train --help` builds its options from these without loading torch."""
    heavy = {"torch", "numpy", "sentencepiece"}
    for name in ("text/config.py", "model/config.py", "train/config.py", "sample/config.py",
                 "serve/config.py"):  # fmt: skip
        found = {n.split(".")[0] for n in imported(PACKAGE / name)}
        assert not found & heavy, name


@pytest.mark.parametrize("name", sorted(charrnn._EXPORTS))
def test_every_public_name_resolves(name):
    assert getattr(charrnn, name) is getattr(importlib.import_module(charrnn._EXPORTS[name]), name)
