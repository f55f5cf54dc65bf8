"""What every customer page shares: the `Pages` state (operations, secrets, cookies, templates, the
per-customer limits) kept on `app.state.pages`, the refusal a page answers with, and the route
class that turns every refusal or failure into a page in Italian (docs/customer-pages.md).

Built only on the public operations of `Renewals` (`panel`, `service`, `renewal`, `payment`): the
same path to the workflow as the signed API, never a second one.
"""

import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from client.renewals import Renewals, RenewalsError
from db import ui_sessions
from ingress.pages.session import Role, Secrets, Session, new_session, read_session
from ingress.pages.words import (
    ADDON_NAMES,
    ADDON_UNITS,
    FILTERS,
    PAYMENT_METHODS,
    PAYMENT_OUTCOMES,
    SERVICE_STATUS,
    STAGES,
    refusal,
)
from ingress.ratelimit import Lockout, RateLimiter
from renewals.types import Stage
from renewals.views import CartView, RenewalView
from settings import Settings

HTMX_VERSION = "2.0.11"  # ingress/pages/static/README.md
ASSET_VERSION = "1"
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
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


def template_environment() -> Environment:
    """The pages' Jinja2 templates (ingress/pages/templates/), autoescaped, with the Italian
    formats as filters and every name a template may leave unset."""
    templates = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.filters.update(FILTERS)
    templates.globals.update(
        ADDON_NAMES=ADDON_NAMES,
        ADDON_UNITS=ADDON_UNITS,
        PAYMENT_METHODS=PAYMENT_METHODS,
        PAYMENT_OUTCOMES=PAYMENT_OUTCOMES,
        SERVICE_STATUS=SERVICE_STATUS,
        STAGES=STAGES,
        htmx_version=HTMX_VERSION,
        asset_version=ASSET_VERSION,
        # True only where the local stack mounted its dev pages (stack/dev_pages.py): their links.
        dev=False,
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
    return templates


class Pages:
    """What every page needs: the operations, the secrets, the templates, who is signed in, the
    per-customer limits. One per app, on `app.state.pages` (ingress/pages/deps.py reads it)."""

    def __init__(self, ingress: Renewals, settings: Settings, panel_secrets: Sequence[str]) -> None:
        self.ingress = ingress
        # During a rotation both values are accepted; the first signs everything new.
        self.secrets: Secrets = tuple(panel_secrets)
        self.secret = self.secrets[0]
        self.cookies = CookieJar(https=urlsplit(settings.panel_ui_url).scheme == "https")
        self.headers = {**SECURITY_HEADERS, **({"Strict-Transport-Security": HSTS} if self.cookies.https else {})}
        self.limiter = RateLimiter(settings.panel_ui_rate_per_minute / 60, settings.panel_ui_burst)
        self.codes = Lockout(
            settings.panel_ui_code_tries,
            settings.panel_ui_code_window.total_seconds(),
            settings.panel_ui_code_lockout.total_seconds(),
        )
        self.templates = template_environment()
        # P20: the PSP's page where the customer updates the card an automatic renewal charges.
        self.psp_update_card_url = settings.psp_update_card_url

    @property
    def pool(self) -> asyncpg.Pool:
        # Read when a page is served: the OpenAPI document is built from the routes with no stack.
        return self.ingress.store.pool

    @property
    def dev(self) -> bool:
        """Whether the local stack's dev pages are mounted beside these (stack/dev_pages.py)."""
        return bool(self.templates.globals["dev"])

    # ------------------------------------------------------------------ answers

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
        """The signed session the request carries, if it was not ended since (sign-out). Looked up
        once per request: a dependency's lookup serves the refusal page that follows it."""
        looked_up: dict[Role, Session | None] | None = getattr(request.state, "sessions", None)
        if looked_up is None:
            looked_up = request.state.sessions = {}
        if role not in looked_up:
            kind: CookieKind = "customer" if role == "customer" else "backoffice"
            session = read_session(self.secrets, role, request.cookies.get(self.cookies.name(kind)), time.time())
            live = session is not None and await ui_sessions.session_is_live(self.pool, session.key)
            looked_up[role] = session if live else None
        return looked_up[role]

    async def start_session(self, role: Role, subject: str) -> Session:
        session = new_session(role, subject, time.time())
        await ui_sessions.start_session(self.pool, session.key, role, subject, session.expires)
        return session

    # ------------------------------------------------------------------ reads through Renewals

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


def pages_of(request: Request) -> Pages:
    """The app's `Pages`, set by `ingress.pages.include`."""
    pages: Pages = request.app.state.pages
    return pages


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class PageRoute(APIRoute):
    """Refusals and failures of a page answer as a page in Italian, never the API's JSON. The
    dependencies (ingress/pages/deps.py) run inside the handler, so their refusals do too."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            pages = pages_of(request)
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


def page_router() -> APIRouter:
    """A router of pages under /ui/: answered by `PageRoute`, outside the API's OpenAPI document."""
    return APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)
