"""An import of a bank statement (P19, docs/statements.md): the messages its workflow and activities
pass (never the file itself: the import's id, the file's SHA-256, names it in PostgreSQL) and the
records ops read. Pure models and names; the work is in `activities/statements.py`."""

from datetime import date, datetime, timedelta
from typing import Literal

from pydantic import Field

from renewals.matching import Suggestion
from renewals.types import Model

IMPORT_WORKFLOW_TYPE = "StatementImport"
INBOX_WORKFLOW_TYPE = "StatementInbox"
INBOX_SCHEDULE_ID = "payments-inbox"
# An ApplicationError type: a stored file the reader refuses now (only a changed reader can).
STATEMENT_REFUSED = "StatementRefused"

ImportState = Literal["stored", "recorded", "done", "failed"]
ImportSource = Literal["cli", "http", "inbox"]
EntryOutcome = Literal["applied", "unmatched", "ignored", "assigned"]


def import_workflow_id(import_id: str) -> str:
    """One workflow per file: the same file submitted twice at once is one import."""
    return f"statement-{import_id[:16]}"


class ImportStatement(Model):
    """The import workflow's input: the id of the stored file."""

    import_id: str


class ImportCounts(Model):
    """Per import: the entries in the file; those applied to orders (their payments delivered to the
    renewals), those left unmatched for ops, those another import recorded first, and those that
    are no payment (debits, reversals, other currencies, amounts of 0 or less, future dates)."""

    entries: int = 0
    applied: int = 0
    unmatched: int = 0
    duplicates: int = 0
    ignored: int = 0

    def line(self) -> str:
        return (
            f"entries {self.entries}, applied {self.applied}, unmatched {self.unmatched}, "
            f"duplicates {self.duplicates}, ignored {self.ignored}"
        )


class ImportRecord(Model):
    """A statement file as stored, and what its import made of it so far."""

    id: str  # the file's SHA-256, hex
    source: ImportSource
    file_name: str | None = None
    received_at: datetime
    state: ImportState
    version: str
    message_id: str
    counts: ImportCounts
    # The renewals' answers to the payments it delivered, by ledger status (P5, P10-P12).
    outcomes: dict[str, int] = {}
    failure: str | None = None
    finished_at: datetime | None = None
    # Set by the submission: the file had been stored before (a re-import changes nothing).
    already: bool = False

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def line(self) -> str:
        """What the log, the CLI and the workflow's details say of it, in one line."""
        said = {
            "stored": "stored, import under way",
            "recorded": "recorded, payments under way",
            "done": "imported",
            "failed": f"failed: {self.failure}",
        }[self.state]
        again = "already " if self.already and self.state == "done" else ""
        outcomes = ", ".join(f"{status} {count}" for status, count in sorted(self.outcomes.items()))
        answered = f"; renewals answered {outcomes}" if outcomes else ""
        return f"statement {self.short_id} ({self.message_id}) {again}{said}: {self.counts.line()}{answered}"


class Recorded(Model):
    """What the recording step did: of the file's entries, those it recorded now, those an earlier
    attempt of the same import recorded (a worker killed half-way), the rest being duplicates."""

    entries: int
    recorded_now: int
    recorded_before: int = 0

    @property
    def duplicates(self) -> int:
        return self.entries - self.recorded_now - self.recorded_before


class DeliverBatch(Model):
    """The next payments of an import to hand to their renewals: ledger rows still `received`, after
    `after` in transaction order, at most `limit`, `concurrency` at a time."""

    import_id: str
    after: str = ""
    limit: int = Field(default=500, ge=1, le=5000)
    concurrency: int = Field(default=16, ge=1, le=128)
    row_timeout: timedelta = timedelta(seconds=10)


class Delivered(Model):
    """A batch delivered: the last transaction id reached (None: nothing was left), the renewals'
    answers, and the deliveries that failed (each counted on its ledger row; the reconciler tries
    it again, I2)."""

    last: str | None = None
    statuses: dict[str, int] = {}
    failed: int = 0


class FailImport(Model):
    import_id: str
    reason: str


class InboxScan(Model):
    """The inbox's run (PAYMENTS_INBOX_DIR): each file there submitted, then moved to `done/` or, with
    a `.reason.txt` beside it, to `failed/`. A file changed less than `settle` ago is left for the
    next run (it may still be being written); so are names starting with a dot or ending in
    `.part` or `.tmp`."""

    directory: str
    settle: timedelta = timedelta(seconds=5)


class InboxScanned(Model):
    imported: list[str] = []  # "name: <the import's line>"
    refused: list[str] = []  # "name: <why>"


class UnmatchedEntry(Model):
    """A credit no order was found for, waiting for ops (`starter.py payments assign`)."""

    entry: int
    amount_cents: int | None
    amount: str
    currency: str
    payer: str | None
    remittance: str
    booked_on: date | None
    import_id: str
    reason: str
    suggestions: list[Suggestion] = []


class Assignment(Model):
    """An unmatched credit applied by ops to an order: its ledger row and the renewal's answer (None
    when the renewal could not be reached: the reconciler delivers the row later, I2)."""

    entry: int
    order_number: str
    transaction_id: str
    amount_cents: int
    status: str
    note: str | None = None
