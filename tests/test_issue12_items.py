"""Issue 12, one test per numbered item: what a user (the panel, the payments office, ops, the
account holder's mailbox) sees on the real stack once each is fixed. The invariants these items
broke are checked together, under random sequences, by tests/test_invariants_model.py.

Item 9 (every answer bounded) is proven for panel events and reads by tests/test_p14_bounded_answers.py
and for replays by tests/test_p13_idempotency_key.py; here, its payment side: the answer is a 503
within the deadline and the money is still in the ledger, where the reconciler finds it.
"""

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

from activities.mail import Mailer
from activities.store import Store
from client.renewals import Renewals
from renewals import TASK_QUEUE, errors
from renewals.calls import SendEmail
from renewals.eligibility import last_reactivation_day
from renewals.events import PaymentRegistered
from renewals.types import MAX_ADDON_QUANTITY, Stage
from starter import CliError, validate_services
from tests.conftest import POLICY, MailSink, eventually, handle_of, new_service, today, unique, wait_stage
from tests.invariants_support import Api, failed_workflow_tasks, payment_event, reconcile
from tests.test_p14_bounded_answers import Silent
from worker import build_worker

SERVICE_ONE_YEAR_CENTS = 3050


async def open_and_checkout(api: Api, username: str, method: str = "bank_transfer", years: int = 1) -> dict:
    assert (await api.panel({"type": "renew_requested", "username": username})).status_code == 200
    response = await api.panel(
        {"type": "checkout_submitted", "username": username, "payment_method": method, "years": years}
    )
    assert response.status_code == 200, response.text
    order: dict = response.json()
    return order


def keys_of(messages: list[Message]) -> list[str]:
    return sorted(str(message["X-Renewals-Key"]) for message in messages)


def text_of(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(message.get_content_charset() or "utf-8")


async def ledger_status(store: Store, transaction_id: str) -> str | None:
    status: str | None = await store.pool.fetchval(
        "SELECT status FROM payments WHERE transaction_id = $1", transaction_id
    )
    return status


# ---------------------------------------------------------------------------- 1


@pytest.mark.parametrize(
    "address",
    ["mario..rossi@example.com", ".mario@example.com", "mario.@example.com", "mario@example.com.", "màrio@example.com"],
    ids=["consecutive-dots", "leading-dot", "trailing-dot-local", "trailing-dot-domain", "non-ascii-local"],
)
def test_item01_unmailable_address_is_refused_at_import_naming_the_field(address: str) -> None:
    record = {
        "username": unique(),
        "holder_name": "Mario Rossi",
        "holder_email": address,
        "purchased_on": "2025-01-10",
        "expires_on": "2026-01-10",
        "auto_renew": False,
        "storage_quota_mb": 1000,
        "storage_used_mb": 10,
    }
    with pytest.raises(CliError, match="record 0: holder_email"):
        validate_services(json.dumps([record], ensure_ascii=False).encode())


async def test_item01_unmailable_address_email_is_a_recorded_refusal_not_a_retry(
    mailer: Mailer, store: Store, mail_sink: MailSink
) -> None:
    """The mailer's side, for whatever reaches it: one attempt, a non-retryable MAIL_REJECTED, the
    refusal kept in email_log, nothing sent (the renewal records it and goes on, as
    tests/test_renewal_edges.py shows for a 5xx)."""
    key = f"{unique('order')}:payment_instructions"
    request = SendEmail(
        key=key,
        template="payment_instructions",
        username=unique(),
        to_name="Mario",
        to_email="mario..rossi@example.com",
    )
    for _attempt in range(2):  # a retry finds the refusal recorded
        with pytest.raises(ApplicationError) as refused:
            await ActivityEnvironment().run(mailer.send_email, request)
        assert refused.value.type == errors.MAIL_REJECTED and refused.value.non_retryable
    row = await store.pool.fetchrow("SELECT status, note FROM email_log WHERE key = $1", key)
    assert row["status"] == "refused" and "mario..rossi@example.com" in row["note"]
    assert not [m for m in mail_sink.messages() if m["X-Renewals-Key"] == key]


async def test_item01_unmailable_address_already_stored_never_stops_the_renewal(
    ingress: Renewals, store: Store, env
) -> None:
    # A record imported before the check (the address goes straight to the table, as then).
    service = await new_service(store)
    await store.pool.execute(
        "UPDATE services SET holder_email = 'mario..rossi@example.com' WHERE username = $1", service.username
    )
    async with Api(ingress) as api:
        order = await open_and_checkout(api, service.username)
        refused = await eventually(
            lambda: refused_keys(api, service.username), what="the instructions email recorded as refused"
        )
        assert refused[0].startswith(f"{order['order_number']}:payment_instructions refused")
        paid = await api.payment(payment_event(order["order_number"], order["total_cents"]))
        assert paid.json()["status"] == "applied"
        await wait_stage(env.client, service.username, Stage.ACTIVATED)
        assert await eventually(lambda: settled(store, paid.json()["transaction_id"]), what="the ledger settled")
    stored = await store.services.get(service.username)
    assert stored is not None and stored.expires_on > service.expires_on
    assert await failed_workflow_tasks(handle_of(env.client, service.username)) == []


async def refused_keys(api: Api, username: str) -> list[str]:
    return [key for key in (await api.renewal(username))["emails"] if "refused" in key]


async def settled(store: Store, transaction_id: str) -> bool:
    return (await ledger_status(store, transaction_id)) not in (None, "received")


# ---------------------------------------------------------------------------- 2


async def test_item02_addon_quantities_past_the_limit_are_a_422_and_the_renewal_stays_readable(
    ingress: Renewals, store: Store, env
) -> None:
    service = await new_service(store)
    add = {"type": "addon_added", "username": service.username, "addon": "extra_users", "quantity": 100}
    async with Api(ingress) as api:
        assert (await api.panel({"type": "renew_requested", "username": service.username})).status_code == 200
        for _ in range(MAX_ADDON_QUANTITY // 100):
            assert (await api.panel(add)).status_code == 200
        eleventh = await api.panel(add)
        assert eleventh.status_code == 422, eleventh.text
        assert eleventh.json()["error"] == "invalid_request" and str(MAX_ADDON_QUANTITY) in eleventh.json()["message"]
        cart = (await api.renewal(service.username))["cart"]
        assert cart["cart_addons"] == [{"addon": "extra_users", "quantity": MAX_ADDON_QUANTITY}]
        assert (await api.get(f"/panel/services/{service.username}")).status_code == 200
    assert await failed_workflow_tasks(handle_of(env.client, service.username)) == []


async def test_item02_active_and_cart_quantities_together_never_pass_the_limit(ingress: Renewals, store: Store) -> None:
    service = await new_service(store, addons=[{"addon": "extra_users", "quantity": MAX_ADDON_QUANTITY - 50}])
    add = {"type": "addon_added", "username": service.username, "addon": "extra_users", "quantity": 51}
    async with Api(ingress) as api:
        assert (await api.panel({"type": "renew_requested", "username": service.username})).status_code == 200
        refused = await api.panel(add)
        assert refused.status_code == 422 and "active" in refused.json()["message"], refused.text
        assert (await api.panel({**add, "quantity": 50})).status_code == 200
        assert (await api.get(f"/panel/services/{service.username}")).status_code == 200


async def test_item02_a_storage_suggestion_past_the_addon_limit_never_fails_the_workflow_task(
    ingress: Renewals, store: Store, env
) -> None:
    quota = 1024 * 1024  # 1 TiB, 150 % used: the estimate asks for some 1,600 packs of 1 GiB
    service = await new_service(store, storage_quota_mb=quota, storage_used_mb=quota * 3 // 2)
    handle = handle_of(env.client, service.username)
    try:
        async with Api(ingress) as api:
            opened = await api.panel({"type": "renew_requested", "username": service.username})
            assert opened.status_code == 200, opened.text
            suggested = [a for a in opened.json()["available_addons"] if a["addon"] == "extra_storage"]
            assert suggested and suggested[0]["quantity"] <= MAX_ADDON_QUANTITY
        assert await failed_workflow_tasks(handle) == []
    finally:
        with contextlib.suppress(RPCError):
            await handle.terminate("test over")  # a failing workflow task would retry for the whole session


# ---------------------------------------------------------------------------- 3


@pytest.mark.parametrize(
    "reference, currency",
    [
        ("Bonifico FE 2026 000001 Rossi", "EUR"),
        ("FE-2026-00001", "EUR"),
        ("x" * 140, "EUR"),
        (None, "USD"),  # the order's own number, in another currency
        (None, "chf"),
    ],
    ids=["bank-statement-text", "five-digits", "140-characters", "usd", "lowercase-chf"],
)
async def test_item03_any_reference_or_currency_is_stored_unmatched_never_refused(
    ingress: Renewals, store: Store, reference: str | None, currency: str
) -> None:
    service = await new_service(store)
    async with Api(ingress) as api:
        order = await open_and_checkout(api, service.username)
        event = payment_event(reference or order["order_number"], order["total_cents"], currency=currency)
        response = await api.payment(event)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "unmatched" and response.json()["note"]
        assert await eventually(lambda: settled(store, event["transaction_id"]), what="the ledger settled")
        row = await store.pool.fetchrow(
            "SELECT order_number, currency, status FROM payments WHERE transaction_id = $1", event["transaction_id"]
        )
        assert (row["order_number"], row["currency"], row["status"]) == (
            event["order_number"],
            currency.upper(),
            "unmatched",
        )
        renewal = await api.renewal(service.username)
        assert renewal["stage"] == "AWAITING_PAYMENT" and renewal["order"]["paid_cents"] == 0


async def test_item03_a_reference_past_140_characters_is_a_422_naming_it(ingress: Renewals) -> None:
    async with Api(ingress) as api:
        response = await api.payment(payment_event("x" * 141, 3050))
    assert response.status_code == 422 and "order_number" in response.json()["message"], response.text


# ---------------------------------------------------------------------------- 4


async def test_item04_card_payment_received_after_the_deadline_is_unmatched_and_activates_nothing(
    ingress: Renewals, store: Store, env
) -> None:
    """The ledger took the payment after `due_by` (the ingress died after the insert; the back
    office retries the same event): the renewal still awaits its deadline timer, but the payment
    is judged by the time it reached us (P12), not by the order's state."""
    service = await new_service(store)
    async with Api(ingress) as api:
        order = await open_and_checkout(api, service.username, method="card")
        event = payment_event(order["order_number"], order["total_cents"], method="card")
        await store.pool.execute(
            """
            INSERT INTO payments (transaction_id, order_number, amount_cents, currency, method, registered_at,
                                  received_at)
            VALUES ($1, $2, $3, 'EUR', 'card', now(), $4::timestamptz + interval '1 minute')
            """,
            event["transaction_id"],
            order["order_number"],
            order["total_cents"],
            datetime.fromisoformat((await api.renewal(service.username))["order"]["due_by"]),
        )
        response = await api.payment(event)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "unmatched" and "P12" in response.json()["note"]
        renewal = await api.renewal(service.username)
        assert renewal["stage"] == "AWAITING_PAYMENT" and renewal["order"]["paid_cents"] == 0
        assert await eventually(lambda: settled(store, event["transaction_id"]), what="the ledger settled")
    assert await ledger_status(store, event["transaction_id"]) == "unmatched"
    stored = await store.services.get(service.username)
    assert stored is not None and stored.expires_on == service.expires_on


# ---------------------------------------------------------------------------- 5


async def test_item05_pay_by_date_in_emails_is_the_last_day_when_the_window_shortens_the_deadline(
    ingress: Renewals, store: Store, mail_sink: MailSink
) -> None:
    # Expired 80 days ago: the window ends in 10 days, before the 30-day deadline (P3).
    service = await new_service(store, expires_on=today() - timedelta(days=80))
    last_day = last_reactivation_day(service.expires_on, POLICY.reactivation_window)
    async with Api(ingress) as api:
        assert (await api.panel({"type": "reactivate_requested", "username": service.username})).status_code == 200
        response = await api.panel(
            {"type": "checkout_submitted", "username": service.username, "payment_method": "postal_slip", "years": 1}
        )
        assert response.status_code == 200, response.text

    def instructions() -> list[Message]:
        return [m for m in mail_sink.to(service.holder_email) if "payment_instructions" in m["X-Renewals-Key"]]

    (email,) = await eventually(instructions, what="the payment instructions email")
    pay_by = [line for line in text_of(email).splitlines() if line.startswith("Da pagare entro il")]
    assert pay_by == [f"Da pagare entro il: {last_day:%d/%m/%Y}"]


# ---------------------------------------------------------------------------- 6


async def test_item06_bought_storage_packs_count_in_the_next_carts_storage_alert(
    ingress: Renewals, store: Store, env
) -> None:
    service = await new_service(store, storage_quota_mb=1000, storage_used_mb=950)
    async with Api(ingress) as api:
        opened = await api.panel({"type": "renew_requested", "username": service.username})
        alert = opened.json()["storage_alert"]
        assert alert["level"] == "red" and alert["suggested_packs"] >= 1
        bought = alert["suggested_packs"]
        add = {"type": "addon_added", "username": service.username, "addon": "extra_storage", "quantity": bought}
        assert (await api.panel(add)).status_code == 200
        checkout = {"type": "checkout_submitted", "username": service.username, "payment_method": "postal_slip"}
        order = (await api.panel({**checkout, "years": 1})).json()
        assert (await api.payment(payment_event(order["order_number"], order["total_cents"]))).json()[
            "status"
        ] == "applied"
        await wait_stage(env.client, service.username, Stage.ACTIVATED)
        assert (await handle_of(env.client, service.username).result()).stage == Stage.ACTIVATED
        again = await api.panel({"type": "renew_requested", "username": service.username})
    assert again.status_code == 200, again.text
    assert again.json()["active_addons"] == [{"addon": "extra_storage", "quantity": bought}]
    assert again.json()["storage_alert"] is None  # 950 MB of 1000 + the packs bought


# ---------------------------------------------------------------------------- 7


async def test_item07_a_refused_press_does_not_hide_the_last_renewal(ingress: Renewals, store: Store, env) -> None:
    service = await new_service(store)
    async with Api(ingress) as api:
        order = await open_and_checkout(api, service.username)
        await api.payment(payment_event(order["order_number"], order["total_cents"]))
        assert (await handle_of(env.client, service.username).result()).stage == Stage.ACTIVATED
        await store.pool.execute("UPDATE services SET auto_renew = true WHERE username = $1", service.username)
        refused = await api.panel({"type": "renew_requested", "username": service.username})
        assert refused.status_code == 409 and "auto-renew" in refused.json()["message"], refused.text
        shown = await api.renewal(service.username)
    assert shown["stage"] == "ACTIVATED" and shown["order"]["order_number"] == order["order_number"]


# ---------------------------------------------------------------------------- 8


async def test_item08_a_ledger_row_left_received_is_settled_by_the_reconciler(
    ingress: Renewals, store: Store, env
) -> None:
    service = await new_service(store)
    async with Api(ingress) as api:
        order = await open_and_checkout(api, service.username)
        # What the ingress writes first; then it dies, and the renewal never hears of it.
        event = payment_event(order["order_number"], order["total_cents"])
        await ingress.store.ledger.receive(ingress_event(event).entry())
        assert await ledger_status(store, event["transaction_id"]) == "received"
        result = await reconcile(env.client, TASK_QUEUE)
        assert result.found >= 1 and result.statuses.get("applied", 0) >= 1
        await wait_stage(env.client, service.username, Stage.ACTIVATED)
        assert await eventually(lambda: settled(store, event["transaction_id"]), what="the ledger settled")
    assert await ledger_status(store, event["transaction_id"]) == "applied"


def ingress_event(event: dict) -> PaymentRegistered:
    return PaymentRegistered.model_validate(event)


# ---------------------------------------------------------------------------- 9


async def test_item09_a_payment_with_temporal_hanging_is_a_bounded_503_and_stays_in_the_ledger(
    ingress: Renewals, store: Store, env
) -> None:
    service = await new_service(store)
    async with Api(ingress) as api:
        order = await open_and_checkout(api, service.username)
    event = payment_event(order["order_number"], order["total_cents"])
    async with Silent() as silent:
        hanging = await Client.connect(
            f"127.0.0.1:{silent.port}", namespace="default", data_converter=pydantic_data_converter, lazy=True
        )
        async with Api(Renewals(hanging, store, POLICY, TASK_QUEUE), deadline=2) as stuck_api:
            response = await stuck_api.payment(event)
            assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1, response.text
            assert stuck_api.slowest < 2 + 2
    assert await ledger_status(store, event["transaction_id"]) == "received"  # the money is kept
    await reconcile(env.client, TASK_QUEUE)
    await wait_stage(env.client, service.username, Stage.ACTIVATED)
    assert await eventually(lambda: settled(store, event["transaction_id"]), what="the ledger settled")
    assert await ledger_status(store, event["transaction_id"]) == "applied"


# ---------------------------------------------------------------------------- 10


async def test_item10_a_panel_retry_with_its_idempotency_key_never_doubles_an_addon(
    ingress: Renewals, store: Store
) -> None:
    service = await new_service(store)
    add = {"type": "addon_added", "username": service.username, "addon": "extra_users", "quantity": 2}
    key = f"panel-{uuid.uuid4()}"
    async with Api(ingress) as api:
        assert (await api.panel({"type": "renew_requested", "username": service.username})).status_code == 200
        first = await api.panel(add, key=key)
        retry = await api.panel(add, key=key)
        assert first.status_code == retry.status_code == 200
        assert retry.headers.get("Idempotent-Replayed") == "true" and retry.content == first.content
        cart = (await api.renewal(service.username))["cart"]
    assert cart["cart_addons"] == [{"addon": "extra_users", "quantity": 2}]


# ---------------------------------------------------------------------------- 11


async def test_item11_after_an_outage_one_reminder_goes_out_and_none_after_the_deadline(
    env, store: Store, mailer: Mailer, mail_sink: MailSink
) -> None:
    """A worker down while the reminders fall due. Time skipping cannot pass a timer whose workflow
    task no worker takes, so this renewal runs on the real clock, with the P2/P3 waits in seconds
    (reminders at 2, 4, 6 s; deadline at 10 s) carried in its input as in production in days."""
    task_queue = f"renewals-outage-{uuid.uuid4().hex[:8]}"
    policy = POLICY.model_copy(
        update={
            "reminders": [timedelta(seconds=2), timedelta(seconds=4), timedelta(seconds=6)],
            "payment_deadline": timedelta(seconds=10),
        }
    )
    outage_ingress = Renewals(env.client, store, policy, task_queue)
    service = await new_service(store)
    handle = handle_of(env.client, service.username)

    def reminders() -> list[str]:
        return [key for key in keys_of(mail_sink.to(service.holder_email)) if ":reminder:" in key]

    def past(instant: datetime) -> bool:
        return datetime.now(UTC) > instant

    async with Api(outage_ingress) as api:
        async with build_worker(env.client, store, mailer, task_queue):
            order = await open_and_checkout(api, service.username)
            await eventually(lambda: mail_sink.to(service.holder_email), what="the instructions email")
        due_by = datetime.fromisoformat(order["due_by"])
        ordered_at = due_by - policy.payment_deadline
        assert reminders() == []
        # The worker is down while the 2-, 4- and 6-second reminders fall due.
        await eventually(lambda: past(ordered_at + timedelta(seconds=6.5)), what="the third reminder to fall due")
        async with build_worker(env.client, store, mailer, task_queue):
            await eventually(reminders, what="a reminder after the outage")
            await eventually(
                lambda: view_has(api, service.username, ":reminder:"), what="the reminder in the renewal's view"
            )
            assert len(reminders()) == 1, reminders()
        # Down again across the deadline: the order lapses, and no reminder is sent late.
        await eventually(lambda: past(due_by + timedelta(seconds=1)), what="the deadline to pass")
        async with build_worker(env.client, store, mailer, task_queue):
            result = await handle.result()
    assert result.stage == Stage.ORDER_EXPIRED and result.order_number == order["order_number"]
    assert len(reminders()) == 1, reminders()
    assert await failed_workflow_tasks(handle) == []


async def view_has(api: Api, username: str, fragment: str) -> bool:
    return any(fragment in key for key in (await api.renewal(username))["emails"])
