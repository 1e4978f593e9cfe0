"""The web app: pages for people, served by the same process as the API, at ``/``.

``install(app)`` adds it to an app of ``openjules.api.create_app``: server-rendered pages
over the same store services as the API, live over the same streams, vendored static
files (no Node.js or build step), and cookie sessions with CSRF-protected forms.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from openjules.api import errors
from openjules.web import live, routes_session, routes_sessions, routes_settings, routes_sign_in
from openjules.web.pages import Templates, error_page

STATIC_DIR = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    app.state.openjules_web = Templates()
    # A browser that asks for a page that is not there gets a page saying so.
    setattr(app.state, errors.PAGE_NOT_FOUND, error_page)
    app.include_router(routes_sign_in.router)
    app.include_router(routes_sessions.router)
    app.include_router(routes_session.router)
    app.include_router(live.router)
    app.include_router(routes_settings.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
