"""P15: a day of the service's year on the real dev server, PostgreSQL and SMTP sink: the notices
due that day, each once however often the day runs, and the skips the rules ask for.

Each test runs a day of its own far in the future (its own expiry dates), so the services of other
tests are never due on it.
"""

import asyncio
import contextlib
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.store import Store
from db.year import DUE_PAGE
from renewals import TASK_QUEUE
from renewals.messages import DayReport, DayRun
from renewals.year import YearPolicy, notice_key
from tests.conftest import MailSink, new_service, unique
from workflows.year import ServiceYearDay

pytestmark = pytest.mark.usefixtures("worker")

ACTION_URL = "https://panel.example.com/ui/"


def a_day() -> date:
    """A day no other test uses: the services expiring around it are this test's only."""
    return date(2040, 1, 1) + timedelta(days=random.randrange(0, 20_000) * 3)


async def run_day(client: Client, day: date, **fields: Any) -> DayReport:
    handle = await start_day(client, day, **fields)
    return await handle.result()


async def start_day(client: Client, day: date, **fields: Any) -> WorkflowHandle[Any, DayReport]:
    return await client.start_workflow(
        ServiceYearDay.run,
        DayRun(day=day, action_url=ACTION_URL, **fields),
        id=f"service-year-{day}-{uuid.uuid4().hex[:6]}",
        task_queue=TASK_QUEUE,
    )


async def add_open_order(store: Store, username: str, expires_on: date, status: str = "awaiting_payment") -> None:
    number = f"T-{uuid.uuid4().hex[:10]}"
    await store.pool.execute(
        """
        INSERT INTO orders (order_number, workflow_id, run_id, username, mode, years, payment_method,
            net_cents, discount_cents, vat_cents, total_cents, status, previous_expires_on, due_by)
        VALUES ($1, $2, $3, $4, 'renew', 1, 'bank_transfer', 2500, 0, 550, 3050, $5, $6, $7)
        """,
        number,
        f"renewal-{username}",
        uuid.uuid4().hex,
        username,
        status,
        expires_on,
        datetime.now(UTC) + timedelta(days=30),
    )


def subject(message: Message) -> str:
    return str(make_header(decode_header(message["Subject"]))).replace("\r\n", "")


def subjects(sink: MailSink, username: str) -> list[str]:
    return sorted(subject(message) for message in sink.to(f"{username}@example.com"))


def one(sink: MailSink, username: str) -> Message:
    found = sink.to(f"{username}@example.com")
    assert len(found) == 1, [m["Subject"] for m in found]
    return found[0]


async def test_p15_a_day_sends_each_notice_due_once_and_skips_the_rest(
    client_store: tuple[Client, Store], mail_sink: MailSink
) -> None:
    client, store = client_store
    day = a_day()
    due = {
        "before-30": await new_service(store, expires_on=day + timedelta(days=30)),
        "before-7": await new_service(store, expires_on=day + timedelta(days=7)),
        "before-1": await new_service(store, expires_on=day + timedelta(days=1)),
        "expired": await new_service(store, expires_on=day - timedelta(days=1)),
        "expired-auto": await new_service(store, expires_on=day - timedelta(days=1), auto_renew=True),
        "ceased": await new_service(store, expires_on=day - timedelta(days=91)),
    }
    not_due = {
        "open order": await new_service(store, expires_on=day + timedelta(days=7)),
        "paid order": await new_service(store, expires_on=day + timedelta(days=30)),
        "auto-renew on": await new_service(store, expires_on=day + timedelta(days=7), auto_renew=True),
        "day 2 after expiry": await new_service(store, expires_on=day - timedelta(days=2)),
        "day 90 after expiry": await new_service(store, expires_on=day - timedelta(days=90)),
        "8 days before": await new_service(store, expires_on=day + timedelta(days=8)),
    }
    await add_open_order(store, not_due["open order"].username, day + timedelta(days=7))
    await add_open_order(store, not_due["paid order"].username, day + timedelta(days=30), status="paid")

    first = await run_day(client, day)

    assert first.day == day
    assert first.kinds["before-30"].done == 1 and first.kinds["before-30"].skipped == 1
    assert first.kinds["before-7"].done == 1 and first.kinds["before-7"].skipped == 1
    assert first.kinds["before-1"].done == 1
    assert first.kinds["expired"].done == 2
    assert first.kinds["ceased"].done == 1
    for service in due.values():
        assert len(sink_to(mail_sink, service.username)) == 1
    for why, service in not_due.items():
        assert subjects(mail_sink, service.username) == [], why

    week = one(mail_sink, due["before-7"].username)
    body = week.get_payload(decode=True).decode()
    expiry = italian(day + timedelta(days=7))
    assert subject(week) == f"Il servizio {due['before-7'].username} scade il {expiry}: rinnovalo ora"
    assert "tra 7 giorni" in body and "«Rinnova»" in body and ACTION_URL in body
    assert "tra 1 giorno" in one(mail_sink, due["before-1"].username).get_payload(decode=True).decode()
    expired = one(mail_sink, due["expired"].username)
    until = italian(day - timedelta(days=1) + timedelta(days=90))
    assert subject(expired).endswith(f"puoi riattivarlo fino al {until}")
    assert "è cessato" in subject(one(mail_sink, due["ceased"].username))
    assert week["Message-ID"] and week["X-Renewals-Key"] == notice_key(
        due["before-7"].username, day + timedelta(days=7), "before-7"
    )

    # The same day again, and again with a smaller page: nothing new is sent.
    second = await run_day(client, day)
    third = await run_day(client, day, page_size=1)
    for report in (second, third):
        assert sum(count.done for count in report.kinds.values()) == 0
        assert sum(count.already for count in report.kinds.values()) == 6
    for service in due.values():
        assert len(sink_to(mail_sink, service.username)) == 1


async def test_p15_two_overlapping_runs_of_a_day_send_each_notice_once(
    client_store: tuple[Client, Store], mail_sink: MailSink
) -> None:
    client, store = client_store
    day = a_day()
    services = [await new_service(store, expires_on=day + timedelta(days=7)) for _ in range(12)]

    handles = [await start_day(client, day, page_size=3) for _ in range(3)]
    reports = await asyncio.gather(*(handle.result() for handle in handles))

    assert sum(report.kinds["before-7"].done for report in reports) == 12
    assert all(report.kinds["before-7"].due == 12 for report in reports)
    for service in services:
        assert len(sink_to(mail_sink, service.username)) == 1


async def test_p15_an_import_that_moves_the_expiry_gets_the_notices_of_the_new_one(
    client_store: tuple[Client, Store], mail_sink: MailSink
) -> None:
    client, store = client_store
    day = a_day()
    service = await new_service(store, expires_on=day + timedelta(days=7))
    await run_day(client, day)
    moved = service.model_copy(update={"expires_on": day + timedelta(days=30)})
    await store.services.upsert([moved])

    report = await run_day(client, day)

    assert report.kinds["before-30"].done == 1 and report.kinds["before-7"].due == 0
    assert len(sink_to(mail_sink, service.username)) == 2


async def test_p15_a_page_of_the_day_reads_the_services_due_index(store: Store) -> None:
    day = a_day()
    expires_on = day + timedelta(days=30)
    prefix = unique("idx")
    await store.pool.execute(
        """
        INSERT INTO services (username, holder_name, holder_email, purchased_on, expires_on, auto_renew,
            storage_quota_mb, storage_used_mb)
        SELECT $1 || '-' || n, 'Mario Rossi', 'x@example.com', $2::date - 365 - (n % 400), $2::date - 200 + (n % 400),
            n % 3 = 0, 1000, 10
        FROM generate_series(1, 20000) AS n
        """,
        prefix,
        expires_on,
    )
    await store.pool.execute("ANALYZE services")
    plan = "\n".join(row[0] for row in await store.pool.fetch("EXPLAIN " + DUE_PAGE, expires_on, False, "", False, 500))
    assert "services_due" in plan and "Seq Scan on services" not in plan, plan


def sink_to(sink: MailSink, username: str) -> list[Message]:
    return sink.to(f"{username}@example.com")


def italian(value: date) -> str:
    return value.strftime("%d/%m/%Y")


@pytest.fixture
def client_store(worker: Worker, store: Store) -> tuple[Client, Store]:
    return worker.client, store


def test_year_policy_defaults_match_the_settings() -> None:
    from settings import Settings

    assert Settings().year() == YearPolicy()


async def test_p15_the_daily_schedule_runs_in_the_rome_calendar_and_catches_up(worker: Worker) -> None:
    from temporalio.client import ScheduleActionStartWorkflow, ScheduleOverlapPolicy

    from renewals import DAILY_SCHEDULE_ID
    from settings import Settings
    from worker import DAILY_CATCHUP, ensure_daily_schedule

    handle = worker.client.get_schedule_handle(DAILY_SCHEDULE_ID)
    with contextlib.suppress(RPCError):
        await handle.delete()  # one a worker.py of another test made
    await ensure_daily_schedule(worker.client, TASK_QUEUE, Settings(RENEWALS_DAILY_AT="05:30"), run_today=False)
    try:
        await handle.pause(note="ops")
        # A worker started later with other settings brings the Schedule to them, still paused.
        later = Settings(RENEWALS_DAILY_AT="07:15", RENEWALS_EXPIRY_NOTICES="14d,1d")
        await ensure_daily_schedule(worker.client, TASK_QUEUE, later, run_today=False)
        described = await handle.describe()
    finally:
        await handle.delete()

    spec, policy, action = described.schedule.spec, described.schedule.policy, described.schedule.action
    assert spec.time_zone_name == "Europe/Rome"
    assert [(c.hour[0].start, c.minute[0].start) for c in spec.calendars] == [(7, 15)]
    assert policy.catchup_window == DAILY_CATCHUP and policy.overlap == ScheduleOverlapPolicy.BUFFER_ALL
    assert isinstance(action, ScheduleActionStartWorkflow) and action.workflow == "ServiceYearDay"
    assert described.schedule.state.paused
    assert described.info.num_actions == 0  # nothing ran: the test's own services are not touched
