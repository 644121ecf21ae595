"""Serving: 1, 4, 16 and 64 concurrent streaming clients against `charrnn serve` on loopback.

For each number of clients, every client sends streaming completions one after
another for a fixed time, --repeats times. Reported: the median aggregate characters/s
all clients received, p50 and p99 time to the first character (over every request),
requests answered and refused, and the server's RSS after the runs. Before each run,
with the server idle, the offline rate of `charrnn sample --num-samples 64`
(sample_batch: 64 streams as one batch, in this process) is taken, and each run is
compared with its own: "of offline" is the median of those ratios. The offline rate
of one stream (generate) is the last row. The model is the default 1x512 LSTM over
the corpus's characters, with random weights: speed does not depend on what they are.

    python benchmarks/serve.py --corpus ../shared/corpora/tinyshakespeare.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from charrnn.checkpoint import save_checkpoint
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.runtime import cpu_flags, cpu_model
from charrnn.sample.config import SampleConfig
from charrnn.sample.generate import generate, sample_batch
from charrnn.text.tokenizers import CharVocab

console = Console(stderr=True)
SEED = "ROMEO:"


def make_checkpoint(corpus: Path, work: Path) -> Path:
    text = corpus.read_text(encoding="utf-8")
    vocab = CharVocab.from_text(text)
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(vocab)))
    path = work / "bench" / "best.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint({"model_config": model.config.to_dict(), "vocab": vocab.to_dict(),
                     "model": model.state_dict()}, path)  # fmt: skip
    return path


class Offline:
    """`charrnn sample` in this process: one stream (generate) or 64 (sample_batch)."""

    def __init__(self, path: Path, length: int, device: str):
        from charrnn.checkpoint import open_model

        self.model, self.vocab, _ = open_model(path, device)
        self.length, self.config = length, SampleConfig(temperature=0.8)

    def one_stream(self) -> float:
        t0 = time.perf_counter()
        "".join(generate(self.model, self.vocab, SEED, self.length, self.config, rng_seed=1))
        return self.length / (time.perf_counter() - t0)

    def batch_64(self) -> float:
        t0 = time.perf_counter()
        sample_batch(self.model, self.vocab, SEED, self.length, 64, self.config, rng_seed=1)
        return 64 * self.length / (time.perf_counter() - t0)


async def client(url: str, deadline: float, max_tokens: int, stats: dict) -> None:
    """One client: streaming completions one after another until the deadline.

    A bare HTTP/1.1 client on asyncio streams: on a small machine the load generator
    shares the CPU with the server, and an HTTP library's per-chunk cost would be
    measured as the server's.
    """
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    body = json.dumps({"model": "bench", "prompt": SEED, "max_tokens": max_tokens,
                       "temperature": 0.8, "stream": True}).encode()  # fmt: skip
    request = (f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body  # fmt: skip
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        while time.monotonic() < deadline:
            sent, first = time.monotonic(), None
            writer.write(request)
            status = int((await reader.readline()).split()[1])
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            if status != 200:  # a 429, whose body has a length
                stats["refused"] += 1
                await reader.readexactly(int(headers["content-length"]))
                await asyncio.sleep(0.05)
                continue
            async for event in sse_events(reader):
                now = time.monotonic()
                if now >= deadline:
                    return  # closing the connection leaves the batch
                text = event["choices"][0]["text"]
                if text and first is None:
                    first = now
                    stats["ttfc"].append(first - sent)
                stats["chars"] += len(text)
            stats["answered"] += 1
    finally:
        writer.close()


async def read_chunks(reader):
    """The body of a chunked response, chunk by chunk, to its end."""
    while True:
        size = int((await reader.readline()).strip(), 16)
        data = await reader.readexactly(size + 2)
        if size == 0:
            return
        yield data[:-2]


async def sse_events(reader):
    """The JSON `data:` events of a streamed completion, until `data: [DONE]`."""
    buffer = b""
    async for chunk in read_chunks(reader):
        buffer += chunk
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            if event == b"data: [DONE]":
                continue
            yield json.loads(event[6:])


async def level(url: str, clients: int, seconds: float, max_tokens: int) -> dict:
    stats = {"chars": 0, "ttfc": [], "answered": 0, "refused": 0}
    start = time.monotonic()
    deadline = start + seconds
    await asyncio.gather(*(client(url, deadline, max_tokens, stats) for _ in range(clients)))
    return {**stats, "seconds": time.monotonic() - start}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(path: Path, device: str) -> tuple[subprocess.Popen, str]:
    cmd = [
        sys.executable,
        "-m",
        "charrnn",
        "serve",
        str(path),
        "--port",
        "0",
        "--device",
        device,
        "--max-streams",
        "64",
        "--max-queue",
        "64",
        "--max-tokens",
        "100000",
    ]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if m := re.search(r"serving at (http://\S+)/", line):
            return proc, m.group(1)
    raise SystemExit("charrnn serve did not start")


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--seconds", type=float, default=15.0, help="per number of clients")
    p.add_argument("--max-tokens", type=int, default=2000, help="characters per request")
    p.add_argument("--offline-length", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="where the model runs, offline and served")
    p.add_argument("--json", type=Path, default=Path("build/bench-serve.json"))
    a = p.parse_args()
    if not a.corpus.is_file():
        raise SystemExit(f"error: corpus {a.corpus} not found (set CORPUS=...)")

    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in cpu_flags()]
    machine = f"{cpu_model()} [{' '.join(flags)}], {os.cpu_count()} cpus"
    if a.device.startswith("cuda"):
        machine = f"{torch.cuda.get_device_name()}; {machine}"
    report = {"machine": machine, "device": a.device,
              "torch": torch.__version__, "levels": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="charrnn-bench-serve-") as tmp:
        path = make_checkpoint(a.corpus, Path(tmp))
        offline = Offline(path, a.offline_length, a.device)
        console.print("offline: generate, one stream")
        report["offline_one_stream"] = [offline.one_stream() for _ in range(a.repeats)]
        proc, base = start_server(path, a.device)
        try:
            url = base + "/v1/completions"
            asyncio.run(level(url, 4, 2.0, a.max_tokens))  # warm up
            for clients in a.clients:
                console.print(f"{clients} streaming client(s), {a.repeats} x {a.seconds:g} s")
                runs, paired = [], []
                for _ in range(a.repeats):
                    # the offline batch just before each run, with the server idle: this
                    # machine's speed drifts by tens of percent within minutes
                    paired.append(offline.batch_64())
                    runs.append(asyncio.run(level(url, clients, a.seconds, a.max_tokens)))
                report["levels"].append({
                    "clients": clients,
                    "chars_per_s_runs": [r["chars"] / r["seconds"] for r in runs],
                    "offline_batch_64_runs": paired,
                    "ttfc": [t for r in runs for t in r["ttfc"]],
                    "answered": sum(r["answered"] for r in runs),
                    "refused": sum(r["refused"] for r in runs),
                    "rss_mib": rss_mib(proc.pid),
                })  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    base_rate = None
    table = Table(title=f"charrnn serve on loopback; {report['machine']}")
    for col in ("clients", "chars/s", "× 1 client", "offline 64", "of offline", "TTFC p50",
                "TTFC p99", "answered", "429", "RSS MiB"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in report["levels"]:
        rate = statistics.median(r["chars_per_s_runs"])
        pairs = zip(r["chars_per_s_runs"], r["offline_batch_64_runs"], strict=True)
        r["share_of_offline"] = statistics.median(served / alone for served, alone in pairs)
        r["chars_per_s"], r["offline_batch_64"] = (
            rate,
            statistics.median(r["offline_batch_64_runs"]),
        )
        base_rate = base_rate or rate
        ttfc = r.pop("ttfc") or [float("nan")]
        r["ttfc_p50_ms"], r["ttfc_p99_ms"] = 1000 * pct(ttfc, 50), 1000 * pct(ttfc, 99)
        table.add_row(str(r["clients"]), f"{rate:,.0f}", f"{rate / base_rate:.1f}×",
                      f"{r['offline_batch_64']:,.0f}", f"{r['share_of_offline']:.0%}",
                      f"{r['ttfc_p50_ms']:.0f} ms", f"{r['ttfc_p99_ms']:.0f} ms",
                      str(r["answered"]), str(r["refused"]), f"{r['rss_mib']:.0f}")  # fmt: skip
    one = statistics.median(report["offline_one_stream"])
    table.add_row("offline 1", f"{one:,.0f}", *[""] * 8)
    Console().print(table)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
