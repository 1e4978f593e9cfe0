"""The model adapter against the fake OpenAI-compatible server over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam

from openjules.engine.model import Model, ModelConfig, ModelError, model_config
from openjules.settings import Settings
from openjules.testing.fake_model import FakeModel, Fault, Reply, Stall, ToolCall

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def fake() -> Iterator[FakeModel]:
    with FakeModel() as server:
        yield server


def _model(fake: FakeModel, **overrides: float) -> Model:
    return Model(
        ModelConfig(
            base_url=fake.base_url,
            api_key="sk-test",
            model="fake-model",
            timeout_seconds=overrides.get("timeout", 5.0),
            max_retries=int(overrides.get("retries", 3)),
        )
    )


async def test_tool_calls_and_usage_come_back(fake: FakeModel) -> None:
    fake.push(Reply(content="Reading.", tool_calls=[ToolCall("read_file", {"path": "a.py"})]))
    model = _model(fake)
    turn = await model.complete(messages=[{"role": "user", "content": "hi"}], tools=TOOLS)
    await model.close()
    assert turn.content == "Reading."
    assert [(c.name, c.parsed_arguments()) for c in turn.tool_calls] == [
        ("read_file", {"path": "a.py"})
    ]
    assert turn.prompt_tokens > 0
    assert fake.requests[0]["model"] == "fake-model"
    assert fake.requests[0]["tools"] == TOOLS


async def test_429_with_retry_after_and_500_are_retried(fake: FakeModel) -> None:
    fake.push(Fault(429, retry_after=0.05), Fault(500), Reply(content="ok"))
    model = _model(fake)
    turn = await model.complete(messages=[{"role": "user", "content": "hi"}], tools=[])
    await model.close()
    assert turn.content == "ok"
    assert len(fake.requests) == 3


async def test_a_timeout_is_retried(fake: FakeModel) -> None:
    fake.push(Stall(1.0), Reply(content="after the stall"))
    model = _model(fake, timeout=0.3)
    turn = await model.complete(messages=[{"role": "user", "content": "hi"}], tools=[])
    await model.close()
    assert turn.content == "after the stall"


async def test_persistent_failure_becomes_a_readable_model_error(fake: FakeModel) -> None:
    fake.push(*[Fault(503)] * 3)
    model = _model(fake, retries=2)
    with pytest.raises(ModelError, match="HTTP 503"):
        await model.complete(messages=[{"role": "user", "content": "hi"}], tools=[])
    await model.close()
    assert len(fake.requests) == 3


async def test_malformed_arguments_are_reported_not_raised_by_the_adapter(
    fake: FakeModel,
) -> None:
    fake.push(Reply(tool_calls=[ToolCall("read_file", '{"path": ')]))
    model = _model(fake)
    turn = await model.complete(messages=[{"role": "user", "content": "hi"}], tools=TOOLS)
    await model.close()
    with pytest.raises(ValueError, match="not valid JSON"):
        turn.tool_calls[0].parsed_arguments()


def test_configuration_from_settings_and_presets() -> None:
    assert model_config(Settings()) is None
    ollama = model_config(Settings(model_provider="ollama"))
    assert ollama is not None
    assert ollama.base_url == "http://127.0.0.1:11434/v1"
    assert model_config(Settings(model_provider="openai")) is None  # needs a key
    explicit = model_config(
        Settings(model_base_url="http://127.0.0.1:1/v1", model_api_key="k", model="m")
    )
    assert explicit is not None
    assert explicit.model == "m"


async def test_the_fake_model_streams_the_same_reply_as_chunks(fake: FakeModel) -> None:
    """Clients that stream (``stream: true``) get the scripted reply as SSE chunks."""
    fake.push(Reply(content="Reading the file now.",
                    tool_calls=[ToolCall("read_file", {"path": "src/app.py"})]))
    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
    stream = await client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "hi"}],
        tools=cast("list[ChatCompletionFunctionToolParam]", TOOLS),
        stream=True,
    )
    text, arguments, names, finish = "", "", [], None
    async for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                if call.function and call.function.name:
                    names.append(call.function.name)
                arguments += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    await client.close()
    assert text == "Reading the file now."
    assert names == ["read_file"]
    assert json.loads(arguments) == {"path": "src/app.py"}
    assert finish == "tool_calls"
