"""Every email: Italian templates rendered and sent over SMTP, each logged under its key first so
a retried activity never sends the same logical email twice, with a stable Message-ID."""

import asyncio
import functools
import hashlib
import time
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from string import Template

import aiosmtplib
import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.store import Store
from db.invoices import StoredInvoice, invoice_of_order
from renewals import errors
from renewals.calls import EmailSent, SendEmail
from renewals.courtesy_copy import courtesy_file_name, courtesy_pdf
from renewals.dates import ROME, last_day_to_pay
from renewals.links import signed_link
from renewals.mailbox import one_line, recipient, sendable
from renewals.payments import instructions
from renewals.pricing import euro

TEMPLATES = Path(__file__).resolve().parent / "templates"
MESSAGE_ID_DOMAIN = "renewals.localhost"
INVOICE_NOTE = (
    "\nIn allegato la copia di cortesia della fattura elettronica {number} (PDF) e il suo file XML "
    "({file_name}); l'originale ti è recapitato dal Sistema di Interscambio.\n"
)
# The emails that carry the order's invoice: the confirmation (P17) and SdI's MC (P18).
WITH_INVOICE = frozenset({"renewal_confirmed", "invoice_not_delivered"})


def italian_date(value: date | datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone(ROME).date()
    return value.strftime("%d/%m/%Y")


def _days(days: int | None) -> str:
    if days is None:
        return ""
    return "1 giorno" if days == 1 else f"{days} giorni"


def message_id(key: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{MESSAGE_ID_DOMAIN}>"


@functools.cache
def _template(name: str) -> tuple[Template, Template]:
    """(subject, body) of a template file, read once: its first line is the subject."""
    subject, _, body = (TEMPLATES / f"{name}.txt").read_text().partition("\n")
    return Template(subject), Template(body)


def render(request: SendEmail) -> tuple[str, str]:
    """(subject, body) of the request's template; the first line of a template is its subject."""
    how = request.instructions or instructions(request.order_number or "", request.total_cents or 0)
    refund = request.refund_cents or 0
    values = {
        "to_name": request.to_name,
        "username": request.username,
        "order_number": request.order_number or "",
        "total": euro(request.total_cents),
        "paid": euro(request.paid_cents),
        "balance": euro(request.balance_cents),
        "due_by": italian_date(last_day_to_pay(request.due_by) if request.due_by else None),
        "new_expires_on": italian_date(request.new_expires_on),
        "reason": request.reason or "",
        "refund_note": f"Hai pagato {euro(refund)} in più: ti saranno rimborsati." if refund else "",
        "bank_beneficiary": how.bank_transfer.beneficiary,
        "iban": how.bank_transfer.iban,
        "postal_account": how.postal_slip.account,
        "postal_beneficiary": how.postal_slip.beneficiary,
        "payment_reason": how.bank_transfer.reason,
        "expires_on": italian_date(request.expires_on),
        "days_left": _days(request.days_left),
        "reactivate_until": italian_date(request.reactivate_until),
        "charge_on": italian_date(request.charge_on),
        "action_url": request.action_url or "",
        "invoice_number": request.invoice_number or "",
    }
    subject, body = _template(request.template)
    return sendable(subject.substitute(values)), sendable(body.substitute(values))


def compose(request: SendEmail, sender: str, subject: str, mid: str) -> EmailMessage:
    """The message's headers (the body is set by the caller); ValueError for an address no email
    can be built for."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient(request.to_name, request.to_email)
    message["Subject"] = one_line(subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = mid
    message["X-Renewals-Key"] = request.key
    return message


def permanent_refusal(error: aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPResponseException) -> str | None:
    """Why the server refused for good (5xx), or None for a refusal that may heal (4xx)."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        if codes and all(500 <= code < 600 for code in codes):
            first = error.recipients[0]
            return f"the recipient was refused: {first.code} {first.message}"
        return None
    return f"{error.code} {error.message}" if 500 <= error.code < 600 else None


class SmtpConnections:
    """SMTP connections kept open between emails: a new connection (TCP, greeting, EHLO, QUIT)
    costs the worker and the server about as much again as the email itself. Each connection
    carries one email at a time; one that failed in any way is closed, never reused; one idle
    longer than IDLE_REUSE is closed rather than trusted (servers drop idle clients)."""

    IDLE_REUSE = 10.0  # seconds
    KEEP = 8

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[tuple[float, asyncio.AbstractEventLoop, aiosmtplib.SMTP]] = []

    async def send(self, message: EmailMessage) -> None:
        smtp = await self._take()
        try:
            await smtp.send_message(message)
        except BaseException:
            smtp.close()
            raise
        if len(self._idle) < self.KEEP:
            self._idle.append((time.monotonic(), asyncio.get_running_loop(), smtp))
        else:
            await self._quit(smtp)

    async def _take(self) -> aiosmtplib.SMTP:
        loop = asyncio.get_running_loop()
        while self._idle:
            since, owner, smtp = self._idle.pop()
            if owner is not loop:  # another event loop's (tests run several): not ours to use or close
                continue
            if smtp.is_connected and time.monotonic() - since < self.IDLE_REUSE:
                return smtp
            await self._quit(smtp)
        smtp = aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=20)
        await smtp.connect()
        return smtp

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for _, _, smtp in idle:
            await self._quit(smtp)

    @staticmethod
    async def _quit(smtp: aiosmtplib.SMTP) -> None:
        try:
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


class Mailer:
    """SMTP delivery with the email log in PostgreSQL; built once in worker.py."""

    def __init__(self, store: Store, host: str, port: int, sender: str, *, link_secret: str | None = None) -> None:
        self.store = store
        # P20: signs an email's link to the customer's own page (renewals/links.py); None: unsigned.
        self.link_secret = link_secret
        self.host = host
        self.port = port
        self.sender = sender
        self.connections = SmtpConnections(host, port)

    @activity.defn
    async def send_email(self, request: SendEmail) -> EmailSent:
        if request.link_until is not None and request.action_url and self.link_secret:
            link = signed_link(self.link_secret, request.action_url, request.username, request.link_until)
            request = request.model_copy(update={"action_url": link})
        subject, body = render(request)
        mid = message_id(request.key)
        status = await self.store.mail_log.claim(
            request.key,
            request.template,
            request.to_email,
            subject,
            mid,
            request.username,
            request.order_number,
        )
        if status == "sent":
            return EmailSent(message_id=mid, already_sent=True)
        if status == "refused":
            raise ApplicationError(
                f"the email {request.key} was refused for good before", type=errors.MAIL_REJECTED, non_retryable=True
            )
        try:
            message = compose(request, self.sender, subject, mid)
        except ValueError as error:
            # An address no email can be built for will not heal by retrying: a recorded refusal.
            raise await self._rejected(request, str(error)) from None
        invoice = await self._invoice(request)
        if invoice is not None and request.template == "renewal_confirmed":
            body += INVOICE_NOTE.format(number=invoice.number, file_name=invoice.file_name)
        message.set_content(body)
        if invoice is not None and invoice.xml is not None and invoice.file_name is not None:
            xml = invoice.xml.encode()
            pdf = courtesy_pdf(xml)
            message.add_attachment(
                pdf, maintype="application", subtype="pdf", filename=courtesy_file_name(invoice.file_name)
            )
            message.add_attachment(xml, maintype="application", subtype="xml", filename=invoice.file_name)
        try:
            # The whole exchange under the heartbeat timeout (30 s), so an attempt never outlives
            # the retry that replaces it (aiosmtplib's own timeout is per command).
            async with asyncio.timeout(20):
                await self.connections.send(message)
        except (aiosmtplib.SMTPRecipientsRefused, aiosmtplib.SMTPResponseException) as error:
            why = permanent_refusal(error)
            if why is None:
                raise
            raise await self._rejected(request, why) from error
        await self._record_sent(request.key)
        return EmailSent(message_id=mid, already_sent=False)

    async def _invoice(self, request: SendEmail) -> StoredInvoice | None:
        """The confirmation (P17) and SdI's MC (P18) carry the order's invoice: its courtesy copy as
        a PDF and its XML (SdI delivers the original); none when it was not issued."""
        if request.template not in WITH_INVOICE or not request.order_number:
            return None
        invoice = await invoice_of_order(self.store.pool, request.order_number)
        return invoice if invoice is not None and invoice.number is not None else None

    async def _rejected(self, request: SendEmail, why: str) -> ApplicationError:
        """A permanent refusal (5xx, an address no email can be built for) will not heal by
        retrying: recorded in the email log, and ops see it (the renewal's emails and details)."""
        await self.store.mail_log.mark_refused(request.key, why)
        return ApplicationError(
            f"the email {request.key} cannot be delivered: {why}", type=errors.MAIL_REJECTED, non_retryable=True
        )

    async def _record_sent(self, key: str) -> None:
        """The email is out: failing now would send it again on retry, so wait for PostgreSQL
        instead (heartbeating, so a dead worker is still noticed)."""
        delay = 0.5
        while True:
            try:
                await self.store.mail_log.mark_sent(key, datetime.now(UTC))
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                activity.heartbeat(f"email {key} sent; recording it: {error}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
