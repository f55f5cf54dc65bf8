"""The customer's auto-renew switch (P16, P20): on with the method and term of the next automatic
renewal, or off, through the same `auto_renew_changed` the panel sends. Turning it off cancels an
unpaid automatic order; on while an order of the customer's own awaits payment is refused with the
reason, shown on the home page."""

from fastapi.responses import Response
from pydantic import ValidationError

from client.renewals import RenewalsError
from ingress.pages.deps import ChangeForm, CustomerSession, PagesDep
from ingress.pages.forms import field_error, whole
from ingress.pages.home import home_page
from ingress.pages.site import page_router
from ingress.pages.words import refusal
from renewals.events import AutoRenewChanged

router = page_router()


@router.post("/rinnovo-automatico")
async def switch(pages: PagesDep, session: CustomerSession, fields: ChangeForm) -> Response:
    on = fields.get("rinnovo_automatico") == "on"
    try:
        event = AutoRenewChanged.model_validate(
            {
                "type": "auto_renew_changed",
                "username": session.subject,
                "auto_renew": on,
                "method": (fields.get("pagamento") or None) if on else None,
                "years": (whole(fields.get("anni", "")) or None) if on else None,
            }
        )
        await pages.ingress.auto_renew_changed(event)
        return pages.see_other("/ui/")
    except ValidationError as invalid:
        error = field_error(invalid)
    except RenewalsError as refused:
        error = refusal(refused.message)
    return await home_page(pages, session, status=422, switch_error=error)
