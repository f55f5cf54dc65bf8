"""Which orders a bank statement's credit pays (P19), each answer with its reason; pure.

In this order, the first that names an order wins:
1. the structured remittance (`Strd/CdtrRefInf/Ref`): the order's RF creditor reference, or its
   order number written there;
2. the remittance text (`Ustrd`): the RF reference or the order number in any common spelling
   (`FE-2026-000123`, `fe 2026 123`, `FE2026000123`, `ordine 123/2026`, `ord. n. 123 del 2026`,
   `2026/000123`, `RF46 2026 0001 23`; any case, spaces and line breaks inside);
3. the bank's description of the entry (`AddtlTxInf`, `AddtlNtryInf`), the same way.

A mention is only an order once the lookup knows it. One order takes the whole amount (whether it
is partial, full, over or late is the renewal's judgement, P5, P10–P12). Several orders in one
transfer are split by the amount quoted beside each, or by the orders' balances when they add up
to the amount exactly; otherwise the credit is unmatched. An entry whose transactions (`TxDtls`)
each carry an amount is matched transaction by transaction.

Unmatched credits carry up to three suggested orders: the orders named but unclear, then the open
orders whose balance (or total) is the amount or whose holder is named like the payer, those that
are both first, then the most recent. A suggestion is never applied by itself: ops confirm it.
"""

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from difflib import SequenceMatcher
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from renewals.creditor_reference import ORDER_NUMBER, order_number_of
from renewals.statements import Entry

MAX_SUGGESTIONS = 3
# How alike the payer's and the holder's names must be for a suggestion (0..1, see `name_similarity`).
NAME_SIMILARITY = 0.8
OPEN = "awaiting_payment"


class CandidateOrder(BaseModel):
    """What matching needs to know of an order (the lookup reads it from `orders` and `services`)."""

    model_config = ConfigDict(frozen=True)

    order_number: str
    holder_name: str | None
    total_cents: int
    balance_cents: int
    status: str  # awaiting_payment, paid, expired, cancelled
    created_at: datetime


class OrderLookup(Protocol):
    """The orders matching may ask about."""

    def orders(self, numbers: Collection[str]) -> Mapping[str, CandidateOrder]:
        """The orders among `numbers` that exist, by number."""
        ...

    def suggestible(self, amount_cents: int, payer_name: str | None) -> Iterable[CandidateOrder]:
        """Orders an unmatched credit might be for: at least the open orders whose balance or total
        is `amount_cents`, and those whose holder's name shares a word with `payer_name`. Matching
        ranks them and keeps what is alike; more is harmless."""
        ...


class OrderBook:
    """An `OrderLookup` over orders fetched beforehand (one query for a whole statement, with
    `numbers_named` of every entry), and the one the tests use."""

    def __init__(self, orders: Iterable[CandidateOrder], suggest: Collection[str] = (OPEN,)) -> None:
        self._orders = {order.order_number: order for order in orders}
        self._suggest = frozenset(suggest)

    def orders(self, numbers: Collection[str]) -> Mapping[str, CandidateOrder]:
        return {number: self._orders[number] for number in numbers if number in self._orders}

    def suggestible(self, amount_cents: int, payer_name: str | None) -> Iterable[CandidateOrder]:
        return [order for order in self._orders.values() if order.status in self._suggest]


class Allocation(BaseModel):
    """A part of a credit applied to one order: a payment as any other (P5)."""

    model_config = ConfigDict(frozen=True)

    order_number: str
    amount_cents: int
    reason: str
    transaction_id: str  # the entry's ledger id and the order's number: one payment per order


class Suggestion(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_number: str
    reason: str


class Match(BaseModel):
    """The answer for one entry: allocations adding up to its amount, or none and why, with
    suggestions for ops."""

    model_config = ConfigDict(frozen=True)

    entry_key: str
    allocations: tuple[Allocation, ...] = ()
    reason: str
    suggestions: tuple[Suggestion, ...] = ()

    @property
    def matched(self) -> bool:
        return bool(self.allocations)


# ---------------------------------------------------------------------- finding mentions

_GAP = r"[\s\-/._:#]*"  # what a payer puts between the parts of an order number
_DIGITS_SPACED = r"\d+(?:[ \t\r\n]+\d+)*"
_YEAR = r"\d(?:\s*\d){3}"

_RF = re.compile(r"(?<![0-9A-Za-z])RF\s*(\d)\s*(\d)((?:[\s.\-]*\d){1,21})", re.IGNORECASE)
_FE = re.compile(
    rf"(?<![0-9A-Za-z])FE{_GAP}(?:n(?:r|um)?\.?\s*)?(?P<year>{_YEAR}){_GAP}(?P<progressive>{_DIGITS_SPACED})",
    re.IGNORECASE,
)
# "ordine 123/2026", "ord. n. 123 del 2026", "ordine nr. 000123 - 2026", "n. ordine 2026/123"
_ORDINE = re.compile(
    r"(?<![0-9A-Za-z])(?:n(?:r|um)?\.?\s*)?ord(?:ine)?\.?\s*(?:(?:n(?:r|um|umero|°|o)?\.?|numero)\s*)?"
    r"(?P<first>\d{1,7})\s*(?:/|-|\bdel(?:l'anno)?\b|\banno\b)\s*(?P<second>\d{1,7})(?!\d)",
    re.IGNORECASE,
)
# "2026-000123", "2026/000123": the order number without its prefix, only in full.
_BARE = re.compile(r"(?<![0-9A-Za-z/.,-])(?P<year>20\d\d)\s*[-/]\s*(?P<progressive>\d{6})(?![0-9.,]?\d)")

_AMOUNT = re.compile(
    r"(?<![0-9.,'])(?:(?P<before>EUR|€|euro)\s*)?"
    r"(?P<whole>\d{1,3}(?:[.,']\d{3})+|\d+)(?:(?P<cents>[.,]\d{2})(?![.,]?\d))?"
    r"(?:\s*(?P<after>EUR|€|euro)\b)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _Reading:
    number: str
    end: int  # where this reading of the mention ends in the text


@dataclass(frozen=True)
class _Mention:
    start: int
    end: int  # where its longest reading ends: what follows may be another mention or an amount
    readings: tuple[_Reading, ...]
    kind: Literal["RF reference", "order number"]
    text: str

    def spelled(self, end: int) -> str:
        return " ".join(self.text[self.start : end].split())


def _order_number(year: str, progressive: str) -> str | None:
    year = re.sub(r"\s", "", year)
    value = int(progressive) if progressive.isdigit() else 0
    if value == 0 or len(year) != 4:
        return None
    number = f"FE-{year}-{value:06d}"
    return number if ORDER_NUMBER.fullmatch(number) else None


def _rf_mentions(text: str) -> list[_Mention]:
    mentions = []
    for found in _RF.finditer(text):
        check = found[1] + found[2]
        readings = []
        digits = ""
        for digit in re.finditer(r"\d", found[3]):
            digits += digit[0]
            if len(digits) < 10:  # a year and a six-digit progressive at least
                continue
            number = order_number_of(f"RF{check}{digits}")
            if number is not None:
                readings.append(_Reading(number, found.start(3) + digit.end()))
        if readings:
            mentions.append(_Mention(found.start(), readings[-1].end, tuple(readings), "RF reference", text))
    return mentions


def _fe_mentions(text: str) -> list[_Mention]:
    mentions = []
    for found in _FE.finditer(text):
        readings = []
        digits = ""
        # "FE-2026-000 123": the progressive may be cut by a space or a line break; every way of
        # reading it is kept until the lookup says which order exists.
        for chunk in re.finditer(r"\d+", found["progressive"]):
            if digits and len(digits) >= 6:
                break
            digits += chunk[0]
            number = _order_number(found["year"], digits)
            if number is not None:
                readings.append(_Reading(number, found.start("progressive") + chunk.end()))
        if readings:
            mentions.append(_Mention(found.start(), readings[-1].end, tuple(readings), "order number", text))
    return mentions


def _ordine_mentions(text: str) -> list[_Mention]:
    mentions = []
    for found in _ORDINE.finditer(text):
        first, second = found["first"], found["second"]
        numbers = []
        if len(second) == 4:
            numbers.append(_order_number(second, first))
        if len(first) == 4:
            numbers.append(_order_number(first, second))
        readings = tuple(_Reading(n, found.end()) for n in dict.fromkeys(numbers) if n is not None)
        if readings:
            mentions.append(_Mention(found.start(), found.end(), readings, "order number", text))
    return mentions


def _bare_mentions(text: str) -> list[_Mention]:
    mentions = []
    for found in _BARE.finditer(text):
        number = _order_number(found["year"], found["progressive"])
        if number is not None:
            mentions.append(
                _Mention(found.start(), found.end(), (_Reading(number, found.end()),), "order number", text)
            )
    return mentions


def _mentions(text: str) -> list[_Mention]:
    """Every place `text` may name an order, however spelled, by where it starts. They may overlap
    ("FE-2026-000123" is also "2026-000123"; "FE 2026 1 2026/000002" reads "FE 2026 12026" too):
    which reading stands is decided once the lookup has said which orders exist."""
    found = _rf_mentions(text) + _fe_mentions(text) + _ordine_mentions(text) + _bare_mentions(text)
    return sorted(found, key=lambda m: (m.start, -m.end))


def numbers_named(entry: Entry) -> frozenset[str]:
    """Every order number the entry's remittance could mean: what a lookup is asked about, so a
    whole statement can be looked up in one query."""
    texts = [*entry.references, entry.text, *_descriptions(entry)]
    return frozenset(reading.number for text in texts for m in _mentions(text) for reading in m.readings)


def _descriptions(entry: Entry) -> list[str]:
    return [t.info for t in entry.transactions if t.info] + ([entry.info] if entry.info else [])


# ---------------------------------------------------------------------- amounts quoted


def _amounts(text: str, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(position, cents) of each amount written in `text` outside the order mentions: with cents
    (`30,50`, `1.234,56`, `30.50`) or beside a currency (`EUR 30`, `30 euro`, `€30`)."""
    found = []
    for amount in _AMOUNT.finditer(text):
        if any(start < amount.end() and amount.start() < end for start, end in taken):
            continue
        if amount["cents"] is None and not (amount["before"] or amount["after"]):
            continue
        whole = re.sub(r"[.,']", "", amount["whole"])
        cents = int(whole) * 100 + (int(amount["cents"][1:]) if amount["cents"] else 0)
        if cents > 0:
            found.append((amount.start("whole"), cents))
    return found


def _euros(cents: int) -> str:
    return f"EUR {cents // 100},{cents % 100:02d}"


# ---------------------------------------------------------------------- matching


@dataclass(frozen=True)
class _Named:
    """An order a mention was resolved to, where."""

    order: CandidateOrder
    mention: _Mention
    end: int


@dataclass(frozen=True)
class _Outcome:
    allocations: tuple[tuple[str, int, str], ...] = ()  # (order number, cents, reason)
    reason: str = ""
    named: tuple[CandidateOrder, ...] = ()  # orders named, for suggestions when unclear
    final: bool = False  # a step that found orders but could not decide: later steps are not asked


def _resolve(text: str, lookup: OrderLookup) -> tuple[list[_Named], list[str], list[str], list[CandidateOrder]]:
    """The orders `text` names, in order; the numbers it names that are no order; the mentions that
    read as more than one existing order; and those orders."""
    mentions = _mentions(text)
    known = lookup.orders({reading.number for m in mentions for reading in m.readings})
    found: list[_Named] = []
    unknown: list[_Mention] = []
    ambiguous: list[str] = []
    unclear: list[CandidateOrder] = []
    for mention in mentions:
        readings = [reading for reading in mention.readings if reading.number in known]
        if len(readings) == 1:
            found.append(_Named(known[readings[0].number], mention, readings[0].end))
        elif readings:
            ambiguous.append(mention.spelled(mention.end))
            unclear += [known[reading.number] for reading in readings]
        else:
            unknown.append(mention)
    # Of overlapping readings that name orders, the earliest and longest stands.
    named: list[_Named] = []
    for item in sorted(found, key=lambda item: (item.mention.start, -item.end)):
        if not named or item.mention.start >= named[-1].end:
            named.append(item)
    missing = [
        mention.readings[0].number
        for mention in unknown
        if not any(mention.start < item.end and item.mention.start < mention.end for item in named)
    ]
    return named, missing, ambiguous, unclear


def _split_by_quotes(text: str, named: list[_Named], amount: int) -> list[int] | None:
    """The amount quoted beside each order (all after it, or all before it), if they add up."""
    runs: list[list[_Named]] = []
    for item in named:
        if runs and runs[-1][-1].order.order_number == item.order.order_number:
            runs[-1].append(item)
        else:
            runs.append([item])
    if len({run[0].order.order_number for run in runs}) != len(runs):
        return None  # an order named twice apart: which amount is whose is unclear
    taken = [(item.mention.start, item.end) for item in named]
    quoted = _amounts(text, taken)
    starts = [run[0].mention.start for run in runs]
    ends = [run[-1].end for run in runs]
    for gaps in (
        [(ends[i], starts[i + 1] if i + 1 < len(runs) else len(text)) for i in range(len(runs))],
        [(ends[i - 1] if i else 0, starts[i]) for i in range(len(runs))],
    ):
        parts = [[cents for at, cents in quoted if low <= at < high] for low, high in gaps]
        if all(len(part) == 1 for part in parts) and sum(part[0] for part in parts) == amount:
            return [part[0] for part in parts]
    return None


def _allocate(text: str, named: list[_Named], amount: int, where: str) -> _Outcome:
    orders = list(dict.fromkeys(item.order.order_number for item in named))
    first = {number: next(item for item in named if item.order.order_number == number) for number in orders}
    said = {
        number: f"{item.mention.kind} written {item.mention.spelled(item.end)!r} in {where}"
        for number, item in first.items()
    }
    if len(orders) == 1:
        return _Outcome(allocations=((orders[0], amount, said[orders[0]]),))
    named_orders = tuple(first[number].order for number in orders)
    quoted = _split_by_quotes(text, named, amount)
    if quoted is not None:
        return _Outcome(
            allocations=tuple(
                (number, cents, f"{said[number]}; split by the amount quoted beside it ({_euros(cents)})")
                for number, cents in zip(orders, quoted, strict=True)
            )
        )
    balances = [order.balance_cents for order in named_orders]
    if all(balance > 0 for balance in balances) and sum(balances) == amount:
        return _Outcome(
            allocations=tuple(
                (order.order_number, order.balance_cents, f"{said[order.order_number]}; split by the orders' balances")
                for order in named_orders
            )
        )
    return _Outcome(
        reason=(
            f"{where} names {len(orders)} orders ({', '.join(orders)}) and neither the amounts quoted nor their "
            f"balances add up to {_euros(amount)}"
        ),
        named=named_orders,
        final=True,
    )


def _step(text: str, where: str, amount: int, lookup: OrderLookup) -> _Outcome:
    named, unknown, ambiguous, unclear = _resolve(text, lookup)
    if ambiguous:
        return _Outcome(
            reason=f"{where}: {ambiguous[0]!r} reads as more than one order", named=tuple(unclear), final=True
        )
    if named:
        return _allocate(text, named, amount, where)
    if unknown:
        return _Outcome(reason=f"{where} names {', '.join(dict.fromkeys(unknown))}, no such order")
    return _Outcome()


def _match_part(
    references: tuple[str, ...], text: str, descriptions: list[str], amount: int, lookup: OrderLookup
) -> _Outcome:
    reasons = []
    for fields, where in (
        (list(references), "the structured remittance (Strd/CdtrRefInf/Ref)"),
        ([text], "the remittance text (Ustrd)"),
        (descriptions, "the bank's description (AddtlTxInf/AddtlNtryInf)"),
    ):
        # Separate fields are read as one text, kept apart by a mark no spelling crosses.
        joined = " | ".join(field for field in fields if field)
        if not joined:
            continue
        outcome = _step(joined, where, amount, lookup)
        if outcome.allocations or outcome.final:
            return outcome
        if outcome.reason:
            reasons.append(outcome.reason)
    return _Outcome(reason="; ".join(reasons) or "no order named in the remittance")


def match(entry: Entry, lookup: OrderLookup) -> Match:
    """Which orders `entry` pays, or why none and which it might be for."""
    if entry.not_a_payment is not None or entry.amount_cents is None:
        return Match(entry_key=entry.key, reason=f"not a payment: {entry.not_a_payment}")
    amount = entry.amount_cents
    parts = entry.transactions
    outcome: _Outcome
    if len(parts) > 1 and all(p.amount_cents for p in parts) and sum(p.amount_cents or 0 for p in parts) == amount:
        outcome = _match_transactions(entry, lookup)
    else:
        outcome = _match_part(entry.references, entry.text, _descriptions(entry), amount, lookup)
    if outcome.allocations:
        totals: dict[str, tuple[int, list[str]]] = {}
        for number, cents, reason in outcome.allocations:
            before, reasons = totals.get(number, (0, []))
            totals[number] = (before + cents, [*reasons, reason])
        return Match(
            entry_key=entry.key,
            reason="matched",
            allocations=tuple(
                Allocation(
                    order_number=number,
                    amount_cents=cents,
                    reason="; ".join(reasons),
                    transaction_id=entry.payment_id(number),
                )
                for number, (cents, reasons) in totals.items()
            ),
        )
    return Match(entry_key=entry.key, reason=outcome.reason, suggestions=_suggestions(entry, outcome.named, lookup))


def _match_transactions(entry: Entry, lookup: OrderLookup) -> _Outcome:
    allocations: list[tuple[str, int, str]] = []
    count = len(entry.transactions)
    for index, part in enumerate(entry.transactions, start=1):
        descriptions = [part.info] if part.info else []
        outcome = _match_part(part.references, part.text, descriptions, part.amount_cents or 0, lookup)
        if not outcome.allocations:
            return _Outcome(reason=f"transaction {index} of {count}: {outcome.reason}", named=outcome.named)
        allocations += [(n, c, f"transaction {index} of {count}: {r}") for n, c, r in outcome.allocations]
    return _Outcome(allocations=tuple(allocations))


# ---------------------------------------------------------------------- suggestions

# Words that say what kind of company or title a name carries, not whose it is.
_NOT_A_NAME = frozenset(
    "srl srls spa sapa snc sas ss scarl scrl soc societa coop cooperativa ditta di e ed and c sig sigra "
    "dott dottssa ing avv geom rag studio associati".split()
)


def name_words(name: str) -> list[str]:
    """The words of a name that say whose it is, plain (no accents, lower case, no legal form), in
    order: what a lookup compares with the holders' names to find orders to suggest."""
    plain = unicodedata.normalize("NFKD", name)
    plain = "".join(c for c in plain if not unicodedata.combining(c)).lower().replace(".", "")
    return sorted(t for t in re.split(r"[^0-9a-z]+", plain) if t and t not in _NOT_A_NAME)


def name_similarity(payer: str, holder: str) -> float:
    """How alike two names are, 0..1: accents, case, punctuation, legal forms and the order of the
    words ("ROSSI MARIO" and "Mario Rossi", "BIANCHI S.R.L." and "Bianchi srl" are 1.0), then
    difflib's ratio of what is left."""
    a, b = " ".join(name_words(payer)), " ".join(name_words(holder))
    if not a or not b:
        return 0.0
    return SequenceMatcher(None, a, b).ratio()


def _suggestions(entry: Entry, named: tuple[CandidateOrder, ...], lookup: OrderLookup) -> tuple[Suggestion, ...]:
    suggestions = [
        Suggestion(order_number=number, reason="named in the remittance")
        for number in dict.fromkeys(order.order_number for order in named)
    ]
    amount = entry.amount_cents or 0
    payer = entry.debtor_name
    ranked: list[tuple[int, datetime, float, CandidateOrder, str]] = []
    for order in lookup.suggestible(amount, payer):
        reasons = []
        if order.balance_cents == amount:
            reasons.append(f"its balance is the amount paid ({_euros(amount)})")
        elif order.total_cents == amount:
            reasons.append(f"its total is the amount paid ({_euros(amount)})")
        similarity = name_similarity(payer, order.holder_name) if payer and order.holder_name else 0.0
        if similarity >= NAME_SIMILARITY:
            reasons.append(f"holder {order.holder_name!r} like payer {payer!r} ({similarity:.2f})")
        if reasons:
            ranked.append((len(reasons), order.created_at, similarity, order, "; ".join(reasons)))
    ranked.sort(key=lambda row: (row[0], row[1], row[2]), reverse=True)
    seen = {s.order_number for s in suggestions}
    for _, _, _, order, reason in ranked:
        if order.order_number not in seen:
            seen.add(order.order_number)
            suggestions.append(Suggestion(order_number=order.order_number, reason=reason))
    return tuple(suggestions[:MAX_SUGGESTIONS])
