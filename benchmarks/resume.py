"""Resuming with a longer length: which learning-rate policy trains best.

A run of N steps ends at its cosine's floor. Extended to 2N steps on resume, it
can re-warm to where an unbroken 2N-step run would stand ("rewarm"), or decay
from where it is over what is left ("continue"; from the floor, that stays at
the floor). Both are compared with one unbroken 2N-step run, by the validation
loss at step 2N, over the given seeds. Steps rather than wall clock, so the
comparison does not depend on how busy the machine is; the default N is about
what `charrnn train --time 3m` reaches on a 2-core CPU.

    python benchmarks/resume.py --corpus ../shared/corpora/tinyshakespeare.txt --steps 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from charrnn.checkpoint import load_checkpoint
from charrnn.data.cache import load_corpus
from charrnn.model.config import ModelConfig
from charrnn.runs.writer import run_trainer
from charrnn.runtime import cpu_model
from charrnn.train.config import TrainConfig
from charrnn.train.schedule import POLICIES

console = Console(stderr=True)


def train(corpus, config: TrainConfig, run_dir: Path, resume=None, policy=None) -> float:
    model = ModelConfig(vocab_size=len(corpus.vocab))
    trainer = run_trainer(corpus, model, config, run_dir, resume=resume)
    if policy is not None:
        segment = replace(trainer.schedule.segment, policy=policy)
        trainer.schedule = replace(trainer.schedule, segment=segment)
    return trainer.run().final_val_loss


def one_seed(corpus, steps: int, seed: int, threads: int | None, work: Path) -> dict:
    def config(n: int) -> TrainConfig:
        return TrainConfig(max_steps=n, eval_every=0, rng_seed=seed, threads=threads)

    console.print(f"seed {seed}: {steps} steps, then each policy to {2 * steps}")
    result = {"first": train(corpus, config(steps), work / "first")}
    for policy in POLICIES:
        shutil.copytree(work / "first", work / policy)
        ckpt = load_checkpoint(work / policy / "last.pt")
        result[policy] = train(corpus, config(2 * steps), work / policy, ckpt, policy)
    console.print(f"seed {seed}: unbroken {2 * steps} steps")
    result["unbroken"] = train(corpus, config(2 * steps), work / "unbroken")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--steps", type=int, default=2000, help="N: the first run's steps")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=Path("build/bench-resume.json"))
    a = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="charrnn-resume-") as tmp:
        corpus = load_corpus(a.corpus)
        for seed in a.seeds:
            work = Path(tmp) / f"seed{seed}"
            results.append({"seed": seed, **one_seed(corpus, a.steps, seed, a.threads, work)})

    columns = ["first", *POLICIES, "unbroken"]
    table = Table(title=f"val loss (nats/char) at step {2 * a.steps}; {cpu_model()}")
    table.add_column("seed")
    labels = {"first": f"after {a.steps}", "unbroken": f"unbroken {2 * a.steps}"}
    for name in columns:
        table.add_column(labels.get(name, f"{name} to {2 * a.steps}"), justify="right")
    for r in results:
        table.add_row(str(r["seed"]), *(f"{r[c]:.4f}" for c in columns))
    medians = [f"{statistics.median(r[c] for r in results):.4f}" for c in columns]
    table.add_row("median", *medians, style="bold")
    Console().print(table)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps({"steps": a.steps, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
