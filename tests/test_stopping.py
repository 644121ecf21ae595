"""Stopping well: non-finite steps are skipped and counted, patience ends a run
that stopped improving, and a model with non-finite weights is never saved."""

import json
import math

import pytest
import torch

import charrnn.train.loop
from charrnn.checkpoint import load_checkpoint
from charrnn.data.cache import load_corpus
from charrnn.errors import CharrnnError
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.runs.writer import run_trainer
from charrnn.train.cadence import evals_without_improvement
from charrnn.train.config import TrainConfig
from tests.conftest import MIXED_TEXT, TINY_MODEL


class Poison:
    """Which training steps (counted from 1 in this process) get a NaN loss."""

    def __init__(self):
        self.steps: set[int] = set()
        self.after: int | None = None  # every step after this one
        self.calls = 0

    def hits(self) -> bool:
        self.calls += 1
        return self.calls in self.steps or (self.after is not None and self.calls > self.after)


@pytest.fixture
def poison(monkeypatch):
    """The test hook: wrap the model's forward so chosen training steps return a NaN loss."""
    plan = Poison()
    forward = CharRNN.forward

    def poisoned(self, ids, state=None, targets=None):
        logits, state, loss = forward(self, ids, state, targets)
        if targets is not None and self.training and plan.hits():
            loss = loss * float("nan")
        return logits, state, loss

    monkeypatch.setattr(CharRNN, "forward", poisoned)
    return plan


def test_a_non_finite_step_is_skipped_and_leaves_the_weights_alone(write_corpus, tmp_path, poison):
    corpus = load_corpus(write_corpus(MIXED_TEXT * 30))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=8, eval_every=0)
    trainer = run_trainer(corpus, ModelConfig(len(corpus.vocab), hidden=32), config, tmp_path / "r")
    poison.steps.add(3)

    def step() -> tuple[float, int]:
        trainer._train_step(1e-2)
        before = trainer.meter.steps
        trainer._sync()
        return trainer.meter.loss_sum, trainer.meter.steps - before  # steps that counted

    assert step()[1] == 1 and step()[1] == 1
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moments = [s["exp_avg"].clone() for s in trainer.optimizer.state.values()]
    loss_sum = trainer.meter.loss_sum
    assert step() == (loss_sum, 0)  # the third step: NaN loss, not counted in the mean
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    for s, m in zip(trainer.optimizer.state.values(), moments, strict=True):
        assert torch.equal(s["exp_avg"], m) and float(s["step"]) == 2  # AdamW skipped too
    assert all(not s.any() for s in trainer.state)  # the carried state starts afresh
    assert trainer.skipped_steps == 1 and trainer.skip_streak == 1
    assert step()[1] == 1
    assert trainer.skip_streak == 0 and trainer.skipped_steps == 1 and trainer.step == 4


def test_skipped_steps_are_counted_through_the_cli(write_corpus, tmp_path, run_cli, poison):
    poison.steps.update({5, 6})
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    result = run_cli("train", corpus, *TINY_MODEL, "--max-steps", 20, "--out", out, "--name", "n")
    assert "skipped" in result.stderr
    last = load_checkpoint(out / "n" / "last.pt")
    assert last["skipped_steps"] == 2 and last["status"] == "finished"
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    records = [json.loads(line) for line in (out / "n" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in records if r["event"] == "train"] == [2, 2]


def test_too_many_non_finite_steps_in_a_row_stop_with_best_intact(
    write_corpus, tmp_path, run_cli, poison
):
    poison.after = 10
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    args = ["--max-steps", 100, "--eval-every", 5, "--max-skips", 3]
    result = run_cli("train", corpus, *TINY_MODEL, *args, "--out", out, "--name", "n", expect=1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "3 steps in a row had a non-finite loss" in errors[0]
    assert "Traceback" not in result.output
    best = load_checkpoint(out / "n" / "best.pt")
    last = load_checkpoint(out / "n" / "last.pt")
    assert best["step"] in (5, 10) and math.isfinite(best["val_loss"])
    assert last["step"] == 13 and last["status"] == "nonfinite" and last["skipped_steps"] == 3
    for ckpt in (best, last):
        assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_a_model_with_non_finite_weights_is_never_saved(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(MIXED_TEXT * 30))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=4, eval_every=0)
    trainer = run_trainer(corpus, ModelConfig(len(corpus.vocab), hidden=32), config, tmp_path / "r")
    trainer.run()
    before = (tmp_path / "r" / "last.pt").read_bytes()
    with torch.no_grad():
        trainer.model.head.weight[0, 0] = float("inf")
    with pytest.raises(CharrnnError, match="no longer finite"):
        trainer._save("last")
    assert (tmp_path / "r" / "last.pt").read_bytes() == before


def test_evals_without_improvement():
    evals = [{"val_loss": v} for v in (3.0, 2.0, 2.5, 2.0, 2.4)]
    assert evals_without_improvement(evals) == 3  # a tie is not an improvement
    assert evals_without_improvement(evals[:2]) == 0
    assert evals_without_improvement([]) == 0


def test_patience_stops_a_run_that_stopped_improving(write_corpus, tmp_path, run_cli, monkeypatch):
    scripted = iter([3.0, 2.0, 2.5, 2.4, 2.1, 1.9, 2.2, 2.3, 2.4, 2.5, 1.0, 1.0, 1.0])
    monkeypatch.setattr(charrnn.train.loop, "evaluate_shared", lambda *args: next(scripted))
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    args = [*TINY_MODEL, "--max-steps", 100, "--eval-every", 5, "--out", out]
    result = run_cli("train", corpus, *args, "--name", "p", "--patience", 3)
    assert "stopped early" in result.stderr
    last = load_checkpoint(out / "p" / "last.pt")
    best = load_checkpoint(out / "p" / "best.pt")
    assert last["step"] == 25 and last["status"] == "patience"  # evals at 5..25
    assert best["step"] == 10 and best["val_loss"] == 2.0

    refused = run_cli("train", corpus, "--resume", "p", "--out", out, expect=1)
    assert "give a larger --patience" in refused.stderr
    resumed = run_cli("train", corpus, "--resume", "p", "--out", out, "--patience", 4)
    assert "stopped early" in resumed.stderr
    # 1.9 at step 30 is a new best; four evaluations without one follow
    assert load_checkpoint(out / "p" / "last.pt")["step"] == 50
    best = load_checkpoint(out / "p" / "best.pt")
    assert best["step"] == 30 and best["val_loss"] == 1.9


def test_patience_needs_evaluations(write_corpus, run_cli):
    corpus = write_corpus(MIXED_TEXT * 30)
    result = run_cli("train", corpus, *TINY_MODEL, "--patience", 2, "--eval-every", 0, expect=1)
    assert "--patience needs evaluations" in result.stderr


def test_a_small_corpus_is_evaluated_often_enough_to_catch_its_best(
    tmp_path, run_cli, write_corpus
):
    """Automatic evaluation follows the passes over a small corpus, not a fixed 30 s."""
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    run_cli("train", corpus, *TINY_MODEL, "--time", "2s", "--out", out, "--name", "small")
    records = [
        json.loads(line) for line in (out / "small" / "metrics.jsonl").read_text().splitlines()
    ]
    evals = [r for r in records if r["event"] == "eval"]
    assert len(evals) >= 3


def test_a_training_step_never_waits_for_the_device(write_corpus, tmp_path, monkeypatch):
    """No value travels from the device to the host inside a step (a GPU would stall)."""
    corpus = load_corpus(write_corpus(MIXED_TEXT * 30))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=8, eval_every=0)
    trainer = run_trainer(corpus, ModelConfig(len(corpus.vocab), hidden=32), config, tmp_path / "r")
    assert trainer.fused
    trainer._train_step(1e-2)  # the optimizer creates its state on the first step
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name):
            reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    for _ in range(3):
        trainer._train_step(1e-2)
    monkeypatch.undo()
    assert reads == []
    trainer._sync()
    assert trainer.meter.steps == 4


def test_reading_once_per_log_interval_trains_exactly_as_reading_each_step(
    write_corpus, tmp_path, poison
):
    """The GPU cadence, run here on the CPU: the same weights, losses and skips."""
    corpus = load_corpus(write_corpus(MIXED_TEXT * 30))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=30, eval_every=0, log_every=10)
    outcomes = []
    for name, every in (("each", 1), ("interval", 10)):
        poison.calls, poison.steps = 0, {4, 12, 13}
        trainer = run_trainer(
            corpus, ModelConfig(len(corpus.vocab), hidden=32), config, tmp_path / name
        )
        trainer.sync_every = every
        result = trainer.run()
        records = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        losses = [r["train_loss"] for r in map(json.loads, records) if r["event"] == "train"]
        outcomes.append((trainer.model.state_dict(), losses, result.skipped_steps))
    (weights_a, losses_a, skipped_a), (weights_b, losses_b, skipped_b) = outcomes
    assert skipped_a == skipped_b == 3 and losses_a == losses_b and len(losses_a) == 3
    for k in weights_a:
        assert torch.equal(weights_a[k], weights_b[k]), k


def test_a_run_of_skips_between_reads_still_stops_training(write_corpus, tmp_path, poison):
    """On a GPU the host reads once per log interval; three skips in a row that good
    steps followed before the read must still stop the run at that read."""
    corpus = load_corpus(write_corpus(MIXED_TEXT * 30))
    config = TrainConfig(
        batch_size=4, seq_len=16, max_steps=40, eval_every=0, log_every=10, max_skips=3
    )
    poison.steps = {3, 4, 5}
    trainer = run_trainer(corpus, ModelConfig(len(corpus.vocab), hidden=32), config, tmp_path / "r")
    trainer.sync_every = 10
    result = trainer.run()
    assert result.status == "nonfinite" and result.steps == 10 and result.skipped_steps == 3
