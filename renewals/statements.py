"""Bank statements (P19): an ISO 20022 camt.053 file read into plain models, each entry with the
key that makes it a ledger row exactly once and, when it can never be a payment, the reason why.

Accepted: `camt.053.001.02` (BankToCustomerStatementV02, what Italian banks deliver through CBI) and
`camt.053.001.08`. The file is parsed with lxml with no DTD, no entity, no network and libxml2's
default limits, after a size check, and validated against the official schema (our copy in
`renewals/iso20022/`, offline). A file that is not such a statement is refused whole with one
line (`StatementRefused`); an entry that breaks the schema or cannot be a payment is still read,
with its reason in `not_a_payment`, so that it is recorded and never applied.
"""

import copy
import hashlib
import json
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Literal

from lxml import etree
from pydantic import BaseModel, ConfigDict

from renewals.dates import ROME, start_of_day
from renewals.safe_xml import safe_parser

Version = Literal["camt.053.001.02", "camt.053.001.08"]
VERSIONS: tuple[Version, ...] = ("camt.053.001.02", "camt.053.001.08")
NAMESPACE_PREFIX = "urn:iso:std:iso:20022:tech:xsd:"
SCHEMAS = Path(__file__).parent / "iso20022"

# Refused before parsing: a day's statement of 10,000 entries is about 15 MB.
MAX_STATEMENT_BYTES = 40 * 1024 * 1024
# The ledger's limit on one payment (P11, renewals/messages.py PaymentFields).
MAX_PAYMENT_CENTS = 100_000_000
CURRENCY = "EUR"
# The lengths the schema gives a creditor reference (Max35Text) and a remittance line (Max140Text).
MAX_REFERENCE = 35
MAX_REMITTANCE_LINE = 140

_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ROOT_START = re.compile(rb"<[A-Za-z_]")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


class StatementRefused(ValueError):
    """A file we do not read as a statement: too big, not XML, not camt.053 .02/.08, or invalid
    outside its entries. The message is one line naming what is wrong."""


class Transaction(BaseModel):
    """One transaction of an entry (`NtryDtls/TxDtls`): what the payer wrote and who paid."""

    model_config = ConfigDict(frozen=True)

    amount_cents: int | None = None  # TxDtls' own amount, when given and exact
    references: tuple[str, ...] = ()  # RmtInf/Strd/CdtrRefInf/Ref, in order
    text: str = ""  # every RmtInf/Ustrd, joined with a space
    debtor_name: str | None = None  # RltdPties/Dbtr/Nm (.08: Dbtr/Pty/Nm)
    end_to_end_id: str | None = None  # Refs/EndToEndId
    info: str | None = None  # AddtlTxInf: the bank's description


class Entry(BaseModel):
    """One statement entry (`Ntry`).

    `key` is what makes it one ledger row: `<account>:AcctSvcrRef:<ref>`, else
    `<account>:NtryRef:<booking date>:<ref>`, else (a bank that gives neither) a digest of what the
    entry says with its rank among identical ones in the statement; a status other than BOOK is
    appended, so the booked entry that follows a pending one is a row of its own. The account is in
    every key because a bank's reference is unique only within the bank.
    """

    model_config = ConfigDict(frozen=True)

    key: str
    key_source: Literal["AcctSvcrRef", "NtryRef", "content"]
    account: str
    bank_reference: str | None = None  # AcctSvcrRef
    entry_reference: str | None = None  # NtryRef
    amount: str  # Amt as written
    amount_cents: int | None  # None when not an exact amount in cents
    currency: str  # Amt/@Ccy
    credit_debit: str  # CdtDbtInd: CRDT or DBIT
    reversal: bool = False  # RvslInd
    status: str  # Sts (.08: Sts/Cd): BOOK, PDNG, INFO
    booked_on: date | None = None
    value_on: date | None = None
    info: str | None = None  # AddtlNtryInf
    transactions: tuple[Transaction, ...] = ()
    not_a_payment: str | None = None  # why it is recorded and never applied; None: a payable credit

    @property
    def payable(self) -> bool:
        return self.not_a_payment is None

    @property
    def transaction_id(self) -> str:
        """The ledger's transaction id for this entry (P11: `[A-Za-z0-9._:-]{1,64}`): a digest of
        `key`, the same at every import of the entry, short enough to take `:<order number>` for
        each part of a split transfer (`renewals/matching.py` `Allocation.transaction_id`)."""
        return "camt:" + hashlib.sha256(self.key.encode()).hexdigest()[:32]

    def payment_id(self, order_number: str) -> str:
        """The ledger's transaction id of what this entry pays `order_number`: one payment per order
        and entry, however often the entry is imported or assigned."""
        return f"{self.transaction_id}:{order_number}"

    def registered_at(self, fallback: datetime) -> datetime:
        """When the money reached the account, as the ledger's `registered_at` (P17 dates the invoice
        by its Rome day): the start of the booking day in Rome, else of the value day, else
        `fallback` (the statement's creation)."""
        day = self.booked_on or self.value_on
        return start_of_day(day) if day else fallback

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(ref for transaction in self.transactions for ref in transaction.references)

    @property
    def text(self) -> str:
        return " ".join(transaction.text for transaction in self.transactions if transaction.text)

    @property
    def debtor_name(self) -> str | None:
        return next((t.debtor_name for t in self.transactions if t.debtor_name), None)

    @property
    def remittance(self) -> str:
        """What the payer wrote, on one line: the structured references, then the free text; else
        the bank's description of the entry."""
        said = " ".join([*self.references, self.text]).strip() or self.info or ""
        return " ".join(_CONTROL.sub(" ", said).split())


class Statement(BaseModel):
    """One account's statement (`Stmt`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    account: str  # the IBAN, or the bank's other id of the account
    account_iban: str | None
    currency: str | None  # Acct/Ccy
    created_at: datetime
    sequence: str | None = None  # ElctrncSeqNb
    entries: tuple[Entry, ...] = ()


class StatementFile(BaseModel):
    """A camt.053 message: one or more statements."""

    model_config = ConfigDict(frozen=True)

    version: Version
    message_id: str
    created_at: datetime
    statements: tuple[Statement, ...]

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(entry for statement in self.statements for entry in statement.entries)


# ---------------------------------------------------------------------- safe XML


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


def _parse(data: bytes) -> etree._Element:
    # A DOCTYPE stands before the root element; said at once rather than by libxml2's own guard
    # against entity expansion (a file in UTF-16 still meets that guard and the check below).
    root_start = _ROOT_START.search(data)
    if _DOCTYPE.search(data, 0, root_start.start() if root_start else len(data)):
        raise StatementRefused("statement carries a DOCTYPE: DTDs and entities are refused")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as error:
        raise StatementRefused(f"statement is not well-formed XML: {_one_line(error)}") from None
    if root is None:
        raise StatementRefused("statement is empty")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise StatementRefused("statement carries a DOCTYPE: DTDs and entities are refused")
    return root


@cache
def schema(version: Version) -> etree.XMLSchema:
    """The official schema of `version`, compiled once from our copy."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(SCHEMAS / f"{version}.xsd"), parser))


def _version(root: etree._Element) -> Version:
    name = etree.QName(root)
    namespace = name.namespace or ""
    for version in VERSIONS:
        if namespace == NAMESPACE_PREFIX + version and name.localname == "Document":
            return version
    said = namespace.removeprefix(NAMESPACE_PREFIX) if namespace else "no namespace"
    raise StatementRefused(
        f"not a camt.053.001.02 or camt.053.001.08 statement: root element {name.localname} in {said}"
    )


def _first_error(validator: etree.XMLSchema) -> str:
    error = validator.error_log[0]  # type: ignore[attr-defined]
    return f"line {error.line}: {_one_line(error.message)}"


class _Paths:
    """Element paths in one version's namespace."""

    def __init__(self, version: Version) -> None:
        self.ns = NAMESPACE_PREFIX + version
        self.version = version
        self._paths: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        if path not in self._paths:
            self._paths[path] = "/".join(f"{{{self.ns}}}{step}" for step in path.split("/"))
        return self._paths[path]


def _text(parent: etree._Element, path: str) -> str | None:
    element = parent.find(path)
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _texts(parent: etree._Element, path: str) -> list[str]:
    return [element.text.strip() for element in parent.iterfind(path) if element.text and element.text.strip()]


def _schema_problems(root: etree._Element, version: Version, q: _Paths) -> dict[etree._Element, str]:
    """The entries that break the schema, each with the schema's first message; StatementRefused if
    what breaks it is outside the entries. Only called when the whole file is not valid."""
    validator = schema(version)
    skeleton = copy.deepcopy(root)
    statements = root.findall(q("BkToCstmrStmt/Stmt"))
    skeletons = skeleton.findall(q("BkToCstmrStmt/Stmt"))
    for statement in skeletons:
        for entry in statement.findall(q("Ntry")):
            statement.remove(entry)
    if not validator.validate(skeleton):
        raise StatementRefused(f"statement is not valid against {version}.xsd: {_first_error(validator)}")
    problems: dict[etree._Element, str] = {}
    for statement, bare in zip(statements, skeletons, strict=True):
        entries = statement.findall(q("Ntry"))
        if not entries:
            continue
        position = list(statement).index(entries[0])
        for entry in entries:
            alone = copy.deepcopy(entry)
            bare.insert(position, alone)
            if not validator.validate(skeleton):
                problems[entry] = f"not valid against {version}.xsd: {_first_error(validator)}"
            bare.remove(alone)
    return problems


# ---------------------------------------------------------------------- values


def _cents(amount: str) -> tuple[int | None, str | None]:
    """Exact cents of a decimal amount, or None with the reason."""
    if not amount:
        return None, "no amount"
    if not _DECIMAL.fullmatch(amount):
        return None, f"amount {amount!r} is not a decimal number"
    try:
        value = Decimal(amount) * 100
    except InvalidOperation:
        return None, f"amount {amount!r} is not a decimal number"
    if value != value.to_integral_value():
        return None, f"amount {amount} has a fraction of a cent"
    return int(value), None


def _day(parent: etree._Element, path: str, q: _Paths) -> date | None:
    said = _text(parent, q(f"{path}/Dt")) or _text(parent, q(f"{path}/DtTm"))
    if said is None:
        return None
    found = _DATE.match(said)
    if found is None:
        return None
    try:
        return date.fromisoformat(found[1])
    except ValueError:
        return None


def _instant(said: str | None) -> datetime | None:
    if said is None:
        return None
    try:
        instant = datetime.fromisoformat(said)
    except ValueError:
        return None
    # A bank without an offset writes Italian time (P9).
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=ROME)


def _truthy(said: str | None) -> bool:
    return said in ("true", "1")


# ---------------------------------------------------------------------- entries


def _transaction(element: etree._Element, q: _Paths) -> Transaction:
    amount = _text(element, q("Amt")) or _text(element, q("AmtDtls/TxAmt/Amt"))
    cents = _cents(amount)[0] if amount else None
    debtor = _text(element, q("RltdPties/Dbtr/Nm")) or _text(element, q("RltdPties/Dbtr/Pty/Nm"))
    return Transaction(
        amount_cents=cents,
        references=tuple(_texts(element, q("RmtInf/Strd/CdtrRefInf/Ref"))),
        text=" ".join(_texts(element, q("RmtInf/Ustrd"))),
        debtor_name=debtor,
        end_to_end_id=_text(element, q("Refs/EndToEndId")),
        info=_text(element, q("AddtlTxInf")),
    )


def _too_long(element: etree._Element, q: _Paths) -> list[str]:
    reasons = []
    for ref in element.iterfind(q("NtryDtls/TxDtls/RmtInf/Strd/CdtrRefInf/Ref")):
        if ref.text and len(ref.text.strip()) > MAX_REFERENCE:
            reasons.append(f"structured reference of {len(ref.text.strip())} characters, over {MAX_REFERENCE}")
    for line in element.iterfind(q("NtryDtls/TxDtls/RmtInf/Ustrd")):
        if line.text and len(line.text.strip()) > MAX_REMITTANCE_LINE:
            reasons.append(f"remittance text of {len(line.text.strip())} characters, over {MAX_REMITTANCE_LINE}")
    return reasons


def _judge(
    *,
    status: str,
    credit_debit: str,
    reversal: bool,
    currency: str,
    amount: str,
    cents: int | None,
    cents_problem: str | None,
    booked_on: date | None,
    today: date,
) -> list[str]:
    reasons = []
    if status != "BOOK":
        reasons.append(f"status {status or 'missing'}, not booked (BOOK)")
    if credit_debit != "CRDT":
        reasons.append("a debit" if credit_debit == "DBIT" else f"CdtDbtInd {credit_debit or 'missing'}")
    if reversal:
        reasons.append("a reversal (RvslInd)")
    if currency != CURRENCY:
        reasons.append(f"currency {currency or 'missing'}, not {CURRENCY}")
    if cents is None:
        reasons.append(cents_problem or f"amount {amount!r} unreadable")
    elif cents == 0:
        reasons.append("amount is zero")
    elif cents < 0:
        reasons.append(f"amount {amount} is negative")
    elif cents > MAX_PAYMENT_CENTS:
        reasons.append(f"amount {amount} is over the ledger's limit of {MAX_PAYMENT_CENTS} cents")
    if booked_on is not None and booked_on > today:
        reasons.append(f"booked on {booked_on}, after today ({today})")
    return reasons


def _digest(account: str, fields: dict[str, object]) -> str:
    said = json.dumps([account, fields], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(said.encode()).hexdigest()[:32]


class _EntryReader:
    """Reads the entries of one file, remembering the keys it gave: the same reference on two
    different entries, or identical entries without one, are told apart across all its statements."""

    def __init__(self, q: _Paths, problems: dict[etree._Element, str], today: date) -> None:
        self.q = q
        self.problems = problems
        self.today = today
        self.seen: dict[str, str] = {}  # key -> digest of the entry first read with it
        self.identical: dict[str, int] = {}  # digest -> how many entries said exactly that so far

    def entries(self, statement: etree._Element, account: str) -> tuple[Entry, ...]:
        return tuple(self.entry(element, account) for element in statement.iterfind(self.q("Ntry")))

    def entry(self, element: etree._Element, account: str) -> Entry:
        q = self.q
        amount_element = element.find(q("Amt"))
        amount = (amount_element.text or "").strip() if amount_element is not None else ""
        currency = (amount_element.get("Ccy") or "").strip() if amount_element is not None else ""
        cents, cents_problem = _cents(amount)
        status = _text(element, q("Sts/Cd")) if q.version != "camt.053.001.02" else _text(element, q("Sts"))
        status = status or ""
        credit_debit = _text(element, q("CdtDbtInd")) or ""
        reversal = _truthy(_text(element, q("RvslInd")))
        booked_on = _day(element, "BookgDt", q)
        value_on = _day(element, "ValDt", q)
        bank_reference = _text(element, q("AcctSvcrRef"))
        entry_reference = _text(element, q("NtryRef"))
        transactions = tuple(_transaction(tx, q) for tx in element.iterfind(q("NtryDtls/TxDtls")))
        info = _text(element, q("AddtlNtryInf"))

        digest = _digest(
            account,
            {
                "amount": amount,
                "currency": currency,
                "cd": credit_debit,
                "reversal": reversal,
                "status": status,
                "booked_on": booked_on,
                "value_on": value_on,
                "bank": bank_reference,
                "entry": entry_reference,
                "info": info,
                "tx": [t.model_dump() for t in transactions],
            },
        )
        rank = self.identical[digest] = self.identical.get(digest, 0) + 1
        key_source: Literal["AcctSvcrRef", "NtryRef", "content"]
        if bank_reference:
            key_source, key = "AcctSvcrRef", f"{account}:AcctSvcrRef:{bank_reference}"
        elif entry_reference:
            key_source, key = "NtryRef", f"{account}:NtryRef:{booked_on or value_on or '-'}:{entry_reference}"
        else:
            key_source, key = "content", f"{account}:content:{digest}:{rank}"
        if status != "BOOK":
            key = f"{key}:{status or 'no-status'}"

        reasons = _judge(
            status=status,
            credit_debit=credit_debit,
            reversal=reversal,
            currency=currency,
            amount=amount,
            cents=cents,
            cents_problem=cents_problem,
            booked_on=booked_on,
            today=self.today,
        )
        reasons += _too_long(element, q)
        if element in self.problems:
            reasons.append(self.problems[element])
        if self.seen.setdefault(key, digest) != digest:
            # The bank gave one reference to two different entries: neither key can be trusted to
            # be this entry's, so it is kept apart and left to ops.
            reasons.append(f"the bank's reference {bank_reference or entry_reference} repeats with other details")
            key = f"{key}:{digest}"
        return Entry(
            key=key,
            key_source=key_source,
            account=account,
            bank_reference=bank_reference,
            entry_reference=entry_reference,
            amount=amount,
            amount_cents=cents,
            currency=currency,
            credit_debit=credit_debit,
            reversal=reversal,
            status=status,
            booked_on=booked_on,
            value_on=value_on,
            info=info,
            transactions=transactions,
            not_a_payment="; ".join(reasons) or None,
        )


def read_statement(data: bytes, *, today: date) -> StatementFile:
    """Every statement and entry of a camt.053.001.02 or .08 file; `today` (Rome) is the day a
    booking date may not pass. StatementRefused, with one line, for a file that is not one."""
    if len(data) > MAX_STATEMENT_BYTES:
        raise StatementRefused(f"statement of {len(data)} bytes is over the {MAX_STATEMENT_BYTES}-byte limit")
    if not data.strip():
        raise StatementRefused("statement is empty")
    root = _parse(data)
    version = _version(root)
    q = _Paths(version)
    problems: dict[etree._Element, str] = {}
    if not schema(version).validate(root):
        problems = _schema_problems(root, version, q)
    header = root.find(q("BkToCstmrStmt/GrpHdr"))
    if header is None:  # the schema requires it; kept for a reader of this function
        raise StatementRefused("statement has no group header (GrpHdr)")
    created_at = _instant(_text(header, q("CreDtTm")))
    if created_at is None:
        raise StatementRefused("statement's GrpHdr/CreDtTm is not a date and time")
    reader = _EntryReader(q, problems, today)
    statements = []
    for element in root.iterfind(q("BkToCstmrStmt/Stmt")):
        iban = _text(element, q("Acct/Id/IBAN"))
        account = iban or _text(element, q("Acct/Id/Othr/Id")) or ""
        statements.append(
            Statement(
                id=_text(element, q("Id")) or "",
                account=account,
                account_iban=iban,
                currency=_text(element, q("Acct/Ccy")),
                created_at=_instant(_text(element, q("CreDtTm"))) or created_at,
                sequence=_text(element, q("ElctrncSeqNb")),
                entries=reader.entries(element, account),
            )
        )
    return StatementFile(
        version=version,
        message_id=_text(header, q("MsgId")) or "",
        created_at=created_at,
        statements=tuple(statements),
    )
