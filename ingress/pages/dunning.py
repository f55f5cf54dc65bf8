"""A declined charge of an automatic order (P20): the email's signed link, and the page where the
customer chooses how to pay it.

The link (renewals/links.py, signed by the mailer for the customer and the order's path until the
order's deadline) opens a page whose **Entra** is a POST bound to a nonce cookie, as the panel's
link (ingress/pages/sign_in.py): a link opened in another browser signs that browser in to nothing.
Unlike the panel's, it may be used more than once until the deadline (an email is read again). The
payment page offers a **bank transfer** (the order's method changes; the instructions with the RF
reference follow by email, and P2's reminders) or a **new charge** once the card is updated at the
PSP (PSP_UPDATE_CARD_URL).
"""

import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from client.renewals import RenewalsError
from ingress.pages.deps import ChangeForm, CustomerSession, FormFields, PagesDep
from ingress.pages.order import own_order
from ingress.pages.session import Session
from ingress.pages.sign_in import bound_to_this_browser, sign_in_page, signed_in
from ingress.pages.site import Pages, Refused, page_router
from ingress.pages.words import refusal
from renewals.links import link_refusal
from renewals.types import Stage

router = page_router()

# (username, e, s) of an email link that checked out.
EmailLink = tuple[str, str, str]


def checked_link(pages: Pages, path: str, username: str, expires: str, signature: str) -> EmailLink:
    why = link_refusal(pages.secrets, path, username, expires, signature, time.time())
    if why is not None:
        raise Refused(
            401,
            "Link non valido",
            "Il link dell'email non è valido o è scaduto: entra dal pannello di controllo per vedere il tuo ordine.",
            why,
        )
    return username, expires, signature


def link_in_query(request: Request, pages: PagesDep) -> EmailLink:
    query = request.query_params
    return checked_link(pages, request.url.path, query.get("u", ""), query.get("e", ""), query.get("s", ""))


def link_in_form(request: Request, pages: PagesDep, fields: FormFields) -> EmailLink:
    """The POST's CSRF check (bound to this browser), then the link itself checked again."""
    username, expires, signature = bound_to_this_browser(request, pages, fields, "apri di nuovo il link dell'email.")
    return checked_link(pages, request.url.path, username, expires, signature)


@router.get("/accesso/ordine/{order_number}")
async def email_link(
    order_number: str, request: Request, pages: PagesDep, link: Annotated[EmailLink, Depends(link_in_query)]
) -> Response:
    return sign_in_page(request, pages, link, action=request.url.path, origin="dal link dell'email")


@router.post("/accesso/ordine/{order_number}")
async def email_sign_in(
    order_number: str, request: Request, pages: PagesDep, link: Annotated[EmailLink, Depends(link_in_form)]
) -> Response:
    return await signed_in(request, pages, link[0], f"/ui/ordini/{order_number}/pagamento")


@router.get("/ordini/{order_number}/pagamento")
async def payment_choices(order_number: str, pages: PagesDep, session: CustomerSession) -> Response:
    renewal = await own_order(pages, session.subject, order_number)
    return pages.render("pagamento.html", session=session, renewal=renewal, psp_url=pages.psp_update_card_url)


async def change(pages: Pages, session: Session, order_number: str, bank_transfer: bool) -> Response:
    username = session.subject
    renewal = await own_order(pages, username, order_number)
    try:
        if bank_transfer:
            await pages.ingress.pay_by_transfer(username, order_number)
            return pages.see_other(f"/ui/ordini/{order_number}")
        await pages.ingress.retry_charge(username, order_number)
        return pages.see_other(f"/ui/ordini/{order_number}/pagamento")
    except RenewalsError as refused:
        error = refusal(refused.message)
    if renewal.stage != Stage.AWAITING_PAYMENT:
        return pages.see_other("/ui/rinnovo")
    return pages.render("pagamento.html", 409, session, renewal=renewal, psp_url=pages.psp_update_card_url, error=error)


@router.post("/ordini/{order_number}/bonifico")
async def pay_by_transfer(order_number: str, pages: PagesDep, session: CustomerSession, _: ChangeForm) -> Response:
    return await change(pages, session, order_number, bank_transfer=True)


@router.post("/ordini/{order_number}/addebito")
async def new_charge(order_number: str, pages: PagesDep, session: CustomerSession, _: ChangeForm) -> Response:
    return await change(pages, session, order_number, bank_transfer=False)
