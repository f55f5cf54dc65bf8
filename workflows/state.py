"""The renewal's state, in one place (as ClusterManagerState in the Temporal samples'
safe_message_handlers): one `Phase` value that says where it is, and what it knows."""

from dataclasses import dataclass, field
from enum import StrEnum

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from renewals import errors
    from renewals.cart import Cart
    from renewals.dunning import Dunning
    from renewals.order import Order
    from renewals.types import Stage


class Phase(StrEnum):
    """Where the renewal is, including the moments between stages that handlers must respect."""

    OPENING = "OPENING"
    CART = "CART"
    CHECKING_OUT = "CHECKING_OUT"  # the order is being created: the cart no longer changes
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    ACTIVATING = "ACTIVATING"  # paid in full: being activated
    LAPSING = "LAPSING"  # the deadline passed: being closed (P3)
    CANCELLING = "CANCELLING"  # ops cancelled it: being closed
    ACTIVATED = "ACTIVATED"
    CART_ABANDONED = "CART_ABANDONED"
    ORDER_EXPIRED = "ORDER_EXPIRED"
    CANCELLED = "CANCELLED"
    REFUSED = "REFUSED"

    @property
    def stage(self) -> Stage:
        """The stage that ops and the panel see."""
        return _STAGE_OF.get(self) or Stage(self.value)

    @property
    def takes_payments(self) -> bool:
        """A payment is judged against the order only while it can still be paid (P10)."""
        return self in (Phase.AWAITING_PAYMENT, Phase.ACTIVATING)


_STAGE_OF = {
    Phase.CHECKING_OUT: Stage.CART,
    Phase.ACTIVATING: Stage.AWAITING_PAYMENT,
    Phase.LAPSING: Stage.AWAITING_PAYMENT,
    Phase.CANCELLING: Stage.AWAITING_PAYMENT,
}


# Temporal accepts at most 2,000 updates in one run (history.maxTotalUpdates); a payment refused
# there is money that cannot activate its order. Cart changes stop at a quarter of it: a customer
# makes a handful (the pages refuse a guessing run long before), and the other 1,500 stay for what
# must never be refused (checkout, every payment and its redeliveries, ops' cancel and extend).
CART_CHANGE_BUDGET = 500


def refuse(message: str, kind: str = errors.NOT_ALLOWED) -> ApplicationError:
    """A refusal the caller gets with its reason (the ingress maps `kind` to an HTTP status)."""
    return ApplicationError(message, type=kind, non_retryable=True)


@dataclass
class RenewalState:
    phase: Phase = Phase.OPENING
    cart: Cart | None = None
    order: Order | None = None
    reason: str | None = None
    refusal_kind: str = errors.NOT_ALLOWED
    emails: list[str] = field(default_factory=list)
    last_event: str = "opened"
    # Bumped by every handler that changes what `run` waits for (a cart touch, a payment, a new deadline).
    touched: int = 0
    # Cart changes accepted (presses of Renew or Reactivate, add-ons, codes tried): see CART_CHANGE_BUDGET.
    cart_changes: int = 0
    # P20: the charges of a card or PayPal automatic order (None for every other order, and for
    # automatic orders made before charge retries), and the RenewalDunning value last set.
    dunning: Dunning | None = None
    dunning_shown: str | None = None

    # What each operation needs the renewal to be: the rules the validators read.

    def require_cart_change_left(self) -> None:
        """Refused by a validator, a change is never written to history and never counts against
        Temporal's cap on a run's updates; accepted, it does, so accepted ones stop at the budget."""
        if self.cart_changes >= CART_CHANGE_BUDGET:
            raise refuse(
                f"this renewal has taken {CART_CHANGE_BUDGET} cart changes, the most one renewal accepts: "
                "check out the cart as it is, or ask support"
            )

    def require_cart(self) -> Cart:
        if self.cart is None:
            raise refuse(f"there is no cart: the renewal is {self.phase.stage.value}")
        return self.cart

    def require_order(self) -> Order:
        if self.order is None:
            raise refuse(f"there is no order: the renewal is {self.phase.stage.value}")
        return self.order

    def require_cart_phase(self) -> Cart:
        """The cart changes only while it is a cart: not once checking out has begun."""
        if self.phase != Phase.CART:
            stage = "checking out" if self.phase == Phase.CHECKING_OUT else self.phase.stage.value
            raise refuse(f"the cart can no longer change: the renewal is {stage}")
        return self.require_cart()

    def require_unpaid_order(self) -> Order:
        """Ops may cancel or extend only an order awaiting payment, not one paid and activating."""
        if self.order is None or self.phase != Phase.AWAITING_PAYMENT:
            raise refuse(f"there is no order awaiting payment: the renewal is {self.phase.stage.value}")
        if self.order.is_paid:
            raise refuse(f"order {self.order.number} is paid and being activated")
        return self.order
