"""The renewal state machine: cart → order → await payment → activation.

Deterministic: time is `workflow.now()`, every side effect is an activity, every wait a durable
timer. One state value (`Phase`) says where the renewal is; handlers change it, `run` walks it,
validators read it as rules. Arithmetic, decisions about payments and presentation live in the
domain (`Cart`, `Order`, `renewals.details`).
"""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.store import Store
    from renewals import REGISTER_PAYMENT, WORKFLOW_TYPE, errors
    from renewals import search_attributes as sa
    from renewals.calls import (
        Activate,
        ChangeDueBy,
        ChangeMethod,
        CloseOrder,
        EmailTemplate,
        FindDiscountCode,
        FindOnTimePayments,
        LoadService,
        SendEmail,
        SettlePayment,
    )
    from renewals.cart import Cart
    from renewals.dates import after, rome_today
    from renewals.dunning import ChargeDeclined, Dunning
    from renewals.durations import format_duration
    from renewals.eligibility import auto_renew_refusal, refusal
    from renewals.emails import expired_notice
    from renewals.messages import (
        AddAddon,
        ApplyDiscount,
        CancelOrder,
        Checkout,
        ExtendDeadline,
        OpenRequest,
        PayByTransfer,
        PaymentEntry,
        RemoveAddon,
        RenewalInput,
        RenewalResult,
        RetryCharge,
    )
    from renewals.order import Order, without_order
    from renewals.pricing import discount_refusal, euro
    from renewals.reminders import next_step
    from renewals.terms import years_refusal
    from renewals.types import INSTANT_METHODS, Stage
    from renewals.views import CartView, ChargeAttemptView, OrderView, PaymentOutcome, RenewalView

    # Deterministic workflow code in modules of their own: passed through like the models, so
    # the sandbox imports them once, not once per renewal (Temporal's own advice, for speed).
    from workflows.bookkeeping import Bookkeeping
    from workflows.path import decide
    from workflows.state import Phase, refuse

INSTANT_PAYMENT_GRACE_PATCH = "instant-payment-grace"
# P12 at the deadline: before an order lapses, the payments the ledger took in time are applied
# (renewals that lapsed before this marker replay their close as recorded).
ON_TIME_PAYMENTS_PATCH = "on-time-payments-at-deadline"


@workflow.defn(name=WORKFLOW_TYPE)
class RenewalWorkflow(Bookkeeping):
    @workflow.init
    def __init__(self, input: RenewalInput) -> None:
        super().__init__(input)

    # ------------------------------------------------------------------ the stages

    @workflow.run
    async def run(self, input: RenewalInput) -> RenewalResult:
        path = self.effects.path = decide()
        if path.username_set_again:
            workflow.upsert_search_attributes([sa.USERNAME.value_set(input.username)])
        await self._open(input)
        if self.state.phase == Phase.CART:
            await self._cart_stage(input)
        if self.state.phase == Phase.AWAITING_PAYMENT:
            await self._await_payment(input)
        await self.effects.finish()
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
            context = await self.effects.read(
                Store.load_service, LoadService(username=input.username), summary=f"load service {input.username}"
            )
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == errors.UNKNOWN_SERVICE:
                self._enter(Phase.REFUSED, reason=cause.message, kind=errors.UNKNOWN_SERVICE)
                return
            raise
        today = rome_today(workflow.now())
        if input.mode == "auto_renew":
            reason = auto_renew_refusal(context.service, today, input.policy)
        else:
            reason = refusal(context.service, input.mode, today, input.policy)
        if reason:
            self._enter(Phase.REFUSED, reason=reason)
            return
        self.state.cart = Cart(mode=input.mode, service=context.service, prices=context.prices)
        if input.mode == "auto_renew":
            await self._order_by_itself()
            return
        self._enter(Phase.CART, event=f"{input.mode} requested")

    async def _order_by_itself(self) -> None:
        """P16: no cart stage. The order is made at once for the stored term and method, with the
        active add-ons at today's prices, due by the end of the expiry day; one per expiry."""
        cart = self.state.require_cart()
        checkout = cart.auto_checkout()
        reason = years_refusal(checkout.years, cart.service.promotional)
        if reason:
            self._enter(Phase.REFUSED, reason=f"the stored auto-renew term cannot be ordered: {reason}")
            return
        try:
            await self._order(checkout, cart.auto_renew_due_by(), "automatic ")
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type == errors.AUTO_ORDER_EXISTS:
                self._enter(Phase.REFUSED, reason=cause.message)
                return
            raise

    async def _order(self, checkout: Checkout, due_by: datetime, what: str = "") -> None:
        """Create the order (a number from PostgreSQL) and await its payment."""
        now, info, cart = workflow.now(), workflow.info(), self.state.require_cart()
        request = cart.order_request(checkout, info.workflow_id, info.run_id, now, due_by)
        created = await self.effects.call(
            Store.create_order,
            request,
            summary=f"create {what}order: {checkout.years}y by {checkout.payment_method}, "
            f"{euro(request.quote.total_cents)}",
        )
        self.state.order = Order.confirmed(created.order_number, request)
        self._enter(Phase.AWAITING_PAYMENT, event=f"{what}order {created.order_number} confirmed")

    async def _cart_stage(self, input: RenewalInput) -> None:
        """P4: a cart nobody touches for `cart_idle` is abandoned."""
        idle = f"cart idle for {format_duration(input.policy.cart_idle)} (P4)"
        while self.state.phase in (Phase.CART, Phase.CHECKING_OUT):
            touched = await self._wait(self._touched_since(self.state.touched), input.policy.cart_idle, idle)
            if not touched and self.state.phase == Phase.CART:
                self._enter(Phase.CART_ABANDONED, reason=idle)

    async def _await_payment(self, input: RenewalInput) -> None:
        """P2 reminders, P3 deadline, P5 payments, ops cancel: until paid, lapsed or cancelled."""
        order = self.state.require_order()
        state = self.state
        automatic = input.mode == "auto_renew"
        if automatic:
            # P16: a card or PayPal order is charged by the back office (no reminders: nothing for
            # the customer to do); a bank transfer or postal slip order is paid as any other (P2).
            if order.method in INSTANT_METHODS and self.effects.path.charge_retries:
                state.dunning = Dunning()
            await self._announce_automatic_order(order)
        # R6: instructions only "if it is not paid at once" (a versioned change: renewals started
        # before it have no marker in their history and keep emailing at once).
        elif self.effects.path.grace_within_deadline or workflow.patched(INSTANT_PAYMENT_GRACE_PATCH):
            if order.method in INSTANT_METHODS:
                grace = input.policy.instant_payment_grace
                if self.effects.path.grace_within_deadline:  # P12: never wait past the deadline
                    grace = min(grace, order.due_by - workflow.now())
                summary = f"{order.method} payment of {order.number} at once (R6)"
                await self._wait(lambda: order.is_paid or state.phase != Phase.AWAITING_PAYMENT, grace, summary)
            if not order.is_paid and state.phase == Phase.AWAITING_PAYMENT:
                await self._email("payment_instructions", f"{order.number}:payment_instructions")
        else:
            await self._email("payment_instructions", f"{order.number}:payment_instructions")
        reminders = [after(order.ordered_at, wait) for wait in input.policy.reminders]
        if automatic and order.method in INSTANT_METHODS:
            reminders = []
        sent = 0
        ledger_checked = False
        while True:
            await self.effects.drain_outbox()
            if order.is_paid and state.phase == Phase.AWAITING_PAYMENT:
                state.phase = Phase.ACTIVATING
            if state.phase == Phase.ACTIVATING:
                await self._activate(order)
                return
            if state.phase == Phase.CANCELLING:
                await self._close(order, Phase.CANCELLED, state.reason or "cancelled by ops")
                return
            dunning = state.dunning
            if dunning is not None and dunning.switched_at is not None and "transfer" not in dunning.told:
                # P20: the customer chose a bank transfer: its instructions now, P2's reminders after.
                dunning.told_customer("transfer")
                reminders = [after(dunning.switched_at, wait) for wait in input.policy.reminders]
                await self._email("payment_instructions", f"{order.number}:payment_instructions:transfer")
            if dunning is not None and await self._dun(order, dunning):
                continue
            now = workflow.now()
            step = next_step(reminders, sent, order.due_by, now, coalesce=self.effects.path.coalesced_reminders)
            if step.action == "lapse":
                if not ledger_checked and workflow.patched(ON_TIME_PAYMENTS_PATCH):
                    ledger_checked = True
                    await self._take_on_time_payments(order)
                    continue  # paid in time: activated; otherwise it lapses now
                state.phase = Phase.LAPSING
                lapse = "the automatic order was not paid by the expiry date (P16)" if automatic else None
                await self._close(order, Phase.ORDER_EXPIRED, lapse or "payment deadline passed (P3)")
                return
            if step.action == "remind":
                sent = step.number or sent + 1
                await self._email("reminder", f"{order.number}:reminder:{sent}", reminder_number=sent)
                continue
            wake, what, summary = step.at, step.what, step.summary(order.number)
            retry_at = dunning.next_retry(self._input.policy.charge_retries, order.due_by) if dunning else None
            if retry_at is not None and retry_at < wake:
                wake, what = retry_at, "charge retry (P20)"
                summary = f"retry the charge of {order.number} (P20)"
            self._show_details(next_wake=wake, what=what)
            # Every payment, cancel, extension or charge outcome touches the state: the loop looks again.
            await self._wait(self._touched_since(state.touched), wake - now, summary)

    async def _activate(self, order: Order) -> None:
        cart = self.state.require_cart()
        activation = await self.effects.call(
            Store.activate,
            Activate(
                order_number=order.number,
                username=cart.service.username,
                years=order.years,
                cart_addons=cart.added,
                paid_at=workflow.now(),
                payment_registered_at=order.paid_in_full_at,  # P17: the invoice's date
            ),
            summary=f"activate {order.number}: expiry {cart.service.expires_on} → {cart.renewed_until(order.years)}",
        )
        order.new_expires_on = activation.new_expires_on
        order.invoice = activation.invoice_number or (
            f"not issued ({activation.invoice_state})" if activation.invoice_state else None
        )
        self._leave_dunning()
        self._enter(Phase.ACTIVATED, event=f"activated until {activation.new_expires_on}")
        await self._email("renewal_confirmed", f"{order.number}:renewal_confirmed")

    async def _close(self, order: Order, phase: Phase, reason: str) -> None:
        await self.effects.call(
            Store.close_order,
            CloseOrder(
                order_number=order.number,
                status="expired" if phase == Phase.ORDER_EXPIRED else "cancelled",
                reason=reason,
                closed_at=workflow.now(),
            ),
            summary=f"close order {order.number}: {reason}",
        )
        self._leave_dunning()
        self._enter(phase, reason=reason)
        if phase == Phase.ORDER_EXPIRED and self._input.mode == "auto_renew":
            await self.effects.email(expired_notice(self.state.require_cart().service, self._input.policy))
            return
        template: EmailTemplate = "order_lapsed" if phase == Phase.ORDER_EXPIRED else "order_cancelled"
        await self._email(template, f"{order.number}:{template}", reason=reason)

    # ------------------------------------------------------------------ the automatic order (P16)

    async def _announce_automatic_order(self, order: Order) -> None:
        """Card or PayPal: the charge request to the back office, then the email with the date and
        amount of the charge (charged on the day of the order, so a refused card leaves the
        customer until the expiry date to pay another way). Otherwise the instructions email."""
        service = self.state.require_cart().service
        if order.method not in INSTANT_METHODS:
            await self._email("payment_instructions", f"{order.number}:payment_instructions")
            return
        told = self._email_request(
            "auto_renew_charge",
            f"{order.number}:auto_renew_charge",
            charge_on=rome_today(order.ordered_at),
            expires_on=service.expires_on,
        )
        self._charge(order, told, "automatic order")

    def _charge(self, order: Order, told: SendEmail | None, why: str) -> None:
        """One charge request in the background; with P20 on, a new attempt with its own id."""
        request = order.charge_request(self.state.require_cart().service.username)
        dunning = self.state.dunning
        if dunning is not None:
            attempt = dunning.request(order.number, workflow.now(), why)
            request = request.model_copy(update={"attempt": attempt.id})
            if why != "automatic order":
                self._touch(f"charge {attempt.id} requested ({why}, P20)")
        until = max(order.due_by - workflow.now(), timedelta(minutes=1))  # a positive timeout, always
        self.effects.charge(request, until, told, on_failed=self._charge_failed)

    def _charge_failed(self, why: str) -> None:
        self._touch(f"charge request not acknowledged by the payments back office: {why}")

    # ------------------------------------------------------------------ declined charges (P20)

    async def _dun(self, order: Order, dunning: Dunning) -> bool:
        """What a declined charge calls for now: tell the customer (the first decline, the last
        retry's), or make the retry that is due. True when it did something (the loop looks again)."""
        retries = self._input.policy.charge_retries
        self._show_dunning(order, dunning)
        notice = dunning.notice(retries, order.due_by)
        if notice is not None:
            dunning.told_customer(notice)
            template: EmailTemplate = "charge_declined" if notice == "first" else "charge_declined_last"
            await self._email(
                template,
                f"{order.number}:{template}",
                reason=dunning.decline_text(retries, order.due_by),
                action_url=self._payment_page(order),
                link_until=order.due_by,
            )
            return True
        retry_at = dunning.next_retry(retries, order.due_by)
        if retry_at is not None and retry_at <= workflow.now():
            self._charge(order, None, "retry")
            return True
        return False

    def _payment_page(self, order: Order) -> str | None:
        base = self._input.policy.panel_ui_url
        # The customer pages' email link (ingress/pages/dunning.py): the mailer signs it.
        return f"{base.rstrip('/')}/accesso/ordine/{order.number}" if base else None

    def _show_dunning(self, order: Order, dunning: Dunning) -> None:
        value = dunning.state(self._input.policy.charge_retries, order.due_by)
        if value != self.state.dunning_shown:
            self.state.dunning_shown = value
            workflow.upsert_search_attributes([sa.DUNNING.value_set(value) if value else sa.DUNNING.value_unset()])

    def _leave_dunning(self) -> None:
        """Paid or closed: no longer among the renewals in dunning (the attempts stay in the view)."""
        if self.state.dunning_shown is not None:
            self.state.dunning_shown = None
            workflow.upsert_search_attributes([sa.DUNNING.value_unset()])

    @workflow.signal
    def charge_declined(self, outcome: ChargeDeclined) -> None:
        """The back office declined a charge (recorded by the ingress first). Only the current
        attempt of this renewal's open order counts; anything else is noted and changes nothing."""
        order, dunning = self.state.order, self.state.dunning
        if order is None or dunning is None or order.number != outcome.order_number:
            self._note(f"charge outcome {outcome.attempt} ignored: not this renewal's automatic order")
            return
        if self.state.phase != Phase.AWAITING_PAYMENT or order.is_paid:
            self._note(
                f"charge outcome {outcome.attempt} ignored: order {order.number} is {self.state.phase.stage.value}"
            )
            return
        taken = dunning.take(outcome)
        if taken != "taken":
            self._note(f"charge outcome {outcome.attempt} ignored: {taken.replace('_', ' ')}")
            return
        self._touch(f"charge {outcome.attempt} declined ({outcome.decline}: {outcome.code})")

    def _note(self, event: str) -> None:
        """Seen in the details, waking nobody."""
        self.state.last_event = event
        self._show_details()

    @workflow.update
    async def pay_by_transfer(self, request: PayByTransfer) -> OrderView:
        """P20: the customer pays the declined automatic order by bank transfer instead: the
        instructions (with the RF reference) and P2's reminders follow; no more charges."""
        order, dunning = self.state.require_order(), self.state.dunning
        assert dunning is not None  # the validator saw it
        dunning.switched_at = workflow.now()
        order.method = "bank_transfer"
        await self.effects.call(
            Store.change_method,
            ChangeMethod(order_number=order.number, method="bank_transfer", reason="chosen by the customer (P20)"),
            summary=f"order {order.number}: paid by bank transfer instead (P20)",
        )
        workflow.upsert_search_attributes(sa.renewal_attributes(self.state.phase.stage.value, order))
        self._touch(f"the customer chose to pay {order.number} by bank transfer (P20)")
        return self._order_view()

    @pay_by_transfer.validator
    def _validate_pay_by_transfer(self, request: PayByTransfer) -> None:
        self._require_dunning(request.order_number)

    @workflow.update
    async def retry_charge(self, request: RetryCharge) -> OrderView:
        """P20: the customer updated the card at the PSP and asks for a new charge now."""
        self._charge(self.state.require_order(), None, "asked by the customer")
        return self._order_view()

    @retry_charge.validator
    def _validate_retry_charge(self, request: RetryCharge) -> None:
        dunning = self._require_dunning(request.order_number)
        current = dunning.current
        if current is not None and current.decline is None:
            raise refuse(f"charge {current.id} is still waiting for the payment service's answer")

    def _require_dunning(self, order_number: str) -> Dunning:
        order, dunning = self.state.require_unpaid_order(), self.state.dunning
        if order.number != order_number:
            raise refuse(
                f"order {order_number} is not the one awaiting payment ({order.number})", errors.INVALID_REQUEST
            )
        if dunning is None or not dunning.declined or order.method not in INSTANT_METHODS:
            raise refuse(f"order {order.number} has no declined charge: nothing to change (P20)")
        if workflow.now() >= order.due_by:
            raise refuse(f"the deadline of order {order.number} has passed")
        return dunning

    # ------------------------------------------------------------------ opening (update-with-start)

    @workflow.update
    async def open(self, request: OpenRequest) -> CartView:
        """The renew/reactivate press. A second press returns the cart already open (P8)."""
        self.state.cart_changes += 1
        await workflow.wait_condition(lambda: self.state.phase != Phase.OPENING)
        if self.state.phase == Phase.REFUSED:
            raise refuse(self.state.reason or "refused", self.state.refusal_kind)
        return self._cart_view()

    @open.validator
    def _validate_open(self, request: OpenRequest) -> None:
        self.state.require_cart_change_left()
        if self._input.mode == "auto_renew":
            order = self.state.order
            raise refuse(
                "auto-renew is on: the service renews by itself"
                + (f" with the automatic order {order.number}" if order else "")
                + ", so Renew is not offered (R1)"
            )

    # ------------------------------------------------------------------ cart changes (R3, P4)

    @workflow.update
    async def add_addon(self, request: AddAddon) -> CartView:
        self.state.cart_changes += 1
        try:
            self.state.cart = self.state.require_cart().with_addon(request.addon, request.quantity)
        except (ValidationError, ValueError) as error:
            raise refuse(str(error), errors.INVALID_REQUEST) from None  # never a failed workflow task
        self._touch(f"added {request.quantity} × {request.addon}")
        return self._cart_view()

    @add_addon.validator
    def _validate_add_addon(self, request: AddAddon) -> None:
        cart = self.state.require_cart_phase()
        self.state.require_cart_change_left()
        reason = cart.addon_refusal(request.addon, request.quantity)
        if reason:
            raise refuse(reason, errors.INVALID_REQUEST)

    @workflow.update
    async def remove_addon(self, request: RemoveAddon) -> CartView:
        self.state.cart_changes += 1
        self.state.cart = self.state.require_cart().without_addon(request.addon)
        self._touch(f"removed {request.addon}")
        return self._cart_view()

    @remove_addon.validator
    def _validate_remove_addon(self, request: RemoveAddon) -> None:
        cart = self.state.require_cart_phase()
        self.state.require_cart_change_left()
        if not cart.has_in_cart(request.addon):
            raise refuse(
                f"addon {request.addon} is not in the cart; active add-ons renew with the service",
                errors.INVALID_REQUEST,
            )

    @workflow.update
    async def apply_discount(self, request: ApplyDiscount) -> CartView:
        self.state.cart_changes += 1  # a wrong code too: it was accepted, then refused
        lookup = await self.effects.read(
            Store.find_discount_code,
            FindDiscountCode(code=request.code),
            summary=f"look up discount code {request.code}",
        )
        reason = discount_refusal(request.code, lookup.found, rome_today(workflow.now()))
        if reason:
            raise refuse(reason, errors.INVALID_REQUEST)
        # The cart may have moved on while the code was looked up.
        self.state.cart = self.state.require_cart_phase().model_copy(update={"discount": lookup.found})
        self._touch(f"discount code {request.code} applied")
        return self._cart_view()

    @apply_discount.validator
    def _validate_apply_discount(self, request: ApplyDiscount) -> None:
        self.state.require_cart_phase()
        self.state.require_cart_change_left()

    # ------------------------------------------------------------------ checkout (R5, R6)

    @workflow.update
    async def checkout(self, checkout: Checkout) -> OrderView:
        """Confirm the order and give it a number; the instructions email follows."""
        cart, state = self.state.require_cart(), self.state
        state.phase = Phase.CHECKING_OUT
        self._touch(f"checkout: {checkout.years} years by {checkout.payment_method}")
        try:
            await self._order(checkout, cart.due_by(workflow.now(), self._input.policy))
        except BaseException:
            state.phase = Phase.CART
            raise
        return self._order_view()

    @checkout.validator
    def _validate_checkout(self, checkout: Checkout) -> None:
        cart = self.state.require_cart_phase()
        reason = years_refusal(checkout.years, cart.service.promotional)
        if reason:
            raise refuse(reason, errors.INVALID_REQUEST)
        if workflow.now() >= self._window_end():
            # The cart was opened in time, but the service ceased while it sat there (R2).
            raise refuse(
                f"the reactivation window closed on {self._last_day():%Y-%m-%d}: "
                "the service is ceased and can no longer be reactivated (R2)"
            )

    def _window_end(self) -> datetime:
        return self.state.require_cart().ceases_at(self._input.policy)

    def _last_day(self) -> datetime:
        return self._window_end() - timedelta(days=1)

    # ------------------------------------------------------------------ payments (P5, P10–P12)

    @workflow.update(name=REGISTER_PAYMENT)
    async def register_payment(self, entry: PaymentEntry) -> PaymentOutcome:
        """A payment already written to the ledger; the answer is the order's decision (P5)."""
        return await self._take_payment(entry)

    async def _take_on_time_payments(self, order: Order) -> None:
        """P12: the ledger's receipt time decides, not which of the deadline's timer and the
        delivery comes first. The payments the ledger took by `due_by` that never reached this
        renewal (a delivery slow, lost, or waiting for the reconciler) are taken as if delivered;
        while they are looked up the order still takes payments, so none falls between."""
        found = await self.effects.read(
            Store.find_on_time_payments,
            FindOnTimePayments(order_number=order.number, due_by=order.due_by),
            summary=f"payments for {order.number} received by its deadline (P12)",
        )
        for entry in found.entries:
            await self._take_payment(entry)

    async def _take_payment(self, entry: PaymentEntry) -> PaymentOutcome:
        """One payment from the ledger, delivered or found there: the order decides (P5, P10-P12),
        the ledger records the decision."""
        order, state = self.state.order, self.state
        if order is None:
            outcome = without_order(entry)
        else:
            outcome = order.apply(entry, entry.received_at or workflow.now(), open=state.phase.takes_payments)
        if outcome.status == "duplicate":
            return outcome
        self._touch(
            f"payment {entry.transaction_id} {euro(entry.amount_cents)}: {outcome.status}"
            + (" (by hand)" if entry.by_hand else "")
        )
        balance_due = None
        if outcome.status == "partial":
            balance_due = self._email_request("balance_due", f"{entry.order_number}:balance_due:{entry.transaction_id}")
        queued = await self.effects.record_payment(SettlePayment(entry=entry, outcome=outcome), balance_due)
        if queued and state.phase.stage != Stage.AWAITING_PAYMENT:
            # Legacy path, and `run` is not in its payment loop: write the ledger before answering.
            await self.effects.drain_outbox()
        return outcome

    # ------------------------------------------------------------------ ops

    @workflow.update
    async def cancel_order(self, request: CancelOrder) -> OrderView:
        self.state.phase = Phase.CANCELLING
        self.state.reason = request.stated
        self._touch(f"cancel requested by {'the customer' if request.by_customer else 'ops'}")
        await workflow.wait_condition(lambda: self.state.phase.stage != Stage.AWAITING_PAYMENT)
        return self._order_view()

    @cancel_order.validator
    def _validate_cancel_order(self, request: CancelOrder) -> None:
        self.state.require_unpaid_order()

    @workflow.update
    async def extend_deadline(self, request: ExtendDeadline) -> OrderView:
        order = self.state.require_order()
        order.due_by = order.extended(request.days, self._window_end())
        await self.effects.call(
            Store.change_due_by,
            ChangeDueBy(order_number=order.number, due_by=order.due_by, reason=request.reason),
            summary=f"extend deadline of {order.number} to {order.due_by:%Y-%m-%d}",
        )
        self._enter(self.state.phase, event=f"deadline extended by {request.days} days by ops")
        return self._order_view()

    @extend_deadline.validator
    def _validate_extend_deadline(self, request: ExtendDeadline) -> None:
        order = self.state.require_unpaid_order()
        if order.extended(request.days, self._window_end()) <= order.due_by:
            raise refuse(
                "the deadline of a reactivation cannot pass the end of the reactivation window "
                f"({self._last_day():%Y-%m-%d}, R2/P3)"
            )

    # ------------------------------------------------------------------ views

    @workflow.query
    def view(self) -> RenewalView:
        state, order = self.state, self.state.order
        shown = RenewalView(
            stage=state.phase.stage,
            mode=self._input.mode,
            username=self._input.username,
            reason=state.reason,
            cart=self._cart_view() if state.cart else None,
            order=self._order_view() if order else None,
            payments=list(order.payments) if order else [],
            emails=list(state.emails),
        )
        dunning = state.dunning
        if dunning is None or order is None:
            return shown
        retries = self._input.policy.charge_retries
        return shown.model_copy(
            update={
                "charges": [ChargeAttemptView(**attempt.model_dump()) for attempt in dunning.attempts],
                "dunning": dunning.state(retries, order.due_by),
                "next_charge_retry": dunning.next_retry(retries, order.due_by),
            }
        )
