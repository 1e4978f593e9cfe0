"""``openjules serve --http-workers N``: N processes answering the API on one port.

The parent binds the socket (before it is called), brings the schema to head once, then
forks N children that serve the API on the inherited socket, each composed exactly as a
single-process server is (``openjules.server.serve``). The first child also runs the agent
and sends webhook events (``ProcessRole.ALL``); the others take submit/cancel only
(``ProcessRole.API``) and hear of the runner's work through the database's change feed
(PostgreSQL's notifications; on SQLite the children's own sockets, ``store.change_peers``).
The runner is a child, not the parent, so the parent stays a small supervisor with no
event loop, thread or database connection of its own: forking a replacement child is then
safe at any time, and a crash in the engine is contained in one process like any other.

The parent supervises:

- SIGINT or SIGTERM: each child gets one SIGTERM and stops like a single server does (its
  API stops taking requests and ends its streams, then its engine stops); a second signal
  makes them stop at once. Children live in their own process group, so a terminal's
  Ctrl-C reaches the parent only and each child is told once.
- A child that dies after it was serving (killed, out of memory, a crash) is replaced by a
  new one in the same role: the other processes' requests and streams go on, and a
  replaced runner's sessions are resumed once their leases expire. A child that dies before
  it listened would fail the same way again, so the server stops with a message instead;
  so it does when children keep dying (``MAX_RESTARTS`` within ``RESTART_WINDOW_S``).
- A parent that dies (SIGKILL) leaves no children behind. On Linux the kernel kills them
  with it (``PR_SET_PDEATHSIG``): killing the server kills all of it at once, as it would
  kill a single process, so the port is free for a restart at once (children stopping
  cleanly would still answer on it meanwhile, and a new server could not bind it).
  Elsewhere each child watches a pipe only the parent holds open and stops itself at its
  end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import NoReturn

from openjules.engine.runner import RunnerUnavailable
from openjules.server import ProcessRole, serve
from openjules.settings import Settings
from openjules.store.change_peers import LocalPeers
from openjules.store.migrate import upgrade_to_head

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# A child that has not stopped this long after it was told to is killed.
STOP_TIMEOUT_S = 60.0
# Children that die more often than this stop the server: something is wrong with them all.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
READY = b"r"


def http_workers(settings: Settings) -> int:
    """How many HTTP processes ``serve`` starts: the setting, else one per CPU core, on
    either database. The process running the sessions is busy in bursts (a hundred
    sessions' model answers arrive together), and a request it takes waits for the burst:
    with a process that only answers, the one the kernel hands a connection is most often
    the one waiting for work (on SQLite at 100 sessions, the slowest 1% of GET session
    requests took 18 ms with two processes against 60-140 ms with one). The processes
    tell each other of changes at once on SQLite too (``store.change_peers``)."""
    if settings.http_workers:
        return settings.http_workers
    return os.cpu_count() or 1


class HttpWorkersFailed(RuntimeError):
    """The server stopped because its processes could not run; ``str()`` says why."""


@dataclass
class _Child:
    index: int
    pid: int
    ready_fd: int  # the parent's end of a pipe the child writes READY to once it listens
    ready: bool = False


@dataclass
class _Supervisor:
    settings: Settings
    sock: socket.socket
    processes: int
    on_listening: Callable[[], None] | None
    on_serving: Callable[[], None] | None
    log_level: str
    children: dict[int, _Child] = field(default_factory=dict)
    restarts: list[float] = field(default_factory=list)
    serving: bool = False
    stop_requests: int = 0
    stop_deadline: float | None = None
    failure: str = ""

    def run(self) -> None:
        # Whether a child has said it listens: set once, by the first child to listen.
        self.announced = multiprocessing.get_context("fork").Value("b", 0)
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        # Children watch this pipe: its end (the parent's exit, however it happens) stops
        # them. The parent holds the only write end.
        self.lifeline_r, self.lifeline_w = os.pipe()
        self.parent_pid = os.getpid()
        # The children tell each other of changes through sockets named after it.
        self.peer_group = LocalPeers.new_group()
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        previous_wakeup = signal.set_wakeup_fd(self.wake_w.fileno())
        handled = (*STOP_SIGNALS, signal.SIGCHLD)
        # The handlers do nothing: the wake-up socket carries each signal's number to the
        # loop below, which acts on it outside signal context.
        previous = {sig: signal.signal(sig, _noted) for sig in handled}
        try:
            for index in range(self.processes):
                self._start(index)
            while self.children:
                self._step()
        finally:
            for child in self.children.values():  # only after an error of the parent
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGKILL)
                    os.waitpid(child.pid, 0)
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.selector.close()
            for end in (self.wake_r, self.wake_w):
                end.close()
            for fd in (self.lifeline_r, self.lifeline_w):
                os.close(fd)
        if self.failure:
            raise HttpWorkersFailed(self.failure)

    # --- the parent's loop ---------------------------------------------------------------

    def _step(self) -> None:
        timeout = None
        if self.stop_deadline is not None:
            timeout = max(0.0, self.stop_deadline - time.monotonic())
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                self._signals()
            else:
                self._readiness(key.data)
        self._reap()
        if self.stop_deadline is not None and time.monotonic() >= self.stop_deadline:
            for child in self.children.values():
                _say(f"HTTP worker {child.index + 1} (pid {child.pid}) did not stop; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            self.stop_deadline = None  # reaped next round

    def _signals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            numbers = self.wake_r.recv(256)
            for number in numbers:
                if number in STOP_SIGNALS:
                    self._stop()

    def _stop(self) -> None:
        """Tell every child to stop: SIGTERM the first time, SIGINT after (uvicorn's
        "stop now", without waiting for open connections)."""
        self.stop_requests += 1
        if self.stop_deadline is None and self.stop_requests == 1:
            self.stop_deadline = time.monotonic() + STOP_TIMEOUT_S
        sig = signal.SIGTERM if self.stop_requests == 1 else signal.SIGINT
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, sig)

    def _fail(self, message: str) -> None:
        if not self.failure:
            self.failure = message
        if not self.stop_requests:
            self._stop()

    def _readiness(self, child: _Child) -> None:
        try:
            data = os.read(child.ready_fd, 16)
        except OSError:
            data = b""
        if not data:  # the child has exited (or closed its end); _reap says how
            self.selector.unregister(child.ready_fd)
            return
        child.ready = True
        if self.stop_requests:
            return
        ready = [c for c in self.children.values() if c.ready]
        if not self.serving and len(ready) == self.processes:
            self.serving = True
            pids = ", ".join(str(c.pid) for c in sorted(ready, key=lambda c: c.index))
            _say(
                f"{self.processes} HTTP worker processes serving (pids {pids}; the first "
                "runs sessions and sends webhook events)"
            )
            if self.on_serving is not None:
                self.on_serving()

    def _reap(self) -> None:
        for pid, child in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            del self.children[pid]
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(child.ready_fd)
            os.close(child.ready_fd)
            if not self.stop_requests:
                self._replace(child, how=_ended(status))

    def _replace(self, child: _Child, *, how: str) -> None:
        name = f"HTTP worker {child.index + 1} of {self.processes} (pid {child.pid})"
        if not child.ready:
            self._fail(f"{name} {how} before it was serving; the server stops")
            return
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S]
        if len(self.restarts) >= MAX_RESTARTS:
            self._fail(
                f"{name} {how}, the {MAX_RESTARTS + 1}th to end within "
                f"{RESTART_WINDOW_S:.0f} s; the server stops"
            )
            return
        self.restarts.append(now)
        new = self._start(child.index)
        _say(f"{name} {how}; started HTTP worker {child.index + 1} again (pid {new.pid})")

    # --- children ------------------------------------------------------------------------

    def _start(self, index: int) -> _Child:
        ready_r, ready_w = os.pipe()
        # What this process would print later must not be printed twice.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            self._child(index, ready_w)
        os.close(ready_w)
        child = _Child(index=index, pid=pid, ready_fd=ready_r)
        self.children[pid] = child
        self.selector.register(ready_r, selectors.EVENT_READ, child)
        return child

    def _child(self, index: int, ready_w: int) -> NoReturn:
        code = 1
        try:
            # Out of the terminal's process group: Ctrl-C reaches the parent, which tells
            # each child once (a second SIGINT would make uvicorn drop open connections).
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            for sig in (*STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            self._close_parent_ends()
            _die_with_parent(self.parent_pid)
            _stop_when_closed(self.lifeline_r)

            def listening() -> None:
                # Said by the child itself, before it answers any request (as a single
                # server says it): whoever sees the port answer has seen the line.
                with self.announced.get_lock():
                    first, self.announced.value = not self.announced.value, 1
                if first and self.on_listening is not None:
                    self.on_listening()
                os.write(ready_w, READY)

            role = ProcessRole.ALL if index == 0 else ProcessRole.API
            asyncio.run(
                serve(
                    self.settings,
                    sock=self.sock,
                    on_listening=listening,
                    log_level=self.log_level,
                    role=role,
                    migrate=False,
                    peers=LocalPeers(group=self.peer_group, count=self.processes, index=index),
                )
            )
            code = 0
        except KeyboardInterrupt:
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except RunnerUnavailable as exc:
            print(f"Error: {exc}", file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            # Not sys.exit: the parent's exit handlers and buffers are not the child's.
            os._exit(code)

    def _close_parent_ends(self) -> None:
        """Close what only the parent may hold: the lifeline's write end (else the child
        would keep its own lifeline open), its wake-up socket and the other children's
        readiness pipes."""
        os.close(self.lifeline_w)
        self.selector.close()
        self.wake_r.close()
        self.wake_w.close()
        for child in self.children.values():
            os.close(child.ready_fd)


def _noted(_signum: int, _frame: FrameType | None) -> None:
    """A signal handler that leaves the work to the wake-up socket's reader."""


PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel SIGKILL this process when the parent dies."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # the lifeline pipe still stops this process
    if os.getppid() != parent_pid:  # the parent died before the request was made
        os._exit(1)


def _stop_when_closed(fd: int) -> None:
    """Send this process SIGTERM (a clean stop) when ``fd`` reaches its end."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 64):
                pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="openjules-lifeline", daemon=True).start()


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _say(message: str) -> None:
    print(f"openjules: {message}", file=sys.stderr, flush=True)


def serve_in_processes(
    settings: Settings,
    *,
    sock: socket.socket,
    processes: int,
    on_listening: Callable[[], None] | None = None,
    on_serving: Callable[[], None] | None = None,
    log_level: str = "info",
) -> None:
    """Serve on ``sock`` with ``processes`` child processes until SIGINT or SIGTERM (see the
    module). ``on_listening`` runs once, in the first of them to listen, before it answers
    a request; ``on_serving`` in this process once all of them listen (a line on stderr
    says so too). Raises
    ``HttpWorkersFailed`` when the server had to stop because its processes could not run.
    Call it from the main thread of a process with no other threads."""
    upgrade_to_head(settings.resolved_database_url())
    _Supervisor(
        # Resolved, so each process sizes its share of the database connections by it.
        settings=settings.model_copy(update={"http_workers": processes}),
        sock=sock,
        processes=processes,
        on_listening=on_listening,
        on_serving=on_serving,
        log_level=log_level,
    ).run()
