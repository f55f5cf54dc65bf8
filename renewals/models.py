"""Every model that crosses a boundary: service records, prices, workflow inputs, updates, views.

One definition each (STYLE.md): the workflow, the activities, the ingress and the tests import
these, and the SDK's pydantic data converter carries them through Temporal.

Two bases: `Model` for what travels in workflow histories (it ignores fields it does not know,
so a field removed later, or a worker rolled back, still replays: docs/evolving-models.md) and
`WireModel` for what arrives from outside (it refuses unknown fields: a typo is an error).
"""

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from renewals.billing import BillingData
from renewals.mailbox import check_address

# Usernames reach SQL (always as parameters), workflow ids and email subjects: keep them plain.
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$", strict=True)]
AddonName = Literal["extra_storage", "extra_users"]
ADDONS: tuple[AddonName, ...] = ("extra_storage", "extra_users")
PaymentMethod = Literal["card", "paypal", "bank_transfer", "postal_slip"]
INSTANT_METHODS: tuple[PaymentMethod, ...] = ("card", "paypal")
Mode = Literal["renew", "reactivate"]
PaymentStatus = Literal["applied", "partial", "overpaid", "duplicate", "unmatched"]
# The limit on any add-on's quantity, in a cart and on a service (CHECK in the database too).
MAX_ADDON_QUANTITY = 1000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control_characters(value: str) -> str:
    # CR/LF in a name would become a header line in the customer's email.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (CR, LF, tab, ...)")
    return value


def _mailable(value: str) -> str:
    # The parser the mailer builds the To header with: an address it refuses would fail every
    # email of the renewal for ever (issue 12), so import refuses it first.
    check_address(value)
    return value


PlainText = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_no_control_characters)]
Email = Annotated[
    str,
    StringConstraints(pattern=r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$", max_length=254),
    AfterValidator(_mailable),
]
# P11: a payment's reference is free text from a bank statement (kept, matched if it can be).
PaymentReference = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,140}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_upper=True)]


def _storable_instant(value: datetime) -> datetime:
    # An offset can push the instant past year 9999 (or before year 1) in UTC: no store can hold it.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be an instant between the years 1 and 9999 in UTC") from None
    return value


RegisteredAt = Annotated[AwareDatetime, AfterValidator(_storable_instant)]


class Model(BaseModel):
    """A model that may travel in workflow histories: unknown fields are ignored, so histories
    recorded with a field since removed still load. May gain optional fields; never rename one."""

    model_config = ConfigDict(extra="ignore")


class WireModel(Model):
    """Strict about unknown fields: a typo in an event or an imported record is an error."""

    model_config = ConfigDict(extra="forbid")


class Stage(StrEnum):
    """Where a renewal is (DESIGN.md §4); kept in the search attribute RenewalStage."""

    OPENING = "OPENING"
    CART = "CART"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    ACTIVATED = "ACTIVATED"
    CART_ABANDONED = "CART_ABANDONED"
    ORDER_EXPIRED = "ORDER_EXPIRED"
    CANCELLED = "CANCELLED"
    REFUSED = "REFUSED"


class AddonQuantity(Model):
    addon: AddonName
    quantity: int = Field(ge=1, le=MAX_ADDON_QUANTITY)


class ServiceRecord(Model):
    """A service as the provisioning system describes it (`starter.py services import`)."""

    username: Username
    holder_name: PlainText
    holder_email: Email
    promotional: bool = False
    purchased_on: date
    expires_on: date
    auto_renew: bool
    auto_renew_years: int = Field(1, ge=1, le=10)
    storage_quota_mb: int = Field(ge=1)
    storage_used_mb: int = Field(ge=0)
    included_users: int = Field(1, ge=1)
    addons: list[AddonQuantity] = []
    billing: BillingData | None = None  # the invoice's holder (P17); records before it have none

    @model_validator(mode="after")
    def _consistent(self) -> "ServiceRecord":
        if self.expires_on < self.purchased_on:
            raise ValueError("expires_on must not be before purchased_on")
        names = [line.addon for line in self.addons]
        if len(names) != len(set(names)):
            raise ValueError("addons must list each add-on once")
        return self


class ServiceImport(ServiceRecord, WireModel):
    """A record as `services import` reads it: strict about unknown fields."""


class Product(Model):
    """One line of the price list: EUR cents per year, net of VAT (P6)."""

    product: str
    label: str
    unit_price_cents: int = Field(ge=0)
    unit_mb: int | None = None


class PriceList(Model):
    products: dict[str, Product]

    def get(self, product: str) -> Product:
        try:
            return self.products[product]
        except KeyError:
            raise ValueError(f"product {product!r} is not in the price list") from None


class DiscountCode(Model):
    code: str
    percent_off: int = Field(ge=1, le=100)
    valid_from: date
    valid_to: date | None = None
    product: str | None = None


class Policy(Model):
    """The waits of P2, P3, P4, R2 and R6; from the environment, carried in the workflow input."""

    reminders: list[timedelta]
    payment_deadline: timedelta
    cart_idle: timedelta
    reactivation_window: timedelta
    # R6: a card or PayPal order is normally paid at once; the instructions email waits this
    # long for that payment first. (A default, so inputs recorded before it still load.)
    instant_payment_grace: timedelta = timedelta(minutes=15)
    # R2 (issue 18): the window's last day is the 90th after expiry, not the 89th. Inputs recorded
    # before it lack the field and keep the boundary they were started with (no replay changes).
    reactivation_last_day_included: bool = False


# ---------------------------------------------------------------- workflow input and updates


class RenewalInput(Model):
    username: Username
    mode: Mode
    policy: Policy


class OpenRequest(Model):
    """The renew/reactivate press: opens the cart, or returns the one already open (P8)."""

    mode: Mode


class AddAddon(Model):
    addon: AddonName
    quantity: int = Field(1, ge=1, le=100)


class RemoveAddon(Model):
    addon: AddonName


class ApplyDiscount(Model):
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]


class Checkout(Model):
    payment_method: PaymentMethod
    years: int = Field(ge=1, le=10)


class PaymentFields(Model):
    """What the payments back office says of a payment it registered (P11: only the transaction id
    and the amount are checked; the reference and the currency are kept as they came)."""

    order_number: PaymentReference
    transaction_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    amount_cents: int = Field(ge=1, le=100_000_000)
    currency: Currency = "EUR"
    method: PaymentMethod
    registered_at: RegisteredAt


class PaymentEntry(PaymentFields):
    """A payments-ledger entry, delivered to the order's renewal after the ledger write."""

    by_hand: bool = False
    # When the ledger took it (our clock): the deadline is a time (P12), judged against this.
    received_at: datetime | None = None


class CancelOrder(Model):
    reason: PlainText


class ExtendDeadline(Model):
    days: int = Field(ge=1, le=365)
    reason: PlainText


# ---------------------------------------------------------------- views (DESIGN.md §5)


class OrderLine(Model):
    product: str
    label: str
    quantity: int
    years: int
    unit_price_cents: int
    net_cents: int


class Quote(Model):
    net_cents: int
    discount_cents: int
    vat_cents: int
    total_cents: int


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


class CartView(Model):
    stage: Stage
    mode: Mode
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
    mode: Mode
    username: str
    reason: str | None = None
    cart: CartView | None = None
    order: OrderView | None = None
    payments: list[PaymentSeen] = []
    emails: list[str] = []


class RenewalResult(Model):
    stage: Stage
    username: str
    order_number: str | None = None
    new_expires_on: date | None = None
    reason: str | None = None


# ---------------------------------------------------------------- activity inputs and results

EmailTemplate = Literal[
    "payment_instructions",
    "reminder",
    "balance_due",
    "order_lapsed",
    "order_cancelled",
    "renewal_confirmed",
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
    mode: Mode
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

    @property
    def balance_cents(self) -> int:
        return max(self.total_cents - self.paid_cents, 0)


class Reconcile(Model):
    """The ledger reconciler's run: rows left `received` longer than `older_than` are re-delivered."""

    older_than: timedelta = timedelta(minutes=5)
    batch: int = 500


class Reconciled(Model):
    found: int
    statuses: dict[str, int] = {}


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


class EmailSent(Model):
    message_id: str
    already_sent: bool


# ---------------------------------------------------------------- events (DESIGN.md §5)


class RenewRequested(WireModel):
    type: Literal["renew_requested"]
    username: Username


class ReactivateRequested(WireModel):
    type: Literal["reactivate_requested"]
    username: Username


# The cart events are the updates they become, with the panel's envelope (`type`, `username`):
# one definition of their fields. The ingress hands the event itself to the update.


class AddonAdded(AddAddon, WireModel):
    type: Literal["addon_added"]
    username: Username


class AddonRemoved(RemoveAddon, WireModel):
    type: Literal["addon_removed"]
    username: Username


class DiscountCodeApplied(ApplyDiscount, WireModel):
    type: Literal["discount_code_applied"]
    username: Username


class CheckoutSubmitted(Checkout, WireModel):
    type: Literal["checkout_submitted"]
    username: Username


PanelEvent = Annotated[
    RenewRequested | ReactivateRequested | AddonAdded | AddonRemoved | DiscountCodeApplied | CheckoutSubmitted,
    Field(discriminator="type"),
]


class PaymentRegistered(PaymentFields, WireModel):
    """`POST /payments/events`: a payment the back office registered against an order."""

    type: Literal["payment_registered"]
    currency: Currency  # required on the wire

    def entry(self, *, by_hand: bool = False) -> PaymentEntry:
        return PaymentEntry(**self.model_dump(exclude={"type"}), by_hand=by_hand)


class ServiceStatusView(Model):
    """`GET /panel/services/{username}`: which button the panel shows (R1, R2)."""

    username: str
    status: Literal["active", "expired", "ceased"]
    expires_on: date
    auto_renew: bool
    action: Mode | None
    reason: str | None = None
