"""Which frames of a Python traceback are charrnn's own code.

A clone's folder is named `charrnn` as the package is, so a pattern such as
`File ".*/charrnn/` also matches torch's frames in the clone's own `.venv`. The
package's files are told by their real location instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import charrnn

PACKAGE_DIR = Path(charrnn.__file__).resolve().parent
FRAME = re.compile(r'^\s*File "(?P<path>[^"]+)", line \d+', re.M)


def is_package_file(path: str | Path) -> bool:
    """Whether `path` is one of the charrnn package's own source files."""
    return Path(path).resolve().is_relative_to(PACKAGE_DIR)


def our_frames(stderr: str) -> list[str]:
    """The traceback frames in `stderr` whose file lies in the charrnn package."""
    return [m["path"] for m in FRAME.finditer(stderr) if is_package_file(m["path"])]
