"""Issue 26, items 5, 10 and 12, on the real stack: what the payments office, ops and an attacker see.

5. Invoice numbers and dates keep one order within a year, `registered_at` is bounded, and issued
   invoices and ledger rows are append-only (P17, P11).
10. Slow clients (headers or a body sent byte by byte) are closed after a deadline and never take
    the connections a normal request needs (P14).
12. PostgreSQL ends a session left idle in a transaction, so a half-open connection holding the
    invoice counter's row lock does not block every activation (P14).
"""

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from activities.store import Store
from client.renewals import Renewals
from db.invoices import invoice_of_order
from db.pool import COMMAND_TIMEOUT
from ingress.http import create_admin_app, create_app
from renewals.dates import rome_today
from renewals.events import CheckoutSubmitted, PaymentRegistered, RenewRequested
from renewals.signing import signed_headers
from renewals.types import Stage
from settings import load_settings
from stack.database import prepare
from stack.postgres import EmbeddedPostgres, free_port
from starter import server_configs
from tests.conftest import company_billing, eventually, new_service, unique, wait_stage
from tests.invariants_support import PANEL, PAYMENTS, payment_event
from tests.test_database_roles import run_init, server, url  # noqa: F401 - server is a fixture
from tests.test_invoicing import activate, awaiting_order

IDLE = "idle_in_transaction_session_timeout"

# ---------------------------------------------------------------------------- helpers


async def awaiting_payment(ingress: Renewals, store: Store) -> tuple[str, str, int]:
    """A service with billing data and its renewal checked out by bank transfer: (username, order, total)."""
    service = await new_service(store, billing=company_billing())
    await ingress.panel(RenewRequested(type="renew_requested", username=service.username))
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=service.username, payment_method="bank_transfer", years=1)
    )
    return service.username, order.order_number, order.total_cents  # type: ignore[union-attr]


def registered(order_number: str, amount_cents: int, at: datetime) -> PaymentRegistered:
    return PaymentRegistered(
        type="payment_registered",
        order_number=order_number,
        transaction_id=unique("txn"),
        amount_cents=amount_cents,
        currency="EUR",
        method="bank_transfer",
        registered_at=at,
    )


async def paid_and_activated(ingress: Renewals, store: Store, username: str, order: str, total: int, at: datetime):
    outcome = await ingress.payment(registered(order, total, at))
    assert outcome.status == "applied", outcome
    await wait_stage(ingress.client, username, Stage.ACTIVATED, timeout=30)
    invoice = await invoice_of_order(store.pool, order)
    assert invoice is not None and invoice.number is not None, invoice
    return invoice


async def post_payment(ingress: Renewals, payload: dict[str, Any]) -> httpx.Response:
    """`POST /payments/events` as the payments office signs it, on the real app."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", **signed_headers(PAYMENTS, "POST", "/payments/events", body)}
    transport = httpx.ASGITransport(app=create_app(ingress, PANEL, PAYMENTS))
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as http:
        return await http.post("/payments/events", content=body, headers=headers)


# ---------------------------------------------------------------------------- 5


async def test_h05_an_invoice_numbered_later_is_never_dated_earlier(ingress: Renewals, store: Store) -> None:
    now = datetime.now(UTC)
    if rome_today(now - timedelta(days=4)).year != rome_today(now).year:
        pytest.skip("the first days of a year: the two registrations would fall in different years")
    first = await awaiting_payment(ingress, store)
    second = await awaiting_payment(ingress, store)
    # Both orders were made a week ago (the transfers take days to be registered).
    await store.pool.execute(
        "UPDATE orders SET created_at = now() - interval '7 days' WHERE order_number = ANY($1)", [first[1], second[1]]
    )
    # A transfer registered yesterday is activated first; one registered three days ago, after it.
    early = await paid_and_activated(ingress, store, *first, at=now - timedelta(days=1))
    late = await paid_and_activated(ingress, store, *second, at=now - timedelta(days=3))
    assert (late.year, late.progressive) > (early.year, early.progressive)  # type: ignore[operator]
    assert late.issued_on >= early.issued_on, (early.number, early.issued_on, late.number, late.issued_on)  # type: ignore[operator]
    # Over the whole year: dates never go back as numbers go up.
    dates = [
        row["issued_on"]
        for row in await store.pool.fetch(
            "SELECT issued_on FROM invoices WHERE year = $1 ORDER BY progressive", late.year
        )
    ]
    assert dates == sorted(dates)
    # The invoice says which day it carries and why, for ops (never silently another day).
    detail = await store.pool.fetchval(
        "SELECT detail FROM renewal_events WHERE order_number = $1 AND event = 'invoice_issued'", second[1]
    )
    assert f'"registered_on": "{rome_today(now - timedelta(days=3)).isoformat()}"' in detail, detail


async def test_h05_a_payment_registered_in_2001_opens_no_2001_series(ingress: Renewals, store: Store) -> None:
    username, order, total = await awaiting_payment(ingress, store)
    invoice = await paid_and_activated(ingress, store, username, order, total, at=datetime(2001, 1, 1, 10, tzinfo=UTC))
    ordered_on = rome_today(await store.pool.fetchval("SELECT created_at FROM orders WHERE order_number = $1", order))
    assert invoice.year == ordered_on.year and invoice.number.startswith(f"FT-{ordered_on.year}-"), invoice.number  # type: ignore[union-attr]
    assert invoice.issued_on is not None and ordered_on <= invoice.issued_on <= rome_today(datetime.now(UTC))
    assert await store.pool.fetchval("SELECT count(*) FROM invoice_counters WHERE year < 2020") == 0


async def test_h05_registered_at_in_the_future_is_a_422_naming_the_field_and_the_rule(ingress: Renewals, store: Store):
    username, order, total = await awaiting_payment(ingress, store)
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    refused = await post_payment(ingress, payment_event(order, total, registered_at=ahead))
    assert refused.status_code == 422, refused.text
    assert "registered_at" in refused.text and "P17" in refused.text, refused.text
    assert await store.pool.fetchval("SELECT count(*) FROM payments WHERE order_number = $1", order) == 0
    # A back office clock a minute ahead of ours is within the skew.
    skewed = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    taken = await post_payment(ingress, payment_event(order, total, registered_at=skewed))
    assert taken.status_code == 200, taken.text
    await wait_stage(ingress.client, username, Stage.ACTIVATED, timeout=30)


async def test_h05_issued_invoices_and_ledger_rows_are_append_only_for_the_runtime_role(
    server: EmbeddedPostgres,  # noqa: F811 - the fixture imported above
) -> None:
    assert run_init(server).returncode == 0
    await prepare(url(server, "renewals"))
    assert run_init(server).returncode == 0  # run again on a migrated volume: no DELETE given back
    store = await Store.connect(url(server, "renewals_app"), max_size=2)
    try:
        service, order_number = await awaiting_order(store, company_billing())
        entry = registered(order_number, 3050, datetime.now(UTC)).entry()
        await store.ledger.receive(entry)
        issued = (await store.activate(activate(service, order_number))).invoice_number
        assert issued is not None
        db = store.pool
        # What SdI's delivery writes is allowed: the state, its id, the date, SdI's note.
        await db.execute(
            "UPDATE invoices SET state = 'sent', sdi_id = 'SDI-1', note = 'sent', updated_at = now() WHERE number = $1",
            issued,
        )
        for change in ("total_cents = total_cents + 1", "number = number || 'X'", "issued_on = issued_on - 1",
                       "progressive = progressive + 1000", "xml = 'forged'"):  # fmt: skip
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await db.execute(f"UPDATE invoices SET {change} WHERE number = $1", issued)
        for statement in ("DELETE FROM invoices WHERE number = $1", "DELETE FROM payments WHERE order_number = $1"):
            with pytest.raises(asyncpg.PostgresError, match="permission denied|append-only"):
                await db.execute(statement, issued if "invoices" in statement else order_number)
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await db.execute("UPDATE payments SET amount_cents = 1 WHERE transaction_id = $1", entry.transaction_id)
        # A payment is settled once: its status moves from `received`, never again.
        assert await store.ledger.settle_unmatched(entry.transaction_id, "test")
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await db.execute("UPDATE payments SET status = 'applied' WHERE transaction_id = $1", entry.transaction_id)
        row = await db.fetchrow("SELECT number, total_cents, state FROM invoices WHERE number = $1", issued)
        assert (row["number"], row["total_cents"], row["state"]) == (issued, 3050, "sent")
    finally:
        await store.close()
    # Not even the owner deletes a ledger row or rewrites an invoice's number by mistake.
    owner = await asyncpg.connect(url(server, "renewals"))
    try:
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await owner.execute("DELETE FROM payments WHERE order_number = $1", order_number)
        with pytest.raises(asyncpg.PostgresError, match="append-only"):
            await owner.execute("UPDATE invoices SET number = 'FT-1999-000001' WHERE number = $1", issued)
    finally:
        await owner.close()


# ---------------------------------------------------------------------------- 10


class _Quiet(uvicorn.Server):
    """The production config, served in the test's loop; the test runner keeps its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield


@contextlib.asynccontextmanager
async def served(ingress: Renewals) -> AsyncIterator[tuple[int, uvicorn.Config]]:
    port = free_port()
    settings = load_settings(ingress_port=port, ingress_admin_port=free_port())
    app = create_app(ingress, PANEL, PAYMENTS)
    public, _ = server_configs(settings, app, create_admin_app(app))
    http_server = _Quiet(public)
    task = asyncio.create_task(http_server.serve())
    try:
        await eventually(lambda: http_server.started, 20, "the ingress to listen")
        yield port, public
    finally:
        http_server.should_exit = True
        await asyncio.wait_for(task, 30)


class SlowSocket:
    """A client that sends its request a byte a second: the headers, or a body after whole headers."""

    def __init__(self, port: int, body: bool) -> None:
        self.port, self.body = port, body
        self.closed_at: float | None = None

    async def run(self, opened: asyncio.Event, until: float) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = b"POST /payments/events HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n"
        trickle = b"{" * 200 if self.body else head
        if self.body:
            writer.write(head)
        opened.set()
        try:
            for byte in trickle:
                if time.monotonic() > until:
                    return
                writer.write(bytes([byte]))
                with contextlib.suppress(TimeoutError):
                    while await asyncio.wait_for(reader.read(4096), 1.0):
                        pass  # a 408 before the close
                    self.closed_at = time.monotonic()  # EOF: the server closed it
                    return
        except (ConnectionError, OSError):
            self.closed_at = time.monotonic()
        finally:
            writer.close()


@pytest.mark.timeout(120)
async def test_h10_slow_sockets_are_closed_and_a_normal_request_still_gets_its_answer(ingress: Renewals) -> None:
    async with served(ingress) as (port, config):
        limit = config.limit_concurrency or 0
        sockets = [SlowSocket(port, body=n % 5 == 0) for n in range(limit + 100)]  # more than the limit
        started = time.monotonic()
        opened = [asyncio.Event() for _ in sockets]
        tasks = [asyncio.create_task(s.run(o, started + 60)) for s, o in zip(sockets, opened, strict=True)]
        try:
            await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 30)
            # Every slow socket is open; a normal request is answered, at once, not refused.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                asked = time.monotonic()
                answer = await http.get("/healthz")
                assert answer.status_code != 503, (answer.status_code, answer.text)
                assert time.monotonic() - asked < 5.0
            # The server closes each slow socket after its deadline, not when the client gives up.
            await eventually(lambda: all(s.closed_at is not None for s in sockets), 45, "the slow sockets to close")
            slowest = max(s.closed_at for s in sockets if s.closed_at) - started
            assert slowest < 30, slowest
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


# ---------------------------------------------------------------------------- 12


async def test_h12_a_session_idle_in_transaction_holding_the_invoice_counter_is_ended(
    ingress: Renewals, store: Store, postgres_url: str
) -> None:
    # Without a server-side limit this waits for ever: the test gives it what the limit will be.
    idle_limit = await store.pool.fetchval("SELECT setting::int FROM pg_settings WHERE name = $1", IDLE) / 1000 or 15
    username, order, total = await awaiting_payment(ingress, store)
    year = rome_today(datetime.now(UTC)).year
    await store.pool.execute(
        "INSERT INTO invoice_counters (year, last_progressive) VALUES ($1, 0) ON CONFLICT (year) DO NOTHING", year
    )
    # A client takes the year's counter row and vanishes without closing (a half-open connection).
    holder = await asyncpg.connect(postgres_url)
    try:
        await holder.execute("BEGIN")
        await holder.fetchval("SELECT last_progressive FROM invoice_counters WHERE year = $1 FOR UPDATE", year)
        held_at = time.monotonic()
        outcome = await ingress.payment(registered(order, total, datetime.now(UTC)))
        assert outcome.status == "applied"
        # The activation waits for the lock, PostgreSQL ends the idle session, the activation goes on.
        await wait_stage(ingress.client, username, Stage.ACTIVATED, timeout=idle_limit + 30)
        assert time.monotonic() - held_at >= idle_limit - 1
        invoice = await invoice_of_order(store.pool, order)
        assert invoice is not None and invoice.number is not None and invoice.year == year
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await holder.fetchval("SELECT 1")  # the idle session was ended by the server
    finally:
        holder.terminate()
    # The server's bounds are there for every session, and the client gives up after the server's
    # lock wait (a clean error naming the lock) and before its statement limit.
    settings = {
        row["name"]: row["setting"]
        for row in await store.pool.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN"
            " ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')"
        )
    }
    assert all(int(value) > 0 for value in settings.values()) and len(settings) == 3, settings
    assert int(settings["lock_timeout"]) < COMMAND_TIMEOUT * 1000 < int(settings["statement_timeout"]), settings
