"""The Temporal worker: the renewal workflow and its activities, on the `renewals` task queue.

`python worker.py` reads the configuration from the environment; SIGTERM or Ctrl-C stops polling
and lets running activities finish (up to GRACEFUL_SHUTDOWN) before it exits. Logs, the activity
log line and the SDK's Prometheus metrics are set up by telemetry.py.
"""

import asyncio
import compileall
import logging
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig
from temporalio.worker import Worker

from activities.charges import Charges
from activities.mail import Mailer
from activities.payments import Reconciler
from activities.sdi import Sdi
from activities.sdi_client import RiceviFileClient
from activities.statements import StatementDesk, SubmitStatement
from activities.store import StartDelivery, Store
from activities.year import StartAutoRenewal, YearDesk
from client.payments import RECONCILER_UPDATE_TIMEOUT, PaymentDesk
from client.starts import start_auto_renewal, start_invoice_delivery
from client.statements import submit_statement
from renewals import DAILY_SCHEDULE_ID, RECONCILER_SCHEDULE_ID
from renewals.delivery import DeliveryInput, SdiPolicy
from renewals.messages import DayRun, Policy, Reconcile
from renewals.statement_imports import INBOX_SCHEDULE_ID, ImportRecord, ImportSource, InboxScan
from settings import Settings, load_settings
from telemetry import ActivityLog, configure_logging, worker_runtime
from workflows.invoice import InvoiceDelivery
from workflows.reconciler import LedgerReconciler
from workflows.renewal import RenewalWorkflow
from workflows.statements import StatementImport, StatementInbox
from workflows.year import ServiceYearDay

log = logging.getLogger("renewals.worker")

# How long a stopping worker lets running activities finish; a container's stop grace period
# (docker-compose.yml) must be longer, or they are killed half-way.
GRACEFUL_SHUTDOWN = timedelta(seconds=30)
# How far back the daily run catches up missed days after downtime.
DAILY_CATCHUP = timedelta(days=7)


def build_worker(
    client: Client,
    store: Store,
    mailer: Mailer,
    task_queue: str,
    *,
    max_cached_workflows: int = 500,
    policy: Policy | None = None,
    charges: Charges | None = None,
    sdi: Sdi | None = None,
    sdi_policy: SdiPolicy | None = None,
) -> Worker:
    """One worker for the workflows and every activity; tests build theirs the same way. `policy`
    is what the daily run starts automatic renewals with (the environment's by default). Without
    `charges`, an automatic order's charge request is only recorded (no PAYMENTS_WEBHOOK_URL).
    Every activation starts its invoice's delivery (P18); without `sdi` (no SDI_URL) the delivery
    retries, visibly, until a worker that has one takes it."""
    desk = PaymentDesk(client, store, update_timeout=RECONCILER_UPDATE_TIMEOUT)
    reconciler = Reconciler(store.ledger, desk)
    statements = StatementDesk(store.pool, desk, statement_submitter(client, store, task_queue))
    charges = charges or Charges(store.pool, None, "")
    if policy is None or sdi_policy is None:
        settings = load_settings()
        policy, sdi_policy = policy or settings.policy(), sdi_policy or settings.sdi_policy()
    year = YearDesk(store, mailer, auto_renewal_starter(client, task_queue, policy))
    sdi = sdi or Sdi(store.pool, None, store.seller)
    store = store.delivering_with(delivery_starter(client, task_queue, sdi_policy))
    return Worker(
        client,
        task_queue=task_queue,
        max_cached_workflows=max_cached_workflows,
        workflows=[RenewalWorkflow, LedgerReconciler, ServiceYearDay, InvoiceDelivery, StatementImport, StatementInbox],
        activities=[
            reconciler.redeliver_stuck_payments,
            statements.record_entries,
            statements.deliver_payments,
            statements.finish_import,
            statements.fail_import,
            statements.scan_inbox,
            year.send_notices,
            year.start_auto_renewals,
            store.load_service,
            store.find_discount_code,
            store.create_order,
            store.settle_payment,
            store.activate,
            store.find_on_time_payments,
            store.close_order,
            store.change_due_by,
            store.change_method,
            mailer.send_email,
            charges.request_charge,
            sdi.transmit,
            sdi.record_outcome,
            sdi.reissue,
        ],
        interceptors=[ActivityLog()],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
    )


async def ensure_reconciler_schedule(client: Client, task_queue: str, every: timedelta) -> None:
    """The ledger reconciler's Schedule (P11, invariant I2), created once; a second worker finds it."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            LedgerReconciler.run, Reconcile(older_than=every), id=RECONCILER_SCHEDULE_ID, task_queue=task_queue
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(RECONCILER_SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        pass


async def ensure_inbox_schedule(client: Client, task_queue: str, settings: Settings) -> None:
    """P19: the look at PAYMENTS_INBOX_DIR every PAYMENTS_INBOX_EVERY (runs never overlap); unset,
    this worker leaves the Schedule alone. A worker that finds it brings it to its settings."""
    if settings.payments_inbox_dir is None:
        return
    scan = InboxScan(directory=str(settings.payments_inbox_dir.resolve()))
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(StatementInbox.run, scan, id=INBOX_SCHEDULE_ID, task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=settings.payments_inbox_every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    await create_or_update_schedule(client, INBOX_SCHEDULE_ID, schedule)


def statement_submitter(client: Client, store: Store, task_queue: str) -> SubmitStatement:
    """The inbox's submission of a statement (P19): stored and its import started, not waited for."""

    async def submit(raw: bytes, source: ImportSource, file_name: str | None) -> ImportRecord:
        return await submit_statement(client, store.pool, raw, source, file_name=file_name, task_queue=task_queue)

    return submit


def auto_renewal_starter(client: Client, task_queue: str, policy: Policy) -> StartAutoRenewal:
    """The daily run's start of an automatic renewal (P16): False when a renewal of the service is
    already running (the customer's own, or the automatic one from an earlier run of the day)."""

    async def start(username: str) -> bool:
        try:
            await start_auto_renewal(client, task_queue, username, policy)
        except WorkflowAlreadyStartedError:
            return False
        return True

    return start


def delivery_starter(client: Client, task_queue: str, policy: SdiPolicy) -> StartDelivery:
    """An activation's start of its invoice's delivery through SdI (P18), under P18's waits."""

    async def start(input: DeliveryInput) -> None:
        await start_invoice_delivery(client, task_queue, input.model_copy(update={"policy": policy}))

    return start


async def ensure_daily_schedule(client: Client, task_queue: str, settings: Settings, *, run_today: bool = True) -> None:
    """The service's year (P15, P16): one run a day at RENEWALS_DAILY_AT in the Rome calendar.
    Missed days (the cluster down) are caught up, each run doing the day it was meant for; runs
    never overlap. When first created it runs at once for today (`run_today`), whose hour may
    have passed; a worker that finds it brings it to its own settings."""
    hour, minute = (int(part) for part in settings.daily_at.split(":"))
    run = DayRun(year=settings.year(), action_url=settings.panel_ui_url)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(ServiceYearDay.run, run, id=DAILY_SCHEDULE_ID, task_queue=task_queue),
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(hour=[ScheduleRange(hour)], minute=[ScheduleRange(minute)])],
            time_zone_name="Europe/Rome",
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.BUFFER_ALL, catchup_window=DAILY_CATCHUP),
    )
    await create_or_update_schedule(client, DAILY_SCHEDULE_ID, schedule, trigger_immediately=run_today)


async def create_or_update_schedule(client: Client, schedule_id: str, schedule: Schedule, **create: Any) -> None:
    """Create the Schedule, or bring the one found to `schedule`. The environment is the truth: each
    worker brings it to its settings (its time, its runs' input), keeping its state: one ops paused
    stays paused."""
    try:
        await client.create_schedule(schedule_id, schedule, **create)
    except ScheduleAlreadyRunningError:

        async def to_settings(found: ScheduleUpdateInput) -> ScheduleUpdate:
            schedule.state = found.description.schedule.state
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(to_settings)


def sdi_client(settings: Settings) -> RiceviFileClient | None:
    """SDICoop's RiceviFile at SDI_URL, with the client certificate SDICoop requires; None unset."""
    if settings.sdi_url is None:
        log.warning("SDI_URL is not set: invoice deliveries wait until a worker with one takes them (P18)")
        return None
    return RiceviFileClient(
        settings.sdi_url,
        client_cert=settings.sdi_client_cert,
        client_key=settings.sdi_client_key,
        ca=settings.sdi_ca_cert,
    )


def tls_config(settings: Settings) -> TLSConfig | None:
    """mTLS (Temporal Cloud, a secured cluster) when a client certificate or a CA is configured."""
    if settings.temporal_tls_cert is None and settings.temporal_tls_ca is None:
        return None
    return TLSConfig(
        client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
        client_private_key=settings.temporal_tls_key.read_bytes() if settings.temporal_tls_key else None,
        server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """The client of worker, ingress and CLI. Locally plain gRPC; with TEMPORAL_API_KEY alone the
    SDK turns TLS on by itself (Temporal Cloud's API keys)."""
    api_key = settings.temporal_api_key
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        tls=tls_config(settings),
        api_key=api_key.get_secret_value() if api_key else None,
        runtime=runtime,
    )


def compile_workflows() -> None:
    """The sandbox imports the workflow module afresh for every renewal; where no .pyc exists
    (PYTHONDONTWRITEBYTECODE, a fresh checkout) each import compiles the source again."""
    compileall.compile_dir(Path(__file__).resolve().parent / "workflows", quiet=2)


async def main() -> None:
    settings = load_settings()
    compile_workflows()
    configure_logging(settings)
    client = await connect(settings, worker_runtime(settings))
    store = await Store.connect(settings.database_url, seller=settings.seller())
    mailer = Mailer(
        store, settings.smtp_host, settings.smtp_port, settings.smtp_sender, link_secret=settings.panel_secrets[0]
    )
    # P16: a card or PayPal automatic order's charge request, signed with the current PAYMENTS_SECRET.
    charges = Charges(store.pool, settings.payments_webhook_url, settings.payments_secrets[0])
    sdi = Sdi(store.pool, sdi_client(settings), store.seller)
    worker = build_worker(
        client,
        store,
        mailer,
        settings.temporal_task_queue,
        max_cached_workflows=settings.worker_max_cached_workflows,
        charges=charges,
        sdi=sdi,
        sdi_policy=settings.sdi_policy(),
    )
    await ensure_reconciler_schedule(client, settings.temporal_task_queue, settings.reconcile_every)
    await ensure_inbox_schedule(client, settings.temporal_task_queue, settings)
    if settings.daily_at != "off":
        await ensure_daily_schedule(client, settings.temporal_task_queue, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with worker:
        log.info("worker polling task queue %s", settings.temporal_task_queue)
        await stop.wait()
        log.info("stopping: letting running activities finish")
    await mailer.connections.close()
    if sdi.client is not None:
        await sdi.client.aclose()
    await store.close()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
