"""A kit for driving ``openjules mcp`` with the official MCP client SDK from sync tests.

- ``McpClient(transport)``: one ``mcp.Client`` session held open in a thread of its own
  (its own event loop), so a module fixture can share it between sync tests:
  ``tools()``, ``call(name, progress_log=[...], **arguments)``.
- ``mcp_env(live, key, config_dir)``: the environment a user's MCP client gives the server.
- ``McpHttpProcess(env, log_dir=...)``: ``openjules mcp --http PORT`` as a real process.
- ``text_of(result)``: a result's readable text.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mcp.client import Client, Transport
from mcp_types import CallToolResult, TextContent, Tool

from openjules.testing import LiveServer
from tests.cli.support import free_port

T = TypeVar("T")

OPENJULES = str(Path(sys.executable).with_name("openjules"))
# A tool call may wait for the agent (wait_for_session's own timeout is shorter).
CALL_TIMEOUT_S = 120.0
CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Progress:
    progress: float
    total: float | None
    message: str | None


class McpClient:
    """An MCP client session over ``transport``, open until ``close()``."""

    def __init__(self, transport: Transport) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp-client")
        self._thread.start()
        self._stop = asyncio.Event()
        self._client: Client | None = None
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._held = asyncio.run_coroutine_threadsafe(self._hold(transport, ready), self._loop)
        try:
            ready.result(timeout=CONNECT_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    async def _hold(self, transport: Transport, ready: concurrent.futures.Future[None]) -> None:
        try:
            async with Client(transport) as client:
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def _run(self, coro: Coroutine[Any, Any, T], *, timeout: float = CALL_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    @property
    def client(self) -> Client:
        assert self._client is not None, "not connected"
        return self._client

    def tools(self) -> list[Tool]:
        return self._run(self.client.list_tools()).tools

    def call(
        self, name: str, *, progress_log: list[Progress] | None = None, **arguments: Any
    ) -> CallToolResult:
        """The tool's result; the progress notifications of the call go to ``progress_log``."""

        async def noted(progress: float, total: float | None, message: str | None) -> None:
            if progress_log is not None:
                progress_log.append(Progress(progress, total, message))

        return self._run(self.client.call_tool(name, arguments, progress_callback=noted))

    def ok(self, name: str, **arguments: Any) -> dict[str, Any]:
        """``call`` that must succeed; its structured content."""
        result = self.call(name, **arguments)
        assert not result.is_error, f"{name}: {text_of(result)}"
        assert isinstance(result.structured_content, dict), result
        return result.structured_content

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._held.result(timeout=CONNECT_TIMEOUT_S)
        except (Exception, concurrent.futures.CancelledError):
            pass  # a connection that never opened was reported by __init__
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=CONNECT_TIMEOUT_S)
            self._loop.close()


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def mcp_env(live: LiveServer, key: str, *, config_dir: Path) -> dict[str, str]:
    """What a user's MCP client configuration gives ``openjules mcp``: the server and the
    key (and a config directory of its own, without a stored login)."""
    return {
        "OPENJULES_URL": live.url,
        "JULES_API_KEY": key,
        "OPENJULES_CONFIG_DIR": str(config_dir),
    }


class McpHttpProcess:
    """``openjules mcp --http PORT`` (on a free port) with ``env``, its stderr in
    ``log_dir``; ``url`` is its MCP endpoint. Stopped with SIGTERM by ``stop()``."""

    def __init__(self, env: dict[str, str], *, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.stderr_path = log_dir / "mcp-http.err"
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [OPENJULES, "mcp", "--http", str(self.port)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"openjules mcp exited early:\n{self.stderr()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"openjules mcp is not listening:\n{self.stderr()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=CONNECT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
