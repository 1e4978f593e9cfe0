"""Run agent commands on the host, for development only.

No isolation: a command sees the host's files, network and processes. What remains is a
clean environment (none of the server's secrets), the resource limits, the wall-clock
timeout, the work tree's size limit, and, for a root server, the unprivileged uid.
``network``, ``read_only`` and ``ro_binds`` are accepted and not enforced: there is nothing
to mount them with (so the size limit applies to read-only commands too). /tmp is the
host's, with no size limit of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from openjules.engine.sandbox.process import (
    BASE_ENV,
    CommandResult,
    Limits,
    ProcessSandbox,
    SandboxStatus,
    prlimit_argv,
    require_prlimit,
    spawn,
    supervise,
)
from openjules.settings import SandboxKind, Settings

WARNING = "sandbox: UNSANDBOXED — agent commands run without isolation (development only)"


@dataclass(frozen=True)
class UnsandboxedSandbox(ProcessSandbox):
    @property
    def kind(self) -> SandboxKind:
        return SandboxKind.UNSANDBOXED

    @staticmethod
    def check_available() -> None:
        require_prlimit()

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
        """Run ``command`` with bash in ``workspace``, under the limits only."""
        limits = limits or self.limits
        # Nothing keeps even a "read-only" command from writing here.
        budget = await self.disk_budget(workspace, limits)
        started = time.monotonic()
        process = await spawn(
            [*prlimit_argv(limits, budget), "/bin/bash", "-c", command],
            env={**BASE_ENV, **(env or {})},
            cwd=workspace,
            # Without bubblewrap and setpriv, a root server's commands drop uid at exec.
            user=self.user,
        )
        return await supervise(process, limits=limits, started=started, budget=budget)

    @classmethod
    async def describe(cls, settings: Settings) -> SandboxStatus:
        require_prlimit()
        return SandboxStatus(ok=True, line=WARNING)
