"""Delivering a payment from the ledger to the renewal that owns its order: for the ingress (a
payment event), a bank statement's import (P19) and the reconciler (a ledger row left `received`).

The ledger takes every payment first (P11); then the order's renewal decides what it is (P5,
P10, P12). When no renewal can hear it (an unknown reference, a closed renewal) it is kept as
unmatched for ops; nothing here sums or judges payments.
"""

import asyncio
from datetime import timedelta

from temporalio.client import Client, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from activities.store import Store
from renewals import REGISTER_PAYMENT, workflow_id
from renewals.calls import OrderOwner
from renewals.messages import PaymentEntry, Reconcile
from renewals.types import PaymentStatus
from renewals.views import PaymentOutcome

# How long one call of the reconciler to a renewal may take (the row's whole delivery is bounded
# by Reconcile.row_timeout; the row stays `received` and is tried again after its backoff).
RECONCILER_UPDATE_TIMEOUT = timedelta(seconds=10)


def closed(error: RPCError) -> bool:
    """The workflow is gone or finished: nothing running can take the operation."""
    return error.status == RPCStatusCode.NOT_FOUND or "already completed" in error.message


class PaymentDesk:
    """Holds the Temporal client and the store; built once by the ingress and by the worker."""

    def __init__(self, client: Client, store: Store, *, update_timeout: timedelta | None = None) -> None:
        self.client = client
        self.store = store
        # None: the caller bounds the call (the HTTP API's deadline, P14).
        self.update_timeout = update_timeout

    async def deliver(self, entry: PaymentEntry) -> PaymentOutcome:
        """Ledger first, then the renewal of the order. Raises TransactionConflict for a reused id.
        An entry read back from the ledger (the reconciler's rows, a statement's, an assignment's)
        carries when the ledger took it: it is there already, and is not written again."""
        if entry.received_at is None:
            received_at = await self.store.ledger.receive(entry)
            entry = entry.model_copy(update={"received_at": received_at})
        owner = await self.store.ledger.order_owner(entry.order_number)
        if owner is None:
            return await self._unmatched(entry, f"no order is numbered {entry.order_number!r} (P11)", 0, 0)
        handle = self.client.get_workflow_handle(workflow_id(owner.username))
        try:
            outcome: PaymentOutcome = await handle.execute_update(
                REGISTER_PAYMENT, entry, result_type=PaymentOutcome, rpc_timeout=self.update_timeout
            )
            return outcome
        except RPCError as error:
            if not closed(error):
                raise
        # P10: the order's renewal has closed; the payment waits for ops.
        return await self._unmatched(entry, closed_note(entry, owner), owner.paid_cents, owner.balance_cents)

    async def _unmatched(self, entry: PaymentEntry, note: str, paid: int, balance: int) -> PaymentOutcome:
        now_unmatched = await self.store.ledger.settle_unmatched(entry.transaction_id, note)
        status: PaymentStatus = "unmatched" if now_unmatched else "duplicate"
        return PaymentOutcome(
            status=status,
            order_number=entry.order_number,
            transaction_id=entry.transaction_id,
            paid_cents=paid,
            balance_cents=balance,
            note=note if now_unmatched else None,
        )

    async def redeliver(self, entry: PaymentEntry, request: Reconcile) -> PaymentOutcome | None:
        """One ledger row delivered again within `row_timeout`: its outcome, or None when the
        delivery failed, whatever the failure (it is this row's: counted on it, with its error
        and its next attempt, and the run goes on)."""
        try:
            return await asyncio.wait_for(self.deliver(entry), request.row_timeout.total_seconds())
        except Exception as error:
            await self.store.ledger.delivery_failed(
                entry.transaction_id,
                failure(error, request.row_timeout),
                request.retry_after,
                request.retry_after_max,
                request.stuck_after,
            )
            return None


def failure(error: Exception, row_timeout: timedelta) -> str:
    """Why a delivery failed, in a line ops read on the row."""
    # The SDK turns the bound's cancellation of an update into its own timeout error.
    if isinstance(error, TimeoutError | WorkflowUpdateRPCTimeoutOrCancelledError):
        return f"no answer from the renewal in time (row_timeout {row_timeout.total_seconds():g} s)"
    return f"{type(error).__name__}: {error}"[:500]


def closed_note(entry: PaymentEntry, owner: OrderOwner) -> str:
    """Why a payment reaching a closed renewal is unmatched (P10). One the ledger took by the
    deadline is on time (P12), but its renewal checked the ledger at the deadline and closed the
    order: it reached the ledger as the order closed. It revives nothing by itself (the service
    may have been renewed since); ops are told it was on time, to apply it by hand or refund it."""
    note = f"order {entry.order_number} is closed (P10)"
    on_time = owner.status == "expired" and owner.due_by and entry.received_at and entry.received_at <= owner.due_by
    if on_time:
        note += f"; received on time, by its deadline of {owner.due_by:%Y-%m-%d %H:%M %Z}: for ops to apply or refund"
    return note
