"""The models a server offers: which checkpoints, under which names, and what people
see of each (`/v1/models`, the page's picker and loss curve).

Requests name a model by its id from this list; no text from a request ever becomes
a path (`ServedModel.loss_curve` reads the run folder chosen when the server started).
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.checkpoint import BEST, LAST, load_checkpoint, restore_model, run_checkpoint
from charrnn.errors import CheckpointError
from charrnn.runs.records import METRICS, read_metrics


@dataclass
class ModelSource:
    """A checkpoint to serve and the id requests call it by."""

    id: str
    path: Path

    @property
    def run_dir(self) -> Path | None:
        """The run folder, where the checkpoint is one of a run's (metrics.jsonl)."""
        return self.path.parent if self.path.name in (BEST, LAST) else None


def find_models(targets: list[str | os.PathLike], out: str | os.PathLike) -> list[ModelSource]:
    """Each target (a .pt file, a run folder, or a run's name under `out`) as a model
    source; with no targets, the best checkpoint of every run under `out`."""
    out = Path(out)
    if targets:
        paths = [checkpoint_of(Path(t), out) for t in targets]
    else:
        runs = sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []
        paths = [c for c in map(run_checkpoint, runs) if c is not None]
        if not paths:
            raise CheckpointError(
                f"no checkpoints under {out}/; train a model first, or name a checkpoint"
            )
    return name_models(paths)


def checkpoint_of(target: Path, out: Path) -> Path:
    if target.is_file():
        return target
    for folder in (target, out / target):
        if folder.is_dir() and (found := run_checkpoint(folder)) is not None:
            return found
    if target.is_dir() or (out / target).is_dir():
        raise CheckpointError(f"{target} has no best.pt or last.pt")
    raise CheckpointError(f"{target} is neither a checkpoint, a run folder nor a run under {out}/")


def name_models(paths: list[Path]) -> list[ModelSource]:
    """A run's checkpoint is called by the run's name, any other file by its stem;
    a name taken twice gets the file's stem after a colon (`shakespeare:last`)."""
    names = [p.parent.name if p.name in (BEST, LAST) else p.stem for p in paths]
    sources, taken = [], set()
    for name, path in zip(names, paths, strict=True):
        if names.count(name) > 1:
            name = f"{name}:{path.stem}"
        if name in taken:
            raise CheckpointError(f"{path} is given twice")
        taken.add(name)
        sources.append(ModelSource(name, path.resolve()))
    return sources


@dataclass
class ServedModel:
    """A loaded model: weights on the device, tokenizer, and the card people see."""

    source: ModelSource
    model: object  # CharRNN, in eval mode
    vocab: object  # Tokenizer
    card: dict = field(default_factory=dict)
    _web: tuple[dict, bytes] | None = field(default=None, repr=False)  # see web_model
    _web_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def id(self) -> str:
        return self.source.id

    def web_model(self) -> tuple[dict, bytes]:
        """The manifest and fp32 weights the playground's runtime opens (charrnn.web),
        made on first asking (the views may never be used) and kept; made once even when
        the manifest and the weights are asked for together."""
        from charrnn.export.pack import web_model

        with self._web_lock:
            if self._web is None:
                self._web = web_model(self.model, self.vocab, self.id)
            return self._web

    def loss_curve(self) -> dict:
        """The run's training and validation losses, for the page's chart."""
        run_dir = self.source.run_dir
        records = read_metrics(run_dir) if run_dir is not None else []

        def points(event: str, key: str) -> list[list[float]]:
            return [
                [r["step"], r[key]]
                for r in records
                if r.get("event") == event and _finite(r.get(key))
            ]

        return {
            "object": "loss_curve",
            "model": self.id,
            "unit": self.card["unit"],
            "train": points("train", "train_loss"),
            "val": points("eval", "val_loss"),
        }


def load_model(source: ModelSource, device) -> ServedModel:
    """Read one checkpoint onto `device`; a damaged one is a CheckpointError."""
    ckpt = load_checkpoint(source.path)
    model, vocab = restore_model(ckpt, device)
    return ServedModel(source, model, vocab, model_card(source, ckpt, vocab))


def model_card(source: ModelSource, ckpt: dict, vocab) -> dict:
    """What /v1/models says of a model beyond OpenAI's fields: charrnn's own."""
    best = ckpt.get("best_val_loss")
    config = ckpt["model_config"]
    return {
        "tokenizer": vocab.kind,
        "vocab_size": len(vocab),
        "unit": vocab.unit,
        "best_val_loss": best if _finite(best) else None,
        "best_val_bits": best / math.log(2) if _finite(best) else None,
        "steps": ckpt.get("step", 0),
        "cell": config["cell"],
        "layers": config["layers"],
        "hidden": config["hidden"],
        "checkpoint": source.path.name,
        "has_loss_curve": source.run_dir is not None and (source.run_dir / METRICS).is_file(),
        "created": ckpt.get("created"),
    }


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
