"""Bank statements read (P19): a camt.053 statement as an Italian bank sends it through CBI, its
keys, the entries that can never be payments, and the files refused whole."""

import copy
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from lxml import etree

from renewals.statements import (
    MAX_STATEMENT_BYTES,
    StatementRefused,
    read_statement,
    schema,
)

SAMPLE = Path(__file__).parent.parent / "data" / "camt053" / "cbi-2026-03-02.xml"
NS = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
IBAN = "IT60X0542811101000000123456"
TODAY = date(2026, 3, 3)


def sample() -> bytes:
    return SAMPLE.read_bytes()


def q(path: str) -> str:
    return "/".join(f"{{{NS}}}{step}" for step in path.split("/"))


def with_entries(*changes) -> bytes:
    """The sample statement with one extra entry per change: a copy of its first entry (a credit of
    EUR 30,50 with an RF reference) given a new AcctSvcrRef and changed by the function."""
    root = etree.fromstring(sample())
    statement = root.find(q("BkToCstmrStmt/Stmt"))
    first = statement.find(q("Ntry"))
    for index, change in enumerate(changes):
        entry = copy.deepcopy(first)
        entry.find(q("AcctSvcrRef")).text = f"ODD{index:04d}"
        change(entry)
        statement.append(entry)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def set_text(path: str, value: str):
    def change(entry):
        entry.find(q(path)).text = value

    return change


def only(entries, ref: str):
    (found,) = [e for e in entries if e.bank_reference == ref]
    return found


# ---------------------------------------------------------------------- the bank's statement


def test_p19_the_italian_bank_statement_is_valid_against_the_official_schema():
    assert schema("camt.053.001.02").validate(etree.parse(str(SAMPLE)))


def test_p19_statement_and_account_are_read():
    read = read_statement(sample(), today=TODAY)
    assert read.version == "camt.053.001.02"
    assert read.message_id == "CBI-05428-20260303-0000417"
    assert read.created_at == datetime(2026, 3, 3, 5, 30, 12, tzinfo=UTC)
    (statement,) = read.statements
    assert (statement.id, statement.account, statement.account_iban, statement.currency, statement.sequence) == (
        "0542811101-20260302-061",
        IBAN,
        IBAN,
        "EUR",
        "61",
    )
    assert len(statement.entries) == 9


def test_p19_each_entry_says_what_the_bank_and_the_payer_wrote():
    entries = read_statement(sample(), today=TODAY).entries
    rf = entries[0]
    assert (rf.amount_cents, rf.currency, rf.credit_debit, rf.status) == (3050, "EUR", "CRDT", "BOOK")
    assert not rf.reversal
    assert (rf.booked_on, rf.value_on) == (date(2026, 3, 2), date(2026, 3, 2))
    assert rf.references == ("RF462026000123",)
    assert rf.debtor_name == "ROSSI MARIO"
    assert rf.transactions[0].end_to_end_id == "NOTPROVIDED"
    assert rf.transactions[0].amount_cents == 3050
    assert rf.info == "BONIFICO SEPA A VOSTRO FAVORE DA ROSSI MARIO"
    assert rf.payable and rf.not_a_payment is None
    assert entries[1].text == "Rinnovo fatturazione elettronica solo ricezione fe 2026 124"
    assert entries[1].debtor_name == "BIANCHI COSTRUZIONI S.R.L."
    # Two Ustrd lines are one text, joined with a space.
    assert entries[8].text == "RINNOVO SERVIZIO FATTURE ORDINE FE-2026- 000130 GALLO ELISABETTA"


def test_p19_debit_reversal_and_other_currency_are_read_as_never_payments():
    entries = read_statement(sample(), today=TODAY).entries
    fee, reversal, dollars = entries[4], entries[5], entries[6]
    assert fee.not_a_payment == "a debit"
    assert reversal.reversal and reversal.not_a_payment == "a debit; a reversal (RvslInd)"
    assert (dollars.currency, dollars.amount_cents) == ("USD", 4500)
    assert dollars.not_a_payment == "currency USD, not EUR"
    assert [e.payable for e in entries] == [True, True, True, True, False, False, False, True, True]


def test_p19_every_entry_has_one_key_and_a_reimport_gives_the_same_keys():
    first = read_statement(sample(), today=TODAY).entries
    again = read_statement(sample(), today=date(2026, 3, 10)).entries
    assert [e.key for e in first] == [e.key for e in again]
    assert [e.transaction_id for e in first] == [e.transaction_id for e in again]
    assert len({e.key for e in first}) == len(first)
    assert first[0].key == f"{IBAN}:AcctSvcrRef:2026030205428000001"
    assert first[0].key_source == "AcctSvcrRef"
    # No AcctSvcrRef: the NtryRef with the account and the booking date.
    assert first[2].key == f"{IBAN}:NtryRef:2026-03-02:000003"
    assert first[2].key_source == "NtryRef"
    for entry in first:
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", entry.transaction_id)
        assert len(f"{entry.transaction_id}:FE-2026-000123") <= 64


def test_p19_the_remittance_is_what_the_payer_wrote_on_one_line():
    entries = read_statement(sample(), today=TODAY).entries
    assert entries[0].remittance == "RF462026000123"
    assert entries[8].remittance == "RINNOVO SERVIZIO FATTURE ORDINE FE-2026- 000130 GALLO ELISABETTA"
    assert entries[4].remittance == "COMMISSIONI SU BONIFICI IN ENTRATA FEBBRAIO 2026"
    for entry in entries:
        assert "\n" not in entry.remittance


# ---------------------------------------------------------------------- odd entries, recorded


def amount(value: str):
    return set_text("Amt", value)


def currency(code: str):
    def change(entry):
        entry.find(q("Amt")).set("Ccy", code)

    return change


def booked(day: str):
    return set_text("BookgDt/Dt", day)


def ustrd(text: str):
    def change(entry):
        information = entry.find(q("NtryDtls/TxDtls/RmtInf"))
        line = etree.SubElement(information, q("Ustrd"))
        line.text = text
        information.insert(0, line)  # Ustrd comes before Strd

    return change


def reversed_credit(entry):
    indicator = etree.Element(q("RvslInd"))
    indicator.text = "true"
    entry.find(q("CdtDbtInd")).addnext(indicator)


def pending(entry):
    entry.find(q("Sts")).text = "PDNG"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (amount("0.00"), "amount is zero"),
        (amount("-30.50"), "amount -30.50 is negative"),
        (amount("30.505"), "amount 30.505 has a fraction of a cent"),
        (amount("1000000.01"), "over the ledger's limit"),
        (currency("USD"), "currency USD, not EUR"),
        (set_text("CdtDbtInd", "DBIT"), "a debit"),
        (reversed_credit, "a reversal (RvslInd)"),
        (booked("2026-03-04"), "booked on 2026-03-04, after today (2026-03-03)"),
        (pending, "status PDNG, not booked (BOOK)"),
        (set_text("NtryDtls/TxDtls/RmtInf/Strd/CdtrRefInf/Ref", "R" * 140), "structured reference of 140 characters"),
        (ustrd("X" * 141), "remittance text of 141 characters, over 140"),
    ],
)
def test_p19_odd_entries_are_read_with_their_reason_and_the_rest_of_the_file_too(change, reason):
    entries = read_statement(with_entries(change), today=TODAY).entries
    assert len(entries) == 10
    odd = only(entries, "ODD0000")
    assert odd.not_a_payment is not None and reason in odd.not_a_payment
    assert not odd.payable
    assert [e.payable for e in entries[:9]] == [True, True, True, True, False, False, False, True, True]


def test_p19_an_entry_that_breaks_the_schema_names_the_schema_and_its_line():
    entries = read_statement(with_entries(amount("-30.50"), amount("1e3")), today=TODAY).entries
    negative, exponent = only(entries, "ODD0000"), only(entries, "ODD0001")
    assert "not valid against camt.053.001.02.xsd: line" in negative.not_a_payment
    assert exponent.amount_cents is None
    assert "amount '1e3' is not a decimal number" in exponent.not_a_payment


def test_p19_a_140_character_remittance_text_is_within_the_limit():
    entries = read_statement(with_entries(ustrd("Y" * 140)), today=TODAY).entries
    assert only(entries, "ODD0000").payable


def test_p19_a_pending_entry_and_its_booking_later_are_two_keys():
    entries = read_statement(with_entries(pending), today=TODAY).entries
    assert only(entries, "ODD0000").key == f"{IBAN}:AcctSvcrRef:ODD0000:PDNG"
    assert read_statement(with_entries(lambda e: None), today=TODAY).entries[9].key == f"{IBAN}:AcctSvcrRef:ODD0000"


def test_p19_entries_without_a_bank_reference_are_keyed_by_what_they_say_and_their_rank():
    def anonymous(entry):
        entry.remove(entry.find(q("AcctSvcrRef")))
        entry.remove(entry.find(q("NtryRef")))

    def other(entry):
        anonymous(entry)
        entry.find(q("Amt")).text = "61.00"

    body = with_entries(anonymous, anonymous, other)
    entries = read_statement(body, today=TODAY).entries[9:]
    assert [e.key_source for e in entries] == ["content"] * 3
    assert entries[0].key.endswith(":1") and entries[1].key.endswith(":2") and entries[2].key.endswith(":1")
    assert len({e.key for e in entries}) == 3
    assert [e.key for e in read_statement(body, today=TODAY).entries[9:]] == [e.key for e in entries]


def test_p19_one_bank_reference_on_two_different_entries_is_left_to_ops():
    def same_reference(entry):
        entry.find(q("AcctSvcrRef")).text = "2026030205428000001"
        entry.find(q("Amt")).text = "61.00"

    entries = read_statement(with_entries(same_reference), today=TODAY).entries
    assert entries[0].payable
    assert "repeats with other details" in entries[9].not_a_payment
    assert entries[9].key != entries[0].key


def test_p19_the_same_entry_listed_twice_is_one_key():
    entries = read_statement(with_entries(set_text("AcctSvcrRef", "2026030205428000001")), today=TODAY).entries
    assert entries[9].key == entries[0].key and entries[9].payable


# ---------------------------------------------------------------------- camt.053.001.08

V08 = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">
  <BkToCstmrStmt>
    <GrpHdr><MsgId>V08-20260302</MsgId><CreDtTm>2026-03-03T06:30:00</CreDtTm></GrpHdr>
    <Stmt>
      <Id>V08-STMT-1</Id>
      <Acct><Id><IBAN>IT60X0542811101000000123456</IBAN></Id><Ccy>EUR</Ccy></Acct>
      <Bal>
        <Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp>
        <Amt Ccy="EUR">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-03-02</Dt></Dt>
      </Bal>
      <Ntry>
        <Amt Ccy="EUR">30.50</Amt>
        <CdtDbtInd>CRDT</CdtDbtInd>
        <Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><DtTm>2026-03-02T10:15:00+01:00</DtTm></BookgDt>
        <ValDt><Dt>2026-03-02</Dt></ValDt>
        <AcctSvcrRef>V08-0001</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls>
          <TxDtls>
            <Refs><EndToEndId>E2E-V08</EndToEndId></Refs>
            <Amt Ccy="EUR">30.50</Amt>
            <RltdPties><Dbtr><Pty><Nm>Romano Chiara</Nm></Pty></Dbtr></RltdPties>
            <RmtInf><Ustrd>RF46 2026 0001 23 - FE-2026-000123</Ustrd></RmtInf>
          </TxDtls>
        </NtryDtls>
      </Ntry>
    </Stmt>
  </BkToCstmrStmt>
</Document>
"""


def test_p19_a_camt_053_001_08_statement_is_read_the_same_way():
    assert schema("camt.053.001.08").validate(etree.fromstring(V08.encode()))
    read = read_statement(V08.encode(), today=TODAY)
    assert read.version == "camt.053.001.08"
    (entry,) = read.entries
    assert (entry.status, entry.amount_cents, entry.booked_on, entry.payable) == ("BOOK", 3050, date(2026, 3, 2), True)
    assert entry.debtor_name == "Romano Chiara"
    assert entry.transactions[0].amount_cents == 3050
    assert entry.text == "RF46 2026 0001 23 - FE-2026-000123"
    # A time without an offset is Rome's.
    assert read.created_at == datetime(2026, 3, 3, 5, 30, tzinfo=UTC)


# ---------------------------------------------------------------------- files refused whole

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE Document [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><GrpHdr>
<MsgId>&lol9;</MsgId></GrpHdr></BkToCstmrStmt></Document>
"""


def external_entity(tmp_path: Path) -> bytes:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-PASSWORD")
    return (
        sample()
        .replace(b"<Document ", f'<!DOCTYPE Document [<!ENTITY x SYSTEM "file://{secret}">]>\n<Document '.encode(), 1)
        .replace(b"<MsgId>CBI-05428-20260303-0000417</MsgId>", b"<MsgId>&x;</MsgId>")
    )


def external_dtd(tmp_path: Path) -> bytes:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY x "TOP-SECRET-PASSWORD">')
    return sample().replace(b"<Document ", f'<!DOCTYPE Document SYSTEM "file://{dtd}">\n<Document '.encode(), 1)


def utf16(body: bytes) -> bytes:
    return body.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="UTF-16"?>').decode().encode("utf-16")


def other_namespace(version: str) -> bytes:
    return sample().replace(NS.encode(), f"urn:iso:std:iso:20022:tech:xsd:{version}".encode())


def without(element: str) -> bytes:
    return re.sub(rf"<{element}>.*?</{element}>".encode(), b"", sample(), count=1, flags=re.S)


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda tmp: b"", "statement is empty"),
        (lambda tmp: b"   \n", "statement is empty"),
        (lambda tmp: b"MsgId;Amount\nCBI-1;30.50\n", "statement is not well-formed XML"),
        (lambda tmp: b"\x89PNG\r\n\x1a\n\x00\x00", "statement is not well-formed XML"),
        (lambda tmp: sample()[: len(sample()) // 2], "statement is not well-formed XML"),
        (lambda tmp: BILLION_LAUGHS, "statement carries a DOCTYPE: DTDs and entities are refused"),
        # In UTF-16 the DOCTYPE is not seen before parsing: libxml2 refuses the expansion itself.
        (lambda tmp: utf16(BILLION_LAUGHS), "statement is not well-formed XML"),
        (external_entity, "statement carries a DOCTYPE: DTDs and entities are refused"),
        (external_dtd, "statement carries a DOCTYPE: DTDs and entities are refused"),
        (lambda tmp: other_namespace("camt.054.001.02"), "not a camt.053.001.02 or camt.053.001.08 statement"),
        (lambda tmp: other_namespace("camt.053.001.04"), "root element Document in camt.053.001.04"),
        (lambda tmp: b"<Document><BkToCstmrStmt/></Document>", "root element Document in no namespace"),
        (
            lambda tmp: (Path(__file__).parents[2] / "renewals" / "fatturapa" / "FatturaPA_v1.2.2.xsd").read_bytes(),
            "not a camt.053.001.02 or camt.053.001.08 statement: root element schema",
        ),
        (lambda tmp: without("MsgId"), "statement is not valid against camt.053.001.02.xsd: line"),
        (lambda tmp: without("Acct"), "statement is not valid against camt.053.001.02.xsd: line"),
    ],
)
def test_p19_a_file_that_is_not_a_statement_is_refused_with_one_line(tmp_path, make, said):
    with pytest.raises(StatementRefused) as refused:
        read_statement(make(tmp_path), today=TODAY)
    message = str(refused.value)
    assert said in message
    assert "\n" not in message and len(message) < 400
    assert "TOP-SECRET" not in message and "lollol" not in message
    assert isinstance(refused.value, ValueError)


def test_p19_a_statement_in_utf_16_is_read():
    body = sample().decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert [e.key for e in read_statement(body, today=TODAY).entries] == [
        e.key for e in read_statement(sample(), today=TODAY).entries
    ]


def test_p19_a_50_mb_file_is_refused_before_it_is_parsed(monkeypatch):
    big = b"<Document>" + b" " * (50 * 1000 * 1000) + b"</Document>"

    def never(*args, **kwargs):
        raise AssertionError("a file over the limit reached the XML parser")

    monkeypatch.setattr(etree, "fromstring", never)  # what renewals.statements parses with
    refused = rf"statement of {len(big)} bytes is over the {MAX_STATEMENT_BYTES}-byte limit"
    with pytest.raises(StatementRefused, match=refused):
        read_statement(big, today=TODAY)


def test_p19_a_statement_of_2000_entries_gives_each_its_own_key():
    """Its speed is `make bench-statements`'s to measure; here, that no entry is lost or merged."""
    root = etree.fromstring(sample())
    statement = root.find(q("BkToCstmrStmt/Stmt"))
    first = statement.find(q("Ntry"))
    for index in range(2000):
        entry = copy.deepcopy(first)
        entry.find(q("AcctSvcrRef")).text = f"BULK{index:06d}"
        statement.append(entry)
    entries = read_statement(etree.tostring(root), today=TODAY).entries
    assert len(entries) == 2009 and len({e.key for e in entries}) == 2009


def test_p19_two_statements_in_one_file_are_read_and_keyed_together():
    root = etree.fromstring(sample())
    first = root.find(q("BkToCstmrStmt/Stmt"))
    for entry in first.findall(q("Ntry"))[:2]:
        entry.remove(entry.find(q("AcctSvcrRef")))
        entry.remove(entry.find(q("NtryRef")))
    second = copy.deepcopy(first)
    second.find(q("Id")).text = "0542811101-20260302-062"
    first.addnext(second)
    read = read_statement(etree.tostring(root), today=TODAY)
    assert [s.id for s in read.statements] == ["0542811101-20260302-061", "0542811101-20260302-062"]
    one, two = read.statements
    # The same entry with the bank's reference in both: one key. Without one: told apart by rank.
    assert [e.key for e in one.entries[2:]] == [e.key for e in two.entries[2:]]
    assert [e.key[-2:] for e in one.entries[:2]] == [":1", ":1"]
    assert [e.key[-2:] for e in two.entries[:2]] == [":2", ":2"]
