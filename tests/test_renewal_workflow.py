"""The renewal workflow end to end, rule by rule (DESIGN.md R1–R7, P1–P10).

Real parts: the Temporal dev server with per-workflow time skipping (days pass with
`env.fast_forward`), embedded PostgreSQL, and the aiosmtpd sink that really receives the mail.
The panel's side goes through `Renewals`, the same mapping HTTP and CLI use.
"""

from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from client.renewals import Renewals, RenewalsError
from renewals.creditor_reference import causale
from renewals.dates import add_years, start_of_day
from renewals.events import (
    AddonAdded,
    AddonRemoved,
    CheckoutSubmitted,
    DiscountCodeApplied,
    ReactivateRequested,
    RenewRequested,
)
from renewals.records import AddonQuantity
from renewals.types import Stage
from renewals.views import CartView, OrderView
from tests.conftest import eventually, handle_of, new_service, pay, today, view, wait_stage


async def open_cart(ingress: Renewals, username: str, mode: str = "renew") -> CartView:
    event = (
        RenewRequested(type="renew_requested", username=username)
        if mode == "renew"
        else ReactivateRequested(type="reactivate_requested", username=username)
    )
    cart = await ingress.panel(event)
    assert isinstance(cart, CartView)
    return cart


async def checkout(ingress: Renewals, username: str, years: int = 1, method: str = "bank_transfer") -> OrderView:
    order = await ingress.panel(
        CheckoutSubmitted(type="checkout_submitted", username=username, payment_method=method, years=years)  # type: ignore[arg-type]
    )
    assert isinstance(order, OrderView)
    return order


async def emails_to(mail_sink: Any, username: str, subject_part: str, count: int = 1) -> list[Any]:
    """Wait until `count` emails whose subject contains `subject_part` reached the sink."""

    def found() -> list[Any]:
        matching = [m for m in mail_sink.to(f"{username}@example.com") if subject_part in str(m["Subject"])]
        return matching if len(matching) >= count else []

    return await eventually(found, what=f"{count} email(s) '{subject_part}' to {username}")


def subjects(mail_sink: Any, username: str) -> list[str]:
    return [str(m["Subject"]) for m in mail_sink.to(f"{username}@example.com")]


async def order_row(store: Any, order_number: str) -> Any:
    return await store.pool.fetchrow("SELECT * FROM orders WHERE order_number = $1", order_number)


# ---------------------------------------------------------------------- R1, R2, P9: who may renew


async def test_r1_renew_refused_when_auto_renew_is_on(env, store, ingress):
    service = await new_service(store, auto_renew=True)
    with pytest.raises(RenewalsError) as refused:
        await open_cart(ingress, service.username)
    assert refused.value.status == 409
    assert "auto-renew is on" in refused.value.message and "(R1)" in refused.value.message
    result = await handle_of(env.client, service.username).result()
    assert result.stage == Stage.REFUSED  # the opening completed at once, nothing left running
    assert await store.pool.fetchval("SELECT count(*) FROM orders WHERE username = $1", service.username) == 0


async def test_r2_expired_service_is_reactivated_not_renewed(env, store, ingress):
    service = await new_service(store, expires_on=today() - timedelta(days=30))
    with pytest.raises(RenewalsError, match="reactivated, not renewed"):
        await open_cart(ingress, service.username, "renew")
    cart = await open_cart(ingress, service.username, "reactivate")
    assert (cart.stage, cart.mode, cart.expires_on) == (Stage.CART, "reactivate", service.expires_on)


async def test_r2_reactivate_refused_after_90_days(env, store, ingress):
    service = await new_service(store, expires_on=today() - timedelta(days=91))
    with pytest.raises(RenewalsError) as refused:
        await open_cart(ingress, service.username, "reactivate")
    assert refused.value.status == 409 and "ceased" in refused.value.message


async def test_r2_reactivate_refused_on_an_active_service(env, store, ingress):
    service = await new_service(store)
    with pytest.raises(RenewalsError, match="renewed, not reactivated"):
        await open_cart(ingress, service.username, "reactivate")


async def test_p9_service_expiring_today_in_rome_is_still_renewable(env, store, ingress):
    service = await new_service(store, expires_on=today())
    cart = await open_cart(ingress, service.username, "renew")
    assert cart.mode == "renew" and cart.stage == Stage.CART


async def test_unknown_username_is_refused_with_404(env, store, ingress):
    with pytest.raises(RenewalsError) as refused:
        await open_cart(ingress, "nobody-here")
    assert refused.value.status == 404


# ---------------------------------------------------------------------- R3, R4, P6, P8: the cart


async def test_r3_cart_shows_active_addons_available_ones_and_changes(env, store, ingress):
    service = await new_service(store, addons=[AddonQuantity(addon="extra_users", quantity=2)])
    cart = await open_cart(ingress, service.username)
    assert cart.username == service.username and cart.expires_on == service.expires_on
    assert cart.active_addons == [AddonQuantity(addon="extra_users", quantity=2)]
    assert [line.addon for line in cart.available_addons] == ["extra_storage"]
    # service 2500 + 2 users × 500 = 3500 net, VAT 770
    assert (cart.quote.net_cents, cart.quote.vat_cents, cart.quote.total_cents) == (3500, 770, 4270)

    added = await ingress.panel(
        AddonAdded(type="addon_added", username=service.username, addon="extra_storage", quantity=2)
    )
    assert isinstance(added, CartView)
    assert added.cart_addons == [AddonQuantity(addon="extra_storage", quantity=2)]
    assert added.available_addons == []
    assert added.quote.net_cents == 5500  # + 2 packs × 1000

    removed = await ingress.panel(AddonRemoved(type="addon_removed", username=service.username, addon="extra_storage"))
    assert isinstance(removed, CartView)
    assert removed.cart_addons == [] and removed.quote.net_cents == 3500
    with pytest.raises(RenewalsError) as refused:
        await ingress.panel(AddonRemoved(type="addon_removed", username=service.username, addon="extra_storage"))
    assert refused.value.status == 422


async def test_r3_p6_discount_code_applied_only_when_valid(env, store, ingress):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    for code, words in (("OLD20", "expired on 2024-12-31"), ("NOSUCH", "does not exist")):
        with pytest.raises(RenewalsError) as refused:
            await ingress.panel(DiscountCodeApplied(type="discount_code_applied", username=service.username, code=code))
        assert refused.value.status == 422 and words in refused.value.message
    cart = await ingress.panel(
        DiscountCodeApplied(type="discount_code_applied", username=service.username, code="partner10")
    )
    assert isinstance(cart, CartView)
    assert cart.discount is not None and (cart.discount.code, cart.discount.percent_off) == ("PARTNER10", 10)
    # 2500 − 250 = 2250, VAT 22 % = 495, total 2745
    assert cart.quote.model_dump() == {"net_cents": 2500, "discount_cents": 250, "vat_cents": 495, "total_cents": 2745}


async def test_r4_storage_alert_red_with_packs_suggested(env, store, ingress):
    # 950 of 1000 MB used after 300 days: 95 %, red; ~3.17 MB/day until expiry + 1 year.
    service = await new_service(store, storage_quota_mb=1000, storage_used_mb=950)
    cart = await open_cart(ingress, service.username)
    alert = cart.storage_alert
    assert alert is not None and alert.level == "red" and alert.usage_percent == 95.0
    assert alert.estimated_extra_mb > 0 and alert.suggested_packs == 2
    assert AddonQuantity(addon="extra_storage", quantity=2) in cart.available_addons


async def test_r4_no_alert_at_40_percent(env, store, ingress):
    service = await new_service(store)
    assert (await open_cart(ingress, service.username)).storage_alert is None


async def test_p8_renew_pressed_twice_returns_the_cart_already_open(env, store, ingress):
    service = await new_service(store)
    first = await open_cart(ingress, service.username)
    await ingress.panel(AddonAdded(type="addon_added", username=service.username, addon="extra_users", quantity=1))
    again = await open_cart(ingress, service.username)
    assert again.cart_addons == [AddonQuantity(addon="extra_users", quantity=1)]
    assert again.expires_on == first.expires_on
    runs = [w async for w in env.client.list_workflows(f"WorkflowId = 'renewal-{service.username}'")]
    assert len(runs) == 1


# ---------------------------------------------------------------------- R5, R6: checkout


async def test_r5_promotional_product_allows_only_one_or_two_years(env, store, ingress):
    service = await new_service(store, promotional=True)
    cart = await open_cart(ingress, service.username)
    assert cart.allowed_years == [1, 2]
    handle = handle_of(env.client, service.username)
    before = [e async for e in handle.fetch_history_events()]
    with pytest.raises(RenewalsError) as refused:
        await checkout(ingress, service.username, years=3)
    assert refused.value.status == 422
    assert "years must be 1 or 2 for a promotional product (R5), got 3" in refused.value.message
    # The validator refused it before anything was written to history.
    after = [e async for e in handle.fetch_history_events()]
    assert not any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED for e in after[len(before) :]
    )
    assert (await view(env.client, service.username)).stage == Stage.CART
    order = await checkout(ingress, service.username, years=2)
    assert order.years == 2


async def test_r6_checkout_confirms_the_order_and_emails_payment_instructions(env, store, ingress, mail_sink):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username, years=3, method="postal_slip")
    assert order.order_number.startswith(f"FE-{today().year}-") and len(order.order_number) == 14
    assert order.stage == Stage.AWAITING_PAYMENT
    assert order.total_cents == 9150  # 3 × 2500 = 7500 + VAT 1650
    assert order.payment_instructions.bank_transfer.reason.endswith(order.order_number)
    assert order.payment_instructions.postal_slip.reason.endswith(order.order_number)
    (mail,) = await emails_to(mail_sink, service.username, "come completare il pagamento")
    body = mail.get_payload(decode=True).decode()
    assert order.order_number in str(mail["Subject"])
    for detail in (
        "BONIFICO BANCARIO",
        "BOLLETTINO POSTALE",
        "€ 91,50",
        # P19: the RF reference and the order number, beside the IBAN.
        f"Causale: {causale(order.order_number)}",
    ):
        assert detail in body
    row = await order_row(store, order.order_number)
    assert (row["status"], row["total_cents"], row["years"]) == ("awaiting_payment", 9150, 3)
    with pytest.raises(RenewalsError) as refused:  # the cart is closed once the order exists
        await ingress.panel(AddonAdded(type="addon_added", username=service.username, addon="extra_users", quantity=1))
    assert refused.value.status == 409


async def test_r6_card_paid_at_once_gets_no_payment_instructions(env, store, ingress, mail_sink):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username, method="card")
    await pay(ingress, order.order_number, order.total_cents, method="card")
    assert (await handle_of(env.client, service.username).result()).stage == Stage.ACTIVATED
    await emails_to(mail_sink, service.username, "Rinnovo completato")
    assert not [s for s in subjects(mail_sink, service.username) if "come completare" in s]


async def test_r6_unpaid_paypal_order_gets_instructions_after_the_grace(env, store, ingress, mail_sink):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    await checkout(ingress, service.username, method="paypal")
    handle = handle_of(env.client, service.username)
    await env.fast_forward(handle, timedelta(minutes=14))
    assert not subjects(mail_sink, service.username)
    await env.fast_forward(handle, timedelta(minutes=1))
    await emails_to(mail_sink, service.username, "come completare il pagamento")


async def test_p6_order_lines_and_totals_in_integer_cents(env, store, ingress):
    service = await new_service(store, addons=[AddonQuantity(addon="extra_storage", quantity=1)])
    await open_cart(ingress, service.username)
    await ingress.panel(AddonAdded(type="addon_added", username=service.username, addon="extra_users", quantity=3))
    await ingress.panel(DiscountCodeApplied(type="discount_code_applied", username=service.username, code="PARTNER10"))
    order = await checkout(ingress, service.username, years=2)
    # (2500 + 1000 + 3 × 500) × 2 = 10000; −10 % = 9000; VAT 1980; total 10980
    assert (order.net_cents, order.discount_cents, order.vat_cents, order.total_cents) == (10000, 1000, 1980, 10980)
    lines = await store.pool.fetch(
        "SELECT product, quantity, years, net_cents FROM order_lines WHERE order_number = $1 ORDER BY line_no",
        order.order_number,
    )
    assert [tuple(line) for line in lines] == [
        ("service", 1, 2, 5000),
        ("extra_storage", 1, 2, 2000),
        ("extra_users", 3, 2, 3000),
    ]


# ---------------------------------------------------------------------- R7, P1, P5: payment and activation


@pytest.mark.parametrize("method", ["card", "paypal", "bank_transfer", "postal_slip"])
async def test_r7_p1_happy_path_for_each_payment_method(env, store, ingress, mail_sink, method):
    service = await new_service(store, addons=[AddonQuantity(addon="extra_users", quantity=1)])
    await open_cart(ingress, service.username)
    await ingress.panel(AddonAdded(type="addon_added", username=service.username, addon="extra_storage", quantity=1))
    order = await checkout(ingress, service.username, years=2, method=method)
    outcome = await pay(ingress, order.order_number, order.total_cents, method=method)
    assert (outcome.status, outcome.balance_cents) == ("applied", 0)
    result = await handle_of(env.client, service.username).result()
    new_expiry = add_years(service.expires_on, 2)  # P1: from the old expiry, not from today
    assert (result.stage, result.new_expires_on) == (Stage.ACTIVATED, new_expiry)
    renewed = await store.services.get(service.username)
    assert renewed is not None and renewed.expires_on == new_expiry
    assert renewed.auto_renew_years == 2  # R5: the term is also the next automatic renewal's
    assert {(a.addon, a.quantity) for a in renewed.addons} == {("extra_users", 1), ("extra_storage", 1)}
    row = await order_row(store, order.order_number)
    assert (row["status"], row["new_expires_on"]) == ("paid", new_expiry)
    (mail,) = await emails_to(mail_sink, service.username, "Rinnovo completato")
    assert new_expiry.strftime("%d/%m/%Y") in str(mail["Subject"])


async def test_p1_reactivation_extends_from_the_old_expiry(env, store, ingress):
    service = await new_service(store, expires_on=today() - timedelta(days=40))
    await open_cart(ingress, service.username, "reactivate")
    order = await checkout(ingress, service.username, years=1)
    await pay(ingress, order.order_number, order.total_cents)
    result = await handle_of(env.client, service.username).result()
    assert result.new_expires_on == add_years(service.expires_on, 1)


async def test_p5_partial_payments_accumulate_with_a_balance_email(env, store, ingress, mail_sink):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)  # 3050
    first = await pay(ingress, order.order_number, 1000)
    assert (first.status, first.paid_cents, first.balance_cents) == ("partial", 1000, 2050)
    (mail,) = await emails_to(mail_sink, service.username, "pagamento parziale")
    assert "Saldo da pagare: € 20,50" in mail.get_payload(decode=True).decode()
    assert (await view(env.client, service.username)).stage == Stage.AWAITING_PAYMENT
    second = await pay(ingress, order.order_number, 2050)
    assert (second.status, second.paid_cents, second.balance_cents) == ("applied", 3050, 0)
    assert (await handle_of(env.client, service.username).result()).stage == Stage.ACTIVATED
    statuses = await store.pool.fetch(
        "SELECT status FROM payments WHERE order_number = $1 ORDER BY amount_cents", order.order_number
    )
    assert [row["status"] for row in statuses] == ["partial", "applied"]


async def test_p5_overpayment_activates_and_is_flagged_for_refund(env, store, ingress, mail_sink):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)
    outcome = await pay(ingress, order.order_number, order.total_cents + 500, txn=f"over-{service.username}")
    assert (outcome.status, outcome.refund_cents) == ("overpaid", 500)
    assert (await handle_of(env.client, service.username).result()).stage == Stage.ACTIVATED
    row = await store.pool.fetchrow(
        "SELECT status, refund_cents FROM payments WHERE transaction_id = $1", outcome.transaction_id
    )
    assert (row["status"], row["refund_cents"]) == ("overpaid", 500)
    (mail,) = await emails_to(mail_sink, service.username, "Rinnovo completato")
    assert "€ 5,00 in più" in mail.get_payload(decode=True).decode()


async def test_p5_repeated_transaction_id_changes_nothing(env, store, ingress):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)
    txn = f"dup-{service.username}"
    first = await pay(ingress, order.order_number, 1000, txn=txn)
    again = await pay(ingress, order.order_number, 1000, txn=txn)
    assert (first.status, again.status) == ("partial", "duplicate")
    assert again.paid_cents == 1000 and again.balance_cents == order.total_cents - 1000
    current = await view(env.client, service.username)
    assert current.order is not None and current.order.paid_cents == 1000
    assert await store.pool.fetchval("SELECT count(*) FROM payments WHERE order_number = $1", order.order_number) == 1


async def test_p5_a_transaction_id_reused_for_another_payment_is_refused(env, store, ingress):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)
    txn = f"reuse-{service.username}"
    await pay(ingress, order.order_number, 1000, txn=txn)
    with pytest.raises(RenewalsError) as refused:
        await pay(ingress, order.order_number, 2050, txn=txn)
    assert refused.value.status == 409 and "already registered" in refused.value.message
    current = await view(env.client, service.username)
    assert current.order is not None and current.order.paid_cents == 1000


# ---------------------------------------------------------------------- P2, P3, P10: time passes


async def test_p2_reminders_arrive_3_7_and_14_days_after_the_order(env, store, ingress, mail_sink):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)
    handle = handle_of(env.client, service.username)
    await emails_to(mail_sink, service.username, "come completare")
    await env.fast_forward(handle, timedelta(days=2, hours=23))
    assert not [s for s in subjects(mail_sink, service.username) if "Promemoria" in s]
    for day_total, (step, count) in zip(
        (3, 7, 14), ((timedelta(hours=1), 1), (timedelta(days=4), 2), (timedelta(days=7), 3)), strict=True
    ):
        await env.fast_forward(handle, step)
        await emails_to(mail_sink, service.username, "Promemoria", count=count)
        assert (await view(env.client, service.username)).stage == Stage.AWAITING_PAYMENT, f"day {day_total}"
    keys = (await view(env.client, service.username)).emails
    assert [k for k in keys if ":reminder:" in k] == [f"{order.order_number}:reminder:{n}" for n in (1, 2, 3)]


async def test_p2_payment_between_first_and_second_reminder_stops_the_second(env, store, ingress, mail_sink):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)
    handle = handle_of(env.client, service.username)
    await env.fast_forward(handle, timedelta(days=3))
    await emails_to(mail_sink, service.username, "Promemoria")
    await pay(ingress, order.order_number, order.total_cents)
    assert (await handle.result()).stage == Stage.ACTIVATED
    reminders = [s for s in subjects(mail_sink, service.username) if "Promemoria" in s]
    assert len(reminders) == 1


async def test_p3_unpaid_order_lapses_at_the_deadline_and_the_customer_is_told(env, store, ingress, mail_sink):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)
    handle = handle_of(env.client, service.username)
    await env.fast_forward(handle, timedelta(days=29))
    assert (await view(env.client, service.username)).stage == Stage.AWAITING_PAYMENT
    await env.fast_forward(handle, timedelta(days=1, hours=1))
    result = await handle.result()
    assert result.stage == Stage.ORDER_EXPIRED
    assert (await order_row(store, order.order_number))["status"] == "expired"
    await emails_to(mail_sink, service.username, "annullato per mancato pagamento")
    assert len([s for s in subjects(mail_sink, service.username) if "Promemoria" in s]) == 3
    renewed = await store.services.get(service.username)
    assert renewed is not None and renewed.expires_on == service.expires_on


async def test_p3_reactivation_deadline_never_passes_the_90_day_window(env, store, ingress):
    service = await new_service(store, expires_on=today() - timedelta(days=80))
    await open_cart(ingress, service.username, "reactivate")
    order = await checkout(ingress, service.username)
    # The end of day 90 after expiry (R2), 11 days away, sooner than the 30-day deadline.
    window_end = start_of_day(service.expires_on + timedelta(days=91))
    assert order.due_by == window_end
    with pytest.raises(RenewalsError) as refused:
        await ingress.extend(service.username, 5, "customer asked")
    assert refused.value.status == 409 and "reactivation window" in refused.value.message


@pytest.mark.parametrize("days_after_expiry", [89, 90])
async def test_r2_reactivation_on_day_89_and_90_checks_out_with_the_deadline_at_the_end_of_day_90(
    env, store, ingress, days_after_expiry
):
    service = await new_service(store, expires_on=today() - timedelta(days=days_after_expiry))
    assert (await ingress.service(service.username)).action == "reactivate"
    await open_cart(ingress, service.username, "reactivate")
    order = await checkout(ingress, service.username)
    assert order.due_by == start_of_day(service.expires_on + timedelta(days=91))


async def test_r2_reactivate_refused_on_day_91(env, store, ingress):
    service = await new_service(store, expires_on=today() - timedelta(days=91))
    status = await ingress.service(service.username)
    assert (status.status, status.action) == ("ceased", None)
    with pytest.raises(RenewalsError) as refused:
        await open_cart(ingress, service.username, "reactivate")
    assert refused.value.status == 409 and "ceased" in refused.value.message


async def test_r2_reactivation_cart_cannot_check_out_once_the_window_closed(env, store, ingress):
    service = await new_service(store, expires_on=today() - timedelta(days=86))
    await open_cart(ingress, service.username, "reactivate")
    # Day 91 after expiry, before the cart's 7 idle days run out (P4).
    await env.fast_forward(handle_of(env.client, service.username), timedelta(days=5))
    with pytest.raises(RenewalsError) as refused:
        await checkout(ingress, service.username)
    assert refused.value.status == 409 and "reactivation window closed" in refused.value.message
    assert await store.pool.fetchval("SELECT count(*) FROM orders WHERE username = $1", service.username) == 0


async def test_p10_late_payment_after_lapse_is_unmatched_and_revives_nothing(env, store, ingress):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)
    handle = handle_of(env.client, service.username)
    await env.fast_forward(handle, timedelta(days=31))
    assert (await handle.result()).stage == Stage.ORDER_EXPIRED
    late = await pay(ingress, order.order_number, order.total_cents)
    assert late.status == "unmatched"
    row = await store.pool.fetchrow("SELECT status, note FROM payments WHERE transaction_id = $1", late.transaction_id)
    assert row["status"] == "unmatched" and "closed" in row["note"]
    assert (await order_row(store, order.order_number))["status"] == "expired"
    renewed = await store.services.get(service.username)
    assert renewed is not None and renewed.expires_on == service.expires_on


async def test_p10_payment_for_an_old_order_does_not_pay_the_new_one(env, store, ingress):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    old = await checkout(ingress, service.username)
    await env.fast_forward(handle_of(env.client, service.username), timedelta(days=31))
    await wait_stage(env.client, service.username, Stage.ORDER_EXPIRED)
    await open_cart(ingress, service.username)
    new = await checkout(ingress, service.username)
    assert new.order_number != old.order_number
    late = await pay(ingress, old.order_number, old.total_cents)
    assert late.status == "unmatched"
    current = await view(env.client, service.username)
    assert current.order is not None and current.order.paid_cents == 0 and current.stage == Stage.AWAITING_PAYMENT


# ---------------------------------------------------------------------- P4: idle cart


async def test_p4_idle_cart_is_abandoned_after_7_days(env, store, ingress):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    handle = handle_of(env.client, service.username)
    await env.fast_forward(handle, timedelta(days=5))
    await ingress.panel(AddonAdded(type="addon_added", username=service.username, addon="extra_users", quantity=1))
    await env.fast_forward(handle, timedelta(days=5))
    assert (await view(env.client, service.username)).stage == Stage.CART  # the change restarted the wait
    await env.fast_forward(handle, timedelta(days=2, hours=1))
    result = await handle.result()
    assert result.stage == Stage.CART_ABANDONED and "idle" in (result.reason or "")
    assert await store.pool.fetchval("SELECT count(*) FROM orders WHERE username = $1", service.username) == 0


# ---------------------------------------------------------------------- ops


async def test_ops_cancel_order_closes_it_and_tells_the_customer(env, store, ingress, mail_sink):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    with pytest.raises(RenewalsError) as refused:  # nothing to cancel while in the cart
        await ingress.cancel(service.username, "customer asked")
    assert refused.value.status == 409 and "no order awaiting payment" in refused.value.message
    order = await checkout(ingress, service.username)
    cancelled = await ingress.cancel(service.username, "customer asked")
    assert cancelled.stage == Stage.CANCELLED
    assert (await order_row(store, order.order_number))["status"] == "cancelled"
    (mail,) = await emails_to(mail_sink, service.username, f"Ordine {order.order_number} annullato")
    assert "customer asked" in mail.get_payload(decode=True).decode()
    with pytest.raises(RenewalsError):
        await ingress.cancel(service.username, "again")


async def test_ops_extend_deadline_moves_the_lapse(env, store, ingress):
    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)
    extended = await ingress.extend(service.username, 10, "bank holiday")
    assert extended.due_by - order.due_by == timedelta(days=10)
    assert (await order_row(store, order.order_number))["due_by"] == extended.due_by
    handle = handle_of(env.client, service.username)
    await env.fast_forward(handle, timedelta(days=31))
    assert (await view(env.client, service.username)).stage == Stage.AWAITING_PAYMENT
    await env.fast_forward(handle, timedelta(days=10))
    assert (await handle.result()).stage == Stage.ORDER_EXPIRED


async def test_ops_payment_by_hand_is_written_to_the_ledger(env, store, ingress):
    from tests.conftest import payment

    service = await new_service(store)
    await open_cart(ingress, service.username)
    order = await checkout(ingress, service.username)
    outcome = await ingress.payment(payment(order.order_number, order.total_cents), by_hand=True)
    assert outcome.status == "applied"
    assert (await handle_of(env.client, service.username).result()).stage == Stage.ACTIVATED
    row = await store.pool.fetchrow(
        "SELECT status, by_hand FROM payments WHERE transaction_id = $1", outcome.transaction_id
    )
    assert (row["status"], row["by_hand"]) == ("applied", True)
