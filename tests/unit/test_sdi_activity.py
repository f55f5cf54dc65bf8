"""The send on a worker with no SdI configured (P18): not an outage to log at every try but a
condition said once at the worker's start, asked again at the policy's longest wait."""

from datetime import timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import ActivityEnvironment

from activities import sdi
from db.sdi import Attempt
from renewals import errors
from renewals.delivery import Transmit
from renewals.payments import dev_seller


async def test_p18_a_worker_without_sdi_refuses_the_send_benignly_and_asks_again_in_5_minutes(monkeypatch):
    failures: list[tuple[str, str, bool]] = []

    async def begin_attempt(pool: Any, number: str, *, force: bool) -> Attempt:
        return Attempt(action="send", file_name="IT12345670017_00001.xml", xml=b"<x/>")

    async def record_failure(pool: Any, file_name: str, why: str, *, certainly_not_sent: bool) -> None:
        failures.append((file_name, why, certainly_not_sent))

    monkeypatch.setattr(sdi.table, "begin_attempt", begin_attempt)
    monkeypatch.setattr(sdi.table, "record_failure", record_failure)
    activity = sdi.Sdi(pool=None, client=None, seller=dev_seller())  # type: ignore[arg-type]

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activity.transmit, Transmit(number="FT-2026-000001"))

    error = refused.value
    assert (error.type, error.category) == (errors.SDI_UNAVAILABLE, ApplicationErrorCategory.BENIGN)
    assert error.next_retry_delay == sdi.NO_SDI_RETRY == timedelta(minutes=5)
    assert failures == [("IT12345670017_00001.xml", "SDI_URL is not set", True)]
