"""The sizing rule: which model, batch, learning rate and regularisation a budget buys.

A model should be as large as the text it will see can teach. The budget and the measured
speed of a shape give the tokens it will see; a corpus seen many times is worth less than
as many fresh tokens; a shape is chosen when that effective data is at least
`TOKENS_PER_PARAM` times its parameter count. Many passes also call for dropout, weight
decay and an end: past `MAX_PASSES` a pass teaches nothing new, so the run stops there.

Every constant is fitted to the sweeps in benchmarks/sizing/ by benchmarks/fit_sizing.py
(see docs/sizing.md). Nothing here imports torch: `speed` is a function that measures
(charrnn.runs.probe, or a test's made-up machine).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

# ------------------------------------------------------------ the fitted constants

TOKENS_PER_PARAM = 1.2  # effective training tokens per parameter at the best size
REPEAT_WORTH = 15.0  # repeated passes past the first are worth at most this many fresh ones
MAX_PASSES = 40  # more passes than this overfit whatever the regularisation: the run ends
DROPOUT_PER_DOUBLING = 0.1  # dropout added per doubling of the passes past the first
MAX_DROPOUT = 0.5
WEIGHT_DECAY_PER_DOUBLING = 0.1  # AdamW's decoupled decay, likewise
LR_REF = 7e-3  # the learning rate of a 1x512 LSTM at batch 32 (today's tuned default)
MIN_STEPS = 1500  # a larger batch is taken only while the run keeps this many steps
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

# (layers, hidden), smallest first: the shapes a plan chooses from
CPU_LADDER = [
    (1, 128), (1, 192), (1, 256), (1, 384), (1, 512), (1, 768), (2, 512), (1, 1024), (2, 768),
    (2, 1024),
]  # fmt: skip
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


def effective_passes(passes: float) -> float:
    """What `passes` over a corpus are worth in fresh passes: the first in full, later
    ones less and less, never more than REPEAT_WORTH more in all (data-constrained
    scaling, after Muennighoff et al. 2023)."""
    if passes <= 1:
        return passes
    return 1 + REPEAT_WORTH * (1 - math.exp(-(passes - 1) / REPEAT_WORTH))


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
    """Weight decay grows by WEIGHT_DECAY_PER_DOUBLING each time the passes double."""
    if passes <= 1:
        return 0.0
    return round(WEIGHT_DECAY_PER_DOUBLING * math.log2(passes), 2)


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
            limits.append(tokens_per_s * self.processes * self.seconds * (1 - EVAL_SHARE))
        if self.steps is not None:
            limits.append(self.steps * tokens_per_step)
        return min(limits)


EVAL_SHARE = 0.05  # evaluating and saving take about this much of a timed run


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
    `measure(candidate)`: tokens/s, or None where the candidate cannot run here, and
    `has_time()`: whether the probe's allowance has room for another measurement."""

    kind: str  # "cpu", "cuda" or "mps"
    precisions: tuple[str, ...]
    measure: Callable[[Candidate], float | None]
    has_time: Callable[[], bool] = lambda: True


# ------------------------------------------------------------ planning


class Planner:
    """Chooses, for one new run, every PLANNED option the user left out."""

    def __init__(self, options: dict, given: set[str], train_tokens: int, vocab: int,
                 budget: Budget, machine: Machine):  # fmt: skip
        self.given = {k: options[k] for k in PLANNED if k in given}
        self.train_tokens = max(1, train_tokens)
        self.vocab = vocab
        self.budget = budget
        self.machine = machine
        self.cell = self.given.get("cell", CELL)
        self.embed = self.given.get("embed", EMBED)
        self.seq_len = self.given.get("seq_len", SEQ_LEN)
        cuda = machine.kind == "cuda"
        self.ladder = ladder_for(GPU_LADDER if cuda else CPU_LADDER, self.given, self.params)
        world = budget.processes  # every process takes an equal share of the streams
        batches = sorted(
            {world * max(1, round(b / world)) for b in (GPU_BATCHES if cuda else CPU_BATCHES)}
        )
        fitting = [b for b in batches if b * (self.seq_len + 1) <= self.train_tokens]
        self.batches = (
            (self.given["batch_size"],)
            if "batch_size" in self.given
            else tuple(fitting or batches[:1])
        )
        self.speeds: dict[Candidate, float | None] = {}  # measured; None: cannot run here

    def params(self, shape) -> int:
        return count_parameters(self.cell, *shape, self.embed, self.vocab)

    def candidate(self, shape, batch: int, precision: str) -> Candidate:
        return Candidate(self.cell, *shape, self.embed, batch, self.seq_len, precision)

    # --- speeds

    def measure(self, c: Candidate, required: bool = False) -> bool:
        """Measure `c` unless it is known or the probe is out of time (a `required`
        measurement is taken regardless); False if it was not measured."""
        if c in self.speeds:
            return True
        if not required and not self.machine.has_time():
            return False
        self.speeds[c] = self.machine.measure(c)
        return True

    def speed(self, c: Candidate) -> float | None:
        """Measured tokens/s; where not measured, scaled by cost from the measured shape
        closest in cost at this precision (batch alike if one is). None: cannot run."""
        if c in self.speeds:
            return snap(self.speeds[c], SPEED_STEPS)
        known = [
            (m, v) for m, v in self.speeds.items() if v is not None and m.precision == c.precision
        ]
        known = [(m, v) for m, v in known if m.batch_size == c.batch_size] or known
        if not known:
            return None
        cost = c.cost(self.vocab)
        ref, v = min(known, key=lambda mv: abs(math.log(mv[0].cost(self.vocab) / cost)))
        return snap(v * ref.cost(self.vocab) / cost, SPEED_STEPS)

    def forecast(self, shape, batch: int, precision: str):
        """(tokens/s, tokens seen, passes) of a shape, or None if it cannot run."""
        speed = self.speed(self.candidate(shape, batch, precision))
        if speed is None:
            return None
        seen = self.budget.tokens(speed, batch * self.seq_len)
        return speed, seen, snap(seen / self.train_tokens, PASS_STEPS)

    def fits(self, shape, batch: int, precision: str) -> bool:
        """Whether the effective tokens this shape would see teach its parameters."""
        forecast = self.forecast(shape, batch, precision)
        if forecast is None:
            return False
        effective = self.train_tokens * effective_passes(min(forecast[2], MAX_PASSES))
        return effective >= TOKENS_PER_PARAM * self.params(shape)

    # --- the steps of a plan

    def choose_precision(self) -> Choice:
        if "precision" in self.given:
            return Choice(self.given["precision"], "given")
        shape = REFERENCE if REFERENCE in self.ladder else self.ladder[len(self.ladder) // 2]
        speeds = {}
        for p in self.machine.precisions:
            c = self.candidate(shape, self.batches[0], p)
            self.measure(c, required=True)  # the choice that matters most
            speeds[p] = self.speeds[c]
        fp32, bf16 = speeds.get("fp32"), speeds.get("bf16")
        if bf16 is not None and (fp32 is None or bf16 >= BF16_MARGIN * fp32):
            ratio = "" if fp32 is None else f", {bf16 / fp32:.2f}x the speed of fp32"
            return Choice("bf16", "probed", f"measured{ratio}")
        if bf16 is not None:
            return Choice("fp32", "probed", f"bf16 measured only {bf16 / fp32:.2f}x fp32's speed")
        if "bf16" in self.machine.precisions:
            return Choice("fp32", "probed", "bf16 failed to run here")
        return Choice("fp32", "probed", "bf16 does not run here")

    def choose_shape(self, batch: int, precision: str):
        """The largest shape that fits. The choice and the next larger shape are measured
        while the probe has time, so a guess from cost alone is checked before it counts."""
        for _ in range(len(self.ladder) + 1):
            fitting = [s for s in self.ladder if self.fits(s, batch, precision)]
            chosen = fitting[-1] if fitting else self.ladder[0]
            i = self.ladder.index(chosen)
            unknown = [self.candidate(s, batch, precision) for s in self.ladder[i : i + 2]]
            unknown = [c for c in unknown if c not in self.speeds]
            if not unknown or not self.measure(unknown[0]):
                return chosen
        return chosen

    def steps(self, seen: float, batch: int) -> float:
        """Steps a run of `seen` tokens takes, when it ends after MAX_PASSES passes."""
        return min(seen, MAX_PASSES * self.train_tokens) / (batch * self.seq_len)

    def choose_batch(self, shape, precision: str) -> int:
        """The largest batch that still leaves MIN_STEPS steps: more streams per step cost
        no more per token (often less, measured), until too few steps leave the optimiser
        too few updates."""
        best = self.batches[0]
        for batch in self.batches[1:]:
            self.measure(self.candidate(shape, batch, precision))
            forecast = self.forecast(shape, batch, precision)
            if forecast is None or self.steps(forecast[1], batch) < MIN_STEPS:
                break
            best = batch
        return best


def ladder_for(ladder, given: dict, params) -> list[tuple[int, int]]:
    """The shapes to choose from, with a given --layers or --hidden held, smallest first."""
    layers = [given["layers"]] if "layers" in given else sorted({n for n, _ in ladder})
    hidden = [given["hidden"]] if "hidden" in given else sorted({h for _, h in ladder})
    if "layers" in given or "hidden" in given:
        shapes = {(n, h) for n in layers for h in hidden}
    else:
        shapes = set(ladder)
    return sorted(shapes, key=params)


def make_plan(options: dict, given: set[str], train_tokens: int, vocab: int, budget: Budget,
              machine: Machine) -> Plan:  # fmt: skip
    """Every PLANNED option (and, for many passes, the run's end and patience): the
    user's where given, else fitted by the rule from the probe's measurements."""
    planner = Planner(options, given, train_tokens, vocab, budget, machine)
    choices = {name: Choice(value, "given") for name, value in planner.given.items()}
    precision = planner.choose_precision()
    choices["precision"] = precision
    p = precision.value if precision.value in ("fp32", "bf16") else "fp32"
    shape = planner.choose_shape(planner.batches[0], p)
    batch = planner.choose_batch(shape, p)
    if batch != planner.batches[0]:
        shape = planner.choose_shape(batch, p)
    forecast = planner.forecast(shape, batch, p)
    speed, seen, passes = forecast if forecast else (None, None, None)
    n = planner.params(shape)
    size_why = f"{n / 1e6:.2f}M parameters" + (
        f" for {passes:.1f} passes" if passes is not None else ""
    )
    fitted = {
        "cell": Choice(planner.cell, "fitted", "the fastest cell per step"),
        "layers": Choice(shape[0], "fitted", size_why),
        "hidden": Choice(shape[1], "fitted", size_why),
        "embed": Choice(planner.embed, "fitted"),
        "seq_len": Choice(planner.seq_len, "fitted"),
        "batch_size": Choice(
            batch,
            "probed" if len(planner.batches) > 1 else "fitted",
            f"{speed:,.0f} tokens/s" if speed else "",
        ),  # fmt: skip
        "lr": Choice(lr_for(*shape, batch), "fitted", "by width and batch"),
    }
    repeats = min(passes or 1, MAX_PASSES)
    why = f"for {repeats:.1f} passes" if passes else ""
    fitted["dropout"] = Choice(dropout_for(repeats), "fitted", why)
    fitted["weight_decay"] = Choice(weight_decay_for(repeats), "fitted", why)
    for name, choice in fitted.items():
        choices.setdefault(name, choice)
    choices.update(length_choices(options, given, planner, passes, batch))
    return Plan(
        choices={k: choices[k] for k in [*PLANNED, "max_steps", "patience"] if k in choices},
        tokens_per_s=None if speed is None else speed * budget.processes,
        predicted_tokens=None if seen is None else int(seen),
        passes=passes,
        probe_seconds=0.0,
        train_tokens=train_tokens,
        measured=[
            {"candidate": c.describe(), "tokens_per_s": None if v is None else round(v)}
            for c, v in planner.speeds.items()
        ],
    )


def length_choices(options, given, planner: Planner, passes, batch: int) -> dict[str, Choice]:
    """Many passes: stop after MAX_PASSES (unless the user set the length in steps) and
    stop early once validation stops improving (unless --patience is given)."""
    out = {}
    if passes is None:
        return out
    if passes > MAX_PASSES and "max_steps" not in given:
        steps = math.ceil(MAX_PASSES * planner.train_tokens / (batch * planner.seq_len))
        if options.get("max_steps") is None or steps < options["max_steps"]:
            out["max_steps"] = Choice(
                steps, "fitted", f"{MAX_PASSES} passes: the budget buys {passes:.0f}"
            )
    if passes >= PATIENCE_FROM_PASSES and "patience" not in given:
        out["patience"] = Choice(PATIENCE, "fitted", f"{passes:.0f} passes overfit")
    return out
