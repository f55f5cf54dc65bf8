"""The ledger reconciler (I2): run by a Temporal Schedule (the Web UI's Schedules page), it delivers
again every payment the ledger holds as `received` for longer than a few minutes, so none stays
unsettled because an ingress died after the insert or Temporal did not answer. Each row on its own:
one that cannot be delivered is counted, spaced out and in the end shown as stuck, never the run's
failure (activities/payments.py)."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.payments import Reconciler
    from renewals import RECONCILER_WORKFLOW_TYPE
    from renewals.messages import Reconcile, Reconciled
    from renewals.pricing import euro
    from workflows.effects import RETRY

# Ops read at most this many stuck payments in a run's current details (all are in the ledger).
SHOWN_STUCK = 10


@workflow.defn(name=RECONCILER_WORKFLOW_TYPE)
class LedgerReconciler:
    @workflow.run
    async def run(self, request: Reconcile) -> Reconciled:
        result = await workflow.execute_activity_method(
            Reconciler.redeliver_stuck_payments,
            request,
            start_to_close_timeout=timedelta(minutes=10),
            # The activity beats once per row, and a row may take its whole row_timeout.
            heartbeat_timeout=max(timedelta(seconds=30), 3 * request.row_timeout),
            retry_policy=RETRY,
            summary=f"deliver payments left 'received' for over {request.older_than}",
        )
        workflow.set_current_details(details(result))
        return result


def details(result: Reconciled) -> str:
    """The run in plain words, for the Web UI: what it found, how each delivery ended, what is stuck."""
    outcomes = ", ".join(f"{status} {count}" for status, count in sorted(result.statuses.items())) or "none"
    lines = [
        f"**Found:** {result.found} payment(s) left received",
        f"**Outcomes:** {outcomes}",
        f"**Failed:** {result.failed} (each counted on its row, tried again after its backoff)",
    ]
    if result.stuck_total:
        lines.append(f"**Stuck:** {result.stuck_total} payment(s) not delivered after repeated attempts:")
        lines += [
            f"- {p.transaction_id}: {euro(p.amount_cents)} on {p.order_number}, {p.attempts} attempts, "
            f"stuck since {p.stuck_since:%Y-%m-%d %H:%M} UTC; last error: {p.last_error or 'none'}"
            for p in result.stuck[:SHOWN_STUCK]
        ]
    else:
        lines.append("**Stuck:** none")
    return "\n\n".join(lines)
