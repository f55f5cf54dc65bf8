"""What the panel, the customer's pages and ops read (the contract's views, docs/api.md): cart, order, payment
outcome, renewal, service status."""

from datetime import date, datetime
from typing import Literal

from renewals.records import AddonQuantity, OrderLine, Quote
from renewals.types import Mode, Model, PaymentMethod, PaymentStatus, RenewalMode, Stage


class DiscountView(Model):
    code: str
    percent_off: int
    product: str | None = None


class StorageAlert(Model):
    level: Literal["yellow", "red"]
    usage_percent: float
    estimated_extra_mb: int
    suggested_packs: int


class BankTransfer(Model):
    beneficiary: str
    iban: str
    reason: str


class PostalSlip(Model):
    account: str
    beneficiary: str
    reason: str


class PaymentInstructions(Model):
    order_number: str
    amount_cents: int
    bank_transfer: BankTransfer
    postal_slip: PostalSlip


class OrderView(Model):
    order_number: str
    stage: Stage
    years: int
    payment_method: PaymentMethod
    lines: list[OrderLine]
    net_cents: int
    discount_cents: int
    vat_cents: int
    total_cents: int
    paid_cents: int
    balance_cents: int
    due_by: datetime
    payment_instructions: PaymentInstructions
    new_expires_on: date | None = None
    invoice: str | None = None  # P17: the invoice's number once activated (GET /panel/invoices/{number})


class CartView(Model):
    stage: Stage
    mode: RenewalMode
    username: str
    expires_on: date
    active_addons: list[AddonQuantity]
    cart_addons: list[AddonQuantity]
    available_addons: list[AddonQuantity]
    discount: DiscountView | None
    allowed_years: list[int]
    storage_alert: StorageAlert | None
    quote: Quote
    order: OrderView | None = None


class PaymentOutcome(Model):
    status: PaymentStatus
    order_number: str
    transaction_id: str
    paid_cents: int
    balance_cents: int
    refund_cents: int = 0
    note: str | None = None


class ChargeAttemptView(Model):
    id: str
    why: str
    requested_at: datetime
    decline: str | None = None
    code: str | None = None
    message: str | None = None


class ChargeOutcomeView(Model):
    """The answer to a `charge_failed` event (P20): `recorded` and told to the order's renewal,
    `duplicate` (this attempt's outcome came before), or `ignored` with the reason (an unknown
    attempt, an order unknown, paid or closed). Never an error: the back office need not retry."""

    status: Literal["recorded", "duplicate", "ignored"]
    order_number: str
    attempt: str
    note: str | None = None


class PaymentSeen(Model):
    transaction_id: str
    amount_cents: int
    method: str
    status: PaymentStatus
    registered_at: datetime
    by_hand: bool
    note: str | None = None


class RenewalView(Model):
    """The whole renewal, for `GET /panel/renewals/{username}` and ops."""

    stage: Stage
    mode: RenewalMode
    username: str
    reason: str | None = None
    cart: CartView | None = None
    order: OrderView | None = None
    payments: list[PaymentSeen] = []
    emails: list[str] = []
    # P20: an automatic order's charge attempts, and while one was declined, the dunning state
    # (renewals/dunning.py) and the next automatic retry.
    charges: list[ChargeAttemptView] = []
    dunning: str | None = None
    next_charge_retry: datetime | None = None


class ServiceStatusView(Model):
    """`GET /panel/services/{username}`: which button the panel shows (R1, R2)."""

    username: str
    status: Literal["active", "expired", "ceased"]
    expires_on: date
    auto_renew: bool
    action: Mode | None
    reason: str | None = None
    # Auto-renew (P16): how the automatic order is paid (null: bank transfer), its term (R5: the
    # last paid order's), and the service's year ahead (P15, P16): the next notice and its kind
    # (`before-30`, `expired`, `ceased`, ...), the day of the next automatic order.
    auto_renew_method: PaymentMethod | None = None
    auto_renew_years: int = 1
    next_notice_on: date | None = None
    next_notice_kind: str | None = None
    next_auto_order_on: date | None = None
    # R5: a promotional product renews for 1 or 2 years only (the terms the switch offers).
    promotional: bool = False
