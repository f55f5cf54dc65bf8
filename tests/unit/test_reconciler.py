"""What ops read of a reconciler's run (I2), and the note on a payment that reaches a closed
renewal on time (P10, P12): pure functions, without Temporal."""

from datetime import UTC, datetime, timedelta

from client.payments import closed_note
from renewals.calls import OrderOwner
from renewals.messages import PaymentEntry, Reconciled, StuckPayment
from workflows.reconciler import details

DUE = datetime(2026, 12, 27, 23, 0, tzinfo=UTC)


def entry(received_at: datetime) -> PaymentEntry:
    return PaymentEntry.model_validate(
        {
            "order_number": "FE-2026-000001",
            "transaction_id": "tx-1",
            "amount_cents": 3050,
            "method": "bank_transfer",
            "registered_at": received_at,
            "received_at": received_at,
        }
    )


def owner(status: str) -> OrderOwner:
    return OrderOwner(username="mario", total_cents=3050, paid_cents=0, status=status, due_by=DUE)


def test_i2_details_name_each_stuck_payment_with_its_attempts_and_error():
    stuck = StuckPayment(
        transaction_id="tx-9",
        order_number="FE-2026-000009",
        amount_cents=3050,
        attempts=5,
        last_error="no answer from the renewal in time (row_timeout 10 s)",
        stuck_since=DUE,
    )
    text = details(Reconciled(found=3, statuses={"applied": 2}, failed=1, stuck_total=1, stuck=[stuck]))
    assert "**Outcomes:** applied 2" in text and "**Failed:** 1" in text
    assert "**Stuck:** 1 payment(s)" in text
    assert "tx-9" in text and "FE-2026-000009" in text and "5 attempts" in text and "row_timeout 10 s" in text


def test_i2_details_say_none_is_stuck():
    assert "**Stuck:** none" in details(Reconciled(found=0))


def test_p12_a_payment_on_time_for_a_lapsed_order_is_flagged_for_ops():
    note = closed_note(entry(DUE - timedelta(seconds=1)), owner("expired"))
    assert "closed (P10)" in note and "received on time" in note


def test_p10_a_late_payment_or_a_cancelled_order_is_only_closed():
    assert closed_note(entry(DUE + timedelta(seconds=1)), owner("expired")) == "order FE-2026-000001 is closed (P10)"
    assert closed_note(entry(DUE - timedelta(days=1)), owner("cancelled")) == "order FE-2026-000001 is closed (P10)"
