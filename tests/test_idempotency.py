"""Every side effect is idempotent: an activity run twice with the same input has the effect of
one run, and a workflow whose activities crash after committing, twice, doubles nothing."""

from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.mail import Mailer, message_id
from activities.store import Store
from client.renewals import Renewals
from renewals.calls import (
    Activate,
    Activation,
    CloseOrder,
    CreatedOrder,
    CreateOrder,
    EmailSent,
    SendEmail,
    SettlePayment,
)
from renewals.cart import Cart
from renewals.dates import add_years
from renewals.events import CheckoutSubmitted, RenewRequested
from renewals.messages import PaymentEntry
from renewals.records import AddonQuantity
from renewals.types import Stage
from renewals.views import PaymentOutcome
from tests.conftest import POLICY, eventually, handle_of, new_service, pay, unique
from worker import build_worker


async def make_order(store: Store, username: str, run_id: str | None = None) -> tuple[CreateOrder, str]:
    service = await store.services.get(username)
    assert service is not None
    cart = Cart(mode="renew", service=service, prices=await store.services.price_list())
    now = datetime.now(UTC)
    request = CreateOrder(
        workflow_id=f"renewal-{username}",
        run_id=run_id or unique("run"),
        username=username,
        mode="renew",
        years=1,
        payment_method="bank_transfer",
        discount_code=None,
        lines=cart.lines(1),
        quote=cart.quote(1),
        previous_expires_on=service.expires_on,
        due_by=now + timedelta(days=30),
        ordered_at=now,
    )
    created = await ActivityEnvironment().run(store.create_order, request)
    return request, created.order_number


async def audit_count(store: Store, order_number: str, event: str) -> int:
    count: int = await store.pool.fetchval(
        "SELECT count(*) FROM renewal_events WHERE order_number = $1 AND event = $2", order_number, event
    )
    return count


async def test_create_order_twice_is_one_order(store):
    service = await new_service(store)
    request, number = await make_order(store, service.username)
    again = await ActivityEnvironment().run(store.create_order, request)
    assert again.order_number == number
    assert await store.pool.fetchval("SELECT count(*) FROM orders WHERE username = $1", service.username) == 1
    assert await store.pool.fetchval("SELECT count(*) FROM order_lines WHERE order_number = $1", number) == 1
    assert await audit_count(store, number, "order_created") == 1


async def test_settle_payment_twice_is_one_ledger_entry(store):
    service = await new_service(store)
    _, number = await make_order(store, service.username)
    entry = PaymentEntry(
        order_number=number,
        transaction_id=unique("txn"),
        amount_cents=1000,
        method="bank_transfer",
        registered_at=datetime.now(UTC),
    )
    outcome = PaymentOutcome(
        status="partial", order_number=number, transaction_id=entry.transaction_id, paid_cents=1000, balance_cents=2050
    )
    for _ in range(2):
        await ActivityEnvironment().run(store.settle_payment, SettlePayment(entry=entry, outcome=outcome))
    rows = await store.pool.fetch("SELECT status FROM payments WHERE order_number = $1", number)
    assert [row["status"] for row in rows] == ["partial"]
    assert await audit_count(store, number, "payment_partial") == 1


async def test_activate_twice_extends_once(store):
    service = await new_service(store, addons=[AddonQuantity(addon="extra_users", quantity=1)])
    _, number = await make_order(store, service.username)
    request = Activate(
        order_number=number,
        username=service.username,
        years=3,
        cart_addons=[AddonQuantity(addon="extra_users", quantity=2)],
        paid_at=datetime.now(UTC),
    )
    first = await ActivityEnvironment().run(store.activate, request)
    second = await ActivityEnvironment().run(store.activate, request)
    assert first == second and first.new_expires_on == add_years(service.expires_on, 3)
    renewed = await store.services.get(service.username)
    assert renewed is not None and renewed.expires_on == add_years(service.expires_on, 3)
    assert renewed.addons == [AddonQuantity(addon="extra_users", quantity=3)]
    assert await audit_count(store, number, "activated") == 1


async def test_close_order_twice_closes_once(store):
    service = await new_service(store)
    _, number = await make_order(store, service.username)
    request = CloseOrder(order_number=number, status="expired", reason="deadline", closed_at=datetime.now(UTC))
    for _ in range(2):
        await ActivityEnvironment().run(store.close_order, request)
    assert await audit_count(store, number, "order_expired") == 1


async def test_send_email_twice_delivers_once(store, mailer, mail_sink):
    service = await new_service(store)
    request = SendEmail(
        key=f"{unique('order')}:reminder:1",
        template="reminder",
        username=service.username,
        to_name=service.holder_name,
        to_email=service.holder_email,
        order_number="FE-2026-000001",
        balance_cents=3050,
        due_by=datetime.now(UTC),
    )
    first = await ActivityEnvironment().run(mailer.send_email, request)
    second = await ActivityEnvironment().run(mailer.send_email, request)
    assert (first.already_sent, second.already_sent) == (False, True)
    assert first.message_id == second.message_id == message_id(request.key)
    delivered = [m for m in mail_sink.to(service.holder_email) if m["Message-ID"] == first.message_id]
    assert len(delivered) == 1


async def test_holder_name_with_crlf_cannot_inject_headers(store, mailer, mail_sink):
    service = await new_service(store)
    request = SendEmail(
        key=f"{unique('order')}:reminder:1",
        template="reminder",
        username=service.username,
        to_name="Mario\r\nBcc: victim@example.com",
        to_email=service.holder_email,
    )
    await ActivityEnvironment().run(mailer.send_email, request)
    (mail,) = await eventually(lambda: mail_sink.to(service.holder_email), what="the email")
    assert mail["Bcc"] is None
    assert mail["To"] == f'"Mario Bcc victim example.com" <{service.holder_email}>'


# ---------------------------------------------------------------------- crash after commit


class CrashAfterCommit:
    """Fails the first two attempts of an activity after its side effect, like a worker killed
    between the commit and the report."""

    @staticmethod
    def maybe_crash() -> None:
        if activity.info().attempt <= 2:
            raise RuntimeError(f"crash after commit, attempt {activity.info().attempt}")


class FlakyStore(Store, CrashAfterCommit):
    @activity.defn(name="create_order")
    async def create_order(self, request: CreateOrder) -> CreatedOrder:
        result = await super().create_order(request)
        self.maybe_crash()
        return result

    @activity.defn(name="activate")
    async def activate(self, request: Activate) -> Activation:
        result = await super().activate(request)
        self.maybe_crash()
        return result


class FlakyMailer(Mailer, CrashAfterCommit):
    @activity.defn(name="send_email")
    async def send_email(self, request: SendEmail) -> EmailSent:
        result = await super().send_email(request)
        self.maybe_crash()
        return result


async def test_activities_failing_twice_after_their_side_effect_double_nothing(env, store, mailer, mail_sink):
    flaky_store = FlakyStore(store.pool)
    flaky_mailer = FlakyMailer(store, mailer.host, mailer.port, mailer.sender)
    task_queue = "renewals-flaky"
    worker = build_worker(env.client, flaky_store, flaky_mailer, task_queue)
    ingress = Renewals(env.client, store, POLICY, task_queue)
    service = await new_service(store)
    async with worker:
        await ingress.panel(RenewRequested(type="renew_requested", username=service.username))
        order = await ingress.panel(
            CheckoutSubmitted(
                type="checkout_submitted", username=service.username, payment_method="bank_transfer", years=1
            )
        )
        await pay(ingress, order.order_number, order.total_cents)
        result = await handle_of(env.client, service.username).result()
    assert result.stage == Stage.ACTIVATED
    assert await store.pool.fetchval("SELECT count(*) FROM orders WHERE username = $1", service.username) == 1
    renewed = await store.services.get(service.username)
    assert renewed is not None and renewed.expires_on == add_years(service.expires_on, 1)
    ids = [m["Message-ID"] for m in mail_sink.to(service.holder_email)]
    assert len(ids) == 2 and len(set(ids)) == 2  # instructions and confirmation, once each
