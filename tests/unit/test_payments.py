"""What a registered payment does to an order (P5) and how to pay one (R6)."""

from renewals.payments import apply_payment, instructions

ORDER = "FE-2025-000123"
TOTAL = 3050  # the demo service for one year: 2500 + 22 % VAT


def test_p5_partial_payment_leaves_a_balance():
    outcome = apply_payment(ORDER, "tx-1", TOTAL, paid_before=0, amount_cents=1000)
    # 3050 − 1000 = 2050 still due
    assert (outcome.status, outcome.paid_cents, outcome.balance_cents, outcome.refund_cents) == (
        "partial",
        1000,
        2050,
        0,
    )


def test_p5_partial_payments_accumulate_to_applied():
    outcome = apply_payment(ORDER, "tx-2", TOTAL, paid_before=1000, amount_cents=2050)
    assert (outcome.status, outcome.paid_cents, outcome.balance_cents, outcome.refund_cents) == (
        "applied",
        3050,
        0,
        0,
    )
    assert (outcome.order_number, outcome.transaction_id) == (ORDER, "tx-2")


def test_p5_full_payment_at_once_is_applied():
    assert apply_payment(ORDER, "tx-1", TOTAL, 0, TOTAL).status == "applied"


def test_p5_overpayment_activates_and_is_flagged_for_refund():
    outcome = apply_payment(ORDER, "tx-2", TOTAL, paid_before=1000, amount_cents=2100)
    # 1000 + 2100 = 3100, 50 over
    assert (outcome.status, outcome.paid_cents, outcome.balance_cents, outcome.refund_cents) == (
        "overpaid",
        3100,
        0,
        50,
    )


def test_p5_one_cent_short_is_still_partial():
    outcome = apply_payment(ORDER, "tx-1", TOTAL, 0, TOTAL - 1)
    assert (outcome.status, outcome.balance_cents) == ("partial", 1)


def test_r6_instructions_quote_the_order_number_for_transfer_and_postal_slip():
    found = instructions(ORDER, TOTAL)
    assert (found.order_number, found.amount_cents) == (ORDER, TOTAL)
    assert ORDER in found.bank_transfer.reason
    assert ORDER in found.postal_slip.reason
    assert found.bank_transfer.iban.startswith("IT")
