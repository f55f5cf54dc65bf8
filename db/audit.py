"""The audit trail: every change to an order, a payment or a service, in the same transaction."""

import json
from typing import Any

import asyncpg


async def audit(conn: asyncpg.Connection, username: str, order_number: str | None, event: str, **detail: Any) -> None:
    await conn.execute(
        "INSERT INTO renewal_events (username, order_number, event, detail) VALUES ($1, $2, $3, $4)",
        username,
        order_number,
        event,
        json.dumps(detail, default=str),
    )
