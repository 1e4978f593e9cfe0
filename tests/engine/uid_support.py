"""A uid for one test's sandboxed commands alone: ``own_user``.

The kernel's process limit (``RLIMIT_NPROC``) counts every process of a real uid on the
machine, so tests whose commands ran as one fixed uid (65534) shared its budget with every
other process running as it: with the suite in parallel (pytest-xdist), a fork bomb held to
64 processes, or a control test's 250 sleeping processes, left another test's commands
unable to fork. A test that runs commands as ``own_user`` holds that uid the way a session's
run holds one (``openjules.engine.sandbox.uids``: a uid of the sandbox range, locked
machine-wide, with its own passwd and group entries), so no other process on the machine
runs as it meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openjules.engine.sandbox.process import RunAs
from openjules.engine.sandbox.uids import session_user
from openjules.settings import Settings


@pytest.fixture
async def own_user(tmp_path: Path) -> AsyncIterator[RunAs | None]:
    """A uid held for this test alone (None when the tests do not run as root: commands
    then run as the tests' own uid, as a server's do)."""
    async with session_user(Settings(data_dir=tmp_path / "uid-locks")) as user:
        yield user
