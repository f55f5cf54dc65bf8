"""P15, P16, R2: three services walked through a whole year, one Rome calendar day at a time, on
the real dev server (per-workflow time skipping), PostgreSQL and SMTP sink.

Each day runs ServiceYearDay for that day, as the Schedule does each morning. The year crosses the
spring DST change in Rome (30 March 2031), which falls on the 7-day notice. The services expire on
a day no other test uses, so only they are due on these days.

- `off`  auto-renew off: the 30-, 7- and 1-day notices, expired the day after, ceased on day 91.
- `paid` auto-renew on, bank transfer, 2 years: the automatic order on day -30, paid, extended by 2
  years; nothing more that year.
- `lapse` auto-renew on, card: the automatic order and its charge request on day -30, unpaid, the
  order lapses at the end of the expiry day with the expired email (once, though the day-after
  notice is due too), Reactivate through day 90, ceased on day 91.
"""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.store import Store
from client.renewals import Renewals
from renewals import TASK_QUEUE
from renewals.dates import add_years, start_of_day
from renewals.eligibility import eligibility
from renewals.messages import DayRun
from renewals.types import Stage
from tests.conftest import POLICY, MailSink, handle_of, new_service, pay, view, wait_stage
from workflows.year import ServiceYearDay

EXPIRES = date(2031, 4, 6)
DST_CHANGE = date(2031, 3, 30)
FIRST_DAY, LAST_DAY = date(2030, 7, 11), date(2031, 7, 10)


async def run_day(client: Client, day: date) -> Any:
    return await client.execute_workflow(ServiceYearDay.run, DayRun(day=day), id=f"walk-{day}", task_queue=TASK_QUEUE)


async def keys(store: Store, usernames: list[str]) -> set[tuple[str, str]]:
    rows = await store.pool.fetch("SELECT username, key FROM email_log WHERE username = ANY($1)", usernames)
    return {(row["username"], row["key"]) for row in rows}


@pytest.mark.timeout(240)
async def test_p15_p16_r2_three_services_walked_through_a_whole_year(
    env: WorkflowEnvironment, worker: Worker, store: Store, ingress: Renewals, mail_sink: MailSink
) -> None:
    client = env.client
    purchased = {"purchased_on": EXPIRES - timedelta(days=365), "expires_on": EXPIRES}
    off = await new_service(store, **purchased)
    paid = await new_service(store, auto_renew=True, auto_renew_years=2, auto_renew_method="bank_transfer", **purchased)
    lapse = await new_service(store, auto_renew=True, auto_renew_method="card", **purchased)
    names = {"off": off.username, "paid": paid.username, "lapse": lapse.username}
    usernames = list(names.values())

    # What each day sent: (day, service, the email's key), from the mail log.
    sent: list[tuple[date, str, str]] = []
    seen: set[tuple[str, str]] = set()
    day = FIRST_DAY
    while day <= LAST_DAY:
        if day == EXPIRES + timedelta(days=1):
            # The lapse order's deadline was the end of the expiry day: its renewal gets there first.
            handle = handle_of(client, lapse.username)
            order = (await view(client, lapse.username)).order
            assert order is not None and order.due_by == start_of_day(EXPIRES + timedelta(days=1))
            assert order.due_by == datetime(2031, 4, 6, 22, 0, tzinfo=UTC)  # Rome midnight in summer time
            await env.fast_forward(handle, None)
            result = await handle.result()
            assert result.stage == Stage.ORDER_EXPIRED
        report = await run_day(client, day)
        now = await keys(store, usernames)
        sent += [(day, username, key) for username, key in sorted(now - seen)]
        seen = now

        if day == EXPIRES - timedelta(days=30):
            # P16: the automatic orders, on this day and no other.
            assert report.kinds["auto_renew"].done == 2
            awaiting = await wait_stage(client, paid.username, Stage.AWAITING_PAYMENT)
            await wait_stage(client, lapse.username, Stage.AWAITING_PAYMENT)
            assert awaiting.order is not None and awaiting.order.years == 2
            await pay(ingress, awaiting.order.order_number, awaiting.order.total_cents)
            done = await handle_of(client, paid.username).result()
            assert done.stage == Stage.ACTIVATED and done.new_expires_on == add_years(EXPIRES, 2)
            sent += [(day, u, k) for u, k in sorted(await keys(store, usernames) - seen)]
            seen = await keys(store, usernames)
        else:
            assert report.kinds.get("auto_renew") is None or report.kinds["auto_renew"].done == 0, day

        # R2: the window, as the panel's button reads it on that day.
        if day in (EXPIRES, EXPIRES + timedelta(days=1), EXPIRES + timedelta(days=90), EXPIRES + timedelta(days=91)):
            record = await store.services.get(lapse.username)
            assert record is not None
            action = eligibility(record, day, POLICY.reactivation_window).action
            expected = {0: None, 1: "reactivate", 90: "reactivate", 91: None}[(day - EXPIRES).days]
            assert action == expected, (day, action)
        day += timedelta(days=1)

    def days_of(name: str, part: str) -> list[date]:
        return [day for day, username, key in sent if username == names[name] and part in key]

    # P15: the three notices (the 7-day one on the DST change), the day after, day 91; nothing else.
    notices = [day for day, username, key in sent if username == off.username]
    assert notices == [
        EXPIRES - timedelta(days=30),
        DST_CHANGE,
        EXPIRES - timedelta(days=1),
        EXPIRES + timedelta(days=1),
        EXPIRES + timedelta(days=91),
    ]
    assert [key.rsplit(":", 1)[1] for day, username, key in sent if username == off.username] == [
        "before-30",
        "before-7",
        "before-1",
        "expired",
        "ceased",
    ]
    # P16 paid: the instructions and the confirmation, both on the order's day; no notice of any kind.
    assert {day for day, username, _ in sent if username == paid.username} == {EXPIRES - timedelta(days=30)}
    assert not days_of("paid", "notice:")
    # P16 unpaid: no notice before expiry; the expired email once (the lapse's, which the day-after
    # notice shares its name with), the ceased one on day 91.
    assert days_of("lapse", "notice:") == [EXPIRES + timedelta(days=1), EXPIRES + timedelta(days=91)]
    assert days_of("lapse", ":expired") == [EXPIRES + timedelta(days=1)]
    delivered = [str(m["X-Renewals-Key"]) for m in mail_sink.to(f"{lapse.username}@example.com")]
    assert [key for key in delivered if key.endswith(":expired")] == [f"notice:{lapse.username}:{EXPIRES}:expired"]
    charge = await store.pool.fetchrow("SELECT * FROM charge_requests WHERE username = $1", lapse.username)
    assert charge is not None and charge["method"] == "card"
    still = await store.services.get(lapse.username)
    assert still is not None and still.expires_on == EXPIRES
    renewed = await store.services.get(paid.username)
    assert renewed is not None and renewed.expires_on == add_years(EXPIRES, 2) and renewed.auto_renew_years == 2
