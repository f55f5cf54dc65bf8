"""`python -m bench.sdi` (`make bench-sdi`): invoices delivered through SdI per second (P18), on a
stack of its own: PostgreSQL, the Temporal dev server, the local SdI (`python -m stack.sdi`), the
ingress that takes SdI's callbacks (`python starter.py serve`) and `python worker.py`, each a
process of its own whose CPU is measured.

It issues `--invoices` invoices as activations issue them (paid orders, each invoice numbered and
stored with its outbox row), then starts every delivery at once, as the activations would, and
reports the time until the last one is `delivered` (RC), the rate, and the CPU per invoice in each
process: the send over SDICoop, SdI's signed RC back through the ingress (schema and signature
checked), the workflow's timers and search attributes.
"""

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.run import RESULTS, machine_meta
from bench.stack import BenchStack, rss_bytes, save_results
from client.deliveries import Deliveries
from db.invoices import issue_invoice
from renewals import TASK_QUEUE
from renewals.billing import BillingData
from settings import load_settings
from stack.postgres import free_port
from stack.temporal import SQLITE_PRAGMAS
from worker import connect

BILLING = BillingData.model_validate(
    {
        "holder_type": "company",
        "company_name": "Rossi Servizi S.r.l.",
        "vat_number": "09876540015",
        "address": {"street": "Via Nazionale 10", "cap": "00184", "comune": "Roma", "provincia": "RM"},
        "recipient_code": "K7QW2XZ",
    }
)
SEED = """
INSERT INTO services (username, holder_name, holder_email, purchased_on, expires_on, auto_renew,
    storage_quota_mb, storage_used_mb, billing)
SELECT 'sdi-' || lpad(n::text, 6, '0'), 'Mario Rossi', 'sdi-' || n || '@example.com', current_date - 300,
    current_date + 30, false, 1000, 100, $2::jsonb
FROM generate_series(1, $1) AS n;
"""
PAID = """
INSERT INTO orders (order_number, workflow_id, run_id, username, mode, years, payment_method, net_cents,
    discount_cents, vat_cents, total_cents, previous_expires_on, new_expires_on, due_by, status, paid_at)
SELECT 'B-' || username, 'renewal-' || username, 'bench-' || username, username, 'renew', 1, 'bank_transfer',
    2500, 0, 550, 3050, expires_on, expires_on + 365, now() + interval '30 days', 'paid', now()
FROM services WHERE username LIKE 'sdi-%';
INSERT INTO order_lines (order_number, line_no, product, label, quantity, years, unit_price_cents, net_cents)
SELECT 'B-' || username, 1, 'service', 'Fatturazione Elettronica Solo Ricezione', 1, 1, 2500, 2500
FROM services WHERE username LIKE 'sdi-%';
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sdi", description=__doc__)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--pg-fast", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


async def issue_all(url: str, count: int) -> None:
    """`count` paid orders and their invoices, issued one by one as activations issue them."""
    settings = load_settings()
    # Bulk seeds run longer than the database's bound on a statement (migrations/011_runtime_timeouts.sql).
    conn = await asyncpg.connect(url, server_settings={"statement_timeout": "0"})
    try:
        await conn.execute(SEED, count, BILLING.model_dump_json())
        await conn.execute(PAID)
        orders = await conn.fetch("SELECT order_number FROM orders WHERE order_number LIKE 'B-sdi-%' ORDER BY 1")
        for row in orders:
            async with conn.transaction():
                await issue_invoice(
                    conn, row["order_number"], seller=settings.seller(), registered_at=datetime.now(UTC)
                )
    finally:
        await conn.close()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    stack = BenchStack(pg_fast=args.pg_fast, keep=args.keep)
    say(f"starting the stack under {stack.root}")
    stack.root.mkdir(parents=True, exist_ok=True)
    await stack.start_postgres()
    stack.start_sink()
    await stack.start_temporal(SQLITE_PRAGMAS)
    ingress_port, sdi_port = free_port(), free_port()
    sdi_dir = stack.root / "sdi"
    callback = f"http://127.0.0.1:{ingress_port}/sdi/TrasmissioneFatture"
    stack.spawn(
        "sdi",
        [sys.executable, "-m", "stack.sdi", "--port", str(sdi_port), "--dir", str(sdi_dir), "--callback", callback],
    )
    cert = sdi_dir / "sdi-signing.pem"
    deadline = time.monotonic() + 30
    while not cert.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    sdi_env = {"SDI_URL": f"http://127.0.0.1:{sdi_port}/SdIRiceviFile", "SDI_SIGNING_CERT": str(cert)}
    stack.spawn(
        "ingress",
        [sys.executable, "starter.py", "serve"],
        {**sdi_env, "INGRESS_PORT": str(ingress_port), "INGRESS_ADMIN_PORT": str(free_port()), "LOG_LEVEL": "WARNING"},
    )
    await stack._ready(stack.spawn("worker", [sys.executable, "worker.py"], sdi_env), "worker polling task queue")
    results: dict[str, Any] = {"meta": machine_meta(args, SQLITE_PRAGMAS), "invoices": args.invoices}
    try:
        say(f"issuing {args.invoices:,} invoices")
        await issue_all(stack.database_url, args.invoices)
        settings = load_settings(TEMPORAL_ADDRESS=stack.temporal_address, DATABASE_URL=stack.database_url)
        client = await connect(settings)
        pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=4)
        names = ["worker", "temporal", "postgres", "sdi", "ingress"]
        before = {name: _cpu(stack, name) for name in names}
        started = time.perf_counter()
        deliveries = Deliveries(client, pool, TASK_QUEUE, settings.sdi_policy())
        await deliveries.start_pending()
        started_all = time.perf_counter() - started
        say(f"{args.invoices:,} deliveries started in {started_all:.1f} s")
        while True:
            done = await pool.fetchval("SELECT count(*) FROM invoices WHERE state = 'delivered'")
            if done >= args.invoices:
                break
            if time.perf_counter() - started > 3600:
                raise TimeoutError(f"{done} of {args.invoices} delivered after an hour")
            await asyncio.sleep(0.2)
        seconds = time.perf_counter() - started
        after = {name: _cpu(stack, name) for name in names}
        cpu = {name: after[name] - before[name] for name in names}
        sent = await pool.fetchval("SELECT sum(attempts) FROM sdi_transmissions")
        results["run"] = {
            "seconds": round(seconds, 1),
            "per_second": round(args.invoices / seconds, 1),
            "started_in_seconds": round(started_all, 1),
            "send_attempts": sent,
            "cpu_ms_per_invoice": {name: round(1000 * value / args.invoices, 1) for name, value in cpu.items()},
            "cpu_ms_per_invoice_total": round(1000 * sum(cpu.values()) / args.invoices, 1),
            "rss_worker_bytes": rss_bytes(stack.pid("worker")),
        }
        await pool.close()
        say(json.dumps(results["run"]))
    finally:
        stack.stop()
    return results


def _cpu(stack: BenchStack, name: str) -> float:
    from bench.stack import cpu_seconds

    return cpu_seconds(stack.pid(name), children=name == "postgres")


def markdown(results: dict[str, Any]) -> str:
    run = results["run"]
    per = ", ".join(f"{name} {value}" for name, value in run["cpu_ms_per_invoice"].items())
    return (
        f"SdI delivery benchmark, {results['meta']['started_at']} — {results['meta']['cpus']} CPUs, load average at "
        f"start {results['meta']['loadavg_start']}, commit {results['meta']['commit']}.\n\n"
        f"{results['invoices']:,} invoices delivered (RC) in **{run['seconds']} s: {run['per_second']} per second**, "
        f"{run['send_attempts']} sends. CPU per invoice **{run['cpu_ms_per_invoice_total']} ms** ({per}); "
        f"worker RSS after {run['rss_worker_bytes'] / 2**20:.0f} MB."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(bench(args))
    save_results(args.out, "sdi", results, markdown(results))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
