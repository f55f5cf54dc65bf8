"""What a renewal does by the version of the code that started it: the one place its history's
markers are read (docs/evolving-models.md). Everything that differs between renewals started before
and after a change asks the `Path`, by what it decides, never the marker itself.

Both markers are recorded in the first workflow task of a new renewal, so `starter.py ops legacy`
finds them in the head of its history.
"""

from dataclasses import dataclass

from temporalio import workflow

# Renewals started before it replay their recorded command sequence (tests/histories/): reads as
# activities, emails awaited in line, ledger writes queued in an outbox `run` drains, the username's
# search attribute set again at the start, overdue reminders one by one, R6's grace past the deadline.
RENEWAL_V2_PATCH = "renewal-v2"
# P20: a card or PayPal automatic order's charges are attempts with ids, retried after a soft decline
# (renewals/dunning.py). Automatic orders of renewals started before it have their single charge.
CHARGE_RETRIES_PATCH = "charge-retries"


@dataclass(frozen=True)
class Path:
    v2: bool
    charge_retries: bool

    @property
    def local_reads(self) -> bool:
        """Reads of PostgreSQL as local activities (no round trip through the server)."""
        return self.v2

    @property
    def background_writes(self) -> bool:
        """Emails and ledger writes in the background, never holding up the renewal (P14)."""
        return self.v2

    @property
    def coalesced_reminders(self) -> bool:
        """Overdue reminders coalesced into one, none past the deadline (P2, P12)."""
        return self.v2

    @property
    def grace_within_deadline(self) -> bool:
        """R6's wait for an instant payment never past the order's deadline (P12), and always asked."""
        return self.v2

    @property
    def username_set_again(self) -> bool:
        """The start's RenewalUsername upsert (the start already carries it)."""
        return not self.v2


# Before `run` decides: handlers that come first (update-with-start) see the older path.
BEFORE_RUN = Path(v2=False, charge_retries=False)


def decide() -> Path:
    """First thing in `run`, once: a new renewal records both markers; a replay finds what it had."""
    return Path(v2=workflow.patched(RENEWAL_V2_PATCH), charge_retries=workflow.patched(CHARGE_RETRIES_PATCH))
