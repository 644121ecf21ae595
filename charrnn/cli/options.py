"""Click options made from the library's config fields, and help grouped into sections.

A config field declared with `charrnn.options.option` becomes a click option here
(`config_options`): its name, default, range, metavar and help come from the field,
so nothing is written twice. Options only the CLI has (--name, --seed, --json) are
declared below with click itself, each once.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from charrnn.options import (
    DEVICE_METAVAR,
    DEVICE_NAME,
    SECTIONS,
    field_kind,
    flag_name,
    option_fields,
    parse_duration,
)

# ------------------------------------------------------------------ parameter types


class Duration(click.ParamType):
    """A wall-clock length: 90, 90s, 3m, 1.5h, 1h30m."""

    name = "duration"

    def convert(self, value, param, ctx):
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class FiniteFloat(click.FloatRange):
    """FloatRange that also refuses nan and inf (which compare false to every bound)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


class DeviceName(click.ParamType):
    """auto, cpu, cuda, cuda:N or mps. Whether the machine has it is the library's
    to say (charrnn.runtime.resolve_device), once torch is loaded."""

    name = "device"

    def get_metavar(self, param, ctx=None):
        return f"[{DEVICE_METAVAR}]"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if not DEVICE_NAME.match(text):
            self.fail(f"{value!r} is not one of auto, cpu, cuda, cuda:N, mps", param, ctx)
        return text


# ------------------------------------------------------------------ sections


class SectionOption(click.Option):
    """An option that knows which section of the help lists it."""

    def __init__(self, *args, section: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.section = section


class SectionedCommand(click.Command):
    """Help that lists options under headings (SECTIONS order), not as one long list."""

    def format_options(self, ctx, formatter) -> None:
        groups: dict[str, list] = {}
        for param in self.get_params(ctx):
            if not isinstance(param, click.Option):
                continue  # the arguments are in the usage line and the description
            record = param.get_help_record(ctx)
            if record is not None:
                section = getattr(param, "section", None) or "other"
                groups.setdefault(section, []).append(record)
        order = [s for s in SECTIONS if s in groups] + [s for s in groups if s not in SECTIONS]
        for section in order:
            title = "Options" if len(order) == 1 else section.capitalize()
            with formatter.section(title):
                formatter.write_dl(groups[section])


# ------------------------------------------------------------------ options from configs


def click_type(f, spec):
    kind = field_kind(f, spec)
    bounds = {"min": spec.min, "max": spec.max}
    opens = {"min_open": spec.min_open, "max_open": spec.max_open}
    if kind == "choice":
        return click.Choice(spec.choices)
    if kind == "duration":
        return Duration()
    if kind == "device":
        return DeviceName()
    if kind == "int":
        return click.IntRange(**bounds, **opens) if spec.min is not None else click.INT
    if kind == "float":
        return FiniteFloat(**bounds, **opens)
    return click.STRING


def config_option(f, spec, section: str | None = None):
    """The click option for one config field; its parameter name is the field's."""
    kind = field_kind(f, spec)
    kwargs = {
        "cls": SectionOption,
        "section": section or spec.section,
        "help": spec.help,
        "default": f.default,
    }
    if kind == "bool":
        kwargs["is_flag"] = True
    else:
        kwargs["type"] = click_type(f, spec)
        if spec.metavar and kind not in ("choice", "device"):
            kwargs["metavar"] = spec.metavar
        kwargs["show_default"] = spec.default_text or (f.default is not None)
    return click.option(flag_name(f, spec), f.name, **kwargs)


def config_options(*configs, section: str | None = None):
    """Every option field of `configs`, in order, as click options on a command."""
    specs = [(f, spec) for config in configs for f, spec in option_fields(config)]

    def decorate(command):
        for f, spec in reversed(specs):  # click lists decorators bottom-up
            command = config_option(f, spec, section)(command)
        return command

    return decorate


# ------------------------------------------------------------------ options several commands share


def out_option(help: str, section: str | None = None):
    return click.option(
        "--out",
        type=click.Path(path_type=Path),
        default=Path("checkpoints"),
        show_default=True,
        metavar="DIR",
        help=help,
        cls=SectionOption,
        section=section,
    )


def checkpoint_option(help: str = "A .pt file or a run folder."):
    return click.option(
        "--checkpoint",
        type=click.Path(path_type=Path),
        default=None,
        metavar="PATH",
        show_default="newest run's best.pt",
        help=help,
    )


def device_option():
    from charrnn.train.config import TrainConfig

    (f, spec), *_ = [(f, s) for f, s in option_fields(TrainConfig) if f.name == "device"]
    return config_option(f, spec)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON to stdout instead of a table."
)
