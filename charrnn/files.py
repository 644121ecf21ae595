"""Crash-safe file writing, shared by checkpoints and run metadata."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from charrnn.errors import WriteError


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """A temp file in the same folder, fsync, rename over `path`, fsync the folder.

    A crash at any moment leaves either the old file or the new one, never a
    torn one; the temp file is removed if writing fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # os.open rather than mkstemp: the file gets the usual umask permissions, not 0600
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise write_error(path, e, intact=path.exists()) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if (cause := os_error_behind(e)) is not None:
            raise write_error(path, cause, intact=path.exists()) from None
        raise
    fsync_dir(path.parent)


def os_error_behind(e: BaseException) -> OSError | None:
    """The OSError that caused `e`, if any: torch.save reports a full disk as a
    RuntimeError raised while handling the OSError."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def write_error(path: Path, e: OSError, intact: bool = False) -> WriteError:
    """One line for a failed write; `intact` says the old file was left as it was."""
    kept = "; the previous version is intact" if intact else ""
    return WriteError(e.errno, f"cannot write {path}: {describe_os_error(e)}{kept}")


def describe_os_error(e: OSError) -> str:
    """'no space left on device', 'file too large', 'read-only file system', ..."""
    reason = e.strerror or str(e) or type(e).__name__
    return reason[:1].lower() + reason[1:]


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (where the filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename still happened
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Temp files that a killed process left behind (`kill -9` skips every cleanup)."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
