"""`POST /panel/events` (docs/api.md, *Panel events*): the control panel's events, signed with
PANEL_SECRET (P21), rate limited per username, answered once per `Idempotency-Key` (P13).

The body is a `PanelEvent` (renewals/events.py), one of seven on `type`; the answer is the cart,
the order or the service view. The event goes to the renewal through `Renewals.panel`, the same
path the customer's pages take.
"""

import math
from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, RootModel

from client.renewals import RenewalsError
from ingress import openapi
from ingress.api import examples
from ingress.api.deps import Api, ApiDep, JsonBody, panel_signature
from ingress.api.errors import ApiError, error_response
from ingress.idempotency import HEADER as IDEMPOTENCY_HEADER
from ingress.idempotency import REPLAYED_HEADER, Answer
from renewals.events import PanelEvent
from renewals.views import CartView, OrderView, ServiceStatusView

router = APIRouter(prefix="/panel", tags=["panel"], dependencies=[Depends(panel_signature)])

# What each field means, for the document (the models say what each accepts).
FIELDS = {
    "username": "The service's username (the panel's login).",
    "addon": "`extra_storage` (a pack of 1024 MB) or `extra_users` (one user).",
    "quantity": "How many packs or users to add.",
    "code": 'A partner/discount code ("codice convenzione"), applied only when valid (R3).',
    "payment_method": "`card` and `paypal` are paid at once; `bank_transfer` and `postal_slip` get an email "
    "with the order number to quote (R6).",
    "years": "The renewal term, 1 to 10 years; 1 or 2 for a product on promotion (R5, a 422 otherwise).",
    "auto_renew": "Auto-renew on or off (P16). Off cancels an unpaid automatic order; on is refused (409) "
    "while an order of the customer's own awaits payment.",
    "method": "How the automatic order is paid, required when turning auto-renew on (a 422 otherwise): "
    "`card` and `paypal` are charged by the payments back office (a `charge_requested` event), "
    "`bank_transfer` and `postal_slip` get the instructions email and reminders (P16).",
}
PANEL_EVENT = JsonBody(
    PanelEvent,
    examples.PANEL_EVENTS,
    name="PanelEvent",
    descriptions={"PanelEvent": "A panel event; `type` selects which."},
    # The same words for each of the events of the union.
    fields={event.__name__: FIELDS for event in get_args(get_args(PanelEvent)[0])},
)
PanelEventDep = Annotated[PanelEvent, Depends(PANEL_EVENT)]


class PanelAnswer(RootModel[CartView | OrderView | ServiceStatusView]):
    """The cart view (renew, reactivate, cart changes), the order view (checkout) or the service view
    (auto_renew_changed)."""

    model_config = ConfigDict(json_schema_extra=openapi.one_of)


def within_rate_limit(event: PanelEventDep, api: ApiDep) -> None:
    """Up to PANEL_RATE_PER_MINUTE events per username (a burst of PANEL_BURST): a 429 beyond."""
    wait = api.limiter.retry_after(event.username) if api.limiter else None
    if wait is not None:
        seconds = math.ceil(wait)
        message = f"too many events for {event.username}; retry in {seconds} s"
        raise ApiError(429, "rate_limited", message, {"Retry-After": str(seconds)})


@router.post(
    "/events",
    summary="A panel event: renew, reactivate, cart changes, checkout, the auto-renew switch",
    dependencies=[Depends(within_rate_limit)],
    response_model=PanelAnswer,
    response_description="The cart view, the order view after checkout, or the service view after auto_renew_changed.",
    responses={
        200: openapi.examples({"cart": examples.CART, "order": examples.ORDER, "service": examples.SERVICE_AUTO_RENEW}),
        **openapi.refusals(400, 401, 404, 409, 413, 422, 429, 503),
    },
)
async def panel_event(
    event: PanelEventDep, api: ApiDep, request: Request
) -> CartView | OrderView | ServiceStatusView | Response:
    """Renew and reactivate open the cart, or return the one already open (P8); the cart changes and
    checkout are applied to it synchronously; `auto_renew_changed` answers the service view (P16).
    Up to PANEL_RATE_PER_MINUTE events per username."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return await api.ingress.panel(event)
    done = await api.keys().answer_once(
        event.username, key, event.model_dump_json().encode(), lambda: answer_of(api, event, key)
    )
    replayed = {REPLAYED_HEADER: "true"} if done.replayed else None
    return Response(done.body, status_code=done.status, media_type="application/json", headers=replayed)


async def answer_of(api: Api, event: PanelEvent, key: str) -> Answer:
    """The event's answer, a refusal included: both are what a retry with its key gets back (P13).
    The key is the update's id too: a retry after a timeout whose update did reach the renewal gets
    that update's outcome from Temporal, never a second change."""
    try:
        view = await api.ingress.panel(event, update_id=f"idempotency-key:{key}")
        response = JSONResponse(view.model_dump(mode="json"))
    except RenewalsError as error:
        response = error_response(error.status, error.code, error.message)
    return Answer(response.status_code, bytes(response.body))
