"""A declined card is not a lost customer (P20): charge outcomes as payment events, retries on
RENEWALS_CHARGE_RETRIES (1d, 3d, 7d after the first decline, never past the deadline), the
customer told at the first decline and after the last retry, a switch to bank transfer.

Real parts: the Temporal dev server with per-workflow time skipping, PostgreSQL, the SMTP sink; the
events go through the ingress's operations (the ledger, charge_outcomes, then the renewal).
"""

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from client.renewals import RenewalsError
from client.starts import start_auto_renewal
from renewals import TASK_QUEUE
from renewals.dates import start_of_day
from renewals.events import ChargeFailed, ChargeSucceeded
from renewals.links import link_refusal
from renewals.types import Stage
from settings import Settings
from tests.conftest import POLICY, eventually, new_service, pay, view
from tests.test_p16_auto_renew import body_of, mails, orders_of, subject


async def attempts(store: Any, order_number: str, count: int) -> list[str]:
    async def found() -> list[str]:
        rows = await store.pool.fetch(
            "SELECT attempt FROM charge_requests WHERE order_number = $1 ORDER BY requested_at, attempt", order_number
        )
        return [row["attempt"] for row in rows] if len(rows) >= count else []

    result: list[str] = await eventually(found, what=f"{count} charge request(s) for {order_number}")
    return result


async def auto_card_order(env: Any, store: Any, days: int = 30) -> tuple[Any, Any, str]:
    service = await new_service(
        store, auto_renew=True, auto_renew_method="card", expires_on=datetime.now(UTC).date() + timedelta(days=days)
    )
    handle = await start_auto_renewal(env.client, TASK_QUEUE, service.username, POLICY)
    order = await eventually(lambda: orders_of(store, service.username), what="the automatic order")
    return service, handle, order[0]["order_number"]


def declined(order_number: str, attempt: str, decline: str = "soft") -> ChargeFailed:
    return ChargeFailed.model_validate(
        {
            "type": "charge_failed",
            "order_number": order_number,
            "attempt": attempt,
            "decline": decline,
            "code": "51" if decline == "soft" else "54",
            "message": "Insufficient funds on card 4111 1111 1111 1111" if decline == "soft" else "Expired card",
        }
    )


def succeeded(order_number: str, attempt: str, amount_cents: int) -> ChargeSucceeded:
    return ChargeSucceeded.model_validate(
        {
            "type": "charge_succeeded",
            "order_number": order_number,
            "attempt": attempt,
            "transaction_id": f"psp-{attempt.replace('/', '-')}",
            "amount_cents": amount_cents,
            "currency": "EUR",
            "method": "card",
            "registered_at": datetime.now(UTC).isoformat(),
        }
    )


async def dunning_is(env: Any, username: str, state: str | None, charges: int) -> Any:
    async def seen() -> Any:
        shown = await view(env.client, username)
        return shown if shown.dunning == state and len(shown.charges) == charges else None

    return await eventually(seen, what=f"{username} in dunning state {state} with {charges} charge(s)")


async def test_p20_soft_soft_then_success_activates_once(env, store, ingress, mail_sink):
    service, handle, number = await auto_card_order(env, store)
    user = service.username
    (first,) = await attempts(store, number, 1)
    assert first == f"{number}/1"
    answer = await ingress.payment_event(declined(number, first))
    assert answer.status == "recorded"
    shown = await dunning_is(env, user, "retrying", 1)
    assert shown.next_charge_retry is not None

    async def in_dunning() -> bool:
        query = f"RenewalDunning = 'retrying' AND RenewalUsername = '{user}'"
        return any([found async for found in env.client.list_workflows(query)])

    await eventually(in_dunning, what="the renewal found by RenewalDunning")  # ops' one query
    (told,) = await mails(mail_sink, user, "Addebito non riuscito")
    body = body_of(told)
    assert "Riproveremo l'addebito il" in body and "4111" not in body  # no card data, ever
    # The link signs this customer in to the order's payment page until the deadline (P20).
    link = next(word for word in body.split() if f"/accesso/ordine/{number}?" in word)
    query = {key: values[0] for key, values in parse_qs(urlsplit(link).query).items()}
    secrets = Settings().panel_secrets
    assert link_refusal(secrets, urlsplit(link).path, user, query["e"], query["s"], 0) is None
    assert link_refusal(secrets, urlsplit(link).path, "someone-else", query["e"], query["s"], 0) is not None

    await env.fast_forward(handle, timedelta(days=1, minutes=1))
    second = (await attempts(store, number, 2))[1]
    assert second == f"{number}/2"
    await ingress.payment_event(declined(number, second))
    await dunning_is(env, user, "retrying", 2)
    await env.fast_forward(handle, timedelta(days=2, minutes=1))
    third = (await attempts(store, number, 3))[2]
    total = (await orders_of(store, user))[0]["total_cents"]
    paid = await ingress.payment_event(succeeded(number, third, total))
    assert paid.status == "applied"
    result = await handle.result()
    assert result.stage == Stage.ACTIVATED
    outcomes = await store.pool.fetch(
        "SELECT attempt, outcome, state FROM charge_outcomes WHERE order_number = $1 ORDER BY attempt", number
    )
    assert [(r["attempt"], r["outcome"], r["state"]) for r in outcomes] == [
        (first, "failed", "delivered"),
        (second, "failed", "delivered"),
        (third, "succeeded", "delivered"),
    ]
    # One email per event: the first decline only (the second was a retry, not the last).
    assert len([m for m in mail_sink.to(f"{user}@example.com") if "non riuscito" in subject(m)]) == 1
    # The paid attempt's outcome again, as a decline: one outcome per attempt, nothing changes.
    assert (await ingress.payment_event(declined(number, third))).status == "duplicate"


async def test_p20_four_soft_declines_then_the_deadline_lapses_with_one_expired_email(env, store, ingress, mail_sink):
    service, handle, number = await auto_card_order(env, store, days=20)
    user = service.username
    for n, wait in enumerate([timedelta(days=1), timedelta(days=2), timedelta(days=4)], start=1):
        attempt = (await attempts(store, number, n))[-1]
        await ingress.payment_event(declined(number, attempt))
        await dunning_is(env, user, "retrying", n)
        await env.fast_forward(handle, wait + timedelta(minutes=1))
    fourth = (await attempts(store, number, 4))[-1]
    assert fourth == f"{number}/4"
    await ingress.payment_event(declined(number, fourth))
    await dunning_is(env, user, "exhausted", 4)
    (last,) = await mails(mail_sink, user, "Ultimo tentativo")
    assert "Non riproveremo l'addebito" in body_of(last)
    info = await handle.describe()
    end = start_of_day(service.expires_on + timedelta(days=1))
    await env.fast_forward(handle, end - info.start_time)
    result = await handle.result()
    assert result.stage == Stage.ORDER_EXPIRED
    subjects = [subject(m) for m in mail_sink.to(f"{user}@example.com")]
    assert sum("è scaduto" in s for s in subjects) == 1
    assert sum("Addebito non riuscito" in s for s in subjects) == 1
    assert sum("Ultimo tentativo" in s for s in subjects) == 1
    assert len(await attempts(store, number, 4)) == 4  # no retry past the schedule
    # The day after the expiry, the panel offers Reactivate (P16, R2).
    status = await ingress.service(user, now=end + timedelta(hours=12))
    assert status.action == "reactivate", status


async def test_p20_hard_decline_skips_retries_and_the_customer_pays_by_bank_transfer(env, store, ingress, mail_sink):
    service, handle, number = await auto_card_order(env, store)
    user = service.username
    (first,) = await attempts(store, number, 1)
    await ingress.payment_event(declined(number, first, "hard"))
    shown = await dunning_is(env, user, "hard_decline", 1)
    assert shown.next_charge_retry is None
    (told,) = await mails(mail_sink, user, "Addebito non riuscito")
    assert "Non riproveremo" in body_of(told)
    await env.fast_forward(handle, timedelta(days=2))
    assert len(await attempts(store, number, 1)) == 1  # no retry after a hard decline
    changed = await ingress.pay_by_transfer(user, number)
    assert changed.payment_method == "bank_transfer"
    (instructions,) = await mails(mail_sink, user, "come completare il pagamento")
    assert number in body_of(instructions)
    await dunning_is(env, user, "switched_to_transfer", 1)
    order = (await orders_of(store, user))[0]
    assert order["payment_method"] == "bank_transfer"
    paid = await pay(ingress, number, order["total_cents"], method="bank_transfer")
    assert paid.status == "applied"
    assert (await handle.result()).stage == Stage.ACTIVATED


async def test_p20_duplicate_out_of_order_and_unknown_outcomes_change_nothing(env, store, ingress, mail_sink):
    service, handle, number = await auto_card_order(env, store)
    user = service.username
    (first,) = await attempts(store, number, 1)
    assert (await ingress.payment_event(declined(number, first))).status == "recorded"
    assert (await ingress.payment_event(declined(number, first))).status == "duplicate"
    unknown = await ingress.payment_event(declined(number, f"{number}/9"))
    assert unknown.status == "ignored" and "no charge" in (unknown.note or "")
    nobody = await ingress.payment_event(declined("FE-1999-000001", "FE-1999-000001/1"))
    assert nobody.status == "ignored" and "no order" in (nobody.note or "")
    await dunning_is(env, user, "retrying", 1)
    await env.fast_forward(handle, timedelta(days=1, minutes=1))
    second = (await attempts(store, number, 2))[1]
    # The first attempt's outcome again, late: recorded before, so a duplicate; the retry stands.
    assert (await ingress.payment_event(declined(number, first, "hard"))).status == "duplicate"
    shown = await dunning_is(env, user, "retrying", 2)
    assert shown.charges[1].id == second and shown.charges[1].decline is None
    repeats = await store.pool.fetchval("SELECT repeats FROM charge_outcomes WHERE attempt = $1", first)
    assert repeats == 2
    # The customer may not ask for a new charge while one waits for its answer.
    try:
        await ingress.retry_charge(user, number)
        raise AssertionError("a second charge while one is pending")
    except RenewalsError as refused:
        assert "still waiting" in refused.message
    await ingress.payment_event(declined(number, second))
    await dunning_is(env, user, "retrying", 2)
    asked = await ingress.retry_charge(user, number)
    assert asked.order_number == number
    shown = await dunning_is(env, user, "retrying", 3)
    assert shown.charges[2].why == "asked by the customer"
    # Paid by another way while that charge is pending: its decline, late, changes nothing.
    total = (await orders_of(store, user))[0]["total_cents"]
    assert (await pay(ingress, number, total, method="bank_transfer")).status == "applied"
    assert (await handle.result()).stage == Stage.ACTIVATED
    late = await ingress.payment_event(declined(number, shown.charges[2].id))
    assert late.status == "ignored" and "paid" in (late.note or "")
    emails = [subject(m) for m in mail_sink.to(f"{user}@example.com")]
    assert sum("non riuscito" in s for s in emails) == 1
