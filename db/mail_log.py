"""The mail log: one row per logical email, claimed before it is sent, so a retried activity never
sends the same email twice; refusals recorded for ops."""

from datetime import datetime

import asyncpg


class MailLog:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def claim(
        self,
        key: str,
        template: str,
        recipient: str,
        subject: str,
        message_id: str,
        username: str,
        order_number: str | None,
    ) -> str:
        """Log a logical email before sending it; returns its status ('sending' or 'sent')."""
        # One statement: a no-op update on conflict makes RETURNING give the existing row.
        status: str = await self.pool.fetchval(
            """
            INSERT INTO email_log (key, template, recipient, subject, message_id, username,
                                   order_number)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key
            RETURNING status
            """,
            key,
            template,
            recipient,
            subject,
            message_id,
            username,
            order_number,
        )
        return status

    async def claim_notices(self, claims: list[tuple[str, str, str, str, str, str]], claimed_by: str) -> set[str]:
        """The daily run's claim of a page of notices (P15): (key, template, recipient, subject,
        message_id, username) each. Returns the keys to send: new ones, and this claimant's own
        claims left unsent by a crashed attempt. A key sent, refused, or claimed by another run
        (or by a renewal's own email, `claim`) is not returned."""
        if not claims:
            return set()
        columns = list(zip(*claims, strict=True))
        rows = await self.pool.fetch(
            """
            INSERT INTO email_log (key, template, recipient, subject, message_id, username, claimed_by)
            SELECT k, t, r, s, m, u, $7
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS c(k, t, r, s, m, u)
            ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key
                WHERE email_log.status = 'sending' AND email_log.claimed_by = EXCLUDED.claimed_by
            RETURNING key
            """,
            *[list(column) for column in columns],
            claimed_by,
        )
        return {row["key"] for row in rows}

    async def mark_refused(self, key: str, why: str) -> None:
        await self.pool.execute(
            "UPDATE email_log SET status = 'refused', note = $2 WHERE key = $1 AND status = 'sending'", key, why
        )

    async def mark_sent(self, key: str, sent_at: datetime) -> None:
        await self.pool.execute(
            "UPDATE email_log SET status = 'sent', sent_at = $2 WHERE key = $1 AND status = 'sending'",
            key,
            sent_at,
        )
