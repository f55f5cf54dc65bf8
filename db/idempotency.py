"""The stored first answers of panel events by Idempotency-Key (P13, docs/api.md): one row per
(username, key), owned here (migrations/003_idempotency.sql). The rules of when a key is claimed,
replayed or refused are ingress/idempotency.py's; this module only reads and writes the rows.

A key is claimed with one INSERT … ON CONFLICT: of two concurrent requests with the same key only
one gets the row. The claim is taken over when the row is older than the key's lifetime, or when
it was never answered and its holder's lease ran out.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

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


@dataclass(frozen=True)
class Stored:
    """A key's row: the fingerprint of the request that claimed it, and its answer once given."""

    request_sha256: str
    status: int | None
    answer: str | None


async def claim(
    pool: asyncpg.Pool, username: str, key: str, digest: str, holder: uuid.UUID, ttl: timedelta, lease: timedelta
) -> bool:
    """True when `holder` (this request) now holds the key: it was free, past `ttl`, or an unanswered claim
    past `lease`; False when another request holds it or answered it."""
    claimed = await pool.fetchval(_CLAIM, username, key, digest, holder, ttl, lease)
    return claimed is not None


async def first(pool: asyncpg.Pool, username: str, key: str) -> Stored | None:
    row = await pool.fetchrow(_FIRST, username, key)
    if row is None:
        return None
    return Stored(row["request_sha256"], row["status_code"], row["answer"])


async def answer(pool: asyncpg.Pool, username: str, key: str, holder: uuid.UUID, status: int, body: str) -> None:
    """Keep the answer of the request that holds the claim, once."""
    await pool.execute(_ANSWER, username, key, holder, status, body)


async def release(pool: asyncpg.Pool, username: str, key: str, holder: uuid.UUID) -> None:
    """Let go of an unanswered claim, so that the next request with the key runs."""
    await pool.execute(_RELEASE, username, key, holder)


async def purge(pool: asyncpg.Pool, ttl: timedelta) -> None:
    """Forget the keys claimed longer than `ttl` ago."""
    await pool.execute(_PURGE, ttl)
