"""Bank statements pay orders by themselves (P19), on the real stack: the Temporal dev server,
PostgreSQL, the SMTP sink, the real worker (`build_worker`) on a task queue of this module's own.

A statement in the shape an Italian bank sends it activates the orders it pays, once, however often
it is imported, even twice at once; an unmatched credit waits with its suggestions until ops assign
it, once; entries that are no payment are recorded and never applied; a file that is no statement
is refused with one line and leaves nothing behind; statements generated from real orders (every
spelling, split transfers, partial payments, reversals) pay exactly what they name. Also the CLI,
the inbox and the causale in the emails."""

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client

import starter
from activities.mail import Mailer, render
from activities.store import Store
from client.renewals import Renewals
from client.statements import AssignRefused, StatementRefused, assign_entry, submit_statement, unmatched_entries
from renewals.creditor_reference import causale, creditor_reference
from renewals.emails import email_request
from renewals.records import ServiceRecord
from renewals.statement_imports import INBOX_SCHEDULE_ID, ImportRecord, InboxScan
from renewals.statement_writer import SPELLING_COUNT, ntry, quoted, spell, statement
from renewals.statements import MAX_STATEMENT_BYTES
from renewals.types import Stage
from renewals.views import OrderView
from stack.database import prepare
from stack.postgres import EmbeddedPostgres, free_port
from tests.conftest import POLICY, ROOT, SDI_POLICY, eventually, handle_of, new_service, today, unique, view
from tests.test_database_roles import run_init, server, url  # noqa: F401 - server is a fixture
from tests.test_renewal_workflow import checkout, emails_to, open_cart
from tests.unit.test_payments import order as unit_order
from worker import build_worker, ensure_inbox_schedule
from workflows.statements import StatementInbox

QUEUE = "renewals-p19"
SAMPLE = Path(__file__).parent / "data" / "camt053" / "cbi-2026-03-02.xml"
SAMPLE_ACCOUNT = "IT60X0542811101000000123456"
WAIT = timedelta(seconds=60)


@dataclass
class P19:
    client: Client
    store: Store
    ingress: Renewals

    async def order(self, holder: str = "Mario Rossi", years: int = 1) -> tuple[ServiceRecord, OrderView]:
        """A fresh service's renewal checked out by bank transfer: an order awaiting payment."""
        service = await new_service(self.store, holder_name=holder)
        await open_cart(self.ingress, service.username)
        return service, await checkout(self.ingress, service.username, years=years)

    async def orders(self, *specs: tuple[str, int]) -> list[tuple[ServiceRecord, OrderView]]:
        return list(await asyncio.gather(*(self.order(holder, years) for holder, years in specs)))

    async def submit(self, raw: bytes, **options: Any) -> ImportRecord:
        return await submit_statement(self.client, self.store.pool, raw, "cli", task_queue=QUEUE, wait=WAIT, **options)

    async def stage(self, service: ServiceRecord) -> Stage:
        """The renewal's stage once it has finished (ACTIVATED), or now (still running)."""
        return (await view(self.client, service.username)).stage

    async def activated(self, service: ServiceRecord) -> None:
        result = await asyncio.wait_for(handle_of(self.client, service.username).result(), 30)
        assert result.stage == Stage.ACTIVATED, (service.username, result)

    async def ledger(self, order_number: str) -> list[dict[str, Any]]:
        rows = await self.store.pool.fetch(
            "SELECT transaction_id, amount_cents, status, by_hand FROM payments WHERE order_number = $1"
            " ORDER BY transaction_id",
            order_number,
        )
        return [dict(row) for row in rows]

    async def entries(self, import_id: str) -> list[dict[str, Any]]:
        rows = await self.store.pool.fetch(
            "SELECT id, key, outcome, reason FROM statement_entries WHERE import_id = $1 ORDER BY position",
            import_id,
        )
        return [dict(row) for row in rows]

    async def imports(self) -> int:
        return int(await self.store.pool.fetchval("SELECT count(*) FROM statement_imports"))


@pytest.fixture(scope="module")
async def p19(env, store: Store, mailer: Mailer) -> AsyncIterator[P19]:
    """The real worker on a task queue of its own, and the ingress that starts renewals on it."""
    worker = build_worker(env.client, store, mailer, QUEUE, sdi_policy=SDI_POLICY)
    async with worker:
        yield P19(env.client, store, Renewals(env.client, store, POLICY, QUEUE))


def account() -> str:
    """An account of this test's own: every entry key holds it, so no two tests share an entry."""
    return f"IT00X{uuid_digits(22)}"


def uuid_digits(count: int) -> str:
    return str(int(unique("n").split("-")[1], 16))[:count].rjust(count, "0")


def italian_bank_statement(orders: dict[str, str], iban: str) -> bytes:
    """tests/data/camt053/cbi-2026-03-02.xml on account `iban`, its orders (FE-2026-000123…130)
    replaced by ours in the spelling each entry uses."""
    text = SAMPLE.read_text().replace(SAMPLE_ACCOUNT, iban)
    for old, new in orders.items():
        year, progressive = new[3:7], int(new[8:])
        text = text.replace(creditor_reference(old), creditor_reference(new))
        text = text.replace(f"fe 2026 {int(old[8:])}", f"fe {year} {progressive}")
        text = text.replace(f"ORDINE {int(old[8:])}/2026", f"ORDINE {progressive}/{year}")
        text = text.replace(old, new)
        if old == "FE-2026-000130":  # cut in two lines by the payer's bank
            text = text.replace("ORDINE FE-2026-</Ustrd>", f"ORDINE FE-{year}-</Ustrd>")
            text = text.replace("<Ustrd>000130 GALLO", f"<Ustrd>{new[8:]} GALLO")
    return text.encode()


# ---------------------------------------------------------------------- the Italian bank's statement


async def test_p19_the_italian_bank_statement_activates_what_it_pays_once_and_leaves_the_rest_to_ops(
    p19, mail_sink, caplog
):
    caplog.set_level(logging.INFO, logger="renewals.statements")
    made = await p19.orders(
        ("Mario Rossi", 1),
        ("Anna Neri", 1),
        ("Studio Bianchi", 2),
        ("Luca Conti", 1),
        ("Paola Riva", 2),
        ("Carlo Fermi", 1),
        ("Acme Trading", 1),
        ("Elisabetta Gallo", 1),
        ("Giuseppe Verdi", 1),
    )
    (
        (a, rf),
        (b, text),
        (c, ordine),
        (d, split_1),
        (e, split_2),
        (f, reversed_),
        (g, dollars),
        (h, gallo),
        (v, verdi),
    ) = made
    named = (rf, text, ordine, split_1, split_2, reversed_, dollars, gallo)
    numbers = {f"FE-2026-{n:06d}": o.order_number for n, o in zip(range(123, 131), named, strict=True)}
    raw = italian_bank_statement(numbers, account())

    # The same file twice at once: one import, one set of entries, one payment per order.
    first, second = await asyncio.gather(p19.submit(raw, file_name="cbi.xml"), p19.submit(raw, file_name="cbi.xml"))
    assert first.id == second.id and sorted([first.already, second.already]) == [False, True]
    assert first.state == second.state == "done" and first.counts == second.counts
    done = await p19.submit(raw)
    assert done.already and done.state == "done"
    counts = done.counts
    assert (counts.entries, counts.applied, counts.unmatched, counts.duplicates, counts.ignored) == (9, 5, 1, 0, 3)
    assert done.outcomes.get("applied", 0) == 6, done.outcomes  # entry 4 pays two orders

    for service in (a, b, c, d, e, h):
        await p19.activated(service)
    paid = [(rf, 3050), (text, 3050), (ordine, 6100), (split_1, 3050), (split_2, 6100), (gallo, 3050)]
    for order, cents in paid:
        (row,) = await p19.ledger(order.order_number)
        assert (row["amount_cents"], row["status"], row["by_hand"]) == (cents, "applied", False)
        assert row["transaction_id"].startswith("camt:") and row["transaction_id"].endswith(order.order_number)
    # The reversal and the dollars name orders and pay none; the bank's fee is recorded too.
    for order in (reversed_, dollars, verdi):
        assert await p19.ledger(order.order_number) == []
    for service in (f, g, v):
        assert await p19.stage(service) == Stage.AWAITING_PAYMENT
    entries = await p19.entries(done.id)
    assert [row["outcome"] for row in entries] == ["applied"] * 4 + ["ignored"] * 3 + ["unmatched", "applied"]
    assert "a debit" in entries[4]["reason"] and "a reversal (RvslInd)" in entries[5]["reason"]
    assert "currency USD" in entries[6]["reason"]

    # A re-import changed nothing: still one row per entry and per payment.
    assert len(entries) == 9
    assert (
        await p19.store.pool.fetchval("SELECT count(*) FROM statement_allocations WHERE import_id = $1", done.id) == 6
    )
    logged = [r.getMessage() for r in caplog.records if r.name == "renewals.statements"]
    assert sum(done.short_id in line and "entries 9, applied 5, unmatched 1" in line for line in logged) == 1

    # The unmatched credit suggests Verdi's order first (the amount, the payer's name); ops assign it, once.
    (waiting,) = [u for u in await unmatched_entries(p19.store.pool, 1000) if u.import_id == done.id]
    assert (waiting.amount_cents, waiting.payer) == (3050, "VERDI GIUSEPPE")
    assert waiting.suggestions[0].order_number == verdi.order_number, waiting.suggestions
    assert "holder 'Giuseppe Verdi' like payer 'VERDI GIUSEPPE'" in waiting.suggestions[0].reason
    assert len(waiting.suggestions) <= 3
    assigned = await assign_entry(p19.client, p19.store, waiting.entry, verdi.order_number)
    assert (assigned.status, assigned.amount_cents) == ("applied", 3050)
    await p19.activated(v)
    with pytest.raises(AssignRefused, match=f"entry {waiting.entry} was assigned to {verdi.order_number} by ops"):
        await assign_entry(p19.client, p19.store, waiting.entry, dollars.order_number)
    with pytest.raises(AssignRefused, match="is not a payment .*a reversal"):
        await assign_entry(p19.client, p19.store, entries[5]["id"], reversed_.order_number)
    with pytest.raises(AssignRefused, match="was applied to .* when imported"):
        await assign_entry(p19.client, p19.store, entries[0]["id"], reversed_.order_number)
    (row,) = await p19.ledger(verdi.order_number)
    assert (row["status"], row["by_hand"]) == ("applied", True)

    # The order confirmation quoted the causale beside the IBAN.
    (mail,) = await emails_to(mail_sink, a.username, "come completare il pagamento")
    body = mail.get_payload(decode=True).decode().replace("\r\n", "\n")
    assert f"IBAN: IT60X0542811101000000123456\n  Causale: {causale(rf.order_number)}" in body


# ---------------------------------------------------------------------- entries that are no payment


async def test_p19_debits_reversals_other_currencies_zero_negative_long_and_future_entries_never_pay(p19):
    service, order = await p19.order()
    rf = creditor_reference(order.order_number)
    total = order.total_cents
    tomorrow = today() + timedelta(days=1)
    odd = {
        "debit": ntry("ODD-1", total, strd=(rf,), credit_debit="DBIT"),
        "reversal": ntry("ODD-2", total, strd=(rf,), credit_debit="DBIT", reversal=True),
        "credit reversed": ntry("ODD-3", total, strd=(rf,), reversal=True),
        "dollars": ntry("ODD-4", total, strd=(rf,), currency="USD"),
        "zero": ntry("ODD-5", 0, strd=(rf,)),
        "negative": ntry("ODD-6", -total, strd=(rf,)),
        "long reference": ntry("ODD-7", total, strd=(rf + "X" * 126,)),
        "long text": ntry("ODD-8", total, ustrd=(order.order_number + " " + "x" * 130,)),
        "future": ntry("ODD-9", total, strd=(rf,), booked_on=tomorrow),
    }
    record = await p19.submit(statement(*odd.values(), account=account(), message_id=unique("odd")))
    assert (record.counts.entries, record.counts.ignored, record.counts.applied) == (9, 9, 0), record
    reasons = [row["reason"] for row in await p19.entries(record.id)]
    for said, expected in zip(
        reasons,
        [
            "a debit",
            "a reversal (RvslInd)",
            "a reversal (RvslInd)",
            "currency USD, not EUR",
            "amount is zero",
            "is negative",
            "structured reference of 140 characters, over 35",
            "remittance text of 145 characters, over 140",
            f"booked on {tomorrow}, after today",
        ],
        strict=True,
    ):
        assert said.startswith("not a payment: ") and expected in said, said
    assert await p19.ledger(order.order_number) == []
    assert await p19.stage(service) == Stage.AWAITING_PAYMENT


# ---------------------------------------------------------------------- files that are no statement

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">&lol3;</Document>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>&secret;</BkToCstmrStmt></Document>"""


def bad_files() -> dict[str, tuple[bytes, str]]:
    good = statement(ntry("BAD-1", 3050, ustrd=("FE-2026-000123",)), account=account())
    return {
        "not XML": (b"IBAN;importo;causale\nIT60...;30,50;FE-2026-000123\n", "not well-formed XML"),
        "empty": (b"", "statement is empty"),
        "truncated": (good[: len(good) // 2], "not well-formed XML"),
        "another message": (
            good.replace(b"camt.053.001.02", b"camt.052.001.02"),
            "not a camt.053.001.02 or camt.053.001.08 statement: root element Document in camt.052.001.02",
        ),
        "a payment order": (
            b'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"><CstmrCdtTrfInitn/></Document>',
            "not a camt.053.001.02 or camt.053.001.08 statement",
        ),
        "no header": (good.replace(b"<MsgId>", b"<Nothing>").replace(b"</MsgId>", b"</Nothing>"), "not valid against"),
        "50 MB": (good + b" " * (50 * 1024 * 1024), f"over the {MAX_STATEMENT_BYTES}-byte limit"),
        "billion laughs": (BILLION_LAUGHS, "DOCTYPE: DTDs and entities are refused"),
        "external entity": (EXTERNAL_ENTITY, "DOCTYPE: DTDs and entities are refused"),
    }


async def test_p19_a_file_that_is_no_statement_is_refused_with_one_line_and_nothing_recorded(p19):
    before = await p19.imports()
    for name, (raw, expected) in bad_files().items():
        with pytest.raises(StatementRefused) as refused:
            await p19.submit(raw)
        message = str(refused.value)
        assert expected in message and "\n" not in message and len(message) < 300, (name, message)
    assert await p19.imports() == before


# ---------------------------------------------------------------------- generated from real orders


@dataclass(frozen=True)
class Plan:
    """How each of 2-3 fresh orders is paid: `single` (its number or RF in the text, in spelling
    `spellings[i]`), `structured` (its RF in Strd), `partials` (two entries), `split` (one transfer
    for it and EUR 10 of the next order, the amounts quoted), `unpaid` (only a reversal names it)."""

    kinds: tuple[str, ...]
    spellings: tuple[int, ...]
    years: tuple[int, ...]


KINDS = ["single", "structured", "partials", "split", "unpaid"]
plans = st.builds(
    Plan,
    kinds=st.lists(st.sampled_from(KINDS), min_size=2, max_size=3).map(tuple),
    spellings=st.lists(st.integers(0, SPELLING_COUNT - 1), min_size=3, max_size=3).map(tuple),
    years=st.lists(st.integers(1, 2), min_size=3, max_size=3).map(tuple),
)


def planned(plan: Plan, orders: list[OrderView]) -> tuple[list[str], dict[str, list[int]]]:
    """The entries the plan makes, and the amounts each order should get from them."""
    entries: list[str] = []
    gets: dict[str, list[int]] = {order.order_number: [] for order in orders}
    for index, (order, kind) in enumerate(zip(orders, plan.kinds, strict=True)):
        number, total, how, ref = order.order_number, order.total_cents, plan.spellings[index], f"GEN-{index}"
        if kind == "split" and index + 1 < len(orders):
            other = orders[index + 1].order_number
            lines = (f"{spell(number, how)} {quoted(total, how % 4)}", f"{other} {quoted(1000, 0)}")
            entries.append(ntry(ref, total + 1000, ustrd=lines))
            gets[number].append(total)
            gets[other].append(1000)
        elif kind == "partials":
            entries.append(ntry(ref + "a", 1000, ustrd=(spell(number, how),)))
            entries.append(ntry(ref + "b", total - 1000, ustrd=(f"saldo {spell(number, (how + 1) % SPELLING_COUNT)}",)))
            gets[number] += [1000, total - 1000]
        elif kind == "structured":
            entries.append(ntry(ref, total, strd=(creditor_reference(number),)))
            gets[number].append(total)
        elif kind == "unpaid":
            entries.append(ntry(ref, total, ustrd=(number,), credit_debit="DBIT", reversal=True))
        else:
            entries.append(ntry(ref, total, ustrd=(f"Rinnovo {spell(number, how)}",)))
            gets[number].append(total)
    return entries, gets


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=plans)
async def test_p19_statements_made_from_orders_pay_each_order_what_they_name_once(p19, plan):
    made = await p19.orders(*((f"Cliente {unique()}", plan.years[i]) for i in range(len(plan.kinds))))
    entries, gets = planned(plan, [order for _, order in made])
    raw = statement(*entries, account=account(), message_id=unique("gen"))
    record = await p19.submit(raw)
    assert record.state == "done" and record.counts.entries == len(entries), record
    assert (record.counts.unmatched, record.counts.ignored) == (0, plan.kinds.count("unpaid"))
    for service, order in made:
        ledger = await p19.ledger(order.order_number)
        assert sorted(row["amount_cents"] for row in ledger) == sorted(gets[order.order_number]), (plan, ledger)
        if sum(gets[order.order_number]) >= order.total_cents:
            await p19.activated(service)
        else:
            assert await p19.stage(service) == Stage.AWAITING_PAYMENT
    again = await p19.submit(raw)
    assert again.already and again.counts == record.counts
    assert len(await p19.entries(record.id)) == len(entries)


# ---------------------------------------------------------------------- the CLI


async def test_p19_cli_imports_lists_and_assigns(p19, postgres_url, monkeypatch, capsys, tmp_path):
    service, order = await p19.order(holder="Ottavio Lunghi")
    good = tmp_path / "good.xml"
    good.write_bytes(
        statement(
            ntry("CLI-1", 2000, ustrd=("a gift",), debtor="LUNGHI OTTAVIO"),
            ntry("CLI-2", 5, credit_debit="DBIT"),
            account=account(),
            message_id=unique("cli"),
        )
    )
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<nope/>")
    target = p19.client.service_client.config.target_host
    for name, value in {"DATABASE_URL": postgres_url, "TEMPORAL_ADDRESS": target, "TEMPORAL_TASK_QUEUE": QUEUE}.items():
        monkeypatch.setenv(name, value)

    status = await asyncio.to_thread(starter.main, ["payments", "import", str(good), str(bad)])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert status == 1 and "1 of 2 files refused" in err
    assert lines[0].startswith(f"{good}: statement ") and lines[0].endswith(
        "imported: entries 2, applied 0, unmatched 1, duplicates 0, ignored 1"
    ), lines
    assert lines[1].startswith(f"{bad}: refused: not a camt.053.001.02 or camt.053.001.08 statement"), lines

    assert await asyncio.to_thread(starter.main, ["payments", "unmatched", "--limit", "1000"]) == 0
    waiting = [u for u in json.loads(capsys.readouterr().out) if u["payer"] == "LUNGHI OTTAVIO"]
    (entry,) = waiting
    assert entry["amount_cents"] == 2000 and entry["remittance"] == "a gift" and entry["booked_on"] == "2026-03-02"
    assert entry["suggestions"][0]["order_number"] == order.order_number

    assert await asyncio.to_thread(starter.main, ["payments", "assign", str(entry["entry"]), order.order_number]) == 0
    assigned = json.loads(capsys.readouterr().out)
    assert (assigned["status"], assigned["amount_cents"], assigned["order_number"]) == (
        "partial",
        2000,
        order.order_number,
    )
    again = await asyncio.to_thread(starter.main, ["payments", "assign", str(entry["entry"]), order.order_number])
    assert again == 1 and f"entry {entry['entry']} was assigned to {order.order_number}" in capsys.readouterr().err
    assert [row["amount_cents"] for row in await p19.ledger(order.order_number)] == [2000]


# ---------------------------------------------------------------------- the inbox


async def test_p19_the_inbox_imports_each_file_and_moves_it_with_its_reason(p19, tmp_path):
    service, order = await p19.order()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "today.xml").write_bytes(
        statement(ntry("INBOX-1", order.total_cents, ustrd=(spell(order.order_number, 7),)), account=account())
    )
    (inbox / "broken.xml").write_bytes(b"<Document")
    (inbox / "coming.xml.part").write_bytes(b"half a file")
    scanned = await p19.client.execute_workflow(
        StatementInbox.run,
        InboxScan(directory=str(inbox), settle=timedelta(0)),
        id=unique("inbox"),
        task_queue=QUEUE,
    )
    assert len(scanned.imported) == 1 and scanned.imported[0].startswith("today.xml: statement ")
    assert scanned.refused == ["broken.xml: statement is not well-formed XML: " + scanned.refused[0].split(": ", 2)[2]]
    assert sorted(p.name for p in inbox.iterdir()) == ["coming.xml.part", "done", "failed"]
    assert [p.name for p in (inbox / "done").iterdir()] == ["today.xml"]
    assert sorted(p.name for p in (inbox / "failed").iterdir()) == ["broken.xml", "broken.xml.reason.txt"]
    assert (inbox / "failed" / "broken.xml.reason.txt").read_text().startswith("statement is not well-formed XML")
    await p19.activated(service)

    # The Schedule, where the worker creates the reconciler's, and a second worker brings it to its settings.
    from settings import load_settings

    settings = load_settings(PAYMENTS_INBOX_DIR=str(inbox), PAYMENTS_INBOX_EVERY="2m")
    await ensure_inbox_schedule(p19.client, QUEUE, settings)
    await ensure_inbox_schedule(
        p19.client, QUEUE, settings.model_copy(update={"payments_inbox_every": timedelta(minutes=3)})
    )
    handle = p19.client.get_schedule_handle(INBOX_SCHEDULE_ID)
    try:
        described = await handle.describe()
        assert described.schedule.spec.intervals[0].every == timedelta(minutes=3)
        (scan,) = described.schedule.action.args  # type: ignore[union-attr]
        assert json.loads(scan.data)["directory"] == str(inbox.resolve())
    finally:
        await handle.delete()


async def test_p19_worker_py_imports_what_lands_in_its_inbox_and_counts_it_in_log_and_metrics(
    env, postgres_url, mail_sink, tmp_path
):
    """The production path: `python worker.py` with PAYMENTS_INBOX_DIR creates the Schedule, its run
    imports the file, the import logs its one line of counts and the worker's metrics count them."""
    queue, port, inbox = unique("p19-queue"), free_port(), tmp_path / "inbox"
    inbox.mkdir()
    raw = statement(
        ntry("METRICS-1", 4321, ustrd=("nessun ordine",), debtor="NESSUNO"),
        ntry("METRICS-2", 150, credit_debit="DBIT"),
        account=account(),
        message_id=unique("metrics"),
    )
    (inbox / "statement.xml").write_bytes(raw)
    settings = {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": env.client.namespace,
        "TEMPORAL_TASK_QUEUE": queue,
        "DATABASE_URL": postgres_url,
        "SMTP_HOST": mail_sink.host,
        "SMTP_PORT": str(mail_sink.port),
        "LOG_FORMAT": "json",
        "WORKER_METRICS_ADDRESS": f"127.0.0.1:{port}",
        "RENEWALS_DAILY_AT": "off",
        "PAYMENTS_INBOX_DIR": str(inbox),
        "PAYMENTS_INBOX_EVERY": "1s",
    }
    worker = subprocess.Popen(
        [sys.executable, "worker.py"],
        cwd=ROOT,
        env={**os.environ, **settings},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        async def counted() -> str | None:
            async with httpx.AsyncClient() as http:
                try:
                    text = (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
                except httpx.TransportError:
                    return None
            return text if "renewals_statement_entries" in text else None

        metrics = await eventually(counted, 60, "the worker's statement metrics")
        assert [p.name for p in (inbox / "done").iterdir()] == ["statement.xml"]
    finally:
        await p19_schedule_gone(env.client)
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=60)
    values = {
        (family.name, sample.labels.get("outcome")): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if family.name.startswith("renewals_statement")
    }
    assert values[("renewals_statement_entries", "unmatched")] == 1, values
    assert values[("renewals_statement_entries", "ignored")] == 1, values
    assert values[("renewals_statement_imports", None)] == 1, values
    logged = [json.loads(line) for line in errors.splitlines() if line.startswith("{")]
    (line,) = [
        entry for entry in logged if entry.get("logger") == "renewals.statements" and "imported" in entry["message"]
    ]
    assert line["message"].endswith("imported: entries 2, applied 0, unmatched 1, duplicates 0, ignored 1")
    assert (line["entries"], line["unmatched"], line["ignored"]) == (2, 1, 1)


async def p19_schedule_gone(client: Client) -> None:
    with contextlib.suppress(Exception):
        await client.get_schedule_handle(INBOX_SCHEDULE_ID).delete()


async def test_p19_the_runtime_role_records_statements_and_never_deletes_or_rewrites_them(
    server: EmbeddedPostgres,  # noqa: F811 - the fixture imported above
):
    """migrations/012_statements.sql on the production roles: renewals_app inserts and reads, moves
    an import's state and assigns an unmatched entry once; it cannot delete, and nobody rewrites
    what was received."""
    assert run_init(server).returncode == 0
    await prepare(url(server, "renewals"))
    app = await asyncpg.connect(url(server, "renewals_app"))
    try:
        import_id = "ab" * 32
        await app.execute(
            "INSERT INTO statement_imports (id, raw, source, version, message_id, entries_in_file, read_on)"
            " VALUES ($1, 'x', 'cli', 'camt.053.001.02', 'M', 1, current_date)",
            import_id,
        )
        entry = await app.fetchval(
            "INSERT INTO statement_entries (key, import_id, position, account, amount, currency, credit_debit,"
            " reversal, remittance, detail, outcome, reason) VALUES ('k', $1, 1, 'IT', '1.00', 'EUR', 'CRDT', false,"
            " 'r', '{}', 'unmatched', 'no order named') RETURNING id",
            import_id,
        )
        await app.execute("UPDATE statement_imports SET state = 'done' WHERE id = $1", import_id)
        assign = (
            "UPDATE statement_entries SET outcome = 'assigned', assigned_order = $2, assigned_by = 'ops',"
            " assigned_at = now() WHERE id = $1"
        )
        await app.execute(assign, entry, "FE-2026-000001")
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="assigned, once"):
            await app.execute(assign, entry, "FE-2026-000002")
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="kept as read"):
            await app.execute("UPDATE statement_entries SET reason = 'rewritten' WHERE id = $1", entry)
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="keeps its file"):
            await app.execute("UPDATE statement_imports SET raw = 'y' WHERE id = $1", import_id)
        for statement_ in (
            "DELETE FROM statement_entries",
            "DELETE FROM statement_imports",
            "DELETE FROM statement_allocations",
            "UPDATE statement_allocations SET reason = 'x'",
            "TRUNCATE statement_entries",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(statement_)
    finally:
        await app.close()
    # The owner (anyone running SQL by hand) meets the triggers instead.
    owner = await asyncpg.connect(url(server, "renewals"))
    try:
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="never deleted"):
            await owner.execute("DELETE FROM statement_entries")
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="never truncated|append-only"):
            await owner.execute("TRUNCATE statement_imports CASCADE")
    finally:
        await app.close()


# ---------------------------------------------------------------------- the causale in every email


@pytest.mark.parametrize("template", ["payment_instructions", "reminder", "balance_due", "auto_renew_charge"])
def test_p19_every_email_that_says_how_to_pay_quotes_the_causale_beside_the_iban(template):
    order = unit_order()
    service = ServiceRecord.model_validate(
        {
            "username": "demo",
            "holder_name": "Mario Rossi",
            "holder_email": "mario@example.com",
            "purchased_on": "2025-01-01",
            "expires_on": "2027-01-01",
            "auto_renew": False,
            "storage_quota_mb": 1000,
            "storage_used_mb": 100,
        }
    )
    request = email_request(template, f"k:{template}", service, order, charge_on=datetime.now(UTC).date())
    _, body = render(request)
    assert f"Causale: {causale(order.number)}" in body
    assert "Causale: RF42 2026 0000 01 - FE-2026-000001" in body


# ---------------------------------------------------------------------- the signed route and the back office


async def test_p19_a_signed_post_of_a_statement_imports_it_and_the_back_office_assigns_what_waits(p19):
    """`POST /payments/statements` (signed by the payments back office, its own body bound): 202
    with the import's record, 200 `already` for the same file, 422 in one line for a file that is
    no statement, 401 unsigned; then the dev back office lists the unmatched credit with its
    suggestion and applies it, once."""
    from ingress.http import create_app
    from renewals.signing import signed_headers
    from stack.dev_pages import include as include_dev_pages

    (service, order), (other, unpaid) = await p19.orders(("Anna Verdi", 1), ("Luca Neri", 1))
    iban = account()
    raw = statement(
        ntry(f"{iban[-8:]}-H1", order.total_cents, strd=(creditor_reference(order.order_number),)),
        ntry(f"{iban[-8:]}-H2", unpaid.total_cents, ustrd=("saldo fattura",), debtor="LUCA NERI"),
        account=iban,
        message_id=f"H-{iban[-20:]}",
    )
    app = create_app(p19.ingress, "panel-p19", "payments-p19")
    include_dev_pages(app)

    def signed(body: bytes, secret: str = "payments-p19") -> dict[str, str]:
        return {"Content-Type": "application/xml", **signed_headers(secret, "POST", "/payments/statements", body)}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        answer = await http.post("/payments/statements", content=raw, headers=signed(raw))
        assert answer.status_code == 202, answer.text
        record = answer.json()
        assert record["counts"]["entries"] == 2 and not record["already"]
        again = await http.post("/payments/statements", content=raw, headers=signed(raw))
        assert again.status_code == 200 and again.json()["already"] and again.json()["id"] == record["id"]
        junk = b"<not-a-statement/>"
        refused = await http.post("/payments/statements", content=junk, headers=signed(junk))
        assert refused.status_code == 422 and "\n" not in refused.json()["message"]
        assert (
            await http.post("/payments/statements", content=raw, headers=signed(raw, "panel-p19"))
        ).status_code == 401
        await p19.activated(service)

        waiting = [e for e in await unmatched_entries(p19.store.pool, 500) if e.import_id == record["id"]]
        assert len(waiting) == 1 and unpaid.order_number in [s.order_number for s in waiting[0].suggestions]
        page = await http.get("/ui/dev/pagamenti")
        assert page.status_code == 200 and f'value="{unpaid.order_number}"' in page.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert csrf is not None
        form = {"csrf": csrf[1], "voce": str(waiting[0].entry), "ordine": unpaid.order_number}
        done = await http.post("/ui/dev/estratti/abbina", data=form)
        assert done.status_code == 200 and "abbinata all'ordine" in done.text
        await p19.activated(other)
        twice = await http.post("/ui/dev/estratti/abbina", data=form)
        assert twice.status_code == 409 and "Non abbinata" in twice.text
