"""The HTTP server's guard against slow clients (P14): a request's headers must arrive within
`HEADERS_SECONDS` of the connection opening (or of the previous answer, on a kept-alive
connection), and its body within `BODY_SECONDS` of the headers; a client slower than that is
answered 408 if nothing was started for it, and closed. uvicorn has no such deadline of its own.

And its backstop counts requests, not sockets: uvicorn's `limit_concurrency` counts open
connections too, so a few hundred sockets that never finish a request made every answer a 503.
Here the limit is on requests the app is running; a socket still sending its request counts
against nothing, and lives at most until its deadline.

Used as uvicorn's `http` protocol (starter.py `server_configs`), over h11, uvicorn's own parser.
"""

import asyncio
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

HEADERS_SECONDS = 5.0
BODY_SECONDS = 10.0

_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 16\r\n"
    b"connection: close\r\n\r\nrequest too slow"
)


class SlowClientsProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on reading each request, and a limit on requests in
    flight instead of open connections."""

    headers_seconds = HEADERS_SECONDS
    body_seconds = BODY_SECONDS

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading: Any = None  # the h11 state the deadline was set for
        limit, self.limit_concurrency = self.limit_concurrency, None  # uvicorn's check counts sockets
        if limit is not None:
            self.app = _requests_limited(self.app, self.tasks, limit)

    # ------------------------------------------------------------------ the deadline

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Set the deadline for what the client is sending now: headers, a body, or nothing."""
        if self.transport.is_closing():
            self._cancel()
            return
        state = self.conn.their_state
        if state is self._reading:
            return  # the same part of the same request: its deadline stands
        self._cancel()
        self._reading = state
        if state is h11.IDLE:
            self._deadline = self.loop.call_later(self.headers_seconds, self._too_slow)
        elif state is h11.SEND_BODY:
            self._deadline = self.loop.call_later(self.body_seconds, self._too_slow)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self.conn.trailing_data[0] != b""
        if started and (self.cycle is None or self.cycle.response_complete):
            # Part of a request's head came: say why before closing. An idle connection is just
            # closed (a 408 there could be read as the answer to a request crossing it); with the
            # app started, closing is enough: it reads a disconnect.
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def _requests_limited(app: Any, tasks: set[asyncio.Task[None]], limit: int) -> Any:
    """The app behind a limit on requests running (uvicorn's tasks, this one included)."""

    async def limited(scope: Any, receive: Any, send: Any) -> None:
        if len(tasks) > limit:
            await service_unavailable(scope, receive, send)  # uvicorn's own answer, as before
            return
        await app(scope, receive, send)

    return limited
