"""What the renewal workflow is started and told with: its input and policy, its updates, its result
(and the ledger reconciler's). They travel in histories: add optional fields only, never rename one
(docs/evolving-models.md)."""

from datetime import date, datetime, timedelta
from typing import Annotated

from pydantic import Field, StringConstraints

from renewals.types import (
    AddonName,
    Currency,
    Mode,
    Model,
    PaymentMethod,
    PaymentReference,
    PlainText,
    RegisteredAt,
    RenewalMode,
    Stage,
    Username,
)
from renewals.year import YearPolicy


class Policy(Model):
    """The waits of P2, P3, P4, R2 and R6; from the environment, carried in the workflow input."""

    reminders: list[timedelta]
    payment_deadline: timedelta
    cart_idle: timedelta
    reactivation_window: timedelta
    # R6: a card or PayPal order is normally paid at once; the instructions email waits this
    # long for that payment first. (A default, so inputs recorded before it still load.)
    instant_payment_grace: timedelta = timedelta(minutes=15)
    # R2: the window's last day is the 90th after expiry, not the 89th. Inputs recorded
    # before it lack the field and keep the boundary they were started with (no replay changes).
    reactivation_last_day_included: bool = False
    # P16: an expired service with auto-renew on (its automatic order lapsed) is offered
    # Reactivate. Inputs recorded before it lack the field and keep refusing, as they did.
    reactivate_with_auto_renew: bool = False
    # The customer's pages (PANEL_UI_URL): the Reactivate action in a lapsed automatic order's
    # email (P16). None in inputs recorded before it: the email then names no link.
    panel_ui_url: str | None = None
    # P20: new charges after a soft decline, counted from the first decline (renewals/dunning.py).
    # Inputs recorded before it have the default.
    charge_retries: list[timedelta] = Field(
        default_factory=lambda: [timedelta(days=1), timedelta(days=3), timedelta(days=7)]
    )


class RenewalInput(Model):
    username: Username
    # `auto_renew`: the automatic order of P16, started by the daily run (client/starts.py).
    mode: RenewalMode
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
    # The customer turned auto-renew off (P16): the reason is theirs, not "cancelled by ops".
    by_customer: bool = False

    @property
    def stated(self) -> str:
        """The order's close reason, saying who cancelled it."""
        return self.reason if self.by_customer else f"cancelled by ops: {self.reason}"


class PayByTransfer(Model):
    """P20: the customer pays a declined automatic order by bank transfer instead."""

    order_number: str


class RetryCharge(Model):
    """P20: the customer updated the card at the PSP and asks for a new charge now."""

    order_number: str


class ExtendDeadline(Model):
    days: int = Field(ge=1, le=365)
    reason: PlainText


class RenewalResult(Model):
    stage: Stage
    username: str
    order_number: str | None = None
    new_expires_on: date | None = None
    reason: str | None = None


class Reconcile(Model):
    """The ledger reconciler's run: rows left `received` longer than `older_than` are re-delivered,
    each on its own (I2): one delivery waits at most `row_timeout`; a failed row is tried again
    after `retry_after`, doubled at each failure up to `retry_after_max`, and is marked stuck for
    ops after `stuck_after` failures (and still tried)."""

    older_than: timedelta = timedelta(minutes=5)
    batch: int = 500
    row_timeout: timedelta = timedelta(seconds=10)
    retry_after: timedelta = timedelta(minutes=5)
    retry_after_max: timedelta = timedelta(hours=1)
    stuck_after: int = Field(default=5, ge=1)


class StuckPayment(Model):
    """A ledger row the reconciler could not deliver `stuck_after` times: for ops (I2)."""

    transaction_id: str
    order_number: str
    amount_cents: int
    attempts: int
    last_error: str | None = None
    stuck_since: datetime
    next_delivery_at: datetime | None = None


class Reconciled(Model):
    found: int
    statuses: dict[str, int] = {}
    # Deliveries that failed this run (each counted on its row and tried again later).
    failed: int = 0
    # Rows marked stuck and still undelivered: how many, and the longest stuck (I2).
    stuck_total: int = 0
    stuck: list[StuckPayment] = []


class DayRun(Model):
    """A day's run of the service's year (P15, P16). `day` None: the day the Schedule meant (its
    scheduled time in Rome), so a run caught up after downtime does the day it missed."""

    day: date | None = None
    year: YearPolicy = YearPolicy()
    page_size: int = Field(default=500, ge=1, le=5000)
    action_url: str = ""


class DayCount(Model):
    """Per kind of work: services found due, those done (notice sent, automatic order started),
    skipped (an order for the expiry open or paid), already done by an earlier run, refused by the
    mail server, and busy (a renewal already running for the service)."""

    due: int = 0
    done: int = 0
    skipped: int = 0
    already: int = 0
    refused: int = 0
    busy: int = 0

    def plus(self, other: "DayCount") -> "DayCount":
        return DayCount(**{name: getattr(self, name) + getattr(other, name) for name in DayCount.model_fields})


class DayReport(Model):
    day: date
    kinds: dict[str, DayCount] = {}
