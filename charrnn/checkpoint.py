"""One self-contained file per checkpoint; atomic save; safe load; format version.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts,
written with `torch.save` and read with `torch.load(weights_only=True)`, so
loading never unpickles arbitrary objects. It holds everything sampling needs
(model config, vocabulary, weights) and everything resuming needs (optimizer,
step, data position, carried state, RNG states).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from charrnn.errors import CheckpointError
from charrnn.files import atomic_write
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.runtime import resolve_device
from charrnn.text.base import Tokenizer
from charrnn.text.tokenizers import tokenizer_from_dict

FORMAT = "charrnn"
FORMAT_VERSION = 2  # 2: byte and SentencePiece tokenizers, text preparation
BEST, LAST = "best.pt", "last.pt"
ZIP_MAGIC = b"PK\x03\x04"
# how torch's weights-only unpickler names a global it would not import
UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write a checkpoint atomically (see `charrnn.files.atomic_write`)."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    atomic_write(Path(path), lambda f: torch.save(payload, f))


def load_checkpoint(
    path: str | os.PathLike, map_location="cpu", mmap: bool = False, verify: bool = True
) -> dict:
    """Read a checkpoint, refusing anything that is not a readable charrnn file.

    `mmap=True` maps the tensors instead of reading them, for when only the
    numbers and configs are wanted; `verify=False` skips the pass over every
    byte that checks the checksums (`charrnn runs` over many runs).
    """
    path = Path(path)
    if path.is_dir():
        found = run_checkpoint(path)
        if found is None:
            raise CheckpointError(f"checkpoint folder {path} holds no {BEST} or {LAST}")
        path = found
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    _check_container(path)
    _check_archive(path, checksums=verify)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except PermissionError:
        raise CheckpointError(f"checkpoint {path}: permission denied") from None
    except Exception as e:
        raise _load_error(path, e) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a charrnn checkpoint")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, newer than this charrnn "
            f"reads ({FORMAT_VERSION}); upgrade charrnn"
        )
    missing = [k for k in ("model_config", "vocab", "model") if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} is damaged (missing {', '.join(missing)})")
    ckpt["path"] = str(path)
    return ckpt


def _check_container(path: Path) -> None:
    """Refuse, before torch reads it, a file that cannot be a checkpoint at all."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(ZIP_MAGIC))
    except PermissionError:
        raise CheckpointError(f"checkpoint {path}: permission denied") from None
    if not head:
        raise CheckpointError(f"checkpoint {path} is damaged: the file is empty")
    if head != ZIP_MAGIC:  # torch.save has written zip archives since PyTorch 1.6
        raise CheckpointError(
            f"checkpoint {path} is not a charrnn checkpoint (not a PyTorch zip archive)"
        )


def _check_archive(path: Path, checksums: bool) -> None:
    """The zip's directory, and with `checksums` every record's CRC-32: torch.load
    checks neither, so a flipped byte in the weights would load silently."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not any(name.endswith("/data.pkl") for name in names):  # e.g. a numpy .npz
                raise CheckpointError(
                    f"checkpoint {path} is not a charrnn checkpoint (a zip archive, but not "
                    f"one that torch.save wrote)"
                )
            bad = archive.testzip() if checksums else None
    except zipfile.BadZipFile:  # no end-of-archive record: the tail of the file is gone
        raise CheckpointError(
            f"checkpoint {path} is damaged: cut short (the end of the zip archive is missing)"
        ) from None
    except (EOFError, OSError, ValueError, RuntimeError, NotImplementedError) as e:
        # RuntimeError: an encrypted member; NotImplementedError: an unknown compression
        raise CheckpointError(
            f"checkpoint {path} is damaged: cut short or corrupted ({_first_sentence(e)})"
        ) from None
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is damaged: cut short or corrupted ({bad} fails its checksum)"
        )


def _load_error(path: Path, e: Exception) -> CheckpointError:
    """What went wrong inside torch.load, in one line."""
    text = str(e)
    if isinstance(e, pickle.UnpicklingError) and (m := UNSAFE_GLOBAL.search(text)):
        return CheckpointError(
            f"checkpoint {path} is refused: it holds a Python object ({m.group(1)}) that could "
            f"run code when loaded; charrnn loads only tensors and plain data"
        )
    return CheckpointError(
        f"checkpoint {path} is damaged: cut short or corrupted ({_first_sentence(e)})"
    )


def _first_sentence(e: Exception) -> str:
    """torch's loader errors run to paragraphs; the first sentence names the problem."""
    text = str(e).strip()
    if not text:
        return type(e).__name__
    return text.splitlines()[0].split(". ")[0][:120]


def restore_tokenizer(ckpt: dict) -> Tokenizer:
    """The tokenizer stored in a loaded checkpoint (no weights are touched)."""
    return tokenizer_from_dict(ckpt["vocab"])


def restore_model(ckpt: dict, device: str | torch.device = "cpu") -> tuple[CharRNN, Tokenizer]:
    """The model (in eval mode) and tokenizer stored in a loaded checkpoint."""
    try:
        vocab = restore_tokenizer(ckpt)
        if len(vocab) != ckpt["model_config"]["vocab_size"]:
            raise ValueError(
                f"{len(vocab)} symbols for a model of {ckpt['model_config']['vocab_size']}"
            )
        model = CharRNN(ModelConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except Exception as e:
        raise CheckpointError(f"checkpoint {ckpt.get('path')} is damaged ({e})") from None
    return model.to(device).eval(), vocab


def open_model(
    path: str | os.PathLike | None = None,
    device: str = "auto",
    out: str | os.PathLike = "checkpoints",
) -> tuple[CharRNN, Tokenizer, dict]:
    """Model (eval mode), tokenizer and checkpoint from a .pt file or run folder, or by
    default from the newest run's best.pt under `out`."""
    device = resolve_device(device)  # a device this machine lacks is refused before any I/O
    ckpt = load_checkpoint(Path(path) if path is not None else newest_checkpoint(out))
    model, vocab = restore_model(ckpt, device)
    return model, vocab, ckpt


def run_checkpoint(run_dir: Path) -> Path | None:
    """A run folder's best.pt, else its last.pt, else None."""
    for name in (BEST, LAST):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def newest_run(out_dir: str | os.PathLike) -> Path:
    """The run folder under `out_dir` whose checkpoints were written most recently."""
    out_dir = Path(out_dir)
    found = []
    if out_dir.is_dir():
        for run_dir in out_dir.iterdir():
            times = [(run_dir / n).stat().st_mtime for n in (BEST, LAST) if (run_dir / n).is_file()]
            if times:
                found.append((max(times), run_dir))
    if not found:
        raise CheckpointError(
            f"no checkpoints under {out_dir}/; train a model first or pass --checkpoint"
        )
    return max(found)[1]


def newest_checkpoint(out_dir: str | os.PathLike) -> Path:
    """The best checkpoint of the most recently written run under `out_dir`."""
    return run_checkpoint(newest_run(out_dir))
