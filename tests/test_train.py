import dataclasses
import json
import math

import pytest
import torch

from charrnn.checkpoint import load_checkpoint
from charrnn.data.cache import load_corpus
from charrnn.errors import CharrnnError
from charrnn.evaluate import evaluate
from charrnn.model.config import ModelConfig
from charrnn.runs.writer import run_trainer
from charrnn.train.cadence import eval_due
from charrnn.train.callbacks import Callback
from charrnn.train.config import TrainConfig

PANGRAM = "the quick brown fox jumps over the lazy dog. " * 200


def small_model(vocab_size, **kw):
    return ModelConfig(vocab_size=vocab_size, **{"hidden": 64, "embed": 16, **kw})


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_small_model_learns_a_repetitive_text(write_corpus, tmp_path, cell):
    corpus = load_corpus(write_corpus(PANGRAM))
    # 150 steps at lr 2e-2 end near 0.001-0.006 for every cell and seed tried (300 steps
    # at 1e-2 ended alike, at twice the time)
    config = TrainConfig(batch_size=8, seq_len=32, lr=2e-2, max_steps=150, eval_every=0)
    trainer = run_trainer(corpus, small_model(len(corpus.vocab), cell=cell), config, tmp_path / "r")
    result = trainer.run()
    assert result.steps == 150
    assert result.final_val_loss < 0.05, result.final_val_loss  # from ln(28) = 3.3 at the start


class StopAt(Callback):
    def __init__(self, step):
        self.step, self.trainer = step, None

    def on_start(self, trainer):
        self.trainer = trainer

    def on_step(self, stats):
        if stats.step == self.step:
            self.trainer.request_stop()


def test_stop_then_resume_gives_bit_identical_weights(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(PANGRAM))
    model = small_model(len(corpus.vocab), layers=2, dropout=0.2)  # dropout draws random numbers
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=60, eval_every=25, warmup_steps=10)

    straight = run_trainer(corpus, model, config, tmp_path / "straight")
    straight.run()

    first = run_trainer(corpus, model, config, tmp_path / "split", callback=StopAt(33))
    result = first.run()
    assert result.interrupted and result.steps == 33
    ckpt = load_checkpoint(tmp_path / "split" / "last.pt")
    assert ckpt["step"] == 33
    second = run_trainer(corpus, model, config, tmp_path / "split", resume=ckpt)
    assert second.run().steps == 60

    a, b = straight.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoints_hold_the_best_model_and_the_run_history(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(PANGRAM))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=40, eval_every=10, lr=1e-2)
    run_trainer(corpus, small_model(len(corpus.vocab)), config, tmp_path / "r").run()
    last = load_checkpoint(tmp_path / "r" / "last.pt")
    best = load_checkpoint(tmp_path / "r" / "best.pt")
    losses = [e["val_loss"] for e in last["evals"]]
    assert [e["step"] for e in last["evals"]] == [10, 20, 30, 40]
    assert best["val_loss"] == last["best_val_loss"] == min(losses)
    assert last["corpus_sha256"] == corpus.sha256
    assert last["vocab"] == corpus.vocab.to_dict()
    assert "optimizer" in best and "optimizer" in last
    assert (tmp_path / "r" / "config.json").is_file()


def test_trainer_validation_equals_evaluate_on_the_tail(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(PANGRAM))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=5, val_frac=0.2)
    trainer = run_trainer(corpus, small_model(len(corpus.vocab)), config, tmp_path / "r")
    result = trainer.run()
    tail = corpus.ids[int(len(corpus.ids) * 0.8) :]
    assert result.final_val_loss == pytest.approx(evaluate(trainer.model, tail, trainer.device))


def test_validation_is_in_fp32_whatever_the_run_trains_in(write_corpus, tmp_path, monkeypatch):
    """A bf16 run (`auto` on an AMX CPU or a recent GPU) still validates in fp32, so its
    val loss is what `charrnn eval` gives on any machine. bf16 is only named here:
    autocast is off, so this runs on CPUs that have no bf16 at all."""
    import contextlib

    import charrnn.train.loop

    monkeypatch.setattr(charrnn.train.loop, "resolve_precision", lambda name, device: "bf16")
    monkeypatch.setattr(charrnn.train.loop, "autocast", lambda *a: contextlib.nullcontext())
    asked = []
    real = charrnn.train.loop.evaluate_shared
    monkeypatch.setattr(
        charrnn.train.loop,
        "evaluate_shared",
        lambda model, ids, device, precision, job: (
            asked.append(precision) or real(model, ids, device, "fp32", job)
        ),
    )
    corpus = load_corpus(write_corpus(PANGRAM))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=5)
    trainer = run_trainer(corpus, small_model(len(corpus.vocab)), config, tmp_path / "r")
    trainer.run()
    assert trainer.precision == "bf16" and asked == ["fp32"]


def test_learning_rate_warms_up_then_follows_a_cosine(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(PANGRAM))
    config = TrainConfig(
        batch_size=4, seq_len=16, lr=1.0, min_lr_frac=0.1, warmup_steps=10, max_steps=100
    )
    trainer = run_trainer(corpus, small_model(len(corpus.vocab)), config, tmp_path / "r")
    lrs = [trainer.schedule(step, elapsed=0.0) for step in range(100)]
    assert lrs[0] == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(0))))
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10], strict=True))  # warmup rises
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then decays
    assert trainer.schedule(100, elapsed=0.0) == pytest.approx(0.1)  # ends at min_lr_frac * lr


def test_a_time_budget_ends_the_run(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(PANGRAM))
    config = TrainConfig(batch_size=4, seq_len=16, time_budget=1.0)
    result = run_trainer(corpus, small_model(len(corpus.vocab)), config, tmp_path / "r").run()
    assert result.steps > 10
    assert result.final_val_loss is not None
    # generous: the point is that it stops, not how punctually on a busy machine
    assert result.elapsed < 1.0 + 5


def test_same_seed_same_weights(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(PANGRAM))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=20, rng_seed=5)
    model = small_model(len(corpus.vocab), layers=2, dropout=0.3)
    a = run_trainer(corpus, model, config, tmp_path / "a")
    b = run_trainer(corpus, model, config, tmp_path / "b")
    a.run()
    b.run()
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    other = TrainConfig(batch_size=4, seq_len=16, max_steps=20, rng_seed=6)
    c = run_trainer(corpus, model, other, tmp_path / "c")
    c.run()
    assert not torch.equal(a.model.head.weight, c.model.head.weight)


def test_evaluation_schedule(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(PANGRAM))

    def trainer(eval_every):
        config = TrainConfig(batch_size=4, seq_len=16, max_steps=100, eval_every=eval_every)
        return run_trainer(corpus, small_model(len(corpus.vocab)), config, tmp_path / "r")

    auto = trainer(None)  # by the clock: 30 s at least, and 20x what an evaluation costs
    assert not eval_due(auto, since_last_eval=29.0, eval_seconds=0.5)
    assert eval_due(auto, since_last_eval=30.0, eval_seconds=0.5)
    assert not eval_due(auto, since_last_eval=39.0, eval_seconds=2.0)
    assert eval_due(auto, since_last_eval=40.0, eval_seconds=2.0)

    steps = trainer(5)
    steps.step = 10
    assert eval_due(steps, 0.0, 0.0)
    steps.step = 11
    assert not eval_due(steps, 1000.0, 0.0)

    end_only = trainer(0)
    end_only.step = 10
    assert not eval_due(end_only, 1000.0, 0.0)
    assert end_only.run().evals == [{"step": 100, "val_loss": end_only.last_val_loss}]


def test_a_run_another_trainer_saved_into_meanwhile_is_not_overwritten(write_corpus, tmp_path):
    """Two trainers that both read the folder before either held the lock: the one
    that runs second refuses rather than overwrite what the first saved."""
    corpus = load_corpus(write_corpus(PANGRAM))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=5, eval_every=0)
    model = small_model(len(corpus.vocab))
    early, late = (run_trainer(corpus, model, config, tmp_path / "r") for _ in range(2))
    early.run()
    saved = (tmp_path / "r" / "last.pt").read_bytes()
    with pytest.raises(CharrnnError, match="changed while this training was starting"):
        late.run()
    assert (tmp_path / "r" / "last.pt").read_bytes() == saved

    longer = TrainConfig(batch_size=4, seq_len=16, max_steps=10, eval_every=0)
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    first, second = (
        run_trainer(corpus, model, longer, tmp_path / "r", resume=ckpt) for _ in range(2)
    )
    assert first.run().steps == 10
    with pytest.raises(CharrnnError, match="changed while this training was starting"):
        second.run()
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 10
    assert first.run().steps == 10  # a trainer may run again over its own saves


# ---------------------------------------------------------------- resuming with a new length


def logged_lrs(run_dir):
    records = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["lr"] for r in map(json.loads, records) if r["event"] == "train"}


def test_a_longer_length_on_resume_rewarms_instead_of_jumping(run_cli, write_corpus, tmp_path):
    """A finished 60-step run sits at its floor (0.02 x lr); extended to 120 steps, the
    cosine of the new length stands at about half the peak. The learning rate climbs
    there over --warmup-steps, no faster than the first warmup did, then follows the
    unbroken 120-step run's schedule."""
    corpus = write_corpus(PANGRAM * 4)
    out = tmp_path / "ck"
    opts = ["--hidden", "16", "--embed", "8", "--batch-size", "4", "--seq-len", "16"]
    opts += ["--lr", "1e-2", "--warmup-steps", "6", "--log-every", "1", "--eval-every", "0"]
    run_cli("train", corpus, *opts, "--max-steps", 60, "--out", out, "--name", "r")
    run_cli("train", corpus, "--resume", "r", "--out", out, "--max-steps", 120)
    run_cli("train", corpus, *opts, "--max-steps", 120, "--out", out, "--name", "straight")
    lrs, straight = logged_lrs(out / "r"), logged_lrs(out / "straight")
    assert sorted(lrs) == list(range(1, 121))
    assert lrs[60] == pytest.approx(0.02 * 1e-2, rel=0.05)  # the first run ended at its floor
    steps = [lrs[s + 1] - lrs[s] for s in range(1, 120)]
    assert max(abs(d) for d in steps) <= 1e-2 / 6 * 1.001  # never faster than a warmup step
    assert lrs[66] == pytest.approx(straight[66])  # back on the unbroken run's schedule
    assert all(lrs[s] == pytest.approx(straight[s]) for s in range(66, 121))


def test_a_resume_with_the_same_length_keeps_the_schedule_and_the_other_policy_decays(tmp_path):
    from charrnn.train.schedule import Length, Schedule, Segment

    plain = Schedule(1.0, 0.1, 10, Length(100, None))
    assert plain(50, 0.0) == pytest.approx(0.1 + 0.9 * 0.5)
    extended = Length(200, None)
    rewarm = Schedule(1.0, 0.1, 10, extended, Segment(100, 0.0, 0.1, "rewarm"))
    assert rewarm(100, 0.0) == pytest.approx(0.1 + (rewarm.lr * rewarm.decay(0.5) - 0.1) / 10)
    assert rewarm(109, 0.0) == pytest.approx(rewarm.decay(109 / 200))
    cont = Schedule(1.0, 0.1, 10, Length(200, None), Segment(50, 0.0, 0.6, "continue"))
    lrs = [cont(s, 0.0) for s in range(50, 201)]
    assert lrs[0] == pytest.approx(0.6) and lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_a_rewarm_is_never_a_jump_even_without_a_warmup():
    from charrnn.train.schedule import Length, Schedule, Segment

    no_warmup = Schedule(1.0, 0.02, 0, Length(1000, None), Segment(500, 0.0, 0.02))
    target = no_warmup.decay(0.5)
    lrs = [no_warmup(s, 0.0) for s in range(500, 601)]
    assert lrs[0] == pytest.approx(0.02 + (target - 0.02) / 100)  # a tenth of 1000 steps
    assert lrs[99] == pytest.approx(no_warmup.decay(599 / 1000))


def test_a_new_learning_rate_on_resume_starts_a_segment_where_the_run_stood(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(PANGRAM))
    model = small_model(len(corpus.vocab))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=40, warmup_steps=4, lr=1e-2)
    first = run_trainer(corpus, model, config, tmp_path / "r", callback=StopAt(20))
    first.run()
    stood = first.optimizer.param_groups[0]["lr"]
    ckpt = load_checkpoint(tmp_path / "r" / "last.pt")
    same = run_trainer(corpus, model, config, tmp_path / "r", resume=ckpt)
    assert same.schedule.segment.lr is None  # nothing changed: the run's own schedule
    faster = dataclasses.replace(config, lr=5e-2)
    resumed = run_trainer(corpus, model, faster, tmp_path / "r", resume=ckpt)
    segment = resumed.schedule.segment
    assert (segment.step, segment.lr) == (20, stood)
    assert resumed.schedule(20, 0.0) - stood <= 5e-2 / 4 + 1e-12  # one warmup step at most
