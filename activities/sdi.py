"""The SdI activities (P18): send an invoice's file over SDICoop, record SdI's outcome, correct a
rejected invoice for its resend. One class holding the pool, the `RiceviFile` client and the seller.

Sending is idempotent in the data (`db/sdi.py`): an attempt is marked before the request leaves,
so a retry that finds it marked knows SdI may hold the file and raises `SdiInDoubt` (the workflow
waits for SdI's notification) instead of sending it again.
"""

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.sdi_client import RiceviFileClient, SdiInDoubt, SdiUnreachable
from db import sdi as table
from db.invoices import reissue_invoice
from renewals import errors
from renewals.billing import Seller
from renewals.delivery import RecordOutcome, Reissue, Reissued, Transmit, Transmitted
from renewals.invoice import InvoiceError

T = TypeVar("T")
# What SdI's RiceviFile errors mean (TrasmissioneTypes: erroreInvio_Type).
SEND_ERRORS = {"EI01": "empty file", "EI02": "service unavailable", "EI03": "user not enabled"}


# How long a delivery waits before asking again when the worker that took it has no SDI_URL.
NO_SDI_RETRY = timedelta(minutes=5)


class Sdi:
    """Built once by the worker."""

    def __init__(self, pool: asyncpg.Pool, client: RiceviFileClient | None, seller: Seller) -> None:
        self.pool = pool
        self.client = client
        self.seller = seller

    @activity.defn
    async def transmit(self, request: Transmit) -> Transmitted:
        attempt = await table.begin_attempt(self.pool, request.number, force=request.force)
        if attempt.action == "accepted":
            assert attempt.sdi_id is not None
            return Transmitted(file_name=attempt.file_name, sdi_id=attempt.sdi_id, received_at=attempt.received_at)
        if attempt.action == "in_doubt":
            raise _in_doubt(f"an earlier attempt to send {attempt.file_name} may have reached SdI; its answer was lost")
        if self.client is None:
            await table.record_failure(self.pool, attempt.file_name, "SDI_URL is not set", certainly_not_sent=True)
            # Not SdI being down: this worker has none. Ask again at the policy's longest wait, not
            # in the backoff's first seconds (a burst of activations would be a burst of retries).
            # Benign: said once at the worker's start, not logged with a traceback at every try.
            raise ApplicationError(
                "SDI_URL is not set: this worker cannot reach SdI",
                type=errors.SDI_UNAVAILABLE,
                next_retry_delay=NO_SDI_RETRY,
                category=ApplicationErrorCategory.BENIGN,
            )
        try:
            answer = await _heartbeating(self.client.send(attempt.file_name, attempt.xml))
        except SdiUnreachable as error:
            await table.record_failure(self.pool, attempt.file_name, str(error), certainly_not_sent=True)
            raise ApplicationError(f"SdI unreachable: {error}", type=errors.SDI_UNAVAILABLE) from None
        except SdiInDoubt as error:
            await table.record_failure(self.pool, attempt.file_name, str(error), certainly_not_sent=False)
            raise _in_doubt(f"sending {attempt.file_name}: {error}") from None
        if answer.error is not None or answer.sdi_id is None or answer.received_at is None:
            code = answer.error or "no IdentificativoSdI"
            why = f"SdI refused {attempt.file_name}: {code} {SEND_ERRORS.get(code, '')}".rstrip()
            await table.record_failure(self.pool, attempt.file_name, why, certainly_not_sent=True)
            raise ApplicationError(why, type=errors.SDI_UNAVAILABLE)
        await table.record_acceptance(self.pool, attempt.file_name, answer.sdi_id, answer.received_at)
        return Transmitted(file_name=attempt.file_name, sdi_id=answer.sdi_id, received_at=answer.received_at)

    @activity.defn
    async def record_outcome(self, request: RecordOutcome) -> None:
        await table.record_outcome(
            self.pool, request.number, request.kind, delivered_at=request.delivered_at, note=request.note
        )

    @activity.defn
    async def reissue(self, request: Reissue) -> Reissued:
        """A rejected invoice rebuilt from the holder's billing data as it is now, with its number
        and date, in a new file. Refused (not retried) while the data still fails the checks."""
        try:
            invoice = await reissue_invoice(self.pool, request.number, seller=self.seller)
        except InvoiceError as error:
            raise ApplicationError(str(error), type=errors.INVALID_REQUEST, non_retryable=True) from None
        assert invoice.file_name is not None
        return Reissued(file_name=invoice.file_name)


def _in_doubt(message: str) -> ApplicationError:
    return ApplicationError(message, type=errors.SDI_IN_DOUBT, non_retryable=True)


async def _heartbeating(call: Awaitable[T], every: float = 2.0) -> T:
    """Heartbeat while SdI takes its time, so a killed worker's attempt is retried within seconds
    (the heartbeat timeout), not at the end of the attempt's whole timeout."""
    task = asyncio.ensure_future(call)
    while True:
        done, _ = await asyncio.wait({task}, timeout=every)
        if done:
            return task.result()
        activity.heartbeat()
