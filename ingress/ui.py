"""The customer's pages under /ui/: the renewal as the help page walks through it, in Italian.

Home (*Stato servizio* with **Rinnova** or **Riattiva**, or why neither), the cart, the *Modulo
d'ordine*, the confirmation with the payment instructions, and the renewal's status page. Built
only on the public operations of `Ingress` (`panel`, `service`, `renewal`, `payment`): the same
path to the workflow as the signed API, never a second one.

Server-rendered Jinja2; htmx (a pinned copy in ingress/static/) swaps the cart in place when an
add-on is added or a code applied, and every form also works as a plain POST + redirect without
JavaScript. Sign-in is the control panel's signed link (ingress/ui_session.py); every form carries
the session's CSRF token. With `PANEL_UI_DEV_LOGIN=1` (the local stack only) two more pages: a
sign-in listing the demo services, and the payments back office registering a payment.
"""

import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from ingress.operations import Ingress, PanelAnswer, RenewalsError
from ingress.ui_session import (
    LINK_SECONDS,
    SESSION_SECONDS,
    Role,
    Session,
    SignInError,
    check_sign_in,
    new_session,
    read_session,
    session_cookie,
    sign_in_link,
)
from ingress.ui_words import (
    ADDON_NAMES,
    ADDON_UNITS,
    FILTERS,
    PAYMENT_METHODS,
    PAYMENT_OUTCOMES,
    SERVICE_STATUS,
    STAGES,
    no_button_reason,
    refusal,
)
from renewals.config import Settings, load_settings
from renewals.dates import rome_today
from renewals.eligibility import last_reactivation_day
from renewals.events import (
    AddonAdded,
    AddonRemoved,
    CheckoutSubmitted,
    DiscountCodeApplied,
    PanelEvent,
    PaymentRegistered,
    ReactivateRequested,
    RenewRequested,
)
from renewals.types import Stage
from renewals.views import CartView, OrderView, RenewalView

HTMX_VERSION = "2.0.11"  # ingress/static/README.md
ASSET_VERSION = "1"
HERE = Path(__file__).resolve().parent
CUSTOMER_COOKIE = "renewals_session"
BACKOFFICE_COOKIE = "renewals_backoffice"
MAX_FORM_BYTES = 8 * 1024
# The pages load only their own files; nothing may frame them or learn their URLs (the sign-in
# link carries a signature) through a Referer.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

log = logging.getLogger("renewals.ui")


class Refused(Exception):
    """Answer with a page saying why, instead of the one asked for."""

    def __init__(self, status: int, title: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.detail = status, title, message, detail


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


class Pages:
    """What every page needs: the operations, the secret, the templates, who is signed in."""

    def __init__(self, ingress: Ingress, settings: Settings) -> None:
        self.ingress = ingress
        self.secret = settings.panel_secret
        self.dev = settings.panel_ui_dev_login
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(FILTERS)
        self.templates.globals.update(
            ADDON_NAMES=ADDON_NAMES,
            ADDON_UNITS=ADDON_UNITS,
            PAYMENT_METHODS=PAYMENT_METHODS,
            PAYMENT_OUTCOMES=PAYMENT_OUTCOMES,
            SERVICE_STATUS=SERVICE_STATUS,
            STAGES=STAGES,
            htmx_version=HTMX_VERSION,
            asset_version=ASSET_VERSION,
            dev=self.dev,
            username=None,
            csrf="",
            error=None,
            error_field=None,
            notice=None,
            code=None,
            detail=None,
            back="/ui/",
            back_label=None,
            tone=None,
        )

    def render(self, template: str, status: int = 200, session: Session | None = None, **context: Any) -> HTMLResponse:
        if session is not None:
            context.setdefault("csrf", session.csrf(self.secret))
            if session.role == "customer":
                context.setdefault("username", session.subject)
        body = self.templates.get_template(template).render(**context)
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def refused(self, request: Request, error: Refused, session: Session | None = None) -> HTMLResponse:
        context = {"title": error.title, "message": error.message, "detail": error.detail}
        if is_htmx(request):
            # htmx swaps only 2xx answers: show the message in place of the page's content.
            response = self.render("_messaggio.html", 200, session, **context)
            response.headers.update({"HX-Retarget": "#contenuto", "HX-Reswap": "innerHTML"})
            return response
        return self.render("messaggio.html", error.status, session, **context)

    # ------------------------------------------------------------------ who is asking

    def session(self, request: Request, role: Role) -> Session | None:
        cookie = request.cookies.get(CUSTOMER_COOKIE if role == "customer" else BACKOFFICE_COOKIE)
        return read_session(self.secret, role, cookie, time.time())

    def customer(self, request: Request) -> Session:
        session = self.session(request, "customer")
        if session is None:
            hint = " In locale: /ui/dev/accesso." if self.dev else ""
            raise Refused(
                401,
                "Accesso richiesto",
                "La sessione è scaduta o non è stata aperta: entra dal pannello di controllo e premi di nuovo "
                "il link del servizio." + hint,
            )
        return session

    async def form(self, request: Request, session: Session) -> dict[str, str]:
        """The fields of a url-encoded form, after its CSRF token is checked against the session."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise Refused(415, "Richiesta non valida", "Il modulo deve essere inviato come modulo web.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Refused(413, "Richiesta non valida", "Il modulo inviato è troppo grande.")
        fields = {
            name: values[0]
            for name, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()
        }
        if not session.accepts(self.secret, fields.get("csrf")):
            raise Refused(
                403,
                "Modulo non valido",
                "Il modulo è scaduto o non proviene da questa pagina (token di sicurezza mancante o errato). "
                "Ricarica la pagina e riprova.",
            )
        return fields

    # ------------------------------------------------------------------ reads through Ingress

    async def current(self, username: str) -> RenewalView | None:
        """The service's current or latest renewal; None when it never had one."""
        try:
            return await self.ingress.renewal(username)
        except RenewalsError as error:
            if error.code == "unknown_service":
                return None
            raise

    async def cart(self, username: str) -> CartView | None:
        renewal = await self.current(username)
        if renewal is None or renewal.stage != Stage.CART or renewal.cart is None:
            return None
        return renewal.cart


def set_cookie(response: Response, request: Request, name: str, value: str, path: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=SESSION_SECONDS,
        path=path,
        httponly=True,
        samesite="strict",
        # Behind TLS (a proxy passing the scheme to uvicorn) the cookie is Secure; the local stack is http.
        secure=request.url.scheme == "https",
    )


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def customer_pages(ingress: Ingress, settings: Settings) -> APIRouter:
    """The /ui/ pages as a router for the ingress's app (ingress/http.py mounts it)."""
    pages = Pages(ingress, settings)

    class UiRoute(APIRoute):
        """Refusals and failures of a page answer as a page in Italian, never the API's JSON."""

        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except Refused as error:
                    return pages.refused(request, error, pages.session(request, "customer"))
                except RenewalsError as error:
                    title = "Non trovato" if error.status == 404 else "Operazione non riuscita"
                    failed = Refused(error.status, title, refusal(error.message))
                    return pages.refused(request, failed, pages.session(request, "customer"))
                except Exception:
                    log.exception("unexpected error on %s %s", request.method, request.url.path)
                    unavailable = Refused(
                        503, "Servizio non disponibile", "Il servizio di rinnovo non risponde: riprova tra poco."
                    )
                    return pages.refused(request, unavailable)

            return guarded

    router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

    static = {
        "htmx.min.js": ((HERE / "static" / "htmx.min.js").read_bytes(), "text/javascript"),
        "ui.css": ((HERE / "static" / "ui.css").read_bytes(), "text/css"),
    }

    @router.get("/static/{name}")
    async def static_file(name: str) -> Response:
        if name not in static:
            raise Refused(404, "Non trovato", "Questo file non esiste.")
        content, media_type = static[name]
        return Response(content, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    # ---------------------------------------------------------------- sign-in and out

    @router.get("/accesso")
    async def sign_in(request: Request) -> Response:
        query = request.query_params
        try:
            username = check_sign_in(pages.secret, query.get("u"), query.get("exp"), query.get("sig"), time.time())
        except SignInError as error:
            raise Refused(
                401,
                "Link di accesso non valido",
                "Il link di accesso non è valido o è scaduto: torna al pannello di controllo e premi di nuovo "
                "il link del servizio.",
                str(error),
            ) from None
        session = new_session("customer", username, time.time())
        response = pages.render("accesso.html", 200, session)
        set_cookie(response, request, CUSTOMER_COOKIE, session_cookie(pages.secret, session), "/ui")
        return response

    @router.post("/esci")
    async def sign_out(request: Request) -> Response:
        session = pages.customer(request)
        await pages.form(request, session)
        response = pages.render(
            "messaggio.html", title="Sei uscito", message="Sessione chiusa.", tone="info", back=None
        )
        response.delete_cookie(CUSTOMER_COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    # ---------------------------------------------------------------- home: Stato servizio

    @router.get("/")
    async def home(request: Request) -> Response:
        session = pages.customer(request)
        service = await ingress.service(session.subject)
        last_day = last_reactivation_day(service.expires_on, ingress.policy.reactivation_window)
        reason = None
        if service.action is None:
            reason = no_button_reason(service.status, service.auto_renew, service.expires_on, last_day)
        return pages.render(
            "home.html",
            session=session,
            service=service,
            reason=reason,
            last_reactivation_day=last_day,
            renewal=await pages.current(session.subject),
        )

    @router.post("/rinnova")
    async def press(request: Request) -> Response:
        """Rinnova or Riattiva: opens the cart, or returns the one already open (P8)."""
        session = pages.customer(request)
        fields = await pages.form(request, session)
        username = session.subject
        event: PanelEvent
        if fields.get("azione") == "reactivate":
            event = ReactivateRequested(type="reactivate_requested", username=username)
        else:
            event = RenewRequested(type="renew_requested", username=username)
        opened = await ingress.panel(event)
        return see_other(
            "/ui/carrello" if isinstance(opened, CartView) and opened.stage == Stage.CART else "/ui/rinnovo"
        )

    # ---------------------------------------------------------------- the cart

    @router.get("/carrello")
    async def cart(request: Request) -> Response:
        session = pages.customer(request)
        renewal = await pages.current(session.subject)
        if renewal is None or renewal.stage == Stage.REFUSED:
            return see_other("/ui/")
        if renewal.stage != Stage.CART or renewal.cart is None:
            return see_other("/ui/rinnovo")
        return pages.render("carrello.html", session=session, cart=renewal.cart)

    async def change_cart(
        request: Request, event_of: Callable[[str, dict[str, str]], PanelEvent], field: str, done: str
    ) -> Response:
        """One cart change: the new cart in place (htmx) or a redirect to it; a refusal beside its field."""
        session = pages.customer(request)
        fields = await pages.form(request, session)
        error = notice = None
        changed: PanelAnswer | None = None
        try:
            changed = await ingress.panel(event_of(session.subject, fields))
            notice = done.format(addon_name=ADDON_NAMES.get(fields.get("addon", ""), ""))
        except ValidationError as invalid:
            error = field_error(invalid)
        except RenewalsError as refused:
            error = refusal(refused.message)
        cart = changed if isinstance(changed, CartView) else await pages.cart(session.subject)
        if cart is None:
            # The renewal has moved on (checked out in another tab, lapsed): show where it is.
            if is_htmx(request):
                return Response(status_code=200, headers={"HX-Redirect": "/ui/rinnovo"})
            return see_other("/ui/rinnovo")
        if error is None and not is_htmx(request):
            return see_other("/ui/carrello")
        context = {"cart": cart, "error": error, "error_field": field, "notice": notice}
        if error is not None and field == "codice":
            context["code"] = fields.get("codice", "")
        if is_htmx(request):
            return pages.render("_carrello.html", 200, session, **context)
        return pages.render("carrello.html", 422, session, **context)

    @router.post("/carrello/aggiungi")
    async def add(request: Request) -> Response:
        def event(username: str, fields: dict[str, str]) -> PanelEvent:
            return AddonAdded(
                type="addon_added",
                username=username,
                addon=fields.get("addon"),  # type: ignore[arg-type]  # validated here
                quantity=whole(fields.get("quantita", "").strip() or "1") or -1,
            )

        return await change_cart(request, event, "quantita", "{addon_name} aggiunto al carrello.")

    @router.post("/carrello/rimuovi")
    async def remove(request: Request) -> Response:
        def event(username: str, fields: dict[str, str]) -> PanelEvent:
            return AddonRemoved(type="addon_removed", username=username, addon=fields.get("addon"))  # type: ignore[arg-type]

        return await change_cart(request, event, "addon", "{addon_name} tolto dal carrello.")

    @router.post("/carrello/codice")
    async def apply_code(request: Request) -> Response:
        def event(username: str, fields: dict[str, str]) -> PanelEvent:
            return DiscountCodeApplied(
                type="discount_code_applied", username=username, code=fields.get("codice", "").strip().upper()
            )

        return await change_cart(request, event, "codice", "Codice convenzione applicato.")

    # ---------------------------------------------------------------- Modulo d'ordine

    @router.get("/ordine")
    async def order_form(request: Request) -> Response:
        session = pages.customer(request)
        cart = await pages.cart(session.subject)
        if cart is None:
            return see_other("/ui/rinnovo")
        return pages.render("modulo.html", session=session, cart=cart, chosen_method=None, chosen_years=1)

    @router.post("/ordine")
    async def checkout(request: Request) -> Response:
        session = pages.customer(request)
        fields = await pages.form(request, session)
        years = fields.get("anni", "")
        method = fields.get("pagamento")
        error = None
        try:
            order = await ingress.panel(
                CheckoutSubmitted(
                    type="checkout_submitted",
                    username=session.subject,
                    payment_method=method,  # type: ignore[arg-type]  # validated here
                    years=whole(years) or 0,
                )
            )
            if isinstance(order, OrderView):
                return see_other(f"/ui/ordini/{order.order_number}")
        except ValidationError as invalid:
            error = field_error(invalid)
        except RenewalsError as refused:
            error = refusal(refused.message)
        renewal = await pages.current(session.subject)
        if renewal is not None and renewal.stage == Stage.AWAITING_PAYMENT and renewal.order is not None:
            # Pressed twice (or in two tabs): the order already confirmed is the answer.
            return see_other(f"/ui/ordini/{renewal.order.order_number}")
        if renewal is None or renewal.cart is None or renewal.stage != Stage.CART:
            return see_other("/ui/rinnovo")
        chosen_years = whole(years) or 1
        return pages.render(
            "modulo.html",
            422,
            session,
            cart=renewal.cart,
            error=error,
            chosen_method=method,
            chosen_years=chosen_years,
        )

    # ---------------------------------------------------------------- confirmation and status

    @router.get("/ordini/{order_number}")
    async def confirmation(order_number: str, request: Request) -> Response:
        session = pages.customer(request)
        renewal = await pages.current(session.subject)
        # Only the signed-in customer's own order: another's is "not found", never shown.
        if renewal is None or renewal.order is None or renewal.order.order_number != order_number:
            raise Refused(404, "Ordine non trovato", "Questo ordine non è tra gli ordini del tuo servizio.")
        return pages.render("conferma.html", session=session, order=renewal.order)

    @router.get("/rinnovo")
    async def status(request: Request) -> Response:
        session = pages.customer(request)
        return pages.render("stato.html", session=session, renewal=await pages.current(session.subject))

    if settings.panel_ui_dev_login:
        add_dev_pages(router, pages)
    return router


def pages_for(ingress: Ingress, panel_secret: str) -> APIRouter:
    """The pages as create_app mounts them: the environment's settings, with the app's panel secret."""
    return customer_pages(ingress, load_settings(PANEL_SECRET=panel_secret))


# The event's field → what the customer is told about the form field that fed it.
FIELD_PROBLEMS = {
    "code": "Il codice convenzione può contenere solo lettere, cifre, - e _ (al massimo 32 caratteri).",
    "quantity": "La quantità deve essere un numero intero da 1 a 100.",
    "addon": "Servizio aggiuntivo sconosciuto.",
    "payment_method": "Scegli la modalità di pagamento.",
    "years": "Scegli la durata del rinnovo.",
}


def field_error(invalid: ValidationError) -> str:
    """What is wrong with a form, in Italian (the model's own words for anything unforeseen)."""
    said = []
    for problem in invalid.errors(include_url=False, include_input=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        said.append(FIELD_PROBLEMS.get(field) or f"{field}: {problem['msg']}")
    return " ".join(dict.fromkeys(said))


# ---------------------------------------------------------------------- the local stack's pages

WHOLE = re.compile(r"^[0-9]{1,9}\Z")
AMOUNT = re.compile(r"^\s*(\d{1,7})(?:[.,](\d{1,2}))?\s*$")


def whole(text: str) -> int | None:
    """A whole number typed in a form ('2'), or None (not '²', not '-1', not '1e9')."""
    return int(text) if WHOLE.match(text) else None


def cents_of(amount: str) -> int | None:
    """'98,82' or '98.82' or '98' → cents; None when it is not an amount."""
    match = AMOUNT.match(amount)
    if not match:
        return None
    return int(match[1]) * 100 + int((match[2] or "0").ljust(2, "0"))


def add_dev_pages(router: APIRouter, pages: Pages) -> None:
    """PANEL_UI_DEV_LOGIN=1 only: sign in as a demo service, and play the payments back office."""
    from stack.demo import demo_services

    @router.get("/dev/accesso")
    async def dev_sign_in(request: Request) -> Response:
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
    async def dev_sign_in_as(request: Request) -> Response:
        return see_other(sign_in_link(pages.secret, request.query_params.get("username", ""), time.time()))

    def backoffice(request: Request) -> tuple[Session, bool]:
        session = pages.session(request, "backoffice")
        if session is None:
            return new_session("backoffice", "backoffice", time.time()), True
        return session, False

    def payments_page(
        request: Request, status: int = 200, form: dict[str, str] | None = None, **context: Any
    ) -> Response:
        session, fresh = backoffice(request)
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
        response = pages.render("dev_pagamenti.html", status, session, form=shown, **context)
        if fresh:
            set_cookie(response, request, BACKOFFICE_COOKIE, session_cookie(pages.secret, session), "/ui/dev")
        return response

    @router.get("/dev/pagamenti")
    async def payments(request: Request) -> Response:
        return payments_page(request, outcome=None)

    @router.post("/dev/pagamenti")
    async def register_payment(request: Request) -> Response:
        session = pages.session(request, "backoffice")
        if session is None:
            raise Refused(403, "Modulo non valido", "Apri di nuovo la pagina del back office e riprova.")
        fields = await pages.form(request, session)
        cents = cents_of(fields.get("importo", ""))
        if not cents:
            return payments_page(request, 422, fields, outcome=None, error="Importo non valido: scrivi ad es. 98,82.")
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
            fields_wrong = ", ".join(str(problem["loc"][0]) for problem in invalid.errors())
            return payments_page(request, 422, fields, outcome=None, error=f"Campi non validi: {fields_wrong}.")
        outcome = await pages.ingress.payment(event)
        # A fresh transaction id for the next one; the order stays for a second (partial) payment.
        return payments_page(request, 200, {"ordine": event.order_number}, outcome=outcome)
