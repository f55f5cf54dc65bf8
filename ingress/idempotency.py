"""Idempotency-Key on panel events (P13): the same key for the same username within 24 hours gets
the first answer back, status and body, and changes nothing.

The key is claimed before the event runs, with one INSERT … ON CONFLICT, so of two concurrent
requests with the same key only one runs; the other is told to retry (409). The answer is stored
with the key; a retry replays it. A key reused with another request is refused (422). An answer
we could not give (a 5xx: Temporal or PostgreSQL did not answer) is not kept: the claim is let
go, so the panel's retry runs the event. A claim whose holder died is taken over after
`CLAIM_LEASE`. This module owns the `idempotency_keys` table (migrations/003_idempotency.sql).
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

log = logging.getLogger("renewals.ingress")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Printable ASCII, as HTTP headers carry it; at most 255 characters.
_KEY = re.compile(r"^[\x20-\x7e]{1," + str(MAX_KEY_LENGTH) + r"}\Z")
# A claim unanswered for this long belongs to a request that died (the ingress was killed):
# longer than any request may run (bounds.REQUEST_DEADLINE_SECONDS), so never a live one.
CLAIM_LEASE = timedelta(seconds=60)
PURGE_EVERY_SECONDS = 600.0

_CLAIM = """
INSERT INTO idempotency_keys (username, idempotency_key, request_sha256, claim)
VALUES ($1, $2, $3, $4)
ON CONFLICT (username, idempotency_key) DO UPDATE
    SET request_sha256 = EXCLUDED.request_sha256, claim = EXCLUDED.claim, claimed_at = now(),
        status_code = NULL, answer = NULL, answered_at = NULL
    WHERE idempotency_keys.claimed_at < now() - $5::interval
       OR (idempotency_keys.status_code IS NULL AND idempotency_keys.claimed_at < now() - $6::interval)
RETURNING claim
"""
_FIRST = """
SELECT request_sha256, status_code, answer FROM idempotency_keys
WHERE username = $1 AND idempotency_key = $2
"""
_ANSWER = """
UPDATE idempotency_keys SET status_code = $4, answer = $5, answered_at = now()
WHERE username = $1 AND idempotency_key = $2 AND claim = $3 AND status_code IS NULL
"""
_RELEASE = """
DELETE FROM idempotency_keys
WHERE username = $1 AND idempotency_key = $2 AND claim = $3 AND status_code IS NULL
"""
_PURGE = "DELETE FROM idempotency_keys WHERE claimed_at < now() - $1::interval"


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
        claimed = await self.pool.fetchval(_CLAIM, username, key, digest, claim, self.ttl, CLAIM_LEASE)
        if claimed is None:
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
        await self.pool.execute(_ANSWER, username, key, claim, answer.status, answer.body.decode())
        return answer

    async def _first(self, username: str, key: str, digest: str) -> Answer:
        row = await self.pool.fetchrow(_FIRST, username, key)
        if row is not None and row["request_sha256"] != digest:
            raise KeyRefused(
                422,
                f"{HEADER} {key!r} was already used for another request of {username} within the last "
                f"{_hours(self.ttl)}; use a new key for a new request",
            )
        if row is None or row["status_code"] is None:
            raise KeyRefused(
                409, f"a request with {HEADER} {key!r} is still being answered; retry shortly", retry_after=1
            )
        return Answer(row["status_code"], row["answer"].encode(), replayed=True)

    def _release_later(self, username: str, key: str, claim: uuid.UUID) -> None:
        task = asyncio.get_running_loop().create_task(self._release(username, key, claim))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, username: str, key: str, claim: uuid.UUID) -> None:
        try:
            async with asyncio.timeout(CLAIM_LEASE.total_seconds()):
                await self.pool.execute(_RELEASE, username, key, claim)
        except Exception:  # noqa: BLE001 - the lease frees the claim anyway
            log.warning("could not release %s %r of %s; its lease will", HEADER, key, username, exc_info=True)

    async def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = now
            await self.pool.execute(_PURGE, self.ttl)


def _hours(ttl: timedelta) -> str:
    hours = ttl.total_seconds() / 3600
    return f"{hours:g} h"
