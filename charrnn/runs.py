"""Run folders and what they record: config.json, metrics.jsonl, option files, summaries.

A run folder (`checkpoints/NAME/`) holds:

    best.pt        lowest validation loss so far
    last.pt        newest state, for resuming
    config.json    every option, resolved; replayable with `--config`
    metrics.jsonl  one JSON object per log interval or evaluation
    loss.png       the loss curves, when matplotlib is installed

This module imports neither torch nor numpy at load time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import CharrnnError
from charrnn.files import atomic_write, describe_os_error, write_error

CONFIG, METRICS, PLOT = "config.json", "metrics.jsonl", "loss.png"

# every metrics record has all of these keys; those that do not apply are null
METRIC_KEYS = (
    "event",  # "train" (a log interval) or "eval"
    "step",
    "epoch",
    "chars_seen",
    "train_loss",  # nats/char, mean over the log interval
    "val_loss",  # nats/char over the whole validation split
    "val_bpc",  # bits/char
    "lr",
    "chars_per_s",
    "elapsed",  # seconds of wall clock since the run began, across resumes
    "skipped",  # non-finite steps skipped so far
)

# config.json keys that describe the run rather than set an option
RUN_INFO_KEYS = {"charrnn_version", "info"}
# options that belong to the machine, not the run: a resumed run, or one replayed
# from another run's config.json, takes them from this machine
MACHINE_OPTIONS = ("device", "precision", "threads")


# ------------------------------------------------------------------ config.json


def data_options(text_config: dict, tokenizer_config: dict) -> dict:
    """Stored text and tokenizer configs under their option names (`kind` is
    --tokenizer), as config.json, `info` and resume checks show them."""
    tokenizer = dict(tokenizer_config)
    return {**text_config, "tokenizer": tokenizer.pop("kind"), **tokenizer}


def write_run_config(run_dir: Path, config: dict) -> None:
    """The run's resolved options as `config.json`, for people and tools to read."""
    text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    atomic_write(Path(run_dir) / CONFIG, lambda f: f.write(text.encode("utf-8")))


@dataclass
class OptionsFile:
    options: dict  # flat {option_name: value}
    recorded_machine: dict | None  # a run's config.json: what that run ran on


def load_options_file(path: Path) -> OptionsFile:
    """Options from a TOML file or a run's config.json.

    Keys may use `-` or `_`; `[data]`, `[model]` and `[train]` tables (config.json's
    layout) are flattened; the run description config.json also carries is
    ignored. A run's config.json does not set MACHINE_OPTIONS: they describe the
    machine that run had; a TOML file a person wrote does. Which names are options
    is for the caller to check.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CharrnnError(f"config file {path}: no such file") from None
    except OSError as e:
        raise CharrnnError(f"config file {path}: {describe_os_error(e)}") from None
    try:
        text = raw.decode("utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise CharrnnError(f"config file {path} cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise CharrnnError(f"config file {path} must hold a table of options")

    options: dict = {}
    for key, value in data.items():
        if key in RUN_INFO_KEYS:
            continue
        if key in ("data", "model", "train") and isinstance(value, dict):
            options.update(value)
        else:
            options[key] = value
    options = {key.replace("-", "_"): value for key, value in options.items()}
    info = data.get("info")
    if not isinstance(info, dict):
        return OptionsFile(options, None)
    for key in MACHINE_OPTIONS:
        options.pop(key, None)
    return OptionsFile(options, {k: info[k] for k in MACHINE_OPTIONS if k in info})


# ------------------------------------------------------------------ metrics.jsonl


def metric_record(event: str, **values) -> dict:
    unknown = set(values) - set(METRIC_KEYS)
    if unknown:
        raise ValueError(f"unknown metric keys {sorted(unknown)}")
    record = dict.fromkeys(METRIC_KEYS)
    record.update(event=event, **values)
    return record


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of a run's metrics.jsonl. A line torn by a crash is skipped."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


class MetricsLog:
    """Appends records to metrics.jsonl, one line each, flushed as written."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS
        self.file = None

    def open(self, up_to_step: int) -> None:
        """Start appending after `up_to_step`.

        A run killed after its last checkpoint logged steps it will now train
        again; those records are dropped so every step appears once.
        """
        records = read_metrics(self.path.parent)
        kept = [r for r in records if r["step"] <= up_to_step]
        if self.path.exists() and (len(kept) != len(records) or not _ends_cleanly(self.path)):
            text = "".join(json.dumps(r) + "\n" for r in kept)
            atomic_write(self.path, lambda f: f.write(text.encode("utf-8")))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, record: dict) -> None:
        clean = {k: _json_number(v) for k, v in record.items()}
        try:
            self.file.write(json.dumps(clean) + "\n")
            self.file.flush()
        except OSError as e:
            raise write_error(self.path, e) from None

    def close(self) -> None:
        if self.file is not None:
            # a failed write already said why; its lines are lost either way
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None


def _ends_cleanly(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, 2)
        if f.tell() == 0:
            return True
        f.seek(-1, 2)
        return f.read(1) == b"\n"


def _json_number(value):
    """JSON has no NaN or infinity; write null rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------ summaries


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
    from charrnn.checkpoint import BEST, LAST, load_checkpoint

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
