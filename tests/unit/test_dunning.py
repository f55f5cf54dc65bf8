"""P20's decisions without a server: which attempt an outcome answers, when the next retry is due,
what the customer is told and what ops search by."""

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from renewals.dunning import ChargeDeclined, Dunning, masked

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RETRIES = [timedelta(days=1), timedelta(days=3), timedelta(days=7)]
DUE = T0 + timedelta(days=30)


def declined(dunning: Dunning, at: datetime, decline: str = "soft", attempt: str | None = None) -> str:
    current = dunning.current
    assert current is not None
    outcome = ChargeDeclined.model_validate(
        {
            "order_number": "FE-2026-000001",
            "attempt": attempt or current.id,
            "decline": decline,
            "code": "51",
            "message": "Insufficient funds",
            "received_at": at,
        }
    )
    return dunning.take(outcome)


def test_retries_are_counted_from_the_first_decline_and_stop_at_the_schedule():
    dunning = Dunning()
    dunning.request("FE-2026-000001", T0, "automatic order")
    assert dunning.next_retry(RETRIES, DUE) is None and dunning.state(RETRIES, DUE) is None
    assert declined(dunning, T0 + timedelta(hours=2)) == "taken"
    first = T0 + timedelta(hours=2)
    assert dunning.next_retry(RETRIES, DUE) == first + timedelta(days=1)
    assert dunning.notice(RETRIES, DUE) == "first"
    dunning.told_customer("first")
    for n, wait in enumerate(RETRIES, start=2):
        dunning.request("FE-2026-000001", first + wait, "retry")
        assert dunning.next_retry(RETRIES, DUE) is None  # waiting for this attempt's answer
        assert dunning.state(RETRIES, DUE) == "retrying"
        assert declined(dunning, first + wait + timedelta(hours=1)) == "taken"
        assert dunning.current is not None and dunning.current.id == f"FE-2026-000001/{n}"
    assert dunning.next_retry(RETRIES, DUE) is None
    assert dunning.state(RETRIES, DUE) == "exhausted"
    assert dunning.notice(RETRIES, DUE) == "last"
    dunning.told_customer("last")
    assert dunning.notice(RETRIES, DUE) is None


def test_no_retry_on_or_after_the_deadline_and_none_after_a_hard_decline():
    dunning = Dunning()
    dunning.request("FE-2026-000001", T0, "automatic order")
    declined(dunning, T0)
    assert dunning.next_retry(RETRIES, T0 + timedelta(days=1)) is None  # on the deadline: not made
    assert dunning.retries_left(RETRIES, T0 + timedelta(days=4)) == [T0 + timedelta(days=1), T0 + timedelta(days=3)]
    hard = Dunning()
    hard.request("FE-2026-000001", T0, "automatic order")
    declined(hard, T0, "hard")
    assert hard.next_retry(RETRIES, DUE) is None and hard.state(RETRIES, DUE) == "hard_decline"
    assert "Non riproveremo" in hard.decline_text(RETRIES, DUE)


def test_a_repeat_an_earlier_attempt_and_an_unknown_one_change_nothing():
    dunning = Dunning()
    dunning.request("FE-2026-000001", T0, "automatic order")
    assert declined(dunning, T0) == "taken"
    assert declined(dunning, T0, "hard") == "duplicate"
    assert not dunning.hard
    dunning.request("FE-2026-000001", T0 + timedelta(days=1), "retry")
    assert declined(dunning, T0, attempt="FE-2026-000001/7") == "unknown_attempt"
    assert dunning.current is not None and dunning.current.decline is None


@given(st.text(min_size=1, max_size=300))
def test_a_psp_message_never_carries_a_card_number(text: str):
    shown = masked(f"card 4111 1111 1111 1111 {text}")
    assert "4111 1111" not in shown and len(shown) <= 200
