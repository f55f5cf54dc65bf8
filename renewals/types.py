"""The vocabulary every model shares: the two bases (what travels in histories, what comes off the
wire), constrained strings, the closed sets of names, the renewal's stages (docs/rules.md)."""

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, StringConstraints

from renewals.mailbox import check_address

# Usernames reach SQL (always as parameters), workflow ids and email subjects: keep them plain.
Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$", strict=True)]
AddonName = Literal["extra_storage", "extra_users"]


ADDONS: tuple[AddonName, ...] = ("extra_storage", "extra_users")
PaymentMethod = Literal["card", "paypal", "bank_transfer", "postal_slip"]


INSTANT_METHODS: tuple[PaymentMethod, ...] = ("card", "paypal")
Mode = Literal["renew", "reactivate"]
# What a renewal is started for: the panel's two buttons (Mode, the wire), or the automatic order
# the daily run makes for a service with auto-renew on (P16). Orders carry it too.
RenewalMode = Literal["renew", "reactivate", "auto_renew"]


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
    # email of the renewal for ever (P14), so import refuses it first.
    check_address(value)
    return value


PlainText = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_no_control_characters)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$", max_length=254)]
# What `services import` accepts: an address the mailer can build an email for. Only the import
# checks it; a record already stored still loads, and its email is a recorded refusal if it fails.
MailableEmail = Annotated[Email, AfterValidator(_mailable)]


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

# How far the payments back office's clock may run ahead of ours (P17).
REGISTERED_AT_SKEW = timedelta(minutes=5)


def _not_in_the_future(value: datetime) -> datetime:
    # The invoice is dated by it (P17): a payment is registered when it happened, not later. Read
    # only at the edge: a model that travels in histories never asks the clock (replay).
    if value > datetime.now(UTC) + REGISTERED_AT_SKEW:
        minutes = int(REGISTERED_AT_SKEW.total_seconds() // 60)
        raise ValueError(
            f"must not be more than {minutes} minutes ahead of our clock: the invoice is dated by it (P17)"
        )
    return value


# What the back office sends: an instant, not in the future (the wire event only, see above).
RegisteredAtOnTheWire = Annotated[RegisteredAt, AfterValidator(_not_in_the_future)]


class Model(BaseModel):
    """A model that may travel in workflow histories: unknown fields are ignored, so histories
    recorded with a field since removed still load. May gain optional fields; never rename one."""

    model_config = ConfigDict(extra="ignore")


class WireModel(Model):
    """Strict about unknown fields: a typo in an event or an imported record is an error."""

    model_config = ConfigDict(extra="forbid")


class Stage(StrEnum):
    """Where a renewal is; kept in the search attribute RenewalStage."""

    OPENING = "OPENING"
    CART = "CART"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    ACTIVATED = "ACTIVATED"
    CART_ABANDONED = "CART_ABANDONED"
    ORDER_EXPIRED = "ORDER_EXPIRED"
    CANCELLED = "CANCELLED"
    REFUSED = "REFUSED"
