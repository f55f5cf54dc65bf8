"""The orders a renewal makes and decides about (`orders`, `order_lines`): created once per
workflow run, activated with the service's new expiry and the invoice in one transaction (R7, P1,
P17), closed (P3), their deadline and payment method changed (P12, P20). Each change is audited in
its own transaction; each is idempotent in the data (unique keys, `ON CONFLICT`, state checks in
the statement or under a row lock), so a retried activity changes nothing more."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import asyncpg

from db.audit import audit
from db.invoices import StoredInvoice, invoice_of_order, issue_invoice
from db.services import extend_service
from renewals.billing import Seller
from renewals.calls import Activate, CreateOrder


class AutoOrderExists(Exception):
    """P16: the expiry already has its automatic order (`orders_auto_renew_once`)."""

    def __init__(self, order_number: str | None) -> None:
        super().__init__(order_number)
        self.order_number = order_number


class NotActivatable(Exception):
    """The order is missing (status None) or neither awaiting payment nor paid."""

    def __init__(self, status: str | None) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Activated:
    previous_expires_on: date
    new_expires_on: date
    # P17: the order's invoice (its state says whether it was issued); None: a paid order without one.
    invoice: StoredInvoice | None


_INSERT_ORDER = """
INSERT INTO orders (order_number, workflow_id, run_id, username, mode, years,
    payment_method, discount_code, net_cents, discount_cents, vat_cents,
    total_cents, previous_expires_on, due_by, created_at)
VALUES ('FE-' || $1::text || '-' || (SELECT lpad(n, greatest(6, length(n)), '0')
                                    FROM (SELECT nextval('order_number_seq')::text AS n) AS next),
        $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (run_id) DO NOTHING
RETURNING order_number
"""

_INSERT_LINE = """
INSERT INTO order_lines (order_number, line_no, product, label, quantity, years,
                         unit_price_cents, net_cents)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""


async def create_order(pool: asyncpg.Pool, request: CreateOrder, year: int) -> str:
    """The order's number, `FE-<year>-<n>`. One order per workflow run (unique run_id): a retry
    gets the order already made. A second automatic order for one expiry is AutoOrderExists (P16)."""
    try:
        return await _insert_order(pool, request, year)
    except asyncpg.UniqueViolationError as error:
        if error.constraint_name != "orders_auto_renew_once":
            raise
    existing: str | None = await pool.fetchval(
        "SELECT order_number FROM orders WHERE username = $1 AND previous_expires_on = $2"
        " AND mode = 'auto_renew' AND status <> 'cancelled'",
        request.username,
        request.previous_expires_on,
    )
    raise AutoOrderExists(existing)


async def _insert_order(pool: asyncpg.Pool, request: CreateOrder, year: int) -> str:
    async with pool.acquire() as conn, conn.transaction():
        order_number: str | None = await conn.fetchval(
            _INSERT_ORDER,
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
            return existing
        await conn.executemany(
            _INSERT_LINE,
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
        await audit(
            conn,
            request.username,
            order_number,
            "order_created",
            total_cents=request.quote.total_cents,
            years=request.years,
            payment_method=request.payment_method,
            due_by=request.due_by,
        )
    return order_number


async def activate(pool: asyncpg.Pool, request: Activate, *, seller: Seller) -> Activated:
    """R7 and P1 in one transaction: extend the expiry from the old one, renew the add-ons, set the
    auto-renew term (R5), mark the order paid, issue its invoice (P17). Idempotent per order under
    its row lock: a paid order gets back what its activation did. NotActivatable otherwise."""
    async with pool.acquire() as conn, conn.transaction():
        order = await conn.fetchrow(
            "SELECT status, previous_expires_on, new_expires_on FROM orders WHERE order_number = $1 FOR UPDATE",
            request.order_number,
        )
        if order is None:
            raise NotActivatable(None)
        if order["status"] == "paid":
            return Activated(
                previous_expires_on=order["previous_expires_on"],
                new_expires_on=order["new_expires_on"],
                invoice=await invoice_of_order(conn, request.order_number),
            )
        if order["status"] != "awaiting_payment":
            raise NotActivatable(order["status"])
        previous, new = await extend_service(conn, request.username, request.years, request.cart_addons)
        await conn.execute(
            "UPDATE orders SET status = 'paid', paid_at = $2, previous_expires_on = $3,"
            " new_expires_on = $4 WHERE order_number = $1",
            request.order_number,
            request.paid_at,
            previous,
            new,
        )
        await audit(
            conn,
            request.username,
            request.order_number,
            "activated",
            previous_expires_on=previous,
            new_expires_on=new,
            years=request.years,
        )
        # P17: the invoice, numbered in this same transaction (db/invoices.py);
        # last, so the year's counter row stays locked only until the commit just below.
        invoice = await issue_invoice(
            conn,
            request.order_number,
            seller=seller,
            registered_at=request.payment_registered_at or request.paid_at,
        )
    return Activated(previous_expires_on=previous, new_expires_on=new, invoice=invoice)


async def close(pool: asyncpg.Pool, order_number: str, status: str, reason: str, closed_at: datetime) -> None:
    """Lapse (P3) or cancel an unpaid order; closing a closed order changes nothing."""
    async with pool.acquire() as conn, conn.transaction():
        username = await conn.fetchval(
            """
            UPDATE orders SET status = $2, close_reason = $3, closed_at = $4
            WHERE order_number = $1 AND status = 'awaiting_payment'
            RETURNING username
            """,
            order_number,
            status,
            reason,
            closed_at,
        )
        if username is not None:
            await audit(conn, username, order_number, "order_" + status, reason=reason)


async def change_due_by(pool: asyncpg.Pool, order_number: str, due_by: datetime, reason: str) -> None:
    """Move an unpaid order's deadline; once: the same deadline again audits nothing more."""
    await _change_unpaid(pool, order_number, "due_by", due_by, "due_by_changed", due_by=due_by, reason=reason)


async def change_method(pool: asyncpg.Pool, order_number: str, method: str, reason: str) -> None:
    """P20: once: a retried activity finds the order already changed and audits nothing more."""
    await _change_unpaid(
        pool, order_number, "payment_method", method, "payment_method_changed", method=method, reason=reason
    )


async def _change_unpaid(
    pool: asyncpg.Pool,
    order_number: str,
    column: Literal["due_by", "payment_method"],
    value: object,
    event: str,
    **details: object,
) -> None:
    """One column of an order awaiting payment set to `value`, audited as `event` when it changed."""
    async with pool.acquire() as conn, conn.transaction():
        username = await conn.fetchval(
            f"""
            UPDATE orders SET {column} = $2
            WHERE order_number = $1 AND status = 'awaiting_payment' AND {column} <> $2
            RETURNING username
            """,
            order_number,
            value,
        )
        if username is not None:
            await audit(conn, username, order_number, event, **details)
