"""Data-parallel training under torchrun: where this process stands in the job, and the
few collectives training needs. Each is a no-op in a plain single process (`Job.solo`).

torchrun starts one process per rank and tells it RANK, WORLD_SIZE, LOCAL_RANK and
LOCAL_WORLD_SIZE through its environment; charrnn launches, rendezvouses and watches
nothing itself. The backend is nccl for CUDA (each process on cuda:LOCAL_RANK) and
gloo on the CPU. Decisions that end or skip a step must come out the same on every
rank, or one rank waits in a collective the others never reach: they go through
`any` and `max`, MAX all-reduces on a CPU-side gloo group, so a GPU run never waits
on its queue to decide.
"""

from __future__ import annotations

import datetime as dt
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from charrnn.errors import CharrnnError, EveryRankError
from charrnn.inference import map_state
from charrnn.runtime import resolve_device

CORPUS_WAIT = dt.timedelta(hours=24)  # others wait this long for rank 0 to encode a corpus


@dataclass(frozen=True)
class Place:
    """Where this process stands in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def nodes(self) -> int:
        return max(1, self.world // max(1, self.local_world))


def torchrun_place() -> Place | None:
    """This process's place when torchrun (or anything that sets its variables) started
    it; None for a plain process."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        return Place(
            rank=int(env["RANK"]),
            world=world,
            local_rank=int(env.get("LOCAL_RANK", env["RANK"])),
            local_world=int(env.get("LOCAL_WORLD_SIZE", world)),
        )
    except ValueError:
        raise CharrnnError(
            "RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be whole numbers"
        ) from None


def job_device(option: str, place: Place) -> torch.device:
    """The device this rank trains on: cuda:LOCAL_RANK when CUDA is chosen."""
    device = resolve_device(option)
    if device.type == "mps":  # gloo cannot carry MPS tensors, nor DDP sync them
        raise CharrnnError("under torchrun, train on CUDA or the CPU (--device cpu), not MPS")
    if device.type != "cuda":
        return device
    if device.index is not None and place.local_world > 1:
        raise CharrnnError(
            f"--device {option}: under torchrun each process takes cuda:LOCAL_RANK; "
            "give --device cuda (or auto)"
        )
    count = torch.cuda.device_count()
    if device.index is None and place.local_rank >= count:
        raise CharrnnError(
            f"--nproc-per-node {place.local_world} is more than the {count} CUDA GPUs here"
        )
    return torch.device("cuda", device.index if device.index is not None else place.local_rank)


class Job:
    """This process's part in a training job. The solo job has no process group, and
    its collectives hand back what they are given."""

    def __init__(self, place: Place, device: torch.device | None, control=None):
        self.place = place
        self.device = device  # None: the trainer resolves --device itself
        self.control = control  # a gloo group for host-side decisions; None when solo
        self.active = control is not None

    @classmethod
    def solo(cls) -> Job:
        return cls(Place(), None)

    @property
    def rank(self) -> int:
        return self.place.rank

    @property
    def world(self) -> int:
        return self.place.world

    @property
    def backend(self) -> str | None:
        return torch.distributed.get_backend() if self.active else None

    @property
    def is_main(self) -> bool:
        return self.place.rank == 0

    # ------------------------------------------------------------ streams

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise EveryRankError(
                f"--batch-size {batch_size} does not divide among {self.world} processes; "
                f"use a multiple of {self.world}"
            )

    def rows(self, batch_size: int) -> slice:
        """This rank's contiguous range of the global batch's streams."""
        self.check_batch(batch_size)
        per = batch_size // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model under DDP when this process is one rank of several, else itself.

        The carried state goes in and out of forward as an argument, never a buffer
        (CharRNN has none), so DDP has nothing of it to broadcast or sync."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        cuda = self.device is not None and self.device.type == "cuda"
        ids = [self.device.index] if cuda else None
        return DistributedDataParallel(model, device_ids=ids)

    # ------------------------------------------------------------ collectives

    def any(self, *flags: bool) -> list[bool]:
        """Each flag, true on every rank if it is true on any."""
        return [v > 0 for v in self.max(*(float(bool(f)) for f in flags))]

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks, in float64."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t, group=self.control)
        return t.tolist()

    def max(self, *values: float) -> list[float]:
        """Each value's largest over the ranks."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.control)
        return t.tolist()

    def mean(self, value: float) -> float:
        return self.sum(value)[0] / self.world if self.active else value

    def any_on_device(self, flag: torch.Tensor) -> torch.Tensor:
        """A () bool tensor on the device, true everywhere if true on any rank; on a GPU
        it joins the device's queue, so the host does not wait for it."""
        if not self.active:
            return flag
        t = flag.to(torch.uint8)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return t.bool()

    def share(self, obj):
        """Rank 0's `obj`, on every rank."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def gather_rows(self, state):
        """The carried state of every rank's streams, in global stream order: each
        (layers, B/world, H) part joined along the stream dimension, on every rank."""
        if not self.active:
            return state

        def gather(part: torch.Tensor) -> torch.Tensor:
            parts = [torch.empty_like(part) for _ in range(self.world)]
            torch.distributed.all_gather(parts, part.contiguous())
            return torch.cat(parts, dim=1)

        return map_state(gather, state)

    def gather_objects(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj, group=self.control)
        return out

    def wait_for_all(self, timeout: dt.timedelta | None = None) -> None:
        if self.active:
            torch.distributed.monitored_barrier(group=self.control, timeout=timeout)

    def in_turn(self, work):
        """`work()` on rank 0 first, then on the first rank of every other machine, then
        on the rest: rank 0 writes a cache entry the others then read, and a machine
        that does not share rank 0's disk writes its own, once."""
        if not self.active:
            return work()
        result = work() if self.is_main else None
        self.wait_for_all(CORPUS_WAIT)
        if self.place.local_rank == 0 and not self.is_main:
            result = work()
        self.wait_for_all(CORPUS_WAIT)
        if self.place.local_rank != 0:
            result = work()
        return result

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.active = False


def start_job(device_option: str, timeout: float) -> Job:
    """Join torchrun's job (a solo job when torchrun did not start this process): nccl
    on CUDA, gloo on the CPU, with `timeout` seconds for a collective to complete."""
    place = torchrun_place()
    if place is None:
        return Job.solo()
    device = job_device(device_option, place)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    wait = dt.timedelta(seconds=timeout)
    try:
        torch.distributed.init_process_group(backend, timeout=wait)
        control = torch.distributed.new_group(backend="gloo", timeout=wait)
    except (RuntimeError, ValueError) as e:  # RANK set by hand, a peer unreachable
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CharrnnError(
            f"could not join the job torchrun's variables (RANK, WORLD_SIZE) describe: {first}"
        ) from None
    return Job(place, device, control)


@contextmanager
def joined(device: str, timeout: float):
    """The job for the length of the block; the process group is left when it ends."""
    job = start_job(device, timeout)
    try:
        yield job
    finally:
        job.close()
