"""An invoice's delivery through SdI (P18): what its workflow is started and told with, the states
ops see, and the pure decisions about time (what is overdue, when the alarms ring). The models
travel in histories: add optional fields only (docs/evolving-models.md).

States (the search attribute `SdiState`):
- `sending`: the file is being handed to SdI (retried with backoff while SdI is down, EI02);
- `in_doubt`: an attempt may have reached SdI without its answer being stored (a killed worker,
  a timeout): the file is not sent again until SdI's notification settles it or `in_doubt_wait`
  passes;
- `sent`: SdI took the file (its `IdentificativoSdI`); the outcome is awaited;
- `overdue`: no outcome within the time SdI allows (`outcome_within`), still awaited;
- `delivered` (RC), `not_delivered` (MC: the invoice is issued, in the holder's reserved area);
- `rejected` (NS: not issued), `rejected_urgent` (day 3 of the resend window without a resend),
  `rejected_ops` (the window passed: ops decide), `closed` (ops closed it).
The alarm of the 12 days (an invoice not accepted by SdI within 12 days of the payment) is a flag
beside the state, `SdiAlarm`, because it can ring in any state before acceptance.
"""

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from renewals.types import Model

DeliveryState = Literal[
    "sending",
    "in_doubt",
    "sent",
    "overdue",
    "delivered",
    "not_delivered",
    "rejected",
    "rejected_urgent",
    "rejected_ops",
    "closed",
]
NoticeKind = Literal["RC", "MC", "NS", "DT", "NE", "AT"]
FINAL_STATES = frozenset({"delivered", "not_delivered", "closed"})
REJECTED_STATES = frozenset({"rejected", "rejected_urgent", "rejected_ops"})
# What each outcome means, in the words ops read.
OUTCOME_WORDS = {
    "RC": "delivered to the holder (RC)",
    "MC": "not delivered: issued, in the holder's reserved area (MC)",
    "NS": "rejected by SdI (NS): not issued",
}


class SdiPolicy(Model):
    """The waits of P18; from the environment (SDI_*), carried in the delivery's input."""

    # An attempt whose answer was lost: how long to wait for SdI's notification before sending
    # the file again under the same name.
    in_doubt_wait: timedelta = timedelta(hours=1)
    # SdI sends its outcome (RC, MC or NS) within 5 days of taking a file.
    outcome_within: timedelta = timedelta(days=5)
    # A rejected invoice may be corrected and resent with its number and date within 5 days.
    resend_within: timedelta = timedelta(days=5)
    # Day 3 of those 5 without a resend: the louder alert.
    urgent_after: timedelta = timedelta(days=3)
    # An invoice not accepted by SdI within 12 days of the payment: the alarm.
    alarm_after: timedelta = timedelta(days=12)


class DeliveryInput(Model):
    number: str
    order_number: str
    username: str
    to_name: str
    to_email: str
    # When the payment that completed the order was registered: the 12 days count from it.
    paid_at: datetime
    policy: SdiPolicy = Field(default_factory=SdiPolicy)


class Notice(Model):
    """A notification SdI sent about this invoice, stored and verified by the ingress first."""

    kind: NoticeKind
    sdi_id: str
    file_name: str
    message_id: str
    delivered_at: datetime | None = None
    errors: list[str] = []
    description: str | None = None


class Resend(Model):
    """Ops: send the corrected invoice again with the same number and date (after fixing the data).
    `late`: past the 5 days, ops take that decision knowingly."""

    late: bool = False
    reason: str = "corrected and resent by ops"


class CloseDelivery(Model):
    reason: str


class Transmit(Model):
    number: str
    # The in-doubt wait passed with no word from SdI: send again under the same file name.
    force: bool = False


class Transmitted(Model):
    file_name: str
    sdi_id: str
    received_at: datetime | None = None


class RecordOutcome(Model):
    number: str
    kind: NoticeKind
    delivered_at: datetime | None = None
    note: str | None = None


class Reissue(Model):
    number: str


class Reissued(Model):
    file_name: str


class DeliveryView(Model):
    number: str
    order_number: str
    state: DeliveryState
    alarm: bool = False
    file_name: str | None = None
    sdi_id: str | None = None
    attempts: int = 0
    notices: list[Notice] = []
    rejected_at: datetime | None = None
    last_event: str = ""


def alarm_at(input: DeliveryInput) -> datetime:
    return input.paid_at + input.policy.alarm_after


def rejected_state(rejected_at: datetime, now: datetime, policy: SdiPolicy) -> DeliveryState:
    """How loud a rejection is by now: the resend window's day 3, then ops decide."""
    if now >= rejected_at + policy.resend_within:
        return "rejected_ops"
    if now >= rejected_at + policy.urgent_after:
        return "rejected_urgent"
    return "rejected"


def details(view: DeliveryView, next_wake: datetime | None = None, what: str = "") -> str:
    """The current details ops read in the Temporal UI, in markdown."""
    lines = [f"**Invoice:** {view.number} (order {view.order_number})", f"**SdI state:** {view.state}"]
    if view.alarm:
        lines.append("**ALARM:** not accepted by SdI within 12 days of the payment (P18)")
    if view.file_name:
        lines.append(f"**File:** {view.file_name}" + (f", IdentificativoSdI {view.sdi_id}" if view.sdi_id else ""))
    rejected = [notice for notice in view.notices if notice.kind == "NS"]
    if rejected:
        lines.append("**Rejected:** " + "; ".join(rejected[-1].errors))
    if view.last_event:
        lines.append(f"**Last event:** {view.last_event}")
    if next_wake is not None:
        lines.append(f"**Next:** {what} at {next_wake:%Y-%m-%d %H:%M} UTC")
    return "\n\n".join(lines)


class Transmission(Model):
    """One file handed to SdI: the first send, or a corrected resend (a new file name)."""

    file_name: str
    state: Literal["to_send", "sending", "accepted"]
    sdi_id: str | None = None
    received_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None


class Receipt(Model):
    """A notification SdI sent, as it came: `file` is the file SdI signed, base64-encoded."""

    kind: NoticeKind
    sdi_id: str
    file_name: str
    notification_name: str
    message_id: str
    received_at: datetime
    file: str
    detail: dict[str, Any]


class ReceiptsView(Model):
    """`GET /panel/invoices/{number}/receipts`, `starter.py invoice NUMBER`: the invoice's SdI record."""

    number: str
    order_number: str
    state: str
    delivered_at: datetime | None = None
    note: str | None = None
    transmissions: list[Transmission]
    receipts: list[Receipt]
