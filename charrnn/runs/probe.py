"""The planner's probe: how fast this machine trains a candidate shape, measured.

A measurement builds the model, runs a few training steps (forward, backward, clipping,
AdamW) on random ids, and times them: tokens per second, as a run would see them. The
first steps are warm-up (oneDNN builds its bf16 primitives, CUDA its kernels) and are
not timed. What does not fit in memory, or does not run at this precision, measures as
None. The probe never shifts a run's random numbers: the RNG state is put back.

charrnn.runs.sizing decides what to measure; tests replace `measure` with made-up speeds.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import torch

from charrnn import __version__
from charrnn.files import atomic_write
from charrnn.inference import detach_state
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.runs.sizing import Candidate, Machine
from charrnn.runtime import autocast, bf16_native, cpu_flags, cpu_model
from charrnn.train.config import TrainConfig
from charrnn.train.optim import make_optimizer

WARMUP_STEPS = 1  # the first step builds the kernels (oneDNN bf16 primitives, CUDA)
MIN_TIMED_STEPS = 2
SPEED_FILE = "speeds.json"
PROBING = "probing"  # the progress phase
STALE = 1.5  # a first measurement this much faster than the cache: the cache was busy
MEASUREMENTS = 10  # about how many shapes a plan measures; each gets its share of time


def measure(candidate: Candidate, vocab_size: int, device: torch.device, seconds: float):
    """Training tokens per second of `candidate` over about `seconds` (warm-up apart),
    or None where it cannot run here (out of memory, a kernel this device lacks)."""
    state = torch.get_rng_state()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            return _timed_steps(candidate, vocab_size, device, seconds)
    except (torch.OutOfMemoryError, RuntimeError):
        return None
    finally:
        torch.set_rng_state(state)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _timed_steps(c: Candidate, vocab_size: int, device: torch.device, seconds: float) -> float:
    config = ModelConfig(vocab_size, c.cell, c.layers, c.hidden, c.embed)
    model = CharRNN(config).to(device)
    optimizer, _ = make_optimizer(model, TrainConfig(batch_size=c.batch_size, seq_len=c.seq_len))
    x = torch.randint(0, vocab_size, (c.batch_size, c.seq_len), device=device)  # (B, T)
    y = torch.randint(0, vocab_size, (c.batch_size, c.seq_len), device=device)  # (B, T)
    carried = None

    def step():
        nonlocal carried
        with autocast(device, c.precision):
            _, carried, loss = model(x, carried, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        carried = detach_state(carried)

    for _ in range(WARMUP_STEPS):
        step()
    sync(device)
    steps, start = 0, time.perf_counter()
    while steps < MIN_TIMED_STEPS or time.perf_counter() - start < seconds:
        step()
        steps += 1
        if steps % 4 == 0:
            sync(device)
    sync(device)
    elapsed = time.perf_counter() - start
    rate = steps * c.batch_size * c.seq_len / elapsed
    return rate if math.isfinite(rate) else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        with contextlib.suppress(AttributeError):
            torch.mps.synchronize()


class Probe:
    """Measures candidates within a time allowance, and keeps count of the time spent.

    Speeds measured before on this machine (same CPU or GPU, threads, PyTorch and charrnn)
    are kept in the cache, and a later plan uses them as they are: the same machine plans
    from the same figures, so it makes the same choices, and spends its time only on
    shapes it has not measured. The first measurement of each plan is taken anyway, as a
    check: if it comes out STALE times faster than the cache says, the cache was filled
    while other programs kept the cores busy, and it is measured afresh."""

    def __init__(
        self, vocab_size: int, device: torch.device, allowance: float, cache=None, progress=None
    ):
        self.vocab_size = vocab_size
        self.device = device
        self.allowance = allowance  # seconds in all
        self.each = min(1.0, max(0.1, allowance / MEASUREMENTS))  # timed seconds per shape
        self.spent = 0.0
        self.count = 0
        self.cache = cache
        self.progress = progress  # progress("probing", ms spent, ms allowed), as the corpus

    def key(self, candidate: Candidate) -> str:
        c = candidate
        return f"{c.describe()} embed {c.embed} window {c.seq_len} vocab {self.vocab_size}"

    def known(self, candidate: Candidate) -> float | None:
        """The cached speed, measured by an earlier run, or None."""
        return None if self.cache is None else self.cache.speeds.get(self.key(candidate))

    def measure(self, candidate: Candidate) -> float | None:
        key, cached = self.key(candidate), self.cache is not None
        if cached and self.count > 0 and key in self.cache.speeds:
            return self.cache.speeds[key]
        speed = self._measure(candidate)
        if not cached:
            return speed
        before = self.cache.speeds.get(key)
        if before is not None and speed is not None and speed < STALE * before:
            return before  # the first check agrees with the cache, within noise or busier
        if before is not None:
            self.cache.speeds.clear()  # filled on a busy machine: measure afresh
        self.cache.speeds[key] = speed
        return speed

    def _measure(self, candidate: Candidate) -> float | None:
        start = time.perf_counter()
        try:
            return measure(candidate, self.vocab_size, self.device, self.each)
        finally:
            self.spent += time.perf_counter() - start
            self.count += 1
            if self.progress is not None:
                total = max(self.allowance, self.spent)
                self.progress(PROBING, round(self.spent * 1e3), round(total * 1e3))

    def has_time(self) -> bool:
        """Room for one more measurement as long as the ones so far took."""
        typical = self.spent / self.count if self.count else self.each
        return self.spent + typical <= self.allowance


class SpeedCache:
    """Measured speeds by machine, kept in one JSON file in charrnn's cache folder."""

    def __init__(self, path: Path, machine: str):
        self.path, self.machine = Path(path), machine
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = {}
        self.all = stored if isinstance(stored, dict) else {}
        speeds = self.all.get(machine)
        self.speeds: dict[str, float | None] = speeds if isinstance(speeds, dict) else {}

    def save(self) -> None:
        """Write the file; a cache that cannot be written is only a cache."""
        self.all[self.machine] = self.speeds
        text = json.dumps(self.all, indent=1, sort_keys=True).encode("utf-8")
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, lambda f: f.write(text))


# the CPU features that decide a matmul's speed: virtual machines often name every Xeon
# "Intel(R) Xeon(R) Processor", with AMX or without, and a shared home folder's cache
# must not hand one node's bf16 speeds to another
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def machine_fingerprint(device: torch.device) -> str:
    """What a speed depends on besides the shape: the chip, threads, PyTorch, charrnn."""
    if device.type == "cuda":
        chip = torch.cuda.get_device_name(device)
    else:
        flags = " ".join(f for f in SPEED_FLAGS if f in cpu_flags()) or "no avx2"
        chip = f"{cpu_model()} [{flags}] {torch.get_num_threads()} threads"
    return f"{device.type} {chip}, torch {torch.__version__}, charrnn {__version__}"


def probe_machine(
    device: torch.device, vocab_size: int, allowance: float, cache_dir=None, progress=None
):
    """(the Machine the planner asks, the Probe that measures it) for this device."""
    cache = None
    if cache_dir is not None:
        cache = SpeedCache(Path(cache_dir) / SPEED_FILE, machine_fingerprint(device))
    probe = Probe(vocab_size, device, allowance, cache, progress)
    machine = Machine(
        device.type, runnable_precisions(device), probe.measure, probe.has_time, probe.known
    )
    return machine, probe


def runnable_precisions(device: torch.device) -> tuple[str, ...]:
    """fp32, and bf16 where it runs natively: an emulated bf16 matmul is hundreds of
    times slower, far too slow even to measure."""
    return ("fp32", "bf16") if bf16_native(device) else ("fp32",)
