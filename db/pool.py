"""The asyncpg pool every process builds once: bounded statements, a cheap release."""

import asyncpg

# Seconds any one statement may take before asyncpg gives up on it (P14). Between the database's
# own bounds (migrations/011_runtime_timeouts.sql): above its lock_timeout, so a lock wait ends
# with the server's clean error naming the lock, and below its statement_timeout, which ends on the
# server a statement whose cancel never arrived.
COMMAND_TIMEOUT = 10.0


async def _reset(conn: asyncpg.Connection) -> None:
    """On release to the pool. asyncpg's default resets session state (RESET ALL, UNLISTEN, advisory
    unlocks): a round trip per acquire, for state we never set. Only an open transaction matters."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(database_url: str, max_size: int = 10) -> asyncpg.Pool:
    # Every statement bounded (P14): a hung database fails the call, it never hangs it.
    return await asyncpg.create_pool(
        database_url, min_size=1, max_size=max_size, reset=_reset, command_timeout=COMMAND_TIMEOUT
    )
