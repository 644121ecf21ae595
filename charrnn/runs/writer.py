"""What a training run leaves in its folder, written by one callback (RunFiles).

The trainer writes no files; it hands this callback its metrics records and
its checkpoints. Under distributed training only rank 0 attaches it.

    on_start       take the lock, check that nobody saved here since the run was
                   planned, remove temp files a killed process left, write
                   config.json, open metrics.jsonl after the resumed step
    on_log         one line of metrics.jsonl
    on_checkpoint  best.pt or last.pt, atomically, never with non-finite weights
    on_end         close metrics.jsonl, release the lock
"""

from __future__ import annotations

from pathlib import Path

import torch

from charrnn.checkpoint import BEST, LAST, load_checkpoint, run_checkpoint, save_checkpoint
from charrnn.data.cache import EncodedCorpus
from charrnn.distributed import Job
from charrnn.errors import CharrnnError
from charrnn.files import remove_stale_temp_files
from charrnn.model.config import ModelConfig
from charrnn.runs.lock import RunLock
from charrnn.runs.records import MetricsLog, run_config, write_run_config
from charrnn.train.callbacks import Callback
from charrnn.train.config import TrainConfig
from charrnn.train.loop import Trainer

FILE_NAMES = {"best": BEST, "last": LAST}


class RunFiles(Callback):
    """Keeps a run folder: checkpoints, metrics.jsonl and config.json, under the run lock."""

    def __init__(self, run_dir: Path, plan=None):
        self.run_dir = Path(run_dir)
        self.plan = plan  # the charrnn.runs.sizing.Plan that fitted the run, if one did
        self.lock = RunLock(self.run_dir)
        self.metrics = MetricsLog(self.run_dir)
        self.last_known: tuple | None = None  # (step, elapsed) of the newest last.pt we know

    def on_start(self, trainer: Trainer) -> None:
        # the lock comes first: the temp files removed next must not be a live trainer's
        self.lock.acquire()
        if trainer.resumed_from is not None and self.last_known is None:
            self.last_known = (trainer.resumed_from["step"], trainer.resumed_from["elapsed"])
        self._check_unchanged()
        remove_stale_temp_files(self.run_dir)
        write_run_config(self.run_dir, run_config(trainer, self.plan))
        self.metrics.open(up_to_step=trainer.step)

    def _check_unchanged(self) -> None:
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

    def on_log(self, record: dict) -> None:
        self.metrics.write(record)

    def on_checkpoint(self, kind: str, payload: dict) -> None:
        name = FILE_NAMES[kind]
        if not all(bool(torch.isfinite(t).all()) for t in payload["model"].values()):
            raise CharrnnError(
                f"the model's weights are no longer finite at step {payload['step']:,}; not "
                f"saving {name}, so {self.run_dir / BEST} and {self.run_dir / LAST} keep the "
                "last good model (try a lower --lr)"
            )
        save_checkpoint(payload, self.run_dir / name)
        if kind == "last":
            self.last_known = (payload["step"], payload["elapsed"])

    def on_end(self, trainer: Trainer) -> None:
        self.metrics.close()
        self.lock.release()


def run_trainer(
    corpus: EncodedCorpus,
    model_config: ModelConfig,
    config: TrainConfig,
    run_dir: Path,
    callback: Callback | None = None,
    resume: dict | None = None,
    job: Job | None = None,
    plan=None,
) -> Trainer:
    """A Trainer whose run is kept in `run_dir` (its RunFiles goes first, so the lock is
    taken before anything else happens), with `callback` after it. Under torchrun only
    rank 0 keeps the folder. `plan` (a fitted run's) goes into config.json."""
    callbacks = [callback] if callback is not None else []
    if job is None or job.is_main:
        callbacks.insert(0, RunFiles(run_dir, plan))
    return Trainer(corpus, model_config, config, callbacks, resume=resume, job=job)
