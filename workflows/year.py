"""A day of the service's year (P15, P16), started each morning by a Schedule in the Rome calendar
(the Web UI's Schedules page): the expiry notices due that day and the automatic orders, page by
page, each kind in parallel. Idempotent per service, kind and expiry (activities/year.py): a
re-run of the day sends nothing twice and starts no second order."""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.year import YearDesk
    from renewals import DAILY_WORKFLOW_TYPE
    from renewals.calls import DuePage
    from renewals.dates import rome_today
    from renewals.messages import DayCount, DayReport, DayRun
    from renewals.year import Due, due_on
    from workflows.effects import RETRY

# Set by the Schedule on the workflows it starts: the time it meant, also for a catch-up run.
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
PAGE_TIMEOUT = timedelta(minutes=10)


@workflow.defn(name=DAILY_WORKFLOW_TYPE)
class ServiceYearDay:
    def __init__(self) -> None:
        self.report: DayReport | None = None

    @workflow.run
    async def run(self, request: DayRun) -> DayReport:
        scheduled = workflow.info().typed_search_attributes.get(SCHEDULED_START)
        day = request.day or rome_today(scheduled or workflow.now())
        self.report = DayReport(day=day)
        await asyncio.gather(*(self._pages(request, due) for due in due_on(day, request.year)))
        return self.report

    async def _pages(self, request: DayRun, due: Due) -> None:
        assert self.report is not None
        method = YearDesk.start_auto_renewals if not due.is_notice else YearDesk.send_notices
        after = ""
        while True:
            page = DuePage(
                day=self.report.day,
                kind=due.kind,
                expires_on=due.expires_on,
                auto_renew=due.auto_renew,
                after=after,
                limit=request.page_size,
                action_url=request.action_url,
                reactivation_days=request.year.reactivation_days,
            )
            done = await workflow.execute_activity_method(
                method,
                page,
                start_to_close_timeout=PAGE_TIMEOUT,
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=RETRY,
                summary=f"{due.kind}: services expiring {due.expires_on}"
                + (" with auto-renew" if due.auto_renew else "")
                + (f" after {after}" if after else ""),
            )
            kinds = self.report.kinds
            kinds[due.kind] = kinds.get(due.kind, DayCount()).plus(done.count)
            self._show()
            if done.last is None or done.count.due + done.count.skipped < request.page_size:
                return
            after = done.last

    def _show(self) -> None:
        assert self.report is not None
        lines = [f"**Day:** {self.report.day}", "", "| kind | due | done | skipped | already | refused | busy |"]
        lines.append("|---|--:|--:|--:|--:|--:|--:|")
        for kind, count in sorted(self.report.kinds.items()):
            lines.append(
                f"| {kind} | {count.due} | {count.done} | {count.skipped} | {count.already} "
                f"| {count.refused} | {count.busy} |"
            )
        workflow.set_current_details("\n".join(lines))

    @workflow.query
    def progress(self) -> DayReport | None:
        return self.report
