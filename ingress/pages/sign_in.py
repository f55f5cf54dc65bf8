"""Sign-in and sign-out (docs/customer-pages.md, "Sign-in, as the control panel does it").

The panel's signed link (ingress/pages/session.py) opens a page whose **Entra** is a POST bound to
a nonce cookie that page set: a link opened in another browser signs that browser in to nothing
(login CSRF). Each link signs in once; **Esci** ends the session on the server (db/ui_sessions.py).
"""

import time
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from db import ui_sessions
from ingress.pages.deps import CustomerForm, CustomerSession, FormFields, PagesDep
from ingress.pages.session import (
    CLOCK_SKEW_SECONDS,
    LINK_SECONDS,
    SESSION_SECONDS,
    SignInError,
    accepts_sign_in,
    check_sign_in,
    digest,
    new_nonce,
    session_cookie,
    sign_in_token,
)
from ingress.pages.site import Pages, Refused, page_router

router = page_router()

# (username, exp, sig) of a link that checked out.
Link = tuple[str, str, str]


def link_checked(pages: Pages, fields: Mapping[str, str]) -> Link:
    """The panel's link (u, exp, sig), signed with either secret and unexpired; else a 401 page."""
    username, expires, signature = fields.get("u"), fields.get("exp"), fields.get("sig")
    try:
        return check_sign_in(pages.secrets, username, expires, signature, time.time()), expires or "", signature or ""
    except SignInError as error:
        raise Refused(
            401,
            "Link di accesso non valido",
            "Il link di accesso non è valido o è scaduto: torna al pannello di controllo e premi di nuovo "
            "il link del servizio.",
            str(error),
        ) from None


def used_link() -> Refused:
    return Refused(
        401,
        "Link di accesso già usato",
        "Questo link di accesso è già stato usato: ogni link apre una sola sessione. Torna al pannello di "
        "controllo e premi di nuovo il link del servizio.",
    )


def link_in_query(request: Request, pages: PagesDep) -> Link:
    return link_checked(pages, request.query_params)


def bound_to_this_browser(request: Request, pages: Pages, fields: Mapping[str, str], again: str) -> Link:
    """A sign-in POST's CSRF check: its token must bind the link (u, exp, sig) to the nonce cookie
    the link's page set in this browser (`sign_in_page`); a 403 page saying `again` otherwise."""
    nonce = request.cookies.get(pages.cookies.name("sign_in"))
    username, expires, signature = fields.get("u", ""), fields.get("exp", ""), fields.get("sig", "")
    if not accepts_sign_in(pages.secrets, nonce, fields.get("token"), username, expires, signature):
        raise Refused(403, "Accesso non completato", f"Questo accesso non è stato avviato da questo browser: {again}")
    return username, expires, signature


def sign_in_form(request: Request, pages: PagesDep, fields: FormFields) -> Link:
    """The panel link's POST: bound to this browser, then the link itself is checked again."""
    bound_to_this_browser(
        request, pages, fields, "torna al pannello di controllo e premi di nuovo il link del servizio."
    )
    return link_checked(pages, fields)


def sign_in_page(request: Request, pages: Pages, link: Link, **context: str) -> Response:
    """The page a signed link opens: its **Entra** POSTs the link with a token bound to a nonce
    cookie set here, so a link opened in another browser signs that browser in to nothing."""
    username, expires, signature = link
    nonce = new_nonce()
    form = {"u": username, "exp": expires, "sig": signature, "token": sign_in_token(pages.secret, nonce, *link)}
    response = pages.render("accesso.html", 200, None, customer=username, form=form, back=None, **context)
    pages.set_cookie(response, request, "sign_in", nonce, LINK_SECONDS + CLOCK_SKEW_SECONDS)
    return response


async def signed_in(request: Request, pages: Pages, username: str, to: str) -> Response:
    """A new session for `username`, then `to`. A redirect, not a page: the POST began on our own
    site, so the SameSite=Strict cookie goes with the GET that follows."""
    session = await pages.start_session("customer", username)
    response = pages.see_other(to)
    pages.set_cookie(response, request, "customer", session_cookie(pages.secret, session), SESSION_SECONDS)
    pages.delete_cookie(response, "sign_in")
    return response


@router.get("/accesso")
async def sign_in(request: Request, pages: PagesDep, link: Annotated[Link, Depends(link_in_query)]) -> Response:
    """The panel's link opens a page that signs in by POST, bound to a nonce cookie set here: a
    link opened in another browser (sent by someone else) signs that browser in to nothing."""
    if await ui_sessions.link_used(pages.pool, digest(link[2])):
        raise used_link()
    return sign_in_page(request, pages, link)


@router.post("/accesso")
async def sign_in_here(request: Request, pages: PagesDep, link: Annotated[Link, Depends(sign_in_form)]) -> Response:
    username, expires, signature = link
    # Kept until the link could no longer be accepted anyway (its expiry and the clock skew).
    usable_until = int(expires) + CLOCK_SKEW_SECONDS
    if not await ui_sessions.use_link(pages.pool, digest(signature), username, usable_until):
        raise used_link()
    await ui_sessions.forget_expired(pages.pool, time.time())
    return await signed_in(request, pages, username, "/ui/")


@router.post("/esci")
async def sign_out(pages: PagesDep, session: CustomerSession, _form: CustomerForm) -> Response:
    """Ends the session on the server: a copy of the cookie, anywhere, opens nothing after."""
    await ui_sessions.end_session(pages.pool, session.key)
    response = pages.render("messaggio.html", title="Sei uscito", message="Sessione chiusa.", tone="info", back=None)
    pages.delete_cookie(response, "customer")
    return response
