"""The ledger reconciler's activity (I2): every ledger row left `received` (the ingress died after
the insert, Temporal did not answer) is delivered again, each on its own: a row that cannot be
delivered costs one bounded attempt, counted on the row with its error, and is tried again after a
growing wait; the other rows flow. After a few failures it is marked stuck, in the ledger, the
run's current details and the worker's metrics, for ops.

The delivery itself is the payment desk's (client/payments.py), handed in by the worker.
"""

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from temporalio import activity

from db.ledger import Ledger
from renewals.messages import PaymentEntry, Reconcile, Reconciled
from renewals.views import PaymentOutcome


class Redelivers(Protocol):
    async def redeliver(self, entry: PaymentEntry, request: Reconcile) -> PaymentOutcome | None: ...


class Reconciler:
    """Holds the ledger and the payment desk; built once by the worker."""

    def __init__(self, ledger: Ledger, desk: Redelivers) -> None:
        self.ledger = ledger
        self.desk = desk

    @activity.defn
    async def redeliver_stuck_payments(self, request: Reconcile) -> Reconciled:
        """The reconciler: every ledger row left `received` for longer than `older_than` (the
        ingress died after the insert, Temporal did not answer) whose next attempt is due is
        delivered again, each within `row_timeout`. A failure is the row's, never the run's."""
        ledger = self.ledger
        due = await ledger.due_for_delivery(datetime.now(UTC) - request.older_than, request.batch)
        # Rows not reached before the activity's own timeout wait for the next run, first in line.
        stop_at = time.monotonic() + _run_budget(request.row_timeout).total_seconds()
        statuses: dict[str, int] = {}
        failed = 0
        for entry in due:
            if time.monotonic() > stop_at:
                break
            activity.heartbeat(entry.transaction_id)
            outcome = await self.desk.redeliver(entry, request)
            if outcome is None:
                failed += 1
                continue
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        stuck_total, stuck = await ledger.stuck()
        meter = activity.metric_meter()
        if due:
            meter.create_counter(
                "renewals_ledger_stuck_payments", "Ledger rows found left 'received' and delivered again."
            ).add(len(due))
        if failed:
            meter.create_counter(
                "renewals_ledger_delivery_failures", "Deliveries of a ledger row by the reconciler that failed."
            ).add(failed)
        meter.create_gauge(
            "renewals_ledger_payments_marked_stuck",
            "Ledger rows still undelivered after the reconciler's stuck_after attempts: for ops.",
        ).set(stuck_total)
        return Reconciled(found=len(due), statuses=statuses, failed=failed, stuck_total=stuck_total, stuck=stuck)


def _run_budget(row_timeout: timedelta) -> timedelta:
    """How long a run may start new deliveries: its activity's start-to-close timeout, less room
    for the last delivery and the bookkeeping after it."""
    limit = activity.info().start_to_close_timeout or timedelta(minutes=10)
    return max(limit - 2 * row_timeout - timedelta(seconds=30), row_timeout)
