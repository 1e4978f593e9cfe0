"""The model's HTTP/1.1 client against real servers on loopback that write raw HTTP bytes:
answers sized every way, kept-alive connections, broken ones, TLS and proxies."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from openjules.engine.model_http import HttpConnectionError, HttpResponse, ModelHttp
from tests.tls_support import Certificates, make_certificates

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@dataclass
class Seen:
    """One request as a server received it (header names lower-cased)."""

    line: str
    headers: dict[str, str]
    body: bytes


# What the server answers to the request it has seen (its index among all it saw), raw;
# None: close without answering.
Reply = Callable[[Seen, int], bytes | None]


@dataclass
class Server:
    port: int
    accepted: int = 0
    requests: list[Seen] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def url(self, path: str = "/v1/chat/completions", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


async def _read_request(reader: asyncio.StreamReader) -> Seen | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        headers = {}
        for header in header_lines:
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    except (asyncio.IncompleteReadError, OSError):
        return None
    return Seen(line, headers, body)


def _answer(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    head = [f"HTTP/1.1 {status}", *extra, f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@asynccontextmanager
async def serving(
    reply: Reply,
    *,
    close_after: bool = False,
    close_on_next: bool = False,
    delay: float = 0.0,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    """A server answering each request with ``reply``; it closes the connection after each
    answer when ``close_after``, or when the first byte of the next request arrives (unread
    as a request) when ``close_on_next``."""
    state = Server(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.accepted += 1
        state.writers.append(writer)
        try:
            while (seen := await _read_request(reader)) is not None:
                state.requests.append(seen)
                await asyncio.sleep(delay)
                answer = reply(seen, len(state.requests) - 1)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if close_on_next:
                    await reader.read(1)
                if close_after or close_on_next:
                    break
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for writer in state.writers:
            writer.close()
        await server.wait_closed()


@asynccontextmanager
async def client() -> AsyncIterator[ModelHttp]:
    http = ModelHttp()
    try:
        yield http
    finally:
        await http.aclose()


async def _post(http: ModelHttp, url: str, body: bytes = b"{}") -> HttpResponse:
    async with asyncio.timeout(5):
        return await http.post(url, body=body, headers={"Content-Type": "application/json"})


def _always(answer: bytes | None) -> Reply:
    return lambda _seen, _index: answer


async def test_a_content_length_answer_and_the_request_the_server_received() -> None:
    answer = _answer(
        b'{"id": "x"}',
        "Content-Type: application/json",
        "X-Request-ID: r-1",
        "Set-Cookie: a=1",
        "Set-Cookie: b=2",
        status="201 Created",
    )
    async with serving(_always(answer)) as server, client() as http:
        body = b'{"model": "m", "messages": [{"role": "user", "content": "h\xc3\xa9"}]}'
        response = await http.post(
            server.url("/v1/chat/completions?api-version=2024-06-01"),
            body=body,
            headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json"},
        )
    assert response.status == 201
    assert response.headers == {
        "content-type": "application/json",
        "x-request-id": "r-1",
        "set-cookie": "a=1, b=2",
        "content-length": "11",
    }
    assert response.body == b'{"id": "x"}'
    [seen] = server.requests
    assert seen.line == "POST /v1/chat/completions?api-version=2024-06-01 HTTP/1.1"
    assert seen.headers == {
        "host": f"127.0.0.1:{server.port}",
        "authorization": "Bearer sk-test",
        "content-type": "application/json",
        "content-length": str(len(body)),
    }
    assert seen.body == body


async def test_a_chunked_answer_comes_back_whole_and_keeps_the_connection() -> None:
    # Several chunks, one with an extension, and a trailer after the last.
    def reply(_seen: Seen, index: int) -> bytes:
        return (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;x=y\r\nhello\r\n1\r\n \r\n"
            + f"A\r\nanswer-{index:03d}\r\n".encode()
            + b"0\r\nX-Trailer: done\r\n\r\n"
        )

    async with serving(reply) as server, client() as http:
        first = await _post(http, server.url())
        second = await _post(http, server.url())
    assert (first.status, first.body) == (200, b"hello answer-000")
    assert second.body == b"hello answer-001"
    assert server.accepted == 1


@pytest.mark.parametrize(
    ("head", "connections"),
    [
        ("HTTP/1.1 200 OK\r\nConnection: close", 2),
        ("HTTP/1.0 200 OK", 2),
        ("HTTP/1.0 200 OK\r\nConnection: keep-alive", 1),
    ],
    ids=["connection-close", "http-1.0", "http-1.0-keep-alive"],
)
async def test_an_answer_that_does_not_keep_the_connection_is_not_reused(
    head: str, connections: int
) -> None:
    # The server itself keeps every connection open: only the answer says not to reuse it.
    answer = f"{head}\r\nContent-Length: 7\r\n\r\nanswer!".encode()
    async with serving(_always(answer)) as server, client() as http:
        bodies = [(await _post(http, server.url())).body for _ in range(2)]
    assert bodies == [b"answer!", b"answer!"]
    assert server.accepted == connections


async def test_an_answer_delimited_by_the_server_closing_is_read_whole() -> None:
    payload = bytes(range(256)) * 1024  # more than one read's worth
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n" + payload
    async with (
        serving(_always(answer), close_after=True) as server,
        client() as http,
    ):
        first = await _post(http, server.url())
        second = await _post(http, server.url())
    assert first.body == payload
    assert second.body == payload
    assert server.accepted == 2


async def test_interim_1xx_answers_are_skipped() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        + _answer(b"the real one", "X-Final: yes")
    )
    async with serving(_always(answer)) as server, client() as http:
        response = await _post(http, server.url())
        again = await _post(http, server.url())
    assert response.status == 200
    assert response.body == b"the real one"
    assert "link" not in response.headers
    assert response.headers["x-final"] == "yes"
    assert again.body == b"the real one"
    assert server.accepted == 1


@pytest.mark.parametrize(
    ("pause", "close_on_next"),
    [(0.2, False), (0.0, False), (0.0, True)],
    ids=["after-a-pause", "at-once", "as-the-next-request-arrives"],
)
async def test_a_kept_connection_the_server_closed_while_idle_is_replaced(
    pause: float, close_on_next: bool
) -> None:
    def reply(seen: Seen, _index: int) -> bytes:
        return _answer(b"echo:" + seen.body)

    async with (
        serving(reply, close_after=not close_on_next, close_on_next=close_on_next) as server,
        client() as http,
    ):
        first = await _post(http, server.url(), b"one")
        await asyncio.sleep(pause)
        second = await _post(http, server.url(), b"two")
    assert (first.body, second.body) == (b"echo:one", b"echo:two")
    assert [seen.body for seen in server.requests] == [b"one", b"two"]
    assert server.accepted == 2


async def test_a_server_that_closes_without_answering_is_a_connection_error() -> None:
    async with serving(_always(None)) as server, client() as http:
        with pytest.raises(HttpConnectionError):
            await _post(http, server.url())
    assert len(server.requests) == 1


async def test_an_answer_cut_short_is_a_connection_error_not_a_short_body() -> None:
    cut = _answer(b"0123456789")[:-4]
    async with serving(_always(cut), close_after=True) as server, client() as http:
        with pytest.raises(HttpConnectionError):
            await _post(http, server.url())


async def test_a_port_nothing_listens_on_is_a_connection_error() -> None:
    async with serving(_always(_answer(b""))) as server:
        url = server.url()
    async with client() as http:
        with pytest.raises(HttpConnectionError):
            await _post(http, url)


async def test_concurrent_requests_each_get_their_answer_and_then_reuse_connections() -> None:
    def reply(seen: Seen, _index: int) -> bytes:
        return _answer(b"echo:" + seen.line.encode() + b":" + seen.body)

    async with serving(reply, delay=0.02) as server, client() as http:

        async def wave() -> list[HttpResponse]:
            return await asyncio.gather(
                *(_post(http, server.url(f"/r?i={i}"), f"body-{i}".encode()) for i in range(50))
            )

        first = await wave()
        after_first = server.accepted
        second = await wave()
    expected = [f"echo:POST /r?i={i} HTTP/1.1:body-{i}".encode() for i in range(50)]
    assert [response.body for response in first] == expected
    assert [response.body for response in second] == expected
    assert 1 <= after_first <= 50
    assert server.accepted == after_first
    assert len(server.requests) == 100


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _trusting(certificate: Certificates, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """Clients trust ``certificate`` (SSL_CERT_FILE); the context a server serves it with."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.ca))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return certificate.server_context()


async def test_https_is_verified_against_ssl_cert_file(
    certificate: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = _trusting(certificate, monkeypatch)
    async with serving(_always(_answer(b"secure")), tls=tls) as server, client() as http:
        response = await _post(http, server.url(scheme="https"), b"over tls")
    assert response.body == b"secure"
    assert [seen.body for seen in server.requests] == [b"over tls"]


async def test_https_to_an_untrusted_certificate_is_a_connection_error(
    certificate: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls = certificate.server_context()
    async with serving(_always(_answer(b"secure")), tls=tls) as server, client() as http:
        with pytest.raises(HttpConnectionError):
            await _post(http, server.url(scheme="https"))
    assert server.requests == []


@dataclass
class Proxy:
    port: int
    requests: list[Seen] = field(default_factory=list)


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@asynccontextmanager
async def proxying(*, refuse: bool = False) -> AsyncIterator[Proxy]:
    """An HTTP proxy: it answers plain requests itself and tunnels ``CONNECT`` (or answers
    407 to it when ``refuse``)."""
    state = Proxy(port=0)
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        seen = await _read_request(reader)
        if seen is None:
            writer.close()
            return
        state.requests.append(seen)
        method, target, _version = seen.line.split(" ")
        if method != "CONNECT" or refuse:
            status = "407 Proxy Authentication Required" if refuse else "200 OK"
            writer.write(_answer(b"from the proxy", status=status))
            writer.close()
            return
        host, _, port = target.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writers.append(upstream_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(_relay(reader, upstream_writer), _relay(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_http_through_a_proxy_goes_in_absolute_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with proxying() as proxy, client() as http:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        response = await _post(http, "http://127.0.0.1:9/v1/chat/completions?a=1", b"via")
    assert response.body == b"from the proxy"
    [seen] = proxy.requests
    assert seen.line == "POST http://127.0.0.1:9/v1/chat/completions?a=1 HTTP/1.1"
    assert seen.headers["host"] == "127.0.0.1:9"
    assert seen.body == b"via"


async def test_no_proxy_sends_the_request_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    async with (
        proxying() as proxy,
        serving(_always(_answer(b"direct"))) as server,
        client() as http,
    ):
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        response = await _post(http, server.url())
    assert response.body == b"direct"
    assert proxy.requests == []
    assert [seen.line for seen in server.requests] == ["POST /v1/chat/completions HTTP/1.1"]


async def test_https_through_a_proxy_tunnels_with_proxy_credentials(
    certificate: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = _trusting(certificate, monkeypatch)
    async with (
        serving(_always(_answer(b"tunnelled")), tls=tls) as origin,
        proxying() as proxy,
        client() as http,
    ):
        monkeypatch.setenv("https_proxy", f"http://user:p%40ss@127.0.0.1:{proxy.port}")
        response = await _post(http, origin.url("/v1/chat/completions", scheme="https"), b"x")
        again = await _post(http, origin.url("/v1/chat/completions", scheme="https"), b"y")
    assert (response.body, again.body) == (b"tunnelled", b"tunnelled")
    [connect] = proxy.requests
    assert connect.line == f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1"
    credentials = base64.b64encode(b"user:p@ss").decode()
    assert connect.headers["proxy-authorization"] == f"Basic {credentials}"
    assert [seen.line for seen in origin.requests] == ["POST /v1/chat/completions HTTP/1.1"] * 2
    assert [seen.body for seen in origin.requests] == [b"x", b"y"]
    assert origin.accepted == 1


async def test_a_proxy_refusing_connect_is_a_connection_error(
    certificate: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.ca))
    async with (
        serving(_always(_answer(b"unreached")), tls=certificate.server_context()) as origin,
        proxying(refuse=True) as proxy,
        client() as http,
    ):
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
        with pytest.raises(HttpConnectionError, match="407"):
            await _post(http, origin.url(scheme="https"))
    assert [seen.line.split(" ")[0] for seen in proxy.requests] == ["CONNECT"]
    assert origin.accepted == 0


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
async def test_an_answer_that_never_has_a_body_does_not_wait_for_one(status: str) -> None:
    # No Content-Length and the connection left open: the answer ends with its headers.
    answer = f"HTTP/1.1 {status}\r\nX-Seen: yes\r\n\r\n".encode()
    async with serving(_always(answer)) as server, client() as http:
        first = await _post(http, server.url())
        second = await _post(http, server.url())
    assert (first.status, first.body, first.headers["x-seen"]) == (int(status[:3]), b"", "yes")
    assert second.status == int(status[:3])
    assert server.accepted == 1


async def test_a_header_that_is_not_latin_1_is_refused_without_losing_a_connection() -> None:
    async with serving(_always(_answer(b"ok"))) as server, client() as http:
        await _post(http, server.url())
        with pytest.raises(ValueError, match="latin-1"):
            await http.post(server.url(), body=b"{}", headers={"X-Name": "caf\u00e9 \u2615"})
        again = await _post(http, server.url())
    assert again.body == b"ok"
    assert server.accepted == 1  # the kept connection served the request after the refusal


async def test_an_ipv6_origin_is_bracketed_in_the_connect_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with proxying(refuse=True) as proxy, client() as http:
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
        with pytest.raises(HttpConnectionError, match="407"):
            await _post(http, "https://[::1]:8443/v1/chat/completions")
    [connect] = proxy.requests
    assert connect.line == "CONNECT [::1]:8443 HTTP/1.1"
    assert connect.headers["host"] == "[::1]:8443"


def _moved(location: str) -> bytes:
    return _answer(b"moved", f"Location: {location}", status="307 Temporary Redirect")


async def test_a_307_is_followed_with_the_same_body_and_credentials_stay_at_home() -> None:
    async with serving(_always(_answer(b"answered"))) as elsewhere:
        here_to_there = {
            "/v1/chat/completions": _moved("/v2/chat/completions"),
            "/v2/chat/completions": _moved(elsewhere.url("/v3/chat/completions")),
        }

        def reply(seen: Seen, _index: int) -> bytes:
            return here_to_there[seen.line.split(" ")[1]]

        async with serving(reply) as here, client() as http, asyncio.timeout(5):
            response = await http.post(
                here.url(), body=b"the turn", headers={"Authorization": "Bearer sk-secret"}
            )
    assert (response.status, response.body) == (200, b"answered")
    assert [(seen.line, seen.body) for seen in here.requests] == [
        ("POST /v1/chat/completions HTTP/1.1", b"the turn"),
        ("POST /v2/chat/completions HTTP/1.1", b"the turn"),
    ]
    assert [seen.headers.get("authorization") for seen in here.requests] == ["Bearer sk-secret"] * 2
    [there] = elsewhere.requests
    assert (there.line, there.body) == ("POST /v3/chat/completions HTTP/1.1", b"the turn")
    assert "authorization" not in there.headers  # another origin: the key is not sent


async def test_redirects_in_a_loop_end_with_the_last_answer() -> None:
    async with serving(_always(_moved("/v1/chat/completions"))) as server, client() as http:
        response = await _post(http, server.url())
    assert response.status == 307
    assert len(server.requests) == 21  # the request and 20 redirects followed
