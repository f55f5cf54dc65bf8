"""Idempotency-Key on panel events (P13): the same key for the same username within 24 hours gets
the first answer back, status and body, and changes nothing.

The key is claimed before the event runs, with one INSERT … ON CONFLICT, so of two concurrent
requests with the same key only one runs; the other is told to retry (409). The answer is stored
with the key; a retry replays it. A key reused with another request is refused (422). An answer
we could not give (a 5xx: Temporal or PostgreSQL did not answer) is not kept: the claim is let
go, so the panel's retry runs the event. A claim whose holder died is taken over after
`CLAIM_LEASE`. The rows and their SQL are db/idempotency.py's; ingress/api/panel.py answers the
panel event through `IdempotencyKeys.answer_once` when it carries the header.
"""

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from db import idempotency as table
from renewals.signing import IDEMPOTENCY_HEADER

log = logging.getLogger("renewals.ingress")

HEADER = IDEMPOTENCY_HEADER
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Printable ASCII, as HTTP headers carry it; at most 255 characters.
_KEY = re.compile(r"^[\x20-\x7e]{1," + str(MAX_KEY_LENGTH) + r"}\Z")
# A claim unanswered for this long belongs to a request that died (the ingress was killed):
# longer than any request may run (bounds.REQUEST_DEADLINE_SECONDS), so never a live one.
CLAIM_LEASE = timedelta(seconds=60)
PURGE_EVERY_SECONDS = 600.0


class KeyRefused(Exception):
    """The key cannot be used for this request: `status` and a message naming why."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    replayed: bool = False


def check_key(value: str) -> str:
    if not _KEY.match(value):
        raise KeyRefused(422, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters")
    return value


def fingerprint(request: bytes) -> str:
    return hashlib.sha256(request).hexdigest()


class IdempotencyKeys:
    """The stored first answers, on the asyncpg pool of the ingress's store."""

    def __init__(self, pool: asyncpg.Pool, ttl: timedelta = timedelta(hours=24)) -> None:
        self.pool = pool
        self.ttl = ttl
        self._last_purge = 0.0
        self._releases: set[asyncio.Task[None]] = set()

    async def answer_once(
        self, username: str, key: str, request: bytes, run: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        """The first answer for (username, key): `run()`'s, or the one stored by an earlier request.

        `request` is the canonical form of the request: the same key with another one is a 422."""
        check_key(key)
        digest = fingerprint(request)
        claim = uuid.uuid4()
        if not await table.claim(self.pool, username, key, digest, claim, self.ttl, CLAIM_LEASE):
            return await self._first(username, key, digest)
        await self._purge_now_and_then()
        try:
            answer = await run()
        except BaseException:
            # Not awaited here: the database may be what did not answer, and the caller is owed a 503.
            self._release_later(username, key, claim)
            raise
        if answer.status >= 500:
            self._release_later(username, key, claim)
            return answer
        await table.answer(self.pool, username, key, claim, answer.status, answer.body.decode())
        return answer

    async def _first(self, username: str, key: str, digest: str) -> Answer:
        row = await table.first(self.pool, username, key)
        if row is not None and row.request_sha256 != digest:
            raise KeyRefused(
                422,
                f"{HEADER} {key!r} was already used for another request of {username} within the last "
                f"{_hours(self.ttl)}; use a new key for a new request",
            )
        if row is None or row.status is None or row.answer is None:
            raise KeyRefused(
                409, f"a request with {HEADER} {key!r} is still being answered; retry shortly", retry_after=1
            )
        return Answer(row.status, row.answer.encode(), replayed=True)

    def _release_later(self, username: str, key: str, claim: uuid.UUID) -> None:
        task = asyncio.get_running_loop().create_task(self._release(username, key, claim))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, username: str, key: str, claim: uuid.UUID) -> None:
        try:
            async with asyncio.timeout(CLAIM_LEASE.total_seconds()):
                await table.release(self.pool, username, key, claim)
        except Exception:  # noqa: BLE001 - the lease frees the claim anyway
            log.warning("could not release %s %r of %s; its lease will", HEADER, key, username, exc_info=True)

    async def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = now
            await table.purge(self.pool, self.ttl)


def _hours(ttl: timedelta) -> str:
    hours = ttl.total_seconds() / 3600
    return f"{hours:g} h"
