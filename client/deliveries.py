"""Ops on invoices' deliveries through SdI (P18), for `starter.py invoice`: an invoice's SdI record,
a corrected resend, closing a rejection, what needs a person, and starting the deliveries of
invoices issued without one (issued by hand, or before SdI delivery existed).

Every change goes through the invoice's delivery workflow (`invoice-<number>`), never the tables.
"""

from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from client.payments import closed
from client.starts import start_invoice_delivery
from db import sdi as table
from renewals import delivery_id
from renewals import search_attributes as sa
from renewals.delivery import CloseDelivery, DeliveryInput, DeliveryView, Resend, SdiPolicy

# What needs a person: the louder states, and the 12-day alarm in any state.
ATTENTION = "SdiState IN ('in_doubt', 'overdue', 'rejected', 'rejected_urgent', 'rejected_ops') OR SdiAlarm = true"


class DeliveryRefused(Exception):
    """An ops request the delivery refused, with its reason."""


class Deliveries:
    def __init__(self, client: Client, pool: asyncpg.Pool, task_queue: str, policy: SdiPolicy) -> None:
        self.client, self.pool, self.task_queue, self.policy = client, pool, task_queue, policy

    async def record(self, number: str) -> dict[str, Any]:
        """The invoice's SdI record (state, files, notifications) and its delivery as ops see it."""
        receipts = await table.receipts_of(self.pool, number)
        if receipts is None:
            raise DeliveryRefused(f"no invoice numbered {number!r}")
        record = receipts.model_dump(mode="json")
        for receipt in record["receipts"]:
            receipt.pop("file")  # the signed files: GET /panel/invoices/{number}/receipts has them
        try:
            view = await self.client.get_workflow_handle(delivery_id(number)).query("view", result_type=DeliveryView)
            record["delivery"] = view.model_dump(mode="json", include={"state", "alarm", "attempts", "last_event"})
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            record["delivery"] = None
        return record

    async def resend(self, number: str, *, late: bool) -> DeliveryView:
        return await self._update(number, "resend", Resend(late=late))

    async def close(self, number: str, reason: str) -> DeliveryView:
        return await self._update(number, "close", CloseDelivery(reason=reason))

    async def _update(self, number: str, name: str, request: Any) -> DeliveryView:
        handle = self.client.get_workflow_handle(delivery_id(number))
        try:
            result: DeliveryView = await handle.execute_update(name, request, result_type=DeliveryView)
            return result
        except WorkflowUpdateFailedError as error:
            raise DeliveryRefused(str(error.cause.message if error.cause else error)) from None  # type: ignore[attr-defined]
        except RPCError as error:
            if closed(error):
                raise DeliveryRefused(f"invoice {number} has no delivery in progress") from None
            raise

    async def attention(self) -> dict[str, Any]:
        """The deliveries that need a person, and the callbacks refused lately."""
        found = []
        async for execution in self.client.list_workflows(ATTENTION, limit=200):
            attributes = execution.typed_search_attributes
            found.append(
                {
                    "number": attributes.get(sa.INVOICE_NUMBER),
                    "order_number": attributes.get(sa.ORDER),
                    "state": attributes.get(sa.SDI_STATE),
                    "alarm": attributes.get(sa.SDI_ALARM),
                }
            )
        refused = await table.refused_callbacks(self.pool, limit=20)
        return {
            "deliveries": found,
            "refused_callbacks": [{**row, "received_at": str(row["received_at"])} for row in refused],
        }

    async def start_pending(self) -> dict[str, int]:
        """Start the delivery of every issued invoice that has none: one per invoice, ever."""
        rows = await table.issued_to_send(self.pool)
        started = 0
        for row in rows:
            input = DeliveryInput(**row, policy=self.policy)
            started += await start_invoice_delivery(self.client, self.task_queue, input)
        return {"issued": len(rows), "started": started}
