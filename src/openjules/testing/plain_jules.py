"""``PlainJules``: a server that offers exactly what Google's Jules API offers, made from a
real openjules server by hiding everything else. For tests of clients that must also work
against Jules itself::

    with LiveServer(settings) as server, PlainJules(upstream=server.url) as jules:
        client = Client(base_url=jules.url, api_key=key)
        client.get_session(...)      # forwarded to openjules, answered unchanged
        client.cancel_session(...)   # 404 with an HTML page, as Google's front end says it
        [r.jules_method for r in jules.requests]   # what the client asked for

The twelve v1alpha methods (``JULES_METHODS``, jules-api.md §3) are forwarded as they
come (method, path, query, headers including X-Goog-Api-Key, body) and their answers come
back unchanged. Everything else (openjules' cancel, pause and resume, webhooks, discovery,
health checks, the web app) is answered as Google's front end answers an unknown URL: 404
with an HTML page and no JSON error envelope. ``alt`` is dropped from every query: Jules
does not stream, so a request for an event stream gets the plain JSON answer.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from openjules.testing.http_front import FrontRequest, FrontResponse, HttpFront, text_response

_ID = r"[^/:]+"


@dataclass(frozen=True)
class JulesMethod:
    name: str
    http_method: str
    path: re.Pattern[str]


def _method(name: str, http_method: str, path: str) -> JulesMethod:
    return JulesMethod(name, http_method, re.compile(f"/v1alpha/{path}"))


# jules-api.md §3, in its order.
JULES_METHODS: tuple[JulesMethod, ...] = (
    _method("sessions.create", "POST", "sessions"),
    _method("sessions.get", "GET", f"sessions/{_ID}"),
    _method("sessions.list", "GET", "sessions"),
    _method("sessions.delete", "DELETE", f"sessions/{_ID}"),
    _method("sessions.sendMessage", "POST", f"sessions/{_ID}:sendMessage"),
    _method("sessions.approvePlan", "POST", f"sessions/{_ID}:approvePlan"),
    _method("sessions.archive", "POST", f"sessions/{_ID}:archive"),
    _method("sessions.unarchive", "POST", f"sessions/{_ID}:unarchive"),
    _method("sessions.activities.get", "GET", f"sessions/{_ID}/activities/{_ID}"),
    _method("sessions.activities.list", "GET", f"sessions/{_ID}/activities"),
    # A source's name has slashes of its own: sources/github/OWNER/REPO.
    _method("sources.get", "GET", "sources/.+"),
    _method("sources.list", "GET", "sources"),
)
JULES_METHOD_NAMES: frozenset[str] = frozenset(m.name for m in JULES_METHODS)

# What Google's front end answers for a URL no API method has (abridged; same shape).
NOT_FOUND_PAGE = """<!DOCTYPE html>
<html lang=en>
  <meta charset=utf-8>
  <title>Error 404 (Not Found)!!1</title>
  <p><b>404.</b> <ins>That\u2019s an error.</ins>
  <p>The requested URL <code>{path}</code> was not found on this server.  \
<ins>That\u2019s all we know.</ins>
"""


def jules_method_of(http_method: str, path: str) -> str | None:
    """The name of the Jules method a request calls (``path`` decoded), or None."""
    for method in JULES_METHODS:
        if method.http_method == http_method and method.path.fullmatch(path):
            return method.name
    return None


@dataclass(frozen=True)
class PlainRequest:
    """A request as it reached the plain server (``alt`` still in ``params``)."""

    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    # The Jules method it called; None: refused as an unknown URL.
    jules_method: str | None


class PlainJules(HttpFront[PlainRequest]):
    def __init__(self, *, upstream: str) -> None:
        super().__init__(name="plain-jules")
        self.upstream = upstream
        self.api = f"{self.url}/v1alpha"

    async def handle(self, request: FrontRequest) -> FrontResponse | None:
        name = jules_method_of(request.method, request.path)
        self._record(
            PlainRequest(
                method=request.method,
                path=request.path,
                params=request.params,
                headers=dict(request.headers),
                jules_method=name,
            )
        )
        if name is None:
            page = NOT_FOUND_PAGE.format(path=html.escape(request.raw_path))
            return text_response(404, page, media_type="text/html; charset=UTF-8")
        return await self.forward(request, upstream=self.upstream, query=_without_alt(request))


def _without_alt(request: FrontRequest) -> str:
    if "alt" not in request.params:
        return request.query
    pairs = parse_qsl(request.query, keep_blank_values=True)
    return urlencode([(k, v) for k, v in pairs if k != "alt"])
