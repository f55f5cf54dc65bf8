"""How a renewal and an invoice's delivery are started: their ids (`renewal-<username>`, P8;
`invoice-<number>`, P18), the summary ops read in the Web UI and the search attributes they are
found by from their first moment. One place for the panel's update-with-start (client/renewals.py),
the daily run's automatic renewal (P16) and an activation's invoice delivery (P18).

It names the workflow by its type, not its class (the worker hands these starts to the activities
that need them: activities never import the client).
"""

from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from renewals import DELIVERY_WORKFLOW_TYPE, WORKFLOW_TYPE, delivery_id, workflow_id
from renewals import search_attributes as sa
from renewals.delivery import DeliveryInput, DeliveryView
from renewals.messages import Policy, RenewalInput, RenewalResult
from renewals.types import RenewalMode, Stage

SUMMARY = {
    "renew": "Renew",
    "reactivate": "Reactivate",
    "auto_renew": "Automatic renewal (P16) of",
}


def start_options(username: str, mode: RenewalMode) -> dict[str, Any]:
    """The id, summary and search attributes every renewal starts with."""
    return {
        "id": workflow_id(username),
        "static_summary": f"{SUMMARY[mode]} e-invoicing receive-only service of {username}",
        "search_attributes": TypedSearchAttributes(
            [SearchAttributePair(sa.USERNAME, username), SearchAttributePair(sa.STAGE, Stage.OPENING.value)]
        ),
    }


async def start_auto_renewal(
    client: Client, task_queue: str, username: str, policy: Policy
) -> WorkflowHandle[Any, RenewalResult]:
    """Start the automatic renewal of `username` (P16). A renewal already running for the service
    (automatic or the customer's own) raises `temporalio.exceptions.WorkflowAlreadyStartedError`:
    nothing is started twice. A second start for an expiry whose automatic order exists ends
    REFUSED, with that reason, and makes no second order."""
    return await client.start_workflow(
        WORKFLOW_TYPE,
        RenewalInput(username=username, mode="auto_renew", policy=policy),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        result_type=RenewalResult,
        **start_options(username, "auto_renew"),
    )


def delivery_search_attributes(number: str, order_number: str, username: str) -> TypedSearchAttributes:
    """What ops find a delivery by from its start: the invoice, its order, the service, `sending`."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.INVOICE_NUMBER, number),
            SearchAttributePair(sa.ORDER, order_number),
            SearchAttributePair(sa.USERNAME, username),
            SearchAttributePair(sa.SDI_STATE, "sending"),
            SearchAttributePair(sa.SDI_ALARM, False),
        ]
    )


async def start_invoice_delivery(client: Client, task_queue: str, input: DeliveryInput) -> bool:
    """Start the SdI delivery of invoice `input.number` (P18); False when it was started before,
    running or finished: one delivery per invoice, ever (the id is never reused)."""
    try:
        await client.start_workflow(
            DELIVERY_WORKFLOW_TYPE,
            input,
            id=delivery_id(input.number),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            result_type=DeliveryView,
            static_summary=f"SdI delivery of invoice {input.number} (order {input.order_number}, {input.username})",
            search_attributes=delivery_search_attributes(input.number, input.order_number, input.username),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
