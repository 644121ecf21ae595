"""TrainConfig and the training loop. Reports through a callback; never prints.

One step: take the next TBPTT window of every stream, run it from the carried
state, AdamW with gradient-norm clipping, then detach the state. The learning
rate warms up linearly, then follows a cosine to `min_lr_frac * lr` over the
run's length, measured in steps or in wall-clock time, whichever ends first.

A step whose loss or gradient is not finite changes nothing (no optimizer
step, the carried state is reset) and is counted; `max_skips` of them in a
row stop the run. `patience` stops it after that many evaluations without a
new best validation loss. Every log interval and evaluation is appended to
the run's metrics.jsonl.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn import __version__
from charrnn.checkpoint import BEST, LAST, load_checkpoint, run_checkpoint, save_checkpoint
from charrnn.data import (
    IGNORE_INDEX,
    EncodedCorpus,
    StreamBatches,
    check_corpus_size,
    eval_windows,
)
from charrnn.errors import CharrnnError
from charrnn.files import RunLock, remove_stale_temp_files
from charrnn.model import CharRNN, ModelConfig, State, detach_state, eval_mode, zero_where
from charrnn.runs import (
    MACHINE_OPTIONS,
    MetricsLog,
    data_options,
    metric_record,
    write_run_config,
)
from charrnn.runtime import (
    Machine,
    autocast,
    device_label,
    resolve_device,
    resolve_precision,
    set_threads,
    wide_float,
)
from charrnn.schedule import DEFAULT_WARMUP_STEPS, Length, Schedule, Segment, warmup_steps

DEFAULT_TIME_BUDGET = 180.0  # seconds, when neither max_steps nor time_budget is given
# Automatic evaluation: often enough to keep best.pt fresh, rarely enough that the
# full pass over the validation split stays near 5% of the wall clock.
AUTO_EVAL_SHARE = 0.05
AUTO_EVAL_MIN_INTERVAL = 30.0  # seconds
LN2 = math.log(2)


@dataclass
class TrainConfig:
    batch_size: int = 32
    seq_len: int = 50
    lr: float = 7e-3
    min_lr_frac: float = 0.02
    warmup_steps: int = DEFAULT_WARMUP_STEPS  # at most a tenth of max_steps, when given
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    val_frac: float = 0.1
    max_steps: int | None = None
    time_budget: float | None = None  # seconds of wall clock, evaluations included
    eval_every: int | None = None  # None: auto (see Trainer._eval_due); 0: only at the end
    log_every: int = 10
    eval_size: int = 1_000_000  # validation ids scored per evaluation; 0: all of them
    patience: int | None = None  # evaluations without a new best before stopping
    max_skips: int = 10  # non-finite steps in a row before giving up
    rng_seed: int = 1337
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (autocast); see runtime.resolve_precision
    threads: int | None = None  # CPU threads; None: the physical cores we may use

    def __post_init__(self):
        if self.max_steps is None and self.time_budget is None:
            self.time_budget = DEFAULT_TIME_BUDGET

    def to_dict(self) -> dict:
        return asdict(self)


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
        return self.val_loss / LN2


@dataclass
class TrainResult:
    run_dir: Path
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

    @property
    def best_path(self) -> Path:
        return self.run_dir / BEST

    @property
    def last_path(self) -> Path:
        return self.run_dir / LAST


class Callback:
    """Hooks the trainer calls; the CLI turns them into a progress bar and log lines."""

    def on_start(self, trainer: Trainer) -> None: ...
    def on_step(self, stats: StepStats) -> None: ...
    def on_eval(self, stats: EvalStats) -> None: ...
    def on_save(self, path: Path) -> None: ...


@torch.inference_mode()
def evaluate(
    model: CharRNN, ids: np.ndarray, device: torch.device, precision: str = "fp32"
) -> float:
    """Mean cross-entropy (nats/char) over every character of `ids` after the first,
    with the state carried along each evaluation stream."""
    sums = []  # float32 per window on the device (MPS has no float64); added up on the host
    count = 0
    state = None
    with eval_mode(model):
        for x, y in eval_windows(ids):
            count += int((y != IGNORE_INDEX).sum())  # counted on the host, from numpy
            x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            with autocast(device, precision):
                logits, state, _ = model(x, state)  # (S, W, V)
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                y.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            sums.append(loss)
    if count == 0:
        raise CharrnnError("the validation split has no characters to evaluate")
    return math.fsum(torch.stack(sums).tolist()) / count


@dataclass
class TextScore:
    characters: int  # characters of the text kept for scoring
    tokens: int  # ids scored (the first is context only); = characters - 1 for char models
    loss: float  # nats per token (per character for char models)
    unknown: int  # characters outside the vocabulary, left out before scoring
    unknown_chars: list[str]

    @property
    def bits_per_char(self) -> float:
        """Bits per character: for bytes and pieces, the total over the characters."""
        if self.tokens == self.characters - 1:
            return self.loss / LN2
        return self.loss * self.tokens / max(self.characters, 1) / LN2

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss)


def score_text(model: CharRNN, vocab, text: str) -> TextScore:
    """Cross-entropy of a whole text, computed as validation is (see `evaluate`).

    The text is prepared as the training text was. Characters the vocabulary
    lacks are left out and counted, rather than failing the whole text over
    one stray symbol.
    """
    text = vocab.prepare(text)
    unknown_chars = vocab.unknown(text)
    if unknown_chars:
        gone = set(unknown_chars)
        kept = "".join(c for c in text if c not in gone)
    else:
        kept = text
    ids = vocab.encode_prepared(kept).astype(np.int64)
    if len(ids) < 2:
        raise CharrnnError("the text needs at least two characters the model knows")
    device = next(model.parameters()).device
    return TextScore(
        characters=len(kept),
        tokens=len(ids) - 1,
        loss=evaluate(model, ids, device),
        unknown=len(text) - len(kept),
        unknown_chars=unknown_chars,
    )


def check_same_corpus(ckpt: dict, corpus: EncodedCorpus) -> None:
    """A run resumes only on the text it started with (compared by SHA-256)."""
    if ckpt.get("corpus_sha256") != corpus.sha256:
        raise CharrnnError(
            f"cannot resume {ckpt.get('path')}: it was trained on a different corpus "
            f"({ckpt.get('corpus_path')})"
        )


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


def make_optimizer(model: torch.nn.Module, config: TrainConfig):
    """(AdamW, whether it is fused). The fused kernel updates every parameter in one
    call, and it can skip a non-finite step by itself (`found_inf`) with no host read."""
    params = list(model.parameters())
    options = {"lr": config.lr, "weight_decay": config.weight_decay}
    if all(p.is_floating_point() and p.device.type in fused_devices() for p in params):
        return torch.optim.AdamW(params, fused=True, **options), True
    return torch.optim.AdamW(params, **options), False


def fused_devices() -> list[str]:
    """Device types with a fused AdamW kernel. The constructor does not check (the
    first step would fail), so ask; torch keeps the list in a private helper."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        return _get_fused_kernels_supported_devices()
    except (ImportError, AttributeError):
        return ["cuda", "cpu"]


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, fused: bool) -> None:
    """Restore the optimizer, whichever kind wrote the state: a checkpoint records
    its own `fused` flag, and the fused kernel wants float32 step counts beside
    the weights (a CPU checkpoint resumed on a GPU)."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = (True, None) if fused else (None, None)
        if fused:
            for p in group["params"]:
                if "step" in optimizer.state.get(p, {}):
                    st = optimizer.state[p]
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


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


# what the learning rate follows: a change to any of them on resume starts a new segment
SCHEDULE_OPTIONS = ("max_steps", "time_budget", "lr", "min_lr_frac", "warmup_steps")


class Trainer:
    """Trains a CharRNN on an encoded corpus, writing checkpoints into `run_dir`."""

    def __init__(
        self,
        corpus: EncodedCorpus,
        model_config: ModelConfig,
        config: TrainConfig,
        run_dir: Path,
        callback: Callback | None = None,
        resume: dict | None = None,
    ):
        self.corpus = corpus
        self.config = config
        self.run_dir = Path(run_dir)
        self.callback = callback or Callback()
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.threads = set_threads(config.threads)
        self.machine = Machine(device_label(self.device), self.precision, self.threads)
        self.recorded_machine: dict | None = None  # what a resumed run ran on
        check_corpus_size(corpus, config.batch_size, config.seq_len, config.val_frac)
        if config.patience is not None and (config.val_frac == 0 or config.eval_every == 0):
            raise CharrnnError(
                "--patience needs evaluations during training: a --val-frac above 0 "
                "and an --eval-every other than 0"
            )

        torch.manual_seed(config.rng_seed)
        self.model = CharRNN(model_config).to(self.device)
        # dropout draws from torch's global generator: keep this run's own stream of it,
        # so other work between here and run() (or a resume) cannot shift it
        self.rng_state = torch.get_rng_state()
        self.optimizer, self.fused = make_optimizer(self.model, config)
        # on a CPU a host read costs nothing and stops a diverging run at once
        self.sync_every = 1 if self.device.type == "cpu" else config.log_every
        train_ids, self.val_ids = corpus.split(config.val_frac)
        self.train_size = len(train_ids)
        self.split_moved = False  # see _restore
        if config.eval_size:  # a gigabyte corpus has far more validation text than needed
            self.val_ids = self.val_ids[: config.eval_size + 1]
        self.batches = StreamBatches(train_ids, config.batch_size, config.seq_len)

        # position and history; all of it goes into last.pt so a resume continues exactly
        self.step = 0
        self.epoch = 0
        self.window = 0
        self.chars_seen = 0
        self.elapsed = 0.0
        self.train_seconds = 0.0
        self.state: State | None = None
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.evals: list[dict] = []
        self.skipped_steps = 0
        self.skip_streak = 0
        self.schedule = Schedule(
            config.lr,
            config.min_lr_frac,
            warmup_steps(config.warmup_steps, config.max_steps),
            Length(config.max_steps, config.time_budget),
        )
        self.status = "running"
        self.created = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.stop_requested = False
        self.metrics = MetricsLog(self.run_dir)
        self.meter = IntervalMeter()
        # (step, elapsed) of the last.pt this trainer resumed from or saved last
        self.last_known: tuple | None = None
        if resume is not None:
            self._restore(resume)
        self.tally = StepTally(self.device, self.skipped_steps)

    # ------------------------------------------------------------ public

    def request_stop(self) -> None:
        """Finish the current step, save last.pt and return (safe from a signal handler)."""
        self.stop_requested = True

    def run(self) -> TrainResult:
        # the lock comes first: the temp files removed next must not be a live trainer's
        with RunLock(self.run_dir):
            self._check_run_unchanged()
            remove_stale_temp_files(self.run_dir)
            write_run_config(self.run_dir, self._run_config())
            self.metrics.open(up_to_step=self.step)
            try:
                return self._run()
            finally:
                self.metrics.close()

    def _check_run_unchanged(self) -> None:
        """Under the lock: nobody saved here since this run read the folder (a trainer
        that finished while we were encoding the corpus would be overwritten)."""
        if self.last_known is None:  # a new run: the folder must still have no checkpoint
            changed = run_checkpoint(self.run_dir) is not None
        else:
            last = load_checkpoint(self.run_dir / LAST, mmap=True, verify=False)
            changed = (last["step"], last["elapsed"]) != self.last_known
        if changed:
            raise CharrnnError(
                f"run {self.run_dir} changed while this training was starting: another "
                f"process saved checkpoints there; run the command again to see its state"
            )

    def done_reason(self) -> str | None:
        """Why this run cannot go on as configured: "length", "patience" or None."""
        if self.length_reached():
            return "length"
        patience = self.config.patience
        if patience is not None and evals_without_improvement(self.evals) >= patience:
            return "patience"
        return None

    def _run(self) -> TrainResult:
        self.callback.on_start(self)
        self.model.train()
        torch.set_rng_state(self.rng_state)
        self.status = "running"
        start = time.perf_counter() - self.elapsed
        chars_before, train_s_before = self.chars_seen, self.train_seconds
        meter = self.meter
        meter.restart_clock()
        eval_seconds = 0.0  # how long the last evaluation took; the final one will be alike
        last_eval_end = time.perf_counter()

        while not self.length_reached(time.perf_counter() - start + eval_seconds):
            step_start = time.perf_counter()
            self.elapsed = step_start - start
            self._train_step(self.schedule(self.step, self.elapsed))
            if self.step % self.sync_every == 0 or self.step % self.config.log_every == 0:
                self._sync()
            self.train_seconds += time.perf_counter() - step_start
            meter.chars += self.batches.chars_per_step
            self.elapsed = time.perf_counter() - start
            if self.step % self.config.log_every == 0:
                meter.read()
                self._log_train(meter)
            self.callback.on_step(self._step_stats(meter))
            if self.stop_requested:
                self.status = "interrupted"
                break
            if self.skip_streak >= self.config.max_skips:
                self.status = "nonfinite"
                break
            if self._eval_due(time.perf_counter() - last_eval_end, eval_seconds):
                eval_seconds = self._evaluate_and_save(start)
                last_eval_end = time.perf_counter()
                meter.restart_clock()  # keep evaluation time out of chars/s
                if self.done_reason() == "patience":
                    self.status = "patience"
                    break

        if self.status == "running":
            self.status = "finished"
            if not self.evals or self.evals[-1]["step"] != self.step:
                self._evaluate_and_save(start)
            else:
                self._save(LAST)  # the last evaluation saved it, but as still running
        else:  # interrupted, patience or non-finite: last.pt records why
            self.elapsed = time.perf_counter() - start
            self._save(LAST)
        session_chars = self.chars_seen - chars_before
        session_s = self.train_seconds - train_s_before
        return TrainResult(
            run_dir=self.run_dir,
            steps=self.step,
            chars_seen=self.chars_seen,
            elapsed=self.elapsed,
            chars_per_s=session_chars / max(session_s, 1e-9),
            best_val_loss=self.best_val_loss,
            final_val_loss=self.last_val_loss,
            status=self.status,
            skipped_steps=self.skipped_steps,
            evals=list(self.evals),
        )

    # ------------------------------------------------------------ the step

    def _train_step(self, lr: float) -> None:
        """One optimizer step on the next window, skipped if its loss or gradient is
        not finite; the outcome goes to the tally, without waiting for the device."""
        if self.window == 0:
            self.state = None  # a new pass over the data starts from a zero state
        x, y = (torch.from_numpy(a) for a in self.batches.window(self.window))  # (B, T) each
        if self.device.type == "cuda":  # page-locked, so the copies can overlap the compute
            x, y = x.pin_memory(), y.pin_memory()
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.precision):
            _, state, loss = self.model(x, self.state, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm))  # () bool, on the device
        self._optimizer_step(bad)
        # a NaN must never reach the weights, nor the carried state (zero, as at a pass start)
        self.state = zero_where(detach_state(state), bad)
        self.tally.add(loss, bad)

        self.step += 1
        self.chars_seen += self.batches.chars_per_step
        self.window += 1
        if self.window == self.batches.n_windows:
            self.window = 0
            self.epoch += 1

    def _optimizer_step(self, bad: torch.Tensor) -> None:
        if self.fused:  # fused AdamW skips its whole update, step count included, on found_inf
            self.optimizer.found_inf = bad.float()
            self.optimizer.step()
        elif not bool(bad):  # any other optimizer needs the host to decide
            self.optimizer.step()

    def _sync(self) -> None:
        """Bring the device-side tally to the host: the interval's losses and the skips.

        `skip_streak` is the longest run of skips since the last read, so a run long
        enough to stop training is seen even if good steps followed it before the read.
        """
        loss_sum, counted, self.skip_streak, self.skipped_steps = self.tally.read()
        self.meter.add(loss_sum, counted)

    def _auto_eval_interval(self, eval_seconds: float) -> float:
        """Seconds between automatic evaluations: 30, or one pass over the training
        split if that is quicker (a small corpus overfits within seconds, and best.pt
        should catch its best moment), but never so often that evaluating and saving
        take more than AUTO_EVAL_SHARE of the time."""
        floor = AUTO_EVAL_MIN_INTERVAL
        if self.step:
            one_pass = self.train_seconds / self.step * self.batches.n_windows
            floor = min(floor, one_pass)
        return max(floor, eval_seconds / AUTO_EVAL_SHARE)

    def _eval_due(self, since_last_eval: float, eval_seconds: float) -> bool:
        every = self.config.eval_every
        if every is None:  # auto: by the clock, scaled to what an evaluation costs
            return since_last_eval >= self._auto_eval_interval(eval_seconds)
        return every > 0 and self.step % every == 0

    def _progress(self, elapsed: float) -> float:
        return self.schedule.length.progress(self.step, elapsed)

    def length_reached(self, elapsed: float | None = None) -> bool:
        """Whether the run is done by steps or by the clock (`elapsed`, default: so far)."""
        elapsed = self.elapsed if elapsed is None else elapsed
        return self.schedule.length.reached(self.step, elapsed)

    def _step_stats(self, meter: IntervalMeter) -> StepStats:
        return StepStats(
            step=self.step,
            epoch=self.epoch,
            train_loss=meter.loss,
            lr=self.optimizer.param_groups[0]["lr"],
            chars_seen=self.chars_seen,
            chars_per_s=meter.chars_per_s,
            elapsed=self.elapsed,
            progress=self._progress(self.elapsed),
            best_val_loss=self.best_val_loss,
        )

    # ------------------------------------------------------------ evaluation, checkpoints

    def _evaluate_and_save(self, start: float) -> float:
        """Evaluate, save last.pt (and best.pt on improvement); returns the seconds it took."""
        wait = time.perf_counter()
        self._sync()  # the metrics and the checkpoint record every step so far
        t0 = time.perf_counter()
        self.train_seconds += t0 - wait  # a GPU finishing queued steps is training time
        if len(self.val_ids) >= 2:
            val = evaluate(self.model, self.val_ids, self.device, self.precision)
            best = self.best_val_loss
            is_best = math.isfinite(val) and (best is None or val < best)
            self.last_val_loss = val
            if is_best:
                self.best_val_loss = val
            self.evals.append({"step": self.step, "val_loss": val})
            self.callback.on_eval(EvalStats(self.step, val, is_best, time.perf_counter() - t0))
        else:  # no validation split: the newest model is the best we know of
            val, is_best = None, True
            self.evals.append({"step": self.step, "val_loss": None})
        self.elapsed = time.perf_counter() - start
        self.metrics.write(
            self._metric("eval", val_loss=val, val_bpc=None if val is None else val / LN2)
        )
        self._save(LAST)
        if is_best:
            self._save(BEST)
        return time.perf_counter() - t0

    def _save(self, name: str) -> None:
        self._sync()
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise CharrnnError(
                f"the model's weights are no longer finite at step {self.step:,}; not saving "
                f"{name}, so {self.run_dir / BEST} and {self.run_dir / LAST} keep the last "
                "good model (try a lower --lr)"
            )
        path = self.run_dir / name
        save_checkpoint(self._payload(), path)
        if name == LAST:
            self.last_known = (self.step, self.elapsed)
        self.callback.on_save(path)

    def _metric(self, event: str, **values) -> dict:
        return metric_record(
            event,
            step=self.step,
            epoch=self.epoch,
            chars_seen=self.chars_seen,
            lr=self.optimizer.param_groups[0]["lr"],
            elapsed=round(self.elapsed, 3),
            skipped=self.skipped_steps,
            **values,
        )

    def _log_train(self, meter: IntervalMeter) -> None:
        self.metrics.write(
            self._metric("train", train_loss=meter.loss, chars_per_s=round(meter.chars_per_s, 1))
        )

    def _payload(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "charrnn_version": __version__,
            "model_config": self.model.config.to_dict(),
            "train_config": self.config.to_dict(),
            "vocab": self.corpus.vocab.to_dict(),
            "text_config": asdict(self.corpus.text_config),
            "tokenizer_config": asdict(self.corpus.tokenizer_config),
            "corpus_sha256": self.corpus.sha256,
            "corpus_path": str(self.corpus.path),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "window": self.window,
            "chars_seen": self.chars_seen,
            "elapsed": self.elapsed,
            "train_seconds": self.train_seconds,
            "val_loss": self.last_val_loss,
            "best_val_loss": self.best_val_loss,
            "evals": list(self.evals),
            "skipped_steps": self.skipped_steps,
            # the open log interval, so the first logged loss after a resume is the same mean
            "log_interval": {"loss_sum": self.meter.loss_sum, "steps": self.meter.steps},
            "status": self.status,
            "created": self.created,
            "state": self.state,
            "rng": rng,
            "schedule": self.schedule.segment.to_dict(),
            "train_ids": self.train_size,  # where the validation split begins
            "machine": self.machine.to_dict(),
        }

    def _restore(self, ckpt: dict) -> None:
        check_same_corpus(ckpt, self.corpus)
        self.last_known = (ckpt["step"], ckpt["elapsed"])
        self.model.load_state_dict(ckpt["model"])
        load_optimizer_state(self.optimizer, ckpt["optimizer"], self.fused)
        for key in ("step", "epoch", "window", "chars_seen", "elapsed", "train_seconds"):
            setattr(self, key, ckpt[key])
        self.best_val_loss = ckpt["best_val_loss"]
        self.last_val_loss = ckpt["val_loss"]
        self.evals = list(ckpt["evals"])
        self.skipped_steps = ckpt.get("skipped_steps", 0)
        interval = ckpt.get("log_interval", {})
        self.meter.loss_sum = interval.get("loss_sum", 0.0)
        self.meter.steps = interval.get("steps", 0)
        self.created = ckpt.get("created", self.created)
        # SentencePiece runs of an older charrnn split the ids elsewhere (and their model
        # saw validation text): say so, since their val losses compare different texts
        stored = ckpt.get("train_ids")
        if stored is None:
            self.split_moved = self.corpus.train_ids is not None
        else:
            self.split_moved = stored != self.train_size
        old = ckpt["train_config"]
        self.recorded_machine = ckpt.get("machine") or {
            key: old.get(key) for key in MACHINE_OPTIONS if old.get(key) not in (None, "auto")
        }  # a checkpoint from before the machine was recorded: its explicit options
        self.schedule = replace(self.schedule, segment=self._resumed_segment(ckpt))
        same_streams = (old["batch_size"], old["seq_len"]) == (
            self.config.batch_size,
            self.config.seq_len,
        )
        if same_streams and self.window < self.batches.n_windows:
            state = ckpt["state"]
            if isinstance(state, (tuple, list)):
                state = tuple(s.to(self.device) for s in state)
            elif state is not None:
                state = state.to(self.device)
            self.state = state
        else:  # the streams are cut differently now: start a fresh pass over the data
            self.window, self.state = 0, None
        self.rng_state = ckpt["rng"]["torch"]
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)

    def _resumed_segment(self, ckpt: dict) -> Segment:
        """The schedule goes on where it was; a new length starts a new segment from
        the learning rate the run had reached (see charrnn.schedule)."""
        old, new = ckpt["train_config"], self.config.to_dict()
        segment = Segment(**ckpt["schedule"]) if "schedule" in ckpt else Segment()
        if self.step == 0 or all(old.get(key) == new[key] for key in SCHEDULE_OPTIONS):
            return segment  # (at step 0 no learning rate was reached: warm up as new)
        reached = ckpt["optimizer"]["param_groups"][0]["lr"]  # the last step's
        return Segment(step=self.step, elapsed=self.elapsed, lr=reached)

    def _run_config(self) -> dict:
        """config.json: the options (replayable with `--config`) and what they resolved to."""
        model_options = self.model.config.to_dict()
        vocab_size = model_options.pop("vocab_size")  # follows from the corpus, not an option
        return {
            "charrnn_version": __version__,
            "corpus": list(self.corpus.sources),
            "data": data_options(
                asdict(self.corpus.text_config), asdict(self.corpus.tokenizer_config)
            ),
            "model": model_options,
            "train": self.config.to_dict(),
            "info": {
                "corpus_sha256": self.corpus.sha256,
                "characters": self.corpus.characters,
                "ids": len(self.corpus),
                "vocab_size": vocab_size,
                "parameters": self.model.num_parameters(),
                "device": str(self.device),
                "precision": self.precision,
                "threads": self.threads,
                "created": self.created,
            },
        }
