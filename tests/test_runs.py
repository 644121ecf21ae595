"""What a run folder records and the commands that read it: metrics.jsonl,
config.json and --config, `charrnn runs`, `charrnn info`, `charrnn plot`."""

import json
import math
import shutil
import struct
import sys

import pytest
import torch

from charrnn.checkpoint import load_checkpoint
from charrnn.runs.records import MetricsLog, load_options_file, read_metrics
from charrnn.train.tally import METRIC_KEYS
from tests.conftest import MIXED_TEXT, TINY_MODEL, invoke

TRAIN_FAST = [*TINY_MODEL, "--max-steps", "30", "--eval-every", "10", "--lr", "1e-2"]


@pytest.fixture(scope="module")
def two_runs_once(tmp_path_factory):
    """Two finished runs, small and wider, trained once for this module."""
    root = tmp_path_factory.mktemp("two_runs")
    corpus = root / "corpus.txt"
    corpus.write_text(MIXED_TEXT * 30, encoding="utf-8")
    env = {"CHARRNN_CACHE_DIR": str(root / "cache")}
    for run, extra in (("small", []), ("wider", ["--hidden", 48])):
        args = ["train", corpus, *TRAIN_FAST, *extra, "--out", root / "ck", "--name", run]
        result = invoke(*args, env=env)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def two_runs(two_runs_once, tmp_path):
    """This test's own copy of the two runs (tests add runs, damage and replay them)."""
    shutil.copy(two_runs_once / "corpus.txt", tmp_path / "corpus.txt")
    shutil.copytree(two_runs_once / "ck", tmp_path / "ck")
    return tmp_path / "corpus.txt", tmp_path / "ck"


def test_metrics_jsonl_has_every_log_interval_and_evaluation(two_runs):
    _, out = two_runs
    records = read_metrics(out / "small")
    assert all(list(r) == list(METRIC_KEYS) for r in records)
    train = [r for r in records if r["event"] == "train"]
    evals = [r for r in records if r["event"] == "eval"]
    assert [r["step"] for r in train] == [10, 20, 30]
    assert [r["step"] for r in evals] == [10, 20, 30]
    ckpt = load_checkpoint(out / "small" / "last.pt")
    assert [r["val_loss"] for r in evals] == [e["val_loss"] for e in ckpt["evals"]]
    for r in records:
        assert r["chars_seen"] == r["step"] * 4 * 16  # batch 4 x seq-len 16
        assert r["lr"] > 0 and r["elapsed"] >= 0 and r["epoch"] >= 0
    for r in train:
        assert math.isfinite(r["train_loss"]) and r["chars_per_s"] > 0 and r["val_loss"] is None
    for r in evals:
        assert r["val_bpc"] == pytest.approx(r["val_loss"] / math.log(2))
        assert r["train_loss"] is None
    assert train[-1]["train_loss"] < train[0]["train_loss"]  # it learned something
    elapsed = [r["elapsed"] for r in records]
    assert elapsed == sorted(elapsed)


def test_metrics_log_drops_what_a_killed_run_logged_after_its_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"event": "train", "step": s}) for s in (10, 20, 30)]
    path.write_text("\n".join(lines) + '\n{"event": "train", "st')  # torn by a kill
    log = MetricsLog(tmp_path)
    log.open(up_to_step=20)
    log.write({"event": "train", "step": 21, "train_loss": float("nan")})
    log.close()
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [10, 20, 21]
    assert records[-1]["train_loss"] is None  # JSON has no NaN
    json.loads(path.read_text().splitlines()[-1])  # every line is valid JSON


def test_config_json_records_every_option(two_runs):
    _, out = two_runs
    config = json.loads((out / "small" / "config.json").read_text())
    ckpt = load_checkpoint(out / "small" / "last.pt")
    assert config["train"] == ckpt["train_config"]
    assert {**config["model"], "vocab_size": config["info"]["vocab_size"]} == ckpt["model_config"]
    assert config["info"]["parameters"] == sum(t.numel() for t in ckpt["model"].values())


def test_config_toml_sets_options_and_the_command_line_wins(tmp_path, write_corpus, run_cli):
    corpus = write_corpus(MIXED_TEXT * 30)
    toml = tmp_path / "small.toml"
    toml.write_text(
        f'corpus = "{corpus}"\n'
        "hidden = 32\nembed = 8\nbatch-size = 4\nseq_len = 16\nmax-steps = 12\n"
        'time = "1h"\nrun = "from-toml"\n'
        "[train]\nlr = 0.02\nrng-seed = 9\n"
    )
    out = tmp_path / "ck"
    run_cli("train", "--config", toml, "--hidden", 24, "--out", out)
    ckpt = load_checkpoint(out / "from-toml" / "last.pt")
    assert ckpt["model_config"]["hidden"] == 24  # the command line wins
    assert ckpt["model_config"]["embed"] == 8
    train = ckpt["train_config"]
    assert (train["batch_size"], train["seq_len"], train["lr"], train["rng_seed"]) == (
        4,
        16,
        0.02,
        9,
    )
    assert train["time_budget"] == 3600 and ckpt["step"] == 12


def test_a_run_config_json_replays_the_run(two_runs, run_cli):
    _, out = two_runs
    run_cli("train", "--config", out / "wider" / "config.json", "--out", out, "--name", "replay")
    original = json.loads((out / "wider" / "config.json").read_text())
    replay = json.loads((out / "replay" / "config.json").read_text())
    assert (replay["model"], replay["train"]) == (original["model"], original["train"])
    a = load_checkpoint(out / "wider" / "last.pt")["model"]
    b = load_checkpoint(out / "replay" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # same options, same seed, same weights


@pytest.mark.parametrize(
    "text,message",
    [
        ("hiden = 32\n", "unknown option 'hiden'"),
        ("layers = 0\n", "Invalid value for '--layers'"),
        ("hidden = \n", "cannot be read"),
    ],
)
def test_bad_config_files_are_usage_errors(tmp_path, write_corpus, run_cli, text, message):
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    result = run_cli("train", write_corpus(MIXED_TEXT), "--config", toml, expect=2)
    assert message in result.stderr and "Traceback" not in result.output


def test_options_file_flattens_tables_and_ignores_run_info(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"hidden": 8}, "train": {"seq-len": 4}, "info": {"x": 1}}))
    assert load_options_file(path).options == {"hidden": 8, "seq_len": 4}


def test_runs_lists_every_run(two_runs, run_cli):
    _, out = two_runs
    result = run_cli("runs", "--out", out)
    table = result.stderr
    for text in ("small", "wider", "LSTM", "1x32", "1x48", "finished"):
        assert text in table
    listed = json.loads(run_cli("runs", "--out", out, "--json").stdout)
    assert [r["name"] for r in listed] == ["small", "wider"]
    for r in listed:
        ckpt = load_checkpoint(out / r["name"] / "last.pt")
        assert r["steps"] == 30 and r["best_val_loss"] == ckpt["best_val_loss"]
        assert r["parameters"] == sum(t.numel() for t in ckpt["model"].values())
        assert r["best_val_bpc"] == pytest.approx(ckpt["best_val_loss"] / math.log(2))


def test_runs_reports_an_empty_folder_and_skips_a_damaged_run(tmp_path, two_runs, run_cli):
    assert "no runs under" in run_cli("runs", "--out", tmp_path / "none").stderr
    _, out = two_runs
    (out / "small" / "last.pt").write_bytes(b"garbage")
    result = run_cli("runs", "--out", out)
    assert "wider" in result.stderr and "skipped" in result.stderr
    assert "not a charrnn checkpoint" in result.stderr


def test_info_describes_a_checkpoint(two_runs, run_cli):
    _, out = two_runs
    ckpt = load_checkpoint(out / "wider" / "best.pt")
    text = run_cli("info", out / "wider" / "best.pt").stderr
    n_params = sum(t.numel() for t in ckpt["model"].values())
    assert f"{n_params:,}" in text and "LSTM 1x48" in text
    assert f"{len(ckpt['vocab']['chars'])} distinct characters" in text
    assert "\\n" in text and "줄" in text
    assert f"{ckpt['best_val_loss']:.4f} nats/char" in text
    details = json.loads(run_cli("info", out / "wider", "--json").stdout)
    assert details["parameters"] == n_params and details["steps"] == ckpt["step"]
    assert details["train_config"]["max_steps"] == 30


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.loss_plot
def test_plot_overlays_runs_into_a_png(two_runs, run_cli, tmp_path):
    _, out = two_runs
    assert png_size(out / "small" / "loss.png")[0] > 300  # train drew its own plot
    target = tmp_path / "compare.png"
    result = run_cli("plot", "small", out / "wider", "--out", out, "-o", target)
    assert "wrote" in result.stderr
    width, height = png_size(target)
    assert width > 500 and height > 300 and target.stat().st_size > 20_000


@pytest.mark.loss_plot
def test_plot_errors(two_runs, run_cli, monkeypatch):
    _, out = two_runs
    result = run_cli("plot", "nope", "--out", out, expect=1)
    assert "has no metrics.jsonl" in result.stderr
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = run_cli("plot", "small", "--out", out, expect=1)
    assert "pip install 'charrnn[plot]'" in result.stderr
    corpus = two_runs[0]
    run_cli("train", corpus, *TRAIN_FAST, "--out", out, "--name", "no-mpl")  # still trains
    assert (out / "no-mpl" / "last.pt").is_file() and not (out / "no-mpl" / "loss.png").exists()
