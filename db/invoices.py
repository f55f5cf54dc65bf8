"""The invoices table (P17): issuing a paid order's invoice inside the activation's own
transaction, reading one back (the confirmation email, `GET /panel/invoices/{number}`,
`starter.py invoice`), and its correction after SdI rejected it (P18). An issued invoice (state
'issued') is the outbox of its delivery: the activation that issues it starts the delivery once
its transaction has committed.

Numbering is gapless per Rome calendar year because the progressive is taken by an UPDATE of the
year's row in `invoice_counters` in the caller's transaction: that row stays locked until the
activation commits, so concurrent activations take their numbers one after another, and a
transaction that rolls back (a crash, a lost connection) gives its number back with everything
else. A sequence would not do: its values are spent even when the transaction rolls back.

Idempotent per order: the caller holds the order's row lock (`activate` in db/orders.py selects it
FOR UPDATE) and an order with an invoice gets the same one back, without taking a number.

Numbers and dates keep one order within a year (P17): an invoice is dated the Rome day its payment
was registered, but never before its order was made, never after today, and never before the last
invoice of its year, read under the same counter-row lock that gives the number. Issued invoices
are append-only (migrations/008_append_only.sql).
"""

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from db.sdi import add_transmission
from renewals.billing import BillingData, Seller
from renewals.dates import rome_today
from renewals.invoice import InvoiceError, InvoiceOrder, build_invoice
from renewals.records import OrderLine, Quote

MISSING_BILLING_DATA = "missing_billing_data"
INVALID = "invalid"
NOT_ISSUED = frozenset({MISSING_BILLING_DATA, INVALID})


@dataclass(frozen=True)
class StoredInvoice:
    order_number: str
    username: str
    state: str
    number: str | None
    year: int | None
    progressive: int | None
    issued_on: date | None
    file_name: str | None
    xml: str | None
    total_cents: int | None
    note: str | None

    @classmethod
    def of(cls, row: Any) -> "StoredInvoice":
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


COLUMNS = ", ".join(StoredInvoice.__dataclass_fields__)


async def _order(conn: asyncpg.Connection, order_number: str) -> tuple[InvoiceOrder, BillingData | None]:
    row = await conn.fetchrow(
        """
        SELECT o.username, o.payment_method, o.discount_code, o.net_cents, o.discount_cents, o.vat_cents,
               o.total_cents, o.previous_expires_on, o.new_expires_on, o.status, s.billing, d.percent_off
        FROM orders o
        JOIN services s ON s.username = o.username
        LEFT JOIN discount_codes d ON upper(d.code) = upper(o.discount_code)
        WHERE o.order_number = $1
        """,
        order_number,
    )
    if row is None or row["status"] != "paid" or row["new_expires_on"] is None:
        raise InvoiceError([f"order {order_number} is not paid and activated: no invoice"])
    lines = await conn.fetch(
        "SELECT product, label, quantity, years, unit_price_cents, net_cents FROM order_lines"
        " WHERE order_number = $1 ORDER BY line_no",
        order_number,
    )
    order = InvoiceOrder(
        order_number=order_number,
        username=row["username"],
        lines=[OrderLine(**dict(line)) for line in lines],
        quote=Quote(
            net_cents=row["net_cents"],
            discount_cents=row["discount_cents"],
            vat_cents=row["vat_cents"],
            total_cents=row["total_cents"],
        ),
        discount_code=row["discount_code"],
        discount_percent=row["percent_off"],
        payment_method=row["payment_method"],
        # P1: the renewed period starts the day after the previous expiry.
        period_start=row["previous_expires_on"] + timedelta(days=1),
        period_end=row["new_expires_on"],
    )
    billing = BillingData.model_validate_json(row["billing"]) if row["billing"] else None
    return order, billing


async def _record_not_issued(conn: asyncpg.Connection, order: InvoiceOrder, state: str, note: str) -> StoredInvoice:
    row = await conn.fetchrow(
        f"""
        INSERT INTO invoices (order_number, username, state, total_cents, note) VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (order_number) DO UPDATE
            SET state = EXCLUDED.state, note = EXCLUDED.note, updated_at = now()
        RETURNING {COLUMNS}
        """,
        order.order_number,
        order.username,
        state,
        order.quote.total_cents,
        note,
    )
    await audit(conn, order, "invoice_" + state, note=note)
    return StoredInvoice.of(row)


async def audit(conn: asyncpg.Connection, order: InvoiceOrder, event: str, **detail: Any) -> None:
    await conn.execute(
        "INSERT INTO renewal_events (username, order_number, event, detail) VALUES ($1, $2, $3, $4)",
        order.username,
        order.order_number,
        event,
        json.dumps(detail, default=str),
    )


async def issue_invoice(
    conn: asyncpg.Connection, order_number: str, *, seller: Seller, registered_at: datetime
) -> StoredInvoice:
    """The paid order's invoice, issued in the caller's transaction and dated the Rome day the
    payment was registered, within the bounds of `first_possible_day` and never before the last
    invoice of its year (the date is recorded in the audit trail with why, when it differs); or
    the invoice it already has. Never raises for the holder's data:
    without billing data (records imported before it) the order gets a row in state
    'missing_billing_data' and no number, for ops; an invoice that fails its checks (it cannot,
    for data that passed import) is recorded 'invalid' with the reasons, its number given back.
    Either way the activation goes on."""
    existing = await conn.fetchrow(f"SELECT {COLUMNS} FROM invoices WHERE order_number = $1", order_number)
    if existing is not None and existing["state"] not in NOT_ISSUED:
        return StoredInvoice.of(existing)
    order, billing = await _order(conn, order_number)
    if billing is None:
        return await _record_not_issued(
            conn, order, MISSING_BILLING_DATA, f"service {order.username} has no billing data: no invoice issued"
        )
    registered_on = rome_today(registered_at)
    ordered_on = rome_today(await conn.fetchval("SELECT created_at FROM orders WHERE order_number = $1", order_number))
    day = first_possible_day(registered_on, ordered_on=ordered_on, today=rome_today(datetime.now(UTC)))
    file_id = await conn.fetchval("SELECT nextval('invoice_file_seq')")
    try:
        # A savepoint: a bad invoice rolls back its number and nothing else of the activation.
        async with conn.transaction():
            # Last, so the year's row stays locked as briefly as possible: build, check, store, commit.
            progressive = await conn.fetchval(
                """
                INSERT INTO invoice_counters (year, last_progressive) VALUES ($1, 1)
                ON CONFLICT (year) DO UPDATE SET last_progressive = invoice_counters.last_progressive + 1
                RETURNING last_progressive
                """,
                day.year,
            )
            # Read under the year's row lock: no invoice of this year can be numbered in between.
            last_issued_on = await conn.fetchval(
                "SELECT issued_on FROM invoices WHERE year = $1 ORDER BY progressive DESC LIMIT 1", day.year
            )
            issued_on = max(day, last_issued_on or day)
            invoice = build_invoice(
                order,
                billing,
                seller,
                year=issued_on.year,
                progressive=progressive,
                issued_on=issued_on,
                file_id=file_id,
            )
            row = await conn.fetchrow(
                f"""
                INSERT INTO invoices (order_number, username, state, number, year, progressive, issued_on,
                                      file_name, xml, total_cents)
                VALUES ($1, $2, 'issued', $3, $4, $5, $6, $7, $8, $9)
                ON CONFLICT (order_number) DO UPDATE
                    SET state = 'issued', number = EXCLUDED.number, year = EXCLUDED.year,
                        progressive = EXCLUDED.progressive, issued_on = EXCLUDED.issued_on,
                        file_name = EXCLUDED.file_name, xml = EXCLUDED.xml, note = NULL, updated_at = now()
                    WHERE invoices.state IN ('missing_billing_data', 'invalid')
                RETURNING {COLUMNS}
                """,
                order_number,
                order.username,
                invoice.number,
                invoice.year,
                invoice.progressive,
                invoice.issued_on,
                invoice.file_name,
                invoice.xml.decode(),
                order.quote.total_cents,
            )
            if row is None:
                # Issued meanwhile by a caller that did not hold the order's lock: raising rolls
                # this number back (no gap); the retry returns the invoice issued.
                raise RuntimeError(f"order {order_number} got its invoice concurrently; retry")
    except InvoiceError as error:
        return await _record_not_issued(conn, order, INVALID, str(error))
    await add_transmission(conn, invoice.number, invoice.file_name, invoice.xml.decode())  # the outbox (P18)
    detail: dict[str, Any] = {
        "number": invoice.number,
        "file_name": invoice.file_name,
        "issued_on": issued_on,
        "registered_on": registered_on,
    }
    if issued_on != registered_on:  # never silently another day than the payment's
        detail["dated_otherwise"] = dating_reason(registered_on, issued_on, ordered_on)
    await audit(conn, order, "invoice_issued", **detail)
    return StoredInvoice.of(row)


def first_possible_day(registered_on: date, *, ordered_on: date, today: date) -> date:
    """P17: the Rome day the payment was registered, bounded to the days the invoice can carry:
    not before its order was made (a back office date of 2001 opens no 2001 series) and not after
    today (SdI refuses an invoice dated after it receives it). The last invoice of the year, read
    under the counter's lock, may push it later still (`issue_invoice`)."""
    return min(max(registered_on, ordered_on), today)


def dating_reason(registered_on: date, issued_on: date, ordered_on: date) -> str:
    if registered_on < ordered_on and issued_on == ordered_on:
        return f"registered_at {registered_on} is before the order was made on {ordered_on} (P17)"
    if registered_on > issued_on:
        return f"registered_at {registered_on} is after today (P17)"
    return f"an invoice of {issued_on.year} numbered before it is dated {issued_on} (P17: dates follow numbers)"


async def issue_for_paid_order(pool: asyncpg.Pool, order_number: str, *, seller: Seller) -> StoredInvoice:
    """Ops, once a service got its billing data: issue the invoice of an order activated without it
    (state missing_billing_data), dated the Rome day the payment that completed it was registered.
    The same numbering, lock and idempotency as at activation; an issued invoice comes back as is."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval("SELECT status FROM orders WHERE order_number = $1 FOR UPDATE", order_number)
        if status != "paid":
            raise InvoiceError([f"order {order_number} is {status or 'unknown'}: only a paid order is invoiced"])
        registered_at = await conn.fetchval(
            """
            SELECT coalesce(
                (SELECT max(registered_at) FROM payments
                 WHERE order_number = $1 AND status IN ('applied', 'overpaid')),
                (SELECT paid_at FROM orders WHERE order_number = $1))
            """,
            order_number,
        )
        return await issue_invoice(conn, order_number, seller=seller, registered_at=registered_at)


async def reissue_invoice(pool: asyncpg.Pool, number: str, *, seller: Seller) -> StoredInvoice:
    """P18: a rejected invoice (NS) rebuilt from the holder's billing data as ops corrected it, with
    the same number and date, in a new file (SdI refuses a file name it has seen); the new file is
    the next to send. Raises InvoiceError while the data still fails the checks, or for an invoice
    that is not rejected."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM invoices WHERE number = $1 FOR UPDATE", number)
        if row is None:
            raise InvoiceError([f"no invoice numbered {number!r}"])
        stored = StoredInvoice.of(row)
        if stored.state != "rejected":
            raise InvoiceError([f"invoice {number} is {stored.state}: only a rejected invoice is corrected and resent"])
        order, billing = await _order(conn, stored.order_number)
        if billing is None:
            raise InvoiceError([f"service {order.username} has no billing data"])
        assert stored.year is not None and stored.progressive is not None and stored.issued_on is not None
        invoice = build_invoice(
            order,
            billing,
            seller,
            year=stored.year,
            progressive=stored.progressive,
            issued_on=stored.issued_on,
            file_id=await conn.fetchval("SELECT nextval('invoice_file_seq')"),
        )
        row = await conn.fetchrow(
            f"""
            UPDATE invoices SET state = 'issued', file_name = $2, xml = $3, sdi_id = NULL, note = NULL,
                updated_at = now()
            WHERE number = $1
            RETURNING {COLUMNS}
            """,
            number,
            invoice.file_name,
            invoice.xml.decode(),
        )
        await add_transmission(conn, number, invoice.file_name, invoice.xml.decode())
        await audit(conn, order, "invoice_reissued", number=number, file_name=invoice.file_name)
        return StoredInvoice.of(row)


# ---------------------------------------------------------------------- reads


async def invoice_by_number(db: asyncpg.Pool | asyncpg.Connection, number: str) -> StoredInvoice | None:
    row = await db.fetchrow(f"SELECT {COLUMNS} FROM invoices WHERE number = $1", number)
    return StoredInvoice.of(row) if row else None


async def invoice_of_order(db: asyncpg.Pool | asyncpg.Connection, order_number: str) -> StoredInvoice | None:
    row = await db.fetchrow(f"SELECT {COLUMNS} FROM invoices WHERE order_number = $1", order_number)
    return StoredInvoice.of(row) if row else None
