"""The machine a model runs on: which device, which precision it can run, how many threads.

Everything here is probed at run time, never assumed from what a run recorded:
a run trained on a GPU box resumes on a laptop, and a checkpoint made with bf16
samples on a CPU that has no bf16 at all. Probes run once per process and are
cached; tests monkeypatch them (`cpu_has_amx`, `cpu_bf16_problem`,
`cuda_bf16_native`) to check the branch the machine at hand does not take.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import asdict, dataclass

import torch

from charrnn.errors import CharrnnError
from charrnn.options import DEVICE_NAME, PRECISIONS

# ------------------------------------------------------------------ device


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """auto picks CUDA, then Apple's MPS, then the CPU. cuda:N names one GPU of several
    (torchrun gives each process its own). An unavailable choice is an error."""
    name = str(name)
    if not DEVICE_NAME.match(name):
        raise CharrnnError(f"--device must be auto, cpu, cuda, cuda:N or mps, not {name!r}")
    cuda = torch.cuda.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps_available() else "cpu")
    if name.startswith("cuda"):
        if not cuda:
            raise CharrnnError(f"--device {name}: no CUDA GPU is available on this machine")
        device = torch.device(name)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise CharrnnError(
                f"--device {name}: this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                f"(cuda:0 to cuda:{count - 1})"
            )
        return device
    if name == "mps" and not mps_available():
        raise CharrnnError("--device mps: Apple's MPS backend is not available on this machine")
    return torch.device(name)


def has_float64(device: torch.device) -> bool:
    """Apple's MPS has no float64 at all: making a float64 tensor there is an error."""
    return device.type != "mps"


def wide_float(device: torch.device) -> torch.dtype:
    """The dtype for sums that should not lose precision: float64 where the device has it."""
    return torch.float64 if has_float64(device) else torch.float32


def device_label(device: torch.device) -> str:
    """The device as a run records it: plain "cuda" means the current GPU, so name it."""
    if device.type == "cuda" and device.index is None:
        return f"cuda:{torch.cuda.current_device()}"
    return str(device)


# ------------------------------------------------------------------ precision


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (Linux); empty elsewhere."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's marketing name, for messages ("AMD EPYC", "Intel Xeon Platinum 8480+")."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine() or "CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux names them (avx2, avx512_bf16, amx_bf16...)."""
    return set(_cpuinfo().get("flags", "").split())


@functools.cache
def cpu_has_amx() -> bool:
    """AMX tiles (Sapphire Rapids and later): where CPU bf16 matmuls beat fp32.

    AVX512-BF16 alone is not enough: on such a CPU bf16 autocast measured slower
    than fp32 for these LSTMs (see docs/benchmarks.md).
    """
    query = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if query is not None:
        with contextlib.suppress(Exception):
            return bool(query())
    return "amx_bf16" in cpu_flags()


@functools.cache
def cpu_bf16_problem() -> str | None:
    """Why bf16 autocast cannot train on this CPU, or None where it can.

    Two checks, both needed. PyTorch's own query says whether oneDNN has native
    bf16 kernels here (AVX-512 or AMX); without them a bf16 matmul is emulated,
    600 times slower than fp32 on an AVX2-only EPYC. And a tiny LSTM, GRU and RNN
    run forward and backward under autocast, since on such a CPU the bf16 LSTM
    does not run at all ("could not create a primitive descriptor").
    """
    lacks = f"this CPU ({cpu_model()}) has no native bfloat16 support in PyTorch"
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    query = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    if query is not None:
        with contextlib.suppress(Exception):
            if not query():
                return f"{lacks} (it needs AVX-512 or AMX)" if x86 else lacks
    try:
        _bf16_smoke_test()
    except Exception as e:  # whatever the kernel raises, the answer is "not here"
        text = str(e).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(e).__name__
        return f"{lacks} (a bf16 recurrent layer fails: {first})"
    return None


def _bf16_smoke_test() -> None:
    """A step of each recurrent cell under CPU bf16 autocast; raises where one fails."""
    state = torch.get_rng_state()  # the probe must not shift a run's random numbers
    try:
        # gradients on, whatever context the first caller is in: a cached "no" would stick
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.randn(2, 3, 4)
            for cell in (torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN):
                layer = cell(4, 8, batch_first=True)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out, _ = layer(x)
                loss = out.float().sum()
                loss.backward()
                if not torch.isfinite(loss):
                    raise RuntimeError(f"{cell.__name__} gives a non-finite result")
    finally:
        torch.set_rng_state(state)


def cuda_bf16_native(device: torch.device) -> bool:
    """Ampere (compute capability 8.0) and later have bf16 tensor cores. Older GPUs (T4,
    V100) run bf16 by emulation, which `torch.cuda.is_bf16_supported()` counts by default."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def resolve_precision(name: str, device: torch.device) -> str:
    """fp32 or bf16 (autocast) for `device`.

    auto: bf16 on CUDA GPUs with native bf16 and on CPUs with AMX and working bf16
    kernels; fp32 elsewhere. An explicit bf16 where it cannot run is an error that
    names what the machine lacks.
    """
    if name not in PRECISIONS:
        raise CharrnnError(f"--precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if device.type == "cuda":
        if name == "auto":
            return "bf16" if cuda_bf16_native(device) else "fp32"
        return name  # emulated bf16 runs, if slowly: an explicit choice is honoured
    if device.type == "cpu":
        if name == "auto":
            return "bf16" if cpu_has_amx() and cpu_bf16_problem() is None else "fp32"
        if name == "bf16" and (problem := cpu_bf16_problem()) is not None:
            raise CharrnnError(f"--precision bf16: {problem}; use --precision fp32 or auto")
        return name
    if name == "bf16":
        raise CharrnnError(f"--precision bf16 needs a CPU or CUDA device, not {device.type}")
    return "fp32"


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 trains natively on `device` (no emulation): probed, never assumed."""
    if device.type == "cuda":
        return cuda_bf16_native(device)
    return device.type == "cpu" and cpu_bf16_problem() is None


def autocast(device: torch.device, precision: str):
    """A context in which matmuls and recurrent layers run in bf16 (weights stay fp32)."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


# ------------------------------------------------------------------ threads


# torch's own default, the physical cores, read before anything here changes it: a
# run that asked for 1 thread must not make the next run's default 1 as well
TORCH_DEFAULT_THREADS = torch.get_num_threads()


def set_threads(threads: int | None) -> int:
    """Use `threads` CPU threads, or by default the cores this process may run on
    (torch's default, the physical cores, capped by the CPU affinity mask)."""
    if threads is None:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        threads = min(TORCH_DEFAULT_THREADS, available or TORCH_DEFAULT_THREADS)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


# ------------------------------------------------------------------ what a run ran on


@dataclass(frozen=True)
class Machine:
    """What a run resolved its machine options to; recorded in checkpoints."""

    device: str
    precision: str
    threads: int
    processes: int = 1  # ranks of a torchrun job; a resume may take any number

    def to_dict(self) -> dict:
        return asdict(self)

    def changes_from(self, recorded: dict | None) -> list[str]:
        """`precision bf16 -> fp32` for each setting that differs from a recorded run's."""
        if not recorded:
            return []
        return [
            f"{key} {recorded[key]} -> {value}"
            for key, value in self.to_dict().items()
            if recorded.get(key) is not None and recorded[key] != value
        ]
