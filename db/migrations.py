"""The migrations runner: `migrations/NNN_name.sql`, each applied once, in order, in its own transaction."""

from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


async def apply_migrations(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the `NNN_name.sql` files not yet applied, each in its own transaction, in order.

    Returns the versions applied now (none on a second run). An advisory lock keeps two
    processes starting together from applying the same file twice.
    """
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied_now = []
    for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
        version = path.stem
        async with conn.transaction():
            # A migration may take long and wait for locks: the database's bounds for every session
            # (migrations/011_runtime_timeouts.sql) are not for it.
            await conn.execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
            await conn.execute("SELECT pg_advisory_xact_lock(727001)")
            done = await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", version)
            if done:
                continue
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    return applied_now
