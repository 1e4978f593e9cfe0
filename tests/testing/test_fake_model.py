"""The fake model's latency: each answer waits, and requests that arrive together wait
together (what a benchmark of many sessions at once relies on)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from openjules.testing import FakeModel, Reply
from openjules.testing.fake_model import Step

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


async def _ask_together(url: str, count: int) -> list[str]:
    async with httpx.AsyncClient(timeout=30.0) as client:
        answers = await asyncio.gather(
            *(client.post(f"{url}/chat/completions", json=BODY) for _ in range(count))
        )
    return [a.json()["choices"][0]["message"]["content"] for a in answers]


def test_requests_that_arrive_together_are_answered_together() -> None:
    model: FakeModel

    def seen(_body: dict[str, Any]) -> Step:
        # Computed when the wait ends: both requests arrived by then, so both say 2.
        return Reply(content=f"seen {len(model.requests)}")

    with FakeModel(seen, latency=1.0) as model:
        assert asyncio.run(_ask_together(model.base_url, 2)) == ["seen 2", "seen 2"]


def test_a_scripted_model_with_latency_answers_in_order() -> None:
    with FakeModel([Reply(content="first"), Reply(content="second")], latency=0.2) as model:
        for expected in ("first", "second"):
            answer = httpx.post(f"{model.base_url}/chat/completions", json=BODY, timeout=30)
            assert answer.json()["choices"][0]["message"]["content"] == expected


def test_no_answer_comes_before_the_latency() -> None:
    with FakeModel([Reply(content="late")], latency=1.0) as model:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{model.base_url}/chat/completions", json=BODY, timeout=0.2)
        assert len(model.requests) == 1  # it arrived; the answer was still to come


def test_latency_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="latency"):
        FakeModel([], latency=-1)
