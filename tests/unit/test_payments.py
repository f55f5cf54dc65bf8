"""One decision per payment (P5, P10–P12): `Order.apply`, without Temporal."""

from datetime import UTC, datetime, timedelta

import pytest

from renewals.messages import PaymentEntry
from renewals.order import Order
from renewals.payments import instructions
from renewals.records import OrderLine, Quote

ORDERED = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
DUE = ORDERED + timedelta(days=30)
TOTAL = 3050


def order() -> Order:
    line = OrderLine(product="service", label="Servizio", quantity=1, years=1, unit_price_cents=2500, net_cents=2500)
    return Order(
        number="FE-2026-000001",
        years=1,
        method="bank_transfer",
        lines=[line],
        quote=Quote(net_cents=2500, discount_cents=0, vat_cents=550, total_cents=TOTAL),
        ordered_at=ORDERED,
        due_by=DUE,
    )


def entry(amount: int, txn: str = "tx-1", **fields: object) -> PaymentEntry:
    values: dict[str, object] = {
        "order_number": "FE-2026-000001",
        "transaction_id": txn,
        "amount_cents": amount,
        "method": "bank_transfer",
        "registered_at": ORDERED,
    }
    values.update(fields)
    return PaymentEntry.model_validate(values)


AT = ORDERED + timedelta(days=1)


def test_p5_partial_payments_accumulate_then_the_full_amount_applies():
    o = order()
    first = o.apply(entry(1000), AT, open=True)
    assert (first.status, first.paid_cents, first.balance_cents) == ("partial", 1000, 2050)
    second = o.apply(entry(2050, "tx-2"), AT, open=True)
    assert (second.status, second.paid_cents, second.balance_cents, second.refund_cents) == ("applied", TOTAL, 0, 0)
    assert o.is_paid


def test_p5_overpayment_activates_and_flags_the_refund():
    o = order()
    o.apply(entry(1000), AT, open=True)
    outcome = o.apply(entry(2100, "tx-2"), AT, open=True)
    assert (outcome.status, outcome.refund_cents) == ("overpaid", 50)


def test_p5_a_repeated_transaction_id_is_a_duplicate_and_changes_nothing():
    o = order()
    o.apply(entry(1000), AT, open=True)
    again = o.apply(entry(1000), AT, open=True)
    assert (again.status, again.paid_cents) == ("duplicate", 1000)
    assert len(o.payments) == 1


def test_p10_a_closed_order_takes_nothing():
    o = order()
    outcome = o.apply(entry(TOTAL), AT, open=False)
    assert outcome.status == "unmatched" and o.paid_cents == 0 and "closed" in (outcome.note or "")


def test_p11_a_foreign_currency_is_unmatched():
    o = order()
    outcome = o.apply(entry(TOTAL, currency="usd"), AT, open=True)
    assert outcome.status == "unmatched" and "USD" in (outcome.note or "") and o.paid_cents == 0


def test_p12_the_deadline_is_a_time_not_a_timer_firing():
    o = order()
    assert o.apply(entry(TOTAL), DUE, open=True).status == "applied"
    late = order().apply(entry(TOTAL), DUE + timedelta(microseconds=1), open=True)
    assert late.status == "unmatched" and "P12" in (late.note or "")


def test_a_payment_quoting_another_order_is_unmatched():
    outcome = order().apply(entry(TOTAL, order_number="Bonifico FE 2026 000001 Rossi"), AT, open=True)
    assert outcome.status == "unmatched"


@pytest.mark.parametrize("amounts", [[1], [3049, 1], [1000, 1000, 1050], [5000]])
def test_p5_balance_and_refund_never_go_negative(amounts):
    o = order()
    for number, amount in enumerate(amounts):
        o.apply(entry(amount, f"tx-{number}"), AT, open=True)
    assert o.balance_cents == max(TOTAL - sum(amounts), 0)
    assert o.refund_cents == max(sum(amounts) - TOTAL, 0)


def test_r6_instructions_quote_the_order_number():
    how = instructions("FE-2026-000001", TOTAL)
    assert how.bank_transfer.reason == "Rinnovo ordine FE-2026-000001"
    assert how.postal_slip.reason == how.bank_transfer.reason and how.amount_cents == TOTAL
