"""The secrets the ingress needs before it listens beyond loopback (issue 19), and rotation's
"current,previous" syntax: settings.py, pure."""

import pytest

from settings import ConfigurationError, Settings, exposure_problems, load_settings, require_safe_exposure

GOOD_PANEL = "3f9c1a7e5b2d8f4061c9e7a3b5d2f8e1"  # 32 bytes, random
GOOD_PAYMENTS = "b71e4c09a8d3f6e25c1b7a9d4e0f3c86"
OLD_PANEL = "9e2d7c4b1a0f8e6d5c3b2a1908f7e6d5"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("PANEL_SECRET", "PAYMENTS_SECRET", "INGRESS_HOST"):
        monkeypatch.delenv(name, raising=False)


def exposed(**secrets: str) -> Settings:
    return load_settings(ingress_host="0.0.0.0", **secrets)


def test_loopback_accepts_the_dev_defaults():
    assert exposure_problems(load_settings()) == []
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_problems(load_settings(ingress_host=host)) == [], host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "ingress.example.org"])
def test_any_other_address_refuses_unset_secrets(host):
    problems = exposure_problems(load_settings(ingress_host=host))
    assert problems == [
        "PANEL_SECRET must be set (the dev default is for loopback only)",
        "PAYMENTS_SECRET must be set (the dev default is for loopback only)",
    ]


@pytest.mark.parametrize(
    ("panel", "payments", "words"),
    [
        ("dev-panel-secret", GOOD_PAYMENTS, "PANEL_SECRET must not be a dev value"),
        (GOOD_PANEL, "dev-payments-secret", "PAYMENTS_SECRET must not be a dev value"),
        ("change-me-panel-secret-0123456789abcdef", GOOD_PAYMENTS, "PANEL_SECRET must not be a placeholder"),
        (GOOD_PANEL, "CHANGEME-payments-0123456789abcdefgh", "PAYMENTS_SECRET must not be a placeholder"),
        ("0123456789abcdef", GOOD_PAYMENTS, "PANEL_SECRET must be at least 32 bytes"),
        ("ab" * 20, GOOD_PAYMENTS, "PANEL_SECRET must be random"),
        (GOOD_PANEL, GOOD_PANEL, "PANEL_SECRET and PAYMENTS_SECRET must differ"),
        # A rotation's previous value is a value too: it may not be weak, nor the other's.
        (f"{GOOD_PANEL},dev-panel-secret", GOOD_PAYMENTS, "PANEL_SECRET must not be a dev value"),
        (f"{GOOD_PANEL},{GOOD_PAYMENTS}", GOOD_PAYMENTS, "must differ"),
    ],
    ids=[
        "dev-panel",
        "dev-payments",
        "change-me",
        "changeme-upper",
        "16-bytes",
        "repeated",
        "equal",
        "weak-previous",
        "shared-previous",
    ],
)
def test_weak_dev_placeholder_or_equal_secrets_are_refused_naming_the_rule_not_the_value(panel, payments, words):
    settings = exposed(panel_secret=panel, payments_secret=payments)
    with pytest.raises(ConfigurationError) as raised:
        require_safe_exposure(settings)
    message = str(raised.value)
    assert words in message
    assert "\n" not in message and message.startswith("refusing to serve on INGRESS_HOST=0.0.0.0")
    assert isinstance(raised.value, SystemExit)
    for value in {*panel.split(","), *payments.split(",")}:
        assert value not in message


def test_two_good_secrets_and_a_rotation_pass():
    assert exposure_problems(exposed(panel_secret=GOOD_PANEL, payments_secret=GOOD_PAYMENTS)) == []
    rotating = exposed(panel_secret=f"{GOOD_PANEL}, {OLD_PANEL}", payments_secret=GOOD_PAYMENTS)
    assert exposure_problems(rotating) == []
    assert rotating.panel_secrets == (GOOD_PANEL, OLD_PANEL)  # the first signs
    assert rotating.payments_secrets == (GOOD_PAYMENTS,)


def test_secrets_from_the_environment_count_as_set(monkeypatch):
    monkeypatch.setenv("INGRESS_HOST", "0.0.0.0")
    monkeypatch.setenv("PANEL_SECRET", GOOD_PANEL)
    monkeypatch.setenv("PAYMENTS_SECRET", GOOD_PAYMENTS)
    assert exposure_problems(load_settings()) == []


@pytest.mark.parametrize(
    "value", ["a-first-value-000,", ",a-second-value-00", "one-value-0001,two-value-0002,three-value-03"]
)
def test_a_secret_list_is_one_value_or_current_and_previous(monkeypatch, value):
    monkeypatch.setenv("PANEL_SECRET", value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert "PANEL_SECRET" in str(raised.value) and "current,previous" in str(raised.value)
    assert value not in str(raised.value)
