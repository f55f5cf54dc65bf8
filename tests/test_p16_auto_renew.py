"""Automatic renewal (P16, R1, R5): the renewal workflow's mode `auto_renew`, as the daily run starts
it (client/starts.py), the charge request to the payments back office, and the panel's
`auto_renew_changed`.

Real parts: the Temporal dev server with per-workflow time skipping, PostgreSQL, the SMTP sink, and
for the charge request a real HTTP receiver on a local port (the stdlib's server in a thread).
"""

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email.header import decode_header, make_header
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.testing import ActivityEnvironment

from activities.charges import Charges
from client.renewals import AUTO_RENEW_OFF, RenewalsError
from client.starts import start_auto_renewal
from ingress.http import create_app
from renewals import TASK_QUEUE
from renewals.calls import SendEmail
from renewals.dates import add_years, start_of_day
from renewals.events import AutoRenewChanged, CheckoutSubmitted, RenewRequested
from renewals.records import AddonQuantity
from renewals.signing import Received, SignatureError, signed_headers, verify
from renewals.types import Stage
from renewals.views import ServiceStatusView
from renewals.year import notice_key
from stack.postgres import free_port
from tests.conftest import POLICY, eventually, handle_of, new_service, pay, today, unique, view, wait_stage
from worker import build_worker

PAYMENTS_SECRET = "payments-charge-secret"


def subject(message: Message) -> str:
    return str(make_header(decode_header(str(message["Subject"]))))


def body_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode().replace("\r\n", "\n")


async def mails(mail_sink: Any, username: str, subject_part: str, count: int = 1) -> list[Message]:
    def found() -> list[Message]:
        matching = [m for m in mail_sink.to(f"{username}@example.com") if subject_part in subject(m)]
        return matching if len(matching) >= count else []

    result: list[Message] = await eventually(found, what=f"{count} email(s) '{subject_part}' to {username}")
    return result


async def auto_service(store: Any, **fields: Any) -> Any:
    values = {"auto_renew": True, "expires_on": today() + timedelta(days=30), **fields}
    return await new_service(store, **values)


async def orders_of(store: Any, username: str) -> list[Any]:
    return list(await store.pool.fetch("SELECT * FROM orders WHERE username = $1 ORDER BY created_at", username))


async def start(env: Any, username: str, task_queue: str = TASK_QUEUE) -> Any:
    return await start_auto_renewal(env.client, task_queue, username, POLICY)


class Receiver:
    """The payments back office's webhook: answers 500 to the first `failures` requests, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[str, dict[str, str], bytes]] = []  # path with query, headers, body
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = 500 if len(receiver.requests) <= receiver.failures else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/charges?from=renewals"

    def __enter__(self) -> "Receiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(failures=1) as running:
        yield running


# ---------------------------------------------------------------------- card and PayPal: the charge request


async def test_p16_card_auto_order_posts_a_signed_charge_request_retried_until_acknowledged(
    env, store, mailer, ingress, mail_sink, receiver
):
    service = await auto_service(
        store,
        auto_renew_method="card",
        auto_renew_years=2,
        addons=[AddonQuantity(addon="extra_users", quantity=2)],
    )
    user = service.username
    task_queue = unique("renewals-charges")
    charges = Charges(store.pool, receiver.url, PAYMENTS_SECRET)
    async with build_worker(env.client, store, mailer, task_queue, charges=charges):
        handle = await start(env, user, task_queue)
        await wait_stage(env.client, user, Stage.AWAITING_PAYMENT)
        # The first POST answered 500; the activity's retry policy sends it again, acknowledged.
        row = await eventually(
            lambda: store.pool.fetchrow(
                "SELECT * FROM charge_requests WHERE username = $1 AND acknowledged_at IS NOT NULL", user
            ),
            what="the charge request acknowledged",
        )
        (order,) = await orders_of(store, user)
        assert (order["mode"], order["years"], order["payment_method"]) == ("auto_renew", 2, "card")
        assert order["due_by"] == start_of_day(service.expires_on + timedelta(days=1))
        assert (row["attempts"], row["url"], row["method"]) == (2, receiver.url, "card")
        assert row["last_error"] is None and row["amount_cents"] == order["total_cents"]
        assert len(receiver.requests) == 2
        # Signed as the ingress verifies (P21): the method, the path and query, the key, the body;
        # each attempt anew, with the order number as its Idempotency-Key.
        for path, headers, body in receiver.requests:
            # One charge per key: the attempt's id (P20), the same on every POST of the attempt.
            assert (path, headers["idempotency-key"]) == ("/charges?from=renewals", f"{order['order_number']}/1")
            received = Received(
                "POST",
                path,
                headers["idempotency-key"],
                body,
                headers["x-timestamp"],
                headers["x-nonce"],
                headers["x-signature"],
            )
            assert verify(PAYMENTS_SECRET, received, time.time()).form == "v2"
            with pytest.raises(SignatureError):
                verify("another-secret", received, time.time())
        assert len({headers["x-signature"] for _, headers, _ in receiver.requests}) == 2
        event = json.loads(receiver.requests[-1][2])
        assert event == {
            "type": "charge_requested",
            "attempt": f"{order['order_number']}/1",
            "order_number": order["order_number"],
            "username": user,
            "amount_cents": order["total_cents"],
            "currency": "EUR",
            "method": "card",
            "charge_on": today().isoformat(),
        }
        # 2 years of the service and of 2 extra users, at today's prices: (2500 + 2 × 500) × 2 + 22 % VAT.
        assert order["total_cents"] == 8540
        # The customer is told the date and the amount of the charge; no payment instructions.
        (told,) = await mails(mail_sink, user, "Rinnovo automatico: addebito")
        assert f"il {today():%d/%m/%Y}" in subject(told) and "85,40" in subject(told)
        assert f"scade il\n{service.expires_on:%d/%m/%Y}" in body_of(told)
        # Paid by the back office → activated exactly as a renewal: extended by the stored term (P1, R5).
        await pay(ingress, order["order_number"], order["total_cents"], method="card")
        result = await handle.result()
        assert result.stage == Stage.ACTIVATED
        assert result.new_expires_on == add_years(service.expires_on, 2)
        stored = await store.services.get(user)
        assert stored.expires_on == add_years(service.expires_on, 2) and stored.auto_renew_years == 2
        await mails(mail_sink, user, "Rinnovo completato")
        assert not [m for m in mail_sink.to(f"{user}@example.com") if "come completare" in subject(m)]


async def test_p16_paypal_auto_order_without_a_webhook_url_is_only_recorded(env, store, mail_sink):
    service = await auto_service(store, auto_renew_method="paypal")
    user = service.username
    await start(env, user)
    await mails(mail_sink, user, "Rinnovo automatico: addebito")
    row = await store.pool.fetchrow("SELECT * FROM charge_requests WHERE username = $1", user)
    assert (row["method"], row["url"], row["attempts"], row["acknowledged_at"]) == ("paypal", None, 0, None)
    assert row["charge_on"] == today()
    # No reminders for a charge the customer has nothing to do for (14 days on: none).
    await env.fast_forward(handle_of(env.client, user), timedelta(days=15))
    assert (await view(env.client, user)).stage == Stage.AWAITING_PAYMENT
    assert not [m for m in mail_sink.to(f"{user}@example.com") if "Promemoria" in subject(m)]


# ---------------------------------------------------------------------- bank transfer: instructions and P2


async def test_p16_bank_transfer_auto_order_gets_the_instructions_and_p2_reminders(env, store, ingress, mail_sink):
    # No method stored: bank transfer.
    service = await auto_service(store, expires_on=today() + timedelta(days=30))
    user = service.username
    handle = await start(env, user)
    (instructions,) = await mails(mail_sink, user, "come completare il pagamento")
    (order,) = await orders_of(store, user)
    assert (order["mode"], order["years"], order["payment_method"]) == ("auto_renew", 1, "bank_transfer")
    assert order["order_number"] in body_of(instructions)
    await env.fast_forward(handle, timedelta(days=3, hours=1))
    await mails(mail_sink, user, "Promemoria")
    assert not await store.pool.fetchval("SELECT count(*) FROM charge_requests WHERE username = $1", user)
    await pay(ingress, order["order_number"], order["total_cents"])
    result = await handle.result()
    assert (result.stage, result.new_expires_on) == (Stage.ACTIVATED, add_years(service.expires_on, 1))


# ---------------------------------------------------------------------- unpaid: the lapse at the expiry


async def test_p16_unpaid_auto_order_lapses_at_the_end_of_the_expiry_day_with_one_expired_email(
    env, store, mailer, mail_sink
):
    service = await auto_service(store, expires_on=today() + timedelta(days=5), auto_renew_method="bank_transfer")
    user = service.username
    handle = await start(env, user)
    await mails(mail_sink, user, "come completare il pagamento")
    end_of_expiry_day = start_of_day(service.expires_on + timedelta(days=1))
    info = await handle.describe()
    before_end = end_of_expiry_day - info.start_time - timedelta(hours=1)
    await env.fast_forward(handle, before_end)
    assert (await view(env.client, user)).stage == Stage.AWAITING_PAYMENT  # still the expiry day
    await env.fast_forward(handle, timedelta(hours=2))
    result = await handle.result()
    assert result.stage == Stage.ORDER_EXPIRED
    assert "not paid by the expiry date (P16)" in (result.reason or "")
    (order,) = await orders_of(store, user)
    assert order["status"] == "expired"
    (expired,) = await mails(mail_sink, user, "è scaduto")
    reactivate_until = service.expires_on + timedelta(days=90)
    assert f"fino al {reactivate_until:%d/%m/%Y}" in subject(expired)
    assert POLICY.panel_ui_url and POLICY.panel_ui_url in body_of(expired)
    key = notice_key(user, service.expires_on, "expired")
    assert expired["X-Renewals-Key"] == key
    # The daily run's day-after notice has the same key: sent again, the customer still has one.
    notice = SendEmail(
        key=key,
        template="service_expired",
        username=user,
        to_name=service.holder_name,
        to_email=service.holder_email,
        expires_on=service.expires_on,
        reactivate_until=reactivate_until,
        action_url=POLICY.panel_ui_url,
    )
    again = await ActivityEnvironment().run(mailer.send_email, notice)
    assert again.already_sent
    subjects = [subject(m) for m in mail_sink.to(f"{user}@example.com")]
    assert sum("è scaduto" in s for s in subjects) == 1
    # The one email of the lapse: no order_lapsed email beside it.
    assert not [s for s in subjects if "annullato" in s]


# ---------------------------------------------------------------------- one automatic order per expiry


async def test_p16_a_second_start_for_the_same_expiry_makes_no_second_order(env, store):
    service = await auto_service(store)
    user = service.username
    first = await start(env, user)
    await wait_stage(env.client, user, Stage.AWAITING_PAYMENT)
    # While it runs, the workflow id is taken: the start fails (WorkflowIDConflictPolicy.FAIL).
    with pytest.raises(WorkflowAlreadyStartedError):
        await start(env, user)
    # Even once it is gone (terminated by ops), the order of that expiry still holds.
    await first.terminate("ops")
    with pytest.raises(WorkflowFailureError):
        await first.result()
    second = await start(env, user)
    result = await second.result()
    assert result.stage == Stage.REFUSED
    assert result.reason and (
        f"an automatic order for the expiry {service.expires_on.isoformat()} already exists" in result.reason
    )
    assert len(await orders_of(store, user)) == 1


async def test_p16_refused_when_auto_renew_is_off_or_the_service_is_not_active(env, store):
    off = await new_service(store, auto_renew=False)
    result = await (await start(env, off.username)).result()
    assert result.stage == Stage.REFUSED and "auto-renew is off" in (result.reason or "")
    expired = await new_service(store, auto_renew=True, expires_on=today() - timedelta(days=2))
    result = await (await start(env, expired.username)).result()
    assert result.stage == Stage.REFUSED and "only for an active service" in (result.reason or "")
    assert not await orders_of(store, off.username) and not await orders_of(store, expired.username)


async def test_r1_p16_renew_pressed_during_an_automatic_renewal_is_refused(env, store, ingress):
    service = await auto_service(store)
    await start(env, service.username)
    await wait_stage(env.client, service.username, Stage.AWAITING_PAYMENT)
    with pytest.raises(RenewalsError) as refused:
        await ingress.panel(RenewRequested(type="renew_requested", username=service.username))
    assert refused.value.status == 409 and "automatic order" in refused.value.message
    assert len(await orders_of(store, service.username)) == 1


# ---------------------------------------------------------------------- the panel's switch


def switch(username: str, on: bool, method: str | None = None) -> AutoRenewChanged:
    return AutoRenewChanged(type="auto_renew_changed", username=username, auto_renew=on, method=method)  # type: ignore[arg-type]


async def test_p16_auto_renew_changed_off_cancels_the_unpaid_automatic_order(env, store, ingress, mail_sink):
    service = await auto_service(store, auto_renew_method="paypal")
    user = service.username
    handle = await start(env, user)
    await wait_stage(env.client, user, Stage.AWAITING_PAYMENT)
    shown = await ingress.panel(switch(user, False))
    assert isinstance(shown, ServiceStatusView)
    assert (shown.auto_renew, shown.action) == (False, "renew")
    result = await handle.result()
    assert (result.stage, result.reason) == (Stage.CANCELLED, AUTO_RENEW_OFF)
    (order,) = await orders_of(store, user)
    assert (order["status"], order["close_reason"]) == ("cancelled", AUTO_RENEW_OFF)
    (cancelled,) = await mails(mail_sink, user, "annullato")
    assert AUTO_RENEW_OFF in body_of(cancelled)
    audit = await store.pool.fetchval(
        "SELECT detail FROM renewal_events WHERE username = $1 AND event = 'auto_renew_changed'", user
    )
    assert json.loads(audit)["auto_renew"] is False
    # Off now: Renew is offered again (R1), and opens a cart.
    cart = await ingress.panel(RenewRequested(type="renew_requested", username=user))
    assert cart.stage == Stage.CART


async def test_p16_auto_renew_changed_on_is_refused_while_a_manual_order_awaits_payment(env, store, ingress):
    service = await new_service(store)
    user = service.username
    await ingress.panel(RenewRequested(type="renew_requested", username=user))
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=user, payment_method="bank_transfer", years=1)
    )
    with pytest.raises(RenewalsError) as refused:
        await ingress.panel(switch(user, True, "card"))
    assert refused.value.status == 409 and f"order {order.order_number} awaits payment" in refused.value.message  # type: ignore[union-attr]
    assert (await store.services.get(user)).auto_renew is False
    # Paid, nothing awaits payment: turned on, with its method.
    await pay(ingress, order.order_number, order.total_cents)  # type: ignore[union-attr]
    await handle_of(env.client, user).result()
    shown = await ingress.panel(switch(user, True, "card"))
    assert isinstance(shown, ServiceStatusView)
    assert (shown.auto_renew, shown.auto_renew_method, shown.action) == (True, "card", None)


async def test_p16_auto_renew_changed_on_without_a_method_is_a_422(ingress, store):
    service = await new_service(store)
    transport = httpx.ASGITransport(app=create_app(ingress, "panel-secret-p16", "payments-secret-p16"))
    body = json.dumps({"type": "auto_renew_changed", "username": service.username, "auto_renew": True}).encode()
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        headers = {
            "Content-Type": "application/json",
            **signed_headers("panel-secret-p16", "POST", "/panel/events", body),
        }
        answer = await http.post("/panel/events", content=body, headers=headers)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"] == "invalid_request"
        assert "method is required when turning auto-renew on" in answer.json()["message"]
        on = json.dumps(
            {"type": "auto_renew_changed", "username": service.username, "auto_renew": True, "method": "paypal"}
        )
        headers = {
            "Content-Type": "application/json",
            **signed_headers("panel-secret-p16", "POST", "/panel/events", on.encode()),
        }
        answer = await http.post("/panel/events", content=on, headers=headers)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["auto_renew"], answer.json()["auto_renew_method"]) == (True, "paypal")


# ---------------------------------------------------------------------- the service view's year ahead


async def test_p16_service_view_shows_the_method_term_and_the_next_dates(store, ingress):
    on = await new_service(
        store, auto_renew=True, auto_renew_method="card", auto_renew_years=3, expires_on=today() + timedelta(days=60)
    )
    shown = await ingress.service(on.username)
    assert (shown.auto_renew_method, shown.auto_renew_years) == ("card", 3)
    assert shown.next_auto_order_on == on.expires_on - timedelta(days=30)
    assert (shown.next_notice_on, shown.next_notice_kind) == (on.expires_on + timedelta(days=1), "expired")
    off = await new_service(store, expires_on=today() + timedelta(days=60))
    shown = await ingress.service(off.username)
    assert (shown.next_notice_on, shown.next_notice_kind) == (off.expires_on - timedelta(days=30), "before-30")
    assert shown.next_auto_order_on is None and shown.auto_renew_method is None
