"""Runs of one source that start at once share a fetch into its mirror, and no run ever
uses a fetch that started before it asked (it might miss a commit pushed just before)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from openjules.engine.mirror_syncs import MirrorSyncs

MIRROR = Path("/srv/mirrors/acme/app.git")


class GatedFetch:
    """A fetch that blocks until released, numbering each run."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.gate = threading.Event()
        self.fail_with: Exception | None = None

    def __call__(self) -> None:
        self.started += 1
        self.gate.wait(timeout=30)
        self.finished += 1
        if self.fail_with is not None:
            raise self.fail_with


async def _until(condition: object) -> None:
    for _ in range(3000):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def test_runs_asking_during_a_fetch_share_the_one_after_it() -> None:
    syncs = MirrorSyncs()
    fetch = GatedFetch()
    first = asyncio.create_task(syncs.sync(MIRROR, fetch))
    await _until(lambda: fetch.started == 1)
    # Ten runs ask while the first fetch is under way: it may predate their commits.
    later = [asyncio.create_task(syncs.sync(MIRROR, fetch)) for _ in range(10)]
    await asyncio.sleep(0.05)
    assert fetch.started == 1
    fetch.gate.set()
    await asyncio.gather(first, *later)
    assert fetch.started == 2  # one fetch for all ten, started after they asked
    assert fetch.finished == 2


async def test_a_run_after_a_fetch_ended_fetches_again() -> None:
    syncs = MirrorSyncs()
    fetch = GatedFetch()
    fetch.gate.set()
    await syncs.sync(MIRROR, fetch)
    await syncs.sync(MIRROR, fetch)
    assert fetch.started == 2


async def test_mirrors_do_not_wait_for_each_other() -> None:
    syncs = MirrorSyncs()
    slow, quick = GatedFetch(), GatedFetch()
    quick.gate.set()
    blocked = asyncio.create_task(syncs.sync(MIRROR, slow))
    await _until(lambda: slow.started == 1)
    await syncs.sync(MIRROR.with_name("other.git"), quick)
    assert quick.finished == 1
    assert not blocked.done()
    slow.gate.set()
    await blocked


async def test_every_run_sharing_a_failed_fetch_sees_the_failure() -> None:
    syncs = MirrorSyncs()
    fetch = GatedFetch()
    fetch.fail_with = RuntimeError("could not read from remote repository")
    runs = [asyncio.create_task(syncs.sync(MIRROR, fetch)) for _ in range(3)]
    fetch.gate.set()
    results = await asyncio.gather(*runs, return_exceptions=True)
    assert fetch.started == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    fetch.fail_with = None
    await syncs.sync(MIRROR, fetch)  # the next run tries again
    assert fetch.started == 2


async def test_a_cancelled_run_does_not_stop_the_fetch_others_share() -> None:
    syncs = MirrorSyncs()
    fetch = GatedFetch()
    leaving = asyncio.create_task(syncs.sync(MIRROR, fetch))
    staying = asyncio.create_task(syncs.sync(MIRROR, fetch))
    await _until(lambda: fetch.started == 1)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    fetch.gate.set()
    await staying
    assert fetch.finished == 1
