"""Order lines, discount and VAT in integer euro cents (P6), on the demo price list (§5)."""

from datetime import date

import pytest

from renewals.pricing import discount_refusal, half_up, order_lines, quote
from renewals.records import AddonQuantity, DiscountCode, PriceList, Product

PARTNER10 = DiscountCode(code="PARTNER10", percent_off=10, valid_from=date(2020, 1, 1))
OLD20 = DiscountCode(code="OLD20", percent_off=20, valid_from=date(2020, 1, 1), valid_to=date(2024, 12, 31))


def prices(service: int = 2500, storage: int = 1000, users: int = 500) -> PriceList:
    """The demo price list by default (EUR cents per year, net of VAT)."""
    return PriceList(
        products={
            "service": Product(product="service", label="Servizio", unit_price_cents=service),
            "extra_storage": Product(
                product="extra_storage", label="Spazio 1 GB", unit_price_cents=storage, unit_mb=1024
            ),
            "extra_users": Product(product="extra_users", label="Utente", unit_price_cents=users),
        }
    )


def storage(quantity: int) -> AddonQuantity:
    return AddonQuantity(addon="extra_storage", quantity=quantity)


def users(quantity: int) -> AddonQuantity:
    return AddonQuantity(addon="extra_users", quantity=quantity)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (5, 2, 3),  # 2.5 -> 3 (Python's round() would give 2)
        (1, 2, 1),  # 0.5 -> 1
        (149, 100, 1),  # 1.49 -> 1
        (150, 100, 2),  # 1.50 -> 2
        (0, 7, 0),
        (7, 7, 1),
    ],
)
def test_p6_half_up(numerator, denominator, expected):
    assert half_up(numerator, denominator) == expected


@pytest.mark.parametrize(("numerator", "denominator"), [(-1, 2), (1, 0), (1, -2)])
def test_p6_half_up_refuses_negatives_and_zero_denominator(numerator, denominator):
    with pytest.raises(ValueError):
        half_up(numerator, denominator)


def test_r3_order_lines_service_active_and_cart_addons_for_the_term():
    lines = order_lines(prices(), [users(2)], [storage(1)], years=2)
    # service 2500×1×2 = 5000; users 500×2×2 = 2000; storage 1000×1×2 = 2000
    assert [(line.product, line.quantity, line.years, line.net_cents) for line in lines] == [
        ("service", 1, 2, 5000),
        ("extra_users", 2, 2, 2000),
        ("extra_storage", 1, 2, 2000),
    ]


def test_p6_unknown_product_is_an_error():
    price_list = PriceList(products={"service": prices().products["service"]})
    with pytest.raises(ValueError, match="'extra_users' is not in the price list"):
        order_lines(price_list, [users(1)], [], years=1)


def test_p6_demo_service_one_year_without_discount():
    # 2500 net; VAT 2500 × 22 % = 550; total 3050.
    assert quote(order_lines(prices(), [], [], 1), None).model_dump() == {
        "net_cents": 2500,
        "discount_cents": 0,
        "vat_cents": 550,
        "total_cents": 3050,
    }


def test_p6_partner10_discount_then_vat_on_discounted_net():
    lines = order_lines(prices(), [users(2)], [storage(1)], 1)
    # net 2500 + 1000 + 1000 = 4500; 10 % = 450; VAT (4500 − 450) × 22 % = 891; total 4941.
    assert quote(lines, PARTNER10).model_dump() == {
        "net_cents": 4500,
        "discount_cents": 450,
        "vat_cents": 891,
        "total_cents": 4941,
    }


def test_p6_discount_restricted_to_a_product():
    code = DiscountCode(code="SPACE20", percent_off=20, valid_from=date(2020, 1, 1), product="extra_storage")
    lines = order_lines(prices(), [], [storage(1)], 1)
    # only storage 1000 is discounted: 200; VAT (3500 − 200) × 22 % = 726; total 4026.
    assert quote(lines, code).model_dump() == {
        "net_cents": 3500,
        "discount_cents": 200,
        "vat_cents": 726,
        "total_cents": 4026,
    }


def test_p6_discount_for_a_product_not_in_the_order_takes_nothing():
    code = DiscountCode(code="USERS50", percent_off=50, valid_from=date(2020, 1, 1), product="extra_users")
    assert quote(order_lines(prices(), [], [], 1), code).discount_cents == 0


def test_p6_vat_rounds_half_up():
    # service 1250, 10 % = 125; VAT 1125 × 22 % = 247.5 -> 248 (on the gross 1250 it'd be 275).
    assert quote(order_lines(prices(service=1250), [], [], 1), PARTNER10).model_dump() == {
        "net_cents": 1250,
        "discount_cents": 125,
        "vat_cents": 248,
        "total_cents": 1373,
    }


def test_p6_discount_rounds_half_up():
    # service 2505, 10 % = 250.5 -> 251; VAT 2254 × 22 % = 495.88 -> 496; total 2750.
    assert quote(order_lines(prices(service=2505), [], [], 1), PARTNER10).model_dump() == {
        "net_cents": 2505,
        "discount_cents": 251,
        "vat_cents": 496,
        "total_cents": 2750,
    }


def test_p6_vat_rounds_once_per_order_not_per_line():
    # Two lines of 25: per line 5.5 -> 6 each (12); per order 50 × 22 % = 11.
    q = quote(order_lines(prices(service=25, users=25), [users(1)], [], 1), None)
    assert (q.vat_cents, q.total_cents) == (11, 61)


def test_p6_partner10_valid_today():
    assert discount_refusal("PARTNER10", PARTNER10, date(2025, 6, 1)) is None


def test_p6_old20_expired():
    assert discount_refusal("OLD20", OLD20, date(2025, 1, 1)) == ("discount code 'OLD20' expired on 2024-12-31")


def test_p6_discount_valid_on_its_last_day():
    assert discount_refusal("OLD20", OLD20, date(2024, 12, 31)) is None


def test_p6_discount_not_yet_valid():
    code = DiscountCode(code="NEXT", percent_off=5, valid_from=date(2026, 1, 1))
    assert "valid only from 2026-01-01" in discount_refusal("NEXT", code, date(2025, 12, 31))


def test_p6_unknown_discount_code():
    assert discount_refusal("NOPE", None, date(2025, 6, 1)) == "discount code 'NOPE' does not exist"
