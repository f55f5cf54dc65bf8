"""P20: a card or PayPal automatic order whose charge is declined. Pure decisions the renewal
workflow reads: which attempt an outcome answers, when the next charge is due, what the customer
is told, what ops see. No I/O, no clock: every time is given.

Every charge request is an *attempt* with an id of its own (`<order number>/<n>`, also the
Idempotency-Key of its `charge_requested` event). A soft decline (insufficient funds, issuer
unavailable) is retried on the schedule `RENEWALS_CHARGE_RETRIES` (default 1d,3d,7d), each offset
counted from the **first** decline, so the dates can be told to the customer at once and do not
drift when an outcome arrives late; a retry falling on or after the order's deadline is not made.
A hard decline (expired, stolen, do not honour, authentication required) is never retried: the
customer is sent straight to the pages, where they can pay by bank transfer or ask for a new
charge once the card is updated at the PSP.
"""

import re
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from renewals.dates import ROME
from renewals.types import Model, PlainText

Decline = Literal["soft", "hard"]
DunningState = Literal["retrying", "exhausted", "hard_decline", "switched_to_transfer"]
Taken = Literal["taken", "duplicate", "not_current", "unknown_attempt", "already_paid"]

# A PSP message is the PSP's words, not ours: a run of digits long enough to be part of a card
# number is never repeated to the customer or kept in the workflow's history.
_DIGITS = re.compile(r"\d[\d -]{4,}\d")


def attempt_id(order_number: str, number: int) -> str:
    return f"{order_number}/{number}"


def masked(text: str) -> str:
    return _DIGITS.sub("…", " ".join(text.split()))[:200]


class ChargeDeclined(Model):
    """A `charge_failed` event as the renewal receives it (after the ingress recorded it)."""

    order_number: str
    attempt: str
    decline: Decline
    code: str = Field(max_length=64)
    message: PlainText
    received_at: datetime


class Attempt(Model):
    id: str
    number: int
    requested_at: datetime
    why: Literal["automatic order", "retry", "asked by the customer"]
    decline: Decline | None = None
    code: str | None = None
    message: str | None = None
    declined_at: datetime | None = None

    def line(self) -> str:
        said = f"declined {self.decline} ({self.code}: {self.message})" if self.decline else "no outcome yet"
        return f"{self.id} ({self.why}, {self.requested_at.astimezone(ROME):%Y-%m-%d %H:%M}): {said}"


class Dunning(Model):
    """The charges of one automatic order and what became of them."""

    attempts: list[Attempt] = Field(default_factory=list)
    first_declined_at: datetime | None = None
    hard: bool = False
    switched_at: datetime | None = None  # the customer chose to pay by bank transfer
    told: list[str] = Field(default_factory=list)  # "first", "last"

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def declined(self) -> bool:
        """Some attempt was declined (the renewal is in dunning until paid, switched or closed)."""
        return self.first_declined_at is not None

    @property
    def retries_made(self) -> int:
        return sum(1 for attempt in self.attempts if attempt.why == "retry")

    def request(self, order_number: str, now: datetime, why: str) -> Attempt:
        attempt = Attempt.model_validate(
            {
                "id": attempt_id(order_number, len(self.attempts) + 1),
                "number": len(self.attempts) + 1,
                "requested_at": now,
                "why": why,
            }
        )
        self.attempts.append(attempt)
        return attempt

    def take(self, outcome: ChargeDeclined) -> Taken:
        """An outcome answers the current attempt once; a repeat or one for an earlier attempt
        changes nothing (its charge was already superseded)."""
        known = {attempt.id: attempt for attempt in self.attempts}
        attempt = known.get(outcome.attempt)
        if attempt is None:
            return "unknown_attempt"
        if attempt.decline is not None:
            return "duplicate"
        if attempt is not self.current:
            return "not_current"
        attempt.decline, attempt.code = outcome.decline, outcome.code
        attempt.message, attempt.declined_at = masked(outcome.message), outcome.received_at
        self.first_declined_at = self.first_declined_at or outcome.received_at
        self.hard = self.hard or outcome.decline == "hard"
        return "taken"

    def next_retry(self, retries: list[timedelta], due_by: datetime) -> datetime | None:
        """When the next automatic retry is due: after a soft decline of the current attempt,
        while the schedule has one left that falls before the deadline."""
        current = self.current
        if (
            self.hard
            or self.switched_at
            or current is None
            or current.decline is None
            or self.first_declined_at is None
        ):
            return None
        made = self.retries_made
        if made >= len(retries):
            return None
        at = self.first_declined_at + retries[made]
        return at if at < due_by else None

    def retries_left(self, retries: list[timedelta], due_by: datetime) -> list[datetime]:
        if self.hard or self.switched_at or self.first_declined_at is None:
            return []
        at = [self.first_declined_at + wait for wait in retries[self.retries_made :]]
        return [when for when in at if when < due_by]

    def state(self, retries: list[timedelta], due_by: datetime) -> DunningState | None:
        """What ops search by (RenewalDunning): None while no charge was declined."""
        if not self.declined:
            return None
        if self.switched_at:
            return "switched_to_transfer"
        if self.hard:
            return "hard_decline"
        current = self.current
        pending = current is not None and current.decline is None
        return "retrying" if pending or self.next_retry(retries, due_by) else "exhausted"

    def notice(self, retries: list[timedelta], due_by: datetime) -> Literal["first", "last"] | None:
        """Which email the customer is owed now: at the first decline, and when the last retry
        was declined (P20). Once each."""
        current = self.current
        if not self.declined or self.switched_at or current is None or current.decline is None:
            return None
        if "first" not in self.told:
            return "first"
        if "last" not in self.told and self.retries_made and self.next_retry(retries, due_by) is None:
            return "last"
        return None

    def told_customer(self, which: str) -> None:
        self.told.append(which)

    def decline_text(self, retries: list[timedelta], due_by: datetime) -> str:
        """The email's sentence on what failed and what happens next, in Italian, no card data."""
        current = self.current
        assert current is not None and current.decline is not None
        what = (
            "la banca ha rifiutato l'addebito"
            if current.decline == "soft"
            else "il metodo di pagamento non è più valido"
        )
        said = f"{what} (codice {current.code}: {current.message})"
        left = self.retries_left(retries, due_by)
        if left:
            return f"{said}. Riproveremo l'addebito il {left[0].astimezone(ROME):%d/%m/%Y}"
        return f"{said}. Non riproveremo l'addebito"

    def details(self) -> list[str]:
        return [attempt.line() for attempt in self.attempts]
