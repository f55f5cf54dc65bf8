"""Ops find, read and steer renewals in the Temporal UI and CLI: typed search attributes and
current details at each stage, a static summary, and a history that reads as a story."""

import json
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from renewals import search_attributes as sa
from renewals.dates import rome_time
from renewals.events import CheckoutSubmitted, RenewRequested
from tests.conftest import eventually, handle_of, new_service, pay


async def attributes(client: Client, username: str) -> dict[str, Any]:
    described = await handle_of(client, username).describe()
    found = described.typed_search_attributes
    return {key.name: found.get(key) for key in sa.ALL if found.get(key) is not None}


async def details(client: Client, username: str) -> str:
    metadata = await handle_of(client, username).query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


def summary_of(event: Any) -> str:
    if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
        return ""
    return str(json.loads(event.user_metadata.summary.data))


async def test_search_attributes_and_current_details_follow_each_stage(env, store, ingress):
    service = await new_service(store)
    user = service.username
    await ingress.panel(RenewRequested(type="renew_requested", username=user))
    assert await attributes(env.client, user) == {"RenewalStage": "CART", "RenewalUsername": user}
    assert "**Stage:** CART" in await details(env.client, user)

    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=user, payment_method="postal_slip", years=1)
    )
    found = await attributes(env.client, user)
    assert found["RenewalStage"] == "AWAITING_PAYMENT" and found["RenewalOrder"] == order.order_number
    assert found["RenewalPaymentMethod"] == "postal_slip" and found["RenewalTotalCents"] == 3050
    assert found["RenewalDueBy"] == order.due_by
    text = await eventually(
        lambda: _with(details(env.client, user), "**Next:** reminder 1"), what="details naming the next reminder"
    )
    assert f"**Order:** {order.order_number}, 1 year(s) by postal_slip, total € 30,50, paid € 0,00" in text
    assert f"**Due by:** {rome_time(order.due_by)}" in text  # P9: ops read Rome's clock

    await pay(ingress, order.order_number, 1000)
    text = await eventually(lambda: _with(details(env.client, user), "paid € 10,00"), what="details with the payment")
    assert "partial" in text  # the last event

    await pay(ingress, order.order_number, 2050)
    await handle_of(env.client, user).result()
    assert (await attributes(env.client, user))["RenewalStage"] == "ACTIVATED"
    assert "**New expiry:**" in await details(env.client, user)


async def _with(text: Any, needle: str) -> str | None:
    value = await text
    return value if needle in value else None


async def test_ops_list_query_finds_a_customer_s_awaiting_renewal(env, store, ingress):
    service = await new_service(store)
    await ingress.panel(RenewRequested(type="renew_requested", username=service.username))
    await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=service.username, payment_method="card", years=1)
    )
    query = f"RenewalStage = 'AWAITING_PAYMENT' AND RenewalUsername = '{service.username}'"

    async def listed() -> list[Any]:
        return [w async for w in env.client.list_workflows(query)]

    (found,) = await eventually(listed, what="the list query to find the renewal")
    assert found.id == f"renewal-{service.username}"


async def test_history_reads_as_a_story(env, store, ingress):
    service = await new_service(store)
    user = service.username
    await ingress.panel(RenewRequested(type="renew_requested", username=user))
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=user, payment_method="bank_transfer", years=2)
    )
    handle = handle_of(env.client, user)
    await env.fast_forward(handle, timedelta(days=3))
    await pay(ingress, order.order_number, order.total_cents)
    await handle.result()
    described = await handle.describe()
    assert await described.static_summary() == f"Renew e-invoicing receive-only service of {user}"
    events = [e async for e in handle.fetch_history_events()]
    activities = [summary_of(e) for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    timers = [summary_of(e) for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    new_expiry = service.expires_on.replace(year=service.expires_on.year + 2)
    # The reads (load service, discount codes) are local activities: markers, not server round trips.
    markers = [e for e in events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert any(summary_of(e) == f"load service {user}" for e in markers)
    assert activities == [
        "create order: 2y by bank_transfer, € 61,00",
        f"email payment instructions {order.order_number}",
        f"email reminder {order.order_number}",
        f"ledger {events and _txn(events)}: applied € 61,00 on {order.order_number}",
        f"activate {order.order_number}: expiry {service.expires_on} → {new_expiry}",
        f"email renewal confirmed {order.order_number}",
    ]
    assert "cart idle for 7d (P4)" in timers
    assert f"reminder 1 for {order.order_number}" in timers  # paid before the 2nd reminder's timer
    assert not any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in events)


def _txn(events: list[Any]) -> str:
    """The transaction id of the ledger activity, read from its summary."""
    for event in events:
        text = summary_of(event)
        if text.startswith("ledger "):
            return text.split()[1].rstrip(":")
    return ""


async def test_an_activity_stuck_in_retries_shows_its_last_error(env, store):
    """SMTP down: the email activity retries, and describe (the UI's Pending Activities) says why."""
    from activities.mail import Mailer
    from client.renewals import Renewals
    from stack.postgres import free_port
    from tests.conftest import POLICY
    from worker import build_worker

    task_queue = "renewals-smtp-down"
    nowhere = Mailer(store, "127.0.0.1", free_port(), "Rinnovi <rinnovi@renewals.localhost>")
    ingress = Renewals(env.client, store, POLICY, task_queue)
    service = await new_service(store)
    handle = handle_of(env.client, service.username)
    async with build_worker(env.client, store, nowhere, task_queue):
        await ingress.panel(RenewRequested(type="renew_requested", username=service.username))
        await ingress.panel(
            CheckoutSubmitted(
                type="checkout_submitted", username=service.username, payment_method="bank_transfer", years=1
            )
        )

        async def stuck() -> Any:
            pending = (await handle.describe()).raw_description.pending_activities
            retried = [p for p in pending if p.activity_type.name == "send_email" and p.attempt >= 2]
            return retried[0] if retried else None

        activity = await eventually(stuck, what="the email activity to be retrying")
        assert "connect" in activity.last_failure.message.lower()
        assert (await attributes(env.client, service.username))["RenewalStage"] == "AWAITING_PAYMENT"
        await handle.terminate("test over")
