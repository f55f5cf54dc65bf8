"""`python -m bench.statements` (`make bench-statements`): one bank statement paying many orders
(P19), on a stack of its own: PostgreSQL, the Temporal dev server, the SMTP sink and `python
worker.py`, each a process whose CPU is measured.

It parks `--entries` renewals awaiting payment (renew, then check out by bank transfer, as the panel
does; not timed), writes one camt.053.001.02 statement with one credit per order (the order number
or the RF reference, in every spelling payers use), then submits it as `starter.py payments import`
does and reports: the time to read, validate and store the file; until every entry is recorded;
until the import is done (every payment answered by its renewal); and until the last order is
activated. The services carry no billing data, so the activations issue no invoice to send to SdI
(`make bench-sdi` measures that).
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

from activities.store import Store
from bench.drive import _service
from bench.run import RESULTS, machine_meta
from bench.sdi import say
from bench.stack import BenchStack, cpu_seconds, rss_bytes, save_results
from client.renewals import Renewals
from client.statements import submit_statement
from renewals import TASK_QUEUE
from renewals.creditor_reference import creditor_reference
from renewals.dates import rome_today
from renewals.events import CheckoutSubmitted, RenewRequested
from renewals.records import ServiceRecord
from renewals.statement_writer import SPELLING_COUNT, ntry, spell, statement
from renewals.views import OrderView
from settings import load_settings
from stack.temporal import SQLITE_PRAGMAS
from worker import connect

PARTS = ("worker", "temporal", "postgres")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__)
    parser.add_argument("--entries", type=int, default=10_000, help="orders parked, one credit each")
    parser.add_argument("--park-concurrency", type=int, default=32)
    for flag, meaning in (("--keep", "keep the stack's data dir and logs"), ("--pg-fast", "PostgreSQL with fsync off")):
        parser.add_argument(flag, action="store_true", help=meaning)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def services(count: int) -> list[ServiceRecord]:
    """The bench's services (bench/drive.py), without billing data: no invoice to send to SdI."""
    today = rome_today(datetime.now(UTC))
    return [_service(f"stmt-{n:06d}", today).model_copy(update={"billing": None}) for n in range(count)]


async def park(ingress: Renewals, records: list[ServiceRecord], concurrency: int) -> list[OrderView]:
    """Each service's renewal checked out by bank transfer: orders awaiting payment."""
    for start in range(0, len(records), 500):
        await ingress.store.services.upsert(records[start : start + 500])
    gate = asyncio.Semaphore(concurrency)

    async def one(username: str) -> OrderView:
        async with gate:
            await ingress.panel(RenewRequested(type="renew_requested", username=username))
            order = await ingress.panel(
                CheckoutSubmitted(type="checkout_submitted", username=username, payment_method="bank_transfer", years=1)
            )
        assert isinstance(order, OrderView), order
        return order

    return list(await asyncio.gather(*(one(record.username) for record in records)))


def statement_paying(orders: list[OrderView]) -> bytes:
    """One credit per order: its RF reference in the structured remittance for a third of them,
    the order number or the RF in the text, in turn in each spelling, for the rest."""
    entries = (
        ntry(f"BENCH{index:07d}", order.total_cents, strd=(creditor_reference(order.order_number),))
        if index % 3 == 0
        else ntry(
            f"BENCH{index:07d}",
            order.total_cents,
            ustrd=(f"Rinnovo servizio {spell(order.order_number, index % SPELLING_COUNT)}",),
            debtor=f"CLIENTE {index}",
        )
        for index, order in enumerate(orders)
    )
    return statement(*entries, message_id=f"BENCH-{len(orders)}-{time.time_ns() % 10**12}")


async def own_stack(args: argparse.Namespace) -> BenchStack:
    """PostgreSQL, the Temporal dev server, the SMTP sink and `python worker.py`, on a data dir of
    their own."""
    stack = BenchStack(pg_fast=args.pg_fast, keep=args.keep)
    stack.root.mkdir(parents=True, exist_ok=True)
    say(f"a stack of its own under {stack.root}")
    await stack.start_postgres()
    await stack.start_temporal(SQLITE_PRAGMAS)
    stack.start_sink()
    await stack.start_renewal_worker()
    return stack


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    stack = await own_stack(args)
    results: dict[str, Any] = {"meta": machine_meta(args, SQLITE_PRAGMAS), "entries": args.entries}
    settings = load_settings(TEMPORAL_ADDRESS=stack.temporal_address, DATABASE_URL=stack.database_url)
    client = await connect(settings)
    store = await Store.connect(stack.database_url, max_size=args.park_concurrency + 4, seller=settings.seller())
    try:
        say(f"parking {args.entries:,} renewals awaiting payment at c = {args.park_concurrency}")
        started = time.perf_counter()
        ingress = Renewals(client, store, settings.policy(), TASK_QUEUE)
        orders = await park(ingress, services(args.entries), args.park_concurrency)
        parked = time.perf_counter() - started
        say(f"parked in {parked:.0f} s; writing the statement")
        raw = statement_paying(orders)
        say(f"statement of {len(raw) / 2**20:.1f} MB; importing it")
        results["run"] = await measure(stack, client, store.pool, raw, [o.order_number for o in orders])
        results["run"].update({"parked_seconds": round(parked, 1), "file_bytes": len(raw)})
        say(json.dumps(results["run"]))
    finally:
        await store.close()
        stack.stop()
    return results


async def measure(stack: BenchStack, client: Any, pool: asyncpg.Pool, raw: bytes, numbers: list[str]) -> dict[str, Any]:
    """The import, timed from the submission: stored, recorded, done, last order activated."""
    before = {name: cpu_seconds(stack.pid(name), children=name == "postgres") for name in PARTS}
    started = time.perf_counter()
    record = await submit_statement(client, pool, raw, "cli", file_name="bench.xml", task_queue=TASK_QUEUE)
    marks: dict[str, float] = {"stored": time.perf_counter() - started}
    while "activated" not in marks:
        state = await pool.fetchval("SELECT state FROM statement_imports WHERE id = $1", record.id)
        if state in ("recorded", "done") and "recorded" not in marks:
            marks["recorded"] = time.perf_counter() - started
        if state == "done" and "done" not in marks:
            marks["done"] = time.perf_counter() - started
        paid = await pool.fetchval(
            "SELECT count(*) FROM orders WHERE order_number = ANY($1) AND status = 'paid'", numbers
        )
        if paid >= len(numbers):
            marks["activated"] = time.perf_counter() - started
        elif time.perf_counter() - started > 7200:
            raise TimeoutError(f"{paid} of {len(numbers)} orders activated after two hours")
        await asyncio.sleep(0.2)
    while "done" not in marks:  # the import closes after the last answer: moments after, at most
        if await pool.fetchval("SELECT state FROM statement_imports WHERE id = $1", record.id) == "done":
            marks["done"] = time.perf_counter() - started
        await asyncio.sleep(0.1)
    cpu = {name: cpu_seconds(stack.pid(name), children=name == "postgres") - before[name] for name in PARTS}
    row = await pool.fetchrow(
        "SELECT applied, unmatched, duplicates, ignored, outcomes FROM statement_imports WHERE id = $1", record.id
    )
    entries = len(numbers)
    return {
        **{f"{mark}_seconds": round(value, 1) for mark, value in marks.items()},
        "activations_per_second": round(entries / marks["activated"], 1),
        "counts": {key: row[key] for key in ("applied", "unmatched", "duplicates", "ignored")},
        "outcomes": json.loads(row["outcomes"]),
        "cpu_ms_per_entry": {name: round(1000 * value / entries, 1) for name, value in cpu.items()},
        "cpu_ms_per_entry_total": round(1000 * sum(cpu.values()) / entries, 1),
        "rss_worker_bytes": rss_bytes(stack.pid("worker")),
    }


def markdown(results: dict[str, Any]) -> str:
    run, meta = results["run"], results["meta"]
    rows = [
        ("entries", f"{results['entries']:,} ({run['file_bytes'] / 2**20:.1f} MB), counts {run['counts']}"),
        ("read, validated and stored", f"{run['stored_seconds']} s"),
        ("every entry recorded", f"{run['recorded_seconds']} s"),
        ("last order activated", f"{run['activated_seconds']} s ({run['activations_per_second']} per second)"),
        ("import done (every payment answered)", f"{run['done_seconds']} s, renewals answered {run['outcomes']}"),
        ("CPU per entry", f"{run['cpu_ms_per_entry_total']} ms: {run['cpu_ms_per_entry']}"),
        ("worker RSS after", f"{run['rss_worker_bytes'] / 2**20:.0f} MB"),
        ("orders parked beforehand in", f"{run['parked_seconds']} s"),
    ]
    heading = (
        f"Bank statement benchmark (P19), {meta['started_at']}: {meta['cpus']} CPUs, load average "
        f"{meta['loadavg_start']} at start, commit {meta['commit']}."
    )
    return "\n".join([heading, "", "| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)])


def main(argv: list[str] | None = None) -> None:
    """Run, save the figures, and leave as the other benchmarks do: at once, past the SDK's runtime
    (which can abort a normal interpreter exit)."""
    args = parse_args(argv)
    found = asyncio.run(bench(args))
    save_results(args.out, "statements", found, markdown(found))
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
