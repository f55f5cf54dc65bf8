"""The renewal's PostgreSQL activities: load the service, look up a discount code, create the order,
settle a payment, activate (with its invoice, P17), close the order, move its deadline.

Idempotency lives in the data: unique keys and `ON CONFLICT`, and state checks under a row lock
inside one transaction, never an `if` that races. The queries the ingress runs itself, the
migrations, the ledger and the mail log live in `db/`.
"""

import copy
from collections.abc import Awaitable, Callable

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db.audit import audit
from db.invoices import StoredInvoice, invoice_of_order, issue_invoice
from db.ledger import Ledger, ledger_values
from db.mail_log import MailLog
from db.pool import create_pool
from db.services import Services
from renewals import errors
from renewals.billing import Seller
from renewals.calls import (
    Activate,
    Activation,
    ChangeDueBy,
    CloseOrder,
    CreatedOrder,
    CreateOrder,
    DiscountLookup,
    FindDiscountCode,
    FindOnTimePayments,
    LoadService,
    OnTimePayments,
    RenewalContext,
    SettlePayment,
)
from renewals.dates import add_years, rome_today
from renewals.delivery import DeliveryInput
from renewals.records import DiscountCode

# Starts an invoice's delivery through SdI (P18), or finds it started: one per invoice, ever.
StartDelivery = Callable[[DeliveryInput], Awaitable[None]]


def _default_seller() -> Seller:
    from renewals.config import load_settings  # P17: SELLER_* when the caller passes none

    return load_settings().seller()


class Store:
    """The renewal's activities on PostgreSQL, holding one asyncpg pool built at start and passed in,
    and the tables' owners beside them (`services`, `ledger`, `mail_log`) for the ingress and the CLI."""

    def __init__(self, pool: asyncpg.Pool, seller: Seller | None = None) -> None:
        self.pool = pool
        # P18: the worker's (`delivering_with`); without it an issued invoice waits in the outbox.
        self.start_delivery: StartDelivery | None = None
        self.services = Services(pool)
        self.ledger = Ledger(pool)
        self.mail_log = MailLog(pool)
        # P17: the issuer of the invoices activate() issues; SELLER_* by default.
        self.seller = seller if seller is not None else _default_seller()

    def delivering_with(self, start: StartDelivery) -> "Store":
        """This store (the same pool), whose activations start their invoice's delivery with `start`."""
        clone = copy.copy(self)
        clone.start_delivery = start
        return clone

    @classmethod
    async def connect(cls, database_url: str, *, max_size: int = 10, seller: Seller | None = None) -> "Store":
        return cls(await create_pool(database_url, max_size), seller)

    async def close(self) -> None:
        await self.pool.close()

    # ------------------------------------------------------------ activities

    @activity.defn
    async def load_service(self, request: LoadService) -> RenewalContext:
        service = await self.services.get(request.username)
        if service is None:
            raise ApplicationError(
                f"no service with username {request.username!r}",
                type=errors.UNKNOWN_SERVICE,
                non_retryable=True,
            )
        return RenewalContext(service=service, prices=await self.services.price_list())

    @activity.defn
    async def find_discount_code(self, request: FindDiscountCode) -> DiscountLookup:
        row = await self.pool.fetchrow("SELECT * FROM discount_codes WHERE upper(code) = upper($1)", request.code)
        return DiscountLookup(found=DiscountCode(**dict(row)) if row else None)

    @activity.defn
    async def create_order(self, request: CreateOrder) -> CreatedOrder:
        """One order per workflow run (unique run_id): a retry returns the order already made."""
        year = rome_today(request.ordered_at).year
        try:
            return await self._create_order(request, year)
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name != "orders_auto_renew_once":
                raise
            # P16: one automatic order per expiry, however often the day runs; a refusal, not a retry.
            existing = await self.pool.fetchval(
                "SELECT order_number FROM orders WHERE username = $1 AND previous_expires_on = $2"
                " AND mode = 'auto_renew' AND status <> 'cancelled'",
                request.username,
                request.previous_expires_on,
            )
            raise ApplicationError(
                f"an automatic order for the expiry {request.previous_expires_on.isoformat()} already exists"
                f" ({existing}): no second one is made (P16)",
                type=errors.AUTO_ORDER_EXISTS,
                non_retryable=True,
            ) from None

    async def _create_order(self, request: CreateOrder, year: int) -> CreatedOrder:
        async with self.pool.acquire() as conn, conn.transaction():
            order_number = await conn.fetchval(
                """
                INSERT INTO orders (order_number, workflow_id, run_id, username, mode, years,
                    payment_method, discount_code, net_cents, discount_cents, vat_cents,
                    total_cents, previous_expires_on, due_by, created_at)
                VALUES ('FE-' || $1::text || '-' || (SELECT lpad(n, greatest(6, length(n)), '0')
                                                    FROM (SELECT nextval('order_number_seq')::text AS n) AS next),
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
                *ledger_values(entry),
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

    @activity.defn
    async def activate(self, request: Activate) -> Activation:
        """R7 and P1 in one transaction: extend the expiry from the old one, renew the add-ons,
        set the auto-renew term (R5), mark the order paid. Idempotent per order. Then the invoice's
        delivery through SdI starts (P18): once the transaction has committed, before the activation
        is done, so a retry after a crash in between starts it then (never two: one workflow id)."""
        activation, invoice = await self._activation(request)
        if invoice is not None:
            await self._deliver(invoice, request)
        return activation

    async def _activation(self, request: Activate) -> tuple[Activation, StoredInvoice | None]:
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
                issued = await invoice_of_order(conn, request.order_number)
                done = Activation(
                    previous_expires_on=order["previous_expires_on"],
                    new_expires_on=order["new_expires_on"],
                    invoice_number=issued.number if issued else None,
                    invoice_state=issued.state if issued else None,
                )
                return done, issued
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
                seller=self.seller,
                registered_at=request.payment_registered_at or request.paid_at,
            )
        activation = Activation(
            previous_expires_on=previous,
            new_expires_on=new,
            invoice_number=invoice.number,
            invoice_state=invoice.state,
        )
        return activation, invoice

    async def _deliver(self, invoice: StoredInvoice, request: Activate) -> None:
        if invoice.number is None or self.start_delivery is None:
            return
        holder = await self.pool.fetchrow(
            "SELECT holder_name, holder_email FROM services WHERE username = $1", invoice.username
        )
        await self.start_delivery(
            DeliveryInput(
                number=invoice.number,
                order_number=invoice.order_number,
                username=invoice.username,
                to_name=holder["holder_name"],
                to_email=holder["holder_email"],
                paid_at=request.payment_registered_at or request.paid_at,
            )
        )

    @activity.defn
    async def find_on_time_payments(self, request: FindOnTimePayments) -> OnTimePayments:
        """P12 at the deadline, before an order lapses: the payments the ledger took in time that
        its renewal has not heard of (a delivery late or lost). A read: a local activity."""
        return OnTimePayments(entries=await self.ledger.unsettled_by(request.order_number, request.due_by))

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
                await audit(
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
                await audit(
                    conn,
                    username,
                    request.order_number,
                    "due_by_changed",
                    due_by=request.due_by,
                    reason=request.reason,
                )
