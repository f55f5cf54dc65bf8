"""P18 on the real stack: every invoice reaches SdI. The local SdI (stack/sdi.py, on loopback) takes
the files over SDICoop and calls back the ingress's `POST /sdi/TrasmissioneFatture` with notifications
it signs; the worker, the Temporal dev server, PostgreSQL and the SMTP sink are conftest's.

Each test pays a renewal for a buyer of its own name, so the local SdI's rules (answer MC, NS, ...)
touch only that test's invoice.
"""

import asyncio
import base64
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from client.deliveries import Deliveries, DeliveryRefused
from db import sdi as table
from db.invoices import invoice_by_number, invoice_of_order
from renewals import delivery_id
from renewals.delivery import DeliveryView
from renewals.events import CheckoutSubmitted, RenewRequested
from renewals.sdicoop import TYPES_NS, read_notification
from renewals.signing import signed_headers
from renewals.types import Stage
from stack.sdi import ensure_certificate, notification_xml, sign_notification
from tests.conftest import (
    SDI_PANEL_SECRET,
    SDI_POLICY,
    TASK_QUEUE,
    LocalSdi,
    MailSink,
    company_billing,
    eventually,
    new_service,
    pay,
    wait_stage,
)
from workflows.invoice import InvoiceDelivery

# An invoice rejected (NS), louder on day 3, corrected and resent, delivered (RC): recorded from
# test_p18_ns_..._keeps_number_and_date with RENEWALS_RECORD_HISTORIES=1; tests/test_replay.py
# replays it with every other recorded history.
RECORDED = Path(__file__).parent / "histories" / "invoice" / "rejected_resent_delivered.json"


def buyer() -> str:
    return f"Cliente {uuid.uuid4().hex[:12]} S.r.l."


async def paid_renewal(env: Any, store: Any, ingress: Any, name: str, **billing: Any) -> tuple[str, str, str]:
    """A renewal of a service billed to `name`, paid in full: (username, order, invoice number)."""
    service = await new_service(store, billing=company_billing(company_name=name, **billing))
    user = service.username
    await ingress.panel(RenewRequested(type="renew_requested", username=user))
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=user, payment_method="bank_transfer", years=1)
    )
    await pay(ingress, order.order_number, order.total_cents)
    await wait_stage(env.client, user, Stage.ACTIVATED)
    invoice = await invoice_of_order(store.pool, order.order_number)
    assert invoice is not None and invoice.number is not None
    return user, order.order_number, invoice.number


def delivery(env: Any, number: str) -> WorkflowHandle[Any, DeliveryView]:
    return env.client.get_workflow_handle(delivery_id(number), result_type=DeliveryView)


async def state_of(env: Any, number: str, *states: str, timeout: float = 30.0) -> DeliveryView:
    async def reached() -> DeliveryView | None:
        view: DeliveryView = await delivery(env, number).query("view", result_type=DeliveryView)
        return view if view.state in states else None

    found: DeliveryView = await eventually(reached, timeout, f"{number}'s delivery to be {' or '.join(states)}")
    return found


async def listed(env: Any, query: str) -> list[Any]:
    return [execution async for execution in env.client.list_workflows(query)]


async def receipts(sdi: LocalSdi, number: str, secret: str = SDI_PANEL_SECRET) -> httpx.Response:
    path = f"/panel/invoices/{number}/receipts"
    headers = signed_headers(secret, "GET", path)
    async with httpx.AsyncClient(base_url=sdi.ingress_url) as client:
        return await client.get(path, headers=headers)


def deliveries(env: Any, store: Any) -> Deliveries:
    return Deliveries(env.client, store.pool, TASK_QUEUE, SDI_POLICY)


async def test_p18_rc_delivered_once_with_its_signed_receipt_kept(env, store, ingress, sdi: LocalSdi):
    user, order_number, number = await paid_renewal(env, store, ingress, buyer())
    result = await asyncio.wait_for(delivery(env, number).result(), 30)
    assert (result.state, result.alarm, result.attempts) == ("delivered", False, 1)
    invoice = await invoice_by_number(store.pool, number)
    assert invoice is not None and invoice.state == "delivered"
    [sent] = [r for r in sdi.received(number) if r["sdi_id"]]
    assert sent["file_name"] == invoice.file_name

    # The receipt, as SdI signed it: the panel reads it (signed), and it still verifies.
    response = await receipts(sdi, number)
    assert response.status_code == 200, response.text
    record = response.json()
    assert (record["state"], record["order_number"]) == ("delivered", order_number)
    [transmission] = record["transmissions"]
    assert (transmission["state"], transmission["sdi_id"]) == ("accepted", sent["sdi_id"])
    [receipt] = record["receipts"]
    assert receipt["kind"] == "RC"
    notification = read_notification(base64.b64decode(receipt["file"]), sdi.certificate)
    assert (notification.kind, notification.file_name, notification.sdi_id) == ("RC", invoice.file_name, sent["sdi_id"])
    assert (await receipts(sdi, number, secret="another-secret-entirely")).status_code == 401
    assert (await receipts(sdi, "FT-1999-000001")).status_code == 404

    # Ops find it by number, order or state.
    query = f"InvoiceNumber = '{number}' AND RenewalOrder = '{order_number}' AND SdiState = 'delivered'"
    await eventually(lambda: listed(env, query), 20, "the delivery in the visibility store")
    assert (await deliveries(env, store).record(number))["delivery"]["state"] == "delivered"


async def test_p18_mc_holder_gets_the_courtesy_copy_and_it_is_never_resent(
    env, store, ingress, sdi: LocalSdi, mail_sink: MailSink
):
    name = buyer()
    sdi.rule(name, "MC")
    user, _, number = await paid_renewal(env, store, ingress, name)
    result = await asyncio.wait_for(delivery(env, number).result(), 30)
    assert result.state == "not_delivered"
    invoice = await invoice_by_number(store.pool, number)
    assert invoice is not None and invoice.state == "not_delivered" and invoice.xml is not None

    def told() -> Any:
        found = [m for m in mail_sink.to(f"{user}@example.com") if "area riservata" in str(m["Subject"])]
        return found

    [mail] = await eventually(told, what="the MC email")
    assert number in str(mail["Subject"])
    pdf, xml = [part for part in mail.walk() if part.get_filename()]
    assert pdf.get_content_type() == "application/pdf" and pdf.get_payload(decode=True).startswith(b"%PDF-")
    assert xml.get_payload(decode=True) == invoice.xml.encode()
    assert len([r for r in sdi.received(number) if r["sdi_id"]]) == 1  # never resent


async def test_p18_ns_rejected_louder_on_day_3_then_corrected_resend_keeps_number_and_date(
    env, store, ingress, sdi: LocalSdi
):
    name = buyer()
    sdi.rule(name, "NS", errors=[{"code": "00305", "description": "1.4.1.1.2 <IdCodice> non valido"}], times=1)
    user, _, number = await paid_renewal(env, store, ingress, name)
    rejected = await state_of(env, number, "rejected")
    assert rejected.notices[-1].errors == ["00305 1.4.1.1.2 <IdCodice> non valido"]
    invoice = await invoice_by_number(store.pool, number)
    assert invoice is not None and invoice.state == "rejected" and "00305" in (invoice.note or "")
    first_file, first_xml = invoice.file_name, invoice.xml
    assert first_file is not None and first_xml is not None

    await env.fast_forward(delivery(env, number), timedelta(days=3, minutes=1))
    await state_of(env, number, "rejected_urgent")
    await eventually(
        lambda: listed(env, f"InvoiceNumber = '{number}' AND SdiState = 'rejected_urgent'"), 20, "the louder alert"
    )
    assert number in [d["number"] for d in (await deliveries(env, store).attention())["deliveries"]]

    # Ops correct the holder's data and resend: the same number and date, a new file.
    service = await store.services.get(user)
    corrected = company_billing(
        company_name=name, address={**company_billing().address.model_dump(), "street": "Via Corretta 2"}
    )
    await store.services.upsert([service.model_copy(update={"billing": corrected})])
    await deliveries(env, store).resend(number, late=False)
    result = await asyncio.wait_for(delivery(env, number).result(), 30)
    assert result.state == "delivered"
    invoice = await invoice_by_number(store.pool, number)
    assert invoice is not None and invoice.xml is not None and invoice.file_name != first_file
    assert "Via Corretta 2" in invoice.xml and "Via Corretta 2" not in first_xml
    for tag in ("Numero", "Data"):
        assert first_xml.split(f"<{tag}>")[1].split("<")[0] == invoice.xml.split(f"<{tag}>")[1].split("<")[0]
    sent = [r for r in sdi.received(number) if r["sdi_id"]]
    assert sorted(r["file_name"] for r in sent) == sorted([first_file, invoice.file_name])  # each file once
    assert [t["state"] for t in (await receipts(sdi, number)).json()["transmissions"]] == ["accepted", "accepted"]

    # The whole path (send, NS, day 3, resend, RC) replays on today's code; kept to prove later changes.
    history = await delivery(env, number).fetch_history()
    await Replayer(workflows=[InvoiceDelivery], data_converter=pydantic_data_converter).replay_workflow(history)
    if os.environ.get("RENEWALS_RECORD_HISTORIES") == "1":
        RECORDED.write_text(history.to_json())


async def test_p18_ns_not_resent_in_five_days_ops_decide(env, store, ingress, sdi: LocalSdi):
    name = buyer()
    sdi.rule(name, "NS", errors=[{"code": "00200", "description": "File non conforme al formato"}], times=1)
    _, _, number = await paid_renewal(env, store, ingress, name)
    await state_of(env, number, "rejected")
    await env.fast_forward(delivery(env, number), timedelta(days=5, minutes=1))
    await state_of(env, number, "rejected_ops")
    with pytest.raises(DeliveryRefused, match="5 days to resend .* have passed"):
        await deliveries(env, store).resend(number, late=False)
    closed = await deliveries(env, store).close(number, "credit note issued by accounting")
    assert closed.state == "closed"
    with pytest.raises(DeliveryRefused, match="no delivery in progress"):
        await deliveries(env, store).resend(number, late=True)


async def test_p18_sdi_unavailable_then_back_delivers_once(env, store, ingress, sdi: LocalSdi):
    sdi.control(available=False)
    try:
        _, _, number = await paid_renewal(env, store, ingress, buyer())

        async def refused_twice() -> bool:
            [transmission] = await table.transmissions_of(store.pool, number)
            return transmission["attempts"] >= 2 and "EI02" in (transmission["last_error"] or "")

        await eventually(refused_twice, 30, "SdI to answer EI02 twice")
        assert (await delivery(env, number).query("view", result_type=DeliveryView)).state == "sending"
    finally:
        sdi.control(available=True)
    result = await asyncio.wait_for(delivery(env, number).result(), 60)
    assert result.state == "delivered"
    assert len([r for r in sdi.received(number) if r["sdi_id"]]) == 1


async def test_p18_callback_before_the_answer_is_stored_settles_it(env, store, ingress, sdi: LocalSdi):
    sdi.control(answer_delay=3, notify_delay=0)
    try:
        _, _, number = await paid_renewal(env, store, ingress, buyer())
        result = await asyncio.wait_for(delivery(env, number).result(), 30)
    finally:
        sdi.control(answer_delay=0, notify_delay=0)
    assert result.state == "delivered"
    assert len([r for r in sdi.received(number) if r["sdi_id"]]) == 1
    [transmission] = await table.transmissions_of(store.pool, number)
    assert (transmission["state"], transmission["attempts"]) == ("accepted", 1)


async def test_p18_no_outcome_is_overdue_then_the_12_day_alarm(env, store, ingress, sdi: LocalSdi):
    from stack.postgres import free_port

    sdi.control(callback_url=f"http://127.0.0.1:{free_port()}/nobody")  # SdI's word never arrives
    try:
        _, _, number = await paid_renewal(env, store, ingress, buyer())
        await state_of(env, number, "sent")
        await env.fast_forward(delivery(env, number), timedelta(days=5, minutes=1))
        overdue = await state_of(env, number, "overdue")
        assert not overdue.alarm
        await env.fast_forward(delivery(env, number), timedelta(days=7))
        alarm = await eventually(
            lambda: listed(env, f"InvoiceNumber = '{number}' AND SdiAlarm = true"), 20, "the 12-day alarm"
        )
        assert alarm and (await delivery(env, number).query("view", result_type=DeliveryView)).alarm
        assert number in [d["number"] for d in (await deliveries(env, store).attention())["deliveries"]]
    finally:
        sdi.control(callback_url=sdi.callback_url)


def soap_request(element: str, sdi_id: str, name: str, file: bytes) -> bytes:
    """A SOAP 1.1 call to TrasmissioneFatture as SdI makes it (document/literal, fileSdI_Type)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:types="{TYPES_NS}">'
        f"<soapenv:Body><types:{element}><IdentificativoSdI>{sdi_id}</IdentificativoSdI><NomeFile>{name}</NomeFile>"
        f"<File>{base64.b64encode(file).decode()}</File></types:{element}></soapenv:Body></soapenv:Envelope>"
    ).encode()


async def post_callback(sdi: LocalSdi, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(sdi.callback_url, content=body, headers={"Content-Type": "text/xml; charset=utf-8"})


async def test_p18_forged_unknown_invalid_and_repeated_notifications_change_nothing(
    env, store, ingress, sdi: LocalSdi, tmp_path
):
    _, _, number = await paid_renewal(env, store, ingress, buyer())
    assert (await asyncio.wait_for(delivery(env, number).result(), 30)).state == "delivered"
    [receipt] = (await receipts(sdi, number)).json()["receipts"]
    original, sdi_id, file_name = base64.b64decode(receipt["file"]), receipt["sdi_id"], receipt["file_name"]
    other_key, other_cert = (path.read_bytes() for path in ensure_certificate(tmp_path / "not-sdi"))
    scarto = notification_xml(
        "NS",
        sdi_id=sdi_id,
        file_name=file_name,
        received_at="2026-12-01T10:00:00.000+01:00",
        message_id="990001",
        errors=[{"code": "00200", "description": "File non conforme al formato"}],
    )
    unknown = scarto.replace(f"<IdentificativoSdI>{sdi_id}<".encode(), b"<IdentificativoSdI>999999999999<")
    no_message_id = scarto.replace(b"<MessageId>990001</MessageId>", b"")
    tampered = original.replace(b"</MessageId>", b"0</MessageId>")
    name = file_name[:-4] + "_NS_001.xml"
    attempts = {
        "signed by another key": (
            soap_request("notificaScarto", sdi_id, name, sign_notification(scarto, other_key, other_cert)),
            "signature",
        ),
        "altered after signing": (soap_request("ricevutaConsegna", sdi_id, name, tampered), "signature"),
        "unknown IdentificativoSdI": (
            soap_request("notificaScarto", "999999999999", name, sign_notification(unknown, sdi.key, sdi.certificate)),
            "no invoice of ours",
        ),
        "not the schema": (
            soap_request("notificaScarto", sdi_id, name, sign_notification(no_message_id, sdi.key, sdi.certificate)),
            "MessageId",
        ),
        "not SOAP": (b"<hello/>", "SOAP"),
    }
    refused_before = len(await table.refused_callbacks(store.pool, limit=10_000))
    for what, (body, reason) in attempts.items():
        response = await post_callback(sdi, body)
        assert response.status_code == 500, what
        assert b"Fault>" in response.content and reason.encode() in response.content, (what, response.text)
    refused = await table.refused_callbacks(store.pool, limit=10_000)
    assert len(refused) == refused_before + len(attempts)

    # SdI's own RC again, byte for byte: acknowledged, recorded, nothing changes.
    again = await post_callback(sdi, soap_request("ricevutaConsegna", sdi_id, receipt["notification_name"], original))
    assert again.status_code == 200, again.text
    assert "repeated RC" in (await table.refused_callbacks(store.pool, limit=1))[0]["reason"]
    record = (await receipts(sdi, number)).json()
    assert record["state"] == "delivered" and len(record["receipts"]) == 1
    view = await delivery(env, number).query("view", result_type=DeliveryView)
    assert view.state == "delivered" and [n.kind for n in view.notices] == ["RC"]
