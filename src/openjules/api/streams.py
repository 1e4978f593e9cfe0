"""The ``alt=sse`` answers of sessions.get, sessions.list and sessions.activities.list.

Everything that can fail (auth, tenancy, the filter, Last-Event-ID, the first history
read) is checked by the caller or here before the stream starts, so it is answered as
the usual JSON error envelope; the stream itself only ends (cleanly) or is left.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request

from openjules.api.sse import EventStream, last_event_id
from openjules.api.state import AppState
from openjules.api.stream_hub import Follower, activity_event
from openjules.store import activities, sessions
from openjules.store.query import Filter
from openjules.store.users import User

# Activities sent per history query before the stream goes live.
HISTORY_PAGE = 100
LAST_EVENT_ID = "last-event-id"


async def activity_stream(
    request: Request, *, user: User, session_id: str, flt: Filter
) -> EventStream:
    """History first (the list method's query, oldest first, ``flt`` applied), then each
    new activity as it commits. With ``Last-Event-ID``: strictly after that activity."""
    state = AppState.of(request)
    after = last_event_id(request.headers.get(LAST_EVENT_ID))
    start = None if after is None else after + 1  # list_page's bound is inclusive
    async with state.db.read() as conn:
        await sessions.ensure_owned(conn, owner_id=user.id, session_id=session_id)
        page, token = await activities.list_page(
            conn, session_id=session_id, flt=flt, page_size=HISTORY_PAGE, after_ns=start
        )

    async def events() -> AsyncIterator[bytes]:
        nonlocal page, token
        cursor = -1 if after is None else after
        while True:
            for record in page:
                yield activity_event(record)
                cursor = record.create_time * 1000
            if not token:
                break
            async with state.db.read() as conn:
                page, token = await activities.list_page(
                    conn,
                    session_id=session_id,
                    flt=flt,
                    page_size=HISTORY_PAGE,
                    after_ns=int(token),
                )
        # Live from the last activity sent; the hub's first refresh catches up on what
        # was committed since the history query.
        live = state.streams.follow_activities(session_id=session_id, flt=flt, after_ns=cursor)
        async for chunk in followed(state, live):
            yield chunk

    return EventStream(events())


async def session_stream(request: Request, *, user: User, session_id: str) -> EventStream:
    """The session now, then again whenever it changes; ends if it is deleted."""
    state = AppState.of(request)
    async with state.db.read() as conn:
        record = await sessions.get(conn, owner_id=user.id, session_id=session_id)

    async def events() -> AsyncIterator[bytes]:
        async for chunk in followed(state, state.streams.follow_session(record=record)):
            yield chunk

    return EventStream(events())


async def sessions_stream(request: Request, *, user: User, flt: Filter) -> EventStream:
    """Each of the caller's sessions that is created or changes from now on, archived
    ones included unless ``flt`` says otherwise (a dashboard must hear of an archive to
    drop the session from its list)."""
    state = AppState.of(request)

    async def events() -> AsyncIterator[bytes]:
        async for chunk in followed(state, state.streams.follow_list(owner_id=user.id, flt=flt)):
            yield chunk

    return EventStream(events())


async def followed(state: AppState, follower: Follower) -> AsyncIterator[bytes]:
    """What the hub hands ``follower``, with keep-alives, until the stream ends; then the
    hub forgets it (the web app's live pages read their events through here too). Called
    from inside a stream's body, so a response that never starts never registers a
    follower it would not leave."""
    try:
        async for chunk in follower.chunks(keepalive_seconds=state.settings.sse_keepalive_seconds):
            yield chunk
    finally:
        state.streams.leave(follower)
