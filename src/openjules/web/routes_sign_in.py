"""Signing in with an API key, and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from openjules.api.state import AppState
from openjules.store import web_sessions
from openjules.store.clock import now_us
from openjules.web import auth
from openjules.web.auth import SignedIn
from openjules.web.pages import PageRoute, page, see_other

router = APIRouter(route_class=PageRoute, include_in_schema=False)
# How long the sign-in form's token is good for.
SIGN_IN_FORM_S = 3600
WRONG_KEY = "That API key is not valid (or it was revoked). Check it and try again."


def _safe_next(target: str) -> str:
    """Only a path of this site: never an open redirect to another one."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _sign_in_form(request: Request, *, error: str = "", status: int = 200) -> Response:
    token = auth.new_sign_in_token()
    next_path = _safe_next(request.query_params.get("next", "/"))
    response = page(
        request,
        "sign_in.html",
        {"active": "", "csrf_token": token, "next": next_path, "error": error},
        status=status,
    )
    auth.set_cookie(
        request, response, name=auth.SIGN_IN_COOKIE, value=token, max_age=SIGN_IN_FORM_S
    )
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    if await auth.web_session(request) is not None:
        return see_other(_safe_next(request.query_params.get("next", "/")))
    return _sign_in_form(request)


@router.post("/sign-in")
async def sign_in(
    request: Request, form: Annotated[FormData, Depends(auth.checked_sign_in_form)]
) -> Response:
    secret = auth.form_text(form, "api_key").strip()
    state = AppState.of(request)
    lifetime_s = int(state.settings.web_session_hours * 3600)
    opened = None
    if secret:
        async with state.db.write() as conn:
            opened = await web_sessions.open_session(
                conn, secret=secret, now=now_us(), lifetime_us=lifetime_s * 1_000_000
            )
    if opened is None:
        request.state.web_session = None
        return _sign_in_form(request, error=WRONG_KEY, status=401)
    response = see_other(_safe_next(auth.form_text(form, "next") or "/"))
    auth.set_cookie(
        request, response, name=auth.SESSION_COOKIE, value=opened.token, max_age=lifetime_s
    )
    response.delete_cookie(auth.SIGN_IN_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, _session: SignedIn, _form: auth.CheckedForm) -> Response:
    token = request.cookies.get(auth.SESSION_COOKIE, "")
    async with AppState.of(request).db.write() as conn:
        await web_sessions.end(conn, token=token)
    response = see_other("/sign-in")
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response
