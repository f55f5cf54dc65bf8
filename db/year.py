"""The daily run's reads and claims (P15, P16): the services due on a day, a page at a time, and
the mail log claims of their notices."""

from dataclasses import dataclass
from datetime import date

import asyncpg

from renewals.year import AUTO_RENEW, Due

# One index scan of `services_due` (expires_on, auto_renew, username) per page, in username order;
# `ordered` reads `orders_for_expiry`: a service with an order for this expiry open or paid is
# skipped (P15); for the automatic order (P16), so is one already ordered and not cancelled.
DUE_PAGE = """
SELECT s.username, s.holder_name, s.holder_email, s.expires_on,
       EXISTS (
           SELECT 1 FROM orders o
           WHERE o.username = s.username AND o.previous_expires_on = s.expires_on
             AND (o.status IN ('awaiting_payment', 'paid')
                  OR ($4 AND o.mode = 'auto_renew' AND o.status <> 'cancelled'))
       ) AS ordered
FROM services s
WHERE s.expires_on = $1 AND s.auto_renew = $2 AND s.username > $3
ORDER BY s.username
LIMIT $5
"""


@dataclass(frozen=True)
class DueService:
    username: str
    holder_name: str
    holder_email: str
    expires_on: date


@dataclass(frozen=True)
class Page:
    due: list[DueService]
    skipped: int  # an order for the expiry is open or paid
    # The last username the page covered; None when nothing was left past the cursor.
    last: str | None


async def due_page(pool: asyncpg.Pool, due: Due, after: str, limit: int) -> Page:
    """The next `limit` services in username order past `after` with `due`'s expiry and auto-renew."""
    rows = await pool.fetch(DUE_PAGE, due.expires_on, due.auto_renew, after, due.kind == AUTO_RENEW, limit)
    found = [DueService(*row[:4]) for row in rows if not row["ordered"]]
    return Page(found, len(rows) - len(found), rows[-1]["username"] if rows else None)


async def claim_notices(
    pool: asyncpg.Pool, claims: list[tuple[str, str, str, str, str, str]], claimed_by: str
) -> set[str]:
    """Claim notices in the mail log: (key, template, recipient, subject, message_id, username)
    each. Returns the keys to send: new ones, and this claimant's own claims left unsent by a
    crashed attempt. A key sent, refused or claimed by another run is not returned."""
    if not claims:
        return set()
    columns = list(zip(*claims, strict=True))
    rows = await pool.fetch(
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

