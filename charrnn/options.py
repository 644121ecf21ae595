"""What an option is, written once beside the config field it sets.

A config dataclass declares each field with `option(default, help, ...)`: the
default is the field's own, and the metadata says how the command line spells
it, which values it takes and which section of `--help` lists it. The CLI
(`charrnn.cli.options`) turns these into click options, and docs/options.md's option
tables are generated from those commands, so a default, a range or a help text
is written in exactly one place.

This module imports nothing heavy: `charrnn train --help` reads it without torch.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

# what --device accepts; whether this machine has it is charrnn.runtime's to say
DEVICE_NAME = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_METAVAR = "auto|cpu|cuda|cuda:N|mps"
PRECISIONS = ("auto", "fp32", "bf16")

# the sections of `charrnn train --help` and `charrnn serve --help`, in order
SECTIONS = (
    "text",
    "model",
    "batching",
    "optimisation",
    "length and evaluation",
    "run control",
    "machine",
    "server",
    "limits",
)


@dataclass(frozen=True)
class Spec:
    """How one config field appears as a command-line option."""

    help: str
    section: str | None = None  # one of SECTIONS
    flag: str | None = None  # the option's name when it is not the field's (--time)
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # the bound itself is refused
    max_open: bool = False
    kind: str | None = None  # int, float, str, bool, duration or device; None: the annotation
    default_text: str | None = None  # the default, where the field's default is a placeholder


def fitted(default) -> str:
    """The shown default of an option a new run's plan chooses (charrnn.runs.sizing)."""
    return f"fitted by the plan; {default} with CHARRNN_PLAN=off"


def option(default, help: str, **spec):
    """A dataclass field with a default and the option that sets it."""
    return dataclasses.field(default=default, metadata={"option": Spec(help=help, **spec)})


def option_fields(config: type) -> list[tuple[dataclasses.Field, Spec]]:
    """The fields of a config dataclass that are command-line options, in order."""
    return [(f, f.metadata["option"]) for f in dataclasses.fields(config) if "option" in f.metadata]


def field_kind(f: dataclasses.Field, spec: Spec) -> str:
    """int, float, str, bool, duration, device or choice: what the option's values are."""
    if spec.kind:
        return spec.kind
    if spec.choices:
        return "choice"
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    return annotation.split("|")[0].strip()


def flag_name(f: dataclasses.Field, spec: Spec) -> str:
    """--seq-len for seq_len; --time for time_budget (its Spec.flag)."""
    return "--" + (spec.flag or f.name.replace("_", "-"))


# ------------------------------------------------------------------ durations

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smh]?)")
_DURATION_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(value) -> float:
    """Seconds in a wall-clock length: 90, 90s, 3m, 1.5h, 1h30m. ValueError if not one."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if not text or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration such as 90s, 3m, 1h or 1h30m")
        seconds = sum(float(n) * _DURATION_UNIT[u] for n, u in parts)
    if not seconds > 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """1h02m03s, 4m05s or 6s."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
