"""The pages' dependencies: the app's `Pages`, the signed-in customer, a form's fields once its
CSRF token is checked, the per-customer rate limit and the discount-code lockout (P14), each an
`Annotated` type a page names in its signature (docs/customer-pages.md).

They run in the order a page lists them, inside `PageRoute`: a refusal here is a page in Italian.
"""

import math
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, Request

from ingress.bodies import read_bounded
from ingress.pages.session import Session
from ingress.pages.site import Pages, Refused, pages_of

MAX_FORM_BYTES = 8 * 1024

PagesDep = Annotated[Pages, Depends(pages_of)]


async def customer_session(request: Request, pages: PagesDep) -> Session:
    """The signed-in customer, or a 401 page: no cookie, a forged or expired one, or signed out."""
    session = await pages.session(request, "customer")
    if session is None:
        hint = " In locale: /ui/dev/accesso." if pages.dev else ""
        raise Refused(
            401,
            "Accesso richiesto",
            "La sessione è scaduta o non è stata aperta: entra dal pannello di controllo e premi di nuovo "
            "il link del servizio." + hint,
        )
    return session


CustomerSession = Annotated[Session, Depends(customer_session)]


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a url-encoded form of bounded size (415, 413 otherwise); the first of each name."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Refused(415, "Richiesta non valida", "Il modulo deve essere inviato come modulo web.")
    too_large = Refused(413, "Richiesta non valida", "Il modulo inviato è troppo grande.")
    body = await read_bounded(request, MAX_FORM_BYTES, too_large)
    return {
        name: values[0] for name, values in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()
    }


FormFields = Annotated[dict[str, str], Depends(form_fields)]


def checked(pages: Pages, session: Session, fields: dict[str, str]) -> dict[str, str]:
    """`fields`, if their CSRF token is the one `session` signed; else a 403 page."""
    if not session.accepts(pages.secrets, fields.get("csrf")):
        raise Refused(
            403,
            "Modulo non valido",
            "Il modulo è scaduto o non proviene da questa pagina (token di sicurezza mancante o errato). "
            "Ricarica la pagina e riprova.",
        )
    return fields


def customer_form(pages: PagesDep, session: CustomerSession, fields: FormFields) -> dict[str, str]:
    """Every customer POST: the form, once its CSRF token is checked against the session."""
    return checked(pages, session, fields)


CustomerForm = Annotated[dict[str, str], Depends(customer_form)]


def throttled(pages: PagesDep, session: CustomerSession, fields: CustomerForm) -> dict[str, str]:
    """A form that changes the renewal: checked (CSRF) first, then at most the customer's share
    (PANEL_UI_RATE_PER_MINUTE, PANEL_UI_BURST), else a 429 page with Retry-After (P14)."""
    wait = pages.limiter.retry_after(session.subject)
    if wait is not None:
        seconds = math.ceil(wait)
        raise Refused(
            429,
            "Troppe richieste",
            f"Troppe richieste in poco tempo: riprova tra {seconds} secondi.",
            retry_after=seconds,
        )
    return fields


# A form that changes the renewal: signed in, CSRF-checked, within the rate limit.
ChangeForm = Annotated[dict[str, str], Depends(throttled)]


@dataclass(frozen=True)
class CodeTries:
    """The customer's wrong discount codes (P14): after PANEL_UI_CODE_TRIES within
    PANEL_UI_CODE_WINDOW, codes are refused for PANEL_UI_CODE_LOCKOUT before reaching the renewal."""

    pages: Pages
    username: str

    def locked_for(self) -> float | None:
        """Seconds until another code may be tried; None when codes are accepted."""
        return self.pages.codes.locked_for(self.username)

    def failed(self) -> None:
        self.pages.codes.failed(self.username)


def code_tries(pages: PagesDep, session: CustomerSession) -> CodeTries:
    return CodeTries(pages, session.subject)


CodeTriesDep = Annotated[CodeTries, Depends(code_tries)]
