"""The frame: migrations, the service import command, the SMTP sink, bad configuration, and the
whole local stack (`python -m stack run`, what `make run` starts) coming up, stopping and
coming back with its data."""

import json
import os
import signal
import smtplib
import subprocess
import sys
import uuid
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import httpx
import pytest

from db.migrations import MIGRATIONS_DIR, apply_migrations
from stack.database import ensure_database
from tests.conftest import eventually, stack_env, start_stack, today

MIGRATIONS = sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))

ROOT = Path(__file__).resolve().parent.parent


def python(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------------- migrations


async def schema_of(conn: asyncpg.Connection) -> list[tuple[str, ...]]:
    columns = await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' ORDER BY 1, 2"
    )
    indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
    return [tuple(row) for row in columns] + [tuple(row) for row in indexes]


async def test_migrations_applied_twice_change_nothing(postgres_url):
    url = postgres_url.rsplit("/", 1)[0] + f"/migrations_{uuid.uuid4().hex[:8]}"
    await ensure_database(url)
    conn = await asyncpg.connect(url)
    try:
        assert await apply_migrations(conn) == MIGRATIONS
        first = await schema_of(conn)
        assert await apply_migrations(conn) == []
        assert await schema_of(conn) == first
        tables = {row[0] for row in first}
        assert {"services", "service_addons", "products", "discount_codes", "orders", "order_lines"} <= tables
        assert {"payments", "email_log", "renewal_events", "schema_migrations"} <= tables
        assert {"invoices", "invoice_counters"} <= tables  # P17
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        assert [row["version"] for row in versions] == MIGRATIONS
    finally:
        await conn.close()


async def test_a_failing_migration_leaves_nothing_behind(postgres_url, tmp_path):
    url = postgres_url.rsplit("/", 1)[0] + f"/migrations_{uuid.uuid4().hex[:8]}"
    await ensure_database(url)
    (tmp_path / "001_good.sql").write_text("CREATE TABLE kept (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    conn = await asyncpg.connect(url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await apply_migrations(conn, tmp_path)
        tables = {
            r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert "kept" in tables and "half" not in tables  # each file in its own transaction
        assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")] == ["001_good"]
    finally:
        await conn.close()


# ---------------------------------------------------------------------- services import


def record(username: str, **fields: object) -> dict[str, object]:
    values: dict[str, object] = {
        "username": username,
        "holder_name": "Rossi & Figli S.n.c.",
        "holder_email": f"{username}@example.com",
        "promotional": False,
        "purchased_on": str(today() - timedelta(days=200)),
        "expires_on": str(today() + timedelta(days=100)),
        "auto_renew": False,
        "storage_quota_mb": 2048,
        "storage_used_mb": 100,
        "addons": [{"addon": "extra_users", "quantity": 2}],
    }
    values.update(fields)
    return values


def import_file(postgres_url: str, path: Path, records: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    path.write_text(json.dumps(records))
    return python("starter.py", "services", "import", str(path), env={"DATABASE_URL": postgres_url})


async def test_services_import_inserts_then_updates_without_duplicating(postgres_url, store, tmp_path):
    first, second = f"imp-{uuid.uuid4().hex[:8]}", f"imp-{uuid.uuid4().hex[:8]}"
    done = import_file(postgres_url, tmp_path / "services.json", [record(first), record(second)])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"inserted": 2, "updated": 0}
    later = str(today() + timedelta(days=465))
    done = import_file(postgres_url, tmp_path / "services.json", [record(first, expires_on=later, addons=[])])
    assert json.loads(done.stdout) == {"inserted": 0, "updated": 1}
    assert await store.pool.fetchval("SELECT count(*) FROM services WHERE username = $1", first) == 1
    service = await store.services.get(first)
    assert service is not None and str(service.expires_on) == later and service.addons == []


async def test_services_import_with_an_invalid_record_applies_none(postgres_url, store, tmp_path):
    good, bad = f"imp-{uuid.uuid4().hex[:8]}", f"imp-{uuid.uuid4().hex[:8]}"
    records = [
        record(good),
        record(bad, holder_email="not-an-email", expires_on="2020-13-01"),
        record("it's-bad"),
    ]
    done = import_file(postgres_url, tmp_path / "services.json", records)
    assert done.returncode == 1
    assert "nothing imported" in done.stderr
    assert "record 1: holder_email" in done.stderr and "record 1: expires_on" in done.stderr
    assert "record 2: username" in done.stderr
    assert await store.services.get(good) is None


def test_services_import_refuses_a_file_that_is_not_a_list(postgres_url, tmp_path):
    path = tmp_path / "services.json"
    path.write_text('{"username": "x"}')
    done = python("starter.py", "services", "import", str(path), env={"DATABASE_URL": postgres_url})
    assert done.returncode == 1 and "JSON list" in done.stderr


# ---------------------------------------------------------------------- configuration, sink


def test_bad_configuration_stops_the_worker_naming_the_variable():
    done = python("worker.py", env={"RENEWALS_CART_IDLE": "seven days"})
    assert done.returncode != 0
    assert "RENEWALS_CART_IDLE" in done.stderr and "is not a duration" in done.stderr
    assert "Traceback" not in done.stderr


async def test_sink_saves_each_accepted_message_as_an_eml_file(mail_sink):
    subject = f"sink test {uuid.uuid4().hex}"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", subject
    message.set_content("ciao")
    with smtplib.SMTP(mail_sink.host, mail_sink.port) as client:
        client.send_message(message)
        client.send_message(message)  # the sink keeps doubles as doubles
    files = [p for p in mail_sink.directory.glob("*.eml") if subject in p.read_text()]
    assert len(files) == 2 and "ciao" in files[0].read_text()


# ---------------------------------------------------------------------- the whole local stack


YEAR_DEMO = {
    "demo-notice30 expiry_notice",
    "demo-notice7 expiry_notice",
    "demo-notice1 expiry_notice",
    "demo-expired1 service_expired",
    "demo-ceasing service_ceased",
    "demo-auto-card auto_renew_charge",
    "demo-auto-bank payment_instructions",
}


async def test_make_run_stack_starts_serves_stops_and_keeps_its_data(tmp_path):
    env = stack_env(tmp_path / "var")
    process, banner = start_stack(env)
    try:
        assert "running" in banner, banner
        assert "demo-active" in banner and f"migrations applied now: {MIGRATIONS}" in banner
        async with httpx.AsyncClient() as client:
            health = await eventually(
                lambda: _get(client, f"http://127.0.0.1:{env['INGRESS_PORT']}/healthz"), 60, "the ingress"
            )
            assert health.json() == {"status": "ok", "postgres": "ok", "temporal": "ok"}
            ui = await eventually(lambda: _get(client, f"http://127.0.0.1:{env['TEMPORAL_UI_PORT']}/"), 60, "the UI")
            assert ui.status_code == 200
        conn = await asyncpg.connect(env["DATABASE_URL"])
        try:
            assert await conn.fetchval("SELECT count(*) FROM services WHERE username LIKE 'demo-%'") == 14
            assert await conn.fetchval("SELECT unit_price_cents FROM products WHERE product = 'service'") == 2500

            # P15, P16: the worker creates the daily Schedule and runs today at once: the demo's year
            # shows within a minute (notices, the automatic orders, the card's charge request).
            async def year_shown() -> set[str]:
                rows = await conn.fetch("SELECT username, template FROM email_log WHERE username LIKE 'demo-%'")
                found = {f"{row['username']} {row['template']}" for row in rows}
                return found if YEAR_DEMO <= found else set()

            await eventually(year_shown, 60, "the demo's notices and automatic orders")
            charge = await conn.fetchrow("SELECT * FROM charge_requests WHERE username = 'demo-auto-card'")
            assert charge is not None and charge["url"] is None  # no PAYMENTS_WEBHOOK_URL: recorded
        finally:
            await conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "stopped" in rest
    # Every child is gone: nothing answers on the stack's ports any more.
    for port in (env["INGRESS_PORT"], env["TEMPORAL_ADDRESS"].rsplit(":", 1)[1], env["SMTP_PORT"]):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)

    process, banner = start_stack(env)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert "migrations applied now: none" in banner and "none (kept from last run)" in banner


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response | None:
    try:
        response = await client.get(url, timeout=5)
    except httpx.TransportError:
        return None
    return response if response.status_code == 200 else None
