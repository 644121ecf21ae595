"""TrainConfig: how a run trains, saved in every checkpoint and in config.json.

Each field is also the `charrnn train` option that sets it (see charrnn.options),
so its default, range and help are written here once. Nothing heavy is imported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from charrnn.errors import CharrnnError
from charrnn.options import DEVICE_METAVAR, PRECISIONS, fitted, option
from charrnn.train.schedule import DEFAULT_WARMUP_STEPS

DEFAULT_TIME_BUDGET = 180.0  # seconds, when neither max_steps nor time_budget is given


@dataclass
class TrainConfig:
    # batching
    batch_size: int = option(
        32,
        "Number of parallel streams the corpus is cut into.",
        metavar="B",
        min=1,
        default_text=fitted(32),
        section="batching",
    )
    seq_len: int = option(
        50,
        "Truncated-BPTT window: characters per stream per step.",
        metavar="T",
        min=1,
        default_text=fitted(50),
        section="batching",
    )
    # optimisation
    lr: float = option(
        7e-3,
        "Peak learning rate (AdamW).",
        metavar="LR",
        min=0,
        min_open=True,
        default_text=fitted(0.007),
        section="optimisation",
    )
    min_lr_frac: float = option(
        0.02,
        "The cosine decay ends at this share of --lr.",
        metavar="F",
        min=0,
        max=1,
        section="optimisation",
    )
    warmup_steps: int = option(
        DEFAULT_WARMUP_STEPS,
        "Steps of linear warmup before the cosine decay (at most a tenth of --max-steps).",
        metavar="N",
        min=0,
        section="optimisation",
    )
    weight_decay: float = option(
        0.0,
        "AdamW decoupled weight decay.",
        metavar="W",
        min=0,
        default_text=fitted(0),
        section="optimisation",
    )
    grad_clip: float = option(
        1.0,
        "Clip the gradient norm to this value (0 turns clipping off).",
        metavar="C",
        min=0,
        section="optimisation",
    )
    # length and evaluation
    val_frac: float = option(
        0.1,
        "Share of the corpus, taken from its end, held out for validation.",
        metavar="F",
        min=0,
        max=0.5,
        section="length and evaluation",
    )
    max_steps: int | None = option(
        None,
        "Stop after this many steps.",
        metavar="N",
        min=1,
        default_text="none; a plan ends a run that would make too many passes",
        section="length and evaluation",
    )
    time_budget: float | None = option(  # seconds of wall clock, evaluations included
        None,
        "Wall-clock budget, evaluations included: 90s, 3m, 1h30m.",
        flag="time",
        kind="duration",
        metavar="D",
        default_text="3m if no --max-steps",
        section="length and evaluation",
    )
    eval_every: int | None = option(  # None: auto (see charrnn.train.cadence)
        None,
        "Evaluate and save every N steps; 0: only at the end. auto: every 30 s, or every "
        "pass over the training split when a pass is quicker (a small corpus overfits "
        "within seconds), but so that evaluating and saving take at most about 5% of the time.",
        metavar="N",
        min=0,
        default_text="auto",
        section="length and evaluation",
    )
    log_every: int = option(
        10,
        "Steps per line of metrics.jsonl (and per update of the shown loss).",
        metavar="N",
        min=1,
        section="run control",
    )
    eval_size: int = option(
        1_000_000,
        "Score at most the first N ids of the validation split per evaluation; 0: all.",
        metavar="N",
        min=0,
        section="length and evaluation",
    )
    patience: int | None = option(
        None,
        "Stop after N evaluations in a row without a new best validation loss.",
        metavar="N",
        min=1,
        default_text="off; a plan that predicts many passes sets it",
        section="length and evaluation",
    )
    max_skips: int = option(
        10,
        "Stop after K steps in a row with a non-finite loss or gradient (each is skipped).",
        metavar="K",
        min=1,
        section="optimisation",
    )
    rng_seed: int = option(
        1337, "Random seed for initialisation and dropout.", metavar="N", section="run control"
    )
    # machine: a resumed or replayed run takes these from the machine it runs on
    device: str = option(
        "auto",
        "Where to run the model; auto picks CUDA, then Apple's MPS, then the CPU. "
        "cuda:N picks one GPU of several.",
        kind="device",
        metavar=DEVICE_METAVAR,
        section="machine",
    )
    precision: str = option(
        "auto",
        "bf16: autocast matmuls and recurrent layers to bfloat16 (weights stay fp32); "
        "refused on a CPU without native bf16 (AVX-512 or AMX) and on MPS, honoured on any "
        "CUDA GPU. auto: bf16 on "
        "CUDA GPUs with native bf16 (Ampere or newer) and on CPUs with AMX, else fp32.",
        choices=PRECISIONS,
        default_text=fitted("auto"),
        section="machine",
    )
    threads: int | None = option(
        None,
        "CPU threads, capped by the CPU affinity mask. Given, it is kept; by default "
        "training measures, and runs on fewer while other programs keep cores busy.",
        metavar="N",
        min=1,
        default_text="the physical cores this process may use, tuned while training",
        section="machine",
    )
    dist_timeout: float = option(
        600.0,
        "Under torchrun: how long a process waits for the others in a collective before "
        "the job fails (rank 0 saving a checkpoint counts).",
        kind="duration",
        metavar="D",
        section="machine",
    )

    def __post_init__(self):
        if self.max_steps is None and self.time_budget is None:
            self.time_budget = DEFAULT_TIME_BUDGET

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        """Refuse options that contradict each other (the ranges are checked on input)."""
        if self.patience is not None and (self.val_frac == 0 or self.eval_every == 0):
            raise CharrnnError(
                "--patience needs evaluations during training: a --val-frac above 0 "
                "and an --eval-every other than 0"
            )


# options that belong to the machine, not the run: a resumed run, or one replayed
# from another run's config.json, takes them from this machine
MACHINE_OPTIONS = ("device", "precision", "threads", "dist_timeout")
