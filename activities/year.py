"""The daily run's activities (P15, P16): a page of expiry notices sent over the mailer's kept SMTP
connections, and a page of automatic renewals started.

A notice is claimed in the mail log under its name (service, expiry, kind) before it is sent, and
marked sent right after, so a re-run of the day, or two runs at once, never sends it twice; a retry
of the same activity takes back only its own claims left unsent. An automatic renewal is the
service's renewal workflow (`renewal-<username>`): one can be running at a time, and the order
table takes one automatic order per expiry.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiosmtplib
from temporalio import activity

from activities.mail import Mailer, compose, message_id, permanent_refusal, render
from activities.store import Store
from db.year import DueService, due_page
from renewals.calls import DuePage, PageDone, SendEmail
from renewals.messages import DayCount
from renewals.year import Due, notice_key

# Starts the renewal workflow of a service in mode auto_renew: False when one is already running.
StartAutoRenewal = Callable[[str], Awaitable[bool]]


class YearDesk:
    """Built once by the worker: the store, the mailer's SMTP settings, and how to start a renewal."""

    def __init__(self, store: Store, mailer: Mailer, start_auto_renewal: StartAutoRenewal) -> None:
        self.store = store
        self.mailer = mailer
        self.start_auto_renewal = start_auto_renewal

    @activity.defn
    async def send_notices(self, page: DuePage) -> PageDone:
        due = Due(page.kind, page.expires_on, page.auto_renew)
        found = await due_page(self.store.pool, due, page.after, page.limit)
        requests = [self._request(page, due, service) for service in found.due]
        rendered = {request.key: (request, *render(request)) for request in requests}
        info = activity.info()
        mine = await self.store.mail_log.claim_notices(
            [
                (key, request.template, request.to_email, subject, message_id(key), request.username)
                for key, (request, subject, _body) in rendered.items()
            ],
            claimed_by=f"{info.workflow_id}/{info.activity_id}",
        )
        count = DayCount(due=len(found.due), skipped=found.skipped, already=len(rendered) - len(mine))
        to_send = [rendered[key] for key in rendered if key in mine]
        if to_send:
            sent, refused = await self._send(to_send)
            count = count.model_copy(update={"done": sent, "refused": refused})
        return PageDone(count=count, last=found.last)

    @activity.defn
    async def start_auto_renewals(self, page: DuePage) -> PageDone:
        due = Due(page.kind, page.expires_on, page.auto_renew)
        found = await due_page(self.store.pool, due, page.after, page.limit)
        started = 0
        for number, service in enumerate(found.due):
            started += await self.start_auto_renewal(service.username)
            activity.heartbeat(number)
        count = DayCount(due=len(found.due), skipped=found.skipped, done=started, busy=len(found.due) - started)
        return PageDone(count=count, last=found.last)

    def _request(self, page: DuePage, due: Due, service: DueService) -> SendEmail:
        return SendEmail(
            key=notice_key(service.username, service.expires_on, due.kind),
            template=due.template,
            username=service.username,
            to_name=service.holder_name,
            to_email=service.holder_email,
            expires_on=service.expires_on,
            days_left=due.days_left,
            reactivate_until=service.expires_on + timedelta(days=page.reactivation_days),
            action_url=page.action_url or None,
        )

    async def _send(self, emails: list[tuple[SendEmail, str, str]]) -> tuple[int, int]:
        """Over the mailer's kept SMTP connections; each marked sent (or refused) as soon as the
        server took it."""
        sent = refused = 0
        mail_log = self.store.mail_log
        for number, (request, subject, body) in enumerate(emails):
            activity.heartbeat(number)
            try:
                message = compose(request, self.mailer.sender, subject, message_id(request.key))
            except ValueError as error:
                await mail_log.mark_refused(request.key, str(error))
                refused += 1
                continue
            message.set_content(body)
            try:
                async with asyncio.timeout(20):
                    await self.mailer.connections.send(message)
            except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as error:
                why = permanent_refusal(error)
                if why is None:
                    raise
                await mail_log.mark_refused(request.key, why)
                refused += 1
                continue
            await mail_log.mark_sent(request.key, datetime.now(UTC))
            sent += 1
        return sent, refused
