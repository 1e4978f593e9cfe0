"""What a process and its descendants cost, read from /proc: memory and CPU time.

Memory is summed as PSS (proportional set size: each shared page split between the
processes sharing it), not RSS: a child just forked from a 150 MB server, before its
exec, shares nearly all of that memory, and summing RSS would count it twice. The root
process's own RSS is kept too.

CPU is user + system time of each live process of the tree plus the time of the children
each has waited for (``cutime``/``cstime``): a sandbox command that has exited and been
reaped counts in its parent's figure, one still running in its own.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def mb(value: int) -> str:
    return f"{value / MB:,.0f} MB"


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 onwards)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # gone meanwhile
        return None
    return text[text.rindex(")") + 2 :].split()


def descendants(root: int) -> list[int]:
    """The live descendants of ``root`` (not itself), from each thread's children list
    (a child belongs to the thread that started it): far cheaper than reading every
    process's parent, which would make the sampler a load of its own."""
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(PROC / str(pid) / "task")
        except OSError:  # gone meanwhile
            continue
        for task in tasks:
            try:
                children = (PROC / str(pid) / "task" / task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                todo.append(int(child))
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 if it is gone)."""
    try:
        resident = int((PROC / str(pid) / "statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident * PAGE


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (its RSS where the kernel gives no PSS)."""
    try:
        text = (PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return rss_bytes(pid)
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return rss_bytes(pid)


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """utime + stime (+ cutime + cstime with ``children``) of one process (0 if gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # Fields 14-17 of stat; fields[] starts at field 3.
    return sum(int(x) for x in fields[11 : 15 if children else 13]) / TICKS


@dataclass(frozen=True)
class TreeSample:
    memory: int  # bytes, PSS of the root and its live descendants
    rss: int  # bytes, RSS of the root process alone
    cpu: float  # seconds, as the module docstring says
    own: dict[int, float]  # seconds, each process alone (its threads, not its children)
    processes: int  # live descendants

    def busiest_since(self, before: TreeSample) -> tuple[int, float]:
        """The process of the tree (alive at both samples) that used the most CPU since
        ``before``, and how much: with several processes, the one running the sessions."""
        deltas = {p: cpu - before.own[p] for p, cpu in self.own.items() if p in before.own}
        pid = max(deltas, key=lambda p: deltas[p], default=0)
        return pid, deltas.get(pid, 0.0)


def sample(root: int) -> TreeSample:
    pids = [root, *descendants(root)]
    return TreeSample(
        memory=sum(pss_bytes(p) for p in pids),
        rss=rss_bytes(root),
        cpu=sum(cpu_seconds(p) for p in pids),
        own={p: cpu_seconds(p, children=False) for p in pids},
        processes=len(pids) - 1,
    )


@dataclass
class Sampler:
    """Samples a process tree every ``interval`` seconds in a thread, keeping the peak
    memory of the tree, the peak RSS of the root and the most descendants seen since the
    last ``reset``."""

    root: int
    interval: float = 0.1
    peak_memory: int = 0
    peak_rss: int = 0
    peak_processes: int = 0
    last: TreeSample | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def reset(self) -> None:
        with self._lock:
            self.peak_memory = self.peak_rss = self.peak_processes = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            now = sample(self.root)
            with self._lock:
                self.last = now
                self.peak_memory = max(self.peak_memory, now.memory)
                self.peak_rss = max(self.peak_rss, now.rss)
                self.peak_processes = max(self.peak_processes, now.processes)
