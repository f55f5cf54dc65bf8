"""The storage alert and its indicative estimate (R4, P7). Packs of 1024 MB (demo price list)."""

from datetime import date, timedelta

import pytest

from renewals.records import ServiceRecord
from renewals.storage import storage_alert

TODAY = date(2025, 6, 1)
PACK = 1024


def service(used: int, quota: int, days_owned: int, days_left: int) -> ServiceRecord:
    return ServiceRecord(
        username="mario.rossi",
        holder_name="Mario Rossi",
        holder_email="mario@example.it",
        purchased_on=TODAY - timedelta(days=days_owned),
        expires_on=TODAY + timedelta(days=days_left),
        auto_renew=False,
        storage_quota_mb=quota,
        storage_used_mb=used,
    )


def alert(record: ServiceRecord, renewed_days: int = 365):
    return storage_alert(record, TODAY, record.expires_on + timedelta(days=renewed_days), PACK)


@pytest.mark.parametrize("used", [0, 500, 700])
def test_r4_no_alert_up_to_70_percent(used):
    # Even at 700 MB/day the rule is on current use: 70 % exactly is no alert.
    assert alert(service(used, quota=1000, days_owned=1, days_left=300)) is None


@pytest.mark.parametrize(("used", "percent"), [(701, 70.1), (900, 90.0)])
def test_r4_yellow_above_70_up_to_90_percent(used, percent):
    # Slow growth (owned 10 years, 29 days left): the quota lasts to the current expiry.
    found = alert(service(used, quota=1000, days_owned=3650, days_left=29))
    assert (found.level, found.usage_percent) == ("yellow", percent)


def test_r4_red_above_90_percent():
    found = alert(service(901, quota=1000, days_owned=3650, days_left=29))
    assert (found.level, found.usage_percent) == ("red", 90.1)


def test_p7_red_when_quota_runs_out_before_current_expiry():
    # 8000 MB in 100 days = 80 MB/day; in 30 days: 8000 + 2400 = 10400 > 10000, though only 80 %.
    found = alert(service(8000, quota=10000, days_owned=100, days_left=30))
    assert (found.level, found.usage_percent) == ("red", 80.0)
    # Until the renewed expiry (30 + 365 = 395 days): 8000 + 80 × 395 = 39600; 29600 over;
    # 29600 / 1024 = 28.9 -> 29 packs.
    assert (found.estimated_extra_mb, found.suggested_packs) == (29600, 29)


def test_p7_estimate_rounds_up_to_whole_packs():
    # 8000 MB in 800 days = 10 MB/day; at expiry (40 days) 8400 <= 10000: yellow.
    # Renewed expiry 405 days away: 8000 + 4050 = 12050; 2050 over; 2050 / 1024 = 2.002 -> 3 packs.
    found = alert(service(8000, quota=10000, days_owned=800, days_left=40))
    assert (found.level, found.estimated_extra_mb, found.suggested_packs) == ("yellow", 2050, 3)


def test_p7_no_extra_needed_when_projection_stays_under_quota():
    # 701 MB in 3650 days ≈ 0.19 MB/day: ~76 MB more in 394 days, far below 1000.
    found = alert(service(701, quota=1000, days_owned=3650, days_left=29))
    assert (found.estimated_extra_mb, found.suggested_packs) == (0, 0)


def test_p7_purchased_today_counts_as_one_day():
    # 800 MB on day one = 800 MB/day; 1 day left -> 1600 > 1000: red; no division by zero.
    found = alert(service(800, quota=1000, days_owned=0, days_left=1))
    assert found.level == "red"


def test_p7_estimate_fractional_mb_rounds_up():
    # 7001 MB in 2 days = 3500.5 MB/day; 1 day to the renewed expiry: 10501.5 -> 501.5 -> 502 MB.
    record = service(7001, quota=10000, days_owned=2, days_left=1)
    found = storage_alert(record, TODAY, TODAY + timedelta(days=1), PACK)
    assert (found.estimated_extra_mb, found.suggested_packs) == (502, 1)
