"""The sizing rule: which model, batch, learning rate and regularisation a budget buys.

A model should be as large as the text it will see can teach. The budget and the measured
speed of a shape give the tokens it will see; a corpus seen many times is worth less than
as many fresh tokens; a shape is chosen when that effective data is at least
`TOKENS_PER_PARAM` times its parameter count. Many passes also call for dropout, weight
decay and an end: past `MAX_PASSES` a pass teaches nothing new, so the run stops there.

Every constant is fitted to the sweeps in benchmarks/sizing/ by benchmarks/fit_sizing.py
(see docs/sizing.md). Nothing here imports torch: a `Machine` measures speeds for the
planner (charrnn.runs.planner) through charrnn.runs.probe, or a test's made-up machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# ------------------------------------------------------------ the fitted constants

TOKENS_PER_PARAM = 1.19  # effective training tokens per parameter at the best size
REPEAT_WORTH = 250.0  # passes past the first are worth at most this many fresh ones
MAX_PASSES = 40  # more passes than this overfit whatever the regularisation: the run ends
DROPOUT_PER_DOUBLING = 0.1  # dropout added per doubling of the passes past the first
MAX_DROPOUT = 0.5
WEIGHT_DECAY_PER_PASS = 0.025  # AdamW's decoupled decay grows with every pass, up to
MAX_WEIGHT_DECAY = 0.5  # 0.5 (from 20 passes): more passes overfit faster than dropout helps
LR_REF = 7e-3  # the learning rate of a 1x512 LSTM at batch 32 (today's tuned default)
# a run trains at about this share of the probe's speed: evaluations, start-up, and the
# thread tuner's first windows (the sweeps' chars/s against one-second measurements of
# the same shapes: 0.72 for 45-second runs to 1.0 for 3-minute ones)
RUN_SPEED = 0.85
MIN_STEPS = 1000  # a larger batch only while the run keeps this many steps (1x768 LSTM
# at batch 64, 1,350 steps in 3 minutes, was the best swept; 1x1024 at 128, 600 steps, far worse)
PATIENCE = 6  # evaluations without a new best, once a run makes many passes
PATIENCE_FROM_PASSES = 4.0
BF16_MARGIN = 1.15  # bf16 is taken only when it measured at least this much faster
SPEED_STEPS = 4  # measured speeds are snapped to a grid of 2 ** (1/4): 19% apart
PASS_STEPS = 2  # predicted passes, to 2 ** (1/2): 41% apart
PROBE_SHARE = 0.05  # of a timed budget, at most PROBE_SECONDS
PROBE_SECONDS = 10.0
EMBED = 64
SEQ_LEN = 50
CELL = "lstm"

# (layers, hidden), smallest first: the shapes a plan chooses from. None below 256 units:
# no sweep's best was smaller, even on 8,000 characters, where 1x128 lost to 1x256 by 0.18.
# No 2x512: it lost to 1x768 in all six 3-minute runs (1.4417 to 1.4532, against 1.4231
# to 1.4257), and a short probe measured it fast enough to be chosen in two of five plans
CPU_LADDER = [(1, 256), (1, 384), (1, 512), (1, 768), (1, 1024), (2, 768), (2, 1024)]
GPU_LADDER = [(1, 512), (1, 1024), (2, 1024), (3, 1024), (2, 1536), (3, 1536), (3, 2048)]
CPU_BATCHES = (16, 32, 64, 128)
GPU_BATCHES = (64, 128, 256, 512)
REFERENCE = (1, 512)  # the shape each precision is measured on

# the options a plan chooses when the user leaves them out (TrainConfig/ModelConfig names)
PLANNED = (
    "cell", "layers", "hidden", "embed", "dropout",
    "batch_size", "seq_len", "lr", "weight_decay", "precision",
)  # fmt: skip

GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def parameter_count(config) -> int:
    """Weights of a CharRNN with this ModelConfig, as torch counts them."""
    return count_parameters(config.cell, config.layers, config.hidden, config.embed,
                            config.vocab_size)  # fmt: skip


def count_parameters(cell: str, layers: int, hidden: int, embed: int, vocab: int) -> int:
    g, h = GATES[cell], hidden
    recurrent = sum(g * h * ((embed if i == 0 else h) + h + 2) for i in range(layers))
    return vocab * embed + recurrent + h * vocab + vocab


def effective_passes(passes: float, worth: float = REPEAT_WORTH) -> float:
    """What `passes` over a corpus are worth in fresh passes: the first in full, later
    ones less and less, never more than REPEAT_WORTH more in all (data-constrained
    scaling, after Muennighoff et al. 2023)."""
    if passes <= 1:
        return passes
    return 1 + worth * (1 - math.exp(-(passes - 1) / worth))


def snap(value: float | None, steps_per_doubling: int) -> float | None:
    """`value` rounded to the nearest of a geometric grid (2 ** (k / steps_per_doubling)):
    timing noise of a few percent then rarely changes a choice made from it."""
    if value is None or value <= 0:
        return value
    return 2 ** (round(math.log2(value) * steps_per_doubling) / steps_per_doubling)


def dropout_for(passes: float) -> float:
    """Dropout grows by DROPOUT_PER_DOUBLING each time the passes double, from none at
    one pass, to two decimals."""
    if passes <= 1:
        return 0.0
    return round(min(MAX_DROPOUT, DROPOUT_PER_DOUBLING * math.log2(passes)), 2)


def weight_decay_for(passes: float) -> float:
    """Weight decay grows by WEIGHT_DECAY_PER_PASS with each pass, to MAX_WEIGHT_DECAY."""
    if passes <= 1:
        return 0.0
    return round(min(MAX_WEIGHT_DECAY, WEIGHT_DECAY_PER_PASS * passes), 3)


def lr_for(layers: int, hidden: int, batch_size: int) -> float:
    """LR_REF scaled by the square root of the batch and down by the square root of the
    recurrent width (layers x hidden), to two significant figures."""
    lr = LR_REF * math.sqrt(batch_size / 32) / math.sqrt(layers * hidden / 512)
    lr = min(max(lr, 1e-3), 2e-2)
    return float(f"{lr:.2g}")


# ------------------------------------------------------------ the plan


@dataclass
class Choice:
    value: object
    source: str  # "given", "fitted" (by the rule) or "probed" (measured here)
    why: str = ""


@dataclass
class Plan:
    """What a new run will train: each option with where it came from, and the
    predictions that chose it. Recorded in config.json as `plan`."""

    choices: dict[str, Choice]
    tokens_per_s: float | None  # of the chosen shape, every process together
    predicted_tokens: int | None
    passes: float | None
    probe_seconds: float
    train_tokens: int
    measured: list[dict] = field(default_factory=list)  # every probe measurement
    time_budget: float | None = None  # the training seconds left once the probe is done
    processes: int = 1  # torchrun ranks the speed counts

    def options(self) -> dict:
        return {name: c.value for name, c in self.choices.items()}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        choices = {k: Choice(**c) for k, c in d["choices"].items()}
        return cls(**{**d, "choices": choices})


def probe_allowance(seconds: float | None) -> float:
    """Seconds the probe may take: PROBE_SHARE of a timed budget, at most PROBE_SECONDS."""
    return PROBE_SECONDS if seconds is None else min(PROBE_SECONDS, PROBE_SHARE * seconds)


@dataclass(frozen=True)
class Budget:
    seconds: float | None  # training seconds (the probe's already taken off)
    steps: int | None
    processes: int = 1  # torchrun ranks, each as fast as the one measured

    def tokens(self, tokens_per_s: float, tokens_per_step: int) -> float:
        """Tokens a run sees: whichever of the clock and the step count ends it first."""
        limits = []
        if self.seconds is not None:
            limits.append(tokens_per_s * self.processes * self.seconds * RUN_SPEED)
        if self.steps is not None:
            limits.append(self.steps * tokens_per_step)
        return min(limits)


@dataclass(frozen=True)
class Candidate:
    """A shape the planner may choose, at one batch size and precision."""

    cell: str
    layers: int
    hidden: int
    embed: int
    batch_size: int
    seq_len: int
    precision: str

    def describe(self) -> str:
        shape = f"{self.cell.upper()} {self.layers}x{self.hidden}"
        return f"{shape} batch {self.batch_size} {self.precision}"

    def cost(self, vocab: int) -> int:
        """Multiply-adds per token, bar the embedding lookup: what a step's time follows."""
        return count_parameters(self.cell, self.layers, self.hidden, self.embed, vocab) - (
            vocab * self.embed
        )


@dataclass
class Machine:
    """What the planner may ask of the machine: its kind, the precisions it can run,
    `measure(candidate)`: tokens/s, or None where the candidate cannot run here,
    `has_time()`: whether the probe's allowance has room for another measurement, and
    `known(candidate)`: what earlier runs measured, for when it has not."""

    kind: str  # "cpu", "cuda" or "mps"
    precisions: tuple[str, ...]
    measure: Callable[[Candidate], float | None]
    has_time: Callable[[], bool] = lambda: True
    known: Callable[[Candidate], float | None] = lambda candidate: None  # from earlier runs
