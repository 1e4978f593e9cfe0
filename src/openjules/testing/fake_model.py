"""A scripted OpenAI-compatible model server: real HTTP, the real Chat Completions protocol.

Tests script what the "model" answers, step by step::

    with FakeModel([Reply(tool_calls=[ToolCall("read_file", {"path": "README.md"})]),
                    Fault(429, retry_after=0.1),
                    Reply(content="done")]) as model:
        ...  # point OPENJULES_MODEL_BASE_URL at model.base_url
        assert model.requests[0]["messages"][0]["role"] == "system"

A step may also be computed from the request by a ``Responder`` callable. Streaming
requests (``"stream": true``) get the same reply as server-sent event chunks.

``FakeModel(script, latency=1.0)`` answers each chat completion ``latency`` seconds after
it arrives, like a real model that thinks: the wait is an asyncio sleep, so requests that
arrive together wait together (benchmarks of many sessions at once rely on it). A request
is in ``requests`` from the moment it arrives; its step is taken (popped from the script,
or computed by the responder) when the wait ends.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from openjules.testing.server import BackgroundServer, ThreadedUvicorn


@dataclass(frozen=True)
class ToolCall:
    name: str
    # A dict is sent as JSON; a str is sent verbatim (to script malformed arguments).
    arguments: dict[str, Any] | str = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] | list[ToolCall] = ()


@dataclass(frozen=True)
class Fault:
    """An HTTP error answer, e.g. ``Fault(429, retry_after=1)`` or ``Fault(500)``."""

    status: int
    retry_after: float | None = None
    body: str | None = None


@dataclass(frozen=True)
class Stall:
    """Hold the request ``seconds`` (longer than the client's timeout), then answer 504."""

    seconds: float


Step = Reply | Fault | Stall
Responder = Callable[[dict[str, Any]], Step]


def _estimate_tokens(payload: Any) -> int:
    return max(1, len(json.dumps(payload)) // 4)


class FakeModel(BackgroundServer):
    MODEL_NAME = "fake-model"

    def __init__(
        self, script: Iterable[Step] | Responder | None = None, *, latency: float = 0.0
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must not be negative, not {latency}")
        self.latency = latency
        self._lock = threading.Lock()
        self._queue: deque[Step] = deque()
        self._responder: Responder | None = None
        if callable(script):
            self._responder = script
        elif script is not None:
            self._queue.extend(script)
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadedUvicorn(lambda _port: self._app(), name="fake-model")
        self.base_url = f"{self._server.url}/v1"

    # -- scripting ---------------------------------------------------------------------

    def push(self, *steps: Step) -> None:
        with self._lock:
            self._queue.extend(steps)

    def respond_with(self, responder: Responder) -> None:
        with self._lock:
            self._responder = responder

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._queue)

    def _arrived(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)

    def _next_step(self, body: dict[str, Any]) -> Step | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder = self._responder
        return responder(body) if responder is not None else None

    # -- protocol ----------------------------------------------------------------------

    def _app(self) -> ASGIApp:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    async def _models(self, _request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": self.MODEL_NAME, "object": "model"}]}
        )

    async def _chat(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not JSON")
        self._arrived(body)
        if self.latency:
            # Timers of equal length fire in the order they were set: with the step taken
            # after the wait, a script is still answered in the order requests arrived.
            await asyncio.sleep(self.latency)
        step = self._next_step(body)
        if step is None:
            return _error(500, "fake model script exhausted: no step left for this request")
        if isinstance(step, Fault):
            headers = {} if step.retry_after is None else {"retry-after": f"{step.retry_after}"}
            if step.body is not None:
                return Response(
                    step.body,
                    status_code=step.status,
                    headers=headers,
                    media_type="application/json",
                )
            return _error(step.status, f"scripted fault {step.status}", headers=headers)
        if isinstance(step, Stall):
            await asyncio.sleep(step.seconds)
            return _error(504, "scripted stall")
        completion = self._completion(body, step)
        if body.get("stream"):
            return StreamingResponse(self._stream(completion), media_type="text/event-stream")
        return JSONResponse(completion)

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.arguments
                        if isinstance(call.arguments, str)
                        else json.dumps(call.arguments),
                    },
                }
                for call in reply.tool_calls
            ]
        prompt_tokens = _estimate_tokens(body.get("messages", []))
        completion_tokens = _estimate_tokens(message)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.MODEL_NAME),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def _stream(self, completion: dict[str, Any]) -> AsyncIterator[bytes]:
        choice = completion["choices"][0]
        message = choice["message"]
        base = {k: completion[k] for k in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(payload)}\n\n".encode()

        yield chunk({"role": "assistant"})
        if message.get("content"):
            text = message["content"]
            for start in range(0, len(text), 16):
                yield chunk({"content": text[start : start + 16]})
        for index, call in enumerate(message.get("tool_calls", [])):
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
            arguments = call["function"]["arguments"]
            for start in range(0, len(arguments), 16):
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "function": {"arguments": arguments[start : start + 16]},
                            }
                        ]
                    }
                )
        yield chunk({}, choice["finish_reason"])
        usage = {**base, "choices": [], "usage": completion["usage"]}
        yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"


def _error(status: int, message: str, *, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"error": {"message": message, "type": "fake_model_error", "code": status}},
        status_code=status,
        headers=headers,
    )
