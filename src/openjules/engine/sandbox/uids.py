"""One unprivileged uid per running session, so the kernel's per-uid process limit
(``RLIMIT_NPROC`` counts every process of the real uid) is per session: a session holding
its limit of processes leaves every other session's commands free to fork.

The uids come from a configured range (``sandbox_uid_first``, ``sandbox_uid_count``); the
gid has the uid's number. A uid is held through an exclusive ``flock`` on
``/run/openjules/sandbox-uids/{uid}.lock``: uids are the machine's, so every openjules
process on it coordinates there, whatever its data directory (``{data_dir}/sandbox-uids``
where there is no /run). The lock belongs to one open file, so two sessions of one process
exclude each other as two processes do (``openjules serve`` and any ``openjules worker``),
and the kernel releases it when the holder dies, so a crash never leaks a uid.

The host has no account for these uids, so the holder also writes ``passwd`` and ``group``
files naming its uid, which the sandbox mounts over /etc's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from openjules.engine.sandbox.process import RunAs, SandboxUnavailable, run_as
from openjules.settings import Settings

log = logging.getLogger("openjules.engine")

# With every uid taken, a session's run waits this long for one to come free (sessions
# end and release theirs), then fails saying which setting to raise.
UID_WAIT_SECONDS = 600.0
UID_POLL_SECONDS = 0.5
MACHINE_LOCKS = Path("/run/openjules/sandbox-uids")
UID_LOCKS_DIR = "sandbox-uids"
ACCOUNT = "sandbox"
# The largest uid Linux accepts is 2**32 - 2 ((uid_t) -1 means "no change").
MAX_UID = 2**32 - 2


class NoFreeUid(SandboxUnavailable):
    """Every uid of the range is held by a running session."""


@dataclass(frozen=True)
class UidPool:
    locks: Path
    first: int
    count: int

    def __post_init__(self) -> None:
        if self.first < 1 or self.count < 1 or self.first + self.count - 1 > MAX_UID:
            raise SandboxUnavailable(
                f"The sandbox uid range {self.first} + {self.count} goes past the largest uid "
                f"({MAX_UID}); lower OPENJULES_SANDBOX_UID_FIRST or _COUNT."
            )

    @classmethod
    def on_this_machine(cls, data_dir: Path, *, first: int, count: int) -> UidPool:
        locks = MACHINE_LOCKS if MACHINE_LOCKS.parent.parent.is_dir() else data_dir / UID_LOCKS_DIR
        return cls(locks=locks, first=first, count=count)

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    def try_take(self) -> UidLease | None:
        """The lease of a free uid, or None when all are taken. Non-blocking."""
        self.locks.mkdir(parents=True, exist_ok=True, mode=0o700)
        for uid in range(self.first, self.first + self.count):
            stream = open(self.locks / f"{uid}.lock", "a")  # noqa: SIM115 - held by the lease
            try:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                stream.close()
                continue
            except BaseException:
                stream.close()
                raise
            return UidLease(uid=uid, stream=stream)
        return None

    @contextlib.asynccontextmanager
    async def lease(self, *, wait_seconds: float = UID_WAIT_SECONDS) -> AsyncIterator[int]:
        """Hold a free uid for the body; waits up to ``wait_seconds`` for one to come free,
        then raises ``NoFreeUid``."""
        taken = self.try_take()
        if taken is None:
            log.warning(
                "all %d sandbox uids (%d-%d) are in use; a session waits for one",
                self.count,
                self.first,
                self.last,
            )
            deadline = time.monotonic() + wait_seconds
            while taken is None and time.monotonic() < deadline:
                await asyncio.sleep(min(UID_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
                taken = self.try_take()
        if taken is None:
            raise NoFreeUid(
                f"All {self.count} sandbox uids ({self.first}-{self.last}) were in use by "
                f"running sessions for {wait_seconds:g}s, so this session could not start; "
                "raise OPENJULES_SANDBOX_UID_COUNT, or run fewer sessions at once."
            )
        try:
            yield taken.uid
        finally:
            taken.release()


@dataclass
class UidLease:
    uid: int
    stream: IO[str]

    def release(self) -> None:
        # Closing the file drops the lock (the only descriptor of its open file).
        self.stream.close()


@contextlib.asynccontextmanager
async def session_user(
    settings: Settings, *, wait_seconds: float = UID_WAIT_SECONDS
) -> AsyncIterator[RunAs | None]:
    """Whom one session's commands run as while the body runs: a uid of the range held for
    it alone; the fixed ``sandbox_uid`` when one is set; None (the server's own uid) when
    the server is not root, which cannot switch uids."""
    if os.geteuid() != 0 or settings.sandbox_uid is not None:
        yield run_as(settings.sandbox_uid, settings.sandbox_gid)
        return
    pool = UidPool.on_this_machine(
        settings.data_dir, first=settings.sandbox_uid_first, count=settings.sandbox_uid_count
    )
    async with pool.lease(wait_seconds=wait_seconds) as uid:
        accounts = await asyncio.to_thread(write_accounts, pool.locks / str(uid), uid=uid)
        yield RunAs(uid=uid, gid=uid, accounts=accounts)


def describe_users(settings: Settings, user: RunAs | None) -> str:
    """How the start-up line names whom commands run as ("" for the server's own uid)."""
    if user is None:
        return ""
    if settings.sandbox_uid is not None:
        return f" (commands run as uid {user.uid})"
    last = settings.sandbox_uid_first + settings.sandbox_uid_count - 1
    return (
        f" (each session's commands run as a uid of its own, {settings.sandbox_uid_first}-{last})"
    )


def write_accounts(directory: Path, *, uid: int) -> Path:
    """``passwd`` and ``group`` files in ``directory``: the host's entries and a ``sandbox``
    account with ``uid`` (home /tmp, the sandbox's). Written by the uid's holder alone."""
    directory.mkdir(exist_ok=True)
    entries = {
        "passwd": f"{ACCOUNT}:x:{uid}:{uid}:openjules sandbox:/tmp:/bin/bash",
        "group": f"{ACCOUNT}:x:{uid}:",
    }
    for name, entry in entries.items():
        try:
            host = Path("/etc", name).read_text().splitlines()
        except OSError:
            host = []
        lines = [line for line in host if not line.startswith(f"{ACCOUNT}:")] + [entry]
        staged = directory / f".{name}.new"
        staged.write_text("\n".join(lines) + "\n")
        staged.chmod(0o644)
        os.replace(staged, directory / name)
    return directory
