"""Everything before the first step of `charrnn train`, in one call: `prepare_run`.

The run folder and whether it resumes (charrnn.runs.resume), the corpus (charrnn.data),
the plan that fits a new run to the corpus, the budget and the machine
(charrnn.runs.sizing, measured by charrnn.runs.probe), and the configs. Under torchrun
rank 0 plans and probes, and every rank takes its plan. The CLI and the Python API call
this once and get back everything they show or train with.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from charrnn.data.cache import EncodedCorpus, default_cache_dir, load_corpus
from charrnn.distributed import Job
from charrnn.errors import CharrnnError, said_by_rank_0
from charrnn.model.config import ModelConfig
from charrnn.runs.planner import make_plan
from charrnn.runs.records import CONFIG
from charrnn.runs.resume import RunPlan, plan_configs, plan_job_run, planned_batch_size
from charrnn.runs.sizing import PLANNED, Budget, Plan, probe_allowance
from charrnn.train.config import DEFAULT_TIME_BUDGET, TrainConfig


@dataclass
class Prepared:
    run: RunPlan
    corpus: EncodedCorpus
    model_config: ModelConfig
    train_config: TrainConfig
    fit: Plan | None  # how a new run was fitted; a resume's recorded one; None: all given


def prepare_run(
    job: Job,
    corpus: list[Path],
    options: dict,
    given: set[str],
    run_name: str | None = None,
    out: Path = Path("checkpoints"),
    resume: str | None = None,
    progress=None,
) -> Prepared:
    """Plan the folder, read the corpus (`progress(phase, done, total)` on rank 0), fit the
    options the user left out (new runs only), and make the configs."""
    run = plan_job_run(job, corpus[0], options, given, run_name, out, resume)
    if run.checkpoint is not None or "batch_size" in given:
        job.check_batch(planned_batch_size(run, options, given))  # before any slow work
    data = job.in_turn(lambda: read_corpus(corpus, run, progress if job.is_main else None))
    if run.checkpoint is not None:
        fit = recorded_plan(run.run_dir)
        options = recorded_precision(options, given, fit)
    else:
        fit = job.share(fit_new_run(options, given, data, job, progress) if job.is_main else None)
        options, given = with_plan(options, given, fit)
    with said_by_rank_0():
        model_config, train_config = plan_configs(run, data, options, given)
    return Prepared(run, data, model_config, train_config, fit)


def read_corpus(corpus: list[Path], run: RunPlan, progress=None) -> EncodedCorpus:
    """The encoded corpus, from the cache or encoded now; a resume reads its own."""
    return load_corpus(
        list(corpus),
        run.text_config,
        run.tokenizer_config,
        existing=run.tokenizer,
        expected_sha256=run.corpus_sha256,
        val_frac=run.val_frac,
        progress=progress,
    )


def fit_new_run(
    options: dict, given: set[str], corpus: EncodedCorpus, job: Job, progress=None
) -> Plan | None:
    """The plan of a new run, probing this machine; None when the user gave every option,
    or set CHARRNN_PLAN=off (the fixed defaults, as before plans)."""
    if all(name in given for name in PLANNED) or plans_off():
        return None
    from charrnn.runs.probe import probe_machine
    from charrnn.runtime import resolve_device, set_threads

    set_threads(options["threads"])  # measure on the threads the run starts with
    device = job.device or resolve_device(options["device"])
    seconds = options["time_budget"]
    if seconds is None and options["max_steps"] is None:
        seconds = DEFAULT_TIME_BUDGET
    allowance = probe_allowance(seconds)
    cache = default_cache_dir()
    machine, probe = probe_machine(device, len(corpus.vocab), allowance, cache, progress)
    n_train, _ = corpus.split_sizes(options["val_frac"])
    training = None if seconds is None else seconds - allowance
    budget = Budget(training, options["max_steps"], job.world)
    plan = make_plan(options, given, n_train, len(corpus.vocab), budget, machine)
    if probe.cache is not None:
        probe.cache.save()
    plan.probe_seconds = round(probe.spent, 2)
    if seconds is not None:
        plan.time_budget = round(seconds - probe.spent, 2)  # the probe is part of the budget
    return plan


def plans_off() -> bool:
    return os.environ.get("CHARRNN_PLAN", "").strip().lower() in ("off", "0", "no", "false")


def with_plan(options: dict, given: set[str], plan: Plan | None) -> tuple[dict, set[str]]:
    """The options a new run trains with: the plan's choices in place of the defaults."""
    if plan is None:
        return options, given
    chosen = {**options, **plan.options()}
    if plan.time_budget is not None:
        chosen["time_budget"] = plan.time_budget
    return chosen, given


def recorded_plan(run_dir: Path) -> Plan | None:
    """The plan a run recorded in its config.json (None for a run made without one)."""
    try:
        recorded = json.loads((run_dir / CONFIG).read_text(encoding="utf-8")).get("plan")
    except (OSError, ValueError):
        return None
    return Plan.from_dict(recorded) if isinstance(recorded, dict) else None


def recorded_precision(options: dict, given: set[str], plan: Plan | None) -> dict:
    """A resume keeps the precision its plan measured faster, where this machine runs it;
    any other machine option follows this machine (charrnn.runs.resume)."""
    if plan is None or "precision" in given:
        return options
    choice = plan.choices.get("precision")
    if choice is None or choice.source != "probed" or choice.value != "bf16":
        return options
    from charrnn.runtime import bf16_native, resolve_device

    try:
        runs = bf16_native(resolve_device(options["device"]))
    except CharrnnError:
        runs = False
    return {**options, "precision": "bf16"} if runs else options
