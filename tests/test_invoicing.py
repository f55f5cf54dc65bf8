"""Every activation issues exactly one invoice (P17), numbered per Rome year with no gap and no
repeat, in the activation's own transaction; against the real PostgreSQL, worker and SMTP sink.

The store-level tests call `Store.activate` directly, many at once, with crashes (transactions
rolled back after taking a number) among them: no workflow is needed to prove the numbering.
The end-to-end test follows one renewal to its confirmation email, the panel read and the CLI.
"""

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from activities.store import Store
from client.renewals import Renewals
from db.invoices import first_possible_day, invoice_by_number, invoice_of_order, issue_invoice
from ingress.http import create_app
from renewals.billing import BillingData
from renewals.calls import Activate, CreateOrder
from renewals.courtesy_copy import courtesy_pdf
from renewals.dates import rome_today
from renewals.events import AddonAdded, CheckoutSubmitted, DiscountCodeApplied, RenewRequested
from renewals.invoice import schema_problems, sdi_problems
from renewals.pricing import order_lines, quote
from renewals.records import ServiceRecord
from renewals.signing import signed_headers
from renewals.types import Stage
from settings import load_settings
from starter import CliError, read_invoice
from tests.conftest import (
    MailSink,
    company_billing,
    eventually,
    new_service,
    pay,
    person_billing,
    today,
    unique,
    wait_stage,
)
from tests.test_ops_visibility import details

PANEL = "panel-test-secret"


async def awaiting_order(
    store: Store, billing: BillingData | None = None, *, years: int = 1, method: str = "bank_transfer"
) -> tuple[ServiceRecord, str]:
    """A service and an order awaiting payment, written as the workflow's create_order writes them."""
    service = await new_service(store, billing=billing)
    lines = order_lines(await store.services.price_list(), service.addons, [], years)
    now = datetime.now(UTC)
    created = await store.create_order(
        CreateOrder(
            workflow_id=f"renewal-{service.username}",
            run_id=unique("run"),
            username=service.username,
            mode="renew",
            years=years,
            payment_method=method,  # type: ignore[arg-type]
            discount_code=None,
            lines=lines,
            quote=quote(lines, None),
            previous_expires_on=service.expires_on,
            due_by=now + timedelta(days=30),
            ordered_at=now,
        )
    )
    return service, created.order_number


def activate(service: ServiceRecord, order_number: str, registered_at: datetime | None = None) -> Activate:
    return Activate(
        order_number=order_number,
        username=service.username,
        years=1,
        cart_addons=[],
        paid_at=datetime.now(UTC),
        payment_registered_at=registered_at,
    )


async def assert_gapless(store: Store) -> dict[int, int]:
    """Every year's progressives are exactly 1..n, each once: the invariant, over the whole table."""
    rows = await store.pool.fetch("SELECT year, progressive FROM invoices WHERE number IS NOT NULL")
    per_year: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        per_year[row["year"]].append(row["progressive"])
    for year, progressives in per_year.items():
        assert sorted(progressives) == list(range(1, len(progressives) + 1)), f"gap or repeat in {year}"
        counter = await store.pool.fetchval("SELECT last_progressive FROM invoice_counters WHERE year = $1", year)
        assert counter == len(progressives), f"counter of {year} is {counter}, {len(progressives)} invoices"
    return {year: len(p) for year, p in per_year.items()}


class Crash(Exception):
    """A worker dying mid-activation, after the invoice number was taken: the transaction rolls back."""


async def crashed_activation(store: Store, order_number: str) -> None:
    async with store.pool.acquire() as conn:
        with pytest.raises(Crash):
            async with conn.transaction():
                await conn.execute(
                    "UPDATE orders SET status = 'paid', paid_at = now(), new_expires_on = previous_expires_on + 365"
                    " WHERE order_number = $1",
                    order_number,
                )
                issued = await issue_invoice(conn, order_number, seller=store.seller, registered_at=datetime.now(UTC))
                assert issued.number is not None
                await asyncio.sleep(0.01)  # hold the year's row a moment, as a slow activation would
                raise Crash


async def test_p17_concurrent_activations_are_numbered_without_gap_or_repeat(store):
    renewals = int(os.environ.get("INVOICE_CONCURRENT_ACTIVATIONS", "60"))
    orders = [await awaiting_order(store, company_billing() if n % 2 else person_billing()) for n in range(renewals)]
    doomed = [await awaiting_order(store, company_billing()) for _ in range(6)]
    started = time.monotonic()
    results = await asyncio.gather(
        *(store.activate(activate(s, o)) for s, o in orders),
        # The same order activated twice at once (a retried activity racing the first attempt).
        *(store.activate(activate(s, o)) for s, o in orders[:10]),
        *(crashed_activation(store, o) for _, o in doomed),
    )
    elapsed = time.monotonic() - started
    activations = results[:renewals]
    numbers = [a.invoice_number for a in activations]
    assert all(numbers) and len(set(numbers)) == renewals, "one number per order, none repeated"
    assert [a.invoice_number for a in results[renewals : renewals + 10]] == numbers[:10], "a retry gets the same one"
    # The crashed activations gave their numbers back: the table is gapless; their orders then
    # activate for real and take the next numbers.
    await assert_gapless(store)
    later = await asyncio.gather(*(store.activate(activate(s, o)) for s, o in doomed))
    assert all(a.invoice_state == "issued" for a in later)
    counts = await assert_gapless(store)
    for _, order_number in orders:
        invoice = await invoice_of_order(store.pool, order_number)
        assert invoice is not None and invoice.xml is not None and invoice.state == "issued"
        xml = invoice.xml.encode()
        assert schema_problems(xml) == [] and sdi_problems(xml) == []
    print(
        f"\nINVOICES {renewals} concurrent activations (+10 repeated, 6 crashed) through a pool of "
        f"{store.pool.get_max_size()} connections in {elapsed:.2f} s; invoices per year {counts}"
    )


async def test_p17_invoice_is_dated_the_rome_day_the_payment_was_registered(store):
    # 23:30 UTC on 31 December is already 1 January in Rome: the invoice is of the new year.
    registered_on = rome_today(datetime(2025, 12, 31, 23, 30, tzinfo=UTC))
    assert first_possible_day(registered_on, ordered_on=date(2025, 12, 20), today=date(2026, 1, 5)) == date(2026, 1, 1)
    # Never before its order (a back office date of another year), never after today.
    assert first_possible_day(date(2001, 1, 1), ordered_on=date(2026, 3, 2), today=date(2026, 3, 5)) == date(2026, 3, 2)
    assert first_possible_day(date(2026, 3, 9), ordered_on=date(2026, 3, 2), today=date(2026, 3, 5)) == date(2026, 3, 5)
    # Registered yesterday for an order made last week: yesterday, unless an invoice numbered before
    # it is dated later (P17: dates follow numbers within a year).
    service, order_number = await awaiting_order(store, company_billing())
    await store.pool.execute(
        "UPDATE orders SET created_at = now() - interval '7 days' WHERE order_number = $1", order_number
    )
    yesterday = datetime.now(UTC) - timedelta(days=1)
    last = await store.pool.fetchval(
        "SELECT issued_on FROM invoices WHERE year = $1 ORDER BY progressive DESC LIMIT 1", rome_today(yesterday).year
    )
    activation = await store.activate(activate(service, order_number, yesterday))
    invoice = await invoice_by_number(store.pool, activation.invoice_number or "")
    assert invoice is not None
    assert invoice.issued_on == max(rome_today(yesterday), last or rome_today(yesterday))
    assert activation.invoice_number == f"FT-{invoice.year}-{invoice.progressive:06d}"
    assert f"<Data>{invoice.issued_on.isoformat()}</Data>" in (invoice.xml or "")  # type: ignore[union-attr]
    # A registration dated in the future (a clock ahead) makes an invoice of today, never later.
    service, order_number = await awaiting_order(store, company_billing())
    activation = await store.activate(activate(service, order_number, datetime.now(UTC) + timedelta(days=400)))
    invoice = await invoice_by_number(store.pool, activation.invoice_number or "")
    assert invoice is not None and invoice.issued_on == today()
    # Without payment_registered_at (a workflow recorded before it), paid_at dates it.
    service, order_number = await awaiting_order(store, person_billing())
    request = activate(service, order_number)
    activation = await store.activate(request)
    invoice = await invoice_by_number(store.pool, activation.invoice_number or "")
    assert invoice is not None and invoice.issued_on == rome_today(request.paid_at)
    await assert_gapless(store)


async def test_p17_activation_without_billing_data_records_it_for_ops_and_takes_no_number(store):
    before = await store.pool.fetch("SELECT year, last_progressive FROM invoice_counters")
    service, order_number = await awaiting_order(store, None)
    activation = await store.activate(activate(service, order_number))
    assert activation.new_expires_on > service.expires_on  # the activation itself went through
    assert (activation.invoice_number, activation.invoice_state) == (None, "missing_billing_data")
    invoice = await invoice_of_order(store.pool, order_number)
    assert invoice is not None and (invoice.state, invoice.number, invoice.xml) == ("missing_billing_data", None, None)
    assert invoice.note == f"service {service.username} has no billing data: no invoice issued"
    events = await store.pool.fetch("SELECT event FROM renewal_events WHERE order_number = $1", order_number)
    assert "invoice_missing_billing_data" in [e["event"] for e in events]
    assert await store.pool.fetch("SELECT year, last_progressive FROM invoice_counters") == before
    # Activated again (a retry): the same answer, still no number.
    again = await store.activate(activate(service, order_number))
    assert (again.invoice_number, again.invoice_state) == (None, "missing_billing_data")


async def test_p17_ops_issue_the_missing_invoice_once_billing_data_is_imported(store, postgres_url):
    service, order_number = await awaiting_order(store, None)
    request = activate(service, order_number)
    assert (await store.activate(request)).invoice_state == "missing_billing_data"
    settings = load_settings(DATABASE_URL=postgres_url)
    with pytest.raises(CliError, match=f"order {order_number} has no invoice: missing_billing_data"):
        await read_invoice(settings, order_number)
    with pytest.raises(CliError, match="the service .* has no billing data|has no invoice: missing_billing_data"):
        await read_invoice(settings, order_number, issue=True)  # still none: nothing changes
    await store.services.upsert([service.model_copy(update={"billing": company_billing()})])
    xml = await read_invoice(settings, order_number, issue=True)
    invoice = await invoice_of_order(store.pool, order_number)
    assert invoice is not None and invoice.state == "issued" and invoice.xml == xml
    assert invoice.issued_on == rome_today(request.paid_at)  # no payment in the ledger: the activation's time
    assert await read_invoice(settings, order_number, issue=True) == xml  # issued once, read back after
    await assert_gapless(store)
    unpaid = (await awaiting_order(store, company_billing()))[1]
    with pytest.raises(CliError, match=f"order {unpaid} is awaiting_payment: only a paid order is invoiced"):
        await read_invoice(settings, unpaid, issue=True)


async def test_p17_billing_data_is_stored_by_import_and_read_back(store):
    service = await new_service(store, billing=person_billing())
    read = await store.services.get(service.username)
    assert read is not None and read.billing == person_billing()
    await store.services.upsert([service.model_copy(update={"billing": None})])
    read = await store.services.get(service.username)
    assert read is not None and read.billing is None


@pytest.fixture(scope="module")
async def http(ingress: Renewals) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(ingress, PANEL, "payments-test-secret"))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def get(http: httpx.AsyncClient, path: str, secret: str = PANEL) -> httpx.Response:
    return await http.get(path, headers=signed_headers(secret, "GET", path))


async def test_p17_paid_renewal_invoice_is_emailed_readable_by_panel_and_cli(
    env, store, ingress, mail_sink: MailSink, http, postgres_url
):
    service = await new_service(store, billing=person_billing(pec=None, recipient_code="0000000"))
    user = service.username
    await ingress.panel(RenewRequested(type="renew_requested", username=user))
    await ingress.panel(AddonAdded(type="addon_added", username=user, addon="extra_storage", quantity=2))
    await ingress.panel(DiscountCodeApplied(type="discount_code_applied", username=user, code="PARTNER10"))
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=user, payment_method="paypal", years=3)
    )
    await pay(ingress, order.order_number, order.total_cents, method="paypal")
    activated = await wait_stage(env.client, user, Stage.ACTIVATED)
    invoice = await invoice_of_order(store.pool, order.order_number)
    assert invoice is not None and invoice.number is not None and invoice.xml is not None
    assert invoice.total_cents == order.total_cents
    # The renewal names its invoice: in its view (GET /panel/renewals) and in the current details.
    assert activated.order is not None and activated.order.invoice == invoice.number
    assert f"**Invoice:** {invoice.number}" in await details(env.client, user)
    assert invoice.file_name == f"IT{load_settings().seller_vat}_{invoice.file_name[-9:-4]}.xml"
    for expected in (
        "<ModalitaPagamento>MP08</ModalitaPagamento>",
        "<Nome>Lucia</Nome>",
        f"<IdDocumento>{order.order_number}</IdDocumento>",
        "<TipoCessionePrestazione>SC</TipoCessionePrestazione>",
        f"<DataFinePeriodo>{(await store.services.get(user)).expires_on.isoformat()}</DataFinePeriodo>",  # type: ignore[union-attr]
    ):
        assert expected in invoice.xml

    # The confirmation email carries it, named as SdI names the file.
    def confirmation():
        found = [m for m in mail_sink.to(f"{user}@example.com") if "Rinnovo completato" in str(m["Subject"])]
        return found[0] if found else None

    mail = await eventually(confirmation, what="the confirmation email")
    # Beside the XML, the courtesy copy as a PDF built from it (P18).
    pdf, attachment = [part for part in mail.walk() if part.get_filename()]
    assert attachment.get_filename() == invoice.file_name
    assert attachment.get_content_type() == "application/xml"
    assert attachment.get_payload(decode=True) == invoice.xml.encode()
    assert (pdf.get_filename(), pdf.get_content_type()) == (invoice.file_name[:-4] + ".pdf", "application/pdf")
    assert pdf.get_payload(decode=True) == courtesy_pdf(invoice.xml.encode())
    [text] = [part for part in mail.walk() if part.get_content_type() == "text/plain" and not part.get_filename()]
    assert (
        f"fattura elettronica {invoice.number} (PDF) e il suo file XML ({invoice.file_name})"
        in text.get_payload(decode=True).decode()
    )

    # The panel reads it, signed like every read.
    response = await get(http, f"/panel/invoices/{invoice.number}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml"
    assert response.headers["content-disposition"] == f'attachment; filename="{invoice.file_name}"'
    assert response.content == invoice.xml.encode()
    assert (await get(http, f"/panel/invoices/{invoice.number}", secret="wrong-secret")).status_code == 401
    missing = await get(http, "/panel/invoices/FT-1999-000001")
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not_found", "message": "no invoice numbered 'FT-1999-000001'"},
    )

    # And the CLI, by invoice number or by order number.
    settings = load_settings(DATABASE_URL=postgres_url)
    assert await read_invoice(settings, invoice.number) == invoice.xml
    assert await read_invoice(settings, order.order_number) == invoice.xml
    with pytest.raises(CliError, match="no invoice numbered 'FT-1999-000001'"):
        await read_invoice(settings, "FT-1999-000001")
