"""The courtesy copy ("copia di cortesia") of an electronic invoice (P17): a PDF in Italian for the
customer's emails, read from the FatturaPA XML itself so it shows exactly what was sent to SdI.

Pure: `courtesy_pdf` turns the XML into the PDF's bytes, `courtesy_file_name` names it after the
XML file. The same XML always gives the same bytes (the PDF's date is the invoice's, its /ID a hash
of its content), so a resent email carries the same attachment. Built with fpdf2's core fonts
(Helvetica): nothing to embed, and FatturaPA text is Latin-1, which they cover.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal

from fpdf import FPDF
from fpdf.fonts import CoreFont
from lxml import etree

TITLE = "Copia di cortesia – Fattura elettronica"
NOT_FISCAL = (
    "Documento privo di valenza fiscale ai sensi dell'art. 21 del D.P.R. 633/1972. L'originale è il file "
    "XML trasmesso tramite il Sistema di Interscambio (SdI), disponibile anche nell'area riservata del sito "
    "dell'Agenzia delle Entrate (Fatture e Corrispettivi)."
)
DOCUMENT_TYPES = {"TD01": "Fattura", "TD04": "Nota di credito", "TD05": "Nota di debito", "TD06": "Parcella"}
PAYMENT_TERMS = {"TP01": "pagamento a rate", "TP02": "pagamento completo", "TP03": "anticipo"}
PAYMENT_MODES = {"MP05": "Bonifico", "MP08": "Carta di pagamento", "MP18": "Bollettino di c/c postale"}
VAT_DUE = {"I": "immediata", "D": "differita", "S": "scissione dei pagamenti"}

LINE_WIDTHS = (88, 20, 28, 14, 30)  # millimetres of the 180 between the margins; the description wraps


def courtesy_file_name(invoice_file_name: str) -> str:
    """`IT12345670017_0000A.xml` → `IT12345670017_0000A.pdf`: the copy is found beside its invoice."""
    return invoice_file_name.removesuffix(".xml") + ".pdf"


def courtesy_pdf(xml: bytes, *, compress: bool = True) -> bytes:
    """The one-page (longer if the lines need it) A4 courtesy copy of a FatturaPA invoice.
    `compress=False` leaves the page's text readable in the bytes, for tests."""
    root = etree.fromstring(xml, etree.XMLParser(no_network=True, resolve_entities=False, huge_tree=False))
    header = root.find("FatturaElettronicaHeader")
    # Our invoices carry one body each (no batches), so the copy shows the first.
    body = root.find("FatturaElettronicaBody")
    document = body.find("DatiGenerali/DatiGeneraliDocumento")
    number, issued_on = _text(document, "Numero"), date.fromisoformat(_text(document, "Data"))

    pdf = FPDF(format="A4")
    # WinAnsi (cp1252) is the encoding fpdf2 declares for core fonts: Latin-1 plus € and the dash.
    pdf.core_fonts_encoding = "cp1252"
    pdf.set_compression(compress)
    pdf.set_creation_date(datetime.combine(issued_on, time(), tzinfo=UTC))
    pdf.set_title(_safe(f"Fattura {number}"))
    pdf.set_author(_safe(_text(header, "CedentePrestatore/DatiAnagrafici/Anagrafica/Denominazione")))
    pdf.set_lang("it")
    pdf.set_margins(15, 15)
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()

    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 8, TITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "I", 8)
    pdf.set_text_color(90)
    _paragraph(pdf, NOT_FISCAL, 4)
    pdf.set_text_color(0)
    pdf.ln(4)

    pdf.set_font("Helvetica", "", 9)
    _table(
        pdf,
        [
            ["Cedente/Prestatore", "Cessionario/Committente"],
            [
                _party(header.find("CedentePrestatore")),
                _party(header.find("CessionarioCommittente"), header.find("DatiTrasmissione")),
            ],
        ],
        widths=(90, 90),
    )
    kind = _text(document, "TipoDocumento")
    _table(
        pdf,
        [
            ["Tipo documento", "Numero", "Data"],
            [f"{kind} {DOCUMENT_TYPES.get(kind, '')}".strip(), _safe(number), _day(issued_on)],
        ],
        widths=(60, 60, 60),
    )
    # Why the invoice was issued and for which order: what a customer matches it with.
    notes = [f"Causale: {text}" for text in _texts(document, "Causale")]
    notes += [f"Riferimento ordine: {text}" for text in _texts(body, "DatiGenerali/DatiOrdineAcquisto/IdDocumento")]
    if notes:
        _paragraph(pdf, _safe("\n".join(notes)), 5)
        pdf.ln(3)

    _section(pdf, "Dettaglio")
    lines = [["Descrizione", "Quantità", "Prezzo unitario", "IVA", "Importo"]]
    for line in body.iterfind("DatiBeniServizi/DettaglioLinee"):
        quantity = line.findtext("Quantita")
        lines.append(
            [
                _safe(_text(line, "Descrizione")),
                _decimal(quantity) if quantity else "",
                _euro(_text(line, "PrezzoUnitario")),
                _rate(line),
                _euro(_text(line, "PrezzoTotale")),
            ]
        )
    _table(pdf, lines, widths=LINE_WIDTHS, align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"))

    _section(pdf, "Riepilogo IVA")
    summary = [["Aliquota IVA", "Imponibile", "Imposta", "Esigibilità IVA"]]
    for row in body.iterfind("DatiBeniServizi/DatiRiepilogo"):
        due = row.findtext("EsigibilitaIVA") or ""
        summary.append(
            [_rate(row), _euro(_text(row, "ImponibileImporto")), _euro(_text(row, "Imposta")), VAT_DUE.get(due, due)]
        )
    _table(pdf, summary, widths=(45, 45, 45, 45), align=("RIGHT", "RIGHT", "RIGHT", "LEFT"))

    pdf.set_font("Helvetica", "B", 12)
    total = f"Totale documento {_euro(_text(document, 'ImportoTotaleDocumento'))}"
    pdf.cell(0, 8, total, align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    payment = body.find("DatiPagamento")
    if payment is not None:
        _section(pdf, "Pagamento")
        _paragraph(pdf, _payment(payment), 5)
    return bytes(pdf.output())


# ---------------------------------------------------------------------- reading the XML


def _text(element: etree._Element, path: str) -> str:
    return element.findtext(path) or ""


def _texts(element: etree._Element, path: str) -> list[str]:
    return [found.text or "" for found in element.iterfind(path)]


def _safe(text: str) -> str:
    """What the core fonts can show (cp1252) stays, anything else would stop fpdf2: '?' for it and
    for control characters. FatturaPA text is Latin-1 already; line breaks are ours, between rows."""
    return "".join(
        ch if ch == "\n" or (ch >= " " and not "\x7f" <= ch <= "\x9f" and ch.encode("cp1252", "ignore")) else "?"
        for ch in text
    )


def _payment(payment: etree._Element) -> str:
    """Terms, then each instalment: how, how much, by when, and where to pay a transfer."""
    terms = _text(payment, "CondizioniPagamento")
    rows = [f"Condizioni: {PAYMENT_TERMS.get(terms, terms)}"]
    for detail in payment.iterfind("DettaglioPagamento"):
        mode = _text(detail, "ModalitaPagamento")
        row = f"Modalità: {PAYMENT_MODES.get(mode, mode)}, importo {_euro(_text(detail, 'ImportoPagamento'))}"
        if due_on := detail.findtext("DataScadenzaPagamento"):
            row += f", scadenza {_day(date.fromisoformat(due_on))}"
        rows.append(row)
        if beneficiary := detail.findtext("Beneficiario"):
            rows.append(f"Beneficiario: {beneficiary}")
        if iban := detail.findtext("IBAN"):
            rows.append(f"IBAN: {_grouped(iban)}")
    return _safe("\n".join(rows))


def _party(party: etree._Element, transmission: etree._Element | None = None) -> str:
    """Name, tax ids and address of the seller or the buyer; for the buyer (`transmission` given)
    also the channel SdI delivers to."""
    data = party.find("DatiAnagrafici")
    registry = data.find("Anagrafica")
    name = _text(registry, "Denominazione") or f"{_text(registry, 'Nome')} {_text(registry, 'Cognome')}".strip()
    rows = [name]
    if data.find("IdFiscaleIVA") is not None:
        rows.append(f"Partita IVA: {_text(data, 'IdFiscaleIVA/IdPaese')}{_text(data, 'IdFiscaleIVA/IdCodice')}")
    if tax_code := data.findtext("CodiceFiscale"):
        rows.append(f"Codice Fiscale: {tax_code}")
    seat = party.find("Sede")
    rows.append(_text(seat, "Indirizzo") + (f", {number}" if (number := seat.findtext("NumeroCivico")) else ""))
    province = f" ({province})" if (province := seat.findtext("Provincia")) else ""
    country = _text(seat, "Nazione")
    rows.append(f"{_text(seat, 'CAP')} {_text(seat, 'Comune')}{province}" + ("" if country == "IT" else f" {country}"))
    if transmission is not None:
        rows.append(f"Codice Destinatario: {_text(transmission, 'CodiceDestinatario')}")
        if pec := transmission.findtext("PECDestinatario"):
            rows.append(f"PEC: {pec}")
    return _safe("\n".join(rows))


# ---------------------------------------------------------------------- Italian formats


def _day(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _decimal(text: str, places: int = 0) -> str:
    """'1234.5' → '1.234,50' with `places` 2: Italian grouping and comma, at least `places` decimals
    and every further digit the XML has (a price may have up to 8)."""
    value = Decimal(text)
    step = Decimal(1).scaleb(-places)
    if value == value.quantize(step):
        value = value.quantize(step)
    return f"{value:,}".replace(",", " ").replace(".", ",").replace(" ", ".")


def _euro(text: str) -> str:
    """'-1234.56' → '€ -1.234,56'."""
    return f"€ {_decimal(text, 2)}"


def _rate(element: etree._Element) -> str:
    """'22.00' → '22 %'; a zero rate names its nature (N2.2 …), which says why there is no VAT."""
    nature = element.findtext("Natura")
    return f"{_decimal(_text(element, 'AliquotaIVA'))} %" + (f" {nature}" if nature else "")


def _grouped(iban: str) -> str:
    """An IBAN in groups of four, as it is printed for people to copy."""
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


# ---------------------------------------------------------------------- layout


def _section(pdf: FPDF, title: str) -> None:
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 6, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)


def _paragraph(pdf: FPDF, text: str, height: float) -> None:
    """`text` wrapped to the page's width, a line per row (a new page when one is full)."""
    for line in _lines(pdf, text, pdf.epw - 2 * pdf.c_margin):
        if pdf.will_page_break(height):
            pdf.add_page()
        _write(pdf, pdf.l_margin, pdf.get_y(), pdf.epw, height, line)
        pdf.set_xy(pdf.l_margin, pdf.get_y() + height)


def _write(pdf: FPDF, x: float, y: float, width: float, height: float, line: str, *, right: bool = False) -> None:
    """One line placed as `cell` places it (fpdf2's margin inside, the baseline a third below the
    middle), drawn with `text`: a tenth of `cell`'s cost, which a copy pays some seventy times."""
    left = x + width - pdf.c_margin - _measure(pdf)(line) if right else x + pdf.c_margin
    pdf.text(left, y + 0.5 * height + 0.3 * pdf.font_size, line)


def _measure(pdf: FPDF) -> Callable[[str], float]:
    """The width in mm of a text in the current font, from the core font's own table."""
    font = pdf.current_font
    assert isinstance(font, CoreFont), "the copy is set in Helvetica, a core font"
    widths: dict[str, int] = font.cw  # per mille of an em
    scale = pdf.font_size / 1000

    def measure(text: str) -> float:
        # Keyed by Latin-1: fpdf2 draws € and the dashes through their cp1252 bytes.
        return sum(widths[ch] if ch in widths else widths[ch.encode("cp1252").decode("latin-1")] for ch in text) * scale

    return measure


def _lines(pdf: FPDF, text: str, width: float) -> list[str]:
    """`text` wrapped to `width` mm in the current font: at its line breaks, then at spaces, a
    word longer than a line cut where it must. Each word measured once (fpdf2's own `multi_cell`
    re-measures the line at every character: 20 ms a copy, against 2 this way)."""
    measure = _measure(pdf)
    space = measure(" ")
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, used = "", 0.0
        for word in paragraph.split(" "):
            size = measure(word)
            while size > width:  # a word longer than a line: as much as fits, then the rest
                if line:
                    lines.append(line)
                    line, used = "", 0.0
                cut = next(i for i in range(len(word), 0, -1) if measure(word[:i]) <= width or i == 1)
                lines.append(word[:cut])
                word = word[cut:]
                size = measure(word)
            if line and used + space + size > width:
                lines.append(line)
                line, used = word, size
            elif line:
                line, used = f"{line} {word}", used + space + size
            else:
                line, used = word, size
        lines.append(line)
    return lines


TABLE_PADDING = 1.5
TABLE_LINE = 4.5
HEADING_FILL = 235


def _table(pdf: FPDF, rows: list[list[str]], *, widths: tuple[int, ...], align: tuple[str, ...] | str = "LEFT") -> None:
    """A table whose first row is the headings (bold, shaded); long cells wrap, every cell starts
    level with its neighbours, and the headings repeat on a new page."""
    aligns = (align,) * len(widths) if isinstance(align, str) else align

    def wrapped(row: list[str]) -> list[list[str]]:
        inner = 2 * (TABLE_PADDING + pdf.c_margin)  # the cell's padding, and fpdf2's margin inside a cell
        return [_lines(pdf, value, width - inner) for value, width in zip(row, widths, strict=True)]

    def height(cells: list[list[str]]) -> float:
        return max(len(lines) for lines in cells) * TABLE_LINE + 2 * TABLE_PADDING

    def draw(cells: list[list[str]], *, heading: bool) -> None:
        x, y = pdf.l_margin, pdf.get_y()
        for lines, width, side in zip(cells, widths, aligns, strict=True):
            pdf.rect(x, y, width, height(cells), style="DF" if heading else "D")
            for i, line in enumerate(lines):
                top = y + TABLE_PADDING + i * TABLE_LINE
                _write(pdf, x + TABLE_PADDING, top, width - 2 * TABLE_PADDING, TABLE_LINE, line, right=side == "RIGHT")
            x += width
        pdf.set_xy(pdf.l_margin, y + height(cells))

    pdf.set_fill_color(HEADING_FILL)
    pdf.set_font(style="B")
    headings = wrapped(rows[0])
    draw(headings, heading=True)
    pdf.set_font(style="")
    for row in rows[1:]:
        cells = wrapped(row)
        if pdf.will_page_break(height(cells)):
            pdf.add_page()
            pdf.set_font(style="B")
            draw(headings, heading=True)
            pdf.set_font(style="")
        draw(cells, heading=False)
    pdf.ln(3)
