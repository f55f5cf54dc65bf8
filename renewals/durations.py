"""Durations written the way people write them in configuration: `30d`, `12h`, `15m`, `90s`."""

import re
from datetime import timedelta

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_DURATION = re.compile(r"^\s*(\d+)\s*([dhms])\s*$")


def parse_duration(text: str) -> timedelta:
    """`30d` → 30 days. Raises ValueError naming the bad text."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; write a whole number and a unit d, h, m or s, e.g. 30d, 12h, 90s"
        )
    amount, unit = match.groups()
    value = timedelta(**{_UNITS[unit]: int(amount)})
    if value <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return value


def parse_durations(text: str) -> list[timedelta]:
    """`3d,7d,14d` → three durations, strictly increasing."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("empty list; write durations separated by commas, e.g. 3d,7d,14d")
    values = [parse_duration(part) for part in parts]
    if any(later <= earlier for earlier, later in zip(values, values[1:], strict=False)):
        raise ValueError(f"{text!r} must be in increasing order")
    return values


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration for whole units, used in docs and views."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
