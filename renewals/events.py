"""The wire events of DESIGN.md §5 (`POST /panel/events`, `POST /payments/events`): strict about
unknown fields. A cart event is its update's input plus the panel's envelope (`type`, `username`)."""

from typing import Annotated, Literal

from pydantic import Field

from renewals.messages import AddAddon, ApplyDiscount, Checkout, PaymentEntry, PaymentFields, RemoveAddon
from renewals.types import Currency, Username, WireModel


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
