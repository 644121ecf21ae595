"""ExportConfig: how `charrnn export` stores the weights. Each field is also the option
that sets it (see charrnn.options); nothing heavy is imported here."""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.options import option

DTYPES = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ExportConfig:
    dtype: str = option(
        "fp16",
        "How the weights are stored: fp32 (exact), fp16 (half the size), or int8 with one "
        "scale per row (a quarter of the size).",
        choices=DTYPES,
    )
