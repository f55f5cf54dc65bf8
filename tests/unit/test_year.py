"""P15, P16 as pure rules: what falls on a Rome day, and a service's next dates."""

from datetime import date, timedelta

import pytest

from renewals.year import AUTO_RENEW, CEASED, EXPIRED, Due, YearPolicy, due_on, next_dates, notice_key
from settings import ConfigurationError, load_settings

POLICY = YearPolicy()
DAY = date(2027, 3, 28)  # the spring DST change in Rome: calendar days, not 24-hour spans


def test_p15_p16_what_falls_on_a_day() -> None:
    found = {(due.kind, due.auto_renew): due.expires_on for due in due_on(DAY, POLICY)}

    assert found == {
        ("before-30", False): date(2027, 4, 27),
        ("before-7", False): date(2027, 4, 4),
        ("before-1", False): date(2027, 3, 29),
        (AUTO_RENEW, True): date(2027, 4, 27),
        (EXPIRED, False): date(2027, 3, 27),
        (EXPIRED, True): date(2027, 3, 27),
        (CEASED, False): date(2026, 12, 27),
        (CEASED, True): date(2026, 12, 27),
    }


def test_p15_the_ceased_notice_falls_on_the_day_after_the_last_reactivation_day() -> None:
    expires_on = date(2027, 1, 1)
    ceased = next(due for due in due_on(date(2027, 4, 2), POLICY) if due.kind == CEASED)
    assert ceased.expires_on == expires_on  # R2: 1 April is day 90, still reactivable; 2 April ceased


def test_p15_each_kind_has_its_template_and_days_left() -> None:
    assert Due("before-7", DAY, False).template == "expiry_notice"
    assert Due("before-7", DAY, False).days_left == 7
    assert Due(EXPIRED, DAY, True).template == "service_expired"
    assert Due(CEASED, DAY, True).template == "service_ceased"
    assert Due(EXPIRED, DAY, True).days_left is None
    assert not Due(AUTO_RENEW, DAY, True).is_notice


def test_p15_a_notice_is_named_by_service_expiry_and_kind_never_by_the_day() -> None:
    assert notice_key("mario", date(2027, 4, 4), "before-7") == "notice:mario:2027-04-04:before-7"


@pytest.mark.parametrize(
    ("today", "auto_renew", "notice", "kind", "order"),
    [
        (date(2027, 1, 1), False, date(2027, 3, 5), "before-30", None),
        (date(2027, 3, 6), False, date(2027, 3, 28), "before-7", None),
        (date(2027, 4, 3), False, date(2027, 4, 3), "before-1", None),
        (date(2027, 4, 4), False, date(2027, 4, 5), EXPIRED, None),
        (date(2027, 4, 5), False, date(2027, 4, 5), EXPIRED, None),
        (date(2027, 4, 6), False, date(2027, 7, 4), CEASED, None),
        (date(2027, 7, 5), False, None, None, None),
        (date(2027, 1, 1), True, date(2027, 4, 5), EXPIRED, date(2027, 3, 5)),
        (date(2027, 3, 6), True, date(2027, 4, 5), EXPIRED, None),
    ],
)
def test_p15_p16_the_next_dates_a_service_view_shows(
    today: date, auto_renew: bool, notice: date | None, kind: str | None, order: date | None
) -> None:
    found = next_dates(date(2027, 4, 4), auto_renew, today, POLICY)
    assert (found.next_notice_on, found.next_notice_kind, found.next_auto_order_on) == (notice, kind, order)


def test_p15_notices_and_lead_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENEWALS_EXPIRY_NOTICES", "1d,60d,14d")
    monkeypatch.setenv("RENEWALS_AUTO_RENEW_LEAD", "20d")
    assert load_settings().year() == YearPolicy(notice_days=[60, 14, 1], auto_renew_lead_days=20)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RENEWALS_EXPIRY_NOTICES", "12h", "whole days"),
        ("RENEWALS_EXPIRY_NOTICES", "7d,7d", "each day once"),
        ("RENEWALS_AUTO_RENEW_LEAD", "36h", "whole days"),
        ("RENEWALS_DAILY_AT", "25:00", "RENEWALS_DAILY_AT"),
    ],
)
def test_p15_bad_year_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    assert name in str(error.value) and message in str(error.value)


def test_p15_a_week_of_days_covers_each_expiry_once_per_kind() -> None:
    days = [DAY + timedelta(days=n) for n in range(7)]
    seen = [(due.kind, due.auto_renew, due.expires_on) for day in days for due in due_on(day, POLICY)]
    assert len(seen) == len(set(seen))
