"""`GET /healthz` (docs/api.md, *Reads*): 200 when PostgreSQL and Temporal answered the last check,
503 with Retry-After otherwise. Unsigned, on the public app and on the admin app alike.

The answer is the last check, redone at most every `ttl` seconds whoever asks, so a flood of
probes costs nothing; it says up or down, never why (the log does, P14).
"""

import asyncio
import logging
import math
import time
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from client.renewals import Renewals
from ingress import openapi
from ingress.api import examples
from ingress.api.errors import RETRY_AFTER_SECONDS

router = APIRouter(tags=["ops"])
log = logging.getLogger("renewals.ingress")

Status = Literal["ok", "down"]


# The answer of /healthz, 200 and 503 alike (no docstring: it would become its schema's description).
class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status
    postgres: str = Field(description="`ok`, or `down`: PostgreSQL did not answer.")
    temporal: str = Field(description="`ok`, or `down`: Temporal did not answer.")


class HealthCheck:
    """The last check of PostgreSQL and Temporal, on `app.state.health`."""

    def __init__(self, ingress: Renewals, ttl: float = 5.0, timeout: float = 3.0) -> None:
        self.ingress, self.ttl, self.timeout = ingress, ttl, timeout
        self._checked_at = -math.inf
        self._answer = Health(status="down", postgres="down", temporal="down")
        self._lock = asyncio.Lock()

    async def answer(self) -> Health:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl:
                postgres, temporal = await asyncio.gather(self._postgres(), self._temporal())
                healthy = postgres == temporal == "ok"
                self._answer = Health(status="ok" if healthy else "down", postgres=postgres, temporal=temporal)
                self._checked_at = time.monotonic()
            return self._answer

    async def _postgres(self) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                await self.ingress.store.pool.fetchval("SELECT 1")
            return "ok"
        except Exception:  # noqa: BLE001 - health reports, it does not raise; the log says why
            log.warning("health: PostgreSQL did not answer", exc_info=True)
            return "down"

    async def _temporal(self) -> str:
        try:
            # Both bounds: the RPC's own timeout does not cover a connection that never completes.
            async with asyncio.timeout(self.timeout):
                await self.ingress.client.service_client.check_health(timeout=timedelta(seconds=self.timeout))
            return "ok"
        except Exception:  # noqa: BLE001
            log.warning("health: Temporal did not answer", exc_info=True)
            return "down"


def health_of(request: Request) -> HealthCheck:
    check: HealthCheck = request.app.state.health
    return check


HealthDep = Annotated[HealthCheck, Depends(health_of)]


@router.get(
    "/healthz",
    summary="200 when Temporal and PostgreSQL answer",
    response_model=Health,
    response_description="Both answer.",
    responses={
        200: openapi.examples({"ok": examples.HEALTH_UP}),
        503: {
            "model": Health,
            "description": "PostgreSQL or Temporal did not answer.",
            "headers": openapi.RETRY_AFTER,
            **openapi.examples({"down": examples.HEALTH_DOWN}),
        },
    },
)
async def health(check: HealthDep, response: Response) -> Health:
    """Unsigned; keep it off the public route of a reverse proxy."""
    answer = await check.answer()
    if answer.status != "ok":
        response.status_code = 503
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return answer
