"""The learning-rate schedule, as pure functions of where a run stands.

A run warms up linearly over `warmup` steps, then follows a cosine from `lr` to
`min_lr_frac * lr` over its length, measured in steps or in wall-clock time,
whichever ends first ("progress", 0..1).

A resume that changes the length (a longer --time or --max-steps) starts a new
*segment* at the step it resumes from, with the learning rate the run had there.
The cosine of the new length would sit far above a finished run's floor (a 3m
run extended to 6m stands at half its progress, about half the peak: 25 times
the floor), so jumping onto it would shock the weights. What happens instead is
`RESUME_POLICY`, chosen by measurement (docs/benchmarks.md, "Resuming with a longer length"):

- "rewarm": climb linearly over `warmup` steps from the segment's learning rate to
  where an unbroken run of the new length would stand, then follow that run;
- "continue": decay from the segment's learning rate to the floor over what is
  left of the new length (a finished run stays at its floor).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

POLICIES = ("rewarm", "continue")
RESUME_POLICY = "rewarm"
# TrainConfig's default warmup. A re-warm is never shorter than this (capped like a
# warmup, at a tenth of --max-steps), even under --warmup-steps 0: that would jump.
DEFAULT_WARMUP_STEPS = 200


@dataclass(frozen=True)
class Length:
    """How long a run is: steps, seconds of wall clock, or both (whichever ends first)."""

    max_steps: int | None
    time_budget: float | None

    def progress(self, step: int, elapsed: float) -> float:
        parts = []
        if self.max_steps:
            parts.append(step / self.max_steps)
        if self.time_budget:
            parts.append(elapsed / self.time_budget)
        return min(1.0, max(parts)) if parts else 0.0

    def reached(self, step: int, elapsed: float) -> bool:
        if self.max_steps is not None and step >= self.max_steps:
            return True
        return self.time_budget is not None and elapsed >= self.time_budget


@dataclass(frozen=True)
class Segment:
    """Where the current stretch of the schedule began, and the learning rate there.
    The default is a run's own start."""

    step: int = 0
    elapsed: float = 0.0
    lr: float | None = None  # None: the start of the run, warming up from zero
    policy: str = RESUME_POLICY

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Schedule:
    lr: float
    min_lr_frac: float
    warmup: int  # steps
    length: Length
    segment: Segment = Segment()

    def decay(self, progress: float) -> float:
        """The cosine's share of the peak at `progress` (0..1): 1 down to min_lr_frac."""
        floor = self.min_lr_frac
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def __call__(self, step: int, elapsed: float) -> float:
        """The learning rate for step `step` (0-based) taken at `elapsed` seconds."""
        progress = self.length.progress(step, elapsed)
        seg = self.segment
        if seg.lr is None:  # the run's own start: warm up from zero
            return self.lr * ramp(step + 1, self.warmup) * self.decay(progress)
        if seg.policy == "continue":
            start = self.length.progress(seg.step, seg.elapsed)
            share = (progress - start) / (1 - start) if start < 1 else 1.0
            floor = self.lr * self.min_lr_frac
            return floor + (seg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, share)))
        target = self.lr * self.decay(progress)  # where an unbroken run would stand
        rewarm = self.warmup or warmup_steps(DEFAULT_WARMUP_STEPS, self.length.max_steps)
        return seg.lr + (target - seg.lr) * ramp(step - seg.step + 1, rewarm)


def ramp(steps_done: int, warmup: int) -> float:
    """0..1 over `warmup` steps; 1 without a warmup."""
    return min(1.0, steps_done / warmup) if warmup > 0 else 1.0


def warmup_steps(warmup: int, max_steps: int | None) -> int:
    """A short run should not spend itself warming up: at most a tenth of max_steps."""
    if max_steps:
        return min(warmup, max(1, max_steps // 10))
    return warmup
