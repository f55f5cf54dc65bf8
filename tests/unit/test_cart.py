"""The cart (R3) and its view (DESIGN.md §5), on the demo price list."""

from datetime import date, timedelta

from renewals.cart import Cart
from renewals.records import AddonQuantity, DiscountCode, PriceList, Product, ServiceRecord
from renewals.types import MAX_ADDON_QUANTITY, Stage

TODAY = date(2025, 6, 1)
PRICES = PriceList(
    products={
        "service": Product(product="service", label="Servizio", unit_price_cents=2500),
        "extra_storage": Product(product="extra_storage", label="Spazio 1 GB", unit_price_cents=1000, unit_mb=1024),
        "extra_users": Product(product="extra_users", label="Utente", unit_price_cents=500),
    }
)
PARTNER10 = DiscountCode(code="PARTNER10", percent_off=10, valid_from=date(2020, 1, 1))


def cart(
    addons: tuple[AddonQuantity, ...] = (),
    used: int = 100,
    purchased_on: date = date(2020, 7, 1),
    expires_on: date = date(2025, 6, 30),
    promotional: bool = False,
    mode: str = "renew",
) -> Cart:
    record = ServiceRecord(
        username="mario.rossi",
        holder_name="Mario Rossi",
        holder_email="mario@example.it",
        promotional=promotional,
        purchased_on=purchased_on,
        expires_on=expires_on,
        auto_renew=False,
        storage_quota_mb=10000,
        storage_used_mb=used,
        addons=list(addons),
    )
    return Cart(mode=mode, service=record, prices=PRICES)


def pairs(lines: list[AddonQuantity]) -> list[tuple[str, int]]:
    return [(line.addon, line.quantity) for line in lines]


def test_r3_view_shows_username_expiry_active_and_available_addons():
    view = cart([AddonQuantity(addon="extra_users", quantity=2)]).view(Stage.CART, TODAY)
    assert (view.stage, view.mode, view.username) == (Stage.CART, "renew", "mario.rossi")
    assert view.expires_on == date(2025, 6, 30)
    assert pairs(view.active_addons) == [("extra_users", 2)]
    assert pairs(view.cart_addons) == []
    assert pairs(view.available_addons) == [("extra_storage", 1)]  # not bought yet
    assert (view.discount, view.storage_alert) == (None, None)
    assert view.allowed_years == list(range(1, 11))
    # 1 year: service 2500 + 2 users × 500 = 3500; VAT 770; total 4270 (active add-ons renew too).
    assert view.quote.model_dump() == {
        "net_cents": 3500,
        "discount_cents": 0,
        "vat_cents": 770,
        "total_cents": 4270,
    }


def test_r3_new_service_offers_both_addons():
    assert pairs(cart().view(Stage.CART, TODAY).available_addons) == [
        ("extra_storage", 1),
        ("extra_users", 1),
    ]


def test_r5_view_on_promotion_allows_one_or_two_years():
    assert cart(promotional=True).view(Stage.CART, TODAY).allowed_years == [1, 2]


def test_r3_adding_twice_accumulates():
    start = cart()
    twice = start.with_addon("extra_storage", 1).with_addon("extra_storage", 2)
    assert pairs(twice.added) == [("extra_storage", 3)]
    assert start.added == []  # each change is a new cart; the old one is untouched
    view = twice.view(Stage.CART, TODAY)
    assert pairs(view.cart_addons) == [("extra_storage", 3)]
    assert pairs(view.available_addons) == [("extra_users", 1)]
    # 2500 + 3 × 1000 = 5500; VAT 1210; total 6710
    assert view.quote.total_cents == 6710


def test_r3_cart_addons_keep_a_stable_order():
    both = cart().with_addon("extra_users", 1).with_addon("extra_storage", 1)
    assert pairs(both.added) == [("extra_storage", 1), ("extra_users", 1)]


def test_r3_removing_an_addon_makes_it_available_again():
    full = cart().with_addon("extra_users", 4).with_addon("extra_storage", 1)
    emptied = full.without_addon("extra_users")
    assert pairs(emptied.added) == [("extra_storage", 1)]
    assert not emptied.has_in_cart("extra_users") and emptied.has_in_cart("extra_storage")
    assert ("extra_users", 1) in pairs(emptied.view(Stage.CART, TODAY).available_addons)
    assert emptied.without_addon("extra_users") == emptied  # removing what is absent: no change


def test_r3_discount_shown_and_quoted():
    view = cart().model_copy(update={"discount": PARTNER10}).view(Stage.CART, TODAY)
    assert view.discount.model_dump() == {"code": "PARTNER10", "percent_off": 10, "product": None}
    # 2500 − 250 = 2250; VAT 495; total 2745
    assert (view.quote.discount_cents, view.quote.total_cents) == (250, 2745)


def test_r5_lines_follow_the_chosen_term():
    lines = cart([AddonQuantity(addon="extra_users", quantity=1)]).lines(years=3)
    # service 2500 × 3 = 7500; users 500 × 3 = 1500
    assert [(line.product, line.net_cents) for line in lines] == [
        ("service", 7500),
        ("extra_users", 1500),
    ]


def test_p1_renewed_until_counts_from_the_old_expiry_even_when_reactivating():
    expired = cart(mode="reactivate", expires_on=date(2024, 2, 29))
    assert expired.renewed_until(1) == date(2025, 2, 28)
    assert expired.renewed_until(2) == date(2026, 2, 28)


def test_r4_view_carries_the_alert_and_suggests_its_packs():
    # 8000 MB in 800 days = 10 MB/day; expiry 40 days away, renewal to 11 July 2026 (405 days):
    # 8000 + 4050 = 12050 -> 2050 MB over -> 3 packs of 1024 MB; 80 % used, lasts to expiry: yellow.
    view = cart(used=8000, purchased_on=TODAY - timedelta(days=800), expires_on=date(2025, 7, 11)).view(
        Stage.CART, TODAY
    )
    assert view.storage_alert.model_dump() == {
        "level": "yellow",
        "usage_percent": 80.0,
        "estimated_extra_mb": 2050,
        "suggested_packs": 3,
    }
    assert ("extra_storage", 3) in pairs(view.available_addons)


def test_issue12_a_storage_suggestion_past_the_add_on_limit_is_capped_at_the_limit():
    # 100 GB used of a 1 MB quota over one day: the estimate asks for far more packs than a service may hold.
    service = ServiceRecord(
        username="huge",
        holder_name="Huge",
        holder_email="huge@example.com",
        purchased_on=date(2026, 1, 1),
        expires_on=date(2026, 12, 31),
        auto_renew=False,
        storage_quota_mb=1,
        storage_used_mb=100_000_000,
    )
    view = Cart(mode="renew", service=service, prices=PRICES).view(Stage.CART, date(2026, 1, 2))
    assert view.storage_alert is not None and view.storage_alert.suggested_packs > MAX_ADDON_QUANTITY
    storage = [line for line in view.available_addons if line.addon == "extra_storage"]
    assert storage == [AddonQuantity(addon="extra_storage", quantity=MAX_ADDON_QUANTITY)]
