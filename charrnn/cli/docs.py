"""The option tables of docs/options.md, made from the click commands themselves.

Each table sits between `<!-- options: COMMAND -->` and `<!-- /options -->` in
docs/options.md. `python -m charrnn.cli.docs` (or `make docs`) rewrites them, in
docs/options.md or in the markdown file named; a test fails when they differ from
what the commands say, so the tables cannot drift.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

MARKER = re.compile(r"(<!-- options: (\S+) -->\n)(.*?)(<!-- /options -->)", re.S)


def option_table(command: click.Command) -> str:
    """A markdown table: each option with its value, its default and its help."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    ctx = click.Context(command, info_name=command.name)
    for param in command.get_params(ctx):
        if isinstance(param, click.Option) and "--help" not in param.opts and not param.hidden:
            rows.append(
                f"| {cell(spelling(param, ctx))} | {cell(default(param))} | {cell(param.help)} |"
            )
    return "\n".join(rows) + "\n"


def spelling(param: click.Option, ctx) -> str:
    longs = [o for o in param.opts if o.startswith("--")]
    shorts = [o for o in param.opts if not o.startswith("--")]
    text = f"`{longs[0]}"
    if not param.is_flag or param.flag_value == "":
        text += f" {metavar(param, ctx)}"
    text += "`"
    return text + "".join(f", `{o}`" for o in shorts)


def metavar(param: click.Option, ctx) -> str:
    if param.metavar:
        return param.metavar
    if isinstance(param.type, click.Choice):
        return "|".join(param.type.choices)
    return (param.type.get_metavar(param, ctx) or param.type.name.upper()).strip("[]")


def default(param: click.Option) -> str:
    shown = param.show_default
    if isinstance(shown, str):
        return shown
    value = param.default
    if param.is_flag and isinstance(param.flag_value, bool):
        return "on" if value else "off"
    if value is None or value == () or not shown:
        return ""
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return f"`{value}`"


def cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def render(markdown: str, commands: dict[str, click.Command]) -> str:
    """`markdown` with every marked table made from its command."""

    def table(m: re.Match) -> str:
        return m[1] + option_table(commands[m[2]]) + m[4]

    return MARKER.sub(table, markdown)


def main(argv: list[str]) -> int:
    from charrnn.cli import cli

    path = Path(argv[0] if argv else "docs/options.md")
    text = path.read_text(encoding="utf-8")
    new = render(text, cli.commands)
    if new != text:
        path.write_text(new, encoding="utf-8")
        print(f"updated the option tables in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
