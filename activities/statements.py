"""The bank statement activities (P19, docs/statements.md): record a stored file's entries with what
they pay, hand those payments to their renewals, close the import with its counts, and scan the
inbox directory. One class holding the pool, the payment desk and the submission the inbox uses.

Each is idempotent in the data (`db/statements.py`): an entry is recorded once by its key, what it
pays is a ledger row by a transaction id made from that key, and a delivery only takes rows still
`received`. A worker killed half-way leaves nothing a retry would do twice.
"""

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.payments import Redelivers
from db import statements as table
from renewals import errors
from renewals.matching import CandidateOrder, Match, OrderBook, match, name_words, numbers_named
from renewals.messages import PaymentEntry, Reconcile
from renewals.statement_imports import (
    STATEMENT_REFUSED,
    DeliverBatch,
    Delivered,
    FailImport,
    ImportRecord,
    ImportSource,
    ImportStatement,
    InboxScan,
    InboxScanned,
    Recorded,
)
from renewals.statements import MAX_STATEMENT_BYTES, Entry, StatementFile, StatementRefused, read_statement

log = logging.getLogger("renewals.statements")

# Entries written per transaction: one heartbeat each.
RECORD_BATCH = 500
# Names the inbox leaves alone: a file still being copied in is written under one of these first.
PARTIAL_SUFFIXES = (".part", ".tmp", ".partial")

# Stores a statement and starts its import (client/statements.py `submit_statement`, without waiting).
SubmitStatement = Callable[[bytes, ImportSource, str | None], Awaitable[ImportRecord]]


class StatementDesk:
    """Built once by the worker. Without `submit` the inbox cannot be scanned (no such worker runs it)."""

    def __init__(self, pool: asyncpg.Pool, desk: Redelivers, submit: SubmitStatement | None = None) -> None:
        self.pool = pool
        self.desk = desk
        self.submit = submit

    # ------------------------------------------------------------------ an import

    @activity.defn
    async def record_entries(self, request: ImportStatement) -> Recorded:
        """Every entry of the stored file recorded once, each credit matched to the orders it pays
        (their ledger rows written with it) or left unmatched with its suggestions."""
        raw, read_on = await table.stored_file(self.pool, request.import_id)
        try:
            read = await _read(raw, read_on)
        except StatementRefused as refused:
            # It was read before it was stored: only a change of the reader can refuse it now.
            raise ApplicationError(str(refused), type=STATEMENT_REFUSED, non_retryable=True) from None
        entries = read.entries
        known = await table.recorded_keys(self.pool, [entry.key for entry in entries])
        # Each entry with the order numbers it names, read once: for the one lookup, then its match.
        todo = [
            (position, entry, numbers_named(entry) if entry.payable else frozenset[str]())
            for position, entry in enumerate(entries, start=1)
            if entry.key not in known
        ]
        named = sorted({number for _, _, numbers in todo for number in numbers})
        orders = {order.order_number: order for order in await table.orders_named(self.pool, named)}
        recorded_now = 0
        for start in range(0, len(todo), RECORD_BATCH):
            batch = [
                await self._judged(read, at, entry, [orders[number] for number in numbers if number in orders])
                for at, entry, numbers in todo[start : start + RECORD_BATCH]
            ]
            recorded_now += await table.record_entries(self.pool, request.import_id, batch)
            activity.heartbeat(start + len(batch))
        await table.mark_recorded(self.pool, request.import_id)
        before = sum(1 for import_id in known.values() if import_id == request.import_id)
        return Recorded(entries=len(entries), recorded_now=recorded_now, recorded_before=before)

    async def _judged(
        self, read: StatementFile, position: int, entry: Entry, named: list[CandidateOrder]
    ) -> table.RecordedEntry:
        """`named`: the open orders the entry names."""
        if not entry.payable:
            return table.RecordedEntry(entry, position, "ignored", f"not a payment: {entry.not_a_payment}")
        found = match(entry, OrderBook(named))
        if not found.matched:
            found = await self._with_suggestions(entry, named)
        if found.matched:
            return table.RecordedEntry(
                entry,
                position,
                "applied",
                found.reason,
                allocations=found.allocations,
                registered_at=entry.registered_at(read.created_at),
            )
        return table.RecordedEntry(entry, position, "unmatched", found.reason, suggestions=found.suggestions)

    async def _with_suggestions(self, entry: Entry, named: list[CandidateOrder]) -> Match:
        """Matched again with the open orders it might be for (same amount, a payer named alike)."""
        words = name_words(entry.debtor_name or "")
        candidates = await table.suggestible_orders(self.pool, entry.amount_cents or 0, words)
        return match(entry, OrderBook([*candidates, *named]))

    @activity.defn
    async def deliver_payments(self, batch: DeliverBatch) -> Delivered:
        """The next ledger rows of the import still `received`, each handed to its renewal (P5,
        P10-P12 decide), `batch.concurrency` at a time. A failed delivery is the row's: counted on
        it with its backoff (I2), and the reconciler delivers it later."""
        due = await table.undelivered(self.pool, batch.import_id, batch.after, batch.limit)
        if not due:
            return Delivered()
        request = Reconcile(row_timeout=batch.row_timeout)
        gate = asyncio.Semaphore(batch.concurrency)
        statuses: dict[str, int] = {}
        failed = 0
        done = 0

        async def one(entry: PaymentEntry) -> None:
            nonlocal failed, done
            async with gate:
                outcome = await self.desk.redeliver(entry, request)
            if outcome is None:
                failed += 1
            else:
                statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
            done += 1
            activity.heartbeat(done)

        await asyncio.gather(*(one(entry) for entry in due))
        return Delivered(last=due[-1].transaction_id, statuses=statuses, failed=failed)

    @activity.defn
    async def finish_import(self, request: ImportStatement) -> ImportRecord:
        """The import's counts and the renewals' answers on its record; one log line and the metrics,
        once per import."""
        record, now_done = await table.finish_import(self.pool, request.import_id)
        if now_done:
            log.info(record.line(), extra={"statement_import": record.id, **record.counts.model_dump()})
            _count(record)
        return record

    @activity.defn
    async def fail_import(self, request: FailImport) -> ImportRecord:
        record = await table.fail_import(self.pool, request.import_id, request.reason)
        log.warning(record.line(), extra={"statement_import": record.id})
        return record

    # ------------------------------------------------------------------ the inbox

    @activity.defn
    async def scan_inbox(self, scan: InboxScan) -> InboxScanned:
        """Each settled file in the inbox submitted (stored, its import started), then moved to
        `done/`; a refused one to `failed/` with `<name>.reason.txt`, its one line. A file that
        could not be submitted for another reason (PostgreSQL down) stays for the next attempt."""
        if self.submit is None:
            raise ApplicationError("this worker submits no statements", type=errors.INVALID_REQUEST, non_retryable=True)
        inbox = Path(scan.directory)
        done, failed = inbox / "done", inbox / "failed"
        for directory in (inbox, done, failed):
            directory.mkdir(parents=True, exist_ok=True)
        scanned = InboxScanned()
        for path in _settled_files(inbox, scan.settle.total_seconds()):
            activity.heartbeat(path.name)
            try:
                with path.open("rb") as file:
                    raw = file.read(MAX_STATEMENT_BYTES + 1)
                record = await self.submit(raw, "inbox", path.name)
            except StatementRefused as refused:
                moved = _move(path, failed)
                moved.with_name(moved.name + ".reason.txt").write_text(f"{refused}\n")
                scanned.refused.append(f"{path.name}: {refused}")
                log.warning("inbox: %s refused: %s", path.name, refused)
                continue
            _move(path, done, record.short_id)
            scanned.imported.append(f"{path.name}: {record.line()}")
            log.info("inbox: %s submitted: %s", path.name, record.line())
        return scanned


def _settled_files(inbox: Path, settle: float) -> list[Path]:
    """Regular files of the inbox, oldest first, not written to in the last `settle` seconds."""
    now = time.time()
    found = []
    for path in inbox.iterdir():
        if path.name.startswith(".") or path.name.endswith(PARTIAL_SUFFIXES) or not path.is_file():
            continue
        changed = path.stat().st_mtime
        if now - changed >= settle:
            found.append((changed, path.name, path))
    return [path for _, _, path in sorted(found)]


def _move(path: Path, directory: Path, tag: str | None = None) -> Path:
    """`path` into `directory` under its name, or (taken) its name with the time and `tag`."""
    target = directory / path.name
    if target.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        target = directory / f"{stamp}-{tag or os.getpid()}-{path.name}"
    path.replace(target)
    return target


def _count(record: ImportRecord) -> None:
    """The import's entries by what became of them, in the worker's metrics
    (`renewals_statement_entries{outcome}`), and the import itself."""
    meter = activity.metric_meter()
    entries = meter.create_counter(
        "renewals_statement_entries",
        "Bank statement entries imported, by outcome: applied, unmatched, duplicate, ignored (P19).",
    )
    counts = record.counts
    for outcome, value in (
        ("applied", counts.applied),
        ("unmatched", counts.unmatched),
        ("duplicate", counts.duplicates),
        ("ignored", counts.ignored),
    ):
        if value:
            entries.add(value, {"outcome": outcome})
    meter.create_counter("renewals_statement_imports", "Bank statement files imported (P19).").add(1)


async def _read(raw: bytes, read_on: date) -> StatementFile:
    """The stored file read again in a thread, heartbeating meanwhile (ten thousand entries take a
    second or two): a killed worker's attempt is retried within the heartbeat timeout."""
    reading = asyncio.ensure_future(asyncio.to_thread(read_statement, raw, today=read_on))
    while not reading.done():
        activity.heartbeat("reading the statement")
        await asyncio.wait({reading}, timeout=2.0)
    return reading.result()
