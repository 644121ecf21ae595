"""The browser runtime against PyTorch, on one machine in one run: size, quality, speed.

For each --dtype it exports the checkpoint, and prints the folder's size, the runtime's
size and the validation loss of the stored weights next to fp32's. Then it times
single-stream greedy generation: PyTorch's `generate` and the exported page's
`charrnnModel.generate` in headless Chromium (Debian's), alternating, and prints the
medians and their ratio with the CPU named.

    python benchmarks/web.py --checkpoint checkpoints/RUN --length 2000 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright
from rich.console import Console
from rich.table import Table

import charrnn
from charrnn.checkpoint import newest_checkpoint, open_model
from charrnn.export.config import DTYPES
from charrnn.export.folder import export_model
from charrnn.runtime import cpu_flags, cpu_model
from charrnn.web import RUNTIME

console = Console()
CHROMIUM = "/usr/bin/chromium"
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def torch_rate(model: charrnn.Model, seed: str, length: int) -> float:
    start = time.perf_counter()
    text = "".join(model.generate(seed, length=length, temperature=0))
    return len(text) / (time.perf_counter() - start)


def js_rate(page, seed: str, length: int) -> float:
    return page.evaluate(
        """async ([seed, length]) => {
            const start = performance.now();
            const text = await charrnnModel.generate(seed, {length, temperature: 0});
            return Array.from(text).length / ((performance.now() - start) / 1000);
        }""",
        [seed, length],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", default="\n")
    parser.add_argument("--worker", choices=("on", "off"), default="on")
    args = parser.parse_args()
    path = args.checkpoint or newest_checkpoint("checkpoints")
    model = charrnn.load(path, device="cpu")
    c = model.config
    console.print(
        f"[bold]{path}[/]: {c.cell} {c.layers}x{c.hidden}, embed {c.embed}, "
        f"{len(model.vocab)} symbols ({model.vocab.kind})"
    )
    console.print(f"CPU: {cpu_model()}; flags: {' '.join(f for f in FLAGS if f in cpu_flags())}")
    with tempfile.TemporaryDirectory() as tmp:
        sizes = Table(
            "dtype",
            "folder",
            "model.js",
            "runtime.js",
            "val loss",
            "vs fp32",
            title="size and quality",
            box=None,
        )
        for dtype in DTYPES:
            net, vocab, ckpt = open_model(path, "cpu")
            report = export_model(net, vocab, ckpt, Path(tmp) / dtype, dtype)
            loss = report.losses.get(dtype)
            delta = "" if loss is None else f"{loss - report.losses['fp32']:+.4f}"
            sizes.add_row(
                dtype,
                f"{report.total / 1e6:.3f} MB",
                f"{report.sizes['model.js'] / 1e6:.3f} MB",
                f"{report.sizes[RUNTIME] / 1e3:.1f} KB",
                "-" if loss is None else f"{loss:.4f}",
                delta,
            )
        console.print(sizes)
        if report.eval_source:
            console.print(f"loss on {report.eval_source}, first {report.eval_tokens:,} tokens")
        speeds = {"PyTorch": [], "browser": []}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto((Path(tmp) / "fp32" / "index.html").as_uri())
            page.wait_for_function("window.charrnnModel", timeout=60000)
            if args.worker == "off":
                page.evaluate(
                    "async () => { window.charrnnModel = await charrnn.openExport("
                    "self.charrnnExport, {worker: false}); }"
                )
            runs_in = page.evaluate("charrnnModel.info.runsIn")
            torch_rate(model, args.seed, 50), js_rate(page, args.seed, 50)  # warm up
            for _ in range(args.runs):
                speeds["PyTorch"].append(torch_rate(model, args.seed, args.length))
                speeds["browser"].append(js_rate(page, args.seed, args.length))
            browser.close()
    title = f"greedy, single stream, {args.length} chars"
    table = Table("runtime", "chars/s (median)", "runs", title=title, box=None)
    medians = {k: statistics.median(v) for k, v in speeds.items()}
    for name, values in speeds.items():
        label = name if name == "PyTorch" else f"browser ({runs_in})"
        table.add_row(label, f"{medians[name]:,.0f}", " ".join(f"{v:,.0f}" for v in values))
    console.print(table)
    console.print(
        f"[bold]browser / PyTorch = {medians['browser'] / medians['PyTorch']:.2f}[/] (goal 0.25)"
    )


if __name__ == "__main__":
    main()
