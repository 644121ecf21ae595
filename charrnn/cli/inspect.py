"""`charrnn eval`, `runs`, `info` and `plot`: looking at what training made."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from charrnn.cli.console import (
    console,
    count,
    format_loss,
    info,
    loss_unit,
    print_json,
    user_errors,
    warn,
)
from charrnn.cli.options import checkpoint_option, device_option, json_option, out_option
from charrnn.cli.train import STATUS_TEXT
from charrnn.errors import CharrnnError
from charrnn.options import format_duration


@click.command("eval")
@click.argument("textfile", type=click.Path(path_type=Path))
@checkpoint_option()
@out_option("Where to look for runs when --checkpoint is not given.")
@device_option()
@json_option
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
        from charrnn.evaluate import score_text
        from charrnn.text.sources import read_text

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


@click.command()
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
        from charrnn.runs.listing import list_runs

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
            warn(f"skipped {escape(str(run_dir))}: {escape(reason)}")


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


@click.command("info")
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
        from charrnn.runs.listing import summarize_checkpoint
        from charrnn.runs.records import data_options
        from charrnn.text.config import LEGACY_TEXT

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


@click.command()
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
        from charrnn.runs.records import METRICS, read_metrics

        series = []
        for name in run_names:
            run_dir = Path(name) if Path(name).is_dir() else out / name
            if not (run_dir / METRICS).is_file():
                raise CharrnnError(f"run {run_dir} has no {METRICS}")
            series.append((run_dir.name, read_metrics(run_dir)))
        plot_runs(series, output)
        info(f"wrote {escape(str(output))}")
