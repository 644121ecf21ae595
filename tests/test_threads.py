"""The thread tuner: fewer threads beside a busy program, all of them on a quiet machine.

The tuner is driven by made-up step times: a "machine" here maps the thread count in
use to a step's seconds, and `charrnn.train.threads.step_seconds` (the measurement)
is replaced by it, so a test sets the scene that a busy laptop would.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

import charrnn.runtime
import charrnn.train.threads
from charrnn.train.threads import RECHECK_AT_MOST, RECHECK_BELOW, ThreadTuner
from tests.conftest import MIXED_TEXT, TINY_MODEL

QUIET = {2: 0.05, 1: 0.085}  # 2 threads quicker: two free cores
BUSY = {2: 0.15, 1: 0.08}  # one core taken by another program: 2 threads spin and wait


def drive(tuner: ThreadTuner, machine, seconds: float, start: float = 0.0) -> list[tuple]:
    """Steps for `seconds` of made-up time; `machine(t)` gives the step times at time t.
    Returns (time, count it ran on, count settled on) for each step."""
    steps, t, running = [], start, tuner.running
    while t < start + seconds:
        step = machine(t)[running]
        t += step
        asked = tuner.step_done(step)
        steps.append((t, running, tuner.threads))
        running = running if asked is None else asked
    return steps


def steady(times):
    return lambda t: times


def test_beside_a_busy_program_it_settles_on_fewer_threads_within_a_second():
    tuner = ThreadTuner(2)
    steps = drive(tuner, steady(BUSY), 15.0)
    assert tuner.threads == 1
    settled_at = next(t for t, _, settled in steps if settled == 1)
    assert settled_at < 1.0
    later_on_two = sum(BUSY[2] for t, ran, _ in steps if t > settled_at and ran == 2)
    assert later_on_two < 0.05 * 15  # its looks back at 2 threads cost under 5%


def test_on_a_quiet_machine_it_keeps_every_thread_and_tries_one_fewer_rarely():
    tuner = ThreadTuner(2)
    steps = drive(tuner, steady(QUIET), 60.0)
    assert tuner.threads == 2
    tried = sum(QUIET[1] for _, ran, _ in steps if ran == 1)
    assert 0 < tried < 0.02 * 60  # it did look, and the looks cost under 2% of the time


def test_a_slow_warm_up_does_not_pass_for_fewer_threads_being_quicker():
    """The run's first steps are slow on any count (allocation, cold caches): they fall
    in the 1-thread window, which the run starts on, and only make 1 thread look worse."""
    tuner = ThreadTuner(2)
    steps = drive(tuner, lambda t: {2: 0.2, 1: 0.3} if t < 0.8 else QUIET, 10.0)
    assert all(settled == 2 for _, _, settled in steps)


def test_a_window_slowed_by_a_passing_program_is_put_right_at_the_next_look():
    """Another program slows the 2-thread window alone, so 1 thread wins; the look one
    thread up, a few seconds on, finds 2 quicker again."""
    tuner = ThreadTuner(2)
    steps = drive(tuner, lambda t: {2: 0.4, 1: 0.085} if t < 0.8 else QUIET, 30.0)
    assert any(settled == 1 for _, _, settled in steps) and tuner.threads == 2


def test_when_the_other_program_ends_it_takes_its_threads_back():
    tuner = ThreadTuner(2)
    steps = drive(tuner, lambda t: BUSY if t < 20 else QUIET, 20 + 2 * RECHECK_BELOW[0])
    assert steps[len(steps) // 2][2] == 1  # settled on 1 while the other program ran
    assert tuner.threads == 2 and steps[-1][1] == 2


def test_when_another_program_starts_it_notices_before_its_next_regular_look():
    tuner = ThreadTuner(2)
    drive(tuner, lambda t: QUIET if t < 5 else BUSY, 5 + 3.0)
    assert RECHECK_AT_MOST[0] > 3.0 and tuner.threads == 1


def test_on_more_cores_it_steps_down_until_fewer_is_no_quicker():
    machine = {4: 0.3, 3: 0.25, 2: 0.08, 1: 0.12}  # two cores taken
    tuner = ThreadTuner(4)
    drive(tuner, steady(machine), 20.0)
    assert tuner.threads == 2


def test_one_thread_is_never_tuned():
    assert charrnn.train.threads.tuner_for(None, "cpu", 1, 1) is None
    assert charrnn.train.threads.tuner_for(2, "cpu", 1, 2) is None  # --threads given
    assert charrnn.train.threads.tuner_for(None, "cuda", 1, 8) is None
    assert charrnn.train.threads.tuner_for(None, "cpu", 2, 2) is None  # torchrun's ranks
    assert charrnn.train.threads.tuner_for(None, "cpu", 1, 2) is not None


# ------------------------------------------------------------------ through `charrnn train`


@pytest.fixture
def two_cores(monkeypatch):
    """charrnn's default count is 2 here, whatever this machine has; torch's count is
    put back afterwards, since the tuner sets it for the whole process."""
    before = torch.get_num_threads()
    monkeypatch.setattr(charrnn.runtime, "TORCH_DEFAULT_THREADS", 2)
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    yield
    torch.set_num_threads(before)


def made_up(monkeypatch, times: dict[int, float]) -> None:
    """Each step measures as `times` says for the threads torch runs on now."""
    monkeypatch.setattr(
        charrnn.train.threads, "step_seconds", lambda started: times[torch.get_num_threads()]
    )


def train(run_cli, write_corpus, tmp_path, *options):
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    args = ["train", corpus, *TINY_MODEL, "--max-steps", 60, "--out", out, "--name", "t"]
    result = run_cli(*args, *options)
    records = [json.loads(line) for line in (out / "t" / "metrics.jsonl").read_text().splitlines()]
    return result, [r for r in records if r["event"] == "threads"]


def test_a_busy_machine_moves_training_to_one_thread_and_says_so(
    two_cores, monkeypatch, run_cli, write_corpus, tmp_path
):
    made_up(monkeypatch, BUSY)
    result, changes = train(run_cli, write_corpus, tmp_path)
    assert [r["threads"] for r in changes] == [1]
    step = changes[0]["step"]
    assert 0 < step < 30
    assert f"step {step:>7,}  now on 1 thread" in result.stderr
    assert re.search(rf"threads\s+2, 1 from step {step} *\n", result.stderr)  # the summary
    assert torch.get_num_threads() == 1


def test_a_quiet_machine_keeps_two_threads(two_cores, monkeypatch, run_cli, write_corpus, tmp_path):
    made_up(monkeypatch, QUIET)
    result, changes = train(run_cli, write_corpus, tmp_path)
    assert changes == []
    assert re.search(r"threads\s+2 *\n", result.stderr) and torch.get_num_threads() == 2


def test_threads_given_are_obeyed_however_busy(
    two_cores, monkeypatch, run_cli, write_corpus, tmp_path
):
    made_up(monkeypatch, BUSY)
    result, changes = train(run_cli, write_corpus, tmp_path, "--threads", 2)
    assert changes == [] and torch.get_num_threads() == 2
    assert re.search(r"threads\s+2 *\n", result.stderr)
