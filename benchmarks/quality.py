"""Quality at a wall-clock budget: `charrnn train CORPUS --time T` with the defaults.

Each run is a fresh `charrnn train` process (start-up included), so the figure is
what a user gets. Prints a table of every run and the median, and writes it as
JSON. Extra arguments after `--` go to `charrnn train`, to compare settings:

    python benchmarks/quality.py --corpus ../shared/corpora/tinyshakespeare.txt --time 180
    python benchmarks/quality.py --corpus ... --time 3m --runs 1 -- --hidden 256 --layers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from charrnn.checkpoint import load_checkpoint

console = Console(stderr=True)


def one_run(corpus: Path, budget: str, out: Path, name: str, extra: list[str]) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "charrnn",
        "train",
        str(corpus),
        "--time",
        budget,
        "--out",
        str(out),
        "--name",
        name,
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        console.print(proc.stderr[-2000:], markup=False)
        raise SystemExit(f"run {name} failed with exit status {proc.returncode}")
    last = load_checkpoint(out / name / "last.pt")
    return {
        "run": name,
        "final_val_loss": last["val_loss"],
        "best_val_loss": last["best_val_loss"],
        "steps": last["step"],
        "chars_seen": last["chars_seen"],
        "train_chars_per_s": last["chars_seen"] / last["train_seconds"],
        "wall_s": wall,
    }


def table_row(r: dict) -> tuple[str, ...]:
    return (
        r["run"],
        f"{r['final_val_loss']:.4f}",
        f"{r['best_val_loss']:.4f}",
        f"{r['steps']:,}",
        f"{r['chars_seen']:,}",
        f"{r['train_chars_per_s']:,.0f}",
        f"{r['wall_s']:.1f}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--time", default="3m", help="budget per run, as `charrnn train --time`")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=Path("build/bench-quality.json"))
    parser.add_argument("extra", nargs="*", help="arguments passed on to charrnn train")
    args = parser.parse_args()
    if not args.corpus.is_file():
        raise SystemExit(f"error: corpus {args.corpus} not found (set CORPUS=...)")

    rows = []
    with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as tmp:
        for i in range(args.runs):
            console.print(
                f"run {i + 1}/{args.runs}: charrnn train {args.corpus} "
                f"--time {args.time} {' '.join(args.extra)}"
            )
            rows.append(one_run(args.corpus, args.time, Path(tmp), f"run{i + 1}", args.extra))

    table = Table(title=f"quality at --time {args.time} on {args.corpus.name}")
    for col in (
        "run",
        "final val (nats/char)",
        "best val",
        "steps",
        "chars seen",
        "train chars/s",
        "wall s",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(*table_row(r))
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "run"}
    median["run"] = "median"
    median["steps"] = int(median["steps"])
    median["chars_seen"] = int(median["chars_seen"])
    table.add_row(*table_row(median), style="bold")
    Console().print(table)

    report = {
        "corpus": str(args.corpus),
        "time": args.time,
        "extra": args.extra,
        "machine": f"{platform.machine()} {platform.processor()} {os.cpu_count()} cpus",
        "torch": torch.__version__,
        "runs": rows,
        "median": median,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
