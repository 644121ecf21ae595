"""Training beside a busy process: the thread tuner against fixed thread counts.

Each situation trains the defaults for --time on the first --chars characters of the
corpus, as its own `python -m charrnn train` process; "busy" runs start one
`python -c "while True: pass"` per --busy beside it (killed when the run ends). The
situations take turns within each of --repeats rounds, every other round in reverse
order, so a drift of the machine touches them all alike. A run's speed is its chars
seen over its training seconds (last.pt: evaluation left out); a situation's figure
is the median over the rounds.

Then the ratios the tuner is held to, from this one invocation, each the median over
the rounds of that round's ratio (runs minutes apart, not the machine's drift):
- beside the busy process(es): adaptive / the better of (one thread fewer) and
  (OMP_WAIT_POLICY=PASSIVE), at least 0.9;
- on a quiet machine: adaptive / today's fixed count, at least 0.97.

    python benchmarks/busy.py --corpus ../shared/corpora/tinyshakespeare.txt --repeats 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from charrnn.checkpoint import load_checkpoint
from charrnn.runtime import cpu_flags, cpu_model, resolve_precision, set_threads

console = Console(width=120)
SPIN = [sys.executable, "-c", "while True: pass"]


def situations(cores: int) -> dict[str, tuple[bool, list[str], dict[str, str]]]:
    """name -> (busy, extra train options, extra environment)."""
    fewer = max(1, cores - 1)
    passive = {"OMP_WAIT_POLICY": "PASSIVE"}
    return {
        f"quiet, {cores} threads (fixed: before the tuner)": (False, ["--threads", str(cores)], {}),
        "quiet, adaptive (the default now)": (False, [], {}),
        f"quiet, {cores} threads, OMP_WAIT_POLICY=PASSIVE": (
            False,
            ["--threads", str(cores)],
            passive,
        ),
        f"busy, {cores} threads (fixed)": (True, ["--threads", str(cores)], {}),
        f"busy, {fewer} thread{'s' if fewer > 1 else ''} (fixed)": (
            True,
            ["--threads", str(fewer)],
            {},
        ),
        f"busy, {cores} threads, OMP_WAIT_POLICY=PASSIVE": (
            True,
            ["--threads", str(cores)],
            passive,
        ),
        "busy, adaptive (the default now)": (True, [], {}),
    }


@contextlib.contextmanager
def busy_processes(count: int):
    spinners = [subprocess.Popen(SPIN) for _ in range(count)]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def train_speed(corpus: Path, out: Path, name: str, args: list[str], env: dict, budget: str):
    """chars/s of one training run, and the thread counts it used (from its summary)."""
    cmd = [sys.executable, "-m", "charrnn", "train", str(corpus), "--time", budget]
    cmd += ["--out", str(out), "--name", name, *args]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **env, "COLUMNS": "200"}
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    last = load_checkpoint(out / name / "last.pt")
    threads = next(
        (ln.split("threads", 1)[1].strip() for ln in done.stderr.splitlines() if
         ln.startswith("threads ")), "?"
    )  # fmt: skip
    return last["chars_seen"] / last["train_seconds"], threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--chars", type=int, default=300_000)
    parser.add_argument("--time", default="15s")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", type=int, default=1, help="busy processes beside a run")
    a = parser.parse_args()

    cores = set_threads(None)  # the count charrnn starts on here
    cases = situations(cores)
    speeds: dict[str, list[float]] = {name: [] for name in cases}
    used: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "corpus.txt"
        corpus.write_text(a.corpus.read_text(encoding="utf-8")[: a.chars], encoding="utf-8")
        os.environ["CHARRNN_CACHE_DIR"] = str(work / "cache")
        for round_ in range(a.repeats):
            order = list(enumerate(cases.items()))
            for i, (name, (busy, args, env)) in order[:: 1 if round_ % 2 == 0 else -1]:
                console.print(f"round {round_ + 1}/{a.repeats}: {name}", style="dim")
                with busy_processes(a.busy if busy else 0):
                    speed, threads = train_speed(corpus, work, f"r{round_}-{i}", args, env, a.time)
                speeds[name].append(speed)
                used[name] = threads
    show(cases, speeds, used, a, cores)


def show(cases, speeds, used, a, cores: int) -> None:
    median = {name: statistics.median(v) for name, v in speeds.items()}
    quiet_fixed, quiet_adaptive, _, busy_fixed, fewer, passive, busy_adaptive = cases
    table = Table(title=f"training beside {a.busy} busy process(es), {a.time} runs")
    for col in ("situation", "chars/s (median)", "min-max", "threads used (last run)"):
        table.add_column(col, justify="left" if col[0] in "st" else "right")
    for name in cases:
        lo, hi = min(speeds[name]), max(speeds[name])
        table.add_row(name, f"{median[name]:,.0f}", f"{lo:,.0f}-{hi:,.0f}", used[name])
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    precision = resolve_precision("auto", torch.device("cpu"))
    console.print(f"CPU: {cpu_model()}, {os.cpu_count()} cpus; flags: {', '.join(flags)}")
    console.print(f"charrnn starts on {cores} threads; --precision auto is {precision} here")
    console.print(f"{a.chars:,} characters of {a.corpus}, {a.repeats} rounds")
    console.print(table)
    rounds = range(a.repeats)
    busy_ratio = statistics.median(
        speeds[busy_adaptive][r] / max(speeds[fewer][r], speeds[passive][r]) for r in rounds
    )
    quiet_ratio = statistics.median(
        speeds[quiet_adaptive][r] / speeds[quiet_fixed][r] for r in rounds
    )
    console.print(f"busy:  adaptive / better fix = {busy_ratio:.3f} (goal >= 0.90; per round)")
    console.print(f"quiet: adaptive / fixed      = {quiet_ratio:.3f} (goal >= 0.97; per round)")
    console.print(f"busy, fixed {cores}: {median[busy_fixed] / median[quiet_fixed]:.2f} of quiet")


if __name__ == "__main__":
    main()
