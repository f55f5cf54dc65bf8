"""Every PostgreSQL touch: migrations, the service import, the payments ledger and the renewal
activities (load, discount lookup, order, payment settlement, activation, closing).

Idempotency lives in the data: unique keys and `ON CONFLICT`, and state checks under a row lock
inside one transaction, never an `if` that races.
"""

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.invoicing import invoice_of_order, issue_invoice  # P17 (issue 17)
from renewals import errors
from renewals.billing import BillingData, Seller  # P17 (issue 17)
from renewals.calls import (
    Activate,
    Activation,
    ChangeDueBy,
    CloseOrder,
    CreatedOrder,
    CreateOrder,
    DiscountLookup,
    FindDiscountCode,
    LoadService,
    OrderOwner,
    RenewalContext,
    SettlePayment,
)
from renewals.dates import add_years, rome_today
from renewals.messages import PaymentEntry
from renewals.records import AddonQuantity, DiscountCode, PriceList, Product, ServiceRecord

# Seconds any one statement may take before asyncpg gives up on it (P14).
COMMAND_TIMEOUT = 10.0
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
            await conn.execute("SELECT pg_advisory_xact_lock(727001)")
            done = await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", version)
            if done:
                continue
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied_now.append(version)
    return applied_now


async def _audit(conn: asyncpg.Connection, username: str, order_number: str | None, event: str, **detail: Any) -> None:
    await conn.execute(
        "INSERT INTO renewal_events (username, order_number, event, detail) VALUES ($1, $2, $3, $4)",
        username,
        order_number,
        event,
        json.dumps(detail, default=str),
    )


class TransactionConflict(Exception):
    """A transaction id already in the ledger arrives with other details."""


def _ledger_values(entry: PaymentEntry) -> tuple[Any, ...]:
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


async def _reset(conn: asyncpg.Connection) -> None:
    """On release to the pool. asyncpg's default resets session state (RESET ALL, UNLISTEN, advisory
    unlocks): a round trip per acquire, for state we never set. Only an open transaction matters."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def _default_seller() -> Seller:
    from renewals.config import load_settings  # P17 (issue 17): SELLER_* when the caller passes none

    return load_settings().seller()


class Store:
    """The PostgreSQL store, holding one asyncpg pool built at start and passed in."""

    def __init__(self, pool: asyncpg.Pool, seller: Seller | None = None) -> None:
        self.pool = pool
        # P17 (issue 17): the issuer of the invoices activate() issues; SELLER_* by default.
        self.seller = seller if seller is not None else _default_seller()

    @classmethod
    async def connect(cls, database_url: str, *, max_size: int = 10, seller: Seller | None = None) -> "Store":
        # Every statement bounded (P14): a hung database fails the call, it never hangs it.
        pool = await asyncpg.create_pool(
            database_url, min_size=1, max_size=max_size, reset=_reset, command_timeout=COMMAND_TIMEOUT
        )
        return cls(pool, seller)

    async def close(self) -> None:
        await self.pool.close()

    # ------------------------------------------------------------ services

    async def upsert_services(self, records: Sequence[ServiceRecord]) -> dict[str, int]:
        """Insert or update by username, all in one transaction; returns counts."""
        counts = {"inserted": 0, "updated": 0}
        async with self.pool.acquire() as conn, conn.transaction():
            for record in records:
                inserted = await conn.fetchval(
                    """
                    INSERT INTO services (username, holder_name, holder_email, promotional,
                        purchased_on, expires_on, auto_renew, auto_renew_years,
                        storage_quota_mb, storage_used_mb, included_users)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                    ON CONFLICT (username) DO UPDATE SET
                        holder_name = EXCLUDED.holder_name, holder_email = EXCLUDED.holder_email,
                        promotional = EXCLUDED.promotional, purchased_on = EXCLUDED.purchased_on,
                        expires_on = EXCLUDED.expires_on, auto_renew = EXCLUDED.auto_renew,
                        auto_renew_years = EXCLUDED.auto_renew_years,
                        storage_quota_mb = EXCLUDED.storage_quota_mb,
                        storage_used_mb = EXCLUDED.storage_used_mb,
                        included_users = EXCLUDED.included_users, updated_at = now()
                    RETURNING (xmax = 0)
                    """,
                    record.username,
                    record.holder_name,
                    record.holder_email,
                    record.promotional,
                    record.purchased_on,
                    record.expires_on,
                    record.auto_renew,
                    record.auto_renew_years,
                    record.storage_quota_mb,
                    record.storage_used_mb,
                    record.included_users,
                )
                counts["inserted" if inserted else "updated"] += 1
                await conn.execute("DELETE FROM service_addons WHERE username = $1", record.username)
                await conn.executemany(
                    "INSERT INTO service_addons (username, addon, quantity) VALUES ($1, $2, $3)",
                    [(record.username, line.addon, line.quantity) for line in record.addons],
                )
                # P17 (issue 17): the holder's billing data, replaced like the add-ons.
                billing = record.billing.model_dump_json() if record.billing else None
                await conn.execute("UPDATE services SET billing = $2 WHERE username = $1", record.username, billing)
                await _audit(
                    conn,
                    record.username,
                    None,
                    "service_imported",
                    expires_on=record.expires_on,
                    inserted=bool(inserted),
                )
        return counts

    async def get_service(self, username: str) -> ServiceRecord | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM services WHERE username = $1", username)
            if row is None:
                return None
            addons = await conn.fetch(
                "SELECT addon, quantity FROM service_addons WHERE username = $1 ORDER BY addon",
                username,
            )
        fields = {name: row[name] for name in ServiceRecord.model_fields if name not in ("addons", "billing")}
        billing = BillingData.model_validate_json(row["billing"]) if row["billing"] else None  # P17 (issue 17)
        return ServiceRecord(
            **fields,
            addons=[AddonQuantity(addon=a["addon"], quantity=a["quantity"]) for a in addons],
            billing=billing,
        )

    async def price_list(self) -> PriceList:
        rows = await self.pool.fetch("SELECT * FROM products")
        return PriceList(products={row["product"]: Product(**dict(row)) for row in rows})

    # ------------------------------------------------------------ payments ledger (ingress side)

    async def receive_payment(self, entry: PaymentEntry) -> datetime:
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
                *_ledger_values(entry),
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
            await _audit(
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

    async def stuck_payments(self, received_before: datetime, limit: int = 500) -> list[PaymentEntry]:
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

    # ------------------------------------------------------------ activities

    @activity.defn
    async def load_service(self, request: LoadService) -> RenewalContext:
        service = await self.get_service(request.username)
        if service is None:
            raise ApplicationError(
                f"no service with username {request.username!r}",
                type=errors.UNKNOWN_SERVICE,
                non_retryable=True,
            )
        return RenewalContext(service=service, prices=await self.price_list())

    @activity.defn
    async def find_discount_code(self, request: FindDiscountCode) -> DiscountLookup:
        row = await self.pool.fetchrow("SELECT * FROM discount_codes WHERE upper(code) = upper($1)", request.code)
        return DiscountLookup(found=DiscountCode(**dict(row)) if row else None)

    @activity.defn
    async def create_order(self, request: CreateOrder) -> CreatedOrder:
        """One order per workflow run (unique run_id): a retry returns the order already made."""
        year = rome_today(request.ordered_at).year
        async with self.pool.acquire() as conn, conn.transaction():
            order_number = await conn.fetchval(
                """
                INSERT INTO orders (order_number, workflow_id, run_id, username, mode, years,
                    payment_method, discount_code, net_cents, discount_cents, vat_cents,
                    total_cents, previous_expires_on, due_by, created_at)
                VALUES ('FE-' || $1::text || '-' || lpad(nextval('order_number_seq')::text, 6, '0'),
                        $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                ON CONFLICT (run_id) DO NOTHING
                RETURNING order_number
                """,
                str(year),
                request.workflow_id,
                request.run_id,
                request.username,
                request.mode,
                request.years,
                request.payment_method,
                request.discount_code,
                request.quote.net_cents,
                request.quote.discount_cents,
                request.quote.vat_cents,
                request.quote.total_cents,
                request.previous_expires_on,
                request.due_by,
                request.ordered_at,
            )
            if order_number is None:
                existing: str = await conn.fetchval("SELECT order_number FROM orders WHERE run_id = $1", request.run_id)
                return CreatedOrder(order_number=existing)
            await conn.executemany(
                """
                INSERT INTO order_lines (order_number, line_no, product, label, quantity, years,
                                         unit_price_cents, net_cents)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                """,
                [
                    (
                        order_number,
                        number,
                        line.product,
                        line.label,
                        line.quantity,
                        line.years,
                        line.unit_price_cents,
                        line.net_cents,
                    )
                    for number, line in enumerate(request.lines, start=1)
                ],
            )
            await _audit(
                conn,
                request.username,
                order_number,
                "order_created",
                total_cents=request.quote.total_cents,
                years=request.years,
                payment_method=request.payment_method,
                due_by=request.due_by,
            )
        return CreatedOrder(order_number=order_number)

    @activity.defn
    async def settle_payment(self, request: SettlePayment) -> None:
        """Record what P5 decided for a payment; the same settlement twice changes nothing."""
        entry, outcome = request.entry, request.outcome
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
                *_ledger_values(entry),
                outcome.status,
                outcome.refund_cents,
                outcome.note,
            )
            if settled:
                # The renewal's own count of what is paid: the one source the ingress reads back.
                username = await conn.fetchval(
                    """
                    UPDATE orders SET paid_cents = greatest(paid_cents, $2)
                    WHERE order_number = $1 RETURNING username
                    """,
                    entry.order_number,
                    outcome.paid_cents if outcome.status in ("applied", "partial", "overpaid") else 0,
                )
                await _audit(
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

    @activity.defn
    async def activate(self, request: Activate) -> Activation:
        """R7 and P1 in one transaction: extend the expiry from the old one, renew the add-ons,
        set the auto-renew term (R5), mark the order paid. Idempotent per order."""
        async with self.pool.acquire() as conn, conn.transaction():
            order = await conn.fetchrow(
                "SELECT status, previous_expires_on, new_expires_on FROM orders WHERE order_number = $1 FOR UPDATE",
                request.order_number,
            )
            if order is None:
                raise ApplicationError(
                    f"order {request.order_number} does not exist",
                    type=errors.ORDER_CLOSED,
                    non_retryable=True,
                )
            if order["status"] == "paid":
                issued = await invoice_of_order(conn, request.order_number)  # P17 (issue 17)
                return Activation(
                    previous_expires_on=order["previous_expires_on"],
                    new_expires_on=order["new_expires_on"],
                    invoice_number=issued.number if issued else None,
                    invoice_state=issued.state if issued else None,
                )
            if order["status"] != "awaiting_payment":
                raise ApplicationError(
                    f"order {request.order_number} is {order['status']} and cannot be activated",
                    type=errors.ORDER_CLOSED,
                    non_retryable=True,
                )
            previous = await conn.fetchval(
                "SELECT expires_on FROM services WHERE username = $1 FOR UPDATE", request.username
            )
            new = add_years(previous, request.years)
            await conn.execute(
                "UPDATE services SET expires_on = $2, auto_renew_years = $3, updated_at = now() WHERE username = $1",
                request.username,
                new,
                request.years,
            )
            await conn.executemany(
                """
                INSERT INTO service_addons (username, addon, quantity) VALUES ($1, $2, $3)
                ON CONFLICT (username, addon)
                    DO UPDATE SET quantity = service_addons.quantity + EXCLUDED.quantity
                """,
                [(request.username, line.addon, line.quantity) for line in request.cart_addons],
            )
            await conn.execute(
                "UPDATE orders SET status = 'paid', paid_at = $2, previous_expires_on = $3,"
                " new_expires_on = $4 WHERE order_number = $1",
                request.order_number,
                request.paid_at,
                previous,
                new,
            )
            await _audit(
                conn,
                request.username,
                request.order_number,
                "activated",
                previous_expires_on=previous,
                new_expires_on=new,
                years=request.years,
            )
            # P17 (issue 17): the invoice, numbered in this same transaction (activities/invoicing.py);
            # last, so the year's counter row stays locked only until the commit just below.
            invoice = await issue_invoice(
                conn,
                request.order_number,
                seller=self.seller,
                registered_at=request.payment_registered_at or request.paid_at,
            )
        return Activation(
            previous_expires_on=previous,
            new_expires_on=new,
            invoice_number=invoice.number,
            invoice_state=invoice.state,
        )

    @activity.defn
    async def close_order(self, request: CloseOrder) -> None:
        """Lapse (P3) or cancel an unpaid order; closing a closed order changes nothing."""
        async with self.pool.acquire() as conn, conn.transaction():
            username = await conn.fetchval(
                """
                UPDATE orders SET status = $2, close_reason = $3, closed_at = $4
                WHERE order_number = $1 AND status = 'awaiting_payment'
                RETURNING username
                """,
                request.order_number,
                request.status,
                request.reason,
                request.closed_at,
            )
            if username is not None:
                await _audit(
                    conn,
                    username,
                    request.order_number,
                    "order_" + request.status,
                    reason=request.reason,
                )

    @activity.defn
    async def change_due_by(self, request: ChangeDueBy) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            username = await conn.fetchval(
                """
                UPDATE orders SET due_by = $2
                WHERE order_number = $1 AND status = 'awaiting_payment' AND due_by <> $2
                RETURNING username
                """,
                request.order_number,
                request.due_by,
            )
            if username is not None:
                await _audit(
                    conn,
                    username,
                    request.order_number,
                    "due_by_changed",
                    due_by=request.due_by,
                    reason=request.reason,
                )

    # ------------------------------------------------------------ email log (used by mail.py)

    async def claim_email(
        self,
        key: str,
        template: str,
        recipient: str,
        subject: str,
        message_id: str,
        username: str,
        order_number: str | None,
    ) -> str:
        """Log a logical email before sending it; returns its status ('sending' or 'sent')."""
        # One statement: a no-op update on conflict makes RETURNING give the existing row.
        status: str = await self.pool.fetchval(
            """
            INSERT INTO email_log (key, template, recipient, subject, message_id, username,
                                   order_number)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key
            RETURNING status
            """,
            key,
            template,
            recipient,
            subject,
            message_id,
            username,
            order_number,
        )
        return status

    async def mark_email_refused(self, key: str, why: str) -> None:
        await self.pool.execute(
            "UPDATE email_log SET status = 'refused', note = $2 WHERE key = $1 AND status = 'sending'", key, why
        )

    async def mark_email_sent(self, key: str, sent_at: datetime) -> None:
        await self.pool.execute(
            "UPDATE email_log SET status = 'sent', sent_at = $2 WHERE key = $1 AND status = 'sending'",
            key,
            sent_at,
        )
