"""The processes of one ``openjules serve`` on SQLite tell each other of changes at once.

PostgreSQL carries a change to every process (``pg_notify``); SQLite has no such thing,
and its poll (``change_poll_seconds``) finds another process's change up to a poll later.
Between the HTTP processes of one server that is too late: a session created through one
would start in the other (the runner) a quarter of a second later, and a stream on one would
show the agent's steps late. So each process binds a datagram socket of its own, named in
Linux's abstract namespace after the server and the process's place in it (nothing on disk
to clean up; the name goes with the process), and sends each change it commits to the
others' sockets. The supervising process only chooses the server's name.

Delivery is best effort: a process being replaced is not listening, and a full queue
drops a datagram. The poll goes on underneath and finds whatever was dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("openjules.store.change_peers")

# Room for the bursts of a hundred sessions' steps between two reads of the event loop.
RECEIVE_BUFFER_BYTES = 1 << 20
# A datagram carries one commit's changes, "owner|session|µs" per line: far below this.
MAX_DATAGRAM_BYTES = 65_536


@dataclass(frozen=True, kw_only=True)
class LocalPeers:
    """This process's place among the ``count`` processes of one server (``group``)."""

    group: str
    count: int
    index: int

    @staticmethod
    def new_group() -> str:
        """A name for a new server's processes, unlike any other server's."""
        return secrets.token_hex(8)

    def address(self, index: int) -> bytes:
        return f"\0openjules-changes-{self.group}-{index}".encode()


# (owner id, session id, when the sender announced it in µs): ``store.changes.Change``.
Announced = tuple[int, str, int]
Heard = Callable[[list[Announced]], None]


class PeerLink:
    """The socket of this process: what it commits goes out, what the others commit
    comes in (``heard`` gets them, in the event loop)."""

    def __init__(self, peers: LocalPeers, *, heard: Heard) -> None:
        self._peers = peers
        self._heard = heard
        self._others = [peers.address(i) for i in range(peers.count) if i != peers.index]
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            sock.bind(self._peers.address(self._peers.index))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._receive)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()

    def tell(self, changes: Iterable[Announced]) -> None:
        """Send the changes to every other process; never blocks, never raises."""
        if self._sock is None:
            return
        payload = "\n".join(f"{o}|{s}|{at}" for o, s, at in changes).encode()
        if not payload:
            return
        for address in self._others:
            # Refused: that process is not listening (starting, or being replaced). Would
            # block: its queue is full. Either way its poll finds the change.
            with contextlib.suppress(OSError):
                self._sock.sendto(payload, address)

    def _receive(self) -> None:
        sock = self._sock
        if sock is None:
            return
        heard: list[Announced] = []
        while True:
            try:
                data = sock.recv(MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # not expected of a bound datagram socket
                log.warning("reading the other processes' changes failed: %s", exc)
                break
            for line in data.decode(errors="replace").splitlines():
                fields = line.split("|")
                if len(fields) == 3 and fields[0].isdigit() and fields[2].isdigit():
                    heard.append((int(fields[0]), fields[1], int(fields[2])))
        if heard:
            self._heard(heard)
