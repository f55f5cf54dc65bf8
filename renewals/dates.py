"""Calendar dates in the provider's zone, Europe/Rome (P9).

Instants are UTC datetimes (what `workflow.now()` gives); the customer's dates are Rome dates.
Whole-day waits count calendar days in Rome, so a reminder keeps its wall-clock time across DST.
"""

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ROME = ZoneInfo("Europe/Rome")
DAY = timedelta(days=1)


def rome_today(now: datetime) -> date:
    """The calendar date in Rome at the instant `now` (which must be timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(ROME).date()


def rome_time(instant: datetime) -> str:
    """An instant as ops and customers read it: `2026-12-27 14:10 Rome`."""
    return f"{instant.astimezone(ROME):%Y-%m-%d %H:%M} Rome"


def start_of_day(day: date) -> datetime:
    """Midnight in Rome at the start of `day`, as an aware datetime."""
    return datetime.combine(day, time(0), tzinfo=ROME)


def after(start: datetime, wait: timedelta) -> datetime:
    """The instant `wait` after `start`; whole days are calendar days in Rome (same wall time)."""
    if wait % DAY:
        return start + wait
    local = start.astimezone(ROME)
    shifted = datetime.combine(local.date() + wait, local.time(), tzinfo=ROME)
    # Through UTC, so a wall time in the spring-forward gap becomes a real Rome time.
    return shifted.astimezone(UTC).astimezone(ROME)


def add_years(day: date, years: int) -> date:
    """P1's arithmetic: the same day `years` later; 29 February becomes 28 February."""
    year = day.year + years
    last = calendar.monthrange(year, day.month)[1]
    return day.replace(year=year, day=min(day.day, last))


def last_day_to_pay(due_by: datetime) -> date:
    """The Rome date a customer is told to pay by: a deadline at Rome midnight (the start of a day,
    as the R2 window's end is) means the day before it, the last whole day to pay."""
    return (due_by - timedelta(microseconds=1)).astimezone(ROME).date()
