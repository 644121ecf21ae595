"""Continuous batching in the library: one batch per model, rows joining and leaving,
each with its own settings and generator (charrnn.serve.engine, charrnn.sample.mixed)."""

from __future__ import annotations

import threading

import pytest
import torch

pytest.importorskip("fastapi")

from charrnn.sample.config import SampleConfig  # noqa: E402
from charrnn.sample.mixed import RowSettings, pick_rows  # noqa: E402
from charrnn.serve.config import ServeConfig  # noqa: E402
from charrnn.serve.engine import Engine, Overloaded  # noqa: E402
from charrnn.serve.jobs import Job  # noqa: E402
from charrnn.serve.models import ModelSource, find_models  # noqa: E402
from tests.serving import train_tiny_run, wait_until  # noqa: E402

GREEDY = SampleConfig(temperature=0)
WARM = SampleConfig(temperature=1.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("engine"))


class Collected:
    """The engine's notify: every update, and each completion's text and end."""

    def __init__(self):
        self.lock = threading.Lock()
        self.texts: dict[tuple[int, int], str] = {}
        self.finish: dict[tuple[int, int], str] = {}
        self.calls = 0

    def __call__(self, updates):
        with self.lock:
            self.calls += 1
            for u in updates:
                key = (id(u.job), u.index)
                self.texts[key] = self.texts.get(key, "") + u.text
                if u.finish:
                    self.finish[key] = u.finish

    def done(self, job: Job) -> bool:
        return all((id(job), i) in self.finish for i in range(job.streams))

    def text(self, job: Job, index: int = 0) -> str:
        return self.texts.get((id(job), index), "")


@pytest.fixture
def engine_for(runs):
    started = []

    def make(**limits):
        collected = Collected()
        config = ServeConfig(**limits)
        engine = Engine(find_models([], runs), torch.device("cpu"), config, collected).start()
        assert engine.ready.wait(30) and engine.failure is None
        started.append(engine)
        return engine, collected

    yield make
    for engine in started:
        engine.stop()


def job(prompt="ROMEO:", chars=120, config=GREEDY, **kw) -> Job:
    return Job("tiny", [prompt], chars, config, **kw)


def finish(engine, collected, *jobs, timeout=30):
    for j in jobs:
        engine.submit(j)
    wait_until(lambda: all(collected.done(j) for j in jobs), timeout, "the jobs to end")


def test_a_greedy_request_gives_the_same_text_alone_or_batched_with_30_others(engine_for):
    engine, collected = engine_for()
    alone = job(chars=300)
    finish(engine, collected, alone)
    kinds = [("NURSE:", 1.0, None, None), ("줄리엣:", 0.7, 5, None), ("ROMEO", 1.3, None, 0.8)]
    others = [
        job(prompt, 400, SampleConfig(t, k, p), seed=i)
        for i, (prompt, t, k, p) in enumerate(kinds * 10)
    ]
    batched = job(chars=300)
    finish(engine, collected, *others[:15], batched, *others[15:])
    assert collected.text(batched) == collected.text(alone)
    assert len(collected.text(alone)) == 300 and collected.finish[(id(alone), 0)] == "length"
    assert engine.stats.steps > 300  # the others kept the batch going


def test_a_seeded_request_served_alone_is_reproducible(engine_for):
    engine, collected = engine_for()
    first, again = job(config=WARM, seed=7, n=2), job(config=WARM, seed=7, n=2)
    other = job(config=WARM, seed=8)
    for j in (first, again, other):
        finish(engine, collected, j)
    assert collected.text(first, 0) == collected.text(again, 0)
    assert collected.text(first, 1) == collected.text(again, 1)
    assert collected.text(first, 0) != collected.text(first, 1)  # each completion its own
    assert collected.text(first, 0) != collected.text(other, 0)


def test_each_stream_keeps_its_own_stop_and_length(engine_for):
    engine, collected = engine_for()
    greedy = job(chars=200)
    finish(engine, collected, greedy)
    text = collected.text(greedy)
    stop = text[10:13]
    stopped, short = job(chars=200, stops=(stop,)), job(chars=7)
    finish(engine, collected, stopped, short)
    assert collected.text(stopped) == text[: text.index(stop)]
    assert collected.finish[(id(stopped), 0)] == "stop"
    assert collected.text(short) == text[:7] and collected.finish[(id(short), 0)] == "length"


def test_a_cancelled_job_leaves_the_batch_and_the_others_go_on(engine_for):
    engine, collected = engine_for()
    leaving, staying = job(chars=10**7, config=WARM), job(chars=10**7, config=WARM)
    engine.submit(leaving)
    engine.submit(staying)
    wait_until(lambda: engine.stats.running_streams == 2, 10, "both to run")
    engine.cancel(leaving)
    wait_until(lambda: engine.stats.running_streams == 1, 10, "the cancelled row to leave")
    made = len(collected.text(staying))
    wait_until(lambda: len(collected.text(staying)) > made + 100, 10, "the other to go on")
    assert (id(leaving), 0) not in collected.finish  # it ended by leaving, not by finishing
    engine.cancel(staying)
    wait_until(lambda: engine.stats.running_streams == 0, 10, "an empty batch")


def test_a_queued_job_whose_client_left_never_starts(engine_for):
    engine, collected = engine_for(max_streams=1, max_n=1, max_queue=4)
    running, waiting = job(chars=10**7, config=WARM), job(chars=50)
    engine.submit(running)
    wait_until(lambda: engine.stats.running_streams == 1, 10, "the first job to run")
    engine.submit(waiting)
    assert engine.stats.queued_streams == 1
    engine.cancel(waiting)
    engine.cancel(running)
    wait_until(
        lambda: engine.stats.queued_streams == 0 and engine.stats.running_streams == 0,
        10,
        "the batch and queue to empty",
    )
    assert not waiting.started and collected.text(waiting) == ""
    assert engine.stats.refused["client_gone"] == 1


def test_a_cancelled_job_frees_its_queue_place_at_once(engine_for):
    engine, collected = engine_for(max_streams=1, max_n=1, max_queue=2)
    running = job(chars=10**7, config=WARM)
    engine.submit(running)
    wait_until(lambda: engine.stats.running_streams == 1, 10, "the first job to run")
    first, second = job(chars=20), job(chars=20)
    engine.submit(first)
    engine.submit(second)
    with pytest.raises(Overloaded):
        engine.submit(job(chars=20))
    engine.cancel(second)  # not at the head of the queue
    assert engine.stats.queued_streams == 1
    engine.submit(job(chars=20))  # its place is free
    engine.cancel(running)


def test_beyond_the_queue_a_request_is_refused_at_once(engine_for):
    engine, collected = engine_for(max_streams=2, max_n=2, max_queue=1)
    filling = job(chars=10**7, config=WARM, n=2)
    engine.submit(filling)
    wait_until(lambda: engine.stats.running_streams == 2, 10, "the batch to fill")
    queued = job(chars=20)
    engine.submit(queued)  # the one queue place
    with pytest.raises(Overloaded, match="busy"):
        engine.submit(job(chars=20))
    assert engine.stats.refused["queue_full"] == 1
    engine.cancel(filling)
    wait_until(lambda: collected.done(queued), 10, "the queued job to run once there is room")


def test_updates_are_handed_over_in_few_calls(engine_for):
    """The event loop is woken per flush interval, not per step and stream."""
    engine, collected = engine_for(max_streams=16)
    jobs = [job(chars=2000, config=WARM, seed=i) for i in range(16)]
    finish(engine, collected, *jobs)
    assert engine.stats.steps >= 2000
    assert collected.calls < engine.stats.steps / 4


def test_a_damaged_checkpoint_is_a_loading_failure(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    engine = Engine([ModelSource("bad", bad)], torch.device("cpu"), ServeConfig(), print).start()
    assert engine.ready.wait(30)
    assert engine.failure and "bad.pt" in engine.failure
    engine.stop()


# ------------------------------------------------------------------ per-row drawing


def settings(*configs, vocab=6):
    return RowSettings.of(list(configs), vocab, "cpu")


def test_a_greedy_row_takes_the_argmax_whatever_its_company():
    torch.manual_seed(0)
    logits = torch.randn(3, 6)
    ids = pick_rows(logits, settings(GREEDY, WARM, GREEDY), torch.rand(3))
    assert ids[0] == logits[0].argmax() and ids[2] == logits[2].argmax()


def test_top_k_and_top_p_keep_only_the_likeliest_per_row():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.05, 0.03, 0.02]] * 3))
    rows = settings(SampleConfig(1.0, top_k=2), SampleConfig(1.0, top_p=0.75), WARM)
    seen = [set(), set(), set()]
    for u in torch.linspace(0, 0.999, 200):
        for row, token in enumerate(pick_rows(logits, rows, u.repeat(3)).tolist()):
            seen[row].add(token)
    assert seen[0] == {0, 1}
    assert seen[1] == {0, 1}  # 0.5 + 0.3 reaches 0.75
    assert seen[2] == set(range(6))


def test_draws_follow_the_tempered_distribution():
    torch.manual_seed(1)
    logits = torch.randn(1, 6)
    temperature = 0.7
    rows = settings(*[SampleConfig(temperature)] * 20000)
    ids = pick_rows(logits.expand(20000, -1), rows, torch.rand(20000))
    freq = torch.bincount(ids, minlength=6).float() / len(ids)
    expected = torch.softmax(logits[0] / temperature, -1)
    assert torch.allclose(freq, expected, atol=0.015), (freq, expected)
