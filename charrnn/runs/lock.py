"""One trainer per run folder: an advisory lock on `RUN/.train.lock`.

The lock is filelock's (the package PyTorch itself depends on): flock on Linux
and macOS, msvcrt's byte-range lock on Windows, and a marker file where a
network filesystem has no flock. A flock belongs to the open file, so the
kernel drops it when the process ends in any way, `kill -9` included: a lock
never goes stale and blocks a resume. The holder writes its pid into the file,
for the message another process shows.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from filelock import FileLock, Timeout

from charrnn.errors import RunInUseError
from charrnn.files import write_error

LOCK_FILE = ".train.lock"
# another process's check_run_free holds the lock for a moment; wait that out
BRIEF_HOLD = 0.2  # seconds


class RunLock:
    """The lock on a run folder, held while a trainer writes there."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        # thread_local=False: a signal handler or timer thread may release it
        self.lock = FileLock(self.path, timeout=BRIEF_HOLD, thread_local=False)

    @property
    def held(self) -> bool:
        return self.lock.is_locked

    def acquire(self, record_pid: bool = True) -> None:
        if self.held:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.lock.acquire()
        except Timeout:
            raise RunInUseError(
                f"run {self.folder} is being trained by another process (pid {self._owner()}); "
                f"wait for it to finish, or pick another --name"
            ) from None
        except OSError as e:
            raise write_error(self.path, e) from None
        if record_pid:  # only for the message above, so a full disk must not stop us here
            with contextlib.suppress(OSError):
                fd = os.open(self.path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                finally:
                    os.close(fd)

    def _owner(self) -> str:
        try:  # Windows refuses to read a locked range: then the pid stays unknown
            return self.path.read_text(encoding="ascii", errors="replace").strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self) -> None:
        if self.held:
            self.lock.release()


def check_run_free(folder: Path) -> None:
    """Refuse early, before any slow work, if another process trains into `folder`."""
    if Path(folder).is_dir():
        lock = RunLock(folder)
        lock.acquire(record_pid=False)  # the pid there stays the trainer's
        lock.release()
