"""The panel's reads (docs/api.md, *Reads*), signed with PANEL_SECRET like its events (P21), over
an empty body: which button a service shows, and its current or latest renewal."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from ingress import openapi
from ingress.api import examples
from ingress.api.deps import IngressDep, panel_signature
from renewals.types import Username
from renewals.views import RenewalView, ServiceStatusView

router = APIRouter(prefix="/panel", tags=["panel"], dependencies=[Depends(panel_signature)])

# Checked after the signature: an unsigned request is a 401 whatever it names; a bad one, a 422.
UsernamePath = Annotated[Username, Path(description="The service's username.")]
REFUSALS = openapi.refusals(400, 401, 404, 409, 413, 422, 503, read=True)


@router.get(
    "/services/{username}",
    summary="Which button the panel shows",
    response_model=ServiceStatusView,
    response_description="The service and its button.",
    responses={
        200: openapi.examples({"active": examples.SERVICE, "auto_renew": examples.SERVICE_AUTO_RENEW}),
        **REFUSALS,
    },
)
async def service_status(username: UsernamePath, ingress: IngressDep) -> ServiceStatusView:
    """`action`: `renew`, `reactivate` or null (R1, R2), with the reason when null; auto-renew's method
    and the term of the next automatic renewal (P16, R5); the next notice and automatic order dates
    (P15, P16)."""
    return await ingress.service(username)


@router.get(
    "/renewals/{username}",
    summary="The current or latest renewal",
    response_model=RenewalView,
    response_description="The renewal.",
    responses={200: openapi.examples({"awaiting_payment": examples.RENEWAL}), **REFUSALS},
)
async def renewal(username: UsernamePath, ingress: IngressDep) -> RenewalView:
    """Stage, cart, order, payments and the emails sent; 404 when the service never had one."""
    return await ingress.renewal(username)
