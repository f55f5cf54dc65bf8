"""Bank statements (P19, docs/statements.md): the import of one stored file, one workflow per file
(`statement-<SHA-256 prefix>`), and the inbox's run on its Schedule (`payments-inbox`).

The import records every entry with what it pays (the ledger rows written with it), hands those
payments to their renewals in batches, then closes with its counts. It carries the file's id, never
the file: ten thousand entries are megabytes, and every step reads what it needs from PostgreSQL.
Whatever a batch could not deliver stays `received` in the ledger for the reconciler (I2).
Deterministic workflow code: every effect is an activity.
"""

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.statements import StatementDesk
    from renewals.statement_imports import (
        IMPORT_WORKFLOW_TYPE,
        INBOX_WORKFLOW_TYPE,
        STATEMENT_REFUSED,
        DeliverBatch,
        Delivered,
        FailImport,
        ImportRecord,
        ImportStatement,
        InboxScan,
        InboxScanned,
    )
    from workflows.effects import RETRY

# Reading and recording ten thousand entries takes seconds; the heartbeat says the worker is alive.
RECORD_TIMEOUT = timedelta(minutes=10)
HEARTBEAT = timedelta(seconds=30)
# A batch of 500 deliveries, 16 at a time, each bounded by its row timeout.
DELIVER_TIMEOUT = timedelta(minutes=10)
FINISH_TIMEOUT = timedelta(seconds=30)
# Deliveries that failed are tried again by the import after a pause, twice, before it closes.
DELIVERY_PASSES = 3
AGAIN_AFTER = timedelta(seconds=30)
# A look at the inbox: a file read and stored per heartbeat.
SCAN_TIMEOUT = timedelta(minutes=10)
SCAN_HEARTBEAT = timedelta(minutes=2)


@workflow.defn(name=IMPORT_WORKFLOW_TYPE)
class StatementImport:
    def __init__(self) -> None:
        self.delivered = Delivered()
        self.short_id = ""

    @workflow.run
    async def run(self, request: ImportStatement) -> ImportRecord:
        self.short_id = request.import_id[:12]
        try:
            recorded = await workflow.execute_activity_method(
                StatementDesk.record_entries,
                request,
                **options(f"record the entries of statement {self.short_id}", RECORD_TIMEOUT, HEARTBEAT),
            )
        except ActivityError as error:
            cause = error.cause
            if not (isinstance(cause, ApplicationError) and cause.type == STATEMENT_REFUSED):
                raise
            failed = await workflow.execute_activity_method(
                StatementDesk.fail_import,
                FailImport(import_id=request.import_id, reason=cause.message),
                **self._closing("record the failure of"),
            )
            return self._closed(failed)
        workflow.set_current_details(
            f"**Recorded:** {recorded.recorded_now + recorded.recorded_before} of {recorded.entries} entries "
            f"({recorded.duplicates} recorded by an earlier import); delivering their payments"
        )
        for attempt in range(1, DELIVERY_PASSES + 1):
            if not await self._deliver(request.import_id, attempt) or attempt == DELIVERY_PASSES:
                break
            # Renewals that did not answer (their worker gone): once more after a pause, then the
            # ledger reconciler takes what is left (I2).
            await workflow.sleep(AGAIN_AFTER)
        done = await workflow.execute_activity_method(
            StatementDesk.finish_import, request, **self._closing("count and close")
        )
        return self._closed(done)

    async def _deliver(self, import_id: str, attempt: int) -> int:
        """Every payment of the import still `received`, in batches; how many deliveries failed."""
        batch = DeliverBatch(import_id=import_id)
        failed_before = self.delivered.failed
        while True:
            summary = f"deliver the payments of statement {self.short_id} after {batch.after or 'the first'}"
            delivered = await workflow.execute_activity_method(
                StatementDesk.deliver_payments,
                batch,
                **options(
                    summary + (f" (pass {attempt})" if attempt > 1 else ""),
                    DELIVER_TIMEOUT,
                    max(HEARTBEAT, 3 * batch.row_timeout),
                ),
            )
            if delivered.last is None:
                return self.delivered.failed - failed_before
            self._add(delivered)
            batch = batch.model_copy(update={"after": delivered.last})

    def _closing(self, what: str) -> dict[str, Any]:
        return options(f"{what} the import of statement {self.short_id}", FINISH_TIMEOUT)

    def _closed(self, record: ImportRecord) -> ImportRecord:
        workflow.set_current_details(details(record, self.delivered))
        return record

    def _add(self, delivered: Delivered) -> None:
        statuses = dict(self.delivered.statuses)
        for status, count in delivered.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
        failed = self.delivered.failed + delivered.failed
        self.delivered = Delivered(last=delivered.last, statuses=statuses, failed=failed)
        answered = ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))
        workflow.set_current_details(
            f"**Delivering:** up to {delivered.last}; answered {answered or 'none yet'}, failed {self.delivered.failed}"
        )


@workflow.defn(name=INBOX_WORKFLOW_TYPE)
class StatementInbox:
    """One look at the inbox directory: each file submitted (its import runs on its own) and moved."""

    @workflow.run
    async def run(self, scan: InboxScan) -> InboxScanned:
        summary = f"submit the statements in {scan.directory}"
        scanned = await workflow.execute_activity_method(
            StatementDesk.scan_inbox, scan, **options(summary, SCAN_TIMEOUT, SCAN_HEARTBEAT)
        )
        lines = [f"**Imported:** {len(scanned.imported)}, **refused:** {len(scanned.refused)}"]
        workflow.set_current_details("\n\n".join(lines + [f"- {line}" for line in scanned.imported + scanned.refused]))
        return scanned


def options(summary: str, timeout: timedelta, heartbeat: timedelta | None = None) -> dict[str, Any]:
    """An activity's timeouts and summary, retried with backoff for as long as it takes."""
    return {
        "start_to_close_timeout": timeout,
        "heartbeat_timeout": heartbeat,
        "retry_policy": RETRY,
        "summary": summary,
    }


def details(record: ImportRecord, delivered: Delivered) -> str:
    """The import in plain words, for the Web UI."""
    lines = [f"**{record.line()}**"]
    if delivered.failed:
        lines.append(f"**Deliveries failed:** {delivered.failed}, left to the ledger reconciler (I2)")
    return "\n\n".join(lines)
