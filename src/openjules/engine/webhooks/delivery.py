"""One delivery attempt: a signed POST (Standard Webhooks) to the address that was checked.

The host is resolved and checked again now (``openjules.outbound``: DNS may have changed
since the webhook was created), and the request goes to that very address, with the
URL's host in the Host header and, for https, as the TLS server name, so no second lookup
can send it elsewhere. Redirects are not followed (a 3xx is a failed attempt), the whole
attempt is bounded by the timeout, and at most ``MAX_RESPONSE_BYTES`` of the answer are
read and thrown away: a slow or hostile receiver costs the server no more than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook as Signer

from openjules import __version__
from openjules.outbound import IPAddress, TargetRefused, resolve_target
from openjules.store.webhook_outbox import DueEvent, Outcome

log = logging.getLogger("openjules.webhooks")

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = f"openjules-webhooks/{__version__}"
# Long enough for the part of an error message a person needs.
MAX_ERROR_CHARS = 500


def new_client(*, timeout_seconds: float) -> httpx.AsyncClient:
    """The sender's HTTP client: no proxies from the environment (they would connect to
    a host of their choosing), no redirects, and no kept connections (a connection is
    for one host name: two webhooks on one address must not share one)."""
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_keepalive_connections=0),
        timeout=timeout_seconds,
    )


def signed_headers(event: DueEvent, body: bytes, *, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers; ``webhook-id`` is the same on every attempt."""
    signature = Signer(event.secret).sign(msg_id=event.message_id, timestamp=at, data=body)
    return {
        "webhook-id": event.message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


async def deliver(
    client: httpx.AsyncClient,
    event: DueEvent,
    *,
    base_url: str,
    timeout_seconds: float,
    allow_private: bool,
) -> Outcome:
    """Attempt the delivery once; never raises (but for cancellation)."""
    try:
        async with asyncio.timeout(timeout_seconds):
            return await _attempt(client, event, base_url=base_url, allow_private=allow_private)
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(status=None, error=f"no answer within {timeout_seconds:g} s")
    except TargetRefused as exc:
        return Outcome(status=None, error=_short(str(exc)))
    except httpx.HTTPError as exc:
        return Outcome(status=None, error=_short(f"{type(exc).__name__}: {exc}"))
    except Exception as exc:  # a bug of ours: an attempt that failed, not a stuck event
        log.exception("delivering webhook event %s failed", event.message_id)
        return Outcome(status=None, error=_short(f"internal error: {type(exc).__name__}"))


async def _attempt(
    client: httpx.AsyncClient, event: DueEvent, *, base_url: str, allow_private: bool
) -> Outcome:
    target = await resolve_target(event.url, allow_private=allow_private)
    body = event.body(base_url=base_url)
    headers = signed_headers(event, body, at=datetime.now(UTC))
    headers["host"] = target.host_header()
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}

    def to(address: IPAddress) -> httpx.Request:
        url = target.pinned_url(address)
        return client.build_request(
            "POST", url, content=body, headers=headers, extensions=extensions
        )

    # The addresses in the resolver's order, the next one only if the one before could
    # not be connected to (a host with an IPv6 address on a machine without IPv6, say).
    *others, last = target.addresses
    for address in others:
        with contextlib.suppress(httpx.ConnectError):
            return await _send(client, to(address))
    return await _send(client, to(last))


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> Outcome:
    response = await client.send(request, stream=True)
    try:
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= MAX_RESPONSE_BYTES:
                break
    finally:
        await response.aclose()
    if 200 <= response.status_code < 300:
        return Outcome(status=response.status_code)
    reason = response.reason_phrase or "not a success"
    if response.is_redirect:
        reason = "a redirect, which is not followed"
    return Outcome(status=response.status_code, error=f"HTTP {response.status_code}: {reason}")


def _short(text: str) -> str:
    text = " ".join(text.split()) or "connection failed"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
