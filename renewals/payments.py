"""How to pay an order (R6): the provider's accounts and the reason to quote."""

from renewals.billing import Address, Seller
from renewals.views import BankTransfer, PaymentInstructions, PostalSlip

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


def dev_seller() -> Seller:
    """The seller of the local stack and the tests: dev-only placeholders (a made-up Partita IVA with
    a valid check digit, the demo IBAN). Production sets SELLER_* (settings.py): these are its defaults."""
    return Seller(
        name=BENEFICIARY,
        vat_number="12345670017",
        tax_regime="RF01",
        address=Address(street="Via dei Rinnovi 1", cap="00184", comune="Roma", provincia="RM"),
        iban=IBAN,
    )
