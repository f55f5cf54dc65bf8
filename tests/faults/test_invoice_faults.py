"""Invoice numbers survive worker crashes (P17): N renewals wait for payment, then all are paid at
once while the worker is SIGKILLed, each time while an activation holds the invoice number it took
in its transaction (a lock the test holds makes it wait right there). Afterwards every renewal is
ACTIVATED and the invoices are numbered exactly 1..N: one per order, the numbers held by killed
activations given back and taken again, none lost, none repeated.

The full size (100) is slow, for `make faults`; `make test` runs a bounded one.
"""

import asyncio
import os
import random
import signal
import time
from datetime import UTC, datetime

import pytest
from temporalio.api.enums.v1 import EventType

from client.renewals import Renewals
from renewals.dates import add_years
from renewals.events import CheckoutSubmitted, PaymentRegistered, RenewRequested
from renewals.invoice import schema_problems, sdi_problems
from renewals.records import ServiceRecord
from renewals.types import Stage
from renewals.views import OrderView
from tests.conftest import eventually, handle_of
from tests.faults.conftest import Stack, pause, seed_batch
from tests.faults.test_faults import retrying

FULL = int(os.environ.get("FAULTS_RENEWALS", "100"))
BOUNDED = 30


async def awaiting_payment(ingress: Renewals, service: ServiceRecord) -> OrderView:
    await retrying(lambda: ingress.panel(RenewRequested(type="renew_requested", username=service.username)))
    order = await retrying(
        lambda: ingress.panel(
            CheckoutSubmitted(
                type="checkout_submitted", username=service.username, payment_method="bank_transfer", years=1
            )
        )
    )
    assert isinstance(order, OrderView)
    return order


async def checkout_all(ingress: Renewals, services: list[ServiceRecord]) -> list[OrderView]:
    """Every service's renewal opened and checked out, 20 at a time: orders awaiting payment."""
    gate = asyncio.Semaphore(20)

    async def checkout(service: ServiceRecord) -> OrderView:
        async with gate:
            return await awaiting_payment(ingress, service)

    return list(await asyncio.gather(*(checkout(s) for s in services)))


async def eventually_waiting(conn, timeout: float = 60) -> bool:
    """True once an activation is blocked on our lock (PostgreSQL says a backend waits on a lock),
    False once every order is already paid. Killed activations come back after their 30 s timeout:
    wait longer."""

    async def waiting_or_done() -> str | None:
        # Inside a transaction PostgreSQL keeps the first read of pg_stat_activity for the rest of
        # it: without clearing that snapshot, a wait that begins after the first poll is never seen.
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        if await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"):
            return "waiting"
        if not await conn.fetchval("SELECT count(*) FROM orders WHERE status = 'awaiting_payment'"):
            return "done"
        return None

    return await eventually(waiting_or_done, timeout, "an activation to reach the invoice") == "waiting"


async def retried_activations(ingress: Renewals, usernames: list[str]) -> int:
    """Activation attempts after the first, from the histories: how many kills cut one short."""
    retried = 0
    for username in usernames:
        activities: dict[int, str] = {}
        async for event in handle_of(ingress.client, username).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                activities[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started = event.activity_task_started_event_attributes
                if activities.get(started.scheduled_event_id) == "activate":
                    retried += started.attempt - 1
    return retried


async def pay_all_while_killing_the_worker(stack: Stack, ingress: Renewals, renewals: int, kills: int) -> None:
    services = await seed_batch(ingress, "invoice", renewals)
    orders = await checkout_all(ingress, services)

    async def pay(order: OrderView) -> None:
        event = PaymentRegistered(
            type="payment_registered",
            order_number=order.order_number,
            transaction_id=f"txn-{order.order_number}",
            amount_cents=order.total_cents,
            currency="EUR",
            method="bank_transfer",
            registered_at=datetime.now(UTC),
        )
        outcome = await retrying(lambda: ingress.payment(event))
        assert outcome.status in ("applied", "duplicate"), outcome

    holding: list[int] = []

    async def kill_the_worker_mid_activation() -> None:
        """Each round: hold a SHARE lock on invoices, so the next activation takes its number from
        the year's counter and then waits at its INSERT (the others queue behind the counter);
        SIGKILL the worker while it waits, let go, start a new worker. The killed transactions
        roll back; their activities are retried once their 30 s timeout passes."""
        for _ in range(kills):
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("LOCK TABLE invoices IN SHARE MODE")
                waiting = await eventually_waiting(conn)
                if not waiting:
                    break  # every activation is done
                committed = await pool.fetchval("SELECT coalesce(max(last_progressive), 0) FROM invoice_counters")
                holding.append(committed + 1)
                stack.stop("worker", signal.SIGKILL)
            stack.start_worker()
            await pause(random.uniform(0.5, 2.0))

    pool = ingress.store.pool
    started = time.monotonic()
    # Every payment at once: their activations run together, and the kills land among them.
    await asyncio.gather(kill_the_worker_mid_activation(), *(pay(o) for o in orders))
    results = await asyncio.gather(
        *(retrying(lambda s=s: handle_of(ingress.client, s.username).result()) for s in services)
    )
    elapsed = time.monotonic() - started
    assert [r.stage for r in results] == [Stage.ACTIVATED] * renewals

    usernames = [s.username for s in services]
    for service in services:
        current = await ingress.store.services.get(service.username)
        assert current is not None and current.expires_on == add_years(service.expires_on, 1)
    rows = await pool.fetch(
        "SELECT order_number, state, progressive, xml FROM invoices WHERE username = ANY($1)", usernames
    )
    assert sorted(r["order_number"] for r in rows) == sorted(o.order_number for o in orders), "one per order"
    progressives = sorted(r["progressive"] for r in rows)
    assert progressives == list(range(1, renewals + 1)), "1..N, no gap, no repeat"
    for row in rows:
        xml = row["xml"].encode()
        assert row["state"] == "issued" and schema_problems(xml) == [] and sdi_problems(xml) == []
    retried = await retried_activations(ingress, usernames)
    assert holding and retried >= len(holding), (holding, retried)
    print(
        f"\nFAULT invoices under worker SIGKILL: renewals {renewals}, paid at once, worker killed "
        f"{len(holding)} times mid-activation holding numbers {holding}, activation attempts retried {retried}, "
        f"invoices {progressives[0]}..{progressives[-1]} ({len(set(progressives))} distinct), in {elapsed:.0f} s"
    )


@pytest.mark.slow
async def test_p17_invoice_numbers_gapless_when_the_worker_dies_mid_activation(stack, fault_ingress):
    await pay_all_while_killing_the_worker(stack, fault_ingress, BOUNDED, kills=1)


@pytest.mark.slow
async def test_p17_invoice_numbers_gapless_for_100_activations_under_worker_kills(stack, fault_ingress):
    await pay_all_while_killing_the_worker(stack, fault_ingress, FULL, kills=3)
