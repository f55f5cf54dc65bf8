"""Which open renewals still need the code kept for renewals started before a change: each
`workflow.patched` marker and each legacy policy flag, and how many running renewals depend on it
(`python starter.py ops legacy`). docs/evolving-models.md says, for each, when it may be deleted:
once this reports none open for it, and none can start again.

A renewal's patches are recorded in its first workflow task and its policy in its input, so only
the head of each history is read (a few events), never the whole of it.
"""

import json
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from renewals import WORKFLOW_TYPE
from workflows.path import CHARGE_RETRIES_PATCH, RENEWAL_V2_PATCH

HEAD_EVENTS = 30


@dataclass(frozen=True)
class Legacy:
    name: str
    what: str


# What each legacy path is, in the words ops and developers read; the condition for deleting each
# is in docs/evolving-models.md.
LEGACY = (
    Legacy(
        "before-v2",
        "started before the v2 path (no renewal-v2 marker): workflows/effects.py's legacy branches, and "
        "instant-payment-grace, which only such renewals still ask",
    ),
    Legacy("r2-day-90-excluded", "Policy.reactivation_last_day_included false: the old R2 boundary"),
    Legacy("no-reactivate-with-auto-renew", "Policy.reactivate_with_auto_renew false: P16's old rule"),
    Legacy(
        "before-charge-retries",
        "an automatic renewal started before P20 (no charge-retries marker): one charge request, no retry",
    ),
)


def needs(markers: set[str], policy: dict[str, Any], mode: str = "") -> list[str]:
    """The legacy paths one renewal needs, from its patch markers and its input's policy and mode."""
    found = []
    if RENEWAL_V2_PATCH not in markers:
        found.append("before-v2")
    if not policy.get("reactivation_last_day_included", False):
        found.append("r2-day-90-excluded")
    if not policy.get("reactivate_with_auto_renew", False):
        found.append("no-reactivate-with-auto-renew")
    if mode == "auto_renew" and CHARGE_RETRIES_PATCH not in markers:
        found.append("before-charge-retries")
    return found


async def head_of(client: Client, workflow_id: str, run_id: str) -> tuple[set[str], dict[str, Any], str]:
    """The patch markers and the input's policy and mode of one run, from the head of its history."""
    markers: set[str] = set()
    policy: dict[str, Any] = {}
    mode = ""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    seen = tasks = 0
    async for event in handle.fetch_history_events(page_size=HEAD_EVENTS):
        seen += 1
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            if payloads:
                started = json.loads(payloads[0].data)
                policy, mode = dict(started.get("policy") or {}), str(started.get("mode") or "")
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "patch-data" in details:
                markers.add(json.loads(details["patch-data"].payloads[0].data).get("id", ""))
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            tasks += 1
            if tasks == 2:
                break  # the first task's markers (recorded after it completed) are in
        if seen >= HEAD_EVENTS:
            break
    return markers, policy, mode


async def legacy_report(client: Client) -> dict[str, Any]:
    """How many open renewals need each legacy path, with up to ten of them by workflow id."""
    counts: dict[str, list[str]] = {legacy.name: [] for legacy in LEGACY}
    open_renewals = 0
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'"
    async for execution in client.list_workflows(query):
        open_renewals += 1
        for name in needs(*await head_of(client, execution.id, execution.run_id or "")):
            counts[name].append(execution.id)
    return {
        "open_renewals": open_renewals,
        "legacy": [
            {
                "name": legacy.name,
                "what": legacy.what,
                "open": len(counts[legacy.name]),
                "some": counts[legacy.name][:10],
            }
            for legacy in LEGACY
        ],
    }
