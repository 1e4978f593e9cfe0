"""How ``pytest -n N --dist loadscope`` shares this suite between pytest-xdist workers.

A work unit, run by one worker in a row, is one test file's tests on one database backend
(the file's tests without a backend are a unit of their own). Most files share a live
server per backend (the module-scoped, backend-parametrized ``server`` fixture of
tests/conftest.py), which pytest starts once for a file's SQLite tests and once for its
PostgreSQL tests: a worker running a whole half starts that server once, as a serial run
does, and the two halves of a slow file can run at the same time on two workers.

The workers see the tests; this scheduler, in the controlling process, sees only their ids.
It hands out the units expected to be longest first, so that no worker is left running a
long one alone at the end: the files under ``LONG_FIRST`` (in its order: each of their tests
takes seconds to minutes, real processes and real clients), then the others with the most
tests first (pytest-xdist's own order for ``loadscope``). Any order is correct; this one
only makes the run shorter.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

# Path prefixes whose tests are slow, longest first: the fuzzer (minutes per backend), then
# the command-line tests (each starts `openjules` processes).
LONG_FIRST = ("tests/fuzz/", "tests/cli/")
BACKEND_PARAM = re.compile(r"\[(?:.*?-)??(sqlite|postgresql|temporal)(?:-.*)?\]$")


def work_unit(nodeid: str) -> str:
    """``path`` or ``path[backend]``: the unit a test id belongs to."""
    path = nodeid.split("::", 1)[0]
    backend = BACKEND_PARAM.search(nodeid)
    return f"{path}[{backend.group(1)}]" if backend else path


def _order(unit: str, tests: int) -> tuple[int, int]:
    rank = next(
        (i for i, prefix in enumerate(LONG_FIRST) if unit.startswith(prefix)), len(LONG_FIRST)
    )
    return rank, -tests


# pytest-xdist ships no type information: its classes are Any to mypy.
class BackendScopeScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """``LoadScopeScheduling`` with a unit per file and backend, longest first."""

    # The base class's queue of units not handed out yet: unit -> {test id: done}.
    workqueue: OrderedDict[str, dict[str, bool]]

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)

    def _assign_work_unit(self, node: WorkerController) -> None:
        # The base class hands out the unit at the head of the queue.
        self.workqueue = OrderedDict(
            sorted(self.workqueue.items(), key=lambda unit: _order(unit[0], len(unit[1])))
        )
        super()._assign_work_unit(node)
