"""What an unpaid order waits for next (P2 reminders, P3 deadline): the payment loop's one decision,
as a pure function of the reminder times, the deadline and the clock."""

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True)
class Step:
    action: Literal["wait", "remind", "lapse"]
    at: datetime
    # The reminder to send (remind) or the one waited for (wait); None when the deadline comes next.
    number: int | None = None

    def summary(self, order_number: str) -> str:
        if self.number is None:
            return f"payment deadline of {order_number} (P3)"
        return f"reminder {self.number} for {order_number}"

    @property
    def what(self) -> str:
        return "deadline" if self.number is None else f"reminder {self.number}"


def next_step(reminders: list[datetime], sent: int, due_by: datetime, now: datetime, *, coalesce: bool) -> Step:
    """`sent` reminders have gone out. Reminders fall before the deadline or not at all. With
    `coalesce`, after an outage one reminder stands for all those overdue, and none is sent once
    the deadline has passed: the order lapses instead."""
    if coalesce:
        while sent + 1 < len(reminders) and reminders[sent + 1] <= now:
            sent += 1
    reminder_due = sent < len(reminders) and reminders[sent] < due_by
    wake_at = reminders[sent] if reminder_due else due_by
    if now < wake_at:
        return Step("wait", wake_at, sent + 1 if reminder_due else None)
    if not reminder_due or (coalesce and now >= due_by):
        return Step("lapse", due_by)
    return Step("remind", wake_at, sent + 1)
