"""Who is signed in to the web app, and whether a form post may be trusted.

A person signs in by pasting an API key once; the browser then holds only a random
session token in an HttpOnly, SameSite=Lax cookie (Secure when the app is served over
https). The cookie is honoured by the web app's routes only: the API accepts API keys
and nothing else.

Every form post must carry the session's synchronizer token (``csrf_token``), and a
post whose ``Origin`` names another site is refused whatever it carries. The sign-in
form, which has no session yet, uses a double-submit token instead: a random cookie
repeated in the form.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response

from openjules.api.limits import check_text
from openjules.api.state import AppState
from openjules.store import web_sessions
from openjules.store.clock import now_us
from openjules.store.users import User
from openjules.store.web_sessions import WebSession
from openjules.web.pages import FormRefused, SignInRequired

SESSION_COOKIE = "openjules_session"
SIGN_IN_COOKIE = "openjules_sign_in"
CSRF_FIELD = "csrf_token"


def is_https(request: Request) -> bool:
    state = AppState.of(request)
    return request.url.scheme == "https" or state.public_base_url.startswith("https://")


def set_cookie(
    request: Request, response: Response, *, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


async def _lookup(request: Request) -> WebSession | None:
    """The live session of this request's cookie, read now."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    async with AppState.of(request).db.read() as conn:
        return await web_sessions.find(conn, token=token, now=now_us())


async def web_session(request: Request) -> WebSession | None:
    """The signed-in session of this request, read once per request."""
    if not hasattr(request.state, "web_session"):
        request.state.web_session = await _lookup(request)
    found: WebSession | None = request.state.web_session
    return found


async def still_signed_in(request: Request) -> bool:
    """Whether this request's sign-in is still live now (read afresh: a long-lived live
    stream asks again, so signing out or revoking the key ends it)."""
    return await _lookup(request) is not None


async def signed_in(request: Request) -> WebSession:
    """A route dependency: the signed-in session, or a redirect to the sign-in page."""
    found = await web_session(request)
    if found is None:
        path = request.url.path
        if request.url.query and request.method == "GET":
            path += "?" + request.url.query
        raise SignInRequired(path if request.method == "GET" else "/")
    return found


async def signed_in_user(session: Annotated[WebSession, Depends(signed_in)]) -> User:
    return session.user


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        # Browsers send Origin on every cross-site POST; its absence (an old browser, a
        # script) leaves the token as the check. "null" is a sandboxed or privacy-hidden
        # origin: the token decides.
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _form(request: Request) -> FormData:
    """The posted form, each text checked as the API checks its texts, with line breaks
    as the API's clients send them (a browser sends a textarea's as CRLF)."""
    form = await request.form()
    settings = AppState.of(request).settings
    items: list[tuple[str, str | UploadFile]] = []
    for name, value in form.multi_items():
        if isinstance(value, str):
            check_text(value, field=name, max_chars=settings.max_prompt_chars)
            value = value.replace("\r\n", "\n")
        items.append((name, value))
    return FormData(items)


def form_text(form: FormData, name: str) -> str:
    """A text field of a posted form ("" when it is absent)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def tokens_match(given: object, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


async def checked_form(
    request: Request, session: Annotated[WebSession, Depends(signed_in)]
) -> FormData:
    """A route dependency for form posts: the form, if it carries this session's token
    and came from this site; else the post is refused."""
    form = await _form(request)
    if not _same_origin(request) or not tokens_match(form.get(CSRF_FIELD), session.csrf_token):
        raise FormRefused()
    return form


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(24)


async def checked_sign_in_form(request: Request) -> FormData:
    """The sign-in form: its token must repeat the sign-in cookie's."""
    form = await _form(request)
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if (
        not expected
        or not _same_origin(request)
        or not tokens_match(form.get(CSRF_FIELD), expected)
    ):
        raise FormRefused()
    return form


SignedIn = Annotated[WebSession, Depends(signed_in)]
SignedInUser = Annotated[User, Depends(signed_in_user)]
CheckedForm = Annotated[FormData, Depends(checked_form)]
