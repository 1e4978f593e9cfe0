"""The webhook receiver of the test kit: it records every request and answers as told."""

from __future__ import annotations

import httpx
import pytest

from openjules.testing import WebhookReceiver


def test_it_records_requests_and_answers_as_told() -> None:
    with WebhookReceiver() as receiver:
        receiver.answer(503, times=2)
        statuses = [
            httpx.post(
                f"{receiver.url}/x", content=b'{"n":%d}' % n, headers={"X-A": "b"}
            ).status_code
            for n in range(3)
        ]
        assert statuses == [503, 503, 200]
        receiver.answer(500)
        assert [httpx.post(receiver.url).status_code for _ in range(2)] == [500, 500]
        receiver.answer(200)
        assert httpx.post(receiver.url).status_code == 200

        got = receiver.wait_for(lambda requests: len(requests) == 6)
        assert [r.status for r in got] == [503, 503, 200, 500, 500, 200]
        assert got[0].path == "/hook/x"
        assert got[0].method == "POST"
        assert got[0].headers["x-a"] == "b"
        assert [r.json() for r in got[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_waiting_for_what_never_comes_says_what_came() -> None:
    with WebhookReceiver() as receiver:
        httpx.post(receiver.url, content=b"only this")
        with pytest.raises(AssertionError, match="1 requests: \\['only this'\\]"):
            receiver.wait_for(lambda requests: len(requests) > 1, timeout=0.2)
