"""What a registered payment does to an order (P5) and how to pay one (R6)."""

from renewals.models import (
    BankTransfer,
    PaymentInstructions,
    PaymentOutcome,
    PaymentStatus,
    PostalSlip,
)

# The provider's collection accounts. Dev placeholders (an example IBAN), shown in the
# payment-instructions email and the order view.
BENEFICIARY = "Renewals S.p.A."
IBAN = "IT60X0542811101000000123456"
POSTAL_ACCOUNT = "000012345678"


def payment_reason(order_number: str) -> str:
    return f"Rinnovo ordine {order_number}"


def instructions(order_number: str, amount_cents: int) -> PaymentInstructions:
    reason = payment_reason(order_number)
    return PaymentInstructions(
        order_number=order_number,
        amount_cents=amount_cents,
        bank_transfer=BankTransfer(beneficiary=BENEFICIARY, iban=IBAN, reason=reason),
        postal_slip=PostalSlip(account=POSTAL_ACCOUNT, beneficiary=BENEFICIARY, reason=reason),
    )


def apply_payment(
    order_number: str, transaction_id: str, total_cents: int, paid_before: int, amount_cents: int
) -> PaymentOutcome:
    """P5: partial payments accumulate, the full amount activates, an overpayment activates and
    is flagged for refund. Duplicates and closed orders never reach here."""
    paid = paid_before + amount_cents
    status: PaymentStatus
    if paid < total_cents:
        status = "partial"
    elif paid == total_cents:
        status = "applied"
    else:
        status = "overpaid"
    return PaymentOutcome(
        status=status,
        order_number=order_number,
        transaction_id=transaction_id,
        paid_cents=paid,
        balance_cents=max(total_cents - paid, 0),
        refund_cents=max(paid - total_cents, 0),
    )
