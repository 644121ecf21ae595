"""What a run folder records: config.json, metrics.jsonl, and option files to replay.

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
import json
import math
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn import __version__
from charrnn.errors import CharrnnError
from charrnn.files import atomic_write, describe_os_error, write_error
from charrnn.train.config import MACHINE_OPTIONS

if TYPE_CHECKING:
    from charrnn.train.loop import Trainer

CONFIG, METRICS, PLOT = "config.json", "metrics.jsonl", "loss.png"

# config.json keys that describe the run rather than set an option
RUN_INFO_KEYS = {"charrnn_version", "info", "plan"}
# ------------------------------------------------------------------ config.json


def data_options(text_config: dict, tokenizer_config: dict) -> dict:
    """Stored text and tokenizer configs under their option names (`kind` is
    --tokenizer), as config.json, `info` and resume checks show them."""
    tokenizer = dict(tokenizer_config)
    return {**text_config, "tokenizer": tokenizer.pop("kind"), **tokenizer}


def run_config(trainer: Trainer, plan=None) -> dict:
    """config.json: the options (replayable with `--config`), what they resolved to, and
    the plan (charrnn.runs.sizing.Plan) that fitted them, if one did."""
    model_options = trainer.model.config.to_dict()
    vocab_size = model_options.pop("vocab_size")  # follows from the corpus, not an option
    return {
        "charrnn_version": __version__,
        "corpus": list(trainer.corpus.sources),
        "data": data_options(
            asdict(trainer.corpus.text_config), asdict(trainer.corpus.tokenizer_config)
        ),
        "model": model_options,
        "train": trainer.config.to_dict(),
        "info": {
            "corpus_sha256": trainer.corpus.sha256,
            "characters": trainer.corpus.characters,
            "ids": len(trainer.corpus),
            "vocab_size": vocab_size,
            "parameters": trainer.model.num_parameters(),
            "device": str(trainer.device),
            "precision": trainer.precision,
            "threads": trainer.threads,
            "processes": trainer.job.world,
            "created": trainer.created,
        },
        **({"plan": plan.to_dict()} if plan is not None else {}),
    }


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
