"""``TcpProxy``: a TCP forwarder on a loopback port that can be cut, to take a server
(PostgreSQL, say) away from one client without stopping it for everyone else::

    with TcpProxy(target_port=5432) as proxy:
        url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/mydb"
        ...
        proxy.cut()      # every connection through it drops; new ones are refused
        proxy.restore()  # connections go through again, on the same port
"""

from __future__ import annotations

import asyncio
import contextlib

from openjules.server import bind
from openjules.testing.lifecycle import LoopThread

CHUNK_BYTES = 65536


class TcpProxy(LoopThread):
    """Forwards each connection to ``target_host:target_port``, in a background thread
    running its own event loop. While cut, the port has no listener (connecting fails
    with "connection refused", as when the server is down) and every connection that
    was open has been reset."""

    def __init__(self, *, target_host: str = "127.0.0.1", target_port: int) -> None:
        super().__init__(thread_name="openjules-tcp-proxy")
        self.target = (target_host, target_port)
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()

    # --- control, from any thread -----------------------------------------------------

    def cut(self) -> None:
        """Drop every connection and refuse new ones until ``restore()``."""
        self._call(self._close_all())

    def restore(self) -> None:
        """Listen again, on the same port."""
        self._call(self._listen())

    # --- in the proxy's event loop ------------------------------------------------------

    async def _open(self) -> None:
        await self._listen()

    async def _shut(self) -> None:
        await self._close_all()

    async def _listen(self) -> None:
        if self._server is not None:
            return
        # The same port again on restore(): bind() reuses it past old TIME_WAIT connections.
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._forward, sock=sock)

    async def _close_all(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._streams):
            # A reset, not a polite close: as when the server's host goes away.
            writer.transport.abort()
        self._streams.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._streams.update((writer, up_writer))
        try:
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            for stream in (writer, up_writer):
                self._streams.discard(stream)
                stream.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of file, then pass the end on (half-close)."""
    while chunk := await reader.read(CHUNK_BYTES):
        writer.write(chunk)
        await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()
