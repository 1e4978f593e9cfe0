"""Signing in to the web app over plain HTTP (no browser): for tests of pages, forms and
headers that need no JavaScript."""

from __future__ import annotations

import re

import httpx

from openjules.testing import LiveServer

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def sign_in(server: LiveServer, key: str) -> tuple[httpx.Client, str]:
    """A client signed in with ``key`` (it holds the session cookie) and the session's
    CSRF token for its forms."""
    client = httpx.Client(base_url=server.url, timeout=30)
    form = client.get("/sign-in")
    response = client.post(
        "/sign-in", data={"api_key": key, "csrf_token": csrf_token(form.text), "next": "/"}
    )
    assert response.status_code == 303, response.text
    return client, csrf_token(client.get("/").text)
