"""Service records as provisioning describes them (`services import`), a renewal's extension of
one (R7), the price list and its discount codes."""

from collections.abc import Sequence
from datetime import date

import asyncpg

from db.audit import audit
from renewals.billing import BillingData
from renewals.dates import add_years
from renewals.records import AddonQuantity, DiscountCode, PriceList, Product, ServiceRecord


class Services:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert(self, records: Sequence[ServiceRecord]) -> dict[str, int]:
        """Insert or update by username, all in one transaction; returns counts."""
        counts = {"inserted": 0, "updated": 0}
        async with self.pool.acquire() as conn, conn.transaction():
            for record in records:
                inserted = await conn.fetchval(
                    """
                    INSERT INTO services (username, holder_name, holder_email, promotional,
                        purchased_on, expires_on, auto_renew, auto_renew_years,
                        storage_quota_mb, storage_used_mb, included_users, auto_renew_method)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                    ON CONFLICT (username) DO UPDATE SET
                        holder_name = EXCLUDED.holder_name, holder_email = EXCLUDED.holder_email,
                        promotional = EXCLUDED.promotional, purchased_on = EXCLUDED.purchased_on,
                        expires_on = EXCLUDED.expires_on, auto_renew = EXCLUDED.auto_renew,
                        auto_renew_years = EXCLUDED.auto_renew_years,
                        storage_quota_mb = EXCLUDED.storage_quota_mb,
                        storage_used_mb = EXCLUDED.storage_used_mb,
                        included_users = EXCLUDED.included_users,
                        -- a record without a method keeps the one the customer chose (P16)
                        auto_renew_method = coalesce(EXCLUDED.auto_renew_method, services.auto_renew_method),
                        updated_at = now()
                    RETURNING (xmax = 0)
                    """,
                    record.username,
                    record.holder_name,
                    record.holder_email,
                    record.promotional,
                    record.purchased_on,
                    record.expires_on,
                    record.auto_renew,
                    record.auto_renew_years,
                    record.storage_quota_mb,
                    record.storage_used_mb,
                    record.included_users,
                    record.auto_renew_method,
                )
                counts["inserted" if inserted else "updated"] += 1
                await conn.execute("DELETE FROM service_addons WHERE username = $1", record.username)
                await conn.executemany(
                    "INSERT INTO service_addons (username, addon, quantity) VALUES ($1, $2, $3)",
                    [(record.username, line.addon, line.quantity) for line in record.addons],
                )
                # P17: the holder's billing data, replaced like the add-ons.
                billing = record.billing.model_dump_json() if record.billing else None
                await conn.execute("UPDATE services SET billing = $2 WHERE username = $1", record.username, billing)
                await audit(
                    conn,
                    record.username,
                    None,
                    "service_imported",
                    expires_on=record.expires_on,
                    inserted=bool(inserted),
                )
        return counts

    async def get(self, username: str) -> ServiceRecord | None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM services WHERE username = $1", username)
            if row is None:
                return None
            addons = await conn.fetch(
                "SELECT addon, quantity FROM service_addons WHERE username = $1 ORDER BY addon",
                username,
            )
        fields = {name: row[name] for name in ServiceRecord.model_fields if name not in ("addons", "billing")}
        billing = BillingData.model_validate_json(row["billing"]) if row["billing"] else None  # P17
        return ServiceRecord(
            **fields,
            addons=[AddonQuantity(addon=a["addon"], quantity=a["quantity"]) for a in addons],
            billing=billing,
        )

    async def set_auto_renew(self, username: str, on: bool, method: str | None, years: int | None = None) -> None:
        """The auto-renew switch (P16): on with its method and, if given, its term; or off (the
        method and term are kept)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE services SET auto_renew = $2, auto_renew_method = coalesce($3, auto_renew_method),"
                " auto_renew_years = coalesce($4, auto_renew_years), updated_at = now() WHERE username = $1",
                username,
                on,
                method,
                years,
            )
            await audit(conn, username, None, "auto_renew_changed", auto_renew=on, method=method, years=years)

    async def awaiting_order(self, username: str, modes: Sequence[str]) -> str | None:
        """The service's order of one of `modes` awaiting payment, if any (the newest)."""
        found: str | None = await self.pool.fetchval(
            "SELECT order_number FROM orders WHERE username = $1 AND status = 'awaiting_payment'"
            " AND mode = ANY($2::text[]) ORDER BY created_at DESC LIMIT 1",
            username,
            list(modes),
        )
        return found

    async def holder(self, username: str) -> tuple[str, str]:
        """The holder's name and email address (an invoice's delivery, P18)."""
        row = await self.pool.fetchrow("SELECT holder_name, holder_email FROM services WHERE username = $1", username)
        if row is None:
            raise LookupError(f"no service with username {username!r}")
        return row["holder_name"], row["holder_email"]

    async def price_list(self) -> PriceList:
        rows = await self.pool.fetch("SELECT * FROM products")
        return PriceList(products={row["product"]: Product(**dict(row)) for row in rows})

    async def discount_code(self, code: str) -> DiscountCode | None:
        """The discount code, matched without regard to case."""
        row = await self.pool.fetchrow("SELECT * FROM discount_codes WHERE upper(code) = upper($1)", code)
        return DiscountCode(**dict(row)) if row else None


async def extend_service(
    conn: asyncpg.Connection, username: str, years: int, addons: Sequence[AddonQuantity]
) -> tuple[date, date]:
    """R7 in the caller's transaction (the activation, db/orders.py): the expiry extended by
    `years` from the old one under the service's row lock, the add-ons renewed, the auto-renew
    term set (R5). Returns the old expiry and the new one."""
    previous: date = await conn.fetchval("SELECT expires_on FROM services WHERE username = $1 FOR UPDATE", username)
    new = add_years(previous, years)
    await conn.execute(
        "UPDATE services SET expires_on = $2, auto_renew_years = $3, updated_at = now() WHERE username = $1",
        username,
        new,
        years,
    )
    await conn.executemany(
        """
        INSERT INTO service_addons (username, addon, quantity) VALUES ($1, $2, $3)
        ON CONFLICT (username, addon)
            DO UPDATE SET quantity = service_addons.quantity + EXCLUDED.quantity
        """,
        [(username, line.addon, line.quantity) for line in addons],
    )
    return previous, new
