"""Crash-safe file writing, shared by checkpoints and run metadata."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from charrnn.errors import RunInUseError, WriteError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are not guarded there
    fcntl = None

LOCK_FILE = ".train.lock"


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


class RunLock:
    """An advisory lock on a run folder, so two trainings never write into one.

    flock locks belong to the open file, so the kernel drops them when the
    process ends in any way, `kill -9` included: a lock can never go stale and
    block a resume. The file holds the owner's pid, for the error message.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.fd: int | None = None

    def acquire(self, record_pid: bool = True) -> None:
        if fcntl is None or self.fd is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise write_error(path, e) from None
        try:
            held = _flock_soon(fd)
        except OSError:  # a filesystem without flock (some network mounts): go unguarded
            os.close(fd)
            return
        if not held:
            owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunInUseError(
                f"run {self.folder} is being trained by another process (pid {owner}); "
                f"wait for it to finish, or pick another --run name"
            )
        if record_pid:  # only for the message above, so a full disk must not stop us here
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _flock_soon(fd: int, tries: int = 20) -> bool:
    """Take the lock, waiting up to about 0.2 s: another process's `check_run_free`
    holds it for a moment, and must not be taken for a trainer."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(0.01)
    return False


def check_run_free(folder: Path) -> None:
    """Refuse early, before any slow work, if another process trains into `folder`."""
    if Path(folder).is_dir():
        lock = RunLock(folder)
        lock.acquire(record_pid=False)  # the pid there stays the trainer's
        lock.release()
