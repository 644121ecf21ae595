"""Speed: training throughput on torch-rnn's grid, sampling, and quality at 3 minutes.

One table, also written as JSON:

1. Training chars/s for batch 50, window 50, LSTM 1/2/3 layers x 128/256/512
   hidden, through charrnn's Trainer step (fp32 and bf16 autocast) and through a
   plain PyTorch loop (embedding + nn.LSTM + linear + AdamW, fp32) timed in the
   same run. Achieved FLOP/s is given as a share of a 2048x2048 matmul measured
   in the same run, in the same precision. Then the validation loss after equal
   steps in each precision (3 seeds): bf16 must train as well as fp32.
2. Sampling with a 2x512 LSTM: chars/s for 1 and 64 streams (library), and the
   time to the first generated character of `charrnn sample` as a new process.
3. Quality: `benchmarks/quality.py` (`charrnn train CORPUS --time 3m`), if
   --quality-runs is above 0.

    python benchmarks/speed.py --corpus ../shared/corpora/tinyshakespeare.txt
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from charrnn.checkpoint import save_checkpoint
from charrnn.data.cache import load_corpus
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.runs.writer import run_trainer
from charrnn.runtime import cpu_bf16_problem, cpu_flags, cpu_model
from charrnn.sample.config import SampleConfig
from charrnn.sample.generate import generate, sample_batch
from charrnn.train.config import TrainConfig

console = Console(stderr=True)
GRID = [(layers, hidden) for layers in (1, 2, 3) for hidden in (128, 256, 512)]
BATCH, WINDOW, EMBED = 50, 50, 64


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return 2 * n**3 / median_time(lambda: a @ b, repeats=7)


def train_flops_per_char(layers: int, hidden: int, vocab: int) -> float:
    """Matmul FLOPs per character, forward and backward (3x forward)."""
    forward = sum(2 * 4 * hidden * ((EMBED if i == 0 else hidden) + hidden) for i in range(layers))
    forward += 2 * hidden * vocab
    return 3 * forward


def time_charrnn_step(corpus, layers: int, hidden: int, precision: str, work: Path, steps: int):
    config = TrainConfig(batch_size=BATCH, seq_len=WINDOW, max_steps=10**9, precision=precision,
                         eval_every=0, device="cpu")  # fmt: skip
    model = ModelConfig(vocab_size=len(corpus.vocab), layers=layers, hidden=hidden, embed=EMBED)
    trainer = run_trainer(corpus, model, config, work / f"{layers}x{hidden}-{precision}")
    trainer.model.train()
    seconds = median_time(lambda: trainer._train_step(1e-3), repeats=steps)
    return BATCH * WINDOW / seconds


def time_reference_loop(vocab: int, layers: int, hidden: int, steps: int, ids) -> float:
    """A plain stateful PyTorch loop, fp32: what someone would write by hand."""
    torch.manual_seed(0)
    embed = nn.Embedding(vocab, EMBED)
    lstm = nn.LSTM(EMBED, hidden, layers, batch_first=True)
    head = nn.Linear(hidden, vocab)
    params = [*embed.parameters(), *lstm.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    x = torch.as_tensor(ids[: BATCH * WINDOW].astype("int64")).view(BATCH, WINDOW)
    y = torch.as_tensor(ids[1 : BATCH * WINDOW + 1].astype("int64")).view(BATCH, WINDOW)
    state = [None]

    def step():
        out, s = lstm(embed(x), state[0])
        loss = F.cross_entropy(head(out).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        state[0] = tuple(t.detach() for t in s)

    return BATCH * WINDOW / median_time(step, repeats=steps)


def loss_at_equal_steps(corpus, precision: str, seed: int, steps: int, work: Path) -> float:
    """Final validation loss (whole last 10%) of a 1x256 LSTM after `steps` steps
    (batch 32, window 100, lr 5e-3, warmup 50, cosine to 0.1 x lr)."""
    # fixed settings (not the defaults), so the figures stay comparable across versions
    config = TrainConfig(batch_size=32, seq_len=100, lr=5e-3, warmup_steps=50, min_lr_frac=0.1,
                         max_steps=steps, eval_every=0, precision=precision, rng_seed=seed,
                         device="cpu")  # fmt: skip
    model = ModelConfig(vocab_size=len(corpus.vocab), layers=1, hidden=256, embed=EMBED)
    return run_trainer(corpus, model, config, work / f"eq-{precision}-{seed}").run().final_val_loss


def sampling_speed(vocab, streams: int, length: int) -> float:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=2, hidden=512, embed=EMBED)).eval()
    config = SampleConfig(temperature=0.8)
    if streams == 1:
        run = lambda: "".join(generate(model, vocab, "ROMEO:", length, config, 1))  # noqa: E731
    else:
        run = lambda: sample_batch(model, vocab, "ROMEO:", length, streams, config, 1)  # noqa: E731
    return streams * length / median_time(run, repeats=3, warmup=1)


def time_to_first_char(vocab, work: Path, repeats: int = 3) -> float:
    """Seconds from starting `charrnn sample` to reading its first generated character."""
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=2, hidden=512, embed=EMBED))
    path = work / "sampler.pt"
    save_checkpoint(
        {
            "model_config": model.config.to_dict(),
            "vocab": vocab.to_dict(),
            "model": model.state_dict(),
        },
        path,
    )
    seed = "ROMEO:"
    cmd = [sys.executable, "-m", "charrnn", "sample", "--checkpoint", str(path), "--seed", seed]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*cmd, "--length", "50"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        proc.stdout.read(len(seed.encode()) + 1)  # the seed, then the first new character
        times.append(time.perf_counter() - t0)
        proc.wait()
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--steps", type=int, default=10, help="timed training steps per setting")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--equal-steps", type=int, default=300,
                   help="steps of the fp32-vs-bf16 loss check, 3 seeds each; 0: skip")  # fmt: skip
    p.add_argument("--quality-runs", type=int, default=3)
    p.add_argument("--quality-time", default="3m")
    p.add_argument("--json", type=Path, default=Path("build/bench.json"))
    a = p.parse_args()

    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in cpu_flags()]
    rows, report = [], {"machine": f"{cpu_model()} [{' '.join(flags)}], "
                        f"{os.cpu_count()} cpus, {torch.get_num_threads()} threads",
                        "torch": torch.__version__}  # fmt: skip
    if "bf16" in a.precisions and (problem := cpu_bf16_problem()) is not None:
        a.precisions = [p for p in a.precisions if p != "bf16"]  # it would not run, or crawl
        rows.append(("bf16", "skipped", problem, "", ""))
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {name: matmul_peak(dtypes[name]) for name in a.precisions}
    report["matmul_peak_flops"] = peaks
    for name, peak in peaks.items():
        rows.append(("matmul peak", f"2048x2048 {name}", f"{peak / 1e9:,.0f} GFLOP/s", "", ""))
    with tempfile.TemporaryDirectory(prefix="charrnn-bench-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("CHARRNN_CACHE_DIR", str(work / "cache"))
        corpus = load_corpus(a.corpus)
        vocab = corpus.vocab
        report["train"] = []
        for layers, hidden in GRID:
            console.print(f"training {layers}x{hidden}")
            ref = time_reference_loop(len(vocab), layers, hidden, a.steps, corpus.ids)
            flops = train_flops_per_char(layers, hidden, len(vocab))
            entry = {"layers": layers, "hidden": hidden, "reference_chars_per_s": ref}
            for precision in a.precisions:
                speed = time_charrnn_step(corpus, layers, hidden, precision, work, a.steps)
                share = speed * flops / peaks[precision]
                entry[precision] = {"chars_per_s": speed, "peak_share": share}
                name = f"train {layers}x{hidden}"
                rows.append(
                    (
                        name,
                        precision,
                        f"{speed:,.0f} chars/s",
                        f"{share:.0%}",
                        f"{speed / ref:.2f}x",
                    )
                )
            rows.append(
                (f"train {layers}x{hidden}", "plain PyTorch fp32", f"{ref:,.0f} chars/s", "", "")
            )
            report["train"].append(entry)

        if a.equal_steps:
            report["equal_steps"] = {}
            for precision in a.precisions:
                console.print(f"{a.equal_steps} steps in {precision}, seeds 1-3")
                losses = [loss_at_equal_steps(corpus, precision, seed, a.equal_steps, work)
                          for seed in (1, 2, 3)]  # fmt: skip
                report["equal_steps"][precision] = losses
                shown = ", ".join(f"{v:.4f}" for v in losses)
                rows.append(
                    (f"val loss after {a.equal_steps} steps, 1x256", precision, shown, "", "")
                )

        console.print("sampling")
        one, many = sampling_speed(vocab, 1, 2000), sampling_speed(vocab, 64, 300)
        first = time_to_first_char(vocab, work)
        report["sample"] = {"one_stream": one, "64_streams": many, "first_char_s": first}
        rows.append(("sample 2x512", "1 stream", f"{one:,.0f} chars/s", "", ""))
        rows.append(("sample 2x512", "64 streams", f"{many:,.0f} chars/s", "", ""))
        rows.append(("sample 2x512", "first char, new process", f"{first:.2f} s", "", ""))

    if a.quality_runs > 0:
        out = a.json.with_name("bench-quality.json")
        cmd = [sys.executable, str(Path(__file__).with_name("quality.py")), "--corpus",
               str(a.corpus), "--time", a.quality_time, "--runs", str(a.quality_runs),
               "--json", str(out)]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        quality = json.loads(out.read_text())
        report["quality"] = quality
        m = quality["median"]
        loss = f"{m['final_val_loss']:.4f} nats/char"
        setting = f"median of {a.quality_runs}, {m['train_chars_per_s']:,.0f} chars/s"
        rows.append((f"quality --time {a.quality_time}", setting, loss, "", ""))

    table = Table(title=f"charrnn speed ({report['machine']}, torch {torch.__version__})")
    for col in ("benchmark", "setting", "result", "share of matmul peak", "vs plain PyTorch"):
        table.add_column(col, justify="left" if col in ("benchmark", "setting") else "right")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
