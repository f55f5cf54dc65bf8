"""Settings and load_settings: every wait from the environment (DESIGN.md §6, P2–P4, R2)."""

from datetime import timedelta

import pytest

from settings import ConfigurationError, Settings, load_settings

WAIT_VARIABLES = (
    "RENEWALS_REMINDERS",
    "RENEWALS_PAYMENT_DEADLINE",
    "RENEWALS_CART_IDLE",
    "RENEWALS_REACTIVATION_WINDOW",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in WAIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_p2_p3_p4_r2_default_waits():
    policy = load_settings().policy()
    # P2 reminders 3/7/14 days, P3 deadline 30 days, P4 idle cart 7 days, R2 window 90 days.
    assert policy.reminders == [timedelta(days=3), timedelta(days=7), timedelta(days=14)]
    assert policy.payment_deadline == timedelta(days=30)
    assert policy.cart_idle == timedelta(days=7)
    assert policy.reactivation_window == timedelta(days=90)


def test_p3_p4_r2_waits_read_from_environment(monkeypatch):
    monkeypatch.setenv("RENEWALS_PAYMENT_DEADLINE", "90s")
    monkeypatch.setenv("RENEWALS_CART_IDLE", "12h")
    monkeypatch.setenv("RENEWALS_REACTIVATION_WINDOW", "5m")
    policy = load_settings().policy()
    assert policy.payment_deadline == timedelta(seconds=90)
    assert policy.cart_idle == timedelta(hours=12)
    assert policy.reactivation_window == timedelta(minutes=5)


def test_overrides_by_field_name_accept_duration_text():
    settings = load_settings(payment_deadline="2d", reminders="1h,2h")
    assert settings.payment_deadline == timedelta(days=2)
    assert settings.reminders == [timedelta(hours=1), timedelta(hours=2)]


def test_p2_bad_reminders_override_stops_with_the_reason():
    expected = "reminders: .*'7d,3d' must be in increasing order"
    with pytest.raises(ConfigurationError, match=expected):
        load_settings(reminders="7d,3d")


@pytest.mark.parametrize(("value", "words"), [("abc", "is not a duration"), ("0d", "longer than zero")])
def test_p3_bad_payment_deadline_stops_naming_the_variable(monkeypatch, value, words):
    monkeypatch.setenv("RENEWALS_PAYMENT_DEADLINE", value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    message = str(raised.value)
    assert "RENEWALS_PAYMENT_DEADLINE" in message
    assert words in message
    assert isinstance(raised.value, SystemExit)  # the process stops at start


def test_p2_reminders_read_from_environment(monkeypatch):
    monkeypatch.setenv("RENEWALS_REMINDERS", "3d,7d,14d")
    assert load_settings().reminders == [timedelta(days=3), timedelta(days=7), timedelta(days=14)]


def test_p2_short_reminders_for_tests_from_environment(monkeypatch):
    monkeypatch.setenv("RENEWALS_REMINDERS", "3s,7s")
    assert load_settings().policy().reminders == [timedelta(seconds=3), timedelta(seconds=7)]


@pytest.mark.parametrize(
    ("value", "words"),
    [("abc", "is not a duration"), ("0d", "longer than zero"), ("7d,3d", "increasing order")],
)
def test_p2_bad_reminders_stop_naming_the_variable(monkeypatch, value, words):
    monkeypatch.setenv("RENEWALS_REMINDERS", value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert "RENEWALS_REMINDERS" in str(raised.value)
    assert words in str(raised.value)


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.cart_idle = timedelta(days=1)
