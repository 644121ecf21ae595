"""ModelConfig: the model's shape, saved in every checkpoint and rebuilt with
`ModelConfig(**d)`. Each field but vocab_size (which follows from the corpus) is
also the `charrnn train` option that sets it. Nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from charrnn.options import fitted, option

CELLS = ("lstm", "gru", "rnn")
DROPOUT_KINDS = ("element", "locked")


@dataclass
class ModelConfig:
    vocab_size: int
    cell: str = option(
        "lstm", "Recurrent cell type.", choices=CELLS, default_text=fitted("lstm"), section="model"
    )
    layers: int = option(
        1,
        "Number of stacked recurrent layers.",
        metavar="N",
        min=1,
        default_text=fitted(1),
        section="model",
    )
    hidden: int = option(
        512, "Hidden units per layer.", metavar="N", min=1, default_text=fitted(512),
        section="model",
    )  # fmt: skip
    embed: int = option(
        64, "Character embedding size.", metavar="N", min=1, default_text=fitted(64),
        section="model",
    )  # fmt: skip
    dropout: float = option(
        0.0,
        "Dropout between layers and before the output layer, in [0, 1).",
        metavar="P",
        min=0,
        max=1,
        max_open=True,
        default_text=fitted(0),
        section="model",
    )
    dropout_kind: str = option(
        "element",
        "element: a new dropout mask at every step; locked: one mask per stream for the "
        "whole window (variational dropout), as strong for an RNN and far fewer random "
        "numbers, so it costs almost nothing on a CPU.",
        choices=DROPOUT_KINDS,
        default_text=fitted("element"),
        section="model",
    )

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {self.cell!r}")
        if self.dropout_kind not in DROPOUT_KINDS:
            raise ValueError(
                f"dropout_kind must be one of {DROPOUT_KINDS}, not {self.dropout_kind!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)
