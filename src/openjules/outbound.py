"""Requests the server makes to URLs its users chose (webhooks): where they may go.

A user-given URL must not reach what only the server can reach: its own loopback, the
private network it sits in, a cloud's metadata service. ``resolve_target`` resolves the
host and refuses the URL if any address it resolves to is such an address; the caller
then connects to the address that was checked (no second lookup that DNS could answer
differently). The API checks at creation and the sender again at each delivery.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services (AWS, GCP, Azure, …; AWS's IPv6 one): named in the refusal.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
# NAT64 (RFC 6052): the last 32 bits are an IPv4 address.
NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443}


class TargetRefused(ValueError):
    """The URL may not be requested; ``str()`` says why, for the user."""


@dataclass(frozen=True)
class Target:
    """A URL and the addresses to connect to for it (in the resolver's order)."""

    url: str
    scheme: str
    host: str  # as written in the URL (the Host header and the TLS server name)
    port: int
    addresses: tuple[IPAddress, ...]

    def pinned_url(self, address: IPAddress) -> str:
        """The URL with ``address`` (one of the checked ones) in place of the host."""
        parts = urlsplit(self.url)
        shown = f"[{address}]" if address.version == 6 else str(address)
        path = parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.scheme}://{shown}:{self.port}{path}{query}"

    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def refusal(address: IPAddress) -> str | None:
    """Why the server must not connect to ``address``, or None if it may."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal(embedded)
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if not address.is_global:
        # Private (RFC 1918, IPv6 unique local), CGNAT, reserved, documentation ranges.
        return "a private or reserved address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def split_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an http(s) URL; TargetRefused if it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"The URL is not valid: {exc}.") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise TargetRefused("The URL must be an http:// or https:// URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("The URL must not hold a user name or password.")
    return scheme, parts.hostname, port or DEFAULT_PORTS[scheme]


async def resolve_target(url: str, *, allow_private: bool) -> Target:
    """Resolve ``url``'s host; TargetRefused if it does not resolve or, unless
    ``allow_private``, if any of its addresses is one the server must not reach."""
    scheme, host, port = split_url(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        addresses = await _lookup(host, port)
    if not allow_private:
        for address in addresses:
            why = refusal(address)
            if why is not None:
                shown = host if literal is not None else f"{host} resolves to {address}, which"
                raise TargetRefused(
                    f"The URL's host {shown} is {why}; webhooks may only target public "
                    "addresses (the operator can allow others with "
                    "OPENJULES_WEBHOOKS_ALLOW_PRIVATE=true)."
                )
    return Target(url=url, scheme=scheme, host=host, port=port, addresses=tuple(addresses))


async def _lookup(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"The URL's host {host} does not resolve ({exc}).") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        # A scoped IPv6 address comes as "fe80::1%eth0": the scope does not change the verdict.
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"The URL's host {host} does not resolve.")
    return addresses
