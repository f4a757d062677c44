"""A TCP proxy in front of PostgreSQL that a drill can cut and restore.

Why: stopping the real server would disturb every other test run on the machine; cutting the
proxy looks the same to the bot (every open connection dropped at once, new ones refused) and
touches nothing else. `cut()` is synchronous so a drill can call it from inside the stand-in,
at an exact moment of a delivery wave.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from sqlalchemy.engine import make_url


class PostgresProxy:
    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5432) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task] = set()

    @classmethod
    def for_url(cls, url: str) -> PostgresProxy:
        parsed = make_url(url)
        return cls(parsed.host or "127.0.0.1", parsed.port or 5432)

    def url(self, url: str) -> str:
        """`url` with this proxy in place of the server."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    @property
    def is_cut(self) -> bool:
        return self._server is None

    async def start(self) -> None:
        """Listen (on a free port the first time, then on the same port again)."""
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """The database goes away: open connections are reset, new ones refused."""
        if self._server is None:
            return
        self.cuts += 1
        self._server.close()
        self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()

    async def __aenter__(self) -> PostgresProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted in the instant of a cut
            client_writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        if self._server is None:
            client_writer.transport.abort()
            server_writer.transport.abort()
            return
        for writer in (client_writer, server_writer):
            self._transports.add(writer.transport)
            with contextlib.suppress(OSError):
                writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipes = [asyncio.create_task(_pipe(client_reader, server_writer)),
                 asyncio.create_task(_pipe(server_reader, client_writer))]
        self._tasks.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
            self._tasks.discard(task)
        for writer in (client_writer, server_writer):
            self._transports.discard(writer.transport)
            writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
