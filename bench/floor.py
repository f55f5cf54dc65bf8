"""The engine floor: a workflow with the Temporal operations of one paid renewal and nothing else.

It mirrors `workflows/renewal.py` on the bench's path (bank transfer, one add-on, a discount code,
checkout, one full payment): the same five updates (update-with-start `open`, `add_addon`,
`apply_discount` with an activity inside, `checkout` with an activity inside, `register_payment`),
the same seven activities (load, discount lookup, create order, instructions email, ledger,
activation, confirmation email) with no-op bodies, the same search-attribute upserts and current
details, the same durable timers started and cancelled (the cart-idle wait restarted by every
change, the first reminder cancelled by the payment), and the activation starting a second
workflow, as the renewal's starts its invoice's delivery (P18; `FloorDelivery`, as on the bench's
worker, which has no SdI). `python -m bench` compares both histories
event type by event type, so a drift between the two shows in the results.

`python -m bench.floor` runs its worker with the settings `worker.build_worker` gives the real one.
"""

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

# Passed through like the renewal's own imports: the sandbox re-runs this module per workflow,
# and pydantic models built there would cost every run a schema build the renewal never pays.
with workflow.unsafe.imports_passed_through():
    from bench.floor_activities import (
        FLOOR_DELIVERY_TYPE,
        FLOOR_TASK_QUEUE,
        FLOOR_WORKFLOW_TYPE,
        FloorActivities,
        FloorInput,
        FloorResult,
        FloorView,
        Step,
        floor_activities,
    )
    from renewals import search_attributes as sa

# The renewal's activity options, so retries and timeouts cost the same.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
ACTIVITY_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=FLOOR_WORKFLOW_TYPE)
class FloorWorkflow:
    @workflow.init
    def __init__(self, input: FloorInput) -> None:
        self._stage = "OPENING"
        self._changes = 0
        self._checking_out = False
        self._order: str | None = None
        self._total = 0
        self._paid = 0
        self._outbox: list[Step] = []

    @workflow.run
    async def run(self, input: FloorInput) -> FloorResult:
        workflow.upsert_search_attributes([sa.USERNAME.value_set(input.username)])
        await self._call(FloorActivities.load, Step(name="load"))
        self._set_stage("CART")
        while self._stage == "CART":
            seen = self._changes
            try:
                await workflow.wait_condition(self._changed_since(seen), timeout=input.cart_idle)
            except TimeoutError:
                pass
        await self._call(FloorActivities.email, Step(name="payment_instructions"))
        while True:
            while self._outbox:
                await self._call(FloorActivities.settle, self._outbox.pop(0))
            if self._paid >= self._total:
                await self._call(FloorActivities.activate, Step(name="activate", key=input.username))
                self._set_stage("ACTIVATED")
                await self._call(FloorActivities.email, Step(name="renewal_confirmed"))
                break
            self._details()
            seen = self._changes
            try:
                await workflow.wait_condition(self._changed_since(seen), timeout=input.reminder)
            except TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        return FloorResult(stage=self._stage, username=input.username)

    async def _call(self, method: Callable[[Any, Step], Awaitable[Step]], step: Step) -> Step:
        return await workflow.execute_activity_method(
            method,
            step,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            summary=f"floor {step.name}",
        )

    @workflow.update
    async def open(self, step: Step) -> FloorView:
        await workflow.wait_condition(lambda: self._stage != "OPENING")
        return self._view()

    @workflow.update
    async def add_addon(self, step: Step) -> FloorView:
        self._touch()
        return self._view()

    @add_addon.validator
    def _validate_add_addon(self, step: Step) -> None:
        self._require_cart()

    @workflow.update
    async def apply_discount(self, step: Step) -> FloorView:
        await self._call(FloorActivities.lookup, step)
        self._require_cart()
        self._touch()
        return self._view()

    @apply_discount.validator
    def _validate_apply_discount(self, step: Step) -> None:
        self._require_cart()

    @workflow.update
    async def checkout(self, step: Step) -> FloorView:
        self._checking_out = True
        self._touch()
        try:
            created = await self._call(FloorActivities.create_order, step)
        finally:
            self._checking_out = False
        self._order, self._total = created.name, created.amount_cents
        self._set_stage("AWAITING_PAYMENT")
        return self._view()

    @checkout.validator
    def _validate_checkout(self, step: Step) -> None:
        self._require_cart()

    @workflow.update
    async def register_payment(self, step: Step) -> FloorView:
        self._paid += step.amount_cents
        self._outbox.append(step)
        self._touch()
        return self._view()

    def _require_cart(self) -> None:
        if self._stage != "CART" or self._checking_out:
            raise ApplicationError(f"the cart can no longer change: {self._stage}", non_retryable=True)

    def _changed_since(self, seen: int) -> Callable[[], bool]:
        return lambda: self._changes != seen

    def _touch(self) -> None:
        self._changes += 1
        self._details()

    def _set_stage(self, stage: str) -> None:
        self._stage = stage
        self._changes += 1
        pairs: list[SearchAttributeUpdate[Any]] = [sa.STAGE.value_set(stage)]
        if self._order is not None:
            pairs += [
                sa.ORDER.value_set(self._order),
                sa.PAYMENT_METHOD.value_set("bank_transfer"),
                sa.DUE_BY.value_set(workflow.now() + timedelta(days=30)),
                sa.TOTAL_CENTS.value_set(self._total),
            ]
        workflow.upsert_search_attributes(pairs)
        self._details()

    def _details(self) -> None:
        workflow.set_current_details(f"**Stage:** {self._stage}\n\n**Changes:** {self._changes}")

    def _view(self) -> FloorView:
        return FloorView(stage=self._stage, changes=self._changes, order_number=self._order, total_cents=self._total)


@workflow.defn(name=FLOOR_DELIVERY_TYPE)
class FloorDelivery:
    """The invoice delivery's first moves on a worker without SDI_URL (workflows/invoice.py): the
    12-day alarm's timer, the send (refused, asked again in 5 minutes), the wait for SdI's word."""

    @workflow.run
    async def run(self, step: Step) -> None:
        alarm = asyncio.create_task(asyncio.sleep(timedelta(days=12).total_seconds()))
        workflow.set_current_details("**State:** sending")
        await workflow.execute_activity_method(
            FloorActivities.transmit,
            step,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5)),
            summary=f"floor send {step.key}",
        )
        await alarm


async def main() -> None:
    """The floor's worker: the real worker's settings (`build_worker`), the floor's workflow."""
    import asyncpg
    from temporalio.worker import Worker

    from activities.mail import Mailer
    from activities.store import Store
    from settings import load_settings
    from worker import build_worker, connect

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    client = await connect(settings)
    # Built only to read its settings; it never runs, so its store needs no pool.
    store = Store(cast(asyncpg.Pool, None))
    reference = build_worker(client, store, Mailer(store, "", 0, ""), settings.temporal_task_queue)
    config = reference.config()
    config["task_queue"] = FLOOR_TASK_QUEUE
    config["workflows"] = [FloorWorkflow, FloorDelivery]
    config["activities"] = floor_activities(client)
    worker = Worker(**config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        logging.info("floor worker polling task queue %s", FLOOR_TASK_QUEUE)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
