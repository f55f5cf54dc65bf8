"""The renewal state machine (DESIGN.md §4): cart → order → await payment → activation.

Deterministic: time is `workflow.now()`, every side effect is an activity, every wait a durable
timer. One state value (`Phase`) says where the renewal is; handlers change it, `run` walks it,
validators read it as rules. Arithmetic, decisions about payments and presentation live in the
domain (`Cart`, `Order`, `renewals.details`).
"""

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.mail import Mailer
    from activities.store import Store
    from renewals import REGISTER_PAYMENT, WORKFLOW_TYPE, errors
    from renewals import search_attributes as sa
    from renewals.cart import Cart
    from renewals.dates import after, rome_today
    from renewals.details import current_details
    from renewals.durations import format_duration
    from renewals.eligibility import reactivation_window_end, refusal
    from renewals.models import (
        INSTANT_METHODS,
        Activate,
        AddAddon,
        ApplyDiscount,
        CancelOrder,
        CartView,
        ChangeDueBy,
        Checkout,
        CloseOrder,
        CreateOrder,
        EmailTemplate,
        ExtendDeadline,
        FindDiscountCode,
        LoadService,
        OpenRequest,
        OrderView,
        PaymentEntry,
        PaymentOutcome,
        RemoveAddon,
        RenewalInput,
        RenewalResult,
        RenewalView,
        SendEmail,
        SettlePayment,
        Stage,
    )
    from renewals.order import Order
    from renewals.pricing import discount_refusal, euro
    from renewals.terms import years_refusal

# Renewals started before issue 14 replay their recorded command sequence (tests/histories/);
# those started after record this marker first and run the leaner, non-blocking path: reads as
# local activities, no redundant search-attribute upsert, emails and ledger writes in the
# background so nothing waits behind an email (P14), overdue reminders coalesced.
RENEWAL_V2_PATCH = "renewal-v2"
INSTANT_PAYMENT_GRACE_PATCH = "instant-payment-grace"
A = TypeVar("A")
R = TypeVar("R")

# Transient failures (a connection refused, an SMTP 4xx, a timeout) retry with backoff for as long
# as it takes; business errors are raised non-retryable by the activities themselves.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
ACTIVITY_TIMEOUT = timedelta(seconds=30)
EMAIL_TIMEOUT = timedelta(minutes=10)


class Phase(StrEnum):
    """Where the renewal is, including the moments between stages that handlers must respect."""

    OPENING = "OPENING"
    CART = "CART"
    CHECKING_OUT = "CHECKING_OUT"  # the order is being created: the cart no longer changes
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    ACTIVATING = "ACTIVATING"  # paid in full: being activated
    LAPSING = "LAPSING"  # the deadline passed: being closed (P3)
    CANCELLING = "CANCELLING"  # ops cancelled it: being closed
    ACTIVATED = "ACTIVATED"
    CART_ABANDONED = "CART_ABANDONED"
    ORDER_EXPIRED = "ORDER_EXPIRED"
    CANCELLED = "CANCELLED"
    REFUSED = "REFUSED"

    @property
    def stage(self) -> Stage:
        """The stage of DESIGN.md §4 that ops and the panel see."""
        return _STAGE_OF.get(self) or Stage(self.value)


_STAGE_OF = {
    Phase.CHECKING_OUT: Stage.CART,
    Phase.ACTIVATING: Stage.AWAITING_PAYMENT,
    Phase.LAPSING: Stage.AWAITING_PAYMENT,
    Phase.CANCELLING: Stage.AWAITING_PAYMENT,
}
# A payment is judged against the order only while it can still be paid (P10).
TAKES_PAYMENTS = frozenset({Phase.AWAITING_PAYMENT, Phase.ACTIVATING})


@dataclass
class RenewalState:
    """Everything the renewal knows, in one place (as ClusterManagerState in safe_message_handlers)."""

    phase: Phase = Phase.OPENING
    cart: Cart | None = None
    order: Order | None = None
    reason: str | None = None
    refusal_kind: str = errors.NOT_ALLOWED
    emails: list[str] = field(default_factory=list)
    last_event: str = "opened"
    # Bumped by every handler that changes what `run` waits for (a cart touch, a new deadline).
    touched: int = 0


def _refuse(message: str, kind: str = errors.NOT_ALLOWED) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


def _domain_error(error: Exception) -> ApplicationError:
    """A domain rule broken inside a handler: a refusal for the caller, never a failed workflow task."""
    return _refuse(str(error), errors.INVALID_REQUEST)


@workflow.defn(name=WORKFLOW_TYPE)
class RenewalWorkflow:
    @workflow.init
    def __init__(self, input: RenewalInput) -> None:
        self._input = input
        self.state = RenewalState()
        self._v2 = False
        self._background: list[asyncio.Task[None]] = []
        # Legacy path only: ledger writes and emails queued by handlers, in the order decided.
        self._outbox: list[SendEmail | SettlePayment] = []
        self._outbox_lock = asyncio.Lock()

    # ------------------------------------------------------------------ the stages

    @workflow.run
    async def run(self, input: RenewalInput) -> RenewalResult:
        self._v2 = workflow.patched(RENEWAL_V2_PATCH)
        if not self._v2:
            workflow.upsert_search_attributes([sa.USERNAME.value_set(input.username)])
        await self._open(input)
        if self.state.phase == Phase.CART:
            await self._cart_stage(input)
        if self.state.phase == Phase.AWAITING_PAYMENT:
            await self._await_payment(input)
        # Late handlers (a payment after the close) may still write to the ledger, and emails may
        # still be on their way: return only once every one of them is done.
        await self._settle_everything()
        order = self.state.order
        return RenewalResult(
            stage=self.state.phase.stage,
            username=input.username,
            order_number=order.number if order else None,
            new_expires_on=order.new_expires_on if order else None,
            reason=self.state.reason,
        )

    async def _open(self, input: RenewalInput) -> None:
        """Load the service and check R1/R2 before anything else; a refusal leaves no cart."""
        try:
            context = await self._read(
                Store.load_service, LoadService(username=input.username), summary=f"load service {input.username}"
            )
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == errors.UNKNOWN_SERVICE:
                self._enter(Phase.REFUSED, reason=cause.message, kind=errors.UNKNOWN_SERVICE)
                return
            raise
        policy = input.policy
        reason = refusal(
            context.service,
            input.mode,
            rome_today(workflow.now()),
            policy.reactivation_window,
            legacy=not policy.reactivation_last_day_included,
        )
        if reason:
            self._enter(Phase.REFUSED, reason=reason)
            return
        self.state.cart = Cart(mode=input.mode, service=context.service, prices=context.prices)
        self._enter(Phase.CART, event=f"{input.mode} requested")

    async def _cart_stage(self, input: RenewalInput) -> None:
        """P4: a cart nobody touches for `cart_idle` is abandoned."""
        idle = f"cart idle for {format_duration(input.policy.cart_idle)} (P4)"
        while self.state.phase in (Phase.CART, Phase.CHECKING_OUT):
            seen = self.state.touched
            try:
                await workflow.wait_condition(
                    self._touched_since(seen), timeout=input.policy.cart_idle, timeout_summary=idle
                )
            except TimeoutError:
                if self.state.phase == Phase.CART:
                    self._enter(Phase.CART_ABANDONED, reason=idle)

    async def _await_payment(self, input: RenewalInput) -> None:
        """P2 reminders, P3 deadline, P5 payments, ops cancel: until paid, lapsed or cancelled."""
        order = self._require_order()
        state = self.state
        # R6: instructions only "if it is not paid at once" (a versioned change: renewals started
        # before it have no marker in their history and keep emailing at once).
        if self._v2 or workflow.patched(INSTANT_PAYMENT_GRACE_PATCH):
            if order.method in INSTANT_METHODS:
                grace = input.policy.instant_payment_grace
                if self._v2:  # P12: never wait past the deadline
                    grace = min(grace, max(order.due_by - workflow.now(), timedelta(0)))
                try:
                    if grace > timedelta(0):
                        await workflow.wait_condition(
                            lambda: order.is_paid or state.phase != Phase.AWAITING_PAYMENT,
                            timeout=grace,
                            timeout_summary=f"{order.method} payment of {order.number} at once (R6)",
                        )
                except TimeoutError:
                    pass
            if not order.is_paid and state.phase == Phase.AWAITING_PAYMENT:
                await self._email("payment_instructions", f"{order.number}:payment_instructions")
        else:
            await self._email("payment_instructions", f"{order.number}:payment_instructions")
        reminders = [after(order.ordered_at, wait) for wait in input.policy.reminders]
        sent = 0
        while True:
            await self._drain_outbox()
            if order.is_paid and state.phase == Phase.AWAITING_PAYMENT:
                state.phase = Phase.ACTIVATING
            if state.phase == Phase.ACTIVATING:
                await self._activate(order)
                return
            if state.phase == Phase.CANCELLING:
                await self._close(order, Phase.CANCELLED, state.reason or "cancelled by ops")
                return
            now = workflow.now()
            if self._v2:
                # After an outage, one reminder for all those overdue, and none past the deadline (P2).
                while sent + 1 < len(reminders) and reminders[sent + 1] <= now:
                    sent += 1
            reminder_due = sent < len(reminders) and reminders[sent] < order.due_by
            wake_at = reminders[sent] if reminder_due else order.due_by
            if now >= wake_at:
                if not reminder_due or (self._v2 and now >= order.due_by):
                    state.phase = Phase.LAPSING
                    await self._close(order, Phase.ORDER_EXPIRED, "payment deadline passed (P3)")
                    return
                sent += 1
                await self._email("reminder", f"{order.number}:reminder:{sent}", reminder_number=sent)
                continue
            what = f"reminder {sent + 1}" if reminder_due else "deadline"
            self._show_details(next_wake=wake_at, what=what)
            seen = state.touched
            try:
                await workflow.wait_condition(
                    self._touched_since(seen),  # every payment, cancel or extension touches
                    timeout=wake_at - now,
                    timeout_summary=(
                        f"reminder {sent + 1} for {order.number}"
                        if reminder_due
                        else f"payment deadline of {order.number} (P3)"
                    ),
                )
            except TimeoutError:
                pass

    async def _activate(self, order: Order) -> None:
        cart = self._require_cart()
        activation = await self._call(
            Store.activate,
            Activate(
                order_number=order.number,
                username=cart.service.username,
                years=order.years,
                cart_addons=cart.added,
                paid_at=workflow.now(),
            ),
            summary=f"activate {order.number}: expiry {cart.service.expires_on} → {cart.renewed_until(order.years)}",
        )
        order.new_expires_on = activation.new_expires_on
        self._enter(Phase.ACTIVATED, event=f"activated until {activation.new_expires_on}")
        await self._email("renewal_confirmed", f"{order.number}:renewal_confirmed")

    async def _close(self, order: Order, phase: Phase, reason: str) -> None:
        await self._call(
            Store.close_order,
            CloseOrder(
                order_number=order.number,
                status="expired" if phase == Phase.ORDER_EXPIRED else "cancelled",
                reason=reason,
                closed_at=workflow.now(),
            ),
            summary=f"close order {order.number}: {reason}",
        )
        self._enter(phase, reason=reason)
        template: EmailTemplate = "order_lapsed" if phase == Phase.ORDER_EXPIRED else "order_cancelled"
        await self._email(template, f"{order.number}:{template}", reason=reason)

    # ------------------------------------------------------------------ side effects

    def _call(self, method: Callable[[Any, A], Awaitable[R]], arg: A, *, summary: str, **options: Any) -> Awaitable[R]:
        """Every activity call: one retry policy, and a summary ops read in the history."""
        options.setdefault("start_to_close_timeout", ACTIVITY_TIMEOUT)
        return workflow.execute_activity_method(method, arg, retry_policy=RETRY, summary=summary, **options)

    def _read(self, method: Callable[[Any, A], Awaitable[R]], arg: A, *, summary: str) -> Awaitable[R]:
        """A read of PostgreSQL: a local activity (no round trip through the server) on the v2 path."""
        if not self._v2:
            return self._call(method, arg, summary=summary)
        return workflow.execute_local_activity_method(
            method, arg, retry_policy=RETRY, start_to_close_timeout=ACTIVITY_TIMEOUT, summary=summary
        )

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        self._background.append(asyncio.create_task(work))

    async def _settle_everything(self) -> None:
        while True:
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._outbox:
                await self._drain_outbox()
                continue
            pending = [task for task in self._background if not task.done()]
            if not pending:
                return
            await asyncio.gather(*pending)

    async def _email(self, template: EmailTemplate, key: str, **fields: object) -> None:
        """One logical email, keyed so a retry never sends it twice; in the background on v2."""
        request = self._email_request(template, key, **fields)
        if self._v2:
            self._in_background(self._send_email(request))
        else:
            await self._send_email(request)

    def _email_request(self, template: EmailTemplate, key: str, **fields: object) -> SendEmail:
        service = self._require_cart().service
        values = self.state.order.email_fields() if self.state.order else {}
        return SendEmail.model_validate(
            {
                "key": key,
                "template": template,
                "username": service.username,
                "to_name": service.holder_name,
                "to_email": service.holder_email,
                **values,
                **fields,
            }
        )

    async def _send_email(self, request: SendEmail) -> None:
        try:
            await self._call(
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
            self.state.emails.append(f"{request.key} refused: {cause.message}")
            self._touch(f"email {request.template} refused by the mail server")
            return
        self.state.emails.append(request.key)

    async def _settle(self, item: SettlePayment) -> None:
        entry, outcome = item.entry, item.outcome
        await self._call(
            Store.settle_payment,
            item,
            summary=(
                f"ledger {entry.transaction_id}: {outcome.status} {euro(entry.amount_cents)} on {entry.order_number}"
            ),
        )

    async def _drain_outbox(self) -> None:
        """Legacy path: ledger writes and emails queued by handlers, in the order they were decided."""
        async with self._outbox_lock:
            while self._outbox:
                item = self._outbox[0]
                await (self._settle(item) if isinstance(item, SettlePayment) else self._send_email(item))
                self._outbox.pop(0)

    # ------------------------------------------------------------------ opening (update-with-start)

    @workflow.update
    async def open(self, request: OpenRequest) -> CartView:
        """The renew/reactivate press. A second press returns the cart already open (P8)."""
        await workflow.wait_condition(lambda: self.state.phase != Phase.OPENING)
        if self.state.phase == Phase.REFUSED:
            raise _refuse(self.state.reason or "refused", self.state.refusal_kind)
        return self._cart_view()

    # ------------------------------------------------------------------ cart changes (R3, P4)

    def _require_cart_phase(self) -> Cart:
        if self.state.phase != Phase.CART:
            stage = "checking out" if self.state.phase == Phase.CHECKING_OUT else self.state.phase.stage.value
            raise _refuse(f"the cart can no longer change: the renewal is {stage}")
        return self._require_cart()

    @workflow.update
    async def add_addon(self, request: AddAddon) -> CartView:
        try:
            self.state.cart = self._require_cart().with_addon(request.addon, request.quantity)
        except (ValidationError, ValueError) as error:
            raise _domain_error(error) from None
        self._touch(f"added {request.quantity} × {request.addon}")
        return self._cart_view()

    @add_addon.validator
    def _validate_add_addon(self, request: AddAddon) -> None:
        reason = self._require_cart_phase().addon_refusal(request.addon, request.quantity)
        if reason:
            raise _refuse(reason, errors.INVALID_REQUEST)

    @workflow.update
    async def remove_addon(self, request: RemoveAddon) -> CartView:
        self.state.cart = self._require_cart().without_addon(request.addon)
        self._touch(f"removed {request.addon}")
        return self._cart_view()

    @remove_addon.validator
    def _validate_remove_addon(self, request: RemoveAddon) -> None:
        if not self._require_cart_phase().has_in_cart(request.addon):
            raise _refuse(
                f"addon {request.addon} is not in the cart; active add-ons renew with the service",
                errors.INVALID_REQUEST,
            )

    @workflow.update
    async def apply_discount(self, request: ApplyDiscount) -> CartView:
        lookup = await self._read(
            Store.find_discount_code,
            FindDiscountCode(code=request.code),
            summary=f"look up discount code {request.code}",
        )
        reason = discount_refusal(request.code, lookup.found, rome_today(workflow.now()))
        if reason:
            raise _refuse(reason, errors.INVALID_REQUEST)
        # The cart may have moved on while the code was looked up.
        self.state.cart = self._require_cart_phase().model_copy(update={"discount": lookup.found})
        self._touch(f"discount code {request.code} applied")
        return self._cart_view()

    @apply_discount.validator
    def _validate_apply_discount(self, request: ApplyDiscount) -> None:
        self._require_cart_phase()

    # ------------------------------------------------------------------ checkout (R5, R6)

    @workflow.update
    async def checkout(self, request: Checkout) -> OrderView:
        """Confirm the order and give it a number; the instructions email follows."""
        input, cart, state = self._input, self._require_cart(), self.state
        state.phase = Phase.CHECKING_OUT
        self._touch(f"checkout: {request.years} years by {request.payment_method}")
        try:
            now = workflow.now()
            lines, quote = cart.lines(request.years), cart.quote(request.years)
            due_by = min(after(now, input.policy.payment_deadline), self._window_end())
            created = await self._call(
                Store.create_order,
                CreateOrder(
                    workflow_id=workflow.info().workflow_id,
                    run_id=workflow.info().run_id,
                    username=input.username,
                    mode=input.mode,
                    years=request.years,
                    payment_method=request.payment_method,
                    discount_code=cart.discount.code if cart.discount else None,
                    lines=lines,
                    quote=quote,
                    previous_expires_on=cart.service.expires_on,
                    due_by=due_by,
                    ordered_at=now,
                ),
                summary=f"create order: {request.years}y by {request.payment_method}, {euro(quote.total_cents)}",
            )
        except BaseException:
            state.phase = Phase.CART
            raise
        state.order = Order(
            number=created.order_number,
            years=request.years,
            method=request.payment_method,
            lines=lines,
            quote=quote,
            ordered_at=now,
            due_by=due_by,
        )
        self._enter(Phase.AWAITING_PAYMENT, event=f"order {created.order_number} confirmed")
        return self._order_view()

    @checkout.validator
    def _validate_checkout(self, request: Checkout) -> None:
        cart = self._require_cart_phase()
        reason = years_refusal(request.years, cart.service.promotional)
        if reason:
            raise _refuse(reason, errors.INVALID_REQUEST)
        if workflow.now() >= self._window_end():
            # The cart was opened in time, but the service ceased while it sat there (R2).
            raise _refuse(
                f"the reactivation window closed on {self._last_day():%Y-%m-%d}: "
                "the service is ceased and can no longer be reactivated (R2)"
            )

    def _window_end(self) -> datetime:
        """When the service ceases (R2): no deadline, extension or checkout goes past it."""
        policy = self._input.policy
        return reactivation_window_end(
            self._require_cart().service.expires_on,
            policy.reactivation_window,
            legacy=not policy.reactivation_last_day_included,
        )

    def _last_day(self) -> datetime:
        return self._window_end() - timedelta(days=1)

    # ------------------------------------------------------------------ payments (P5, P10–P12)

    @workflow.update(name=REGISTER_PAYMENT)
    async def register_payment(self, entry: PaymentEntry) -> PaymentOutcome:
        """A payment already written to the ledger; the answer is the order's decision (P5)."""
        order, state = self.state.order, self.state
        if order is None:
            outcome = PaymentOutcome(
                status="unmatched",
                order_number=entry.order_number,
                transaction_id=entry.transaction_id,
                paid_cents=0,
                balance_cents=0,
                note="the renewal has no order (P10)",
            )
        else:
            outcome = order.apply(entry, entry.received_at or workflow.now(), open=state.phase in TAKES_PAYMENTS)
        if outcome.status == "duplicate":
            return outcome
        self._touch(
            f"payment {entry.transaction_id} {euro(entry.amount_cents)}: {outcome.status}"
            + (" (by hand)" if entry.by_hand else "")
        )
        settle = SettlePayment(entry=entry, outcome=outcome)
        if self._v2:
            self._in_background(self._settle(settle))
            if outcome.status == "partial":
                await self._email("balance_due", f"{entry.order_number}:balance_due:{entry.transaction_id}")
            return outcome
        self._outbox.append(settle)
        if outcome.status == "partial":
            self._outbox.append(
                self._email_request("balance_due", f"{entry.order_number}:balance_due:{entry.transaction_id}")
            )
        if state.phase.stage != Stage.AWAITING_PAYMENT:
            # `run` is not in its payment loop: write the ledger before answering.
            await self._drain_outbox()
        return outcome

    # ------------------------------------------------------------------ ops

    @workflow.update
    async def cancel_order(self, request: CancelOrder) -> OrderView:
        self.state.phase = Phase.CANCELLING
        self.state.reason = f"cancelled by ops: {request.reason}"
        self._touch("cancel requested by ops")
        await workflow.wait_condition(lambda: self.state.phase.stage != Stage.AWAITING_PAYMENT)
        return self._order_view()

    @cancel_order.validator
    def _validate_cancel_order(self, request: CancelOrder) -> None:
        self._require_unpaid_order()

    @workflow.update
    async def extend_deadline(self, request: ExtendDeadline) -> OrderView:
        order = self._require_order()
        order.due_by = order.extended(request.days, self._window_end())
        await self._call(
            Store.change_due_by,
            ChangeDueBy(order_number=order.number, due_by=order.due_by, reason=request.reason),
            summary=f"extend deadline of {order.number} to {order.due_by:%Y-%m-%d}",
        )
        self._enter(self.state.phase, event=f"deadline extended by {request.days} days by ops")
        return self._order_view()

    @extend_deadline.validator
    def _validate_extend_deadline(self, request: ExtendDeadline) -> None:
        order = self._require_unpaid_order()
        if order.extended(request.days, self._window_end()) <= order.due_by:
            raise _refuse(
                "the deadline of a reactivation cannot pass the end of the reactivation window "
                f"({self._last_day():%Y-%m-%d}, R2/P3)"
            )

    def _require_unpaid_order(self) -> Order:
        order = self.state.order
        if order is None or self.state.phase != Phase.AWAITING_PAYMENT:
            raise _refuse(f"there is no order awaiting payment: the renewal is {self.state.phase.stage.value}")
        if order.is_paid:
            raise _refuse(f"order {order.number} is paid and being activated")
        return order

    # ------------------------------------------------------------------ views

    @workflow.query
    def view(self) -> RenewalView:
        state, order = self.state, self.state.order
        return RenewalView(
            stage=state.phase.stage,
            mode=self._input.mode,
            username=self._input.username,
            reason=state.reason,
            cart=self._cart_view() if state.cart else None,
            order=self._order_view() if order else None,
            payments=list(order.payments) if order else [],
            emails=list(state.emails),
        )

    def _cart_view(self) -> CartView:
        order = self._order_view() if self.state.order else None
        return self._require_cart().view(self.state.phase.stage, rome_today(workflow.now()), order)

    def _order_view(self) -> OrderView:
        return self._require_order().view(self.state.phase.stage)

    # ------------------------------------------------------------------ bookkeeping

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
        pairs: list[SearchAttributeUpdate[Any]] = [sa.STAGE.value_set(phase.stage.value)]
        if state.order is not None:
            order = state.order
            pairs += [
                sa.ORDER.value_set(order.number),
                sa.PAYMENT_METHOD.value_set(order.method),
                sa.DUE_BY.value_set(order.due_by),
                sa.TOTAL_CENTS.value_set(order.quote.total_cents),
            ]
        workflow.upsert_search_attributes(pairs)
        self._show_details()

    def _show_details(self, next_wake: datetime | None = None, what: str = "") -> None:
        state = self.state
        workflow.set_current_details(
            current_details(state.phase.stage, state.reason, state.order, state.last_event, next_wake, what)
        )

    def _require_cart(self) -> Cart:
        if self.state.cart is None:
            raise _refuse(f"there is no cart: the renewal is {self.state.phase.stage.value}")
        return self.state.cart

    def _require_order(self) -> Order:
        if self.state.order is None:
            raise _refuse(f"there is no order: the renewal is {self.state.phase.stage.value}")
        return self.state.order
