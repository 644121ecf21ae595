"""TrainConfig and the training loop. Reports through a callback; never prints.

One step: take the next TBPTT window of every stream, run it from the carried
state, AdamW with gradient-norm clipping, then detach the state. The learning
rate warms up linearly, then follows a cosine to `min_lr_frac * lr` over the
run's length, measured in steps or in wall-clock time, whichever ends first.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn import __version__
from charrnn.checkpoint import BEST, LAST, save_checkpoint, write_run_config
from charrnn.data import (
    IGNORE_INDEX,
    EncodedCorpus,
    StreamBatches,
    check_corpus_size,
    eval_windows,
    split_train_val,
)
from charrnn.errors import CharrnnError
from charrnn.model import CharRNN, ModelConfig, State, detach_state, resolve_device

DEFAULT_TIME_BUDGET = 180.0  # seconds, when neither max_steps nor time_budget is given
# Automatic evaluation: often enough to keep best.pt fresh, rarely enough that the
# full pass over the validation split stays near 5% of the wall clock.
AUTO_EVAL_SHARE = 0.05
AUTO_EVAL_MIN_INTERVAL = 30.0  # seconds
LN2 = math.log(2)


@dataclass
class TrainConfig:
    batch_size: int = 32
    seq_len: int = 100
    lr: float = 5e-3
    min_lr_frac: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    val_frac: float = 0.1
    max_steps: int | None = None
    time_budget: float | None = None  # seconds of wall clock, evaluations included
    eval_every: int | None = None  # None: auto (see Trainer._eval_due); 0: only at the end
    log_every: int = 10
    rng_seed: int = 1337
    device: str = "auto"

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
    interrupted: bool
    evals: list[dict] = field(default_factory=list)

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
def evaluate(model: CharRNN, ids: np.ndarray, device: torch.device) -> float:
    """Mean cross-entropy (nats/char) over every character of `ids` after the first,
    with the state carried along each evaluation stream."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    state = None
    for x, y in eval_windows(ids):
        x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        logits, state, _ = model(x, state)  # (S, W, V)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            y.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        total += loss.double()
        count += int((y != IGNORE_INDEX).sum())
    model.train(was_training)
    if count == 0:
        raise CharrnnError("the validation split has no characters to evaluate")
    return total.item() / count


def check_same_corpus(ckpt: dict, corpus: EncodedCorpus) -> None:
    """A run resumes only on the text it started with (compared by SHA-256)."""
    if ckpt.get("corpus_sha256") != corpus.sha256:
        raise CharrnnError(
            f"cannot resume {ckpt.get('path')}: it was trained on a different corpus "
            f"({ckpt.get('corpus_path')})"
        )


class IntervalMeter:
    """Mean training loss and chars/s over the last log interval.

    Losses add up on the device; `read` is the one host sync per interval, so a
    GPU is never stalled to print a number.
    """

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.steps = 0
        self.chars = 0
        self.since = time.perf_counter()
        self.loss: float | None = None  # None until the first read
        self.chars_per_s = 0.0

    def add(self, loss: torch.Tensor, chars: int) -> None:
        self.loss_sum += loss
        self.steps += 1
        self.chars += chars

    def read(self) -> None:
        now = time.perf_counter()
        self.loss = (self.loss_sum / self.steps).item()
        self.chars_per_s = self.chars / max(now - self.since, 1e-9)
        self.loss_sum.zero_()
        self.steps = self.chars = 0
        self.since = now

    def restart_clock(self) -> None:
        self.chars = 0
        self.since = time.perf_counter()


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
        check_corpus_size(corpus, config.batch_size, config.seq_len, config.val_frac)

        torch.manual_seed(config.rng_seed)
        self.model = CharRNN(model_config).to(self.device)
        # dropout draws from torch's global generator: keep this run's own stream of it,
        # so other work between here and run() (or a resume) cannot shift it
        self.rng_state = torch.get_rng_state()
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        train_ids, self.val_ids = split_train_val(corpus.ids, config.val_frac)
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
        self.stop_requested = False
        if resume is not None:
            self._restore(resume)

    # ------------------------------------------------------------ public

    def request_stop(self) -> None:
        """Finish the current step, save last.pt and return (safe from a signal handler)."""
        self.stop_requested = True

    def run(self) -> TrainResult:
        write_run_config(self.run_dir, self._run_config())
        self.callback.on_start(self)
        self.model.train()
        torch.set_rng_state(self.rng_state)
        start = time.perf_counter() - self.elapsed
        chars_before, train_s_before = self.chars_seen, self.train_seconds
        meter = IntervalMeter(self.device)
        eval_seconds = 0.0  # how long the last evaluation took; the final one will be alike
        last_eval_end = time.perf_counter()

        while not self.length_reached(time.perf_counter() - start + eval_seconds):
            step_start = time.perf_counter()
            self.elapsed = step_start - start
            loss = self._train_step(self._lr(self.elapsed))
            self.train_seconds += time.perf_counter() - step_start
            meter.add(loss, self.batches.chars_per_step)
            if self.step % self.config.log_every == 0:
                meter.read()
            self.elapsed = time.perf_counter() - start
            self.callback.on_step(self._step_stats(meter))
            if self.stop_requested:
                break
            if self._eval_due(time.perf_counter() - last_eval_end, eval_seconds):
                eval_seconds = self._evaluate_and_save(start)
                last_eval_end = time.perf_counter()
                meter.restart_clock()  # keep evaluation time out of chars/s

        if self.stop_requested:
            self.elapsed = time.perf_counter() - start
            self._save(LAST)
        elif not self.evals or self.evals[-1]["step"] != self.step:
            self._evaluate_and_save(start)
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
            interrupted=self.stop_requested,
            evals=list(self.evals),
        )

    # ------------------------------------------------------------ the step

    def _train_step(self, lr: float) -> torch.Tensor:
        if self.window == 0:
            self.state = None  # a new pass over the data starts from a zero state
        x, y = self.batches.window(self.window)
        x = torch.from_numpy(x).to(self.device, non_blocking=True)  # (B, T)
        y = torch.from_numpy(y).to(self.device, non_blocking=True)  # (B, T)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        _, state, loss = self.model(x, self.state, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.state = detach_state(state)

        self.step += 1
        self.chars_seen += self.batches.chars_per_step
        self.window += 1
        if self.window == self.batches.n_windows:
            self.window = 0
            self.epoch += 1
        return loss.detach()

    def _eval_due(self, since_last_eval: float, eval_seconds: float) -> bool:
        every = self.config.eval_every
        if every is None:  # auto: by the clock, scaled to what an evaluation costs
            return since_last_eval >= max(AUTO_EVAL_MIN_INTERVAL, eval_seconds / AUTO_EVAL_SHARE)
        return every > 0 and self.step % every == 0

    def _progress(self, elapsed: float) -> float:
        cfg = self.config
        parts = []
        if cfg.max_steps:
            parts.append(self.step / cfg.max_steps)
        if cfg.time_budget:
            parts.append(elapsed / cfg.time_budget)
        return min(1.0, max(parts))

    def length_reached(self, elapsed: float | None = None) -> bool:
        """Whether the run is done by steps or by the clock (`elapsed`, default: so far)."""
        cfg = self.config
        elapsed = self.elapsed if elapsed is None else elapsed
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            return True
        return cfg.time_budget is not None and elapsed >= cfg.time_budget

    def _lr(self, elapsed: float) -> float:
        cfg = self.config
        warmup = min(1.0, (self.step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        cosine = 0.5 * (1 + math.cos(math.pi * self._progress(elapsed)))
        return cfg.lr * warmup * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * cosine)

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
        t0 = time.perf_counter()
        if len(self.val_ids) >= 2:
            val = evaluate(self.model, self.val_ids, self.device)
            is_best = self.best_val_loss is None or val < self.best_val_loss
            self.last_val_loss = val
            if is_best:
                self.best_val_loss = val
            self.evals.append({"step": self.step, "val_loss": val})
            self.callback.on_eval(EvalStats(self.step, val, is_best, time.perf_counter() - t0))
        else:  # no validation split: the newest model is the best we know of
            is_best = True
            self.evals.append({"step": self.step, "val_loss": None})
        self.elapsed = time.perf_counter() - start
        self._save(LAST)
        if is_best:
            self._save(BEST)
        return time.perf_counter() - t0

    def _save(self, name: str) -> None:
        path = self.run_dir / name
        save_checkpoint(self._payload(), path)
        self.callback.on_save(path)

    def _payload(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "charrnn_version": __version__,
            "model_config": self.model.config.to_dict(),
            "train_config": self.config.to_dict(),
            "vocab": self.corpus.vocab.to_dict(),
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
            "state": self.state,
            "rng": rng,
        }

    def _restore(self, ckpt: dict) -> None:
        check_same_corpus(ckpt, self.corpus)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for key in ("step", "epoch", "window", "chars_seen", "elapsed", "train_seconds"):
            setattr(self, key, ckpt[key])
        self.best_val_loss = ckpt["best_val_loss"]
        self.last_val_loss = ckpt["val_loss"]
        self.evals = list(ckpt["evals"])
        old = ckpt["train_config"]
        if (old["batch_size"], old["seq_len"]) == (self.config.batch_size, self.config.seq_len):
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

    def _run_config(self) -> dict:
        return {
            "charrnn_version": __version__,
            "corpus": str(self.corpus.path),
            "corpus_sha256": self.corpus.sha256,
            "vocab_size": len(self.corpus.vocab),
            "parameters": self.model.num_parameters(),
            "model": self.model.config.to_dict(),
            "train": self.config.to_dict(),
            "device": str(self.device),
        }
