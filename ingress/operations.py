"""One mapping from panel and payment events to workflow operations, for HTTP and CLI alike.

Panel events become update-with-start (renew, reactivate) or updates (cart changes, checkout) on
`renewal-<username>`. A payment is written to the ledger first, then delivered to the renewal
that owns its order; when none can take it, it stays in the ledger as unmatched for ops.
"""

from datetime import UTC, datetime
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.store import Store, TransactionConflict
from renewals import errors, workflow_id
from renewals import search_attributes as sa
from renewals.dates import rome_today
from renewals.eligibility import eligibility
from renewals.models import (
    AddAddon,
    AddonAdded,
    AddonRemoved,
    ApplyDiscount,
    CancelOrder,
    CartView,
    Checkout,
    CheckoutSubmitted,
    DiscountCodeApplied,
    ExtendDeadline,
    Mode,
    OpenRequest,
    OrderView,
    PanelEvent,
    PaymentOutcome,
    PaymentRegistered,
    Policy,
    ReactivateRequested,
    RemoveAddon,
    RenewalInput,
    RenewalView,
    RenewRequested,
    ServiceStatusView,
    Stage,
)
from workflows.renewal import RenewalWorkflow


class RenewalsError(Exception):
    """A refusal with the contract's error code and HTTP status (DESIGN.md §5)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.status, self.code = errors.http_of(kind)
        self.message = message


def _from_update_failure(error: WorkflowUpdateFailedError) -> RenewalsError:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return RenewalsError(cause.type or errors.NOT_ALLOWED, cause.message)
    return RenewalsError(errors.NOT_ALLOWED, str(cause or error))


def _closed(error: RPCError) -> bool:
    """The workflow is gone or finished: nothing running can take the operation."""
    return error.status == RPCStatusCode.NOT_FOUND or "already completed" in error.message


class Ingress:
    def __init__(self, client: Client, store: Store, policy: Policy, task_queue: str) -> None:
        self.client = client
        self.store = store
        self.policy = policy
        self.task_queue = task_queue

    # ------------------------------------------------------------------ panel

    async def panel(self, event: PanelEvent) -> CartView | OrderView:
        try:
            return await self._panel(event)
        except WorkflowUpdateFailedError as error:
            raise _from_update_failure(error) from None
        except RPCError as error:
            if _closed(error):
                raise RenewalsError(
                    errors.NOT_ALLOWED,
                    f"no renewal is open for {event.username}: press Renew or Reactivate first",
                ) from None
            raise

    async def _panel(self, event: PanelEvent) -> CartView | OrderView:
        if isinstance(event, RenewRequested | ReactivateRequested):
            mode: Mode = "renew" if isinstance(event, RenewRequested) else "reactivate"
            return await self.open(event.username, mode)
        handle = self.client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(event.username))
        if isinstance(event, AddonAdded):
            return await handle.execute_update(
                RenewalWorkflow.add_addon, AddAddon(addon=event.addon, quantity=event.quantity)
            )
        if isinstance(event, AddonRemoved):
            return await handle.execute_update(RenewalWorkflow.remove_addon, RemoveAddon(addon=event.addon))
        if isinstance(event, DiscountCodeApplied):
            return await handle.execute_update(RenewalWorkflow.apply_discount, ApplyDiscount(code=event.code))
        if isinstance(event, CheckoutSubmitted):
            return await handle.execute_update(
                RenewalWorkflow.checkout,
                Checkout(payment_method=event.payment_method, years=event.years),
            )
        raise RenewalsError(errors.INVALID_REQUEST, f"unknown event {event!r}")

    async def open(self, username: str, mode: Mode) -> CartView:
        """Update-with-start: a new renewal, or the one already open for this service (P8)."""
        if await self.store.get_service(username) is None:
            raise RenewalsError(errors.UNKNOWN_SERVICE, f"no service with username {username!r}")
        start = WithStartWorkflowOperation(
            RenewalWorkflow.run,
            RenewalInput(username=username, mode=mode, policy=self.policy),
            id=workflow_id(username),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"{mode.capitalize()} e-invoicing receive-only service of {username}",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(sa.USERNAME, username), SearchAttributePair(sa.STAGE, Stage.OPENING.value)]
            ),
        )
        return await self.client.execute_update_with_start_workflow(
            RenewalWorkflow.open,
            OpenRequest(mode=mode),
            start_workflow_operation=start,
        )

    # ------------------------------------------------------------------ payments

    async def payment(self, event: PaymentRegistered, *, by_hand: bool = False) -> PaymentOutcome:
        """Ledger first, then the renewal of the order; never lost, never applied twice."""
        entry = event.entry(by_hand=by_hand)
        try:
            settled = await self.store.receive_payment(entry)
        except TransactionConflict as conflict:
            raise RenewalsError(errors.NOT_ALLOWED, str(conflict)) from None
        if settled is not None:
            return await self._outcome("duplicate", event)
        username = await self.store.order_username(entry.order_number)
        if username is None:
            await self.store.mark_unmatched(entry.transaction_id, f"unknown order {entry.order_number}")
            return await self._outcome("unmatched", event)
        handle = self.client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(username))
        try:
            return await handle.execute_update(RenewalWorkflow.register_payment, entry)
        except RPCError as error:
            if not _closed(error):
                raise
        except WorkflowUpdateFailedError as error:
            raise _from_update_failure(error) from None
        # P10: the order's renewal has closed; the payment waits for ops.
        await self.store.mark_unmatched(entry.transaction_id, f"order {entry.order_number} is closed")
        return await self._outcome("unmatched", event)

    async def _outcome(self, status: Any, event: PaymentRegistered) -> PaymentOutcome:
        total, paid = await self.store.order_balance(event.order_number)
        return PaymentOutcome(
            status=status,
            order_number=event.order_number,
            transaction_id=event.transaction_id,
            paid_cents=paid,
            balance_cents=max(total - paid, 0),
        )

    # ------------------------------------------------------------------ reads

    async def service(self, username: str, now: datetime | None = None) -> ServiceStatusView:
        service = await self.store.get_service(username)
        if service is None:
            raise RenewalsError(errors.UNKNOWN_SERVICE, f"no service with username {username!r}")
        policy = self.policy
        found = eligibility(
            service,
            rome_today(now or datetime.now(UTC)),
            policy.reactivation_window,
            legacy=not policy.reactivation_last_day_included,
        )
        return ServiceStatusView(
            username=username,
            status=found.status,
            expires_on=service.expires_on,
            auto_renew=service.auto_renew,
            action=found.action,
            reason=found.reason,
        )

    async def renewal(self, username: str) -> RenewalView:
        handle = self.client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(username))
        try:
            return await handle.query(RenewalWorkflow.view)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise RenewalsError(errors.UNKNOWN_SERVICE, f"no renewal for {username!r}") from None
            raise

    # ------------------------------------------------------------------ ops

    async def cancel(self, username: str, reason: str) -> OrderView:
        return await self._ops(username, RenewalWorkflow.cancel_order, CancelOrder(reason=reason))

    async def extend(self, username: str, days: int, reason: str) -> OrderView:
        return await self._ops(username, RenewalWorkflow.extend_deadline, ExtendDeadline(days=days, reason=reason))

    async def _ops(self, username: str, update: Any, request: Any) -> OrderView:
        handle = self.client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(username))
        try:
            result: OrderView = await handle.execute_update(update, request)
            return result
        except WorkflowUpdateFailedError as error:
            raise _from_update_failure(error) from None
        except RPCError as error:
            if _closed(error):
                raise RenewalsError(errors.NOT_ALLOWED, f"no renewal is open for {username}") from None
            raise
