"""sessions.create/get/list/delete and the custom verbs sendMessage, approvePlan,
archive and unarchive (``POST /v1alpha/sessions/{id}:verb``; ``%3A`` arrives decoded)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from starlette.responses import Response

from openjules._errors import FieldViolation, InvalidArgument, NotFound
from openjules._types import (
    CreateSessionRequest,
    EmptyRequest,
    ListSessionsResponse,
    Originator,
    SendMessageRequest,
    Session,
    UserMessaged,
)
from openjules.api import pagination, responses
from openjules.api.auth import current_user
from openjules.api.filters import SESSION_FIELDS, parse_filter
from openjules.api.limits import checked_request
from openjules.api.session_wire import render_session
from openjules.api.state import AppState
from openjules.store import plans, sessions, transitions
from openjules.store.activities import NewActivity
from openjules.store.transitions import Event
from openjules.store.users import User

# Every text a request brings is checked before the route sees it (api.limits).
router = APIRouter(prefix="/v1alpha", dependencies=[Depends(checked_request)])
CurrentUser = Annotated[User, Depends(current_user)]
EMPTY_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": {}}}}
}


@router.post("/sessions", name="create_session", response_model=Session, summary="sessions.create")
async def create_session(
    request: Request,
    user: CurrentUser,
    body: Annotated[CreateSessionRequest | None, Body()] = None,
) -> Response:
    state = AppState.of(request)
    async with state.db.write() as conn:
        session = await sessions.create(
            conn,
            owner_id=user.id,
            request=body or CreateSessionRequest(),
        )
    await state.wake(session.id)
    return responses.wire(render_session(session, base_url=state.public_base_url))


@router.get(
    "/sessions", name="list_sessions", response_model=ListSessionsResponse, summary="sessions.list"
)
async def list_sessions(
    request: Request,
    user: CurrentUser,
    query: pagination.ListParams,
) -> Response:
    state = AppState.of(request)
    size = pagination.page_size(query.page_size, default=pagination.SESSIONS_DEFAULT)
    flt = parse_filter(query.filter, SESSION_FIELDS)
    async with state.db.read() as conn:
        page, next_token = await sessions.list_page(
            conn,
            owner_id=user.id,
            flt=flt,
            page_size=size,
            page_token=query.page_token,
        )
    rendered = [render_session(r, base_url=state.public_base_url).to_json() for r in page]
    keep = pagination.fitting([len(item) for item in rendered])
    if keep < len(page):
        next_token = sessions.encode_cursor(page[keep].create_time, page[keep].id)
    return responses.list_body(
        key="sessions",
        items=[item.decode() for item in rendered[:keep]],
        next_page_token=next_token,
    )


@router.get(
    "/sessions/{session_id}", name="get_session", response_model=Session, summary="sessions.get"
)
async def get_session(request: Request, user: CurrentUser, session_id: str) -> Response:
    state = AppState.of(request)
    async with state.db.read() as conn:
        session = await sessions.get(conn, owner_id=user.id, session_id=session_id)
    return responses.wire(render_session(session, base_url=state.public_base_url))


@router.delete(
    "/sessions/{session_id}",
    name="delete_session",
    responses=EMPTY_RESPONSE,
    summary="sessions.delete",
)
async def delete_session(request: Request, user: CurrentUser, session_id: str) -> Response:
    state = AppState.of(request)
    async with state.db.write() as conn:
        await sessions.delete_session(conn, owner_id=user.id, session_id=session_id)
    await state.stop_work(session_id)
    return responses.empty()


@router.post(
    "/sessions/{session_id}:sendMessage",
    name="send_message",
    responses=EMPTY_RESPONSE,
    summary="sessions.sendMessage",
)
async def send_message(
    request: Request,
    user: CurrentUser,
    session_id: str,
    body: Annotated[SendMessageRequest | None, Body()] = None,
) -> Response:
    prompt = (body.prompt if body else None) or ""
    if not prompt.strip():
        raise InvalidArgument(
            "The prompt is required.",
            field_violations=[FieldViolation("prompt", "The prompt must not be empty.")],
        )
    sessions.check_session_id(session_id)
    state = AppState.of(request)
    async with state.db.write() as conn:
        await transitions.apply(
            conn,
            session_id=session_id,
            owner_id=user.id,
            event=Event.USER_MESSAGED,
            new_activities=[
                NewActivity(kind=UserMessaged(user_message=prompt), originator=Originator.USER)
            ],
        )
    await state.wake(session_id)
    return responses.empty()


@router.post(
    "/sessions/{session_id}:approvePlan",
    name="approve_plan",
    responses=EMPTY_RESPONSE,
    summary="sessions.approvePlan",
)
async def approve_plan(
    request: Request,
    user: CurrentUser,
    session_id: str,
    _body: Annotated[EmptyRequest | None, Body()] = None,
) -> Response:
    sessions.check_session_id(session_id)
    state = AppState.of(request)
    async with state.db.write() as conn:
        await plans.approve_latest(conn, owner_id=user.id, session_id=session_id)
    await state.wake(session_id)
    return responses.empty()


async def _set_archived(request: Request, user: User, session_id: str, archived: bool) -> Response:
    state = AppState.of(request)
    async with state.db.write() as conn:
        session = await sessions.set_archived(
            conn,
            owner_id=user.id,
            session_id=session_id,
            archived=archived,
        )
    return responses.wire(render_session(session, base_url=state.public_base_url))


@router.post(
    "/sessions/{session_id}:archive",
    name="archive_session",
    response_model=Session,
    summary="sessions.archive",
)
async def archive_session(
    request: Request,
    user: CurrentUser,
    session_id: str,
    _body: Annotated[EmptyRequest | None, Body()] = None,
) -> Response:
    return await _set_archived(request, user, session_id, True)


@router.post(
    "/sessions/{session_id}:unarchive",
    name="unarchive_session",
    response_model=Session,
    summary="sessions.unarchive",
)
async def unarchive_session(
    request: Request,
    user: CurrentUser,
    session_id: str,
    _body: Annotated[EmptyRequest | None, Body()] = None,
) -> Response:
    return await _set_archived(request, user, session_id, False)


@router.post("/sessions/{name}", include_in_schema=False)
async def unknown_session_verb(name: str) -> Response:
    """A POST to a session without a known ``:verb`` (listed last, so verbs match first)."""
    verb = name.partition(":")[2]
    if verb:
        raise NotFound(f"Unknown method {verb!r} on sessions.")
    raise NotFound(f"POST is not supported on sessions/{name}; use a :verb such as :sendMessage.")
