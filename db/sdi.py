"""The SdI tables (P18): the files sent (`sdi_transmissions`), the notifications SdI sent back
(`sdi_notifications`, each kept unchanged), and the callbacks refused at the door
(`sdi_refused_callbacks`).

A file is sent at most once unless ops or the in-doubt rule say otherwise: an attempt marks its row
`sending` before the request leaves, so a retry that finds it so knows SdI may already hold the
file (the worker died waiting for the answer) and does not send it again blindly. A notification
that names one of our files settles that doubt: it carries SdI's id, which the row adopts.
"""

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

import asyncpg

from renewals.delivery import Receipt, ReceiptsView, Transmission
from renewals.sdicoop import Notification

Db: TypeAlias = asyncpg.Pool | asyncpg.Connection
# What the SdI outcome makes of the invoice (P18).
INVOICE_STATE_OF = {"RC": "delivered", "MC": "not_delivered", "NS": "rejected"}


@dataclass(frozen=True)
class Attempt:
    """What a transmit attempt should do: `send` the xml, or nothing (`accepted` already, or
    `in_doubt`: an earlier attempt may have reached SdI)."""

    action: Literal["send", "accepted", "in_doubt"]
    file_name: str
    xml: bytes = b""
    sdi_id: str | None = None
    received_at: datetime | None = None


@dataclass(frozen=True)
class NotificationOwner:
    number: str
    file_name: str
    order_number: str


async def add_transmission(conn: asyncpg.Connection, number: str, file_name: str, xml: str) -> None:
    """The outbox row of a file to send, in the transaction that issues (or corrects) the invoice."""
    await conn.execute(
        "INSERT INTO sdi_transmissions (file_name, number, xml) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        file_name,
        number,
        xml,
    )


async def begin_attempt(pool: asyncpg.Pool, number: str, *, force: bool) -> Attempt:
    """Decide, under the invoice's lock, whether this attempt sends its current file. `force`: the
    in-doubt wait passed with no word from SdI, so the file goes again under the same name (SdI
    refuses a name it already holds, 00002: the invoice is never issued twice)."""
    async with pool.acquire() as conn, conn.transaction():
        invoice = await conn.fetchrow("SELECT file_name, xml, state FROM invoices WHERE number = $1 FOR UPDATE", number)
        if invoice is None or invoice["file_name"] is None:
            raise LookupError(f"no invoice numbered {number!r} to send to SdI")
        file_name = invoice["file_name"]
        # The outbox row; invoices issued before SdI delivery existed get theirs here.
        await add_transmission(conn, number, file_name, invoice["xml"])
        row = await conn.fetchrow(
            "SELECT state, xml, sdi_id, received_at FROM sdi_transmissions WHERE file_name = $1 FOR UPDATE",
            file_name,
        )
        if row["state"] == "accepted":
            return Attempt("accepted", file_name, sdi_id=row["sdi_id"], received_at=row["received_at"])
        heard = await conn.fetchrow(
            "SELECT sdi_id, detail->>'received_at' AS received_at FROM sdi_notifications"
            " WHERE file_name = $1 ORDER BY id LIMIT 1",
            file_name,
        )
        if heard is not None:  # SdI has it: its notification came before (or instead of) its answer
            received_at = datetime.fromisoformat(heard["received_at"]) if heard["received_at"] else None
            await _accept(conn, file_name, heard["sdi_id"], received_at)
            return Attempt("accepted", file_name, sdi_id=heard["sdi_id"], received_at=received_at)
        if row["state"] == "sending" and not force:
            return Attempt("in_doubt", file_name)
        await conn.execute(
            "UPDATE sdi_transmissions SET state = 'sending', attempts = attempts + 1, started_at = now()"
            " WHERE file_name = $1",
            file_name,
        )
        return Attempt("send", file_name, xml=row["xml"].encode())


async def record_acceptance(pool: asyncpg.Pool, file_name: str, sdi_id: str, received_at: datetime) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _accept(conn, file_name, sdi_id, received_at)


async def _accept(conn: asyncpg.Connection, file_name: str, sdi_id: str, received_at: datetime | None) -> None:
    number = await conn.fetchval(
        """
        UPDATE sdi_transmissions
        SET state = 'accepted', sdi_id = coalesce(sdi_id, $2), received_at = coalesce(received_at, $3, now()),
            last_error = NULL
        WHERE file_name = $1
        RETURNING number
        """,
        file_name,
        sdi_id,
        received_at,
    )
    await conn.execute(
        "UPDATE invoices SET state = 'sent', sdi_id = $2, updated_at = now() WHERE number = $1 AND state = 'issued'",
        number,
        sdi_id,
    )


async def record_failure(pool: asyncpg.Pool, file_name: str, error: str, *, certainly_not_sent: bool) -> None:
    """An attempt that failed. Certainly not sent (SdI unreachable, or EI02): the row goes back to
    `to_send`. Otherwise it stays `sending`: in doubt."""
    await pool.execute(
        """
        UPDATE sdi_transmissions
        SET last_error = $2, state = CASE WHEN $3 AND state = 'sending' THEN 'to_send' ELSE state END
        WHERE file_name = $1
        """,
        file_name,
        error[:500],
        certainly_not_sent,
    )


# ---------------------------------------------------------------------- notifications


async def owner_of(pool: asyncpg.Pool, notification: Notification) -> NotificationOwner | None:
    """The invoice a notification is about: by SdI's id, or (its answer not stored yet, or lost
    with a killed worker) by our file's name while that file has no id."""
    row = await pool.fetchrow(
        """
        SELECT t.number, t.file_name, i.order_number
        FROM sdi_transmissions t JOIN invoices i ON i.number = t.number
        WHERE t.file_name = $2 AND (t.sdi_id = $1 OR t.sdi_id IS NULL)
        """,
        notification.sdi_id,
        notification.file_name,
    )
    return NotificationOwner(row["number"], row["file_name"], row["order_number"]) if row else None


async def store_notification(
    pool: asyncpg.Pool, owner: NotificationOwner, notification: Notification, name: str, file: bytes
) -> Literal["new", "same", "different"]:
    """Keep the notification as SdI signed it, once: `new`; the same one again (SdI retrying a
    delivery whose answer it lost) is `same`; another file under the same ids is `different`."""
    detail = notification.model_dump(mode="json", exclude={"sdi_id", "file_name", "kind", "message_id"})
    async with pool.acquire() as conn, conn.transaction():
        stored = await conn.fetchval(
            """
            INSERT INTO sdi_notifications (sdi_id, file_name, number, kind, notification_name, message_id, file, detail)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (sdi_id, kind, message_id) DO NOTHING
            RETURNING id
            """,
            notification.sdi_id,
            owner.file_name,
            owner.number,
            notification.kind,
            name,
            notification.message_id,
            file,
            json.dumps(detail),
        )
        if stored is not None:
            await _accept(conn, owner.file_name, notification.sdi_id, notification.received_at)
            return "new"
        kept = await conn.fetchval(
            "SELECT file FROM sdi_notifications WHERE sdi_id = $1 AND kind = $2 AND message_id = $3",
            notification.sdi_id,
            notification.kind,
            notification.message_id,
        )
    return "same" if kept == file else "different"


async def record_refused_callback(
    pool: asyncpg.Pool,
    reason: str,
    body: bytes,
    *,
    operation: str | None = None,
    sdi_id: str | None = None,
    notification_name: str | None = None,
) -> None:
    await pool.execute(
        "INSERT INTO sdi_refused_callbacks (reason, operation, sdi_id, notification_name, body)"
        " VALUES ($1, $2, $3, $4, $5)",
        reason[:1000],
        operation,
        sdi_id,
        notification_name,
        body[: 64 * 1024],
    )


async def record_outcome(
    pool: asyncpg.Pool, number: str, kind: str, *, delivered_at: datetime | None, note: str | None
) -> None:
    """The invoice's state after SdI's outcome (RC, MC, NS); the same outcome twice changes nothing."""
    state = INVOICE_STATE_OF[kind]
    await pool.execute(
        """
        UPDATE invoices SET state = $2, delivered_at = coalesce($3, delivered_at), note = $4, updated_at = now()
        WHERE number = $1 AND state IN ('issued', 'sent')
        """,
        number,
        state,
        delivered_at,
        note,
    )


# ---------------------------------------------------------------------- reads


async def receipts_of(db: Db, number: str) -> ReceiptsView | None:
    """The invoice's SdI record: its state, every file sent, every notification kept unchanged."""
    invoice = await db.fetchrow(
        "SELECT number, order_number, state, delivered_at, note FROM invoices WHERE number = $1", number
    )
    if invoice is None:
        return None
    receipts = [
        Receipt(**{**row, "file": base64.b64encode(row["file"]).decode()}) for row in await notifications_of(db, number)
    ]
    return ReceiptsView(
        **dict(invoice),
        transmissions=[Transmission(**row) for row in await transmissions_of(db, number)],
        receipts=receipts,
    )


async def transmissions_of(db: Db, number: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT file_name, state, sdi_id, received_at, attempts, last_error"
        " FROM sdi_transmissions WHERE number = $1 ORDER BY created_at, file_name",
        number,
    )
    return [dict(row) for row in rows]


async def notifications_of(db: Db, number: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT sdi_id, file_name, kind, notification_name, message_id, file, detail, received_at"
        " FROM sdi_notifications WHERE number = $1 ORDER BY id",
        number,
    )
    return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]


async def refused_callbacks(db: Db, limit: int = 50) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT id, reason, operation, sdi_id, notification_name, received_at FROM sdi_refused_callbacks"
        " ORDER BY id DESC LIMIT $1",
        limit,
    )
    return [dict(row) for row in rows]


async def issued_to_send(db: Db) -> list[dict[str, Any]]:
    """Issued invoices not yet taken by SdI, with what their delivery is started with."""
    rows = await db.fetch(
        """
        SELECT i.number, i.order_number, i.username, s.holder_name AS to_name, s.holder_email AS to_email,
               coalesce(o.paid_at, i.created_at) AS paid_at
        FROM invoices i JOIN services s USING (username) JOIN orders o USING (order_number)
        WHERE i.state = 'issued'
        ORDER BY i.created_at
        """
    )
    return [dict(row) for row in rows]
