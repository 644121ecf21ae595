"""Refit the sizing rule's constants (charrnn.runs.sizing) from the sweeps, and draw
docs/sizing.png. Reads benchmarks/sizing/runs.jsonl (written by benchmarks/sizing.py).

A group is one corpus, budget and machine: the runs in it compete. The rule picks, in a
group, the largest model whose effective tokens per parameter reach TOKENS_PER_PARAM,
where passes past the first are worth at most REPEAT_WORTH more (see
`effective_passes`). The fit tries a grid of both and keeps the pair whose picks lose
least against each group's best run (the regret, in nats per token); it prints every
group's pick and the passes at which small corpora reached their best, from which
MAX_PASSES is read.

    python benchmarks/fit_sizing.py [--runs FILE] [--plot docs/sizing.png]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

from charrnn.runs.sizing import effective_passes

HERE = Path(__file__).resolve().parent
RUNS = HERE / "sizing" / "runs.jsonl"
RATIOS = [0.25 * 2 ** (k / 4) for k in range(0, 25)]  # 0.25 .. 16, a grid 19% apart
WORTHS = [2, 4, 8, 15, 30, 60, 120, 250, 1000]


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


SMALLEST_HIDDEN = 256  # the planner's ladder starts at 1x256 (charrnn.runs.sizing.CPU_LADDER)


def groups_of(runs: list[dict]) -> dict[tuple, list[dict]]:
    groups = defaultdict(list)
    for r in runs:
        if r["hidden"] < SMALLEST_HIDDEN:
            continue  # a size the planner never chooses
        groups[(r["cpu"], r["corpus"], r["train_chars"], r["budget_s"])].append(r)
    return {k: v for k, v in groups.items() if len({(r["layers"], r["hidden"]) for r in v}) > 1}


def ratio(run: dict, worth: float) -> float:
    """Effective training tokens per parameter, over the whole run."""
    passes = run["chars_seen"] / run["train_chars"]
    return run["train_chars"] * effective_passes(passes, worth) / run["params"]


def pick(group: list[dict], tokens_per_param: float, worth: float) -> dict:
    """The rule's choice among a group's sizes: the largest that fits, else the smallest.
    A size is represented by its best run (regularisation is fitted apart)."""
    best_of_size = {}
    for r in sorted(group, key=lambda r: r["best_val"], reverse=True):
        best_of_size[r["params"]] = r
    sizes = sorted(best_of_size)
    fitting = [n for n in sizes if ratio(best_of_size[n], worth) >= tokens_per_param]
    return best_of_size[fitting[-1] if fitting else sizes[0]]


def regret(groups, tokens_per_param: float, worth: float) -> float:
    return sum(
        pick(g, tokens_per_param, worth)["best_val"] - min(r["best_val"] for r in g)
        for g in groups.values()
    )


def fit(groups) -> tuple[float, float, float]:
    """(TOKENS_PER_PARAM, REPEAT_WORTH, total regret, the tied REPEAT_WORTHs); ties go
    to the middle of the best range of ratios, so the rule sits away from both edges."""
    best = min(regret(groups, q, w) for q in RATIOS for w in WORTHS)
    ties = [(q, w) for w in WORTHS for q in RATIOS if regret(groups, q, w) <= best + 1e-9]
    worths = sorted({w for _, w in ties})
    worth = statistics.median_low(worths)
    qs = [q for q, w in ties if w == worth]
    return math.sqrt(min(qs) * max(qs)), worth, best, worths


def length_sweeps(runs: list[dict]) -> dict[tuple, list[tuple[float, float]]]:
    """Runs alike but for how many passes they made (a --max-steps cap): (passes, best
    val) for each, from which MAX_PASSES is read."""
    alike = defaultdict(list)
    for r in runs:
        key = (r["corpus"], r["layers"], r["hidden"], r["embed"], r["dropout"], r["weight_decay"],
               r["lr"], r["batch_size"])  # fmt: skip
        alike[key].append((round(r["passes"]), r["best_val"]))
    return {k: sorted(v) for k, v in alike.items() if len({p for p, _ in v}) > 1}


def plot(groups, worth: float, tokens_per_param: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (_cpu, corpus, n, budget), runs in sorted(groups.items(), key=lambda kv: kv[0][1:]):
        best = min(r["best_val"] for r in runs)
        xs = [ratio(r, worth) for r in runs]
        ys = [r["best_val"] - best for r in runs]
        ax.scatter(xs, ys, label=f"{corpus} ({n:,} chars), {budget:g} s", s=22)
    ax.axvline(tokens_per_param, color="k", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(f"effective training tokens per parameter (repeats worth <= {worth:g})")
    ax.set_ylabel("best val loss - the group's best (nats)")
    ax.set_title("The sizing rule: the largest model right of the dashed line")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--plot", type=Path, default=None, help="draw the fit here (PNG)")
    args = parser.parse_args()
    runs = load(args.runs)
    groups = groups_of(runs)
    tokens_per_param, worth, total, worths = fit(groups)
    print(f"{len(runs)} runs, {len(groups)} groups that compare sizes")
    print(f"TOKENS_PER_PARAM = {tokens_per_param:.2f}")
    print(f"REPEAT_WORTH = {worth:g} (as good: {', '.join(f'{w:g}' for w in worths)})")
    print(f"regret: {total:.4f} nats in all")
    print()
    print(f"{'corpus':28} {'budget':>7} {'best run':32} {'val':>7} {'rule picks':32} {'val':>7}")
    for (_cpu, corpus, _n, budget), g in sorted(groups.items(), key=lambda kv: kv[0][1:]):
        best = min(g, key=lambda r: r["best_val"])
        chosen = pick(g, tokens_per_param, worth)
        print(
            f"{corpus[:28]:28} {budget:>6g}s {shape(best):32} {best['best_val']:7.4f} "
            f"{shape(chosen):32} {chosen['best_val']:7.4f}"
        )
    for key, points in length_sweeps(runs).items():
        corpus, layers, hidden, _embed, dropout, decay, lr, batch = key
        shown = ", ".join(f"{p} passes {v:.4f}" for p, v in points)
        print(f"\nlength: {corpus} {layers}x{hidden} d{dropout:g} wd{decay:g}: {shown}")
    if args.plot:
        plot(groups, worth, tokens_per_param, args.plot)
        print(f"\ndrew {args.plot}")


def shape(r: dict) -> str:
    return (
        f"{r['layers']}x{r['hidden']} b{r['batch_size']} d{r['dropout']:g}"
        f"{'L' if r.get('dropout_kind') == 'locked' else ''} "
        f"lr{r['lr']:g} {r['precision']}"
    )


if __name__ == "__main__":
    main()
