"""Which button the panel shows and whether a renew or reactivate request is allowed (R1, R2, P9)."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from renewals.dates import start_of_day
from renewals.messages import Policy
from renewals.records import ServiceRecord
from renewals.types import Mode

ServiceStatus = Literal["active", "expired", "ceased"]


@dataclass(frozen=True)
class Eligibility:
    status: ServiceStatus
    action: Mode | None
    reason: str | None
    """Why no button is offered, in words the panel can show."""


def last_reactivation_day(expires_on: date, window: timedelta, *, legacy: bool = False) -> date:
    """R2: Reactivate is offered "in the 90 days following the expiry date", the 1st through the
    `window.days`-th calendar day after `expires_on` (Rome); the service is ceased from the next.

    `legacy` is the boundary renewals started before day 90 counted in were given (ceased on day 90
    itself): they keep it, since it travels in their input (`Policy.reactivation_last_day_included`)."""
    return expires_on + timedelta(days=window.days - 1 if legacy else window.days)


def reactivation_window_end(expires_on: date, window: timedelta, *, legacy: bool = False) -> datetime:
    """The instant the service ceases: Rome midnight at the end of the last reactivation day."""
    return start_of_day(last_reactivation_day(expires_on, window, legacy=legacy) + timedelta(days=1))


def service_status(service: ServiceRecord, today: date, window: timedelta, *, legacy: bool = False) -> ServiceStatus:
    """Expired when today (Rome) is after expires_on (P9); ceased after the last reactivation day (R2)."""
    if today <= service.expires_on:
        return "active"
    if today <= last_reactivation_day(service.expires_on, window, legacy=legacy):
        return "expired"
    return "ceased"


def eligibility_under(policy: Policy, service: ServiceRecord, today: date) -> Eligibility:
    """Eligibility with the R2 boundary the policy carries: renewals started under the legacy one keep
    it (docs/evolving-models.md)."""
    return eligibility(
        service,
        today,
        policy.reactivation_window,
        legacy=not policy.reactivation_last_day_included,
        reactivate_with_auto_renew=policy.reactivate_with_auto_renew,
    )


def eligibility(
    service: ServiceRecord,
    today: date,
    window: timedelta,
    *,
    legacy: bool = False,
    reactivate_with_auto_renew: bool = True,
) -> Eligibility:
    """`reactivate_with_auto_renew` False is the rule renewals started before P16's Reactivate were given
    (an expired service with auto-renew on offered nothing); their input keeps it."""
    status = service_status(service, today, window, legacy=legacy)
    if status == "ceased":
        last = last_reactivation_day(service.expires_on, window, legacy=legacy)
        return Eligibility(
            status,
            None,
            f"the service expired on {service.expires_on.isoformat()} and could be reactivated through "
            f"{last.isoformat()}; it is ceased: it can no longer be renewed or reactivated (R2)",
        )
    if service.auto_renew and (status == "active" or not reactivate_with_auto_renew):
        # R1 hides Renew only: once expired (an automatic order left unpaid, P16), Reactivate is
        # offered for the window as for any expired service (R2).
        return Eligibility(
            status,
            None,
            "auto-renew is on: the service renews by itself at expiry, so Renew is not offered (R1)",
        )
    return Eligibility(status, "renew" if status == "active" else "reactivate", None)


def refusal(service: ServiceRecord, mode: Mode, today: date, policy: Policy) -> str | None:
    """None when `mode` is allowed today under the renewal's policy, else the reason it is refused."""
    found = eligibility_under(policy, service, today)
    if found.action is None:
        return found.reason
    if found.action != mode:
        if mode == "renew":
            return f"the service expired on {service.expires_on.isoformat()}: it can be reactivated, not renewed (R2)"
        return f"the service is active until {service.expires_on.isoformat()}: it can be renewed, not reactivated (R2)"
    return None


def auto_renew_refusal(service: ServiceRecord, today: date, policy: Policy) -> str | None:
    """None when the daily run may order the automatic renewal (P16) today, else why not: only an
    active service with auto-renew on renews by itself."""
    if not service.auto_renew:
        return f"auto-renew is off for {service.username}: there is no automatic renewal (P16)"
    found = eligibility_under(policy, service, today)
    if found.status != "active":
        return (
            f"the service is {found.status} (it expired on {service.expires_on.isoformat()}): an automatic "
            "renewal is made only for an active service (P16)"
        )
    return None
