"""camt.053.001.02 statements of our own making (P19), in the shape a bank writes them: what the
tests, the fault test and the benchmark import, and an example for ops (docs/statements.md). The
reader (`renewals/statements.py`) never trusts this module: what it writes is validated against the
official schema like any bank's file."""

from datetime import date
from xml.sax.saxutils import escape

from renewals import invoice  # camt writes amounts as FatturaPA does: 30.50
from renewals.creditor_reference import causale, creditor_reference, printed

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
# The provider's collection account (renewals/payments.py IBAN, a dev placeholder).
ACCOUNT = "IT60X0542811101000000123456"
BOOKED_ON = date(2026, 3, 2)

# One TxDtls: its own amount (None: none written), its Ustrd lines, its Strd creditor references.
Transaction = tuple[int | None, tuple[str, ...], tuple[str, ...]]


def _details(cents: int | None, lines: tuple[str, ...], refs: tuple[str, ...], currency: str, debtor: str) -> str:
    amount = f'<AmtDtls><TxAmt><Amt Ccy="{currency}">{invoice.amount(cents)}</Amt></TxAmt></AmtDtls>' if cents else ""
    remittance = "".join(f"<Ustrd>{escape(line)}</Ustrd>" for line in lines) + "".join(
        f"<Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry></Tp><Ref>{escape(r)}</Ref></CdtrRefInf></Strd>"
        for r in refs
    )
    return (
        f"<TxDtls>{amount}<RltdPties><Dbtr><Nm>{escape(debtor)}</Nm></Dbtr></RltdPties>"
        f"{f'<RmtInf>{remittance}</RmtInf>' if remittance else ''}</TxDtls>"
    )


def ntry(
    ref: str,
    amount_cents: int,
    *,
    ustrd: tuple[str, ...] = (),
    strd: tuple[str, ...] = (),
    credit_debit: str = "CRDT",
    reversal: bool = False,
    currency: str = "EUR",
    debtor: str = "ROSSI MARIO",
    info: str | None = None,
    booked_on: date = BOOKED_ON,
    transactions: tuple[Transaction, ...] | None = None,
) -> str:
    """One Ntry, keyed by the bank's reference `ref` (AcctSvcrRef): `transactions` gives several
    TxDtls, each (amount, Ustrd lines, Strd references); else one TxDtls with `ustrd` and `strd`."""
    parts = transactions if transactions is not None else ((None, ustrd, strd),)
    return (
        f'<Ntry><Amt Ccy="{currency}">{invoice.amount(amount_cents)}</Amt><CdtDbtInd>{credit_debit}</CdtDbtInd>'
        f"{'<RvslInd>true</RvslInd>' if reversal else ''}<Sts>BOOK</Sts>"
        f"<BookgDt><Dt>{booked_on}</Dt></BookgDt><ValDt><Dt>{booked_on}</Dt></ValDt>"
        f"<AcctSvcrRef>{escape(ref)}</AcctSvcrRef>"
        "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>"
        f"<NtryDtls>{''.join(_details(*part, currency, debtor) for part in parts)}</NtryDtls>"
        f"{f'<AddtlNtryInf>{escape(info)}</AddtlNtryInf>' if info else ''}</Ntry>"
    )


def statement(*entries: str, account: str = ACCOUNT, message_id: str = "TEST-1", booked_on: date = BOOKED_ON) -> bytes:
    """A whole camt.053.001.02 file: one statement of `account` holding `entries` (from `ntry`).
    `message_id` is the file's MsgId: at most 35 characters, as the schema says."""
    created = f"{booked_on}T23:30:00+01:00"
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Document xmlns="{NAMESPACE}"><BkToCstmrStmt>'
        f"<GrpHdr><MsgId>{escape(message_id)}</MsgId><CreDtTm>{created}</CreDtTm></GrpHdr>"
        f"<Stmt><Id>STMT-{escape(message_id[-30:])}</Id><CreDtTm>{created}</CreDtTm>"
        f"<Acct><Id><IBAN>{account}</IBAN></Id><Ccy>EUR</Ccy></Acct>"
        '<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">0.00</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
        f"<Dt><Dt>{booked_on}</Dt></Dt></Bal>"
    )
    return (head + "".join(entries) + "</Stmt></BkToCstmrStmt></Document>").encode()


# ---------------------------------------------------------------------- how payers write them


def spell(number: str, how: int) -> str:
    """Order `number` (FE-<year>-<6 digits>) as payers write it in a transfer's reason, spelling
    `how` of SPELLING_COUNT: the order number in its forms, the RF reference, the causale."""
    year, progressive = number[3:7], int(number[8:])
    reference = creditor_reference(number)
    return [
        number,
        number.lower(),
        f"FE {year} {progressive}",
        f"FE{year}{progressive:06d}",
        f"FE/{year}/{progressive}",
        f"FE-{year}-\n{progressive:06d}",
        f"FE - {year} - {progressive:06d}",
        f"ordine {progressive}/{year}",
        f"ORDINE N. {progressive}/{year}",
        f"ord. n. {progressive} del {year}",
        f"n. ordine {year}/{progressive}",
        f"{year}/{progressive:06d}",
        printed(reference),
        reference.lower(),
        printed(reference).replace(" ", "\n", 2),
        causale(number),
    ][how]


SPELLING_COUNT = 16


def quoted(amount: int, how: int) -> str:
    """An amount as payers quote it beside an order in a split transfer, form `how` of 4."""
    euros, rest = divmod(amount, 100)
    whole = f"{euros:,}".replace(",", ".")
    return [
        f"EUR {whole},{rest:02d}",
        f"€ {whole},{rest:02d}",
        f"{euros}.{rest:02d} euro",
        f"importo {euros},{rest:02d}",
    ][how]
