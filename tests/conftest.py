"""Shared fixtures. Every test writes its own text; nothing is downloaded.

Hypothesis runs under a profile, chosen by HYPOTHESIS_PROFILE: ci (the default, what
CI runs, the same examples every time), dev (four times the examples, drawn afresh)
or thorough (twenty times, a long hunt).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from charrnn.cli import cli

# ------------------------------------------------------------------ Hypothesis profiles

# no deadline: a tiny model's forward pass can take a while on a busy 2-core runner
_FUZZ_DEFAULTS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
# ci is derandomized: the same examples every run, so a red CI is a change's doing and
# not the luck of the draw; dev and thorough draw fresh examples to hunt for new bugs
settings.register_profile("ci", max_examples=50, derandomize=True, **_FUZZ_DEFAULTS)
settings.register_profile("dev", max_examples=200, **_FUZZ_DEFAULTS)
settings.register_profile("thorough", max_examples=1000, **_FUZZ_DEFAULTS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(scale: float) -> int:
    """The profile's max_examples, scaled: above 1 for tests that take microseconds an
    example (tokenizer round trips), below 1 for those that run a command each."""
    return max(1, round(settings().max_examples * scale))


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


def pytest_configure(config):
    """Runs that leave options out get the fixed defaults, as `CHARRNN_PLAN=off` asks, so
    a test's tiny run does not probe the machine first (module-scoped fixtures and real
    processes included). Tests marked `plan` get the fitted plan."""
    os.environ["CHARRNN_PLAN"] = "off"


@pytest.fixture(autouse=True)
def _plans_where_marked(request, monkeypatch):
    if request.node.get_closest_marker("plan") is not None:
        monkeypatch.delenv("CHARRNN_PLAN", raising=False)


@contextmanager
def no_loss_plot():
    """`charrnn train` in this process skips drawing loss.png (0.4 s of matplotlib a run),
    as it does where matplotlib is not installed."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys.modules["charrnn.cli.train"], "plot_run", lambda run_dir: None)
        yield


@pytest.fixture(autouse=True)
def _no_loss_plot(request):
    """No loss.png from the some 40 in-process runs that do not look at it. Tests marked
    loss_plot draw it, as do real processes and module-scoped fixtures (set up before
    this; those that do not need it use no_loss_plot themselves)."""
    if request.node.get_closest_marker("loss_plot") is None:
        with no_loss_plot():
            yield
    else:
        yield


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


def invoke(*args, input: str | None = None, env: dict | None = None):
    """One charrnn command in this process, as `charrnn ARGS` would run it from a shell:
    the same click command, the same `error: ...` lines (charrnn.cli.console.user_errors)
    and exit statuses. stdout and stderr are separate (result.stdout, result.stderr)."""
    return CliRunner().invoke(
        cli,
        [str(a) for a in args],
        input=input,
        env=env,
        catch_exceptions=False,
        prog_name="charrnn",
    )


@pytest.fixture
def run_cli():
    """Run a charrnn command in-process, like a user would from the shell."""

    def run(*args, expect: int | None = 0, input: str | None = None):
        result = invoke(*args, input=input)
        if expect is not None:
            assert result.exit_code == expect, result.output
        return result

    return run


def charrnn_cmd(*args) -> list[str]:
    """`python -m charrnn ARGS`: a real process, for what only a process can show
    (signals, rlimits, pipes, a terminal, a second process holding the run lock)."""
    return [sys.executable, "-m", "charrnn", *map(str, args)]


TINY_MODEL = ["--hidden", "32", "--embed", "8", "--batch-size", "4", "--seq-len", "16"]
