"""The command line, used the way people use it: CliRunner in-process, and real
processes where signals, exit codes and imports are the point."""

import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from charrnn.model.config import ModelConfig
from charrnn.text.config import TextConfig, TokenizerConfig
from charrnn.train.config import TrainConfig
from charrnn.train.loop import Trainer
from tests.conftest import MIXED_TEXT, TINY_MODEL, charrnn_cmd, invoke, no_loss_plot

TRAIN_FAST = [*TINY_MODEL, "--max-steps", "30", "--eval-every", "10", "--lr", "1e-2"]


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """A tiny model trained through the CLI on English, Korean and emoji, once."""
    root = tmp_path_factory.mktemp("trained")
    corpus = root / "corpus.txt"
    corpus.write_text(MIXED_TEXT * 30, encoding="utf-8")
    args = ["train", corpus, *TRAIN_FAST, "--out", root / "ck", "--name", "tiny"]
    with no_loss_plot():
        result = invoke(*args, env={"CHARRNN_CACHE_DIR": str(root / "cache")})
    assert result.exit_code == 0, result.output
    return root, result


@pytest.fixture
def trained(trained_once, tmp_path):
    """This test's own copy of the trained run (tests resume it, refuse it, damage it)."""
    root, result = trained_once
    shutil.copy(root / "corpus.txt", tmp_path / "corpus.txt")
    shutil.copytree(root / "ck", tmp_path / "ck")
    return tmp_path / "corpus.txt", tmp_path / "ck", result


def test_train_then_sample(trained, run_cli):
    corpus, out, train = trained
    assert "best val loss" in train.stderr
    assert train.stdout == ""  # messages go to stderr, never stdout
    assert {p.name for p in (out / "tiny").iterdir()} >= {"best.pt", "last.pt", "config.json"}
    ckpt = load_checkpoint(out / "tiny" / "last.pt")
    assert ckpt["step"] == 30 and math.isfinite(ckpt["val_loss"])
    assert ckpt["val_loss"] < math.log(len(set(MIXED_TEXT)))

    seed = "줄리엣: 🌹"
    result = run_cli(
        "sample",
        "--checkpoint",
        out / "tiny" / "best.pt",
        "--seed",
        seed,
        "--length",
        100,
        "--rng-seed",
        3,
    )
    text = result.stdout
    assert text.startswith(seed)
    generated, tail = text[len(seed) : len(seed) + 100], text[len(seed) + 100 :]
    assert len(generated) == 100 and set(generated) <= set(MIXED_TEXT)
    assert tail == ("" if generated.endswith("\n") else "\n")
    assert "best.pt" in result.stderr  # which checkpoint, on stderr

    again = run_cli("sample", "--out", out, "--seed", seed, "--length", 100, "--rng-seed", 3)
    assert again.stdout == text  # newest run by default, same seed, same text
    greedy = [
        run_cli("sample", "--out", out, "--temperature", 0, "--rng-seed", s).stdout for s in (1, 2)
    ]
    assert greedy[0] == greedy[1]


def test_default_seed_is_a_newline(trained, run_cli):
    _, out, _ = trained
    result = run_cli("sample", "--out", out, "--length", 20, "--rng-seed", 1)
    assert len(result.stdout.rstrip("\n")) <= 20 and result.stdout.endswith("\n")


def test_a_run_is_not_overwritten_and_resume_continues(trained, run_cli):
    corpus, out, _ = trained
    files = [out / "tiny" / name for name in ("best.pt", "last.pt", "metrics.jsonl")]
    before = [f.read_bytes() for f in files]  # read before the refused run, not after
    again = run_cli("train", corpus, *TRAIN_FAST, "--out", out, "--name", "tiny", expect=1)
    assert "already has checkpoints" in again.stderr and "--resume" in again.stderr
    assert [f.read_bytes() for f in files] == before
    assert load_checkpoint(out / "tiny" / "best.pt")["step"] in (10, 20, 30)

    resumed = run_cli(
        "train", corpus, "--out", out, "--name", "tiny", "--resume", "--max-steps", 40
    )
    assert "resume" in resumed.stderr
    assert load_checkpoint(out / "tiny" / "last.pt")["step"] == 40

    clash = run_cli(
        "train", corpus, "--out", out, "--name", "tiny", "--resume", "--hidden", 64, expect=1
    )
    assert "different model" in clash.stderr and "--hidden 64" in clash.stderr


def test_resume_refuses_another_validation_split(trained, run_cli):
    """Training would go over text that was validation, and best losses would compare
    different texts; a saved window past the new split's end crashed nn.LSTM."""
    corpus, out, _ = trained
    before = (out / "tiny" / "last.pt").read_bytes()
    for option, value, stored in (("--val-frac", 0.05, 0.1), ("--eval-size", 500, 1000000)):
        result = run_cli(
            "train", corpus, "--out", out, "--resume", "tiny", option, value, "--max-steps", 40,
            expect=1,
        )  # fmt: skip
        assert result.stderr == (
            f"error: cannot resume {out / 'tiny' / 'last.pt'} with {option} {value} (checkpoint "
            f"has {stored}): a run keeps the validation split it started with\n"
        )
    assert (out / "tiny" / "last.pt").read_bytes() == before
    same = run_cli("train", corpus, "--out", out, "--resume", "tiny", "--val-frac", 0.1,
                   "--max-steps", 40)  # fmt: skip
    assert load_checkpoint(out / "tiny" / "last.pt")["step"] == 40, same.stderr


def test_resume_refuses_another_corpus(trained, run_cli, write_corpus):
    _, out, _ = trained
    other = write_corpus(MIXED_TEXT * 31, "other.txt")
    result = run_cli("train", other, "--out", out, "--name", "tiny", "--resume", expect=1)
    assert "different corpus" in result.stderr


def one_line_error(result) -> str:
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "no such file"),
        (b"", "the file is empty"),
        (b"good text \xe2\x82 then bad", "not valid UTF-8 at byte offset 10"),
        (
            b"short text",
            "is too short: 10 characters, but --batch-size 4 x --seq-len 16 "
            "with --val-frac 0.1 needs at least 73",
        ),
    ],
)
def test_bad_corpus_gives_one_line_error(tmp_path, run_cli, content, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    result = run_cli("train", path, *TINY_MODEL, "--out", tmp_path / "ck", expect=1)
    assert message in one_line_error(result)
    assert not any((tmp_path / "ck").glob("*/*.pt"))


def test_corpus_directory_and_permission_errors(tmp_path, run_cli, monkeypatch):
    result = run_cli("train", tmp_path, expect=1)
    assert "the directory holds no *.txt files" in one_line_error(result)

    path = tmp_path / "secret.txt"
    path.write_text("text")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    import charrnn.text.sources

    # root ignores chmod, so simulate it
    monkeypatch.setattr(charrnn.text.sources, "open", denied, raising=False)
    result = run_cli("train", path, expect=1)
    assert "secret.txt: permission denied" in one_line_error(result)


def test_unseen_seed_characters_are_listed(trained, run_cli):
    _, out, _ = trained
    result = run_cli("sample", "--out", out, "--seed", "ROMEO Q¿", expect=1)
    line = one_line_error(result)
    assert "never saw" in line and "'Q'" in line and "'¿'" in line
    assert result.stdout == ""


def test_missing_or_damaged_checkpoint(tmp_path, run_cli):
    result = run_cli("sample", "--checkpoint", tmp_path / "nope.pt", expect=1)
    assert "no such file" in one_line_error(result)
    result = run_cli("sample", "--out", tmp_path / "empty", expect=1)
    assert "no checkpoints under" in one_line_error(result)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(os.urandom(1000))
    result = run_cli("sample", "--checkpoint", bad, expect=1)
    assert "is not a charrnn checkpoint (not a PyTorch zip archive)" in one_line_error(result)


@pytest.mark.parametrize(
    "args,option",
    [
        (["train", "x.txt", "--layers", "0"], "--layers"),
        (["train", "x.txt", "--dropout", "1"], "--dropout"),
        (["train", "x.txt", "--seq-len", "0"], "--seq-len"),
        (["train", "x.txt", "--batch-size", "-3"], "--batch-size"),
        (["train", "x.txt", "--lr", "0"], "--lr"),
        (["train", "x.txt", "--lr", "nan"], "--lr"),
        (["train", "x.txt", "--val-frac", "0.9"], "--val-frac"),
        (["train", "x.txt", "--time", "0"], "--time"),
        (["train", "x.txt", "--time", "3x"], "--time"),
        (["train", "x.txt", "--cell", "transformer"], "--cell"),
        (["sample", "--temperature", "-1"], "--temperature"),
        (["sample", "--temperature", "nan"], "--temperature"),
        (["sample", "--length", "0"], "--length"),
    ],
)
def test_out_of_range_options_are_usage_errors(run_cli, args, option):
    result = run_cli(*args, expect=2)
    assert f"Invalid value for '{option}'" in result.stderr
    assert "Traceback" not in result.output


def test_run_names_are_checked(write_corpus, run_cli):
    result = run_cli("train", write_corpus(MIXED_TEXT), "--name", "../escape", expect=1)
    assert "--name" in one_line_error(result)


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("3m", 180), ("1h30m", 5400), ("45", 45)])
def test_time_budgets_parse(text, seconds):
    from charrnn.cli.options import Duration

    assert Duration().convert(text, None, None) == seconds


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["runs"], ["info"], ["plot"]])
def test_help_shows_examples(run_cli, command):
    result = run_cli(*command, "--help")
    assert "Examples:" in result.stdout
    assert "charrnn " in result.stdout.split("Examples:")[1]


def test_python_dash_m_works():
    out = subprocess.run(
        [sys.executable, "-m", "charrnn", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("charrnn, version ")


def start_training(corpus: Path, out: Path, run: str) -> subprocess.Popen:
    """A real `charrnn train` process, returned once its training loop has started."""
    args = [corpus, *TINY_MODEL, "--time", 60, "--eval-every", 0, "--out", out, "--name", run]
    proc = subprocess.Popen(
        charrnn_cmd("train", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in proc.stderr:  # wait until the training loop has started
        if line.startswith("params"):
            return proc
    raise AssertionError(f"training never started: exit {proc.wait()}")


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_last_and_says_how_to_resume(tmp_path, write_corpus, run_cli, signum, code):
    """The signal is real, sent to this process from inside the training loop, where
    `charrnn train` has its handler installed. A real process gets SIGINT in
    tests/test_crash_safety.py (and two of them in test_a_second_ctrl_c_aborts...)."""
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    train_step = Trainer._train_step

    def step_then_signal(self, lr):
        train_step(self, lr)
        if self.step == 3:
            # charrnn's handler, not the default one (which would end pytest itself)
            assert signal.getsignal(signum) not in (signal.SIG_DFL, signal.default_int_handler)
            os.kill(os.getpid(), signum)

    args = [corpus, *TINY_MODEL, "--time", 60, "--eval-every", 0, "--out", out, "--name", "sig"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "_train_step", step_then_signal)
        result = run_cli("train", *args, expect=code)
    resume_line = next(
        line for line in result.stderr.splitlines() if line.startswith("resume with:")
    )
    assert f"charrnn train {corpus} --resume sig --out {out}" in resume_line
    ckpt = load_checkpoint(out / "sig" / "last.pt")
    assert ckpt["step"] == 3 and ckpt["elapsed"] < 60  # it finished the step, then stopped
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())

    # the printed command continues the run (with a step target instead of the 60 s)
    args = resume_line.removeprefix("resume with: charrnn ").split()
    target = ckpt["step"] + 3
    run_cli(*args, "--max-steps", target)
    assert load_checkpoint(out / "sig" / "last.pt")["step"] == target


def test_resuming_a_finished_run_asks_for_a_longer_length(trained, run_cli):
    corpus, out, _ = trained
    result = run_cli("train", corpus, "--out", out, "--name", "tiny", "--resume", expect=1)
    assert "already reached its length" in one_line_error(result)
    result = run_cli("train", corpus, "--out", out, "--name", "nope", "--resume", expect=1)
    assert "nothing to resume" in one_line_error(result)


def test_readme_option_tables_are_the_commands():
    """docs/options.md's tables are generated from the commands (python -m charrnn.cli.docs);
    this fails when an option, default or help changed and they were not regenerated."""
    from charrnn.cli.docs import MARKER, render

    readme = (Path(__file__).parents[1] / "docs" / "options.md").read_text(encoding="utf-8")
    tables = {m[2] for m in MARKER.finditer(readme)}
    assert tables == {"train", "sample", "eval", "runs", "info", "plot", "serve", "export"}
    assert render(readme, cli.commands) == readme, "run: python -m charrnn.cli.docs docs/options.md"


def test_options_come_from_the_config_fields():
    """One source: each config field's default, range and help are the option's."""
    from charrnn.options import flag_name, option_fields

    options = {p.name: p for p in cli.commands["train"].params}
    for config in (TextConfig, TokenizerConfig, ModelConfig, TrainConfig):
        for f, spec in option_fields(config):
            param = options[f.name]
            assert flag_name(f, spec) in param.opts
            assert (param.default, param.help) == (f.default, spec.help)


def test_a_second_ctrl_c_aborts_without_damaging_files(tmp_path, write_corpus):
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    proc = start_training(corpus, out, "twice")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130, rest
    assert "Traceback" not in rest
    run_dir = out / "twice"
    assert not list(run_dir.glob(".*.tmp"))  # an interrupted save cleans up after itself
    if (run_dir / "last.pt").exists():  # the save may or may not have finished
        assert load_checkpoint(run_dir / "last.pt")["step"] >= 1
