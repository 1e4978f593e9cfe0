"""sessions.activities.list and sessions.activities.get."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from openjules._errors import InvalidArgument
from openjules._types import Activity, ListActivitiesResponse
from openjules.api import pagination, responses, sse, streams
from openjules.api.auth import current_user
from openjules.api.filters import ACTIVITY_FIELDS, parse_filter
from openjules.api.limits import checked_request
from openjules.api.state import AppState
from openjules.store import activities, sessions
from openjules.store.clock import parse_timestamp_ns
from openjules.store.query import Condition, Filter, Op
from openjules.store.users import User

# Every text a request brings is checked before the route sees it (api.limits).
router = APIRouter(prefix="/v1alpha", dependencies=[Depends(checked_request)])
CurrentUser = Annotated[User, Depends(current_user)]


def _with_create_time_param(flt: Filter, create_time: str | None) -> Filter:
    """The changelog's plain ``createTime=`` parameter: activities at or after it."""
    if not create_time:
        return flt
    try:
        ns = parse_timestamp_ns(create_time)
    except ValueError:
        raise InvalidArgument(
            f"Invalid createTime {create_time!r}: expected an RFC 3339 timestamp."
        ) from None
    condition = Condition("create_time", Op.GE, str(ns))
    groups = flt.groups or ((),)
    return Filter(tuple((*group, condition) for group in groups))


@router.get(
    "/sessions/{session_id}/activities",
    name="list_activities",
    response_model=ListActivitiesResponse,
    summary="sessions.activities.list",
)
async def list_activities(
    request: Request,
    user: CurrentUser,
    session_id: str,
    query: pagination.ListParams,
    create_time: Annotated[str | None, Query(alias="createTime")] = None,
    alt: sse.AltParam = None,
) -> Response:
    """With ``alt=sse``: the same activities, then each new one as it commits, as
    Server-Sent Events (``api.streams``; ``Last-Event-ID`` resumes after an activity)."""
    pagination.page_size(query.page_size, default=pagination.ACTIVITIES_DEFAULT)
    pagination.nanos_token(query.page_token)
    flt = _with_create_time_param(parse_filter(query.filter, ACTIVITY_FIELDS), create_time)
    if sse.wants_stream(alt):
        return await streams.activity_stream(request, user=user, session_id=session_id, flt=flt)
    page = await activities_page(
        AppState.of(request), user=user, session_id=session_id, query=query, create_time=create_time
    )
    return responses.JSONBytes(page)


async def activities_page(
    state: AppState,
    *,
    user: User,
    session_id: str,
    query: pagination.ListQuery,
    create_time: str | None,
) -> bytes:
    """A page of a session's activities, as ``sessions.activities.list`` answers it (also
    ``api.hot_path``)."""
    size = pagination.page_size(query.page_size, default=pagination.ACTIVITIES_DEFAULT)
    after = pagination.nanos_token(query.page_token)
    flt = _with_create_time_param(parse_filter(query.filter, ACTIVITY_FIELDS), create_time)
    sessions.check_session_id(session_id)
    page = await activities.owned_page(
        state.db.reads,
        owner_id=user.id,
        session_id=session_id,
        flt=flt,
        page_size=size,
        after_ns=after,
    )
    token = page.next_token
    keep = pagination.fitting([len(item) for item in page.items])
    if keep < len(page.items):
        token = activities.page_token_at(page.times[keep])
    return responses.list_json(key="activities", items=page.items[:keep], next_page_token=token)


@router.get(
    "/sessions/{session_id}/activities/{activity_id}",
    name="get_activity",
    response_model=Activity,
    summary="sessions.activities.get",
)
async def get_activity(
    request: Request, user: CurrentUser, session_id: str, activity_id: str
) -> Response:
    async with AppState.of(request).db.read() as conn:
        await sessions.ensure_owned(conn, owner_id=user.id, session_id=session_id)
        record = await activities.get(conn, session_id=session_id, activity_id=activity_id)
    return responses.JSONBytes(record.render().encode())
