"""The renewal term (R5): 1 to 10 years, or 1 or 2 for a product on promotion."""

import pytest

from renewals.terms import allowed_years, years_refusal


def test_r5_allowed_years_one_to_ten():
    assert allowed_years(promotional=False) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_r5_allowed_years_on_promotion_one_or_two():
    assert allowed_years(promotional=True) == [1, 2]


def test_r5_allowed_years_is_a_fresh_list():
    # Views hand the list out; changing one view must not change the rule.
    allowed_years(promotional=True).append(3)
    assert allowed_years(promotional=True) == [1, 2]


@pytest.mark.parametrize("years", [1, 5, 10])
def test_r5_years_accepted(years):
    assert years_refusal(years, promotional=False) is None


@pytest.mark.parametrize("years", [0, 11, -1])
def test_r5_years_out_of_range_refused(years):
    expected = f"years must be between 1 and 10 (R5), got {years}"
    assert years_refusal(years, promotional=False) == expected


@pytest.mark.parametrize("years", [1, 2])
def test_r5_promotional_years_accepted(years):
    assert years_refusal(years, promotional=True) is None


def test_r5_promotional_three_years_refused():
    assert years_refusal(3, promotional=True) == ("years must be 1 or 2 for a promotional product (R5), got 3")
