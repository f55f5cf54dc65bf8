"""The service's year around the renewal (P15, P16): which notices and automatic orders fall on a
Rome calendar day, and when a service's next one falls. Pure: the daily run, the service view and
the renewal workflow all ask here.

A notice is named by the service, the expiry it is about and its kind, never by the day it was
sent: the mail log sends each name once, so a re-run of a day (or two overlapping runs, or the
automatic order's lapse email and the next day's notice) never sends it twice, and an import that
moves the expiry gives the new expiry notices of its own.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from renewals.types import Model

# before-<n>: n days before expiry (auto-renew off); expired: the day after expiry; ceased: the
# day after the last reactivation day (R2); auto_renew: the automatic order (auto-renew on).
DueKind = str
EXPIRED: DueKind = "expired"
CEASED: DueKind = "ceased"
AUTO_RENEW: DueKind = "auto_renew"
NoticeTemplate = Literal["expiry_notice", "service_expired", "service_ceased"]


class YearPolicy(Model):
    """`RENEWALS_EXPIRY_NOTICES`, `RENEWALS_AUTO_RENEW_LEAD` and the R2 window, in calendar days."""

    notice_days: list[int] = [30, 7, 1]
    auto_renew_lead_days: int = 30
    reactivation_days: int = 90


@dataclass(frozen=True)
class Due:
    """One kind of work on a day: the services expiring on `expires_on` with `auto_renew`."""

    kind: DueKind
    expires_on: date
    auto_renew: bool

    @property
    def is_notice(self) -> bool:
        return self.kind != AUTO_RENEW

    @property
    def template(self) -> NoticeTemplate:
        if self.kind == EXPIRED:
            return "service_expired"
        if self.kind == CEASED:
            return "service_ceased"
        return "expiry_notice"

    @property
    def days_left(self) -> int | None:
        return int(self.kind.removeprefix("before-")) if self.kind.startswith("before-") else None


def before(days: int) -> DueKind:
    return f"before-{days}"


def due_on(day: date, policy: YearPolicy) -> list[Due]:
    """Everything due on `day` (Rome): notices before expiry for auto-renew off, the automatic
    order for auto-renew on, the expired and ceased notices for both."""
    found = [Due(before(days), day + timedelta(days=days), False) for days in policy.notice_days]
    found.append(Due(AUTO_RENEW, day + timedelta(days=policy.auto_renew_lead_days), True))
    after_expiry = ((EXPIRED, 1), (CEASED, policy.reactivation_days + 1))
    found += [Due(kind, day - timedelta(days=days), auto) for kind, days in after_expiry for auto in (False, True)]
    return found


def notice_key(username: str, expires_on: date, kind: DueKind) -> str:
    """The mail log's name of a notice: one per service, expiry and kind."""
    return f"notice:{username}:{expires_on.isoformat()}:{kind}"


def last_reactivation_day(expires_on: date, policy: YearPolicy) -> date:
    return expires_on + timedelta(days=policy.reactivation_days)


class NextDates(Model):
    """What the service view shows of the year ahead: the next notice and the next automatic order."""

    next_notice_on: date | None
    next_notice_kind: DueKind | None
    next_auto_order_on: date | None


def next_dates(expires_on: date, auto_renew: bool, today: date, policy: YearPolicy) -> NextDates:
    """The next days (today or later) the daily run has something for this service."""
    notices: list[tuple[date, DueKind]] = [
        (expires_on + timedelta(days=1), EXPIRED),
        (expires_on + timedelta(days=policy.reactivation_days + 1), CEASED),
    ]
    if not auto_renew:
        notices += [(expires_on - timedelta(days=days), before(days)) for days in policy.notice_days]
    ahead = sorted(item for item in notices if item[0] >= today)
    auto_order = expires_on - timedelta(days=policy.auto_renew_lead_days)
    return NextDates(
        next_notice_on=ahead[0][0] if ahead else None,
        next_notice_kind=ahead[0][1] if ahead else None,
        next_auto_order_on=auto_order if auto_renew and auto_order >= today else None,
    )
