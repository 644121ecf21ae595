"""Loss curves from metrics.jsonl, drawn with matplotlib (the optional `plot` extra)."""

from __future__ import annotations

import math
from pathlib import Path

from charrnn.errors import CharrnnError
from charrnn.files import atomic_write

INSTALL_HINT = "pip install 'charrnn[plot]'"


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _series(records: list[dict], event: str, key: str) -> tuple[list[float], list[float]]:
    points = [
        (r["chars_seen"] / 1e6, r[key])
        for r in records
        if r.get("event") == event and isinstance(r.get(key), (int, float))
    ]
    return [x for x, _ in points], [y for _, y in points]


def plot_runs(runs: list[tuple[str, list[dict]]], path: Path) -> None:
    """Train loss (thin) and validation loss (thick, dotted with markers) against
    characters seen, one colour per run, into a PNG at `path`."""
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
    except ImportError:
        raise CharrnnError(f"plotting needs matplotlib: {INSTALL_HINT}") from None

    fig = Figure(figsize=(9, 5.5), dpi=110, layout="constrained")
    ax = fig.subplots()
    shown = []
    for i, (name, records) in enumerate(runs):
        color = f"C{i % 10}"
        tx, ty = _series(records, "train", "train_loss")
        vx, vy = _series(records, "eval", "val_loss")
        if tx:
            ax.plot(tx, ty, color=color, lw=1, alpha=0.6, label=f"{name} train")
        if vx:
            ax.plot(vx, vy, color=color, lw=2, marker="o", ms=4, label=f"{name} validation")
        # the first steps sit near ln(vocab size) and would flatten everything after them
        shown += ty[len(ty) // 20 :] + vy
    if not shown:
        raise CharrnnError("nothing to plot: the runs have no logged losses yet")
    low, high = min(shown), max(shown)
    pad = 0.05 * (high - low or 1.0)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel("characters seen (millions)")
    ax.set_ylabel("loss (nats/char)")
    bits = ax.secondary_yaxis(
        "right", functions=(lambda n: n / math.log(2), lambda b: b * math.log(2))
    )
    bits.set_ylabel("bits/char")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("charrnn: " + ", ".join(name for name, _ in runs))
    atomic_write(Path(path), lambda f: fig.savefig(f, format="png"))
