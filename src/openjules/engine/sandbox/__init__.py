"""Where agent commands run: a ``Sandbox`` runs a shell command against a work tree.

``bubblewrap`` isolates commands (see ``bubblewrap.py``); ``unsandboxed`` is for development
only. Both apply the resource limits, the wall-clock timeout and the work tree's size limit
(``disk.py``) and hide the server's environment (``process.py``); a root server runs each
session's commands as a uid of its own (``uids.py``). ``OPENJULES_SANDBOX`` picks one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from openjules._cancellation import within
from openjules.engine.sandbox.bubblewrap import WORKSPACE_MOUNT, BubblewrapSandbox
from openjules.engine.sandbox.disk import TreeMeasure
from openjules.engine.sandbox.process import (
    BASE_ENV,
    CommandResult,
    Limits,
    SandboxStatus,
    SandboxUnavailable,
)
from openjules.engine.sandbox.slots import SlottedSandbox
from openjules.engine.sandbox.uids import NoFreeUid, session_user
from openjules.engine.sandbox.unsandboxed import UnsandboxedSandbox
from openjules.settings import SandboxKind, Settings

__all__ = [
    "BASE_ENV",
    "WORKSPACE_MOUNT",
    "BubblewrapSandbox",
    "CommandResult",
    "Limits",
    "NoFreeUid",
    "Sandbox",
    "SandboxKind",
    "SandboxStatus",
    "SandboxUnavailable",
    "SlottedSandbox",
    "UnsandboxedSandbox",
    "check_available",
    "describe_sandbox",
    "sandbox_from_settings",
    "session_sandbox",
]

# Printed before the server starts: a hanging check must not hold it up for long.
DESCRIBE_TIMEOUT_S = 8.0


class Sandbox(Protocol):
    @property
    def kind(self) -> SandboxKind: ...

    @property
    def limits(self) -> Limits: ...

    async def run(
        self,
        command: str,
        *,
        workspace: Path,
        network: bool = False,
        read_only: bool = False,
        ro_binds: Sequence[tuple[Path, str]] = (),
        env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> CommandResult:
        """Run ``command`` with bash, ``workspace`` as its working directory; ``read_only``
        keeps the tree unchanged (the planning phase looks, it does not touch)."""
        ...

    def prepare_workspace(
        self,
        tree: Path,
        *,
        owned_by: tuple[int, int] | None = None,
        measured: TreeMeasure | None = None,
    ) -> None:
        """Make ``tree`` usable by the commands (before the first ``run``); for a tree an
        earlier run left untouched, ``owned_by``: the (uid, gid) owning every file of it,
        and ``measured``: that run's last measure of it."""
        ...

    def last_measure(self, tree: Path) -> TreeMeasure | None:
        """The last measure of ``tree`` by this sandbox's commands or tools, if any."""
        ...

    def workspace_used(self, tree: Path) -> int:
        """Bytes ``tree`` holds, as the workspace limit counts them."""
        ...

    def workspace_room(self, tree: Path) -> int:
        """Bytes ``tree`` may still grow by before it reaches the workspace limit."""
        ...


_BACKENDS: dict[SandboxKind, type[BubblewrapSandbox] | type[UnsandboxedSandbox]] = {
    SandboxKind.BUBBLEWRAP: BubblewrapSandbox,
    SandboxKind.UNSANDBOXED: UnsandboxedSandbox,
}


def check_available(kind: SandboxKind) -> None:
    """Raise ``SandboxUnavailable`` with a fix when the sandbox cannot run on this machine."""
    _BACKENDS[kind].check_available()


def sandbox_from_settings(settings: Settings) -> Sandbox:
    """The configured sandbox; ``SandboxUnavailable`` says how to fix a missing piece. Its
    commands run as the fixed ``sandbox_uid`` if one is set, else as the server's own uid:
    a session's run takes ``session_sandbox``, which gives it a uid of its own."""
    backend = _BACKENDS[settings.sandbox]
    backend.check_available()
    return backend.from_settings(settings)


@contextlib.asynccontextmanager
async def session_sandbox(
    settings: Settings, *, slots: asyncio.Semaphore | None = None
) -> AsyncIterator[Sandbox]:
    """The configured sandbox for one session's run: on a root server its commands run as a
    uid held for this session alone until the body ends (waiting for one to come free;
    ``NoFreeUid`` when none does). With ``slots``, each command holds one while it runs:
    the commands of every session sharing them take turns (see ``slots.py``).
    ``SandboxUnavailable`` says how to fix a missing piece."""
    backend = _BACKENDS[settings.sandbox]
    backend.check_available()
    async with session_user(settings) as user:
        sandbox = backend.from_settings(settings).with_user(user)
        yield sandbox if slots is None else SlottedSandbox(inner=sandbox, slots=slots)


async def describe_sandbox(settings: Settings) -> SandboxStatus:
    """The start-up line of ``openjules serve`` and ``openjules worker``: which sandbox runs
    commands and whether it works here. Never raises; ``ok`` is False when it does not."""
    try:
        backend = _BACKENDS[settings.sandbox]
        return await within(backend.describe(settings), seconds=DESCRIBE_TIMEOUT_S)
    except TimeoutError:
        return SandboxStatus(
            ok=False,
            line=f"sandbox: the self check did not finish within {DESCRIBE_TIMEOUT_S:g}s",
        )
    except SandboxUnavailable as exc:
        return SandboxStatus(ok=False, line=f"sandbox: {exc}")
    except Exception as exc:  # a failed check is reported: the server starts regardless
        return SandboxStatus(ok=False, line=f"sandbox: the self check failed: {exc!r}")
