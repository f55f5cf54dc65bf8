"""The order once checked out (R5–R7, P5, P10–P12): what was bought, what has been paid, and the
one decision about every payment delivered to it.

`Order.apply` is the only place a payment is judged: duplicate, applied, partial, overpaid or
unmatched. The workflow asks; the ledger records the answer; nobody sums payments again.
"""

from datetime import date, datetime, timedelta
from typing import Any

from renewals.calls import CreateOrder, RequestCharge
from renewals.dates import after, rome_today
from renewals.messages import PaymentEntry
from renewals.payments import instructions
from renewals.records import OrderLine, Quote
from renewals.types import Model, PaymentMethod, PaymentStatus, Stage
from renewals.views import OrderView, PaymentOutcome, PaymentSeen

CURRENCY = "EUR"


class Order(Model):
    """A confirmed order. It travels in workflow histories: fields may be added with defaults,
    never removed or renamed without `workflow.patched` (docs/evolving-models.md)."""

    number: str
    years: int
    method: PaymentMethod
    lines: list[OrderLine]
    quote: Quote
    ordered_at: datetime
    due_by: datetime
    paid_cents: int = 0
    payments: list[PaymentSeen] = []
    new_expires_on: date | None = None
    invoice: str | None = None  # P17: "FT-2026-000001", or "not issued (missing_billing_data)"

    @classmethod
    def confirmed(cls, number: str, request: CreateOrder) -> "Order":
        return cls(
            number=number,
            years=request.years,
            method=request.payment_method,
            lines=request.lines,
            quote=request.quote,
            ordered_at=request.ordered_at,
            due_by=request.due_by,
        )

    # ------------------------------------------------------------------ money

    @property
    def balance_cents(self) -> int:
        return max(self.quote.total_cents - self.paid_cents, 0)

    @property
    def refund_cents(self) -> int:
        return max(self.paid_cents - self.quote.total_cents, 0)

    @property
    def is_paid(self) -> bool:
        return self.paid_cents >= self.quote.total_cents

    @property
    def paid_in_full_at(self) -> datetime | None:
        """When the payment that completed the order was registered: the invoice's date (P17)."""
        paid = 0
        for payment in self.payments:
            if payment.status != "unmatched":
                paid += payment.amount_cents
                if paid >= self.quote.total_cents:
                    return payment.registered_at
        return None

    def seen(self, transaction_id: str) -> PaymentSeen | None:
        return next((p for p in self.payments if p.transaction_id == transaction_id), None)

    def apply(self, entry: PaymentEntry, at: datetime, *, open: bool) -> PaymentOutcome:
        """P5, P10, P11, P12 for one payment delivered to this order's renewal; updates `paid_cents`.

        `at` is when the payment reached us (the ledger's clock); `open` is whether the renewal
        still takes payments (not lapsing, not cancelled, not closed)."""
        if self.seen(entry.transaction_id) is not None:
            return self._outcome("duplicate", entry)
        status, note = self._judge(entry, at, open)
        if status != "unmatched":
            self.paid_cents += entry.amount_cents
            status = "partial" if not self.is_paid else ("applied" if self.refund_cents == 0 else "overpaid")
        self.payments.append(
            PaymentSeen(
                transaction_id=entry.transaction_id,
                amount_cents=entry.amount_cents,
                method=entry.method,
                status=status,
                registered_at=entry.registered_at,
                by_hand=entry.by_hand,
                note=note,
            )
        )
        return self._outcome(status, entry, note)

    def _judge(self, entry: PaymentEntry, at: datetime, open: bool) -> tuple[PaymentStatus, str | None]:
        """None of P10–P12 stands in the way: 'applied' (refined by the amount), else unmatched and why."""
        if entry.order_number != self.number:
            return "unmatched", f"quotes {entry.order_number!r}, not order {self.number}"
        if entry.currency.upper() != CURRENCY:
            return "unmatched", f"paid in {entry.currency}, the order is in {CURRENCY} (P11)"
        if at > self.due_by:
            return "unmatched", f"arrived after the deadline of {self.due_by.isoformat()} (P12)"
        if not open:
            return "unmatched", f"order {self.number} is closed (P10)"
        return "applied", None

    def _outcome(self, status: PaymentStatus, entry: PaymentEntry, note: str | None = None) -> PaymentOutcome:
        return PaymentOutcome(
            status=status,
            order_number=entry.order_number,
            transaction_id=entry.transaction_id,
            paid_cents=self.paid_cents,
            balance_cents=self.balance_cents,
            refund_cents=self.refund_cents if status == "overpaid" else 0,
            note=note,
        )

    # ------------------------------------------------------------------ deadline

    def extended(self, days: int, limit: datetime) -> datetime:
        """An ops extension of the deadline by whole Rome days, never past `limit` (R2)."""
        return min(after(self.due_by, timedelta(days=days)), limit)

    # ------------------------------------------------------------------ presentation

    def view(self, stage: Stage) -> OrderView:
        return OrderView(
            order_number=self.number,
            stage=stage,
            years=self.years,
            payment_method=self.method,
            lines=self.lines,
            net_cents=self.quote.net_cents,
            discount_cents=self.quote.discount_cents,
            vat_cents=self.quote.vat_cents,
            total_cents=self.quote.total_cents,
            paid_cents=self.paid_cents,
            balance_cents=self.balance_cents,
            due_by=self.due_by,
            payment_instructions=instructions(self.number, self.quote.total_cents),
            new_expires_on=self.new_expires_on,
            invoice=self.invoice,
        )

    def charge_request(self, username: str) -> RequestCharge:
        """P16: the charge of a card or PayPal automatic order, on the day it was ordered (so a
        refused card leaves the customer until the expiry date to pay another way)."""
        return RequestCharge.model_validate(
            {
                "order_number": self.number,
                "username": username,
                "amount_cents": self.quote.total_cents,
                "method": self.method,
                "charge_on": rome_today(self.ordered_at),
            }
        )

    def email_fields(self) -> dict[str, Any]:
        """What every email about this order says of it (SendEmail's order fields)."""
        return {
            "order_number": self.number,
            "total_cents": self.quote.total_cents,
            "paid_cents": self.paid_cents,
            "balance_cents": self.balance_cents,
            "refund_cents": self.refund_cents,
            "due_by": self.due_by,
            "new_expires_on": self.new_expires_on,
            "instructions": instructions(self.number, self.quote.total_cents),
        }


def without_order(entry: PaymentEntry) -> PaymentOutcome:
    """A payment delivered to a renewal that never reached checkout: nothing to pay (P10)."""
    note = "the renewal has no order (P10)"
    return PaymentOutcome(
        status="unmatched",
        order_number=entry.order_number,
        transaction_id=entry.transaction_id,
        paid_cents=0,
        balance_cents=0,
        note=note,
    )
