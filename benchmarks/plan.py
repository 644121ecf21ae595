"""The plan against the fixed defaults, side by side: `charrnn train CORPUS --time T` with
a plan, and the same with CHARRNN_PLAN=off (the defaults as they were), alternating
which goes first in each round. Prints one table: the best validation loss of every
run, the medians, what the plan chose and why each run ended.

    python benchmarks/plan.py --corpus ../shared/corpora/tinyshakespeare.txt --time 3m --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from charrnn.checkpoint import load_checkpoint
from charrnn.runtime import cpu_flags, cpu_model

console = Console()


def one_run(corpus: Path, budget: str, out: Path, name: str, planned: bool) -> dict:
    cmd = [sys.executable, "-m", "charrnn", "train", str(corpus), "--time", budget]
    cmd += ["--out", str(out), "--name", name]
    env = {**os.environ, "CHARRNN_PLAN": "on" if planned else "off"}
    proc = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit(f"run {name} failed:\n{proc.stderr[-2000:]}")
    last = load_checkpoint(out / name / "last.pt")
    config = json.loads((out / name / "config.json").read_text())
    m, t = last["model_config"], last["train_config"]
    shape = f"{m['layers']}x{m['hidden']} d{m['dropout']:g} b{t['batch_size']} lr{t['lr']:g}"
    return {
        "planned": planned,
        "best_val": last["best_val_loss"],
        "final_val": last["val_loss"],
        "status": last["status"],
        "steps": last["step"],
        "passes": last["chars_seen"] / last["train_ids"],
        "chars_per_s": last["chars_seen"] / last["train_seconds"],
        "shape": f"{shape} {config['info']['precision']}",
        "elapsed": last["elapsed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--time", default="3m")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for planned in (False, True) if i % 2 == 0 else (True, False):
                name = f"{'plan' if planned else 'defaults'}-{i}"
                results.append(one_run(args.corpus, args.time, Path(tmp), name, planned))
                r = results[-1]
                console.print(f"{name}: {r['best_val']:.4f} ({r['shape']})", style="dim")
    bf16 = sorted(f for f in cpu_flags() if "bf16" in f or f.startswith("amx_"))
    table = Table(
        title=f"{args.corpus.name}, --time {args.time}: {cpu_model()}, {os.cpu_count()} cores, "
        f"{' '.join(bf16) or 'no bf16 flags'}"
    )
    for column in ("run", "best val", "final val", "ended", "steps", "passes", "chars/s", "model"):
        table.add_column(column)
    for r in results:
        table.add_row(
            "plan" if r["planned"] else "defaults", f"{r['best_val']:.4f}", f"{r['final_val']:.4f}",
            r["status"], f"{r['steps']:,}", f"{r['passes']:.1f}", f"{r['chars_per_s']:,.0f}",
            r["shape"],
        )  # fmt: skip
    for planned in (False, True):
        vals = [r["best_val"] for r in results if r["planned"] == planned]
        table.add_row(
            f"median, {'plan' if planned else 'defaults'}", f"{statistics.median(vals):.4f}"
        )
    console.print(table)


if __name__ == "__main__":
    main()
