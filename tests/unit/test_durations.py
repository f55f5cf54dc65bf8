"""Durations as written in configuration (DESIGN.md §6): `30d`, `12h`, `15m`, `90s`."""

from datetime import timedelta

import pytest

from renewals.durations import format_duration, parse_duration, parse_durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("15m", timedelta(minutes=15)),
        ("90s", timedelta(seconds=90)),
        (" 7 d ", timedelta(days=7)),
    ],
)
def test_parse_duration_units(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["abc", "", "7", "d7", "1.5d", "-1d", "7w", "3d7d"])
def test_parse_duration_refuses_malformed_text_naming_it(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0d", "0s"])
def test_parse_duration_refuses_zero(text):
    with pytest.raises(ValueError, match="longer than zero"):
        parse_duration(text)


def test_p2_parse_durations_default_reminders():
    days = [timedelta(days=n) for n in (3, 7, 14)]
    assert parse_durations("3d,7d,14d") == days


def test_parse_durations_ignores_blank_parts_and_spaces():
    assert parse_durations(" 3d , ,7d,") == [timedelta(days=3), timedelta(days=7)]


def test_parse_durations_mixed_units_compare_as_time():
    # 36h (1.5 days) sits between 1d and 2d.
    expected = [timedelta(days=1), timedelta(hours=36), timedelta(days=2)]
    assert parse_durations("1d,36h,2d") == expected


@pytest.mark.parametrize("text", ["7d,3d", "3d,3d", "2d,36h"])
def test_parse_durations_must_increase(text):
    with pytest.raises(ValueError, match="increasing order"):
        parse_durations(text)


@pytest.mark.parametrize("text", ["", " , "])
def test_parse_durations_refuses_empty_list(text):
    with pytest.raises(ValueError, match="empty list"):
        parse_durations(text)


def test_parse_durations_refuses_a_bad_member():
    with pytest.raises(ValueError, match="'x' is not a duration"):
        parse_durations("3d,x")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=30), "30d"),
        (timedelta(hours=36), "36h"),  # not a whole number of days
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=90), "90s"),
    ],
)
def test_format_duration_picks_the_largest_whole_unit(value, text):
    assert format_duration(value) == text
    assert parse_duration(text) == value
