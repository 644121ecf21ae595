"""`charrnn export`: a trained model as a static page that samples in the browser."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from charrnn.cli.console import console, info, user_errors
from charrnn.cli.options import checkpoint_option, config_options, out_option
from charrnn.export.config import ExportConfig


@click.command("export")
@click.argument("folder", type=click.Path(path_type=Path))
@checkpoint_option("A .pt file or a run folder.")
@out_option("Where to look for runs when --checkpoint is not given.")
@config_options(ExportConfig)
@click.option(
    "--eval-text",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="PATH",
    show_default="the run's validation split",
    help="Measure the stored weights' loss on this text instead.",
)
@click.option("--force", is_flag=True, help="Write into a non-empty folder that is not an export.")
def export(folder, checkpoint, out, dtype, eval_text, force):
    """Write FOLDER: a web page that runs the model in the browser, with no server.

    Open FOLDER/index.html by double-click, or put the folder on any static host.
    The page samples, and shows the model's surprisal at each character and the
    value of any unit; `window.charrnnModel` is a JavaScript API (docs/export.md).
    The loss of the stored weights is measured next to fp32's.

    \b
    Examples:
      charrnn export site/
      charrnn export --checkpoint checkpoints/mine --dtype int8 site/
    """
    with user_errors():
        from charrnn.checkpoint import open_model
        from charrnn.export.folder import export_model

        model, vocab, ckpt = open_model(checkpoint, "cpu", out)
        config = ExportConfig(dtype=dtype)
        with console.status("writing the export and measuring its loss…"):
            report = export_model(model, vocab, ckpt, folder, config.dtype, force, eval_text)
        show_report(report, vocab.unit)


def show_report(report, unit: str) -> None:
    table = Table(box=None, pad_edge=False, header_style="bold underline")
    table.add_column("file")
    table.add_column("size", justify="right")
    for name, size in report.sizes.items():
        table.add_row(escape(name), f"{size / 1024:,.1f} KB")
    table.add_row("[bold]total[/]", f"[bold]{report.total / 1024:,.1f} KB[/]")
    console.print(table)
    if report.losses:
        info(f"loss on {escape(report.eval_source)} ({report.eval_tokens:,} {unit}s):")
        fp32 = report.losses["fp32"]
        for dtype, loss in report.losses.items():
            delta = "" if dtype == "fp32" else f" ({loss - fp32:+.4f})"
            info(f"  {dtype:>5}  {loss:.4f} nats/{unit}{delta}")
    else:
        info("no validation text found for the loss check; pass --eval-text FILE")
    info(f"[green]wrote[/] {escape(str(report.folder))}/index.html: open it in a browser")
