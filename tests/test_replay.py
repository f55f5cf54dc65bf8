"""Determinism: recorded histories of the main paths replay against today's workflow code.

`tests/histories/*.json` were recorded from real runs; a change to the workflow that alters its
command sequence without `workflow.patched` fails here. `RENEWALS_RECORD_HISTORIES=1 .venv/bin/python
-m pytest tests/test_replay.py` records the paths that have no history yet; histories recorded before
a patched change are kept, to prove running renewals survive it.
"""

import base64
import json
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from client.renewals import Renewals, RenewalsError
from renewals.events import AddonAdded, CheckoutSubmitted, DiscountCodeApplied, ReactivateRequested, RenewRequested
from renewals.types import Stage
from tests.conftest import handle_of, new_service, pay, today
from workflows.invoice import InvoiceDelivery
from workflows.path import RENEWAL_V2_PATCH
from workflows.renewal import INSTANT_PAYMENT_GRACE_PATCH, RenewalWorkflow

HISTORIES = Path(__file__).parent / "histories"
# Recorded before RENEWAL_V2_PATCH: renewals still running then replay on the legacy branches.
BEFORE_V2 = HISTORIES / "before-v2"
RECORD = os.environ.get("RENEWALS_RECORD_HISTORIES") == "1"


def replayer() -> Replayer:
    # invoice/: an invoice's delivery through SdI (P18), recorded by tests/test_p18_sdi_delivery.py.
    return Replayer(workflows=[RenewalWorkflow, InvoiceDelivery], data_converter=pydantic_data_converter)


async def happy_path(env, store, ingress: Renewals) -> str:
    service = await new_service(store)
    user = service.username
    await ingress.panel(RenewRequested(type="renew_requested", username=user))
    await ingress.panel(AddonAdded(type="addon_added", username=user, addon="extra_storage", quantity=1))
    await ingress.panel(DiscountCodeApplied(type="discount_code_applied", username=user, code="PARTNER10"))
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=user, payment_method="bank_transfer", years=2)
    )
    await env.fast_forward(handle_of(env.client, user), timedelta(days=3))
    await pay(ingress, order.order_number, 1000)
    await pay(ingress, order.order_number, order.total_cents - 1000)
    return user


async def lapsed(env, store, ingress: Renewals) -> str:
    service = await new_service(store)
    user = service.username
    await ingress.panel(RenewRequested(type="renew_requested", username=user))
    await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=user, payment_method="postal_slip", years=1)
    )
    await env.fast_forward(handle_of(env.client, user), timedelta(days=31))
    return user


async def cancelled_reactivation(env, store, ingress: Renewals) -> str:
    service = await new_service(store, expires_on=today() - timedelta(days=20))
    user = service.username
    await ingress.panel(ReactivateRequested(type="reactivate_requested", username=user))
    await ingress.panel(CheckoutSubmitted(type="checkout_submitted", username=user, payment_method="card", years=1))
    await ingress.extend(user, 5, "replay")
    await ingress.cancel(user, "replay")
    return user


async def card_paid_at_once(env, store, ingress: Renewals) -> str:
    service = await new_service(store)
    user = service.username
    await ingress.panel(RenewRequested(type="renew_requested", username=user))
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=user, payment_method="card", years=1)
    )
    await pay(ingress, order.order_number, order.total_cents, method="card")
    return user


async def abandoned(env, store, ingress: Renewals) -> str:
    service = await new_service(store)
    await ingress.panel(RenewRequested(type="renew_requested", username=service.username))
    await env.fast_forward(handle_of(env.client, service.username), timedelta(days=8))
    return service.username


async def refused(env, store, ingress: Renewals) -> str:
    service = await new_service(store, auto_renew=True)
    with pytest.raises(RenewalsError):
        await ingress.panel(RenewRequested(type="renew_requested", username=service.username))
    return service.username


PATHS: dict[str, tuple[Callable[..., Awaitable[str]], Stage]] = {
    "happy_path": (happy_path, Stage.ACTIVATED),
    "lapsed": (lapsed, Stage.ORDER_EXPIRED),
    "cancelled_reactivation": (cancelled_reactivation, Stage.CANCELLED),
    "abandoned": (abandoned, Stage.CART_ABANDONED),
    "card_paid_at_once": (card_paid_at_once, Stage.ACTIVATED),
    "refused": (refused, Stage.REFUSED),
}


@pytest.mark.parametrize("name", sorted(PATHS))
async def test_main_paths_replay_deterministically(env, store, ingress, name):
    run, stage = PATHS[name]
    username = await run(env, store, ingress)
    handle = handle_of(env.client, username)
    assert (await handle.result()).stage == stage
    history = await handle.fetch_history()
    # Normal operation never fails a workflow task: refusals fail updates, not the workflow.
    assert not [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    await replayer().replay_workflow(history)
    if RECORD and not (HISTORIES / f"{name}.json").exists():
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / f"{name}.json").write_text(history.to_json())


@pytest.mark.parametrize(
    "path", sorted(HISTORIES.rglob("*.json")), ids=lambda path: str(path.relative_to(HISTORIES).with_suffix(""))
)
async def test_recorded_history_replays(path: Path):
    history = WorkflowHistory.from_json(f"recorded-{path.stem}", path.read_text())
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


def test_every_main_path_has_a_recorded_history_before_and_after_v2():
    assert {path.stem for path in HISTORIES.glob("*.json")} == set(PATHS)
    assert {path.stem for path in BEFORE_V2.glob("*.json")} == set(PATHS)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_v2_marks_new_renewals_and_only_them(name):
    before = WorkflowHistory.from_json("before", (BEFORE_V2 / f"{name}.json").read_text())
    after = WorkflowHistory.from_json("after", (HISTORIES / f"{name}.json").read_text())
    assert not any(RENEWAL_V2_PATCH in marker for marker in patch_markers(before))
    assert any(RENEWAL_V2_PATCH in marker for marker in patch_markers(after))


def checkout_of(history: WorkflowHistory) -> dict[str, object]:
    """The checkout update's input, as the panel sent it."""
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.input.name == "checkout":
                return dict(json.loads(request.input.args.payloads[0].data))
    raise AssertionError("no checkout in this history")


def patch_markers(history: WorkflowHistory) -> list[str]:
    return [
        e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data.decode()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and "patch-data" in e.marker_recorded_event_attributes.details
    ]


async def test_card_history_recorded_before_the_instant_payment_patch_still_replays():
    """A card renewal recorded before INSTANT_PAYMENT_GRACE_PATCH (no marker: instructions at
    once) replays on today's code, which takes the old branch for it."""
    before = WorkflowHistory.from_json("before", (BEFORE_V2 / "cancelled_reactivation.json").read_text())
    assert not patch_markers(before)
    assert checkout_of(before)["payment_method"] == "card"
    await replayer().replay_workflow(before)
    after = WorkflowHistory.from_json("after", (BEFORE_V2 / "card_paid_at_once.json").read_text())
    assert any(INSTANT_PAYMENT_GRACE_PATCH in marker for marker in patch_markers(after))
    await replayer().replay_workflow(after)


def _with_payloads_changed(name: str, change: Callable[[dict[str, Any]], None]) -> WorkflowHistory:
    """A recorded history whose every JSON-object payload went through `change`."""
    raw = json.loads((HISTORIES / f"{name}.json").read_text())
    changed = 0

    def walk(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            if set(node) >= {"metadata", "data"} and isinstance(node["data"], str):
                try:
                    value = json.loads(base64.b64decode(node["data"]))
                except (ValueError, UnicodeDecodeError):
                    value = None
                if isinstance(value, dict):
                    change(value)
                    changed += 1
                    node["data"] = base64.b64encode(json.dumps(value).encode()).decode()
                return
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(raw)
    assert changed >= 5, f"only {changed} payloads of {name} were changed"  # input, updates, activities
    return WorkflowHistory.from_json(f"changed-{name}", json.dumps(raw))


@pytest.mark.parametrize("name", ["happy_path", "cancelled_reactivation"])
async def test_a_history_with_a_field_no_model_knows_still_replays(name):
    """docs/evolving-models.md, rule 3: what a newer worker wrote (or a field removed since) loads."""
    history = _with_payloads_changed(name, lambda value: value.update(field_from_the_future="x"))
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_a_history_written_before_an_optional_field_existed_still_replays():
    """docs/evolving-models.md, rule 1: a field added with a default reads histories without it."""

    def older(value: dict[str, Any]) -> None:
        policy = value.get("policy")
        if isinstance(policy, dict):
            policy.pop("reactivation_last_day_included", None)
            policy.pop("instant_payment_grace", None)
        value.pop("note", None)
        value.pop("received_at", None)

    history = _with_payloads_changed("happy_path", older)
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
