"""A bank statement survives crashes (P19): one camt.053 statement of 2,000 entries paying
FAULTS_STATEMENT_ORDERS (500) orders awaiting payment, imported while the worker is SIGKILLed twice
(while its entries are recorded, while their payments are delivered) and PostgreSQL restarts once.
Afterwards every entry is recorded exactly once with what it is, every payment is one ledger row,
every paid order was activated once (its expiry extended one year, one invoice), the reversals,
debits and unmatched credits paid nothing, and a second import of the same file changes nothing.
One line of figures. Slow: `make faults` runs it."""

import asyncio
import os
import random
import signal
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from client.renewals import Renewals
from client.statements import submit_statement
from renewals.creditor_reference import creditor_reference
from renewals.dates import add_years
from renewals.statement_imports import ImportRecord, import_workflow_id
from renewals.statement_writer import SPELLING_COUNT, ntry, spell, statement
from renewals.types import Stage
from renewals.views import OrderView
from tests.conftest import eventually, handle_of, today
from tests.faults.conftest import Stack, pause, seed_batch
from tests.faults.test_faults import retrying
from tests.faults.test_invoice_faults import checkout_all

ORDERS = int(os.environ.get("FAULTS_STATEMENT_ORDERS", "500"))
ENTRIES = 2000
ACCOUNT = "IT60X0542811101000000123456"


def statement_for(orders: list[OrderView]) -> tuple[bytes, dict[str, int], dict[str, int]]:
    """2,000 entries: every order paid in full (a fifth of them in two parts), in every spelling;
    the rest unmatched credits, debits, reversals naming orders, dollars and future bookings.
    Returns the file, what each order should receive and the entries expected by outcome."""
    entries: list[str] = []
    gets: dict[str, int] = {}
    for index, order in enumerate(orders):
        number, total = order.order_number, order.total_cents
        gets[number] = total
        said = spell(number, index % SPELLING_COUNT)
        if index % 5 == 4:
            entries.append(ntry(f"PAY-{index}-1", 1000, ustrd=(f"acconto {said}",), debtor=f"CLIENTE {index}"))
            entries.append(ntry(f"PAY-{index}-2", total - 1000, ustrd=(f"saldo {said}",), debtor=f"CLIENTE {index}"))
        elif index % 3 == 0:
            entries.append(ntry(f"PAY-{index}", total, strd=(creditor_reference(number),), debtor=f"CLIENTE {index}"))
        else:
            entries.append(ntry(f"PAY-{index}", total, ustrd=(f"Rinnovo {said}",), debtor=f"CLIENTE {index}"))
    paying = len(entries)
    rest = ENTRIES - paying
    odd = [
        ("unmatched", lambda n: ntry(f"ODD-{n}", 1234 + n, ustrd=("bonifico a vostro favore",), debtor=f"ANONIMO {n}")),
        ("ignored", lambda n: ntry(f"ODD-{n}", 150, ustrd=("commissioni",), credit_debit="DBIT")),
        (
            "ignored",
            lambda n: ntry(
                f"ODD-{n}", 3050, ustrd=(orders[n % len(orders)].order_number,), credit_debit="DBIT", reversal=True
            ),
        ),
        ("ignored", lambda n: ntry(f"ODD-{n}", 3050, ustrd=(orders[n % len(orders)].order_number,), currency="USD")),
        (
            "ignored",
            lambda n: ntry(
                f"ODD-{n}", 3050, ustrd=(orders[n % len(orders)].order_number,), booked_on=today() + timedelta(days=2)
            ),
        ),
    ]
    expected = Counter({"applied": paying})
    for n in range(rest):
        outcome, make = odd[n % len(odd)]
        entries.append(make(n))
        expected[outcome] += 1
    random.Random(19).shuffle(entries)
    return statement(*entries, account=ACCOUNT, message_id=f"FAULTS-{time.time_ns()}"), gets, dict(expected)


async def count(pool: asyncpg.Pool, query: str, *args: Any) -> int:
    return int(await retrying(lambda: pool.fetchval(query, *args)))


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_p19_a_statement_of_2000_entries_survives_two_worker_kills_and_a_postgres_restart(
    stack: Stack, fault_ingress: Renewals
):
    ingress, pool = fault_ingress, fault_ingress.store.pool
    services = await seed_batch(ingress, "statements", ORDERS)
    parked = time.monotonic()
    orders = await checkout_all(ingress, services)
    parked = time.monotonic() - parked
    raw, gets, expected = statement_for(orders)
    numbers = list(gets)

    started = time.monotonic()
    record = await submit_statement(ingress.client, pool, raw, "cli", file_name="faults.xml")
    import_id = record.id
    recorded = "SELECT count(*) FROM statement_entries WHERE import_id = $1"
    delivered = (
        "SELECT count(*) FROM statement_allocations a JOIN payments p USING (transaction_id)"
        " WHERE a.import_id = $1 AND p.status <> 'received'"
    )
    figures: list[str] = []

    async def when(query: str, at_least: int, deadline: float = 300) -> int:
        """The count of `query` once it reaches `at_least` (polled with conftest's deadline)."""

        async def reached() -> int:
            found = await count(pool, query, import_id)
            return found if found >= at_least else 0

        found: int = await eventually(reached, deadline, f"{at_least} rows of: {query}")
        return found

    # 1. The worker killed while it records the entries (a batch of 500 committed, the rest not).
    at = await when(recorded, 1)
    stack.stop("worker", signal.SIGKILL)
    figures.append(f"worker killed at {at} entries recorded")
    await pause(1)
    stack.start_worker()
    # 2. PostgreSQL restarted while payments are delivered.
    at = await when(delivered, 50)
    stack.postgres.stop()
    figures.append(f"PostgreSQL stopped at {at} payments delivered")
    await pause(5)
    stack.postgres.start()
    # 3. The worker killed again, further into the deliveries.
    at = await when(delivered, at + 100)
    stack.stop("worker", signal.SIGKILL)
    figures.append(f"worker killed at {at} payments delivered")
    await pause(1)
    stack.start_worker()

    handle = ingress.client.get_workflow_handle(import_workflow_id(import_id), result_type=ImportRecord)
    done = await retrying(handle.result, deadline=900)
    imported = time.monotonic() - started
    results = await asyncio.gather(
        *(retrying(lambda s=s: handle_of(ingress.client, s.username).result(), deadline=900) for s in services)
    )
    activated = time.monotonic() - started
    assert [r.stage for r in results] == [Stage.ACTIVATED] * ORDERS

    # Every entry recorded once, as what it is; the import's counts say so.
    rows = await pool.fetch("SELECT position, outcome FROM statement_entries WHERE import_id = $1", import_id)
    assert sorted(row["position"] for row in rows) == list(range(1, ENTRIES + 1))
    assert dict(Counter(row["outcome"] for row in rows)) == expected
    counts = done.counts
    assert (counts.entries, counts.applied, counts.unmatched, counts.ignored, counts.duplicates) == (
        ENTRIES,
        expected["applied"],
        expected["unmatched"],
        expected["ignored"],
        0,
    ), done
    # Every payment one ledger row, settled; each order got exactly what the statement paid it.
    ledger = await pool.fetch(
        "SELECT p.order_number, p.amount_cents, p.status FROM statement_allocations a"
        " JOIN payments p USING (transaction_id) WHERE a.import_id = $1",
        import_id,
    )
    assert len(ledger) == expected["applied"] and {row["status"] for row in ledger} <= {"applied", "partial"}
    received: Counter[str] = Counter()
    for row in ledger:
        received[row["order_number"]] += row["amount_cents"]
    assert dict(received) == gets
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE order_number = ANY($1)", numbers) == len(ledger)
    # Activated once: one year more, one invoice per order.
    for service in services:
        current = await ingress.store.services.get(service.username)
        assert current is not None and current.expires_on == add_years(service.expires_on, 1), service.username
    invoices = await pool.fetchval("SELECT count(*) FROM invoices WHERE order_number = ANY($1)", numbers)
    assert invoices == ORDERS

    # The same file again: nothing new.
    again = await submit_statement(ingress.client, pool, raw, "cli", wait=timedelta(seconds=60))
    assert again.already and again.counts == done.counts
    assert await pool.fetchval(recorded, import_id) == ENTRIES

    print(
        f"\nFAULT statement of {ENTRIES} entries paying {ORDERS} orders ({expected['applied']} payments, "
        f"{expected['unmatched']} unmatched, {expected['ignored']} no payment): {'; '.join(figures)}; "
        f"import done in {imported:.0f} s, last order activated at {activated:.0f} s "
        f"(orders parked beforehand in {parked:.0f} s); every entry recorded once ({len(rows)}), "
        f"ledger rows {len(ledger)}, orders activated once {ORDERS}, invoices {invoices}"
    )
