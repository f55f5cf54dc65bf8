"""The wire events of the contract (docs/api.md: `POST /panel/events`, `POST /payments/events`): strict about
unknown fields. A cart event is its update's input plus the panel's envelope (`type`, `username`)."""

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from renewals.messages import AddAddon, ApplyDiscount, Checkout, PaymentEntry, PaymentFields, RemoveAddon
from renewals.types import (
    Currency,
    PaymentMethod,
    PaymentReference,
    PlainText,
    RegisteredAtOnTheWire,
    Username,
    WireModel,
)


class RenewRequested(WireModel):
    type: Literal["renew_requested"]
    username: Username


class ReactivateRequested(WireModel):
    type: Literal["reactivate_requested"]
    username: Username


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


class AutoRenewChanged(WireModel):
    """The customer's auto-renew switch (P16, R1): on with the method the automatic order is paid
    by, or off (an unpaid automatic order is then cancelled)."""

    # The contract says it too: with `auto_renew: true`, `method` is required and not null.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"auto_renew": {"const": True}}},
            "then": {"required": ["method"], "properties": {"method": {"type": "string"}}},
        }
    )

    type: Literal["auto_renew_changed"]
    username: Username
    auto_renew: bool
    method: PaymentMethod | None = None
    # The term of each automatic renewal in years (P16, R5's terms); absent: the stored one stays.
    years: int | None = Field(None, ge=1, le=10)

    @model_validator(mode="after")
    def _method_when_on(self) -> "AutoRenewChanged":
        if self.auto_renew and self.method is None:
            raise ValueError(
                "method is required when turning auto-renew on (P16): card, paypal, bank_transfer or postal_slip"
            )
        return self


PanelEvent = Annotated[
    RenewRequested
    | ReactivateRequested
    | AddonAdded
    | AddonRemoved
    | DiscountCodeApplied
    | CheckoutSubmitted
    | AutoRenewChanged,
    Field(discriminator="type"),
]


class PaymentRegistered(PaymentFields, WireModel):
    """`POST /payments/events`: a payment the back office registered against an order."""

    type: Literal["payment_registered"]
    currency: Currency  # required on the wire
    registered_at: RegisteredAtOnTheWire  # P17: at most REGISTERED_AT_SKEW ahead of our clock

    def entry(self, *, by_hand: bool = False) -> PaymentEntry:
        return PaymentEntry(**self.model_dump(exclude={"type"}), by_hand=by_hand)


# P20: the id of one charge request (`charge_requested.attempt`, `<order number>/<n>`).
AttemptId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:/-]{1,80}$")]


class ChargeSucceeded(PaymentFields, WireModel):
    """`POST /payments/events`: the charge request `attempt` was paid (P20): a payment like any other."""

    type: Literal["charge_succeeded"]
    currency: Currency
    registered_at: RegisteredAtOnTheWire
    attempt: AttemptId

    def entry(self, *, by_hand: bool = False) -> PaymentEntry:
        return PaymentEntry(**self.model_dump(exclude={"type", "attempt"}), by_hand=by_hand)


class ChargeFailed(WireModel):
    """`POST /payments/events`: the charge request `attempt` was declined (P20). `soft`: insufficient
    funds, issuer unavailable, try again; `hard`: expired, stolen, do not honour, authentication
    required. `code` and `message` are the PSP's own words (never card data)."""

    type: Literal["charge_failed"]
    order_number: PaymentReference
    attempt: AttemptId
    decline: Literal["soft", "hard"]
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    message: PlainText


PaymentEvent = Annotated[PaymentRegistered | ChargeSucceeded | ChargeFailed, Field(discriminator="type")]
