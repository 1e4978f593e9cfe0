"""Per-key request rate limit (``OPENJULES_RATE_LIMIT_PER_MINUTE``; issue 9).

With the limit on, each API key may make that many requests per rolling minute; the next
is answered 429 RESOURCE_EXHAUSTED with a ``Retry-After`` the client can trust, and other
keys are not affected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import LiveServer, provision_user
from tests.api.session_support import expect_error
from tests.support import api_client, ok_json

PER_MINUTE = 20
# Seconds between two requests once a key's allowance is spent.
REFILL_S = 60 / PER_MINUTE


@pytest.fixture(scope="module")
def limited(server_settings: Settings) -> Iterator[LiveServer]:
    settings = server_settings.model_copy(update={"rate_limit_per_minute": PER_MINUTE})
    with LiveServer(settings) as live:
        yield live


def _key(server: LiveServer, name: str) -> str:
    return provision_user(server.settings, name=name)


def _spend_allowance(client: httpx.Client) -> httpx.Response:
    """Requests until the first refusal, which is returned; checks it comes on time."""
    start = time.monotonic()
    for sent in range(PER_MINUTE * 2):
        response = client.get("/sessions")
        if response.status_code != 200:
            # The whole minute's allowance, plus what refilled while it was spent.
            refilled = math.ceil((time.monotonic() - start) / REFILL_S)
            assert PER_MINUTE <= sent <= PER_MINUTE + refilled, sent
            return response
    raise AssertionError(f"{PER_MINUTE * 2} requests in a row were all accepted")


def test_requests_beyond_the_limit_get_429_with_retry_after(limited: LiveServer) -> None:
    with api_client(limited.api, _key(limited, "busy")) as client:
        refused = _spend_allowance(client)
        error = expect_error(refused, 429, "RESOURCE_EXHAUSTED")
        assert str(PER_MINUTE) in error["message"]
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= math.ceil(REFILL_S)
        # The connection is still usable, and Retry-After is honest.
        time.sleep(retry_after)
        ok_json(client.get("/sessions"))


def test_each_key_has_its_own_allowance(limited: LiveServer) -> None:
    with (
        api_client(limited.api, _key(limited, "first")) as first,
        api_client(limited.api, _key(limited, "second")) as second,
    ):
        expect_error(_spend_allowance(first), 429, "RESOURCE_EXHAUSTED")
        ok_json(second.get("/sessions"))
        expect_error(first.get("/sessions"), 429, "RESOURCE_EXHAUSTED")


def test_requests_with_an_unknown_key_are_not_counted_against_anyone(
    limited: LiveServer,
) -> None:
    key = _key(limited, "victim")
    with api_client(limited.api, key + "x") as wrong:
        for _ in range(PER_MINUTE + 5):
            expect_error(wrong.get("/sessions"), 401, "UNAUTHENTICATED")
    with api_client(limited.api, key) as right:
        ok_json(right.get("/sessions"))


def test_the_limit_is_off_by_default(client: httpx.Client) -> None:
    assert Settings().rate_limit_per_minute == 0
    for _ in range(PER_MINUTE * 2):
        ok_json(client.get("/sessions"))
