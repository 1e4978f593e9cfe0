"""Both SDK flavours behind one interface, so each scenario is written once and run with
``Client`` and with ``AsyncClient``.

- ``connect(flavour, ...)``: a ``Client``; for ``"async"`` an ``AsyncBridge`` that drives a
  real ``AsyncClient`` on an event loop of its own (a thread) and answers as ``Client``
  does: coroutines are awaited there, async iterators come back as blocking ones
  (``close()`` closes the async generator on that loop).
- ``kind_of(activity)``: its wire kind (``planGenerated``, ...).
- ``closing(iterator)``: a ``with`` that closes a stream the test leaves early.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from enum import StrEnum
from typing import Any, TypeVar, cast

from openjules._types import ACTIVITY_KIND_KEYS, Activity
from openjules.client import AsyncClient, Client

T = TypeVar("T")

# How long one bridged call may take: longer than any wait a test makes.
BRIDGE_TIMEOUT_S = 300.0


class Flavour(StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class _End:
    """What ``_next_or_end`` returns once an async iterator is exhausted."""


_END = _End()


async def _next_or_end(iterator: AsyncIterator[T]) -> T | _End:
    # StopAsyncIteration is not let out of the coroutine: a future carrying it across
    # threads would be an odd exception to re-raise.
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _END


class AsyncBridge:
    """An ``AsyncClient`` used from blocking code, every call made on the bridge's own
    event loop, concurrently with calls from other threads."""

    def __init__(self, make: Callable[[], AsyncClient]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="sdk-async-bridge", daemon=True
        )
        self._thread.start()
        self.client = make()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(
            timeout=BRIDGE_TIMEOUT_S
        )

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.client, name)
        if inspect.isasyncgenfunction(attribute):

            def iterate(*args: Any, **kwargs: Any) -> BridgedIterator[Any]:
                return BridgedIterator(self, attribute(*args, **kwargs))

            return iterate
        if inspect.iscoroutinefunction(attribute):

            def call(*args: Any, **kwargs: Any) -> Any:
                return self.run(attribute(*args, **kwargs))

            return call
        return attribute

    def close(self) -> None:
        """What is still running on the loop (a stream a failed test left) is cancelled,
        then ``AsyncClient.aclose()``, and the loop ends."""
        self.run(self._shut_down())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=BRIDGE_TIMEOUT_S)
        self._loop.close()

    async def _shut_down(self) -> None:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        await self.client.aclose()
        await self._loop.shutdown_asyncgens()


class BridgedIterator(Iterator[T]):
    """An async iterator of the bridge's loop, read from blocking code."""

    def __init__(self, bridge: AsyncBridge, iterator: AsyncIterator[T]) -> None:
        self._bridge = bridge
        self._iterator = iterator

    def __next__(self) -> T:
        item = self._bridge.run(_next_or_end(self._iterator))
        if isinstance(item, _End):
            raise StopIteration
        return item

    def close(self) -> None:
        aclose = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            self._bridge.run(aclose())


def connect(flavour: Flavour, *, base_url: str, api_key: str, **options: Any) -> Client:
    """The SDK in ``flavour`` for ``base_url`` (a server URL, with or without /v1alpha)."""
    if flavour is Flavour.SYNC:
        return Client(base_url=base_url, api_key=api_key, **options)
    bridge = AsyncBridge(lambda: AsyncClient(base_url=base_url, api_key=api_key, **options))
    # It answers every method of Client the way Client does (see the class).
    return cast(Client, bridge)


@contextlib.contextmanager
def closing(iterator: Iterator[T]) -> Iterator[Iterator[T]]:
    """``iterator``, closed on the way out (a generator or a ``BridgedIterator``)."""
    try:
        yield iterator
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def kind_of(activity: Activity) -> str:
    kind = activity.kind()
    assert kind is not None, f"activity {activity.id} has no kind"
    return ACTIVITY_KIND_KEYS[type(kind)]
