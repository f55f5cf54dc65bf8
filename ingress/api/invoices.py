"""An invoice over the signed panel API (docs/invoices.md, docs/sdi.md): its FatturaPA XML as
issued (P17) and its delivery through SdI with every notification SdI signed (P18)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import Response

from db.invoices import invoice_by_number
from db.sdi import receipts_of
from ingress import openapi
from ingress.api import examples
from ingress.api.deps import IngressDep, panel_signature
from ingress.api.errors import ApiError
from renewals.delivery import ReceiptsView

router = APIRouter(prefix="/panel/invoices", tags=["panel"], dependencies=[Depends(panel_signature)])

InvoiceNumber = Annotated[
    str, Path(description="The invoice's number, `FT-<year>-<progressive>` (e.g. `FT-2026-000001`).")
]
REFUSALS = openapi.refusals(400, 401, 404, 409, 413, 503, read=True)


XML = "application/xml"


def never_issued(number: str) -> ApiError:
    return ApiError(404, "not_found", f"no invoice numbered {number[:40]!r}")


@router.get(
    "/{number}",
    summary="An invoice's FatturaPA XML",
    # Not JSON: its answer is documented by hand, its refusals are the JSON `Error` of every route.
    response_class=Response,
    response_description="The invoice's FatturaPA XML document.",
    responses={
        200: {
            "headers": {
                "Content-Disposition": {
                    "description": 'attachment; filename="IT<partita iva>_<progressivo>.xml"',
                    "schema": {"type": "string"},
                }
            },
            **openapi.examples({"FT-2026-000001": examples.invoice()}, XML, schema={"type": "string"}),
        },
        **REFUSALS,
    },
)
async def invoice(number: InvoiceNumber, ingress: IngressDep) -> Response:
    """The electronic invoice of a paid renewal (P17): FatturaPA 1.2.2, format FPR12, type TD01, as
    issued and validated. `Content-Disposition` names the file as SdI names it,
    `IT<partita iva>_<progressivo>.xml`. 404 `not_found` for a number never issued."""
    found = await invoice_by_number(ingress.store.pool, number)
    if found is None or found.xml is None:
        raise never_issued(number)
    disposition = f'attachment; filename="{found.file_name}"'
    return Response(found.xml, media_type=XML, headers={"Content-Disposition": disposition})


@router.get(
    "/{number}/receipts",
    summary="An invoice's delivery through SdI and SdI's notifications",
    response_model=ReceiptsView,
    response_description="The invoice's SdI record.",
    responses={200: openapi.examples({"delivered": examples.RECEIPTS}), **REFUSALS},
)
async def invoice_receipts(number: InvoiceNumber, ingress: IngressDep) -> ReceiptsView:
    """P18: the invoice's state (`issued`, `sent`, `delivered`, `not_delivered`, `rejected`), every file
    handed to SdI (a corrected resend is a new file with the same number and date) and every
    notification SdI sent back (RC, MC, NS, ...), each `file` exactly as SdI signed it,
    base64-encoded. 404 `not_found` for a number never issued."""
    found = await receipts_of(ingress.store.pool, number)
    if found is None:
        raise never_issued(number)
    return found
