"""`charrnn train` fits the options a user leaves out: `--plan` shows the plan and leaves
nothing behind, a run records it, a resume keeps it, and options all given mean exactly
the run they meant before plans. The probe's measurements are made up here (a fast,
deterministic machine) except in the one test of the real probe."""

from __future__ import annotations

import json

import pytest
import torch

from charrnn.checkpoint import load_checkpoint
from charrnn.runs import probe, sizing, start
from tests.conftest import MIXED_TEXT
from tests.test_sizing import cpu

pytestmark = pytest.mark.plan

ALL_GIVEN = ["--cell", "lstm", "--layers", "1", "--hidden", "16", "--embed", "8"]
ALL_GIVEN += ["--dropout", "0", "--batch-size", "4", "--seq-len", "8", "--lr", "0.01"]
ALL_GIVEN += ["--weight-decay", "0", "--precision", "fp32"]


@pytest.fixture
def made_up_machine(monkeypatch):
    """Speeds made up, measured in no time (bf16 2.3 times fp32's); the calls are counted.
    Which precisions are measured is this CPU's own probe: a run then trains in what the
    plan chose, so a plan must never choose a bf16 this CPU cannot run."""
    calls = []
    machine = cpu(22_000, bf16_ratio=2.3)

    def measure(candidate, vocab_size, device, seconds):
        calls.append(candidate)
        return machine.measure(candidate)

    monkeypatch.setattr(probe, "measure", measure)
    return calls


@pytest.fixture
def corpus(write_corpus):
    return write_corpus(MIXED_TEXT * 40)


def test_plan_prints_each_choice_with_its_source_and_leaves_no_run(
    run_cli, corpus, tmp_path, made_up_machine
):
    out = tmp_path / "ck"
    result = run_cli("train", corpus, "--time", "40s", "--hidden", "32", "--plan", "--out", out)
    text = result.stderr
    assert "--hidden" in text and "given" in text
    assert "fitted" in text and "probed" in text
    assert "passes" in text and "probe " in text
    assert made_up_machine, "the probe measured nothing"
    assert not out.exists()
    assert result.stdout == ""


def test_a_planned_run_records_its_plan_and_a_resume_keeps_it(
    run_cli, corpus, tmp_path, made_up_machine, monkeypatch
):
    out = tmp_path / "ck"
    run_cli("train", corpus, "--max-steps", "3", "--out", out, "--name", "r", "--threads", "1")
    config = json.loads((out / "r" / "config.json").read_text())
    plan = config["plan"]
    precision = plan["choices"]["precision"]
    assert (precision["value"], precision["source"]) == (bf16_here(), "probed")
    assert config["info"]["precision"] == bf16_here()
    assert config["train"]["lr"] == plan["choices"]["lr"]["value"]
    assert config["model"]["hidden"] == plan["choices"]["hidden"]["value"]
    assert plan["choices"]["hidden"]["source"] == "fitted"
    monkeypatch.setattr(start, "make_plan", lambda *a, **k: pytest.fail("re-planned"))
    run_cli("train", corpus, "--max-steps", "5", "--out", out, "--resume", "r", "--threads", "1")
    last = load_checkpoint(out / "r" / "last.pt")
    assert last["step"] == 5
    assert last["model_config"]["hidden"] == plan["choices"]["hidden"]["value"]
    assert json.loads((out / "r" / "config.json").read_text())["plan"] == plan


def sizing_bf16_here() -> bool:
    from charrnn.runtime import cpu_bf16_problem

    return cpu_bf16_problem() is None


def bf16_here() -> str:
    """The precision a plan picks here with bf16 measured 2.3 times fp32's speed."""
    return "bf16" if sizing_bf16_here() else "fp32"


@pytest.mark.parametrize("problem", [None, "this CPU has no native bfloat16 support"])
def test_the_probe_measures_bf16_only_where_the_cpu_runs_it(monkeypatch, problem):
    from charrnn import runtime

    monkeypatch.setattr(runtime, "cpu_bf16_problem", lambda: problem)
    expected = ("fp32",) if problem else ("fp32", "bf16")
    assert probe.runnable_precisions(torch.device("cpu")) == expected
    assert probe.runnable_precisions(torch.device("meta")) == ("fp32",)  # MPS and the rest


@pytest.mark.parametrize("native", [True, False])
def test_a_gpu_measures_bf16_only_where_it_is_native(monkeypatch, native):
    from charrnn import runtime

    monkeypatch.setattr(runtime, "cuda_bf16_native", lambda device: native)
    expected = ("fp32", "bf16") if native else ("fp32",)
    assert probe.runnable_precisions(torch.device("cuda", 0)) == expected


@pytest.mark.parametrize("runs", [True, False])
def test_a_resume_keeps_a_probed_bf16_only_where_this_machine_runs_it(monkeypatch, runs):
    from charrnn import runtime
    from charrnn.runs.sizing import Choice, Plan

    monkeypatch.setattr(runtime, "bf16_native", lambda device: runs)
    plan = Plan({"precision": Choice("bf16", "probed")}, None, None, None, 0.0, 100)
    kept = start.recorded_precision({"precision": "auto", "device": "cpu"}, set(), plan)
    assert kept["precision"] == ("bf16" if runs else "auto")
    given = start.recorded_precision({"precision": "fp32", "device": "cpu"}, {"precision"}, plan)
    assert given["precision"] == "fp32"


def test_every_option_given_is_exactly_the_run_without_plans(
    run_cli, corpus, tmp_path, made_up_machine, monkeypatch
):
    args = ["--max-steps", "4", "--threads", "1", "--eval-every", "2", *ALL_GIVEN]
    run_cli("train", corpus, *args, "--out", tmp_path / "a", "--name", "r")
    assert made_up_machine == [], "a run with every option given was probed"
    monkeypatch.setenv("CHARRNN_PLAN", "off")
    run_cli("train", corpus, *args, "--out", tmp_path / "b", "--name", "r")
    a, b = (load_checkpoint(tmp_path / d / "r" / "last.pt") for d in "ab")
    assert "plan" not in json.loads((tmp_path / "a" / "r" / "config.json").read_text())
    assert a["train_config"] == b["train_config"] and a["model_config"] == b["model_config"]
    assert a["val_loss"] == b["val_loss"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key])


def test_plan_with_resume_is_refused_in_one_line(run_cli, corpus, tmp_path):
    result = run_cli("train", corpus, "--resume", "--plan", "--out", tmp_path, expect=1)
    assert "--plan" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_real_probe_measures_this_machine_within_its_allowance(run_cli, corpus, tmp_path):
    """No made-up speeds: the probe times real training steps here, bf16 only where this
    CPU runs it, and stays near its allowance (5% of 20 s)."""
    result = run_cli("train", corpus, "--time", "20s", "--plan", "--out", tmp_path / "ck")
    lines = [line for line in result.stderr.splitlines() if line.startswith("probe ")]
    assert lines and all("/s" in line or "cannot run" in line for line in lines)
    assert any("bf16" in line for line in lines) == sizing_bf16_here()
    spent = float(result.stderr.split("(probe ")[1].split(" s)")[0])
    assert spent <= sizing.probe_allowance(20) + 2.0
