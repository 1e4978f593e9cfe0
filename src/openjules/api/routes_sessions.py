"""sessions.create/get/list/delete and the custom verbs sendMessage, approvePlan,
archive and unarchive, plus our cancel, pause and resume (``POST
/v1alpha/sessions/{id}:verb``; ``%3A`` arrives decoded)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from pydantic_core import to_json
from starlette.responses import Response

from openjules._errors import NotFound
from openjules._types import (
    CreateSessionRequest,
    EmptyRequest,
    ListSessionsResponse,
    SendMessageRequest,
    Session,
)
from openjules.api import pagination, responses, sse, streams
from openjules.api.auth import current_user
from openjules.api.filters import SESSION_FIELDS, parse_filter
from openjules.api.limits import checked_request
from openjules.api.state import AppState
from openjules.store import quotas, session_actions, session_wire, sessions
from openjules.store.session_actions import Action
from openjules.store.session_wire import render_session
from openjules.store.sessions import SessionRecord
from openjules.store.users import User
from openjules.store.writer import Writer

# Every text a request brings is checked before the route sees it (api.limits).
router = APIRouter(prefix="/v1alpha", dependencies=[Depends(checked_request)])
CurrentUser = Annotated[User, Depends(current_user)]


@router.post("/sessions", name="create_session", response_model=Session, summary="sessions.create")
async def create_session(
    request: Request,
    user: CurrentUser,
    body: Annotated[CreateSessionRequest | None, Body()] = None,
) -> Response:
    return responses.JSONBytes(await new_session_json(AppState.of(request), user=user, body=body))


async def new_session_json(
    state: AppState, *, user: User, body: CreateSessionRequest | None
) -> bytes:
    """Create ``user``'s session, as ``sessions.create`` answers it (also ``api.hot_path``)."""
    request = body or CreateSessionRequest()
    daily_limit = state.settings.user_daily_sessions

    async def create(writer: Writer) -> SessionRecord:
        await quotas.count_create(writer, owner_id=user.id, daily_limit=daily_limit)
        return await sessions.create_on(writer, owner_id=user.id, request=request)

    # Straight through the driver (store.direct_write): the API's hottest write.
    session = await state.db.transact(create)
    await state.wake(session.id)
    return session_wire.session_json(session, base_url=state.public_base_url)


@router.get(
    "/sessions", name="list_sessions", response_model=ListSessionsResponse, summary="sessions.list"
)
async def list_sessions(
    request: Request,
    user: CurrentUser,
    query: pagination.ListParams,
    alt: sse.AltParam = None,
) -> Response:
    """With ``alt=sse``: a stream of the caller's sessions as they are created or change
    (archived ones included unless ``filter`` says otherwise; see ``api.streams``)."""
    pagination.page_size(query.page_size, default=pagination.SESSIONS_DEFAULT)
    flt = parse_filter(query.filter, SESSION_FIELDS)
    if sse.wants_stream(alt):
        return await streams.sessions_stream(request, user=user, flt=flt)
    return responses.JSONBytes(await sessions_page(AppState.of(request), user=user, query=query))


async def sessions_page(state: AppState, *, user: User, query: pagination.ListQuery) -> bytes:
    """A page of ``user``'s sessions, as ``sessions.list`` answers it (also ``api.hot_path``)."""
    size = pagination.page_size(query.page_size, default=pagination.SESSIONS_DEFAULT)
    flt = parse_filter(query.filter, SESSION_FIELDS)
    rows, next_token = await sessions.list_rows(
        state.db.reads, owner_id=user.id, flt=flt, page_size=size, page_token=query.page_token
    )
    base_url = state.public_base_url
    items = [session_wire.row_body(row, base_url=base_url) for row in rows]
    body = responses.list_objects(key="sessions", items=items, next_page_token=next_token)
    if len(body) <= pagination.MAX_PAGE_BYTES:
        return body  # then every item fits in the page's byte budget
    rendered = [to_json(item) for item in items]
    keep = pagination.fitting([len(item) for item in rendered])
    if keep < len(rows):
        next_token = sessions.row_cursor(rows[keep])
    return responses.list_json(
        key="sessions",
        items=[item.decode() for item in rendered[:keep]],
        next_page_token=next_token,
    )


@router.get(
    "/sessions/{session_id}", name="get_session", response_model=Session, summary="sessions.get"
)
async def get_session(
    request: Request, user: CurrentUser, session_id: str, alt: sse.AltParam = None
) -> Response:
    """With ``alt=sse``: the session now and again on every change (``api.streams``)."""
    if sse.wants_stream(alt):
        return await streams.session_stream(request, user=user, session_id=session_id)
    state = AppState.of(request)
    return responses.JSONBytes(await session_json(state, user=user, session_id=session_id))


async def session_json(state: AppState, *, user: User, session_id: str) -> bytes:
    """``user``'s session, as ``sessions.get`` answers it (also ``api.hot_path``)."""
    session = await sessions.read(state.db.reads, owner_id=user.id, session_id=session_id)
    return session_wire.session_json(session, base_url=state.public_base_url)


@router.delete(
    "/sessions/{session_id}",
    name="delete_session",
    responses=responses.EMPTY_RESPONSE,
    summary="sessions.delete",
)
async def delete_session(request: Request, user: CurrentUser, session_id: str) -> Response:
    return await _verb(request, user, session_id, session_actions.DELETE)


async def _verb(request: Request, user: User, session_id: str, action: Action) -> Response:
    """Every ``:verb`` has this shape: check the id, apply the action in one transaction,
    tell the runner, answer the Session or ``{}``."""
    sessions.check_session_id(session_id)
    state = AppState.of(request)
    session = await state.db.transact(
        lambda writer: action.apply(writer, owner_id=user.id, session_id=session_id)
    )
    await state.after(action, session_id=session_id)
    if session is None:
        return responses.empty()
    return responses.wire(render_session(session, base_url=state.public_base_url))


EmptyBody = Annotated[EmptyRequest | None, Body()]


@router.post(
    "/sessions/{session_id}:sendMessage",
    name="send_message",
    responses=responses.EMPTY_RESPONSE,
    summary="sessions.sendMessage",
)
async def send_message(
    request: Request,
    user: CurrentUser,
    session_id: str,
    body: Annotated[SendMessageRequest | None, Body()] = None,
) -> Response:
    prompt = (body.prompt if body else None) or ""
    return await _verb(request, user, session_id, session_actions.send_message(prompt))


@router.post(
    "/sessions/{session_id}:approvePlan",
    name="approve_plan",
    responses=responses.EMPTY_RESPONSE,
    summary="sessions.approvePlan",
)
async def approve_plan(
    request: Request, user: CurrentUser, session_id: str, _body: EmptyBody = None
) -> Response:
    return await _verb(request, user, session_id, session_actions.APPROVE_PLAN)


@router.post(
    "/sessions/{session_id}:archive",
    name="archive_session",
    response_model=Session,
    summary="sessions.archive",
)
async def archive_session(
    request: Request, user: CurrentUser, session_id: str, _body: EmptyBody = None
) -> Response:
    return await _verb(request, user, session_id, session_actions.ARCHIVE)


@router.post(
    "/sessions/{session_id}:unarchive",
    name="unarchive_session",
    response_model=Session,
    summary="sessions.unarchive",
)
async def unarchive_session(
    request: Request, user: CurrentUser, session_id: str, _body: EmptyBody = None
) -> Response:
    return await _verb(request, user, session_id, session_actions.UNARCHIVE)


@router.post(
    "/sessions/{session_id}:cancel",
    name="cancel_session",
    response_model=Session,
    summary="sessions.cancel",
)
async def cancel_session(
    request: Request, user: CurrentUser, session_id: str, _body: EmptyBody = None
) -> Response:
    """Stop the agent and end the session FAILED ("Cancelled by the user."); a later
    sendMessage wakes it like any failed session. Answers the Session."""
    return await _verb(request, user, session_id, session_actions.CANCEL)


@router.post(
    "/sessions/{session_id}:pause",
    name="pause_session",
    response_model=Session,
    summary="sessions.pause",
)
async def pause_session(
    request: Request, user: CurrentUser, session_id: str, _body: EmptyBody = None
) -> Response:
    """Stop the agent and hold the session PAUSED (no worker, process or sandbox) until
    :resume. Answers the Session."""
    return await _verb(request, user, session_id, session_actions.PAUSE)


@router.post(
    "/sessions/{session_id}:resume",
    name="resume_session",
    response_model=Session,
    summary="sessions.resume",
)
async def resume_session(
    request: Request, user: CurrentUser, session_id: str, _body: EmptyBody = None
) -> Response:
    """Put a PAUSED session back in the state it was paused in; the agent continues from
    its last recorded step. Answers the Session."""
    return await _verb(request, user, session_id, session_actions.RESUME)


@router.post("/sessions/{name}", include_in_schema=False)
async def unknown_session_verb(name: str) -> Response:
    """A POST to a session without a known ``:verb`` (listed last, so verbs match first)."""
    verb = name.partition(":")[2]
    if verb:
        raise NotFound(f"Unknown method {verb!r} on sessions.")
    raise NotFound(f"POST is not supported on sessions/{name}; use a :verb such as :sendMessage.")
