"""Runs as people list them: one summary per run folder (`charrnn runs`, `charrnn info`)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

from charrnn.checkpoint import BEST, LAST, load_checkpoint
from charrnn.errors import CharrnnError


@dataclass
class RunSummary:
    name: str
    path: Path
    cell: str
    layers: int
    hidden: int
    parameters: int
    steps: int
    chars_seen: int
    best_val_loss: float | None
    elapsed: float
    created: dt.datetime
    status: str

    @property
    def best_val_bpc(self) -> float | None:
        return None if self.best_val_loss is None else self.best_val_loss / math.log(2)


def summarize_checkpoint(ckpt: dict) -> dict:
    """The numbers people ask about a checkpoint, from a loaded checkpoint dict."""
    model = ckpt["model_config"]
    return {
        "path": ckpt["path"],
        "cell": model["cell"],
        "layers": model["layers"],
        "hidden": model["hidden"],
        "parameters": sum(t.numel() for t in ckpt["model"].values()),
        "steps": ckpt.get("step", 0),
        "epoch": ckpt.get("epoch", 0),
        "chars_seen": ckpt.get("chars_seen", 0),
        "elapsed": ckpt.get("elapsed", 0.0),
        "val_loss": ckpt.get("val_loss"),
        "best_val_loss": ckpt.get("best_val_loss"),
        "skipped_steps": ckpt.get("skipped_steps", 0),
        "status": ckpt.get("status", "unknown"),
        "created": ckpt.get("created"),
    }


def list_runs(out_dir: Path) -> tuple[list[RunSummary], list[tuple[Path, str]]]:
    """Every run folder under `out_dir` (oldest first), and the ones that could not be read."""
    runs, unreadable = [], []
    out_dir = Path(out_dir)
    folders = sorted(p for p in out_dir.iterdir() if p.is_dir()) if out_dir.is_dir() else []
    for run_dir in folders:
        path = run_dir / LAST if (run_dir / LAST).is_file() else run_dir / BEST
        if not path.is_file():
            continue
        try:
            s = summarize_checkpoint(load_checkpoint(path, mmap=True, verify=False))
        except CharrnnError as e:
            unreadable.append((run_dir, str(e)))
            continue
        created = s["created"]
        created = (
            dt.datetime.fromisoformat(created)
            if isinstance(created, str)
            else dt.datetime.fromtimestamp(path.stat().st_mtime)
        )
        runs.append(
            RunSummary(
                name=run_dir.name,
                path=run_dir,
                cell=s["cell"],
                layers=s["layers"],
                hidden=s["hidden"],
                parameters=s["parameters"],
                steps=s["steps"],
                chars_seen=s["chars_seen"],
                best_val_loss=s["best_val_loss"],
                elapsed=s["elapsed"],
                created=created,
                status=s["status"],
            )
        )
    runs.sort(key=lambda r: r.created)
    return runs, unreadable
