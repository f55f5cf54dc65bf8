"""Renewals' domain: models and the pure rules (R1–R7, P1–P18; docs/rules.md).

Nothing here does I/O or reads a clock: workflows and activities hand in what they know.
"""

TASK_QUEUE = "renewals"
WORKFLOW_TYPE = "RenewalWorkflow"
# The payment update's name: the payment desk (client/payments.py) calls it by name.
REGISTER_PAYMENT = "register_payment"
RECONCILER_WORKFLOW_TYPE = "LedgerReconciler"
RECONCILER_SCHEDULE_ID = "ledger-reconciler"
# The service's year (P15, P16): one Schedule in the Rome calendar starts each day's run.
DAILY_WORKFLOW_TYPE = "ServiceYearDay"
DAILY_SCHEDULE_ID = "service-year"
# An invoice's delivery through SdI (P18): one workflow per invoice, `invoice-<number>`.
DELIVERY_WORKFLOW_TYPE = "InvoiceDelivery"
DELIVERY_NOTICE_SIGNAL = "notify"


def workflow_id(username: str) -> str:
    """P8: one renewal in flight per service, so the workflow id is the username's."""
    return f"renewal-{username}"


def delivery_id(number: str) -> str:
    """P18: one delivery per invoice, so a second start of the same invoice's delivery is refused."""
    return f"invoice-{number}"
