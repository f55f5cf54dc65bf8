"""The cart (R3, R4): the add-ons, the *codice convenzione*, the storage alert and the year's total.

Each change answers with the new cart in place (htmx) or a redirect to it (a plain POST, without
JavaScript); a refusal is said beside the field it concerns. A run of wrong codes locks the codes
for a while before any reaches the renewal (P14, `CodeTries`).
"""

import math
from collections.abc import Callable

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from client.renewals import RenewalsError
from ingress.pages.deps import ChangeForm, CodeTries, CodeTriesDep, CustomerSession, PagesDep
from ingress.pages.forms import field_error, whole
from ingress.pages.session import Session
from ingress.pages.site import Pages, is_htmx, page_router
from ingress.pages.words import ADDON_NAMES, refusal
from renewals import errors
from renewals.events import AddonAdded, AddonRemoved, DiscountCodeApplied, PanelEvent
from renewals.types import Stage
from renewals.views import CartView

router = page_router()

# The customer's username and the form's fields → the event they ask for.
EventOf = Callable[[str, dict[str, str]], PanelEvent]


@router.get("/carrello")
async def cart(pages: PagesDep, session: CustomerSession) -> Response:
    renewal = await pages.current(session.subject)
    if renewal is None or renewal.stage == Stage.REFUSED:
        return pages.see_other("/ui/")
    if renewal.stage != Stage.CART or renewal.cart is None:
        return pages.see_other("/ui/rinnovo")
    return pages.render("carrello.html", session=session, cart=renewal.cart)


def locked_out(tries: CodeTries | None) -> tuple[str, float] | None:
    """A guessing run's lockout: what the customer is told, and for how many seconds more."""
    seconds = tries.locked_for() if tries is not None else None
    if seconds is None:
        return None
    said = (
        "Troppi codici convenzione non validi in poco tempo: potrai provarne un altro tra "
        f"{math.ceil(seconds / 60)} minuti."
    )
    return said, seconds


async def apply(
    pages: Pages, session: Session, fields: dict[str, str], event_of: EventOf, tries: CodeTries | None
) -> tuple[CartView | None, str | None]:
    """The change through `Renewals.panel`: the cart it left (None: read it again) or the refusal,
    in Italian. A refused code counts towards the lockout."""
    try:
        changed = await pages.ingress.panel(event_of(session.subject, fields))
    except ValidationError as invalid:
        if tries is not None:
            tries.failed()
        return None, field_error(invalid)
    except RenewalsError as refused:
        if tries is not None and refused.kind == errors.INVALID_REQUEST:
            tries.failed()
        return None, refusal(refused.message)
    return (changed if isinstance(changed, CartView) else None), None


async def change_cart(
    request: Request,
    pages: Pages,
    session: Session,
    fields: dict[str, str],
    change: tuple[EventOf, str, str],
    tries: CodeTries | None = None,
) -> Response:
    """One cart change, `change` = (its event, the form field it concerns, what is said when done):
    the new cart in place (htmx) or a redirect to it; a refusal beside its field."""
    event_of, field, done = change
    changed: CartView | None = None
    error: str | None = None
    notice: str | None = None
    status = 422
    lockout = locked_out(tries)
    if lockout is not None:
        # A guessing run: refused here, so it never reaches the renewal (nor its budget).
        error, status = lockout[0], 429
    else:
        changed, error = await apply(pages, session, fields, event_of, tries)
        if error is None:
            notice = done.format(addon_name=ADDON_NAMES.get(fields.get("addon", ""), ""))
    cart = changed if changed is not None else await pages.cart(session.subject)
    if cart is None:
        # The renewal has moved on (checked out in another tab, lapsed): show where it is.
        if is_htmx(request):
            return Response(status_code=200, headers={"HX-Redirect": "/ui/rinnovo"})
        return pages.see_other("/ui/rinnovo")
    if error is None and not is_htmx(request):
        return pages.see_other("/ui/carrello")
    context = {"cart": cart, "error": error, "error_field": field, "notice": notice}
    if error is not None and field == "codice":
        context["code"] = fields.get("codice", "")
    if is_htmx(request):
        return pages.render("_carrello.html", 200, session, **context)
    response = pages.render("carrello.html", status, session, **context)
    if lockout is not None:
        response.headers["Retry-After"] = str(math.ceil(lockout[1]))
    return response


def addon_added(username: str, fields: dict[str, str]) -> PanelEvent:
    return AddonAdded(
        type="addon_added",
        username=username,
        addon=fields.get("addon"),  # type: ignore[arg-type]  # validated here
        quantity=whole(fields.get("quantita", "").strip() or "1") or -1,
    )


def addon_removed(username: str, fields: dict[str, str]) -> PanelEvent:
    return AddonRemoved(type="addon_removed", username=username, addon=fields.get("addon"))  # type: ignore[arg-type]


def code_applied(username: str, fields: dict[str, str]) -> PanelEvent:
    return DiscountCodeApplied(
        type="discount_code_applied", username=username, code=fields.get("codice", "").strip().upper()
    )


@router.post("/carrello/aggiungi")
async def add(request: Request, pages: PagesDep, session: CustomerSession, fields: ChangeForm) -> Response:
    change = (addon_added, "quantita", "{addon_name} aggiunto al carrello.")
    return await change_cart(request, pages, session, fields, change)


@router.post("/carrello/rimuovi")
async def remove(request: Request, pages: PagesDep, session: CustomerSession, fields: ChangeForm) -> Response:
    change = (addon_removed, "addon", "{addon_name} tolto dal carrello.")
    return await change_cart(request, pages, session, fields, change)


@router.post("/carrello/codice")
async def apply_code(
    request: Request, pages: PagesDep, session: CustomerSession, fields: ChangeForm, tries: CodeTriesDep
) -> Response:
    change = (code_applied, "codice", "Codice convenzione applicato.")
    return await change_cart(request, pages, session, fields, change, tries)
