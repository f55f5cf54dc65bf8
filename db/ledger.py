"""The payments ledger (P11): every payment written before any renewal hears of it; what the
ingress and the reconciler read back. Which status a payment gets is the renewal's decision."""

from datetime import datetime
from typing import Any

import asyncpg

from db.audit import audit
from renewals.calls import OrderOwner
from renewals.messages import PaymentEntry


class TransactionConflict(Exception):
    """A transaction id already in the ledger arrives with other details."""


def ledger_values(entry: PaymentEntry) -> tuple[Any, ...]:
    """A payment's columns, in the order of every INSERT INTO payments below."""
    return (
        entry.transaction_id,
        entry.order_number,
        entry.amount_cents,
        entry.currency,
        entry.method,
        entry.registered_at,
        entry.by_hand,
    )


class Ledger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def receive(self, entry: PaymentEntry) -> datetime:
        """Write a payment to the ledger before anything else hears of it (P11: whatever it quotes).

        Returns when the ledger took it (a repeat returns the first time). The same transaction
        id with other details is a TransactionConflict: an error upstream, never a second payment.
        Whether a repeat is a duplicate is the order's renewal's decision, not the ledger's.
        """
        async with self.pool.acquire() as conn:
            known = await conn.fetchrow(
                """
                WITH inserted AS (
                    INSERT INTO payments (transaction_id, order_number, amount_cents, currency, method,
                                          registered_at, by_hand)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    ON CONFLICT (transaction_id) DO NOTHING
                    RETURNING order_number, amount_cents, currency, method, received_at
                )
                SELECT * FROM inserted
                UNION ALL
                SELECT order_number, amount_cents, currency, method, received_at FROM payments
                WHERE transaction_id = $1 AND NOT EXISTS (SELECT 1 FROM inserted)
                """,
                *ledger_values(entry),
            )
        if (known["order_number"], known["amount_cents"], known["currency"], known["method"]) != (
            entry.order_number,
            entry.amount_cents,
            entry.currency,
            entry.method,
        ):
            raise TransactionConflict(
                f"transaction {entry.transaction_id} was already registered for {known['order_number']!r}, "
                f"{known['amount_cents']} {known['currency']} by {known['method']}"
            )
        received_at: datetime = known["received_at"]
        return received_at

    async def settle_unmatched(self, transaction_id: str, note: str) -> bool:
        """Keep a payment no renewal can take (unknown or closed order, P5/P10/P11) for ops.
        True when it was waiting and is unmatched now; False when it had been settled before."""
        async with self.pool.acquire() as conn, conn.transaction():
            order_number = await conn.fetchval(
                """
                UPDATE payments SET status = 'unmatched', note = $2, settled_at = now()
                WHERE transaction_id = $1 AND status = 'received'
                RETURNING order_number
                """,
                transaction_id,
                note,
            )
            if order_number is None:
                return False
            username = await conn.fetchval("SELECT username FROM orders WHERE order_number = $1", order_number)
            await audit(
                conn, username or "", order_number, "payment_unmatched", transaction_id=transaction_id, note=note
            )
            return True

    async def order_owner(self, order_number: str) -> OrderOwner | None:
        """Whose order a payment quotes, and what its renewal last recorded as paid; None if unknown."""
        row = await self.pool.fetchrow(
            "SELECT username, total_cents, paid_cents FROM orders WHERE order_number = $1", order_number
        )
        if row is None:
            return None
        return OrderOwner(username=row["username"], total_cents=row["total_cents"], paid_cents=row["paid_cents"])

    async def stuck(self, received_before: datetime, limit: int = 500) -> list[PaymentEntry]:
        """Ledger rows still `received` (the renewal never heard of them), oldest first."""
        rows = await self.pool.fetch(
            """
            SELECT transaction_id, order_number, amount_cents, currency, method, registered_at, by_hand,
                   received_at
            FROM payments WHERE status = 'received' AND received_at < $1
            ORDER BY received_at LIMIT $2
            """,
            received_before,
            limit,
        )
        return [PaymentEntry(**dict(row)) for row in rows]
