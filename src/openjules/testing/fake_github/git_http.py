"""Git's smart HTTP protocol, served by the real ``git http-backend`` (a CGI program)."""

from __future__ import annotations

import asyncio
import enum
import os
import subprocess
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from openjules._cancellation import within
from openjules.testing.fake_github.records import Repo

GIT_TIMEOUT_S = 120.0


class Service(enum.Enum):
    UPLOAD_PACK = "git-upload-pack"
    RECEIVE_PACK = "git-receive-pack"


def isolated_env(home: Path) -> dict[str, str]:
    """Environment for every git process: no system or user configuration, no prompts."""
    return {
        "PATH": os.environ.get("PATH") or os.defpath,
        "HOME": str(home),
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Fake GitHub",
        "GIT_AUTHOR_EMAIL": "noreply@github.invalid",
        "GIT_COMMITTER_NAME": "Fake GitHub",
        "GIT_COMMITTER_EMAIL": "noreply@github.invalid",
    }


async def http_backend(
    request: Request,
    *,
    root: Path,
    home: Path,
    repo: Repo,
    action: str,
    remote_user: str | None,
) -> Response:
    """Answer ``request`` with ``git http-backend`` serving ``action`` of ``repo``.

    ``remote_user`` is the authenticated caller (None if anonymous).
    """
    body = await request.body()
    env = isolated_env(home)
    env.update(
        GIT_PROJECT_ROOT=str(root),
        GIT_HTTP_EXPORT_ALL="1",
        # The canonical on-disk name, whatever case the client used.
        PATH_INFO=f"/{repo.owner}/{repo.name}.git/{action}",
        REQUEST_METHOD=request.method,
        QUERY_STRING=request.url.query,
        CONTENT_TYPE=request.headers.get("content-type", ""),
        # The length of the body as received (still gzipped if the client gzipped it).
        CONTENT_LENGTH=str(len(body)),
        REMOTE_ADDR=request.client.host if request.client else "127.0.0.1",
        SERVER_PROTOCOL="HTTP/1.1",
    )
    if remote_user is not None:
        env["REMOTE_USER"] = remote_user
    if encoding := request.headers.get("content-encoding"):
        env["HTTP_CONTENT_ENCODING"] = encoding
    if protocol := request.headers.get("git-protocol"):
        env["GIT_PROTOCOL"] = protocol
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await within(proc.communicate(body), seconds=GIT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return git_error(504, "git http-backend timed out")
    return cgi_response(out, err)


def git_error(status: int, message: str) -> Response:
    # Plain text: git prints a text/plain error body to the user as "remote: ...".
    headers = {"WWW-Authenticate": 'Basic realm="GitHub"'} if status == 401 else None
    return PlainTextResponse(message + "\n", status_code=status, headers=headers)


def cgi_response(out: bytes, err: bytes) -> Response:
    """Turn a CGI answer (headers, blank line, body) into an HTTP response."""
    ends = [(i, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := out.find(sep)) >= 0]
    if not ends:
        detail = err.decode(errors="replace").strip() or "no CGI headers"
        return git_error(500, f"git http-backend failed: {detail}")
    end, width = min(ends)
    status = 200
    headers: dict[str, str] = {}
    for line in out[:end].decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.split()[0])
        elif name.strip():
            headers[name.strip()] = value.strip()
    return Response(out[end + width :], status_code=status, headers=headers)
