"""The *Modulo d'ordine* (R5), the confirmation with how to pay (R6) and the renewal's status (R7).

The confirmation and every page that shows the transfer instructions quote the payment reason with
the order's ISO 11649 creditor reference beside the IBAN (P19; the `causale` filter,
ingress/pages/words.py `payment_reason`). Only the signed-in customer's own order is shown: another
customer's is "not found".
"""

from fastapi.responses import Response
from pydantic import ValidationError

from client.renewals import RenewalsError
from ingress.pages.deps import ChangeForm, CustomerSession, PagesDep
from ingress.pages.forms import field_error, whole
from ingress.pages.site import Pages, Refused, page_router
from ingress.pages.words import refusal
from renewals.events import CheckoutSubmitted
from renewals.types import Stage
from renewals.views import OrderView, RenewalView

router = page_router()


@router.get("/ordine")
async def order_form(pages: PagesDep, session: CustomerSession) -> Response:
    cart = await pages.cart(session.subject)
    if cart is None:
        return pages.see_other("/ui/rinnovo")
    return pages.render("modulo.html", session=session, cart=cart, chosen_method=None, chosen_years=1)


@router.post("/ordine")
async def checkout(pages: PagesDep, session: CustomerSession, fields: ChangeForm) -> Response:
    years = fields.get("anni", "")
    method = fields.get("pagamento")
    error = None
    try:
        order = await pages.ingress.panel(
            CheckoutSubmitted(
                type="checkout_submitted",
                username=session.subject,
                payment_method=method,  # type: ignore[arg-type]  # validated here
                years=whole(years) or 0,
            )
        )
        if isinstance(order, OrderView):
            return pages.see_other(f"/ui/ordini/{order.order_number}")
    except ValidationError as invalid:
        error = field_error(invalid)
    except RenewalsError as refused:
        error = refusal(refused.message)
    renewal = await pages.current(session.subject)
    if renewal is not None and renewal.stage == Stage.AWAITING_PAYMENT and renewal.order is not None:
        # Pressed twice (or in two tabs): the order already confirmed is the answer.
        return pages.see_other(f"/ui/ordini/{renewal.order.order_number}")
    if renewal is None or renewal.cart is None or renewal.stage != Stage.CART:
        return pages.see_other("/ui/rinnovo")
    return pages.render(
        "modulo.html",
        422,
        session,
        cart=renewal.cart,
        error=error,
        chosen_method=method,
        chosen_years=whole(years) or 1,
    )


@router.get("/ordini/{order_number}")
async def confirmation(order_number: str, pages: PagesDep, session: CustomerSession) -> Response:
    renewal = await own_order(pages, session.subject, order_number)
    return pages.render("conferma.html", session=session, order=renewal.order)


async def own_order(pages: Pages, username: str, order_number: str) -> RenewalView:
    """The customer's renewal, if `order_number` is its order: another's is "not found", never shown."""
    renewal = await pages.current(username)
    if renewal is None or renewal.order is None or renewal.order.order_number != order_number:
        raise Refused(404, "Ordine non trovato", "Questo ordine non è tra gli ordini del tuo servizio.")
    return renewal


@router.get("/rinnovo")
async def status(pages: PagesDep, session: CustomerSession) -> Response:
    return pages.render("stato.html", session=session, renewal=await pages.current(session.subject))
