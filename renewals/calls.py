"""Activity arguments and results: one model in, one model out, for every activity. They travel in
histories: add optional fields only."""

from datetime import date, datetime
from typing import Literal

from renewals.messages import DayCount, PaymentEntry
from renewals.records import AddonQuantity, DiscountCode, OrderLine, PriceList, Quote, ServiceRecord
from renewals.types import Model, PaymentMethod, RenewalMode, Username
from renewals.views import PaymentInstructions, PaymentOutcome

EmailTemplate = Literal[
    "payment_instructions",
    "reminder",
    "balance_due",
    "order_lapsed",
    "order_cancelled",
    "renewal_confirmed",
    # The service's year (P15, P16): sent by the daily run, the expired one also by a lapsed
    # automatic order (the same mail-log key, renewals.year.notice_key: one email).
    "expiry_notice",
    "service_expired",
    "service_ceased",
    # P16: a card or PayPal automatic order, the date and amount of the charge.
    "auto_renew_charge",
    # P18: SdI could not deliver the invoice (MC): it is in the holder's reserved area.
    "invoice_not_delivered",
    # P20: an automatic order's charge was declined (the first time; after the last retry).
    "charge_declined",
    "charge_declined_last",
]


class LoadService(Model):
    username: Username


class RenewalContext(Model):
    """What a renewal needs from PostgreSQL when it opens: the service and today's price list."""

    service: ServiceRecord
    prices: PriceList


class FindDiscountCode(Model):
    code: str


class DiscountLookup(Model):
    found: DiscountCode | None


class CreateOrder(Model):
    workflow_id: str
    run_id: str
    username: str
    mode: RenewalMode
    years: int
    payment_method: PaymentMethod
    discount_code: str | None
    lines: list[OrderLine]
    quote: Quote
    previous_expires_on: date
    due_by: datetime
    ordered_at: datetime


class CreatedOrder(Model):
    order_number: str


class OrderOwner(Model):
    """Whose order a payment quotes, with the totals its renewal last recorded."""

    username: str
    total_cents: int
    paid_cents: int
    # The order's state in the ledger's tables: 'expired' once lapsed (P3), and its deadline (P12).
    status: str | None = None
    due_by: datetime | None = None

    @property
    def balance_cents(self) -> int:
        return max(self.total_cents - self.paid_cents, 0)


class FindOnTimePayments(Model):
    """At the deadline: the payments for `order_number` the ledger took by `due_by` that no
    renewal has settled (P12)."""

    order_number: str
    due_by: datetime


class OnTimePayments(Model):
    entries: list[PaymentEntry] = []


class SettlePayment(Model):
    entry: PaymentEntry
    outcome: PaymentOutcome


class Activate(Model):
    order_number: str
    username: str
    years: int
    cart_addons: list[AddonQuantity]
    paid_at: datetime
    # P17: the invoice is dated the Rome day the payment was registered (falls back to paid_at).
    payment_registered_at: datetime | None = None


class Activation(Model):
    previous_expires_on: date
    new_expires_on: date
    # P17: the order's invoice (None: not issued; invoice_state says why, e.g. missing_billing_data).
    invoice_number: str | None = None
    invoice_state: str | None = None


class CloseOrder(Model):
    order_number: str
    status: Literal["expired", "cancelled"]
    reason: str
    closed_at: datetime


class ChangeDueBy(Model):
    order_number: str
    due_by: datetime
    reason: str


class ChangeMethod(Model):
    """P20: an unpaid order to be paid another way (the customer's choice)."""

    order_number: str
    method: PaymentMethod
    reason: str


class RequestCharge(Model):
    """A card or PayPal automatic order's charge (P16): a `charge_requested` event to the payments
    back office, recorded in `charge_requests` first."""

    order_number: str
    username: str
    amount_cents: int
    currency: str = "EUR"
    method: Literal["card", "paypal"]
    charge_on: date
    # P20: this charge's own id (`<order number>/<n>`), the event's `attempt` and Idempotency-Key.
    # None in requests recorded before it: the order's only attempt, `<order number>/1`.
    attempt: str | None = None

    @property
    def attempt_id(self) -> str:
        return self.attempt or f"{self.order_number}/1"


class ChargeRequested(Model):
    """`acknowledged`: the back office answered 2xx; False when no PAYMENTS_WEBHOOK_URL is set (only recorded)."""

    acknowledged: bool
    attempts: int


class SendEmail(Model):
    """One logical email; `key` is unique per email so a retry never sends it twice."""

    key: str
    template: EmailTemplate
    username: str
    to_name: str
    to_email: str
    order_number: str | None = None
    total_cents: int | None = None
    paid_cents: int | None = None
    balance_cents: int | None = None
    refund_cents: int | None = None
    due_by: datetime | None = None
    new_expires_on: date | None = None
    reminder_number: int | None = None
    reason: str | None = None
    instructions: PaymentInstructions | None = None
    # The service's year (P15, P16).
    expires_on: date | None = None
    days_left: int | None = None
    reactivate_until: date | None = None
    charge_on: date | None = None
    action_url: str | None = None
    # P18: the invoice an email is about.
    invoice_number: str | None = None
    # P20: `action_url` is a page of the customer's own (the order's payment choices): the mailer
    # signs it for `username` until this time (the order's deadline), so it signs the customer in.
    link_until: datetime | None = None


class EmailSent(Model):
    message_id: str
    already_sent: bool


class DuePage(Model):
    """One page of a day's work of one kind (P15, P16): services past `after` in username order."""

    day: date
    kind: str
    expires_on: date
    auto_renew: bool
    after: str = ""
    limit: int
    action_url: str = ""
    reactivation_days: int = 90


class PageDone(Model):
    count: DayCount
    last: str | None  # the last username the page covered; None: nothing left
