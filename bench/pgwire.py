"""A counting TCP proxy in front of PostgreSQL: the exact number of round trips a client makes.

In the PostgreSQL protocol every round trip ends with the client's Sync ('S', extended query:
a prepare, an execute, a pipelined executemany) or is one simple Query ('Q': BEGIN, COMMIT,
asyncpg's pool reset on release); the server answers each with ReadyForQuery. Counting those two
message types on the client's side of the wire counts round trips, whatever the driver does.
The bench puts it only in front of a worker and an ingress started for the counting phase, so
the measured runs go straight to PostgreSQL.
"""

import asyncio
import struct
from collections import Counter
from dataclasses import dataclass, field

# Untyped messages before the StartupMessage: SSLRequest, GSSENCRequest (a CancelRequest opens
# its own connection and ends it).
_PRE_STARTUP_CODES = {80877103, 80877104, 80877102}


@dataclass
class WireCounter:
    upstream_host: str
    upstream_port: int
    counts: Counter[str] = field(default_factory=Counter)
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def reset(self) -> None:
        self.counts.clear()

    @property
    def round_trips(self) -> int:
        return self.counts["sync"] + self.counts["query"]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._client_to_server(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _client_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            started = False
            while not started:
                header = await reader.readexactly(8)
                length, code = struct.unpack("!ii", header)
                body = await reader.readexactly(length - 8)
                writer.write(header + body)
                await writer.drain()
                started = code not in _PRE_STARTUP_CODES
            while True:
                header = await reader.readexactly(5)
                kind, length = header[:1], struct.unpack("!i", header[1:])[0]
                body = await reader.readexactly(length - 4)
                if kind == b"S":
                    self.counts["sync"] += 1
                elif kind == b"Q":
                    self.counts["query"] += 1
                writer.write(header + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
