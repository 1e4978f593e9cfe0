"""Where a session's time goes: code marks spans and moments; an observer, if one is
installed for the session being run, receives them.

Nothing is measured unless an observer is installed (``bench/session.py`` passes a factory
to ``LiveServer(observe=…)``, which hands it to ``EngineService`` and so to the session
worker; it is called once per run, so a resumed session is observed again): then a span
costs two clock reads, and otherwise one context-variable lookup. The context variable
follows the session's task into ``asyncio.to_thread`` calls, so blocking git work is
attributed too, which means an observer is called from worker threads as well and must be
thread-safe. A span measures how long the run awaited: the time of the work it stands for,
unless the run was cancelled during it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from typing import Protocol


class Part(StrEnum):
    """Spans of a session run (some nest: checkout and mirror sync are in ``WORKSPACE``)."""

    WORKSPACE = "workspace"
    MIRROR_SYNC = "workspace: mirror sync"
    CHECKOUT = "workspace: create_from_mirror"
    SANDBOX_OWNERSHIP = "sandbox: tree to sandbox uid"
    COMMANDS = "sandbox: commands"
    MODEL = "model"
    PATCHES = "patches (host git)"
    DELIVERY = "delivery (commit, push, pull request)"
    DATABASE = "database"
    CLEANUP = "cleanup"
    SPARE = "spare refill"


class Moment(StrEnum):
    STARTED = "started"  # the worker began the run
    COMPLETED = "completed"  # the COMPLETED transition committed
    ENDED = "ended"  # the run returned (after its clean-up)


class Observer(Protocol):
    def span(self, part: Part, seconds: float) -> None: ...

    def moment(self, moment: Moment) -> None: ...


# Called with a session id when its run starts; returns that run's observer, or None.
ObserverFactory = Callable[[str], Observer | None]

_current: ContextVar[Observer | None] = ContextVar("openjules_timing", default=None)


@contextmanager
def observing(observer: Observer | None) -> Iterator[None]:
    """Report the spans of the current task (and what it starts) to ``observer``."""
    token = _current.set(observer)
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def span(part: Part) -> Iterator[None]:
    observer = _current.get()
    if observer is None:
        yield
        return
    began = time.perf_counter()
    try:
        yield
    finally:
        observer.span(part, time.perf_counter() - began)


def moment(moment: Moment) -> None:
    observer = _current.get()
    if observer is not None:
        observer.moment(moment)
