"""How the web app answers: HTML pages from Jinja templates, with the security headers
every page carries, and errors as pages (never the API's JSON envelope).

Templates autoescape everything: a title, prompt, branch, agent message or file name
containing markup is shown as text.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from openjules._errors import APIError, NotFound
from openjules.web import formatting

# No inline script or style may run: everything comes from /static.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    # Pages show a user's own data: never kept by shared caches.
    "Cache-Control": "no-store",
}


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("openjules.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        enable_async=False,
    )
    env.filters.update(formatting.FILTERS)
    return env


class Templates:
    """The app's one template environment (built once per app: loading is not free)."""

    def __init__(self) -> None:
        self.env = environment()

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        return self.env.get_template(name).render(context)


class SignInRequired(Exception):
    """The page needs a signed-in user; answered with a redirect to the sign-in page."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class FormRefused(Exception):
    """A form post without this session's CSRF token (or from another site)."""


def templates_of(request: Request) -> Templates:
    templates: Templates = request.app.state.openjules_web
    return templates


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """``template`` rendered with ``context`` plus what every page shows (the signed-in
    user and the CSRF token for its forms, set by ``auth``)."""
    values: dict[str, Any] = {
        "request": request,
        "signed_in": getattr(request.state, "web_session", None),
        "path": request.url.path,
        "active": "",
    }
    values.update(context or {})
    body = templates_of(request).render(template, values)
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def fragment(request: Request, template: str, context: Mapping[str, Any]) -> str:
    """A part of a page (a timeline entry, a header), e.g. for a live event."""
    return templates_of(request).render(template, {"request": request, **context})


def see_other(location: str) -> RedirectResponse:
    """After a form post: the browser GETs ``location`` (so reloading does not re-post)."""
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


ERROR_TITLES = {
    400: "That did not work",
    401: "Sign in again",
    403: "Not allowed",
    404: "Not found",
    409: "That did not work",
    429: "Too many requests",
    503: "Unavailable",
}


def error_page(request: Request, error: APIError) -> HTMLResponse:
    status = error.http_code
    title = ERROR_TITLES.get(status, "Something went wrong")
    message = error.message
    if isinstance(error, NotFound):
        message = "There is nothing here, or it is not yours to see."
    return page(request, "error.html", {"title": title, "message": message}, status=status)


FORM_REFUSED = (
    "This form has expired or did not come from this site. Go back, reload the page and try again."
)


class PageRoute(APIRoute):
    """A web route: what it (or a dependency) raises becomes a page, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                return see_other(f"/sign-in?next={formatting.quote_path(exc.path)}")
            except FormRefused:
                message = {"title": ERROR_TITLES[403], "message": FORM_REFUSED}
                return page(request, "error.html", message, status=403)
            except APIError as exc:
                return error_page(request, exc)

        return handle
