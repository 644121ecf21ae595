"""A trainer's position and history <-> a checkpoint payload, which is plain data:
tensors, numbers, strings, lists and dicts (charrnn.checkpoint writes and reads it).

`payload` and `restore` round-trip: a run saved at step n and resumed goes on
exactly as if it had never stopped (same batches, state, dropout draws and
learning rate), unless a schedule option changed (see `resumed_segment`).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import torch

from charrnn import __version__
from charrnn.data.cache import EncodedCorpus
from charrnn.errors import CharrnnError
from charrnn.inference import map_state
from charrnn.train.config import MACHINE_OPTIONS
from charrnn.train.optim import load_optimizer_state
from charrnn.train.schedule import Segment

if TYPE_CHECKING:
    from charrnn.train.protocol import TrainerLike

# what the learning rate follows: a change to any of them on resume starts a new segment
SCHEDULE_OPTIONS = ("max_steps", "time_budget", "lr", "min_lr_frac", "warmup_steps")


def payload(trainer: TrainerLike, state=None, rng_states: list | None = None) -> dict:
    """Everything a checkpoint holds, as plain data: what sampling needs (configs, vocabulary,
    weights) and what resuming needs (optimizer, position, carried state, RNG, schedule).

    Under torchrun, `state` is every rank's carried state gathered in stream order and
    `rng_states` each rank's `rng_state(device)`, rank 0's first; by default, this
    process's own."""
    rng = dict(rng_states[0]) if rng_states else rng_state(trainer.device)
    if rng_states is not None and len(rng_states) > 1:
        rng["ranks"] = list(rng_states)
    return {
        "charrnn_version": __version__,
        "model_config": trainer.model.config.to_dict(),
        "train_config": trainer.config.to_dict(),
        "vocab": trainer.corpus.vocab.to_dict(),
        "text_config": asdict(trainer.corpus.text_config),
        "tokenizer_config": asdict(trainer.corpus.tokenizer_config),
        "corpus_sha256": trainer.corpus.sha256,
        "corpus_path": str(trainer.corpus.path),
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "step": trainer.step,
        "epoch": trainer.epoch,
        "window": trainer.window,
        "chars_seen": trainer.chars_seen,
        "elapsed": trainer.elapsed,
        "train_seconds": trainer.train_seconds,
        "val_loss": trainer.last_val_loss,
        "best_val_loss": trainer.best_val_loss,
        "evals": list(trainer.evals),
        "skipped_steps": trainer.skipped_steps,
        # the open log interval, so the first logged loss after a resume is the same mean
        "log_interval": {"loss_sum": trainer.meter.loss_sum, "steps": trainer.meter.steps},
        "status": trainer.status,
        "created": trainer.created,
        "state": trainer.state if state is None else state,  # (layers, B, H) or an LSTM pair
        "rng": rng,
        "schedule": trainer.schedule.segment.to_dict(),
        "train_ids": trainer.train_size,  # where the validation split begins
        "machine": trainer.machine.to_dict(),
    }


def restore(trainer: TrainerLike, ckpt: dict) -> None:
    """Put a trainer where the checkpoint `ckpt` left its run."""
    check_same_corpus(ckpt, trainer.corpus)
    trainer.model.load_state_dict(ckpt["model"])
    load_optimizer_state(trainer.optimizer, ckpt["optimizer"], trainer.fused)
    for key in ("step", "epoch", "window", "chars_seen", "elapsed", "train_seconds"):
        setattr(trainer, key, ckpt[key])
    trainer.best_val_loss = ckpt["best_val_loss"]
    trainer.last_val_loss = ckpt["val_loss"]
    trainer.evals = list(ckpt["evals"])
    trainer.skipped_steps = ckpt.get("skipped_steps", 0)
    interval = ckpt.get("log_interval", {})
    trainer.meter.loss_sum = interval.get("loss_sum", 0.0)
    trainer.meter.steps = interval.get("steps", 0)
    trainer.created = ckpt.get("created", trainer.created)
    # SentencePiece runs of an older charrnn split the ids elsewhere (and their model
    # saw validation text): say so, since their val losses compare different texts
    stored = ckpt.get("train_ids")
    if stored is None:
        trainer.split_moved = trainer.corpus.train_ids is not None
    else:
        trainer.split_moved = stored != trainer.train_size
    old = ckpt["train_config"]
    trainer.recorded_machine = ckpt.get("machine") or {
        key: old.get(key) for key in MACHINE_OPTIONS if old.get(key) not in (None, "auto")
    }  # a checkpoint from before the machine was recorded: its explicit options
    trainer.schedule = replace(trainer.schedule, segment=resumed_segment(trainer, ckpt))
    same_streams = (old["batch_size"], old["seq_len"]) == (
        trainer.config.batch_size,
        trainer.config.seq_len,
    )
    if same_streams and trainer.window < trainer.batches.n_windows:
        # the state is saved by global stream index: take this rank's streams of it
        rows = trainer.job.rows(trainer.config.batch_size)
        trainer.state = map_state(lambda s: s[:, rows].to(trainer.device), ckpt["state"])
    else:  # the streams are cut differently now: start a fresh pass over the data
        trainer.window, trainer.state = 0, None
    mine = rank_rng(trainer, ckpt["rng"])
    trainer.rng_state = mine["torch"]
    if trainer.device.type == "cuda":  # where dropout draws on a GPU
        if "cuda" in mine:
            torch.cuda.set_rng_state(mine["cuda"], trainer.device)
        elif "seed" in mine:
            torch.cuda.manual_seed(mine["seed"])


def rank_seed(seed: int, step: int, rank: int) -> int:
    """A seed for a rank's own dropout draws, apart from every other rank's."""
    return (seed * 1_000_003 + step * 9_176 + rank) % (1 << 63)


def rng_state(device: torch.device) -> dict:
    """The generators dropout draws from: torch's, and the GPU's on CUDA."""
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def rank_rng(trainer: TrainerLike, rng: dict) -> dict:
    """This rank's generators: its own from the checkpoint when the run had as many
    ranks, rank 0's for rank 0, else fresh ones of its own (a "seed" for the GPU's)."""
    job = trainer.job
    ranks = rng.get("ranks") or [rng]
    if len(ranks) == job.world:
        return ranks[job.rank]
    if job.rank == 0:
        return rng
    seed = rank_seed(trainer.config.rng_seed, trainer.step, job.rank)
    return {"torch": torch.Generator().manual_seed(seed).get_state(), "seed": seed}


def resumed_segment(trainer: TrainerLike, ckpt: dict) -> Segment:
    """The schedule goes on where it was; a new length starts a new segment from
    the learning rate the run had reached (see charrnn.train.schedule)."""
    old, new = ckpt["train_config"], trainer.config.to_dict()
    segment = Segment(**ckpt["schedule"]) if "schedule" in ckpt else Segment()
    if trainer.step == 0 or all(old.get(key) == new[key] for key in SCHEDULE_OPTIONS):
        return segment  # (at step 0 no learning rate was reached: warm up as new)
    reached = ckpt["optimizer"]["param_groups"][0]["lr"]  # the last step's
    return Segment(step=trainer.step, elapsed=trainer.elapsed, lr=reached)


def check_same_corpus(ckpt: dict, corpus: EncodedCorpus) -> None:
    """A run resumes only on the text it started with (compared by SHA-256)."""
    if ckpt.get("corpus_sha256") != corpus.sha256:
        raise CharrnnError(
            f"cannot resume {ckpt.get('path')}: it was trained on a different corpus "
            f"({ckpt.get('corpus_path')})"
        )
