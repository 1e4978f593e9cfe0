"""Finding the browser for browser tests and benchmarks: Debian's ``chromium`` (or the
executable ``OPENJULES_CHROMIUM`` names), driven through Playwright's
``executable_path``; Playwright's own browser downloads are never used."""

from __future__ import annotations

import os
import shutil

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str | None:
    """The Chromium executable to drive, or None when there is none."""
    configured = os.environ.get("OPENJULES_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def sandbox_args() -> list[str]:
    """Chromium's own sandbox cannot run as root: it is turned off then (only then)."""
    return ["--no-sandbox"] if os.geteuid() == 0 else []
