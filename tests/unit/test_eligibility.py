"""Which button the panel shows and which requests are refused (R1, R2, P9)."""

from datetime import UTC, date, datetime, timedelta

import pytest

from renewals.dates import rome_today
from renewals.eligibility import eligibility, last_reactivation_day, reactivation_window_end, refusal, service_status
from renewals.messages import Policy
from renewals.records import ServiceRecord
from settings import Settings

WINDOW = timedelta(days=90)
POLICY = Settings().policy()
EXPIRES = date(2025, 6, 30)


def service(auto_renew: bool = False, expires_on: date = EXPIRES) -> ServiceRecord:
    return ServiceRecord(
        username="mario.rossi",
        holder_name="Mario Rossi",
        holder_email="mario@example.it",
        purchased_on=date(2020, 1, 1),
        expires_on=expires_on,
        auto_renew=auto_renew,
        storage_quota_mb=1024,
        storage_used_mb=100,
    )


def test_r1_renew_offered_when_auto_renew_off():
    found = eligibility(service(), date(2025, 6, 1), WINDOW)
    assert (found.status, found.action, found.reason) == ("active", "renew", None)
    assert refusal(service(), "renew", date(2025, 6, 1), POLICY) is None


def test_r1_renew_refused_when_auto_renew_on():
    found = eligibility(service(auto_renew=True), date(2025, 6, 1), WINDOW)
    assert (found.status, found.action) == ("active", None)
    reason = refusal(service(auto_renew=True), "renew", date(2025, 6, 1), POLICY)
    assert reason is not None and "auto-renew is on" in reason and "(R1)" in reason


def test_r1_p16_reactivate_offered_when_auto_renew_on_and_expired():
    # The automatic order lapsed unpaid (P16): the service expired and Reactivate is offered (R2).
    found = eligibility(service(auto_renew=True), date(2025, 7, 1), WINDOW)
    assert (found.status, found.action) == ("expired", "reactivate")
    assert refusal(service(auto_renew=True), "reactivate", date(2025, 7, 1), POLICY) is None


def test_r1_reactivate_refused_when_auto_renew_on_and_expired_for_renewals_started_before_p16():
    before = POLICY.model_copy(update={"reactivate_with_auto_renew": False})
    found = eligibility(service(auto_renew=True), date(2025, 7, 1), WINDOW, reactivate_with_auto_renew=False)
    assert (found.status, found.action) == ("expired", None)
    assert "(R1)" in refusal(service(auto_renew=True), "reactivate", date(2025, 7, 1), before)


def test_p9_expiry_day_itself_is_still_active():
    assert service_status(service(), EXPIRES, WINDOW) == "active"
    assert eligibility(service(), EXPIRES, WINDOW).action == "renew"


def test_r2_reactivate_offered_the_day_after_expiry():
    found = eligibility(service(), EXPIRES + timedelta(days=1), WINDOW)
    assert (found.status, found.action) == ("expired", "reactivate")
    assert refusal(service(), "reactivate", EXPIRES + timedelta(days=1), POLICY) is None


def test_r2_reactivate_allowed_89_days_after_expiry():
    today = EXPIRES + timedelta(days=89)  # 27 September 2025
    assert eligibility(service(), today, WINDOW).action == "reactivate"
    assert refusal(service(), "reactivate", today, POLICY) is None


def test_r2_reactivate_still_offered_on_the_90th_day_after_expiry():
    today = EXPIRES + timedelta(days=90)  # 28 September 2025: the last of the 90 days following
    assert eligibility(service(), today, WINDOW).action == "reactivate"
    assert refusal(service(), "reactivate", today, POLICY) is None
    assert last_reactivation_day(EXPIRES, WINDOW) == today


def test_r2_reactivate_refused_from_the_91st_day():
    today = EXPIRES + timedelta(days=91)  # 29 September 2025: ceased
    found = eligibility(service(), today, WINDOW)
    assert (found.status, found.action) == ("ceased", None)
    for mode in ("renew", "reactivate"):
        reason = refusal(service(), mode, today, POLICY)
        assert reason is not None and "ceased" in reason and "(R2)" in reason
        assert "reactivated through 2025-09-28" in reason


def test_r2_example_of_the_issue_1_january_to_1_april():
    # Expired 1 January: 2 January … 1 April are the 90 days; ceased from 2 April.
    expired = service(expires_on=date(2027, 1, 1))
    assert eligibility(expired, date(2027, 4, 1), WINDOW).action == "reactivate"
    assert eligibility(expired, date(2027, 4, 2), WINDOW).status == "ceased"


def test_r2_window_after_an_expiry_on_29_february():
    expired = service(expires_on=date(2028, 2, 29))
    assert last_reactivation_day(expired.expires_on, WINDOW) == date(2028, 5, 29)
    assert eligibility(expired, date(2028, 5, 28), WINDOW).action == "reactivate"  # day 89
    assert eligibility(expired, date(2028, 5, 29), WINDOW).action == "reactivate"  # day 90
    assert eligibility(expired, date(2028, 5, 30), WINDOW).status == "ceased"  # day 91


def test_r2_window_end_is_rome_midnight_after_day_90_across_dst():
    # 1 January (CET) + 90 days = 1 April, in CEST: the window ends at 00:00 Rome on 2 April,
    # 22:00 UTC on 1 April (an hour earlier in UTC than it would be in winter).
    end = reactivation_window_end(date(2027, 1, 1), WINDOW)
    assert end == datetime(2027, 4, 1, 22, 0, tzinfo=UTC)
    assert rome_today(end - timedelta(microseconds=1)) == date(2027, 4, 1)
    assert rome_today(end) == date(2027, 4, 2)


def test_r2_renewals_started_before_issue_18_keep_their_boundary():
    # Their input has no `reactivation_last_day_included`: ceased on day 90, window end at its start.
    assert eligibility(service(), EXPIRES + timedelta(days=90), WINDOW, legacy=True).status == "ceased"
    assert reactivation_window_end(EXPIRES, WINDOW, legacy=True) == reactivation_window_end(
        EXPIRES - timedelta(days=1), WINDOW
    )
    assert (
        Policy.model_validate(
            {"reminders": [], "payment_deadline": 1, "cart_idle": 1, "reactivation_window": 1}
        ).reactivation_last_day_included
        is False
    )
    assert Settings().policy().reactivation_last_day_included is True


def test_r2_ceased_wins_over_auto_renew():
    found = eligibility(service(auto_renew=True), EXPIRES + timedelta(days=400), WINDOW)
    assert (found.status, found.action) == ("ceased", None)
    assert "ceased" in found.reason


def test_r2_renew_refused_on_an_expired_service():
    reason = refusal(service(), "renew", EXPIRES + timedelta(days=10), POLICY)
    assert reason is not None and "reactivated, not renewed" in reason


def test_r2_reactivate_refused_on_an_active_service():
    reason = refusal(service(), "reactivate", EXPIRES, POLICY)
    assert reason is not None and "renewed, not reactivated" in reason


@pytest.mark.parametrize(
    ("instant", "action"),
    [
        (datetime(2025, 6, 30, 21, 30, tzinfo=UTC), "renew"),  # 23:30 Rome on the expiry day
        (datetime(2025, 6, 30, 22, 30, tzinfo=UTC), "reactivate"),  # 00:30 Rome the day after
    ],
)
def test_p9_expiry_counts_in_rome_not_utc(instant, action):
    assert eligibility(service(), rome_today(instant), WINDOW).action == action


def test_p9_r2_window_counts_rome_calendar_days_at_dst():
    # Expired 30 Dec 2024; 31 March 2025 is 1 + 31 + 28 + 31 = 91 days later. At 00:30 Rome on
    # 31 March (22:30 UTC on the 30th, the night DST began) UTC says day 90, Rome says 91: ceased.
    expired = service(expires_on=date(2024, 12, 30))
    just_before = rome_today(datetime(2025, 3, 30, 21, 30, tzinfo=UTC))  # 23:30 CEST, 30 March
    just_after = rome_today(datetime(2025, 3, 30, 22, 30, tzinfo=UTC))  # 00:30 CEST, 31 March
    assert eligibility(expired, just_before, WINDOW).action == "reactivate"
    assert eligibility(expired, just_after, WINDOW).status == "ceased"
