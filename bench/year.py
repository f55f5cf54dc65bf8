"""`python -m bench.year` (`make bench-year`): one day of the service's year (P15, P16) over many
services due on the same day, on a stack of its own (PostgreSQL, the Temporal dev server, the SMTP
sink, `python worker.py`).

It seeds `--services` due on one day (expiry notices of every kind, `--auto` automatic orders, and
`--ordered` services with an order for their expiry, which are skipped) among `--noise` services
due on other days, then runs that day's ServiceYearDay workflow as the Schedule would and reports
its wall time, the work per due service (CPU in each process, SQL statements), the plan of a page
query, and a second run of the same day (which must send nothing).
"""

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.run import RESULTS, machine_meta, reset_statements, statements_run
from bench.stack import BenchStack, rss_bytes, save_results
from db.year import DUE_PAGE
from renewals import TASK_QUEUE
from renewals.messages import DayReport, DayRun
from settings import load_settings
from stack.temporal import SQLITE_PRAGMAS
from worker import connect
from workflows.year import ServiceYearDay

DAY = date(2027, 3, 28)  # the spring DST change in Rome
# Share of the due services per kind (days from DAY to the expiry); the automatic ones come apart.
MIX = {
    "before-30": (30, 0.30),
    "before-7": (7, 0.25),
    "before-1": (1, 0.20),
    "expired": (-1, 0.15),
    "ceased": (-91, 0.10),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.year", description=__doc__)
    parser.add_argument("--services", type=int, default=100_000, help="services with a notice due on the day")
    parser.add_argument("--auto", type=int, default=0, help="services whose automatic order falls on the day")
    parser.add_argument("--ordered", type=int, default=1_000, help="services due but with an order open (skipped)")
    parser.add_argument("--noise", type=int, default=200_000, help="services due on other days")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--pg-fast", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


SEED = """
INSERT INTO services (username, holder_name, holder_email, purchased_on, expires_on, auto_renew,
    auto_renew_method, storage_quota_mb, storage_used_mb)
SELECT $1 || lpad(n::text, 7, '0'), 'Mario Rossi', $1 || n || '@example.com', $2::date - 400, $2::date, $3,
    CASE WHEN $3 THEN 'bank_transfer' END, 1000, 100
FROM generate_series(1, $4) AS n
"""

ORDERS = """
INSERT INTO orders (order_number, workflow_id, run_id, username, mode, years, payment_method, net_cents,
    discount_cents, vat_cents, total_cents, previous_expires_on, due_by)
SELECT 'B-' || s.username, 'renewal-' || s.username, 'bench-' || s.username, s.username, 'renew', 1, 'bank_transfer',
    2500, 0, 550, 3050, s.expires_on, now() + interval '30 days'
FROM services s WHERE s.username LIKE 'ordered-%'
"""


async def seed(url: str, args: argparse.Namespace) -> tuple[dict[str, int], str]:
    """The services, counted by kind (and in all), and the plan of the first page's query."""
    # Bulk seeds run longer than the database's bound on a statement (migrations/011_runtime_timeouts.sql).
    conn = await asyncpg.connect(url, server_settings={"statement_timeout": "0"})
    counts: dict[str, int] = {}
    try:
        for kind, (days, share) in MIX.items():
            count = round(args.services * share)
            await conn.execute(SEED, f"{kind}-", DAY + timedelta(days=days), False, count)
            counts[kind] = count
        if args.auto:
            await conn.execute(SEED, "auto-", DAY + timedelta(days=30), True, args.auto)
            counts["auto_renew"] = args.auto
        await conn.execute(SEED, "ordered-", DAY + timedelta(days=7), False, args.ordered)
        await conn.execute(ORDERS)
        # Services due on other days: expiring 100 to 299 days after it, a third with auto-renew.
        await conn.execute(
            """
            INSERT INTO services (username, holder_name, holder_email, purchased_on, expires_on, auto_renew,
                storage_quota_mb, storage_used_mb)
            SELECT 'noise-' || n, 'Mario Rossi', 'noise@example.com', $1::date - 800, $1::date + 100 + (n % 200),
                n % 3 = 0, 1000, 100
            FROM generate_series(1, $2) AS n
            """,
            DAY,
            args.noise,
        )
        await conn.execute("ANALYZE")
        plan = await conn.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) " + DUE_PAGE, DAY + timedelta(days=30), False, "", False, 500
        )
        counts["_services_total"] = await conn.fetchval("SELECT count(*) FROM services")
    finally:
        await conn.close()
    return counts, "\n".join(row[0] for row in plan)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    stack = BenchStack(pg_fast=args.pg_fast, keep=args.keep)
    say(f"starting the stack under {stack.root}")
    await stack.start(SQLITE_PRAGMAS)
    results: dict[str, Any] = {"meta": machine_meta(args, SQLITE_PRAGMAS), "day": DAY.isoformat()}
    try:
        say(f"seeding {args.services:,} services due on {DAY}, {args.auto:,} automatic, {args.noise:,} others")
        seeded, plan = await seed(stack.database_url, args)
        results["seeded"] = seeded
        results["plan"] = plan
        say("page query plan:\n" + plan)
        settings = load_settings(TEMPORAL_ADDRESS=stack.temporal_address, DATABASE_URL=stack.database_url)
        client = await connect(settings)
        request = DayRun(day=DAY, year=settings.year(), page_size=args.page_size, action_url=settings.panel_ui_url)
        for label in ("first", "again"):
            await reset_statements(stack.database_url)
            before, started = stack.cpu(), time.perf_counter()
            report: DayReport = await client.execute_workflow(
                ServiceYearDay.run, request, id=f"bench-year-{label}", task_queue=TASK_QUEUE
            )
            seconds = time.perf_counter() - started
            after = stack.cpu()
            statements = await statements_run(stack.database_url)
            due = sum(count.due for count in report.kinds.values())
            cpu = {name: after[name] - before[name] for name in after if name != "floor-worker"}
            results[label] = {
                "seconds": round(seconds, 1),
                "due": due,
                "per_second": round(due / seconds, 1) if seconds else None,
                "kinds": {kind: count.model_dump() for kind, count in sorted(report.kinds.items())},
                "cpu_seconds": {name: round(value, 1) for name, value in cpu.items()},
                "cpu_ms_per_due": {name: round(1000 * value / max(due, 1), 2) for name, value in cpu.items()},
                "statements_per_due": round(
                    sum(calls for query, calls in statements.items() if "pg_stat_statements" not in query)
                    / max(due, 1),
                    2,
                ),
                "rss_worker_bytes": rss_bytes(stack.pid("worker")),
            }
            say(f"{label}: {due:,} due in {seconds:.1f} s; {json.dumps(results[label]['kinds'])}")
        results["emails_in_sink"] = sum(1 for _ in stack.mail_dir.glob("*.eml"))
        db_conn = await asyncpg.connect(stack.database_url)
        try:
            results["email_log_rows"] = await db_conn.fetchval("SELECT count(*) FROM email_log")
        finally:
            await db_conn.close()
    finally:
        stack.stop()
    return results


def ours(statements: dict[str, int]) -> int:
    return sum(calls for query, calls in statements.items() if "pg_stat_statements" not in query)


def markdown(results: dict[str, Any]) -> str:
    first, again = results["first"], results["again"]
    lines = [
        f"Daily run benchmark, {results['meta']['started_at']} — {results['meta']['cpus']} CPUs, "
        f"load average at start {results['meta']['loadavg_start']}, commit {results['meta']['commit']}.",
        "",
        f"Day {results['day']}: {first['due']:,} services due among {results['seeded']['_services_total']:,}; "
        f"the first run took **{first['seconds']} s** ({first['per_second']} per second), the same day again "
        f"{again['seconds']} s and sent nothing ({sum(k['done'] for k in again['kinds'].values())} sent). "
        f"{results['emails_in_sink']:,} emails reached the SMTP sink.",
        "",
        "| kind | due | sent or started | skipped | already | refused | busy |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for kind, count in first["kinds"].items():
        lines.append(
            f"| {kind} | {count['due']:,} | {count['done']:,} | {count['skipped']:,} | {count['already']:,} "
            f"| {count['refused']:,} | {count['busy']:,} |"
        )
    lines += [
        "",
        "Work per due service (first run): CPU ms "
        + ", ".join(f"{name} {value}" for name, value in first["cpu_ms_per_due"].items())
        + f"; {first['statements_per_due']} SQL statements; "
        f"worker RSS after {first['rss_worker_bytes'] / 2**20:.0f} MB.",
        "",
        "The page query's plan:",
        "",
        "```",
        results["plan"],
        "```",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results = asyncio.run(bench(args))
    save_results(args.out, "year", results, markdown(results))
    print(f"\nbench took {(time.monotonic() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
