"""What a Trainer offers the code it hands itself to: its callbacks (charrnn.train.callbacks,
charrnn.runs) and its checkpoint payload (charrnn.train.state).

A Protocol, so those modules name the trainer's type without importing the loop that
imports them: every import in charrnn.train runs one way, from loop.py down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from charrnn.data.batches import StreamBatches
    from charrnn.data.cache import EncodedCorpus
    from charrnn.distributed import Job
    from charrnn.model.rnn import CharRNN
    from charrnn.runtime import Machine
    from charrnn.train.config import TrainConfig
    from charrnn.train.schedule import Schedule
    from charrnn.train.tally import IntervalMeter


class TrainerLike(Protocol):
    # what it trains, on what, with what
    corpus: EncodedCorpus
    config: TrainConfig
    model: CharRNN
    optimizer: torch.optim.Optimizer
    fused: bool
    device: torch.device
    precision: str
    threads: int  # the CPU threads it runs on now
    machine: Machine  # what the run started on
    recorded_machine: dict | None  # what a resumed run ran on
    job: Job
    batches: StreamBatches
    schedule: Schedule
    meter: IntervalMeter
    # where it stands: all of it goes into last.pt, so a resume continues exactly
    step: int
    epoch: int
    window: int
    chars_seen: int
    elapsed: float
    train_seconds: float
    state: Any  # the carried state: a tensor, or an LSTM's pair
    rng_state: torch.Tensor
    best_val_loss: float | None
    last_val_loss: float | None
    evals: list[dict]
    skipped_steps: int
    status: str
    created: str
    train_size: int
    split_moved: bool
    resumed_from: dict | None
    stop_requested: bool
