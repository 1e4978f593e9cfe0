"""Signing in to the web app over plain HTTP (no browser): for tests of pages, forms and
headers that need no JavaScript."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from openjules.testing import LiveServer

COOKIE = "openjules_session"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The CSRF token of the first form of a page."""
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def sign_in(server: LiveServer, key: str) -> tuple[httpx.Client, str]:
    """A client signed in with ``key`` (it holds the session cookie; redirects are not
    followed) and the session's CSRF token for its forms."""
    client = httpx.Client(base_url=server.url, timeout=30)
    form = client.get("/sign-in")
    assert form.status_code == 200, form.text
    response = client.post(
        "/sign-in", data={"api_key": key, "csrf_token": csrf_token(form.text), "next": "/"}
    )
    assert response.status_code == 303, response.text
    assert COOKIE in client.cookies
    return client, csrf_token(client.get("/").text)


@contextmanager
def signed_in(server: LiveServer, key: str) -> Iterator[httpx.Client]:
    """``sign_in``'s client, closed after the block."""
    client, _ = sign_in(server, key)
    try:
        yield client
    finally:
        client.close()
