"""The courtesy copy of an invoice (P17): a PDF read from the invoice's XML, showing the customer
the number, date, parties, lines, VAT and total in Italian, the same bytes every time."""

import copy
import re
from datetime import date

from lxml import etree

from renewals.courtesy_copy import courtesy_file_name, courtesy_pdf
from renewals.records import AddonQuantity, DiscountCode
from tests.conftest import company_billing, person_billing
from tests.unit.test_invoice import issue, make_order

PARTNER10 = DiscountCode(code="PARTNER10", percent_off=10, valid_from=date(2026, 1, 1))
# A literal string shown with Tj in an uncompressed content stream; fpdf2 escapes \, ( and ).
SHOWN = re.compile(rb"\(((?:[^\\()]|\\.)*)\) Tj")


def shown_strings(pdf: bytes) -> list[str]:
    """Every piece of text the page shows, in drawing order (core fonts: cp1252 bytes)."""
    return [re.sub(rb"\\(.)", rb"\1", raw).decode("cp1252") for raw in SHOWN.findall(pdf)]


def page_text(pdf: bytes) -> str:
    """The page's text on one line: a wrapped cell reads back as the sentence it was."""
    return " ".join(" ".join(shown_strings(pdf)).split())


def descriptions(xml: bytes) -> list[str]:
    return [" ".join(text.split()) for text in etree.fromstring(xml).xpath("//DettaglioLinee/Descrizione/text()")]


def test_p17_courtesy_copy_of_a_company_invoice_shows_what_was_sent():
    order = make_order(
        active=[AddonQuantity(addon="extra_users", quantity=2)],
        cart=[AddonQuantity(addon="extra_storage", quantity=1)],
        years=2,
        discount=PARTNER10,
    )
    invoice = issue(order, company_billing())
    pdf = courtesy_pdf(invoice.xml, compress=False)
    text = page_text(pdf)

    assert pdf.startswith(b"%PDF-") and b"/Count 1" in pdf  # one page
    for shown in [
        "Copia di cortesia – Fattura elettronica",
        "Documento privo di valenza fiscale ai sensi dell'art. 21 del D.P.R. 633/1972",
        "FT-2026-000007",
        "27/11/2026",
        "Renewals S.p.A. Partita IVA: IT12345670017",
        "Rossi Servizi S.r.l. Partita IVA: IT09876540015 Via Nazionale 10 00184 Roma (RM)",
        "Codice Destinatario: K7QW2XZ",
        "€ 50,00 22 % € 50,00",  # the service: 1 × 2 years
        "2 € 10,00 22 % € 20,00",  # two extra users
        "€ -9,00 22 % € -9,00",  # the discount line
        "22 % € 81,00 € 17,82 immediata",
        "Totale documento € 98,82",
        "Modalità: Bonifico, importo € 98,82, scadenza 27/11/2026",
        "IBAN: IT60 X054 2811 1010 0000 0123 456",
    ]:
        assert shown in text
    lines = descriptions(invoice.xml)
    assert len(lines) == 4 and "Sconto codice convenzione PARTNER10 (10 %)" in lines
    for description in lines:
        assert description in text
    # The service's description is longer than its column: wrapped onto two rows, not cut.
    assert lines[0] not in shown_strings(pdf)


def test_p17_courtesy_copy_of_a_long_invoice_goes_on_with_its_headings_on_each_page():
    invoice = issue(make_order(years=2), company_billing())
    root = etree.fromstring(invoice.xml)
    goods = root.find("FatturaElettronicaBody/DatiBeniServizi")
    for _ in range(70):
        goods.insert(1, copy.deepcopy(goods.find("DettaglioLinee")))
    pdf = courtesy_pdf(etree.tostring(root), compress=False)
    pages = int(re.search(rb"/Count (\d+)", pdf).group(1))
    shown = shown_strings(pdf)

    assert pages >= 3
    # The lines' headings open the table and every page it continues on; every line is there.
    assert shown.count("Descrizione") in (pages - 1, pages)  # the last page may hold only the totals
    assert page_text(pdf).count(descriptions(invoice.xml)[0]) == 71


def test_p17_courtesy_copy_of_a_person_names_her_tax_code_and_pec():
    order = make_order(active=[AddonQuantity(addon="extra_users", quantity=1)], discount=PARTNER10, method="card")
    invoice = issue(order, person_billing())
    pdf = courtesy_pdf(invoice.xml, compress=False)
    text = page_text(pdf)

    for shown in [
        "FT-2026-000007",
        "27/11/2026",
        "Lucia Bianchi Codice Fiscale: BNCLCU90A41F205Z",
        "Codice Destinatario: 0000000 PEC: lucia.bianchi@pec.example.it",
        "Sconto codice convenzione PARTNER10 (10 %)",
        "Totale documento € 32,94",  # (25 + 5 - 3) + 22 %
        "Modalità: Carta di pagamento, importo € 32,94",
    ]:
        assert shown in text
    for description in descriptions(invoice.xml):
        assert description in text
    assert text.count("Partita IVA") == 1  # the seller's: a consumer has none
    assert "IBAN" not in text


def test_p17_courtesy_copy_is_the_same_bytes_every_time():
    invoice = issue(make_order(cart=[AddonQuantity(addon="extra_storage", quantity=3)]), company_billing())
    first = courtesy_pdf(invoice.xml)
    assert first.startswith(b"%PDF-")
    assert courtesy_pdf(invoice.xml) == first
    # Dated by the invoice, not by the clock that rendered it.
    assert b"/CreationDate (D:20261127000000Z" in courtesy_pdf(invoice.xml, compress=False)


def test_p17_courtesy_copy_is_named_after_its_invoice_file():
    assert courtesy_file_name("IT12345670017_0000A.xml") == "IT12345670017_0000A.pdf"
