"""The optimizer is chosen by a probe (charrnn.train.optim.fused_devices): fused AdamW
where this PyTorch has the kernel for the device, plain AdamW elsewhere. Both branches
run here by answering the probe both ways."""

from __future__ import annotations

import pytest
import torch

import charrnn.train.optim as optim
from charrnn.checkpoint import load_checkpoint
from charrnn.data.cache import load_corpus
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.runs.writer import run_trainer
from charrnn.train.config import TrainConfig
from tests.conftest import MIXED_TEXT

CONFIG = {"batch_size": 4, "seq_len": 16, "eval_every": 0, "lr": 1e-2}


@pytest.fixture(params=["fused", "plain"])
def kernel(request, monkeypatch):
    """Answer the probe as a device with (fused) or without (plain) a fused kernel."""
    if request.param == "plain":
        monkeypatch.setattr(optim, "fused_devices", lambda: [])
    return request.param


def trainer(write_corpus, run_dir, max_steps, resume=None):
    corpus = load_corpus(write_corpus(MIXED_TEXT * 30))
    config = TrainConfig(max_steps=max_steps, **CONFIG)
    model = ModelConfig(len(corpus.vocab), hidden=32, embed=8)
    return run_trainer(corpus, model, config, run_dir, resume=resume)


def test_a_non_finite_step_changes_nothing_with_either_adamw(
    write_corpus, tmp_path, monkeypatch, kernel
):
    t = trainer(write_corpus, tmp_path / "r", 8)
    assert t.fused == (kernel == "fused")
    forward, calls = CharRNN.forward, []

    def nan_on_third(self, ids, state=None, targets=None):
        logits, state, loss = forward(self, ids, state, targets)
        calls.append(1)
        return logits, state, loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(CharRNN, "forward", nan_on_third)
    t._train_step(1e-2)
    t._train_step(1e-2)
    weights = {k: v.clone() for k, v in t.model.state_dict().items()}
    moments = [s["exp_avg"].clone() for s in t.optimizer.state.values()]
    t._train_step(1e-2)  # the poisoned step
    t._sync()
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    for s, m in zip(t.optimizer.state.values(), moments, strict=True):
        assert torch.equal(s["exp_avg"], m) and float(s["step"]) == 2
    assert t.skipped_steps == 1
    t._train_step(1e-2)
    t._sync()
    assert t.skipped_steps == 1 and not torch.equal(t.model.head.bias, weights["head.bias"])


def test_a_checkpoint_resumes_under_the_other_adamw(write_corpus, tmp_path, monkeypatch, kernel):
    """A checkpoint written where the kernel is fused resumes where it is not, and back:
    the state dict is converted (float32 step counts beside the weights for fused)."""
    trainer(write_corpus, tmp_path / "r", 6).run()
    other = "plain" if kernel == "fused" else "fused"
    with pytest.MonkeyPatch.context() as mp:
        if other == "plain":
            mp.setattr(optim, "fused_devices", lambda: [])
        else:
            mp.setattr(optim, "fused_devices", lambda: ["cpu", "cuda"])
        resumed = trainer(
            write_corpus, tmp_path / "r", 12, load_checkpoint(tmp_path / "r" / "last.pt")
        )
        assert resumed.fused == (other == "fused")
        result = resumed.run()
    assert result.steps == 12 and result.skipped_steps == 0
    last = load_checkpoint(tmp_path / "r" / "last.pt")
    assert all(torch.isfinite(v).all() for v in last["model"].values())
