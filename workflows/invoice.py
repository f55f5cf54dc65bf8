"""An invoice's delivery through SdI (P18), one workflow per invoice (`invoice-<number>`): send the
file, wait for SdI's outcome on durable timers, and act on it.

- RC: delivered. MC: issued but not delivered; the holder is emailed the courtesy copy. Never resent.
- NS: rejected, not issued. Ops correct the data and resend (`resend`, same number and date) within
  5 days; day 3 without one is louder, after day 5 ops decide (a late resend, or `close`).
- No outcome within the time SdI allows: `overdue`, still waiting. Not accepted (RC or MC) within
  12 days of the payment: the alarm, whatever the state.

A file is never sent twice blindly: an attempt that may have reached SdI (a killed worker, a
timeout) waits for SdI's notification, which names the file, before sending it again.
Deterministic workflow code: time is `workflow.now()`, every effect an activity.
"""

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.sdi import Sdi
    from renewals import DELIVERY_NOTICE_SIGNAL, DELIVERY_WORKFLOW_TYPE, errors
    from renewals import search_attributes as sa
    from renewals.calls import SendEmail
    from renewals.delivery import (
        FINAL_STATES,
        OUTCOME_WORDS,
        REJECTED_STATES,
        CloseDelivery,
        DeliveryInput,
        DeliveryState,
        DeliveryView,
        Notice,
        RecordOutcome,
        Reissue,
        Resend,
        Transmit,
        alarm_at,
        details,
        rejected_state,
    )
    from workflows.bookkeeping import wait_for
    from workflows.effects import ACTIVITY_TIMEOUT, RETRY, Effects
    from workflows.state import refuse

# SdI down for an hour, or answering EI02: every attempt again, at most 5 minutes apart.
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[errors.SDI_IN_DOUBT],
)
SEND_TIMEOUT = timedelta(seconds=60)
SEND_HEARTBEAT = timedelta(seconds=10)


@workflow.defn(name=DELIVERY_WORKFLOW_TYPE)
class InvoiceDelivery:
    @workflow.init
    def __init__(self, input: DeliveryInput) -> None:
        self._input = input
        self.state = DeliveryView(number=input.number, order_number=input.order_number, state="sending")
        self._outcome: Notice | None = None
        self._resend: Resend | None = None
        self._closed: str | None = None
        self._alarm_task: asyncio.Task[None] | None = None
        # The renewal's way to email (keyed once in the mail log; a refused address is recorded,
        # not retried), awaited in line: the delivery ends once its email is out.
        self.effects = Effects(on_refused=self._email_refused, on_sent=lambda email: None)

    @workflow.run
    async def run(self, input: DeliveryInput) -> DeliveryView:
        self._alarm_task = asyncio.create_task(self._ring_alarm_if_not_accepted())
        while True:
            await self._transmit()
            outcome = await self._await_outcome()
            await self._record(outcome)
            if outcome.kind == "RC":
                self._enter("delivered", OUTCOME_WORDS["RC"])
                break
            if outcome.kind == "MC":
                self._enter("not_delivered", OUTCOME_WORDS["MC"])
                await self._tell_holder_not_delivered()
                break
            if not await self._await_resend(workflow.now()):
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    # ------------------------------------------------------------------ sending

    async def _transmit(self) -> None:
        """Hand the file to SdI, with backoff while it is down; an attempt in doubt waits for SdI's
        word (a notification naming the file) before the file goes again under the same name."""
        force = False
        while True:
            self._enter("sending", "forced resend after no word from SdI" if force else None)
            try:
                sent = await workflow.execute_activity_method(
                    Sdi.transmit,
                    Transmit(number=self._input.number, force=force),
                    start_to_close_timeout=SEND_TIMEOUT,
                    heartbeat_timeout=SEND_HEARTBEAT,
                    retry_policy=SEND_RETRY,
                    summary=f"send {self._input.number} to SdI" + (" again" if force else ""),
                )
            except ActivityError as error:
                cause = error.cause
                if not (isinstance(cause, ApplicationError) and cause.type == errors.SDI_IN_DOUBT):
                    raise
                self._enter("in_doubt", cause.message)
                force = not await wait_for(
                    self._heard_since(len(self.state.notices)),
                    self._input.policy.in_doubt_wait,
                    f"SdI's word on {self._input.number}, which may have reached it",
                )
                continue
            self.state.file_name, self.state.sdi_id = sent.file_name, sent.sdi_id
            self.state.attempts += 1
            if self._outcome is None:
                self._enter("sent", f"SdI took {sent.file_name} as {sent.sdi_id}")
            return

    def _heard_since(self, seen: int) -> Callable[[], bool]:
        return lambda: len(self.state.notices) > seen

    async def _await_outcome(self) -> Notice:
        """RC, MC or NS; past the time SdI allows, `overdue` (visible) and still waiting."""
        due = workflow.now() + self._input.policy.outcome_within
        if not await wait_for(lambda: self._outcome is not None, due - workflow.now(), "SdI's outcome"):
            self._enter("overdue", "no outcome from SdI in the time it allows (P18)")
            await workflow.wait_condition(lambda: self._outcome is not None)
        assert self._outcome is not None
        return self._outcome

    async def _record(self, outcome: Notice) -> None:
        note = "; ".join(outcome.errors) or outcome.description
        await workflow.execute_activity_method(
            Sdi.record_outcome,
            RecordOutcome(number=self._input.number, kind=outcome.kind, delivered_at=outcome.delivered_at, note=note),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
            summary=f"record {outcome.kind} for {self._input.number}",
        )

    async def _tell_holder_not_delivered(self) -> None:
        """MC: the invoice is issued and waits in the holder's reserved area; the courtesy copy
        goes by email (attached by the mailer). Once: the mail log keys it."""
        input = self._input
        email = SendEmail(
            key=f"{input.number}:invoice_not_delivered",
            template="invoice_not_delivered",
            username=input.username,
            to_name=input.to_name,
            to_email=input.to_email,
            order_number=input.order_number,
            invoice_number=input.number,
        )
        await self.effects.email(email)

    def _email_refused(self, email: SendEmail, why: str) -> None:
        self.state.last_event = f"the MC email was refused: {why}"

    # ------------------------------------------------------------------ a rejection (NS)

    async def _await_resend(self, rejected_at: datetime) -> bool:
        """True once ops resent the corrected invoice (`resend` did the correction), False once
        they closed it. Louder on day 3, ops decide after day 5."""
        self.state.rejected_at = rejected_at
        policy = self._input.policy
        self._outcome = None
        while True:
            if self._resend is not None:
                self._resend = None
                return True
            if self._closed is not None:
                self._enter("closed", self._closed)
                return False
            now = workflow.now()
            loudness = rejected_state(rejected_at, now, policy)
            if loudness != self.state.state:
                self._enter(loudness, self._rejection_words(loudness, rejected_at))
            until = {
                "rejected": rejected_at + policy.urgent_after,
                "rejected_urgent": rejected_at + policy.resend_within,
            }
            wake = until.get(loudness)
            changed = lambda: self._resend is not None or self._closed is not None  # noqa: E731
            if wake is None:
                await workflow.wait_condition(changed)
            else:
                await wait_for(changed, wake - now, "the louder alert" if loudness == "rejected" else "ops decide")

    @staticmethod
    def _rejection_words(state: DeliveryState, rejected_at: datetime) -> str:
        if state == "rejected_urgent":
            return "rejected 3 days ago and not resent: resend within 5 days keeps the number and date (P18)"
        if state == "rejected_ops":
            return f"rejected on {rejected_at:%Y-%m-%d}, not resent within 5 days: ops decide (resend --late or close)"
        return OUTCOME_WORDS["NS"]

    # ------------------------------------------------------------------ the 12 days

    async def _ring_alarm_if_not_accepted(self) -> None:
        accepted: Callable[[], bool] = lambda: self.state.state in FINAL_STATES  # noqa: E731
        wait = alarm_at(self._input) - workflow.now()
        if await wait_for(accepted, wait, "the 12-day alarm (P18)") or self.state.state in FINAL_STATES:
            return
        self.state.alarm = True
        workflow.upsert_search_attributes([sa.SDI_ALARM.value_set(True)])
        self._enter(self.state.state, "not accepted by SdI within 12 days of the payment (P18)")

    # ------------------------------------------------------------------ SdI's notifications

    @workflow.signal(name=DELIVERY_NOTICE_SIGNAL)
    def notify(self, notice: Notice) -> None:
        """A notification the ingress verified and stored; the same one twice changes nothing."""
        if any(seen.message_id == notice.message_id and seen.kind == notice.kind for seen in self.state.notices):
            return
        self.state.notices.append(notice)
        self.state.last_event = f"{notice.kind} {notice.sdi_id} for {notice.file_name}"
        if notice.kind in OUTCOME_WORDS and self._outcome is None and self._awaits_outcome():
            self._outcome = notice
        self._show()

    def _awaits_outcome(self) -> bool:
        return self.state.state not in FINAL_STATES and self.state.state not in REJECTED_STATES

    # ------------------------------------------------------------------ ops

    @workflow.update
    async def resend(self, request: Resend) -> DeliveryView:
        """The corrected invoice, rebuilt from today's billing data with its number and date."""
        try:
            reissued = await workflow.execute_activity_method(
                Sdi.reissue,
                Reissue(number=self._input.number),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=RETRY,
                summary=f"correct {self._input.number} for its resend",
            )
        except ActivityError as error:
            cause = error.cause
            raise refuse(cause.message if isinstance(cause, ApplicationError) else str(error)) from None
        self._resend = request
        self.state.file_name, self.state.sdi_id = reissued.file_name, None
        self.state.last_event = f"{request.reason}: {reissued.file_name}"
        return self.state

    @resend.validator
    def _validate_resend(self, request: Resend) -> None:
        if self.state.state not in REJECTED_STATES or self._resend is not None:
            raise refuse(f"invoice {self._input.number} is {self.state.state}: only a rejected invoice is resent")
        if self.state.state == "rejected_ops" and not request.late:
            raise refuse(
                f"the 5 days to resend {self._input.number} with its number and date have passed: "
                "resend it late knowingly (--late) or close it (P18)"
            )

    @workflow.update
    async def close(self, request: CloseDelivery) -> DeliveryView:
        self._closed = f"closed by ops: {request.reason}"
        await workflow.wait_condition(lambda: self.state.state == "closed")
        return self.state

    @close.validator
    def _validate_close(self, request: CloseDelivery) -> None:
        if self.state.state not in REJECTED_STATES:
            raise refuse(f"invoice {self._input.number} is {self.state.state}: only a rejected invoice is closed")

    @workflow.query
    def view(self) -> DeliveryView:
        return self.state

    # ------------------------------------------------------------------ bookkeeping

    def _enter(self, state: DeliveryState, event: str | None = None) -> None:
        if state != self.state.state:
            workflow.upsert_search_attributes([sa.SDI_STATE.value_set(state)])
        self.state.state = state
        if event:
            self.state.last_event = event
        self._show()

    def _show(self) -> None:
        workflow.set_current_details(details(self.state))
