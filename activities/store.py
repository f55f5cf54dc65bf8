"""The renewal's PostgreSQL activities: load the service, look up a discount code, create the order,
settle a payment, activate (with its invoice, P17), close the order, move its deadline, change its
payment method (P20).

The SQL lives in `db/` (db/orders.py, db/ledger.py, db/services.py, db/invoices.py), where
idempotency lives in the data: unique keys and `ON CONFLICT`, and state checks under a row lock
inside one transaction, never an `if` that races. These activities call it, and turn its refusals
into the ApplicationErrors a renewal reads.
"""

import copy
from collections.abc import Awaitable, Callable

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from db import orders
from db.invoices import StoredInvoice
from db.ledger import Ledger
from db.mail_log import MailLog
from db.pool import create_pool
from db.services import Services
from renewals import errors
from renewals.billing import Seller
from renewals.calls import (
    Activate,
    Activation,
    ChangeDueBy,
    ChangeMethod,
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
from renewals.dates import rome_today
from renewals.delivery import DeliveryInput
from renewals.payments import dev_seller

# Starts an invoice's delivery through SdI (P18), or finds it started: one per invoice, ever.
StartDelivery = Callable[[DeliveryInput], Awaitable[None]]


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
        # P17: the seller on every invoice; the worker passes SELLER_*, tests and tools the dev one.
        self.seller = seller if seller is not None else dev_seller()

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
        return DiscountLookup(found=await self.services.discount_code(request.code))

    @activity.defn
    async def create_order(self, request: CreateOrder) -> CreatedOrder:
        """One order per workflow run (unique run_id): a retry returns the order already made."""
        year = rome_today(request.ordered_at).year
        try:
            return CreatedOrder(order_number=await orders.create_order(self.pool, request, year))
        except orders.AutoOrderExists as exists:
            # P16: one automatic order per expiry, however often the day runs; a refusal, not a retry.
            raise ApplicationError(
                f"an automatic order for the expiry {request.previous_expires_on.isoformat()} already exists"
                f" ({exists.order_number}): no second one is made (P16)",
                type=errors.AUTO_ORDER_EXISTS,
                non_retryable=True,
            ) from None

    @activity.defn
    async def settle_payment(self, request: SettlePayment) -> None:
        """Record what P5 decided for a payment; the same settlement twice changes nothing."""
        await self.ledger.settle(request.entry, request.outcome)

    @activity.defn
    async def activate(self, request: Activate) -> Activation:
        """R7 and P1 in one transaction: extend the expiry from the old one, renew the add-ons,
        set the auto-renew term (R5), mark the order paid. Idempotent per order. Then the invoice's
        delivery through SdI starts (P18): once the transaction has committed, before the activation
        is done, so a retry after a crash in between starts it then (never two: one workflow id)."""
        try:
            activated = await orders.activate(self.pool, request, seller=self.seller)
        except orders.NotActivatable as refused:
            why = "does not exist" if refused.status is None else f"is {refused.status} and cannot be activated"
            raise ApplicationError(
                f"order {request.order_number} {why}", type=errors.ORDER_CLOSED, non_retryable=True
            ) from None
        invoice = activated.invoice
        if invoice is not None:
            await self._deliver(invoice, request)
        return Activation(
            previous_expires_on=activated.previous_expires_on,
            new_expires_on=activated.new_expires_on,
            invoice_number=invoice.number if invoice else None,
            invoice_state=invoice.state if invoice else None,
        )

    async def _deliver(self, invoice: StoredInvoice, request: Activate) -> None:
        if invoice.number is None or self.start_delivery is None:
            return
        to_name, to_email = await self.services.holder(invoice.username)
        await self.start_delivery(
            DeliveryInput(
                number=invoice.number,
                order_number=invoice.order_number,
                username=invoice.username,
                to_name=to_name,
                to_email=to_email,
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
        await orders.close(self.pool, request.order_number, request.status, request.reason, request.closed_at)

    @activity.defn
    async def change_method(self, request: ChangeMethod) -> None:
        await orders.change_method(self.pool, request.order_number, request.method, request.reason)

    @activity.defn
    async def change_due_by(self, request: ChangeDueBy) -> None:
        await orders.change_due_by(self.pool, request.order_number, request.due_by, request.reason)
