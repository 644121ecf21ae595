"""Encoding large corpora: speed and peak memory, ours against nanoGPT's approach.

Generates corpora of the given sizes by repeating and shuffling the lines of a
real text (seeded, so every run sees the same bytes), then measures, each in a
fresh process so that peak RSS is that of the job alone:

- `encode`: `charrnn.data.load_corpus` with an empty cache (read, normalise,
  count, encode into the memory-mapped id file), MB/s of corpus and peak RSS;
- `nanogpt`: shakespeare_char's prepare.py approach, `text = f.read()`, then
  `np.array([stoi[c] for c in text], dtype=np.uint16)`;
- `train`: a short `charrnn train` (20 steps, cached encoding), peak RSS.

    python benchmarks/encode.py --source ../shared/corpora/tinyshakespeare.txt --sizes 100 1000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from charrnn.runtime import cpu_model

console = Console(stderr=True)
MB = 1_000_000

# Each child prints one JSON line: {"seconds": ..., "peak_rss_mb": ...}
ENCODE_CHILD = """
import json, resource, sys, time
from pathlib import Path
from charrnn.data.cache import load_corpus
from charrnn.text.config import TokenizerConfig
t0 = time.perf_counter()
tok = TokenizerConfig(kind=sys.argv[3])
c = load_corpus(sys.argv[1], tokenizer=tok, cache_dir=Path(sys.argv[2]))
seconds = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": rss, "ids": len(c), "vocab": len(c.vocab)}))
"""

NANOGPT_CHILD = """
import json, resource, sys, time
import numpy as np
t0 = time.perf_counter()
with open(sys.argv[1], encoding="utf-8") as f:
    data = f.read()
chars = sorted(set(data))
stoi = {ch: i for i, ch in enumerate(chars)}
ids = np.array([stoi[c] for c in data], dtype=np.uint16)
seconds = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": rss, "ids": len(ids), "vocab": len(chars)}))
"""

TRAIN_CHILD = """
import json, resource, sys, time
from charrnn.cli import cli
t0 = time.perf_counter()
try:
    cli(sys.argv[1:], prog_name="charrnn")
except SystemExit as e:
    if e.code:
        raise
seconds = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": rss}))
"""


def make_corpus(source: Path, size_mb: int, folder: Path) -> Path:
    """`size_mb` MB of the source's lines, shuffled pass after pass (seed 0)."""
    path = folder / f"corpus-{size_mb}mb.txt"
    target = size_mb * MB
    if path.exists() and path.stat().st_size >= target:
        return path
    lines = source.read_text(encoding="utf-8").splitlines()
    rng = random.Random(0)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            rng.shuffle(lines)
            block = "\n".join(lines) + "\n"
            f.write(block)
            written += len(block.encode("utf-8"))
    return path


def child(code: str, *args: str, env: dict | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        console.print(proc.stderr[-2000:], markup=False)
        raise SystemExit(f"benchmark child failed with exit status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(kind: str, corpus: Path, runs: int, tokenizer: str, work: Path) -> dict:
    results = []
    for i in range(runs):
        if kind == "encode":
            cache = work / f"cache-{corpus.stem}-{tokenizer}-{i}"
            results.append(child(ENCODE_CHILD, str(corpus), str(cache), tokenizer))
        elif kind == "nanogpt":
            results.append(child(NANOGPT_CHILD, str(corpus)))
        else:  # train: the encoding is cached by the first run
            cache = work / f"cache-train-{corpus.stem}"
            args = [str(corpus), "--max-steps", "20", "--hidden", "128", "--eval-every", "0",
                    "--out", str(work / "runs"), "--name", f"{corpus.stem}-{i}"]  # fmt: skip
            results.append(
                child(TRAIN_CHILD, "train", *args, env={"CHARRNN_CACHE_DIR": str(cache)})
            )
    size = corpus.stat().st_size / MB
    seconds = statistics.median(r["seconds"] for r in results)
    return {
        "job": kind,
        "tokenizer": tokenizer if kind != "nanogpt" else "char (list comprehension)",
        "corpus_mb": round(size, 1),
        "runs": runs,
        "median_seconds": round(seconds, 2),
        "mb_per_s": round(size / seconds, 1),
        "median_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in results)),
        "all_seconds": [round(r["seconds"], 2) for r in results],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", type=Path, required=True, help="a real text to repeat and shuffle")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000], help="corpus sizes, MB")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--tokenizers",
        nargs="+",
        default=["char", "byte", "sentencepiece"],
        help="tokenizers to encode with; sentencepiece runs on the smallest size only",
    )
    p.add_argument(
        "--nanogpt-max-mb",
        type=int,
        default=1000,
        help="skip the nanoGPT approach above this size (it needs ~10x RAM)",
    )
    p.add_argument(
        "--jobs",
        nargs="+",
        choices=["encode", "nanogpt", "train"],
        default=["encode", "nanogpt", "train"],
        help="which jobs to run (e.g. only encode, to re-measure one tokenizer)",
    )
    p.add_argument("--work", type=Path, default=Path("build/bench-encode"))
    p.add_argument("--json", type=Path, default=Path("build/bench-encode.json"))
    a = p.parse_args()

    a.work.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        work = Path(tmp)
        for size in a.sizes:
            console.print(f"generating a {size} MB corpus from {a.source}")
            corpus = make_corpus(a.source, size, a.work)
            for tok in a.tokenizers if "encode" in a.jobs else ():
                if tok == "sentencepiece" and size != min(a.sizes):
                    continue
                console.print(f"{size} MB: encode with {tok} x{a.runs}")
                rows.append(measure("encode", corpus, a.runs, tok, work))
            if "nanogpt" in a.jobs and size <= a.nanogpt_max_mb:
                console.print(f"{size} MB: nanoGPT's list comprehension x{a.runs}")
                rows.append(measure("nanogpt", corpus, a.runs, "char", work))
            if "train" in a.jobs:
                console.print(f"{size} MB: a 20-step training run x{a.runs}")
                rows.append(measure("train", corpus, a.runs, "char", work))

    title = f"encoding large corpora ({cpu_model()}, {os.cpu_count()} cores)"
    table = Table(title=title)
    for col in ("job", "tokenizer", "corpus MB", "runs", "median s", "MB/s", "peak RSS MB"):
        table.add_column(col, justify="left" if col in ("job", "tokenizer") else "right")
    for r in rows:
        mbs = f"{r['mb_per_s']:,.1f}" if r["job"] != "train" else "-"
        cells = [f"{r['corpus_mb']:,.0f}", str(r["runs"]), f"{r['median_seconds']:,.2f}", mbs]
        table.add_row(r["job"], r["tokenizer"], *cells, f"{r['median_peak_rss_mb']:,}")
    Console().print(table)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(rows, indent=2))
    console.print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
