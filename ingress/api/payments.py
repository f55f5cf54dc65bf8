"""`POST /payments/events` (docs/api.md, *Payment events*): the payments back office's events,
signed with PAYMENTS_SECRET (P21). A payment (`payment_registered`, `charge_succeeded`) is written
to the ledger before the renewal hears of it (`Renewals.payment_event`); money is never refused
(P11). A declined charge (`charge_failed`, P20) is recorded once per attempt, then told to the
order's renewal.
"""

from typing import Annotated, get_args

from fastapi import APIRouter, Depends
from pydantic import ConfigDict, RootModel

from ingress import openapi
from ingress.api import examples
from ingress.api.deps import IngressDep, JsonBody, payments_signature
from renewals.events import PaymentEvent
from renewals.views import ChargeOutcomeView, PaymentOutcome


class PaymentAnswer(RootModel[PaymentOutcome | ChargeOutcomeView]):
    """What a payment did (P5), or what became of a declined charge (P20)."""

    model_config = ConfigDict(json_schema_extra=openapi.one_of)


router = APIRouter(prefix="/payments", tags=["payments"], dependencies=[Depends(payments_signature)])

# The body: one model, or a union of models on `type` (renewals/events.py). The one line to change
# when the route takes more payment events: its parsing and its document follow.
PaymentBody = PaymentEvent

# P11 in the document: money is never refused; what is checked, and what is free text.
PAYMENT_REGISTERED = (
    "A payment the payments back office registered (P5, P11). Money is never refused: an event with a "
    "valid signature, a valid `transaction_id` and a positive integer `amount_cents` is written to the "
    "ledger whatever its `order_number` or `currency`; what cannot be applied to an open order is answered "
    "`unmatched` and kept for ops, never dropped. Only a bad signature (401), a body that is not JSON (400), "
    "or a missing or invalid field (422) is refused."
)
FIELDS = {
    "type": "Always `payment_registered`.",
    "order_number": (
        "The order the payment quotes, as the bank statement or slip carries it. Not required to name a real "
        "or open order: one that matches no order, or an order that lapsed or was cancelled, is `unmatched` "
        "(P10, P11)."
    ),
    "transaction_id": (
        "Checked. The back office's unique id of this payment: the ledger's key. Sent again with the same "
        "payment it changes nothing (`duplicate`); reused for a different payment it is a 409."
    ),
    "amount_cents": (
        'Checked. Euro cents, a positive JSON integer as written (`3050`; `3050.0`, `"3050"` and `true` '
        "are 422). A partial payment accumulates (`partial`), an overpayment activates and is flagged for "
        "refund (`overpaid`)."
    ),
    "currency": (
        "The currency of the amount. Only EUR is applied to an order; a payment in any other currency is "
        "written to the ledger as `unmatched` for ops (P11)."
    ),
    "method": "How the customer paid.",
    "registered_at": (
        "When the back office registered the payment (RFC 3339, with its offset); at most 5 minutes ahead of "
        "our clock, else 422: the invoice is dated by it (P17)."
    ),
}
CHARGE_SUCCEEDED = (
    "P20: the charge request `attempt` (from `charge_requested`) was paid: a payment like "
    "`payment_registered`, with the same fields and rules (P5, P11), and its attempt."
)
CHARGE_FAILED = (
    "P20: the charge request `attempt` was declined. `soft` (insufficient funds, issuer unavailable) is "
    "retried on RENEWALS_CHARGE_RETRIES before the order's deadline; `hard` (expired, stolen, do not honour, "
    "authentication required) is not, and the customer is sent to pay another way. Answered `recorded`, "
    "`duplicate` (this attempt's outcome came before) or `ignored` with the reason (an unknown attempt or "
    "order, an order paid or closed): never an error, nothing to retry."
)
CHARGE_FIELDS = {
    "attempt": "The `attempt` of the `charge_requested` event this answers (`<order number>/<n>`).",
    "decline": "`soft`: try again later; `hard`: do not retry.",
    "code": "The PSP's decline code, kept for ops.",
    "message": "The PSP's message (never card data), shown to the customer with the code.",
}
PAYMENT_EVENT = JsonBody(
    PaymentBody,
    {
        "payment_registered": examples.PAYMENT,
        "charge_succeeded": examples.CHARGE_SUCCEEDED,
        "charge_failed": examples.CHARGE_FAILED,
    },
    name="PaymentEvent",
    descriptions={
        "PaymentEvent": "A payment event; `type` selects which.",
        "PaymentRegistered": PAYMENT_REGISTERED,
        "ChargeSucceeded": CHARGE_SUCCEEDED,
        "ChargeFailed": CHARGE_FAILED,
    },
    fields={
        "PaymentRegistered": FIELDS,
        "ChargeSucceeded": {**FIELDS, "type": "Always `charge_succeeded`.", **CHARGE_FIELDS},
        "ChargeFailed": {**CHARGE_FIELDS, "type": "Always `charge_failed`.", "order_number": FIELDS["order_number"]},
    },
    accepted=True,
)
assert len(get_args(get_args(PaymentEvent)[0])) == 3  # each event has its words above


@router.post(
    "/events",
    summary="A payment registered by the payments back office",
    response_model=PaymentAnswer,
    response_description="What the payment did (P5), or what became of a declined charge (P20).",
    responses={
        200: openapi.examples({"applied": examples.OUTCOME, "charge_failed recorded": examples.CHARGE_OUTCOME}),
        **openapi.refusals(400, 401, 409, 413, 422, 503),
    },
)
async def payment_event(
    event: Annotated[PaymentBody, Depends(PAYMENT_EVENT)], ingress: IngressDep
) -> PaymentOutcome | ChargeOutcomeView:
    """A payment is written to the ledger (unique on `transaction_id`) before the renewal hears of it.
    The answer's `status`: `applied`, `partial`, `overpaid`, `duplicate` (a repeated transaction id:
    nothing changes) or `unmatched` (kept for ops: P10, P11). A `charge_failed`: `recorded`,
    `duplicate` or `ignored` (P20)."""
    return await ingress.payment_event(event)
