"""The load: renewals through `client.renewals.Renewals` (the one mapping from events to
workflow operations, as the HTTP app uses it), the floor through the same client calls, and the
shapes of load the bench needs — closed loop at a concurrency, open loop at a rate, park and pay.
"""

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from activities.store import Store
from bench.floor import FloorWorkflow
from bench.floor_activities import FLOOR_TASK_QUEUE, FloorInput, Step
from client.renewals import Renewals
from renewals import search_attributes as sa
from renewals import workflow_id
from renewals.dates import rome_today
from renewals.events import AddonAdded, CheckoutSubmitted, DiscountCodeApplied, PaymentRegistered, RenewRequested
from renewals.messages import Policy
from renewals.records import ServiceRecord
from renewals.types import Stage
from renewals.views import OrderView
from workflows.renewal import RenewalWorkflow

# The latencies reported per renewal, in the order a customer meets them.
EVENTS = [
    "renew_requested",
    "addon_added",
    "discount_code_applied",
    "checkout_submitted",
    "payment_registered",
    "payment_to_activation",
]
RENEWAL_TIMEOUT = 300.0


@dataclass
class Parked:
    """A renewal left awaiting payment: what paying it needs."""

    username: str
    order_number: str
    total_cents: int


@dataclass
class Outcome:
    latencies: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0


@dataclass
class Run:
    """What one stretch of load did: outcomes and the wall time it took."""

    outcomes: list[Outcome]
    seconds: float

    @property
    def ok(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.error is None]

    @property
    def errors(self) -> list[str]:
        return [outcome.error for outcome in self.outcomes if outcome.error is not None]

    @property
    def per_second(self) -> float:
        return len(self.ok) / self.seconds if self.seconds > 0 else 0.0

    def steady_per_second(self, concurrency: int) -> float:
        """Completions per second while all `concurrency` customers were busy: from the
        concurrency-th completion (each has finished one: past the burst of the start) to the
        last start (after it, fewer are in flight). The whole run's rate when that window is short."""
        finished = sorted(outcome.finished for outcome in self.ok)
        if not finished or not self.outcomes:
            return self.per_second
        last_start = max(outcome.started for outcome in self.outcomes)
        begin = finished[min(concurrency, len(finished)) - 1]
        inside = sum(1 for moment in finished if begin < moment <= last_start)
        if last_start <= begin or inside < max(concurrency, 10):
            return self.per_second
        return inside / (last_start - begin)


def _since(start: float) -> float:
    return time.perf_counter() - start


class Driver:
    """Sends what the panel and the payments back office would send, and times each answer."""

    def __init__(self, client: Client, store: Store, policy: Policy, task_queue: str) -> None:
        self.client = client
        self.store = store
        self.policy = policy
        self.ingress = Renewals(client, store, policy, task_queue)
        self.run_id = uuid.uuid4().hex[:6]
        self._serial = 0

    # ------------------------------------------------------------------ data

    def usernames(self, prefix: str, count: int) -> list[str]:
        names = [f"bench-{self.run_id}-{prefix}-{self._serial + n:06d}" for n in range(count)]
        self._serial += count
        return names

    async def seed(self, usernames: list[str], batch: int = 500) -> None:
        """Services to renew, not timed: active, auto-renew off, 40 % storage, one extra user."""
        today = rome_today(datetime.now(UTC))
        for start in range(0, len(usernames), batch):
            await self.store.services.upsert([_service(name, today) for name in usernames[start : start + batch]])

    # ------------------------------------------------------------------ one renewal, the real path

    async def park(self, username: str, latencies: dict[str, float]) -> Parked:
        """Renew, add a storage pack, apply PARTNER10, check out by bank transfer: awaiting payment."""
        start = time.perf_counter()
        await self.ingress.panel(RenewRequested(type="renew_requested", username=username))
        latencies["renew_requested"] = _since(start)
        start = time.perf_counter()
        await self.ingress.panel(AddonAdded(type="addon_added", username=username, addon="extra_storage", quantity=1))
        latencies["addon_added"] = _since(start)
        start = time.perf_counter()
        await self.ingress.panel(DiscountCodeApplied(type="discount_code_applied", username=username, code="PARTNER10"))
        latencies["discount_code_applied"] = _since(start)
        start = time.perf_counter()
        order = await self.ingress.panel(
            CheckoutSubmitted(type="checkout_submitted", username=username, payment_method="bank_transfer", years=1)
        )
        latencies["checkout_submitted"] = _since(start)
        assert isinstance(order, OrderView), order
        return Parked(username, order.order_number, order.total_cents)

    async def pay(self, parked: Parked, latencies: dict[str, float]) -> None:
        """The bank transfer in full; then wait for the workflow to close ACTIVATED."""
        start = time.perf_counter()
        await self.pay_only(parked)
        latencies["payment_registered"] = _since(start)
        await self.activated(parked.username)
        latencies["payment_to_activation"] = _since(start)

    async def pay_only(self, parked: Parked) -> None:
        """The payments back office's event: ledger first (P5), then the renewal's update."""
        outcome = await self.ingress.payment(
            PaymentRegistered(
                type="payment_registered",
                order_number=parked.order_number,
                transaction_id=f"BT-{parked.username}",
                amount_cents=parked.total_cents,
                currency="EUR",
                method="bank_transfer",
                registered_at=datetime.now(UTC),
            )
        )
        if outcome.status != "applied":
            raise RuntimeError(f"payment of {parked.order_number} was {outcome.status}")

    async def activated(self, username: str) -> None:
        handle = self.client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(username))
        result = await handle.result()
        if result.stage != Stage.ACTIVATED:
            raise RuntimeError(f"{username} closed {result.stage}: {result.reason}")

    async def renewal(self, username: str) -> dict[str, float]:
        latencies: dict[str, float] = {}
        parked = await self.park(username, latencies)
        await self.pay(parked, latencies)
        return latencies

    # ------------------------------------------------------------------ one floor workflow

    async def floor(self, username: str) -> dict[str, float]:
        """The same client operations on the floor workflow, without the ingress's reads."""
        latencies: dict[str, float] = {}
        client, wid = self.client, f"floor-{username}"
        start = time.perf_counter()
        operation = WithStartWorkflowOperation(
            FloorWorkflow.run,
            FloorInput(username=username, cart_idle=self.policy.cart_idle, reminder=self.policy.reminders[0]),
            id=wid,
            task_queue=FLOOR_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"Floor workflow of {username}",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(sa.USERNAME, username), SearchAttributePair(sa.STAGE, Stage.OPENING.value)]
            ),
        )
        await client.execute_update_with_start_workflow(
            FloorWorkflow.open, Step(name="renew"), start_workflow_operation=operation
        )
        latencies["renew_requested"] = _since(start)
        handle = client.get_workflow_handle_for(FloorWorkflow.run, wid)
        for event, update, step in (
            ("addon_added", FloorWorkflow.add_addon, Step(name="extra_storage")),
            ("discount_code_applied", FloorWorkflow.apply_discount, Step(name="PARTNER10")),
            ("checkout_submitted", FloorWorkflow.checkout, Step(name="bank_transfer")),
        ):
            start = time.perf_counter()
            await handle.execute_update(update, step)
            latencies[event] = _since(start)
        start = time.perf_counter()
        await handle.execute_update(FloorWorkflow.register_payment, Step(name="BT", amount_cents=3050))
        latencies["payment_registered"] = _since(start)
        result = await handle.result()
        latencies["payment_to_activation"] = _since(start)
        if result.stage != "ACTIVATED":
            raise RuntimeError(f"floor {username} closed {result.stage}")
        return latencies


def _service(username: str, today: date) -> ServiceRecord:
    return ServiceRecord.model_validate(
        {
            "username": username,
            "holder_name": "Bench S.r.l.",
            "holder_email": f"{username}@example.com",
            "purchased_on": today - timedelta(days=300),
            "expires_on": today + timedelta(days=60),
            "auto_renew": False,
            "storage_quota_mb": 1000,
            "storage_used_mb": 400,
            "addons": [{"addon": "extra_users", "quantity": 1}],
            # Billing data, so each activation issues its FatturaPA invoice as a real one does (P17).
            "billing": {
                "holder_type": "company",
                "company_name": "Bench S.r.l.",
                "vat_number": "09876540015",
                "address": {"street": "Via Nazionale 10", "cap": "00184", "comune": "Roma", "provincia": "RM"},
                "recipient_code": "K7QW2XZ",
            },
        }
    )


# ---------------------------------------------------------------------- shapes of load


async def _timed(work: Callable[[str], Awaitable[dict[str, float]]], username: str) -> Outcome:
    outcome = Outcome(started=time.perf_counter())
    try:
        outcome.latencies = await asyncio.wait_for(work(username), RENEWAL_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - a failed renewal is a result, not the end of the bench
        outcome.error = f"{type(error).__name__}: {error}"[:300]
    outcome.finished = time.perf_counter()
    return outcome


async def closed_loop(
    work: Callable[[str], Awaitable[dict[str, float]]],
    usernames: list[str],
    concurrency: int,
    max_seconds: float | None = None,
) -> Run:
    """`concurrency` customers, each starting the next renewal when its last one closes."""
    names: Iterator[str] = iter(usernames)
    outcomes: list[Outcome] = []
    start = time.perf_counter()
    deadline = start + max_seconds if max_seconds else None

    async def customer() -> None:
        for username in names:
            if deadline is not None and time.perf_counter() > deadline:
                return
            outcomes.append(await _timed(work, username))

    await asyncio.gather(*(customer() for _ in range(concurrency)))
    return Run(outcomes, _since(start))


async def open_loop(
    work: Callable[[str], Awaitable[dict[str, float]]], usernames: list[str], rate: float, seed: int = 7
) -> Run:
    """Renewals arriving at `rate` per second (Poisson), whatever the system's answer times."""
    arrivals = random.Random(seed)
    start = time.perf_counter()
    tasks: list[asyncio.Task[Outcome]] = []
    due = start
    for username in usernames:
        due += arrivals.expovariate(rate)
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(_timed(work, username)))
    outcomes = list(await asyncio.gather(*tasks))
    return Run(outcomes, _since(start))


async def park_all(driver: Driver, usernames: list[str], concurrency: int) -> tuple[Run, list[Parked]]:
    parked: list[Parked] = []

    async def one(username: str) -> dict[str, float]:
        latencies: dict[str, float] = {}
        parked.append(await driver.park(username, latencies))
        return latencies

    run = await closed_loop(one, usernames, concurrency)
    return run, parked


async def pay_all(driver: Driver, parked: list[Parked], concurrency: int, waiters: int = 256) -> Run:
    """Pay every parked renewal (`concurrency` senders), then wait until each has closed ACTIVATED.

    The waits run apart from the senders, so the drain time is the system's, not the senders'.
    """
    senders, watching = asyncio.Semaphore(concurrency), asyncio.Semaphore(waiters)
    start = time.perf_counter()

    async def one(item: Parked) -> Outcome:
        outcome = Outcome(started=time.perf_counter())
        try:
            async with senders:
                sent = time.perf_counter()
                await asyncio.wait_for(driver.pay_only(item), RENEWAL_TIMEOUT)
                outcome.latencies["payment_registered"] = _since(sent)
            async with watching:
                await asyncio.wait_for(driver.activated(item.username), RENEWAL_TIMEOUT)
            outcome.latencies["payment_to_activation"] = _since(sent)
        except Exception as error:  # noqa: BLE001
            outcome.error = f"{type(error).__name__}: {error}"[:300]
        outcome.finished = time.perf_counter()
        return outcome

    outcomes = list(await asyncio.gather(*(one(item) for item in parked)))
    return Run(outcomes, _since(start))


async def history_counts(client: Client, workflow_ids: list[str]) -> dict[str, Any]:
    """Events per workflow (mean over the given ones) and, for the first, counts by event type."""
    from temporalio.api.enums.v1 import EventType

    totals = []
    by_type: dict[str, int] = {}
    for index, wid in enumerate(workflow_ids):
        history = await client.get_workflow_handle(wid).fetch_history()
        totals.append(len(history.events))
        if index == 0:
            for event in history.events:
                name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
                by_type[name] = by_type.get(name, 0) + 1
    return {
        "events": sum(totals) / len(totals) if totals else 0,
        "workflows": len(totals),
        "by_type": dict(sorted(by_type.items())),
    }
