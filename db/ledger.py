"""The payments ledger (P11): every payment written before any renewal hears of it; what the
ingress, the reconciler and a renewal at its deadline read back; the reconciler's bookkeeping of
each row's delivery (I2). Which status a payment gets is the renewal's decision (`settle` records it)."""

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from db.audit import audit
from renewals.calls import OrderOwner
from renewals.messages import PaymentEntry, StuckPayment
from renewals.views import PaymentOutcome


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
            if known is None:
                # The same payment inserted at the same moment by another request: our insert
                # waited for it and did nothing, but this statement's snapshot predates its commit.
                # A new statement sees it; the repeat is then answered as any repeat.
                known = await conn.fetchrow(
                    "SELECT order_number, amount_cents, currency, method, received_at FROM payments"
                    " WHERE transaction_id = $1",
                    entry.transaction_id,
                )
        if known is None:
            raise RuntimeError(f"transaction {entry.transaction_id} neither inserted nor found in the ledger")
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

    async def settle(self, entry: PaymentEntry, outcome: PaymentOutcome) -> None:
        """Record what P5 decided for a payment (the renewal's `settle_payment`), with the order's
        count of what is paid; the same settlement twice changes nothing."""
        async with self.pool.acquire() as conn, conn.transaction():
            settled = await conn.fetchval(
                """
                INSERT INTO payments (transaction_id, order_number, amount_cents, currency, method,
                    registered_at, by_hand, status, refund_cents, settled_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
                ON CONFLICT (transaction_id) DO UPDATE
                    SET status = EXCLUDED.status, refund_cents = EXCLUDED.refund_cents,
                        note = $10, settled_at = now()
                    WHERE payments.status = 'received'
                RETURNING 1
                """,
                *ledger_values(entry),
                outcome.status,
                outcome.refund_cents,
                outcome.note,
            )
            if not settled:
                return
            # The renewal's own count of what is paid: the one source the ingress reads back.
            username = await conn.fetchval(
                """
                UPDATE orders SET paid_cents = greatest(paid_cents, $2)
                WHERE order_number = $1 RETURNING username
                """,
                entry.order_number,
                outcome.paid_cents if outcome.status in ("applied", "partial", "overpaid") else 0,
            )
            await audit(
                conn,
                username,
                entry.order_number,
                "payment_" + outcome.status,
                transaction_id=entry.transaction_id,
                amount_cents=entry.amount_cents,
                paid_cents=outcome.paid_cents,
                refund_cents=outcome.refund_cents,
                by_hand=entry.by_hand,
                note=outcome.note,
            )

    async def order_owner(self, order_number: str) -> OrderOwner | None:
        """Whose order a payment quotes, and what its renewal last recorded as paid; None if unknown."""
        row = await self.pool.fetchrow(
            "SELECT username, total_cents, paid_cents, status, due_by FROM orders WHERE order_number = $1",
            order_number,
        )
        if row is None:
            return None
        return OrderOwner(**dict(row))

    async def unsettled_by(self, order_number: str, due_by: datetime) -> list[PaymentEntry]:
        """The payments quoting `order_number` that the ledger took by `due_by` and that no renewal
        has settled yet, oldest first: on time by the ledger's clock (P12) however late they are
        delivered."""
        rows = await self.pool.fetch(
            f"""
            SELECT {_ENTRY_COLUMNS} FROM payments
            WHERE order_number = $1 AND status = 'received' AND received_at <= $2
            ORDER BY received_at, transaction_id
            """,
            order_number,
            due_by,
        )
        return [PaymentEntry(**dict(row)) for row in rows]

    # ------------------------------------------------------------------ the reconciler (I2)

    async def due_for_delivery(self, received_before: datetime, limit: int = 500) -> list[PaymentEntry]:
        """Rows still `received` (the renewal never heard of them) whose next attempt is due, the
        longest waiting first: a row that failed waits its backoff and lets the others go first."""
        rows = await self.pool.fetch(
            f"""
            SELECT {_ENTRY_COLUMNS} FROM payments
            WHERE status = 'received' AND received_at < $1 AND coalesce(next_delivery_at, received_at) <= now()
            ORDER BY coalesce(next_delivery_at, received_at), transaction_id
            LIMIT $2
            """,
            received_before,
            limit,
        )
        return [PaymentEntry(**dict(row)) for row in rows]

    async def delivery_failed(
        self, transaction_id: str, error: str, retry_after: timedelta, retry_after_max: timedelta, stuck_after: int
    ) -> bool:
        """Count a failed delivery on the row and set its next attempt: `retry_after`, doubled at
        each failure up to `retry_after_max`. At `stuck_after` failures the row is marked stuck
        (audited once); it is still tried. True when the row is stuck now."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                """
                UPDATE payments
                SET delivery_attempts = delivery_attempts + 1,
                    last_delivery_error = $2,
                    next_delivery_at = now()
                        + least($3::interval * power(2, least(delivery_attempts, 30)), $4::interval),
                    stuck_since = CASE WHEN stuck_since IS NULL AND delivery_attempts + 1 >= $5
                                       THEN now() ELSE stuck_since END
                WHERE transaction_id = $1 AND status = 'received'
                RETURNING order_number, delivery_attempts, stuck_since, stuck_since = now() AS stuck_now
                """,
                transaction_id,
                error,
                retry_after,
                retry_after_max,
                stuck_after,
            )
            if row is None:  # settled meanwhile
                return False
            if row["stuck_now"]:
                username = await conn.fetchval(
                    "SELECT username FROM orders WHERE order_number = $1", row["order_number"]
                )
                await audit(
                    conn,
                    username or "",
                    row["order_number"],
                    "payment_stuck",
                    transaction_id=transaction_id,
                    attempts=row["delivery_attempts"],
                    error=error,
                )
            return row["stuck_since"] is not None

    async def stuck(self, limit: int = 20) -> tuple[int, list[StuckPayment]]:
        """What ops look at: how many rows are marked stuck and still undelivered, and the
        longest stuck of them."""
        async with self.pool.acquire() as conn:
            total: int = await conn.fetchval(
                "SELECT count(*) FROM payments WHERE status = 'received' AND stuck_since IS NOT NULL"
            )
            rows = await conn.fetch(
                """
                SELECT transaction_id, order_number, amount_cents, delivery_attempts AS attempts,
                       last_delivery_error AS last_error, stuck_since, next_delivery_at
                FROM payments WHERE status = 'received' AND stuck_since IS NOT NULL
                ORDER BY stuck_since, transaction_id LIMIT $1
                """,
                limit,
            )
        return total, [StuckPayment(**dict(row)) for row in rows]


# A ledger row as a PaymentEntry (the renewal's view of a payment).
_ENTRY_COLUMNS = "transaction_id, order_number, amount_cents, currency, method, registered_at, by_hand, received_at"
