"""The customer's pages in Italian (docs/customer-pages.md): dates, money and sizes as an Italian
reads them, the names of add-ons, payment methods and stages, the payment reason to quote, and the
refusals of the renewal said in Italian.

The operations refuse in English (for ops and the API); the pages show the Italian below and fall
back to the English message only for a refusal not listed here.
"""

import re
from collections.abc import Callable
from datetime import date, datetime

from renewals.creditor_reference import causale
from renewals.dates import ROME
from renewals.pricing import euro

ADDON_NAMES = {"extra_storage": "Spazio aggiuntivo", "extra_users": "Utenti aggiuntivi"}
# (one, many) of each add-on's unit.
ADDON_UNITS = {"extra_storage": ("pacchetto", "pacchetti"), "extra_users": ("utente", "utenti")}
PAYMENT_METHODS = {
    "card": "Carta di credito",
    "paypal": "PayPal",
    "bank_transfer": "Bonifico bancario",
    "postal_slip": "Bollettino postale",
}
SERVICE_STATUS = {"active": "Attivo", "expired": "Scaduto", "ceased": "Cessato"}
STAGES = {
    "OPENING": "In apertura",
    "CART": "Carrello aperto",
    "AWAITING_PAYMENT": "In attesa di pagamento",
    "ACTIVATED": "Rinnovo completato",
    "CART_ABANDONED": "Carrello abbandonato",
    "ORDER_EXPIRED": "Ordine scaduto per mancato pagamento",
    "CANCELLED": "Ordine annullato",
    "REFUSED": "Richiesta rifiutata",
}
PAYMENT_OUTCOMES = {
    "applied": "pagamento registrato: ordine saldato",
    "partial": "pagamento parziale registrato: resta un saldo",
    "overpaid": "pagamento superiore al dovuto: ordine saldato, eccedenza da rimborsare",
    "duplicate": "transazione già registrata: nulla è cambiato",
    "unmatched": "pagamento non abbinato a un ordine aperto: conservato per l'assistenza",
}


def italian_date(day: date | None) -> str:
    """2027-01-31 → '31/01/2027'."""
    return f"{day:%d/%m/%Y}" if day else ""


def italian_time(instant: datetime | None) -> str:
    """An instant on Rome's clock: '29/12/2026 alle 10:15'."""
    if instant is None:
        return ""
    local = instant.astimezone(ROME)
    return f"{local:%d/%m/%Y} alle {local:%H:%M}"


def italian_number(value: float, decimals: int = 0) -> str:
    """1536 → '1.536'; 75.0 with one decimal → '75,0'."""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", ".")


def percent(value: float) -> str:
    """75.0 → '75 %', 95.3 → '95,3 %'."""
    return f"{italian_number(value, 0 if float(value).is_integer() else 1)} %"


def megabytes(value: int) -> str:
    return f"{italian_number(value)} MB"


def addon_quantity(quantity: int, addon: str) -> str:
    """2, 'extra_storage' → '2 pacchetti'; 1, 'extra_users' → '1 utente'."""
    one, many = ADDON_UNITS.get(addon, ("", ""))
    return f"{quantity} {one if quantity == 1 else many}".strip()


def _iso_to_italian(match: re.Match[str]) -> str:
    return italian_date(date.fromisoformat(match.group(0)))


def _dates(text: str) -> str:
    return re.sub(r"\d{4}-\d{2}-\d{2}", _iso_to_italian, text)


# (pattern of the English refusal, its Italian); groups are quoted into the Italian.
_REFUSALS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (
        re.compile(r"discount code '(.+)' does not exist"),
        lambda m: f"Il codice convenzione «{m[1]}» non esiste. Controlla di averlo scritto correttamente.",
    ),
    (
        re.compile(r"discount code '(.+)' expired on (\S+)"),
        lambda m: f"Il codice convenzione «{m[1]}» è scaduto il {_dates(m[2])}.",
    ),
    (
        re.compile(r"discount code '(.+)' is valid only from (\S+)"),
        lambda m: f"Il codice convenzione «{m[1]}» è valido solo dal {_dates(m[2])}.",
    ),
    (
        re.compile(r"years must be 1 or 2 for a promotional product"),
        lambda m: "Per un prodotto in promozione la durata del rinnovo può essere di uno o due anni.",
    ),
    (
        re.compile(r"years must be between 1 and 10"),
        lambda m: "La durata del rinnovo va da uno a dieci anni.",
    ),
    (
        re.compile(r"the cart can no longer change"),
        lambda m: "Il carrello non può più essere modificato: l'ordine è già stato confermato o chiuso.",
    ),
    (
        re.compile(r"has taken (\d+) cart changes"),
        lambda m: (
            f"Il carrello ha raggiunto il numero massimo di modifiche ({m[1]}): conferma l'ordine così "
            "com'è o contatta l'assistenza."
        ),
    ),
    (
        re.compile(r"no renewal is open"),
        lambda m: "Non c'è un rinnovo in corso: torna alla home e premi Rinnova o Riattiva.",
    ),
    (
        re.compile(r"auto-renew is on"),
        lambda m: "Il rinnovo automatico è attivo: il servizio si rinnova da solo alla scadenza.",
    ),
    (
        re.compile(r"it is ceased|is ceased and can no longer"),
        lambda m: "Il servizio è cessato: non può più essere rinnovato né riattivato.",
    ),
    (
        re.compile(r"can be reactivated, not renewed"),
        lambda m: "Il servizio è scaduto: va riattivato, non rinnovato.",
    ),
    (
        re.compile(r"can be renewed, not reactivated"),
        lambda m: "Il servizio è attivo: va rinnovato, non riattivato.",
    ),
]


def refusal(message: str) -> str:
    """A refusal of the operations in Italian (the English message when it is not a known one)."""
    for pattern, say in _REFUSALS:
        match = pattern.search(message)
        if match:
            return say(match)
    return f"Operazione non riuscita: {message}"


def no_button_reason(status: str, auto_renew: bool, expires_on: date, last_reactivation_day: date) -> str:
    """Why the home page shows neither Rinnova nor Riattiva (R1, R2), in the help page's words."""
    if status == "ceased":
        return (
            f"Il servizio è scaduto il {italian_date(expires_on)} e poteva essere riattivato fino al "
            f"{italian_date(last_reactivation_day)}: è cessato e non può più essere rinnovato né riattivato."
        )
    if auto_renew:
        return (
            "L'opzione Rinnovo automatico è attiva: il servizio si rinnova da solo alla scadenza, "
            "per questo il pulsante Rinnova non è visibile. Per rinnovare da qui, disattiva prima il "
            "rinnovo automatico."
        )
    return "Nessuna azione disponibile per questo servizio."


def payment_reason(order_number: str) -> str:
    """What the payer writes in the *causale* of a bank transfer or a postal slip (P19): the order's
    ISO 11649 creditor reference and its number, `RF46 2026 0001 23 - FE-2026-000123`
    (renewals/creditor_reference.py `causale`). An order number of another form makes no
    reference: the number alone, still enough to find the order."""
    try:
        return causale(order_number)
    except ValueError:
        return order_number


FILTERS: dict[str, Callable[..., str]] = {
    "data": italian_date,
    "ora": italian_time,
    "euro": euro,
    "percento": percent,
    "mb": megabytes,
    "quantita": addon_quantity,
    "numero": italian_number,
    "causale": payment_reason,
}
