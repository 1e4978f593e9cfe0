"""``AsyncClient``: the Jules API (and openjules' extensions) from asyncio code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from openjules import __version__
from openjules._errors import APIError
from openjules._types import (
    Activity,
    GitPatch,
    ListActivitiesResponse,
    ListSessionsResponse,
    ListSourcesResponse,
    Session,
    Source,
    State,
)
from openjules.client import calls
from openjules.client.calls import Call
from openjules.client.config import api_root, resolve
from openjules.client.errors import ConnectionFailed, WaitTimeout
from openjules.client.events import EventDecoder, ServerEvent
from openjules.client.following import (
    MAX_RECONNECTS,
    SETTLED,
    STREAM_READ_TIMEOUT,
    ActivityCursor,
    ends_session,
    newer_than_filter,
    reached,
    session_of,
)
from openjules.client.names import SessionRef, SourceRef
from openjules.client.patches import last_activity_patch, output_patch
from openjules.client.responses import error_of, is_event_stream, result_of
from openjules.client.retries import RetryPolicy

T = TypeVar("T")


class _NotAStream(Exception):
    """The server answered a streaming request with a plain answer: it does not stream."""


class _Retry(Exception):
    """A stream was refused in a way worth trying again (429/503)."""

    def __init__(self, error: APIError) -> None:
        super().__init__(error.message)
        self.error = error


class AsyncClient:
    """``async with AsyncClient() as jules: session = await jules.create_session(...)``.

    ``base_url`` and ``api_key`` default to ``OPENJULES_URL`` / ``JULES_API_KEY``, then to
    what ``openjules login`` stored. Any server speaking Jules' v1alpha works for Jules'
    twelve methods; cancel, pause, resume and live streams are openjules extensions
    (``Unsupported`` on a server without them; streams and waits fall back to polling).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        poll_interval: float = 1.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        credentials = resolve(url=base_url, api_key=api_key)
        self.base_url = api_root(credentials.url)
        self.retry = retry or RetryPolicy()
        self.poll_interval = poll_interval
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._headers = {
            "X-Goog-Api-Key": credentials.api_key,
            "User-Agent": f"openjules-python/{__version__}",
        }
        # Learned on the first try: whether the server streams (else polling).
        self._streams: bool | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # --- one call ---------------------------------------------------------------------

    async def _run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method,
                    f"{self.base_url}/{call.path}",
                    params=call.params,
                    json=call.body,
                    headers=self._headers,
                )
            except httpx.TransportError as exc:
                if not self.retry.should_retry_exception(
                    exc, idempotent=call.idempotent, attempt=attempt
                ):
                    raise ConnectionFailed.of(
                        exc, server=self.base_url, sent=not isinstance(exc, httpx.ConnectError)
                    ) from exc
                await asyncio.sleep(self.retry.delay(attempt=attempt))
                continue
            try:
                return result_of(call, response, server=self.base_url)
            except APIError as error:
                if not self.retry.should_retry_error(
                    error, idempotent=call.idempotent, attempt=attempt
                ):
                    raise
                await asyncio.sleep(
                    self.retry.delay(attempt=attempt, retry_after=error.retry_after_seconds)
                )

    # --- sources ----------------------------------------------------------------------

    async def list_sources_page(
        self,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        filter: str | None = None,
    ) -> ListSourcesResponse:
        return await self._run(
            calls.list_sources(page_size=page_size, page_token=page_token, filter=filter)
        )

    async def list_sources(
        self, *, filter: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[Source]:
        """Every source, page after page."""
        token: str | None = None
        while True:
            page = await self.list_sources_page(
                page_size=page_size, page_token=token, filter=filter
            )
            for source in page.sources:
                yield source
            token = page.next_page_token
            if not token:
                return

    async def get_source(self, source: SourceRef) -> Source:
        return await self._run(calls.get_source(source))

    # --- sessions ---------------------------------------------------------------------

    async def create_session(
        self,
        *,
        prompt: str,
        source: SourceRef | None = None,
        starting_branch: str | None = None,
        title: str | None = None,
        require_plan_approval: bool = False,
        auto_pr: bool = False,
    ) -> Session:
        """A new session on ``source`` (``OWNER/REPO`` or ``sources/…``), or a repoless one."""
        return await self._run(
            calls.create_session(
                prompt=prompt,
                source=source,
                starting_branch=starting_branch,
                title=title,
                require_plan_approval=require_plan_approval,
                auto_pr=auto_pr,
            )
        )

    async def get_session(self, session: SessionRef) -> Session:
        return await self._run(calls.get_session(session))

    async def list_sessions_page(
        self,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        filter: str | None = None,
    ) -> ListSessionsResponse:
        return await self._run(
            calls.list_sessions(page_size=page_size, page_token=page_token, filter=filter)
        )

    async def list_sessions(
        self, *, filter: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[Session]:
        """Every session the filter selects (AIP-160, e.g. ``state = COMPLETED``), newest
        first, page after page."""
        token: str | None = None
        while True:
            page = await self.list_sessions_page(
                page_size=page_size, page_token=token, filter=filter
            )
            for session in page.sessions:
                yield session
            token = page.next_page_token
            if not token:
                return

    async def delete_session(self, session: SessionRef) -> None:
        await self._run(calls.delete_session(session))

    async def archive_session(self, session: SessionRef) -> None:
        await self._run(calls.archive_session(session))

    async def unarchive_session(self, session: SessionRef) -> None:
        await self._run(calls.unarchive_session(session))

    async def send_message(self, session: SessionRef, prompt: str) -> None:
        await self._run(calls.send_message(session, prompt))

    async def approve_plan(self, session: SessionRef) -> None:
        await self._run(calls.approve_plan(session))

    async def cancel_session(self, session: SessionRef) -> None:
        """Stop the session for good (FAILED); an openjules extension."""
        await self._run(calls.cancel_session(session))

    async def pause_session(self, session: SessionRef) -> None:
        """Stop work until ``resume_session``; an openjules extension."""
        await self._run(calls.pause_session(session))

    async def resume_session(self, session: SessionRef) -> None:
        await self._run(calls.resume_session(session))

    # --- activities -------------------------------------------------------------------

    async def list_activities_page(
        self,
        session: SessionRef,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        filter: str | None = None,
    ) -> ListActivitiesResponse:
        return await self._run(
            calls.list_activities(
                session, page_size=page_size, page_token=page_token, filter=filter
            )
        )

    async def list_activities(
        self, session: SessionRef, *, filter: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[Activity]:
        """Every activity of the session, oldest first, page after page."""
        token: str | None = None
        while True:
            page = await self.list_activities_page(
                session, page_size=page_size, page_token=token, filter=filter
            )
            for activity in page.activities:
                yield activity
            token = page.next_page_token
            if not token:
                return

    async def get_activity(self, session: SessionRef, activity: str) -> Activity:
        return await self._run(calls.get_activity(session, activity))

    async def stream_activities(
        self, session: SessionRef, *, after: Activity | None = None, until_done: bool = True
    ) -> AsyncIterator[Activity]:
        """The session's activities (after ``after``, else from the first), then each new
        one as it happens; each exactly once, whatever reconnects happen on the way.

        With ``until_done`` the stream ends once the session has COMPLETED or FAILED and
        everything before that was handed out; otherwise it goes on (a follow-up message
        wakes a finished session)."""
        cursor = ActivityCursor(after=after)
        while True:
            async for activity in self._activities_once(session, cursor):
                yield activity
                if (
                    until_done
                    and ends_session(activity)
                    and await self._has_ended(session, activity)
                ):
                    return

    async def _activities_once(
        self, session: SessionRef, cursor: ActivityCursor
    ) -> AsyncIterator[Activity]:
        """One pass: a stream until it ends, or (on a server that does not stream) one
        poll after a pause."""
        call = calls.list_activities(session)
        if self._streams is not False:
            try:
                async for event in self._events(call, headers=cursor.headers):
                    activity = cursor.take_event(event)
                    if activity is not None:
                        yield activity
            except _NotAStream:
                self._streams = False
        async for activity in self.list_activities(session, filter=cursor.poll_filter()):
            if cursor.take(activity):
                yield activity
        await asyncio.sleep(self.poll_interval)

    async def _has_ended(self, session: SessionRef, last: Activity) -> bool:
        """Whether the session is COMPLETED/FAILED with nothing after ``last`` (a stream
        replaying history meets earlier endings the session was since woken from)."""
        current = await self.get_session(session)
        if current.state not in (State.COMPLETED, State.FAILED):
            return False
        newer = await self.list_activities_page(
            session, page_size=1, filter=newer_than_filter(last)
        )
        return not newer.activities

    # --- waiting ----------------------------------------------------------------------

    async def wait(
        self,
        session: SessionRef,
        *,
        until: Collection[State] = SETTLED,
        # The same keyword as the sync client's (rather than asking callers to wrap the
        # call in asyncio.timeout), so code moves between the two unchanged.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Session:
        """The session once its state is one of ``until`` (by default: it waits for a
        person, is paused, or has ended). ``WaitTimeout`` after ``timeout`` seconds."""
        latest: list[Session] = []
        try:
            async with asyncio.timeout(timeout):
                return await self._wait(session, until=until, latest=latest)
        except TimeoutError:
            current = latest[-1] if latest else await self.get_session(session)
            raise WaitTimeout(
                f"session {current.id} is {current.state.value} after {timeout} s, "
                f"not one of {', '.join(sorted(s.value for s in until))}",
                session=current,
            ) from None

    async def _wait(
        self, session: SessionRef, *, until: Collection[State], latest: list[Session]
    ) -> Session:
        call = calls.get_session(session)
        while True:
            if self._streams is not False:
                try:
                    async for event in self._events(call, headers=lambda: {}):
                        current = session_of(event)
                        if current is not None:
                            latest.append(current)
                            if reached(current, until):
                                return current
                except _NotAStream:
                    self._streams = False
            current = await self.get_session(session)
            latest.append(current)
            if reached(current, until):
                return current
            await asyncio.sleep(self.poll_interval)

    # --- results ----------------------------------------------------------------------

    async def patch(self, session: SessionRef) -> GitPatch | None:
        """The session's final patch (its changeSet output; before it has one, the last
        changeSet an activity carried), or None when it changed nothing."""
        found = output_patch(await self.get_session(session))
        if found is not None:
            return found
        return last_activity_patch([a async for a in self.list_activities(session)])

    # --- streams ----------------------------------------------------------------------

    async def _events(
        self, call: Call[Any], *, headers: Callable[[], dict[str, str]]
    ) -> AsyncIterator[ServerEvent]:
        """The events of ``call`` with ``alt=sse``, reconnecting (with ``headers()`` as
        they are then, e.g. a new Last-Event-ID) whenever the connection drops or the
        server ends the stream; endless unless an error is raised. ``_NotAStream`` when
        the server answers plainly."""
        failures = 0
        while True:
            try:
                async with self._http.stream(
                    "GET",
                    f"{self.base_url}/{call.path}",
                    params={**call.params, "alt": "sse"},
                    headers={**self._headers, **headers()},
                    timeout=httpx.Timeout(
                        self._http.timeout.connect or 30.0, read=STREAM_READ_TIMEOUT
                    ),
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        error = error_of(call, response, server=self.base_url)
                        if not self.retry.should_retry_error(
                            error, idempotent=True, attempt=failures + 1
                        ):
                            raise error
                        raise _Retry(error)
                    if not is_event_stream(response):
                        await response.aread()
                        raise _NotAStream()
                    self._streams = True
                    decoder = EventDecoder()
                    async for line in response.aiter_lines():
                        event = decoder.feed(line)
                        if event is not None:
                            failures = 0
                            yield event
                # The server ended the stream (it is shutting down, say): come back as a
                # reconnecting client would, after a pause; a deleted session is a 404 then.
                await asyncio.sleep(self.retry.delay(attempt=1))
            except (httpx.TransportError, _Retry) as exc:
                failures += 1
                if failures > MAX_RECONNECTS:
                    if isinstance(exc, _Retry):
                        raise exc.error from None
                    raise ConnectionFailed.of(exc, server=self.base_url, sent=False) from exc
                retry_after = exc.error.retry_after_seconds if isinstance(exc, _Retry) else None
                await asyncio.sleep(self.retry.delay(attempt=failures, retry_after=retry_after))
