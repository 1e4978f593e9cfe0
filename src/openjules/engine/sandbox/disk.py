"""The work tree's size on disk, and the watch that keeps a command from growing it past
its limit (``workspace_max_mb``).

No quota or loop mount is assumed. Each command gets a file-size limit (RLIMIT_FSIZE) no
larger than the room left, which stops one big file, and a thread watches the tree while
the command runs, which stops many: once the tree is over the limit it kills the command's
process tree. Walking a large tree costs time (about 10 µs a file: a second for 100,000),
so the watch walks only when the file system's used space has grown by as much as the room
left (otherwise the tree cannot have outgrown it), at most every few multiples of one walk's
cost, and at least every second or so (another writer freeing space on the same file system
could hide the tree's growth). For the same reason a command starts from the last measure
of its tree (``DiskMeter``) when that is recent and far enough under the limit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

MIB = 1024**2
# The file-size limit a command gets even with no room left: small writes (git's index, a
# shell's here-document) keep working while the agent deletes files, and the watch stops
# whatever grows the tree further.
MIN_FILE_BYTES = MIB
TICK_SECONDS = 0.01
# Walks are at least this many times their own cost apart: the watch spends at most about
# a tenth of a core on a huge tree.
WALK_COST_FACTOR = 10
STALE_SECONDS = 1.0
# A command starts from its tree's last measure (plus the file system's growth since) for
# this long after the walk that made it; then the tree is walked again.
RECENT_SECONDS = 60.0


def tree_bytes(tree: Path) -> int:
    """The disk space ``tree`` uses: the allocated blocks of every entry, directories
    included, hard links counted once, symlinks not followed. Entries that vanish during
    the walk are skipped (a command may be deleting them)."""
    total = 0
    linked: set[tuple[int, int]] = set()
    pending = [os.fspath(tree)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    stat = entry.stat(follow_symlinks=False)
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir:
                    pending.append(entry.path)
                elif stat.st_nlink > 1:
                    key = (stat.st_dev, stat.st_ino)
                    if key in linked:
                        continue
                    linked.add(key)
                total += stat.st_blocks * 512
    return total


def filesystem_used(path: Path) -> int:
    """Bytes in use on the file system holding ``path`` (cheap: one statvfs)."""
    stat = os.statvfs(path)
    return (stat.f_blocks - stat.f_bfree) * stat.f_frsize


def megabytes(size: int) -> str:
    return f"{size / MIB:.0f}"


@dataclass(frozen=True)
class Overrun:
    """The work tree is over its limit after a command; ``stopped``: the command was killed
    for growing it."""

    limit_bytes: int
    used_bytes: int
    stopped: bool

    def message(self) -> str:
        stopped = ": the command was stopped" if self.stopped else ""
        return (
            f"The workspace is over its limit of {megabytes(self.limit_bytes)} MB (now "
            f"{megabytes(self.used_bytes)} MB){stopped}. Delete files to go on."
        )


@dataclass(frozen=True)
class Measure:
    used: int  # the tree's bytes
    filesystem_used: int  # its file system's, at the same moment
    at: float
    cost: float  # seconds the walk took
    # When the tree was last walked: ``used`` may be an estimate made later (an upper
    # bound: the last walk plus the file system's growth since).
    walked_at: float


@dataclass(frozen=True)
class TreeMeasure:
    """What a work tree held at its last measure, and its file system then: enough for a
    later run on the same untouched tree to start without walking it again (the tree can
    only have grown by as much as the file system has since)."""

    used_bytes: int
    filesystem_used: int


def measure(tree: Path) -> Measure:
    started = time.monotonic()
    filesystem = filesystem_used(tree)
    used = tree_bytes(tree)
    finished = time.monotonic()
    return Measure(
        used=used,
        filesystem_used=filesystem,
        at=finished,
        cost=finished - started,
        walked_at=finished,
    )


def no_room(*, limit_bytes: int, room_bytes: int, growth: int) -> str | None:
    """Why a host-side write (the file tools) that grows the tree by ``growth`` bytes must
    not happen, or None: the tree's limit holds for them as for commands."""
    if growth <= room_bytes:
        return None
    return (
        f"The workspace is at its limit of {megabytes(limit_bytes)} MB "
        f"({room_bytes} bytes left; this write needs {growth} more). Delete files to go on."
    )


class DiskMeter:
    """The last measure of each work tree a sandbox's commands wrote to, so that a command
    far under the limit starts without walking the tree again."""

    def __init__(self) -> None:
        self._last: dict[Path, Measure] = {}
        self._lock = threading.Lock()

    def budget(self, tree: Path, *, limit_bytes: int, file_cap: int) -> DiskBudget:
        """The budget of one command (blocking: it may walk the tree)."""
        with self._lock:
            recent = self._last.get(tree)
        now = time.monotonic()
        if recent is not None and now - recent.walked_at < RECENT_SECONDS:
            filesystem = filesystem_used(tree)
            bound = recent.used + max(0, filesystem - recent.filesystem_used)
            # Only while the estimate cannot change the command's file-size limit.
            if bound + file_cap <= limit_bytes:
                start = replace(recent, used=bound, filesystem_used=filesystem, at=now)
                return DiskBudget(
                    tree, limit_bytes=limit_bytes, file_cap=file_cap, start=start, meter=self
                )
        walked = measure(tree)
        self.remember(tree, walked)
        return DiskBudget(
            tree, limit_bytes=limit_bytes, file_cap=file_cap, start=walked, meter=self
        )

    def remember(self, tree: Path, last: Measure) -> None:
        with self._lock:
            self._last[tree] = last

    def last(self, tree: Path) -> TreeMeasure | None:
        with self._lock:
            found = self._last.get(tree)
        if found is None:
            return None
        return TreeMeasure(used_bytes=found.used, filesystem_used=found.filesystem_used)

    def adopt(self, tree: Path, known: TreeMeasure) -> None:
        """Start from a measure an earlier run took of ``tree``, untouched since."""
        now = time.monotonic()
        self.remember(
            tree,
            Measure(
                used=known.used_bytes,
                filesystem_used=known.filesystem_used,
                at=now,
                cost=0.0,
                walked_at=now,
            ),
        )


class DiskBudget:
    """One command's share of its work tree's limit: the file-size limit it runs with, the
    watch while it runs, and the verdict after."""

    def __init__(
        self, tree: Path, *, limit_bytes: int, file_cap: int, start: Measure, meter: DiskMeter
    ) -> None:
        self.tree = tree
        self.limit_bytes = limit_bytes
        self.file_cap = file_cap
        self.meter = meter
        self.start = start
        self.last = self.start
        # A tree already over its limit may shrink but not grow: the agent deletes to go on.
        self.threshold = max(limit_bytes, self.start.used)
        self.tripped = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def file_bytes(self) -> int:
        """RLIMIT_FSIZE for the command: the file-size cap, or less to fit the room left."""
        return min(self.file_cap, max(self.threshold - self.start.used, MIN_FILE_BYTES))

    def room_bytes(self) -> int:
        return max(0, self.limit_bytes - self.start.used)

    def watch(self, on_over: Callable[[], None]) -> None:
        """Watch the tree from a thread until ``finish``; ``on_over`` (which kills the
        command) runs at most once, from that thread, when the tree outgrows the limit."""
        self._thread = threading.Thread(
            target=self._watch, args=(on_over,), name="openjules-disk-watch", daemon=True
        )
        self._thread.start()

    def finish(self) -> Overrun | None:
        """Stop watching (blocking: a walk may be under way) and say whether the tree ended
        over its limit. Call once the command's processes are gone."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if (
            self.tripped
            or self.last.used > self.limit_bytes  # it may have shrunk back under
            or self._may_have_grown_over(self.last)
        ):
            self.last = measure(self.tree)
        self.meter.remember(self.tree, self.last)
        if self.tripped or self.last.used > self.limit_bytes:
            return Overrun(
                limit_bytes=self.limit_bytes, used_bytes=self.last.used, stopped=self.tripped
            )
        return None

    def _watch(self, on_over: Callable[[], None]) -> None:
        while not self._done.wait(TICK_SECONDS):
            since = time.monotonic() - self.last.at
            spacing = self.last.cost * WALK_COST_FACTOR
            if since < spacing:
                continue
            stale = since >= max(STALE_SECONDS, spacing)
            if not stale and not self._may_have_grown_over(self.last):
                continue
            self.last = measure(self.tree)
            if self.last.used > self.threshold and not self._done.is_set():
                self.tripped = True
                on_over()
                return

    def _may_have_grown_over(self, last: Measure) -> bool:
        grown = filesystem_used(self.tree) - last.filesystem_used
        return grown >= self.threshold - last.used
