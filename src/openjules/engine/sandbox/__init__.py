"""Where agent commands run: a ``Sandbox`` runs a shell command against a work tree.

``bubblewrap`` isolates commands (see ``bubblewrap.py``); ``unsandboxed`` is for development
only. Both apply the resource limits and the wall-clock timeout and hide the server's
environment (``process.py``). ``OPENJULES_SANDBOX`` picks one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from openjules.engine.sandbox.bubblewrap import WORKSPACE_MOUNT, BubblewrapSandbox
from openjules.engine.sandbox.process import (
    BASE_ENV,
    CommandResult,
    Limits,
    SandboxStatus,
    SandboxUnavailable,
)
from openjules.engine.sandbox.unsandboxed import UnsandboxedSandbox
from openjules.settings import SandboxKind, Settings

__all__ = [
    "BASE_ENV",
    "WORKSPACE_MOUNT",
    "BubblewrapSandbox",
    "CommandResult",
    "Limits",
    "Sandbox",
    "SandboxKind",
    "SandboxStatus",
    "SandboxUnavailable",
    "UnsandboxedSandbox",
    "check_available",
    "describe_sandbox",
    "sandbox_from_settings",
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

    def prepare_workspace(self, tree: Path) -> None:
        """Make ``tree`` usable by the commands (before the first ``run``)."""
        ...


_BACKENDS: dict[SandboxKind, type[BubblewrapSandbox] | type[UnsandboxedSandbox]] = {
    SandboxKind.BUBBLEWRAP: BubblewrapSandbox,
    SandboxKind.UNSANDBOXED: UnsandboxedSandbox,
}


def check_available(kind: SandboxKind) -> None:
    """Raise ``SandboxUnavailable`` with a fix when the sandbox cannot run on this machine."""
    _BACKENDS[kind].check_available()


def sandbox_from_settings(settings: Settings) -> Sandbox:
    """The configured sandbox; ``SandboxUnavailable`` says how to fix a missing piece."""
    backend = _BACKENDS[settings.sandbox]
    backend.check_available()
    return backend.from_settings(settings)


async def describe_sandbox(settings: Settings) -> SandboxStatus:
    """The start-up line of ``openjules serve`` and ``openjules worker``: which sandbox runs
    commands and whether it works here. Never raises; ``ok`` is False when it does not."""
    try:
        backend = _BACKENDS[settings.sandbox]
        return await asyncio.wait_for(backend.describe(settings), timeout=DESCRIBE_TIMEOUT_S)
    except TimeoutError:
        return SandboxStatus(
            ok=False,
            line=f"sandbox: the self check did not finish within {DESCRIBE_TIMEOUT_S:g}s",
        )
    except SandboxUnavailable as exc:
        return SandboxStatus(ok=False, line=f"sandbox: {exc}")
    except Exception as exc:  # a failed check is reported: the server starts regardless
        return SandboxStatus(ok=False, line=f"sandbox: the self check failed: {exc!r}")
