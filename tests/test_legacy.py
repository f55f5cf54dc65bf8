"""`starter.py ops legacy` (docs/evolving-models.md): which open renewals still need each patch or
legacy flag, read from the head of their histories, on the real stack and on recorded histories."""

import json
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from client.legacy import head_of, legacy_report, needs
from client.renewals import Renewals
from renewals import TASK_QUEUE, workflow_id
from tests.conftest import POLICY, new_service

HISTORIES = Path(__file__).parent / "histories"


def recorded(path: Path) -> tuple[set[str], dict[str, object]]:
    history = WorkflowHistory.from_json("recorded", path.read_text())
    markers, policy = set(), {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            policy = json.loads(event.workflow_execution_started_event_attributes.input.payloads[0].data)["policy"]
        elif event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            if "patch-data" in details:
                markers.add(json.loads(details["patch-data"].payloads[0].data)["id"])
    return markers, policy


def test_a_renewal_recorded_before_v2_needs_the_legacy_branches_and_one_after_does_not():
    assert "before-v2" in needs(*recorded(HISTORIES / "before-v2" / "happy_path.json"))
    assert "before-v2" not in needs(*recorded(HISTORIES / "happy_path.json"))


async def test_ops_legacy_names_the_open_renewals_started_under_an_old_policy(env, store, ingress):
    today = await new_service(store)
    await ingress.open(today.username, "renew")
    old_policy = POLICY.model_copy(update={"reactivation_last_day_included": False})
    old = await new_service(store)
    await Renewals(env.client, store, old_policy, TASK_QUEUE).open(old.username, "renew")

    for service, expected in ((today, []), (old, ["r2-day-90-excluded"])):
        handle = env.client.get_workflow_handle(workflow_id(service.username))
        run_id = (await handle.describe()).run_id
        assert needs(*await head_of(env.client, handle.id, run_id)) == expected

    report = await legacy_report(env.client)
    assert report["open_renewals"] >= 2
    counts = {entry["name"]: entry["open"] for entry in report["legacy"]}
    assert counts["r2-day-90-excluded"] >= 1
