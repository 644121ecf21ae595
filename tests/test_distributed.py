"""Data-parallel training under torchrun: real processes on the CPU with gloo.

Every test that starts torchrun has a pytest timeout and a subprocess timeout, so a
hang fails the test instead of stalling CI. The launches run `python -m
torch.distributed.run`, which is the `torchrun` command itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import click
import pytest
import torch

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from charrnn.distributed import Job, Place, job_device, torchrun_place
from charrnn.errors import CharrnnError
from charrnn.evaluate import evaluate, evaluate_sums
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from tests.tracebacks import PACKAGE_DIR, our_frames

WORDS = ["the", "king", "queen", "and", "of", "to", "my", "lord", "thou", "art", "shall"]
# a model small enough that torch's start-up, not training, is most of each launch
SMALL = ["--hidden", "32", "--layers", "1", "--embed", "16", "--batch-size", "8"]
SMALL += ["--seq-len", "32", "--log-every", "5", "--dropout", "0"]
# fp32 everywhere: on an AMX CPU `auto` picks bf16, whose rounding would differ between
# a batch of 8 streams and two of 4, and the runs compared here must agree to 1e-4
SMALL += ["--precision", "fp32"]
LAUNCH_TIMEOUT = 150  # seconds for one torchrun command; a hang fails, never stalls CI


def corpus_text(lines: int = 1500) -> str:
    import random

    rng = random.Random(0)
    return "\n".join(" ".join(rng.choice(WORDS) for _ in range(10)) for _ in range(lines))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("ddp")
    (work / "c.txt").write_text(corpus_text(), encoding="utf-8")
    return work


def env_for(work: Path) -> dict:
    return {**os.environ, "CHARRNN_CACHE_DIR": str(work / "cache"), "COLUMNS": "300"}


def torchrun(*args, nproc: int = 2) -> list[str]:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launch, "--nproc-per-node", str(nproc), "-m", "charrnn", *map(str, args)]


@contextmanager
def launched(work: Path, cmd: list[str], **env) -> Iterator[subprocess.Popen]:
    """A command in a process group of its own: whatever the test leaves running (the
    torchrun agent and its workers alike) is killed when the block ends."""
    job = subprocess.Popen(
        cmd,
        cwd=work,
        env={**env_for(work), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield job
    finally:
        with suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)
        job.wait()


def run(work: Path, cmd: list[str], expect: int | None = 0, **env) -> subprocess.CompletedProcess:
    with launched(work, cmd, **env) as job:
        stdout, stderr = job.communicate(timeout=LAUNCH_TIMEOUT)
    done = subprocess.CompletedProcess(cmd, job.returncode, stdout, stderr)
    if expect is not None:
        assert done.returncode == expect, done.stderr[-3000:]
    return done


def losses(run_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] if r["event"] == "train" else r["val_loss"] for r in records]


def weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def assert_same_run(a: Path, b: Path) -> None:
    """Two runs that took the same steps on the same streams: losses and weights agree."""
    assert losses(a) == pytest.approx(losses(b), rel=1e-4)
    wa, wb = weights(a / "last.pt"), weights(b / "last.pt")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def solo(work) -> Path:
    """The reference: one plain process, 40 steps."""
    cmd = [sys.executable, "-m", "charrnn", "train", "c.txt", *SMALL, "--threads", "1"]
    run(work, [*cmd, "--name", "solo", "--max-steps", "40", "--eval-every", "20"])
    return work / "checkpoints" / "solo"


# ------------------------------------------------------------------ the launch


def torchrun_takes(option: str) -> bool:
    """Whether torchrun's own parser reads `option` (after `-m charrnn train`) as its own."""
    from torch.distributed.run import get_args_parser

    args = ["--nproc-per-node", "2", "-m", "charrnn", "train", "c.txt", option, "1"]
    try:
        parsed = get_args_parser().parse_args(args)
    except SystemExit:  # "ambiguous option: --run could match --run-path, --run_path"
        return True
    return parsed.training_script_args != args[4:]


def charrnn_option_strings() -> list[str]:
    """Every option of every command, but hidden old spellings (`--run`): plain charrnn
    still takes them, and torchrun refuses them with its own message."""
    names = set()
    for command in cli.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                names.update(param.opts + param.secondary_opts)
    return sorted(names)


def test_the_collision_check_can_fail():
    """`--run` was the option torchrun took for its --run-path; the check sees it."""
    assert torchrun_takes("--run")
    assert not torchrun_takes("--name")


def test_the_old_run_option_still_names_a_plain_run(tmp_path, monkeypatch, write_corpus):
    from tests.conftest import invoke

    monkeypatch.chdir(tmp_path)
    corpus = write_corpus(corpus_text(200))
    result = invoke("train", corpus, *SMALL, "--max-steps", "2", "--run", "old")
    assert result.exit_code == 0, result.output
    assert "--run is now --name" in result.stderr
    assert (tmp_path / "checkpoints" / "old" / "last.pt").exists()


@pytest.mark.parametrize("option", charrnn_option_strings())
def test_no_charrnn_option_is_taken_by_torchrun(option, capsys):
    assert not torchrun_takes(option), f"torchrun reads {option} as one of its own options"
    assert not torchrun_takes(f"{option}=1")


# ------------------------------------------------------------------ probes and pieces


def test_a_plain_process_has_no_job(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert torchrun_place() is None
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert torchrun_place() == Place(rank=3, world=4, local_rank=1, local_world=2)
    assert Place(3, 4, 1, 2).nodes == 2


def test_each_rank_takes_its_own_gpu_when_cuda_is_there(monkeypatch):
    """The CUDA branch, on a machine without CUDA: the probe is monkeypatched."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    place = Place(rank=1, world=2, local_rank=1, local_world=2)
    assert job_device("auto", place) == torch.device("cuda", 1)
    assert job_device("cuda", place) == torch.device("cuda", 1)
    assert job_device("cpu", place) == torch.device("cpu")
    with pytest.raises(CharrnnError, match="each process takes cuda:LOCAL_RANK"):
        job_device("cuda:0", place)
    with pytest.raises(CharrnnError, match="more than the 2 CUDA GPUs"):
        job_device("cuda", Place(rank=2, world=3, local_rank=2, local_world=3))


@pytest.mark.parametrize("cuda, backend", [(True, "nccl"), (False, "gloo")])
def test_the_backend_follows_the_probed_device(monkeypatch, cuda, backend):
    """nccl where CUDA is found, gloo elsewhere; the group itself is not made here."""
    import charrnn.distributed as distributed

    made = {}
    monkeypatch.setattr(distributed, "torchrun_place", lambda: Place(0, 2, 0, 2))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: made.update(device=device))
    monkeypatch.setattr(
        torch.distributed, "init_process_group", lambda name, **kw: made.update(backend=name)
    )
    monkeypatch.setattr(torch.distributed, "new_group", lambda **kw: kw["backend"])
    job = distributed.start_job("auto", 60)
    assert made["backend"] == backend and job.control == "gloo" and job.active
    assert job.device == (torch.device("cuda", 0) if cuda else torch.device("cpu"))
    assert ("device" in made) == cuda


def test_mps_is_refused_under_torchrun(monkeypatch):
    import charrnn.runtime

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(charrnn.runtime, "mps_available", lambda: True)
    with pytest.raises(CharrnnError, match="not MPS"):
        job_device("auto", Place(0, 1, 0, 1))


def test_without_cuda_the_ranks_train_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert job_device("auto", Place(0, 2, 0, 2)) == torch.device("cpu")


def test_the_carried_state_is_never_a_buffer():
    """DDP broadcasts buffers; the state goes through forward as an argument instead."""
    for cell in ("rnn", "gru", "lstm"):
        model = CharRNN(ModelConfig(vocab_size=10, cell=cell, hidden=8, embed=4))
        assert list(model.buffers()) == []


def test_rows_divide_the_streams_and_refuse_a_batch_that_does_not_divide():
    jobs = [Job(Place(rank=r, world=4), None) for r in range(4)]
    assert [j.rows(8) for j in jobs] == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    with pytest.raises(CharrnnError, match="--batch-size 6 does not divide among 4"):
        jobs[0].rows(6)


def test_validation_shared_out_by_streams_sums_to_the_whole():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=12, cell="gru", hidden=16, embed=8))
    ids = torch.randint(0, 12, (9000,)).numpy()
    parts = [evaluate_sums(model, ids, torch.device("cpu"), "fp32", p, 3) for p in range(3)]
    total = sum(s for s, _ in parts) / sum(n for _, n in parts)
    assert total == pytest.approx(evaluate(model, ids, torch.device("cpu")), rel=1e-6)
    assert all(n > 0 for _, n in parts)


# ------------------------------------------------------------------ real jobs


@pytest.mark.timeout(3 * LAUNCH_TIMEOUT)
def test_two_ranks_follow_one_rank_and_the_checkpoint_samples(work, solo, run_cli):
    cmd = torchrun("train", "c.txt", *SMALL, "--name", "two", "--max-steps", 40)
    done = run(work, [*cmd, "--eval-every", "20"])
    two = work / "checkpoints" / "two"
    assert_same_run(solo, two)
    assert "2 processes" in done.stderr and done.stderr.count("training summary") == 1
    assert load_checkpoint(two / "last.pt")["state"][0].shape[1] == 8  # every stream
    # the checkpoint is like any other: it samples, evals and infos
    sample = run(work, [sys.executable, "-m", "charrnn", "sample", "--checkpoint",
                        two / "best.pt", "--length", "40", "--rng-seed", "1"])  # fmt: skip
    assert len(sample.stdout) >= 40
    run(work, [sys.executable, "-m", "charrnn", "info", two / "last.pt"])
    # a refusal every rank reaches alike is said once, by rank 0
    again = run(work, torchrun("train", "c.txt", "--resume", "two"), expect=None)
    assert again.returncode != 0 and again.stderr.count("error: ") == 1, again.stderr
    assert "already reached its length" in again.stderr


@pytest.mark.timeout(4 * LAUNCH_TIMEOUT)
def test_resume_across_rank_counts_goes_on_exactly(work):
    """2 ranks for 20 steps, then 1 rank to 40; and 1 rank, then 2: both match one
    process that stopped and resumed at the same step, so the carried state was kept
    by global stream index."""
    plain = [sys.executable, "-m", "charrnn"]
    args = ["train", "c.txt", *SMALL, "--eval-every", "20", "--threads", "1"]
    run(work, [*plain, *args, "--name", "one-one", "--max-steps", "20"])
    run(work, [*plain, *args, "--resume", "one-one", "--max-steps", "40"])
    run(work, torchrun(*args, "--name", "two-one", "--max-steps", 20))
    run(work, [*plain, *args, "--resume", "two-one", "--max-steps", "40"])
    run(work, [*plain, *args, "--name", "one-two", "--max-steps", "20"])
    run(work, torchrun(*args, "--resume", "one-two", "--max-steps", 40))
    reference = work / "checkpoints" / "one-one"
    for name in ("two-one", "one-two"):
        assert_same_run(reference, work / "checkpoints" / name)


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_a_time_budget_ends_every_rank_cleanly(work):
    started = time.monotonic()
    run(work, torchrun("train", "c.txt", *SMALL, "--name", "timed", "--time", "4s"))
    assert time.monotonic() - started < LAUNCH_TIMEOUT
    last = load_checkpoint(work / "checkpoints" / "timed" / "last.pt")
    assert last["status"] == "finished" and last["step"] > 0


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_a_batch_that_does_not_divide_is_one_line_from_rank_0(work):
    done = run(work, torchrun("train", "c.txt", *SMALL[:6], "--batch-size", 7), expect=None)
    assert done.returncode != 0
    message = "error: --batch-size 7 does not divide among 2 processes; use a multiple of 2"
    assert done.stderr.count(message) == 1
    assert not our_frames(done.stderr)  # torchrun's traceback is its own


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def long_run(work: Path, name: str):
    cmd = torchrun("train", "c.txt", *SMALL, "--name", name, "--max-steps", 10**7)
    return launched(work, [*cmd, "--eval-every", "50"])


KILLED_BOUND = 45  # seconds from SIGKILL to torchrun's exit: its monitor, then SIGTERM


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_a_rank_killed_ends_the_job_in_bounded_time_and_checkpoints_load(work):
    with long_run(work, "killed") as job:
        # the first evaluation saves last.pt, then best.pt (a collective each): kill after both
        for name in ("last.pt", "best.pt"):
            wait_for(work / "checkpoints" / "killed" / name, job)
        workers = children(job.pid)
        assert len(workers) == 2
        os.kill(max(workers), signal.SIGKILL)
        killed = time.monotonic()
        job.communicate(timeout=KILLED_BOUND)
        assert time.monotonic() - killed < KILLED_BOUND
        assert job.returncode != 0
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(work / "checkpoints" / "killed" / name)["step"] > 0


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_sigint_to_torchrun_saves_once_and_says_how_to_resume(work):
    with long_run(work, "stopped") as job:
        wait_for(work / "checkpoints" / "stopped" / "last.pt", job)
        job.send_signal(signal.SIGINT)  # to torchrun alone, which passes it on
        _, stderr = job.communicate(timeout=60)
    assert stderr.count("interrupted at step") == 1
    assert "resume with: torchrun --nproc-per-node 2 -m charrnn train c.txt --resume stopped" in (
        stderr
    )
    last = load_checkpoint(work / "checkpoints" / "stopped" / "last.pt")
    assert last["status"] == "interrupted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_two_nodes_on_loopback_train_one_run(work, solo):
    """Two torchrun agents, as two machines would start them, meet at a c10d endpoint."""
    endpoint = f"127.0.0.1:{free_port()}"
    args = ["train", "c.txt", *SMALL, "--name", "nodes", "--max-steps", "40"]
    with ExitStack() as stack:
        nodes = []
        for _node in range(2):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                   "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                   endpoint, "--rdzv-id", "charrnn-test", "--local-addr", "127.0.0.1",
                   "-m", "charrnn", *args, "--eval-every", "20"]  # fmt: skip
            nodes.append(stack.enter_context(launched(work, cmd)))
        outputs = [node.communicate(timeout=LAUNCH_TIMEOUT)[1] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert sum("2 processes (2 machines x 1, gloo)" in out for out in outputs) == 1
    assert_same_run(solo, work / "checkpoints" / "nodes")


# ------------------------------------------------------------------ one decision, every rank

WORKER = Path(__file__).parent / "helpers" / "torchrun_worker.py"


def odd_rank_job(work: Path, *args, expect: int | None = 0, **env):
    """torchrun with 2 ranks, rank 1 made odd by `env` (see helpers/torchrun_worker.py)."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd = [*launch, "--nproc-per-node", "2", str(WORKER), *map(str, args)]
    return run(work, cmd, expect, **env)


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_the_first_clock_to_run_out_ends_every_rank(work):
    """Rank 1's clock runs twice as fast: the run ends when rank 1's budget is spent,
    on both ranks at the same step (a rank left training would wait forever)."""
    weights = work / "clock-weights"
    weights.mkdir()
    odd_rank_job(work, "train", "c.txt", *SMALL, "--name", "clock", "--time", "6s",
                 CHARRNN_TEST_FAST_CLOCK="1", CHARRNN_TEST_WEIGHTS=str(weights))  # fmt: skip
    last = load_checkpoint(work / "checkpoints" / "clock" / "last.pt")
    assert last["status"] == "finished"
    assert last["elapsed"] < 5  # rank 0's own clock: it stopped when rank 1's ran out
    # one clock for the schedule too: the same learning rates, so the same weights
    ranks = [torch.load(weights / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_a_step_one_rank_finds_non_finite_is_skipped_on_every_rank(work):
    """Rank 1's loss is NaN at steps 3 and 4, rank 0's never is: both skip them, and
    rank 0's checkpoint counts the two skips."""
    odd_rank_job(work, "train", "c.txt", *SMALL, "--name", "nan", "--max-steps", "12",
                 CHARRNN_TEST_NAN_STEPS="1:3,4")  # fmt: skip
    assert load_checkpoint(work / "checkpoints" / "nan" / "last.pt")["skipped_steps"] == 2


def rank_of(pid: int) -> int:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(v for v in environ if v.startswith(b"RANK=")).split(b"=")[1])


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_sigterm_to_one_rank_stops_every_rank(work):
    """A scheduler may signal one process: the stop is agreed, last.pt saved once."""
    with long_run(work, "one-signal") as job:
        wait_for(work / "checkpoints" / "one-signal" / "last.pt", job)
        rank1 = next(pid for pid in children(job.pid) if rank_of(pid) == 1)
        os.kill(rank1, signal.SIGTERM)
        _, stderr = job.communicate(timeout=60)
    assert job.returncode != 0  # rank 0 exits 143, and torchrun reports it
    assert stderr.count("interrupted at step") == 1
    assert load_checkpoint(work / "checkpoints" / "one-signal" / "last.pt")["status"] == (
        "interrupted"
    )


def test_torchrun_variables_without_torchrun_are_one_line(tmp_path, monkeypatch, write_corpus):
    """RANK and WORLD_SIZE set by hand, with no rendezvous to join: an error, no hang."""
    from tests.conftest import invoke

    for name in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    corpus = write_corpus(corpus_text(50))
    result = invoke("train", corpus, *SMALL, env={"RANK": "0", "WORLD_SIZE": "2"})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: could not join the job torchrun's variables")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_an_error_on_one_rank_is_one_line_there_and_ends_the_job(work):
    """Rank 1 alone fails: it says why, rank 0 says it lost contact, nobody shows a
    traceback of ours, and the checkpoints saved before still load."""
    done = odd_rank_job(work, "train", "c.txt", *SMALL, "--name", "fails", "--max-steps",
                        "100", "--eval-every", "10", CHARRNN_TEST_FAIL="1:25",
                        expect=None)  # fmt: skip
    assert done.returncode != 0
    assert "error: rank 1: a failure on rank 1 alone" in done.stderr
    assert not our_frames(done.stderr), done.stderr[-3000:]
    assert load_checkpoint(work / "checkpoints" / "fails" / "last.pt")["step"] == 20


def test_our_frames_are_the_package_files_not_a_folder_named_charrnn():
    """A clone's folder is named charrnn: torch's frames in its .venv are not ours."""
    clone_venv = PACKAGE_DIR.parent / ".venv/lib/python3.12/site-packages/torch/distributed"
    elsewhere = "/home/me/charrnn/.venv/lib/python3.12/site-packages/torch/distributed/run.py"
    ours = PACKAGE_DIR / "train" / "loop.py"
    traceback = "\n".join(
        f'  File "{path}", line 7, in main'
        for path in (clone_venv / "run.py", elsewhere, ours, "/usr/lib/python3/charrnn/x.py")
    )
    assert our_frames(traceback) == [str(ours)]
    assert our_frames(f'  File "{elsewhere}", line 892, in <module>') == []


@pytest.mark.plan
@pytest.mark.timeout(2 * LAUNCH_TIMEOUT)
def test_rank_0_plans_and_every_rank_trains_that_plan(work):
    """Only --hidden is given: rank 0 probes and fits the rest, and counts both
    processes' throughput; the ranks train one model (DDP refuses shapes that differ)."""
    args = ["--hidden", "32", "--max-steps", "4", "--time", "20s", "--name", "planned"]
    done = run(work, torchrun("train", "c.txt", *args))
    assert done.stderr.count("plan    fitted to") == 1  # rank 0 alone shows it
    config = json.loads((work / "checkpoints" / "planned" / "config.json").read_text())
    plan = config["plan"]
    assert plan["choices"]["hidden"] == {"value": 32, "source": "given", "why": ""}
    assert config["train"]["batch_size"] % 2 == 0
    assert config["model"]["layers"] == plan["choices"]["layers"]["value"]
    assert plan["processes"] == 2  # its speed and passes count both processes
    assert load_checkpoint(work / "checkpoints" / "planned" / "last.pt")["step"] == 4
