"""What a `train` command means before any slow work: which run folder, whether it goes
on from a checkpoint, and with which configs. The CLI, the Python API and (later) a
torchrun entry point all ask `plan_run`, then `plan_configs` once the corpus is read.

A new run gets a folder no run has used. A resume (`resume` is a run name, a path,
or "" for --name or the newest run) goes on from its last.pt:

- the text, tokenizer and model options are the checkpoint's; one given on the command
  line that disagrees is refused, since it would make another run;
- so are --val-frac and --eval-size: another validation split would train on text that
  was validation, and best losses would compare different texts;
- training options given on the command line win (a longer --time); a new length
  starts a schedule segment (charrnn.train.state.resumed_segment);
- device, precision and threads belong to this machine, never to the recorded run.

Every refusal is a CharrnnError with one line that says what to do instead.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

from charrnn.checkpoint import LAST, load_checkpoint, newest_run, restore_tokenizer, run_checkpoint
from charrnn.data.cache import EncodedCorpus
from charrnn.distributed import Job
from charrnn.errors import CharrnnError
from charrnn.model.config import ModelConfig
from charrnn.options import flag_name, format_duration, option_fields
from charrnn.runs.lock import check_run_free
from charrnn.runtime import resolve_device, resolve_precision
from charrnn.text.base import Tokenizer
from charrnn.text.config import LEGACY_TEXT, TextConfig, TokenizerConfig
from charrnn.train.config import MACHINE_OPTIONS, TrainConfig
from charrnn.train.loop import Trainer

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def option_names(config: type) -> tuple[str, ...]:
    return tuple(f.name for f, _ in option_fields(config))


TEXT_OPTIONS = option_names(TextConfig)
TOKENIZER_OPTIONS = option_names(TokenizerConfig)
MODEL_OPTIONS = option_names(ModelConfig)
DATA_OPTIONS = TEXT_OPTIONS + TOKENIZER_OPTIONS + MODEL_OPTIONS
VALIDATION_OPTIONS = ("val_frac", "eval_size")
FLAGS = {
    f.name: flag_name(f, spec)
    for config in (TextConfig, TokenizerConfig, ModelConfig, TrainConfig)
    for f, spec in option_fields(config)
}


@dataclass
class RunPlan:
    """Where a run trains and what it reads the corpus with."""

    run_dir: Path
    checkpoint: dict | None  # the last.pt a resume goes on from; None for a new run
    text_config: TextConfig
    tokenizer_config: TokenizerConfig
    val_frac: float

    @property
    def out(self) -> Path:
        return self.run_dir.parent

    @cached_property
    def tokenizer(self) -> Tokenizer | None:
        """A resumed run encodes with its own tokenizer, never a new one."""
        return None if self.checkpoint is None else restore_tokenizer(self.checkpoint)

    @property
    def corpus_sha256(self) -> str | None:
        """A resumed run reads only the corpus it started with."""
        return None if self.checkpoint is None else self.checkpoint.get("corpus_sha256")


def plan_run(
    corpus: Path,
    options: dict,
    given: set[str],
    run_name: str | None = None,
    out: Path = Path("checkpoints"),
    resume: str | None = None,
) -> RunPlan:
    """The run folder and data configs of `charrnn train CORPUS [options]`.

    `options` holds every option by field name (TrainConfig, ModelConfig, TextConfig and
    TokenizerConfig fields); `given` names those the user set, which on resume must agree
    with the checkpoint or override it. Refuses, before any slow work, what this machine
    cannot run and a folder another process trains into.
    """
    if run_name is not None and not RUN_NAME.match(run_name):
        raise CharrnnError(f"--name {run_name!r}: use letters, digits, '.', '_' and '-' only")
    resolve_precision(options["precision"], resolve_device(options["device"]))
    if resume is not None:
        run_dir, ckpt = resume_target(resume, run_name, Path(out))
        refuse_clashes(
            ckpt, options, given, ckpt["train_config"], VALIDATION_OPTIONS,
            "a run keeps the validation split it started with",
        )  # fmt: skip
    else:
        run_dir, ckpt = Path(out) / (run_name or default_run_name(Path(corpus), Path(out))), None
    check_run_free(run_dir)  # the trainer holds the lock; this refuses before slow work
    if ckpt is None:
        refuse_existing_run(run_dir)
    text_config, tokenizer_config = data_configs(options, given, ckpt)
    if ckpt is not None:  # refused here, before the corpus is read, not after
        refuse_clashes(
            ckpt, options, given, ckpt["model_config"], MODEL_OPTIONS, prefix="a different model: "
        )
    val_frac = options["val_frac"] if ckpt is None else ckpt["train_config"]["val_frac"]
    return RunPlan(run_dir, ckpt, text_config, tokenizer_config, val_frac)


def plan_job_run(
    job: Job,
    corpus: Path,
    options: dict,
    given: set[str],
    run_name: str | None = None,
    out: Path = Path("checkpoints"),
    resume: str | None = None,
) -> RunPlan:
    """`plan_run` for one rank of a torchrun job: rank 0 plans, and the others plan the
    folder it chose (a new run's default name carries the clock, which differs per
    process; "the newest run" could change between two looks)."""
    if not job.active:
        return plan_run(corpus, options, given, run_name, out, resume)
    plan = plan_run(corpus, options, given, run_name, out, resume) if job.is_main else None
    chosen = job.share(None if plan is None else (str(plan.run_dir), plan.checkpoint is not None))
    if plan is not None:
        return plan
    run_dir, resumed = Path(chosen[0]), chosen[1]
    if resumed:
        return plan_run(corpus, options, given, None, run_dir.parent, str(run_dir))
    return plan_run(corpus, options, given, run_dir.name, run_dir.parent, None)


def planned_batch_size(plan: RunPlan, options: dict, given: set[str]) -> int:
    """The batch size the run will have: a resume keeps its own unless one is given."""
    if plan.checkpoint is None or "batch_size" in given:
        return options["batch_size"]
    return plan.checkpoint["train_config"]["batch_size"]


def plan_configs(
    plan: RunPlan, corpus: EncodedCorpus, options: dict, given: set[str]
) -> tuple[ModelConfig, TrainConfig]:
    """Model and train configs: from the options for a new run; from the checkpoint on
    resume, where training options given on the command line win."""
    train_options = {k: v for k, v in options.items() if k not in DATA_OPTIONS}
    ckpt = plan.checkpoint
    if ckpt is None:
        model_options = {k: options[k] for k in MODEL_OPTIONS}
        return ModelConfig(vocab_size=len(corpus.vocab), **model_options), TrainConfig(
            **train_options
        )
    stored = dict(ckpt["train_config"])
    stored.update({k: v for k, v in train_options.items() if k in given})
    for key in MACHINE_OPTIONS:  # properties of this machine, not of the run
        stored[key] = train_options[key]
    if "max_steps" in given and "time_budget" not in given:
        stored["time_budget"] = None  # a new step target replaces the old budget
    if "time_budget" in given and "max_steps" not in given:
        stored["max_steps"] = None
    known = {f.name for f in fields(TrainConfig)}
    train = TrainConfig(**{k: v for k, v in stored.items() if k in known})
    return ModelConfig(**ckpt["model_config"]), train


def refuse_finished_run(trainer: Trainer) -> None:
    """A resume that could not take a single step: say which option would let it go on."""
    ckpt, reason = trainer.resumed_from, trainer.done_reason()
    if ckpt is None or reason is None:
        return
    if reason == "length":
        raise CharrnnError(
            f"{ckpt['path']} already reached its length (step {ckpt['step']:,}, "
            f"{format_duration(ckpt['elapsed'])}); give a longer --time or --max-steps to go on"
        )
    raise CharrnnError(
        f"{ckpt['path']} stopped early: no new best in {trainer.config.patience} "
        "evaluations; give a larger --patience to go on"
    )


def resume_target(resume: str, run_name: str | None, out: Path) -> tuple[Path, dict]:
    """The run folder and last.pt that `--resume [RUN]` names."""
    if resume and run_name and resume != run_name:
        raise CharrnnError(f"--resume {resume} and --name {run_name} name different runs")
    name = resume or run_name
    if name is None:
        run_dir = newest_run(out)
    elif "/" in name or name in (".", ".."):
        run_dir = Path(name)  # a path to a run folder rather than a name under --out
    else:
        run_dir = out / name
    if not (run_dir / LAST).is_file():
        raise CharrnnError(f"nothing to resume: {run_dir} has no {LAST}")
    return run_dir, load_checkpoint(run_dir / LAST)


def default_run_name(corpus: Path, out: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", corpus.stem).strip("-.") or "run"
    base = f"{stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    name, n = base, 2
    while (out / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def refuse_existing_run(run_dir: Path) -> None:
    if run_dir.is_dir() and run_checkpoint(run_dir) is not None:
        raise CharrnnError(
            f"run {run_dir} already has checkpoints; add --resume to continue it, "
            f"or pick another --name"
        )


def option_clashes(options: dict, given: set[str], stored: dict, names) -> list[str]:
    """`--name value (checkpoint has other)` for each option given on the command line
    that disagrees with what a resumed checkpoint stores."""
    return [
        f"{FLAGS[name]} {options[name]} (checkpoint has {stored[name]})"
        for name in names
        if name in given and name in stored and options[name] != stored[name]
    ]


def refuse_clashes(ckpt, options, given, stored, names, why: str = "", prefix: str = "") -> None:
    if clashes := option_clashes(options, given, stored, names):
        because = f": {why}" if why else ""
        raise CharrnnError(
            f"cannot resume {ckpt['path']} with {prefix}{', '.join(clashes)}{because}"
        )


def data_configs(options: dict, given: set[str], ckpt: dict | None):
    """Text and tokenizer configs from the options, or from the checkpoint when resuming
    (where an option given on the command line must agree with it)."""
    chosen = {k: options[k] for k in TEXT_OPTIONS + TOKENIZER_OPTIONS}
    if ckpt is not None:
        stored = {
            **LEGACY_TEXT,
            **ckpt.get("text_config", {}),
            **ckpt.get("tokenizer_config", {"kind": ckpt["vocab"]["kind"]}),
        }
        stored["encoding"] = chosen["encoding"]  # how the files are stored may change
        refuse_clashes(ckpt, options, given, stored, TEXT_OPTIONS + TOKENIZER_OPTIONS)
        chosen.update({k: v for k, v in stored.items() if k in chosen})
    text = TextConfig(**{k: chosen.pop(k) for k in TEXT_OPTIONS})
    return text, TokenizerConfig(**chosen)
