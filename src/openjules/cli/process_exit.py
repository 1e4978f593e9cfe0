"""How `serve` and `worker` end once they ran the Temporal runner.

The Temporal SDK's core runs Rust threads that hand results back to Python. One of them
can be between two calls into the interpreter when it finalizes, and CPython 3.11 then
aborts the process ("PyGILState_Release ... finalizing", exit status 134) after
everything was already stopped cleanly: temporalio/sdk-python#300. The runner drops its
runtime when it stops, which makes that rare (1 stop in 30 here) but not impossible, so
a process that used it skips finalization instead, once its own work is done and its
output flushed: nothing is left for finalization to do but that race.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

from openjules.settings import RunnerKind, Settings


def end_process(settings: Settings, *, code: int = 0) -> None:
    """Return (the usual exit) unless ``settings`` ran the Temporal runner; then exit now
    with ``code``, flushing what was written first."""
    if settings.runner is RunnerKind.TEMPORAL:
        _exit_now(code)


def _exit_now(code: int) -> NoReturn:
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
            stream.flush()
    os._exit(code)
