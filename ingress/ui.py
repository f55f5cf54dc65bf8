"""The customer's pages under /ui/: the renewal as the help page walks through it, in Italian.

Home (*Stato servizio* with **Rinnova** or **Riattiva**, or why neither), the cart, the *Modulo
d'ordine*, the confirmation with the payment instructions, and the renewal's status page. Built
only on the public operations of `Ingress` (`panel`, `service`, `renewal`, `payment`): the same
path to the workflow as the signed API, never a second one.

Server-rendered Jinja2; htmx (a pinned copy in ingress/static/) swaps the cart in place when an
add-on is added or a code applied, and every form also works as a plain POST + redirect without
JavaScript. Sign-in is the control panel's signed link (ingress/ui_session.py), completed by a
POST from the page it opens, once; sessions live in PostgreSQL until sign-out (db/ui_sessions.py);
every form carries the session's CSRF token. The forms that change the renewal are rate-limited
per customer, and a run of wrong discount codes locks the codes for a while (ingress/ratelimit.py).
Behind https (`PANEL_UI_URL`) the cookies are `__Host-` and Secure, and the pages send HSTS.
With `PANEL_UI_DEV_LOGIN=1` (the local stack only, loopback) two more pages: a sign-in listing the
demo services, and the payments back office registering a payment.
"""

import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError

from db import ui_sessions
from ingress.operations import Ingress, PanelAnswer, RenewalsError
from ingress.ratelimit import Lockout, RateLimiter
from ingress.ui_session import (
    CLOCK_SKEW_SECONDS,
    LINK_SECONDS,
    SESSION_SECONDS,
    Role,
    Secrets,
    Session,
    SignInError,
    accepts_sign_in,
    check_sign_in,
    digest,
    new_nonce,
    new_session,
    read_session,
    session_cookie,
    sign_in_link,
    sign_in_token,
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
from renewals import errors
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
MAX_FORM_BYTES = 8 * 1024
# A year; no includeSubDomains: the ingress cannot know what else runs under the domain.
HSTS = "max-age=31536000"
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

    def __init__(
        self, status: int, title: str, message: str, detail: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.detail = status, title, message, detail
        self.retry_after = retry_after


CookieKind = Literal["customer", "backoffice", "sign_in"]


@dataclass(frozen=True)
class CookieJar:
    """The pages' cookies. Behind https: `__Host-` names, which a browser keeps only when Secure,
    Path=/ and without Domain, so neither another host of the domain nor plain http can set or
    shadow them. On plain http (the local stack on loopback) a browser would drop such a cookie:
    bare names, each on the narrowest path."""

    https: bool

    def name(self, kind: CookieKind) -> str:
        bare = {"customer": "renewals_session", "backoffice": "renewals_backoffice", "sign_in": "renewals_sign_in"}
        return f"__Host-{bare[kind]}" if self.https else bare[kind]

    def path(self, kind: CookieKind) -> str:
        if self.https:
            return "/"
        return {"customer": "/ui", "backoffice": "/ui/dev", "sign_in": "/ui/accesso"}[kind]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


class Pages:
    """What every page needs: the operations, the secrets, the templates, who is signed in, the
    per-customer limits."""

    @property
    def pool(self) -> asyncpg.Pool:
        # Read when a page is served: the OpenAPI document is built from the routes with no stack.
        return self.ingress.store.pool

    def __init__(self, ingress: Ingress, settings: Settings, panel_secrets: Sequence[str]) -> None:
        self.ingress = ingress
        # During a rotation both values are accepted; the first signs everything new.
        self.secrets: Secrets = tuple(panel_secrets)
        self.secret = self.secrets[0]
        self.dev = settings.panel_ui_dev_login
        self.cookies = CookieJar(https=urlsplit(settings.panel_ui_url).scheme == "https")
        self.headers = {**SECURITY_HEADERS, **({"Strict-Transport-Security": HSTS} if self.cookies.https else {})}
        self.limiter = RateLimiter(settings.panel_ui_rate_per_minute / 60, settings.panel_ui_burst)
        self.codes = Lockout(
            settings.panel_ui_code_tries,
            settings.panel_ui_code_window.total_seconds(),
            settings.panel_ui_code_lockout.total_seconds(),
        )
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
        return HTMLResponse(body, status_code=status, headers=self.headers)

    def see_other(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303, headers=self.headers)

    def refused(self, request: Request, error: Refused, session: Session | None = None) -> HTMLResponse:
        context = {"title": error.title, "message": error.message, "detail": error.detail}
        if is_htmx(request):
            # htmx swaps only 2xx answers: show the message in place of the page's content.
            response = self.render("_messaggio.html", 200, session, **context)
            response.headers.update({"HX-Retarget": "#contenuto", "HX-Reswap": "innerHTML"})
        else:
            response = self.render("messaggio.html", error.status, session, **context)
        if error.retry_after is not None:
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    def set_cookie(self, response: Response, request: Request, kind: CookieKind, value: str, seconds: int) -> None:
        response.set_cookie(
            self.cookies.name(kind),
            value,
            max_age=seconds,
            path=self.cookies.path(kind),
            httponly=True,
            samesite="strict",
            # Secure whenever the public URL is https; and on a request a trusted proxy
            # (INGRESS_TRUSTED_PROXIES) says came over TLS.
            secure=self.cookies.https or request.url.scheme == "https",
        )

    def delete_cookie(self, response: Response, kind: CookieKind) -> None:
        response.delete_cookie(
            self.cookies.name(kind),
            path=self.cookies.path(kind),
            httponly=True,
            samesite="strict",
            secure=self.cookies.https,
        )

    # ------------------------------------------------------------------ who is asking

    async def session(self, request: Request, role: Role) -> Session | None:
        """The signed session the request carries, if it was not ended since (sign-out)."""
        kind: CookieKind = "customer" if role == "customer" else "backoffice"
        session = read_session(self.secrets, role, request.cookies.get(self.cookies.name(kind)), time.time())
        if session is None or not await ui_sessions.session_is_live(self.pool, session.key):
            return None
        return session

    async def start_session(self, role: Role, subject: str) -> Session:
        session = new_session(role, subject, time.time())
        await ui_sessions.start_session(self.pool, session.key, role, subject, session.expires)
        return session

    async def customer(self, request: Request) -> Session:
        session = await self.session(request, "customer")
        if session is None:
            hint = " In locale: /ui/dev/accesso." if self.dev else ""
            raise Refused(
                401,
                "Accesso richiesto",
                "La sessione è scaduta o non è stata aperta: entra dal pannello di controllo e premi di nuovo "
                "il link del servizio." + hint,
            )
        return session

    def throttle(self, session: Session) -> None:
        """A form that changes the renewal: at most the customer's share (PANEL_UI_RATE_PER_MINUTE)."""
        wait = self.limiter.retry_after(session.subject)
        if wait is not None:
            seconds = math.ceil(wait)
            raise Refused(
                429,
                "Troppe richieste",
                f"Troppe richieste in poco tempo: riprova tra {seconds} secondi.",
                retry_after=seconds,
            )

    async def form(self, request: Request, session: Session) -> dict[str, str]:
        """The fields of a url-encoded form, after its CSRF token is checked against the session."""
        fields = await self.fields(request)
        if not session.accepts(self.secrets, fields.get("csrf")):
            raise Refused(
                403,
                "Modulo non valido",
                "Il modulo è scaduto o non proviene da questa pagina (token di sicurezza mancante o errato). "
                "Ricarica la pagina e riprova.",
            )
        return fields

    async def fields(self, request: Request) -> dict[str, str]:
        """The fields of a url-encoded form of bounded size."""
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            raise Refused(415, "Richiesta non valida", "Il modulo deve essere inviato come modulo web.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Refused(413, "Richiesta non valida", "Il modulo inviato è troppo grande.")
        return {
            name: values[0]
            for name, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()
        }

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


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def customer_pages(ingress: Ingress, settings: Settings, panel_secrets: Sequence[str] | None = None) -> APIRouter:
    """The /ui/ pages as a router for the ingress's app (ingress/http.py mounts it)."""
    pages = Pages(ingress, settings, panel_secrets or settings.panel_secrets)
    see_other = pages.see_other

    class UiRoute(APIRoute):
        """Refusals and failures of a page answer as a page in Italian, never the API's JSON."""

        def get_route_handler(self) -> Handler:
            handler = super().get_route_handler()

            async def guarded(request: Request) -> Response:
                try:
                    return await handler(request)
                except Refused as error:
                    return pages.refused(request, error, await pages.session(request, "customer"))
                except RenewalsError as error:
                    title = "Non trovato" if error.status == 404 else "Operazione non riuscita"
                    failed = Refused(error.status, title, refusal(error.message))
                    return pages.refused(request, failed, await pages.session(request, "customer"))
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

    def link_checked(fields: Any) -> tuple[str, str, str]:
        """The panel's link (u, exp, sig), signed with either secret and unexpired: (username, exp, sig)."""
        username, expires, signature = fields.get("u"), fields.get("exp"), fields.get("sig")
        try:
            return check_sign_in(pages.secrets, username, expires, signature, time.time()), expires, signature
        except SignInError as error:
            raise Refused(
                401,
                "Link di accesso non valido",
                "Il link di accesso non è valido o è scaduto: torna al pannello di controllo e premi di nuovo "
                "il link del servizio.",
                str(error),
            ) from None

    used_link = Refused(
        401,
        "Link di accesso già usato",
        "Questo link di accesso è già stato usato: ogni link apre una sola sessione. Torna al pannello di "
        "controllo e premi di nuovo il link del servizio.",
    )

    @router.get("/accesso")
    async def sign_in(request: Request) -> Response:
        """The panel's link opens a page that signs in by POST, bound to a nonce cookie set here: a
        link opened in another browser (sent by someone else) signs that browser in to nothing."""
        username, expires, signature = link_checked(request.query_params)
        if await ui_sessions.link_used(pages.pool, digest(signature)):
            raise used_link
        nonce = new_nonce()
        form = {
            "u": username,
            "exp": expires,
            "sig": signature,
            "token": sign_in_token(pages.secret, nonce, username, expires, signature),
        }
        response = pages.render("accesso.html", 200, None, customer=username, form=form, back=None)
        pages.set_cookie(response, request, "sign_in", nonce, LINK_SECONDS + CLOCK_SKEW_SECONDS)
        return response

    @router.post("/accesso")
    async def sign_in_here(request: Request) -> Response:
        fields = await pages.fields(request)
        username, expires, signature = fields.get("u", ""), fields.get("exp", ""), fields.get("sig", "")
        nonce = request.cookies.get(pages.cookies.name("sign_in"))
        if not accepts_sign_in(pages.secrets, nonce, fields.get("token"), username, expires, signature):
            raise Refused(
                403,
                "Accesso non completato",
                "Questo accesso non è stato avviato da questo browser: torna al pannello di controllo e premi "
                "di nuovo il link del servizio.",
            )
        username, expires, signature = link_checked(fields)
        # Kept until the link could no longer be accepted anyway (its expiry and the clock skew).
        usable_until = int(expires) + CLOCK_SKEW_SECONDS
        if not await ui_sessions.use_link(pages.pool, digest(signature), username, usable_until):
            raise used_link
        await ui_sessions.forget_expired(pages.pool, time.time())
        session = await pages.start_session("customer", username)
        # A redirect, not a page: this POST began on our own site, so the SameSite=Strict cookie
        # goes with the GET that follows.
        response = see_other("/ui/")
        pages.set_cookie(response, request, "customer", session_cookie(pages.secret, session), SESSION_SECONDS)
        pages.delete_cookie(response, "sign_in")
        return response

    @router.post("/esci")
    async def sign_out(request: Request) -> Response:
        """Ends the session on the server: a copy of the cookie, anywhere, opens nothing after."""
        session = await pages.customer(request)
        await pages.form(request, session)
        await ui_sessions.end_session(pages.pool, session.key)
        response = pages.render(
            "messaggio.html", title="Sei uscito", message="Sessione chiusa.", tone="info", back=None
        )
        pages.delete_cookie(response, "customer")
        return response

    # ---------------------------------------------------------------- home: Stato servizio

    @router.get("/")
    async def home(request: Request) -> Response:
        session = await pages.customer(request)
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
        session = await pages.customer(request)
        fields = await pages.form(request, session)
        pages.throttle(session)
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
        session = await pages.customer(request)
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
        session = await pages.customer(request)
        fields = await pages.form(request, session)
        pages.throttle(session)
        error = notice = None
        status = 422
        changed: PanelAnswer | None = None
        codes_locked = pages.codes.locked_for(session.subject) if field == "codice" else None
        if codes_locked is not None:
            # A guessing run: refused here, so it never reaches the renewal (nor its budget).
            error = (
                "Troppi codici convenzione non validi in poco tempo: potrai provarne un altro tra "
                f"{math.ceil(codes_locked / 60)} minuti."
            )
            status = 429
        else:
            try:
                changed = await ingress.panel(event_of(session.subject, fields))
                notice = done.format(addon_name=ADDON_NAMES.get(fields.get("addon", ""), ""))
            except ValidationError as invalid:
                error = field_error(invalid)
                if field == "codice":
                    pages.codes.failed(session.subject)
            except RenewalsError as refused:
                error = refusal(refused.message)
                if field == "codice" and refused.kind == errors.INVALID_REQUEST:
                    pages.codes.failed(session.subject)
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
        response = pages.render("carrello.html", status, session, **context)
        if codes_locked is not None:
            response.headers["Retry-After"] = str(math.ceil(codes_locked))
        return response

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
        session = await pages.customer(request)
        cart = await pages.cart(session.subject)
        if cart is None:
            return see_other("/ui/rinnovo")
        return pages.render("modulo.html", session=session, cart=cart, chosen_method=None, chosen_years=1)

    @router.post("/ordine")
    async def checkout(request: Request) -> Response:
        session = await pages.customer(request)
        fields = await pages.form(request, session)
        pages.throttle(session)
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
        session = await pages.customer(request)
        renewal = await pages.current(session.subject)
        # Only the signed-in customer's own order: another's is "not found", never shown.
        if renewal is None or renewal.order is None or renewal.order.order_number != order_number:
            raise Refused(404, "Ordine non trovato", "Questo ordine non è tra gli ordini del tuo servizio.")
        return pages.render("conferma.html", session=session, order=renewal.order)

    @router.get("/rinnovo")
    async def status(request: Request) -> Response:
        session = await pages.customer(request)
        return pages.render("stato.html", session=session, renewal=await pages.current(session.subject))

    if settings.panel_ui_dev_login:
        add_dev_pages(router, pages)
    return router


def pages_for(ingress: Ingress, panel_secret: Secrets) -> APIRouter:
    """The pages as create_app mounts them: the environment's settings, with the app's panel
    secrets (one, or the current and the previous during a rotation)."""
    secrets_ = (panel_secret,) if isinstance(panel_secret, str) else tuple(panel_secret)
    return customer_pages(ingress, load_settings(PANEL_SECRET=",".join(secrets_)), secrets_)


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
        return pages.see_other(sign_in_link(pages.secret, request.query_params.get("username", ""), time.time()))

    async def backoffice(request: Request) -> tuple[Session, bool]:
        session = await pages.session(request, "backoffice")
        if session is None:
            return await pages.start_session("backoffice", "backoffice"), True
        return session, False

    async def payments_page(
        request: Request, status: int = 200, form: dict[str, str] | None = None, **context: Any
    ) -> Response:
        session, fresh = await backoffice(request)
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
            cookie = session_cookie(pages.secret, session)
            pages.set_cookie(response, request, "backoffice", cookie, SESSION_SECONDS)
        return response

    @router.get("/dev/pagamenti")
    async def payments(request: Request) -> Response:
        return await payments_page(request, outcome=None)

    @router.post("/dev/pagamenti")
    async def register_payment(request: Request) -> Response:
        session = await pages.session(request, "backoffice")
        if session is None:
            raise Refused(403, "Modulo non valido", "Apri di nuovo la pagina del back office e riprova.")
        fields = await pages.form(request, session)
        cents = cents_of(fields.get("importo", ""))
        if not cents:
            return await payments_page(
                request, 422, fields, outcome=None, error="Importo non valido: scrivi ad es. 98,82."
            )
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
            return await payments_page(request, 422, fields, outcome=None, error=f"Campi non validi: {fields_wrong}.")
        outcome = await pages.ingress.payment(event)
        # A fresh transaction id for the next one; the order stays for a second (partial) payment.
        return await payments_page(request, 200, {"ordine": event.order_number}, outcome=outcome)
