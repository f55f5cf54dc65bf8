"""The engine floor's no-op activities and the small models its workflow passes around.

Outside the workflow module, as `activities/` and `renewals`'s models are for the renewal, so the
sandbox imports them once, not once per workflow run.
"""

from collections.abc import Callable
from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity

FLOOR_TASK_QUEUE = "bench-floor"
FLOOR_WORKFLOW_TYPE = "BenchFloorWorkflow"


class FloorInput(BaseModel):
    username: str
    cart_idle: timedelta
    reminder: timedelta


class Step(BaseModel):
    """Every update's argument and every activity's input and result: one small model."""

    name: str
    amount_cents: int = 0


class FloorView(BaseModel):
    stage: str
    changes: int
    order_number: str | None = None
    total_cents: int = 0


class FloorResult(BaseModel):
    stage: str
    username: str


class FloorActivities:
    """No-op bodies: the cost left is the engine's (schedule, poll, complete, record)."""

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
        return step

    @activity.defn(name="floor_email")
    async def email(self, step: Step) -> Step:
        return step


def floor_activities() -> list[Callable[..., object]]:
    activities = FloorActivities()
    return [
        activities.load,
        activities.lookup,
        activities.create_order,
        activities.settle,
        activities.activate,
        activities.email,
    ]
