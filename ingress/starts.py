"""How a renewal is started: its id (`renewal-<username>`, P8), the summary ops read in the Web UI and
the search attributes it is found by from its first moment. One place for the panel's update-with-start
(ingress/operations.py) and the daily run's automatic renewal (P16), which calls `start_auto_renewal`.

It names the workflow by its type, not its class: activities may import this module, and
activities never import workflows.
"""

from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from renewals import WORKFLOW_TYPE, workflow_id
from renewals import search_attributes as sa
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
