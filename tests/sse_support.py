"""Reading a Server-Sent Events stream in tests: ``EventReader`` opens one with httpx
(real HTTP, streaming), parses it in a thread as a browser's EventSource would, and lets
the test wait, with a deadline, for what it expects."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from openjules.store.clock import parse_timestamp_ns
from openjules.testing import LiveServer
from tests.support import API_KEY_HEADER

WAIT_S = 60.0


@dataclass(frozen=True)
class SSE:
    """One event, or a comment (``event == ""``, ``comment`` set)."""

    event: str
    data: str
    id: str | None = None
    comment: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class StreamEnded(AssertionError):
    pass


class EventReader:
    """An open SSE stream: ``status`` and ``headers`` once open; events via ``next`` and
    ``collect``; ``ended`` once the server finished the body cleanly."""

    def __init__(
        self,
        base_url: str,
        path: str,
        *,
        key: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            headers={API_KEY_HEADER: key, **(headers or {})},
            timeout=httpx.Timeout(30.0, read=None),
        )
        self._context = self._client.stream("GET", path, params=dict(params or {}))
        self.response = self._context.__enter__()
        self.status = self.response.status_code
        self.headers = self.response.headers
        self._events: queue.Queue[SSE | None] = queue.Queue()
        self.ended = threading.Event()
        self.failed: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._read, daemon=True, name="sse-reader")
        if self.status == 200:
            self._thread.start()

    def _read(self) -> None:
        event, event_id = "", None
        data: list[str] = []
        try:
            for line in self.response.iter_lines():
                if line == "":
                    if data or event:
                        self._events.put(SSE(event or "message", "\n".join(data), event_id))
                    event, data, event_id = "", [], None
                elif line.startswith(":"):
                    self._events.put(SSE("", "", comment=line[1:].strip()))
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        event_id = value
            self.ended.set()
        except BaseException as exc:  # the test closed it, or the connection broke
            if not self._closing:
                self.failed = exc
        finally:
            self._events.put(None)

    def next(self, *, timeout: float = WAIT_S, comments: bool = False) -> SSE:
        """The next event (comments skipped unless asked for); fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event within {timeout} s")
            try:
                item = self._events.get(timeout=left)
            except queue.Empty:
                raise AssertionError(f"no event within {timeout} s") from None
            if item is None:
                self._events.put(None)
                raise StreamEnded(f"the stream ended (error: {self.failed!r})")
            if item.comment is not None and not comments:
                continue
            return item

    def collect(self, until: Callable[[SSE], bool], *, timeout: float = WAIT_S) -> list[SSE]:
        """Events up to and including the first for which ``until`` holds."""
        deadline = time.monotonic() + timeout
        found: list[SSE] = []
        while True:
            item = self.next(timeout=max(0.01, deadline - time.monotonic()))
            found.append(item)
            if until(item):
                return found

    def wait_ended(self, *, timeout: float = WAIT_S) -> None:
        """The server finished the stream cleanly (a complete chunked body)."""
        assert self.ended.wait(timeout), f"the stream did not end (error: {self.failed!r})"

    def close(self) -> None:
        self._closing = True
        self._context.__exit__(None, None, None)
        self._client.close()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def stream(
    live: LiveServer,
    path: str,
    key: str,
    *,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> EventReader:
    """``path`` of ``live``'s v1alpha API with ``alt=sse`` (and ``params``)."""
    query = {"alt": "sse", **(params or {})}
    return EventReader(live.api, path, key=key, params=query, headers=headers)


def assert_as_get(client: httpx.Client, session_id: str, events: list[SSE]) -> None:
    """Each event is exactly what activities.get answers; its id, the createTime in ns."""
    for event in events:
        assert event.event == "activity"
        activity = event.json()
        got = client.get(f"/sessions/{session_id}/activities/{activity['id']}")
        assert event.data == got.text
        assert event.id == str(parse_timestamp_ns(activity["createTime"]))


def until_completed(event: SSE) -> bool:
    return event.event == "activity" and "sessionCompleted" in event.data


def until_state(state: str, session_id: str | None = None) -> Callable[[SSE], bool]:
    def reached(event: SSE) -> bool:
        if event.event != "session":
            return False
        session = event.json()
        return bool(session["state"] == state and session_id in (None, session["id"]))

    return reached
