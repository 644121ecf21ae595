"""The training loop: steps, evaluation, stopping. Reports through callbacks; never prints.

One step: take the next TBPTT window of every stream, run it from the carried
state, AdamW with gradient-norm clipping, then detach the state. The learning
rate warms up linearly, then follows a cosine to `min_lr_frac * lr` over the
run's length, measured in steps or in wall-clock time, whichever ends first.

A step whose loss or gradient is not finite changes nothing (no optimizer
step, the carried state is reset) and is counted; `max_skips` of them in a
row stop the run. `patience` stops it after that many evaluations without a
new best validation loss. Every log interval and evaluation goes to the
callbacks as a metrics record, and every checkpoint as a payload: the loop
itself writes no files (charrnn.runs.writer does, for a run folder).

Under torchrun (a `job` from charrnn.distributed) each rank trains its own contiguous
range of the B streams, with its own carried state; DDP averages the gradients. Every
decision that ends, skips or evaluates is agreed by all ranks, validation is shared
out by streams and summed, and a checkpoint holds every rank's state by stream index.
"""

from __future__ import annotations

import datetime as dt
import math
import time

import torch

from charrnn.data.batches import StreamBatches, check_corpus_size
from charrnn.data.cache import EncodedCorpus
from charrnn.distributed import Job
from charrnn.evaluate import LN2, evaluate_shared
from charrnn.inference import detach_state, zero_where
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN, State
from charrnn.runtime import (
    Machine,
    autocast,
    device_label,
    resolve_device,
    resolve_precision,
    set_threads,
)
from charrnn.train.cadence import eval_due, patience_ran_out
from charrnn.train.callbacks import Callback, EvalStats, StepStats, TrainResult
from charrnn.train.config import TrainConfig
from charrnn.train.optim import make_optimizer, optimizer_step
from charrnn.train.schedule import Length, Schedule, warmup_steps
from charrnn.train.state import payload, rank_seed, restore, rng_state
from charrnn.train.tally import IntervalMeter, StepTally, metric_record
from charrnn.train.threads import tuner_for


class Trainer:
    """Trains a CharRNN on an encoded corpus; what it makes goes to its callbacks."""

    def __init__(
        self,
        corpus: EncodedCorpus,
        model_config: ModelConfig,
        config: TrainConfig,
        callbacks: list[Callback] | tuple = (),
        resume: dict | None = None,
        job: Job | None = None,
    ):
        self.corpus = corpus
        self.config = config
        self.callbacks = list(callbacks)
        self.job = job or Job.solo()
        self.device, self.precision, self.threads = take_machine(config, self.job.device)
        label = device_label(self.device)
        self.machine = Machine(label, self.precision, self.threads, self.job.world)
        self.tuner = tuner_for(config.threads, self.device.type, self.job.world, self.threads)
        if self.tuner is not None:
            set_threads(self.tuner.running)
        self.recorded_machine: dict | None = None  # what a resumed run ran on
        check_corpus_size(corpus, config.batch_size, config.seq_len, config.val_frac)
        config.check()
        self.job.check_batch(config.batch_size)

        torch.manual_seed(config.rng_seed)
        self.model = CharRNN(model_config).to(self.device)
        if self.job.rank:  # the same weights everywhere, but each rank its own dropout
            torch.manual_seed(rank_seed(config.rng_seed, 0, self.job.rank))
        # dropout draws from torch's global generator: keep this run's own stream of it,
        # so other work between here and run() (or a resume) cannot shift it
        self.rng_state = torch.get_rng_state()
        self.optimizer, self.fused = make_optimizer(self.model, config)
        # on a CPU a host read costs nothing and stops a diverging run at once
        self.sync_every = 1 if self.device.type == "cpu" else config.log_every
        train_ids, self.val_ids = corpus.split(config.val_frac)
        self.train_size = len(train_ids)
        self.split_moved = False  # see charrnn.train.state.restore
        if config.eval_size:  # a gigabyte corpus has far more validation text than needed
            self.val_ids = self.val_ids[: config.eval_size + 1]
        self.batches = StreamBatches(
            train_ids, config.batch_size, config.seq_len, self.job.rows(config.batch_size)
        )

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
        self.schedule = schedule_for(config)
        self.status = "running"
        self.created = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        self.stop_requested = False
        self.thread_steps: list[tuple[int, int]] = []  # (step, threads) as the tuner moved
        self.meter = IntervalMeter()
        self.resumed_from: dict | None = resume  # the checkpoint this run goes on from
        if resume is not None:
            restore(self, resume)
        self.tally = StepTally(self.device, self.skipped_steps)
        self.net = self.job.wrap(self.model)  # what a training step runs

    # ------------------------------------------------------------ public

    def request_stop(self) -> None:
        """Finish the current step, save last.pt and return (safe from a signal handler)."""
        self.stop_requested = True

    def run(self) -> TrainResult:
        try:
            self._emit("on_start", self)
            return self._run()
        finally:
            set_threads(self.threads)  # the count settled on, not a comparison's
            self._emit("on_end", self)

    def _emit(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def done_reason(self) -> str | None:
        """Why this run cannot go on as configured: "length", "patience" or None."""
        if self.length_reached():
            return "length"
        return "patience" if patience_ran_out(self.config.patience, self.evals) else None

    def _run(self) -> TrainResult:
        self.model.train()
        torch.set_rng_state(self.rng_state)
        self.status = "running"
        start = time.perf_counter() - self.elapsed
        chars_before, train_s_before = self.chars_seen, self.train_seconds
        meter = self.meter
        meter.restart_clock()
        eval_seconds = 0.0  # how long the last evaluation took; the final one will be alike
        last_eval_end = time.perf_counter()

        while True:
            # every rank's clock differs: all take the latest, so the learning rate is
            # the same everywhere and the run ends when any rank's budget is spent
            step_start = time.perf_counter()
            self.elapsed, with_eval = self.job.max(step_start - start, eval_seconds)
            if self.length_reached(self.elapsed + with_eval):
                break
            self._train_step(self.schedule(self.step, self.elapsed))
            if self.step % self.sync_every == 0 or self.step % self.config.log_every == 0:
                self._sync()
            if self.tuner is not None:
                self._tune_threads(step_start)
            self.train_seconds += time.perf_counter() - step_start
            meter.chars += self.batches.chars_per_step
            self.elapsed = time.perf_counter() - start
            if self.step % self.config.log_every == 0:
                meter.loss_sum = self.job.mean(meter.loss_sum)  # the mean over all streams
                meter.read()
                self._emit("on_log", train_record(self, meter))
            self._emit("on_step", step_stats(self, meter))
            stop, evaluate_now = self.job.any(
                self.stop_requested,
                eval_due(self, time.perf_counter() - last_eval_end, eval_seconds),
            )
            if stop:
                self.status = "interrupted"
                break
            if self.skip_streak >= self.config.max_skips:  # the same on every rank: see step
                self.status = "nonfinite"
                break
            if evaluate_now:
                eval_seconds = self._evaluate_and_save(start)
                last_eval_end = time.perf_counter()
                meter.restart_clock()  # keep evaluation time out of chars/s
                if patience_ran_out(self.config.patience, self.evals):
                    self.status = "patience"
                    break

        if self.status == "running":
            self.status = "finished"
            if not self.evals or self.evals[-1]["step"] != self.step:
                self._evaluate_and_save(start)
            else:
                self._save("last")  # the last evaluation saved it, but as still running
        else:  # interrupted, patience or non-finite: last.pt records why
            self.elapsed = time.perf_counter() - start
            self._save("last")
        return run_result(self, chars_before, train_s_before)

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
            _, state, loss = self.net(x, self.state, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        bad = ~(torch.isfinite(loss) & torch.isfinite(grad_norm))  # () bool, on the device
        bad = self.job.any_on_device(bad)  # a step is skipped on every rank or on none
        optimizer_step(self.optimizer, self.fused, bad)
        # a NaN must never reach the weights, nor the carried state (zero, as at a pass start)
        self.state = zero_where(detach_state(state), bad)
        self.tally.add(loss, bad)

        self.step += 1
        self.chars_seen += self.batches.chars_per_step
        self.window += 1
        if self.window == self.batches.n_windows:
            self.window = 0
            self.epoch += 1

    def _tune_threads(self, step_start: float) -> None:
        """Run the next step on the tuner's count; log a count it settles on."""
        if (run_on := self.tuner.step_ended(step_start)) is not None:
            set_threads(run_on)
        if self.tuner.threads != self.threads:
            self.threads = self.tuner.threads
            self.thread_steps.append((self.step, self.threads))
            self._emit("on_log", metric(self, "threads", threads=self.threads))

    def _sync(self) -> None:
        """Bring the device-side tally to the host: the interval's losses and the skips.

        `skip_streak` is the longest run of skips since the last read, so a run long
        enough to stop training is seen even if good steps followed it before the read.
        """
        loss_sum, counted, self.skip_streak, self.skipped_steps = self.tally.read()
        self.meter.add(loss_sum, counted)

    def length_reached(self, elapsed: float | None = None) -> bool:
        """Whether the run is done by steps or by the clock (`elapsed`, default: so far)."""
        elapsed = self.elapsed if elapsed is None else elapsed
        return self.schedule.length.reached(self.step, elapsed)

    # ------------------------------------------------------------ evaluation, checkpoints

    def _evaluate_and_save(self, start: float) -> float:
        """Evaluate in fp32 whatever the run trains in (so `charrnn eval` gives the same loss,
        on any machine), save last.pt (and best.pt on improvement); returns the seconds."""
        wait = time.perf_counter()
        self._sync()  # the metrics and the checkpoint record every step so far
        t0 = time.perf_counter()
        self.train_seconds += t0 - wait  # a GPU finishing queued steps is training time
        if len(self.val_ids) >= 2:
            val = evaluate_shared(self.model, self.val_ids, self.device, "fp32", self.job)
            best = self.best_val_loss
            is_best = math.isfinite(val) and (best is None or val < best)
            self.last_val_loss = val
            if is_best:
                self.best_val_loss = val
            self.evals.append({"step": self.step, "val_loss": val})
            self._emit("on_eval", EvalStats(self.step, val, is_best, time.perf_counter() - t0))
        else:  # no validation split: the newest model is the best we know of
            val, is_best = None, True
            self.evals.append({"step": self.step, "val_loss": None})
        self.elapsed = time.perf_counter() - start
        bpc = None if val is None else val / LN2
        self._emit("on_log", metric(self, "eval", val_loss=val, val_bpc=bpc))
        self._save("last")
        if is_best:
            self._save("best")
        return time.perf_counter() - t0

    def _save(self, kind: str) -> None:
        """Hand a checkpoint ("best" or "last") to the callbacks, which write it.
        Under torchrun every rank takes part (the state is gathered); rank 0 writes."""
        self._sync()  # the payload records every step so far
        self.meter.loss_sum = self.job.mean(self.meter.loss_sum)
        state = self.job.gather_rows(self.state)
        rng_states = self.job.gather_objects(rng_state(self.device))
        if self.job.is_main:
            self._emit("on_checkpoint", kind, payload(self, state, rng_states))


def take_machine(
    config: TrainConfig, device: torch.device | None = None
) -> tuple[torch.device, str, int]:
    """The device (the job's, under torchrun), precision and threads this machine gives
    the run (see charrnn.runtime)."""
    device = device or resolve_device(config.device)
    return device, resolve_precision(config.precision, device), set_threads(config.threads)


def schedule_for(config: TrainConfig) -> Schedule:
    warmup = warmup_steps(config.warmup_steps, config.max_steps)
    return Schedule(
        config.lr, config.min_lr_frac, warmup, Length(config.max_steps, config.time_budget)
    )


def run_result(trainer: Trainer, chars_before: int, train_s_before: float) -> TrainResult:
    """How the run went; the speed is this session's (since a resume, if any)."""
    t = trainer
    session_chars, session_s = t.chars_seen - chars_before, t.train_seconds - train_s_before
    return TrainResult(
        steps=t.step,
        chars_seen=t.chars_seen,
        elapsed=t.elapsed,
        chars_per_s=session_chars / max(session_s, 1e-9),
        best_val_loss=t.best_val_loss,
        final_val_loss=t.last_val_loss,
        status=t.status,
        skipped_steps=t.skipped_steps,
        evals=list(t.evals),
    )


def step_stats(trainer: Trainer, meter: IntervalMeter) -> StepStats:
    t = trainer
    return StepStats(
        step=t.step,
        epoch=t.epoch,
        train_loss=meter.loss,
        lr=t.optimizer.param_groups[0]["lr"],
        chars_seen=t.chars_seen,
        chars_per_s=meter.chars_per_s,
        elapsed=t.elapsed,
        progress=t.schedule.length.progress(t.step, t.elapsed),
        best_val_loss=t.best_val_loss,
    )


def train_record(trainer: Trainer, meter: IntervalMeter) -> dict:
    """A log interval's metrics record: its mean loss and speed."""
    speed = round(meter.chars_per_s, 1)
    return metric(trainer, "train", train_loss=meter.loss, chars_per_s=speed)


def metric(trainer: Trainer, event: str, **values) -> dict:
    """A metrics.jsonl record of where the run stands, with `values` (see METRIC_KEYS)."""
    t = trainer
    return metric_record(
        event,
        step=t.step,
        epoch=t.epoch,
        chars_seen=t.chars_seen,
        lr=t.optimizer.param_groups[0]["lr"],
        elapsed=round(t.elapsed, 3),
        skipped=t.skipped_steps,
        **values,
    )
