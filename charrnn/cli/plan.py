"""The plan table of `charrnn train`: each fitted option, its value and where it came from."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from charrnn.cli.console import console, info
from charrnn.options import format_duration


def show_plan(prepared, measurements: bool = False) -> None:
    """The plan of a new run (or the note that every planned option was given)."""
    from charrnn.runs.resume import FLAGS  # torch is loaded by now: the corpus was read

    fit, unit = prepared.fit, prepared.corpus.unit
    if fit is None:
        from charrnn.runs.start import plans_off

        why = "CHARRNN_PLAN=off" if plans_off() else "every option a plan fits was given"
        info(f"plan    none ({why}): the options left out take their fixed defaults")
        return
    budget = prepared.train_config
    length = [format_duration(budget.time_budget)] if budget.time_budget else []
    length += [f"{budget.max_steps:,} steps"] if budget.max_steps else []
    info(
        f"plan    fitted to {fit.train_tokens:,} training {unit}, {' or '.join(length)} "
        f"and this machine (probe {fit.probe_seconds:.1f} s)"
    )
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for column in ("option", "value", "from", "why"):
        table.add_column(column)
    for name, choice in fit.choices.items():
        table.add_row(FLAGS[name], escape(str(choice.value)), choice.source, escape(choice.why))
    console.print(table)
    if fit.tokens_per_s is not None:
        ranks = f" ({fit.processes} processes)" if fit.processes > 1 else ""
        info(
            f"expect  {fit.tokens_per_s:,.0f} {unit}/s{ranks} -> {fit.predicted_tokens:,} "
            f"{unit} seen, {fit.passes:.1f} passes over the training split"
        )
    if measurements:
        for m in fit.measured:
            speed = "cannot run" if m["tokens_per_s"] is None else f"{m['tokens_per_s']:,} {unit}/s"
            info(f"probe   {m['candidate']}: {speed}")
