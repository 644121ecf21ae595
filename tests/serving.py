"""Shared by the serve tests: a tiny trained run, and `charrnn serve` as a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import MIXED_TEXT, TINY_MODEL, charrnn_cmd, invoke, no_loss_plot

READY = re.compile(r"serving at (http://\S+/)")
START_TIMEOUT = 60  # seconds for `charrnn serve` to load and say where it listens


def train_tiny_run(root: Path, name: str = "tiny") -> Path:
    """A tiny model trained on English, Korean and emoji under root/ck/NAME; returns root/ck."""
    corpus = root / "corpus.txt"
    corpus.write_text(MIXED_TEXT * 30, encoding="utf-8")
    args = [
        "train",
        corpus,
        *TINY_MODEL,
        "--max-steps",
        "40",
        "--eval-every",
        "10",
        "--lr",
        "1e-2",
        "--out",
        root / "ck",
        "--name",
        name,
    ]
    with no_loss_plot():
        result = invoke(*args, env={"CHARRNN_CACHE_DIR": str(root / "cache")})
    assert result.exit_code == 0, result.output
    return root / "ck"


@contextmanager
def running_server(*args, env: dict | None = None, cwd: Path | None = None):
    """`charrnn serve ARGS --port 0` as a process in its own group: yields (process, base
    URL, stderr lines so far) once it says it is serving; killed whole at the end."""
    cmd = charrnn_cmd("serve", *args, "--port", "0")
    full_env = {**os.environ, "COLUMNS": "300", **(env or {})}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read_stderr():
        for line in proc.stderr:
            lines.append(line)
            if (m := READY.search(line)) and not url:
                url.append(m.group(1))
                found.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        if not found.wait(START_TIMEOUT):
            raise AssertionError(f"charrnn serve did not start: {''.join(lines)}")
        yield proc, url[0].rstrip("/"), lines
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        reader.join(timeout=5)


def get_json(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def metric(base: str, name: str, headers: dict | None = None) -> float:
    """One unlabelled value from GET /metrics."""
    request = urllib.request.Request(base + "/metrics", headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def wait_until(check, timeout: float, what: str, every: float = 0.05):
    """Poll `check()` until it is truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
