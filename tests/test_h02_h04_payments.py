"""Issue 26, items 2-4 (money and messages), each as a user or ops sees it on the real stack:

- h02: a ledger row whose renewal never answers costs the reconciler one bounded attempt per run,
  never the run; the rows after it are settled, and after a few attempts it is marked stuck where
  ops look (its row, the run's current details).
- h03: the ledger's receipt time decides (P12): a payment received before the deadline activates
  the renewal even when it reaches the workflow after the deadline's timer fired.
- h04: the same payment sent twice at once is one ledger row and a `duplicate`, never a 503.
"""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.store import Store
from client.payments import PaymentDesk
from client.renewals import Renewals
from ingress.http import create_app
from renewals import TASK_QUEUE, WORKFLOW_TYPE, workflow_id
from renewals.events import PaymentRegistered
from renewals.messages import Reconcile, Reconciled
from renewals.signing import signed_headers
from renewals.types import Stage
from tests.conftest import MailSink, eventually, handle_of, new_service, unique
from tests.invariants_support import PANEL, PAYMENTS, Api, payment_event, reconcile
from tests.test_p14_bounded_answers import Silent
from workflows.reconciler import LedgerReconciler

# ---------------------------------------------------------------------------- shared


async def open_and_checkout(api: Api, username: str) -> dict[str, Any]:
    assert (await api.panel({"type": "renew_requested", "username": username})).status_code == 200
    response = await api.panel(
        {"type": "checkout_submitted", "username": username, "payment_method": "bank_transfer", "years": 1}
    )
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    return order


async def received_only(store: Store, event: dict[str, Any]) -> datetime:
    """What the ingress writes first (P11); then it dies, or Temporal does not answer, and the
    renewal never hears of the payment."""
    received_at: datetime = await store.ledger.receive(PaymentRegistered.model_validate(event).entry())
    return received_at


async def ledger_row(store: Store, transaction_id: str) -> dict[str, Any]:
    row = await store.pool.fetchrow("SELECT * FROM payments WHERE transaction_id = $1", transaction_id)
    assert row is not None, f"no ledger row for {transaction_id}"
    return dict(row)


# ---------------------------------------------------------------------------- 2


async def silent_renewal(client: Client, store: Store) -> tuple[str, WorkflowHandle[Any, Any]]:
    """An order whose renewal runs on a task queue no worker polls: an update to it is never
    answered (a renewal wedged, a namespace overloaded). Returns the order's number."""
    service = await new_service(store)
    order_number = unique("FE-HANG")
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        WORKFLOW_TYPE,
        "never run",
        id=workflow_id(service.username),
        task_queue=unique("nobody-polls"),
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
    await store.pool.execute(
        """
        INSERT INTO orders (order_number, workflow_id, run_id, username, mode, years, payment_method,
                            net_cents, discount_cents, vat_cents, total_cents, previous_expires_on, due_by)
        VALUES ($1, $2, $3, $4, 'renew', 1, 'bank_transfer', 2500, 0, 550, 3050, $5, now() + interval '30 days')
        """,
        order_number,
        handle.id,
        handle.result_run_id,
        service.username,
        service.expires_on,
    )
    return order_number, handle


# The reconciler's policy for this test: seconds where production waits minutes.
QUICK = Reconcile(older_than=timedelta(0), row_timeout=timedelta(seconds=2), retry_after=timedelta(0), stuck_after=2)


async def reconciler_run(client: Client, request: Reconcile, *, within: float = 45) -> tuple[Reconciled, str]:
    """One run of the reconciler, as its Schedule starts it; its result and current details. A
    run that does not finish `within` seconds is stopped and fails the test."""
    handle = await client.start_workflow(
        LedgerReconciler.run,
        request,
        id=f"reconcile-h02-{uuid.uuid4().hex[:8]}",
        task_queue=TASK_QUEUE,
        execution_timeout=timedelta(minutes=5),
    )
    try:
        result: Reconciled = await asyncio.wait_for(handle.result(), within)
    except TimeoutError:
        await handle.terminate("h02: the run did not finish")
        raise AssertionError(f"the reconciler's run did not finish within {within} s") from None
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return result, metadata.current_details


async def test_h02_one_payment_whose_renewal_never_answers_is_marked_stuck_and_the_rest_flow(
    ingress: Renewals, store: Store, env
) -> None:
    hanging_order, hanging = await silent_renewal(env.client, store)
    stuck_event = payment_event(hanging_order, 3050)
    try:
        # The undeliverable payment first, then two that can be delivered: before, every run of
        # the reconciler failed on the first and retried it for ever, and the others waited.
        await received_only(store, stuck_event)
        good: list[tuple[str, dict[str, Any]]] = []
        async with Api(ingress) as api:
            for _ in range(2):
                service = await new_service(store)
                order = await open_and_checkout(api, service.username)
                event = payment_event(order["order_number"], order["total_cents"])
                await received_only(store, event)
                good.append((service.username, event))

        first, details = await reconciler_run(env.client, QUICK)
        for username, event in good:
            assert (await handle_of(env.client, username).result()).stage == Stage.ACTIVATED
            assert (await ledger_row(store, event["transaction_id"]))["status"] == "applied"
        row = await ledger_row(store, stuck_event["transaction_id"])
        assert row["status"] == "received"  # the money is kept, waiting for its renewal
        assert row["delivery_attempts"] == 1 and row["stuck_since"] is None, row
        assert "no answer from the renewal" in row["last_delivery_error"], row
        assert first.failed >= 1 and first.statuses.get("applied", 0) >= 2, first

        second, details = await reconciler_run(env.client, QUICK)
        row = await ledger_row(store, stuck_event["transaction_id"])
        assert row["status"] == "received" and row["delivery_attempts"] == 2 and row["stuck_since"] is not None, row
        assert stuck_event["transaction_id"] in {p.transaction_id for p in second.stuck}
        assert "**Stuck:**" in details and stuck_event["transaction_id"] in details, details
        # Ops find it with one query on the ledger.
        stuck_ids = await store.pool.fetch(
            "SELECT transaction_id FROM payments WHERE status = 'received' AND stuck_since IS NOT NULL"
        )
        assert stuck_event["transaction_id"] in {r["transaction_id"] for r in stuck_ids}
    finally:
        await hanging.terminate("h02: done")
    # The cause gone (here the renewal ended), the next run settles the row: kept for ops, no
    # longer stuck.
    await reconciler_run(env.client, QUICK)
    row = await ledger_row(store, stuck_event["transaction_id"])
    assert row["status"] == "unmatched", row


async def test_h02_a_row_tried_and_failed_waits_its_backoff(ingress: Renewals, store: Store, env) -> None:
    hanging_order, hanging = await silent_renewal(env.client, store)
    event = payment_event(hanging_order, 3050)
    try:
        await received_only(store, event)
        patient = QUICK.model_copy(update={"retry_after": timedelta(hours=1)})
        await reconciler_run(env.client, patient)
        row = await ledger_row(store, event["transaction_id"])
        assert row["delivery_attempts"] == 1 and row["next_delivery_at"] > datetime.now(UTC) + timedelta(minutes=50)
        again, _ = await reconciler_run(env.client, patient, within=15)  # not picked: no second wait
        assert event["transaction_id"] not in {p.transaction_id for p in again.stuck}
        assert (await ledger_row(store, event["transaction_id"]))["delivery_attempts"] == 1
    finally:
        await hanging.terminate("h02: done")
        await store.pool.execute(
            "UPDATE payments SET next_delivery_at = NULL WHERE transaction_id = $1", event["transaction_id"]
        )
    await reconciler_run(env.client, QUICK)
    assert (await ledger_row(store, event["transaction_id"]))["status"] == "unmatched"


async def test_h02_a_delivery_to_a_temporal_that_never_answers_is_cut_at_the_row_timeout(
    ingress: Renewals, store: Store
) -> None:
    """The bound itself, with Temporal hanging (a listener that never says a word): the row's
    delivery ends at `row_timeout`, counted on the row, and the money stays in the ledger."""
    service = await new_service(store)
    async with Api(ingress) as api:
        order = await open_and_checkout(api, service.username)
    event = payment_event(order["order_number"], order["total_cents"])
    entry = PaymentRegistered.model_validate(event).entry()
    entry.received_at = await store.ledger.receive(entry)
    async with Silent() as silent:
        hanging = await Client.connect(
            f"127.0.0.1:{silent.port}", namespace="default", data_converter=pydantic_data_converter, lazy=True
        )
        started = time.monotonic()
        outcome = await PaymentDesk(hanging, store).redeliver(entry, QUICK)
        took = time.monotonic() - started
    assert outcome is None and took < QUICK.row_timeout.total_seconds() + 2, took
    row = await ledger_row(store, event["transaction_id"])
    assert row["status"] == "received" and row["delivery_attempts"] == 1, row
    assert row["last_delivery_error"] == "no answer from the renewal in time (row_timeout 2 s)"
    # Temporal back: the same row is delivered and settled.
    delivered = await ingress.desk.redeliver(entry, QUICK)
    assert delivered is not None and delivered.status == "applied", delivered

    async def settled() -> bool:
        return (await ledger_row(store, event["transaction_id"]))["status"] == "applied"

    await eventually(settled, what="the ledger row settled")


# ---------------------------------------------------------------------------- 3


def keys_to(mail_sink: MailSink, address: str) -> list[str]:
    return sorted(str(message["X-Renewals-Key"]) for message in mail_sink.to(address))


async def test_h03_a_payment_received_before_the_deadline_activates_even_when_delivered_after_it(
    ingress: Renewals, store: Store, env, mail_sink: MailSink
) -> None:
    service = await new_service(store)
    async with Api(ingress) as api:
        order = await open_and_checkout(api, service.username)
    event = payment_event(order["order_number"], order["total_cents"])
    received_at = await received_only(store, event)
    assert received_at < datetime.fromisoformat(order["due_by"])  # on time, by the ledger's clock
    handle = handle_of(env.client, service.username)
    # The deadline's timer fires before the payment reaches the renewal ...
    await env.fast_forward(handle, timedelta(days=31))
    # ... which the reconciler delivers late.
    await reconcile(env.client, TASK_QUEUE)
    result = await handle.result()
    assert result.stage == Stage.ACTIVATED, f"the on-time payment lapsed the order: {result}"
    assert (await ledger_row(store, event["transaction_id"]))["status"] == "applied"
    renewed = await store.services.get(service.username)
    assert renewed is not None and renewed.expires_on > service.expires_on
    keys = await eventually(
        lambda: [k for k in keys_to(mail_sink, service.holder_email) if k.endswith("renewal_confirmed")],
        what="the confirmation email",
    )
    assert keys == [f"{order['order_number']}:renewal_confirmed"]
    assert not [k for k in keys_to(mail_sink, service.holder_email) if "lapsed" in k]


# ---------------------------------------------------------------------------- 4

ROUNDS = 20


async def both_waiting(store: Store) -> bool:
    """Both deliveries' inserts are in PostgreSQL, each waiting for the held row."""
    waiting = await store.pool.fetchval(
        """
        SELECT count(*) FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO payments%' AND pid <> pg_backend_pid()
        """
    )
    return waiting >= 2


async def test_h04_the_same_payment_twice_at_once_is_one_row_and_a_duplicate_never_a_503(
    ingress: Renewals, store: Store
) -> None:
    """The payments office sends one payment twice at once (a retry racing the first try, two
    ingress processes). In one event loop the two inserts rarely overlap, so in the `held` rounds
    a third transaction holds the transaction id until both inserts wait on it, then lets go: the
    two race as they do under load."""
    service = await new_service(store)
    async with Api(ingress) as api:
        order = await open_and_checkout(api, service.username)

        # The answers as the payments office gets them: an error the app did not expect is its 503.
        transport = httpx.ASGITransport(app=create_app(ingress, PANEL, PAYMENTS), raise_app_exceptions=False)
        office = httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60)

        async def send(body: bytes) -> httpx.Response:
            # Two deliveries by the payments office, each signed on its own (P21: its own nonce).
            headers = {"Content-Type": "application/json", **signed_headers(PAYMENTS, "POST", "/payments/events", body)}
            return await office.post("/payments/events", content=body, headers=headers)

        for round_number in range(ROUNDS):
            held = round_number % 2 == 0
            event = payment_event(order["order_number"], 1)  # one cent: partial every time
            body = json.dumps(event).encode()
            async with store.pool.acquire() as holder:
                holding = holder.transaction()
                if held:
                    await holding.start()
                    await holder.execute(
                        "INSERT INTO payments (transaction_id, order_number, amount_cents, currency, method,"
                        " registered_at) VALUES ($1, $2, 1, 'EUR', 'bank_transfer', now())",
                        event["transaction_id"],
                        order["order_number"],
                    )
                sending = asyncio.gather(send(body), send(body))
                if held:
                    try:
                        # Well before lock_timeout: the inserts must still be waiting when it lets go.
                        await eventually(lambda: both_waiting(store), timeout=5, what="both inserts")
                    finally:
                        await holding.rollback()
                answers = await sending
            codes = [answer.status_code for answer in answers]
            assert codes == [200, 200], [answer.text for answer in answers]
            statuses = sorted(answer.json()["status"] for answer in answers)
            assert statuses == ["duplicate", "partial"], statuses
            rows = await store.pool.fetchval(
                "SELECT count(*) FROM payments WHERE transaction_id = $1", event["transaction_id"]
            )
            assert rows == 1
        await office.aclose()
        shown = await api.renewal(service.username)
    assert shown["order"]["paid_cents"] == ROUNDS
