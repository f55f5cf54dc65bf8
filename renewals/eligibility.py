"""Which button the panel shows and whether a renew or reactivate request is allowed (R1, R2, P9)."""

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from renewals.models import Mode, ServiceRecord

ServiceStatus = Literal["active", "expired", "ceased"]


@dataclass(frozen=True)
class Eligibility:
    status: ServiceStatus
    action: Mode | None
    reason: str | None
    """Why no button is offered, in words the panel can show."""


def service_status(service: ServiceRecord, today: date, window: timedelta) -> ServiceStatus:
    """Expired when today (Rome) is after expires_on (P9); ceased once `window` has passed (R2)."""
    if today <= service.expires_on:
        return "active"
    if today - service.expires_on < window:
        return "expired"
    return "ceased"


def eligibility(service: ServiceRecord, today: date, window: timedelta) -> Eligibility:
    status = service_status(service, today, window)
    if status == "ceased":
        return Eligibility(
            status,
            None,
            f"the service expired on {service.expires_on.isoformat()}, "
            f"{window.days} or more days ago, and is ceased: it can no longer be renewed or reactivated (R2)",
        )
    if service.auto_renew:
        return Eligibility(
            status,
            None,
            "auto-renew is on: the service renews by itself at expiry, so Renew is not offered (R1)",
        )
    return Eligibility(status, "renew" if status == "active" else "reactivate", None)


def refusal(service: ServiceRecord, mode: Mode, today: date, window: timedelta) -> str | None:
    """None when `mode` is allowed today, else the reason it is refused."""
    found = eligibility(service, today, window)
    if found.action is None:
        return found.reason
    if found.action != mode:
        if mode == "renew":
            return f"the service expired on {service.expires_on.isoformat()}: it can be reactivated, not renewed (R2)"
        return f"the service is active until {service.expires_on.isoformat()}: it can be renewed, not reactivated (R2)"
    return None
