"""The per-process limit on sandbox commands running at once
(``settings.max_concurrent_commands``).

Commands are what costs CPU and memory; a session waiting on the model costs next to
nothing. So the runner admits many sessions and their commands take turns here: a command
waits for a slot before it starts, and its wall-clock timeout starts with the command, not
with the wait. A session stopped while its command waits stops waiting (the wait is
cancellable). The slots are the engine's (``SessionWorker``): one set per process that
runs sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from openjules.engine.sandbox.disk import TreeMeasure
from openjules.engine.sandbox.process import CommandResult, Limits
from openjules.settings import SandboxKind

if TYPE_CHECKING:
    from openjules.engine.sandbox import Sandbox


@dataclass(frozen=True)
class SlottedSandbox:
    """``inner`` whose commands each hold one of ``slots`` while they run."""

    inner: Sandbox
    slots: asyncio.Semaphore

    @property
    def kind(self) -> SandboxKind:
        return self.inner.kind

    @property
    def limits(self) -> Limits:
        return self.inner.limits

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
        async with self.slots:
            return await self.inner.run(
                command,
                workspace=workspace,
                network=network,
                read_only=read_only,
                ro_binds=ro_binds,
                env=env,
                limits=limits,
            )

    def prepare_workspace(
        self,
        tree: Path,
        *,
        owned_by: tuple[int, int] | None = None,
        measured: TreeMeasure | None = None,
    ) -> None:
        self.inner.prepare_workspace(tree, owned_by=owned_by, measured=measured)

    def last_measure(self, tree: Path) -> TreeMeasure | None:
        return self.inner.last_measure(tree)

    def workspace_used(self, tree: Path) -> int:
        return self.inner.workspace_used(tree)

    def workspace_room(self, tree: Path) -> int:
        return self.inner.workspace_room(tree)
