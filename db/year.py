"""The daily run's read (P15, P16): the services due on a day, a page at a time."""

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
