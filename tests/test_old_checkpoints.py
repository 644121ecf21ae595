"""A checkpoint written before the package was split (charrnn 0.1.0 at b3fe456: a 16-unit
LSTM trained 40 steps on MIXED_TEXT * 30) loads, samples, scores and resumes exactly
as that version did. The expected values below were made by that version's CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from charrnn.checkpoint import load_checkpoint
from tests.conftest import MIXED_TEXT

OLD = Path(__file__).parent / "data" / "pre-split-last.pt"
SAMPLE = (
    "ROMEO:ae.E요aE   슨yth t :미h.d mhr요:h장🌹이ir\n o예oNh향도iMoegmt이\ni이i엣도\u200d이r\n"
)
BATCH = [
    {
        "seed": "NURSE",
        "text": "rwehs는Nd  미gl 이ae,  ",
        "characters": 20,
        "mean_logprob": -3.556695,
    },
    {
        "seed": "NURSE",
        "text": "egl r엣yha예rau향tt줄?R:",
        "characters": 20,
        "mean_logprob": -3.839658,
    },
]
EVAL_LOSS = 3.659312290045969  # `charrnn eval corpus.txt --json` on that corpus
RESUMED = (60, 3.6352081916592867)  # step and val_loss after `--resume --max-steps 60`


def test_an_old_checkpoint_samples_the_same(run_cli):
    args = ["sample", "--checkpoint", OLD, "--seed", "ROMEO:"]
    assert run_cli(*args, "--length", 60, "--rng-seed", 7).stdout == SAMPLE
    assert run_cli(*args, "--length", 30, "--beam", 3).stdout == "ROMEO:" + " " * 30 + "\n"
    batch = run_cli(
        "sample", "--checkpoint", OLD, "--seed", "NURSE", "--length", 20,
        "--num-samples", 2, "--rng-seed", 2, "--format", "jsonl",
    )  # fmt: skip
    assert [json.loads(line) for line in batch.stdout.splitlines()] == BATCH


def test_an_old_checkpoint_scores_and_resumes_the_same(run_cli, write_corpus, tmp_path):
    corpus = write_corpus(MIXED_TEXT * 30)
    scored = run_cli("eval", corpus, "--checkpoint", OLD, "--json")
    assert json.loads(scored.stdout)["loss"] == pytest.approx(EVAL_LOSS, rel=1e-12)

    run_dir = tmp_path / "ck" / "old"
    run_dir.mkdir(parents=True)
    shutil.copy(OLD, run_dir / "last.pt")
    # fp32: the expected numbers are fp32's, and auto would pick bf16 on an AMX CPU
    args = ["--out", tmp_path / "ck", "--max-steps", 60, "--precision", "fp32"]
    run_cli("train", corpus, "--resume", "old", *args)
    last = load_checkpoint(run_dir / "last.pt")
    assert (last["step"], last["val_loss"]) == pytest.approx(RESUMED, rel=1e-12)
