"""``openjules._cancellation``: a cancellation that meets a wait as it ends, or a stop as
it waits for its tasks, is never lost (each case loses it with the asyncio idiom it
replaces: ``asyncio.wait_for`` on Python 3.11, ``suppress(CancelledError)``)."""

from __future__ import annotations

import asyncio

import pytest

from openjules._cancellation import stop_tasks, within


async def test_a_cancellation_arriving_as_the_wait_ends_is_kept() -> None:
    woken = asyncio.Event()
    waiting = asyncio.create_task(within(woken.wait(), seconds=60))
    await asyncio.sleep(0)  # it waits now
    woken.set()
    waiting.cancel()  # in the same moment, as a server's stop follows a wake-up
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_the_time_limit_raises_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        await within(asyncio.Event().wait(), seconds=0.01)


async def test_stopping_tasks_keeps_the_stoppers_own_cancellation() -> None:
    may_finish = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await may_finish.wait()  # its clean-up takes a while

    helper = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(stop_tasks([helper]))
    await asyncio.sleep(0.01)  # it waits for the helper's clean-up
    stopper.cancel()
    may_finish.set()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert helper.cancelled()


async def test_stopping_tasks_waits_for_each_and_raises_their_failures() -> None:
    async def fails_on_stop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            raise RuntimeError("broken clean-up")

    quiet = asyncio.create_task(asyncio.sleep(3600))
    failing = asyncio.create_task(fails_on_stop())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="broken clean-up"):
        await stop_tasks([quiet, failing])
    assert quiet.cancelled()
