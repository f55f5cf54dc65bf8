"""The renewal state machine (DESIGN.md §4): cart → order → await payment → activation.

Deterministic: time is `workflow.now()`, every side effect is an activity, every wait a durable
timer. Handlers change state; `run` walks the stages; business arithmetic is in `renewals`.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.mail import Mailer
    from activities.store import Store
    from renewals import WORKFLOW_TYPE, errors
    from renewals import search_attributes as sa
    from renewals.cart import Cart
    from renewals.dates import after, rome_time, rome_today
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
        OrderLine,
        OrderView,
        PaymentEntry,
        PaymentMethod,
        PaymentOutcome,
        PaymentSeen,
        Quote,
        RemoveAddon,
        RenewalInput,
        RenewalResult,
        RenewalView,
        SendEmail,
        SettlePayment,
        Stage,
    )
    from renewals.payments import apply_payment, instructions
    from renewals.pricing import discount_refusal, euro
    from renewals.terms import years_refusal

INSTANT_PAYMENT_GRACE_PATCH = "instant-payment-grace"
A = TypeVar("A")
R = TypeVar("R")

# Transient failures (a connection refused, an SMTP 4xx, a timeout) retry with backoff for as long
# as it takes; business errors are raised non-retryable by the activities themselves.
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
ACTIVITY_TIMEOUT = timedelta(seconds=30)
EMAIL_TIMEOUT = timedelta(minutes=10)


def _activity(method: Callable[[Any, A], Awaitable[R]], arg: A, *, summary: str, **options: Any) -> Awaitable[R]:
    """Every activity call: one retry policy, and a summary ops read in the history."""
    options.setdefault("start_to_close_timeout", ACTIVITY_TIMEOUT)
    return workflow.execute_activity_method(method, arg, retry_policy=RETRY, summary=summary, **options)


def _refuse(message: str, kind: str = errors.NOT_ALLOWED) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


class _Order:
    """The order once checked out: what was bought and what has been paid."""

    def __init__(
        self,
        number: str,
        years: int,
        method: PaymentMethod,
        lines: list[OrderLine],
        quote: Quote,
        ordered_at: datetime,
        due_by: datetime,
    ) -> None:
        self.number = number
        self.years = years
        self.method = method
        self.lines = lines
        self.quote = quote
        self.ordered_at = ordered_at
        self.due_by = due_by
        self.paid_cents = 0
        self.new_expires_on: date | None = None


@workflow.defn(name=WORKFLOW_TYPE)
class RenewalWorkflow:
    @workflow.init
    def __init__(self, input: RenewalInput) -> None:
        self._input = input
        self._stage = Stage.OPENING
        self._reason: str | None = None
        self._cart: Cart | None = None
        self._order: _Order | None = None
        self._checking_out = False
        self._cancel_reason: str | None = None
        # Set while the order is being closed (lapse or cancel): payments then are unmatched (P10).
        self._closing = False
        self._payments: dict[str, PaymentSeen] = {}
        self._outbox: list[SendEmail | SettlePayment] = []
        self._emails: list[str] = []
        self._last_event = "opened"
        # Bumped by every handler that changes what `run` is waiting for.
        self._changes = 0
        self._refusal_kind = errors.NOT_ALLOWED
        self._outbox_lock = asyncio.Lock()

    # ------------------------------------------------------------------ the stages

    @workflow.run
    async def run(self, input: RenewalInput) -> RenewalResult:
        workflow.upsert_search_attributes([sa.USERNAME.value_set(input.username)])
        await self._open(input)
        if self._stage == Stage.CART:
            await self._cart_stage(input)
        if self._stage == Stage.AWAITING_PAYMENT:
            await self._await_payment(input)
        # Late handlers (a payment after the close) may still queue ledger writes: return only
        # when none is running and nothing is left to write.
        await workflow.wait_condition(workflow.all_handlers_finished)
        while self._outbox:
            await self._drain_outbox()
            await workflow.wait_condition(workflow.all_handlers_finished)
        return RenewalResult(
            stage=self._stage,
            username=input.username,
            order_number=self._order.number if self._order else None,
            new_expires_on=self._order.new_expires_on if self._order else None,
            reason=self._reason,
        )

    async def _open(self, input: RenewalInput) -> None:
        """Load the service and check R1/R2 before anything else; a refusal leaves no cart."""
        try:
            context = await _activity(
                Store.load_service,
                LoadService(username=input.username),
                summary=f"load service {input.username}",
            )
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == errors.UNKNOWN_SERVICE:
                self._set_stage(Stage.REFUSED, reason=cause.message, kind=errors.UNKNOWN_SERVICE)
                return
            raise
        today = rome_today(workflow.now())
        policy = input.policy
        reason = refusal(
            context.service,
            input.mode,
            today,
            policy.reactivation_window,
            legacy=not policy.reactivation_last_day_included,
        )
        if reason:
            self._set_stage(Stage.REFUSED, reason=reason)
            return
        self._cart = Cart(mode=input.mode, service=context.service, prices=context.prices)
        self._set_stage(Stage.CART, event=f"{input.mode} requested")

    async def _cart_stage(self, input: RenewalInput) -> None:
        """P4: a cart nobody touches for `cart_idle` is abandoned."""
        while self._stage == Stage.CART:
            seen = self._changes
            try:
                await workflow.wait_condition(
                    self._changed_since(seen),
                    timeout=input.policy.cart_idle,
                    timeout_summary=f"cart idle for {format_duration(input.policy.cart_idle)} (P4)",
                )
            except TimeoutError:
                if not self._checking_out:
                    self._set_stage(
                        Stage.CART_ABANDONED, reason=f"cart idle for {format_duration(input.policy.cart_idle)} (P4)"
                    )

    async def _await_payment(self, input: RenewalInput) -> None:
        """P2 reminders, P3 deadline, P5 payments, ops cancel: until paid, lapsed or cancelled."""
        order = self._require_order()
        # Versioned change (R6: instructions only "if it is not paid at once"). Renewals that
        # started before it have no marker in their history and keep emailing at once.
        if workflow.patched(INSTANT_PAYMENT_GRACE_PATCH):
            if order.method in INSTANT_METHODS:
                try:
                    await workflow.wait_condition(
                        lambda: order.paid_cents >= order.quote.total_cents or self._cancel_reason is not None,
                        timeout=input.policy.instant_payment_grace,
                        timeout_summary=f"{order.method} payment of {order.number} at once (R6)",
                    )
                except TimeoutError:
                    pass
            if order.paid_cents < order.quote.total_cents and self._cancel_reason is None:
                await self._email("payment_instructions", f"{order.number}:payment_instructions")
        else:
            await self._email("payment_instructions", f"{order.number}:payment_instructions")
        reminders = [after(order.ordered_at, wait) for wait in input.policy.reminders]
        sent = 0
        while True:
            await self._drain_outbox()
            if order.paid_cents >= order.quote.total_cents:
                await self._activate(order)
                return
            if self._cancel_reason is not None:
                await self._close(order, Stage.CANCELLED, self._cancel_reason)
                return
            now = workflow.now()
            reminder_due = sent < len(reminders) and reminders[sent] < order.due_by
            wake_at = reminders[sent] if reminder_due else order.due_by
            if now >= wake_at:
                if not reminder_due:
                    await self._close(order, Stage.ORDER_EXPIRED, "payment deadline passed (P3)")
                    return
                sent += 1
                await self._email("reminder", f"{order.number}:reminder:{sent}", reminder_number=sent)
                continue
            self._show_details(next_wake=wake_at, what=f"reminder {sent + 1}" if reminder_due else "deadline")
            seen = self._changes
            try:
                await workflow.wait_condition(
                    self._changed_since(seen),
                    timeout=wake_at - now,
                    timeout_summary=(
                        f"reminder {sent + 1} for {order.number}"
                        if reminder_due
                        else f"payment deadline of {order.number} (P3)"
                    ),
                )
            except TimeoutError:
                pass

    async def _activate(self, order: _Order) -> None:
        cart = self._require_cart()
        activation = await _activity(
            Store.activate,
            Activate(
                order_number=order.number,
                username=cart.service.username,
                years=order.years,
                cart_addons=cart.added,
                paid_at=workflow.now(),
            ),
            summary=(f"activate {order.number}: expiry {cart.service.expires_on} → {cart.renewed_until(order.years)}"),
        )
        order.new_expires_on = activation.new_expires_on
        self._set_stage(Stage.ACTIVATED, event=f"activated until {activation.new_expires_on}")
        await self._email("renewal_confirmed", f"{order.number}:renewal_confirmed")

    async def _close(self, order: _Order, stage: Stage, reason: str) -> None:
        self._closing = True
        await _activity(
            Store.close_order,
            CloseOrder(
                order_number=order.number,
                status="expired" if stage == Stage.ORDER_EXPIRED else "cancelled",
                reason=reason,
                closed_at=workflow.now(),
            ),
            summary=f"close order {order.number}: {reason}",
        )
        self._set_stage(stage, reason=reason)
        template: EmailTemplate = "order_lapsed" if stage == Stage.ORDER_EXPIRED else "order_cancelled"
        await self._email(template, f"{order.number}:{template}", reason=reason)

    # ------------------------------------------------------------------ side effects

    async def _email(self, template: EmailTemplate, key: str, **fields: object) -> None:
        """Send one logical email, keyed so that a retry never sends it twice."""
        await self._send(self._email_request(template, key, **fields))

    def _email_request(self, template: EmailTemplate, key: str, **fields: object) -> SendEmail:
        cart, order = self._require_cart(), self._order
        values: dict[str, object] = {}
        if order is not None:
            values = {
                "order_number": order.number,
                "total_cents": order.quote.total_cents,
                "paid_cents": order.paid_cents,
                "balance_cents": max(order.quote.total_cents - order.paid_cents, 0),
                "refund_cents": max(order.paid_cents - order.quote.total_cents, 0),
                "due_by": order.due_by,
                "new_expires_on": order.new_expires_on,
                "instructions": instructions(order.number, order.quote.total_cents),
            }
        values.update(fields)
        return SendEmail.model_validate(
            {
                "key": key,
                "template": template,
                "username": cart.service.username,
                "to_name": cart.service.holder_name,
                "to_email": cart.service.holder_email,
                **values,
            }
        )

    async def _send(self, item: SendEmail | SettlePayment) -> None:
        if isinstance(item, SettlePayment):
            await _activity(
                Store.settle_payment,
                item,
                summary=(
                    f"ledger {item.entry.transaction_id}: {item.outcome.status} "
                    f"{euro(item.entry.amount_cents)} on {item.entry.order_number}"
                ),
            )
            return
        try:
            await _activity(
                Mailer.send_email,
                item,
                # Long enough to outlast a database outage after the email is out (see Mailer).
                start_to_close_timeout=EMAIL_TIMEOUT,
                heartbeat_timeout=ACTIVITY_TIMEOUT,
                summary=f"email {item.template.replace('_', ' ')} {item.order_number or item.username}",
            )
        except ActivityError as error:
            cause = error.cause
            if not (isinstance(cause, ApplicationError) and cause.type == errors.MAIL_REJECTED):
                raise
            # A refused address will not heal by retrying, and must not stop the renewal: the
            # refusal is kept where ops look (the view's emails, the current details).
            self._emails.append(f"{item.key} refused: {cause.message}")
            self._touch(f"email {item.template} refused by the mail server")
            return
        self._emails.append(item.key)

    async def _drain_outbox(self) -> None:
        """Ledger writes and emails queued by handlers, in the order they were decided."""
        async with self._outbox_lock:
            while self._outbox:
                await self._send(self._outbox[0])
                self._outbox.pop(0)

    # ------------------------------------------------------------------ opening (update-with-start)

    @workflow.update
    async def open(self, request: OpenRequest) -> CartView:
        """The renew/reactivate press. A second press returns the cart already open (P8)."""
        await workflow.wait_condition(lambda: self._stage != Stage.OPENING)
        if self._stage == Stage.REFUSED:
            raise _refuse(self._reason or "refused", self._refusal_kind)
        return self._cart_view()

    # ------------------------------------------------------------------ cart changes

    def _require_cart_stage(self) -> None:
        if self._stage != Stage.CART or self._checking_out:
            stage = "checking out" if self._checking_out else self._stage.value
            raise _refuse(f"the cart can no longer change: the renewal is {stage}")

    @workflow.update
    async def add_addon(self, request: AddAddon) -> CartView:
        self._cart = self._require_cart().with_addon(request.addon, request.quantity)
        self._touch(f"added {request.quantity} × {request.addon}")
        return self._cart_view()

    @add_addon.validator
    def _validate_add_addon(self, request: AddAddon) -> None:
        self._require_cart_stage()

    @workflow.update
    async def remove_addon(self, request: RemoveAddon) -> CartView:
        self._cart = self._require_cart().without_addon(request.addon)
        self._touch(f"removed {request.addon}")
        return self._cart_view()

    @remove_addon.validator
    def _validate_remove_addon(self, request: RemoveAddon) -> None:
        self._require_cart_stage()
        if not self._require_cart().has_in_cart(request.addon):
            raise _refuse(
                f"addon {request.addon} is not in the cart; active add-ons renew with the service",
                errors.INVALID_REQUEST,
            )

    @workflow.update
    async def apply_discount(self, request: ApplyDiscount) -> CartView:
        lookup = await _activity(
            Store.find_discount_code,
            FindDiscountCode(code=request.code),
            summary=f"look up discount code {request.code}",
        )
        reason = discount_refusal(request.code, lookup.found, rome_today(workflow.now()))
        if reason:
            raise _refuse(reason, errors.INVALID_REQUEST)
        # The cart may have moved on while the code was looked up.
        self._require_cart_stage()
        self._cart = self._require_cart().model_copy(update={"discount": lookup.found})
        self._touch(f"discount code {request.code} applied")
        return self._cart_view()

    @apply_discount.validator
    def _validate_apply_discount(self, request: ApplyDiscount) -> None:
        self._require_cart_stage()

    @workflow.update
    async def checkout(self, request: Checkout) -> OrderView:
        """R5/R6: confirm the order and give it a number; the instructions email follows."""
        input, cart = self._input, self._require_cart()
        self._checking_out = True
        self._touch(f"checkout: {request.years} years by {request.payment_method}")
        try:
            now = workflow.now()
            lines, quote = cart.lines(request.years), cart.quote(request.years)
            due_by = self._deadline(now)
            created = await _activity(
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
                summary=(f"create order: {request.years}y by {request.payment_method}, {euro(quote.total_cents)}"),
            )
        finally:
            self._checking_out = False
        self._order = _Order(created.order_number, request.years, request.payment_method, lines, quote, now, due_by)
        self._set_stage(Stage.AWAITING_PAYMENT, event=f"order {created.order_number} confirmed")
        return self._order_view()

    @checkout.validator
    def _validate_checkout(self, request: Checkout) -> None:
        self._require_cart_stage()
        cart = self._require_cart()
        reason = years_refusal(request.years, cart.service.promotional)
        if reason:
            raise _refuse(reason, errors.INVALID_REQUEST)
        if workflow.now() >= self._window_end():
            # The cart was opened in time, but the service ceased while it sat there (R2).
            raise _refuse(
                f"the reactivation window closed at {rome_time(self._window_end())}: "
                "the service is ceased and can no longer be reactivated (R2)"
            )

    def _deadline(self, ordered_at: datetime) -> datetime:
        """P3: the payment deadline, never past the day the service ceases (R2): a reactivation
        meets that day, and so can a renewal whose cart sat past its expiry."""
        return min(after(ordered_at, self._input.policy.payment_deadline), self._window_end())

    def _window_end(self) -> datetime:
        policy = self._input.policy
        return reactivation_window_end(
            self._require_cart().service.expires_on,
            policy.reactivation_window,
            legacy=not policy.reactivation_last_day_included,
        )

    # ------------------------------------------------------------------ payments (P5, P10)

    @workflow.update
    async def register_payment(self, entry: PaymentEntry) -> PaymentOutcome:
        """A payment already written to the ledger; the answer is what P5 made of it."""
        order = self._order
        if entry.transaction_id in self._payments:
            return PaymentOutcome(
                status="duplicate",
                order_number=entry.order_number,
                transaction_id=entry.transaction_id,
                paid_cents=order.paid_cents if order else 0,
                balance_cents=max(order.quote.total_cents - order.paid_cents, 0) if order else 0,
            )
        if order is None or order.number != entry.order_number or not self._takes_payments():
            # P10: a late payment never revives a closed order; it waits for ops as unmatched.
            outcome = PaymentOutcome(
                status="unmatched",
                order_number=entry.order_number,
                transaction_id=entry.transaction_id,
                paid_cents=order.paid_cents if order and order.number == entry.order_number else 0,
                balance_cents=0,
            )
        else:
            outcome = apply_payment(
                order.number,
                entry.transaction_id,
                order.quote.total_cents,
                order.paid_cents,
                entry.amount_cents,
            )
            order.paid_cents = outcome.paid_cents
        self._payments[entry.transaction_id] = PaymentSeen(
            transaction_id=entry.transaction_id,
            amount_cents=entry.amount_cents,
            method=entry.method,
            status=outcome.status,
            registered_at=entry.registered_at,
            by_hand=entry.by_hand,
        )
        self._outbox.append(SettlePayment(entry=entry, outcome=outcome))
        if outcome.status == "partial":
            self._outbox.append(
                self._email_request("balance_due", f"{entry.order_number}:balance_due:{entry.transaction_id}")
            )
        self._touch(
            f"payment {entry.transaction_id} {euro(entry.amount_cents)}: {outcome.status}"
            + (" (by hand)" if entry.by_hand else "")
        )
        if self._stage != Stage.AWAITING_PAYMENT:
            # `run` is not in its payment loop: write the ledger before answering.
            await self._drain_outbox()
        return outcome

    # ------------------------------------------------------------------ ops

    @workflow.update
    async def cancel_order(self, request: CancelOrder) -> OrderView:
        self._cancel_reason = f"cancelled by ops: {request.reason}"
        self._touch("cancel requested by ops")
        await workflow.wait_condition(lambda: self._stage != Stage.AWAITING_PAYMENT)
        return self._order_view()

    @cancel_order.validator
    def _validate_cancel_order(self, request: CancelOrder) -> None:
        self._require_awaiting_payment()

    @workflow.update
    async def extend_deadline(self, request: ExtendDeadline) -> OrderView:
        order = self._require_order()
        order.due_by = self._extended(order.due_by, request.days)
        await _activity(
            Store.change_due_by,
            ChangeDueBy(order_number=order.number, due_by=order.due_by, reason=request.reason),
            summary=f"extend deadline of {order.number} to {order.due_by:%Y-%m-%d}",
        )
        self._set_stage(self._stage, event=f"deadline extended by {request.days} days by ops")
        return self._order_view()

    @extend_deadline.validator
    def _validate_extend_deadline(self, request: ExtendDeadline) -> None:
        order = self._require_awaiting_payment()
        if self._extended(order.due_by, request.days) <= order.due_by:
            raise _refuse(
                "the deadline of a reactivation cannot pass the end of the reactivation window "
                f"({rome_time(self._window_end())}, R2/P3)"
            )

    def _extended(self, due_by: datetime, days: int) -> datetime:
        """An ops extension, bounded by the same R2 window as the deadline itself."""
        return min(after(due_by, timedelta(days=days)), self._window_end())

    def _takes_payments(self) -> bool:
        """The order is open: not being closed, no cancel pending."""
        return self._stage == Stage.AWAITING_PAYMENT and not self._closing and self._cancel_reason is None

    def _require_awaiting_payment(self) -> _Order:
        if self._order is None or not self._takes_payments():
            raise _refuse(f"there is no order awaiting payment: the renewal is {self._stage.value}")
        if self._order.paid_cents >= self._order.quote.total_cents:
            raise _refuse(f"order {self._order.number} is paid and being activated")
        return self._order

    # ------------------------------------------------------------------ views

    @workflow.query
    def view(self) -> RenewalView:
        input = self._input
        return RenewalView(
            stage=self._stage,
            mode=input.mode,
            username=input.username,
            reason=self._reason,
            cart=self._cart_view() if self._cart else None,
            order=self._order_view() if self._order else None,
            payments=list(self._payments.values()),
            emails=list(self._emails),
        )

    def _cart_view(self) -> CartView:
        order = self._order_view() if self._order else None
        return self._require_cart().view(self._stage, rome_today(workflow.now()), order)

    def _order_view(self) -> OrderView:
        order = self._require_order()
        return OrderView(
            order_number=order.number,
            stage=self._stage,
            years=order.years,
            payment_method=order.method,
            lines=order.lines,
            net_cents=order.quote.net_cents,
            discount_cents=order.quote.discount_cents,
            vat_cents=order.quote.vat_cents,
            total_cents=order.quote.total_cents,
            paid_cents=order.paid_cents,
            balance_cents=max(order.quote.total_cents - order.paid_cents, 0),
            due_by=order.due_by,
            payment_instructions=instructions(order.number, order.quote.total_cents),
            new_expires_on=order.new_expires_on,
        )

    # ------------------------------------------------------------------ bookkeeping

    def _changed_since(self, seen: int) -> Callable[[], bool]:
        return lambda: self._changes != seen

    def _touch(self, event: str) -> None:
        self._changes += 1
        self._last_event = event
        self._show_details()

    def _set_stage(
        self,
        stage: Stage,
        *,
        reason: str | None = None,
        event: str | None = None,
        kind: str = errors.NOT_ALLOWED,
    ) -> None:
        self._stage = stage
        self._changes += 1
        if reason is not None:
            self._reason = reason
            self._refusal_kind = kind
        self._last_event = event or reason or stage.value
        pairs: list[SearchAttributeUpdate[Any]] = [sa.STAGE.value_set(stage.value)]
        if self._order is not None:
            pairs += [
                sa.ORDER.value_set(self._order.number),
                sa.PAYMENT_METHOD.value_set(self._order.method),
                sa.DUE_BY.value_set(self._order.due_by),
                sa.TOTAL_CENTS.value_set(self._order.quote.total_cents),
            ]
        workflow.upsert_search_attributes(pairs)
        self._show_details()

    def _show_details(self, next_wake: datetime | None = None, what: str = "") -> None:
        """Current details for the Temporal UI, in plain words (markdown)."""
        lines = [f"**Stage:** {self._stage.value}"]
        if self._reason:
            lines.append(f"**Reason:** {self._reason}")
        if self._order is not None:
            order = self._order
            lines.append(
                f"**Order:** {order.number}, {order.years} year(s) by {order.method}, "
                f"total {euro(order.quote.total_cents)}, paid {euro(order.paid_cents)}"
            )
            lines.append(f"**Due by:** {rome_time(order.due_by)}")
            if order.new_expires_on:
                lines.append(f"**New expiry:** {order.new_expires_on}")
        if next_wake is not None:
            lines.append(f"**Next:** {what} at {rome_time(next_wake)}")
        lines.append(f"**Last event:** {self._last_event}")
        workflow.set_current_details("\n\n".join(lines))

    def _require_cart(self) -> Cart:
        if self._cart is None:
            raise _refuse(f"there is no cart: the renewal is {self._stage.value}")
        return self._cart

    def _require_order(self) -> _Order:
        if self._order is None:
            raise _refuse(f"there is no order: the renewal is {self._stage.value}")
        return self._order
