"""Real `charrnn train` processes, stopped by SIGINT or killed by SIGKILL.

A resumed run must end bit-identical to one that was never stopped, and a
kill at any moment must leave checkpoints that load and resume.

Only the stopped or killed run is a real process; the unbroken run and the
resumes that finish the job run in this process, through the same command.
"""

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch

from charrnn.checkpoint import load_checkpoint
from charrnn.errors import RunInUseError
from charrnn.runs.lock import LOCK_FILE, RunLock
from tests.conftest import MIXED_TEXT, TINY_MODEL, charrnn_cmd

# two layers and dropout, so the RNG stream matters as much as the weights
MODEL = [*TINY_MODEL, "--layers", "2", "--dropout", "0.1", "--lr", "1e-2"]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended early: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


def metric_steps(run_dir: Path, event: str) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if r["event"] == event]


def test_sigint_then_resume_is_bit_identical_to_an_unbroken_run(tmp_path, write_corpus, run_cli):
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    # 500 steps: after the first save (step 25) the process has ~475 steps (over a
    # second) left, so the signal lands in the middle of the run even on a busy machine
    common = [corpus, *MODEL, "--max-steps", 500, "--eval-every", 25, "--out", out]
    run_cli("train", *common, "--name", "straight")

    proc = subprocess.Popen(
        charrnn_cmd("train", *common, "--name", "split"), stderr=subprocess.PIPE, text=True
    )
    wait_for(out / "split" / "last.pt", proc)  # the first evaluation has saved
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    stopped_at = load_checkpoint(out / "split" / "last.pt")["step"]
    assert 25 <= stopped_at < 500
    resume_line = next(line for line in err.splitlines() if line.startswith("resume with:"))
    assert resume_line == f"resume with: charrnn train {corpus} --resume split --out {out}"

    # the printed command, with no options: the run continues with everything it stored
    run_cli(*resume_line.removeprefix("resume with: charrnn ").split())
    a = load_checkpoint(out / "straight" / "last.pt")
    b = load_checkpoint(out / "split" / "last.pt")
    assert a["step"] == b["step"] == 500
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["evals"] == b["evals"]  # the same validation losses at the same steps

    # the metrics history is continuous: each logged step once, in order, same losses
    assert metric_steps(out / "split", "train") == list(range(10, 501, 10))
    straight = (out / "straight" / "metrics.jsonl").read_text().splitlines()
    split = (out / "split" / "metrics.jsonl").read_text().splitlines()
    losses = [  # a "threads" record says when this machine's tuner moved: not the run's
        [r["train_loss"] for r in map(json.loads, rs) if r["event"] != "threads"]
        for rs in (straight, split)
    ]
    assert losses[0] == losses[1]


def checkpoint_files(run_dir: Path) -> dict[str, int]:
    """best.pt, last.pt and any temp file on their way to them, with their mtimes."""
    files = {}
    for entry in os.scandir(run_dir):
        if ".pt" in entry.name:
            with contextlib.suppress(FileNotFoundError):  # a temp file renamed meanwhile
                files[entry.name] = entry.stat().st_mtime_ns
    return files


def wait_until_a_save_begins(run_dir: Path, proc: subprocess.Popen, deadline: float) -> None:
    """Return the moment a checkpoint file appears or changes: a temp file being written,
    or (were saving not atomic) best.pt or last.pt itself being rewritten."""
    before = checkpoint_files(run_dir)
    while checkpoint_files(run_dir) == before:
        assert proc.poll() is None and time.monotonic() < deadline


def test_sigkill_at_random_moments_never_leaves_an_unreadable_checkpoint(
    tmp_path, write_corpus, run_cli
):
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    run_dir = out / "kill"
    rng = random.Random(0)
    # --eval-every 1: a save every step, so most kills land in the middle of one; two of
    # the three kills wait until a checkpoint is half written, the other comes at random
    args = ["train", corpus, *MODEL, "--max-steps", 100_000, "--eval-every", 1, "--out", out]
    steps = []
    for attempt, moment in enumerate(["mid-save", "random", "mid-save"]):
        resume = ["--resume", "kill"] if attempt else ["--name", "kill"]
        proc = subprocess.Popen(
            charrnn_cmd(*args, *resume), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        if attempt == 0:  # both files exist, as every later kill finds them
            wait_for(run_dir / "best.pt", proc)
        else:  # wait until this process has saved something of its own
            before = (run_dir / "last.pt").stat().st_mtime_ns
            while (run_dir / "last.pt").stat().st_mtime_ns == before:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.005)
        if moment == "random":
            time.sleep(rng.uniform(0, 0.3))
        else:
            wait_until_a_save_begins(run_dir, proc, deadline)
        proc.kill()
        proc.wait()

        for name in ("last.pt", "best.pt"):
            ckpt = load_checkpoint(run_dir / name)
            assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
        steps.append(load_checkpoint(run_dir / "last.pt")["step"])
    assert steps == sorted(steps) and steps[-1] > steps[0]  # every resume made progress

    target = steps[-1] + 5
    run_cli("train", corpus, "--resume", "kill", "--out", out, "--max-steps", target)
    assert load_checkpoint(run_dir / "last.pt")["step"] == target
    assert not list(run_dir.glob(".*.tmp"))  # what the kills left behind is cleaned up
    evals = metric_steps(run_dir, "eval")
    assert evals == sorted(set(evals)) and evals[-1] == target  # no step logged twice


def test_the_run_lock_refuses_a_holder_but_waits_out_a_brief_check(tmp_path):
    holder = RunLock(tmp_path)
    holder.acquire()
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    with pytest.raises(
        RunInUseError, match=f"being trained by another process \\(pid {os.getpid()}\\)"
    ):
        RunLock(tmp_path).acquire()
    holder.release()

    # a check_run_free in another process holds the lock for a moment: a trainer waits
    probe = RunLock(tmp_path)
    probe.acquire(record_pid=False)
    threading.Timer(0.05, probe.release).start()
    trainer = RunLock(tmp_path)
    trainer.acquire()
    assert trainer.held
    trainer.release()
