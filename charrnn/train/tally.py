"""What the steps add up to: the training loss and speed of a log interval (IntervalMeter),
and the device-side tally of losses and non-finite skips (StepTally)."""

from __future__ import annotations

import time

import torch

from charrnn.runtime import wide_float


class IntervalMeter:
    """Mean training loss (of the steps not skipped) and chars/s over a log interval."""

    def __init__(self):
        self.loss_sum = 0.0
        self.steps = 0
        self.chars = 0
        self.since = time.perf_counter()
        self.loss: float | None = None  # None until the first read
        self.chars_per_s = 0.0

    def add(self, loss_sum: float, steps: int) -> None:
        """Losses of `steps` steps that were not skipped, summed."""
        self.loss_sum += loss_sum
        self.steps += steps

    def read(self) -> None:
        now = time.perf_counter()
        self.loss = self.loss_sum / self.steps if self.steps else None
        self.chars_per_s = self.chars / max(now - self.since, 1e-9)
        self.loss_sum = 0.0
        self.steps = self.chars = 0
        self.since = now

    def restart_clock(self) -> None:
        self.chars = 0
        self.since = time.perf_counter()


class StepTally:
    """What each step's outcome adds up to, kept on the device: the summed loss of
    the steps that counted, the skipped steps and the current run of skips.

    Nothing here makes the host wait for the device. `read` fetches it all in one
    transfer, which the Trainer does each step on a CPU (where it costs nothing)
    and once per log interval on a GPU (where each read would stall the queue).
    """

    def __init__(self, device: torch.device, skipped: int = 0):
        self.wide = wide_float(device)  # float64, but float32 on MPS, which has no float64
        self.loss_sum = torch.zeros((), dtype=self.wide, device=device)
        self.counted = torch.zeros((), dtype=torch.long, device=device)
        self.skipped = torch.tensor(skipped, dtype=torch.long, device=device)
        self.streak = torch.zeros((), dtype=torch.long, device=device)  # skips in a row now
        self.longest = torch.zeros_like(self.streak)  # the longest run since the last read

    def add(self, loss: torch.Tensor, bad: torch.Tensor) -> None:
        """loss () and bad () bool: whether the step was skipped as non-finite."""
        self.loss_sum += torch.where(bad, 0.0, loss.detach().float()).to(self.wide)
        self.counted += ~bad
        self.skipped += bad
        self.streak.mul_(bad).add_(bad)  # (streak + 1) after a skip, 0 after a good step
        torch.maximum(self.longest, self.streak, out=self.longest)

    def read(self) -> tuple[float, int, int, int]:
        """(loss sum, steps counted, longest run of skips) since the last read, and the
        skipped steps in all."""
        longest = torch.maximum(self.longest, self.streak)  # a run still going counts too
        parts = [self.loss_sum, self.counted, longest, self.skipped]
        loss_sum, counted, longest, skipped = torch.stack([t.to(self.wide) for t in parts]).tolist()
        self.loss_sum.zero_()
        self.counted.zero_()
        self.longest.zero_()
        return loss_sum, int(counted), int(longest), int(skipped)


# every metrics record has all of these keys; those that do not apply are null
METRIC_KEYS = (
    "event",  # "train" (a log interval), "eval", or "threads" (the count changed)
    "step",
    "epoch",
    "chars_seen",
    "train_loss",  # nats/char, mean over the log interval
    "val_loss",  # nats/char over the whole validation split
    "val_bpc",  # bits/char
    "lr",
    "chars_per_s",
    "elapsed",  # seconds of wall clock since the run began, across resumes
    "skipped",  # non-finite steps skipped so far
    "threads",  # the CPU threads training runs on from here (a "threads" record)
)


def metric_record(event: str, **values) -> dict:
    unknown = set(values) - set(METRIC_KEYS)
    if unknown:
        raise ValueError(f"unknown metric keys {sorted(unknown)}")
    record = dict.fromkeys(METRIC_KEYS)
    record.update(event=event, **values)
    return record
