"""Every answer bounded (P14): a deadline around each request, and a cap on requests in flight.

Both are pure ASGI wrappers of the public app, answering the contract's 503 with `Retry-After`:

- `Deadline`: a request not answered within `seconds` (an update, a query or a database call that
  does not return: Temporal or PostgreSQL hanging) is cancelled and answered 503 `unavailable`;
- `ConcurrencyLimit`: beyond `limit` requests in flight the next is answered 503 at once, instead
  of queueing behind the others. uvicorn's own `limit_concurrency` (starter.py) stays above it as a
  backstop for connections, where its plain 503 has no `Retry-After`.
"""

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("renewals.ingress")

# The contract is an answer within 15 s (P14): the work gets 10 s, the rest is margin.
REQUEST_DEADLINE_SECONDS = 10.0
RETRY_AFTER_DEADLINE = 5
RETRY_AFTER_BUSY = 1


async def unavailable(send: Send, message: str, retry_after: int) -> None:
    body = json.dumps({"error": "unavailable", "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Deadline:
    """Cancel a request still unanswered after `seconds`; answer 503 with Retry-After."""

    def __init__(self, app: ASGIApp, seconds: float = REQUEST_DEADLINE_SECONDS) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        deadline = asyncio.timeout(self.seconds)
        try:
            async with deadline:
                await self.app(scope, receive, send_and_note)
        except Exception:
            # Some clients turn the cancellation into their own error (the Temporal SDK's
            # WorkflowUpdateRPCTimeoutOrCancelledError): past the deadline, any error is the deadline.
            if not deadline.expired():
                raise
            log.warning("%s %s not answered within %.0f s: 503", scope.get("method"), scope.get("path"), self.seconds)
            if not started:  # an answer already under way cannot be replaced; it is cut short
                await unavailable(
                    send,
                    f"the renewal service did not answer within {self.seconds:.0f} s; retry shortly",
                    RETRY_AFTER_DEADLINE,
                )


class ConcurrencyLimit:
    """At most `limit` requests in flight; the next one is answered 503 with Retry-After."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await unavailable(
                send, f"the ingress is answering {self.limit} requests already; retry shortly", RETRY_AFTER_BUSY
            )
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
