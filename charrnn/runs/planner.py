"""The planner: the sizing rule (charrnn.runs.sizing) applied to one new run.

It asks the machine for speeds as it needs them (the probe measures, within its time
allowance; a test hands in a made-up machine), and chooses in order: the precision, the
shape, the batch (and the shape again at that batch), the learning rate, the
regularisation, and for many passes an end and patience.
"""

from __future__ import annotations

import math

from charrnn.runs import sizing
from charrnn.runs.sizing import Budget, Candidate, Choice, Machine, Plan


class Planner:
    """Chooses, for one new run, every PLANNED option the user left out."""

    def __init__(self, options: dict, given: set[str], train_tokens: int, vocab: int,
                 budget: Budget, machine: Machine):  # fmt: skip
        self.given = {k: options[k] for k in (*sizing.PLANNED, "dropout_kind") if k in given}
        self.train_tokens = max(1, train_tokens)
        self.vocab = vocab
        self.budget = budget
        self.machine = machine
        self.cell = self.given.get("cell", sizing.CELL)
        self.embed = self.given.get("embed", sizing.EMBED)
        self.seq_len = self.given.get("seq_len", sizing.SEQ_LEN)
        cuda = machine.kind == "cuda"
        ladder = sizing.GPU_LADDER if cuda else sizing.CPU_LADDER
        self.ladder = ladder_for(ladder, self.given, self.params)
        if "batch_size" in self.given:
            self.batches = (self.given["batch_size"],)
        else:
            self.batches = batches_for(
                sizing.GPU_BATCHES if cuda else sizing.CPU_BATCHES,
                budget.processes, self.seq_len, self.train_tokens,
            )  # fmt: skip
        self.speeds: dict[Candidate, float | None] = {}  # measured; None: cannot run here

    def params(self, shape) -> int:
        return sizing.count_parameters(self.cell, *shape, self.embed, self.vocab)

    def candidate(self, shape, batch: int, precision: str) -> Candidate:
        return Candidate(self.cell, *shape, self.embed, batch, self.seq_len, precision)

    # --- speeds

    def measure(self, c: Candidate, required: bool = False) -> bool:
        """Measure `c` unless it is known or the probe is out of time (then an earlier
        run's figure, if any, serves; a `required` measurement is taken regardless);
        False if no speed was found."""
        if c in self.speeds:
            return True
        if not required and not self.machine.has_time():
            known = self.machine.known(c)
            if known is not None:
                self.speeds[c] = known
            return known is not None
        self.speeds[c] = self.machine.measure(c)
        return True

    def speed(self, c: Candidate) -> float | None:
        """Measured tokens/s; where not measured, scaled by cost from the measured shape
        closest in cost at this precision (batch alike if one is). None: cannot run."""
        if c in self.speeds:
            return sizing.snap(self.speeds[c], sizing.SPEED_STEPS)
        known = [
            (m, v) for m, v in self.speeds.items() if v is not None and m.precision == c.precision
        ]
        known = [(m, v) for m, v in known if m.batch_size == c.batch_size] or known
        if not known:
            return None
        cost = c.cost(self.vocab)
        ref, v = min(known, key=lambda mv: abs(math.log(mv[0].cost(self.vocab) / cost)))
        return sizing.snap(v * ref.cost(self.vocab) / cost, sizing.SPEED_STEPS)

    def forecast(self, shape, batch: int, precision: str):
        """(tokens/s, tokens seen, passes) of a shape, or None if it cannot run."""
        speed = self.speed(self.candidate(shape, batch, precision))
        if speed is None:
            return None
        seen = self.budget.tokens(speed, batch * self.seq_len)
        return speed, seen, sizing.snap(seen / self.train_tokens, sizing.PASS_STEPS)

    def fits(self, shape, batch: int, precision: str) -> bool:
        """Whether the effective tokens this shape would see teach its parameters."""
        forecast = self.forecast(shape, batch, precision)
        if forecast is None:
            return False
        effective = self.train_tokens * sizing.effective_passes(min(forecast[2], sizing.MAX_PASSES))
        return effective >= sizing.TOKENS_PER_PARAM * self.params(shape)

    # --- the steps of a plan

    def choose_precision(self) -> Choice:
        if "precision" in self.given:
            return Choice(self.given["precision"], "given")
        shape = (
            sizing.REFERENCE
            if sizing.REFERENCE in self.ladder
            else self.ladder[len(self.ladder) // 2]
        )
        speeds = {}
        for p in self.machine.precisions:
            c = self.candidate(shape, self.batches[0], p)
            self.measure(c, required=True)  # the choice that matters most
            speeds[p] = self.speeds[c]
        fp32, bf16 = speeds.get("fp32"), speeds.get("bf16")
        if bf16 is not None and (fp32 is None or bf16 >= sizing.BF16_MARGIN * fp32):
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

    def choose_shape_and_batch(self, precision: str):
        """A larger batch sees more tokens, which may fit a larger shape, which sees fewer
        tokens, which may need a smaller batch: alternate until neither changes."""
        shape = self.choose_shape(self.batches[0], precision)
        for _ in range(3):
            larger = self.choose_shape(self.choose_batch(shape, precision), precision)
            if larger == shape:
                break
            shape = larger
        return shape, self.choose_batch(shape, precision)  # the batch this shape allows

    def steps(self, seen: float, batch: int) -> float:
        """Steps a run of `seen` tokens takes, when it ends after MAX_PASSES passes."""
        return min(seen, sizing.MAX_PASSES * self.train_tokens) / (batch * self.seq_len)

    def choose_batch(self, shape, precision: str) -> int:
        """The largest batch that still leaves MIN_STEPS steps: more streams per step cost
        no more per token (often less, measured), until too few steps leave the optimiser
        too few updates."""
        best = self.batches[0]
        for batch in self.batches[1:]:
            self.measure(self.candidate(shape, batch, precision))
            forecast = self.forecast(shape, batch, precision)
            if forecast is None or self.steps(forecast[1], batch) < sizing.MIN_STEPS:
                break
            best = batch
        return best


def batches_for(batches, processes: int, seq_len: int, train_tokens: int) -> tuple[int, ...]:
    """The batches to choose from: multiples of the processes (each takes an equal share of
    the streams) whose streams the corpus can fill; at least the smallest."""
    multiples = sorted({processes * max(1, round(b / processes)) for b in batches})
    fitting = [b for b in multiples if b * (seq_len + 1) <= train_tokens]
    return tuple(fitting or multiples[:1])


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
    shape, batch = planner.choose_shape_and_batch(p)
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
        "lr": Choice(sizing.lr_for(*shape, batch), "fitted", "by width and batch"),
    }
    repeats = min(passes or 1, sizing.MAX_PASSES)
    why = f"for {repeats:.1f} passes" if passes else ""
    fitted["dropout"] = Choice(sizing.dropout_for(repeats), "fitted", why)
    fitted["weight_decay"] = Choice(sizing.weight_decay_for(repeats), "fitted", why)
    dropout = choices.get("dropout", fitted["dropout"]).value
    locked = "one mask per stream and window" if dropout else "no dropout"
    fitted["dropout_kind"] = Choice("locked" if dropout else "element", "fitted", locked)
    for name, choice in fitted.items():
        choices.setdefault(name, choice)
    choices.update(length_choices(options, given, planner, passes, batch))
    return Plan(
        choices={
            k: choices[k]
            for k in [*sizing.PLANNED, "dropout_kind", "max_steps", "patience"]
            if k in choices
        },
        tokens_per_s=None if speed is None else speed * budget.processes,
        predicted_tokens=None if seen is None else int(seen),
        passes=passes,
        probe_seconds=0.0,
        train_tokens=train_tokens,
        processes=budget.processes,
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
    if passes > sizing.MAX_PASSES and "max_steps" not in given:
        steps = math.ceil(sizing.MAX_PASSES * planner.train_tokens / (batch * planner.seq_len))
        if options.get("max_steps") is None or steps < options["max_steps"]:
            out["max_steps"] = Choice(
                steps, "fitted", f"{sizing.MAX_PASSES} passes: the budget buys {passes:.0f}"
            )
    if passes >= sizing.PATIENCE_FROM_PASSES and "patience" not in given:
        out["patience"] = Choice(
            sizing.PATIENCE, "fitted", f"stop once {passes:.0f} passes stop helping"
        )
    return out
