"""Create the application database if missing, apply the migrations, seed the demo prices."""

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from db.migrations import apply_migrations

DEMO_PRICES = Path(__file__).resolve().parent / "demo_prices.sql"


async def ensure_database(database_url: str) -> None:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            # A database name cannot be a query parameter; quote it as an identifier.
            await conn.execute(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
    finally:
        await conn.close()


async def prepare(database_url: str, *, demo_prices: bool = True) -> list[str]:
    """Database, migrations and (for the local stack and tests) the demo price list."""
    await ensure_database(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        applied = await apply_migrations(conn)
        if demo_prices:
            await conn.execute(DEMO_PRICES.read_text())
        return applied
    finally:
        await conn.close()
