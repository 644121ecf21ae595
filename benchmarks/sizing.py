"""The sizing sweep: `charrnn train` runs of given shapes, budgets and corpora, one line of
JSON each in benchmarks/sizing/runs.jsonl. benchmarks/fit_sizing.py fits the planner's
constants (charrnn.runs.sizing) to those lines.

Every option the planner would choose is given, so each run is exactly the shape named:

    python benchmarks/sizing.py --corpus ../shared/corpora/tinyshakespeare.txt --time 3m \\
        --shape "--layers 2 --hidden 512 --dropout 0.2 --weight-decay 0.1 --lr 5e-3"

A line records the machine (CPU model, its bf16 flags), the corpus (training characters),
the budget, the options, the parameter count, the characters seen, the passes, the best
validation loss and the characters seen when it was reached, and the final one.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charrnn.checkpoint import load_checkpoint
from charrnn.model.config import ModelConfig
from charrnn.runs.records import read_metrics
from charrnn.runs.sizing import parameter_count
from charrnn.runtime import cpu_flags, cpu_model

HERE = Path(__file__).resolve().parent
RUNS = HERE / "sizing" / "runs.jsonl"
# what the planner chooses: a sweep run gives each, so no plan is made for it
PLANNED = {
    "--cell": "lstm",
    "--layers": "1",
    "--hidden": "512",
    "--embed": "64",
    "--dropout": "0",
    "--dropout-kind": "element",
    "--batch-size": "32",
    "--seq-len": "50",
    "--lr": "7e-3",
    "--weight-decay": "0",
    "--precision": "auto",
    "--patience": None,  # off unless the shape gives it
}


def full_options(shape: str) -> list[str]:
    """The shape's options, with today's defaults for the planned ones it leaves out."""
    args = shlex.split(shape)
    for flag, default in PLANNED.items():
        if flag not in args and default is not None:
            args += [flag, default]
    return args


def one_run(corpus: Path, budget: str, shape: str, out: Path) -> dict:
    args = full_options(shape)
    name = f"run-{time.time_ns()}"
    cmd = [sys.executable, "-m", "charrnn", "train", str(corpus), "--time", budget]
    cmd += ["--out", str(out), "--name", name, *args]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    last = load_checkpoint(out / name / "last.pt")
    evals = [r for r in read_metrics(out / name) if r.get("event") == "eval"]
    best = min(evals, key=lambda r: r["val_loss"])
    config = ModelConfig(**last["model_config"])
    train = last["train_config"]
    train_chars = last["train_ids"]  # what one pass over the training split covers
    return {
        "cpu": cpu_model(),
        "bf16_flags": sorted(f for f in cpu_flags() if "bf16" in f or f.startswith("amx")),
        "precision": last["machine"]["precision"],
        "corpus": corpus.name,
        "train_chars": train_chars,
        "budget_s": last["train_config"]["time_budget"],
        "shape": shape,
        "cell": config.cell,
        "layers": config.layers,
        "hidden": config.hidden,
        "embed": config.embed,
        "dropout": config.dropout,
        "dropout_kind": config.dropout_kind,
        "batch_size": train["batch_size"],
        "seq_len": train["seq_len"],
        "lr": train["lr"],
        "weight_decay": train["weight_decay"],
        "params": parameter_count(config),
        "steps": last["step"],
        "chars_seen": last["chars_seen"],
        "chars_per_s": round(last["chars_seen"] / last["train_seconds"]),
        "passes": round(last["chars_seen"] / train_chars, 3),
        "best_val": round(best["val_loss"], 5),
        "best_chars_seen": best["chars_seen"],
        "final_val": round(evals[-1]["val_loss"], 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--time", required=True, help="budget per run: 45s, 3m")
    parser.add_argument("--shape", action="append", required=True, help="options of one run")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--to", type=Path, default=RUNS, help=f"default: {RUNS}")
    args = parser.parse_args()
    args.to.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for shape in args.shape:
                record = one_run(args.corpus, args.time, shape, Path(tmp))
                with args.to.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                print(
                    f"{record['best_val']:.4f} best, {record['final_val']:.4f} final, "
                    f"{record['passes']:.1f} passes, {record['chars_per_s']:,} chars/s: {shape}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
