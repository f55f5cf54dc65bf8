"""The signatures the ingress already accepted (P21): each signed request is accepted once.

One row per accepted signature, claimed with one INSERT … ON CONFLICT DO NOTHING, so of two copies
of a request arriving together exactly one is accepted. A row is kept until its request's
timestamp is out of the window (then the signature is refused as stale without a look here), and
expired rows are deleted at most once a minute per process. This module owns the
`seen_signatures` table (migrations/007_seen_signatures.sql).
"""

import time

import asyncpg

# Beyond the timestamp's own window: the ingress hosts' and the database's clocks may differ by
# this much, and a row must outlive the moment any ingress still accepts its timestamp.
CLOCK_MARGIN_SECONDS = 60
PURGE_EVERY_SECONDS = 60.0

_FIRST_USE = """
INSERT INTO seen_signatures (signature, expires_at) VALUES ($1, to_timestamp($2))
ON CONFLICT (signature) DO NOTHING
RETURNING true
"""
_PURGE = "DELETE FROM seen_signatures WHERE expires_at < now()"


class SeenSignatures:
    """The accepted signatures, on the asyncpg pool of the ingress's store."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._last_purge = -PURGE_EVERY_SECONDS

    async def first_use(self, digest: bytes, expires_at: int) -> bool:
        """True the first time `digest` is seen; False for every later copy until it expires."""
        await self._purge_now_and_then()
        first: bool | None = await self.pool.fetchval(_FIRST_USE, digest, expires_at + CLOCK_MARGIN_SECONDS)
        return bool(first)

    async def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._last_purge >= PURGE_EVERY_SECONDS:
            self._last_purge = now
            await self.pool.execute(_PURGE)
