"""Issue 12: the invariants I1–I6, checked after every step of random sequences on the real stack.

A hypothesis RuleBasedStateMachine drives the signed HTTP API (tests/invariants_support.Api over the
app of ingress/http.py, the Temporal dev server, the worker, PostgreSQL and the SMTP sink of
conftest.py) and the CLI's import (`starter.validate_services`): service records with awkward but
legal data (names, addresses, 29 February, Rome DST days, expiry at each R2 boundary, quotas at the
storage thresholds, add-ons at the limit, promotional), panel events in any order (repeated, after
checkout, with and without Idempotency-Key, keys replayed), payments (exact, partial, over,
duplicate, a reused transaction id, late, foreign currency, free-text references, unknown orders),
ops cancel and extend, and time moved with `env.fast_forward`.

After every step:
- I1 every renewal is in a stage of DESIGN.md §4; a running one shows that stage in its current
  details (and, awaiting payment, its deadline); no workflow task ever failed (the history);
- I2 every signed payment with a transaction id and a positive amount that was answered (2xx or
  503) is in the ledger exactly once with a final status, at the latest once the reconciler ran;
- I3 a service's expiry moved exactly once per paid order, by that order's years, from where the
  previous one left it; never by an unpaid, lapsed or cancelled order; a paid order was paid in
  full by payments the ledger took before its deadline;
- I4 every email went out at most once (Message-ID in the sink); none for an order after its
  renewal closed;
- I5 every HTTP answer within 15 s; a 503 carries Retry-After;
- I6 a panel event replayed with its Idempotency-Key never changes the cart.

`make test` runs `test_invariants_hold_under_random_sequences` with a fixed seed and a bounded
number of sequences; `make soak` runs `test_invariants_soak` for SOAK_MINUTES with fresh seeds.
"""

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from datetime import date, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.store import Store
from client.renewals import Renewals, RenewalsError
from renewals import TASK_QUEUE, workflow_id
from renewals.dates import add_years
from renewals.types import MAX_ADDON_QUANTITY
from renewals.views import RenewalView
from starter import validate_services
from tests.conftest import MailSink, today
from tests.invariants_support import Api, failed_workflow_tasks, payment_event, reconcile
from workflows.renewal import RenewalWorkflow

STAGES = {"CART", "AWAITING_PAYMENT", "ACTIVATED", "CART_ABANDONED", "ORDER_EXPIRED", "CANCELLED", "REFUSED"}
OPEN_STAGES = {"CART", "AWAITING_PAYMENT"}
STEP_TIMEOUT = 90.0

NAMES = [
    "Mario Rossi",
    "D'Annunzio & Figli S.r.l.",
    "Zoë Ñandú — 山田太郎",
    "Rossi, Mario <mario@example.com>",
    "x" * 200,
    'Ça va: "virgolette" (e parentesi) [quadre]',
]
ADDRESSES = [
    "{u}@example.com",
    "{u}+rinnovi@example.co.uk",
    "Mario.Rossi.{u}@mail.sub.example.it",
    "{u}@EXAMPLE.COM",
    "a-{u}_x@xn--80ak6aa92e.example",
]
LEAP_AND_DST = [date(2028, 2, 29), date(2027, 3, 28), date(2027, 10, 31), date(2026, 10, 25), date(2024, 2, 29)]
# Days from today: active, the last active day, each R2 boundary (1st, 89th, 90th, 91st day after).
EXPIRY_OFFSETS = [60, 1, 0, -1, -89, -90, -91]


class Stats:
    sequences = 0
    steps = 0
    # What the steps met: "<event or payment kind> <status>", and each renewal's last stage seen.
    outcomes: ClassVar[Counter[str]] = Counter()

    @classmethod
    def reset(cls) -> None:
        cls.sequences = cls.steps = 0
        cls.outcomes = Counter()

    @classmethod
    def summary(cls) -> str:
        return ", ".join(f"{what} ×{count}" for what, count in sorted(cls.outcomes.items()))


class Violation(AssertionError):
    """An invariant broken: its message starts with the invariant's id."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Violation(message)


class RenewalsModel(RuleBasedStateMachine):
    # The session's stack, set by the test that runs the machine (in a thread of its own).
    loop: ClassVar[asyncio.AbstractEventLoop]
    env: ClassVar[WorkflowEnvironment]
    store: ClassVar[Store]
    ingress: ClassVar[Renewals]
    mail_sink: ClassVar[MailSink]

    services = Bundle("services")

    def __init__(self) -> None:
        super().__init__()
        Stats.sequences += 1
        self.api = Api(self.ingress)
        self.initial_expiry: dict[str, date] = {}
        self.payments: dict[str, dict[str, Any]] = {}  # transaction id -> the event answered
        self.keys: dict[str, tuple[str, dict[str, Any]]] = {}  # Idempotency-Key -> (username, event)
        self.closed_orders: dict[str, set[str]] = {}  # order number -> email keys when it closed
        self.checked_runs: set[str] = set()

    def teardown(self) -> None:
        try:
            self.teardown_stages()
        finally:
            self.run(self.api.http.aclose())

    # ------------------------------------------------------------------ plumbing

    def run(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Run on the session's loop (where the stack's clients live), bounded: a wedge is a violation."""
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(work, STEP_TIMEOUT), self.loop)
        try:
            return future.result()
        except TimeoutError:
            raise Violation(f"I1/I5: a step did not finish within {STEP_TIMEOUT} s") from None
        except RPCError as error:  # Temporal refused a read or an update: a renewal is wedged
            raise Violation(f"I1: {error}") from None

    def step(self) -> None:
        Stats.steps += 1

    @property
    def client(self) -> Client:
        return self.env.client

    async def renewal(self, username: str) -> dict[str, Any]:
        """The renewal the panel shows, or {} when there is none yet."""
        response = await self.api.get(f"/panel/renewals/{username}")
        check(response.status_code in (200, 404), f"I1: reading {username}'s renewal answered {response.text}")
        found: dict[str, Any] = response.json() if response.status_code == 200 else {}
        return found

    async def order_of(self, username: str) -> dict[str, Any] | None:
        order: dict[str, Any] | None = (await self.renewal(username)).get("order")
        return order

    # ------------------------------------------------------------------ services (the CLI's import)

    @initialize(target=services)
    def first_service(self) -> str:
        """Every sequence has one ordinary active service to work on from its first step."""
        return self.import_service("Mario Rossi", ADDRESSES[0], 60, 1000, 40, [], False, False)

    @precondition(lambda self: len(self.initial_expiry) < 3)
    @rule(
        target=services,
        name=st.sampled_from(NAMES),
        address=st.sampled_from(ADDRESSES),
        expiry=st.one_of(st.sampled_from(EXPIRY_OFFSETS), st.sampled_from(LEAP_AND_DST)),
        quota=st.sampled_from([1, 1000, 1024 * 1024]),
        use=st.sampled_from([0, 70, 71, 90, 91, 100, 150]),
        active=st.sampled_from([[], [("extra_users", MAX_ADDON_QUANTITY - 1)], [("extra_storage", 3)]]),
        promotional=st.booleans(),
        auto_renew=st.sampled_from([False, False, False, True]),
    )
    def import_service(
        self,
        name: str,
        address: str,
        expiry: int | date,
        quota: int,
        use: int,
        active: list[tuple[str, int]],
        promotional: bool,
        auto_renew: bool,
    ) -> str:
        self.step()
        username = f"m-{uuid.uuid4().hex[:10]}"
        expires_on = today() + timedelta(days=expiry) if isinstance(expiry, int) else expiry
        purchased_on = min(date(2024, 2, 29), expires_on)
        record = {
            "username": username,
            "holder_name": name,
            "holder_email": address.format(u=username),
            "promotional": promotional,
            "purchased_on": purchased_on.isoformat(),
            "expires_on": expires_on.isoformat(),
            "auto_renew": auto_renew,
            "storage_quota_mb": quota,
            "storage_used_mb": quota * use // 100 + (1 if use in (70, 90) else 0),
            "addons": [{"addon": addon, "quantity": quantity} for addon, quantity in active],
        }
        # The CLI's own validation (python starter.py services import): legal data must pass it.
        records = validate_services(json.dumps([record], ensure_ascii=False).encode())
        self.run(self.store.services.upsert(records))
        self.initial_expiry[username] = expires_on
        return username

    # ------------------------------------------------------------------ panel events

    def panel(self, event: dict[str, Any], key: str | None = None) -> Any:
        response = self.run(self.api.panel(event, key=key))
        Stats.outcomes[f"{event['type']} {response.status_code}"] += 1
        check(response.status_code < 500 or response.status_code == 503, f"I5: {event} answered {response.text}")
        return response

    @rule(username=services, mode=st.sampled_from(["renew_requested", "reactivate_requested"]))
    def press(self, username: str, mode: str) -> None:
        self.step()
        self.panel({"type": mode, "username": username})

    @rule(
        username=services,
        addon=st.sampled_from(["extra_storage", "extra_users"]),
        quantity=st.sampled_from([1, 2, 99, 100, 101]),  # 100 at most per event
        with_key=st.booleans(),
    )
    def add_addon(self, username: str, addon: str, quantity: int, with_key: bool) -> None:
        self.step()
        event = {"type": "addon_added", "username": username, "addon": addon, "quantity": quantity}
        key = f"k-{uuid.uuid4().hex}" if with_key else None
        self.panel(event, key)
        if key:
            self.keys[key] = (username, event)

    @rule(
        username=services,
        method=st.sampled_from(["card", "paypal", "bank_transfer", "postal_slip"]),
        years=st.sampled_from([1, 2, 5]),
        pay=st.sampled_from(["exact", "exact", "partial", "over", "none"]),
    )
    def journey(self, username: str, method: str, years: int, pay: str) -> None:
        """The button the panel shows, checkout, and (usually) the money: so sequences reach activation."""
        self.step()
        action = self.run(self.api.get(f"/panel/services/{username}")).json().get("action")
        self.panel({"type": f"{action or 'renew'}_requested", "username": username})
        self.panel({"type": "checkout_submitted", "username": username, "payment_method": method, "years": years})
        if pay != "none":
            self.pay(username, pay)

    @rule(username=services, addon=st.sampled_from(["extra_storage", "extra_users"]))
    def remove_addon(self, username: str, addon: str) -> None:
        self.step()
        self.panel({"type": "addon_removed", "username": username, "addon": addon})

    @rule(username=services, code=st.sampled_from(["PARTNER10", "OLD20", "NOPE", "partner10"]))
    def discount(self, username: str, code: str) -> None:
        self.step()
        self.panel({"type": "discount_code_applied", "username": username, "code": code})

    @rule(
        username=services,
        method=st.sampled_from(["card", "paypal", "bank_transfer", "postal_slip"]),
        years=st.sampled_from([1, 2, 3, 10]),
        with_key=st.booleans(),
    )
    def checkout(self, username: str, method: str, years: int, with_key: bool) -> None:
        self.step()
        event = {"type": "checkout_submitted", "username": username, "payment_method": method, "years": years}
        key = f"k-{uuid.uuid4().hex}" if with_key else None
        self.panel(event, key)
        if key:
            self.keys[key] = (username, event)

    @rule(data=st.data())
    def replay_with_key(self, data: st.DataObject) -> None:
        """I6: the panel retrying (the same key, the same event) changes nothing."""
        if not self.keys:
            return
        self.step()
        # An index, not a sample of the keys: the keys are random, and a draw must not depend on them.
        key = sorted(self.keys)[data.draw(st.integers(min_value=0, max_value=1000)) % len(self.keys)]
        username, event = self.keys[key]
        before = self.run(self.renewal(username))
        response = self.panel(event, key)
        after = self.run(self.renewal(username))
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        check(replayed or response.status_code != 200, f"I6: a replay of {key} was run again: {response.text}")
        check(
            (after.get("cart") or {}).get("cart_addons") == (before.get("cart") or {}).get("cart_addons")
            and (after.get("order") or {}).get("order_number") == (before.get("order") or {}).get("order_number"),
            f"I6: replaying key {key} of {event} changed the renewal: {before} -> {after}",
        )

    # ------------------------------------------------------------------ payments

    @rule(
        username=services,
        kind=st.sampled_from(
            ["exact", "partial", "over", "duplicate", "conflict", "foreign", "free_text", "unknown", "one_cent"]
        ),
    )
    def pay(self, username: str, kind: str) -> None:
        self.step()
        order = self.run(self.order_of(username))
        number = order["order_number"] if order else "FE-2026-999999"
        balance = max((order or {}).get("balance_cents", 3050), 1)
        if kind in ("duplicate", "conflict") and not self.payments:
            kind = "exact"  # nothing to repeat yet
        if kind in ("duplicate", "conflict"):
            earlier = next(reversed(self.payments.values()))
            event = dict(earlier) if kind == "duplicate" else {**earlier, "amount_cents": earlier["amount_cents"] + 1}
        else:
            amount = {"partial": max(balance // 2, 1), "over": balance + 700, "one_cent": 1}.get(kind, balance)
            reference = {
                "free_text": f"Bonifico {number.replace('-', ' ')} Rossi",
                "unknown": "FE-2099-000001",
            }.get(kind, number)
            event = payment_event(reference, amount, currency="USD" if kind == "foreign" else "EUR")
        response = self.run(self.api.payment(event))
        answered = response.json().get("status", response.status_code) if response.status_code == 200 else ""
        Stats.outcomes[f"payment {kind} {response.status_code} {answered}".rstrip()] += 1
        check(response.status_code in (200, 409, 503), f"I2: a signed payment answered {response.text}")
        if kind == "conflict":
            check(response.status_code == 409, f"I2: a reused transaction id was not refused: {response.text}")
        if response.status_code in (200, 503) and kind != "conflict":
            self.payments.setdefault(event["transaction_id"], event)

    # ------------------------------------------------------------------ ops and time

    @rule(username=services, days=st.sampled_from([1, 7, 60]))
    def ops_extend(self, username: str, days: int) -> None:
        self.step()
        try:
            self.run(self.ingress.extend(username, days, "model test"))
        except RenewalsError:
            pass
        except RPCError as error:
            raise Violation(f"I1: ops extend on {username}: {error}") from None

    @rule(username=services)
    def ops_cancel(self, username: str) -> None:
        self.step()
        try:
            self.run(self.ingress.cancel(username, "model test"))
        except RenewalsError:
            pass
        except RPCError as error:
            raise Violation(f"I1: ops cancel on {username}: {error}") from None

    @rule(username=services, days=st.sampled_from([1, 3, 4, 7, 8, 15, 31, 91]))
    def time_passes(self, username: str, days: int) -> None:
        self.step()

        async def forward() -> None:
            handle = self.client.get_workflow_handle(workflow_id(username))
            try:
                description = await handle.describe()
            except Exception:  # noqa: BLE001 - no renewal yet: nothing to move
                return
            if description.status == WorkflowExecutionStatus.RUNNING:
                await self.env.fast_forward(handle, timedelta(days=days))

        self.run(forward())

    # ------------------------------------------------------------------ the invariants

    @invariant()
    def i1_every_renewal_in_a_stage_waiting_visibly_and_no_task_failed(self) -> None:
        self.run(self._i1())

    async def _i1(self) -> None:
        for username in self.initial_expiry:
            async for execution in self.client.list_workflows(f"WorkflowId = '{workflow_id(username)}'"):
                handle = self.client.get_workflow_handle(execution.id, run_id=execution.run_id)
                if execution.run_id in self.checked_runs:
                    continue  # closed, and checked once closed
                failures = await failed_workflow_tasks(handle)
                check(not failures, f"I1: {execution.id} {execution.run_id} has failed workflow tasks: {failures}")
                if execution.status != WorkflowExecutionStatus.RUNNING:
                    self.checked_runs.add(execution.run_id)
                    continue
                try:
                    view = await handle.query(RenewalWorkflow.view, result_type=RenewalView)
                except RPCError as error:
                    raise Violation(f"I1: {execution.id} {execution.run_id} cannot be read: {error}") from None
                stage = view.stage.value
                check(stage in STAGES | {"OPENING"}, f"I1: running {execution.id} in stage {stage}")
                if stage not in OPEN_STAGES:
                    # Closed, finishing what it sends (emails, ledger writes): it must end, not linger.
                    await finishes(handle)
                    continue
                metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
                details = metadata.current_details
                check(details.startswith("**Stage:** "), f"I1: {execution.id} shows no stage: {details!r}")
                if stage == "AWAITING_PAYMENT" and "**Stage:** AWAITING_PAYMENT" in details:
                    check("**Due by:**" in details, f"I1: {execution.id} awaits payment without a deadline shown")
            for execution_stage in await self._stages(username):
                check(execution_stage in STAGES, f"I1: {username} in an unknown stage {execution_stage}")

    async def _stages(self, username: str) -> list[str]:
        response = await self.api.get(f"/panel/renewals/{username}")
        check(response.status_code in (200, 404, 503), f"I1: reading {username}'s renewal answered {response.text}")
        return [response.json()["stage"]] if response.status_code == 200 else []

    def teardown_stages(self) -> None:
        for username in self.initial_expiry:
            for stage in self.run(self._stages(username)) or ["none"]:
                Stats.outcomes[f"renewal ended {stage}"] += 1

    @invariant()
    def i2_every_payment_in_the_ledger_once_with_a_final_status(self) -> None:
        self.run(self._i2())

    async def _i2(self) -> None:
        if not self.payments:
            return
        ids = sorted(self.payments)

        async def pending() -> list[str]:
            rows = await self.store.pool.fetch(
                "SELECT transaction_id, status FROM payments WHERE transaction_id = ANY($1)", ids
            )
            found = {row["transaction_id"]: row["status"] for row in rows}
            check(set(found) == set(ids), f"I2: payments missing from the ledger: {sorted(set(ids) - set(found))}")
            return [tid for tid, status in found.items() if status == "received"]

        deadline = time.monotonic() + 10
        while await pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if await pending():
            # Within the reconciler's period: its run must settle them.
            await reconcile(self.client, TASK_QUEUE)
            left = await pending()
            check(not left, f"I2: left 'received' after the reconciler ran: {left}")

    @invariant()
    def i3_expiry_moved_once_per_paid_order_by_its_years(self) -> None:
        self.run(self._i3())

    async def _i3(self) -> None:
        if not self.initial_expiry:
            return
        names = sorted(self.initial_expiry)
        services = {
            row["username"]: row["expires_on"]
            for row in await self.store.pool.fetch(
                "SELECT username, expires_on FROM services WHERE username = ANY($1)", names
            )
        }
        orders = await self.store.pool.fetch(
            """
            SELECT o.*, (SELECT coalesce(sum(p.amount_cents), 0) FROM payments p
                         WHERE p.order_number = o.order_number AND p.status IN ('applied', 'partial', 'overpaid')
                           AND p.received_at <= o.due_by) AS paid_in_time
            FROM orders o WHERE o.username = ANY($1) ORDER BY split_part(o.order_number, '-', 3)::int
            """,
            names,
        )
        for username in names:
            expiry = self.initial_expiry[username]
            for order in (o for o in orders if o["username"] == username):
                if order["status"] != "paid":
                    check(order["new_expires_on"] is None, f"I3: unpaid order {order['order_number']} has a new expiry")
                    continue
                check(
                    order["previous_expires_on"] == expiry,
                    f"I3: {order['order_number']} extended from {order['previous_expires_on']}, not {expiry}",
                )
                expiry = add_years(expiry, order["years"])
                check(
                    order["new_expires_on"] == expiry,
                    f"I3: {order['order_number']} set {order['new_expires_on']}, not {expiry} ({order['years']} y)",
                )
                check(
                    order["paid_in_time"] >= order["total_cents"],
                    f"I3: {order['order_number']} activated with {order['paid_in_time']} of "
                    f"{order['total_cents']} cents received by its deadline",
                )
            check(services[username] == expiry, f"I3: {username} expires {services[username]}, expected {expiry}")

    @invariant()
    def i4_every_email_at_most_once_and_none_after_close(self) -> None:
        self.run(self._i4())

    async def _i4(self) -> None:
        if not self.initial_expiry:
            return
        # This sequence's mail only: the sink is the session's, and each address carries its username.
        ours = tuple(self.initial_expiry)
        messages = [m for m in self.mail_sink.messages() if any(name in str(m["To"]) for name in ours)]
        seen: dict[str, str] = {}
        for message in messages:
            mid, key = str(message["Message-ID"]), str(message["X-Renewals-Key"])
            check(mid not in seen, f"I4: {key} sent twice (Message-ID {mid})")
            seen[mid] = key
        keys = set(seen.values())
        rows = await self.store.pool.fetch(
            "SELECT order_number, workflow_id, run_id FROM orders WHERE username = ANY($1)", sorted(self.initial_expiry)
        )
        for row in rows:
            number = row["order_number"]
            mine = {key for key in keys if key.startswith(f"{number}:")}
            if number in self.closed_orders:
                check(
                    mine <= self.closed_orders[number],
                    f"I4: emails for {number} after it closed: {sorted(mine - self.closed_orders[number])}",
                )
                continue
            handle = self.client.get_workflow_handle(row["workflow_id"], run_id=row["run_id"])
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                # Closed: everything it sends is out (it returns only once its emails are).
                self.closed_orders[number] = mine

    @invariant()
    def i5_every_answer_bounded(self) -> None:
        check(self.api.slowest < 15.0, f"I5: an answer took {self.api.slowest:.1f} s")


async def finishes(handle: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
        check(time.monotonic() < deadline, f"I1: {handle.id} closed its stage but still runs after {within} s")
        await asyncio.sleep(0.1)


def describe(error: BaseException) -> str:
    """The violation's first line, and those of what hypothesis wraps (a failure that did not
    replay is reported as 'Inconsistent results' with the first failure inside)."""
    line = (str(error).splitlines() or [type(error).__name__])[0][:500]
    inner = [describe(sub) for sub in getattr(error, "exceptions", ())]
    return " | ".join([line, *inner])


def model_settings(**overrides: Any) -> settings:
    return settings(
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        **overrides,
    )


def run_machine(loop: asyncio.AbstractEventLoop, env: Any, store: Store, ingress: Renewals, sink: MailSink) -> None:
    RenewalsModel.loop, RenewalsModel.env, RenewalsModel.store = loop, env, store
    RenewalsModel.ingress, RenewalsModel.mail_sink = ingress, sink


async def test_invariants_hold_under_random_sequences(env, store, ingress, mail_sink, worker) -> None:
    """`make test`: a fixed seed, 15 sequences of up to 30 steps (about a minute on 2 cores)."""
    run_machine(asyncio.get_running_loop(), env, store, ingress, mail_sink)
    chosen = model_settings(
        derandomize=True,
        max_examples=int(os.environ.get("MODEL_EXAMPLES", "10")),
        stateful_step_count=int(os.environ.get("MODEL_STEPS", "30")),
        phases=[Phase.explicit, Phase.generate],
    )
    Stats.reset()
    try:
        await asyncio.to_thread(run_state_machine_as_test, RenewalsModel, settings=chosen)
    except Exception as error:  # noqa: BLE001 - hypothesis's report (the steps), without a deep traceback
        pytest.fail(f"{type(error).__name__}: {error}", pytrace=False)
    print(f"\nmodel: {Stats.sequences} sequences, {Stats.steps} steps; {Stats.summary()}")
    assert Stats.steps >= chosen.max_examples  # it did drive the stack


@pytest.mark.skipif("SOAK_MINUTES" not in os.environ, reason="make soak runs it (SOAK_MINUTES)")
@pytest.mark.timeout(0)
async def test_invariants_soak(env, store, ingress, mail_sink, worker) -> None:
    """`make soak`: fresh random sequences for SOAK_MINUTES; prints what it tried and what broke."""
    run_machine(asyncio.get_running_loop(), env, store, ingress, mail_sink)
    minutes = float(os.environ["SOAK_MINUTES"])
    # Batches of 40 sequences (a batch's first is hypothesis's simplest; the others random), until time is up.
    chosen = model_settings(max_examples=40, stateful_step_count=30, phases=[Phase.generate])
    violations: list[str] = []
    Stats.reset()
    started = time.monotonic()
    while time.monotonic() - started < minutes * 60:
        try:
            await asyncio.to_thread(run_state_machine_as_test, RenewalsModel, settings=chosen)
        except Exception as error:  # noqa: BLE001 - each violation is counted and printed, the soak goes on
            violations.append(describe(error))
    took = (time.monotonic() - started) / 60
    print(f"\nsoak: {Stats.sequences} sequences, {Stats.steps} steps in {took:.1f} min; {len(violations)} violations")
    print(f"soak: what the steps met: {Stats.summary()}")
    for violation in violations:
        print(f"  violation: {violation}")
    assert not violations
