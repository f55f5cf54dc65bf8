"""The customer pages' Italian: formats and refusals (ingress/pages/words.py), whole numbers typed
in a form (ingress/pages/forms.py), and amounts typed on the dev back-office page (stack/dev_pages.py)."""

from datetime import UTC, date, datetime

import pytest

from ingress.pages.forms import whole
from ingress.pages.words import (
    addon_quantity,
    italian_date,
    italian_time,
    megabytes,
    no_button_reason,
    percent,
    refusal,
)
from renewals.pricing import euro
from stack.dev_pages import cents_of


def test_italian_formats_of_money_dates_and_sizes():
    assert euro(3050) == "€ 30,50"
    assert euro(123456789) == "€ 1.234.567,89"
    assert italian_date(date(2027, 1, 31)) == "31/01/2027"
    # Rome's clock: UTC+1 in winter, UTC+2 in summer.
    assert italian_time(datetime(2026, 12, 29, 9, 15, tzinfo=UTC)) == "29/12/2026 alle 10:15"
    assert italian_time(datetime(2026, 7, 1, 21, 30, tzinfo=UTC)) == "01/07/2026 alle 23:30"
    assert megabytes(1536) == "1.536 MB"
    assert percent(75.0) == "75 %"
    assert percent(95.3) == "95,3 %"
    assert addon_quantity(1, "extra_users") == "1 utente"
    assert addon_quantity(2, "extra_storage") == "2 pacchetti"


@pytest.mark.parametrize(
    ("english", "italian"),
    [
        ("discount code 'NOPE' does not exist", "Il codice convenzione «NOPE» non esiste."),
        ("discount code 'OLD20' expired on 2024-12-31", "Il codice convenzione «OLD20» è scaduto il 31/12/2024."),
        ("years must be 1 or 2 for a promotional product (R5), got 3", "uno o due anni"),
        ("the cart can no longer change: the renewal is AWAITING_PAYMENT", "non può più essere modificato"),
        ("something nobody foresaw", "Operazione non riuscita: something nobody foresaw"),
    ],
)
def test_refusals_in_italian(english, italian):
    assert italian in refusal(english)


def test_no_button_reasons_follow_r1_and_r2():
    ceased = no_button_reason("ceased", False, date(2026, 1, 10), date(2026, 4, 10))
    assert "10/01/2026" in ceased and "10/04/2026" in ceased and "cessato" in ceased
    assert "Rinnovo automatico" in no_button_reason("active", True, date(2027, 1, 1), date(2027, 4, 1))
    # Ceased wins over auto-renew, as in renewals/eligibility.py.
    assert "cessato" in no_button_reason("ceased", True, date(2026, 1, 10), date(2026, 4, 10))


@pytest.mark.parametrize(
    ("typed", "cents"),
    [("98,82", 9882), ("98.82", 9882), ("98", 9800), ("98,8", 9880), (" 30,50 ", 3050), ("1.000,00", None), ("", None)],
)
def test_amounts_typed_on_the_back_office_page(typed, cents):
    assert cents_of(typed) == cents


def test_whole_numbers_typed_in_a_form():
    assert [whole(text) for text in ("2", "10", "²", "-1", "1e9", "", " 2")] == [2, 10, None, None, None, None, None]
