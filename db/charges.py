"""The charges of card and PayPal automatic orders (P16, P20): one `charge_requests` row per attempt,
one `charge_outcomes` row per attempt's answer from the payments back office."""

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg


@dataclass(frozen=True)
class ChargeRow:
    attempts: int
    acknowledged: bool


async def record_request(
    pool: asyncpg.Pool,
    *,
    attempt: str,
    order_number: str,
    username: str,
    amount_cents: int,
    currency: str,
    method: str,
    charge_on: date,
    url: str | None,
) -> ChargeRow:
    """The attempt's row, made once (a retried activity finds it)."""
    row = await pool.fetchrow(
        """
        INSERT INTO charge_requests (attempt, order_number, username, amount_cents, currency, method, charge_on, url)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (attempt) DO UPDATE SET url = EXCLUDED.url
        RETURNING attempts, acknowledged_at
        """,
        attempt,
        order_number,
        username,
        amount_cents,
        currency,
        method,
        charge_on,
        url,
    )
    return ChargeRow(attempts=row["attempts"], acknowledged=row["acknowledged_at"] is not None)


async def record_post(pool: asyncpg.Pool, attempt: str, error: str | None) -> int:
    """One POST of the attempt to the back office, acknowledged (no error) or not; the count."""
    attempts: int = await pool.fetchval(
        """
        UPDATE charge_requests
        SET attempts = attempts + 1, last_error = $2,
            acknowledged_at = CASE WHEN $2::text IS NULL THEN now() END
        WHERE attempt = $1
        RETURNING attempts
        """,
        attempt,
        error,
    )
    return attempts


@dataclass(frozen=True)
class OutcomeRow:
    """What was recorded of an attempt's outcome (a repeat finds the first one's state and note)."""

    state: str
    note: str | None
    known_attempt: bool
    received_at: datetime


async def record_outcome(
    pool: asyncpg.Pool,
    *,
    attempt: str,
    order_number: str,
    outcome: str,
    decline: str | None,
    code: str | None,
    message: str | None,
) -> OutcomeRow:
    """The outcome, once per attempt: a repeat is counted on the row and changes nothing."""
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchrow(
            """
            INSERT INTO charge_outcomes (attempt, order_number, outcome, decline, code, message)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (attempt) DO NOTHING
            RETURNING state, note, received_at
            """,
            attempt,
            order_number,
            outcome,
            decline,
            code,
            message,
        )
        if inserted is None:
            row = await conn.fetchrow(
                """
                UPDATE charge_outcomes SET repeats = repeats + 1 WHERE attempt = $1
                RETURNING state, note, received_at
                """,
                attempt,
            )
        else:
            row = inserted
        known = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM charge_requests WHERE attempt = $1 AND order_number = $2)",
            attempt,
            order_number,
        )
    return OutcomeRow(
        state=row["state"],
        note=row["note"],
        known_attempt=known,
        received_at=row["received_at"],
    )


async def settle_outcome(pool: asyncpg.Pool, attempt: str, state: str, note: str | None) -> None:
    await pool.execute(
        "UPDATE charge_outcomes SET state = $2, note = $3 WHERE attempt = $1 AND state = 'received'",
        attempt,
        state,
        note,
    )
