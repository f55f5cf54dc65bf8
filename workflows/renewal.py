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
        CloseOrder,
        EmailTemplate,
        FindDiscountCode,
        FindOnTimePayments,
        LoadService,
        SettlePayment,
    )
    from renewals.cart import Cart
    from renewals.dates import after, rome_today
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
        PaymentEntry,
        RemoveAddon,
        RenewalInput,
        RenewalResult,
    )
    from renewals.order import Order, without_order
    from renewals.pricing import discount_refusal, euro
    from renewals.reminders import next_step
    from renewals.terms import years_refusal
    from renewals.types import INSTANT_METHODS, Stage
    from renewals.views import CartView, OrderView, PaymentOutcome, RenewalView

    # Deterministic workflow code in modules of their own: passed through like the models, so
    # the sandbox imports them once, not once per renewal (Temporal's own advice, for speed).
    from workflows.bookkeeping import Bookkeeping
    from workflows.state import Phase, refuse

# Renewals started before the v2 path replay their recorded command sequence (tests/histories/);
# those started after record this marker first and take the v2 path (workflows/effects.py):
# reads as local activities, no redundant search-attribute upsert, emails and ledger writes in
# the background (P14), overdue reminders coalesced and none past the deadline.
RENEWAL_V2_PATCH = "renewal-v2"
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
        v2 = self.effects.v2 = workflow.patched(RENEWAL_V2_PATCH)
        if not v2:
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
            await self._announce_automatic_order(order)
        # R6: instructions only "if it is not paid at once" (a versioned change: renewals started
        # before it have no marker in their history and keep emailing at once).
        elif self.effects.v2 or workflow.patched(INSTANT_PAYMENT_GRACE_PATCH):
            if order.method in INSTANT_METHODS:
                grace = input.policy.instant_payment_grace
                if self.effects.v2:  # P12: never wait past the deadline
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
            now = workflow.now()
            step = next_step(reminders, sent, order.due_by, now, coalesce=self.effects.v2)
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
            self._show_details(next_wake=step.at, what=step.what)
            # Every payment, cancel or extension touches the state: the loop looks again.
            await self._wait(self._touched_since(state.touched), step.at - now, step.summary(order.number))

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
        until = max(order.due_by - workflow.now(), timedelta(minutes=1))  # a positive timeout, always
        self.effects.charge(order.charge_request(service.username), until, told, on_failed=self._charge_failed)

    def _charge_failed(self, why: str) -> None:
        self._touch(f"charge request not acknowledged by the payments back office: {why}")

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
