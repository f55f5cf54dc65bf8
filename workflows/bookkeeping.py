"""What the renewal's stages and handlers do besides deciding: wait on a durable timer ops see by
its summary, mark the state touched, enter a stage (the search attributes and the current details
follow), build and send an email about the renewal, answer with a view. The renewal workflow's
base class; deterministic workflow code, passed through the sandbox like `Effects`."""

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from renewals import errors
    from renewals import search_attributes as sa
    from renewals.calls import EmailTemplate, SendEmail
    from renewals.dates import rome_today
    from renewals.details import current_details
    from renewals.emails import email_request
    from renewals.messages import RenewalInput
    from renewals.views import CartView, OrderView
    from workflows.effects import Effects
    from workflows.state import Phase, RenewalState


async def wait_for(condition: Callable[[], bool], timeout: timedelta, summary: str) -> bool:
    """Wait for `condition` at most `timeout` (a durable timer ops see by its summary); False
    when the time ran out first. The renewal's and the invoice delivery's one way to wait."""
    if timeout <= timedelta(0):
        return False
    try:
        await workflow.wait_condition(condition, timeout=timeout, timeout_summary=summary)
        return True
    except TimeoutError:
        return False


class Bookkeeping:
    def __init__(self, input: RenewalInput) -> None:
        self._input = input
        self.state = RenewalState()
        self.effects = Effects(on_refused=self._email_refused, on_sent=self._email_sent)

    # ------------------------------------------------------------------ time and state

    async def _wait(self, condition: Callable[[], bool], timeout: timedelta, summary: str) -> bool:
        return await wait_for(condition, timeout, summary)

    def _touched_since(self, seen: int) -> Callable[[], bool]:
        return lambda: self.state.touched != seen

    def _touch(self, event: str) -> None:
        self.state.touched += 1
        self.state.last_event = event
        self._show_details()

    def _enter(self, phase: Phase, *, reason: str | None = None, event: str | None = None, kind: str = "") -> None:
        """A new stage: search attributes and current details follow."""
        state = self.state
        state.phase = phase
        state.touched += 1
        if reason is not None:
            state.reason = reason
            state.refusal_kind = kind or errors.NOT_ALLOWED
        state.last_event = event or reason or phase.value
        workflow.upsert_search_attributes(sa.renewal_attributes(phase.stage.value, state.order))
        self._show_details()

    def _show_details(self, next_wake: datetime | None = None, what: str = "") -> None:
        state = self.state
        workflow.set_current_details(
            current_details(
                state.phase.stage,
                state.reason,
                state.order,
                state.last_event,
                next_wake,
                what,
                state.dunning.details() if state.dunning else (),
            )
        )

    # ------------------------------------------------------------------ emails

    async def _email(self, template: EmailTemplate, key: str, **fields: object) -> None:
        await self.effects.email(self._email_request(template, key, **fields))

    def _email_request(self, template: EmailTemplate, key: str, **fields: object) -> SendEmail:
        return email_request(template, key, self.state.require_cart().service, self.state.order, **fields)

    def _email_sent(self, email: SendEmail) -> None:
        self.state.emails.append(email.key)

    def _email_refused(self, email: SendEmail, why: str) -> None:
        self.state.emails.append(f"{email.key} refused: {why}")
        self._touch(f"email {email.template} refused by the mail server")

    # ------------------------------------------------------------------ views

    def _cart_view(self) -> CartView:
        order = self._order_view() if self.state.order else None
        return self.state.require_cart().view(self.state.phase.stage, rome_today(workflow.now()), order)

    def _order_view(self) -> OrderView:
        return self.state.require_order().view(self.state.phase.stage)
