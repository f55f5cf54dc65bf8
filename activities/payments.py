"""Delivering a payment from the ledger to the renewal that owns its order, for the ingress (a
payment event) and for the reconciler (a ledger row left `received`), and the reconciler's
activity itself.

The ledger takes every payment first (P11); then the order's renewal decides what it is (P5,
P10, P12). When no renewal can hear it (an unknown reference, a closed renewal) it is kept as
unmatched for ops; nothing here sums or judges payments.
"""

from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.store import Store
from renewals import REGISTER_PAYMENT, workflow_id
from renewals.messages import PaymentEntry, Reconcile, Reconciled
from renewals.types import PaymentStatus
from renewals.views import PaymentOutcome

# How long the reconciler lets one renewal take to hear of a payment before it moves on to the next
# (the row stays `received` and its next run tries again).
RECONCILER_UPDATE_TIMEOUT = timedelta(seconds=10)


class RenewalClosed(Exception):
    """The renewal that owns the order has finished: it can take nothing more."""


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
        """Ledger first, then the renewal of the order. Raises TransactionConflict for a reused id."""
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
        return await self._unmatched(
            entry, f"order {entry.order_number} is closed (P10)", owner.paid_cents, owner.balance_cents
        )

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

    @activity.defn
    async def redeliver_stuck_payments(self, request: Reconcile) -> Reconciled:
        """The reconciler: every ledger row left `received` for longer than `older_than` (the
        ingress died after the insert, Temporal did not answer) is delivered again."""
        stuck = await self.store.ledger.stuck(datetime.now(UTC) - request.older_than, request.batch)
        statuses: dict[str, int] = {}
        for entry in stuck:
            activity.heartbeat(entry.transaction_id)
            outcome = await self.deliver(entry)
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        if stuck:
            activity.metric_meter().create_counter(
                "renewals_ledger_stuck_payments", "Ledger rows found left 'received' and delivered again."
            ).add(len(stuck))
        return Reconciled(found=len(stuck), statuses=statuses)
