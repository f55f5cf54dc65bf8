"""The customer pages' sign-ins in PostgreSQL (migrations/010_ui_sessions.sql): each sign-in link
used once, each session ended on the server by sign-out. The keys are digests
(ingress/ui_session.py `digest`), never a value that signs anyone in.
"""

from datetime import UTC, datetime

import asyncpg


def _instant(unix_seconds: float) -> datetime:
    return datetime.fromtimestamp(unix_seconds, UTC)


async def link_used(pool: asyncpg.Pool, link_key: str) -> bool:
    return bool(await pool.fetchval("SELECT true FROM ui_used_links WHERE link_sha256 = $1", link_key))


async def use_link(pool: asyncpg.Pool, link_key: str, username: str, usable_until: float) -> bool:
    """True for the first use of a link; False for every later one, whoever makes it (a unique key:
    two uses at once cannot both win)."""
    first = await pool.fetchval(
        "INSERT INTO ui_used_links (link_sha256, username, expires_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (link_sha256) DO NOTHING RETURNING true",
        link_key,
        username,
        _instant(usable_until),
    )
    return bool(first)


async def start_session(pool: asyncpg.Pool, session_key: str, role: str, subject: str, expires: float) -> None:
    await pool.execute(
        "INSERT INTO ui_sessions (session_sha256, role, subject, expires_at) VALUES ($1, $2, $3, $4)",
        session_key,
        role,
        subject,
        _instant(expires),
    )


async def session_is_live(pool: asyncpg.Pool, session_key: str) -> bool:
    """Started here and not ended by sign-out (the cookie's own signature says until when)."""
    found = await pool.fetchval(
        "SELECT true FROM ui_sessions WHERE session_sha256 = $1 AND ended_at IS NULL", session_key
    )
    return bool(found)


async def end_session(pool: asyncpg.Pool, session_key: str) -> None:
    await pool.execute(
        "UPDATE ui_sessions SET ended_at = now() WHERE session_sha256 = $1 AND ended_at IS NULL", session_key
    )


async def forget_expired(pool: asyncpg.Pool, now: float) -> None:
    """Rows that can no longer matter: links past their last accepted moment, sessions past expiry."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM ui_used_links WHERE expires_at < $1", _instant(now))
        await conn.execute("DELETE FROM ui_sessions WHERE expires_at < $1", _instant(now))
