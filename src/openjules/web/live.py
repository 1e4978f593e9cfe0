"""The live parts of pages: the API's streams (the same hub, the same events), with each
event rendered as the HTML the page shows for it. Without JavaScript the pages are
complete as served; the page script (``static/app.js``) adds these updates.

- ``/session/{id}/live/activities``: event ``activity`` per new activity (one timeline
  entry; its id is the activity's createTime in nanoseconds, so a reconnecting browser
  resumes with Last-Event-ID where it left off).
- ``/session/{id}/live/session``: event ``session`` (the page's header and buttons) on
  every change of the session.
- ``/live``: the sessions page's rows: event ``row`` for a session that belongs in the
  view (new or changed), ``remove`` (its id) for one that no longer does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from openjules._types import Activity, Session
from openjules.api import sse, streams
from openjules.api.sse import EventStream, encode_event
from openjules.api.state import AppState
from openjules.store import sessions
from openjules.store.query import Filter
from openjules.web import auth
from openjules.web.auth import SignedInUser
from openjules.web.listing import SessionsView
from openjules.web.pages import PageRoute, fragment
from openjules.web.views import ActivityView, SessionView

router = APIRouter(route_class=PageRoute, include_in_schema=False)
Translate = Callable[[sse.Event], bytes | None]


def _rendered(
    request: Request, chunks: AsyncIterator[bytes], translate: Translate
) -> AsyncIterator[bytes]:
    """Each event as ``translate`` renders it, while the browser's sign-in lasts: it is
    checked again before an event or keep-alive once ``auth_cache_seconds`` have passed
    (as API keys are), and the stream ends when it has ended (signed out, key revoked)."""
    recheck_s = AppState.of(request).settings.auth_cache_seconds

    async def events() -> AsyncIterator[bytes]:
        checked = time.monotonic()
        async for chunk in chunks:
            if time.monotonic() - checked >= recheck_s:
                if not await auth.still_signed_in(request):
                    return
                checked = time.monotonic()
            event = sse.decode_event(chunk)
            if event is None:
                yield chunk  # a keep-alive
                continue
            rendered = translate(event)
            if rendered is not None:
                yield rendered

    return events()


def _start(request: Request, after: str) -> int:
    """Where the page's timeline ends: Last-Event-ID (a reconnect) or ``after`` (the
    page as it was served), both decimal nanoseconds."""
    resumed = sse.last_event_id(request.headers.get(streams.LAST_EVENT_ID))
    if resumed is not None:
        return resumed
    start = sse.last_event_id(after or None)
    return -1 if start is None else start


@router.get("/session/{session_id}/live/activities")
async def live_activities(
    request: Request, user: SignedInUser, session_id: str, after: str = ""
) -> Response:
    state = AppState.of(request)
    cursor = _start(request, after)
    async with state.db.read() as conn:
        await sessions.ensure_owned(
            conn, owner_id=user.id, session_id=sessions.check_session_id(session_id)
        )

    def translate(event: sse.Event) -> bytes | None:
        if event.event != "activity":
            return None
        view = ActivityView(Activity.model_validate_json(event.data))
        html = fragment(request, "_activity.html", {"activity": view, "question_id": ""})
        return encode_event(event="activity", event_id=event.event_id, data=html)

    async def events() -> AsyncIterator[bytes]:
        follower = state.streams.follow_activities(
            session_id=session_id, flt=Filter(), after_ns=cursor
        )
        async for chunk in _rendered(request, streams.followed(state, follower), translate):
            yield chunk

    return EventStream(events())


@router.get("/session/{session_id}/live/session")
async def live_session(request: Request, user: SignedInUser, session_id: str) -> Response:
    state = AppState.of(request)
    async with state.db.read() as conn:
        record = await sessions.get(
            conn, owner_id=user.id, session_id=sessions.check_session_id(session_id)
        )

    def translate(event: sse.Event) -> bytes | None:
        view = SessionView(Session.model_validate_json(event.data))
        html = fragment(request, "_session_header.html", {"session": view, **_csrf(request)})
        return encode_event(event="session", data=html)

    async def events() -> AsyncIterator[bytes]:
        follower = state.streams.follow_session(record=record)
        async for chunk in _rendered(request, streams.followed(state, follower), translate):
            yield chunk

    return EventStream(events())


@router.get("/live")
async def live_sessions(request: Request, user: SignedInUser) -> Response:
    state = AppState.of(request)
    view = SessionsView.from_query(request.query_params)
    flt = view.store_filter()

    def translate(event: sse.Event) -> bytes | None:
        session = Session.model_validate_json(event.data)
        if not view.shows(session, flt=flt):
            return encode_event(event="remove", data=session.id)
        html = fragment(request, "_session_row.html", {"row": SessionView(session)})
        return encode_event(event="row", data=html)

    async def events() -> AsyncIterator[bytes]:
        # Every change of the user's sessions: one that leaves the view must be heard too.
        follower = state.streams.follow_list(owner_id=user.id, flt=Filter())
        async for chunk in _rendered(request, streams.followed(state, follower), translate):
            yield chunk

    return EventStream(events())


def _csrf(request: Request) -> dict[str, object]:
    return {"signed_in": request.state.web_session}
