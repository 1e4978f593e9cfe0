"""A session's page (``/session/{id}``, the ``url`` of every Session), its buttons, its
patch download and its changes section."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from openjules._errors import APIError, NotFound
from openjules.api.state import AppState
from openjules.store import session_actions
from openjules.store.session_actions import Action
from openjules.web.auth import CheckedForm, SignedInUser, form_text
from openjules.web.pages import SECURITY_HEADERS, PageRoute, fragment, page, see_other
from openjules.web.session_reads import SessionPage, read_session_page

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# The buttons of a session page, by the path they post to.
BUTTONS: dict[str, Action] = {
    "approve": session_actions.APPROVE_PLAN,
    "pause": session_actions.PAUSE,
    "resume": session_actions.RESUME,
    "cancel": session_actions.CANCEL,
    "archive": session_actions.ARCHIVE,
    "unarchive": session_actions.UNARCHIVE,
    "delete": session_actions.DELETE,
}


def page_context(view: SessionPage) -> dict[str, object]:
    return {
        "active": "sessions",
        "session": view.session,
        "activities": view.activities,
        "changes": view.changes,
        "question_id": view.question_id,
        "last_activity_ns": view.last_activity_ns,
    }


@router.get("/session/{session_id}")
async def session_page(
    request: Request, user: SignedInUser, session_id: str, notice: str = ""
) -> Response:
    view = await read_session_page(request, user=user, session_id=session_id)
    return page(request, "session.html", {**page_context(view), "error": "", "notice": notice})


async def _apply(request: Request, *, user_id: int, session_id: str, action: Action) -> None:
    state = AppState.of(request)
    await state.db.transact(
        lambda writer: action.apply(writer, owner_id=user_id, session_id=session_id)
    )
    await state.after(action, session_id=session_id)


async def _refused(
    request: Request, *, user: SignedInUser, session_id: str, error: APIError
) -> Response:
    """The page again, saying why the button did nothing (e.g. the state moved on)."""
    if isinstance(error, NotFound):
        raise error
    view = await read_session_page(request, user=user, session_id=session_id)
    return page(
        request,
        "session.html",
        {**page_context(view), "error": error.message, "notice": ""},
        status=error.http_code,
    )


@router.post("/session/{session_id}/message")
async def send_message(
    request: Request, user: SignedInUser, session_id: str, form: CheckedForm
) -> Response:
    try:
        action = session_actions.send_message(form_text(form, "message"), field="message")
        await _apply(request, user_id=user.id, session_id=session_id, action=action)
    except APIError as exc:
        return await _refused(request, user=user, session_id=session_id, error=exc)
    return see_other(f"/session/{session_id}#message")


@router.post("/session/{session_id}/{button}")
async def press(
    request: Request, user: SignedInUser, session_id: str, button: str, _form: CheckedForm
) -> Response:
    action = BUTTONS.get(button)
    if action is None:
        raise NotFound()
    try:
        await _apply(request, user_id=user.id, session_id=session_id, action=action)
    except APIError as exc:
        return await _refused(request, user=user, session_id=session_id, error=exc)
    if action is session_actions.DELETE:
        return see_other("/?deleted=1")
    return see_other(f"/session/{session_id}")


@router.get("/session/{session_id}/patch")
async def download_patch(request: Request, user: SignedInUser, session_id: str) -> Response:
    """The latest changes as a file ``git apply`` takes: exactly the changeSet's
    ``unidiffPatch``."""
    view = await read_session_page(request, user=user, session_id=session_id)
    changes = view.changes
    if changes is None:
        raise NotFound()
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": f'attachment; filename="session-{view.session.id}.patch"',
    }
    return Response(changes.patch, media_type="text/x-diff; charset=utf-8", headers=headers)


@router.get("/session/{session_id}/changes")
async def changes_section(request: Request, user: SignedInUser, session_id: str) -> Response:
    """The changes section alone, for the page's script to swap in when they change."""
    view = await read_session_page(request, user=user, session_id=session_id)
    body = fragment(request, "_changes.html", page_context(view))
    return HTMLResponse(body, headers=SECURITY_HEADERS)
