"""The browser side of charrnn: one JavaScript runtime and the views inside the model.

    runtime/    the model in plain JavaScript, in parts that `runtime_source` joins
                into one classic script, runtime.js (it defines `charrnn`):
                  common.js    the format's constants and its error
                  weights.js   bytes packed in a script; float16 and int8 to float32
                  text.js      preparation, the char, byte and SentencePiece tokenizers
                  network.js   LSTM/GRU/RNN layers, the head, the WebAssembly SIMD kernel
                  sampling.js  the PRNG, temperature, top-k, top-p, stop strings
                  model.js     generate, score, trace; opening a manifest and its bytes
                  worker.js    the model in a Web Worker, or in the page
    assets/     views.js/.css (the surprisal and neuron views, `charrnnViews`), and the
                exported page: page.html (its index.html), page.js, style.css

`charrnn export` writes these beside the weights; `charrnn serve` serves the same files
to its playground, so the two can never disagree. Nothing here imports torch.
"""

from __future__ import annotations

from pathlib import Path

WEB = Path(__file__).parent
ASSETS = WEB / "assets"
RUNTIME, VIEWS, PAGE_SCRIPT, PAGE, PAGE_STYLE, VIEWS_STYLE = (
    "runtime.js",
    "views.js",
    "page.js",
    "page.html",
    "style.css",
    "views.css",
)
RUNTIME_PARTS = (
    "common.js",
    "weights.js",
    "text.js",
    "network.js",
    "sampling.js",
    "model.js",
    "worker.js",
)
RUNTIME_HEADER = """\
// charrnn's browser runtime: a trained charrnn model, run in plain JavaScript.
// Joined from charrnn/web/runtime/*.js, the parts named in each section below.
//
// One classic script (no modules, no fetch), so a page opened from file:// can use it,
// and the same source runs in a Web Worker: `charrnnRuntime` is the whole runtime, and
// its own source text (Function.prototype.toString) is what the worker is made from.
// It defines one global, `charrnn`. The weights come from `charrnn export` (model.js)
// or from `charrnn serve`; see docs/export.md for the format and the API.
"use strict";

function charrnnRuntime(scope) {
"""
RUNTIME_FOOTER = """}

charrnnRuntime(typeof self !== "undefined" ? self : globalThis);
"""


def asset(name: str) -> Path:
    """The path of one of the page's or the views' files."""
    return ASSETS / name


def runtime_source() -> str:
    """runtime.js: the parts, in order, inside the one function the worker is made from."""
    parts = []
    for name in RUNTIME_PARTS:
        text = (WEB / "runtime" / name).read_text(encoding="utf-8")
        indented = "".join(f"  {line}" if line.strip() else line for line in text.splitlines(True))
        parts.append(f"  // {'-' * 60} {name}\n{indented}")
    return RUNTIME_HEADER + "\n".join(parts) + RUNTIME_FOOTER
