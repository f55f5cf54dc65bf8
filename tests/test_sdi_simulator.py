"""The local SdI (stack/sdi.py) against the project's SDICoop pieces (P18): invoices built by
`build_invoice` go through `RiceviFileClient`, the simulator checks them as SdI does and calls a
small TrasmissioneFatture endpoint back with signed notifications that `read_notification`
verifies against the simulator's certificate; its control API steers outcomes and availability."""

import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from activities.sdi_client import RiceviFileClient, SdiInDoubt, SdiUnreachable
from renewals.invoice import Invoice, build_invoice
from renewals.sdicoop import (
    DS_NS,
    Callback,
    CallbackRefused,
    Notification,
    NotificationRefused,
    callback_answer,
    read_callback,
    read_notification,
    soap_fault,
)
from stack.postgres import free_port
from stack.sdi import SdiSimulator, ensure_certificate, sign_notification, start_sdi
from tests.conftest import company_billing, eventually
from tests.unit.test_invoice import SELLER, make_order

DEADLINE = 10.0


@dataclass
class Receiver:
    """The transmitter's TrasmissioneFatture endpoint: reads each callback with `read_callback`."""

    url: str = ""
    callbacks: list[Callback] = field(default_factory=list)
    failures_left: int = 0  # answer 503 to this many requests first (the endpoint "down")
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, body: bytes, content_type: str) -> tuple[int, bytes]:
        with self.lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                return 503, soap_fault("down for maintenance", server=True)
        try:
            callback = read_callback(body, content_type)
        except CallbackRefused as error:
            return 500, soap_fault(str(error))
        with self.lock:
            self.callbacks.append(callback)
        return 200, callback_answer()

    async def callback_for(self, sdi_id: str, file_name: str) -> Callback:
        """The first callback about `file_name` under `sdi_id` (simulators in other directories
        count their ids from 1 too), waited for with a deadline."""
        stem = file_name.removesuffix(".xml") + "_"

        def found() -> Callback | None:
            with self.lock:
                return next(
                    (c for c in self.callbacks if c.sdi_id == sdi_id and c.notification_name.startswith(stem)), None
                )

        callback: Callback = await eventually(found, DEADLINE, f"a callback for IdentificativoSdI {sdi_id}")
        return callback


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, answer = state.handle(body, self.headers.get("Content-Type", ""))
            self.send_response(status)
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/sdi/TrasmissioneFatture"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def sdi(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[SdiSimulator]:
    simulator = start_sdi(tmp_path_factory.mktemp("sdi"), "127.0.0.1", free_port(), receiver.url)
    yield simulator
    simulator.stop()


@pytest.fixture
async def client(sdi: SdiSimulator) -> AsyncIterator[RiceviFileClient]:
    sending = RiceviFileClient(sdi.url, timeout=5.0)
    yield sending
    await sending.aclose()


_serial = itertools.count(1)


def invoice(buyer: str, *, progressive: int | None = None, **billing: Any) -> Invoice:
    """A valid invoice to `buyer` with a file name and number never used before in this module."""
    file_id = next(_serial)
    return build_invoice(
        make_order(),
        company_billing(company_name=buyer, **billing),
        SELLER,
        year=2026,
        progressive=progressive or file_id,
        issued_on=date(2026, 11, 27),
        file_id=file_id,
    )


def buyer() -> str:
    return f"Cliente {next(_serial)} S.r.l."


def control(sdi: SdiSimulator, path: str = "", payload: Any = None, method: str = "POST") -> Any:
    response = httpx.request(method, sdi.control_url + path, json=payload, timeout=5)
    response.raise_for_status()
    return response.json()


async def outcome(
    sdi: SdiSimulator, receiver: Receiver, sdi_id: str | None, file_name: str
) -> tuple[Callback, Notification]:
    """The callback SdI made about `file_name`, and its notification as `read_notification` reads it."""
    assert sdi_id is not None and sdi_id.isdigit() and len(sdi_id) <= 12
    callback = await receiver.callback_for(sdi_id, file_name)
    return callback, read_notification(callback.file, sdi.cert_path.read_bytes())


async def test_p18_delivered_file_gets_an_rc_signed_by_sdi(sdi, receiver, client) -> None:
    to = buyer()
    sent = invoice(to)
    acceptance = await client.send(sent.file_name, sent.xml)
    assert acceptance.error is None and acceptance.received_at is not None
    assert acceptance.received_at.tzinfo is not None
    callback, notification = await outcome(sdi, receiver, acceptance.sdi_id, sent.file_name)
    assert callback.operation == "RicevutaConsegna"
    assert callback.notification_name == sent.file_name.removesuffix(".xml") + "_RC_001.xml"
    assert (notification.kind, notification.sdi_id, notification.file_name) == ("RC", acceptance.sdi_id, sent.file_name)
    assert notification.received_at == acceptance.received_at
    assert notification.delivered_at is not None and notification.delivered_at >= acceptance.received_at
    received = [entry for entry in control(sdi, "/received", method="GET") if entry["file_name"] == sent.file_name]
    assert [(entry["sdi_id"], entry["outcome"], entry["buyer"], entry["invoice_number"]) for entry in received] == [
        (acceptance.sdi_id, "RC", to, sent.number)
    ]
    sent_back = [
        entry for entry in control(sdi, "/notifications", method="GET") if entry["sdi_id"] == acceptance.sdi_id
    ]
    assert [(entry["name"], entry["status"]) for entry in sent_back] == [(callback.notification_name, "delivered")]


async def test_p18_notification_forged_with_another_key_is_refused(sdi, receiver, client, tmp_path: Path) -> None:
    sent = invoice(buyer())
    acceptance = await client.send(sent.file_name, sent.xml)
    callback, _ = await outcome(sdi, receiver, acceptance.sdi_id, sent.file_name)
    root = etree.fromstring(callback.file)
    signature = root.find(f"{{{DS_NS}}}Signature")
    assert signature is not None
    root.remove(signature)
    key_path, cert_path = ensure_certificate(tmp_path)  # another simulator's key: the same content, another signer
    forged = sign_notification(etree.tostring(root), key_path.read_bytes(), cert_path.read_bytes())
    with pytest.raises(NotificationRefused, match="does not verify against the configured SdI certificate"):
        read_notification(forged, sdi.cert_path.read_bytes())


async def test_p18_a_file_name_already_received_is_rejected_00002(sdi, receiver, client) -> None:
    sent = invoice(buyer())
    first = await client.send(sent.file_name, sent.xml)
    second = await client.send(sent.file_name, sent.xml)
    assert first.sdi_id != second.sdi_id
    _, notification = await outcome(sdi, receiver, second.sdi_id, sent.file_name)
    assert notification.kind == "NS"
    assert [(error.code, error.description) for error in notification.errors] == [("00002", "Nome file duplicato")]
    counted = [entry for entry in control(sdi, "/received", method="GET") if entry["file_name"] == sent.file_name]
    assert [entry["outcome"] for entry in counted] == ["RC", "NS"]


async def test_p18_a_file_not_valid_against_the_schema_is_rejected_00200(sdi, receiver, client) -> None:
    sent = invoice(buyer())
    broken = sent.xml.replace(b"<Divisa>EUR</Divisa>", b"")
    acceptance = await client.send(sent.file_name, broken)
    _, notification = await outcome(sdi, receiver, acceptance.sdi_id, sent.file_name)
    assert notification.kind == "NS" and [error.code for error in notification.errors] == ["00200"]
    assert notification.errors[0].description.startswith("File non conforme al formato : ")
    assert "Data" in notification.errors[0].description  # what the schema expected instead


async def test_p18_an_invoice_already_issued_is_rejected_00404_unless_it_was_rejected(sdi, receiver, client) -> None:
    to = buyer()
    original = invoice(to)
    again = invoice(to, progressive=original.progressive)  # same number and date, another file name
    assert (again.number, again.issued_on) == (original.number, original.issued_on)
    assert again.file_name != original.file_name
    first = await client.send(original.file_name, original.xml)
    assert (await outcome(sdi, receiver, first.sdi_id, original.file_name))[1].kind == "RC"
    duplicate = await client.send(again.file_name, again.xml)
    _, notification = await outcome(sdi, receiver, duplicate.sdi_id, again.file_name)
    assert [(error.code, error.description) for error in notification.errors] == [("00404", "Fattura duplicata")]

    # A rejected invoice was never issued: sent again corrected under a new name, it is taken.
    rejected_to = buyer()
    control(
        sdi,
        "/rules",
        {"buyer": rejected_to, "outcome": "NS", "times": 1, "errors": [{"code": "00400", "description": "x"}]},
    )
    rejected = invoice(rejected_to)
    first = await client.send(rejected.file_name, rejected.xml)
    assert (await outcome(sdi, receiver, first.sdi_id, rejected.file_name))[1].kind == "NS"
    resent = invoice(rejected_to, progressive=rejected.progressive)
    second = await client.send(resent.file_name, resent.xml)
    assert (await outcome(sdi, receiver, second.sdi_id, resent.file_name))[1].kind == "RC"


async def test_p18_bad_file_name_and_bad_vat_number_are_rejected(sdi, receiver, client) -> None:
    sent = invoice(buyer())
    misnamed = await client.send("fattura_00001.xml", sent.xml)
    assert [error.code for error in (await outcome(sdi, receiver, misnamed.sdi_id, "fattura_00001.xml"))[1].errors] == [
        "00001"
    ]

    to = buyer()
    wrong_digit = invoice(to, vat_number="09876540015")
    xml = wrong_digit.xml.replace(b"<IdCodice>09876540015</IdCodice>", b"<IdCodice>09876540016</IdCodice>")
    acceptance = await client.send(wrong_digit.file_name, xml)
    _, notification = await outcome(sdi, receiver, acceptance.sdi_id, wrong_digit.file_name)
    assert [(error.code, error.description) for error in notification.errors] == [
        ("00305", "1.4.1.1.2 <IdCodice> non valido")
    ]


async def test_p18_rules_make_mc_and_ns_for_a_buyer(sdi, receiver, client) -> None:
    unreachable, refused_buyer = buyer(), buyer()
    control(sdi, "/rules", {"buyer": unreachable, "outcome": "MC", "times": 1})
    error = {"code": "00400", "description": "2.2.1.14 <Natura> non presente a fronte di 2.2.1.12 <AliquotaIVA> zero"}
    control(sdi, "/rules", {"buyer": refused_buyer, "outcome": "NS", "errors": [error]})

    first = invoice(unreachable)
    acceptance = await client.send(first.file_name, first.xml)
    callback, notification = await outcome(sdi, receiver, acceptance.sdi_id, first.file_name)
    assert (callback.operation, notification.kind) == ("NotificaMancataConsegna", "MC")
    assert callback.notification_name.endswith("_MC_001.xml")
    assert notification.description and "area riservata" in notification.description
    later = invoice(unreachable)  # the rule applied once
    acceptance = await client.send(later.file_name, later.xml)
    assert (await outcome(sdi, receiver, acceptance.sdi_id, later.file_name))[1].kind == "RC"

    rejected = invoice(refused_buyer)
    acceptance = await client.send(rejected.file_name, rejected.xml)
    callback, notification = await outcome(sdi, receiver, acceptance.sdi_id, rejected.file_name)
    assert callback.operation == "NotificaScarto"
    assert [(e.code, e.description) for e in notification.errors] == [(error["code"], error["description"])]


async def test_p18_unavailable_sdi_answers_ei02_and_an_empty_file_ei01(sdi, client) -> None:
    sent = invoice(buyer())
    control(sdi, "", {"available": False})
    try:
        refused_now = await client.send(sent.file_name, sent.xml)
    finally:
        control(sdi, "", {"available": True})
    assert (refused_now.error, refused_now.sdi_id) == ("EI02", None)
    empty = await client.send(invoice(buyer()).file_name, b"")
    assert (empty.error, empty.sdi_id) == ("EI01", None)
    taken = await client.send(sent.file_name, sent.xml)  # the same name is not "already received"
    assert taken.error is None and taken.sdi_id is not None
    tries = [entry for entry in control(sdi, "/received", method="GET") if entry["file_name"] == sent.file_name]
    assert [(entry["outcome"], entry["sdi_id"]) for entry in tries] == [("EI02", None), ("RC", taken.sdi_id)]


async def test_p18_a_late_answer_is_in_doubt_though_sdi_took_the_file(sdi, receiver) -> None:
    impatient = RiceviFileClient(sdi.url, timeout=0.5)
    sent = invoice(buyer())
    control(sdi, "", {"answer_delay": 2.0})
    try:
        with pytest.raises(SdiInDoubt, match="ReadTimeout"):
            await impatient.send(sent.file_name, sent.xml)
    finally:
        control(sdi, "", {"answer_delay": 0.0})
        await impatient.aclose()
    taken = [entry for entry in control(sdi, "/received", method="GET") if entry["file_name"] == sent.file_name]
    assert len(taken) == 1 and taken[0]["outcome"] == "RC"
    _, notification = await outcome(
        sdi, receiver, taken[0]["sdi_id"], sent.file_name
    )  # the notification settles the doubt
    assert notification.file_name == sent.file_name


async def test_p18_a_soap_fault_is_in_doubt_and_nothing_listening_is_unreachable(client) -> None:
    with pytest.raises(SdiInDoubt, match="SOAP fault"):
        await client.send("not a file name!", b"<x/>")
    nobody = RiceviFileClient(f"http://127.0.0.1:{free_port()}/SdIRiceviFile", timeout=2.0)
    try:
        with pytest.raises(SdiUnreachable, match="not reached"):
            await nobody.send("IT12345670017_00001.xml", b"<x/>")
    finally:
        await nobody.aclose()


def test_p18_plain_http_only_on_loopback() -> None:
    with pytest.raises(ValueError, match="must be https:// unless on loopback"):
        RiceviFileClient("http://sdi.example.it/SdIRiceviFile")
    with pytest.raises(ValueError, match="must be an https:// URL"):
        RiceviFileClient("ftp://127.0.0.1/SdIRiceviFile")


async def test_p18_callbacks_are_retried_until_the_endpoint_answers(sdi, receiver, client) -> None:
    with receiver.lock:
        receiver.failures_left = 2
    sent = invoice(buyer())
    acceptance = await client.send(sent.file_name, sent.xml)
    await outcome(sdi, receiver, acceptance.sdi_id, sent.file_name)
    delivered = [
        entry for entry in control(sdi, "/notifications", method="GET") if entry["sdi_id"] == acceptance.sdi_id
    ]
    assert [(entry["status"], entry["attempts"]) for entry in delivered] == [("delivered", 3)]


async def test_p18_ids_and_names_survive_a_restart(tmp_path: Path, receiver) -> None:
    sent = invoice(buyer())
    first_run = start_sdi(tmp_path, "127.0.0.1", free_port(), receiver.url)
    try:
        sending = RiceviFileClient(first_run.url, timeout=5.0)
        before = await sending.send(sent.file_name, sent.xml)
        await sending.aclose()
    finally:
        first_run.stop()
    second_run = start_sdi(tmp_path, "127.0.0.1", free_port(), receiver.url)
    try:
        sending = RiceviFileClient(second_run.url, timeout=5.0)
        after = await sending.send(sent.file_name, sent.xml)
        await sending.aclose()
        assert second_run.cert_path.read_bytes() == first_run.cert_path.read_bytes()
        _, notification = await outcome(second_run, receiver, after.sdi_id, sent.file_name)
    finally:
        second_run.stop()
    assert before.sdi_id is not None and after.sdi_id is not None and int(after.sdi_id) > int(before.sdi_id)
    assert [error.code for error in notification.errors] == ["00002"]
