"""The ledger reconciler (issue 12, I2): run by a Temporal Schedule (the Web UI's Schedules page),
it delivers again every payment the ledger holds as `received` for longer than a few minutes, so
none stays unsettled because an ingress died after the insert or Temporal did not answer."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentDesk
    from renewals import RECONCILER_WORKFLOW_TYPE
    from renewals.messages import Reconcile, Reconciled
    from workflows.effects import RETRY


@workflow.defn(name=RECONCILER_WORKFLOW_TYPE)
class LedgerReconciler:
    @workflow.run
    async def run(self, request: Reconcile) -> Reconciled:
        result = await workflow.execute_activity_method(
            PaymentDesk.redeliver_stuck_payments,
            request,
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RETRY,
            summary=f"deliver payments left 'received' for over {request.older_than}",
        )
        workflow.set_current_details(
            f"**Found:** {result.found} payment(s) left received\n\n**Outcomes:** "
            + (", ".join(f"{status} {count}" for status, count in sorted(result.statuses.items())) or "none")
        )
        return result
