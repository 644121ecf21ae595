"""The browser side of charrnn: one JavaScript runtime and the views inside the model.

    runtime.js  the model in plain JavaScript: tokenizers, LSTM/GRU/RNN, sampling,
                score and trace; runs in a page or a worker (defines `charrnn`)
    views.js    the surprisal and neuron views (defines `charrnnViews`)
    page.js     the exported page: generation controls and the views
    page.html   the exported page's markup; style.css, views.css its looks

`charrnn export` copies these files beside the weights; `charrnn serve` serves the same
files to its playground, so the two can never disagree. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

WEB = Path(__file__).parent
RUNTIME, VIEWS, PAGE_SCRIPT, PAGE, PAGE_STYLE, VIEWS_STYLE = (
    "runtime.js",
    "views.js",
    "page.js",
    "page.html",
    "style.css",
    "views.css",
)


def asset(name: str) -> Path:
    """The path of one of the files above."""
    return WEB / name
