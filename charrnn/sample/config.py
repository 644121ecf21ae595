"""SampleConfig: how each next character is drawn. Each field is also the `charrnn sample`
option that sets it (see charrnn.options); nothing heavy is imported here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from charrnn.errors import CharrnnError
from charrnn.options import option


@dataclass(frozen=True)
class SampleConfig:
    temperature: float = option(
        0.8,
        "Softmax temperature; lower is safer, higher is wilder, 0 is greedy.",
        metavar="T",
        min=0,
    )
    top_k: int | None = option(
        None, "Draw only from the K most likely characters.", metavar="K", min=1, default_text="off"
    )
    top_p: float | None = option(
        None,
        "Draw only from the smallest set of characters whose probability reaches P.",
        metavar="P",
        min=0,
        max=1,
        min_open=True,
        default_text="off",
    )

    def __post_init__(self):
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise CharrnnError(f"temperature must be a finite number >= 0, not {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise CharrnnError(f"top-k must be at least 1, not {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise CharrnnError(f"top-p must be in (0, 1], not {self.top_p}")
