"""The electronic invoice of a paid renewal (P17): FatturaPA 1.2.2, format FPR12, type TD01.

Pure: `build_invoice` turns an order, the holder's billing data, the seller, the number and the
date into the XML and its SdI file name, then checks it against the official schema (our copy in
`renewals/fatturapa/`, offline) and against the rules SdI applies that a schema cannot express
(`sdi_problems`), and that it reconciles with the order to the cent. An invoice that fails any of
them is never returned. Storage and numbering are `db/invoices.py`'s.

Built with lxml rather than xsdata-generated models: the document is one fixed shape of about 60
elements, the element order is the schema's and is checked by the schema on every invoice anyway,
and generated bindings would add a code generator and 200+ classes to the project for it.

Layout choices (each one reconciles to the cent with `pricing.quote`):
- one line per order line (the service, each add-on): `Quantita` is the quantity, `PrezzoUnitario`
  the price of one unit for the whole renewed period (yearly price × years), `PrezzoTotale` the
  line's net; `DataInizioPeriodo`/`DataFinePeriodo` is the renewed period;
- the discount as an amount: one more line of type SC (sconto), negative, at 22 %, so the lines
  add up to the discounted net and the VAT summary is that net at 22 % half-up (P6);
- `ModalitaPagamento` from the payment method: bank transfer MP05 with the seller's IBAN, card
  MP08, PayPal MP08 (the customer pays at checkout with a card or a PayPal balance — an e-money
  instrument, not a transfer to our account, so there is no IBAN to quote), postal slip MP18.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path

from lxml import etree
from pydantic import BaseModel, ConfigDict

from renewals.billing import NO_RECIPIENT_CODE, Address, BillingData, Seller
from renewals.pricing import VAT_PERCENT
from renewals.records import OrderLine, Quote
from renewals.types import PaymentMethod

SCHEMA_PATH = Path(__file__).resolve().parent / "fatturapa" / "FatturaPA_v1.2.2.xsd"
NAMESPACE = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.2"
FORMAT = "FPR12"
DOCUMENT_TYPE = "TD01"
PAYMENT_MODE: dict[PaymentMethod, str] = {
    "bank_transfer": "MP05",
    "card": "MP08",
    "paypal": "MP08",
    "postal_slip": "MP18",
}
# SdI refuses the bare nature codes since 2021; the schema 1.2.2 still lists them.
BARE_NATURE_CODES = frozenset({"N2", "N3", "N6"})
# The file name's progressive is at most 5 alphanumeric characters and must never repeat for a
# sender (SdI refuses a file name it has seen): a global counter in base 36, 60 466 175 files.
FILE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FILE_PROGRESSIVE_LENGTH = 5


class InvoiceError(ValueError):
    """The invoice would not pass SdI or would not match its order: never stored, never sent."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid invoice: " + "; ".join(problems))
        self.problems = problems


class InvoiceOrder(BaseModel):
    """What an invoice needs from a paid order (`db/invoices.py` reads it in the activation's
    transaction): its lines and totals as `pricing` computed them, the discount, the payment method
    and the renewed period (the day after the previous expiry through the new expiry, P1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_number: str
    username: str
    lines: list[OrderLine]
    quote: Quote
    discount_code: str | None = None
    discount_percent: int | None = None
    payment_method: PaymentMethod
    period_start: date
    period_end: date


@dataclass(frozen=True)
class Invoice:
    number: str
    year: int
    progressive: int
    issued_on: date
    file_name: str
    xml: bytes


def invoice_number(year: int, progressive: int) -> str:
    """`FT-2026-000001`: the progressive of the year, as the customer and the accounts quote it."""
    return f"FT-{year}-{progressive:06d}"


def file_progressive(file_id: int) -> str:
    """The 5-character progressive of the SdI file name, from a counter that never restarts."""
    if not 1 <= file_id < len(FILE_ALPHABET) ** FILE_PROGRESSIVE_LENGTH:
        raise ValueError(f"file_id must be 1..{len(FILE_ALPHABET) ** FILE_PROGRESSIVE_LENGTH - 1}, got {file_id}")
    digits = ""
    while file_id:
        file_id, rest = divmod(file_id, len(FILE_ALPHABET))
        digits = FILE_ALPHABET[rest] + digits
    return digits.rjust(FILE_PROGRESSIVE_LENGTH, "0")


def file_name(seller_vat: str, progressive: str) -> str:
    """`IT<partita iva>_<progressivo>.xml`, the name SdI requires of the file it receives."""
    return f"IT{seller_vat}_{progressive}.xml"


def amount(cents: int) -> str:
    """Integer cents as the schema's decimal with two places: -1234 → '-12.34'."""
    sign = "-" if cents < 0 else ""
    whole, rest = divmod(abs(cents), 100)
    return f"{sign}{whole}.{rest:02d}"


def latin1_text(text: str, limit: int) -> str:
    """Text from the data (a price-list label) as the schema takes it: Latin-1, one line, bounded."""
    safe = "".join(ch if " " <= ch <= "~" or "\xa0" <= ch <= "\xff" else "?" for ch in text).strip()
    return (safe or "?")[:limit]


def _italian(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _years(n: int) -> str:
    return "1 anno" if n == 1 else f"{n} anni"


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _address(parent: etree._Element, address: Address) -> None:
    sede = _sub(parent, "Sede")
    _sub(sede, "Indirizzo", address.street)
    _sub(sede, "CAP", address.cap)
    _sub(sede, "Comune", address.comune)
    _sub(sede, "Provincia", address.provincia)
    _sub(sede, "Nazione", address.country)


def _id_iva(parent: etree._Element, tag: str, vat_number: str) -> None:
    ident = _sub(parent, tag)
    _sub(ident, "IdPaese", "IT")
    _sub(ident, "IdCodice", vat_number)


def build_xml(
    order: InvoiceOrder,
    buyer: BillingData,
    seller: Seller,
    *,
    number: str,
    issued_on: date,
    progressive: str,
) -> bytes:
    """The FatturaPA document, in the schema's element order. Not validated: see build_invoice."""
    root = etree.Element(f"{{{NAMESPACE}}}FatturaElettronica", nsmap={"p": NAMESPACE}, versione=FORMAT)
    header = _sub(root, "FatturaElettronicaHeader")

    transmission = _sub(header, "DatiTrasmissione")
    # The seller transmits its own invoices; an intermediary that sends them puts its own id here.
    _id_iva(transmission, "IdTrasmittente", seller.vat_number)
    _sub(transmission, "ProgressivoInvio", progressive)
    _sub(transmission, "FormatoTrasmissione", FORMAT)
    _sub(transmission, "CodiceDestinatario", buyer.delivery_code)
    if buyer.pec is not None:
        _sub(transmission, "PECDestinatario", buyer.pec)

    supplier = _sub(header, "CedentePrestatore")
    supplier_data = _sub(supplier, "DatiAnagrafici")
    _id_iva(supplier_data, "IdFiscaleIVA", seller.vat_number)
    if seller.tax_code is not None:
        _sub(supplier_data, "CodiceFiscale", seller.tax_code)
    _sub(_sub(supplier_data, "Anagrafica"), "Denominazione", seller.name)
    _sub(supplier_data, "RegimeFiscale", seller.tax_regime)
    _address(supplier, seller.address)

    customer = _sub(header, "CessionarioCommittente")
    customer_data = _sub(customer, "DatiAnagrafici")
    if buyer.vat_number is not None:
        _id_iva(customer_data, "IdFiscaleIVA", buyer.vat_number)
    if buyer.tax_code is not None:
        _sub(customer_data, "CodiceFiscale", buyer.tax_code)
    registry = _sub(customer_data, "Anagrafica")
    if buyer.company_name is not None:
        _sub(registry, "Denominazione", buyer.company_name)
    else:
        _sub(registry, "Nome", buyer.first_name)
        _sub(registry, "Cognome", buyer.last_name)
    _address(customer, buyer.address)

    body = _sub(root, "FatturaElettronicaBody")
    general = _sub(body, "DatiGenerali")
    document = _sub(general, "DatiGeneraliDocumento")
    _sub(document, "TipoDocumento", DOCUMENT_TYPE)
    _sub(document, "Divisa", "EUR")
    _sub(document, "Data", issued_on.isoformat())
    _sub(document, "Numero", number)
    _sub(document, "ImportoTotaleDocumento", amount(order.quote.total_cents))
    _sub(
        document,
        "Causale",
        latin1_text(
            f"Rinnovo servizio Fatturazione Elettronica Solo Ricezione, utenza {order.username}, "
            f"ordine {order.order_number}",
            200,
        ),
    )
    _sub(_sub(general, "DatiOrdineAcquisto"), "IdDocumento", order.order_number[:20])

    goods = _sub(body, "DatiBeniServizi")
    rate = amount(VAT_PERCENT * 100)
    period = f"dal {_italian(order.period_start)} al {_italian(order.period_end)}"
    line_number = 0
    for line in order.lines:
        line_number += 1
        detail = _sub(goods, "DettaglioLinee")
        _sub(detail, "NumeroLinea", str(line_number))
        _sub(
            detail,
            "Descrizione",
            latin1_text(
                f"{line.label}: rinnovo {_years(line.years)} {period} "
                f"(EUR {amount(line.unit_price_cents).replace('.', ',')} l'anno per unità)",
                1000,
            ),
        )
        _sub(detail, "Quantita", f"{line.quantity}.00")
        _sub(detail, "UnitaMisura", "n.")  # a unit wherever a quantity is (a38 and many receivers ask)
        _sub(detail, "DataInizioPeriodo", order.period_start.isoformat())
        _sub(detail, "DataFinePeriodo", order.period_end.isoformat())
        _sub(detail, "PrezzoUnitario", amount(line.unit_price_cents * line.years))
        _sub(detail, "PrezzoTotale", amount(line.net_cents))
        _sub(detail, "AliquotaIVA", rate)
    if order.quote.discount_cents:
        line_number += 1
        detail = _sub(goods, "DettaglioLinee")
        _sub(detail, "NumeroLinea", str(line_number))
        _sub(detail, "TipoCessionePrestazione", "SC")
        what = f"codice convenzione {order.discount_code}" if order.discount_code else "sconto"
        percent = f" ({order.discount_percent} %)" if order.discount_percent else ""
        _sub(detail, "Descrizione", latin1_text(f"Sconto {what}{percent}", 1000))
        _sub(detail, "DataInizioPeriodo", order.period_start.isoformat())
        _sub(detail, "DataFinePeriodo", order.period_end.isoformat())
        _sub(detail, "PrezzoUnitario", amount(-order.quote.discount_cents))
        _sub(detail, "PrezzoTotale", amount(-order.quote.discount_cents))
        _sub(detail, "AliquotaIVA", rate)
    summary = _sub(goods, "DatiRiepilogo")
    _sub(summary, "AliquotaIVA", rate)
    _sub(summary, "ImponibileImporto", amount(order.quote.net_cents - order.quote.discount_cents))
    _sub(summary, "Imposta", amount(order.quote.vat_cents))
    _sub(summary, "EsigibilitaIVA", "I")

    if order.quote.total_cents > 0:
        payment = _sub(body, "DatiPagamento")
        _sub(payment, "CondizioniPagamento", "TP02")  # paid in full, at once
        detail = _sub(payment, "DettaglioPagamento")
        mode = PAYMENT_MODE[order.payment_method]
        if mode == "MP05":
            _sub(detail, "Beneficiario", seller.name)
        _sub(detail, "ModalitaPagamento", mode)
        _sub(detail, "DataScadenzaPagamento", issued_on.isoformat())
        _sub(detail, "ImportoPagamento", amount(order.quote.total_cents))
        if mode == "MP05":
            _sub(detail, "IBAN", seller.iban)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


# ---------------------------------------------------------------------- validation


@cache
def schema() -> etree.XMLSchema:
    """The official schema, compiled once from our copy (it imports xmldsig-core.xsd beside it)."""
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.parse(str(SCHEMA_PATH), parser))


def _parse(xml: bytes) -> etree._Element:
    parser = etree.XMLParser(no_network=True, resolve_entities=False, huge_tree=False)
    return etree.fromstring(xml, parser)


def schema_problems(xml: bytes) -> list[str]:
    """Every schema violation, as `line N: message`; empty when the document is valid."""
    validator = schema()
    if validator.validate(_parse(xml)):
        return []
    return [f"schema, line {error.line}: {error.message}" for error in validator.error_log]  # type: ignore[attr-defined]


def _dec(element: etree._Element, path: str, default: str | None = None) -> Decimal:
    text = element.findtext(path)
    if text is None:
        if default is None:
            raise InvoiceError([f"{path} is missing"])
        text = default
    return Decimal(text)


CENT = Decimal("0.01")


def sdi_problems(xml: bytes) -> list[str]:
    """The checks SdI applies after the schema, with its tolerances (error codes of the SdI
    specifications in brackets). The document must be schema-valid first."""
    root = _parse(xml)
    problems: list[str] = []
    transmission = root.find("FatturaElettronicaHeader/DatiTrasmissione")
    code = transmission.findtext("CodiceDestinatario") or ""
    if transmission.findtext("FormatoTrasmissione") == "FPR12" and len(code) != 7:
        problems.append(f"CodiceDestinatario must have 7 characters in an FPR12 invoice, got {code!r} (00427)")
    if transmission.find("PECDestinatario") is not None and code != NO_RECIPIENT_CODE:
        problems.append(f"PECDestinatario is given only with CodiceDestinatario {NO_RECIPIENT_CODE}, got {code!r}")
    buyer = root.find("FatturaElettronicaHeader/CessionarioCommittente/DatiAnagrafici")
    if buyer.find("IdFiscaleIVA") is None and buyer.find("CodiceFiscale") is None:
        problems.append("CessionarioCommittente needs IdFiscaleIVA or CodiceFiscale (00417)")

    for body in root.iterfind("FatturaElettronicaBody"):
        totals: dict[tuple[Decimal, str], Decimal] = {}
        for line in body.iterfind("DatiBeniServizi/DettaglioLinee"):
            n = line.findtext("NumeroLinea")
            price = _dec(line, "PrezzoUnitario")
            for change in line.iterfind("ScontoMaggiorazione"):
                sign = -1 if change.findtext("Tipo") == "SC" else 1
                if change.find("Importo") is not None:
                    price += sign * _dec(change, "Importo")
                else:
                    price += sign * price * _dec(change, "Percentuale") / 100
            expected = price * _dec(line, "Quantita", "1")
            total = _dec(line, "PrezzoTotale")
            if abs(total - expected) > CENT:
                problems.append(
                    f"line {n}: PrezzoTotale {total} is not PrezzoUnitario x Quantita = "
                    f"{expected.quantize(CENT)} within 0.01 (00423)"
                )
            line_rate = _dec(line, "AliquotaIVA")
            nature = line.findtext("Natura") or ""
            problems += _nature_problems(f"line {n}", line_rate, nature)
            key = (line_rate, nature)
            totals[key] = totals.get(key, Decimal(0)) + total
        summaries: dict[tuple[Decimal, str], etree._Element] = {}
        document_total = Decimal(0)
        for summary in body.iterfind("DatiBeniServizi/DatiRiepilogo"):
            summary_rate = _dec(summary, "AliquotaIVA")
            nature = summary.findtext("Natura") or ""
            problems += _nature_problems(f"summary at {summary_rate} %", summary_rate, nature)
            summaries[(summary_rate, nature)] = summary
            taxable = _dec(summary, "ImponibileImporto")
            tax = _dec(summary, "Imposta")
            document_total += taxable + tax
            lines_sum = (
                totals.get((summary_rate, nature), Decimal(0))
                + _dec(summary, "SpeseAccessorie", "0")
                + _dec(summary, "Arrotondamento", "0")
            )
            # SdI tolerates 1 euro here; an invoice of ours must match its lines to the cent.
            if taxable != lines_sum:
                problems.append(
                    f"summary at {summary_rate} %: ImponibileImporto {taxable} is not the sum of its lines "
                    f"{lines_sum} (00422, to the cent)"
                )
            if abs(tax - (taxable * summary_rate / 100)) > CENT:
                problems.append(
                    f"summary at {summary_rate} %: Imposta {tax} is not ImponibileImporto x AliquotaIVA "
                    f"= {(taxable * summary_rate / 100).quantize(CENT)} within 0.01 (00421)"
                )
        for key in totals.keys() - summaries.keys():
            problems.append(f"no DatiRiepilogo for the lines at {key[0]} % {key[1]} (00419)".rstrip())
        document = body.find("DatiGenerali/DatiGeneraliDocumento")
        declared = document.findtext("ImportoTotaleDocumento")
        if declared is not None and Decimal(declared) != document_total + _dec(document, "Arrotondamento", "0"):
            problems.append(f"ImportoTotaleDocumento {declared} is not the summaries' total {document_total}")
        paid = sum(
            (_dec(p, "ImportoPagamento") for p in body.iterfind("DatiPagamento/DettaglioPagamento")),
            Decimal(0),
        )
        if body.find("DatiPagamento") is not None and paid != document_total:
            problems.append(f"the payments ({paid}) do not add up to the document's total {document_total}")
    return problems


def _nature_problems(where: str, rate: Decimal, nature: str) -> list[str]:
    if rate == 0 and not nature:
        return [f"{where}: AliquotaIVA 0 needs a Natura (00400)"]
    if rate != 0 and nature:
        return [f"{where}: Natura {nature} goes only with AliquotaIVA 0 (00401)"]
    if nature in BARE_NATURE_CODES:
        return [f"{where}: Natura {nature} is refused by SdI since 2021; use a split code ({nature}.1, ...)"]
    return []


def reconciliation_problems(xml: bytes, order: InvoiceOrder) -> list[str]:
    """The invoice says what the order says, to the cent: total, taxable, VAT."""
    root = _parse(xml)
    problems = []
    document = root.find("FatturaElettronicaBody/DatiGenerali/DatiGeneraliDocumento")
    total = document.findtext("ImportoTotaleDocumento")
    if total != amount(order.quote.total_cents):
        problems.append(f"ImportoTotaleDocumento {total} is not the order's total {amount(order.quote.total_cents)}")
    summaries = root.findall("FatturaElettronicaBody/DatiBeniServizi/DatiRiepilogo")
    taxable = sum((Decimal(s.findtext("ImponibileImporto")) for s in summaries), Decimal(0))
    tax = sum((Decimal(s.findtext("Imposta")) for s in summaries), Decimal(0))
    if taxable != Decimal(amount(order.quote.net_cents - order.quote.discount_cents)):
        problems.append(f"taxable {taxable} is not the order's net less discount")
    if tax != Decimal(amount(order.quote.vat_cents)):
        problems.append(f"VAT {tax} is not the order's {amount(order.quote.vat_cents)}")
    return problems


def problems_of(xml: bytes, order: InvoiceOrder) -> list[str]:
    """Schema first (the other checks read a valid document), then SdI's rules, then the order."""
    return schema_problems(xml) or sdi_problems(xml) + reconciliation_problems(xml, order)


def build_invoice(
    order: InvoiceOrder,
    buyer: BillingData,
    seller: Seller,
    *,
    year: int,
    progressive: int,
    issued_on: date,
    file_id: int,
) -> Invoice:
    """The invoice, checked: raises InvoiceError naming every problem instead of returning a bad one."""
    if issued_on.year != year:
        raise InvoiceError([f"the invoice of {issued_on} cannot take a number of {year}"])
    number = invoice_number(year, progressive)
    sdi_progressive = file_progressive(file_id)
    xml = build_xml(order, buyer, seller, number=number, issued_on=issued_on, progressive=sdi_progressive)
    problems = problems_of(xml, order)
    if problems:
        raise InvoiceError(problems)
    return Invoice(
        number=number,
        year=year,
        progressive=progressive,
        issued_on=issued_on,
        file_name=file_name(seller.vat_number, sdi_progressive),
        xml=xml,
    )
