"""The order's RF creditor reference (P19): made from the order number, printed, read back."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import iso11649

from renewals.creditor_reference import causale, creditor_reference, order_number_of, printed

# SEPA's basic Latin set: what a payer can type into any bank's remittance field.
SEPA_BASIC = re.compile(r"[A-Za-z0-9/\-?:().,'+ ]*")

order_numbers = st.builds(
    lambda year, progressive: f"FE-{year}-{progressive:06d}",
    st.integers(2000, 2099),
    st.one_of(st.integers(1, 999_999), st.integers(1_000_000, 10**17 - 1)),
)


def test_p19_the_reference_of_an_order_is_iso_11649_and_printed_as_banks_do():
    reference = creditor_reference("FE-2026-000123")
    assert reference == "RF462026000123"
    assert iso11649.is_valid(reference)
    assert printed(reference) == "RF46 2026 0001 23"
    assert order_number_of(reference) == "FE-2026-000123"


@settings(max_examples=50)
@given(order_numbers)
def test_p19_every_order_number_makes_a_valid_reference_that_reads_back(order_number):
    reference = creditor_reference(order_number)
    assert iso11649.validate(reference) == reference
    assert 5 <= len(reference) <= 25
    assert order_number_of(reference) == order_number
    assert order_number_of(printed(reference)) == order_number
    assert order_number_of(printed(reference).lower()) == order_number


def test_p19_a_reference_reads_back_in_any_spacing_or_case():
    for written in ("RF46 2026 0001 23", "rf46 2026 0001 23", " RF462026000123 ", "RF46-2026-0001-23"):
        assert order_number_of(written) == "FE-2026-000123", written


@settings(max_examples=50)
@given(order_numbers, st.data())
def test_p19_a_mistyped_digit_never_reads_as_an_order(order_number, data):
    reference = creditor_reference(order_number)
    at = data.draw(st.integers(2, len(reference) - 1))
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != reference[at]]))
    mistyped = reference[:at] + digit + reference[at + 1 :]
    # ISO 7064 MOD 97-10 catches every single substitution.
    assert order_number_of(mistyped) is None


def test_p19_references_that_are_not_ours_read_as_no_order():
    # Valid ISO 11649 references made by others: letters, a short body, a non-canonical progressive.
    assert iso11649.is_valid("RF18 5390 0754 7034")
    assert order_number_of("RF18 5390 0754 7034") is None  # "07547034": a zero-padded 8-digit progressive
    assert order_number_of("RF18 5390 0754 70Y") is None
    assert order_number_of("RF45 1234 5678") is None
    for junk in ("", "RF", "FE-2026-000123", "RF00 2026 0001 23", "hello"):
        assert order_number_of(junk) is None, junk


def test_p19_a_progressive_past_six_digits_is_written_in_full():
    reference = creditor_reference("FE-2026-1234567")
    assert reference.endswith("20261234567")
    assert order_number_of(reference) == "FE-2026-1234567"


def test_p19_only_an_order_number_makes_a_reference():
    for wrong in ("FE-26-000123", "FT-2026-000001", "FE-2026-123", "FE-2026-0123456", "fe-2026-000123", ""):
        with pytest.raises(ValueError, match=r"order_number must be FE-<year>-<6 digits>.*\(P19\)"):
            creditor_reference(wrong)


def test_p19_causale_names_the_reference_then_the_order_in_sepa_characters():
    line = causale("FE-2026-000123")
    assert line == "RF46 2026 0001 23 - FE-2026-000123"
    assert SEPA_BASIC.fullmatch(line)
    assert len(line) <= 140


@settings(max_examples=50)
@given(order_numbers)
def test_p19_causale_is_always_sepa_characters_within_140(order_number):
    line = causale(order_number)
    assert SEPA_BASIC.fullmatch(line)
    assert len(line) <= 140
    assert line.endswith(order_number)
