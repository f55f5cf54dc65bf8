"""Bank statements (P19, docs/statements.md), from the outside: submit a file (`starter.py payments
import`, the signed `POST /payments/statements`, the inbox), list the credits waiting for ops and
assign one to an order.

`submit_statement` reads the whole file first: a file that is not a camt.053.001.02 or .08
statement is refused with one line (`StatementRefused`) and nothing is recorded. A statement that
reads is stored under its SHA-256 with its bytes, then its import starts as the workflow
`statement-<SHA-256 prefix>` (by type name: this module never imports workflows), so the same file
twice, even at once, is one import.
"""

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.store import Store
from client.payments import PaymentDesk
from db import statements as table
from db.statements import AssignRefused
from renewals import TASK_QUEUE
from renewals.dates import rome_today
from renewals.statement_imports import (
    IMPORT_WORKFLOW_TYPE,
    Assignment,
    ImportRecord,
    ImportSource,
    ImportStatement,
    UnmatchedEntry,
    import_workflow_id,
)
from renewals.statements import StatementRefused, read_statement

__all__ = [
    "AssignRefused",
    "StatementRefused",
    "assign_entry",
    "submit_statement",
    "unmatched_entries",
]


async def submit_statement(
    client: Client,
    pool: asyncpg.Pool,
    raw: bytes,
    source: ImportSource,
    *,
    file_name: str | None = None,
    task_queue: str = TASK_QUEUE,
    wait: timedelta | None = None,
) -> ImportRecord:
    """Read, store and import a statement; its record, `already` when the same file was stored
    before. With `wait`, the record once the import is done (or as it stands after `wait`).
    StatementRefused, with one line, for a file that is not a statement: nothing is recorded."""
    read_on = rome_today(datetime.now(UTC))
    # A large file takes a second or two to read and validate: not on the caller's event loop.
    read = await asyncio.to_thread(read_statement, raw, today=read_on)
    import_id = hashlib.sha256(raw).hexdigest()
    record, stored_now = await table.store_import(
        pool, import_id=import_id, raw=raw, source=source, file_name=file_name, read=read, read_on=read_on
    )
    if record.state in ("stored", "recorded"):
        handle = await start_import(client, task_queue, import_id)
        if wait is not None:
            try:
                record = await asyncio.wait_for(handle.result(), wait.total_seconds())
            except TimeoutError:
                record = await table.import_record(pool, import_id) or record
    return record.model_copy(update={"already": not stored_now})


async def start_import(client: Client, task_queue: str, import_id: str) -> WorkflowHandle[Any, ImportRecord]:
    """The import of stored file `import_id`, or the one running already. A finished one is started
    again only when its file's record is not done (it was terminated half-way): each step is
    idempotent, so a second run records and delivers only what the first did not."""
    return await client.start_workflow(
        IMPORT_WORKFLOW_TYPE,
        ImportStatement(import_id=import_id),
        id=import_workflow_id(import_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        result_type=ImportRecord,
        static_summary=f"Import of bank statement {import_id[:12]} (P19)",
    )


async def unmatched_entries(pool: asyncpg.Pool, limit: int = 100) -> list[UnmatchedEntry]:
    """The credits no order was found for, oldest first, each with up to three suggested orders."""
    return await table.unmatched_entries(pool, limit)


async def assign_entry(
    client: Client,
    store: Store,
    entry_id: int,
    order_number: str,
    *,
    by: str = "ops",
    update_timeout: timedelta = timedelta(seconds=15),
) -> Assignment:
    """Ops apply unmatched credit `entry_id` to `order_number`, once: its ledger row (by hand) is
    written with the entry's assignment in one transaction, then handed to the order's renewal,
    which judges it as any payment (P5, P10-P12). AssignRefused, with the reason, for an entry
    assigned or applied before, one that is no payment, or an unknown order. When the renewal does
    not answer, the row waits `received` for the reconciler (I2)."""
    entry = await table.assign_entry(store.pool, entry_id, order_number.strip().upper(), by)
    assignment = Assignment(
        entry=entry_id,
        order_number=entry.order_number,
        transaction_id=entry.transaction_id,
        amount_cents=entry.amount_cents,
        status="received",
    )
    desk = PaymentDesk(client, store, update_timeout=update_timeout)
    try:
        outcome = await asyncio.wait_for(desk.deliver(entry), update_timeout.total_seconds() + 5)
    except Exception as error:  # noqa: BLE001 - the row is in the ledger: the reconciler delivers it
        note = f"recorded; the renewal did not answer ({type(error).__name__}): the reconciler delivers it"
        return assignment.model_copy(update={"note": note})
    return assignment.model_copy(update={"status": outcome.status, "note": outcome.note})
