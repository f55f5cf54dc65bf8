"""The payments back office's word on a charge request (P20): `charge_succeeded` is a payment and
goes to the payment desk like any other (the ledger first, P11); `charge_failed` is recorded once
per attempt, then signalled to the renewal that owns the order. A repeat, an attempt never
requested, an unknown or closed order: recorded, answered, and nothing else changes.

A signal, not an update: the server keeps it for the renewal even while no worker runs, so the
answer never waits for the worker. A decline recorded but not yet signalled (the server did not
answer) is signalled again by the back office's retry of the same event.
"""

from typing import Literal

from temporalio.client import Client
from temporalio.service import RPCError

from client.payments import PaymentDesk, closed
from db import charges
from db.ledger import Ledger
from renewals import workflow_id
from renewals.calls import OrderOwner
from renewals.dunning import ChargeDeclined
from renewals.events import ChargeFailed, ChargeSucceeded
from renewals.views import ChargeOutcomeView, PaymentOutcome

SIGNAL = "charge_declined"


class ChargeOutcomes:
    def __init__(self, client: Client, desk: PaymentDesk, ledger: Ledger) -> None:
        self.client, self.desk, self.ledger = client, desk, ledger
        self.pool = ledger.pool

    async def succeeded(self, event: ChargeSucceeded) -> PaymentOutcome:
        outcome = await self.desk.deliver(event.entry())
        await charges.record_outcome(
            self.pool,
            attempt=event.attempt,
            order_number=event.order_number,
            outcome="succeeded",
            decline=None,
            code=None,
            message=None,
        )
        await charges.settle_outcome(self.pool, event.attempt, "delivered", f"payment {outcome.status}")
        return outcome

    async def failed(self, event: ChargeFailed) -> ChargeOutcomeView:
        row = await charges.record_outcome(
            self.pool,
            attempt=event.attempt,
            order_number=event.order_number,
            outcome="failed",
            decline=event.decline,
            code=event.code,
            message=event.message,
        )
        if row.state != "received":  # answered before: this attempt's outcome changes nothing more
            return self._answer(event, "duplicate", row.note)
        owner = await self.ledger.order_owner(event.order_number)
        note = self._refusal(event, owner, row.known_attempt)
        if owner is not None and note is None:
            handle = self.client.get_workflow_handle(workflow_id(owner.username))
            declined = ChargeDeclined(
                order_number=event.order_number,
                attempt=event.attempt,
                decline=event.decline,
                code=event.code,
                message=event.message,
                received_at=row.received_at,
            )
            try:
                await handle.signal(SIGNAL, declined)
            except RPCError as error:
                if not closed(error):
                    raise  # the back office retries the event; the row is still `received`
                note = f"the renewal of order {event.order_number} has finished"
        state = "delivered" if note is None else "ignored"
        await charges.settle_outcome(self.pool, event.attempt, state, note)
        return self._answer(event, "recorded" if note is None else "ignored", note)

    @staticmethod
    def _refusal(event: ChargeFailed, owner: OrderOwner | None, known_attempt: bool) -> str | None:
        if owner is None:
            return f"no order is numbered {event.order_number!r}"
        if not known_attempt:
            return f"no charge {event.attempt!r} was requested for order {event.order_number}"
        if owner.status != "awaiting_payment":
            return f"order {event.order_number} is {owner.status}: a decline changes nothing"
        return None

    @staticmethod
    def _answer(
        event: ChargeFailed, status: Literal["recorded", "duplicate", "ignored"], note: str | None
    ) -> ChargeOutcomeView:
        return ChargeOutcomeView.model_validate(
            {"status": status, "order_number": event.order_number, "attempt": event.attempt, "note": note}
        )
