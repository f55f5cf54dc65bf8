"""The local stack's two extra customer pages (docs/customer-pages.md, "Local stack only"):
/ui/dev/accesso signs in as any demo service (each a signed link), and /ui/dev/pagamenti plays the
payments back office: it registers a payment through `Renewals.payment`, lists the bank statements'
credits no order was found for with their suggestions (P19), and applies one to an order, once
(`client/statements.py` `assign_entry`, as `starter.py payments assign`).

Never part of the production pages: nothing under ingress/ imports `stack`, and only the local
stack's ingress mounts these (`include`, called by starter.py `serve` with PANEL_UI_DEV_LOGIN=1,
which the start-up exposure check refuses on anything but loopback, settings.py
`exposure_problems`), and the tests that click through the whole renewal.
"""

import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from jinja2 import ChoiceLoader, FileSystemLoader
from pydantic import ValidationError

from client.statements import assign_entry, unmatched_entries
from db.statements import AssignRefused
from ingress.pages.deps import FormFields, PagesDep, checked
from ingress.pages.forms import whole
from ingress.pages.session import LINK_SECONDS, SESSION_SECONDS, Session, session_cookie, sign_in_link
from ingress.pages.site import TEMPLATES as PAGE_TEMPLATES
from ingress.pages.site import Pages, Refused, page_router
from renewals.dates import rome_today
from renewals.events import PaymentRegistered
from stack.demo import demo_services

TEMPLATES = Path(__file__).resolve().parent / "templates"
AMOUNT = re.compile(r"^\s*(\d{1,7})(?:[.,](\d{1,2}))?\s*$")

router = page_router()


def include(app: FastAPI) -> None:
    """Mount the dev pages on an app whose customer pages are mounted (ingress.pages.include), and
    have those pages link to them."""
    pages: Pages | None = getattr(app.state, "pages", None)
    if pages is None:
        raise RuntimeError("mount the customer pages first: ingress.pages.include(app, ...)")
    pages.templates.loader = ChoiceLoader([FileSystemLoader(PAGE_TEMPLATES), FileSystemLoader(TEMPLATES)])
    pages.templates.globals["dev"] = True
    app.include_router(router)


def cents_of(amount: str) -> int | None:
    """'98,82' or '98.82' or '98' → cents; None when it is not an amount."""
    match = AMOUNT.match(amount)
    if not match:
        return None
    return int(match[1]) * 100 + int((match[2] or "0").ljust(2, "0"))


# ---------------------------------------------------------------------------- sign in as anyone


@router.get("/dev/accesso")
async def dev_sign_in(pages: PagesDep) -> Response:
    now = time.time()
    services = [
        {
            "username": record.username,
            "link": sign_in_link(pages.secret, record.username, now),
            "note": record.holder_name,
        }
        for record in demo_services(rome_today(datetime.now(UTC)))
    ]
    return pages.render(
        "dev_accesso.html", services=services, link_minutes=LINK_SECONDS // 60, back=None, title="Accesso demo"
    )


@router.get("/dev/accesso/vai")
async def dev_sign_in_as(request: Request, pages: PagesDep) -> Response:
    return pages.see_other(sign_in_link(pages.secret, request.query_params.get("username", ""), time.time()))


# ---------------------------------------------------------------------------- the back office


async def backoffice_session(request: Request, pages: PagesDep) -> Session:
    """The back office's session (its own role and cookie: a customer's never opens it); 403 without."""
    session = await pages.session(request, "backoffice")
    if session is None:
        raise Refused(403, "Modulo non valido", "Apri di nuovo la pagina del back office e riprova.")
    return session


BackofficeSession = Annotated[Session, Depends(backoffice_session)]


def backoffice_form(pages: PagesDep, session: BackofficeSession, fields: FormFields) -> dict[str, str]:
    """The payment form, once its CSRF token is checked against the back office's session."""
    return checked(pages, session, fields)


BackofficeForm = Annotated[dict[str, str], Depends(backoffice_form)]


async def payments_page(
    request: Request, pages: Pages, status: int = 200, form: dict[str, str] | None = None, **context: Any
) -> Response:
    """The form (the order and amount the confirmation page linked with, a fresh transaction id),
    opening a back-office session the first time."""
    session = await pages.session(request, "backoffice")
    fresh = session is None
    if session is None:
        session = await pages.start_session("backoffice", "backoffice")
    shown = {
        "ordine": request.query_params.get("ordine", ""),
        "importo": "",
        "metodo": "bank_transfer",
        "transazione": f"BO-{secrets.token_hex(4).upper()}",
    }
    cents = whole(request.query_params.get("importo", ""))
    if cents:
        shown["importo"] = f"{cents // 100},{cents % 100:02d}"
    shown.update(form or {})
    context.setdefault("assigned", None)
    unmatched = await unmatched_entries(pages.pool, 50)
    response = pages.render("dev_pagamenti.html", status, session, form=shown, unmatched=unmatched, **context)
    if fresh:
        pages.set_cookie(response, request, "backoffice", session_cookie(pages.secret, session), SESSION_SECONDS)
    return response


@router.get("/dev/pagamenti")
async def payments(request: Request, pages: PagesDep) -> Response:
    return await payments_page(request, pages, outcome=None)


@router.post("/dev/pagamenti")
async def register_payment(request: Request, pages: PagesDep, fields: BackofficeForm) -> Response:
    cents = cents_of(fields.get("importo", ""))
    if not cents:
        said = "Importo non valido: scrivi ad es. 98,82."
        return await payments_page(request, pages, 422, fields, outcome=None, error=said)
    try:
        event = PaymentRegistered(
            type="payment_registered",
            order_number=fields.get("ordine", "").strip(),
            transaction_id=fields.get("transazione", "").strip(),
            amount_cents=cents,
            currency="EUR",
            method=fields.get("metodo"),  # type: ignore[arg-type]  # validated here
            registered_at=datetime.now(UTC),
        )
    except ValidationError as invalid:
        wrong = ", ".join(str(problem["loc"][0]) for problem in invalid.errors())
        return await payments_page(request, pages, 422, fields, outcome=None, error=f"Campi non validi: {wrong}.")
    outcome = await pages.ingress.payment(event)
    # A fresh transaction id for the next one; the order stays for a second (partial) payment.
    return await payments_page(request, pages, 200, {"ordine": event.order_number}, outcome=outcome)


@router.post("/dev/estratti/abbina")
async def assign(request: Request, pages: PagesDep, fields: BackofficeForm) -> Response:
    """P19: an unmatched credit applied to the order ops name, once; refused with the reason."""
    entry, order = whole(fields.get("voce", "")), fields.get("ordine", "").strip()
    if not entry or not order:
        return await payments_page(request, pages, 422, outcome=None, error="Indica la voce e il numero d'ordine.")
    ingress = pages.ingress
    try:
        assigned = await assign_entry(ingress.client, ingress.store, entry, order, by="backoffice")
    except AssignRefused as refused:
        return await payments_page(request, pages, 409, outcome=None, error=f"Non abbinata: {refused}")
    return await payments_page(request, pages, 200, outcome=None, assigned=assigned)
