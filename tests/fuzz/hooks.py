"""Schemathesis hooks for tests/fuzz (loaded through ``SCHEMATHESIS_HOOKS``): what
generated requests must not do.

``alt=sse`` asks for an event stream, which by design never ends while the client stays:
a generated request with it would hang the run. Streams have their own tests
(tests/api/test_streams*.py); every other value of ``alt`` is fuzzed as usual.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import schemathesis


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    query = case.query if isinstance(case.query, dict) else {}
    return bool(query.get("alt") != "sse")


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """A webhook's URL is reached from the server: only loopback ones are created here
    (the fuzzed server allows private targets), so no request or name lookup leaves the
    machine. A URL that is not http(s) at all is fuzzed as usual."""
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        return True
    try:
        parts = urlsplit(body["url"])
        host = parts.hostname
    except ValueError:
        return True
    if parts.scheme.lower() not in ("http", "https") or not host:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
