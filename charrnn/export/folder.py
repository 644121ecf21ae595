"""Write an export folder: the page, the runtime, the views and the model, and report
each file's size with the validation loss of the weights as the page will have them."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn.data.cache import load_corpus
from charrnn.errors import CharrnnError
from charrnn.evaluate import evaluate
from charrnn.export.pack import FORMAT, manifest, model_script
from charrnn.export.weights import dequantized_model, pack_weights
from charrnn.files import atomic_write
from charrnn.model.rnn import CharRNN
from charrnn.sample.streams import encode_seed
from charrnn.text.base import Tokenizer
from charrnn.text.config import TextConfig, TokenizerConfig
from charrnn.text.sources import read_text
from charrnn.web import (
    PAGE,
    PAGE_SCRIPT,
    PAGE_STYLE,
    RUNTIME,
    VIEWS,
    VIEWS_STYLE,
    asset,
    runtime_source,
)

MANIFEST, MODEL_SCRIPT, INDEX = "manifest.json", "model.js", "index.html"
COPIED = (VIEWS, PAGE_SCRIPT, PAGE_STYLE, VIEWS_STYLE)
# the loss is measured over at most this many tokens (all of tinyshakespeare's validation)
EVAL_TOKENS = 250_000


@dataclass
class ExportReport:
    folder: Path
    dtype: str
    sizes: dict[str, int] = field(default_factory=dict)  # file -> bytes
    losses: dict[str, float] = field(default_factory=dict)  # "fp32" and the dtype -> nats/unit
    eval_tokens: int = 0
    eval_source: str | None = None

    @property
    def total(self) -> int:
        return sum(self.sizes.values())


def check_folder(folder: Path, force: bool) -> None:
    """An empty or new folder, or an earlier export (overwritten); anything else needs
    --force, so an export never lands in a folder of other files by mistake."""
    if folder.exists() and not folder.is_dir():
        raise CharrnnError(f"{folder} is a file, not a folder")
    if force or not folder.exists() or not any(folder.iterdir()):
        return
    try:
        earlier = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError, AttributeError):
        earlier = None
    if earlier != FORMAT:
        raise CharrnnError(
            f"{folder} is not empty and holds no earlier export; choose another folder "
            f"or pass --force to write into it"
        )


def validation_ids(ckpt: dict, vocab: Tokenizer, run_dir: Path) -> tuple[np.ndarray, str] | None:
    """The run's own validation ids, read as training read them (from the encoding
    cache, usually), where its corpus is still there and unchanged; else None."""
    try:
        corpus = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["corpus"]
        val_frac = ckpt["train_config"]["val_frac"]
        encoded = load_corpus(
            [Path(p) for p in corpus],
            TextConfig(**ckpt["text_config"]),
            TokenizerConfig(**ckpt["tokenizer_config"]),
            existing=vocab,
            expected_sha256=ckpt.get("corpus_sha256"),
            val_frac=val_frac,
        )
    except (OSError, ValueError, KeyError, TypeError, CharrnnError):
        return None  # moved, edited or unreadable: the report says there is nothing to measure
    return encoded.split(val_frac)[1], f"the validation split of {', '.join(corpus)}"


def text_ids(path: Path, vocab: Tokenizer) -> tuple[np.ndarray, str]:
    """A text file given with --eval-text, prepared and encoded as `charrnn eval` does."""
    kept, _ = encode_seed(vocab, read_text(path, "text file"), unknown="drop")
    return vocab.encode_prepared(kept), str(path)


def export_model(
    model: CharRNN,
    vocab: Tokenizer,
    ckpt: dict,
    folder: Path,
    dtype: str = "fp16",
    force: bool = False,
    eval_text: Path | None = None,
) -> ExportReport:
    """Write the export folder for a loaded model, and measure what quantising cost."""
    folder = Path(folder)
    check_folder(folder, force)
    packed = pack_weights(model, dtype)
    run_dir = Path(ckpt["path"]).parent
    report = ExportReport(folder, dtype)
    found = text_ids(eval_text, vocab) if eval_text else validation_ids(ckpt, vocab, run_dir)
    if found is not None and len(found[0]) >= 2:
        report.eval_source = found[1]
        report.losses, report.eval_tokens = losses(model, packed, found[0][:EVAL_TOKENS], dtype)
    about = {
        "checkpoint": {"step": ckpt.get("step"), "val_loss": ckpt.get("val_loss")},
        "losses": report.losses,
        "unit": vocab.unit,
    }
    meta = manifest(run_dir.name, model.config, vocab, dtype, packed, about)
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / MODEL_SCRIPT, model_script(meta, packed))
    write(folder / MANIFEST, json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8"))
    for name in COPIED:
        shutil.copyfile(asset(name), folder / name)
    write(folder / RUNTIME, runtime_source().encode("utf-8"))
    write(folder / INDEX, asset(PAGE).read_bytes())
    written = (MODEL_SCRIPT, MANIFEST, RUNTIME, INDEX, *COPIED)  # not a --force folder's own
    report.sizes = {name: (folder / name).stat().st_size for name in sorted(written)}
    return report


def losses(model: CharRNN, packed, ids: np.ndarray, dtype: str) -> tuple[dict[str, float], int]:
    """The loss of the fp32 weights and of the dequantised ones, on the CPU."""
    ids = np.asarray(ids, dtype=np.int64)
    cpu = model.cpu().float()
    out = {"fp32": evaluate(cpu, ids, cpu.embed.weight.device)}
    if dtype != "fp32":
        out[dtype] = evaluate(dequantized_model(cpu, packed), ids, cpu.embed.weight.device)
    return out, len(ids) - 1


def write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))
