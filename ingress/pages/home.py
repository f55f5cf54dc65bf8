"""Home: *Stato servizio* with **Rinnova** or **Riattiva**, or the reason for neither (R1, R2)."""

from fastapi.responses import Response

from ingress.pages.deps import ChangeForm, CustomerSession, PagesDep
from ingress.pages.session import Session
from ingress.pages.site import Pages, page_router
from ingress.pages.words import no_button_reason
from renewals.eligibility import last_reactivation_day
from renewals.events import PanelEvent, ReactivateRequested, RenewRequested
from renewals.terms import allowed_years
from renewals.types import Stage
from renewals.views import CartView

router = page_router()


@router.get("/")
async def home(pages: PagesDep, session: CustomerSession) -> Response:
    return await home_page(pages, session)


async def home_page(pages: Pages, session: Session, status: int = 200, switch_error: str | None = None) -> Response:
    """The service, its button or why none, the auto-renew switch (P16) and the renewal under way."""
    service = await pages.ingress.service(session.subject)
    last_day = last_reactivation_day(service.expires_on, pages.ingress.policy.reactivation_window)
    reason = None
    if service.action is None:
        reason = no_button_reason(service.status, service.auto_renew, service.expires_on, last_day)
    return pages.render(
        "home.html",
        status,
        session,
        service=service,
        reason=reason,
        last_reactivation_day=last_day,
        renewal=await pages.current(session.subject),
        terms=allowed_years(service.promotional),
        switch_error=switch_error,
    )


@router.post("/rinnova")
async def press(pages: PagesDep, session: CustomerSession, fields: ChangeForm) -> Response:
    """Rinnova or Riattiva: opens the cart, or returns the one already open (P8)."""
    username = session.subject
    event: PanelEvent
    if fields.get("azione") == "reactivate":
        event = ReactivateRequested(type="reactivate_requested", username=username)
    else:
        event = RenewRequested(type="renew_requested", username=username)
    opened = await pages.ingress.panel(event)
    return pages.see_other(
        "/ui/carrello" if isinstance(opened, CartView) and opened.stage == Stage.CART else "/ui/rinnovo"
    )
