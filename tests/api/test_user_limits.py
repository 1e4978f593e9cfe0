"""The per-user daily session quota (``user_daily_sessions``), both backends: a create
beyond it answers 429 RESOURCE_EXHAUSTED in Google's envelope, saying when the quota
resets, with Retry-After; deleting sessions does not give the quota back; other users
still create; and creates racing at the limit do not both pass."""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from openjules.settings import Settings
from openjules.testing import LiveServer, provision_user
from tests.support import api_client, ok_json
from tests.web.http_support import sign_in

LIMIT = 3
RESET = re.compile(
    rf"^Daily session limit of {LIMIT} reached; it resets at "
    r"(\d{4}-\d\d-\d\dT00:00:00Z) \(in (\d+h )?\d+m\)\.$"
)


@pytest.fixture(scope="module")
def limited(
    server_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = server_settings.model_copy(
        update={"data_dir": tmp_path_factory.mktemp("limits"), "user_daily_sessions": LIMIT}
    )
    with LiveServer(settings) as live:
        yield live


def _user(live: LiveServer) -> httpx.Client:
    return api_client(live.api, provision_user(live.settings, name=f"q-{secrets.token_hex(4)}"))


def _create(client: httpx.Client, prompt: str = "Fix the bug") -> httpx.Response:
    return client.post("/sessions", json={"prompt": prompt})


def _assert_exhausted(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    error = answer.json()["error"]
    assert error["code"] == 429
    assert error["status"] == "RESOURCE_EXHAUSTED"
    found = RESET.match(error["message"])
    assert found is not None, error["message"]
    today = datetime.now(UTC).date()
    assert found.group(1) in {
        f"{today + timedelta(days=1)}T00:00:00Z",
        f"{today + timedelta(days=2)}T00:00:00Z",  # the test ran across midnight
    }
    assert 0 < int(answer.headers["Retry-After"]) <= 86_400


def test_a_create_beyond_the_daily_quota_is_refused_until_the_next_day(
    limited: LiveServer,
) -> None:
    with _user(limited) as alice, _user(limited) as bob:
        ids = [ok_json(_create(alice, f"Task {i}"))["id"] for i in range(LIMIT)]
        _assert_exhausted(_create(alice))
        # Deleted sessions were created (and worked on) today: still counted.
        assert alice.delete(f"/sessions/{ids[0]}").status_code == 200
        _assert_exhausted(_create(alice))
        # Refused creates left nothing behind.
        listed = ok_json(alice.get("/sessions")).get("sessions", [])
        assert sorted(s["id"] for s in listed) == sorted(ids[1:])
        # Another user's quota is their own.
        ok_json(_create(bob))


def test_creates_racing_at_the_limit_do_not_both_pass(limited: LiveServer) -> None:
    with _user(limited) as carol:
        for i in range(LIMIT - 1):
            ok_json(_create(carol, f"Task {i}"))
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda i: _create(carol, f"Racing {i}"), range(4)))
    assert Counter(a.status_code for a in answers) == Counter({200: 1, 429: 3})
    for answer in answers:
        if answer.status_code == 429:
            _assert_exhausted(answer)


def test_the_web_apps_new_session_form_counts_against_the_same_quota(
    limited: LiveServer,
) -> None:
    key = provision_user(limited.settings, name=f"w-{secrets.token_hex(4)}")
    with api_client(limited.api, key) as api:
        for i in range(LIMIT - 1):
            ok_json(_create(api, f"Task {i}"))
        browser, token = sign_in(limited, key)
        try:
            typed = {"csrf_token": token, "prompt": "One more from the page"}
            assert browser.post("/new", data=typed).status_code == 303  # the last one left
            refused = browser.post("/new", data={**typed, "prompt": "And <another>"})
        finally:
            browser.close()
        assert refused.status_code == 429
        assert f"Daily session limit of {LIMIT} reached; it resets at" in refused.text
        assert "And &lt;another&gt;</textarea>" in refused.text  # what was typed is kept
        _assert_exhausted(_create(api))  # the page's create was counted for the API too
