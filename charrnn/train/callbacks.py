"""What the training loop reports, and to whom: the stats of a step and of an
evaluation, the result of a run, and the Callback hooks that receive them.

The loop writes no files and prints nothing. A run folder's writer
(charrnn.runs.writer) and the CLI's progress display are callbacks. This module
imports nothing heavy, so the CLI can subclass Callback without loading torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from charrnn.train.protocol import TrainerLike


@dataclass
class StepStats:
    step: int
    epoch: int
    train_loss: float | None  # mean over the last log interval; None until the first
    lr: float
    chars_seen: int
    chars_per_s: float
    elapsed: float
    progress: float  # 0..1 of the run's length
    best_val_loss: float | None


@dataclass
class EvalStats:
    step: int
    val_loss: float  # nats/char
    is_best: bool
    seconds: float

    @property
    def val_bpc(self) -> float:
        return self.val_loss / math.log(2)


@dataclass
class TrainResult:
    steps: int
    chars_seen: int
    elapsed: float
    chars_per_s: float
    best_val_loss: float | None
    final_val_loss: float | None
    status: str  # finished | interrupted | patience | nonfinite
    skipped_steps: int = 0
    evals: list[dict] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"


class Callback:
    """Hooks the trainer calls, in the order of `Trainer.callbacks`. The trainer writes
    no files: a run folder's writer (charrnn.runs.writer) keeps checkpoints, metrics and
    config.json; the CLI turns the rest into a progress bar and log lines."""

    def on_start(self, trainer: TrainerLike) -> None: ...
    def on_step(self, stats: StepStats) -> None: ...
    def on_log(self, record: dict) -> None: ...  # a metrics record (see METRIC_KEYS)
    def on_eval(self, stats: EvalStats) -> None: ...
    def on_checkpoint(self, kind: str, payload: dict) -> None: ...  # kind: "best" or "last"
    def on_end(self, trainer: TrainerLike) -> None: ...  # always, however the run ended
