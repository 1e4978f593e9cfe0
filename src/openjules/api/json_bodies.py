"""Every request body of the v1alpha API is JSON, whatever Content-Type the client sent.

Google's front end transcodes bodies as JSON; clients rely on it: ``curl -d`` sends
``application/x-www-form-urlencoded``, jules-agent-sdk sends no Content-Type at all.
This middleware rewrites the header so the routes parse every body as JSON.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIX = "/v1alpha/"
JSON = b"application/json"


class JSONBodies:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in ("POST", "PUT", "PATCH", "DELETE")
            and scope["path"].startswith(API_PREFIX)
        ):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", JSON))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
