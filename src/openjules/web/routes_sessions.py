"""The sessions page (``/``) and the new-session form (``/new``)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from openjules._errors import InvalidArgument, ResourceExhausted
from openjules._types import (
    AutomationMode,
    CreateSessionRequest,
    GitHubRepoContextInput,
    SourceContextInput,
    State,
)
from openjules.api.state import AppState
from openjules.store import quotas, sessions, sources
from openjules.store.session_wire import render_session
from openjules.store.sources import SourceRecord
from openjules.web.auth import CheckedForm, SignedInUser, form_text
from openjules.web.listing import ARCHIVED_LABELS, PAGE_SIZE, SessionsView
from openjules.web.pages import PageRoute, page, see_other
from openjules.web.views import SessionView

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/")
async def sessions_page(request: Request, user: SignedInUser) -> Response:
    state = AppState.of(request)
    view = SessionsView.from_query(request.query_params)
    token = request.query_params.get("page") or None
    async with state.db.read() as conn:
        records, next_token = await sessions.list_page(
            conn,
            owner_id=user.id,
            flt=view.store_filter(),
            page_size=PAGE_SIZE,
            page_token=token,
            title_contains=view.search,
        )
    rows = [SessionView(render_session(r, base_url=state.public_base_url)) for r in records]
    next_link = f"/?{urlencode({**view.query(), 'page': next_token})}" if next_token else ""
    return page(
        request,
        "sessions.html",
        {
            "active": "sessions",
            "rows": rows,
            "view": view,
            "states": [s for s in State if s is not State.STATE_UNSPECIFIED],
            "archived_choices": ARCHIVED_LABELS.items(),
            "next_link": next_link,
            "first_page": token is None,
            "live_url": f"/live?{urlencode(view.query())}",
        },
    )


async def _sources(request: Request) -> list[SourceRecord]:
    async with AppState.of(request).db.read() as conn:
        return await sources.all_records(conn)


Sources = Annotated[list[SourceRecord], Depends(_sources)]


def _new_form(
    request: Request,
    records: list[SourceRecord],
    *,
    values: dict[str, str],
    error: str = "",
    status: int = 200,
) -> Response:
    chosen = values.get("source")
    if chosen is None and records:
        chosen = records[0].name
    source = next((r for r in records if r.name == chosen), None)
    branch = values.get("branch") or (source.default_branch if source else "")
    return page(
        request,
        "new.html",
        {
            "active": "new",
            "sources": records,
            "chosen": source,
            "branch": branch,
            "values": values,
            "error": error,
            "branches_json": {
                r.name: {"branches": r.branches, "default": r.default_branch} for r in records
            },
        },
        status=status,
    )


@router.get("/new")
async def new_session_page(request: Request, _user: SignedInUser, records: Sources) -> Response:
    values = {k: v for k, v in request.query_params.items() if k in ("source", "branch", "prompt")}
    return _new_form(request, records, values=values)


def _create_request(form: FormData) -> CreateSessionRequest:
    source = form_text(form, "source")
    context = None
    if source:
        branch = form_text(form, "branch")
        context = SourceContextInput(
            source=source,
            github_repo_context=GitHubRepoContextInput(starting_branch=branch) if branch else None,
        )
    auto_pr = bool(source) and form_text(form, "auto_pr") == "on"
    return CreateSessionRequest(
        prompt=form_text(form, "prompt"),
        source_context=context,
        require_plan_approval=form_text(form, "require_plan_approval") == "on",
        automation_mode=AutomationMode.AUTO_CREATE_PR if auto_pr else None,
    )


@router.post("/new")
async def create_session(
    request: Request, user: SignedInUser, form: CheckedForm, records: Sources
) -> Response:
    state = AppState.of(request)
    try:
        async with state.db.write() as conn:
            # The same daily quota as the API's create: the page is one more client.
            await quotas.count_session_create(
                conn, owner_id=user.id, daily_limit=state.settings.user_daily_sessions
            )
            session = await sessions.create(conn, owner_id=user.id, request=_create_request(form))
    except (InvalidArgument, ResourceExhausted) as exc:
        values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
        status = 429 if isinstance(exc, ResourceExhausted) else 400
        return _new_form(request, records, values=values, error=exc.message, status=status)
    await state.wake(session.id)
    return see_other(f"/session/{session.id}")
