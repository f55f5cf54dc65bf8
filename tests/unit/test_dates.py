"""Calendar dates in Europe/Rome (P9) at day boundaries and DST changes, and P1's add_years."""

from datetime import UTC, date, datetime, timedelta

import pytest

from renewals.dates import add_years, after, last_day_to_pay, rome_today, start_of_day

DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("instant", "rome_date"),
    [
        # Summer (CEST, UTC+2): 23:30 Rome on 30 June is 21:30 UTC; 00:30 Rome on 1 July is
        # 22:30 UTC, still 30 June in UTC.
        (datetime(2025, 6, 30, 21, 30, tzinfo=UTC), date(2025, 6, 30)),
        (datetime(2025, 6, 30, 22, 30, tzinfo=UTC), date(2025, 7, 1)),
        # Winter (CET, UTC+1): 23:30 Rome is 22:30 UTC; 00:30 Rome is 23:30 UTC.
        (datetime(2025, 1, 31, 22, 30, tzinfo=UTC), date(2025, 1, 31)),
        (datetime(2025, 1, 31, 23, 30, tzinfo=UTC), date(2025, 2, 1)),
    ],
)
def test_p9_rome_today_at_the_day_boundary(instant, rome_date):
    assert rome_today(instant) == rome_date


def test_p9_rome_today_refuses_naive_datetimes():
    with pytest.raises(ValueError, match="timezone-aware"):
        rome_today(datetime(2025, 6, 30, 23, 30))


def test_p9_start_of_day_follows_the_offset_of_that_day():
    # 30 March 2025 starts in CET (+1); 31 March already in CEST (+2).
    assert start_of_day(date(2025, 3, 30)) == datetime(2025, 3, 29, 23, 0, tzinfo=UTC)
    assert start_of_day(date(2025, 3, 31)) == datetime(2025, 3, 30, 22, 0, tzinfo=UTC)


def test_p9_after_whole_day_keeps_wall_clock_over_march_dst():
    # 09:00 CET on 29 March (08:00 UTC) + 1 day = 09:00 CEST on 30 March (07:00 UTC): 23 h.
    start = datetime(2025, 3, 29, 8, 0, tzinfo=UTC)
    fired = after(start, DAY)
    assert fired == datetime(2025, 3, 30, 7, 0, tzinfo=UTC)
    assert fired - start == timedelta(hours=23)
    assert (fired.hour, fired.minute) == (9, 0)


def test_p9_after_whole_day_keeps_wall_clock_over_october_dst():
    # 09:00 CEST on 25 October (07:00 UTC) + 1 day = 09:00 CET on 26 October (08:00 UTC): 25 h.
    start = datetime(2025, 10, 25, 7, 0, tzinfo=UTC)
    fired = after(start, DAY)
    assert fired == datetime(2025, 10, 26, 8, 0, tzinfo=UTC)
    assert fired - start == timedelta(hours=25)


def test_p9_after_several_days_across_dst_lands_on_the_calendar_day():
    # P2's 3-day reminder: 10:15 CET on 28 March (09:15 UTC) -> 10:15 CEST on 31 March (08:15 UTC).
    fired = after(datetime(2025, 3, 28, 9, 15, tzinfo=UTC), timedelta(days=3))
    assert fired == datetime(2025, 3, 31, 8, 15, tzinfo=UTC)
    assert rome_today(fired) == date(2025, 3, 31)


def test_p9_after_sub_day_wait_is_exact_elapsed_time():
    # 36 h is not whole days: plain elapsed time, even across the March change.
    start = datetime(2025, 3, 29, 8, 0, tzinfo=UTC)
    assert after(start, timedelta(hours=36)) == datetime(2025, 3, 30, 20, 0, tzinfo=UTC)
    assert after(start, timedelta(seconds=90)) == start + timedelta(seconds=90)


def test_p9_after_into_the_spring_forward_gap_is_a_real_instant():
    # 02:30 CET on 29 March (01:30 UTC) + 1 day: 02:30 does not exist on 30 March; the instant is
    # 01:30 UTC = 03:30 CEST, still on the 30th in Rome.
    fired = after(datetime(2025, 3, 29, 1, 30, tzinfo=UTC), DAY)
    assert fired.astimezone(UTC) == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assert rome_today(fired) == date(2025, 3, 30)


@pytest.mark.parametrize(
    ("day", "years", "expected"),
    [
        (date(2024, 2, 29), 1, date(2025, 2, 28)),  # no 29 Feb in 2025
        (date(2024, 2, 29), 4, date(2028, 2, 29)),  # leap year again
        (date(2023, 2, 28), 1, date(2024, 2, 28)),  # never drifts to 29 Feb
        (date(2025, 6, 15), 10, date(2035, 6, 15)),
    ],
)
def test_p1_add_years(day, years, expected):
    assert add_years(day, years) == expected


def test_p9_rome_time_shows_an_instant_on_rome_s_clock():
    from datetime import UTC, datetime

    from renewals.dates import rome_time

    assert rome_time(datetime(2026, 12, 27, 13, 10, tzinfo=UTC)) == "2026-12-27 14:10 Rome"  # winter, UTC+1
    assert rome_time(datetime(2026, 7, 1, 22, 30, tzinfo=UTC)) == "2026-07-02 00:30 Rome"  # summer, UTC+2


def test_issue12_item5_pay_by_is_the_last_whole_day_before_a_midnight_deadline():
    # A reactivation's deadline at the end of day 90 is Rome midnight starting day 91: pay by day 90.
    assert last_day_to_pay(start_of_day(date(2027, 4, 2))) == date(2027, 4, 1)
    # A deadline during the day is that day.
    assert last_day_to_pay(datetime(2027, 4, 2, 8, 15, tzinfo=UTC)) == date(2027, 4, 2)
