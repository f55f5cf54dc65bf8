"""The FatturaPA invoice of a paid order (P17), pure: every invoice validates against the official
schema and SdI's further rules, reconciles with its order to the cent, and reads back the same
through an independent parser (a38); the checks themselves catch what SdI would refuse."""

import string
from datetime import date, timedelta
from decimal import Decimal

import a38.fattura
import pytest
from a38.validation import Validation
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lxml import etree
from stdnum import luhn
from stdnum.it import codicefiscale

from renewals.billing import Address, BillingData, Seller
from renewals.dates import add_years
from renewals.invoice import (
    InvoiceError,
    InvoiceOrder,
    build_invoice,
    file_progressive,
    problems_of,
    schema_problems,
    sdi_problems,
)
from renewals.pricing import order_lines, quote
from renewals.records import AddonQuantity, DiscountCode, PriceList, Product
from tests.conftest import company_billing, person_billing

SELLER = Seller(
    name="Renewals S.p.A.",
    vat_number="12345670017",
    address=Address(street="Via dei Rinnovi 1", cap="00184", comune="Roma", provincia="RM"),
    iban="IT60X0542811101000000123456",
)
PRICES = PriceList(
    products={
        "service": Product(product="service", label="Fatturazione Elettronica Solo Ricezione", unit_price_cents=2500),
        "extra_storage": Product(product="extra_storage", label="Spazio 1 GB", unit_price_cents=1000, unit_mb=1024),
        "extra_users": Product(product="extra_users", label="Utente aggiuntivo", unit_price_cents=500),
    }
)


def make_order(
    *,
    prices: PriceList = PRICES,
    active: list[AddonQuantity] | None = None,
    cart: list[AddonQuantity] | None = None,
    years: int = 1,
    discount: DiscountCode | None = None,
    method: str = "bank_transfer",
    previous_expiry: date = date(2026, 12, 31),
) -> InvoiceOrder:
    lines = order_lines(prices, active or [], cart or [], years)
    return InvoiceOrder(
        order_number="FE-2026-000042",
        username="acme",
        lines=lines,
        quote=quote(lines, discount),
        discount_code=discount.code if discount else None,
        discount_percent=discount.percent_off if discount else None,
        payment_method=method,  # type: ignore[arg-type]
        period_start=previous_expiry + timedelta(days=1),
        period_end=add_years(previous_expiry, years),
    )


def issue(order: InvoiceOrder, buyer: BillingData, **kwargs):
    values = {"year": 2026, "progressive": 7, "issued_on": date(2026, 11, 27), "file_id": 42} | kwargs
    return build_invoice(order, buyer, SELLER, **values)


def read_with_a38(xml: bytes):
    """The independent reading: a38 builds its own model of the document and validates it."""
    document = a38.fattura.auto_from_etree(etree.fromstring(xml))
    validation = Validation()
    document.validate(validation)
    errors = [str(e) for e in validation.errors]
    # a38 still applies the first reading of SdI's check 00426 (code 0000000 needs a PEC). The
    # specifications since 1.3 allow 0000000 alone for a holder without a channel (a consumer:
    # the invoice waits in the fiscal drawer), and SdI accepts it; every other a38 error counts.
    if buyer_in_fiscal_drawer(document):
        errors = [e for e in errors if "pec_destinatario has no value while codice_destinatario has value" not in e]
    assert errors == []
    return document


def buyer_in_fiscal_drawer(document) -> bool:
    transmission = document.fattura_elettronica_header.dati_trasmissione
    return transmission.codice_destinatario == "0000000" and transmission.pec_destinatario is None


def test_p17_invoice_of_the_readme_order_reads_back_through_a38():
    order = make_order(
        active=[AddonQuantity(addon="extra_users", quantity=2)],
        cart=[AddonQuantity(addon="extra_storage", quantity=1)],
        years=2,
        discount=DiscountCode(code="PARTNER10", percent_off=10, valid_from=date(2026, 1, 1)),
    )
    invoice = issue(order, company_billing())
    assert (invoice.number, invoice.file_name) == ("FT-2026-000007", "IT12345670017_00016.xml")
    document = read_with_a38(invoice.xml)
    header, body = document.fattura_elettronica_header, document.fattura_elettronica_body[0]
    assert document.get_versione() == "FPR12"
    assert header.dati_trasmissione.codice_destinatario == "K7QW2XZ"
    assert header.dati_trasmissione.progressivo_invio == "00016"
    assert header.cessionario_committente.dati_anagrafici.id_fiscale_iva.id_codice == "09876540015"
    general = body.dati_generali.dati_generali_documento
    assert (general.tipo_documento, general.numero, general.data) == ("TD01", "FT-2026-000007", date(2026, 11, 27))
    assert general.importo_totale_documento == Decimal("98.82")  # the README's order: € 98,82
    lines = body.dati_beni_servizi.dettaglio_linee
    assert [(line.prezzo_totale, line.tipo_cessione_prestazione) for line in lines] == [
        (Decimal("50.00"), None),
        (Decimal("20.00"), None),
        (Decimal("20.00"), None),
        (Decimal("-9.00"), "SC"),
    ]
    assert {(line.data_inizio_periodo, line.data_fine_periodo) for line in lines} == {
        (date(2027, 1, 1), date(2028, 12, 31))
    }
    summary = body.dati_beni_servizi.dati_riepilogo[0]
    assert (summary.aliquota_iva, summary.imponibile_importo, summary.imposta) == (
        Decimal("22.00"),
        Decimal("81.00"),
        Decimal("17.82"),
    )
    payment = body.dati_pagamento[0].dettaglio_pagamento[0]
    assert (payment.modalita_pagamento, payment.iban, payment.importo_pagamento) == (
        "MP05",
        SELLER.iban,
        Decimal("98.82"),
    )


@pytest.mark.parametrize(
    ("method", "mode", "iban"),
    [
        ("bank_transfer", "MP05", SELLER.iban),
        ("card", "MP08", None),
        ("paypal", "MP08", None),
        ("postal_slip", "MP18", None),
    ],
)
def test_p17_payment_mode_matches_the_method(method, mode, iban):
    document = read_with_a38(issue(make_order(method=method), person_billing()).xml)
    payment = document.fattura_elettronica_body[0].dati_pagamento[0].dettaglio_pagamento[0]
    assert (payment.modalita_pagamento, payment.iban) == (mode, iban)


def test_p17_person_with_pec_is_named_and_delivered_by_pec():
    header = read_with_a38(issue(make_order(), person_billing()).xml).fattura_elettronica_header
    assert (header.dati_trasmissione.codice_destinatario, header.dati_trasmissione.pec_destinatario) == (
        "0000000",
        "lucia.bianchi@pec.example.it",
    )
    registry = header.cessionario_committente.dati_anagrafici
    assert (registry.anagrafica.nome, registry.anagrafica.cognome, registry.codice_fiscale) == (
        "Lucia",
        "Bianchi",
        "BNCLCU90A41F205Z",
    )
    assert registry.id_fiscale_iva.id_codice is None


def test_p17_file_progressive_is_five_base36_characters_never_repeating():
    assert [file_progressive(n) for n in (1, 35, 36, 36**5 - 1)] == ["00001", "0000Z", "00010", "ZZZZZ"]
    with pytest.raises(ValueError, match="file_id must be 1..60466175, got 60466176"):
        file_progressive(36**5)


def test_p17_a_number_of_another_year_is_refused():
    with pytest.raises(InvoiceError, match="the invoice of 2027-01-01 cannot take a number of 2026"):
        issue(make_order(), company_billing(), issued_on=date(2027, 1, 1))


# ---------------------------------------------------------------------- the checks catch what SdI refuses


def mutate(xml: bytes, path: str, text: str | None = None, *, add: tuple[str, str] | None = None) -> bytes:
    root = etree.fromstring(xml)
    element = root.find(path)
    assert element is not None, path
    if text is not None:
        element.text = text
    if add is not None:
        new = etree.Element(add[0])
        new.text = add[1]
        element.addnext(new)
    return etree.tostring(root)


LINE = "FatturaElettronicaBody/DatiBeniServizi/DettaglioLinee"
SUMMARY = "FatturaElettronicaBody/DatiBeniServizi/DatiRiepilogo"


@pytest.fixture(scope="module")
def valid_xml() -> bytes:
    return issue(make_order(cart=[AddonQuantity(addon="extra_users", quantity=3)]), company_billing()).xml


def test_p17_line_total_within_one_cent_passes_beyond_it_fails(valid_xml):
    assert sdi_problems(mutate(valid_xml, f"{LINE}/PrezzoTotale", "25.01")) == [
        "summary at 22.00 %: ImponibileImporto 40.00 is not the sum of its lines 40.01 (00422, to the cent)"
    ]
    problems = sdi_problems(mutate(valid_xml, f"{LINE}/PrezzoTotale", "25.02"))
    assert "line 1: PrezzoTotale 25.02 is not PrezzoUnitario x Quantita = 25.00 within 0.01 (00423)" in problems


def test_p17_vat_summary_and_document_total_are_checked(valid_xml):
    assert sdi_problems(mutate(valid_xml, f"{SUMMARY}/Imposta", "8.82")) == [
        "summary at 22.00 %: Imposta 8.82 is not ImponibileImporto x AliquotaIVA = 8.80 within 0.01 (00421)",
        "ImportoTotaleDocumento 48.80 is not the summaries' total 48.82",
        "the payments (48.80) do not add up to the document's total 48.82",
    ]
    total = "FatturaElettronicaBody/DatiGenerali/DatiGeneraliDocumento/ImportoTotaleDocumento"
    assert sdi_problems(mutate(valid_xml, total, "48.81")) == [
        "ImportoTotaleDocumento 48.81 is not the summaries' total 48.80"
    ]


def test_p17_only_split_nature_codes_and_only_with_rate_zero(valid_xml):
    zero = mutate(mutate(valid_xml, f"{LINE}/AliquotaIVA", "0.00"), f"{LINE}/AliquotaIVA", add=("Natura", "N2"))
    assert schema_problems(zero) == []  # the schema 1.2.2 still takes N2: only our check stops it
    problems = sdi_problems(zero)
    assert "line 1: Natura N2 is refused by SdI since 2021; use a split code (N2.1, ...)" in problems
    assert "no DatiRiepilogo for the lines at 0.00 % N2 (00419)" in problems
    assert "line 1: AliquotaIVA 0 needs a Natura (00400)" in sdi_problems(
        mutate(valid_xml, f"{LINE}/AliquotaIVA", "0.00")
    )
    with_nature = mutate(valid_xml, f"{LINE}/AliquotaIVA", add=("Natura", "N2.1"))
    assert "line 1: Natura N2.1 goes only with AliquotaIVA 0 (00401)" in sdi_problems(with_nature)


def test_p17_recipient_code_and_reconciliation_with_the_order(valid_xml):
    code = "FatturaElettronicaHeader/DatiTrasmissione/CodiceDestinatario"
    assert sdi_problems(mutate(valid_xml, code, "ABC123")) == [
        "CodiceDestinatario must have 7 characters in an FPR12 invoice, got 'ABC123' (00427)"
    ]
    other = make_order(cart=[AddonQuantity(addon="extra_users", quantity=4)])
    assert problems_of(valid_xml, other) == [
        "ImportoTotaleDocumento 48.80 is not the order's total 54.90",
        "taxable 40.00 is not the order's net less discount",
        "VAT 8.80 is not the order's 9.90",
    ]


def test_p17_schema_violations_are_reported_with_their_line(valid_xml):
    broken = mutate(valid_xml, "FatturaElettronicaHeader/CessionarioCommittente/Sede/CAP", "0018")
    [problem] = schema_problems(broken)
    assert problem.startswith("schema, line ") and "CAP" in problem and "'0018'" in problem


# ---------------------------------------------------------------------- properties


def partita_iva() -> st.SearchStrategy[str]:
    def with_check_digit(number: int, office: int) -> str:
        base = f"{number:07d}{office:03d}"
        return base + luhn.calc_check_digit(base)

    return st.builds(with_check_digit, st.integers(1, 9_999_999), st.integers(1, 100))


def codice_fiscale() -> st.SearchStrategy[str]:
    def with_check(letters: str, year: int, month: str, day: int, town: str) -> str:
        base = f"{letters}{year:02d}{month}{day:02d}{town}"
        return base + codicefiscale.calc_check_digit(base)

    return st.builds(
        with_check,
        st.text(string.ascii_uppercase, min_size=6, max_size=6),
        st.integers(0, 99),
        st.sampled_from("ABCDEHLMPRST"),
        st.integers(1, 28) | st.integers(41, 68),
        st.sampled_from(["H501", "F205", "A944", "L219"]),
    )


# Latin-1 text as the schema takes it: accents, apostrophes, the ampersand and angle brackets.
LATIN = st.characters(
    min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f" + "".join(map(chr, range(0x80, 0xA0)))
)


def text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(LATIN, min_size=1, max_size=max_size).filter(lambda s: s.strip())


def addresses() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {
            "street": text(60),
            "cap": st.text(string.digits, min_size=5, max_size=5),
            "comune": text(60),
            "provincia": st.text(string.ascii_uppercase, min_size=2, max_size=2),
        }
    )


def delivery() -> st.SearchStrategy[dict]:
    code = st.text(string.ascii_uppercase + string.digits, min_size=7, max_size=7)
    pec = st.from_regex(r"\A[a-z0-9_-]{1,10}(\.[a-z0-9_'-]{1,10}){0,2}@pec\.[a-z]{2,10}\.it\Z")
    return st.one_of(
        code.map(lambda c: {"recipient_code": c}),
        pec.map(lambda p: {"pec": p}),
        pec.map(lambda p: {"recipient_code": "0000000", "pec": p}),
        st.just({"recipient_code": "0000000"}),
    )


def buyers() -> st.SearchStrategy[BillingData]:
    company = st.fixed_dictionaries(
        {"holder_type": st.just("company"), "company_name": text(80), "vat_number": partita_iva()},
        optional={"tax_code": partita_iva()},
    )
    person = st.fixed_dictionaries(
        {"holder_type": st.just("person"), "first_name": text(60), "last_name": text(60)},
        optional={"tax_code": codice_fiscale(), "vat_number": partita_iva()},
    ).filter(lambda p: "tax_code" in p or "vat_number" in p)
    return st.builds(
        lambda who, address, channel: BillingData.model_validate({**who, "address": address, **channel}),
        company | person,
        addresses(),
        delivery(),
    )


def price_lists() -> st.SearchStrategy[PriceList]:
    price = st.integers(0, 50_000) | st.sampled_from([1, 5, 45, 99, 2500])
    return st.builds(
        lambda service, storage, users, label: PriceList(
            products={
                "service": Product(product="service", label=label, unit_price_cents=service),
                "extra_storage": Product(product="extra_storage", label="Spazio", unit_price_cents=storage),
                "extra_users": Product(product="extra_users", label="Utenti", unit_price_cents=users),
            }
        ),
        price,
        price,
        price,
        st.text(min_size=1, max_size=300),  # any text: a label is the price list's, not checked at import
    )


ADDONS = st.lists(
    st.builds(AddonQuantity, addon=st.sampled_from(["extra_storage", "extra_users"]), quantity=st.integers(1, 1000)),
    max_size=2,
    unique_by=lambda a: a.addon,
)
DISCOUNTS = st.none() | st.builds(
    DiscountCode,
    code=st.from_regex(r"\A[A-Z0-9_-]{1,32}\Z"),
    percent_off=st.integers(1, 100),
    valid_from=st.just(date(2020, 1, 1)),
    product=st.sampled_from([None, "service", "extra_storage", "extra_users"]),
)


@settings(max_examples=300, deadline=None)
@given(
    prices=price_lists(),
    active=ADDONS,
    cart=ADDONS,
    years=st.integers(1, 10),
    discount=DISCOUNTS,
    method=st.sampled_from(["card", "paypal", "bank_transfer", "postal_slip"]),
    buyer=buyers(),
    previous_expiry=st.dates(date(2000, 1, 1), date(2090, 12, 31)),
    progressive=st.integers(1, 999_999),
    file_id=st.integers(1, 36**5 - 1),
    issued_on=st.dates(date(2020, 1, 1), date(2099, 12, 31)),
)
# Rounding edges: a half cent of discount (5 × 10 % = 0.5) and of VAT (0.5 × 22 % per 50 cents).
@example(
    prices=PRICES.model_copy(
        update={"products": {**PRICES.products, "service": Product(product="service", label="s", unit_price_cents=5)}}
    ),
    active=[],
    cart=[],
    years=1,
    discount=DiscountCode(code="HALF", percent_off=10, valid_from=date(2020, 1, 1)),
    method="card",
    buyer=company_billing(),
    previous_expiry=date(2028, 2, 29),
    progressive=1,
    file_id=1,
    issued_on=date(2026, 12, 31),
)
def test_p17_every_invoice_validates_and_reconciles_to_the_cent(
    prices, active, cart, years, discount, method, buyer, previous_expiry, progressive, file_id, issued_on
):
    order = make_order(
        prices=prices,
        active=active,
        cart=cart,
        years=years,
        discount=discount,
        method=method,
        previous_expiry=previous_expiry,
    )
    invoice = build_invoice(
        order, buyer, SELLER, year=issued_on.year, progressive=progressive, issued_on=issued_on, file_id=file_id
    )
    assert problems_of(invoice.xml, order) == []
    root = etree.fromstring(invoice.xml)
    cents = lambda path: sum(int(Decimal(e.text) * 100) for e in root.iterfind(path))  # noqa: E731
    body = "FatturaElettronicaBody/"
    assert cents(body + "DatiGenerali/DatiGeneraliDocumento/ImportoTotaleDocumento") == order.quote.total_cents
    assert (
        cents(body + "DatiBeniServizi/DettaglioLinee/PrezzoTotale")
        == order.quote.net_cents - order.quote.discount_cents
    )
    assert cents(body + "DatiBeniServizi/DatiRiepilogo/Imposta") == order.quote.vat_cents
    lines = root.findall(body + "DatiBeniServizi/DettaglioLinee")
    assert len(lines) == len(order.lines) + (1 if order.quote.discount_cents else 0)
    assert {(line.findtext("DataInizioPeriodo"), line.findtext("DataFinePeriodo")) for line in lines} == {
        (order.period_start.isoformat(), order.period_end.isoformat())
    }


@settings(max_examples=100, deadline=None)
@given(buyer=buyers(), discount=DISCOUNTS, years=st.integers(1, 10), cart=ADDONS)
def test_p17_a38_reads_every_invoice_as_we_wrote_it(buyer, discount, years, cart):
    order = make_order(cart=cart, years=years, discount=discount)
    invoice = issue(order, buyer)
    document = read_with_a38(invoice.xml)
    header, body = document.fattura_elettronica_header, document.fattura_elettronica_body[0]
    assert body.dati_generali.dati_generali_documento.importo_totale_documento * 100 == order.quote.total_cents
    assert header.dati_trasmissione.codice_destinatario == buyer.delivery_code
    registry = header.cessionario_committente.dati_anagrafici
    assert registry.codice_fiscale == buyer.tax_code
    assert (registry.anagrafica.denominazione or f"{registry.anagrafica.nome} {registry.anagrafica.cognome}") == (
        buyer.display_name
    )
