"""What the issue-12 tests share (tests/test_issue12_items.py, tests/test_invariants_model.py): a
signed HTTP client on the real app, the ledger reconciler run on demand, and the checks of a
renewal's history that the invariants read."""

import json
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from client.renewals import Renewals
from ingress.http import create_app
from renewals.messages import Reconcile, Reconciled
from renewals.signing import signed_headers
from workflows.reconciler import LedgerReconciler

PANEL = "panel-test-secret"
PAYMENTS = "payments-test-secret"
# P14: every answer within 15 s.
ANSWER_LIMIT_SECONDS = 15.0


class Api:
    """The signed HTTP API of ingress/http.py as the panel and the payments office call it; every
    answer is timed (I5)."""

    def __init__(self, ingress: Renewals, **app_options: Any) -> None:
        transport = httpx.ASGITransport(app=create_app(ingress, PANEL, PAYMENTS, **app_options))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60)
        self.slowest = 0.0

    async def __aenter__(self) -> "Api":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def _timed(self, request: Any) -> httpx.Response:
        started = time.monotonic()
        response: httpx.Response = await request
        took = time.monotonic() - started
        self.slowest = max(self.slowest, took)
        assert took < ANSWER_LIMIT_SECONDS, f"I5: {response.request.url} answered in {took:.1f} s"
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) >= 1, "I5: a 503 without Retry-After"
        return response

    async def panel(self, payload: dict[str, Any], key: str | None = None) -> httpx.Response:
        body = json.dumps(payload).encode()
        signed = signed_headers(PANEL, "POST", "/panel/events", body, idempotency_key=key)
        headers = {"Content-Type": "application/json", **signed}
        return await self._timed(self.http.post("/panel/events", content=body, headers=headers))

    async def payment(self, payload: dict[str, Any]) -> httpx.Response:
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **signed_headers(PAYMENTS, "POST", "/payments/events", body)}
        return await self._timed(self.http.post("/payments/events", content=body, headers=headers))

    async def get(self, path: str) -> httpx.Response:
        headers = signed_headers(PANEL, "GET", path)
        return await self._timed(self.http.get(path, headers=headers))

    async def renewal(self, username: str) -> dict[str, Any]:
        response = await self.get(f"/panel/renewals/{username}")
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


def payment_event(order_number: str, amount_cents: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "payment_registered",
        "order_number": order_number,
        "transaction_id": f"txn-{uuid.uuid4().hex[:12]}",
        "amount_cents": amount_cents,
        "currency": "EUR",
        "method": "bank_transfer",
        "registered_at": "2026-11-27T10:00:00Z",
        **fields,
    }


async def reconcile(client: Client, task_queue: str, older_than: timedelta = timedelta(0)) -> Reconciled:
    """One run of the ledger reconciler, as its Schedule starts it (worker.ensure_reconciler_schedule)."""
    result: Reconciled = await client.execute_workflow(
        LedgerReconciler.run,
        Reconcile(older_than=older_than),
        id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        execution_timeout=timedelta(minutes=2),
    )
    return result


async def failed_workflow_tasks(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """I1: every WORKFLOW_TASK_FAILED in the history, with its cause (none may ever be there)."""
    failures = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            attributes = event.workflow_task_failed_event_attributes
            failures.append(f"{attributes.cause}: {attributes.failure.message}")
    return failures
