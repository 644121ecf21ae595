"""The `charrnn` command line: click commands over the library.

This is the only module that imports click or rich. One rich Console, on
stderr, carries every message for people; generated text alone goes to stdout.
Library modules (and so torch) are imported inside the commands, which keeps
`charrnn --help` fast.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shlex
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from charrnn import __version__
from charrnn.errors import CharrnnError

console = Console(stderr=True, highlight=False)

EXIT_SIGINT, EXIT_SIGTERM = 130, 143


# ------------------------------------------------------------------ messages and errors


def info(message: str) -> None:
    console.print(message, soft_wrap=True)


class UserError(click.ClickException):
    """A one-line `error: ...` on stderr through the Console, exit status 1."""

    def show(self, file=None) -> None:
        console.print(f"[bold red]error:[/] {escape(self.message)}", soft_wrap=True)


@contextmanager
def user_errors():
    """Library errors become one-line messages; nothing a user caused shows a traceback."""
    try:
        yield
    except CharrnnError as e:
        raise UserError(str(e)) from None
    except BrokenPipeError:  # stdout's reader went away (`| head`) mid-table or mid-JSON
        exit_for_closed_stdout()
    except OSError as e:  # the machine's fault, not ours: a full disk, a vanished folder
        from charrnn.files import describe_os_error

        where = f"{e.filename}: " if e.filename else ""
        raise UserError(f"{where}{describe_os_error(e)}") from None
    except KeyboardInterrupt:
        console.print("[yellow]aborted[/]")
        sys.exit(EXIT_SIGINT)


# ------------------------------------------------------------------ parameter types


class Duration(click.ParamType):
    """A wall-clock length: 90, 90s, 3m, 1.5h, 1h30m."""

    name = "duration"
    _part = re.compile(r"(\d+(?:\.\d+)?)([smh]?)")
    _unit = {"": 1, "s": 1, "m": 60, "h": 3600}

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = str(value).strip().lower().replace(" ", "")
            parts = self._part.findall(text)
            if not text or "".join(n + u for n, u in parts) != text:
                self.fail(f"{value!r} is not a duration such as 90s, 3m, 1h or 1h30m", param, ctx)
            seconds = sum(float(n) * self._unit[u] for n, u in parts)
        if not seconds > 0:
            self.fail(f"{value!r} must be longer than zero", param, ctx)
        return seconds


class FiniteFloat(click.FloatRange):
    """FloatRange that also refuses nan and inf (which compare false to every bound)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


# ------------------------------------------------------------------ shared options


class DeviceName(click.ParamType):
    """auto, cpu, cuda, cuda:N or mps. Whether the machine has it is the library's
    to say (charrnn.runtime.resolve_device), once torch is loaded."""

    name = "device"
    _form = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

    def get_metavar(self, param, ctx=None):
        return "[auto|cpu|cuda|cuda:N|mps]"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if not self._form.match(text):
            self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps", param, ctx)
        return text


device_option = click.option(
    "--device",
    type=DeviceName(),
    default="auto",
    show_default=True,
    help="Where to run the model; auto picks CUDA, then Apple's MPS, then the CPU. "
    "cuda:N picks one GPU of several.",
)


def out_option(help: str):
    return click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=Path("checkpoints"),
        show_default=True,
        help=help,
    )


# ------------------------------------------------------------------ the group


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Character-level RNN language models: train on any text, then sample from it.

    \b
    Examples:
      charrnn train corpora/shakespeare.txt --time 3m
      charrnn sample --seed "ROMEO:" --length 500
      charrnn train --help
    """


def main():
    cli(prog_name="charrnn")


# ------------------------------------------------------------------ train

MODEL_OPTIONS = ("cell", "layers", "hidden", "embed", "dropout")
TEXT_OPTIONS = ("encoding", "errors", "normalize", "keep_line_ends")
TOKENIZER_OPTIONS = ("tokenizer", "min_count", "sp_type", "vocab_size", "coverage")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@cli.command()
@click.argument("corpus", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--tokenizer",
    type=click.Choice(["char", "byte", "sentencepiece"]),
    default="char",
    show_default=True,
    help="Unicode characters, UTF-8 bytes (256 ids, nothing unknown), or a SentencePiece "
    "model trained on the training text.",
)
@click.option(
    "--min-count",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="char: characters seen fewer times share one <unk> id.",
)
@click.option(
    "--sp-type",
    type=click.Choice(["char", "unigram", "bpe"]),
    default="unigram",
    show_default=True,
    help="sentencepiece: the SentencePiece model type.",
)
@click.option(
    "--vocab-size",
    type=click.IntRange(min=2),
    default=None,
    help="sentencepiece: pieces in the model. Default: 1000; with --sp-type char, every "
    "character --coverage keeps.",
)
@click.option(
    "--coverage",
    type=FiniteFloat(0, 1, min_open=True),
    default=0.9995,
    show_default=True,
    help="sentencepiece: share of characters the model covers; the rest are spelled as "
    "UTF-8 bytes. 0.9995 suits Korean, Japanese or Chinese; 1.0 small alphabets.",
)
@click.option(
    "--normalize",
    type=click.Choice(["nfc", "nfkc", "none"]),
    default="nfc",
    show_default=True,
    help="Unicode normalisation of the corpus (and of seeds when sampling).",
)
@click.option(
    "--keep-line-ends",
    is_flag=True,
    default=False,
    help="Keep CRLF and CR line ends; by default they become LF.",
)
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    help="Text encoding of the corpus files, e.g. latin-1, utf-16, cp1252.",
)
@click.option(
    "--errors",
    type=click.Choice(["strict", "replace"]),
    default="strict",
    show_default=True,
    help="strict: stop at the first invalid byte; replace: make it U+FFFD.",
)
@click.option(
    "--cell",
    type=click.Choice(["lstm", "gru", "rnn"]),
    default="lstm",
    show_default=True,
    help="Recurrent cell type.",
)
@click.option(
    "--layers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Number of stacked recurrent layers.",
)
@click.option(
    "--hidden",
    type=click.IntRange(min=1),
    default=512,
    show_default=True,
    help="Hidden units per layer.",
)
@click.option(
    "--embed",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Character embedding size.",
)
@click.option(
    "--dropout",
    type=FiniteFloat(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Dropout between layers and before the output layer.",
)
@click.option(
    "--seq-len",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Truncated-BPTT window: characters per stream per step.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Number of parallel streams the corpus is cut into.",
)
@click.option(
    "--lr",
    type=FiniteFloat(0, min_open=True),
    default=7e-3,
    show_default=True,
    help="Peak learning rate (AdamW).",
)
@click.option(
    "--warmup-steps",
    type=click.IntRange(min=0),
    default=200,
    show_default=True,
    help="Steps of linear warmup before the cosine decay (at most a tenth of --max-steps).",
)
@click.option(
    "--weight-decay",
    type=FiniteFloat(0),
    default=0.0,
    show_default=True,
    help="AdamW decoupled weight decay.",
)
@click.option(
    "--min-lr-frac",
    type=FiniteFloat(0, 1),
    default=0.02,
    show_default=True,
    help="The cosine decay ends at this share of --lr.",
)
@click.option(
    "--grad-clip",
    type=FiniteFloat(0),
    default=1.0,
    show_default=True,
    help="Clip the gradient norm to this value (0 turns clipping off).",
)
@click.option(
    "--val-frac",
    type=FiniteFloat(0, 0.5),
    default=0.1,
    show_default=True,
    help="Share of the corpus, taken from its end, held out for validation.",
)
@click.option(
    "--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many steps."
)
@click.option(
    "--time",
    "time_budget",
    type=Duration(),
    default=None,
    help="Wall-clock budget, e.g. 90s, 3m, 1h. Default 3m if --max-steps is not given.",
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=0),
    default=None,
    help="Evaluate and save every N steps; 0: only at the end. Default: every 30 s, or "
    "every pass over a small corpus, but so that evaluation takes at most about 5% of "
    "the time.",
)
@click.option(
    "--eval-size",
    type=click.IntRange(min=0),
    default=1_000_000,
    show_default=True,
    help="Score at most this many ids of the validation split per evaluation; 0: all.",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after N evaluations in a row without a new best validation loss.",
)
@click.option(
    "--max-skips",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Stop after this many steps in a row with a non-finite loss or gradient "
    "(each such step is skipped).",
)
@click.option(
    "--log-every",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Steps per line of metrics.jsonl (and per update of the shown loss).",
)
@click.option(
    "--rng-seed",
    type=int,
    default=1337,
    show_default=True,
    help="Random seed for initialisation and dropout.",
)
@click.option(
    "--run",
    "run_name",
    default=None,
    metavar="NAME",
    help="Run folder name under --out. Default: corpus name and time.",
)
@out_option("Folder that holds the run folders.")
@device_option
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="bf16: autocast matmuls and recurrent layers to bfloat16 (weights stay fp32); "
    "refused on a CPU without native bf16 and on MPS. auto: bf16 on CUDA GPUs with "
    "native bf16 (Ampere or newer) and on CPUs with AMX, else fp32.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads. Default: the physical cores this process may use.",
)
@click.option(
    "--resume",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[RUN]",
    help="Continue RUN (default: --run, else the newest run under --out) from its last.pt.",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, param, value: read_config_option(ctx, value),
    help="Read options from a TOML file or a run's config.json; options on the command line win.",
)
@click.pass_context
def train(ctx, corpus, run_name, out, resume, **options):
    """Train a character-level language model on CORPUS.

    CORPUS is one or more text files or folders (every *.txt below, sorted),
    read as UTF-8 unless --encoding says otherwise; .gz, .bz2 and .xz files
    are decompressed. Files are joined by a blank line. The encoded corpus is
    cached by content, so the next run starts at once.

    The last --val-frac of the text is the validation set. Checkpoints go to
    OUT/RUN/: best.pt (lowest validation loss) and last.pt (newest), beside
    config.json, metrics.jsonl and loss.png. Ctrl-C saves last.pt and prints
    the command that resumes.

    \b
    Examples:
      charrnn train corpora/shakespeare.txt --time 3m
      charrnn train input.txt --cell gru --layers 2 --hidden 256 --max-steps 2000
      charrnn train input.txt --run mine --dropout 0.2 --time 1h --patience 5
      charrnn train input.txt --resume mine --time 2h
      charrnn train --config checkpoints/mine/config.json --run again
      charrnn train texts/ --tokenizer sentencepiece --sp-type char --coverage 0.9995
      charrnn train big.txt.xz --tokenizer byte --time 1h
    """
    with user_errors():
        from charrnn.checkpoint import restore_tokenizer
        from charrnn.data import load_corpus
        from charrnn.files import check_run_free
        from charrnn.runtime import resolve_device, resolve_precision
        from charrnn.train import Trainer

        if run_name is not None and not RUN_NAME.match(run_name):
            raise CharrnnError(f"--run {run_name!r}: use letters, digits, '.', '_' and '-' only")
        given = {k for k in options if ctx.get_parameter_source(k).name != "DEFAULT"}
        # what this machine cannot run is refused before any folder or slow work
        resolve_precision(options["precision"], resolve_device(options["device"]))
        if resume is not None:
            run_dir, ckpt = resume_target(resume, run_name, out)
            out = run_dir.parent
            refuse_other_validation(options, given, ckpt)
        else:
            run_dir, ckpt = out / (run_name or default_run_name(corpus[0], out)), None
        check_run_free(run_dir)  # Trainer.run holds the lock; this refuses before slow work
        if ckpt is None:
            refuse_existing_run(run_dir)

        text_config, tokenizer_config = data_configs(options, given, ckpt)
        val_frac = options["val_frac"] if ckpt is None else ckpt["train_config"]["val_frac"]
        with EncodeProgress() as progress:
            corpus_data = load_corpus(
                list(corpus),
                text_config,
                tokenizer_config,
                existing=None if ckpt is None else restore_tokenizer(ckpt),
                expected_sha256=None if ckpt is None else ckpt.get("corpus_sha256"),
                val_frac=val_frac,
                progress=progress.update,
            )
        model_config, train_config = resolve_configs(corpus_data, options, given, ckpt)
        # the Trainer checks the corpus size and, on resume, the corpus hash, before printing
        trainer = Trainer(corpus_data, model_config, train_config, run_dir, resume=ckpt)
        refuse_finished_run(trainer, ckpt)
        describe_start(corpus_data, model_config, train_config, run_dir, ckpt)
        if trainer.split_moved:
            info(
                "[yellow]note:[/] an older charrnn split this run's SentencePiece ids "
                "elsewhere and trained its tokenizer on the validation text too; validation "
                "losses from before this resume measured other text"
            )
        recorded = trainer.recorded_machine or ctx.meta.get(RECORDED_MACHINE)
        if changes := trainer.machine.changes_from(recorded):
            info(
                f"machine {', '.join(changes)}: device, precision and threads follow this "
                "machine, not the recorded run"
            )

        with stop_on_signals(trainer) as received, TrainProgress(trainer) as progress:
            trainer.callback = progress
            result = trainer.run()
        show_summary(result, trainer)
        plot_run(run_dir)
        if result.status == "nonfinite":
            raise CharrnnError(
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
            resume_args = ["charrnn", "train", *map(str, corpus), "--resume", run_dir.name]
            if out != Path("checkpoints"):
                resume_args += ["--out", str(out)]
            resume_cmd = shlex.join(resume_args)
            info(f"[yellow]interrupted at step {result.steps:,}[/]; saved {result.last_path}")
            info(f"resume with: [bold]{escape(resume_cmd)}[/]")
            sys.exit(EXIT_SIGTERM if received == [signal.SIGTERM] else EXIT_SIGINT)


def read_config_option(ctx, path: Path | None) -> None:
    """--config: the file's options become the command's defaults, so the command line wins.

    Values go through the same click types and ranges as typed options.
    """
    if path is None:
        return
    from charrnn.runs import load_options_file

    try:
        loaded = load_options_file(path)
    except CharrnnError as e:
        raise click.BadParameter(str(e), ctx=ctx, param_hint="'--config'") from None
    values = loaded.options
    ctx.meta[RECORDED_MACHINE] = loaded.recorded_machine
    names = {}  # option spellings (run, time, seq_len) -> parameter names (run_name, ...)
    for p in ctx.command.params:
        if p.name in ("config", "resume"):
            continue
        names[p.name] = p.name
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


RECORDED_MACHINE = "charrnn.recorded_machine"  # ctx.meta key: what a replayed run ran on


def refuse_other_validation(options: dict, given: set[str], ckpt: dict) -> None:
    """The validation split is part of a run: with another one, training would go over
    text that was validation, and best losses would compare different texts."""
    clashes = option_clashes(options, given, ckpt["train_config"], ("val_frac", "eval_size"))
    if clashes:
        raise CharrnnError(
            f"cannot resume {ckpt['path']} with {', '.join(clashes)}: a run keeps the "
            "validation split it started with"
        )


def resume_target(resume: str, run_name: str | None, out: Path):
    """The run folder and last.pt that `--resume [RUN]` names."""
    from charrnn.checkpoint import LAST, load_checkpoint, newest_run

    if resume and run_name and resume != run_name:
        raise CharrnnError(f"--resume {resume} and --run {run_name} name different runs")
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


def refuse_finished_run(trainer, ckpt) -> None:
    reason = trainer.done_reason()
    if reason == "length":
        raise CharrnnError(
            f"{ckpt['path']} already reached its length (step {ckpt['step']:,}, "
            f"{format_duration(ckpt['elapsed'])}); give a longer --time or --max-steps to go on"
        )
    if reason == "patience":
        raise CharrnnError(
            f"{ckpt['path']} stopped early: no new best in {trainer.config.patience} "
            "evaluations; give a larger --patience to go on"
        )


def plot_run(run_dir: Path) -> None:
    """loss.png in the run folder, when matplotlib is installed; never fails the run."""
    from charrnn.plot import matplotlib_available, plot_runs
    from charrnn.runs import PLOT, read_metrics

    if not matplotlib_available():
        return
    try:
        plot_runs([(run_dir.name, read_metrics(run_dir))], run_dir / PLOT)
    except Exception as e:  # a plot is a convenience: report it, keep the exit status
        info(f"[yellow]warning:[/] could not draw {run_dir / PLOT}: {e}")


def default_run_name(corpus: Path, out: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", corpus.stem).strip("-.") or "run"
    base = f"{stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    name, n = base, 2
    while (out / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def refuse_existing_run(run_dir: Path) -> None:
    from charrnn.checkpoint import run_checkpoint

    if run_dir.is_dir() and run_checkpoint(run_dir) is not None:
        raise CharrnnError(
            f"run {run_dir} already has checkpoints; add --resume to continue it, "
            f"or pick another --run name"
        )


def option_clashes(options: dict, given: set[str], stored: dict, names) -> list[str]:
    """`--name value (checkpoint has other)` for each option given on the command line
    that disagrees with what a resumed checkpoint stores."""
    return [
        f"--{name.replace('_', '-')} {options[name]} (checkpoint has {stored[name]})"
        for name in names
        if name in given and name in stored and options[name] != stored[name]
    ]


def data_configs(options: dict, given: set[str], ckpt: dict | None):
    """Text and tokenizer configs from the options, or from the checkpoint when resuming
    (where an option given on the command line must agree with it)."""
    from charrnn.runs import data_options
    from charrnn.sources import TextConfig
    from charrnn.tokenizers import LEGACY_TEXT, TokenizerConfig

    chosen = {k: options[k] for k in TEXT_OPTIONS + TOKENIZER_OPTIONS}
    if ckpt is not None:
        stored = data_options(
            {**LEGACY_TEXT, **ckpt.get("text_config", {})},
            ckpt.get("tokenizer_config", {"kind": ckpt["vocab"]["kind"]}),
        )
        stored["encoding"] = chosen["encoding"]  # how the files are stored may change
        clashes = option_clashes(options, given, stored, TEXT_OPTIONS + TOKENIZER_OPTIONS)
        if clashes:
            raise CharrnnError(f"cannot resume {ckpt['path']} with {', '.join(clashes)}")
        chosen.update({k: v for k, v in stored.items() if k in chosen})
    text = TextConfig(**{k: chosen.pop(k) for k in TEXT_OPTIONS})
    return text, TokenizerConfig(kind=chosen.pop("tokenizer"), **chosen)


class EncodeProgress:
    """A transient progress bar for reading and encoding the corpus (shown after 1 s)."""

    def __init__(self):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[mb]} MB"),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, int] = {}
        self.started = None

    def __enter__(self):
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        if self.progress.live.is_started:
            self.progress.stop()

    def update(self, phase: str, done: int, total: int) -> None:
        if not self.progress.live.is_started:
            if time.monotonic() - self.started < 1.0:
                return  # small corpora: no bar flashing by
            self.progress.start()
        if phase not in self.tasks:
            self.tasks[phase] = self.progress.add_task(phase, total=max(total, 1), mb="")
        self.progress.update(self.tasks[phase], completed=done, mb=f"{done / 1e6:,.0f}")


def resolve_configs(corpus, options: dict, given: set[str], ckpt: dict | None):
    """Model and train configs from the options, or from the checkpoint when resuming.

    On resume the model comes from the checkpoint: a model option given on the
    command line that disagrees is refused. Training options given on the
    command line override the stored ones (e.g. a longer --time).
    """
    from charrnn.model import ModelConfig
    from charrnn.runs import MACHINE_OPTIONS
    from charrnn.train import TrainConfig

    model_opts = {k: options[k] for k in MODEL_OPTIONS}
    data = MODEL_OPTIONS + TEXT_OPTIONS + TOKENIZER_OPTIONS
    train_opts = {k: v for k, v in options.items() if k not in data}
    if ckpt is None:
        return (ModelConfig(vocab_size=len(corpus.vocab), **model_opts), TrainConfig(**train_opts))

    stored_model = ckpt["model_config"]
    clashes = option_clashes(options, given, stored_model, MODEL_OPTIONS)
    if clashes:
        raise CharrnnError(
            f"cannot resume {ckpt['path']} with a different model: {', '.join(clashes)}"
        )
    stored_train = dict(ckpt["train_config"])
    stored_train.update({k: v for k, v in train_opts.items() if k in given})
    for key in MACHINE_OPTIONS:  # properties of this machine, not of the run
        stored_train[key] = train_opts[key]
    if "max_steps" in given and "time_budget" not in given:
        stored_train["time_budget"] = None  # a new step target replaces the old budget
    if "time_budget" in given and "max_steps" not in given:
        stored_train["max_steps"] = None
    return ModelConfig(**stored_model), TrainConfig(**stored_train)


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
def stop_on_signals(trainer):
    """First Ctrl-C or SIGTERM: finish the step, save, exit. A second Ctrl-C aborts."""
    received: list[int] = []

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        trainer.request_stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class TrainProgress:
    """The trainer's callback (see charrnn.train.Callback): a rich progress bar and log lines."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.val = "-"
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("step {task.fields[step]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[speed]} chars/s"),
            TextColumn("{task.fields[left]} left"),
            console=console,
            transient=False,
        )
        self.task = None

    def __enter__(self):
        self.progress.start()
        self.task = self.progress.add_task(
            "train",
            total=1000,
            step=f"{self.trainer.step:,}",
            loss="-",
            val=self.val,
            speed="-",
            left="-",
        )
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self.trainer.stop_requested:
            self.progress.update(self.task, completed=1000, left="0s")  # the final evaluation
        self.progress.stop()

    def on_start(self, trainer) -> None:
        n = trainer.model.num_parameters()
        where = f"{trainer.device}, {trainer.precision}"
        if trainer.device.type == "cpu":
            where += f", {trainer.threads} thread{'s' if trainer.threads != 1 else ''}"
        self.progress.console.print(f"params  {n:,} on {where}", soft_wrap=True)

    def on_step(self, s) -> None:
        left = "-"
        if s.progress > 0:
            cfg = self.trainer.config
            if cfg.time_budget and s.elapsed / cfg.time_budget >= s.progress - 1e-9:
                left = format_duration(cfg.time_budget - s.elapsed)
            else:
                left = format_duration(s.elapsed * (1 - s.progress) / s.progress)
        self.progress.update(
            self.task,
            completed=1000 * s.progress,
            step=f"{s.step:,}",
            loss="-" if s.train_loss is None else f"{s.train_loss:.3f}",
            val=self.val,
            speed=f"{s.chars_per_s:,.0f}",
            left=left,
        )

    def on_eval(self, e) -> None:
        self.val = f"{e.val_loss:.3f}"
        self.progress.update(self.task, val=self.val)
        mark = "  [green]best[/]" if e.is_best else ""
        loss = format_loss(e.val_loss, loss_unit(self.trainer.corpus.vocab), "  ")
        self.progress.console.print(
            f"step {e.step:>7,}  val {loss}  ({e.seconds:.1f}s){mark}",
            soft_wrap=True,
        )

    def on_save(self, path) -> None:
        pass


STATUS_TEXT = {
    "running": "still running, or killed",
    "finished": "finished",
    "interrupted": "interrupted",
    "patience": "stopped early (patience)",
    "nonfinite": "stopped: non-finite losses",
}


def show_summary(result, trainer) -> None:
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
    if result.best_path.exists():
        table.add_row("best", escape(str(result.best_path)))
    table.add_row("last", escape(str(result.last_path)))
    console.print(table)


# ------------------------------------------------------------------ sample


@cli.command()
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="A .pt file or a run folder. Default: best.pt of the newest run under --out.",
)
@out_option("Where to look for runs when --checkpoint is not given.")
@click.option(
    "--seed",
    default=None,
    help="Prime text the sample continues (printed first). Default: a newline.",
)
@click.option(
    "--seed-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read the prime text from a UTF-8 file instead of --seed.",
)
@click.option(
    "--length",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Characters to generate after the seed (at most, with --stop).",
)
@click.option(
    "--temperature",
    type=FiniteFloat(0),
    default=0.8,
    show_default=True,
    help="Softmax temperature; lower is safer, higher is wilder, 0 is greedy.",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    help="Draw only from the K most likely characters.",
)
@click.option(
    "--top-p",
    type=FiniteFloat(0, 1, min_open=True),
    default=None,
    help="Draw only from the smallest set of characters whose probability reaches P.",
)
@click.option(
    "--num-samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Generate N samples together, as one batch of N streams.",
)
@click.option(
    "--beam",
    type=click.IntRange(min=1),
    default=None,
    help="Beam search with K candidates for the most probable continuation of --length "
    "tokens (--temperature, --top-k and --top-p are ignored).",
)
@click.option(
    "--stop",
    multiple=True,
    metavar="TEXT",
    help="End a sample at the first occurrence of TEXT (not printed). Repeatable.",
)
@click.option(
    "--unknown",
    type=click.Choice(["error", "drop"]),
    default="error",
    show_default=True,
    help="Seed characters the model never saw: stop with an error, or drop them with a warning.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "jsonl"]),
    default="text",
    show_default=True,
    help="text streams the samples; jsonl prints one JSON object per sample.",
)
@click.option(
    "--interactive",
    is_flag=True,
    help="A prompt loop: each line typed is a seed. Ctrl-D or an empty line ends it.",
)
@click.option(
    "--continue",
    "keep_context",
    is_flag=True,
    help="With --interactive: keep the model's state and text from turn to turn.",
)
@click.option(
    "--rng-seed", type=int, default=None, help="Random seed, for a sample you can reproduce."
)
@device_option
def sample(checkpoint, out, seed, seed_file, rng_seed, device, **options):
    """Generate text from a trained model, streaming each character as it is made.

    The text goes to stdout; everything else goes to stderr, so the output can
    be piped or redirected.

    \b
    Examples:
      charrnn sample --seed "ROMEO:" --length 500
      charrnn sample --checkpoint checkpoints/mine/best.pt --temperature 0.5 --top-p 0.9
      charrnn sample --seed "KING" --num-samples 8 --stop $'\\n\\n' --format jsonl
      charrnn sample --seed "JULIET:" --beam 8 --length 80
      charrnn sample --interactive --continue
    """
    with user_errors():
        from charrnn.checkpoint import open_model
        from charrnn.sample import SampleConfig
        from charrnn.sources import read_text

        o = SimpleNamespace(**options)
        if seed is not None and seed_file is not None:
            raise CharrnnError("give --seed or --seed-file, not both")
        if o.keep_context and not o.interactive:
            raise CharrnnError("--continue goes with --interactive")
        if o.beam is not None and (o.num_samples > 1 or o.interactive):
            raise CharrnnError("--beam gives one sample: drop --num-samples and --interactive")
        if seed_file is not None:
            seed = read_text(seed_file, "seed file")
        model, vocab, ckpt = open_model(checkpoint, device, out)
        config = SampleConfig(o.temperature, o.top_k, o.top_p)
        if o.interactive:
            describe_checkpoint(ckpt, vocab)
            interactive_session(model, vocab, o, config, rng_seed)
            return
        show_seed = seed is not None
        if seed is None:
            seed = "\n"
            if vocab.unknown(seed):
                raise CharrnnError("the model has no newline character; give a --seed")
        seed = readable_seed(vocab, seed, o.unknown)
        if not seed:
            raise CharrnnError("nothing is left of the seed once unknown characters are dropped")
        shown_seed = seed if show_seed else ""
        describe_checkpoint(ckpt, vocab)
        if o.beam is not None:
            write_samples([beam_sample(model, vocab, seed, o)], shown_seed, o.output_format)
        elif o.num_samples == 1 and o.output_format == "text":
            stream_sample(model, vocab, seed, shown_seed, o, config, rng_seed)
        else:
            from charrnn.sample import sample_batch

            samples = sample_batch(
                model, vocab, seed, o.length, o.num_samples, config, rng_seed, o.stop
            )
            write_samples(samples, shown_seed, o.output_format)


def describe_checkpoint(ckpt, vocab) -> None:
    val = ckpt.get("val_loss")
    val_text = f", val {val:.3f} nats/{loss_unit(vocab)}" if val is not None else ""
    info(f"[dim]{escape(ckpt['path'])} (step {ckpt.get('step', 0):,}{val_text})[/]")


def readable_seed(vocab, seed: str, policy: str) -> str:
    """The seed without characters the model never saw (--unknown drop, with a
    warning that names them), or an error that lists them (--unknown error)."""
    from charrnn.sample import encode_seed

    kept, dropped = encode_seed(vocab, seed, policy)
    if dropped:
        names = escape(", ".join(repr(c) for c in dropped))
        info(f"[yellow]warning:[/] dropped seed characters the model never saw: {names}")
    return kept


def stream_sample(model, vocab, seed, shown_seed, o, config, rng_seed) -> None:
    from charrnn.sample import generate

    write_stream(shown_seed, generate(model, vocab, seed, o.length, config, rng_seed, o.stop))


def write_stream(prefix: str, pieces) -> None:
    """`prefix`, then each piece as it is made, ending on a newline."""
    write_stdout(prefix)
    last = prefix[-1:] or "\n"
    for piece in pieces:
        write_stdout(piece)
        last = piece[-1]
    if last != "\n":
        write_stdout("\n")


def beam_sample(model, vocab, seed, o):
    from charrnn.sample import Sample, StopMatcher, beam_search

    found = beam_search(model, vocab, seed, o.length, o.beam)
    matcher = StopMatcher(o.stop)
    text = "".join(matcher.push(c) for c in found.text) + matcher.flush()
    return found if text == found.text else Sample(found.seed, text, math.nan)


SAMPLE_RULE = "\n" + "─" * 40 + "\n"


def write_samples(samples, shown_seed: str, output_format: str) -> None:
    """Whole samples: plain text between rules, or one JSON object per line."""
    if output_format == "jsonl":
        import json

        for s in samples:
            mean = s.mean_logprob
            record = {
                "seed": s.seed,
                "text": s.text,
                "characters": s.characters,
                "mean_logprob": None if mean is None or math.isnan(mean) else round(mean, 6),
            }
            write_stdout(json.dumps(record, ensure_ascii=False) + "\n")
        return
    for i, s in enumerate(samples):
        if i:
            write_stdout(SAMPLE_RULE)
        text = shown_seed + s.text
        write_stdout(text if text.endswith("\n") else text + "\n")


def interactive_session(model, vocab, o, config, rng_seed) -> None:
    """Each line typed is a seed; the continuation streams back. With --continue the
    model keeps its state (and so the whole conversation) across turns."""
    from charrnn.sample import Streams, continue_stream

    streams = None
    hint = "keeps the context" if o.keep_context else "starts afresh each line"
    info(f"[dim]type a seed and press Enter; Ctrl-D or an empty line ends ({hint})[/]")
    while True:
        try:
            line = console.input("[bold]> [/]")
        except EOFError:
            break
        if not line:
            break
        try:
            line = readable_seed(vocab, line, o.unknown)
        except CharrnnError as e:  # a bad line is reported; the session goes on
            console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            continue
        if not line:
            continue
        if streams is None or not o.keep_context:
            streams = Streams(model, vocab, rng_seed)
        streams.feed(line)
        write_stream(line, continue_stream(streams, o.length, config, o.stop))


def write_stdout(text: str) -> None:
    """Write and flush, so a pipe or terminal sees each character as it is made.

    A reader that goes away (`| head`) ends the program quietly (see `user_errors`).
    """
    sys.stdout.write(text)
    sys.stdout.flush()


def exit_for_closed_stdout() -> None:
    """End quietly with status 0: a reader that stops early is not an error."""
    import os

    # point stdout at /dev/null, so Python's exit-time flush does not complain
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


# ------------------------------------------------------------------ eval


@cli.command("eval")
@click.argument("textfile", type=click.Path(path_type=Path))
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="A .pt file or a run folder. Default: best.pt of the newest run under --out.",
)
@out_option("Where to look for runs when --checkpoint is not given.")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON to stdout instead of a table.")
def eval_command(textfile, checkpoint, out, device, as_json):
    """Measure how well a model predicts TEXTFILE: nats/char, bits/char, perplexity.

    The state is carried through the text, as in training's validation.
    Characters the model never saw are left out of the text and counted.

    \b
    Examples:
      charrnn eval held-out.txt
      charrnn eval --checkpoint checkpoints/mine/best.pt notes.txt --json
    """
    with user_errors():
        from charrnn.checkpoint import open_model
        from charrnn.sources import read_text
        from charrnn.train import score_text

        text = read_text(textfile, "text file")
        model, vocab, ckpt = open_model(checkpoint, device, out)
        result = score_text(model, vocab, text)
        if as_json:
            print_json({"checkpoint": ckpt["path"], "file": str(textfile), **vars(result)})
            return
        table = Table(title=escape(str(textfile)), show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        unit = loss_unit(vocab)
        table.add_row("checkpoint", escape(ckpt["path"]))
        if vocab.kind == "char":
            table.add_row("characters", f"{result.tokens:,} scored")
        else:
            table.add_row("scored", f"{result.tokens:,} tokens, {result.characters:,} characters")
        table.add_row("loss", f"{result.loss:.4f} nats/{unit}")
        table.add_row("bits/char", f"{result.bits_per_char:.4f}")
        table.add_row("perplexity", f"{result.perplexity:.3f}")
        table.add_row("unknown", escape(describe_unknown(result)))
        console.print(table)


def loss_unit(vocab) -> str:
    """Losses are per id: per character for char models, per byte or piece otherwise."""
    return {"char": "char", "byte": "byte"}.get(vocab.kind, "token")


def format_loss(loss: float, unit: str = "char", sep: str = ", ") -> str:
    """ "1.2345 nats/char, 1.781 bits/char" (bits only where the unit is fixed)."""
    text = f"{loss:.4f} nats/{unit}"
    if unit != "token":
        text += f"{sep}{loss / math.log(2):.3f} bits/{unit}"
    return text


def describe_unknown(result) -> str:
    if not result.unknown:
        return "none: every character is in the vocabulary"
    share = result.unknown / (result.characters + result.unknown)
    names = ", ".join(repr(c) for c in result.unknown_chars[:10])
    more = ", ..." if len(result.unknown_chars) > 10 else ""
    return (
        f"{result.unknown:,} characters ({share:.2%}) the model never saw were left out "
        f"before scoring: {names}{more}"
    )


# ------------------------------------------------------------------ runs, info, plot

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON to stdout instead of a table."
)


def print_json(data) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@cli.command()
@out_option("Folder that holds the run folders.")
@json_option
def runs(out, as_json):
    """List the training runs under --out.

    Each row: name, cell, layers x hidden, parameters, steps, best validation
    bits/char, wall time, date, and how the run ended.

    \b
    Examples:
      charrnn runs
      charrnn runs --out experiments --json
    """
    with user_errors():
        from charrnn.runs import list_runs

        found, unreadable = list_runs(out)
        if as_json:
            print_json([{**vars(r), "best_val_bpc": r.best_val_bpc} for r in found])
        elif found:
            table = Table(
                title=f"runs under {escape(str(out))}",
                box=None,
                pad_edge=False,
                header_style="bold underline",
            )
            for name, justify in RUNS_COLUMNS:
                # only the names and the status may wrap; numbers stay whole
                wraps = name in ("run", "status")
                table.add_column(
                    name, justify=justify, no_wrap=not wraps, overflow="fold" if wraps else None
                )
            for r in found:
                bpc = "-" if r.best_val_bpc is None else f"{r.best_val_bpc:.3f}"
                table.add_row(
                    escape(r.name),
                    r.cell.upper(),
                    f"{r.layers}x{r.hidden}",
                    count(r.parameters),
                    f"{r.steps:,}",
                    bpc,
                    format_duration(r.elapsed),
                    f"{r.created:%Y-%m-%d}",
                    SHORT_STATUS.get(r.status, r.status),
                )
            console.print(table)
        else:
            info(f"no runs under {escape(str(out))}/")
        for run_dir, reason in unreadable:
            info(f"[yellow]warning:[/] skipped {escape(str(run_dir))}: {escape(reason)}")


def count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


RUNS_COLUMNS = [
    ("run", "left"),
    ("cell", "left"),
    ("size", "right"),  # layers x hidden
    ("params", "right"),
    ("steps", "right"),
    ("val bpc", "right"),  # the best validation loss, in bits per character
    ("time", "right"),
    ("date", "left"),
    ("status", "left"),
]
SHORT_STATUS = {
    "running": "running/killed",
    "patience": "early stop",
    "nonfinite": "non-finite",
}


@cli.command("info")
@click.argument("checkpoint", type=click.Path(path_type=Path), required=False)
@out_option("Where to look for runs when CHECKPOINT is not given.")
@json_option
def info_command(checkpoint, out, as_json):
    """Describe a checkpoint: model, vocabulary, losses and options.

    CHECKPOINT is a .pt file or a run folder (default: the newest run's best.pt).

    \b
    Examples:
      charrnn info checkpoints/shakespeare/best.pt
      charrnn info checkpoints/shakespeare --json
    """
    with user_errors():
        from charrnn.checkpoint import load_checkpoint, newest_checkpoint, restore_tokenizer
        from charrnn.runs import data_options, summarize_checkpoint
        from charrnn.tokenizers import LEGACY_TEXT

        path = checkpoint if checkpoint is not None else newest_checkpoint(out)
        ckpt = load_checkpoint(path, mmap=True)
        summary = summarize_checkpoint(ckpt)
        vocab = restore_tokenizer(ckpt)
        details = {
            **summary,
            "format_version": ckpt["format_version"],
            "charrnn_version": ckpt.get("charrnn_version"),
            "corpus": ckpt.get("corpus_path"),
            "corpus_sha256": ckpt.get("corpus_sha256"),
            "tokenizer": vocab.kind,
            "vocab_size": len(vocab),
            "vocab": vocab.chars if vocab.kind == "char" else None,
            "text_config": ckpt.get("text_config", LEGACY_TEXT),
            "tokenizer_config": ckpt.get("tokenizer_config", {"kind": vocab.kind}),
            "model_config": ckpt["model_config"],
            "train_config": ckpt.get("train_config", {}),
            "machine": ckpt.get("machine"),
        }
        if as_json:
            print_json(details)
            return
        console.print(checkpoint_table(details, vocab))
        config = Table(title="options", show_header=False, box=None, pad_edge=False)
        config.add_column(style="bold")
        config.add_column()
        options = data_options(details["text_config"], details["tokenizer_config"])
        options.update(details["model_config"], **details["train_config"])
        for key, value in options.items():
            config.add_row(key.replace("_", "-"), escape(str(value)))
        console.print(config)


def checkpoint_table(d: dict, vocab) -> Table:
    table = Table(title=escape(d["path"]), show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    m = d["model_config"]
    table.add_row("model", f"{m['cell'].upper()} {m['layers']}x{m['hidden']}, embed {m['embed']}")
    table.add_row("parameters", f"{d['parameters']:,}")
    if vocab.kind == "char":
        shown = f"{vocab.describe()}: {vocab_preview(vocab.chars)}"
    else:
        shown = vocab.describe()
    text = d["text_config"]
    line_ends = "kept" if text.get("keep_line_ends") else "LF"
    table.add_row("vocabulary", escape(shown))
    table.add_row("text", f"normalize {text.get('normalize')}, line ends {line_ends}")
    table.add_row("corpus", escape(f"{d['corpus']} (sha256 {str(d['corpus_sha256'])[:12]})"))
    table.add_row(
        "trained",
        f"{d['steps']:,} steps, {d['chars_seen']:,} chars, {d['epoch']} full passes, "
        f"{format_duration(d['elapsed'])}",
    )
    if machine := d.get("machine"):
        where = f"{machine['device']}, {machine['precision']}, {machine['threads']} threads"
        table.add_row("ran on", escape(where))
    for label, key in (("val loss", "val_loss"), ("best val loss", "best_val_loss")):
        if d[key] is not None:
            table.add_row(label, format_loss(d[key], loss_unit(vocab)))
    if d["skipped_steps"]:
        table.add_row("skipped", f"{d['skipped_steps']:,} non-finite steps")
    if Path(d["path"]).name == "last.pt":  # best.pt was saved mid-run: its status says nothing
        table.add_row("status", STATUS_TEXT.get(d["status"], d["status"]))
    table.add_row("format", f"version {d['format_version']}, charrnn {d['charrnn_version']}")
    return table


def vocab_preview(chars: str, limit: int = 60) -> str:
    """The vocabulary with whitespace and control characters made visible."""
    visible = {"\n": "\\n", "\r": "\\r", "\t": "\\t", " ": "␠"}

    def show(c: str) -> str:
        if c in visible:
            return visible[c]
        return c if c.isprintable() else f"\\u{ord(c):04x}"

    text = " ".join(show(c) for c in chars[:limit])
    return text + (f" … (+{len(chars) - limit} more)" if len(chars) > limit else "")


@cli.command()
@click.argument("run_names", metavar="RUN...", nargs=-1, required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("loss.png"),
    show_default=True,
    help="The PNG file to write.",
)
@out_option("Folder that holds the run folders named by RUN.")
def plot(run_names, output, out):
    """Draw the loss curves of one or more runs into a PNG.

    Training and validation loss against characters seen, one colour per RUN.

    Each RUN is a run name under --out or a path to a run folder. Needs
    matplotlib: pip install 'charrnn[plot]'.

    \b
    Examples:
      charrnn plot shakespeare -o loss.png
      charrnn plot small big bigger -o compare.png
    """
    with user_errors():
        from charrnn.plot import plot_runs
        from charrnn.runs import METRICS, read_metrics

        series = []
        for name in run_names:
            run_dir = Path(name) if Path(name).is_dir() else out / name
            if not (run_dir / METRICS).is_file():
                raise CharrnnError(f"run {run_dir} has no {METRICS}")
            series.append((run_dir.name, read_metrics(run_dir)))
        plot_runs(series, output)
        info(f"wrote {escape(str(output))}")
