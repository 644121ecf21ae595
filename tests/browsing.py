"""Shared by the browser tests: Debian's Chromium, driven by Playwright.

Playwright's own browser download is never used. Where /usr/bin/chromium is missing
and we are root with apt-get (CI), the set-up installs it with the CJK and emoji
fonts; elsewhere the test is skipped with the command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager

import pytest

CHROMIUM = "/usr/bin/chromium"
PACKAGES = ["chromium", "fonts-noto-cjk", "fonts-noto-color-emoji"]


def chromium_present() -> bool:
    return os.path.exists(CHROMIUM)


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_chromium() -> str:
    """Debian's chromium: there already, installed with apt-get (root, as in CI), or a
    skip that says how to get it."""
    if chromium_present():
        return CHROMIUM
    if not can_install():
        pytest.skip(f"needs Debian's chromium: apt-get install -y {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    assert chromium_present()
    return CHROMIUM


@contextmanager
def launched_chromium():
    """A headless Chromium for a module's tests (the sandbox refuses root, as in CI)."""
    from playwright import sync_api

    executable = ensure_chromium()
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()
