"""`POST /payments/statements` (docs/statements.md, P19): a bank statement, ISO 20022 camt.053
(`.001.02`, `.001.08`), sent by the payments back office as the body, signed with PAYMENTS_SECRET
like every payment event (P21) but bounded by the statement's own limit, not the events' 64 KiB.

The file is read against the official schema and stored first (a file that is not a statement is a
422 with one line, and nothing is recorded), then its import runs as a workflow of its own
(`statement-<hash>`): the answer is the import's record at once, 202 for a new file, 200 with
`already: true` for one stored before (a re-import changes nothing).
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from client.statements import submit_statement
from ingress import openapi
from ingress.api import examples
from ingress.api.deps import ApiDep, IngressDep, Signature, read_bounded
from ingress.api.errors import ApiError
from renewals.signing import Verified
from renewals.statement_imports import ImportRecord
from renewals.statements import MAX_STATEMENT_BYTES, StatementRefused


async def statement_body(request: Request) -> bytes:
    return await read_bounded(request, MAX_STATEMENT_BYTES)


class StatementSignature(Signature):
    """The payments endpoint's signature over a statement's body (up to MAX_STATEMENT_BYTES)."""

    async def __call__(  # type: ignore[override]  # the same check over a larger body
        self, request: Request, body: Annotated[bytes, Depends(statement_body)], api: ApiDep
    ) -> Verified:
        return await super().__call__(request, body, api)


statement_signature = StatementSignature("payments")
router = APIRouter(prefix="/payments", tags=["payments"], dependencies=[Depends(statement_signature)])

XML_BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "The statement file as the bank gives it: ISO 20022 camt.053.001.02 or .001.08 XML, at most "
            f"{MAX_STATEMENT_BYTES // (1024 * 1024)} MB, read with external entities and DTDs off."
        ),
        "content": {
            "application/xml": {
                "schema": {"type": "string", "format": "binary"},
                "examples": {"one_credit": {"value": examples.STATEMENT_XML}},
            }
        },
    }
}


@router.post(
    "/statements",
    summary="A bank statement (camt.053) to import",
    status_code=202,
    response_model=ImportRecord,
    response_description="The import's record: a new file, its import under way.",
    responses={
        202: openapi.examples({"stored": examples.STATEMENT_IMPORT}),
        200: {
            "model": ImportRecord,
            "description": "The same file was stored before: nothing changes.",
            **openapi.examples({"already": {**examples.STATEMENT_IMPORT, "state": "done", "already": True}}),
        },
        **openapi.refusals(401, 409, 413, 422, 503),
    },
    openapi_extra=XML_BODY,
)
async def import_statement(
    ingress: IngressDep, body: Annotated[bytes, Depends(statement_body)], request: Request
) -> JSONResponse:
    """Stored, then imported by its workflow: every credit entry a ledger row once (keyed by the
    bank's reference), matched by RF reference or order number, delivered to its renewal (P5,
    P10-P12); unmatched entries wait for ops with their suggestions."""
    try:
        record = await submit_statement(
            ingress.client,
            ingress.store.pool,
            body,
            "http",
            file_name=request.headers.get("x-file-name"),
            task_queue=ingress.task_queue,
        )
    except StatementRefused as refused:
        raise ApiError(422, "invalid_request", str(refused)) from None
    return JSONResponse(record.model_dump(mode="json"), status_code=200 if record.already else 202)
