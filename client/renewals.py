"""One mapping from panel and payment events to workflow operations, for HTTP and CLI alike.

Panel events become update-with-start (renew, reactivate) or updates (cart changes, checkout) on
`renewal-<username>`. A payment goes to the payment desk (client/payments.py): the ledger
first, then the renewal that owns its order decides; when none can take it, it stays in the
ledger as unmatched for ops. Every call to Temporal is bounded (P14).
"""

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.store import Store
from client.charges import ChargeOutcomes
from client.payments import PaymentDesk, closed
from client.starts import start_options
from db.ledger import TransactionConflict
from renewals import errors, workflow_id
from renewals import search_attributes as sa
from renewals.dates import rome_today
from renewals.eligibility import eligibility_under
from renewals.events import (
    AddonAdded,
    AddonRemoved,
    AutoRenewChanged,
    ChargeFailed,
    ChargeSucceeded,
    CheckoutSubmitted,
    DiscountCodeApplied,
    PanelEvent,
    PaymentEvent,
    PaymentRegistered,
    ReactivateRequested,
    RenewRequested,
)
from renewals.messages import (
    CancelOrder,
    ExtendDeadline,
    OpenRequest,
    PayByTransfer,
    Policy,
    RenewalInput,
    RetryCharge,
)
from renewals.terms import years_refusal
from renewals.types import Mode, Stage
from renewals.views import CartView, ChargeOutcomeView, OrderView, PaymentOutcome, RenewalView, ServiceStatusView
from renewals.year import YearPolicy, next_dates
from workflows.renewal import RenewalWorkflow

# Reads are bounded here; an update is bounded by its caller: the HTTP API's deadline (ingress/bounds.py,
# P14: a 503 with Retry-After, never a hang), or `update_timeout` for callers without one.
RPC_TIMEOUT = timedelta(seconds=10)
# The reason an unpaid automatic order is cancelled with when the customer turns auto-renew off (P16).
AUTO_RENEW_OFF = "auto-renew turned off by the customer"
PanelAnswer = CartView | OrderView | ServiceStatusView


class RenewalsError(Exception):
    """A refusal with the contract's error code and HTTP status (docs/api.md, renewals/errors.py)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.status, self.code = errors.http_of(kind)
        self.message = message


async def _delivered(delivery: Awaitable[PaymentOutcome]) -> PaymentOutcome:
    """A payment's delivery, its refusals as the ingress says them: a reused transaction id is
    `not_allowed`, a refused update what the renewal said."""
    try:
        return await delivery
    except TransactionConflict as conflict:
        raise RenewalsError(errors.NOT_ALLOWED, str(conflict)) from None
    except WorkflowUpdateFailedError as error:
        raise _from_update_failure(error) from None


def _from_update_failure(error: WorkflowUpdateFailedError) -> RenewalsError:
    cause = error.cause
    if isinstance(cause, ApplicationError):
        return RenewalsError(cause.type or errors.NOT_ALLOWED, cause.message)
    return RenewalsError(errors.NOT_ALLOWED, str(cause or error))


class Renewals:
    def __init__(
        self,
        client: Client,
        store: Store,
        policy: Policy,
        task_queue: str,
        *,
        update_timeout: timedelta | None = None,
        year: YearPolicy | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.policy = policy
        self.task_queue = task_queue
        # The service's year (P15, P16): the next notice and automatic order the service view shows.
        self.year = year or YearPolicy()
        self.update_timeout = update_timeout
        self.desk = PaymentDesk(client, store, update_timeout=update_timeout)
        self.charges = ChargeOutcomes(client, self.desk, store.ledger)

    # ------------------------------------------------------------------ panel

    async def panel(self, event: PanelEvent, *, update_id: str | None = None) -> PanelAnswer:
        """`update_id` (from an Idempotency-Key) makes Temporal answer a repeat with the first outcome."""
        try:
            return await self._panel(event, update_id)
        except WorkflowUpdateFailedError as error:
            raise _from_update_failure(error) from None
        except RPCError as error:
            if closed(error):
                raise RenewalsError(
                    errors.NOT_ALLOWED,
                    f"no renewal is open for {event.username}: press Renew or Reactivate first",
                ) from None
            raise

    async def _panel(self, event: PanelEvent, update_id: str | None) -> PanelAnswer:
        if isinstance(event, AutoRenewChanged):
            return await self.auto_renew_changed(event, update_id=update_id)
        if isinstance(event, RenewRequested | ReactivateRequested):
            mode: Mode = "renew" if isinstance(event, RenewRequested) else "reactivate"
            return await self.open(event.username, mode, update_id=update_id)
        handle = self.client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(event.username))
        # Each cart event is its update's input (its envelope is ignored by the workflow).
        update: Any = {
            AddonAdded: RenewalWorkflow.add_addon,
            AddonRemoved: RenewalWorkflow.remove_addon,
            DiscountCodeApplied: RenewalWorkflow.apply_discount,
            CheckoutSubmitted: RenewalWorkflow.checkout,
        }.get(type(event))
        if update is None:
            raise RenewalsError(errors.INVALID_REQUEST, f"unknown event {event!r}")
        result: CartView | OrderView = await handle.execute_update(
            update, event, id=update_id, rpc_timeout=self.update_timeout
        )
        return result

    async def open(self, username: str, mode: Mode, *, update_id: str | None = None) -> CartView:
        """Update-with-start: a new renewal, or the one already open for this service (P8)."""
        if await self.store.services.get(username) is None:
            raise RenewalsError(errors.UNKNOWN_SERVICE, f"no service with username {username!r}")
        start = WithStartWorkflowOperation(
            RenewalWorkflow.run,
            RenewalInput(username=username, mode=mode, policy=self.policy),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            **start_options(username, mode),
        )
        return await self.client.execute_update_with_start_workflow(
            RenewalWorkflow.open,
            OpenRequest(mode=mode),
            start_workflow_operation=start,
            id=update_id,
            rpc_timeout=self.update_timeout,
        )

    async def auto_renew_changed(self, event: AutoRenewChanged, *, update_id: str | None = None) -> ServiceStatusView:
        """P16: off cancels an unpaid automatic order, then stores it; on is refused while an order
        of the customer's own awaits payment (it would renew twice), else stores it with its method."""
        username = event.username
        service = await self.store.services.get(username)
        if service is None:
            raise RenewalsError(errors.UNKNOWN_SERVICE, f"no service with username {username!r}")
        term_refused = event.years is not None and years_refusal(event.years, service.promotional)
        if term_refused:
            raise RenewalsError(errors.INVALID_REQUEST, term_refused)
        if event.auto_renew:
            manual = await self.store.services.awaiting_order(username, ("renew", "reactivate"))
            if manual is not None:
                raise RenewalsError(
                    errors.NOT_ALLOWED,
                    f"order {manual} awaits payment: auto-renew can be turned on once it is paid, or after "
                    "it lapses or is cancelled (P16)",
                )
        elif await self.store.services.awaiting_order(username, ("auto_renew",)) is not None:
            await self._cancel_automatic_order(username, update_id)
        on = event.auto_renew
        method, years = (event.method, event.years) if on else (None, None)
        await self.store.services.set_auto_renew(username, on, method, years)
        return await self.service(username)

    async def _cancel_automatic_order(self, username: str, update_id: str | None) -> None:
        handle = self.client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(username))
        try:
            await handle.execute_update(
                RenewalWorkflow.cancel_order,
                CancelOrder(reason=AUTO_RENEW_OFF, by_customer=True),
                id=update_id,
                rpc_timeout=self.update_timeout,
            )
        except WorkflowUpdateFailedError:
            pass  # paid meanwhile (being activated) or closed: nothing unpaid is left to cancel
        except RPCError as error:
            if not closed(error):
                raise

    # ------------------------------------------------------------------ payments

    async def payment(self, event: PaymentRegistered, *, by_hand: bool = False) -> PaymentOutcome:
        """Ledger first, then the renewal of the order decides (P5, P10–P12); never lost, never
        applied twice."""
        return await _delivered(self.desk.deliver(event.entry(by_hand=by_hand)))

    async def payment_event(self, event: PaymentEvent) -> PaymentOutcome | ChargeOutcomeView:
        """`POST /payments/events`: a payment (registered, or a charge that succeeded), or a
        declined charge (P20)."""
        if isinstance(event, ChargeFailed):
            return await self.charges.failed(event)
        if isinstance(event, ChargeSucceeded):
            return await _delivered(self.charges.succeeded(event))
        return await self.payment(event)

    async def pay_by_transfer(self, username: str, order_number: str) -> OrderView:
        """P20: the customer pays a declined automatic order by bank transfer instead."""
        return await self._ops(username, RenewalWorkflow.pay_by_transfer, PayByTransfer(order_number=order_number))

    async def retry_charge(self, username: str, order_number: str) -> OrderView:
        """P20: a new charge, asked by the customer after updating the card at the PSP."""
        return await self._ops(username, RenewalWorkflow.retry_charge, RetryCharge(order_number=order_number))

    # ------------------------------------------------------------------ reads

    async def service(self, username: str, now: datetime | None = None) -> ServiceStatusView:
        service = await self.store.services.get(username)
        if service is None:
            raise RenewalsError(errors.UNKNOWN_SERVICE, f"no service with username {username!r}")
        today = rome_today(now or datetime.now(UTC))
        found = eligibility_under(self.policy, service, today)
        ahead = next_dates(service.expires_on, service.auto_renew, today, self.year)
        return ServiceStatusView(
            username=username,
            status=found.status,
            expires_on=service.expires_on,
            auto_renew=service.auto_renew,
            action=found.action,
            reason=found.reason,
            auto_renew_method=service.auto_renew_method,
            auto_renew_years=service.auto_renew_years,
            promotional=service.promotional,
            **ahead.model_dump(),
        )

    async def renewal(self, username: str) -> RenewalView:
        """The current or latest renewal. A refused press is a closed run of the same workflow id
        that opened nothing: the renewal shown is the latest one that did."""
        handle = self.client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(username))
        try:
            found: RenewalView = await handle.query(RenewalWorkflow.view, rpc_timeout=RPC_TIMEOUT)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise RenewalsError(errors.UNKNOWN_SERVICE, f"no renewal for {username!r}") from None
            raise
        if found.stage != Stage.REFUSED:
            return found
        query = f"WorkflowId = '{workflow_id(username)}' AND {sa.STAGE.name} != '{Stage.REFUSED.value}'"
        async for earlier in self.client.list_workflows(query, limit=1, rpc_timeout=RPC_TIMEOUT):
            previous = self.client.get_workflow_handle_for(RenewalWorkflow.run, earlier.id, run_id=earlier.run_id)
            shown: RenewalView = await previous.query(RenewalWorkflow.view, rpc_timeout=RPC_TIMEOUT)
            return shown
        return found

    # ------------------------------------------------------------------ ops

    async def cancel(self, username: str, reason: str) -> OrderView:
        return await self._ops(username, RenewalWorkflow.cancel_order, CancelOrder(reason=reason))

    async def extend(self, username: str, days: int, reason: str) -> OrderView:
        return await self._ops(username, RenewalWorkflow.extend_deadline, ExtendDeadline(days=days, reason=reason))

    async def _ops(self, username: str, update: Any, request: Any) -> OrderView:
        handle = self.client.get_workflow_handle_for(RenewalWorkflow.run, workflow_id(username))
        try:
            result: OrderView = await handle.execute_update(update, request, rpc_timeout=self.update_timeout)
            return result
        except WorkflowUpdateFailedError as error:
            raise _from_update_failure(error) from None
        except RPCError as error:
            if closed(error):
                raise RenewalsError(errors.NOT_ALLOWED, f"no renewal is open for {username}") from None
            raise
