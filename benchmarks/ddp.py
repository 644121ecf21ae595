"""Data-parallel training on the CPU: processes against threads, same global batch.

Compares, each run --repeats times into a fresh --out folder:

- (a) `python -m charrnn train ... --threads 2`: one process, two threads;
- (b) `torchrun --standalone --nproc-per-node 2 -m charrnn train ... --threads 1`;
- (c) torchrun with one process and two threads: (a) plus the cost of the job itself.

Training chars/s is the median of metrics.jsonl's train lines after the first (warm-up);
a config's figure is the median over repeats, with the repeats' min-max. Wall time is the
whole command; "others" the most of the cores other processes took during a repeat.
Then times, under torchrun with gloo, 2 ranks x 1 thread, an all_reduce of a float32
tensor the size of the model (DDP's gradient sync) and a MAX all_reduce of 3 floats
(the per-step decision), as a share of (b)'s time per step.

    python benchmarks/ddp.py --corpus ../shared/corpora/tinyshakespeare.txt --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()  # everything on stdout: progress, then the tables
TIMEOUT_S = 300
Run = tuple[float, float, float]  # chars/s, wall s, share of the cores others used
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]  # = torchrun
# config -> (launcher, threads per process)
CONFIGS: dict[str, tuple[list[str], int]] = {
    "(a) plain 1 x 2 thr": ([sys.executable], 2),
    "(b) torchrun 2 x 1 thr": ([*TORCHRUN, "--nproc-per-node", "2"], 1),
    "(c) torchrun 1 x 2 thr": ([*TORCHRUN, "--nproc-per-node", "1"], 2),
}


def cpu_header() -> str:
    """lscpu's model name and the SIMD/matrix flags that decide CPU matmul speed."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=30).stdout
    info = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in out.splitlines())}
    flags = set(info.get("Flags", "").split())
    amx = sorted(f for f in flags if f.startswith("amx"))
    have = ", ".join(f"{f}: {'yes' if f in flags else 'no'}" for f in ("avx512f", "avx2"))
    return f"{info.get('Model name', '?')}, {os.cpu_count()} cpus; {have}, amx: {amx or 'no'}"


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (Linux /proc/stat; 0 elsewhere)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def own_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # torchrun's workers included
    return r.ru_utime + r.ru_stime


def launch(cmd: list[str], env: dict[str, str]) -> tuple[str, float, float]:
    """stdout, wall seconds, and the share of the cores other processes used meanwhile
    (threads slow down many-fold when they must share a core). On a timeout the whole
    process group goes, so torchrun's workers are not left behind."""
    busy0, own0, t0 = busy_seconds(), own_seconds(), time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env}, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise SystemExit(f"timed out after {TIMEOUT_S} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        console.print(err[-2000:], markup=False)
        raise SystemExit(f"exit status {proc.returncode}: {' '.join(cmd)}")
    wall = time.perf_counter() - t0
    others = busy_seconds() - busy0 - (own_seconds() - own0)
    return out, wall, max(0.0, others) / (wall * (os.cpu_count() or 1))


def train_args(a: argparse.Namespace, out: Path, name: str, threads: int, steps: int) -> list:
    opts = {"out": out, "name": name, "batch-size": a.batch_size, "seq-len": a.seq_len,
            "hidden": a.hidden, "layers": a.layers, "embed": a.embed, "cell": a.cell,
            "dropout": 0, "max-steps": steps, "eval-every": 0, "log-every": a.log_every,
            "threads": threads}  # fmt: skip
    return ["-m", "charrnn", "train", str(a.corpus)] + [
        x for k, v in opts.items() for x in (f"--{k}", str(v))
    ]


def train_speed(metrics: Path) -> float:
    """Median chars/s of the train lines, the first (start-up, first allocations) skipped."""
    lines = [json.loads(ln) for ln in metrics.read_text().splitlines() if ln.strip()]
    speeds = [ln["chars_per_s"] for ln in lines if ln["event"] == "train"][1:]
    if not speeds:
        raise SystemExit(f"{metrics}: fewer than two train lines; raise --max-steps")
    return statistics.median(speeds)


def one_run(a: argparse.Namespace, config: str, work: Path, i: int) -> Run:
    launcher, threads = CONFIGS[config]
    name, out = f"{config[1]}{i}", work / f"out-{config[1]}{i}"  # a fresh --out per run
    # OMP_NUM_THREADS as --threads, so torchrun does not set (and warn about) its own
    args = train_args(a, out, name, threads, a.max_steps)
    _, wall, others = launch([*launcher, *args], {"OMP_NUM_THREADS": str(threads)})
    return train_speed(out / name / "metrics.jsonl"), wall, others


def comm_child(a: argparse.Namespace) -> None:
    """Under torchrun: time both all_reduces; rank 0 prints one JSON line."""
    import torch
    import torch.distributed as dist

    from charrnn.model.config import ModelConfig
    from charrnn.model.rnn import CharRNN

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    cfg = ModelConfig(vocab_size=65, cell=a.cell, layers=a.layers, hidden=a.hidden, embed=a.embed)
    params = CharRNN(cfg).num_parameters()

    def median_us(t: torch.Tensor, op: dist.ReduceOp, iters: int) -> float:
        times = []
        for k in range(iters + 20):  # the first 20 are warm-up (connections, buffers)
            dist.barrier()  # so a rank's time is not spent waiting for a late peer
            t0 = time.perf_counter()
            dist.all_reduce(t, op=op)
            if k >= 20:
                times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e6

    grads = median_us(torch.zeros(params), dist.ReduceOp.SUM, a.comm_iters)
    flags = median_us(torch.zeros(3), dist.ReduceOp.MAX, a.comm_iters)
    if dist.get_rank() == 0:
        print(json.dumps({"params": params, "grads_us": grads, "flags_us": flags}))
    dist.destroy_process_group()


def comm_cost(a: argparse.Namespace) -> dict:
    model = ["--cell", a.cell, "--layers", str(a.layers), "--hidden", str(a.hidden),
             "--embed", str(a.embed), "--comm-iters", str(a.comm_iters)]  # fmt: skip
    cmd = [*TORCHRUN, "--nproc-per-node", "2", __file__, "--_comm", *model]
    out, _, others = launch(cmd, {"OMP_NUM_THREADS": "1"})
    return {**json.loads(out.strip().splitlines()[-1]), "others": others}


def speed_table(a: argparse.Namespace, results: dict[str, list[Run]]) -> Table:
    shape = f"{a.cell} {a.layers}x{a.hidden}, batch {a.batch_size} x {a.seq_len}"
    table = Table(title=f"DDP on the CPU: {shape}, {a.max_steps} steps, {a.repeats} repeats")
    for col in ("config", "chars/s", "min-max", "wall s", "vs (a)", "others"):
        table.add_column(col, justify="left" if col == "config" else "right")
    base = statistics.median(r[0] for r in results[next(iter(results))])
    for config, runs in results.items():
        speeds = [r[0] for r in runs]
        med, wall = statistics.median(speeds), statistics.median(r[1] for r in runs)
        spread = f"{min(speeds):,.0f}-{max(speeds):,.0f}"
        others = f"{max(r[2] for r in runs):.0%}"  # the worst run's
        table.add_row(config, f"{med:,.0f}", spread, f"{wall:.1f}", f"{med / base:.2f}x", others)
    return table


def comm_table(a: argparse.Namespace, comm: dict, speed_b: float) -> Table:
    step_us = a.batch_size * a.seq_len / speed_b * 1e6
    title = f"gloo all_reduce, 2 ranks x 1 thread, median of {a.comm_iters}"
    caption = f"(b) step {step_us / 1000:,.1f} ms; others {comm['others']:.0%}"
    table = Table(title=title, caption=caption)
    for col in ("collective", "µs", "share of (b) step"):
        table.add_column(col, justify="left" if col == "collective" else "right")
    rows = [(f"SUM {comm['params']:,} float32 (grads)", comm["grads_us"]),
            ("MAX 3 floats (step decision)", comm["flags_us"])]  # fmt: skip
    for label, us in rows:
        table.add_row(label, f"{us:,.0f}", f"{us / step_us:.1%}")
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=Path("../shared/corpora/tinyshakespeare.txt"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32, help="global, split among ranks")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    p.add_argument("--max-steps", type=int, default=150)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--comm-iters", type=int, default=200)
    p.add_argument("--no-c", action="store_true", help="skip config (c)")
    p.add_argument("--_comm", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._comm:
        return comm_child(a)
    if not a.corpus.is_file():
        raise SystemExit(f"error: corpus {a.corpus} not found (give --corpus)")

    start = time.perf_counter()
    console.print(cpu_header(), markup=False)
    configs = [c for c in CONFIGS if not (a.no_c and c.startswith("(c)"))]
    results: dict[str, list[Run]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="charrnn-ddp-") as tmp:
        work = Path(tmp)
        # a 1-step run fills the corpus cache, so no timed run pays for encoding
        launch([sys.executable, *train_args(a, work, "prime", 2, 1)], {})
        # configs interleaved within a repeat, so a slow spell of the machine hits all
        for i in range(a.repeats):
            for config in configs:
                console.print(f"repeat {i + 1}/{a.repeats}: {config}")
                results[config].append(one_run(a, config, work, i))
    console.print("timing the collectives")
    comm = comm_cost(a)
    console.print(speed_table(a, results))
    speed_b = statistics.median(r[0] for r in results[configs[1]])
    console.print(comm_table(a, comm, speed_b))
    console.print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
