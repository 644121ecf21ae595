"""When a run evaluates and when it gives up: the clock-driven evaluation cadence and
the patience rule, as small functions of what the trainer has seen."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from charrnn.train.protocol import TrainerLike

AUTO_EVAL_SHARE = 0.05
AUTO_EVAL_MIN_INTERVAL = 30.0  # seconds


def evals_without_improvement(evals: list[dict]) -> int:
    """How many evaluations, counting back from the newest, did not set a new best."""
    best, streak = math.inf, 0
    for e in evals:
        val = e.get("val_loss")
        if val is not None and val < best:
            best, streak = val, 0
        else:
            streak += 1
    return streak


def patience_ran_out(patience: int | None, evals: list[dict]) -> bool:
    return patience is not None and evals_without_improvement(evals) >= patience


def eval_due(trainer: TrainerLike, since_last_eval: float, eval_seconds: float) -> bool:
    """Whether this rank's clock or step count says an evaluation is due."""
    every = trainer.config.eval_every
    if every is None:  # auto: by the clock, scaled to what an evaluation costs
        t = trainer
        one_pass = t.train_seconds / t.step * t.batches.n_windows if t.step else math.inf
        return since_last_eval >= auto_eval_interval(one_pass, eval_seconds)
    return every > 0 and trainer.step % every == 0


def auto_eval_interval(one_pass: float, eval_seconds: float) -> float:
    """Seconds between automatic evaluations: 30, or one pass over the training split if
    that is quicker (a small corpus overfits within seconds, and best.pt should catch its
    best moment), but never so often that evaluating and saving take more than
    AUTO_EVAL_SHARE of the time."""
    return max(min(AUTO_EVAL_MIN_INTERVAL, one_pass), eval_seconds / AUTO_EVAL_SHARE)
