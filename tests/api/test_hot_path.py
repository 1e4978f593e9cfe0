"""The most frequent requests are answered without the framework's machinery
(``api.hot_path``); any other request takes the full path. A client must not be able to
tell them apart: the same status, body and headers (CORS included) for the same request.
An unknown query parameter (ignored by the routes) sends a request down the full path."""

from __future__ import annotations

import httpx
import pytest

from openjules.testing import LiveServer
from tests.support import API_KEY_HEADER

IGNORED = {"date", "server"}
ORIGIN = {"Origin": "https://app.example"}


def _seen(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(k.lower(), v) for k, v in response.headers.multi_items()]
    return response.status_code, response.content, [h for h in headers if h[0] not in IGNORED]


def _both(client: httpx.Client, path: str, **kwargs: object) -> None:
    joiner = "&" if "?" in path else "?"
    hot = client.get(path, **kwargs)  # type: ignore[arg-type]
    full = client.get(f"{path}{joiner}fullPath=1", **kwargs)  # type: ignore[arg-type]
    assert _seen(hot) == _seen(full), path


@pytest.mark.parametrize("headers", [{}, ORIGIN], ids=["plain", "cors"])
def test_reads_answer_alike_on_both_paths(
    client: httpx.Client, server: LiveServer, headers: dict[str, str]
) -> None:
    created = client.post("/sessions", json={"prompt": "hot or not"}).json()
    client.post(f"/sessions/{created['id']}:sendMessage", json={"prompt": "hello"})
    for path in (
        f"/sessions/{created['id']}",
        "/sessions",
        "/sessions?pageSize=1",
        f"/sessions/{created['id']}/activities",
        f"/sessions/{created['id']}/activities?pageSize=1",
        "/sessions/1234",  # not found
        "/sessions/x y",  # not a session id
        "/sessions?pageSize=-1",  # invalid
        "/sessions?filter=state%20%3D",  # invalid
        "/sessions/1234/activities",  # not found
    ):
        _both(client, path, headers=headers)
    with httpx.Client(base_url=server.api) as anonymous:
        _both(anonymous, "/sessions", headers=headers)  # no key: 401
        _both(anonymous, "/sessions", headers={**headers, API_KEY_HEADER: "ojk_bad"})
    with httpx.Client(base_url=server.url) as root:
        _both(root, "/healthz", headers=headers)


@pytest.mark.parametrize("headers", [{}, ORIGIN], ids=["plain", "cors"])
def test_creates_answer_alike_on_both_paths(client: httpx.Client, headers: dict[str, str]) -> None:
    hot = client.post("/sessions", json={"prompt": "made hot"}, headers=headers)
    full = client.post("/sessions?fullPath=1", json={"prompt": "made hot"}, headers=headers)
    assert hot.status_code == full.status_code == 200
    assert set(hot.json()) == set(full.json())
    assert hot.json()["prompt"] == full.json()["prompt"] == "made hot"
    _, _, hot_headers = _seen(hot)
    _, _, full_headers = _seen(full)
    assert [k for k, _ in hot_headers] == [k for k, _ in full_headers]
    # Both were written, and read back at once.
    for made in (hot.json(), full.json()):
        assert client.get(f"/sessions/{made['id']}").json() == made
    for body in ({"prompt": ""}, {"prompt": "x", "bogus": 1}, {"prompt": "a\u0000b"}, [1]):
        answers = [
            client.post(path, json=body, headers=headers)
            for path in ("/sessions", "/sessions?fullPath=1")
        ]
        assert _seen(answers[0]) == _seen(answers[1]), body
