"""One benchmark server process: the openjules app or a bare Starlette app, through uvicorn.

Both apps are served identically (one worker, loopback, a port chosen by the kernel,
``log_level=warning``, access log off), so the only difference is the application itself.
The chosen port is written as the first line on stdout; openjules then writes
``listening`` once every one of its processes accepts connections. The process exits on
SIGTERM, SIGINT, or when its stdin reaches EOF (the parent died without cleaning up).

openjules runs no session (``max_concurrent_sessions=0``: creates stay QUEUED), and with
``--http-workers N`` (N > 1) is served by N processes exactly as ``openjules serve
--http-workers N`` serves it (``openjules.http_workers``).

    python bench/_serve.py bare
    python bench/_serve.py openjules --database-url URL --data-dir DIR --public-base-url URL
        [--http-workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn

HOST = "127.0.0.1"
HEALTH_PATH = "/healthz"


def bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route(HEALTH_PATH, health)])


def serve_openjules(args: argparse.Namespace, sock: socket.socket) -> None:
    """What `openjules serve` runs (migrations, the engine and its workers, the API)."""
    import asyncio

    from openjules.http_workers import serve_in_processes
    from openjules.server import serve
    from openjules.settings import Settings

    settings = Settings(
        data_dir=args.data_dir,
        database_url=args.database_url,
        public_base_url=args.public_base_url,
        # The benchmark measures the API: creates queue, no agent runs.
        max_concurrent_sessions=0,
        http_workers=args.http_workers,
    )

    def listening() -> None:
        print("listening", flush=True)

    if args.http_workers > 1:
        serve_in_processes(
            settings,
            sock=sock,
            processes=args.http_workers,
            on_serving=listening,
            log_level="warning",
        )
        return
    asyncio.run(serve(settings, sock=sock, on_listening=listening, log_level="warning"))


STDIN_FD = 0


def _exit_when_parent_goes() -> None:
    """Block on stdin; EOF means the parent is gone, so shut down (hard after 5 s)."""
    # os.read, not sys.stdin: a daemon thread blocked in a buffered read holds its lock,
    # and the interpreter's exit then aborts with "Fatal Python error".
    with contextlib.suppress(OSError):
        while os.read(STDIN_FD, 4096):
            pass
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Timer(5.0, lambda: os._exit(3)).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("app", choices=["bare", "openjules"])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--data-dir", type=Path, default=Path("."))
    parser.add_argument("--public-base-url", default="http://bench.invalid")
    parser.add_argument("--http-workers", type=int, default=1)
    args = parser.parse_args()

    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP;
    # without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    threading.Thread(target=_exit_when_parent_goes, daemon=True).start()
    print(sock.getsockname()[1], flush=True)
    if args.app == "openjules":
        serve_openjules(args, sock)
        return
    # The same HTTP server configuration as openjules (its protocol, timeouts and limits).
    from openjules.server import uvicorn_config
    from openjules.settings import Settings

    config = uvicorn_config(bare_app(), settings=Settings(), log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
