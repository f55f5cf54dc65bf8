"""The bank statement tables (P19, migrations/012_statements.sql): the files imported
(`statement_imports`, keyed by the file's SHA-256, the bytes kept), their entries
(`statement_entries`, one row per bank reference, ever) and what each credit paid
(`statement_allocations`, each a payments ledger row written in the same transaction, P11).

Exactly once lives in the data: an entry's key is UNIQUE and an insert that finds it does nothing;
an allocation's transaction id is the ledger's primary key. An entry recorded by an earlier import
is a duplicate of this one, never a second payment.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg

from db.audit import audit
from renewals.creditor_reference import ORDER_NUMBER
from renewals.matching import OPEN, Allocation, CandidateOrder, Suggestion
from renewals.messages import PaymentEntry
from renewals.statement_imports import (
    EntryOutcome,
    ImportCounts,
    ImportRecord,
    ImportSource,
    UnmatchedEntry,
)
from renewals.statements import Entry, StatementFile
from renewals.types import PaymentMethod

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection
# A credit arrives as a bank transfer, whatever the payer's bank called it.
METHOD: PaymentMethod = "bank_transfer"


class AssignRefused(Exception):
    """Ops asked to apply an entry that cannot be applied (again): the message says why, in a line."""


@dataclass(frozen=True)
class RecordedEntry:
    """An entry of a file as the import records it: its place, what matching made of it, and the
    ledger's `registered_at` for what it pays."""

    entry: Entry
    position: int
    outcome: EntryOutcome
    reason: str
    suggestions: Sequence[Suggestion] = ()
    allocations: Sequence[Allocation] = ()
    registered_at: datetime | None = None


# ---------------------------------------------------------------------- the files


_IMPORT_COLUMNS = """id, source, file_name, received_at, state, version, message_id, entries_in_file, applied,
    unmatched, duplicates, ignored, outcomes, failure, finished_at"""


def _record(row: asyncpg.Record) -> ImportRecord:
    counts = ImportCounts(
        entries=row["entries_in_file"],
        applied=row["applied"] or 0,
        unmatched=row["unmatched"] or 0,
        duplicates=row["duplicates"] or 0,
        ignored=row["ignored"] or 0,
    )
    values = {name: row[name] for name in ("id", "source", "file_name", "received_at", "state", "version")}
    return ImportRecord(
        **values,
        message_id=row["message_id"],
        counts=counts,
        outcomes=json.loads(row["outcomes"]),
        failure=row["failure"],
        finished_at=row["finished_at"],
    )


async def store_import(
    pool: asyncpg.Pool,
    *,
    import_id: str,
    raw: bytes,
    source: ImportSource,
    file_name: str | None,
    read: StatementFile,
    read_on: date,
) -> tuple[ImportRecord, bool]:
    """The file stored under its SHA-256 before anything is made of it; (its record, True when it
    is stored now, False when the same file was stored before)."""
    row = await pool.fetchrow(
        f"""
        INSERT INTO statement_imports (id, raw, source, file_name, version, message_id, entries_in_file, read_on)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (id) DO NOTHING
        RETURNING {_IMPORT_COLUMNS}
        """,
        import_id,
        raw,
        source,
        file_name,
        read.version,
        read.message_id,
        len(read.entries),
        read_on,
    )
    return await _now_or_before(pool, import_id, row)


async def import_record(db: Db, import_id: str) -> ImportRecord | None:
    row = await db.fetchrow(f"SELECT {_IMPORT_COLUMNS} FROM statement_imports WHERE id = $1", import_id)
    return _record(row) if row is not None else None


async def stored_file(pool: asyncpg.Pool, import_id: str) -> tuple[bytes, date]:
    """The file's bytes and the day it was read on (its entries are judged against that day)."""
    row = await pool.fetchrow("SELECT raw, read_on FROM statement_imports WHERE id = $1", import_id)
    if row is None:
        raise LookupError(f"no statement stored as {import_id}")
    return bytes(row["raw"]), row["read_on"]


async def mark_recorded(pool: asyncpg.Pool, import_id: str) -> None:
    await pool.execute("UPDATE statement_imports SET state = 'recorded' WHERE id = $1 AND state = 'stored'", import_id)


async def finish_import(pool: asyncpg.Pool, import_id: str) -> tuple[ImportRecord, bool]:
    """The import's counts, from what it recorded, and the renewals' answers to its payments, kept
    on its row; (the record, True when it is done now, False when it was done before)."""
    row = await pool.fetchrow(
        f"""
        WITH mine AS (
            SELECT outcome, count(*) AS n FROM statement_entries WHERE import_id = $1 GROUP BY outcome
        ), answers AS (
            SELECT coalesce(jsonb_object_agg(status, n), '{{}}') AS outcomes FROM (
                SELECT p.status, count(*) AS n
                FROM statement_allocations a JOIN payments p USING (transaction_id)
                WHERE a.import_id = $1 AND NOT a.by_hand
                GROUP BY p.status
            ) AS by_status
        )
        UPDATE statement_imports SET
            state = 'done',
            applied = coalesce((SELECT n FROM mine WHERE outcome = 'applied'), 0),
            unmatched = coalesce((SELECT sum(n) FROM mine WHERE outcome IN ('unmatched', 'assigned')), 0),
            ignored = coalesce((SELECT n FROM mine WHERE outcome = 'ignored'), 0),
            duplicates = entries_in_file - coalesce((SELECT sum(n) FROM mine), 0),
            outcomes = (SELECT outcomes FROM answers),
            finished_at = now()
        WHERE id = $1 AND state IN ('stored', 'recorded')
        RETURNING {_IMPORT_COLUMNS}
        """,
        import_id,
    )
    return await _now_or_before(pool, import_id, row)


async def fail_import(pool: asyncpg.Pool, import_id: str, reason: str) -> ImportRecord:
    row = await pool.fetchrow(
        f"""
        UPDATE statement_imports SET state = 'failed', failure = $2, finished_at = now()
        WHERE id = $1 AND state IN ('stored', 'recorded')
        RETURNING {_IMPORT_COLUMNS}
        """,
        import_id,
        reason,
    )
    record, _ = await _now_or_before(pool, import_id, row)
    return record


async def _now_or_before(pool: asyncpg.Pool, import_id: str, row: asyncpg.Record | None) -> tuple[ImportRecord, bool]:
    """(the record, True) from the row a statement just wrote; (the record as it was, False) when
    it wrote none (stored before, done before)."""
    if row is not None:
        return _record(row), True
    found = await import_record(pool, import_id)
    if found is None:
        raise LookupError(f"no statement stored as {import_id}")
    return found, False


# ---------------------------------------------------------------------- orders, for matching

_ORDER_COLUMNS = """o.order_number, s.holder_name, o.total_cents,
    greatest(o.total_cents - o.paid_cents, 0) AS balance_cents, o.status, o.created_at"""


async def orders_named(pool: asyncpg.Pool, numbers: Sequence[str]) -> list[CandidateOrder]:
    """The orders among `numbers` that exist: one query for a whole statement."""
    rows = await pool.fetch(
        f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN services s USING (username)"
        " WHERE o.order_number = ANY($1::text[])",
        list(numbers),
    )
    return [CandidateOrder(**dict(row)) for row in rows]


async def suggestible_orders(
    pool: asyncpg.Pool, amount_cents: int, payer_words: Sequence[str], limit: int = 30
) -> list[CandidateOrder]:
    """Open orders an unmatched credit might be for (renewals/matching.py `OrderLookup.suggestible`):
    the most recent whose balance or total is the amount, and the most recent whose holder's name
    holds one of the payer's words (accents aside). Matching ranks them and keeps what is alike."""
    patterns = [f"%{word}%" for word in payer_words if len(word) >= 3]
    rows = await pool.fetch(
        f"""
        (SELECT {_ORDER_COLUMNS} FROM orders o JOIN services s USING (username)
         WHERE o.status = $4 AND (o.total_cents = $1 OR o.total_cents - o.paid_cents = $1)
         ORDER BY o.created_at DESC LIMIT $3)
        UNION
        (SELECT {_ORDER_COLUMNS} FROM orders o JOIN services s USING (username)
         WHERE o.status = $4 AND cardinality($2::text[]) > 0
           AND translate(lower(s.holder_name), 'àáâäèéêëìíîïòóôöùúûüçñ', 'aaaaeeeeiiiioooouuuucn') LIKE ANY($2::text[])
         ORDER BY o.created_at DESC LIMIT $3)
        """,
        amount_cents,
        patterns,
        limit,
        OPEN,
    )
    return [CandidateOrder(**dict(row)) for row in rows]


# ---------------------------------------------------------------------- entries


async def recorded_keys(pool: asyncpg.Pool, keys: Sequence[str]) -> dict[str, str]:
    """Which of `keys` are recorded already, and by which import."""
    rows = await pool.fetch("SELECT key, import_id FROM statement_entries WHERE key = ANY($1::text[])", list(keys))
    return {row["key"]: row["import_id"] for row in rows}


def _entry_row(item: RecordedEntry) -> dict[str, Any]:
    entry = item.entry
    return {
        "key": entry.key,
        "position": item.position,
        "account": entry.account,
        "amount": entry.amount,
        "amount_cents": entry.amount_cents,
        "currency": entry.currency,
        "credit_debit": entry.credit_debit,
        "reversal": entry.reversal,
        "booked_on": entry.booked_on.isoformat() if entry.booked_on else None,
        "payer": entry.debtor_name,
        "remittance": entry.remittance,
        "detail": entry.model_dump(mode="json"),
        "outcome": item.outcome,
        "reason": item.reason,
        "suggestions": [s.model_dump(mode="json") for s in item.suggestions],
    }


async def record_entries(pool: asyncpg.Pool, import_id: str, items: Sequence[RecordedEntry]) -> int:
    """Each entry recorded unless its key is (ON CONFLICT DO NOTHING), and for each recorded now its
    payments written to the ledger, `received`, with their allocations, all in one transaction.
    Returns how many were recorded now."""
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetch(
            """
            INSERT INTO statement_entries (key, import_id, position, account, amount, amount_cents, currency,
                credit_debit, reversal, booked_on, payer, remittance, detail, outcome, reason, suggestions)
            SELECT e.key, $1, e.position, e.account, e.amount, e.amount_cents, e.currency, e.credit_debit,
                e.reversal, e.booked_on, e.payer, e.remittance, e.detail, e.outcome, e.reason, e.suggestions
            FROM jsonb_to_recordset($2::jsonb) AS e(key text, position integer, account text, amount text,
                amount_cents bigint, currency text, credit_debit text, reversal boolean, booked_on date, payer text,
                remittance text, detail jsonb, outcome text, reason text, suggestions jsonb)
            ORDER BY e.position
            ON CONFLICT (key) DO NOTHING
            RETURNING id, key
            """,
            import_id,
            json.dumps([_entry_row(item) for item in items]),
        )
        ids = {row["key"]: row["id"] for row in inserted}
        paying = [item for item in items if item.entry.key in ids and item.allocations]
        await _write_payments(
            conn,
            import_id,
            [
                (ids[item.entry.key], allocation, item.registered_at, False)
                for item in paying
                for allocation in item.allocations
            ],
        )
    return len(ids)


async def _write_payments(
    conn: asyncpg.Connection,
    import_id: str,
    allocations: Sequence[tuple[int, Allocation, datetime | None, bool]],
) -> None:
    """Ledger rows (P11), `received`, for what entries pay, each with its allocation; in the caller's
    transaction. A row already in the ledger is kept as it is."""
    if not allocations:
        return
    payments = [
        {
            "transaction_id": allocation.transaction_id,
            "order_number": allocation.order_number,
            "amount_cents": allocation.amount_cents,
            "registered_at": registered_at.isoformat() if registered_at else None,
            "by_hand": by_hand,
            "entry_id": entry_id,
            "reason": allocation.reason,
        }
        for entry_id, allocation, registered_at, by_hand in allocations
    ]
    await conn.execute(
        """
        WITH given AS (
            SELECT * FROM jsonb_to_recordset($1::jsonb) AS p(transaction_id text, order_number text,
                amount_cents bigint, registered_at timestamptz, by_hand boolean, entry_id bigint, reason text)
        ), ledger AS (
            INSERT INTO payments (transaction_id, order_number, amount_cents, currency, method, registered_at, by_hand)
            SELECT transaction_id, order_number, amount_cents, 'EUR', $3, coalesce(registered_at, now()), by_hand
            FROM given ORDER BY transaction_id
            ON CONFLICT (transaction_id) DO NOTHING
        )
        INSERT INTO statement_allocations (transaction_id, entry_id, import_id, order_number, amount_cents, reason,
                                           by_hand)
        SELECT transaction_id, entry_id, $2, order_number, amount_cents, reason, by_hand FROM given
        """,
        json.dumps(payments),
        import_id,
        METHOD,
    )


async def undelivered(pool: asyncpg.Pool, import_id: str, after: str, limit: int) -> list[PaymentEntry]:
    """The import's ledger rows no renewal has answered yet, after `after` in transaction order."""
    rows = await pool.fetch(
        """
        SELECT p.transaction_id, p.order_number, p.amount_cents, p.currency, p.method, p.registered_at, p.by_hand,
               p.received_at
        FROM statement_allocations a JOIN payments p USING (transaction_id)
        WHERE a.import_id = $1 AND a.transaction_id > $2 AND p.status = 'received'
        ORDER BY a.transaction_id
        LIMIT $3
        """,
        import_id,
        after,
        limit,
    )
    return [PaymentEntry(**dict(row)) for row in rows]


# ---------------------------------------------------------------------- ops


async def unmatched_entries(pool: asyncpg.Pool, limit: int = 100) -> list[UnmatchedEntry]:
    """The credits waiting for ops, oldest first, with their suggestions."""
    rows = await pool.fetch(
        """
        SELECT id AS entry, amount_cents, amount, currency, payer, remittance, booked_on, import_id, reason, suggestions
        FROM statement_entries WHERE outcome = 'unmatched'
        ORDER BY recorded_at, id LIMIT $1
        """,
        limit,
    )
    return [UnmatchedEntry(**{**dict(row), "suggestions": json.loads(row["suggestions"])}) for row in rows]


async def assign_entry(pool: asyncpg.Pool, entry_id: int, order_number: str, by: str) -> PaymentEntry:
    """Ops apply unmatched credit `entry_id` to `order_number`: its ledger row (by hand) and its
    allocation written, the entry marked assigned, in one transaction; once. AssignRefused, naming
    why, for an entry that is no payment, was applied on import or assigned before, or an order
    that does not exist."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """
            SELECT e.id, e.import_id, e.outcome, e.reason, e.detail, e.assigned_order, e.assigned_by, e.assigned_at,
                   i.received_at
            FROM statement_entries e JOIN statement_imports i ON i.id = e.import_id
            WHERE e.id = $1 FOR UPDATE OF e
            """,
            entry_id,
        )
        if row is None:
            raise AssignRefused(f"no statement entry {entry_id}")
        if row["outcome"] == "assigned":
            raise AssignRefused(
                f"entry {entry_id} was assigned to {row['assigned_order']} by {row['assigned_by']} on "
                f"{row['assigned_at']:%Y-%m-%d %H:%M} UTC: nothing done"
            )
        if row["outcome"] == "applied":
            paid = await conn.fetchval(
                "SELECT string_agg(order_number, ', ' ORDER BY order_number) FROM statement_allocations"
                " WHERE entry_id = $1",
                entry_id,
            )
            raise AssignRefused(f"entry {entry_id} was applied to {paid} when imported: nothing done")
        if row["outcome"] == "ignored":
            raise AssignRefused(f"entry {entry_id} is not a payment ({row['reason']}): never applied")
        if ORDER_NUMBER.fullmatch(order_number) is None:
            raise AssignRefused(f"{order_number!r} is not an order number (FE-<year>-<progressive>)")
        username = await conn.fetchval("SELECT username FROM orders WHERE order_number = $1", order_number)
        if username is None:
            raise AssignRefused(f"no order is numbered {order_number}")
        entry = Entry.model_validate_json(row["detail"])
        assert entry.amount_cents is not None  # an unmatched entry is a payable credit
        allocation = Allocation(
            order_number=order_number,
            amount_cents=entry.amount_cents,
            reason=f"assigned by {by}",
            transaction_id=entry.payment_id(order_number),
        )
        registered_at = entry.registered_at(row["received_at"])
        await _write_payments(conn, row["import_id"], [(entry_id, allocation, registered_at, True)])
        await conn.execute(
            "UPDATE statement_entries SET outcome = 'assigned', assigned_order = $2, assigned_by = $3,"
            " assigned_at = now() WHERE id = $1",
            entry_id,
            order_number,
            by,
        )
        await audit(
            conn,
            username,
            order_number,
            "statement_entry_assigned",
            entry=entry_id,
            transaction_id=allocation.transaction_id,
            amount_cents=allocation.amount_cents,
            by=by,
        )
        received_at = await conn.fetchval(
            "SELECT received_at FROM payments WHERE transaction_id = $1", allocation.transaction_id
        )
    return PaymentEntry(
        transaction_id=allocation.transaction_id,
        order_number=order_number,
        amount_cents=allocation.amount_cents,
        currency="EUR",
        method=METHOD,
        registered_at=registered_at,
        by_hand=True,
        received_at=received_at,
    )
