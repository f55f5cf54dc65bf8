"""The renewal term (R5): 1 to 10 years, or 1 or 2 for a product on promotion."""

ALL_YEARS = list(range(1, 11))
PROMOTIONAL_YEARS = [1, 2]


def allowed_years(promotional: bool) -> list[int]:
    return list(PROMOTIONAL_YEARS if promotional else ALL_YEARS)


def years_refusal(years: int, promotional: bool) -> str | None:
    """None when `years` is allowed, else the error naming the field and the rule."""
    if years in allowed_years(promotional):
        return None
    if promotional:
        return f"years must be 1 or 2 for a promotional product (R5), got {years}"
    return f"years must be between 1 and 10 (R5), got {years}"
