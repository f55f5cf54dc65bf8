"""The storage alert and its indicative estimate (R4, P7)."""

import math
from datetime import date
from typing import Literal

from renewals.records import ServiceRecord
from renewals.views import StorageAlert

ALERT_ABOVE_PERCENT = 70
RED_ABOVE_PERCENT = 90


def storage_alert(
    service: ServiceRecord, today: date, renewed_until: date, pack_mb: int, packs: int = 0
) -> StorageAlert | None:
    """None up to 70 % use; else yellow or red with the extra space needed until `renewed_until`.

    The quota is the service's own plus the extra storage packs already bought (`packs` × `pack_mb`):
    after buying the suggested packs, the next cart no longer suggests them again.

    P7: daily rate = used / days since purchase; projected = used + rate × days until the expiry
    the renewal would set; extra = projected − quota, in whole packs. Red above 90 % or when the
    quota runs out before the current expiry.
    """
    quota, used = service.storage_quota_mb + packs * pack_mb, service.storage_used_mb
    usage = 100 * used / quota
    if usage <= ALERT_ABOVE_PERCENT:
        return None
    rate = used / max((today - service.purchased_on).days, 1)

    def projected(until: date) -> float:
        return used + rate * max((until - today).days, 0)

    extra_mb = max(math.ceil(projected(renewed_until) - quota), 0)
    runs_out_before_expiry = projected(service.expires_on) > quota
    level: Literal["yellow", "red"] = "red" if usage > RED_ABOVE_PERCENT or runs_out_before_expiry else "yellow"
    return StorageAlert(
        level=level,
        usage_percent=round(usage, 1),
        estimated_extra_mb=extra_mb,
        suggested_packs=math.ceil(extra_mb / pack_mb),
    )
