"""The engine floor's no-op activities and the small models its workflow passes around.

Outside the workflow module, as `activities/` and `renewals`'s models are for the renewal, so the
sandbox imports them once, not once per workflow run.
"""

from collections.abc import Callable
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.sdi import NO_SDI_RETRY
from client.starts import delivery_search_attributes

FLOOR_TASK_QUEUE = "bench-floor"
FLOOR_WORKFLOW_TYPE = "BenchFloorWorkflow"
FLOOR_DELIVERY_TYPE = "BenchFloorDelivery"


class FloorInput(BaseModel):
    username: str
    cart_idle: timedelta
    reminder: timedelta


class Step(BaseModel):
    """Every update's argument and every activity's input and result: one small model."""

    name: str
    amount_cents: int = 0
    key: str = ""


class FloorView(BaseModel):
    stage: str
    changes: int
    order_number: str | None = None
    total_cents: int = 0


class FloorResult(BaseModel):
    stage: str
    username: str


class FloorActivities:
    """No-op bodies: the cost left is the engine's (schedule, poll, complete, record). The
    activation starts a delivery workflow, as the renewal's starts its invoice's (P18)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name="floor_load")
    async def load(self, step: Step) -> Step:
        return step

    @activity.defn(name="floor_lookup")
    async def lookup(self, step: Step) -> Step:
        return step

    @activity.defn(name="floor_create_order")
    async def create_order(self, step: Step) -> Step:
        return Step(name="FE-0000-000000", amount_cents=3050)

    @activity.defn(name="floor_settle")
    async def settle(self, step: Step) -> Step:
        return step

    @activity.defn(name="floor_activate")
    async def activate(self, step: Step) -> Step:
        await self.client.start_workflow(
            FLOOR_DELIVERY_TYPE,
            step,
            id=f"floor-invoice-{step.key}",
            task_queue=FLOOR_TASK_QUEUE,
            static_summary=f"floor delivery {step.key}",
            search_attributes=delivery_search_attributes(step.key, step.key, step.key),
        )
        return step

    @activity.defn(name="floor_transmit")
    async def transmit(self, step: Step) -> Step:
        """As the real send on a worker without SDI_URL: refused, asked again in 5 minutes."""
        raise ApplicationError(
            "no SdI on the floor", next_retry_delay=NO_SDI_RETRY, category=ApplicationErrorCategory.BENIGN
        )

    @activity.defn(name="floor_email")
    async def email(self, step: Step) -> Step:
        return step


def floor_activities(client: Client) -> list[Callable[..., object]]:
    activities = FloorActivities(client)
    return [
        activities.load,
        activities.lookup,
        activities.create_order,
        activities.settle,
        activities.activate,
        activities.transmit,
        activities.email,
    ]
