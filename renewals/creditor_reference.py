"""The order's ISO 11649 creditor reference (P19): made from its order number, printed for the payer
the way banks print it, and read back from a bank statement.

The reference is derived, never stored: its body is the order number's year and progressive, so
`FE-2026-000123` is `RF` + two check digits + `2026000123`, printed `RF46 2026 0001 23`.
The body is digits only, so it survives a payer typing it into any home-banking form, and it
reads back to exactly one order number (`order_number_of`): the year is the first four digits,
the progressive the rest (six digits, zero-padded as in the order number; a progressive past
999999 is written in full, without leading zeros). The check digits are ISO 11649's (ISO 7064
MOD 97-10), computed and checked with python-stdnum, so a mistyped digit is caught before any
order is looked up.
"""

import re

from stdnum import iso11649
from stdnum.iso7064 import mod_97_10

# FE-<year>-<progressive>: the progressive is six digits zero-padded (the database's order number),
# or more digits without a leading zero; the RF body holds at most 21 characters, so 4 + 17.
ORDER_NUMBER = re.compile(r"FE-(?P<year>\d{4})-(?P<progressive>\d{6}|[1-9]\d{6,16})")

# The separator in the payment reason: an ASCII hyphen with spaces, because a SEPA transfer's
# remittance accepts only the basic Latin set (a-z A-Z 0-9 / - ? : ( ) . , ' + space) and a payer
# copies the line from the email into the bank's form.
REASON_SEPARATOR = " - "


def _body(order_number: str) -> str:
    found = ORDER_NUMBER.fullmatch(order_number)
    if found is None:
        raise ValueError(
            f"order_number must be FE-<year>-<6 digits> to make a creditor reference (P19), got {order_number!r}"
        )
    return found["year"] + found["progressive"]


def creditor_reference(order_number: str) -> str:
    """The order's RF reference, compact: `creditor_reference("FE-2026-000123") == "RF462026000123"`.
    ValueError if `order_number` is not an order number."""
    body = _body(order_number)
    return "RF" + mod_97_10.calc_check_digits(body + "RF") + body


def printed(reference: str) -> str:
    """The reference in groups of four, as banks print it: `RF46 2026 0001 23`."""
    return str(iso11649.format(reference))


def order_number_of(reference: str) -> str | None:
    """The order number a reference was made from, or None if it is not a valid ISO 11649 reference
    or not one of ours. Accepts any spacing and case (`rf46 2026 0001 23`)."""
    if not isinstance(reference, str) or not iso11649.is_valid(reference):
        return None
    compact = str(iso11649.compact(reference))
    body = compact[4:]
    if not body.isdigit() or len(body) < 10:
        return None
    order_number = f"FE-{body[:4]}-{body[4:]}"
    if ORDER_NUMBER.fullmatch(order_number) is None:
        return None  # a progressive of 7+ digits with a leading zero: not one we make
    return order_number


def causale(order_number: str) -> str:
    """The payment reason the emails and pages print: `RF46 2026 0001 23 - FE-2026-000123`.
    Either half alone finds the order on the statement."""
    return f"{printed(creditor_reference(order_number))}{REASON_SEPARATOR}{order_number}"
