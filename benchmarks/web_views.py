"""The views inside an exported model, measured and pictured: how long the neuron search
takes to rank every unit against a pattern, the best units it finds, and screenshots of
the page and its two views (docs/export-page.png, export-surprisal.png,
export-neurons.png).

    python benchmarks/web_views.py --checkpoint checkpoints/RUN --pattern '\\[[^\\]]*\\]'
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright
from rich.console import Console
from rich.table import Table

import charrnn
from charrnn.checkpoint import newest_checkpoint, open_model
from charrnn.export.folder import export_model
from charrnn.runtime import cpu_model

console = Console()
CHROMIUM = "/usr/bin/chromium"
# a passage in the demo corpus's own form: speakers' names, stage directions in brackets
PASSAGE = """COUNTESS.
In delivering my son from me, I bury a second husband.

[Enter BERTRAM, HELENA, and LAFEU, all in black.]

BERTRAM.
And I in going, madam, weep o'er my father's death anew;
but I must attend his majesty's command, to whom I am now in
ward, evermore in subjection. [Exit BERTRAM.]

LAFEU.
You shall find of the king a husband, madam;--you, sir, a father:
he that so generally is at all times good, must of necessity hold
his virtue to you. [Aside.] Whose worthiness would stir it up.
"""


def shoot(page, selector: str, path: Path) -> None:
    """A picture of one view as it is on screen, tooltip included: an element screenshot
    would scroll, and a scroll hides the tooltip."""
    box = page.locator(selector).bounding_box()
    scroll = page.evaluate("window.scrollY")
    clip = {**box, "y": box["y"] + scroll}
    page.screenshot(path=str(path), full_page=True, clip=clip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--pattern", default=r"\[[^\]]*\]")
    parser.add_argument("--text", type=Path, default=None, help="text to look at (UTF-8)")
    parser.add_argument("--shots", type=Path, default=Path("docs"))
    args = parser.parse_args()
    path = args.checkpoint or newest_checkpoint("checkpoints")
    text = args.text.read_text(encoding="utf-8") if args.text else PASSAGE
    model = charrnn.load(path, device="cpu")
    console.print(f"{path}: {model!r}; CPU: {cpu_model()}")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        net, vocab, ckpt = open_model(path, "cpu")
        export_model(net, vocab, ckpt, Path(tmp) / "site", "fp32")  # PyTorch's numbers exactly
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 900}, device_scale_factor=1)
        page.goto((Path(tmp) / "site" / "index.html").as_uri())
        page.wait_for_function("window.charrnnModel")

        page.get_by_label("Seed", exact=True).fill("BERTRAM.\n")
        page.get_by_label("Length", exact=True).fill("400")
        page.get_by_label("Random seed", exact=True).fill("1")
        page.get_by_role("button", name="Generate").click()
        page.wait_for_function("document.getElementById('status').textContent === 'Done.'")
        args.shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.shots / "export-page.png"))

        page.locator("#surprisal-text").fill(text)
        page.locator("#surprisal-run").click()
        page.locator("#surprisal-total[data-nats-per-char]").wait_for()
        page.locator("#surprisal-view").scroll_into_view_if_needed()
        spans = page.locator("#surprisal-output span[data-nats]")
        surprises = spans.evaluate_all("s => s.map(x => Number(x.dataset.nats))")
        spans.nth(surprises.index(max(surprises[:150]))).hover()  # its top 5 show
        shoot(page, "#surprisal-view", args.shots / "export-surprisal.png")
        total = float(page.locator("#surprisal-total").get_attribute("data-nats-per-char"))

        page.locator("#neurons-text").fill(text)
        page.locator("#neurons-kind").select_option("cell")
        page.locator("#neurons-pattern").fill(args.pattern)
        start = time.perf_counter()
        page.locator("#neurons-search").click()
        page.locator(".neurons-hit").first.wait_for()
        seconds = time.perf_counter() - start
        hits = page.locator(".neurons-hit").evaluate_all(
            "rows => rows.map(r => [Number(r.dataset.unit), Number(r.dataset.r)])"
        )
        page.locator(".neurons-hit").first.click()
        page.locator("#neurons-output span[data-value]").first.wait_for()
        shoot(page, "#neurons-view", args.shots / "export-neurons.png")
        browser.close()
    in_torch = model.score(text)
    console.print(f"surprisal: {total:.4f} nats/char in the page, {in_torch:.4f} in PyTorch")
    table = Table("unit", "r", title=f"cell units that follow {args.pattern!r}", box=None)
    for unit, r in hits[:5]:
        table.add_row(str(unit), f"{r:+.3f}")
    console.print(table)
    console.print(f"trace + search over {len(text):,} characters: {seconds:.2f} s")
    console.print(f"screenshots in {args.shots}: export-page, export-surprisal, export-neurons")


if __name__ == "__main__":
    main()
