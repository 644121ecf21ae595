"""`charrnn train`: plan the run (charrnn.runs.resume), read the corpus, train, report."""

from __future__ import annotations

import re
import shlex
import signal
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from charrnn.cli.console import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    console,
    format_loss,
    info,
    loss_unit,
    speak_as_rank,
    user_errors,
    warn,
)
from charrnn.cli.options import SectionedCommand, SectionOption, config_options, out_option
from charrnn.cli.plan import show_plan
from charrnn.cli.progress import EncodeProgress, TrainProgress
from charrnn.errors import CharrnnError, EveryRankError, said_by_rank_0
from charrnn.model.config import ModelConfig
from charrnn.options import format_duration
from charrnn.text.config import TextConfig, TokenizerConfig
from charrnn.train.config import TrainConfig

RECORDED_MACHINE = "charrnn.recorded_machine"  # ctx.meta key: what a replayed run ran on
# what torch.distributed's errors say when another rank is gone or late
COLLECTIVE_FAILURE = re.compile(
    r"gloo|nccl|ProcessGroup|Connection (closed|reset)|timed? ?out|DistBackendError", re.I
)


@click.command(cls=SectionedCommand)
@click.argument("corpus", nargs=-1, required=True, type=click.Path(path_type=Path))
@config_options(TokenizerConfig, TextConfig, ModelConfig, TrainConfig)
@click.option(
    "--name",
    "run_name",
    default=None,
    metavar="NAME",
    show_default="corpus name and time",
    help="Run folder name under --out.",
    cls=SectionOption,
    section="run control",
)
@click.option("--run", "old_run_name", default=None, hidden=True, help="The old --name.")
@out_option("Folder that holds the run folders.", section="run control")
@click.option(
    "--resume",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN]",
    help="Continue RUN (a name under --out or a path; default: --name, else the newest run) "
    "from its last.pt.",
    cls=SectionOption,
    section="run control",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, param, value: read_config_option(ctx, value),
    help="Read options from a TOML file or a run's config.json; the command line wins.",
    cls=SectionOption,
    section="run control",
)
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="Print the plan fitted to the corpus, the budget and this machine, and exit "
    "(no run folder is made).",
    cls=SectionOption,
    section="run control",
)
@click.pass_context
def train(ctx, corpus, run_name, out, resume, old_run_name, plan_only, **options):
    """Train a character-level language model on CORPUS.

    CORPUS is one or more text files or folders (every *.txt below, sorted),
    read as UTF-8 unless --encoding says otherwise; .gz, .bz2 and .xz files
    are decompressed. Files are joined by a blank line. The encoded corpus is
    cached by content, so the next run starts at once.

    The last --val-frac of the text is the validation set. Checkpoints go to
    OUT/NAME/: best.pt (lowest validation loss) and last.pt (newest), beside
    config.json, metrics.jsonl and loss.png. Ctrl-C saves last.pt and prints
    the command that resumes. Under torchrun each process trains its share
    of the --batch-size streams (data-parallel; see docs/distributed.md).

    \b
    Examples:
      charrnn train corpora/shakespeare.txt --time 3m
      charrnn train input.txt --time 10m --plan
      charrnn train input.txt --cell gru --layers 2 --hidden 256 --max-steps 2000
      charrnn train input.txt --name mine --dropout 0.2 --time 1h --patience 5
      charrnn train input.txt --resume mine --time 2h
      charrnn train --config checkpoints/mine/config.json --name again
      charrnn train texts/ --tokenizer sentencepiece --sp-type char --coverage 0.9995
      charrnn train big.txt.xz --tokenizer byte --time 1h
      torchrun --standalone --nproc-per-node 4 -m charrnn train input.txt --batch-size 128
    """
    if old_run_name is not None:  # kept for plain charrnn; torchrun refuses it itself
        warn("--run is now --name: torchrun reads --run as its own --run-path")
        run_name = old_run_name if run_name is None else run_name
    with user_errors():
        from charrnn.distributed import joined

        given = {k for k in options if ctx.get_parameter_source(k).name != "DEFAULT"}
        # under torchrun: join its job (nccl on CUDA, gloo on the CPU); else a solo job
        with joined(options["device"], options["dist_timeout"]) as job, lost_ranks(job):
            speak_as_rank(job.rank)
            train_job(ctx, job, corpus, run_name, out, resume, options, given)


def train_job(ctx, job, corpus, run_name, out, resume, options, given) -> None:
    """One process's part of `charrnn train`: all of it, or one rank's under torchrun."""
    from charrnn.runs.resume import refuse_finished_run
    from charrnn.runs.start import prepare_run
    from charrnn.runs.writer import run_trainer

    if ctx.params["plan_only"] and resume is not None:
        raise CharrnnError(
            "--plan fits a new run; a resumed run goes on with the plan in its config.json"
        )
    with EncodeProgress() if job.is_main else nullcontext() as progress:
        prepared = prepare_run(
            job, list(corpus), options, given, run_name, out, resume,
            progress=progress.update if job.is_main else None,
        )  # fmt: skip
    run, corpus_data = prepared.run, prepared.corpus
    if ctx.params["plan_only"]:
        if job.is_main:
            show_plan(prepared, measurements=True)
        return
    if job.is_main and prepared.fit is not None and run.checkpoint is None:
        show_plan(prepared)
    # the Trainer checks the corpus size and, on resume, the corpus hash, before printing;
    # what it refuses may be this machine's alone (a precision), so every rank says it
    trainer = run_trainer(
        corpus_data, prepared.model_config, prepared.train_config, run.run_dir,
        resume=run.checkpoint, job=job, plan=prepared.fit,
    )  # fmt: skip
    with said_by_rank_0():
        refuse_finished_run(trainer)
    describe_start(
        corpus_data, prepared.model_config, prepared.train_config, run.run_dir, run.checkpoint
    )
    describe_job(job)
    describe_machine(trainer, ctx.meta.get(RECORDED_MACHINE))
    progress = TrainProgress(trainer) if job.is_main else nullcontext()
    with stop_on_signals(trainer, abort_on_second=not job.active) as received, progress:
        if job.is_main:
            trainer.callbacks.append(progress)
        result = trainer.run()
    if not job.is_main:
        # rank 0 reports and sets the job's exit status; a non-zero exit here would
        # have torchrun stop rank 0 before it says why the run ended
        return
    show_summary(result, trainer, run.run_dir)
    plot_run(run.run_dir)
    report_ending(result, prepared.train_config, corpus, run, received, job)


@contextmanager
def lost_ranks(job):
    """Under torchrun, a collective that fails (another rank died or hung past
    --dist-timeout) ends this rank with one line, not a traceback. Any other error
    (out of memory, a bug) keeps its own."""
    try:
        yield
    except RuntimeError as e:  # gloo's "Connection closed by peer" is a plain one
        if not job.active or not COLLECTIVE_FAILURE.search(str(e)):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CharrnnError(f"lost contact with the other processes of the job ({first})") from None


def describe_job(job) -> None:
    if job.active:
        p = job.place
        info(
            f"ranks   {p.world} processes ({p.nodes} machine{'s' if p.nodes > 1 else ''} x "
            f"{p.local_world}, {job.backend}), each with 1/{p.world} of the streams"
        )


def report_ending(result, train_config, corpus, plan, received, job) -> None:
    """Why training stopped, when it was not the planned length; an exit status to match."""
    if result.status == "nonfinite":
        raise EveryRankError(  # the skips are agreed: every rank stops here alike
            f"stopped at step {result.steps:,}: {train_config.max_skips} steps in a row had a "
            f"non-finite loss or gradient; the weights were kept finite and best.pt is intact "
            f"(try a lower --lr or --grad-clip)"
        )
    if result.status == "patience":
        info(
            f"[yellow]stopped early[/]: no new best validation loss in "
            f"{train_config.patience} evaluations"
        )
    if result.interrupted:
        resume_args = [*launcher(job), "train", *map(str, corpus), "--resume", plan.run_dir.name]
        if plan.out != Path("checkpoints"):
            resume_args += ["--out", str(plan.out)]
        resume_cmd = shlex.join(resume_args)
        from charrnn.checkpoint import LAST  # torch is loaded by now: training ran

        info(f"[yellow]interrupted at step {result.steps:,}[/]; saved {plan.run_dir / LAST}")
        info(f"resume with: [bold]{escape(resume_cmd)}[/]")
        sys.exit(EXIT_SIGTERM if received == [signal.SIGTERM] else EXIT_SIGINT)


def launcher(job) -> list[str]:
    """How this process was started, for the resume command (any number of ranks resumes)."""
    if not job.active:
        return ["charrnn"]
    p = job.place
    nodes = ["--nnodes", str(p.nodes)] if p.nodes > 1 else []
    return ["torchrun", *nodes, "--nproc-per-node", str(p.local_world), "-m", "charrnn"]


def describe_machine(trainer, replayed: dict | None) -> None:
    """What changed from the run this one goes on from, or replays."""
    if trainer.split_moved:
        info(
            "[yellow]note:[/] an older charrnn split this run's SentencePiece ids "
            "elsewhere and trained its tokenizer on the validation text too; validation "
            "losses from before this resume measured other text"
        )
    recorded = trainer.recorded_machine or replayed
    if changes := trainer.machine.changes_from(recorded):
        info(
            f"machine {', '.join(changes)}: device, precision, threads and processes "
            "follow this launch, not the recorded run"
        )


def read_config_option(ctx, path: Path | None) -> None:
    """--config: the file's options become the command's defaults, so the command line wins.

    Values go through the same click types and ranges as typed options.
    """
    if path is None:
        return
    from charrnn.runs.records import load_options_file

    try:
        loaded = load_options_file(path)
    except CharrnnError as e:
        raise click.BadParameter(str(e), ctx=ctx, param_hint="'--config'") from None
    values = loaded.options
    ctx.meta[RECORDED_MACHINE] = loaded.recorded_machine
    names = {}  # option spellings (run, time, seq_len) -> parameter names (run_name, ...)
    for p in ctx.command.get_params(ctx):
        if p.name in ("config", "resume"):
            continue
        names[p.name] = p.name
        if p.name == "run_name":
            names["run"] = p.name  # --name was --run before torchrun needed the word
        for opt in p.opts:
            names[opt.lstrip("-").replace("-", "_")] = p.name
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise click.BadParameter(
            f"{path}: unknown option {', '.join(map(repr, unknown))}",
            ctx=ctx,
            param_hint="'--config'",
        )
    if isinstance(values.get("corpus"), str):  # config.json from before CORPUS took many
        values["corpus"] = [values["corpus"]]
    defaults = {names[k]: v for k, v in values.items() if v is not None}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def plot_run(run_dir: Path) -> None:
    """loss.png in the run folder, when matplotlib is installed; never fails the run."""
    from charrnn.plot import matplotlib_available, plot_runs
    from charrnn.runs.records import PLOT, read_metrics

    if not matplotlib_available():
        return
    try:
        plot_runs([(run_dir.name, read_metrics(run_dir))], run_dir / PLOT)
    except Exception as e:  # a plot is a convenience: report it, keep the exit status
        warn(f"could not draw {run_dir / PLOT}: {e}")


def describe_start(corpus, model_config, train_config, run_dir: Path, ckpt) -> None:
    n_train, n_val = corpus.split_sizes(train_config.val_frac)
    source = "cached encoding" if corpus.from_cache else "encoded"
    ids = "" if corpus.vocab.kind == "char" else f" -> {len(corpus):,} tokens"
    info(
        f"corpus  {escape(str(corpus.path))}: {corpus.characters:,} characters{ids}, "
        f"{escape(corpus.vocab.describe())} ({source})"
    )
    if corpus.rare is not None:
        r, n = corpus.rare, corpus.tokenizer_config.min_count
        info(
            f"unknown {r.distinct:,} characters seen fewer than {n} times map to <unk>: "
            f"{r.occurrences:,} occurrences, {r.share:.3%} of the text"
        )
    info(f"split   {n_train:,} train / {n_val:,} validation {corpus.unit}")
    m = model_config
    info(f"model   {m.cell.upper()} {m.layers}x{m.hidden}, embed {m.embed}, dropout {m.dropout:g}")
    t = train_config
    length = []
    if t.max_steps:
        length.append(f"{t.max_steps:,} steps")
    if t.time_budget:
        length.append(format_duration(t.time_budget))
    info(
        f"train   batch {t.batch_size} x seq-len {t.seq_len}, lr {t.lr:g}, "
        f"for {' or '.join(length)}"
    )
    if ckpt is not None:
        info(f"resume  {escape(str(ckpt['path']))} at step {ckpt['step']:,}")
    info(f"run     {escape(str(run_dir))}")


@contextmanager
def stop_on_signals(trainer, abort_on_second: bool = True):
    """First Ctrl-C or SIGTERM: finish the step, save, exit. A second Ctrl-C aborts,
    except under torchrun, where the first signal is all that counts: every rank must
    reach the agreed stop and its collectives, and torchrun itself kills a rank that
    has not stopped within its shutdown timeout (30 s)."""
    received: list[int] = []

    def handler(signum, frame):
        if received and abort_on_second:
            raise KeyboardInterrupt
        received.append(signum)
        trainer.request_stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


STATUS_TEXT = {
    "running": "still running, or killed",
    "finished": "finished",
    "interrupted": "interrupted",
    "patience": "stopped early (patience)",
    "nonfinite": "stopped: non-finite losses",
}


def thread_history(start: int, moves: list[tuple[int, int]]) -> str:
    """`2, 1 from step 57, 2 from step 900`: the CPU threads a run trained on."""
    return ", ".join([str(start)] + [f"{n} from step {step:,}" for step, n in moves])


def show_summary(result, trainer, run_dir: Path) -> None:
    table = Table(title="training summary", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    if result.best_val_loss is not None:
        unit = loss_unit(trainer.corpus.vocab)
        table.add_row("best val loss", format_loss(result.best_val_loss, unit))
    table.add_row("steps", f"{result.steps:,} ({trainer.epoch} full passes)")
    if result.skipped_steps:
        table.add_row("skipped", f"{result.skipped_steps:,} steps with a non-finite loss")
    table.add_row("ended", STATUS_TEXT.get(result.status, result.status))
    table.add_row("chars seen", f"{result.chars_seen:,}")
    table.add_row("time", format_duration(result.elapsed))
    table.add_row("speed", f"{result.chars_per_s:,.0f} chars/s")
    if trainer.device.type == "cpu":
        table.add_row("threads", thread_history(trainer.machine.threads, trainer.thread_steps))
    from charrnn.checkpoint import BEST, LAST  # torch is loaded by now: training ran

    if (run_dir / BEST).exists():
        table.add_row("best", escape(str(run_dir / BEST)))
    table.add_row("last", escape(str(run_dir / LAST)))
    console.print(table)
