"""CUDA: run with `pytest -m gpu` on a machine with a GPU; skipped without one.

The CPU suite checks the same logic with the GPU's branches monkeypatched
(tests/test_runtime.py, tests/test_stopping.py); these check it on the device.
"""

import pytest
import torch

from charrnn.checkpoint import open_model
from charrnn.data.cache import load_corpus
from charrnn.model.config import ModelConfig
from charrnn.runs.writer import run_trainer
from charrnn.runtime import cuda_bf16_native, resolve_precision
from charrnn.sample.generate import generate, sample_batch
from charrnn.train.config import TrainConfig
from tests.conftest import MIXED_TEXT

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(autouse=True)
def exact_fp32(monkeypatch):
    """No TF32 (on by default for cuDNN on Ampere and newer): fp32 on the GPU and the
    CPU then differ by rounding alone."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def trainer(tmp_path, write_corpus, device: str, precision: str = "fp32", **kw):
    corpus = load_corpus(write_corpus(MIXED_TEXT * 30))
    config = TrainConfig(
        batch_size=4, seq_len=16, max_steps=kw.pop("max_steps", 5), eval_every=0,
        device=device, precision=precision, lr=1e-3, **kw,
    )  # fmt: skip
    model = ModelConfig(len(corpus.vocab), layers=2, hidden=32, embed=8)
    return run_trainer(corpus, model, config, tmp_path / f"{device}-{precision}")


def test_a_cuda_training_run_matches_the_cpu_within_tolerance(tmp_path, write_corpus):
    cpu = trainer(tmp_path, write_corpus, "cpu")
    gpu = trainer(tmp_path, write_corpus, "cuda")
    cpu_result, gpu_result = cpu.run(), gpu.run()
    assert gpu_result.final_val_loss == pytest.approx(cpu_result.final_val_loss, abs=1e-3)
    # AdamW moves a weight by about lr a step whatever the gradient's size, so a gradient
    # near zero that rounds to the other sign may differ by 2 lr a step: 5 steps, 1e-2
    for name, weight in cpu.model.state_dict().items():
        other = gpu.model.state_dict()[name].cpu()
        assert torch.allclose(weight, other, atol=1e-2), name
        assert (weight - other).abs().mean() < 1e-4, name  # and nearly all agree closely


def test_auto_precision_on_cuda_is_bf16_only_with_native_support(tmp_path, write_corpus):
    device = torch.device("cuda")
    expected = "bf16" if torch.cuda.get_device_capability(device) >= (8, 0) else "fp32"
    assert cuda_bf16_native(device) == (expected == "bf16")
    assert resolve_precision("auto", device) == expected
    t = trainer(tmp_path, write_corpus, "cuda", "auto")
    assert t.precision == expected
    t.run()
    assert all(p.dtype == torch.float32 for p in t.model.parameters())


def test_a_training_step_never_waits_for_the_gpu(tmp_path, write_corpus):
    t = trainer(tmp_path, write_corpus, "cuda", max_steps=20)
    t.model.train()
    t._train_step(1e-3)  # the first step allocates and warms up kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host-device synchronisation raises
    try:
        for _ in range(3):
            t._train_step(1e-3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    t._sync()
    assert t.meter.steps == 4


def test_sampling_on_cuda_is_reproducible(tmp_path, write_corpus):
    t = trainer(tmp_path, write_corpus, "cuda", max_steps=30)
    t.run()
    model, vocab = t.model.eval(), t.corpus.vocab
    a = "".join(generate(model, vocab, "ROMEO:", 40, rng_seed=3))
    b = "".join(generate(model, vocab, "ROMEO:", 40, rng_seed=3))
    assert a == b and len(a) == 40
    assert len(sample_batch(model, vocab, "ROMEO:", 20, 8, rng_seed=1)) == 8


def test_a_cuda_checkpoint_samples_on_the_cpu(tmp_path, write_corpus):
    t = trainer(tmp_path, write_corpus, "cuda", max_steps=30)
    t.run()
    model, vocab, ckpt = open_model(tmp_path / "cuda-fp32" / "last.pt", device="cpu")
    assert next(model.parameters()).device.type == "cpu"
    assert ckpt["machine"]["device"].startswith("cuda")
    assert len("".join(generate(model, vocab, "ROMEO:", 50, rng_seed=1))) == 50


def test_torchrun_trains_on_every_gpu_with_nccl(tmp_path, write_corpus):
    """One rank per GPU (two at most), nccl, and a checkpoint like any other."""
    import os
    import subprocess
    import sys

    from charrnn.checkpoint import load_checkpoint

    corpus = write_corpus(MIXED_TEXT * 30)
    ranks = min(2, torch.cuda.device_count())
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd = [*launch, "--nproc-per-node", str(ranks), "-m", "charrnn", "train", str(corpus),
           "--device", "cuda", "--hidden", "32", "--batch-size", "4", "--seq-len", "16",
           "--max-steps", "20", "--name", "nccl"]  # fmt: skip
    env = {**os.environ, "CHARRNN_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "300"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{ranks} processes (1 machine x {ranks}, nccl)" in done.stderr
    last = load_checkpoint(tmp_path / "checkpoints" / "nccl" / "last.pt")
    assert last["step"] == 20 and last["machine"]["processes"] == ranks


def test_the_serving_engine_batches_streams_on_cuda(tmp_path, write_corpus):
    """Continuous batching on the GPU: a greedy stream is the same alone or among 30
    sampled ones, a seeded one is the same twice, and every row leaves at the end."""
    import threading
    import time

    from charrnn.sample.config import SampleConfig
    from charrnn.serve.config import ServeConfig
    from charrnn.serve.engine import Engine
    from charrnn.serve.jobs import Job
    from charrnn.serve.models import ModelSource

    trainer(tmp_path, write_corpus, "cuda", max_steps=30).run()
    texts, ended, lock = {}, set(), threading.Lock()

    def notify(updates):
        with lock:
            for u in updates:
                texts[(id(u.job), u.index)] = texts.get((id(u.job), u.index), "") + u.text
                if u.finish:
                    ended.add((id(u.job), u.index))

    source = ModelSource("m", tmp_path / "cuda-fp32" / "last.pt")
    engine = Engine([source], torch.device("cuda"), ServeConfig(), notify).start()
    assert engine.ready.wait(60) and engine.failure is None

    def run(*jobs):
        for j in jobs:
            engine.submit(j)
        deadline = time.monotonic() + 60
        while not all((id(j), i) in ended for j in jobs for i in range(j.streams)):
            assert time.monotonic() < deadline, "the jobs did not end"
            time.sleep(0.01)

    try:
        alone = Job("m", ["ROMEO:"], 200, SampleConfig(temperature=0))
        run(alone)
        batched = Job("m", ["ROMEO:"], 200, SampleConfig(temperature=0))
        others = [
            Job("m", ["NURSE:"], 300, SampleConfig(1.0, top_p=0.9), seed=i) for i in range(30)
        ]
        run(*others, batched)
        assert texts[(id(batched), 0)] == texts[(id(alone), 0)]
        twice = [Job("m", ["ROMEO:"], 100, SampleConfig(1.0), seed=4) for _ in range(2)]
        run(twice[0])
        run(twice[1])
        assert texts[(id(twice[0]), 0)] == texts[(id(twice[1]), 0)]
        assert engine.stats.running_streams == 0
    finally:
        engine.stop()
