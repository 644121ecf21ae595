"""A short soak: 60 train -> save -> load -> sample cycles in one process.

Each cycle resumes the run from its last.pt, trains one more step, saves, loads
the checkpoint it wrote through the public API and samples from it. A leak of
tensors, file handles or memory maps would show as growing RSS or open files.

The model is wide enough (hidden 128, checkpoints of about 1 MB) that keeping one
loaded model per cycle grows RSS by some 17 MB over the 48 measured cycles, well
past the 12 MB allowed; with hidden 32 even 200 cycles of that leak stayed under it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
from pathlib import Path

import pytest

import charrnn
from charrnn.checkpoint import load_checkpoint
from charrnn.data.cache import load_corpus
from charrnn.model.config import ModelConfig
from charrnn.runs.writer import run_trainer
from charrnn.train.config import TrainConfig
from tests.conftest import MIXED_TEXT

CYCLES = 60
WARM_UP = 12  # allocator pools and lazy imports settle in the first cycles
HIDDEN = 128  # a leaked model or checkpoint per cycle is about 0.35 MB or more


def release_free_memory() -> None:
    """Collect garbage and hand the allocator's free pages back (glibc), so RSS is what
    is alive: garbage or free memory that earlier tests in this process left behind
    would otherwise shrink under a leak here and hide it."""
    gc.collect()
    with contextlib.suppress(AttributeError, OSError):  # glibc only
        ctypes.CDLL(None).malloc_trim(0)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
def test_sixty_cycles_keep_memory_flat_and_every_checkpoint_loads(write_corpus, tmp_path):
    corpus = load_corpus(write_corpus(MIXED_TEXT * 30))
    model_config = ModelConfig(vocab_size=len(corpus.vocab), hidden=HIDDEN, embed=8)
    run_dir = tmp_path / "soak"
    rss, files, texts = [], [], set()
    release_free_memory()
    for cycle in range(1, CYCLES + 1):
        config = TrainConfig(batch_size=4, seq_len=16, max_steps=cycle, eval_every=0)
        resume = load_checkpoint(run_dir / "last.pt") if cycle > 1 else None
        result = run_trainer(corpus, model_config, config, run_dir, resume=resume).run()
        assert result.steps == cycle and result.status == "finished"

        model = charrnn.load(run_dir / "last.pt")
        assert model.step == cycle
        text = "".join(model.generate("ROMEO:", length=40, rng_seed=cycle))
        assert len(text) == 40
        texts.add(text)
        if cycle in (WARM_UP, CYCLES):  # the two that the growth is measured between
            release_free_memory()
        rss.append(rss_mb())
        files.append(open_files())

    assert load_checkpoint(run_dir / "best.pt")["step"] <= CYCLES
    assert len(texts) > CYCLES // 2  # the model really changed and sampled each time
    settled = rss[WARM_UP - 1]
    growth = max(rss[WARM_UP:]) - settled
    assert growth < 12, f"RSS grew {growth:.1f} MB after cycle {WARM_UP} ({settled:.0f} MB)"
    assert files[-1] <= files[WARM_UP - 1], f"open files {files[WARM_UP - 1]} -> {files[-1]}"
