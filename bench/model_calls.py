"""The CPU a model request costs the process that runs the sessions: openjules' model
adapter (``engine.model`` over ``engine.model_http``) as a ratio to the ``openai`` SDK's
client making the same request the way openjules made it before (``AsyncOpenAI.post`` of
the same body, typed ``ChatCompletion``, on the SDK's shared httpx client).

The fake model (a real OpenAI-compatible HTTP server) runs in a process of its own and
answers at once with a tool call; this process sends ``--calls`` requests per round,
``--concurrency`` at a time, each carrying a transcript the size of a session's middle
turns (a 4,000-character system prompt, 20 messages of 500 characters, 8 tool schemas).
CPU is this process's user + system time over the round, per request; rounds of the two
clients alternate. Both clients are warmed up first (connections open, code paths run).

Aim (reported, not enforced): openjules' adapter at most 0.5x the SDK's CPU per request.

    .venv/bin/python bench/model_calls.py [--calls 1500] [--concurrency 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from openjules.engine.model import Model, ModelConfig, shared_http_client

AIM = 0.5
SERVER = """
import os
from openjules.testing import FakeModel, Reply, ToolCall
reply = Reply(tool_calls=[ToolCall("shell", {"command": "pytest -q"})])
with FakeModel(lambda _body: reply) as model:
    print(model.base_url, flush=True)
    while os.read(0, 4096):
        pass
"""
MESSAGES: list[dict[str, Any]] = [{"role": "system", "content": "x" * 4000}] + [
    {"role": "user" if i % 2 else "assistant", "content": "y" * 500} for i in range(20)
]
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": "d" * 200,
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    }
    for i in range(8)
]

Call = Callable[[], Awaitable[object]]


async def _openjules(base_url: str) -> Call:
    model = Model(
        ModelConfig(base_url=base_url, api_key="sk-bench", model="fake-model"),
        http_client=shared_http_client(),
    )

    async def call() -> object:
        return await model.complete(messages=MESSAGES, tools=TOOLS)

    return call


async def _sdk(base_url: str) -> Call:
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="sk-bench", http_client=openai.DefaultAsyncHttpxClient()
    )
    body = {"model": "fake-model", "messages": MESSAGES, "tools": TOOLS}

    async def call() -> object:
        return await client.post("/chat/completions", body=body, cast_to=ChatCompletion)

    return call


async def _round(call: Call, *, calls: int, concurrency: int) -> float:
    """CPU milliseconds per request over ``calls`` requests."""
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            await call()

    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(calls)))
    return (time.process_time() - started) / calls * 1000


async def _measure(base_url: str, *, calls: int, concurrency: int, rounds: int) -> int:
    clients = {"openai SDK": await _sdk(base_url), "openjules": await _openjules(base_url)}
    for call in clients.values():
        await _round(call, calls=100, concurrency=concurrency)  # warm-up
    figures: dict[str, list[float]] = {name: [] for name in clients}
    for number in range(rounds):
        order = list(clients) if number % 2 == 0 else list(reversed(clients))
        for name in order:
            cpu = await _round(clients[name], calls=calls, concurrency=concurrency)
            figures[name].append(cpu)
            print(f"  round {number + 1}: {name:<10} {cpu:.3f} ms CPU per request")
    sdk, ours = statistics.median(figures["openai SDK"]), statistics.median(figures["openjules"])
    ratio = ours / sdk
    print(f"median CPU per request: openai SDK {sdk:.3f} ms, openjules {ours:.3f} ms")
    verdict = "PASS" if ratio <= AIM else "FAIL"
    print(f"{verdict}: openjules' model request costs {ratio:.2f}x the SDK's (aim <= {AIM}x)")
    return 0 if ratio <= AIM else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1500, help="requests per round [1500]")
    parser.add_argument("--concurrency", type=int, default=20, help="at once [20]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per client [3]")
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent,
    )
    assert server.stdout is not None
    assert server.stdin is not None
    try:
        base_url = server.stdout.readline().strip()
        print(
            f"model request CPU: {args.calls} requests per round, {args.concurrency} at once, "
            f"{args.rounds} rounds per client, fake model at {base_url}"
        )
        code = asyncio.run(
            _measure(base_url, calls=args.calls, concurrency=args.concurrency, rounds=args.rounds)
        )
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    sys.exit(code)


if __name__ == "__main__":
    main()
