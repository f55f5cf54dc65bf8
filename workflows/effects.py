"""How the renewal workflow reaches the world: activity calls with one retry policy and a summary
ops read, local activities for reads, and the emails and ledger writes that must never hold up the
renewal (P14). Deterministic workflow code; the renewal owns one `Effects`.

Two paths. Renewals started before the v2 path (no `renewal-v2` marker in their history) replay
their recorded command sequence: activities for reads, emails awaited in line, ledger writes
queued in an outbox that `run` drains. The v2 path runs reads as local activities and sends
emails and ledger writes in the background; `finish` waits for all of them before the renewal
completes.
"""

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.charges import Charges
    from activities.mail import Mailer
    from activities.store import Store
    from renewals import errors
    from renewals.calls import RequestCharge, SendEmail, SettlePayment
    from renewals.pricing import euro
    from workflows.path import BEFORE_RUN

A = TypeVar("A")
R = TypeVar("R")

# Transient failures (a connection refused, an SMTP 4xx, a timeout) retry with backoff for as long
# as it takes; business errors are raised non-retryable by the activities themselves.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
ACTIVITY_TIMEOUT = timedelta(seconds=30)
EMAIL_TIMEOUT = timedelta(minutes=10)


class Effects:
    def __init__(self, on_refused: Callable[[SendEmail, str], None], on_sent: Callable[[SendEmail], None]) -> None:
        # Set once by `run` (workflows/path.py); what differs between older and newer renewals.
        self.path = BEFORE_RUN
        self._on_refused, self._on_sent = on_refused, on_sent
        self._background: list[asyncio.Task[None]] = []
        self._outbox: list[SendEmail | SettlePayment] = []
        self._outbox_lock = asyncio.Lock()

    def call(self, method: Callable[[Any, A], Awaitable[R]], arg: A, *, summary: str, **options: Any) -> Awaitable[R]:
        options.setdefault("start_to_close_timeout", ACTIVITY_TIMEOUT)
        return workflow.execute_activity_method(method, arg, retry_policy=RETRY, summary=summary, **options)

    def read(self, method: Callable[[Any, A], Awaitable[R]], arg: A, *, summary: str) -> Awaitable[R]:
        """A read of PostgreSQL: a local activity on the newer path (Path.local_reads)."""
        if not self.path.local_reads:
            return self.call(method, arg, summary=summary)
        return workflow.execute_local_activity_method(
            method, arg, retry_policy=RETRY, start_to_close_timeout=ACTIVITY_TIMEOUT, summary=summary
        )

    async def email(self, request: SendEmail) -> None:
        """One logical email, keyed so a retry never sends it twice; in the background on the newer
        path (Path.background_writes)."""
        if self.path.background_writes:
            self._in_background(self._send(request))
        else:
            await self._send(request)

    def charge(
        self, request: RequestCharge, until: timedelta, then: SendEmail | None, on_failed: Callable[[str], None]
    ) -> None:
        """P16, in the background: the charge request, retried until the back office acknowledges it
        (for at most `until`: past the order's deadline a charge is no use), then the email telling
        the customer the date and amount. A request never acknowledged is shown, never a failure."""

        async def charge() -> None:
            try:
                await self.call(
                    Charges.request_charge,
                    request,
                    schedule_to_close_timeout=until,
                    summary=f"charge request {request.attempt or request.order_number}: "
                    f"{euro(request.amount_cents)} by {request.method}",
                )
            except ActivityError as error:
                on_failed(str(error.cause or error))
                return
            if then is not None:
                await self._send(then)

        self._in_background(charge())

    async def record_payment(self, settle: SettlePayment, then: SendEmail | None) -> bool:
        """The ledger write of a payment the order decided (and its balance email). True when it
        is queued for `run` to drain (the older path)."""
        if self.path.background_writes:
            self._in_background(self._settle(settle))
            if then is not None:
                await self.email(then)
            return False
        self._outbox += [settle] if then is None else [settle, then]
        return True

    async def drain_outbox(self) -> None:
        """Legacy path: ledger writes and emails queued by handlers, in the order they were decided."""
        async with self._outbox_lock:
            while self._outbox:
                item = self._outbox[0]
                await (self._settle(item) if isinstance(item, SettlePayment) else self._send(item))
                self._outbox.pop(0)

    async def finish(self) -> None:
        """Late handlers (a payment after the close) may still write to the ledger, and emails may
        still be on their way: return only once every one of them is done."""
        while True:
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._outbox:
                await self.drain_outbox()
                continue
            pending = [task for task in self._background if not task.done()]
            if not pending:
                return
            await asyncio.gather(*pending)

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        self._background.append(asyncio.create_task(work))

    async def _send(self, request: SendEmail) -> None:
        try:
            await self.call(
                Mailer.send_email,
                request,
                # Long enough to outlast a database outage after the email is out (see Mailer).
                start_to_close_timeout=EMAIL_TIMEOUT,
                heartbeat_timeout=ACTIVITY_TIMEOUT,
                summary=f"email {request.template.replace('_', ' ')} {request.order_number or request.username}",
            )
        except ActivityError as error:
            cause = error.cause
            if not (isinstance(cause, ApplicationError) and cause.type == errors.MAIL_REJECTED):
                raise
            # A refused address will not heal by retrying, and must not stop the renewal: the
            # refusal is kept where ops look (the view's emails, the current details).
            self._on_refused(request, cause.message)
            return
        self._on_sent(request)

    async def _settle(self, item: SettlePayment) -> None:
        entry, status = item.entry, item.outcome.status
        summary = f"ledger {entry.transaction_id}: {status} {euro(entry.amount_cents)} on {entry.order_number}"
        await self.call(Store.settle_payment, item, summary=summary)
