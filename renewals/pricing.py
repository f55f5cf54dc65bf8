"""Order lines, discount and VAT in integer euro cents (P6)."""

from datetime import date

from renewals.records import AddonQuantity, DiscountCode, OrderLine, PriceList, Quote

SERVICE = "service"
VAT_PERCENT = 22


def euro(cents: int | None) -> str:
    """1234567 → '€ 12.345,67' (Italian grouping and decimal comma), for emails and ops."""
    cents = cents or 0
    whole, rest = divmod(cents, 100)
    return f"€ {whole:,}".replace(",", ".") + f",{rest:02d}"


def half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, for non-negative integers (no floats near money)."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("half_up takes a non-negative numerator and a positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


def order_lines(
    prices: PriceList,
    active_addons: list[AddonQuantity],
    cart_addons: list[AddonQuantity],
    years: int,
) -> list[OrderLine]:
    """The service, the active add-ons that renew with it (R3) and the add-ons added to the cart."""
    quantities: list[tuple[str, int]] = [(SERVICE, 1)]
    quantities += [(line.addon, line.quantity) for line in active_addons]
    quantities += [(line.addon, line.quantity) for line in cart_addons]
    lines = []
    for product_name, quantity in quantities:
        product = prices.get(product_name)
        lines.append(
            OrderLine(
                product=product.product,
                label=product.label,
                quantity=quantity,
                years=years,
                unit_price_cents=product.unit_price_cents,
                net_cents=product.unit_price_cents * quantity * years,
            )
        )
    return lines


def quote(lines: list[OrderLine], discount: DiscountCode | None) -> Quote:
    """Net, discount (only on the code's product when it names one), VAT 22 % half-up, total."""
    net = sum(line.net_cents for line in lines)
    discounted_base = sum(
        line.net_cents for line in lines if discount is not None and discount.product in (None, line.product)
    )
    discount_cents = half_up(discounted_base * discount.percent_off, 100) if discount else 0
    vat = half_up((net - discount_cents) * VAT_PERCENT, 100)
    return Quote(
        net_cents=net,
        discount_cents=discount_cents,
        vat_cents=vat,
        total_cents=net - discount_cents + vat,
    )


def discount_refusal(code: str, found: DiscountCode | None, today: date) -> str | None:
    """None when the code can be applied today, else why not (R3)."""
    if found is None:
        return f"discount code {code!r} does not exist"
    if today < found.valid_from:
        return f"discount code {code!r} is valid only from {found.valid_from.isoformat()}"
    if found.valid_to is not None and today > found.valid_to:
        return f"discount code {code!r} expired on {found.valid_to.isoformat()}"
    return None
