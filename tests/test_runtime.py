"""The machine: device names, capability-probed precision, threads, and what a resumed
or replayed run takes from this machine rather than from the one it was recorded on.

Each capability test runs the real probe's branch on this machine and monkeypatches
the other branch, so both are checked on every CPU (AVX2-only, AVX512-BF16, AMX).
"""

import json
import re
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import charrnn.runtime as runtime
from charrnn.checkpoint import load_checkpoint, save_checkpoint
from charrnn.errors import CharrnnError
from charrnn.runtime import Machine, resolve_device, resolve_precision, set_threads
from tests.conftest import MIXED_TEXT, TINY_MODEL

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
LACKS = "this CPU (Test CPU) has no native bfloat16 support in PyTorch (it needs AVX-512 or AMX)"


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend the CPU has working bf16 kernels, with or without AMX."""

    def pretend(amx: bool):
        monkeypatch.setattr(runtime, "cpu_bf16_problem", lambda: None)
        monkeypatch.setattr(runtime, "cpu_has_amx", lambda: amx)

    return pretend


@pytest.fixture
def no_bf16_cpu(monkeypatch):
    """Pretend the CPU lacks bf16, as an AVX2-only EPYC does (AMX or not, for auto)."""
    monkeypatch.setattr(runtime, "cpu_bf16_problem", lambda: LACKS)
    monkeypatch.setattr(runtime, "cpu_has_amx", lambda: True)


# ------------------------------------------------------------------ precision


@pytest.mark.parametrize("amx,auto", [(True, "bf16"), (False, "fp32")])
def test_a_cpu_with_bf16_kernels_picks_bf16_for_auto_only_with_amx(bf16_cpu, amx, auto):
    bf16_cpu(amx)
    assert resolve_precision("auto", CPU) == auto
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("fp32", CPU) == "fp32"


def test_a_cpu_without_bf16_never_picks_it_and_refuses_it_by_name(no_bf16_cpu):
    assert resolve_precision("auto", CPU) == "fp32"  # even with AMX flags: the kernels decide
    assert resolve_precision("fp32", CPU) == "fp32"
    with pytest.raises(CharrnnError) as e:
        resolve_precision("bf16", CPU)
    assert str(e.value) == f"--precision bf16: {LACKS}; use --precision fp32 or auto"


@pytest.mark.parametrize("native,auto", [(True, "bf16"), (False, "fp32")])
def test_cuda_auto_is_bf16_only_with_native_support(monkeypatch, native, auto):
    """A T4 or V100 emulates bf16 (torch.cuda.is_bf16_supported() says yes by default)."""
    monkeypatch.setattr(runtime, "cuda_bf16_native", lambda device: native)
    assert resolve_precision("auto", CUDA) == auto
    assert resolve_precision("bf16", CUDA) == "bf16"  # asked for: emulated bf16 still runs


def test_mps_runs_fp32_and_refuses_bf16():
    assert resolve_precision("auto", MPS) == "fp32"
    with pytest.raises(CharrnnError, match="needs a CPU or CUDA device, not mps"):
        resolve_precision("bf16", MPS)


def test_the_real_probe_is_cached_and_leaves_the_random_stream_alone():
    runtime.cpu_bf16_problem.cache_clear()
    before = torch.get_rng_state()
    answer = runtime.cpu_bf16_problem()
    assert torch.equal(torch.get_rng_state(), before)
    assert answer is None or "bfloat16" in answer
    assert runtime.cpu_bf16_problem() is answer  # the second call is the cached answer


def test_bf16_on_this_cpu_trains_in_fp32_weights_or_is_refused_before_any_folder(
    tmp_path, run_cli, write_corpus
):
    """The real probe's branch on the machine at hand."""
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    args = ["train", corpus, *TINY_MODEL, "--threads", "1", "--out", out, "--name", "b"]
    threads = torch.get_num_threads()
    try:
        problem = runtime.cpu_bf16_problem()
        if problem is not None:
            result = run_cli(*args, "--precision", "bf16", "--max-steps", 5, expect=1)
            message = f"error: --precision bf16: {problem}; use --precision fp32 or auto\n"
            assert result.stderr == message
            assert not out.exists()
            return
        run_cli(*args, "--precision", "bf16", "--max-steps", 20)
        last = torch.load(out / "b" / "last.pt", weights_only=True)
        assert all(t.dtype == torch.float32 for t in last["model"].values())
        assert all(s.dtype == torch.float32 for s in last["state"])
        assert last["machine"]["precision"] == "bf16" and last["machine"]["threads"] == 1
        resumed = run_cli(
            "train", corpus, "--resume", "b", "--out", out, "--max-steps", 30, "--precision", "fp32"
        )
        assert "precision bf16 -> fp32" in resumed.stderr
        resumed_last = torch.load(out / "b" / "last.pt", weights_only=True)
        assert resumed_last["machine"]["precision"] == "fp32"
    finally:
        torch.set_num_threads(threads)


def test_bf16_where_the_probe_says_no_is_one_line_and_no_run_folder(
    no_bf16_cpu, tmp_path, run_cli, write_corpus
):
    """The refusal, on any machine: the monkeypatched branch."""
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    for extra in ([], ["--device", "cpu"]):
        result = run_cli("train", corpus, "--precision", "bf16", "--out", out, *extra, expect=1)
        assert result.stderr == f"error: --precision bf16: {LACKS}; use --precision fp32 or auto\n"
        assert not out.exists()


# ------------------------------------------------------------------ devices


def test_cuda_n_names_one_gpu_of_several(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("auto").type == "cuda"
    with pytest.raises(CharrnnError, match=r"^--device cuda:2: this machine has 2 CUDA GPUs"):
        resolve_device("cuda:2")


def test_devices_this_machine_lacks_are_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "mps_available", lambda: False)
    assert resolve_device("auto") == CPU
    with pytest.raises(CharrnnError, match="^--device cuda:1: no CUDA GPU is available"):
        resolve_device("cuda:1")
    with pytest.raises(CharrnnError, match="^--device mps: Apple's MPS backend is not available"):
        resolve_device("mps")
    with pytest.raises(CharrnnError, match="^--device must be auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu")


def test_auto_picks_mps_on_a_mac_without_cuda(monkeypatch):
    """The other branch of the MPS probe (no Mac here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "mps_available", lambda: True)
    assert resolve_device("auto") == MPS
    assert resolve_device("mps") == MPS


def test_the_cli_takes_cuda_n_and_refuses_other_names(run_cli, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    usage = run_cli("sample", "--device", "gpu0", "--out", tmp_path, expect=2)
    assert "'gpu0' is not one of auto, cpu, cuda, cuda:N, mps" in usage.stderr
    missing = run_cli("sample", "--device", "cuda:1", "--out", tmp_path, expect=1)
    assert missing.stderr == "error: --device cuda:1: no CUDA GPU is available on this machine\n"


def test_threads_default_to_what_this_process_may_use():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
        # torch's own default, not the count now: an earlier run here may have left fewer
        assert 1 <= set_threads(None) <= runtime.TORCH_DEFAULT_THREADS
    finally:
        torch.set_num_threads(before)


def test_the_default_does_not_follow_an_earlier_runs_threads():
    """A run with --threads 1, then one with the default, in one process (the API, a
    server): the second gets the machine's cores, not the first run's 1."""
    before = torch.get_num_threads()
    try:
        default = set_threads(None)
        assert set_threads(1) == 1
        assert set_threads(None) == default
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ resume and replay


def test_machine_changes_name_only_what_differs():
    now = Machine("cpu", "fp32", 2)
    assert now.changes_from(None) == []
    assert now.changes_from({"device": "cpu", "precision": "fp32", "threads": 2}) == []
    assert now.changes_from({"device": "cuda:0", "precision": "bf16", "threads": 2}) == [
        "device cuda:0 -> cpu",
        "precision bf16 -> fp32",
    ]


@pytest.fixture
def run_from_a_gpu_box(tmp_path, run_cli, write_corpus, monkeypatch):
    """A run whose checkpoint and config.json say it trained on cuda:0 in bf16, 64 threads.
    `auto` resolves to fp32 here on any CPU (an AMX one would pick bf16)."""
    monkeypatch.setattr(runtime, "cpu_has_amx", lambda: False)
    corpus = write_corpus(MIXED_TEXT * 30)
    out = tmp_path / "ck"
    run_cli("train", corpus, *TINY_MODEL, "--max-steps", 10, "--out", out, "--name", "gpu")
    ckpt = load_checkpoint(out / "gpu" / "last.pt")
    del ckpt["path"], ckpt["format"], ckpt["format_version"]
    ckpt["train_config"].update(device="cuda", precision="bf16", threads=64)
    ckpt["machine"] = {"device": "cuda:0", "precision": "bf16", "threads": 64}
    save_checkpoint(ckpt, out / "gpu" / "last.pt")
    config = json.loads((out / "gpu" / "config.json").read_text())
    config["train"].update(device="cuda", precision="bf16", threads=64)
    config["info"].update(device="cuda:0", precision="bf16", threads=64)
    (tmp_path / "gpu-config.json").write_text(json.dumps(config))
    return corpus, out


def test_a_resumed_run_takes_this_machines_device_precision_and_threads(
    run_from_a_gpu_box, run_cli, monkeypatch
):
    corpus, out = run_from_a_gpu_box
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    threads = torch.get_num_threads()
    try:
        result = run_cli("train", corpus, "--resume", "gpu", "--out", out, "--max-steps", 15)
    finally:
        torch.set_num_threads(threads)
    lines = [line for line in result.stderr.splitlines() if line.startswith("machine")]
    assert len(lines) == 1, result.stderr
    assert "device cuda:0 -> cpu, precision bf16 -> fp32, threads 64 -> " in lines[0]
    last = load_checkpoint(out / "gpu" / "last.pt")
    assert last["step"] == 15 and last["machine"]["device"] == "cpu"
    assert last["train_config"]["device"] == "auto"  # this command's, not the recorded cuda
    shown = run_cli("info", out / "gpu" / "last.pt").stderr
    assert re.search(r"ran on\s+cpu, fp32, \d+ threads", shown), shown


def test_a_replayed_config_json_takes_this_machines_settings(
    run_from_a_gpu_box, run_cli, monkeypatch, tmp_path
):
    corpus, out = run_from_a_gpu_box
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    threads = torch.get_num_threads()
    try:
        replay = ["--config", tmp_path / "gpu-config.json", "--name", "again"]
        result = run_cli("train", corpus, *replay, "--out", out)
    finally:
        torch.set_num_threads(threads)
    assert "machine device cuda:0 -> cpu, precision bf16 -> fp32" in result.stderr
    replayed = json.loads((out / "again" / "config.json").read_text())
    assert replayed["train"]["max_steps"] == 10  # the run's own options do replay
    assert replayed["info"]["device"] == "cpu" and replayed["train"]["device"] == "auto"


def test_a_toml_file_a_person_wrote_still_sets_the_precision(run_cli, tmp_path, write_corpus):
    corpus = write_corpus(MIXED_TEXT * 30)
    (tmp_path / "mine.toml").write_text('precision = "fp32"\ndevice = "cpu"\nmax-steps = 3\n')
    out = tmp_path / "ck"
    run_cli("train", corpus, *TINY_MODEL, "--config", tmp_path / "mine.toml", "--out", out)
    (run,) = out.iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["precision"] == "fp32" and config["train"]["device"] == "cpu"


# ------------------------------------------------------------------ Apple's MPS: no float64


class Float64Watch(TorchDispatchMode):
    """Records every op that makes a float64 tensor (factories, casts, arithmetic)."""

    def __init__(self):
        super().__init__()
        self.made = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        results = out if isinstance(out, (tuple, list)) else [out]
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in results):
            self.made.append(str(func))
        return out


def test_nothing_makes_a_float64_tensor_on_a_device_without_float64(
    monkeypatch, tmp_path, write_corpus
):
    """MPS has no float64, and `--device auto` picks MPS on a Mac: training, evaluation,
    scoring, sampling and beam search must each do without it there. The model runs
    on the CPU with the device's float64 probe answering no, as MPS would."""
    from charrnn.data.cache import load_corpus
    from charrnn.evaluate import score_text
    from charrnn.model.config import ModelConfig
    from charrnn.runs.writer import run_trainer
    from charrnn.sample.beam import beam_search
    from charrnn.sample.generate import sample_batch
    from charrnn.train.config import TrainConfig

    monkeypatch.setattr(runtime, "has_float64", lambda device: False)
    corpus = load_corpus(write_corpus(MIXED_TEXT * 30))
    config = TrainConfig(batch_size=4, seq_len=16, max_steps=6, eval_every=3, log_every=2)
    trainer = run_trainer(corpus, ModelConfig(len(corpus.vocab), hidden=16, embed=8), config,
                      tmp_path / "r")  # fmt: skip
    model, vocab = trainer.model, corpus.vocab
    watch = Float64Watch()
    with watch:
        trainer.run()
        score_text(model, vocab, MIXED_TEXT)
        sample_batch(model, vocab, "ROMEO:", 10, 3, rng_seed=1)
        beam_search(model, vocab, "ROMEO:", 10, 3)
    assert watch.made == []


def test_the_readme_troubleshooting_shows_these_messages(monkeypatch):
    """README's machine table, from the code's own messages (the CPU named as here)."""
    readme = (Path(__file__).resolve().parents[1] / "docs/reliability.md").read_text("utf-8")
    monkeypatch.setattr(runtime, "cpu_model", lambda: "AMD EPYC")
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    runtime.cpu_bf16_problem.cache_clear()
    try:
        messages = []
        for name, device in (("bf16", CPU), ("bf16", MPS)):
            with pytest.raises(CharrnnError) as e:
                resolve_precision(name, device)
            messages.append(str(e.value))
    finally:
        runtime.cpu_bf16_problem.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CharrnnError) as e:
        resolve_device("cuda:1")
    messages.append(str(e.value))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(CharrnnError) as e:
        resolve_device("cuda:2")
    messages.append(str(e.value))
    for message in messages:
        assert f"`error: {message}`" in readme
