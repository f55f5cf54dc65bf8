"""The renewal's current details for the Temporal UI, in plain words (markdown): what ops read
first when they open a renewal."""

from collections.abc import Sequence
from datetime import datetime

from renewals.dates import rome_time
from renewals.order import Order
from renewals.pricing import euro
from renewals.types import Stage


def current_details(
    stage: Stage,
    reason: str | None,
    order: Order | None,
    last_event: str,
    next_wake: datetime | None = None,
    what: str = "",
    charges: Sequence[str] = (),
) -> str:
    lines = [f"**Stage:** {stage.value}"]
    if reason:
        lines.append(f"**Reason:** {reason}")
    if order is not None:
        lines.append(
            f"**Order:** {order.number}, {order.years} year(s) by {order.method}, "
            f"total {euro(order.quote.total_cents)}, paid {euro(order.paid_cents)}"
        )
        lines.append(f"**Due by:** {rome_time(order.due_by)}")
        if order.new_expires_on:
            lines.append(f"**New expiry:** {order.new_expires_on}")
        if order.invoice:
            lines.append(f"**Invoice:** {order.invoice}")
    if charges:  # P20: each charge attempt and what the back office said of it
        lines.append("**Charges:** " + "; ".join(charges))
    if next_wake is not None:
        lines.append(f"**Next:** {what} at {rome_time(next_wake)}")
    lines.append(f"**Last event:** {last_event}")
    return "\n\n".join(lines)
