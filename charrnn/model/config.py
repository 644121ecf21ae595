"""ModelConfig: the model's shape, saved in every checkpoint and rebuilt with
`ModelConfig(**d)`. Each field but vocab_size (which follows from the corpus) is
also the `charrnn train` option that sets it. Nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from charrnn.options import option

CELLS = ("lstm", "gru", "rnn")


@dataclass
class ModelConfig:
    vocab_size: int
    cell: str = option("lstm", "Recurrent cell type.", choices=CELLS, section="model")
    layers: int = option(
        1, "Number of stacked recurrent layers.", metavar="N", min=1, section="model"
    )
    hidden: int = option(512, "Hidden units per layer.", metavar="N", min=1, section="model")
    embed: int = option(64, "Character embedding size.", metavar="N", min=1, section="model")
    dropout: float = option(
        0.0,
        "Dropout between layers and before the output layer, in [0, 1).",
        metavar="P",
        min=0,
        max=1,
        max_open=True,
        section="model",
    )

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, not {self.cell!r}")

    def to_dict(self) -> dict:
        return asdict(self)
